//! Runtime module settings (issue 9), black-box: `GET/PUT/DELETE
//! /admin/v1/modules[/{name}]` and `tollgate modules …` switch a module off
//! and on and reconfigure it without a restart; changes are validated
//! (naming the field, changing nothing), audited, persisted across a
//! restart, and win over the config file's `[modules.NAME]`.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

/// One request per minute for everyone (the proxy runs open in tests, so
/// all requests share the anonymous key's limits).
const ONE_RPM: &str = "[modules.rate_limit]\nrpm = 1\n";

async fn chat_status(gw: &Gateway) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn module<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no module {name} in {list}"))
}

fn module_entries(db: &rusqlite::Connection) -> Vec<(String, String, String, String)> {
    rows(
        db,
        "SELECT actor, action, subject, detail FROM audit_log WHERE action LIKE 'module.%' ORDER BY seq",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_switched_off_and_on_through_the_api_applies_at_once_and_is_audited() {
    let gw = Gateway::start_with(MockConfig::default(), ONE_RPM).await;
    let (status, list) = admin_call(&gw, Method::GET, "/modules", None).await;
    assert_eq!(status, 200, "{list}");
    let rl = module(&list, "rate_limit");
    assert_eq!(rl["enabled"], true);
    assert_eq!(rl["source"], "config");
    assert_eq!(rl["settings"]["rpm"], 1);

    assert_eq!(chat_status(&gw).await, 200);
    assert_eq!(chat_status(&gw).await, 429);

    let (status, off) = admin_call(
        &gw,
        Method::PUT,
        "/modules/rate_limit",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{off}");
    assert_eq!(off["enabled"], false);
    assert_eq!(off["source"], "database");
    assert_eq!(off["overrides"], json!({"enabled": false}));
    assert_eq!(off["settings"]["rpm"], 1, "members not named are kept");
    for _ in 0..3 {
        assert_eq!(chat_status(&gw).await, 200, "the limit is off");
    }

    let (status, on) = admin_call(
        &gw,
        Method::PUT,
        "/modules/rate_limit",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(chat_status(&gw).await, 429, "the limit is back");

    let entries = module_entries(&gw.db());
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (actor, action, subject, detail) = &entries[0];
    assert_eq!(
        (actor.as_str(), action.as_str(), subject.as_str()),
        ("admin", "module.set", "module:rate_limit")
    );
    let detail: Value = serde_json::from_str(detail).unwrap();
    assert_eq!(detail["old"]["enabled"], true);
    assert_eq!(detail["new"]["enabled"], false);
    let refused: String = value(
        &gw.db(),
        "SELECT error_kind FROM traces WHERE status = 429 LIMIT 1",
        [],
    );
    assert_eq!(refused, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_module_settings_are_refused_naming_the_field_and_change_nothing() {
    let gw = Gateway::start_with(MockConfig::default(), ONE_RPM).await;
    let cases = [
        ("/modules/rate_limit", json!({"rpm": -1}), "rate_limit.rpm"),
        (
            "/modules/rate_limit",
            json!({"rpm": "ten"}),
            "rate_limit.rpm",
        ),
        ("/modules/rate_limit", json!({"rpn": 5}), "rate_limit.rpn"),
        (
            "/modules/rate_limit",
            json!({"max_parallel": 5_000_000_000u64}),
            "rate_limit.max_parallel",
        ),
        ("/modules/rate_limit", json!({}), "at least one"),
        ("/modules/rate_limit", json!([true]), "JSON object"),
        (
            "/modules/warp_drive",
            json!({"enabled": true}),
            "warp_drive",
        ),
    ];
    for (path, body, names) in cases {
        let (status, err) = admin_call(&gw, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body} → {message}");
    }
    let (status, _) = admin_call(&gw, Method::GET, "/modules/warp_drive", None).await;
    assert_eq!(status, 404);
    let (status, _) = admin_call(&gw, Method::POST, "/modules/rate_limit", None).await;
    assert_eq!(status, 405);

    let (_, now) = admin_call(&gw, Method::GET, "/modules/rate_limit", None).await;
    assert_eq!(
        (now["source"].clone(), now["settings"]["rpm"].clone()),
        (json!("config"), json!(1))
    );
    assert!(module_entries(&gw.db()).is_empty());
    let stored: i64 = value(&gw.db(), "SELECT count(*) FROM module_settings", []);
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_settings_survive_a_restart_and_win_over_the_file_until_reset() {
    let mut gw = Gateway::start_with(MockConfig::default(), ONE_RPM).await;
    let (status, _) = admin_call(
        &gw,
        Method::PUT,
        "/modules/rate_limit",
        Some(json!({"rpm": 3})),
    )
    .await;
    assert_eq!(status, 200);
    gw.restart(ONE_RPM).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(chat_status(&gw).await);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "rpm 3 from the database, not 1 from the file"
    );

    let (status, view) = admin_call(&gw, Method::DELETE, "/modules/rate_limit", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (view["source"].clone(), view["settings"]["rpm"].clone()),
        (json!("config"), json!(1))
    );
    let (status, _) = admin_call(&gw, Method::DELETE, "/modules/rate_limit", None).await;
    assert_eq!(status, 404);
    let actions: Vec<String> = column(
        &gw.db(),
        "SELECT action FROM audit_log WHERE action LIKE 'module.%' ORDER BY seq",
    );
    assert_eq!(actions, ["module.set", "module.reset"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_switches_a_module_of_a_running_gateway_within_a_second() {
    let gw = Gateway::start_with(MockConfig::default(), ONE_RPM).await;
    assert_eq!(chat_status(&gw).await, 200);
    assert_eq!(chat_status(&gw).await, 429);

    let (code, out, err) = cli(&gw.db, &["modules", "disable", "rate_limit"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("module rate_limit set"), "{out}");
    // In force within a second (the server polls); allow for a slow machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while chat_status(&gw).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still limited after the CLI switched it off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, list) = admin_call(&gw, Method::GET, "/modules", None).await;
    assert_eq!(module(&list, "rate_limit")["enabled"], false);

    let (code, out, _) = cli(&gw.db, &["modules", "list", "--json"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).unwrap();
    let rl = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "rate_limit")
        .unwrap();
    assert_eq!(
        (rl["enabled"].clone(), rl["source"].clone()),
        (json!(false), json!("database"))
    );

    for (args, code_wanted, says) in [
        (vec!["modules", "enable", "warp_drive"], 2, "warp_drive"),
        (
            vec!["modules", "set", "rate_limit", "rpm=-5"],
            2,
            "rate_limit.rpm",
        ),
        (vec!["modules", "set", "rate_limit", "rpm"], 2, "KEY=VALUE"),
    ] {
        let (code, _, err) = cli(&gw.db, &args);
        assert_eq!(code, code_wanted, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, _, err) = cli(
        &gw.db,
        &["modules", "set", "rate_limit", "rpm=2", "enabled=true"],
    );
    assert_eq!(code, 0, "{err}");
    let actors: Vec<String> = column(
        &gw.db(),
        "SELECT actor FROM audit_log WHERE action = 'module.set'",
    );
    assert_eq!(actors.len(), 2);
    assert!(actors.iter().all(|a| a.starts_with("cli")), "{actors:?}");
    let (code, out, _) = cli(&gw.db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
}
