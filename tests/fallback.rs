//! Retries and fallbacks: an alias names several targets; a target failing
//! with a connect error, 429 or 5xx is retried (bounded) and then the next
//! one answers; the trace names the target that answered and records every
//! attempt. A 4xx is the client's answer, and a stream that broke after its
//! first byte is never retried.

mod common;

use common::*;
use serde_json::{Value, json};
use tollgate_mock_upstream::{MockConfig, MockUpstream};

/// A gateway whose `openai` provider is the harness mock and whose `backup`
/// provider is a second mock; `smart` = [`targets`] set through the admin
/// API. Backoff is a few ms so retries do not slow the suite.
async fn two_upstreams(targets: Value, modules: &str) -> (Gateway, MockUpstream) {
    two_upstreams_with(MockConfig::default(), 2000, targets, modules).await
}

/// As [`two_upstreams`], with the first mock's config and the first-byte
/// timeout given.
async fn two_upstreams_with(
    primary: MockConfig,
    first_byte_timeout_ms: u64,
    targets: Value,
    modules: &str,
) -> (Gateway, MockUpstream) {
    let backup = MockUpstream::start_with(MockConfig {
        expect_key: Some(UPSTREAM_KEY.to_string()),
        ..MockConfig::default()
    })
    .await;
    let extra = format!(
        r#"
[upstream]
first_byte_timeout_ms = {first_byte_timeout_ms}
{modules}
[[providers]]
name = "backup"
protocol = "openai"
base_url = "{backup}"
api_key_env = "TEST_UPSTREAM_KEY"
models = ["backup-only"]

[[providers]]
name = "dead"
protocol = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key_env = "TEST_UPSTREAM_KEY"
models = ["dead-only"]
"#,
        backup = backup.base_url(),
    );
    let gw = Gateway::start_with(primary, &extra).await;
    let (status, body) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/aliases/smart",
        Some(json!({ "target": targets })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (gw, backup)
}

const FAST_RETRIES: &str =
    "[modules.retry]\nmax_retries = 2\nbackoff_initial_ms = 1\nbackoff_max_ms = 5\n";

fn chat_requests(mock: &MockUpstream) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

fn attempt_log(trace: &serde_json::Map<String, Value>) -> Vec<Value> {
    let text = trace["attempt_log"].as_str().expect("an attempt log");
    serde_json::from_str::<Vec<Value>>(text).unwrap()
}

#[tokio::test]
async fn a_failing_target_is_retried_then_the_next_one_answers() {
    let (gw, backup) = two_upstreams(
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        FAST_RETRIES,
    )
    .await;
    gw.mock.set_fail_status(Some(500));

    let resp = post_json(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );

    assert_eq!(
        chat_requests(&gw.mock),
        3,
        "the first target: 1 + max_retries"
    );
    assert_eq!(chat_requests(&backup), 1);
    // The backup got the client's body with its own model name.
    assert_eq!(backup.requests()[0].json()["model"], "gpt-4o-mini");

    gw.wait_traces(1).await;
    let db = gw.db();
    let trace = last_trace(&db);
    assert_eq!(trace["provider"], "backup");
    assert_eq!(trace["model_resolved"], "gpt-4o-mini");
    assert_eq!(trace["status"], 200);
    assert_eq!(trace["error_kind"], Value::Null);
    assert_eq!(trace["attempts"], 4);
    let log = attempt_log(&trace);
    assert_eq!(log.len(), 4, "{log:?}");
    for (i, a) in log[..3].iter().enumerate() {
        assert_eq!(a["n"], i + 1);
        assert_eq!(a["provider"], "openai");
        assert_eq!(a["status"], 500);
        assert_eq!(a["outcome"], "failed");
        assert!(a["duration_us"].as_i64().unwrap() >= 0);
    }
    assert_eq!(log[3]["provider"], "backup");
    assert_eq!(log[3]["status"], 200);
    assert_eq!(log[3]["outcome"], "answered");
    // Only the answering attempt is costed: the cost row is the backup's.
    let cost_provider: String = value(
        &db,
        "SELECT provider FROM costs WHERE trace_id = ?1",
        [trace["id"].as_str().unwrap()],
    );
    assert_eq!(cost_provider, "backup");
}

#[tokio::test]
async fn a_connect_error_falls_back_to_the_next_target() {
    let (gw, backup) = two_upstreams(
        json!(["dead/gpt-4o-mini", "backup/gpt-4o-mini"]),
        FAST_RETRIES,
    )
    .await;
    let resp = post_json(&gw, "/v1/chat/completions", &chat("smart", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    assert_eq!(chat_requests(&backup), 1);
    gw.wait_traces(1).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["provider"], "backup");
    assert_eq!(trace["attempts"], 4);
    let log = attempt_log(&trace);
    assert!(
        log[..3]
            .iter()
            .all(|a| a["provider"] == "dead" && a["error"] == "unreachable"),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_timeout_before_the_first_byte_falls_back_to_the_next_target() {
    let slow = MockConfig {
        first_byte_delay: std::time::Duration::from_millis(1500),
        ..MockConfig::default()
    };
    let (gw, backup) = two_upstreams_with(
        slow,
        200,
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        "[modules.retry]\nmax_retries = 0\n",
    )
    .await;
    let resp = post_json(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(chat_requests(&backup), 1);
    gw.wait_traces(1).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["provider"], "backup");
    assert_eq!(trace["attempts"], 2);
    let log = attempt_log(&trace);
    assert_eq!(log[0]["provider"], "openai");
    assert_eq!(log[0]["error"], "timeout");
    assert_eq!(log[0]["outcome"], "failed");
}

#[tokio::test]
async fn a_stream_broken_after_its_first_byte_is_not_retried() {
    let (gw, backup) = two_upstreams(
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        FAST_RETRIES,
    )
    .await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-break-after", "2")
        .header("x-mock-words", "20")
        .json(&chat("smart", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await;
    let text = body
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    assert!(
        !text.contains("[DONE]"),
        "the stream must stay broken: {text}"
    );

    gw.wait_traces(1).await;
    assert_eq!(
        chat_requests(&gw.mock),
        1,
        "never retried after the first byte"
    );
    assert_eq!(
        chat_requests(&backup),
        0,
        "never switched after the first byte"
    );
    let trace = last_trace(&gw.db());
    assert_eq!(trace["provider"], "openai");
    assert_eq!(trace["attempts"], 1);
    assert_eq!(trace["attempt_log"], Value::Null);
    assert_eq!(trace["error_kind"], "upstream_stream_broken");
}

#[tokio::test]
async fn a_client_error_is_the_answer_and_is_not_retried() {
    let (gw, backup) = two_upstreams(
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        FAST_RETRIES,
    )
    .await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-status", "400")
        .json(&chat("smart", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    gw.wait_traces(1).await;
    assert_eq!(chat_requests(&gw.mock), 1);
    assert_eq!(chat_requests(&backup), 0);
    let trace = last_trace(&gw.db());
    assert_eq!(trace["provider"], "openai");
    assert_eq!(trace["attempts"], 1);
    assert_eq!(trace["upstream_status"], 400);
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_failure_is_the_answer() {
    let (gw, backup) = two_upstreams(
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        "[modules.retry]\nmax_retries = 1\nbackoff_initial_ms = 1\nbackoff_max_ms = 5\n",
    )
    .await;
    gw.mock.set_fail_status(Some(500));
    // 429 carries `retry-after: 1`; it is obeyed only up to backoff_max_ms.
    backup.set_fail_status(Some(429));
    let resp = post_json(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(
        resp.status(),
        429,
        "the last attempt's answer passes through"
    );
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_object(), "{body}");
    assert_eq!(chat_requests(&gw.mock), 2);
    assert_eq!(chat_requests(&backup), 2);
    gw.wait_traces(1).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["attempts"], 4);
    assert_eq!(trace["provider"], "backup");
    assert_eq!(trace["upstream_status"], 429);
    let log = attempt_log(&trace);
    assert!(log.iter().all(|a| a["outcome"] == "failed"), "{log:?}");
}

#[tokio::test]
async fn with_retry_and_fallback_off_only_the_primary_is_tried_once() {
    let (gw, backup) = two_upstreams(
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        "[modules.retry]\nenabled = false\n[modules.fallback]\nenabled = false\n",
    )
    .await;
    gw.mock.set_fail_status(Some(503));
    let resp = post_json(&gw, "/v1/chat/completions", &chat("smart", false)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(chat_requests(&gw.mock), 1);
    assert_eq!(chat_requests(&backup), 0);
}

#[tokio::test]
async fn alias_targets_must_all_speak_one_protocol() {
    let (gw, _backup) = two_upstreams(json!("openai/gpt-4o-mini"), "").await;
    let (status, body) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/aliases/mixed",
        Some(json!({"target": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("alias mixed"), "{body}");
    let (_, aliases) = admin_call(&gw, reqwest::Method::GET, "/aliases", None).await;
    assert!(aliases.get("mixed").is_none(), "{aliases}");
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/aliases/pair",
        Some(json!({"target": ["openai/gpt-4o-mini", "backup/gpt-4o-mini"]})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, aliases) = admin_call(&gw, reqwest::Method::GET, "/aliases", None).await;
    assert_eq!(
        aliases["pair"],
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"])
    );
    assert_eq!(aliases["smart"], "openai/gpt-4o-mini");
}

#[tokio::test]
async fn fallback_switched_off_and_on_through_the_admin_api_takes_effect_at_once() {
    let (gw, backup) = two_upstreams(
        json!(["openai/gpt-4o-mini", "backup/gpt-4o-mini"]),
        "[modules.retry]\nenabled = false\n",
    )
    .await;
    gw.mock.set_fail_status(Some(502));
    let ask = || async {
        post_json(&gw, "/v1/chat/completions", &chat("smart", false))
            .await
            .status()
            .as_u16()
    };
    assert_eq!(ask().await, 200);
    let (status, body) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/modules/fallback",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask().await, 502, "only the primary is tried");
    assert_eq!(chat_requests(&backup), 1);
    let (status, body) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/modules/fallback",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ask().await, 200);
    assert_eq!(chat_requests(&backup), 2);
}
