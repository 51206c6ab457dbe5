//! The single writer on a real SQLite file, driven through its public handle.

mod common;

use common::{row, rows};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tollgate::audit::encoding::ChainKey;
use tollgate::audit::{Checkpointer, verify_database};
use tollgate::config::{Config, WriterConfig};
use tollgate::ledger::PriceBook;
use tollgate::ledger::prices::PriceTable;
use tollgate::store::{self, Books, OpenMode, WriteOp, Writer};
use tollgate::trace::{Trace, Usage};

fn request(tokens: i64) -> Trace {
    let mut t = Trace::new("/v1/chat/completions", 1_763_856_000_000);
    t.provider = Some("openai".into());
    t.model_requested = Some("gpt-4o-mini".into());
    t.model_resolved = Some("gpt-4o-mini".into());
    t.status = 200;
    t.upstream_attempted = true;
    t.usage = Usage {
        input_tokens: Some(tokens),
        output_tokens: Some(10),
        ..Usage::default()
    };
    t
}

/// A record the database refuses for good (here: a trace id that already
/// exists) is counted and logged; the records batched with it are still
/// committed, each with its cost and audit entry, and the chain stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_does_not_take_its_batch_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.store.path = dir.path().join("tollgate.db");
    let mut conn = store::open(&config.store, OpenMode::ReadWrite).unwrap();
    store::migrate(&mut conn).unwrap();
    let books = Books {
        prices: PriceBook::new(PriceTable::builtin()),
        key: ChainKey::Unkeyed,
        checkpoints: Checkpointer::new(dir.path().join("cp"), 0, Duration::ZERO),
        store_bodies: false,
    };
    // A wide batch window, so the three records below share one batch.
    let cfg = WriterConfig {
        channel_capacity: 16,
        batch_max: 64,
        batch_max_delay: Duration::from_millis(200),
    };
    let (writer, handle) = Writer::start(conn, &cfg, books).unwrap();

    let first = request(100);
    let mut duplicate = request(200);
    duplicate.id = first.id.clone();
    let last = request(300);
    let (first_id, last_id) = (first.id.clone(), last.id.clone());
    let mut slots = Vec::new();
    for _ in 0..3 {
        slots.push(handle.reserve().await.unwrap());
    }
    for (slot, trace) in slots.into_iter().zip([first, duplicate, last]) {
        slot.send(WriteOp::Trace(Box::new(trace)));
    }
    handle.flush().await.unwrap();
    let stats = handle.stats();
    assert_eq!(stats.records_committed.load(Ordering::Relaxed), 2);
    assert_eq!(stats.records_failed.load(Ordering::Relaxed), 1);
    assert!(stats.commit_failures.load(Ordering::Relaxed) >= 1);
    drop(handle);
    writer.join();

    let conn = store::open(&config.store, OpenMode::ReadOnly).unwrap();
    let traces: Vec<(String, i64, i64)> = rows(
        &conn,
        "SELECT t.id, t.input_tokens, c.cost_uc FROM traces t
         JOIN costs c ON c.trace_id = t.id ORDER BY t.input_tokens",
    );
    // gpt-4o-mini at $0.15 / $0.60 per 1M tokens:
    // 100 x 0.15 + 10 x 0.60 = 21 µ$ = 2100 µ¢; 300 x 0.15 + 6 = 51 µ$ = 5100 µ¢.
    assert_eq!(traces, vec![(first_id, 100, 2_100), (last_id, 300, 5_100)]);
    let verified = verify_database(&conn, ChainKey::Unkeyed, Vec::new()).unwrap();
    assert_eq!(verified.entries, 2);
    let daily: (i64, i64) = row(&conn, "SELECT requests, cost_uc FROM cost_daily", []);
    assert_eq!(daily, (2, 7_200));
}
