//! Fills a database with realistic traces for the dashboard benchmark
//! (`benches/dashboard.sh`): 90 days, three providers, a dozen models, 50
//! client keys, a mix of statuses, error kinds, streams and cache hits.
//!
//! Every record goes through tollgate's own writer (`store::Writer`): the
//! migrations, `ledger::assess`, the trace / cost inserts, the hash chain and
//! the daily rollups are the real ones, so the file is what `tollgate serve`
//! would have written and `tollgate audit verify` passes on it. The keys are
//! created with the same audited change as `tollgate keys create`.
//!
//! ```text
//! cargo bench --bench gen_traces -- --db PATH [--traces N] [--days D] [--verify]
//! ```
//! `--traces` defaults to 10,000,000 when `--db` is given. Without `--db`
//! (`cargo bench`, `cargo test --benches`, `-- --test`) it fills 5,000 traces
//! into a temporary file and checks the chain, as a smoke test.
//!
//! Speed: the writer's connection runs with `synchronous = OFF` during the
//! fill (a crash loses the file, which is only a benchmark fixture); the
//! journal stays WAL, so the file is ready for `serve` as it is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tollgate::audit::Checkpointer;
use tollgate::audit::encoding::ChainKey;
use tollgate::config::{Config, WriterConfig};
use tollgate::ledger::PriceBook;
use tollgate::ledger::prices::PriceTable;
use tollgate::store::{self, Books, OpenMode, WriteOp, Writer, WriterHandle};
use tollgate::trace::{CacheStatus, ErrorKind, Trace, Usage};

const DAY_MS: i64 = 86_400_000;
const SMOKE_TRACES: u64 = 5_000;
const KEYS: usize = 50;

struct Args {
    db: Option<PathBuf>,
    traces: Option<u64>,
    days: i64,
    verify: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        db: None,
        traces: None,
        days: 90,
        verify: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--db" => args.db = Some(PathBuf::from(value("--db"))),
            "--traces" => {
                args.traces = Some(value("--traces").parse().expect("--traces: a number"))
            }
            "--days" => args.days = value("--days").parse().expect("--days: a number"),
            "--verify" => args.verify = true,
            // What cargo passes to benches and tests; nothing to do.
            _ => {}
        }
    }
    assert!(args.days >= 1, "--days must be at least 1");
    args
}

fn main() {
    let args = parse_args();
    match &args.db {
        Some(db) => {
            let traces = args.traces.unwrap_or(10_000_000);
            assert!(
                !db.exists(),
                "{} exists: remove it first (the generator only fills new files)",
                db.display()
            );
            fill(db, traces, args.days);
            if args.verify {
                verify(db, traces);
            }
        }
        None => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let db = dir.path().join("gen.db");
            let traces = args.traces.unwrap_or(SMOKE_TRACES);
            fill(&db, traces, args.days);
            verify(&db, traces);
        }
    }
}

/// Writes `traces` records ending now, spread over `days` days.
fn fill(db: &Path, traces: u64, days: i64) {
    let mut config = Config::defaults();
    config.store.path = db.to_path_buf();
    let mut conn = store::open(&config.store, OpenMode::ReadWrite).expect("open the database");
    store::migrate(&mut conn).expect("migrate");
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")
        .expect("fill PRAGMAs");
    // The dashboard's indexes are built once at the end (as the migration
    // builds them on an existing database), not kept up row by row.
    for name in dashboard_indexes() {
        conn.execute_batch(&format!("DROP INDEX {name}"))
            .expect("drop a dashboard index");
    }
    let books = Books {
        prices: PriceBook::new(PriceTable::builtin()),
        key: ChainKey::Unkeyed,
        checkpoints: Checkpointer::new(checkpoint_path(db), 1_000_000, Duration::ZERO),
        store_bodies: true,
    };
    let cfg = WriterConfig {
        channel_capacity: 65_536,
        batch_max: 16_384,
        batch_max_delay: Duration::from_millis(20),
    };
    let (writer, handle) = Writer::start(conn, &cfg, books).expect("start the writer");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    rt.block_on(async {
        let keys = create_keys(&handle).await;
        let now = tollgate::trace::now_ms();
        let first = now - days * DAY_MS;
        let span = (now - first) as u64;
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        // Progress only for big fills.
        let report_every = if traces >= 1_000_000 {
            traces / 20
        } else {
            u64::MAX
        };
        for i in 0..traces {
            // Evenly spaced, a little jitter, never in the future.
            let at = first + (span as u128 * i as u128 / traces.max(1) as u128) as i64;
            let at = (at + rng.below(1_000) as i64).min(now);
            let trace = realistic(&mut rng, at, &keys);
            handle
                .reserve()
                .await
                .expect("writer alive")
                .send(WriteOp::Trace(Box::new(trace)));
            if (i + 1) % report_every == 0 {
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "gen_traces: {:>10} traces, {:>6.0} s, {:>8.0} traces/s",
                    i + 1,
                    secs,
                    (i + 1) as f64 / secs
                );
            }
        }
        handle.flush().await.expect("flush");
    });
    drop(handle);
    writer.join();
    let fill_secs = started.elapsed().as_secs_f64();
    let conn = store::open(&config.store, OpenMode::ReadWrite).expect("reopen");
    let indexing = Instant::now();
    conn.execute_batch(DASHBOARD_INDEXES)
        .expect("build the dashboard indexes");
    let index_secs = indexing.elapsed().as_secs_f64();
    // Fold the WAL into the file so the first reader does not pay for it.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint the WAL");
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    println!(
        "gen_traces: {traces} traces in {secs:.1} s: rows {fill_secs:.1} s ({:.0} traces/s), \
         migration 0010's indexes {index_secs:.1} s; {} MB at {}",
        traces as f64 / fill_secs,
        bytes / 1_000_000,
        db.display()
    );
}

/// Migration 0010, run again after the fill (every statement is a CREATE INDEX).
const DASHBOARD_INDEXES: &str = include_str!("../migrations/0010_dashboard_indexes.sql");

/// The names of the indexes migration 0010 creates.
fn dashboard_indexes() -> Vec<&'static str> {
    DASHBOARD_INDEXES
        .split("CREATE INDEX ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect()
}

fn checkpoint_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".checkpoints");
    PathBuf::from(p)
}

/// Fifty keys, as `tollgate keys create` makes them (audited); some with
/// limits and a monthly budget, one revoked.
async fn create_keys(handle: &WriterHandle) -> Vec<String> {
    let mut ids = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let (mut row, _plaintext) =
            tollgate::access::client_key_row(&format!("app-{i:02}"), None, None)
                .expect("a key row");
        if i % 5 == 0 {
            row.limits.rpm = Some(600);
            row.limits.budget_uc = Some(50_000_000_000); // $500
            row.limits.budget_window = Some(tollgate::store::access_sql::BudgetWindow::Month);
        }
        handle
            .audit(tollgate::admin::changes::create_client_key(
                "gen_traces",
                &row,
            ))
            .await
            .expect("create a key");
        ids.push(row.id);
    }
    let revoked = tollgate::admin::changes::revoke_client_key(
        "gen_traces",
        &ids[KEYS - 1],
        tollgate::trace::now_ms(),
    );
    handle.audit(revoked).await.expect("revoke a key");
    ids
}

/// `(provider, endpoint, model, relative weight)`; the last provider's
/// models have no built-in price (their cost is unknown, as in real life
/// with a self-hosted model).
const MODELS: &[(&str, &str, &str, u64)] = &[
    ("openai", "/v1/chat/completions", "gpt-4o-mini", 22),
    ("openai", "/v1/chat/completions", "gpt-5.4-mini", 14),
    ("openai", "/v1/chat/completions", "gpt-5.4", 6),
    ("openai", "/v1/responses", "gpt-5.4-nano", 8),
    ("openai", "/v1/chat/completions", "gpt-4.1-mini", 6),
    ("openai", "/v1/embeddings", "text-embedding-3-small", 10),
    ("anthropic", "/v1/messages", "claude-sonnet-4-5", 14),
    ("anthropic", "/v1/messages", "claude-opus-4-1", 3),
    ("anthropic", "/v1/messages", "claude-sonnet-4-0", 5),
    ("local", "/v1/chat/completions", "llama-3.3-70b", 8),
    ("local", "/v1/chat/completions", "qwen3-32b", 4),
];

/// One request as the proxy would have recorded it.
fn realistic(rng: &mut Rng, at: i64, keys: &[String]) -> Trace {
    let &(provider, endpoint, model, _) = pick_model(rng);
    let mut t = Trace::new(endpoint, at);
    t.id = trace_id(at);
    // A few keys do most of the traffic.
    let k = (rng.below(KEYS as u64 * KEYS as u64) as f64).sqrt() as usize;
    t.client_key_id = Some(keys[KEYS - 1 - k.min(KEYS - 1)].clone());
    t.provider = Some(provider.into());
    t.model_requested = Some(model.into());
    t.model_resolved = Some(model.into());
    let embeddings = endpoint == "/v1/embeddings";
    t.stream = !embeddings && rng.below(100) < 60;
    t.request_bytes = 400 + rng.below(20_000) as i64;
    let input = 50 + rng.below(4_000) as i64 + if rng.below(10) == 0 { 60_000 } else { 0 };
    let output = if embeddings {
        0
    } else {
        20 + rng.below(1_200) as i64
    };
    let mut usage = Usage {
        input_tokens: Some(input),
        output_tokens: (!embeddings).then_some(output),
        ..Usage::default()
    };
    if !embeddings && rng.below(3) == 0 {
        usage.cached_input_tokens = Some(input / 2);
    }
    if provider == "anthropic" && rng.below(5) == 0 {
        usage.cache_creation_input_tokens = Some(input / 4);
    }
    if model.starts_with("gpt-5") && !embeddings {
        usage.reasoning_tokens = Some(output / 3);
    }
    let total_us = 150_000 + rng.below(6_000_000) as i64 + output * 800;
    let upstream_ttfb = 80_000 + rng.below(900_000) as i64;
    // Cache: on for most keys' traffic; a hit never goes upstream.
    let cache_roll = rng.below(100);
    let cache = match cache_roll {
        0..8 if !t.stream => Some(CacheStatus::Hit),
        8..40 => Some(CacheStatus::Miss),
        40..43 => Some(CacheStatus::Skip),
        _ => None,
    };
    t.cache.status = cache;
    if cache == Some(CacheStatus::Hit) {
        t.status = 200;
        t.finish_reason = (!embeddings).then(|| "stop".into());
        t.usage = usage;
        t.cache.saved_uc = Some(1_000 + rng.below(2_000_000) as i64);
        t.total_us = 300 + rng.below(3_000) as i64;
        t.ttfb_us = Some(t.total_us - 100);
        t.response_bytes = 800 + rng.below(8_000) as i64;
        return t;
    }
    t.upstream_attempted = true;
    let roll = rng.below(10_000);
    match roll {
        // Refused by tollgate before going upstream.
        0..40 => refuse(&mut t, 400, ErrorKind::InvalidRequest, "messages: missing"),
        40..60 => {
            refuse(&mut t, 404, ErrorKind::UnknownModel, "no route for model");
            t.provider = None;
            t.model_resolved = None;
        }
        60..100 => refuse(&mut t, 429, ErrorKind::RateLimited, "rpm exceeded"),
        100..120 => refuse(&mut t, 402, ErrorKind::BudgetExceeded, "monthly budget"),
        120..130 => refuse(&mut t, 503, ErrorKind::BreakerOpen, "breaker open"),
        // The upstream refused or failed.
        130..300 => upstream_error(&mut t, 429, "rate_limit_error", total_us),
        300..360 => upstream_error(&mut t, 500, "server_error", total_us),
        360..420 => upstream_error(&mut t, 529, "overloaded_error", total_us),
        420..450 => {
            t.fail(ErrorKind::UpstreamUnreachable, "connection refused");
            t.status = 502;
            t.total_us = 2_000 + rng.below(50_000) as i64;
        }
        450..480 => {
            t.fail(ErrorKind::UpstreamTimeout, "no first byte in time");
            t.status = 504;
            t.total_us = 30_000_000;
        }
        // Broken or abandoned streams: some usage seen, status already 200.
        480..520 if t.stream => {
            t.fail(ErrorKind::UpstreamStreamBroken, "stream ended early");
            answered(&mut t, usage, total_us, upstream_ttfb);
            t.usage.output_tokens = Some(output / 2);
            t.finish_reason = None;
        }
        520..600 if t.stream => {
            t.fail(ErrorKind::ClientDisconnected, "client went away");
            answered(&mut t, Usage::default(), total_us / 2, upstream_ttfb);
            t.finish_reason = None;
        }
        _ => {
            answered(&mut t, usage, total_us, upstream_ttfb);
            if rng.below(100) < 3 {
                t.attempts = Some(2);
                t.attempt_log = Some(format!(
                    r#"[{{"n":1,"provider":"{provider}","model":"{model}","status":503,"duration_us":{},"outcome":"failed"}},{{"n":2,"provider":"{provider}","model":"{model}","status":200,"duration_us":{total_us},"outcome":"answered"}}]"#,
                    40_000 + rng.below(200_000)
                ));
            }
            // Bodies are stored for a few requests (traces.store_bodies).
            if rng.below(1_000) == 0 {
                t.request_body = Some(bytes::Bytes::from(format!(
                    r#"{{"model":"{model}","messages":[{{"role":"user","content":"Summarise ticket #{}"}}]}}"#,
                    rng.below(100_000)
                )));
                t.response_body = Some(bytes::Bytes::from_static(
                    br#"{"choices":[{"message":{"role":"assistant","content":"The customer asks for a refund."}}]}"#,
                ));
            }
        }
    }
    t
}

fn answered(t: &mut Trace, usage: Usage, total_us: i64, upstream_ttfb: i64) {
    t.status = 200;
    t.upstream_status = Some(200);
    t.attempts = Some(1);
    t.finish_reason = Some("stop".into());
    t.usage = usage;
    t.total_us = total_us;
    t.upstream_ttfb_us = Some(upstream_ttfb);
    t.ttfb_us = Some(upstream_ttfb + 400);
    t.upstream_us = Some(total_us - 300);
    t.upstream_request_id = Some(format!("req_{}", &t.id[24..]));
    t.response_bytes = 600 + usage.output_tokens.unwrap_or(0) * 5;
}

fn refuse(t: &mut Trace, status: u16, kind: ErrorKind, message: &str) {
    t.upstream_attempted = false;
    t.status = status;
    t.fail(kind, message);
    t.total_us = 200 + (t.request_bytes / 10);
    t.ttfb_us = Some(t.total_us - 50);
    t.response_bytes = 180;
}

fn upstream_error(t: &mut Trace, status: u16, error_type: &str, total_us: i64) {
    t.status = status;
    t.upstream_status = Some(status);
    t.attempts = Some(1);
    t.fail(ErrorKind::UpstreamStatus, error_type);
    t.total_us = total_us / 4;
    t.upstream_ttfb_us = Some(total_us / 5);
    t.ttfb_us = Some(total_us / 5 + 300);
    t.upstream_us = Some(total_us / 4 - 200);
    t.response_bytes = 220;
}

fn pick_model(rng: &mut Rng) -> &'static (&'static str, &'static str, &'static str, u64) {
    let total: u64 = MODELS.iter().map(|m| m.3).sum();
    let mut r = rng.below(total);
    for m in MODELS {
        if r < m.3 {
            return m;
        }
        r -= m.3;
    }
    &MODELS[0]
}

/// A UUIDv7 for the request's own start time, as the proxy makes one when
/// the request arrives (so ids sort with `started_at_ms`).
fn trace_id(at_ms: i64) -> String {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        (at_ms / 1000) as u64,
        ((at_ms % 1000) * 1_000_000) as u32,
    );
    uuid::Uuid::new_v7(ts).to_string()
}

/// The chain verifies and every trace is there with its cost and entry.
fn verify(db: &Path, traces: u64) {
    let started = Instant::now();
    let mut config = Config::defaults();
    config.store.path = db.to_path_buf();
    let conn = store::open(&config.store, OpenMode::ReadOnly).expect("open read-only");
    let count = |sql: &str| -> u64 {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .expect("count") as u64
    };
    assert_eq!(count("SELECT COUNT(*) FROM traces"), traces);
    assert_eq!(count("SELECT COUNT(*) FROM costs"), traces);
    assert_eq!(
        count("SELECT COALESCE(SUM(requests), 0) FROM cost_daily"),
        traces
    );
    let verified = tollgate::audit::verify_database(&conn, ChainKey::Unkeyed, Vec::new())
        .unwrap_or_else(|e| panic!("the generated chain does not verify: {e}"));
    let head = verified.head.map(|a| a.seq).unwrap_or(0);
    assert_eq!(
        head as u64,
        traces + KEYS as u64 + 1,
        "one entry per trace and key change"
    );
    println!(
        "gen_traces: verified {traces} traces, chain head seq {head}, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// splitmix64: small, fast, deterministic; statistical quality is plenty
/// for a fixture.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
