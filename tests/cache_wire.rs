//! The cache's wire formats against the mock upstream, which speaks the
//! providers' real formats: a stream assembled into a final message is the
//! message the non-stream endpoint answers for the same request, and a
//! final message replayed as a stream has the mock's stream's events and
//! members, and is read by tollgate's watcher like the real stream.

use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tollgate::config::Protocol;
use tollgate::providers::assemble::Assembler;
use tollgate::providers::replay;
use tollgate::providers::sse::{self, Piece, SseSplitter};
use tollgate::providers::watch::{Observed, Watch};
use tollgate_mock_upstream::MockUpstream;

/// Header sets the mock answers differently: text of several lengths, tool
/// calls, every usage shape, the older `message_delta`.
const VARIANTS: [&[(&str, &str)]; 5] = [
    &[],
    &[("x-mock-words", "150")],
    &[("x-mock-tool-call", "lookup"), ("x-mock-words", "30")],
    &[(
        "x-mock-usage",
        "prompt=40,completion=9,cached=7,reasoning=3,cache_write=5,cache_write_1h=2,web_search=2,audio_in=4,service_tier=flex",
    )],
    &[("x-mock-usage", "delta_input=0,cached=3")],
];

struct Answers {
    /// The non-stream answer.
    message: Value,
    /// The stream's bytes, as the mock sent them.
    stream: Bytes,
}

async fn ask(mock: &MockUpstream, protocol: Protocol, headers: &[(&str, &str)]) -> Answers {
    let (path, mut body) = match protocol {
        Protocol::Openai => (
            "chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        Protocol::Anthropic => (
            "messages",
            json!({"model": "claude-haiku-4-5", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "hi"}]}),
        ),
    };
    let client = reqwest::Client::new();
    let send = |body: Value| {
        let mut req = client
            .post(format!("{}/{path}", mock.base_url()))
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let message: Value = send(body.clone()).await.unwrap().json().await.unwrap();
    body["stream"] = json!(true);
    if protocol == Protocol::Openai {
        // What tollgate sends upstream: it always asks for the usage.
        body["stream_options"] = json!({"include_usage": true});
    }
    let resp = send(body).await.unwrap();
    let stream = resp.bytes().await.unwrap();
    Answers { message, stream }
}

fn assemble(protocol: Protocol, stream: &[u8], piece_len: usize) -> Option<Value> {
    let mut a = Assembler::new(protocol, 1 << 20);
    for piece in stream.chunks(piece_len) {
        a.feed(&Bytes::copy_from_slice(piece));
    }
    a.finish()
}

fn watch(protocol: Protocol, stream: &[u8]) -> Observed {
    let mut w = Watch::new(protocol, true, false, 1 << 20);
    let mut out = Vec::new();
    for piece in stream.chunks(100) {
        w.feed(Bytes::copy_from_slice(piece), &mut out);
    }
    w.finish(&mut out)
}

/// What two answers to the same request must share: the content (text and
/// tool calls, without the ids the mock numbers per request), the finish
/// or stop reason, the usage.
fn essence(protocol: Protocol, msg: &Value) -> Value {
    match protocol {
        Protocol::Openai => {
            let m = &msg["choices"][0]["message"];
            let calls: Vec<Value> = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| c["function"].clone())
                .collect();
            json!([
                m["content"],
                calls,
                msg["choices"][0]["finish_reason"],
                msg["usage"],
                msg["model"],
                msg["service_tier"]
            ])
        }
        Protocol::Anthropic => {
            let mut content = msg["content"].clone();
            for block in content.as_array_mut().unwrap() {
                block.as_object_mut().unwrap().remove("id");
            }
            json!([
                content,
                msg["stop_reason"],
                msg["stop_sequence"],
                msg["usage"],
                msg["model"]
            ])
        }
    }
}

#[tokio::test]
async fn an_assembled_stream_is_the_non_stream_answer() {
    let mock = MockUpstream::start().await;
    for protocol in [Protocol::Openai, Protocol::Anthropic] {
        for headers in VARIANTS {
            let answers = ask(&mock, protocol, headers).await;
            let want = essence(protocol, &answers.message);
            if headers.iter().any(|(k, _)| *k == "x-mock-tool-call") {
                assert!(
                    want.to_string().contains("\"lookup\""),
                    "a tool call: {want}"
                );
            }
            for piece_len in [1, 7, 1 << 20] {
                let got = assemble(protocol, &answers.stream, piece_len)
                    .unwrap_or_else(|| panic!("{protocol:?} {headers:?}: assembled"));
                assert_eq!(
                    essence(protocol, &got),
                    want,
                    "{protocol:?} {headers:?} in pieces of {piece_len}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_cut_or_failed_stream_from_the_mock_is_not_assembled() {
    let mock = MockUpstream::start().await;
    for protocol in [Protocol::Openai, Protocol::Anthropic] {
        let whole = ask(&mock, protocol, &[]).await.stream;
        assert!(assemble(protocol, &whole, 64).is_some());
        // Every proper prefix that ends on an event boundary lacks the end.
        let text = std::str::from_utf8(&whole).unwrap();
        let mut at = 0;
        for event in text.split_inclusive("\n\n") {
            at += event.len();
            if at < whole.len() {
                assert_eq!(
                    assemble(protocol, &whole[..at], 64),
                    None,
                    "{protocol:?} cut after {at} bytes"
                );
            }
        }
        // The mock's error answers are not streams at all.
        let failed = ask(&mock, protocol, &[("x-mock-status", "529")]).await;
        assert_eq!(assemble(protocol, &failed.stream, 64), None);
    }
}

/// The shape of a JSON value: every member path, arrays as `[]`.
fn shape(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = format!("{at}.{k}");
                out.insert(path.clone());
                shape(v, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                shape(item, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

/// Each event as (name, member paths), runs of events of the same name and
/// shape counted once (a replay cuts text into other pieces than the mock).
fn event_shapes(stream: &[u8]) -> Vec<(String, BTreeSet<String>)> {
    let mut splitter = SseSplitter::new(1 << 20);
    let mut pieces = Vec::new();
    splitter.push(&Bytes::copy_from_slice(stream), &mut pieces);
    assert!(splitter.take_rest().is_empty());
    let mut out: Vec<(String, BTreeSet<String>)> = Vec::new();
    for piece in pieces {
        let Piece::Event(raw) = piece else {
            panic!("small events")
        };
        let event = sse::parse(&raw);
        let mut members = BTreeSet::new();
        if let Ok(data) = serde_json::from_str::<Value>(&event.data) {
            shape(&data, "", &mut members);
        } else {
            members.insert(event.data.to_string());
        }
        let item = (event.event.unwrap_or("").to_string(), members);
        if out.last() != Some(&item) {
            out.push(item);
        }
    }
    out
}

#[tokio::test]
async fn a_replayed_answer_looks_like_the_mock_stream_to_parsers_and_the_watcher() {
    let mock = MockUpstream::start().await;
    for protocol in [Protocol::Openai, Protocol::Anthropic] {
        for headers in VARIANTS {
            let answers = ask(&mock, protocol, headers).await;
            let replayed = replay::stream_body(protocol, &answers.message, true)
                .unwrap_or_else(|| panic!("{protocol:?} {headers:?}: replayable"));

            // A replay speaks the current API, whose `message_delta`
            // restates the input side; the older shape only in usage.
            let older = headers.iter().any(|(_, v)| v.contains("delta_input=0"));
            if !older {
                let (want, got) = (event_shapes(&answers.stream), event_shapes(&replayed));
                assert_eq!(got, want, "{protocol:?} {headers:?}: events and members");
            }

            let (real, replay_seen) =
                (watch(protocol, &answers.stream), watch(protocol, &replayed));
            assert!(replay_seen.stream_complete, "{protocol:?} terminator seen");
            assert_eq!(replay_seen.usage, real.usage, "{protocol:?} {headers:?}");
            assert_eq!(replay_seen.finish_reason, real.finish_reason);
            assert!(replay_seen.error_type.is_none() && !replay_seen.usage_unreadable);

            let assembled = assemble(protocol, &replayed, 1 << 20).unwrap();
            assert_eq!(
                essence(protocol, &assembled),
                essence(protocol, &answers.message)
            );
        }
    }
}

#[tokio::test]
async fn a_replay_without_usage_asked_has_no_usage_chunk_or_null_usage() {
    let mock = MockUpstream::start().await;
    let answers = ask(&mock, Protocol::Openai, &[]).await;
    let client = reqwest::Client::new();
    // The mock's stream when the client did not ask for usage.
    let real = client
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&json!({"model": "gpt-4o-mini", "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let replayed = replay::stream_body(Protocol::Openai, &answers.message, false).unwrap();
    assert_eq!(event_shapes(&replayed), event_shapes(&real));
    assert!(
        !String::from_utf8(replayed.to_vec())
            .unwrap()
            .contains("usage")
    );
    assert!(replayed.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_over_the_byte_cap_is_not_assembled() {
    let mock = MockUpstream::start().await;
    for protocol in [Protocol::Openai, Protocol::Anthropic] {
        let big = ask(&mock, protocol, &[("x-mock-huge-event-bytes", "100000")]).await;
        let whole = assemble(protocol, &big.stream, 4096).expect("under a 1 MiB cap");
        let text = match protocol {
            Protocol::Openai => whole["choices"][0]["message"]["content"].as_str(),
            Protocol::Anthropic => whole["content"][0]["text"].as_str(),
        };
        assert!(text.unwrap().starts_with(&"x".repeat(100_000)));
        for cap in [64 * 1024, big.stream.len() - 1] {
            let mut a = Assembler::new(protocol, cap);
            for piece in big.stream.chunks(4096) {
                a.feed(&Bytes::copy_from_slice(piece));
            }
            assert!(a.gave_up(), "{protocol:?} cap {cap}");
            assert_eq!(a.finish(), None);
        }
    }
}
