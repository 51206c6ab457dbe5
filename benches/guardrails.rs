//! The guardrails' scanning cost with every detector on: a request's text
//! per KB (prose without PII, and with some), and the work per streamed
//! chunk (`StreamText::push` of 20-byte pieces). Goal: ≤ 20 µs per KB.
//! `cargo bench --bench guardrails`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use tollgate_modules::ModuleSettings;
use tollgate_modules::guardrails::{Guard, RequestShape};

const PROSE: &str = "The quarterly review covered the migration of the billing service to the \
new cluster, the state of the on-call rotation and the plan for the next release. Latency \
at the 99th percentile fell from 412 ms to 180 ms after the cache was moved closer to the \
database, and the error budget for the month is 63% spent. Version 2.14.1 ships on Tuesday; \
the release notes mention the retry policy, the new dashboard and three fixed crashes. ";

const PII: &str = "Reach Jane at jane.doe@example.com or +1 415 555 2671; her card is \
4111 1111 1111 1111 and the server is 10.20.30.40. ";

fn text(kb: usize, with_pii: bool) -> String {
    let mut t = String::new();
    while t.len() < kb * 1024 {
        t.push_str(PROSE);
        if with_pii {
            t.push_str(PII);
        }
    }
    t.truncate(kb * 1024);
    t
}

fn guard() -> Arc<Guard> {
    let s = ModuleSettings::default()
        .with("guardrails", &json!({"enabled": true}))
        .expect("valid settings");
    Arc::new(Guard::build(&s.guardrails).expect("compiles"))
}

fn bench_scan(c: &mut Criterion) {
    let g = guard();
    let mut group = c.benchmark_group("guardrails_request");
    for (name, with_pii) in [("prose_4k", false), ("prose_with_pii_4k", true)] {
        let body = json!({"prompt": text(4, with_pii)});
        group.throughput(Throughput::Bytes(4096));
        group.bench_function(name, |b| {
            b.iter_batched(
                || body.clone(),
                |mut body: Value| {
                    black_box(g.inspect_request("k", RequestShape::Completions, &mut body)).ok();
                    body
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_stream(c: &mut Criterion) {
    let g = guard();
    let prose = text(64, true);
    let chunks: Vec<&str> = prose
        .as_bytes()
        .chunks(20)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect();
    c.bench_function("guardrails_stream_push_20_bytes", |b| {
        let mut s = g.stream_text("k");
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % chunks.len();
            if i == 0 {
                s = g.stream_text("k");
            }
            black_box(s.push(chunks[i])).ok();
        })
    });
}

criterion_group!(benches, bench_scan, bench_stream);
criterion_main!(benches);
