//! What a broken or hostile upstream, or a client that misuses the body of a
//! request or response, can do to tollgate (issue 8): huge stream events,
//! slow request bodies, clients that stop reading, error bodies that echo
//! the provider key, and account headers.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_mock_upstream::{ACCOUNT_AND_INFO_HEADERS, MockConfig, masked_forms};

/// The events of an SSE body, without their blank lines.
fn events(body: &[u8]) -> Vec<&[u8]> {
    body.split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"data: "))
        .map(|line| &line[6..])
        .collect()
}

/// Finding 3: an event longer than the inspection cap reaches the client
/// unchanged while it is still arriving (it is not buffered whole), and the
/// trace records that usage could not be read, so the cost is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_stream_event_streams_through_unchanged_and_leaves_usage_unknown() {
    const HUGE: usize = 24 << 20;
    // The default upstream.max_inspected_event_bytes (1 MiB) applies.
    let mut gw = Gateway::start().await;
    for (path, body, huge) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", true), HUGE),
        ("/v1/messages", message("claude-haiku-4-5", true), HUGE),
    ] {
        let before = gw.mock.stream_bytes_sent();
        let mut resp = client()
            .post(gw.url(path))
            .header("x-mock-huge-event-bytes", huge.to_string())
            .header("x-mock-chunk-delay-ms", "2")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut got = Vec::new();
        let mut upstream_had_sent = None;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
            if upstream_had_sent.is_none() && got.len() > 1 << 20 {
                upstream_had_sent = Some(gw.mock.stream_bytes_sent() - before);
            }
        }
        let sent = upstream_had_sent.unwrap();
        assert!(
            sent < huge as u64 / 2,
            "{path}: the client got the first MiB only after the upstream had sent {sent} of {huge} bytes"
        );
        let data = events(&got);
        let big: Vec<&&[u8]> = data.iter().filter(|d| d.len() > huge).collect();
        assert_eq!(big.len(), 1, "{path}: one huge event");
        let v: Value = serde_json::from_slice(big[0]).expect("the huge event is intact JSON");
        let text = v
            .pointer("/choices/0/delta/content")
            .or_else(|| v.pointer("/delta/text"))
            .and_then(Value::as_str)
            .unwrap();
        assert_eq!(text.len(), huge);
        assert!(text.bytes().all(|b| b == b'x'));
        let last = data.last().unwrap();
        assert!(
            *last == b"[DONE]" || last.starts_with(br#"{"type":"message_stop""#),
            "{path}: the stream ends normally"
        );
    }
    gw.stop().await;
    let db = gw.db();
    let traces: Vec<(i64, Option<String>, Option<i64>, String)> = rows(
        &db,
        "SELECT t.status, t.error_kind, t.input_tokens, c.status
         FROM traces t JOIN costs c ON c.trace_id = t.id ORDER BY t.id",
    );
    assert_eq!(traces.len(), 2);
    for (status, kind, input, cost) in traces {
        assert_eq!(status, 200);
        assert_eq!(kind.as_deref(), Some("usage_unreadable"));
        assert_eq!(input, None);
        assert_eq!(cost, "unknown_usage");
    }
}

/// Finding 4: a request body sent a byte at a time is cut off at
/// `server.body_timeout_ms` with 408 in the client's protocol shape, and
/// traced as `body_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_body_gets_408_at_the_body_timeout() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        "max_body_bytes = 33554432\nbody_timeout_ms = 300\n",
    )
    .await;
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", false)),
        ("/v1/messages", message("claude-haiku-4-5", false)),
    ] {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: tollgate\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (mut rd, mut wr) = s.into_split();
        let body = serde_json::to_vec(&body).unwrap();
        let trickle = tokio::spawn(async move {
            for b in body {
                let chunk = [b"1\r\n".as_slice(), &[b], b"\r\n"].concat();
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(b"}") {
                break;
            }
        }
        let elapsed = started.elapsed();
        trickle.abort();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "{path}: no 408 within 3 s: {text:?}"
        );
        assert!(elapsed < Duration::from_secs(2), "{path}: took {elapsed:?}");
        let json: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        if path == "/v1/messages" {
            assert_eq!(json["type"], "error", "{json}");
            assert_eq!(json["error"]["type"], "invalid_request_error");
        } else {
            assert_eq!(json["error"]["code"], "request_timeout", "{json}");
        }
    }
    gw.stop().await;
    let traces: Vec<(i64, String)> = rows(
        &gw.db(),
        "SELECT status, error_kind FROM traces ORDER BY id",
    );
    assert_eq!(traces, vec![(408, "body_timeout".into()); 2]);
    assert_eq!(gw.mock.request_count(), 0);
}

/// Finding 5: a client that opens a stream and never reads is cut off at
/// `upstream.total_timeout_ms`: its connection is closed and the trace is
/// recorded then (as a timeout), not whenever the client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_at_the_total_deadline() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[upstream]\ntotal_timeout_ms = 500\n",
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap();
    let body = serde_json::to_vec(&message("claude-haiku-4-5", true)).unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: tollgate\r\ncontent-type: application/json\r\n\
         x-mock-huge-event-bytes: 268435456\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let started = Instant::now();
    // The client reads nothing: buffers fill and hyper stops polling the
    // response body.
    let count = gw.wait_traces(1).await;
    let elapsed = started.elapsed();
    assert_eq!(count, 1, "no trace while the client is not reading");
    assert!(elapsed < Duration::from_secs(3), "traced after {elapsed:?}");
    let trace = last_trace(&gw.db());
    assert_eq!(trace["error_kind"], "upstream_timeout", "{trace:?}");
    // What was buffered drains, then the connection is closed.
    let mut buf = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was not closed");
}

/// Finding 9: an upstream error body that repeats the provider key, whole or
/// masked, reaches the client with the key replaced, in both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_echoing_the_provider_key_is_redacted() {
    let mut gw = Gateway::start().await;
    let masked = masked_forms(UPSTREAM_KEY);
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", false)),
        ("/v1/chat/completions", chat("gpt-4o-mini", true)),
        ("/v1/messages", message("claude-haiku-4-5", false)),
    ] {
        let resp = client()
            .post(gw.url(path))
            .header("x-mock-echo-key", "1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(UPSTREAM_KEY), "{path}: {text}");
        for m in &masked {
            assert!(!text.contains(m.as_str()), "{path}: {text}");
        }
        assert!(
            !text.contains(&UPSTREAM_KEY[UPSTREAM_KEY.len() - 4..]),
            "{text}"
        );
        let json: Value = serde_json::from_str(&text).unwrap();
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Incorrect API key provided: [redacted]"),
            "{message}"
        );
    }
    gw.stop().await;
    assert_eq!(trace_count(&gw.db()), 3);
}

/// Finding 9, the bound: an error body too large to check (over 64 KiB) is
/// not passed on unchecked; the client gets the upstream's status with an
/// error of tollgate's own, in its protocol's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_too_large_to_check_is_withheld() {
    let mut gw = Gateway::start().await;
    for (path, body) in [
        ("/v1/chat/completions", chat("gpt-4o-mini", false)),
        ("/v1/messages", message("claude-haiku-4-5", false)),
    ] {
        let resp = client()
            .post(gw.url(path))
            .header("x-mock-echo-key", "1")
            .header("x-mock-error-padding", "200000")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(UPSTREAM_KEY), "{path}");
        let json: Value = serde_json::from_str(&text).unwrap();
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("withheld"), "{path}: {message}");
        if path == "/v1/messages" {
            assert_eq!(json["type"], "error");
        }
    }
    gw.stop().await;
    let kinds: Vec<(i64, String)> = rows(&gw.db(), "SELECT status, error_kind FROM traces");
    assert_eq!(kinds, vec![(401, "upstream_error_status".into()); 2]);
}

/// Finding 10: upstream headers naming the provider account do not reach
/// the client; request ids and rate-limit information do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_account_headers_are_not_passed_to_the_client() {
    let mut gw = Gateway::start().await;
    for (path, body, id_header) in [
        (
            "/v1/chat/completions",
            chat("gpt-4o-mini", false),
            "x-request-id",
        ),
        (
            "/v1/chat/completions",
            chat("gpt-4o-mini", true),
            "x-request-id",
        ),
        (
            "/v1/messages",
            message("claude-haiku-4-5", true),
            "request-id",
        ),
    ] {
        let resp = client()
            .post(gw.url(path))
            .header("x-mock-account-headers", "1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let headers = resp.headers().clone();
        resp.bytes().await.unwrap();
        let (account, info) = ACCOUNT_AND_INFO_HEADERS.split_at(3);
        for (name, _) in account {
            assert!(!headers.contains_key(*name), "{path}: {name} passed");
        }
        for (name, value) in info {
            assert_eq!(headers[*name], *value, "{path}: {name}");
        }
        assert!(headers.contains_key(id_header), "{path}");
    }
    gw.stop().await;
}
