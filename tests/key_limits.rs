//! Per-key limits (issue 9), black-box: set at creation and changed later
//! through the admin API and the CLI, shown back (the budget in µ¢ and as
//! exact USD), cleared, refused when invalid (naming the field, changing
//! nothing), audited, and an old database migrating with its keys intact.

mod common;

use common::*;
use reqwest::Method;
use rusqlite::Connection;
use serde_json::{Value, json};
use std::path::Path;

const LIMIT_COLUMNS: &str =
    "SELECT rpm, tpm, max_parallel, budget_uc, budget_window FROM client_keys WHERE id = ?1";

type Limits = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn stored(conn: &Connection, id: &str) -> Limits {
    row(conn, LIMIT_COLUMNS, [id])
}

fn admin_entries(conn: &Connection) -> Vec<(String, String, String)> {
    rows(
        conn,
        "SELECT action, subject, detail FROM audit_log WHERE action != 'proxy.request' ORDER BY seq",
    )
}

fn limits_of(key: &Value) -> Value {
    json!({
        "rpm": key["rpm"], "tpm": key["tpm"], "max_parallel": key["max_parallel"],
        "budget_uc": key["budget_uc"], "budget_usd": key["budget_usd"],
        "budget_window": key["budget_window"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_set_shown_patched_cleared_and_audited_through_the_api() {
    let gw = Gateway::start().await;
    let (status, created) = admin_call(
        &gw,
        Method::POST,
        "/keys",
        Some(
            json!({"name": "team", "rpm": 60, "tpm": 100000, "max_parallel": 4,
            "budget_usd": "25.12345678", "budget_window": "month"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let want = json!({"rpm": 60, "tpm": 100000, "max_parallel": 4,
        "budget_uc": 2_512_345_678i64, "budget_usd": "25.12345678", "budget_window": "month"});
    assert_eq!(limits_of(&created), want);
    assert_eq!(
        stored(&gw.db(), &id),
        (
            Some(60),
            Some(100000),
            Some(4),
            Some(2_512_345_678),
            Some("month".into())
        )
    );
    let (_, list) = admin_call(&gw, Method::GET, "/keys", None).await;
    assert_eq!(limits_of(&list[0]), want);

    // Present sets, null clears, absent leaves; the prefix names the key too.
    let prefix = created["prefix"].as_str().unwrap();
    let (status, patched) = admin_call(
        &gw,
        Method::PATCH,
        &format!("/keys/{prefix}"),
        Some(json!({"rpm": 120, "tpm": null, "budget_usd": "0.5"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let after = json!({"rpm": 120, "tpm": null, "max_parallel": 4,
        "budget_uc": 50_000_000, "budget_usd": "0.50", "budget_window": "month"});
    assert_eq!(limits_of(&patched), after);
    assert_eq!(patched["id"], id.as_str());
    let (_, list) = admin_call(&gw, Method::GET, "/keys", None).await;
    assert_eq!(limits_of(&list[0]), after);

    // Clearing the budget and its window together: every limit back to the default.
    let (status, cleared) = admin_call(
        &gw,
        Method::PATCH,
        &format!("/keys/{id}"),
        Some(json!({"rpm": null, "max_parallel": null, "budget_usd": null, "budget_window": null})),
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        stored(&gw.db(), &id),
        (None, None, None, None, None),
        "{cleared}"
    );
    assert!(
        [
            "rpm",
            "tpm",
            "max_parallel",
            "budget_uc",
            "budget_usd",
            "budget_window"
        ]
        .iter()
        .all(|f| cleared[*f].is_null()),
        "{cleared}"
    );

    let (status, _) = admin_call(
        &gw,
        Method::PATCH,
        "/keys/key_0000000000000000",
        Some(json!({"rpm": 1})),
    )
    .await;
    assert_eq!(status, 404);

    // Each change is one audit entry naming the old and new values.
    let entries = admin_entries(&gw.db());
    let actions: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        actions,
        ["client_key.create", "key.limits.set", "key.limits.set"]
    );
    assert_eq!(entries[1].1, format!("client_key:{id}"));
    let detail: Value = serde_json::from_str(&entries[1].2).unwrap();
    assert_eq!(detail["old"], want, "{detail}");
    assert_eq!(detail["new"], after, "{detail}");
    let created_detail: Value = serde_json::from_str(&entries[0].2).unwrap();
    assert_eq!(limits_of(&created_detail), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_limits_are_refused_by_the_api_naming_the_field_and_nothing_changes() {
    let gw = Gateway::start().await;
    let (status, key) = admin_call(
        &gw,
        Method::POST,
        "/keys",
        Some(json!({"name": "k", "rpm": 5, "budget_usd": "1", "budget_window": "day"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let id = key["id"].as_str().unwrap().to_string();
    let before = stored(&gw.db(), &id);
    let entries_before = admin_entries(&gw.db()).len();

    let bad = [
        (json!({"rpm": -1}), "rpm"),
        (json!({"rpm": "ten"}), "rpm"),
        (json!({"rpm": 1.5}), "rpm"),
        (json!({"rpm": 0}), "rpm"),
        (json!({"rpm": 4294967296u64}), "rpm"),
        (json!({"tpm": -5}), "tpm"),
        (json!({"max_parallel": "2"}), "max_parallel"),
        (json!({"budget_usd": "1.123456789"}), "budget_usd"),
        (json!({"budget_usd": "-1"}), "budget_usd"),
        (json!({"budget_usd": "1e3"}), "budget_usd"),
        (json!({"budget_usd": 10}), "budget_usd"),
        (json!({"budget_window": "week"}), "budget_window"),
        // Clearing the budget would leave its window without one.
        (json!({"budget_usd": null}), "budget_window"),
        (json!({"rpm": 7, "colour": "red"}), "colour"),
    ];
    for (body, field) in &bad {
        let (status, err) = admin_call(
            &gw,
            Method::PATCH,
            &format!("/keys/{id}"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {err}");
    }
    assert_eq!(stored(&gw.db(), &id), before);

    let mut bad_new = bad[..12].to_vec();
    bad_new.push((json!({"budget_window": "total"}), "budget_window"));
    for (body, field) in &bad_new {
        let mut body = body.clone();
        body["name"] = "new".into();
        let (status, err) = admin_call(&gw, Method::POST, "/keys", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err.to_string().contains(field), "{body}: {err}");
    }
    let keys: i64 = value(&gw.db(), "SELECT count(*) FROM client_keys", []);
    assert_eq!(keys, 1);
    assert_eq!(admin_entries(&gw.db()).len(), entries_before);

    let (status, _) = admin_call(&gw, Method::PUT, &format!("/keys/{id}"), Some(json!({}))).await;
    assert_eq!(status, 405);
}

fn listed(db: &Path) -> Vec<Value> {
    let (code, out, err) = cli(db, &["keys", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn the_cli_creates_lists_sets_and_clears_limits_and_refuses_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tollgate.db");
    let (code, out, err) = cli(
        &db,
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--rpm",
            "30",
            "--max-parallel",
            "2",
            "--budget-usd",
            "100",
            "--budget-window",
            "total",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let keys = listed(&db);
    let id = keys[0]["id"].as_str().unwrap().to_string();
    let prefix = keys[0]["prefix"].as_str().unwrap().to_string();
    assert!(out.contains(&id), "{out}");
    let created = json!({"rpm": 30, "tpm": null, "max_parallel": 2,
        "budget_uc": 10_000_000_000i64, "budget_usd": "100.00", "budget_window": "total"});
    assert_eq!(limits_of(&keys[0]), created);

    let (code, _, err) = cli(
        &db,
        &[
            "keys",
            "set-limits",
            &prefix,
            "--tpm",
            "5000",
            "--rpm",
            "none",
            "--budget-usd",
            "0.00000001",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let changed = json!({"rpm": null, "tpm": 5000, "max_parallel": 2,
        "budget_uc": 1, "budget_usd": "0.00000001", "budget_window": "total"});
    assert_eq!(limits_of(&listed(&db)[0]), changed);

    let conn = Connection::open(&db).unwrap();
    let entries = admin_entries(&conn);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].0, "key.limits.set");
    let detail: Value = serde_json::from_str(&entries[1].2).unwrap();
    assert_eq!((&detail["old"], &detail["new"]), (&created, &changed));
    drop(conn);

    let bad: [(&[&str], &str); 9] = [
        (&["--rpm", "-1"], "--rpm"),
        (&["--rpm", "many"], "--rpm"),
        (&["--tpm", "0"], "--tpm"),
        (&["--max-parallel", "1.5"], "--max-parallel"),
        (&["--budget-usd", "1.000000001"], "--budget-usd"),
        (&["--budget-usd", "-3"], "--budget-usd"),
        (&["--budget-window", "week"], "--budget-window"),
        (&["--budget-usd", "none"], "--budget-window"),
        (&[], "limit"),
    ];
    for (flags, field) in bad {
        let mut args = vec!["keys", "set-limits", id.as_str()];
        args.extend_from_slice(flags);
        let (code, _, err) = cli(&db, &args);
        assert_eq!(code, 2, "{flags:?}: {err}");
        assert!(err.contains(field), "{flags:?}: {err}");
        let mut args = vec!["keys", "create", "--name", "x"];
        args.extend_from_slice(flags);
        if !flags.is_empty() && *flags != ["--budget-usd", "none"] {
            let (code, _, err) = cli(&db, &args);
            assert_eq!(code, 2, "{flags:?}: {err}");
            assert!(err.contains(field), "{flags:?}: {err}");
        }
    }
    let (code, _, err) = cli(
        &db,
        &["keys", "create", "--name", "x", "--budget-window", "day"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--budget-window"), "{err}");

    let keys = listed(&db);
    assert_eq!(keys.len(), 1, "no key was created by a refused command");
    assert_eq!(limits_of(&keys[0]), changed);
    let conn = Connection::open(&db).unwrap();
    assert_eq!(admin_entries(&conn).len(), 2);
    let (code, out, _) = cli(&db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_database_from_before_0005_keeps_its_keys_with_no_limits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tollgate.db");
    {
        let conn = Connection::open(&db).unwrap();
        for sql in [
            include_str!("../migrations/0001_traces.sql"),
            include_str!("../migrations/0002_ledger.sql"),
            include_str!("../migrations/0003_access.sql"),
            include_str!("../migrations/0004_billing_components.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO client_keys (id, name, prefix, hash, models, created_at_ms, expires_at_ms, revoked_at_ms)
             VALUES ('key_00000000000000aa', 'old', 'tg-oldoldol', x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff',
                     '[\"gpt-4o\"]', 1000, NULL, NULL)",
            [],
        )
        .unwrap();
    }
    // Listed as it is, before any migration.
    let keys = listed(&db);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["name"], "old");
    let none = json!({"rpm": null, "tpm": null, "max_parallel": null,
        "budget_uc": null, "budget_usd": null, "budget_window": null});
    assert_eq!(limits_of(&keys[0]), none);

    // A change migrates it; the key is kept, its limits NULL until set.
    let (code, _, err) = cli(&db, &["keys", "create", "--name", "new", "--rpm", "9"]);
    assert_eq!(code, 0, "{err}");
    let conn = Connection::open(&db).unwrap();
    let version: i64 = value(&conn, "PRAGMA user_version", []);
    assert_eq!(version, tollgate::store::SCHEMA_VERSION);
    assert!(version >= 5);
    assert_eq!(
        stored(&conn, "key_00000000000000aa"),
        (None, None, None, None, None)
    );
    let keys = listed(&db);
    assert_eq!(
        (keys[0]["name"].as_str(), &keys[0]["models"]),
        (Some("old"), &json!(["gpt-4o"]))
    );
    assert_eq!(limits_of(&keys[0]), none);
    assert_eq!(keys[1]["rpm"], 9);

    // The schema itself refuses what the API and CLI refuse.
    for sql in [
        "UPDATE client_keys SET rpm = -1",
        "UPDATE client_keys SET budget_uc = -1",
        "UPDATE client_keys SET budget_uc = 5, budget_window = 'week'",
        "UPDATE client_keys SET budget_uc = NULL, budget_window = 'day'",
    ] {
        assert!(conn.execute(sql, []).is_err(), "{sql}");
    }
}
