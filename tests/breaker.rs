//! The circuit breaker: after N consecutive failures a target stops
//! receiving requests (counted at the mock), one probe goes through after
//! the cooldown, recovery closes it; every change of state is an audit entry
//! (and the ledger still verifies); the state survives a restart.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use tollgate_mock_upstream::{MockConfig, MockUpstream};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// No retries (one attempt per target per request), a breaker opening after
/// 3 failures, and a `backup` provider on a second mock.
fn extra(backup: &MockUpstream, cooldown_ms: u64) -> String {
    format!(
        r#"
[modules.retry]
enabled = false
[modules.breaker]
failures = 3
cooldown_ms = {cooldown_ms}

[[providers]]
name = "backup"
protocol = "openai"
base_url = "{backup}"
api_key_env = "TEST_UPSTREAM_KEY"
models = ["backup-only"]
"#,
        backup = backup.base_url(),
    )
}

async fn backup_mock() -> MockUpstream {
    MockUpstream::start_with(MockConfig {
        expect_key: Some(UPSTREAM_KEY.to_string()),
        ..MockConfig::default()
    })
    .await
}

async fn set_smart(gw: &Gateway) {
    let (status, body) = admin_call(
        gw,
        reqwest::Method::PUT,
        "/aliases/smart",
        Some(json!({"target": ["openai/gpt-4o-mini", "backup/gpt-4o-mini"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn chat_requests(mock: &MockUpstream) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count()
}

/// Sends a chat request for `model`; its status.
async fn ask(addr: std::net::SocketAddr, model: &str) -> u16 {
    let resp = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&chat(model, false))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    resp.bytes().await.unwrap();
    status
}

async fn breakers(gw: &Gateway) -> Vec<Value> {
    let (status, body) = admin_call(gw, reqwest::Method::GET, "/breakers", None).await;
    assert_eq!(status, 200, "{body}");
    body["breakers"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_breaker_opens_probes_after_the_cooldown_and_closes_on_recovery() {
    let backup = backup_mock().await;
    let cooldown = 500;
    let mut gw = Gateway::start_with(MockConfig::default(), &extra(&backup, cooldown)).await;
    set_smart(&gw).await;
    gw.mock.set_fail_status(Some(500));

    for _ in 0..3 {
        assert_eq!(ask(gw.addr, "smart").await, 200, "the backup answers");
    }
    assert_eq!(chat_requests(&gw.mock), 3);
    // Open: the failing upstream receives nothing more.
    for _ in 0..4 {
        assert_eq!(ask(gw.addr, "smart").await, 200);
    }
    assert_eq!(chat_requests(&gw.mock), 3, "an open target gets no request");
    assert_eq!(chat_requests(&backup), 7);
    gw.wait_traces(7).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["provider"], "backup");
    assert_eq!(trace["attempts"], 1);
    let log: Vec<Value> = serde_json::from_str(trace["attempt_log"].as_str().unwrap()).unwrap();
    assert_eq!(log[0]["provider"], "openai");
    assert_eq!(log[0]["error"], "breaker_open");
    assert_eq!(log[0]["outcome"], "skipped");
    assert_eq!(log[1]["outcome"], "answered");

    // A request for the open target alone: 503, traced as breaker_open.
    assert_eq!(ask(gw.addr, "openai/gpt-4o-mini").await, 503);
    assert_eq!(chat_requests(&gw.mock), 3);
    gw.wait_traces(8).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["error_kind"], "breaker_open");
    assert_eq!(trace["attempts"], Value::Null);

    let shown = breakers(&gw).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["provider"], "openai");
    assert_eq!(shown[0]["model"], "gpt-4o-mini");
    assert_eq!(shown[0]["state"], "open");
    assert_eq!(
        metric(
            &gw,
            "tollgate_breaker_state{provider=\"openai\",model=\"gpt-4o-mini\"}"
        )
        .await,
        2
    );
    assert_eq!(metric(&gw, "tollgate_breaker_opens_total").await, 1);

    // After the cooldown one probe goes through; it fails: open again.
    tokio::time::sleep(Duration::from_millis(cooldown + 50)).await;
    assert_eq!(ask(gw.addr, "smart").await, 200);
    assert_eq!(chat_requests(&gw.mock), 4, "one probe");
    assert_eq!(ask(gw.addr, "smart").await, 200);
    assert_eq!(chat_requests(&gw.mock), 4, "reopened by the failed probe");
    assert_eq!(metric(&gw, "tollgate_breaker_opens_total").await, 2);

    // The upstream recovers: the next probe closes the breaker.
    gw.mock.set_fail_status(None);
    tokio::time::sleep(Duration::from_millis(cooldown + 50)).await;
    assert_eq!(ask(gw.addr, "smart").await, 200);
    assert_eq!(chat_requests(&gw.mock), 5);
    assert_eq!(ask(gw.addr, "smart").await, 200);
    assert_eq!(
        chat_requests(&gw.mock),
        6,
        "closed: the primary answers again"
    );
    gw.wait_traces(12).await;
    assert_eq!(last_trace(&gw.db())["provider"], "openai");
    assert!(breakers(&gw).await.is_empty());
    let metrics = metrics_text(&gw).await;
    assert!(
        !metrics.contains("tollgate_breaker_state{"),
        "a closed target is no longer listed:\n{metrics}"
    );

    gw.stop().await;
    let db = gw.db();
    let actions: Vec<String> = column(
        &db,
        "SELECT action FROM audit_log WHERE action LIKE 'breaker.%' ORDER BY seq",
    );
    assert_eq!(
        actions,
        [
            "breaker.open",
            "breaker.half_open",
            "breaker.open",
            "breaker.half_open",
            "breaker.close"
        ]
    );
    let actors: Vec<String> = column(
        &db,
        "SELECT DISTINCT actor FROM audit_log WHERE action LIKE 'breaker.%'",
    );
    assert_eq!(actors, ["tollgate"]);
    let (state, failures): (String, i64) = row(
        &db,
        "SELECT state, failures FROM breaker_state WHERE provider = 'openai' AND model = 'gpt-4o-mini'",
        [],
    );
    assert_eq!((state.as_str(), failures), ("closed", 0));

    let out = Command::new(BIN)
        .args(["audit", "verify", "--db"])
        .arg(&gw.db)
        .env_remove("TOLLGATE_AUDIT_KEY")
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_open_breaker_stays_open_across_a_restart() {
    let backup = backup_mock().await;
    let extra = extra(&backup, 60_000);
    let mut gw = Gateway::start_with(MockConfig::default(), &extra).await;
    set_smart(&gw).await;
    gw.mock.set_fail_status(Some(503));
    for _ in 0..3 {
        assert_eq!(ask(gw.addr, "smart").await, 200);
    }
    assert_eq!(ask(gw.addr, "smart").await, 200);
    assert_eq!(chat_requests(&gw.mock), 3);

    // A new process on the same file: the upstream has not recovered, and
    // the breaker still skips it until its cooldown from when it opened.
    gw.restart(&extra).await;
    for _ in 0..3 {
        assert_eq!(ask(gw.addr, "smart").await, 200);
    }
    assert_eq!(chat_requests(&gw.mock), 3, "not called after the restart");
    assert_eq!(chat_requests(&backup), 7);
    let (status, body) = admin_call(&gw, reqwest::Method::GET, "/breakers", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["breakers"][0]["state"], "open", "{body}");
    assert!(
        body["breakers"][0]["opened_at"].as_i64().is_some(),
        "{body}"
    );
}
