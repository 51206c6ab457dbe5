//! Writer throughput: request records (trace + cost + audit entry, keyed
//! chain, daily rollup) committed per second into a real WAL-mode SQLite
//! file, at several batch sizes. `cargo bench --bench writer`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use tollgate::audit::Checkpointer;
use tollgate::audit::encoding::ChainKey;
use tollgate::config::{Config, WriterConfig};
use tollgate::ledger::PriceBook;
use tollgate::ledger::prices::PriceTable;
use tollgate::store::{self, Books, OpenMode, WriteOp, Writer};
use tollgate::trace::{Trace, Usage};

const RECORDS: u64 = 20_000;

fn record(i: u64) -> Trace {
    let mut t = Trace::new("/v1/chat/completions", 1_763_856_000_000 + i as i64);
    t.provider = Some("openai".into());
    t.model_requested = Some("gpt-4o-mini".into());
    t.model_resolved = Some("gpt-4o-mini".into());
    t.stream = i.is_multiple_of(2);
    t.status = 200;
    t.upstream_status = Some(200);
    t.upstream_attempted = true;
    t.finish_reason = Some("stop".into());
    t.upstream_request_id = Some(format!("req_{i:016x}"));
    t.total_us = 2_400;
    t.ttfb_us = Some(900);
    t.upstream_ttfb_us = Some(800);
    t.upstream_us = Some(2_200);
    t.usage = Usage {
        input_tokens: Some(1_200 + (i % 500) as i64),
        output_tokens: Some(300),
        cached_input_tokens: Some(1_024),
        cache_creation_input_tokens: None,
        reasoning_tokens: Some(64),
        ..Usage::default()
    };
    t.request_bytes = 1_800;
    t.response_bytes = 2_600;
    t.client_key_id = Some(format!("key_{}", i % 8));
    t
}

fn bench_writer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for batch in [64usize, 256, 1024] {
        group.bench_with_input(BenchmarkId::new("records", batch), &batch, |b, &batch| {
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config::defaults();
            config.store.path = dir.path().join("bench.db");
            let mut conn = store::open(&config.store, OpenMode::ReadWrite).unwrap();
            store::migrate(&mut conn).unwrap();
            let books = Books {
                prices: PriceBook::new(PriceTable::builtin()),
                key: ChainKey::Keyed([7; 32]),
                checkpoints: Checkpointer::new(dir.path().join("cp"), 0, Duration::ZERO),
                store_bodies: false,
            };
            let cfg = WriterConfig {
                channel_capacity: 16_384,
                batch_max: batch,
                batch_max_delay: Duration::from_millis(5),
            };
            let (writer, handle) = Writer::start(conn, &cfg, books).unwrap();
            let mut next = 0u64;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..RECORDS {
                            let slot = handle.reserve().await.unwrap();
                            slot.send(WriteOp::Trace(Box::new(record(next))));
                            next += 1;
                        }
                        handle.flush().await.unwrap();
                    }
                    start.elapsed()
                })
            });
            drop(handle);
            writer.join();
        });
    }
    group.finish();
}

criterion_group!(benches, bench_writer);
criterion_main!(benches);
