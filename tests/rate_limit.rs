//! Rate limits (`[modules.rate_limit]`), black-box: requests per minute per
//! key, requests in flight, tokens per minute with the reservation settled
//! from the actual usage; the 429 in both protocols' shapes with
//! `Retry-After` and the providers' rate-limit headers, and its trace.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

const AUTH_ON: &str = "[auth]\nrequire_client_key = true\n";

async fn create_key(gw: &Gateway, name: &str) -> (String, String) {
    let (status, key) = admin_call(
        gw,
        reqwest::Method::POST,
        "/keys",
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    )
}

async fn post(gw: &Gateway, path: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = client().post(gw.url(path)).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}: {:?}", resp.headers()))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn rpm_refuses_the_third_request_of_a_key_in_a_minute_openai_shape_traced() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        &format!("{AUTH_ON}[modules.rate_limit]\nrpm = 2\n"),
    )
    .await;
    let (id_a, key_a) = create_key(&gw, "a").await;
    let (_, key_b) = create_key(&gw, "b").await;
    let body = chat("gpt-4o-mini", false);
    for _ in 0..2 {
        let resp = post(&gw, "/v1/chat/completions", &body, Some(&key_a)).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = post(&gw, "/v1/chat/completions", &body, Some(&key_a)).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    let reset = header(&resp, "x-ratelimit-reset-requests");
    assert!(reset.ends_with('s') && reset.len() >= 2, "{reset}");
    assert!(resp.headers().get("x-ratelimit-limit-tokens").is_none());
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "rate_limit_error");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        gw.mock.request_count(),
        2,
        "the refused request never went upstream"
    );

    // Another key has its own count.
    let resp = post(&gw, "/v1/chat/completions", &body, Some(&key_b)).await;
    assert_eq!(resp.status(), 200);

    assert_eq!(gw.wait_traces(4).await, 4);
    gw.stop().await;
    let db = gw.db();
    let refused: Vec<(i64, String, String)> = rows(
        &db,
        "SELECT status, error_kind, client_key_id FROM traces WHERE error_kind IS NOT NULL",
    );
    assert_eq!(refused, vec![(429, "rate_limited".to_string(), id_a)]);
}

#[tokio::test]
async fn rpm_refusal_on_messages_has_the_anthropic_shape_and_headers() {
    let mut gw =
        Gateway::start_with(MockConfig::default(), "[modules.rate_limit]\nrpm = 1\n").await;
    let body = message("claude-haiku-4-5", false);
    let resp = post(&gw, "/v1/messages", &body, None).await;
    assert_eq!(resp.status(), 200);
    let resp = post(&gw, "/v1/messages", &body, None).await;
    assert_eq!(resp.status(), 429);
    assert!(header(&resp, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&resp, "anthropic-ratelimit-requests-limit"), "1");
    assert_eq!(header(&resp, "anthropic-ratelimit-requests-remaining"), "0");
    let reset = header(&resp, "anthropic-ratelimit-requests-reset").to_string();
    assert!(
        time::OffsetDateTime::parse(&reset, &time::format_description::well_known::Rfc3339).is_ok(),
        "{reset}"
    );
    assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "rate_limit_error");
    assert_eq!(gw.wait_traces(2).await, 2);
    gw.stop().await;
    let t = last_trace(&gw.db());
    assert_eq!(t["status"], 429);
    assert_eq!(t["error_kind"], "rate_limited");
}

#[tokio::test]
async fn max_parallel_refuses_a_concurrent_request_and_admits_once_the_first_ends() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        "[modules.rate_limit]\nmax_parallel = 1\n",
    )
    .await;
    let slow = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-chunk-delay-ms", "150")
        .header("x-mock-words", "3")
        .json(&chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);

    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("gpt-4o-mini", false),
        None,
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "1");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");

    let text = tokio::time::timeout(Duration::from_secs(5), slow.text())
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("[DONE]"));
    assert_eq!(gw.wait_traces(2).await, 2);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("gpt-4o-mini", false),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn tpm_reservation_is_settled_with_the_actual_usage() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        "[modules.rate_limit]\ntpm = 5000\ndefault_max_tokens = 4096\n",
    )
    .await;
    // Without max_tokens each request reserves 4096 + its body / 4: two
    // such reservations exceed 5000, so the second passes only because the
    // first gave back all but the 20 tokens it used.
    for n in 1..=2 {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-mock-usage", "prompt=12,completion=8")
            .json(&chat("gpt-4o-mini", n == 2))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {n}");
        resp.bytes().await.unwrap();
        assert_eq!(gw.wait_traces(n).await, n);
    }

    // A request whose reservation cannot fit is refused, with the tokens
    // headers: 5000 - 2 * 20 used = 4960 remaining.
    let mut body = chat("gpt-4o-mini", false);
    body["max_completion_tokens"] = json!(4990);
    let resp = post(&gw, "/v1/chat/completions", &body, None).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-limit-tokens"), "5000");
    assert_eq!(header(&resp, "x-ratelimit-remaining-tokens"), "4960");
    assert!(header(&resp, "x-ratelimit-reset-tokens").ends_with('s'));
    assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());

    // On /v1/messages too, in Anthropic's header names.
    let mut body = message("claude-haiku-4-5", false);
    body["max_tokens"] = json!(4990);
    let resp = post(&gw, "/v1/messages", &body, None).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "anthropic-ratelimit-tokens-limit"), "5000");
    assert_eq!(
        header(&resp, "anthropic-ratelimit-tokens-remaining"),
        "4960"
    );

    // A max_tokens that is not a count is the upstream's to judge: it
    // reserves the default and goes through.
    let mut body = chat("gpt-4o-mini", false);
    body["max_tokens"] = json!("many");
    let resp = post(&gw, "/v1/chat/completions", &body, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(gw.wait_traces(5).await, 5);
    gw.stop().await;
}

#[tokio::test]
async fn disabled_module_limits_nothing() {
    let mut gw = Gateway::start_with(
        MockConfig::default(),
        "[modules.rate_limit]\nenabled = false\nrpm = 1\n",
    )
    .await;
    for _ in 0..2 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("gpt-4o-mini", false),
            None,
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    gw.stop().await;
}

/// A key's own limit, set through the admin API, wins over the configured
/// default; a key without one keeps the default; and a change through
/// `PATCH /admin/v1/keys/{id}` is in force within the auth cache's second.
#[tokio::test]
async fn a_keys_own_rpm_wins_over_the_default_and_a_patch_takes_effect() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("{AUTH_ON}[modules.rate_limit]\nrpm = 3\n"),
    )
    .await;
    let (status, limited) = admin_call(
        &gw,
        reqwest::Method::POST,
        "/keys",
        Some(json!({"name": "limited", "rpm": 1})),
    )
    .await;
    assert_eq!(status, 201, "{limited}");
    let limited_id = limited["id"].as_str().unwrap().to_string();
    let limited = limited["key"].as_str().unwrap().to_string();
    let (_, default) = create_key(&gw, "default").await;
    let body = chat("gpt-4o-mini", false);
    let statuses = |key: String, n: usize| {
        let gw = &gw;
        let body = &body;
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(
                    post(gw, "/v1/chat/completions", body, Some(&key))
                        .await
                        .status()
                        .as_u16(),
                );
            }
            out
        }
    };
    assert_eq!(statuses(limited.clone(), 2).await, vec![200, 429]);
    assert_eq!(statuses(default.clone(), 4).await, vec![200, 200, 200, 429]);

    // Raised to 5 per minute: one used, so three more pass, then 429.
    let (status, patched) = admin_call(
        &gw,
        reqwest::Method::PATCH,
        &format!("/keys/{limited_id}"),
        Some(json!({"rpm": 5})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = statuses(limited, 5).await;
    assert_eq!(after.iter().filter(|&&s| s == 200).count(), 4, "{after:?}");
    assert_eq!(after.last(), Some(&429), "{after:?}");
}
