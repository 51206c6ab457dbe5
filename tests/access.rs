//! Keys and access, black-box: client keys on every proxy route, the admin
//! API, revocation under load, and the provider-key vault.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

const AUTH_ON: &str = "[auth]\nrequire_client_key = true\n";

async fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let (status, key) = admin_call(gw, reqwest::Method::POST, "/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    )
}

/// The three proxy routes with a minimal valid body each.
fn routes() -> Vec<(&'static str, Value, bool)> {
    vec![
        ("/v1/chat/completions", chat("gpt-4o-mini", false), false),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x"}),
            false,
        ),
        ("/v1/messages", message("claude-haiku-4-5", false), true),
    ]
}

async fn call(
    gw: &Gateway,
    path: &str,
    body: &Value,
    key: Option<&str>,
    x_api_key: bool,
) -> (u16, Value) {
    let mut req = client().post(gw.url(path)).json(body);
    if let Some(k) = key {
        req = if x_api_key {
            req.header("x-api-key", k)
        } else {
            req.bearer_auth(k)
        };
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_error_shape(anthropic: bool, body: &Value, kind: &str) {
    if anthropic {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
    } else {
        assert!(body["error"]["message"].is_string(), "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_outcome_on_every_proxy_route() {
    let mut gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let (valid_id, valid) = create_key(&gw, json!({"name": "app"})).await;
    let (_, revoked) = create_key(&gw, json!({"name": "old"})).await;
    let (_, expired) = create_key(&gw, json!({"name": "gone", "expires_at": "2020-01-01"})).await;
    let (_, limited) = create_key(
        &gw,
        json!({"name": "narrow", "models": ["claude-haiku-4-5", "openai/text-embedding-3-small"]}),
    )
    .await;
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::DELETE,
        &format!("/keys/{}", &revoked[..11]),
        None,
    )
    .await;
    assert_eq!(status, 200);

    for (path, body, anthropic) in routes() {
        let unauthorized = if anthropic {
            "authentication_error"
        } else {
            "invalid_request_error"
        };
        let (s, e) = call(&gw, path, &body, None, false).await;
        assert_eq!(s, 401, "{path} missing");
        assert_error_shape(anthropic, &e, unauthorized);
        assert!(e.to_string().contains("Missing API key"), "{e}");
        for (what, key) in [
            ("wrong", "tg-not-a-key"),
            ("revoked", revoked.as_str()),
            ("expired", expired.as_str()),
        ] {
            let (s, e) = call(&gw, path, &body, Some(key), anthropic).await;
            assert_eq!(s, 401, "{path} {what}: {e}");
            assert_error_shape(anthropic, &e, unauthorized);
            assert!(
                !e.to_string().contains(key),
                "the presented key is echoed: {e}"
            );
        }
        let (s, e) = call(&gw, path, &body, Some(&valid), false).await;
        assert_eq!(s, 200, "{path} bearer: {e}");
        let (s, e) = call(&gw, path, &body, Some(&valid), true).await;
        assert_eq!(s, 200, "{path} x-api-key: {e}");
        let (s, e) = call(&gw, path, &body, Some(&limited), anthropic).await;
        if path == "/v1/chat/completions" {
            assert_eq!(s, 403, "{e}");
            assert_error_shape(false, &e, "permission_error");
        } else {
            assert_eq!(s, 200, "{path} allowed model: {e}");
        }
    }
    assert!(
        gw.mock
            .requests()
            .iter()
            .all(|r| r.headers.iter().all(|(_, v)| !v.contains(&valid[3..]))),
        "a client key reached the upstream"
    );
    gw.stop().await;

    let db = gw.db();
    let by_key: i64 = value(
        &db,
        "SELECT count(*) FROM traces WHERE client_key_id = ?1 AND status = 200",
        [&valid_id],
    );
    assert_eq!(by_key, 6);
    let costs_by_key: i64 = value(
        &db,
        "SELECT count(*) FROM costs WHERE client_key_id = ?1",
        [&valid_id],
    );
    assert_eq!(costs_by_key, 6);
    let unauthorized: i64 = value(
        &db,
        "SELECT count(*) FROM traces WHERE error_kind = 'unauthorized' AND client_key_id IS NULL",
        [],
    );
    assert_eq!(unauthorized, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_requires_its_credential_and_audits_every_change() {
    let mut gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    for (method, path) in [
        ("GET", "/keys"),
        ("POST", "/keys"),
        ("DELETE", "/keys/x"),
        ("GET", "/provider-keys"),
        ("POST", "/vault/rotate"),
        ("PUT", "/aliases/a"),
        ("GET", "/prices"),
        ("GET", "/openapi.json"),
    ] {
        for cred in [None, Some("tga-wrong"), Some("tg-client-key")] {
            let mut req =
                client().request(method.parse().unwrap(), gw.url(&format!("/admin/v1{path}")));
            if let Some(c) = cred {
                req = req.bearer_auth(c);
            }
            let resp = req.json(&json!({})).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {cred:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["type"], "unauthorized");
        }
    }

    let (status, spec) = admin_call(&gw, reqwest::Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/keys"].is_object(), "{spec}");

    let (id, key) = create_key(&gw, json!({"name": "ci", "models": ["fast"]})).await;
    let (status, list) = admin_call(&gw, reqwest::Method::GET, "/keys", None).await;
    assert_eq!(status, 200);
    let listed = &list.as_array().unwrap()[0];
    assert_eq!(listed["id"], id.as_str());
    assert!(listed.get("key").is_none() && !list.to_string().contains(&key[3..]));

    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/aliases/cheap",
        Some(json!({"target": "openai/gpt-4o-mini"})),
    )
    .await;
    assert_eq!(status, 200);
    let (s, _) = call(
        &gw,
        "/v1/chat/completions",
        &chat("cheap", false),
        Some(&key),
        false,
    )
    .await;
    assert_eq!(s, 403, "the key may only use `fast`");
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/aliases/fast",
        Some(json!({"target": "openai/gpt-4o-mini"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, aliases) = admin_call(&gw, reqwest::Method::GET, "/aliases", None).await;
    assert_eq!(
        (status, aliases["cheap"].as_str()),
        (200, Some("openai/gpt-4o-mini"))
    );
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/aliases/bad",
        Some(json!({"target": "nowhere/x"})),
    )
    .await;
    assert_eq!(status, 400);

    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/prices/openai/gpt-4o-mini",
        Some(json!({"input": "1", "output": "2"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, bad) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/prices/openai/gpt-4o-mini",
        Some(json!({"input": "1e3", "output": "2"})),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-mock-usage", "prompt=1000000,completion=0")
        .json(&chat("fast", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let trace_id = request_id(&resp);
    let (status, prices) = admin_call(&gw, reqwest::Method::GET, "/prices", None).await;
    assert_eq!(status, 200);
    let mini = prices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "openai" && p["model"] == "gpt-4o-mini")
        .unwrap();
    assert_eq!(
        (mini["input"].as_str(), mini["source"].as_str()),
        (Some("1.00"), Some("config"))
    );

    let (status, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        &format!("/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        &format!("/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = admin_call(&gw, reqwest::Method::DELETE, "/keys/key_nothing", None).await;
    assert_eq!(status, 404);
    gw.stop().await;

    let db = gw.db();
    let cost: i64 = value(
        &db,
        "SELECT cost_uc FROM costs WHERE trace_id = ?1",
        [&trace_id],
    );
    assert_eq!(
        cost, 100_000_000,
        "1M tokens at the $1/M set through the API"
    );
    let actions: Vec<(String, String)> = rows(
        &db,
        "SELECT actor, action FROM audit_log WHERE action != 'proxy.request' ORDER BY seq",
    );
    let want = [
        "client_key.create",
        "alias.set",
        "alias.set",
        "price.set",
        "client_key.revoke",
    ];
    assert_eq!(
        actions.iter().map(|a| a.1.as_str()).collect::<Vec<_>>(),
        want
    );
    assert!(actions.iter().all(|a| a.0 == "admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_while_requests_are_in_flight() {
    let mut gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let (id, key) = create_key(&gw, json!({"name": "busy"})).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-mock-chunk-delay-ms", "60")
            .header("x-mock-words", "10")
            .json(&chat("gpt-4o-mini", true))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(tokio::spawn(resp.text()));
    }
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::POST,
        &format!("/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Refused at once in this process (the admin API invalidates the cache).
    let (s, _) = call(
        &gw,
        "/v1/chat/completions",
        &chat("gpt-4o-mini", false),
        Some(&key),
        false,
    )
    .await;
    assert_eq!(s, 401);
    for s in streams {
        let text = s.await.unwrap().unwrap();
        assert!(
            text.ends_with("data: [DONE]\n\n"),
            "an admitted request was cut: {text}"
        );
    }

    // A revocation from another process (the CLI) is seen within a second.
    let (_, other) = create_key(&gw, json!({"name": "other"})).await;
    let (s, _) = call(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "x"}),
        Some(&other),
        false,
    )
    .await;
    assert_eq!(s, 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["keys", "revoke", "--db"])
        .arg(&gw.db)
        .arg(&other[..11])
        .env("TOLLGATE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = std::time::Instant::now();
    loop {
        let (s, _) = call(
            &gw,
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": "x"}),
            Some(&other),
            false,
        )
        .await;
        if s == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(1500),
            "still accepted {:?} after revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["audit", "verify", "--db"])
        .arg(&gw.db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CLI and server appended to one chain: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
