//! Every way the providers bill, priced by the real writer into a real
//! SQLite file: cache writes by TTL, long-context and service tiers, web
//! search calls, audio and image tokens, embeddings, and the components that
//! cannot be priced (`partial`, named). Every cost row is then recomputed
//! independently from its own row and its trace's counts; the report counts
//! partial requests; the audit digest covers the new columns; and a ledger
//! written before migration 0004 keeps verifying after it.
//!
//! Usage parsing is not under test here (the mock's usage shapes are), so the
//! records go straight to the writer, the one producer of cost rows.

mod common;

use common::{row, rows};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tollgate::audit::Checkpointer;
use tollgate::audit::encoding::{ChainKey, FieldValue, request_digest};
use tollgate::config::{Config, WriterConfig};
use tollgate::ledger::PriceBook;
use tollgate::ledger::prices::{PriceSpec, PriceTable};
use tollgate::store::{self, Books, OpenMode, WriteOp, Writer};
use tollgate::trace::{ServiceTier, Trace, Usage};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Test-local prices in the config format (USD per 1M tokens).
const PRICES: &str = r#"
[prices."anthropic/claude-test"]
input = "3"
output = "15"
cached_input = "0.30"
cache_write = "3.75"
cache_write_1h = "6"
web_search_per_1k = "10"
[[prices."anthropic/claude-test".tiers]]
above_input_tokens = 200000
input = "6"
output = "22.50"
cached_input = "0.60"
cache_write = "7.50"
cache_write_1h = "12"

[prices."anthropic/claude-no-1h"]
input = "3"
output = "15"
cached_input = "0.30"
cache_write = "3.75"

[prices."openai/gpt-test"]
input = "1.25"
output = "10"
cached_input = "0.125"
input_audio = "40"
output_audio = "80"
input_image = "0.50"
[prices."openai/gpt-test".service_tiers.flex]
input = "0.625"
output = "5"
cached_input = "0.0625"
[prices."openai/gpt-test".service_tiers.priority]
input = "2.50"
output = "20"
cached_input = "0.25"

[prices."openai/embed-test"]
input = "0.02"
output = "0"
"#;

fn table() -> PriceTable {
    #[derive(serde::Deserialize)]
    struct File {
        prices: BTreeMap<String, PriceSpec>,
    }
    let file: File = toml::from_str(PRICES).unwrap();
    PriceTable::builtin()
        .with_overrides(&file.prices, tollgate::ledger::prices::PriceSource::Config)
        .unwrap()
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn trace(provider: &str, model: &str, usage: Usage) -> Trace {
    let mut t = Trace::new("/v1/chat/completions", now_ms());
    t.provider = Some(provider.into());
    t.model_requested = Some(model.into());
    t.model_resolved = Some(model.into());
    t.status = 200;
    t.upstream_status = Some(200);
    t.upstream_attempted = true;
    t.usage = usage;
    t
}

/// Commits `traces` through the writer into `db`; returns how many the
/// writer counted as partially priced.
async fn write(db: &Path, traces: Vec<Trace>) -> u64 {
    let mut config = Config::defaults();
    config.store.path = db.to_path_buf();
    let mut conn = store::open(&config.store, OpenMode::ReadWrite).unwrap();
    store::migrate(&mut conn).unwrap();
    let books = Books {
        prices: PriceBook::new(table()),
        key: ChainKey::Unkeyed,
        checkpoints: Checkpointer::new(db.with_extension("cp"), 0, Duration::ZERO),
        store_bodies: false,
    };
    let cfg = WriterConfig {
        channel_capacity: 64,
        batch_max: 64,
        batch_max_delay: Duration::from_millis(2),
    };
    let (writer, handle) = Writer::start(conn, &cfg, books).unwrap();
    for t in traces {
        handle
            .reserve()
            .await
            .unwrap()
            .send(WriteOp::Trace(Box::new(t)));
    }
    handle.flush().await.unwrap();
    let partial = handle
        .stats()
        .partial_cost_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(handle);
    writer.join();
    partial
}

fn tollgate(args: &[&str], db: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_AUDIT_KEY")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn seq_of(conn: &Connection, trace_id: &str) -> i64 {
    common::value(
        conn,
        "SELECT seq FROM audit_log WHERE subject = ?1",
        [format!("trace:{trace_id}")],
    )
}

/// A copy of `db` with `sql` (taking the trace id as ?1) applied.
fn tampered(db: &Path, name: &str, sql: &str, trace_id: &str) -> PathBuf {
    let copy = db.with_file_name(format!("{name}.db"));
    Connection::open(db)
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let changed = Connection::open(&copy)
        .unwrap()
        .execute(sql, [trace_id])
        .unwrap();
    assert_eq!(changed, 1, "{sql}");
    copy
}

fn expect_digest_mismatch(copy: &Path, seq: i64) {
    let (ok, out) = tollgate(&["audit", "verify"], copy);
    assert!(!ok, "tampering went unnoticed:\n{out}");
    let want = format!("FAILED at seq {seq}: DigestMismatch");
    assert!(out.contains(&want), "expected {want:?}:\n{out}");
}

fn usage(input: i64, cached: i64, cache_write: i64, output: i64) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        cached_input_tokens: Some(cached),
        cache_creation_input_tokens: Some(cache_write),
        ..Usage::default()
    }
}

/// What a cost row says, next to its trace's counts.
#[derive(Debug)]
struct Priced {
    status: String,
    cost_uc: Option<i64>,
    price_tier: Option<String>,
    service_tier: Option<String>,
    unpriced: Option<String>,
}

fn priced(conn: &Connection, id: &str) -> Priced {
    let (status, cost_uc, price_tier, service_tier, unpriced) = row(
        conn,
        "SELECT status, cost_uc, price_tier, service_tier, unpriced FROM costs WHERE trace_id = ?1",
        [id],
    );
    Priced {
        status,
        cost_uc,
        price_tier,
        service_tier,
        unpriced,
    }
}

fn assert_priced(p: &Priced, status: &str, cost_uc: Option<i64>, unpriced: Option<&str>) {
    assert_eq!(
        (p.status.as_str(), p.cost_uc, p.unpriced.as_deref()),
        (status, cost_uc, unpriced),
        "{p:?}"
    );
}

/// Banker's rounding of n / d (d > 0), written apart from tollgate's.
fn round_half_even(n: i128, d: i128) -> i128 {
    let (q, r) = (n.div_euclid(d), n.rem_euclid(d));
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
    }
}

/// Recomputes every cost row from that row's rates and its trace's counts
/// alone, following docs/AUDIT.md, and compares with what was recorded.
fn recompute_every_row(conn: &Connection) -> usize {
    type Counts = [Option<i64>; 9];
    type Rates = [Option<i64>; 9];
    type Recorded = (String, String, Option<i64>, Option<String>, Counts, Rates);
    let all: Vec<Recorded> = conn
        .prepare(
            "SELECT c.trace_id, c.status, c.cost_uc, c.unpriced,
                    t.input_tokens, t.output_tokens, t.cached_input_tokens,
                    t.cache_creation_input_tokens, t.cache_write_1h_tokens,
                    t.input_audio_tokens, t.output_audio_tokens, t.input_image_tokens,
                    t.web_search_calls,
                    c.price_input, c.price_output, c.price_cached_input, c.price_cache_write,
                    c.price_cache_write_1h, c.price_input_audio, c.price_output_audio,
                    c.price_input_image, c.price_web_search_per_1k
             FROM costs c JOIN traces t ON t.id = c.trace_id",
        )
        .unwrap()
        .query_map([], |r| {
            let mut counts = [None; 9];
            let mut rates = [None; 9];
            for i in 0..9 {
                counts[i] = r.get(4 + i)?;
                rates[i] = r.get(13 + i)?;
            }
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, counts, rates))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (id, status, cost_uc, unpriced, counts, rates) in &all {
        if !matches!(status.as_str(), "priced" | "partial") {
            assert_eq!(*cost_uc, None, "{id}: {status}");
            continue;
        }
        let n = |i: usize| i128::from(counts[i].unwrap_or(0));
        let [
            input,
            output,
            cached,
            writes,
            writes_1h,
            audio_in,
            audio_out,
            image,
            calls,
        ] = [0, 1, 2, 3, 4, 5, 6, 7, 8].map(n);
        let price_input = rates[0].expect("price_input");
        let or_input = |r: Option<i64>| Some(r.unwrap_or(price_input));
        // (name, count in millionths of the rate's unit, rate)
        let components = [
            (
                "input",
                input - cached - writes - audio_in - image,
                Some(price_input),
            ),
            ("cached_input", cached, or_input(rates[2])),
            ("cache_write", writes - writes_1h, or_input(rates[3])),
            ("cache_write_1h", writes_1h, rates[4]),
            ("input_audio", audio_in, rates[5]),
            ("input_image", image, or_input(rates[7])),
            ("output", output - audio_out, rates[1]),
            ("output_audio", audio_out, rates[6]),
            ("web_search", calls * 1000, rates[8]),
        ];
        let mut sum = 0i128;
        let mut missing = Vec::new();
        for (name, count, rate) in components {
            assert!(count >= 0, "{id}: {name}");
            match rate {
                Some(rate) => sum += count * i128::from(rate),
                None if count > 0 => missing.push(name),
                None => {}
            }
        }
        let want = i64::try_from(round_half_even(sum, 1_000_000)).unwrap();
        assert_eq!(*cost_uc, Some(want), "{id}");
        let missing = (!missing.is_empty()).then(|| missing.join(","));
        assert_eq!(unpriced, &missing, "{id}");
        assert_eq!(status == "partial", missing.is_some(), "{id}");
    }
    all.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_billed_component_is_priced_and_recomputable_from_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tollgate.db");
    let claude = |u| trace("anthropic", "claude-test", u);
    let gpt = |u| trace("openai", "gpt-test", u);
    let tier = |t, u: Usage| Usage {
        service_tier: Some(t),
        ..u
    };
    let traces = vec![
        // 0: 5-minute and 1-hour writes in one request.
        claude(Usage {
            cache_write_1h_tokens: Some(1_000),
            ..usage(8_100, 5_000, 3_000, 400)
        }),
        // 1: over the 200k long-context threshold.
        claude(Usage {
            cache_write_1h_tokens: Some(2_000),
            ..usage(250_000, 40_000, 10_000, 1_000)
        }),
        // 2, 3: flex and priority; 4: priority asked, default served.
        gpt(tier(ServiceTier::Flex, usage(10_000, 4_000, 0, 2_000))),
        gpt(tier(ServiceTier::Priority, usage(10_000, 4_000, 0, 2_000))),
        gpt(tier(ServiceTier::Default, usage(10_000, 4_000, 0, 2_000))),
        // 5: a tier the table has no prices for.
        gpt(tier(ServiceTier::Scale, usage(10_000, 4_000, 0, 2_000))),
        // 6: web search calls.
        claude(Usage {
            web_search_calls: Some(3),
            ..usage(1_000, 0, 0, 100)
        }),
        // 7: audio in and out.
        gpt(Usage {
            input_audio_tokens: Some(1_000),
            output_audio_tokens: Some(500),
            ..usage(1_500, 0, 0, 700)
        }),
        // 8: image tokens.
        gpt(Usage {
            input_image_tokens: Some(2_000),
            ..usage(3_000, 0, 0, 0)
        }),
        // 9: 1-hour writes and web search with no rate: partial.
        trace(
            "anthropic",
            "claude-no-1h",
            Usage {
                cache_write_1h_tokens: Some(1_000),
                web_search_calls: Some(2),
                ..usage(8_100, 5_000, 3_000, 400)
            },
        ),
        // 10: embeddings, per input token.
        trace(
            "openai",
            "embed-test",
            Usage {
                input_tokens: Some(12_345),
                ..Usage::default()
            },
        ),
    ];
    let ids: Vec<String> = traces.iter().map(|t| t.id.clone()).collect();
    assert_eq!(write(&db, traces).await, 1);

    let conn = store::open(
        &tollgate::config::StoreConfig {
            path: db.clone(),
            ..Config::defaults().store
        },
        OpenMode::ReadOnly,
    )
    .unwrap();
    let p: Vec<Priced> = ids.iter().map(|id| priced(&conn, id)).collect();

    // 100 × 300 + 5,000 × 30 + 2,000 × 375 + 1,000 × 600 + 400 × 1,500 µ¢.
    assert_priced(&p[0], "priced", Some(2_130_000), None);
    assert_eq!(p[0].price_tier, None);
    // All at the tier's rates: 200,000 × 600 + 40,000 × 60 + 8,000 × 750
    // + 2,000 × 1,200 + 1,000 × 2,250 µ¢.
    assert_priced(&p[1], "priced", Some(133_050_000), None);
    assert_eq!(p[1].price_tier.as_deref(), Some("above_200000"));
    // 6,000 × 62.5 + 4,000 × 6.25 + 2,000 × 500 µ¢.
    assert_priced(&p[2], "priced", Some(1_400_000), None);
    assert_eq!(p[2].service_tier.as_deref(), Some("flex"));
    // 6,000 × 250 + 4,000 × 25 + 2,000 × 2,000 µ¢.
    assert_priced(&p[3], "priced", Some(5_600_000), None);
    assert_eq!(p[3].service_tier.as_deref(), Some("priority"));
    // 6,000 × 125 + 4,000 × 12.5 + 2,000 × 1,000 µ¢.
    assert_priced(&p[4], "priced", Some(2_800_000), None);
    assert_eq!(p[4].service_tier.as_deref(), Some("default"));
    // Never priced as default.
    assert_priced(&p[5], "unknown_price", None, Some("service_tier"));
    assert_eq!(p[5].service_tier.as_deref(), Some("scale"));
    // 1,000 × 300 + 100 × 1,500 µ¢ + 3 calls at $10 per 1,000.
    assert_priced(&p[6], "priced", Some(3_450_000), None);
    // 500 × 125 + 1,000 × 4,000 + 200 × 1,000 + 500 × 8,000 µ¢.
    assert_priced(&p[7], "priced", Some(8_262_500), None);
    // 1,000 × 125 + 2,000 × 50 µ¢.
    assert_priced(&p[8], "priced", Some(225_000), None);
    // The priced rest: 100 × 300 + 5,000 × 30 + 2,000 × 375 + 400 × 1,500 µ¢.
    assert_priced(
        &p[9],
        "partial",
        Some(1_530_000),
        Some("cache_write_1h,web_search"),
    );
    // 12,345 × 2 µ¢.
    assert_priced(&p[10], "priced", Some(24_690), None);

    // The counts are on the traces rows.
    type Five = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let counts: Five = row(
        &conn,
        "SELECT cache_write_1h_tokens, input_audio_tokens, output_audio_tokens,
                input_image_tokens, web_search_calls FROM traces WHERE id = ?1",
        [&ids[7]],
    );
    assert_eq!(counts, (None, Some(1_000), Some(500), None, None));
    let served: Option<String> = common::value(
        &conn,
        "SELECT service_tier FROM traces WHERE id = ?1",
        [&ids[2]],
    );
    assert_eq!(served.as_deref(), Some("flex"));

    assert_eq!(recompute_every_row(&conn), ids.len());

    // The rollup and the report count the partial request beside the unknown one.
    let (partial, unknown): (i64, i64) = row(
        &conn,
        "SELECT sum(partial_cost_requests), sum(unknown_cost_requests) FROM cost_daily",
        [],
    );
    assert_eq!((partial, unknown), (1, 1));
    let (ok, out) = tollgate(&["report", "costs", "--format", "json"], &db);
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["total"]["partial_cost_requests"], 1, "{out}");
    assert_eq!(report["total"]["unknown_cost_requests"], 1, "{out}");
    let recorded: i64 = common::value(&conn, "SELECT sum(cost_uc) FROM costs", []);
    assert_eq!(report["total"]["cost_uc"], recorded);
    let (ok, out) = tollgate(&["report", "costs"], &db);
    assert!(ok, "{out}");
    assert!(out.contains("PARTIAL COST"), "{out}");
    assert!(out.contains("1 request(s) have a partial cost"), "{out}");

    // The audit digest covers the new columns.
    let (ok, out) = tollgate(&["audit", "verify"], &db);
    assert!(ok, "{out}");
    let raised = tampered(
        &db,
        "raised-1h",
        "UPDATE costs SET price_cache_write_1h = price_cache_write_1h + 1 WHERE trace_id = ?1",
        &ids[0],
    );
    expect_digest_mismatch(&raised, seq_of(&conn, &ids[0]));
    let set = tampered(
        &db,
        "set-search",
        "UPDATE costs SET price_web_search_per_1k = 1 WHERE trace_id = ?1",
        &ids[7],
    );
    expect_digest_mismatch(&set, seq_of(&conn, &ids[7]));
    let hidden = tampered(
        &db,
        "hidden-partial",
        "UPDATE costs SET unpriced = NULL WHERE trace_id = ?1",
        &ids[9],
    );
    expect_digest_mismatch(&hidden, seq_of(&conn, &ids[9]));
    let calls = tampered(
        &db,
        "fewer-calls",
        "UPDATE traces SET web_search_calls = 2 WHERE id = ?1",
        &ids[6],
    );
    expect_digest_mismatch(&calls, seq_of(&conn, &ids[6]));
    let tier = tampered(
        &db,
        "other-tier",
        "UPDATE traces SET service_tier = 'default' WHERE id = ?1",
        &ids[2],
    );
    expect_digest_mismatch(&tier, seq_of(&conn, &ids[2]));
}

/// The first three migrations, as a database written before issue 14 has them.
const OLD_MIGRATIONS: [&str; 3] = [
    include_str!("../migrations/0001_traces.sql"),
    include_str!("../migrations/0002_ledger.sql"),
    include_str!("../migrations/0003_access.sql"),
];

type OldRow = Vec<(&'static str, rusqlite::types::Value)>;

/// The `traces` and `costs` columns of record format v1 and one request's
/// values, as the writer stored and digested them before migration 0004.
fn old_request(id: &str, input: i64) -> (OldRow, OldRow) {
    use rusqlite::types::Value::{Integer, Null, Text};
    let traces = vec![
        ("id", Text(id.into())),
        ("started_at_ms", Integer(now_ms())),
        ("endpoint", Text("/v1/messages".into())),
        ("provider", Text("anthropic".into())),
        ("model_requested", Text("claude-test".into())),
        ("model_resolved", Text("claude-test".into())),
        ("stream", Integer(0)),
        ("status", Integer(200)),
        ("upstream_status", Integer(200)),
        ("error_kind", Null),
        ("error_message", Null),
        ("finish_reason", Text("end_turn".into())),
        ("upstream_request_id", Null),
        ("total_us", Integer(1234)),
        ("ttfb_us", Integer(1000)),
        ("upstream_ttfb_us", Integer(900)),
        ("upstream_us", Integer(1100)),
        ("input_tokens", Integer(input)),
        ("output_tokens", Integer(10)),
        ("cached_input_tokens", Integer(0)),
        ("cache_creation_input_tokens", Integer(200)),
        ("reasoning_tokens", Null),
        ("request_bytes", Integer(50)),
        ("response_bytes", Integer(60)),
        ("client_key_id", Null),
        ("request_body", Null),
        ("response_body", Null),
    ];
    // input × 300 + 200 writes × 375 + 10 × 1,500 µ¢ (all writes at one rate).
    let cost = (input - 200) * 300 + 200 * 375 + 10 * 1_500;
    let costs = vec![
        ("trace_id", Text(id.into())),
        ("day", Text("2026-01-01".into())),
        ("provider", Text("anthropic".into())),
        ("model", Text("claude-test".into())),
        ("client_key_id", Text(String::new())),
        ("status", Text("priced".into())),
        ("cost_uc", Integer(cost)),
        ("price_source", Text("config".into())),
        ("price_input", Integer(300_000_000)),
        ("price_output", Integer(1_500_000_000)),
        ("price_cached_input", Integer(30_000_000)),
        ("price_cache_write", Integer(375_000_000)),
    ];
    (traces, costs)
}

fn field(v: &rusqlite::types::Value) -> FieldValue<'_> {
    use rusqlite::types::Value;
    match v {
        Value::Null => FieldValue::Null,
        Value::Integer(n) => FieldValue::Integer(*n),
        Value::Real(f) => FieldValue::Real(*f),
        Value::Text(s) => FieldValue::Text(s),
        Value::Blob(b) => FieldValue::Blob(b),
    }
}

fn insert(conn: &Connection, table: &str, row: &[(&str, rusqlite::types::Value)]) {
    let names: Vec<&str> = row.iter().map(|(n, _)| *n).collect();
    let marks: Vec<String> = (1..=row.len()).map(|i| format!("?{i}")).collect();
    conn.execute(
        &format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            marks.join(", ")
        ),
        rusqlite::params_from_iter(row.iter().map(|(_, v)| v)),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_from_before_migration_0004_keeps_verifying_and_new_columns_are_covered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tollgate.db");
    // A schema-3 database with two requests recorded the old way: rows of
    // the v1 columns, each digested over exactly those, chained unkeyed.
    let old_ids = [
        "01900000-0000-7000-8000-000000000001",
        "01900000-0000-7000-8000-000000000002",
    ];
    {
        let conn = Connection::open(&db).unwrap();
        for sql in OLD_MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        // A price override set through the admin API before 0004.
        conn.execute(
            "INSERT INTO price_overrides (provider, model, input, output, cached_input, cache_write, updated_at_ms)
             VALUES ('openai', 'gpt-old', '1', '2', '0.5', NULL, 0)",
            [],
        )
        .unwrap();
        let mut head = None;
        for (i, id) in old_ids.iter().enumerate() {
            let (traces, costs) = old_request(id, 1_000 + i as i64);
            insert(&conn, "traces", &traces);
            insert(&conn, "costs", &costs);
            let t: Vec<(&str, FieldValue<'_>)> =
                traces.iter().map(|(n, v)| (*n, field(v))).collect();
            let c: Vec<(&str, FieldValue<'_>)> =
                costs.iter().map(|(n, v)| (*n, field(v))).collect();
            head = Some(
                tollgate::store::audit_sql::append(
                    &conn,
                    &ChainKey::Unkeyed,
                    head,
                    now_ms(),
                    "anonymous",
                    "proxy.request",
                    &format!("trace:{id}"),
                    request_digest(&t, &c),
                    None,
                )
                .unwrap(),
            );
        }
    }
    // Today's binary reads it as it is, before any migration.
    let (ok, out) = tollgate(&["audit", "verify"], &db);
    assert!(ok && out.contains("ok: 2 entries checked"), "{out}");
    let (ok, out) = tollgate(
        &[
            "report",
            "costs",
            "--format",
            "json",
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-01",
        ],
        &db,
    );
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["total"]["partial_cost_requests"], 0, "{out}");

    // The writer migrates it to the current schema and adds a request that
    // uses the new columns.
    let new = trace(
        "anthropic",
        "claude-test",
        Usage {
            cache_write_1h_tokens: Some(100),
            web_search_calls: Some(1),
            service_tier: Some(ServiceTier::Default),
            ..usage(1_000, 0, 200, 10)
        },
    );
    let new_id = new.id.clone();
    assert_eq!(write(&db, vec![new]).await, 0);
    let conn = Connection::open(&db).unwrap();
    let version: i64 = common::value(&conn, "PRAGMA user_version", []);
    assert_eq!(version, tollgate::store::SCHEMA_VERSION);
    assert!(version >= 4);
    // The old rows are untouched: NULL in every new column.
    let old: Vec<(String, Option<i64>, Option<String>)> = rows(
        &conn,
        "SELECT c.trace_id, c.price_cache_write_1h, t.service_tier FROM costs c
         JOIN traces t ON t.id = c.trace_id WHERE c.price_cache_write_1h IS NULL ORDER BY c.trace_id",
    );
    assert_eq!(
        old,
        old_ids
            .iter()
            .map(|id| (id.to_string(), None, None))
            .collect::<Vec<_>>()
    );
    // 800 × 300 + 100 × 375 + 100 × 600 + 10 × 1,500 + 1 call × 1,000,000 µ¢.
    let cost: Option<i64> = common::value(
        &conn,
        "SELECT cost_uc FROM costs WHERE trace_id = ?1",
        [&new_id],
    );
    assert_eq!(cost, Some(240_000 + 37_500 + 60_000 + 15_000 + 1_000_000));

    // The old override reads back as the spec it was.
    let stored = tollgate::store::access_sql::price_overrides(&conn).unwrap();
    assert_eq!(
        stored["openai/gpt-old"],
        PriceSpec {
            cached_input: Some("0.5".into()),
            ..PriceSpec::flat("1", "2")
        }
    );
    drop(conn);

    let (ok, out) = tollgate(&["audit", "verify"], &db);
    assert!(ok, "{out}");
    assert!(out.contains("ok: 3 entries checked"), "{out}");

    // A new column set on an old row, or changed on the new one, is caught.
    let forged = tampered(
        &db,
        "old-row-1h",
        "UPDATE costs SET price_cache_write_1h = 1 WHERE trace_id = ?1",
        old_ids[1],
    );
    expect_digest_mismatch(&forged, 2);
    let forged = tampered(
        &db,
        "old-row-calls",
        "UPDATE traces SET web_search_calls = 0 WHERE id = ?1",
        old_ids[0],
    );
    expect_digest_mismatch(&forged, 1);
    let raised = tampered(
        &db,
        "new-row-1h",
        "UPDATE costs SET price_cache_write_1h = price_cache_write_1h * 2 WHERE trace_id = ?1",
        &new_id,
    );
    expect_digest_mismatch(&raised, 3);
}
