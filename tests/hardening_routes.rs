//! Routing and admission at the door (issue 8, findings 7, 15, 16): a body
//! declared too large is refused before it is read, routes match whole path
//! segments with 405 + `Allow` for a wrong method, and `/v1/models` and
//! `/metrics` ask for a credential when configured to.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::App;
use tollgate_mock_upstream::{MockConfig, MockUpstream};

const AUTH_ON: &str = "[auth]\nrequire_client_key = true\n";

/// Sends a head declaring a 1 GB body (and a few bytes of it); returns
/// the response head, which must come at once.
async fn declare_huge_body(gw: &Gateway, path: &str, credential: &str) -> String {
    let mut sock = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{{\"a\":"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let gw = Gateway::start().await;
    let admin = declare_huge_body(&gw, "/admin/v1/keys", ADMIN_KEY).await;
    assert!(admin.starts_with("HTTP/1.1 413"), "{admin}");
    assert!(admin.contains("\"payload_too_large\""), "{admin}");
    // Authentication still comes first.
    let stranger = declare_huge_body(&gw, "/admin/v1/keys", "tga-wrong").await;
    assert!(stranger.starts_with("HTTP/1.1 401"), "{stranger}");
    // The proxy routes check the declared length too.
    let proxy = declare_huge_body(&gw, "/v1/chat/completions", "unused").await;
    assert!(proxy.starts_with("HTTP/1.1 413"), "{proxy}");
    assert!(proxy.contains("request_too_large"), "{proxy}");
}

async fn send(gw: &Gateway, method: &str, path: &str, anthropic: bool) -> reqwest::Response {
    let mut req = client()
        .request(method.parse().unwrap(), gw.url(path))
        .bearer_auth(ADMIN_KEY);
    if anthropic {
        req = req.header("anthropic-version", "2023-06-01");
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn routes_match_whole_segments_and_a_wrong_method_is_405_with_allow() {
    let gw = Gateway::start().await;
    assert_eq!(
        send(&gw, "GET", "/admin/v1/keys", false).await.status(),
        200
    );
    for path in [
        "/admin/v1keys",
        "/admin/v2/keys",
        "/admin/v1/keys/x/y/z",
        "/adminv1/keys",
    ] {
        let resp = send(&gw, "GET", path, false).await;
        assert_eq!(resp.status(), 404, "{path}");
    }

    // Admin: the admin error shape.
    let resp = send(&gw, "PATCH", "/admin/v1/keys", false).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "method_not_allowed", "{body}");
    let resp = send(&gw, "GET", "/admin/v1/prices/openai/gpt-4o-mini", false).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "PUT, DELETE");

    // Proxy routes: the client's protocol shape.
    let resp = send(&gw, "GET", "/v1/chat/completions", false).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let resp = send(&gw, "GET", "/v1/messages", true).await;
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    let resp = send(&gw, "POST", "/healthz", false).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
    assert_eq!(send(&gw, "GET", "/v1/nothing", false).await.status(), 404);

    // HEAD /healthz: GET's answer without the body.
    let resp = send(&gw, "HEAD", "/healthz", false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "15");
    assert_eq!(resp.bytes().await.unwrap().len(), 0);
    assert_eq!(trace_count(&gw.db()), 0);
}

#[tokio::test]
async fn models_follow_require_client_key() {
    let gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let models = |key: Option<&str>, anthropic: bool| {
        let mut req = client().get(gw.url("/v1/models"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if anthropic {
            req = req.header("anthropic-version", "2023-06-01");
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = models(None, false).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    assert!(!body.to_string().contains("fast"), "{body}");
    let (status, body) = models(Some("tg-wrong"), true).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");

    let (status, key) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/keys",
        Some(serde_json::json!({"name": "models"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, body) = models(key["key"].as_str(), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
}

#[tokio::test]
async fn metrics_behind_a_token() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[metrics]\ntoken = \"metrics-token-0123456789\"\n",
    )
    .await;
    let get = |token: Option<&str>| {
        let mut req = client().get(gw.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = get(None).await;
    assert_eq!(status, 401);
    assert!(!body.contains("tollgate_"), "{body}");
    assert_eq!(get(Some("wrong")).await.0, 401);
    let (status, body) = get(Some("metrics-token-0123456789")).await;
    assert_eq!(status, 200);
    assert!(body.contains("tollgate_connections_open"), "{body}");
}

#[tokio::test]
async fn metrics_on_their_own_listener_only() {
    let mock = MockUpstream::start_with(MockConfig {
        expect_key: Some(UPSTREAM_KEY.to_string()),
        ..MockConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml(
        &mock.base_url(),
        &dir.path().join("tollgate.db"),
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut app = App::open(parse_config(&toml), &test_env).unwrap();
    let metrics_addr = app.bind_metrics().await.unwrap().expect("bound");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));

    let get = |addr: std::net::SocketAddr, path: &str| {
        let url = format!("http://{addr}{path}");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(main_addr, "/metrics").await, 404);
    assert_eq!(get(main_addr, "/healthz").await, 200);
    assert_eq!(get(metrics_addr, "/metrics").await, 200);
    assert_eq!(get(metrics_addr, "/healthz").await, 404);
    assert_eq!(get(metrics_addr, "/admin/v1/keys").await, 404);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("both listeners stop")
        .unwrap();
}
