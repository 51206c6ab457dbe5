//! Black-box tests of the proxy routes: a real gateway on a real socket with
//! a real SQLite file, in front of the mock upstream.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tollgate_mock_upstream::{MockConfig, MockUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_non_stream_resolves_alias_and_swaps_credentials() {
    let mut gw = Gateway::start().await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("tg-client-secret-should-not-leak")
        .header(
            "x-mock-usage",
            "prompt=120,completion=7,cached=100,reasoning=3",
        )
        .json(&chat("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = request_id(&resp);
    assert_eq!(resp.headers()["x-request-id"], "req_mock1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock upstream"
    );

    let upstream = &gw.mock.requests()[0];
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(
        upstream.header("authorization"),
        Some(&*format!("Bearer {UPSTREAM_KEY}"))
    );
    assert!(
        upstream
            .headers
            .iter()
            .all(|(_, v)| !v.contains("tg-client-secret"))
    );
    assert_eq!(upstream.json()["model"], "gpt-4o-mini");
    assert_eq!(upstream.json()["messages"][0]["content"], "Say hello");

    gw.stop().await;
    let t = last_trace(&gw.db());
    assert_eq!(t["id"], request_id.as_str());
    assert_eq!(t["endpoint"], "/v1/chat/completions");
    assert_eq!(t["provider"], "openai");
    assert_eq!(t["model_requested"], "fast");
    assert_eq!(t["model_resolved"], "gpt-4o-mini");
    assert_eq!(t["stream"], 0);
    assert_eq!(t["status"], 200);
    assert_eq!(t["error_kind"], Value::Null);
    assert_eq!(t["input_tokens"], 120);
    assert_eq!(t["output_tokens"], 7);
    assert_eq!(t["cached_input_tokens"], 100);
    assert_eq!(t["reasoning_tokens"], 3);
    assert_eq!(t["finish_reason"], "stop");
    assert_eq!(t["upstream_request_id"], "req_mock1");
    assert_eq!(t["request_body"], Value::Null, "bodies are off by default");
    assert!(t["request_bytes"].as_i64().unwrap() > 50);
    assert!(t["response_bytes"].as_i64().unwrap() > 100);
    assert!(t["total_us"].as_i64().unwrap() >= t["upstream_us"].as_i64().unwrap());
}

async fn read_stream(resp: reqwest::Response) -> String {
    String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap()
}

/// The `data:` payloads of an SSE body.
fn data_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_without_usage_is_costed_and_the_usage_chunk_removed() {
    let mut gw = Gateway::start().await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-usage", "prompt=42,completion=5")
        .json(&chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let text = read_stream(resp).await;
    assert!(
        !text.contains("usage"),
        "client did not ask for usage: {text}"
    );
    let events = data_events(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let content: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "Hello from the mock upstream");
    assert_eq!(
        gw.mock.requests()[0].json()["stream_options"]["include_usage"],
        true
    );

    gw.stop().await;
    let t = last_trace(&gw.db());
    assert_eq!(t["stream"], 1);
    assert_eq!(t["input_tokens"], 42);
    assert_eq!(t["output_tokens"], 5);
    assert_eq!(t["finish_reason"], "stop");
    assert_eq!(t["error_kind"], Value::Null);
    assert_eq!(t["response_bytes"].as_i64().unwrap(), text.len() as i64);
}

/// With the mock's per-response id taken out, what the client gets through
/// tollgate is byte for byte what the upstream sends.
fn without_ids(text: &str) -> String {
    let re_id = |s: &str, prefix: &str| -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find(prefix) {
            out.push_str(&rest[..at + prefix.len()]);
            rest = rest[at + prefix.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out.push_str(rest);
        out
    };
    re_id(&re_id(text, "chatcmpl-mock"), "msg_mock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_the_client_asked_usage_for_are_byte_faithful() {
    let mut gw = Gateway::start().await;
    let mut body = chat("gpt-4o-mini", true);
    body["stream_options"] = json!({"include_usage": true});
    let via = read_stream(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let direct = read_stream(
        client()
            .post(format!("{}/chat/completions", gw.mock.base_url()))
            .bearer_auth(UPSTREAM_KEY)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(via.contains("\"usage\":{"));
    assert_eq!(without_ids(&via), without_ids(&direct));

    let via = read_stream(
        client()
            .post(gw.url("/v1/messages"))
            .json(&message("claude-haiku-4-5", true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let direct = read_stream(
        client()
            .post(format!("{}/messages", gw.mock.base_url()))
            .header("x-api-key", UPSTREAM_KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&message("claude-haiku-4-5", true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(via.contains("event: message_stop"));
    assert_eq!(without_ids(&via), without_ids(&direct));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_is_incremental() {
    let mut gw = Gateway::start().await;
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", true)),
        ("/v1/messages", message("claude-haiku-4-5", true)),
    ] {
        let resp = client()
            .post(gw.url(path))
            .header("x-mock-chunk-delay-ms", "150")
            .header("x-mock-words", "6")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut arrivals = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            if !chunk.is_empty() {
                arrivals.push(Instant::now());
            }
        }
        // The upstream paces ≥ 9 events 150 ms apart; a buffering proxy would
        // deliver them in one burst at the end.
        assert!(arrivals.len() >= 6, "{path}: {} chunks", arrivals.len());
        let spread = *arrivals.last().unwrap() - arrivals[0];
        assert!(
            spread >= Duration::from_millis(900),
            "{path}: chunks arrived within {spread:?}"
        );
    }
    gw.stop().await;
    let db = gw.db();
    let ttfb: Vec<(i64, i64)> = rows(&db, "SELECT ttfb_us, total_us FROM traces");
    assert_eq!(ttfb.len(), 2);
    for (first, total) in ttfb {
        assert!(
            total - first >= 900_000,
            "first byte {first} µs, total {total} µs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_and_models() {
    let mut gw = Gateway::start().await;
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    let models: Value = client()
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "gpt-4o-mini",
            "text-embedding-3-small",
            "claude-haiku-4-5",
            "fast"
        ]
    );
    let anthropic: Value = client()
        .get(gw.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(anthropic["data"][2]["type"], "model");
    assert_eq!(anthropic["has_more"], false);

    gw.stop().await;
    let t = last_trace(&gw.db());
    assert_eq!(t["endpoint"], "/v1/embeddings");
    assert_eq!(t["input_tokens"], 6);
    assert_eq!(t["output_tokens"], Value::Null);
    assert_eq!(
        trace_count(&gw.db()),
        1,
        "/v1/models is answered locally and not traced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_non_stream_and_stream() {
    let mut gw = Gateway::start().await;
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", "tg-client-secret")
        .header(
            "x-mock-usage",
            "prompt=10,cached=1000,cache_write=200,completion=9",
        )
        .json(&message("claude-haiku-4-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "Hello from the mock upstream");
    let upstream = &gw.mock.requests()[0];
    assert_eq!(upstream.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(upstream.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(upstream.header("authorization"), None);

    let text = read_stream(
        client()
            .post(gw.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .header("x-mock-usage", "prompt=30,completion=12")
            .json(&message("claude-haiku-4-5", true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(text.starts_with("event: message_start\n"));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

    gw.stop().await;
    let db = gw.db();
    type Row = (i64, i64, i64, Option<i64>, Option<i64>, String);
    let rows: Vec<Row> = rows(
        &db,
        "SELECT stream, input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens, finish_reason FROM traces ORDER BY id",
    );
    assert_eq!(
        rows,
        vec![
            (0, 1210, 9, Some(1000), Some(200), "end_turn".to_string()),
            (1, 30, 12, Some(0), Some(0), "end_turn".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_unchanged() {
    let mut gw = Gateway::start().await;
    for (path, body, status) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", false), 429),
        ("/v1/chat/completions", chat("gpt-4o-mini", true), 500),
        ("/v1/messages", message("claude-haiku-4-5", false), 429),
        ("/v1/messages", message("claude-haiku-4-5", true), 529),
    ] {
        let via = client()
            .post(gw.url(path))
            .header("x-mock-status", status.to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let mut direct = client()
            .post(format!("{}{}", gw.mock.base_url(), &path[3..]))
            .header("x-mock-status", status.to_string())
            .bearer_auth(UPSTREAM_KEY)
            .header("x-api-key", UPSTREAM_KEY)
            .header("anthropic-version", "2023-06-01");
        direct = direct.json(&body);
        let direct = direct.send().await.unwrap();
        assert_eq!(via.status(), status, "{path}");
        assert_eq!(direct.status(), status);
        if status == 429 {
            assert_eq!(via.headers()["retry-after"], "1");
        }
        let strip = |s: String| s.split("req_mock").next().unwrap().to_string();
        assert_eq!(
            strip(via.text().await.unwrap()),
            strip(direct.text().await.unwrap())
        );
    }
    gw.stop().await;
    let kinds: Vec<(i64, String)> = rows(
        &gw.db(),
        "SELECT status, error_kind FROM traces ORDER BY id",
    );
    assert_eq!(kinds.len(), 4);
    assert!(
        kinds.iter().all(|(_, k)| k == "upstream_error_status"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().map(|k| k.0).collect::<Vec<_>>(),
        vec![429, 500, 429, 529]
    );
}

/// A redirect is the client's business: tollgate passes it back instead of
/// following it, so the provider key never goes to wherever it points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_redirects_are_passed_back_not_followed() {
    let mut gw = Gateway::start().await;
    let elsewhere = MockUpstream::start().await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", false)),
        ("/v1/messages", message("claude-haiku-4-5", false)),
    ] {
        let target = format!("{}{}", elsewhere.base_url(), &path[3..]);
        let resp = no_follow
            .post(gw.url(path))
            .header("x-mock-redirect-to", &target)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 307, "{path}");
        assert_eq!(resp.headers()["location"], target.as_str());
        assert_eq!(resp.text().await.unwrap(), "moved");
    }
    assert_eq!(
        elsewhere.request_count(),
        0,
        "the upstream request (and its key) followed the redirect"
    );
    gw.stop().await;
    let traces: Vec<(i64, String, String)> = rows(
        &gw.db(),
        "SELECT status, error_kind, error_message FROM traces ORDER BY id",
    );
    assert_eq!(traces.len(), 2);
    for (status, kind, message) in traces {
        assert_eq!((status, kind.as_str()), (307, "upstream_error_status"));
        assert!(message.contains("redirect"), "{message}");
    }
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tollgate_errors_come_in_the_clients_protocol_shape() {
    let mut gw = Gateway::start_with(MockConfig::default(), "max_body_bytes = 2000\n").await;
    let post = async |path: &str, body: &str| {
        let resp = client()
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        error_of(resp).await
    };
    let (status, e) = post("/v1/chat/completions", "{\"model\": \"gpt-4o-mini\", ").await;
    assert_eq!(status, 400);
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("JSON"));

    let (status, e) = post("/v1/messages", "not json").await;
    assert_eq!(status, 400);
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");

    let (status, e) = post("/v1/chat/completions", "{\"messages\":[]}").await;
    assert_eq!(
        (status, e["error"]["message"].as_str().unwrap()),
        (400, "You must provide a model parameter.")
    );

    let (status, e) = post("/v1/chat/completions", "{\"model\":\"gpt-7\"}").await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (status, e) = post("/v1/messages", "{\"model\":\"claude-9\"}").await;
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );

    let (status, e) = post("/v1/chat/completions", "{\"model\":\"claude-haiku-4-5\"}").await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/messages")
    );

    let big = format!(
        "{{\"model\":\"gpt-4o-mini\",\"x\":\"{}\"}}",
        "a".repeat(3000)
    );
    let (status, e) = post("/v1/chat/completions", &big).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (413, Some("request_too_large"))
    );

    let (status, e) = error_of(client().get(gw.url("/v1/nothing")).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("unknown_url"))
    );

    assert_eq!(
        gw.mock.request_count(),
        0,
        "nothing invalid reaches the upstream"
    );
    gw.stop().await;
    let kinds: Vec<String> = column(&gw.db(), "SELECT error_kind FROM traces ORDER BY id");
    assert_eq!(
        kinds,
        vec![
            "invalid_request",
            "invalid_request",
            "invalid_request",
            "unknown_model",
            "unknown_model",
            "wrong_protocol",
            "body_too_large"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_502_in_shape() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mock = tollgate_mock_upstream::MockUpstream::start().await;
    let mut gw = Gateway::start_on(mock, &format!("http://127.0.0.1:{port}/v1"), "").await;
    let (status, e) = error_of(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("gpt-4o-mini", true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (502, Some("upstream_unreachable"))
    );
    let (status, e) = error_of(
        client()
            .post(gw.url("/v1/messages"))
            .json(&message("claude-haiku-4-5", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (502, Some("api_error"))
    );
    gw.stop().await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "upstream_unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_times_out_with_504() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        "[upstream]\nfirst_byte_timeout_ms = 200\n",
    )
    .await;
    let (status, e) = error_of(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-mock-first-byte-delay-ms", "3000")
            .json(&chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    gw.stop().await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_cancels_upstream_and_is_traced() {
    let mut gw = Gateway::start().await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-chunk-delay-ms", "50")
        .header("x-mock-words", "200")
        .json(&chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    assert!(
        gw.mock
            .wait_cancelled_streams(1, Duration::from_secs(5))
            .await,
        "the upstream stream was not cancelled"
    );
    assert_eq!(gw.wait_traces(1).await, 1);
    gw.stop().await;
    let t = last_trace(&gw.db());
    assert_eq!(t["error_kind"], "client_disconnected");
    assert_eq!(t["status"], 200);
    assert_eq!(gw.mock.completed_streams(), 0);
}

/// Reads a stream until `terminator` has arrived, then hangs up at once, the
/// way the SDKs do, while the upstream still holds its body open.
async fn read_until_then_hang_up(resp: reqwest::Response, terminator: &str) -> String {
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while !text.ends_with(terminator) {
        let chunk = stream
            .next()
            .await
            .expect("stream ended before its terminator")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_after_the_terminator_is_a_complete_costed_request() {
    let mut gw = Gateway::start().await;
    let openai = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-usage", "prompt=12,completion=22")
        .header("x-mock-hold-open-ms", "30000")
        .json(&chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    let text = read_until_then_hang_up(openai, "data: [DONE]\n\n").await;
    assert!(!text.contains("usage"), "{text}");

    let anthropic = client()
        .post(gw.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("x-mock-usage", "prompt=30,completion=12")
        .header("x-mock-hold-open-ms", "30000")
        .json(&message("claude-haiku-4-5", true))
        .send()
        .await
        .unwrap();
    read_until_then_hang_up(anthropic, "data: {\"type\":\"message_stop\"}\n\n").await;

    assert!(
        gw.mock
            .wait_cancelled_streams(2, Duration::from_secs(5))
            .await,
        "tollgate kept the upstream streams open after the client left"
    );
    assert_eq!(gw.wait_traces(2).await, 2);
    gw.stop().await;
    let db = gw.db();
    type Row = (i64, i64, i64, String, Option<String>, i64);
    let rows: Vec<Row> = rows(
        &db,
        "SELECT t.status, t.input_tokens, t.output_tokens, t.finish_reason, t.error_kind, c.cost_uc
             FROM traces t JOIN costs c ON c.trace_id = t.id ORDER BY t.id",
    );
    // gpt-4o-mini at $0.15 / $0.60 per 1M: 12 x 0.15 + 22 x 0.60 = 15 µ$ = 1500 µ¢;
    // claude-haiku-4-5 at $1 / $5 per 1M: 30 x 1 + 12 x 5 = 90 µ$ = 9000 µ¢.
    assert_eq!(
        rows,
        vec![
            (200, 12, 22, "stop".to_string(), None, 1500),
            (200, 30, 12, "end_turn".to_string(), None, 9000),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_breaking_mid_stream_ends_the_clients_stream_with_an_error() {
    let mut gw = Gateway::start().await;
    let text = read_stream(
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-mock-break-after", "3")
            .json(&chat("gpt-4o-mini", true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let events = data_events(&text);
    assert_eq!(events.len(), 4, "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_broken");

    let text = read_stream(
        client()
            .post(gw.url("/v1/messages"))
            .header("x-mock-break-after", "2")
            .json(&message("claude-haiku-4-5", true))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(text.ends_with("\n\n"));
    assert!(
        text.contains("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""),
        "{text}"
    );

    gw.stop().await;
    let kinds: Vec<(String, Option<i64>)> = rows(
        &gw.db(),
        "SELECT error_kind, input_tokens FROM traces ORDER BY id",
    );
    assert_eq!(kinds[0].0, "upstream_stream_broken");
    assert_eq!(
        kinds[1],
        ("upstream_stream_broken".to_string(), Some(11)),
        "usage seen before the break is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_provider_key_is_a_clear_server_error() {
    let mock = tollgate_mock_upstream::MockUpstream::start().await;
    let base = mock.base_url();
    let mut gw = Gateway::start_on(
        mock,
        &base,
        "[[providers]]\nname = \"nokey\"\nprotocol = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key_env = \"TOLLGATE_TEST_UNSET_KEY\"\nmodels = [\"keyless\"]\n",
    )
    .await;
    let (status, e) = error_of(
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("keyless", false))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 500);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TOLLGATE_TEST_UNSET_KEY")
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_bodies_keeps_request_and_response() {
    let mut gw =
        Gateway::start_with(MockConfig::default(), "[traces]\nstore_bodies = true\n").await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    let body = resp.bytes().await.unwrap();
    gw.stop().await;
    let (req, res): (Vec<u8>, Vec<u8>) = row(
        &gw.db(),
        "SELECT request_body, response_body FROM traces",
        [],
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&req).unwrap(),
        chat("gpt-4o-mini", false)
    );
    assert_eq!(res, body.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let mut gw = Gateway::start().await;
    let health = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for _ in 0..3 {
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(gw.wait_traces(3).await, 3);
    assert_eq!(
        metric(&gw, "tollgate_writer_records_committed_total").await,
        3
    );
    assert_eq!(metric(&gw, "tollgate_writer_queue_depth").await, 0);
    gw.stop().await;
}

/// Issue 8, finding 2: a model name over 256 bytes is refused with 400 in
/// the client's shape, without echoing it whole; what the trace stores is
/// bounded, so a 4 MiB name cannot grow the database by MiBs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_model_names_are_refused_and_stored_bounded() {
    let mut gw = Gateway::start().await;
    let huge = "m".repeat(4 << 20);
    let cases = [
        ("/v1/chat/completions", chat(&huge, false), false),
        (
            "/v1/chat/completions",
            chat(&format!("openai/{huge}"), true),
            false,
        ),
        ("/v1/messages", message(&huge, false), true),
    ];
    for (path, body, anthropic) in &cases {
        let resp = client().post(gw.url(path)).json(body).send().await.unwrap();
        let (status, e) = error_of(resp).await;
        assert_eq!(status, 400, "{path}");
        let message = if *anthropic {
            assert_eq!(e["type"], "error");
            assert_eq!(e["error"]["type"], "invalid_request_error");
            e["error"]["message"].as_str().unwrap()
        } else {
            assert_eq!(e["error"]["type"], "invalid_request_error");
            e["error"]["message"].as_str().unwrap()
        };
        assert!(message.contains("limit of 256 bytes"), "{message}");
        assert!(
            message.len() < 300,
            "the name is echoed: {} bytes",
            message.len()
        );
    }
    gw.stop().await;

    let db = gw.db();
    assert_eq!(trace_count(&db), 3);
    let longest: (i64, i64, i64) = row(
        &db,
        "SELECT max(length(model_requested)), max(coalesce(length(model_resolved), 0)), \
         max(length(error_message)) FROM traces",
        [],
    );
    assert_eq!(longest.0, 256);
    assert!(longest.1 <= 256 && longest.2 <= 512, "{longest:?}");
    let on_disk: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", gw.db.display())).ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk < 1 << 20, "the database holds {on_disk} bytes");
}
