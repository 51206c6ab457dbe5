//! Wire-format checks for the mock upstream, through a real HTTP client.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tollgate_mock_upstream::{DEFAULT_REPLY, MockConfig, MockUpstream};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(
    up: &MockUpstream,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut rb = client()
        .post(format!("{}{path}", up.base_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

async fn json_of(resp: reqwest::Response) -> Value {
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

/// Split an SSE body into (event name, data) pairs.
fn sse(body: &str) -> Vec<(Option<String>, String)> {
    assert!(
        body.ends_with("\n\n"),
        "body must end with a blank line: {body:?}"
    );
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut event = None;
            let mut data = None;
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "one data line per event");
                    data = Some(v.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (event, data.expect("data line"))
        })
        .collect()
}

fn chat_body(stream: bool, include_usage: Option<bool>) -> Value {
    let mut b = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": stream,
    });
    if let Some(u) = include_usage {
        b["stream_options"] = json!({"include_usage": u});
    }
    b
}

#[tokio::test]
async fn chat_non_stream_shape_and_usage_override() {
    let up = MockUpstream::start().await;
    let resp = post(&up, "/chat/completions", &[], chat_body(false, None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("x-request-id"));
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "service_tier",
            "system_fingerprint"
        ]
    );
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["created"], 1_700_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(
        v["choices"],
        json!([{
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_REPLY, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        }])
    );
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
    );
    assert_eq!(v["service_tier"], "default");
    assert_eq!(v["system_fingerprint"], "fp_mock");

    let resp = post(
        &up,
        "/chat/completions",
        &[
            (
                "x-mock-usage",
                "prompt=12, completion=5,cached=3,reasoning=2",
            ),
            ("x-mock-words", "3"),
        ],
        chat_body(false, None),
    )
    .await;
    let v: Value = json_of(resp).await;
    assert_eq!(v["choices"][0]["message"]["content"], "w1 w2 w3");
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], 12);
    assert_eq!(u["completion_tokens"], 5);
    assert_eq!(u["total_tokens"], 17);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 3);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 2);

    let ids: Vec<String> = up.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(ids, ["/v1/chat/completions", "/v1/chat/completions"]);
}

#[tokio::test]
async fn chat_stream_without_usage() {
    let up = MockUpstream::start().await;
    let resp = post(&up, "/chat/completions", &[], chat_body(true, None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    let events = sse(&body);
    // role chunk + 5 words + finish chunk + [DONE]
    assert_eq!(events.len(), 8, "{body}");
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..7]
        .iter()
        .map(|(ev, d)| {
            assert!(ev.is_none());
            serde_json::from_str(d).unwrap()
        })
        .collect();
    // Compact JSON.
    assert!(!events[0].1.contains(": "));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c.get("usage").is_none(), "no usage key unless asked: {c}");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let text: String = chunks[1..6]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, DEFAULT_REPLY);
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello ");
    assert_eq!(chunks[5]["choices"][0]["delta"]["content"], "upstream");
    assert_eq!(chunks[6]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    assert_eq!(up.completed_streams(), 1);
    assert_eq!(up.cancelled_streams(), 0);
}

#[tokio::test]
async fn chat_stream_with_usage() {
    let up = MockUpstream::start().await;
    let resp = post(
        &up,
        "/chat/completions",
        &[
            ("x-mock-usage", "completion=9,cached=4"),
            ("x-mock-words", "2"),
        ],
        chat_body(true, Some(true)),
    )
    .await;
    let body = resp.text().await.unwrap();
    let events = sse(&body);
    // role + 2 words + finish + usage + [DONE]
    assert_eq!(events.len(), 6, "{body}");
    assert_eq!(events[5].1, "[DONE]");
    let chunks: Vec<Value> = events[..5]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for c in &chunks[..4] {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.as_object().unwrap().contains_key("usage"));
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    let last = &chunks[4];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 12);
    assert_eq!(last["usage"]["completion_tokens"], 9);
    assert_eq!(last["usage"]["total_tokens"], 21);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

    // include_usage: false behaves as absent.
    let resp = post(&up, "/chat/completions", &[], chat_body(true, Some(false))).await;
    let body = resp.text().await.unwrap();
    assert!(!body.contains("usage"));
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let up = MockUpstream::start().await;
    let req = |fmt: Option<&str>| {
        let mut b = json!({"model": "text-embedding-3-small", "input": ["a", "bb", "ccc"], "dimensions": 16});
        if let Some(f) = fmt {
            b["encoding_format"] = json!(f);
        }
        b
    };
    let f: Value = json_of(post(&up, "/embeddings", &[], req(None)).await).await;
    let b: Value = json_of(post(&up, "/embeddings", &[], req(Some("base64"))).await).await;
    let f2: Value = json_of(post(&up, "/embeddings", &[], req(Some("float"))).await).await;
    assert_eq!(f, f2, "deterministic");
    assert_eq!(f["object"], "list");
    assert_eq!(f["model"], "text-embedding-3-small");
    assert_eq!(f["usage"], json!({"prompt_tokens": 9, "total_tokens": 9}));
    assert_eq!(f["data"].as_array().unwrap().len(), 3);
    for i in 0..3 {
        let fd = &f["data"][i];
        assert_eq!(fd["object"], "embedding");
        assert_eq!(fd["index"], i);
        let floats: Vec<f32> = fd["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(floats.len(), 16);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, floats);
        assert!(floats.iter().all(|x| (-1.0..=1.0).contains(x)));
    }
    assert_ne!(f["data"][0]["embedding"], f["data"][1]["embedding"]);

    // Single string, default dimensions, usage override.
    let v: Value = json_of(
        post(
            &up,
            "/embeddings",
            &[("x-mock-usage", "prompt=42")],
            json!({"model": "m", "input": "hello"}),
        )
        .await,
    )
    .await;
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["usage"], json!({"prompt_tokens": 42, "total_tokens": 42}));

    // Token arrays: one array of ints is one input; an array of them is many.
    let v: Value = json_of(
        post(
            &up,
            "/embeddings",
            &[],
            json!({"model": "m", "input": [1, 2, 3]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let v: Value = json_of(
        post(
            &up,
            "/embeddings",
            &[],
            json!({"model": "m", "input": [[1, 2], [3]]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], 6);

    let resp = post(
        &up,
        "/embeddings",
        &[],
        json!({"model": "m", "input": {"x": 1}}),
    )
    .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn models_list() {
    let up = MockUpstream::start().await;
    let resp = client()
        .get(format!("{}/models", up.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = json_of(resp).await;
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["data"][0],
        json!({"id": "gpt-4o-mini", "object": "model", "created": 1686935002, "owned_by": "openai"})
    );
    assert!(v["data"].as_array().unwrap().len() > 1);
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    })
}

#[tokio::test]
async fn anthropic_non_stream() {
    let up = MockUpstream::start().await;
    let resp = post(
        &up,
        "/messages",
        &[(
            "x-mock-usage",
            "prompt=20,cached=3,cache_write=4,completion=7",
        )],
        anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("request-id"));
    let v: Value = json_of(resp).await;
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": DEFAULT_REPLY}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 20, "cache_creation_input_tokens": 4, "cache_read_input_tokens": 3,
               "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 0},
               "output_tokens": 7, "service_tier": "standard"})
    );
}

#[tokio::test]
async fn anthropic_stream_event_order() {
    let up = MockUpstream::start().await;
    let resp = post(
        &up,
        "/messages",
        &[("x-mock-words", "3")],
        anthropic_body(true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.unwrap();
    let events = sse(&body);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = events
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for ((name, _), d) in events.iter().zip(&data) {
        assert_eq!(d["type"], name.as_deref().unwrap());
    }
    let m = &data[0]["message"];
    assert_eq!(m["content"], json!([]));
    assert_eq!(m["stop_reason"], Value::Null);
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 11, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
               "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
               "output_tokens": 1, "service_tier": "standard"})
    );
    assert_eq!(
        data[1]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = data[3..6]
        .iter()
        .map(|d| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, "w1 w2 w3");
    assert_eq!(
        data[7],
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"input_tokens": 11, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0, "output_tokens": 3}})
    );
    assert_eq!(up.completed_streams(), 1);
}

#[tokio::test]
async fn error_statuses_in_provider_shape() {
    let up = MockUpstream::start().await;
    for (status, ty, code) in [
        (429, "rate_limit_error", json!("rate_limit_exceeded")),
        (500, "server_error", Value::Null),
        (503, "server_error", Value::Null),
        (400, "invalid_request_error", Value::Null),
        (401, "authentication_error", json!("invalid_api_key")),
    ] {
        let resp = post(
            &up,
            "/chat/completions",
            &[("x-mock-status", &status.to_string())],
            chat_body(true, None),
        )
        .await;
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert!(resp.headers().contains_key("x-request-id"));
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            (status == 429).then_some("1")
        );
        let v: Value = json_of(resp).await;
        let e = &v["error"];
        assert_eq!(e["type"], ty, "{status}");
        assert_eq!(e["code"], code);
        assert_eq!(e["param"], Value::Null);
        assert!(e["message"].is_string());
    }
    for (status, ty) in [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (400, "invalid_request_error"),
        (401, "authentication_error"),
    ] {
        let resp = post(
            &up,
            "/messages",
            &[("x-mock-status", &status.to_string())],
            anthropic_body(false),
        )
        .await;
        assert_eq!(resp.status(), status);
        let rid = resp.headers()["request-id"].to_str().unwrap().to_owned();
        let v: Value = json_of(resp).await;
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], ty);
        assert!(v["error"]["message"].is_string());
        assert_eq!(v["request_id"], rid.as_str());
    }
    // Nothing was streamed.
    assert_eq!(up.completed_streams() + up.cancelled_streams(), 0);
}

#[tokio::test]
async fn malformed_json_and_unknown_routes() {
    let up = MockUpstream::start().await;
    let c = client();
    let resp = c
        .post(format!("{}/chat/completions", up.base_url()))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = json_of(resp).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let resp = c
        .post(format!("{}/messages", up.base_url()))
        .body("[1,")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = json_of(resp).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let resp = c
        .post(format!("{}/nope", up.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = json_of(resp).await;
    assert_eq!(v["error"]["message"], "Invalid URL (POST /v1/nope)");

    let resp = c
        .post(format!("{}/messages/count_tokens", up.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = json_of(resp).await;
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(up.request_count(), 4);
}

#[tokio::test]
async fn auth_required_when_configured() {
    let up = MockUpstream::start_with(MockConfig {
        expect_key: Some("sk-test".into()),
        ..MockConfig::default()
    })
    .await;
    let resp = post(&up, "/chat/completions", &[], chat_body(false, None)).await;
    assert_eq!(resp.status(), 401);
    let v: Value = json_of(resp).await;
    assert_eq!(v["error"]["type"], "authentication_error");
    let resp = post(
        &up,
        "/chat/completions",
        &[("authorization", "Bearer wrong")],
        chat_body(false, None),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = post(
        &up,
        "/chat/completions",
        &[("authorization", "Bearer sk-test")],
        chat_body(false, None),
    )
    .await;
    assert_eq!(resp.status(), 200);

    let resp = post(
        &up,
        "/messages",
        &[("x-api-key", "sk-test")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), 401, "anthropic-version is required");
    let v: Value = json_of(resp).await;
    assert_eq!(v["error"]["type"], "authentication_error");
    let resp = post(
        &up,
        "/messages",
        &[
            ("x-api-key", "sk-test"),
            ("anthropic-version", "2023-06-01"),
        ],
        anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = post(
        &up,
        "/messages",
        &[
            ("authorization", "Bearer sk-test"),
            ("anthropic-version", "2023-06-01"),
        ],
        anthropic_body(false),
    )
    .await;
    assert_eq!(
        resp.status(),
        200,
        "bearer auth is accepted for Anthropic too"
    );
    let resp = post(
        &up,
        "/messages",
        &[("x-api-key", "nope"), ("anthropic-version", "2023-06-01")],
        anthropic_body(false),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let rec = &up.requests()[4];
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.header("X-Api-Key"), Some("sk-test"));
    assert_eq!(rec.json()["model"], "claude-sonnet-4-5");
}

#[tokio::test]
async fn break_after_produces_body_error() {
    let up = MockUpstream::start().await;
    let resp = post(
        &up,
        "/chat/completions",
        &[("x-mock-break-after", "3")],
        chat_body(true, None),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut got = Vec::new();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => panic!("stream ended cleanly: {}", String::from_utf8_lossy(&got)),
            Err(e) => break e,
        }
    };
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    let text = String::from_utf8(got).unwrap();
    assert_eq!(text.matches("data: ").count(), 3, "{text}");
    assert!(!text.contains("[DONE]"));
    assert_eq!(up.completed_streams(), 0);
    assert_eq!(up.cancelled_streams(), 0);
}

#[tokio::test]
async fn break_after_cuts_raw_connection_without_terminator() {
    let up = MockUpstream::start().await;
    let body = anthropic_body(true).to_string();
    let mut s = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-mock-break-after: 2\r\nx-mock-chunk-delay-ms: 5\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("server closes the connection")
        .ok();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.contains("event: content_block_start"), "{raw}");
    assert!(!raw.contains("event: ping"), "{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "no terminating chunk: {raw}");
}

#[tokio::test]
async fn client_drop_mid_stream_counts_as_cancelled() {
    let up = MockUpstream::start_with(MockConfig {
        chunk_delay: Duration::from_millis(30),
        ..MockConfig::default()
    })
    .await;
    let mut resp = post(
        &up,
        "/chat/completions",
        &[("x-mock-words", "50")],
        chat_body(true, None),
    )
    .await;
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(resp);
    assert!(up.wait_cancelled_streams(1, Duration::from_secs(5)).await);
    assert_eq!(up.cancelled_streams(), 1);
    assert_eq!(up.completed_streams(), 0);
}

#[tokio::test]
async fn delays_are_applied() {
    let up = MockUpstream::start().await;
    let t = Instant::now();
    let resp = post(
        &up,
        "/chat/completions",
        &[("x-mock-first-byte-delay-ms", "150")],
        chat_body(false, None),
    )
    .await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert_eq!(resp.status(), 200);

    // 2 words -> 5 events -> 4 gaps of 40ms.
    let t = Instant::now();
    let resp = post(
        &up,
        "/chat/completions",
        &[("x-mock-chunk-delay-ms", "40"), ("x-mock-words", "2")],
        chat_body(true, None),
    )
    .await;
    let body = resp.text().await.unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"));
    assert!(
        t.elapsed() >= Duration::from_millis(160),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn recording_can_be_disabled() {
    let up = MockUpstream::start_with(MockConfig {
        record: false,
        ..MockConfig::default()
    })
    .await;
    let resp = post(&up, "/chat/completions", &[], chat_body(false, None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.request_count(), 1);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn binary_prints_address_and_serves() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
        .args(["--listen", "127.0.0.1:0", "--no-record", "--key", "k"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let url = line.strip_prefix("listening on ").expect(&line);
    assert!(!url.ends_with(":0"), "{url}");
    let resp = client()
        .get(format!("{url}/v1/models"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn openai_audio_image_and_tier_controls() {
    let up = MockUpstream::start().await;
    let usage = "audio_in=30,audio_out=12,image=5,service_tier=flex";
    let resp = post(
        &up,
        "/chat/completions",
        &[("x-mock-usage", usage)],
        chat_body(false, None),
    )
    .await;
    let v: Value = json_of(resp).await;
    // The default counts grow by the parts they include.
    assert_eq!(
        v["usage"],
        json!({
            "prompt_tokens": 12 + 30 + 5, "completion_tokens": 5 + 12, "total_tokens": 64,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 30, "image_tokens": 5},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 12,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
    );
    assert_eq!(v["service_tier"], "flex");

    // Streamed: the tier on every chunk, the details in the usage chunk.
    let resp = post(
        &up,
        "/chat/completions",
        &[("x-mock-usage", usage), ("x-mock-words", "2")],
        chat_body(true, Some(true)),
    )
    .await;
    let body = resp.text().await.unwrap();
    let events = sse(&body);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["service_tier"], "flex", "{c}");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens_details"]["audio_tokens"], 30);
    assert_eq!(last["usage"]["prompt_tokens_details"]["image_tokens"], 5);
    assert_eq!(
        last["usage"]["completion_tokens_details"]["audio_tokens"],
        12
    );
    assert_eq!(last["usage"]["completion_tokens"], 2 + 12);
}

#[tokio::test]
async fn openai_answers_the_served_tier() {
    let up = MockUpstream::start().await;
    let tier_of = |v: &Value| v["service_tier"].as_str().unwrap().to_owned();
    for (requested, header, served) in [
        (None, None, "default"),
        (Some("auto"), None, "default"),
        (Some("flex"), None, "flex"),
        (Some("priority"), None, "priority"),
        // Asked for priority, served on default.
        (Some("priority"), Some("service_tier=default"), "default"),
    ] {
        for stream in [false, true] {
            let mut body = chat_body(stream, Some(true).filter(|_| stream));
            if let Some(t) = requested {
                body["service_tier"] = t.into();
            }
            let headers: Vec<(&str, &str)> =
                header.map(|h| ("x-mock-usage", h)).into_iter().collect();
            let resp = post(&up, "/chat/completions", &headers, body).await;
            let text = resp.text().await.unwrap();
            let v: Value = if stream {
                serde_json::from_str(&sse(&text)[0].1).unwrap()
            } else {
                serde_json::from_str(&text).unwrap()
            };
            assert_eq!(tier_of(&v), served, "{requested:?} {header:?} {stream}");
        }
    }
}

#[tokio::test]
async fn anthropic_cache_ttls_web_search_and_tier() {
    let up = MockUpstream::start().await;
    let usage = "prompt=20,cached=3,cache_write=4,cache_write_1h=6,web_search=2,service_tier=priority,completion=7";
    let resp = post(
        &up,
        "/messages",
        &[("x-mock-usage", usage)],
        anthropic_body(false),
    )
    .await;
    let v: Value = json_of(resp).await;
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 20, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 3,
               "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
               "output_tokens": 7, "server_tool_use": {"web_search_requests": 2},
               "service_tier": "priority"})
    );

    let resp = post(
        &up,
        "/messages",
        &[("x-mock-usage", usage)],
        anthropic_body(true),
    )
    .await;
    let body = resp.text().await.unwrap();
    let events = sse(&body);
    let data = |name: &str| -> Value {
        let (_, d) = events
            .iter()
            .find(|(e, _)| e.as_deref() == Some(name))
            .unwrap();
        serde_json::from_str(d).unwrap()
    };
    assert_eq!(
        data("message_start")["message"]["usage"],
        json!({"input_tokens": 20, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 3,
               "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
               "output_tokens": 1, "service_tier": "priority"})
    );
    assert_eq!(
        data("message_delta")["usage"],
        json!({"input_tokens": 20, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 3,
               "output_tokens": 7, "server_tool_use": {"web_search_requests": 2}})
    );

    // The older delta: output and server tools only.
    let resp = post(
        &up,
        "/messages",
        &[("x-mock-usage", &format!("{usage},delta_input=0"))],
        anthropic_body(true),
    )
    .await;
    let body = resp.text().await.unwrap();
    let (_, d) = sse(&body)
        .into_iter()
        .find(|(e, _)| e.as_deref() == Some("message_delta"))
        .unwrap();
    let d: Value = serde_json::from_str(&d).unwrap();
    assert_eq!(
        d["usage"],
        json!({"output_tokens": 7, "server_tool_use": {"web_search_requests": 2}})
    );
}

#[tokio::test]
async fn control_routes_switch_failing_and_report_counts() {
    let up = MockUpstream::start().await;
    let root = format!("http://{}", up.addr());
    let stats = || async {
        let resp = client()
            .get(format!("{root}/__mock/stats"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        json_of(resp).await
    };
    let set_fail = |body: &'static str| {
        let url = format!("{root}/__mock/fail-status");
        async move { client().post(url).body(body).send().await.unwrap().status() }
    };
    assert_eq!(stats().await, json!({"requests": 0, "fail_status": null}));

    assert_eq!(set_fail("503").await, 204);
    let resp = post(&up, "/chat/completions", &[], chat_body(false, None)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(stats().await, json!({"requests": 1, "fail_status": 503}));

    for bad in ["200", "\"500\"", "600", ""] {
        assert_eq!(set_fail(bad).await, 400, "{bad:?}");
    }
    assert_eq!(
        stats().await["fail_status"],
        503,
        "a refused body changes nothing"
    );

    assert_eq!(set_fail("0").await, 204);
    let resp = post(&up, "/chat/completions", &[], chat_body(false, None)).await;
    assert_eq!(resp.status(), 200);
    // Control requests are not counted; proxied ones are.
    assert_eq!(stats().await, json!({"requests": 2, "fail_status": null}));
    assert_eq!(up.request_count(), 2);
}
