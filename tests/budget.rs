//! Budgets (`[modules.budget]`), black-box: a key's budget refuses with 402
//! `budget_exceeded` once its spent + reserved leaves no room for a
//! request's worst case; a refusal consumes nothing and never goes
//! upstream; an unpriced model under a budget is refused; spent survives a
//! restart (rebuilt from the recorded costs) in the key's window; provider
//! and global budgets from config.

mod common;

use common::*;
use serde_json::{Value, json};
use tollgate_mock_upstream::MockConfig;

/// 1 USD / M input tokens = 100 µ¢ per token; 10 USD / M output = 1,000 µ¢.
/// Client keys required, and round prices ([`TEST_PRICES`]).
const PRICED: &str = concat!("[auth]\nrequire_client_key = true\n", test_prices!());
const USAGE: &str = TEST_USAGE;
const ACTUAL_UC: i64 = TEST_USAGE_COST_UC;

async fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let (status, key) = admin_call(gw, reqwest::Method::POST, "/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    )
}

fn ask(max_tokens: u64) -> Value {
    let mut body = chat("gpt-4o-mini", false);
    body["max_tokens"] = json!(max_tokens);
    body
}

/// The worst case tollgate reserves for `body`: its bytes / 4 input tokens
/// at 100 µ¢, plus `max_tokens` at 1,000 µ¢.
fn worst_case(body: &Value) -> i64 {
    let bytes = serde_json::to_vec(body).unwrap().len() as i64;
    bytes / 4 * 100 + body["max_tokens"].as_i64().unwrap() * 1_000
}

async fn post(gw: &Gateway, path: &str, body: &Value, key: &str) -> reqwest::Response {
    post_using(gw, path, body, key, USAGE).await
}

/// A request whose answer reports `usage` (the mock's `x-mock-usage`).
async fn post_using(
    gw: &Gateway,
    path: &str,
    body: &Value,
    key: &str,
    usage: &str,
) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("x-mock-usage", usage)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn key_row(gw: &Gateway, id: &str) -> Value {
    let (status, keys) = admin_call(gw, reqwest::Method::GET, "/keys", None).await;
    assert_eq!(status, 200);
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_key_budget_refuses_with_402_once_spent_and_a_refusal_consumes_nothing() {
    let mut gw = Gateway::start_with(MockConfig::default(), PRICED).await;
    let body = ask(100);
    let reserve = worst_case(&body);
    assert!(reserve > ACTUAL_UC, "{reserve}");
    // Room for three requests' actual cost and one more reservation only
    // up to 3 × actual + half a request.
    let budget_uc = 3 * ACTUAL_UC + 50_000;
    let budget_usd = format!("0.{:08}", budget_uc);
    let (id, key) = create_key(
        &gw,
        json!({"name": "capped", "budget_usd": budget_usd, "budget_window": "day"}),
    )
    .await;
    for _ in 0..3 {
        let resp = post(&gw, "/v1/chat/completions", &body, &key).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let resp = post(&gw, "/v1/chat/completions", &body, &key).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "budget_exceeded", "{err}");
    assert_eq!(err["error"]["type"], "insufficient_quota");
    let text = err["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("this API key") && text.contains("daily"),
        "{text}"
    );
    assert!(!text.contains(&key) && !text.contains(&id), "{text}");
    assert_eq!(
        gw.mock.request_count(),
        3,
        "the refused one never went upstream"
    );

    // The refusal reserved and spent nothing: a request whose worst case
    // fits the 50,000 µ¢ left is admitted (and costs 11,000 µ¢).
    let small = ask(10);
    assert!(worst_case(&small) <= 50_000);
    let resp = post_using(
        &gw,
        "/v1/chat/completions",
        &small,
        &key,
        "prompt=10,completion=10",
    )
    .await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    // The Anthropic route answers a refusal in its own shape.
    let resp = post(
        &gw,
        "/v1/messages",
        &message("claude-haiku-4-5", false),
        &key,
    )
    .await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Budget exceeded"),
        "{err}"
    );

    assert_eq!(gw.wait_traces(6).await, 6);
    // Spent and reserved per key, live: all four admitted requests settled.
    let shown = key_row(&gw, &id).await;
    assert_eq!(shown["spent_uc"], 3 * ACTUAL_UC + 11_000, "{shown}");
    assert_eq!(shown["spent_usd"], "0.00314");
    assert_eq!(shown["reserved_uc"], 0);
    assert_eq!(shown["spent_window"], "day");
    assert_eq!(shown["spent_from"], "live");
    gw.stop().await;
    let db = gw.db();
    let refused: Vec<(i64, String, String)> = rows(
        &db,
        "SELECT status, error_kind, endpoint FROM traces WHERE error_kind IS NOT NULL ORDER BY started_at_ms",
    );
    assert_eq!(
        refused,
        vec![
            (
                402,
                "budget_exceeded".to_string(),
                "/v1/chat/completions".to_string()
            ),
            (
                402,
                "budget_exceeded".to_string(),
                "/v1/messages".to_string()
            ),
        ]
    );
    let spent: i64 = value(
        &db,
        "SELECT sum(cost_uc) FROM costs WHERE client_key_id = ?1",
        [&id],
    );
    assert_eq!(spent, 3 * ACTUAL_UC + 11_000);
    assert!(spent <= budget_uc);

    // The CLI, another process, shows the recorded spending (no reservations).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["keys", "list", "--json", "--db"])
        .arg(&gw.db)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_AUDIT_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let shown = listed.iter().find(|k| k["id"] == id).unwrap();
    assert_eq!(shown["spent_uc"], spent, "{shown}");
    assert_eq!(shown["spent_usd"], "0.00314");
    assert_eq!(shown["reserved_uc"], 0);
    assert_eq!(shown["reserved_usd"], "0.00");
    assert_eq!(shown["spent_from"], "recorded");
}

#[tokio::test]
async fn an_unpriced_model_under_a_key_budget_is_refused_but_not_without_one() {
    let mut gw = Gateway::start_with(MockConfig::default(), PRICED).await;
    let (_, capped) = create_key(&gw, json!({"name": "capped", "budget_usd": "100"})).await;
    let (_, free) = create_key(&gw, json!({"name": "free"})).await;
    let mut body = chat("openai/mystery-model", false);
    body["max_tokens"] = json!(10);
    let resp = post(&gw, "/v1/chat/completions", &body, &capped).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "budget_price_unknown", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("openai/mystery-model"),
        "{err}"
    );
    assert_eq!(gw.mock.request_count(), 0);
    let resp = post(&gw, "/v1/chat/completions", &body, &free).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(gw.wait_traces(2).await, 2);
    gw.stop().await;
    let t: Vec<(i64, Option<String>)> = rows(
        &gw.db(),
        "SELECT status, error_kind FROM traces ORDER BY started_at_ms",
    );
    assert_eq!(t, vec![(402, Some("budget_exceeded".into())), (200, None)]);
}

#[tokio::test]
async fn the_fallback_price_admits_an_unpriced_model_and_bounds_it() {
    // Fallback output price 10 USD/M: 1,000 µ¢ per token; the budget fits
    // one request of max_tokens 100, whose unknown cost stays its worst case.
    let extra = format!(
        "{PRICED}\n[modules.budget]\nunknown_price = \"fallback\"\n\
         fallback_input_usd_per_million = \"0\"\nfallback_output_usd_per_million = \"10\"\n"
    );
    let mut gw = Gateway::start_with(MockConfig::default(), &extra).await;
    let (_, key) = create_key(&gw, json!({"name": "k", "budget_usd": "0.0015"})).await;
    let mut body = chat("openai/mystery-model", false);
    body["max_tokens"] = json!(100);
    let resp = post(&gw, "/v1/chat/completions", &body, &key).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(gw.wait_traces(1).await, 1);
    let resp = post(&gw, "/v1/chat/completions", &body, &key).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "budget_exceeded", "{err}");
    assert_eq!(gw.mock.request_count(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn spent_survives_a_restart_in_the_keys_window() {
    let mut gw = Gateway::start_with(MockConfig::default(), PRICED).await;
    let body = ask(100);
    // Both keys fit two requests' actual cost and not a third reservation.
    let budget = format!("0.{:08}", 2 * ACTUAL_UC + 50_000);
    let (day_id, day_key) = create_key(
        &gw,
        json!({"name": "daily", "budget_usd": budget, "budget_window": "day"}),
    )
    .await;
    let (total_id, total_key) = create_key(
        &gw,
        json!({"name": "lifetime", "budget_usd": budget, "budget_window": "total"}),
    )
    .await;
    for key in [&day_key, &total_key] {
        for _ in 0..2 {
            let resp = post(&gw, "/v1/chat/completions", &body, key).await;
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        }
    }
    assert_eq!(gw.wait_traces(4).await, 4);

    // After a restart both are still spent for today.
    gw.restart(PRICED).await;
    for key in [&day_key, &total_key] {
        let resp = post(&gw, "/v1/chat/completions", &body, key).await;
        assert_eq!(resp.status(), 402, "spent was forgotten by the restart");
    }
    assert_eq!(key_row(&gw, &day_id).await["spent_uc"], 2 * ACTUAL_UC);
    assert_eq!(key_row(&gw, &total_id).await["spent_uc"], 2 * ACTUAL_UC);
    assert_eq!(gw.wait_traces(6).await, 6);

    // Move the recorded spending to an earlier day: the daily budget is
    // free again after a restart, the lifetime one is not.
    gw.stop().await;
    rusqlite::Connection::open(&gw.db)
        .unwrap()
        .execute("UPDATE cost_daily SET day = '2001-02-03'", [])
        .unwrap();
    gw.restart(PRICED).await;
    let resp = post(&gw, "/v1/chat/completions", &body, &day_key).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let resp = post(&gw, "/v1/chat/completions", &body, &total_key).await;
    assert_eq!(resp.status(), 402);
    assert_eq!(gw.mock.request_count(), 5);
    gw.stop().await;
}

#[tokio::test]
async fn provider_and_global_budgets_from_config_refuse_without_amounts() {
    let extra = format!(
        "{PRICED}\n[modules.budget]\nglobal_usd = \"1\"\n\
         [modules.budget.providers]\nanthropic = {{ usd = \"0.0015\", window = \"total\" }}\n"
    );
    let mut gw = Gateway::start_with(MockConfig::default(), &extra).await;
    let (_, key) = create_key(&gw, json!({"name": "k"})).await;
    // Anthropic: one request of max_tokens 100 fits, a second does not.
    let mut m = message("claude-haiku-4-5", false);
    m["max_tokens"] = json!(100);
    let resp = post(&gw, "/v1/messages", &m, &key).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(gw.wait_traces(1).await, 1);
    let resp = post(&gw, "/v1/messages", &m, &key).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    let text = err["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("provider `anthropic`") && text.contains("total"),
        "{text}"
    );
    assert!(!text.contains('$'), "{text}");
    // Another provider is under the global budget only: $1 fits one
    // request of 90,000 output tokens (90,000,000 µ¢), not two.
    let big = ask(90_000);
    let used = "prompt=10,completion=90000";
    let resp = post_using(&gw, "/v1/chat/completions", &big, &key, used).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(gw.wait_traces(3).await, 3);
    let resp = post_using(&gw, "/v1/chat/completions", &big, &key, used).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    let text = err["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("global") && text.contains("monthly"),
        "{text}"
    );
    assert_eq!(gw.mock.request_count(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn metrics_show_what_requests_in_flight_hold_reserved() {
    let mut gw = Gateway::start_with(MockConfig::default(), PRICED).await;
    let (_, key) = create_key(&gw, json!({"name": "k", "budget_usd": "10"})).await;
    let body = ask(100);
    let reserve = worst_case(&body) as u64;
    let url = gw.url("/v1/chat/completions");
    let held = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(key)
            .header("x-mock-first-byte-delay-ms", "400")
            .header("x-mock-usage", USAGE)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    });
    let gauge = "tollgate_budget_reserved_microcents";
    let mut seen = 0;
    for _ in 0..100 {
        seen = metric(&gw, gauge).await;
        if seen > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(seen, reserve);
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(gw.wait_traces(1).await, 1);
    assert_eq!(metric(&gw, gauge).await, 0);
    gw.stop().await;
}
