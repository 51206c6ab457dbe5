//! The exact cache's per-request work: the key (canonical JSON + BLAKE3)
//! for a short chat, a long conversation with tools, and an Anthropic
//! request; a hit from the memory tier (lookup + replay as a stream); and
//! the memory an entry costs in the memory tier beyond its body, measured
//! as the growth of resident memory over 100,000 entries. `cargo bench --bench cache`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use tollgate::config::Protocol;
use tollgate::providers::replay;
use tollgate::response_cache::{Cached, ResponseCache};
use tollgate_modules::cache::{KeyInput, key};

/// This process's resident memory in bytes (Linux), to measure what
/// entries cost.
fn rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn short_chat() -> Value {
    json!({"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 128, "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Summarize the plot of Hamlet in two sentences."}]})
}

fn long_chat() -> Value {
    let turns: Vec<Value> = (0..40)
        .map(|i| {
            json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                   "content": format!("turn {i}: {}", "some words of a long conversation ".repeat(6))})
        })
        .collect();
    json!({"model": "gpt-4o-mini", "messages": turns, "tool_choice": "auto", "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"},
         "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}],
        "response_format": {"type": "json_object"}, "seed": 7, "stream": true,
        "stream_options": {"include_usage": true}})
}

fn anthropic() -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 512, "system": "Be brief.",
           "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]})
}

fn message() -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1741569952, "model": "gpt-4o-mini",
           "choices": [{"index": 0, "message": {"role": "assistant",
             "content": "Hamlet, prince of Denmark, feigns madness to avenge his father. ".repeat(4)},
             "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 30, "completion_tokens": 60, "total_tokens": 90}})
}

fn bench_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_key");
    for (name, endpoint, body) in [
        ("short_chat", "/v1/chat/completions", short_chat()),
        ("long_chat_with_tools", "/v1/chat/completions", long_chat()),
        ("anthropic_message", "/v1/messages", anthropic()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                key(black_box(&KeyInput {
                    namespace: "key_0123456789",
                    endpoint,
                    provider: "openai",
                    model: "gpt-4o-mini",
                    body: &body,
                }))
            })
        });
    }
    g.finish();
}

fn bench_hit(c: &mut Criterion) {
    let tier = ResponseCache::new(64 << 20);
    let body = Bytes::from(serde_json::to_vec(&message()).unwrap());
    let k = [7u8; 32];
    tier.put(
        k,
        Arc::new(Cached {
            body: body.clone(),
            cost_uc: Some(1234),
            expires_at_ms: i64::MAX,
        }),
        64 << 20,
    );
    c.bench_function("cache_hit/memory_lookup", |b| {
        b.iter(|| tier.get(black_box(&k), 64 << 20, 1).expect("hit"))
    });
    let stored: Value = message();
    c.bench_function("cache_hit/replay_openai_stream", |b| {
        b.iter(|| replay::stream_body(Protocol::Openai, black_box(&stored), true).expect("replay"))
    });
}

/// Prints what an entry costs in the memory tier beyond its body.
fn memory_per_entry(_c: &mut Criterion) {
    const N: usize = 100_000;
    let tier = ResponseCache::new(1 << 34);
    let body = Bytes::from(serde_json::to_vec(&message()).unwrap());
    let Some(before) = rss_bytes() else {
        println!("cache memory tier: no /proc/self/status here; not measured");
        return;
    };
    for i in 0..N {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        // A copy per entry, as bodies read from the database are.
        let own = Bytes::copy_from_slice(&body);
        tier.put(
            k,
            Arc::new(Cached {
                body: own,
                cost_uc: Some(1),
                expires_at_ms: i64::MAX,
            }),
            1 << 34,
        );
    }
    let held = rss_bytes().unwrap_or(before) - before;
    let per = held as f64 / N as f64;
    println!(
        "cache memory tier: {N} entries of a {}-byte body grew resident memory by {held} bytes: \
         {per:.0} bytes per entry, {:.0} beyond the body",
        body.len(),
        per - body.len() as f64
    );
    black_box(&tier);
}

criterion_group!(benches, bench_key, bench_hit, memory_per_entry);
criterion_main!(benches);
