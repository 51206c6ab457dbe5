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
    assert_eq!(metric(&gw, "tollgate_auth_failures_total").await, 12);
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
    // Unauthenticated refusals are sampled: the first per address per minute
    // is traced (docs/AUDIT.md).
    let unauthorized: i64 = value(
        &db,
        "SELECT count(*) FROM traces WHERE error_kind = 'unauthorized' AND client_key_id IS NULL",
        [],
    );
    assert_eq!(unauthorized, 1);
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
    // An allowlist names provider-qualified models: `fast` stands for its
    // target, openai/gpt-4o-mini, by whatever name it is asked for.
    let (s, _) = call(
        &gw,
        "/v1/chat/completions",
        &chat("cheap", false),
        Some(&key),
        false,
    )
    .await;
    assert_eq!(s, 200, "`cheap` is the model `fast` allows");
    let (s, _) = call(
        &gw,
        "/v1/chat/completions",
        &chat("text-embedding-3-small", false),
        Some(&key),
        false,
    )
    .await;
    assert_eq!(s, 403, "the key may only use what `fast` points at");
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
        (Some("1.00"), Some("database"))
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

/// Issue 8, finding 6: a stranger spraying wrong keys is slowed to
/// `failed_per_minute` after `failed_burst`, answered 429 with Retry-After
/// before any lookup, and costs one trace per address per minute, not one
/// per request. A throttled address is refused whatever key it sends, until
/// its next failure is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_throttled_per_address_and_sampled() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        "[auth]\nrequire_client_key = true\nfailed_per_minute = 60\nfailed_burst = 10\n",
    )
    .await;
    let (_, valid) = create_key(&gw, json!({"name": "app"})).await;
    let http = client();
    let body = chat("gpt-4o-mini", false);
    let (mut refused, mut throttled) = (0, 0);
    for i in 0..2000 {
        let resp = http
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(format!("tg-guess-{i}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let names_a_trace = resp.headers().contains_key("x-tollgate-request-id");
        assert_eq!(
            names_a_trace,
            i == 0,
            "request {i}: only the sample names a trace"
        );
        match resp.status().as_u16() {
            401 => refused += 1,
            429 => {
                let retry: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                let e: Value = resp.json().await.unwrap();
                assert_eq!(e["error"]["type"], "rate_limit_error", "{e}");
                throttled += 1;
            }
            s => panic!("status {s}"),
        }
    }
    assert!(
        refused >= 10 && throttled >= 1900,
        "{refused} refused, {throttled} throttled"
    );

    let (s, e) = call(&gw, "/v1/chat/completions", &body, Some(&valid), false).await;
    assert_eq!(
        s, 429,
        "a blocked address is refused before any lookup: {e}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, e) = call(&gw, "/v1/chat/completions", &body, Some(&valid), false).await;
    assert_eq!(
        s, 200,
        "once its next failure is due, the address is heard: {e}"
    );

    assert_eq!(
        metric(&gw, "tollgate_auth_throttled_total").await,
        throttled + 1
    );
    assert!(metric(&gw, "tollgate_auth_failures_total").await >= refused);
    gw.stop().await;
    let db = gw.db();
    let unauthenticated: i64 = value(
        &db,
        "SELECT count(*) FROM traces WHERE client_key_id IS NULL",
        [],
    );
    assert_eq!(
        unauthenticated, 1,
        "one sampled trace per address per minute"
    );
    assert_eq!(trace_count(&db), 2);
}

/// Issue 8, finding 14: a request carrying two credentials is refused, not
/// decided by whichever comes first; the same key in both headers (as the
/// Anthropic SDK may send) passes. The admin API applies the same rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_credentials_are_refused() {
    let mut gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let (_, valid) = create_key(&gw, json!({"name": "app"})).await;
    let bearer = format!("Bearer {valid}");
    for (path, body, anthropic) in routes() {
        let send = |headers: Vec<(&'static str, String)>| {
            let mut req = client().post(gw.url(path)).json(&body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            async move {
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        for headers in [
            vec![
                ("authorization", bearer.clone()),
                ("authorization", "Bearer tg-other".to_string()),
            ],
            vec![
                ("x-api-key", valid.clone()),
                ("x-api-key", "tg-other".into()),
            ],
            vec![
                ("authorization", bearer.clone()),
                ("x-api-key", "tg-other".into()),
            ],
        ] {
            let (s, e) = send(headers.clone()).await;
            assert_eq!(s, 400, "{path} {headers:?}: {e}");
            assert_error_shape(anthropic, &e, "invalid_request_error");
            assert!(e.to_string().contains("More than one API key"), "{e}");
        }
        let (s, e) = send(vec![
            ("authorization", bearer.clone()),
            ("x-api-key", valid.clone()),
        ])
        .await;
        assert_eq!(s, 200, "{path}: the same key twice: {e}");
    }

    let admin = |values: &[&str]| {
        let mut req = client().get(gw.url("/admin/v1/keys"));
        for v in values {
            req = req.header("authorization", format!("Bearer {v}"));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(admin(&[ADMIN_KEY, "tga-other"]).await, 400);
    assert_eq!(admin(&[ADMIN_KEY]).await, 200);
    gw.stop().await;
}

/// Issue 8, finding 12: an allowlist entry stands for provider-qualified
/// models. A bare `gpt-4o-mini` is openai's (the provider that lists it),
/// not another provider's model of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlists_name_provider_qualified_models() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        &format!(
            "{AUTH_ON}[[providers]]\nname = \"evil\"\nprotocol = \"openai\"\n\
             base_url = \"http://127.0.0.1:1\"\napi_key_env = \"TEST_UPSTREAM_KEY\"\n\
             models = [\"other\"]\n"
        ),
    )
    .await;
    let (_, bare) = create_key(&gw, json!({"name": "bare", "models": ["gpt-4o-mini"]})).await;
    let (_, alias) = create_key(&gw, json!({"name": "alias", "models": ["fast"]})).await;
    let (_, qualified) =
        create_key(&gw, json!({"name": "q", "models": ["openai/gpt-4o-mini"]})).await;
    let (_, any) = create_key(&gw, json!({"name": "any", "models": ["*"]})).await;
    let path = "/v1/chat/completions";
    for key in [&bare, &alias, &qualified] {
        for model in ["gpt-4o-mini", "openai/gpt-4o-mini", "fast"] {
            let (s, e) = call(&gw, path, &chat(model, false), Some(key), false).await;
            assert_eq!(s, 200, "{model}: {e}");
        }
        for model in ["evil/gpt-4o-mini", "evil/fast", "openai/gpt-4o"] {
            let (s, e) = call(&gw, path, &chat(model, false), Some(key), false).await;
            assert_eq!(s, 403, "{model}: {e}");
            assert_error_shape(false, &e, "permission_error");
        }
    }
    // `*` allows all: evil is reached (and unreachable, here).
    let (s, _) = call(
        &gw,
        path,
        &chat("evil/gpt-4o-mini", false),
        Some(&any),
        false,
    )
    .await;
    assert_eq!(s, 502);
    gw.stop().await;
}

/// Issue 8, finding 17: key names are printed by `tollgate keys list`, so
/// control characters (terminal escapes) are refused when a key is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_names_with_control_characters_are_refused() {
    let mut gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    for name in ["ops\u{1b}]0;pwned\u{7}", "two\nlines", "bell\u{7}"] {
        let (status, e) = admin_call(
            &gw,
            reqwest::Method::POST,
            "/keys",
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(status, 400, "{name:?}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("control characters")
        );
    }
    let (status, list) = admin_call(&gw, reqwest::Method::GET, "/keys", None).await;
    assert_eq!((status, list), (200, json!([])));
    gw.stop().await;
}

/// Guessing the admin credential is throttled like guessing client keys,
/// from the same per-address budget: over it, 429 with `Retry-After`, and the
/// address is refused on the proxy routes too until the wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_logins_are_throttled_per_address() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[auth]\nrequire_client_key = true\nfailed_per_minute = 60\nfailed_burst = 5\n",
    )
    .await;
    let (_, valid) = create_key(&gw, json!({"name": "app"})).await;
    let http = client();
    let mut statuses = Vec::new();
    for i in 0..50 {
        let resp = http
            .get(gw.url("/admin/v1/keys"))
            .bearer_auth(format!("tga-guess-{i}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status == 429 {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    let throttled = statuses.iter().filter(|&&s| s == 429).count();
    assert!(throttled >= 40, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 401 || s == 429));
    // The same address, now with the right admin credential and a valid
    // client key: refused until Retry-After, before any credential check.
    let (status, _) = admin_call(&gw, reqwest::Method::GET, "/keys", None).await;
    assert_eq!(status, 429);
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&valid)
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // Every refusal is counted: the guesses checked, and those refused
    // unchecked while the address was blocked.
    let failures = metric(&gw, "tollgate_auth_failures_total").await;
    let refused_unchecked = metric(&gw, "tollgate_auth_throttled_total").await;
    assert!((6..=10).contains(&failures), "{failures}");
    assert!(refused_unchecked >= 40, "{refused_unchecked}");
}
