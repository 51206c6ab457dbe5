//! Per-request CPU work on and just off the hot path: SSE watching of a
//! realistic stream, usage extraction, cost arithmetic, audit hashing, the
//! `/metrics` series a finished request adds (in the writer).
//! `cargo bench --bench hot_path`.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::audit::encoding::{ChainKey, Entry, GENESIS, chain_hash};
use tollgate::config::Protocol;
use tollgate::ledger::cost::{Tokens, cost_uc};
use tollgate::ledger::prices::PriceTable;
use tollgate::providers::watch::Watch;
use tollgate::store::{cost_sql, trace_sql};

/// An OpenAI stream of 200 content chunks plus the usage chunk, cut into
/// network-sized reads.
fn openai_stream() -> Vec<Bytes> {
    let mut s = String::new();
    for i in 0..200 {
        s.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_06737a9306\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n");
    s.push_str("data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741569952,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":201,\"total_tokens\":1401,\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0}}}\n\n");
    s.push_str("data: [DONE]\n\n");
    s.as_bytes()
        .chunks(1400)
        .map(Bytes::copy_from_slice)
        .collect()
}

fn bench_watch(c: &mut Criterion) {
    let chunks = openai_stream();
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut g = c.benchmark_group("sse_watch");
    g.throughput(Throughput::Bytes(total as u64));
    for (name, strip) in [
        ("openai_passthrough", false),
        ("openai_strip_injected_usage", true),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut w = Watch::new(Protocol::Openai, true, strip, 1 << 20);
                let mut out = Vec::with_capacity(4);
                for c in &chunks {
                    w.feed(c.clone(), &mut out);
                    out.clear();
                }
                black_box(w.finish(&mut out))
            })
        });
    }
    g.finish();
}

fn bench_cost_and_audit(c: &mut Criterion) {
    let table = PriceTable::builtin();
    let tokens = Tokens {
        input: 2006,
        output: 300,
        cached_input: 1920,
        cache_write: 0,
        ..Tokens::default()
    };
    c.bench_function("cost/lookup_and_compute", |b| {
        b.iter(|| {
            let (price, _) = table
                .get(black_box("openai"), black_box("gpt-4o-mini"))
                .unwrap();
            let rates = price.rates_for(tokens.input, None).unwrap().rates;
            black_box(cost_uc(&rates, black_box(&tokens)).unwrap())
        })
    });

    let mut trace = tollgate::trace::Trace::new("/v1/chat/completions", 1_763_856_000_000);
    trace.provider = Some("openai".into());
    trace.model_resolved = Some("gpt-4o-mini".into());
    trace.status = 200;
    let cost = tollgate::ledger::assess(&trace, &table);
    let tv = trace_sql::values(&trace, false);
    let cv = cost_sql::values(&cost);
    let key = ChainKey::Keyed([9; 32]);
    c.bench_function("audit/record_digest_and_chain_hash", |b| {
        b.iter(|| {
            let digest = tollgate::audit::request_digest(&tv, &cv);
            let entry = Entry {
                seq: 123_456,
                ts_ms: 1_763_856_000_000,
                actor: "key_1",
                action: "proxy.request",
                subject: "trace:019aa0f2-6b7c-7d3e-9f00-0123456789ab",
                digest,
            };
            black_box(chain_hash(&key, &GENESIS, &entry))
        })
    });
}

/// What the writer does per committed record for `/metrics`: resolve the
/// labels, then bump the counters and histograms.
fn bench_metrics(c: &mut Criterion) {
    let metrics = tollgate::counters::requests::RequestMetrics::default();
    metrics.configure(false, [("openai".into(), "gpt-4o-mini".into())]);
    let mut trace = tollgate::trace::Trace::new("/v1/chat/completions", 1_763_856_000_000);
    trace.provider = Some("openai".into());
    trace.model_resolved = Some("gpt-4o-mini".into());
    trace.status = 200;
    trace.total_us = 850_000;
    trace.ttfb_us = Some(240_000);
    trace.upstream_us = Some(800_000);
    trace.usage.input_tokens = Some(2006);
    trace.usage.output_tokens = Some(300);
    trace.usage.cached_input_tokens = Some(1920);
    c.bench_function("metrics/observe_and_record", |b| {
        b.iter(|| {
            let o = metrics.observe(black_box(&trace), Some(123_456), true);
            metrics.record(o)
        })
    });
}

criterion_group!(benches, bench_watch, bench_cost_and_audit, bench_metrics);
criterion_main!(benches);
