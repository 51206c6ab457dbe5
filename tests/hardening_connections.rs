//! The connection layer under hostile or idle clients (issue 8, findings 1
//! and 18): every phase of a connection is bounded, idle connections are
//! shed at the cap instead of starving new ones, a request in flight is
//! never idle, and what the HTTP layer refuses on its own is counted.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate_mock_upstream::MockConfig;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn gateway(server: &str) -> Gateway {
    Gateway::start_with(MockConfig::default(), server).await
}

/// `n` raw sockets that send `greeting` (maybe nothing) and then nothing.
async fn silent_sockets(gw: &Gateway, n: usize, greeting: &[u8]) -> Vec<TcpStream> {
    let mut socks = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        if !greeting.is_empty() {
            s.write_all(greeting).await.unwrap();
        }
        socks.push(s);
    }
    // Let the server accept them all.
    tokio::time::sleep(Duration::from_millis(100)).await;
    socks
}

/// Waits (at most `limit`) for the server to close `sock`; returns how
/// long that took, or `None` if it was still open. Bytes sent before the
/// close (an error response) are skipped.
async fn closed_within(sock: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Reads one HTTP/1.1 response with a `content-length` from `sock`.
async fn read_response(sock: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before a full response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// The cap is full of sockets that never send a request: a new client is
/// still served at once (an idle one is shed), and a proxied chat too.
async fn served_with_cap_full_of(greeting: &[u8]) {
    // A header timeout far longer than the wait allowed below: only
    // shedding can make room in time.
    let gw = gateway("max_connections = 8\nheader_timeout_ms = 5000\n").await;
    let _idle = silent_sockets(&gw, 8, greeting).await;
    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_millis(2000),
        client().get(gw.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answered while the cap is full of idle sockets")
    .unwrap();
    assert_eq!(health.status(), 200);
    let chat = tokio::time::timeout(
        Duration::from_millis(2000),
        client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("gpt-4o-mini", false))
            .send(),
    )
    .await
    .expect("a chat answered while the cap is full of idle sockets")
    .unwrap();
    assert_eq!(chat.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(4000));
    assert!(metric(&gw, "tollgate_connections_shed_total").await >= 2);
}

#[tokio::test]
async fn silent_sockets_filling_the_cap_do_not_starve_a_new_client() {
    served_with_cap_full_of(b"").await;
}

#[tokio::test]
async fn http2_preface_only_sockets_filling_the_cap_do_not_starve_a_new_client() {
    served_with_cap_full_of(H2_PREFACE).await;
}

#[tokio::test]
async fn a_connection_without_a_request_head_is_closed_after_the_header_timeout() {
    let gw = gateway("max_connections = 64\nheader_timeout_ms = 300\n").await;
    let limit = Duration::from_secs(3);
    for greeting in [
        &b""[..],
        H2_PREFACE,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
    ] {
        let mut sock = TcpStream::connect(gw.addr).await.unwrap();
        sock.write_all(greeting).await.unwrap();
        let took = closed_within(&mut sock, limit)
            .await
            .unwrap_or_else(|| panic!("still open after {limit:?} ({greeting:?})"));
        assert!(took >= Duration::from_millis(250), "{took:?}");
    }
    assert_eq!(
        metric(
            &gw,
            "tollgate_connections_timed_out_total{phase=\"header\"}"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn a_later_http1_head_must_also_arrive_within_the_header_timeout() {
    let gw =
        gateway("max_connections = 64\nheader_timeout_ms = 300\nidle_timeout_ms = 10000\n").await;
    let mut sock = TcpStream::connect(gw.addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut sock).await.starts_with("HTTP/1.1 200"));
    sock.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let took = closed_within(&mut sock, Duration::from_secs(3))
        .await
        .expect("a stalled second head is cut long before the idle timeout");
    assert!(took >= Duration::from_millis(250), "{took:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let gw =
        gateway("max_connections = 64\nheader_timeout_ms = 5000\nidle_timeout_ms = 400\n").await;
    let mut sock = TcpStream::connect(gw.addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut sock).await.starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut sock, Duration::from_secs(3))
        .await
        .expect("idle keep-alive connection closed");
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert_eq!(
        metric(&gw, "tollgate_connections_timed_out_total{phase=\"idle\"}").await,
        1
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let gw =
        gateway("max_connections = 64\nheader_timeout_ms = 5000\nidle_timeout_ms = 300\n").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let series = "tollgate_connections_timed_out_total{phase=\"idle\"}";
    let deadline = Instant::now() + Duration::from_secs(3);
    // /metrics is read over HTTP/1.1 on connections of its own, which may
    // themselves time out; the h2 one must be among them.
    while metric(&gw, series).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the idle h2 connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client notices the close and reconnects.
    assert_eq!(
        h2.get(gw.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_slow_request_in_flight_is_never_idle() {
    let gw =
        gateway("max_connections = 64\nheader_timeout_ms = 200\nidle_timeout_ms = 200\n").await;
    // Gaps between events and before the first byte longer than both
    // timeouts.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-first-byte-delay-ms", "400")
        .header("x-mock-chunk-delay-ms", "400")
        .header("x-mock-words", "2")
        .json(&chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("the stream is not cut");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    gw.wait_traces(1).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["status"], 200, "{trace:?}");
    assert!(trace["error_kind"].is_null(), "{trace:?}");
}

#[tokio::test]
async fn refusals_by_the_http_layer_are_counted() {
    let gw = gateway("max_connections = 64\n").await;
    // Bad framing: hyper answers 400 itself.
    let mut sock = TcpStream::connect(gw.addr).await.unwrap();
    sock.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    closed_within(&mut sock, Duration::from_secs(3))
        .await
        .unwrap();
    // A head larger than hyper's buffer: 431.
    let mut sock = TcpStream::connect(gw.addr).await.unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = sock.write_all(big.as_bytes()).await;
    closed_within(&mut sock, Duration::from_secs(3))
        .await
        .unwrap();
    // An HTTP/2 protocol error: a frame of garbage after the preface.
    let mut sock = TcpStream::connect(gw.addr).await.unwrap();
    sock.write_all(H2_PREFACE).await.unwrap();
    sock.write_all(&[0xff; 64]).await.unwrap();
    closed_within(&mut sock, Duration::from_secs(3))
        .await
        .unwrap();

    let series = |kind: &str| format!("tollgate_connection_errors_total{{kind=\"{kind}\"}}");
    assert_eq!(metric(&gw, &series("malformed")).await, 1);
    assert_eq!(metric(&gw, &series("head_too_large")).await, 1);
    assert!(metric(&gw, &series("other")).await >= 1);
    assert_eq!(trace_count(&gw.db()), 0);
}

#[tokio::test]
async fn at_the_cap_requests_in_flight_are_not_shed() {
    let gw = gateway("max_connections = 2\nheader_timeout_ms = 5000\n").await;
    let stream = |client: reqwest::Client| {
        let req = client
            .post(gw.url("/v1/chat/completions"))
            .header("x-mock-chunk-delay-ms", "150")
            .header("x-mock-words", "4")
            .json(&chat("gpt-4o-mini", true));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let (a, b) = (
        tokio::spawn(stream(client())),
        tokio::spawn(stream(client())),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The cap is full of busy connections: this one waits for room.
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        client().get(gw.url("/healthz")).send(),
    )
    .await
    .expect("served once a connection is free")
    .unwrap();
    assert_eq!(health.status(), 200);
    for body in [a.await.unwrap(), b.await.unwrap()] {
        assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    }
}
