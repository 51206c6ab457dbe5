//! Costs through the real proxy, checked against hand-computed values, and
//! the report's totals against the stored records.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;
use tollgate_mock_upstream::MockConfig;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Extra test config: a model with no price, and one priced by override
/// at 0.0000005 $/M = 50 µ¢ per million tokens, to see rounding at the record.
const EXTRA: &str = r#"
[prices."openai/tiny-price"]
input = "0.0000005"
output = "0"
"#;

async fn post(gw: &Gateway, path: &str, usage: &str, body: Value) -> String {
    let resp = client()
        .post(gw.url(path))
        .header("x-mock-usage", usage)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    resp.bytes().await.unwrap();
    id
}

fn cost_of(gw: &Gateway, id: &str) -> (String, Option<i64>, Option<i64>) {
    row(
        &gw.db(),
        "SELECT status, cost_uc, price_input FROM costs WHERE trace_id = ?1",
        [id],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_are_exact_to_the_micro_cent() {
    let mut gw = Gateway::start_with(MockConfig::default(), EXTRA).await;
    let openai = "/v1/chat/completions";

    // gpt-4o-mini: input 0.15, output 0.60, cached input 0.075 $/M.
    // 86 uncached × 15e6 + 1920 cached × 7.5e6 + 300 output × 60e6 (the 256
    // reasoning tokens are inside the 300) = 33,690,000,000 / 1e6 = 33,690 µ¢.
    let a = post(
        &gw,
        openai,
        "prompt=2006,completion=300,cached=1920,reasoning=256",
        chat("gpt-4o-mini", false),
    )
    .await;
    // A stream whose client did not ask for usage: 42 × 15e6 + 5 × 60e6 = 930 µ¢.
    let b = post(
        &gw,
        openai,
        "prompt=42,completion=5",
        chat("gpt-4o-mini", true),
    )
    .await;
    // A stream whose client asked for usage: 1000 × 15e6 + 1 × 60e6 = 15,060 µ¢.
    let mut with_usage = chat("gpt-4o-mini", true);
    with_usage["stream_options"] = json!({"include_usage": true});
    let c = post(&gw, openai, "prompt=1000,completion=1", with_usage).await;
    // claude-haiku-4-5: input 1, output 5, cache read 0.10, cache write 1.25 $/M.
    // 10 × 1e8 + 1000 × 1e7 + 200 × 1.25e8 + 9 × 5e8 = 40,500 µ¢.
    let d = post(
        &gw,
        "/v1/messages",
        "prompt=10,cached=1000,cache_write=200,completion=9",
        message("claude-haiku-4-5", false),
    )
    .await;
    // The same as a stream: 40,500 µ¢ again.
    let e = post(
        &gw,
        "/v1/messages",
        "prompt=10,cached=1000,cache_write=200,completion=9",
        message("claude-haiku-4-5", true),
    )
    .await;
    // text-embedding-3-small: 0.02 $/M; 2 inputs × 3 tokens = 6 × 2e6 = 12 µ¢.
    let f = post(
        &gw,
        "/v1/embeddings",
        "",
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
    )
    .await;
    // No known price: the cost is unknown (NULL), never 0.
    let g = post(
        &gw,
        openai,
        "prompt=10,completion=10",
        chat("openai/mystery-model", false),
    )
    .await;
    // Rounded half-to-even once: 10,000 × 50 / 1e6 = 0.5 → 0; 30,000 × 50 / 1e6 = 1.5 → 2.
    let h = post(
        &gw,
        openai,
        "prompt=10000,completion=0",
        chat("openai/tiny-price", false),
    )
    .await;
    let i = post(
        &gw,
        openai,
        "prompt=30000,completion=0",
        chat("openai/tiny-price", false),
    )
    .await;

    gw.wait_traces(9).await;
    // The counter moves right after the commit that wait_traces saw.
    let mut metrics_after = String::new();
    for _ in 0..100 {
        metrics_after = client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics_after.contains("tollgate_unknown_price_requests_total 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gw.stop().await;

    assert_eq!(
        cost_of(&gw, &a),
        ("priced".into(), Some(33_690), Some(15_000_000))
    );
    assert_eq!(
        cost_of(&gw, &b),
        ("priced".into(), Some(930), Some(15_000_000))
    );
    assert_eq!(
        cost_of(&gw, &c),
        ("priced".into(), Some(15_060), Some(15_000_000))
    );
    assert_eq!(
        cost_of(&gw, &d),
        ("priced".into(), Some(40_500), Some(100_000_000))
    );
    assert_eq!(
        cost_of(&gw, &e),
        ("priced".into(), Some(40_500), Some(100_000_000))
    );
    assert_eq!(
        cost_of(&gw, &f),
        ("priced".into(), Some(12), Some(2_000_000))
    );
    assert_eq!(cost_of(&gw, &g), ("unknown_price".into(), None, None));
    assert_eq!(cost_of(&gw, &h), ("priced".into(), Some(0), Some(50)));
    assert_eq!(cost_of(&gw, &i), ("priced".into(), Some(2), Some(50)));

    let source: String = value(
        &gw.db(),
        "SELECT price_source FROM costs WHERE trace_id = ?1",
        [&h],
    );
    assert_eq!(source, "config");
    assert!(
        metrics_after.contains("tollgate_unknown_price_requests_total 1"),
        "{metrics_after}"
    );

    let (requests, cost, unknown): (i64, i64, i64) = row(
        &gw.db(),
        "SELECT sum(requests), sum(cost_uc), sum(unknown_cost_requests) FROM cost_daily",
        [],
    );
    assert_eq!(
        (requests, cost, unknown),
        (9, 33_690 + 930 + 15_060 + 40_500 * 2 + 12 + 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cost_nothing_or_an_unknown_amount() {
    let mut gw = Gateway::start().await;
    // Refused by tollgate: never sent, no charge.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&chat("nope", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Refused by the upstream: no usage, no charge.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-status", "429")
        .json(&chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // Cut mid-stream before its usage: the upstream may bill, so unknown.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-break-after", "2")
        .json(&chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    resp.bytes().await.unwrap();
    gw.stop().await;
    let rows: Vec<(String, Option<i64>)> = rows(
        &gw.db(),
        "SELECT costs.status, cost_uc FROM costs JOIN traces ON traces.id = costs.trace_id ORDER BY traces.id",
    );
    assert_eq!(
        rows,
        vec![
            ("no_charge".to_string(), Some(0)),
            ("no_charge".to_string(), Some(0)),
            ("unknown_usage".to_string(), None),
        ]
    );
}

fn report(db: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["report", "costs", "--db"])
        .arg(db)
        .args(args)
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_totals_equal_the_records_while_serving_and_on_a_copy() {
    let mut gw = Gateway::start_with(MockConfig::default(), EXTRA).await;
    for i in 0..12 {
        let usage = format!("prompt={},completion={}", 1000 + i * 37, 17 * i);
        let (path, body) = match i % 3 {
            0 => ("/v1/chat/completions", chat("gpt-4o-mini", i % 2 == 0)),
            1 => ("/v1/messages", message("claude-haiku-4-5", i % 2 == 0)),
            _ => ("/v1/chat/completions", chat("openai/mystery-model", false)),
        };
        post(&gw, path, &usage, body).await;
    }
    gw.wait_traces(12).await;
    let (sum, unknown, count): (i64, i64, i64) = row(
        &gw.db(),
        "SELECT coalesce(sum(cost_uc), 0), count(*) - count(cost_uc), count(*) FROM costs",
        [],
    );
    assert_eq!((unknown, count), (4, 12));

    // While the gateway is still serving, from another process.
    let live = report(
        &gw.db,
        &["--format", "json", "--by", "model", "--since", "1d"],
    );
    let live: Value = serde_json::from_str(&live).unwrap();
    assert_eq!(live["total"]["cost_uc"], sum);
    assert_eq!(live["total"]["requests"], 12);
    assert_eq!(live["total"]["unknown_cost_requests"], 4);
    let by_model: i64 = live["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cost_uc"].as_i64().unwrap())
        .sum();
    assert_eq!(by_model, sum);
    assert_eq!(live["rows"].as_array().unwrap().len(), 3);

    // On an online copy.
    let copy = gw.dir.path().join("copy.db");
    gw.db()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    gw.stop().await;
    let csv = report(&copy, &["--format", "csv", "--by", "provider"]);
    let total_line = csv.lines().find(|l| l.starts_with("TOTAL,")).unwrap();
    let cols: Vec<&str> = total_line.split(',').collect();
    assert_eq!(cols[1], "12");
    assert_eq!(cols[8], sum.to_string());
    let table = report(&copy, &["--by", "day"]);
    assert!(table.contains("TOTAL"), "{table}");
    assert!(
        table.contains("4 request(s) have an unknown cost"),
        "{table}"
    );
    let dollars = tollgate::ledger::money::format_usd(sum);
    assert!(table.contains(&dollars), "{dollars} not in\n{table}");
}

/// Config prices in the full spec format: a long-context tier and 1-hour
/// cache-write rates, and a service-tier table that must not be used when
/// the upstream serves the default tier.
const TIERED: &str = r#"
[prices."anthropic/claude-long"]
input = "3"
output = "15"
cached_input = "0.30"
cache_write = "3.75"
cache_write_1h = "6"
[[prices."anthropic/claude-long".tiers]]
above_input_tokens = 1000
input = "6"
output = "22.50"
cached_input = "0.60"
cache_write = "7.50"

[prices."openai/gpt-tiered"]
input = "1.25"
output = "10"
[prices."openai/gpt-tiered".service_tiers.priority]
input = "2.50"
output = "20"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_context_and_service_tier_prices_from_config_and_the_admin_api() {
    let mut gw = Gateway::start_with(MockConfig::default(), TIERED).await;
    let anthropic = "/v1/messages";
    let usage_below = "prompt=500,cached=300,cache_write=100,completion=20";
    let usage_above = "prompt=600,cached=300,cache_write=200,completion=20";
    // 900 input tokens, at or below 1000: base rates,
    // 500 × 300 + 300 × 30 + 100 × 375 + 20 × 1,500 µ¢.
    let below = post(
        &gw,
        anthropic,
        usage_below,
        message("anthropic/claude-long", false),
    )
    .await;
    // 1,100 input tokens: every token at the tier's rates,
    // 600 × 600 + 300 × 60 + 200 × 750 + 20 × 2,250 µ¢; streamed the same.
    let above = post(
        &gw,
        anthropic,
        usage_above,
        message("anthropic/claude-long", false),
    )
    .await;
    let above_streamed = post(
        &gw,
        anthropic,
        usage_above,
        message("anthropic/claude-long", true),
    )
    .await;
    // Priority asked for, default served (the mock is told to report
    // `default`): priced at the base rates, 1,000 × 125 + 100 × 1,000 µ¢.
    let mut asked_priority = chat("openai/gpt-tiered", false);
    asked_priority["service_tier"] = json!("priority");
    let served_default = post(
        &gw,
        "/v1/chat/completions",
        "prompt=1000,completion=100,service_tier=default",
        asked_priority.clone(),
    )
    .await;
    // Priority asked for and served: the priority rates,
    // 1,000 × 250 + 100 × 2,000 µ¢.
    let served_priority = post(
        &gw,
        "/v1/chat/completions",
        "prompt=1000,completion=100",
        asked_priority,
    )
    .await;

    // The admin API takes the full spec too, and keeps it across restarts
    // (the database stores the whole spec).
    let spec = json!({
        "input": "1", "output": "2",
        "tiers": [{"above_input_tokens": 100, "input": "4"}],
        "service_tiers": {"flex": {"input": "0.5"}}
    });
    let (status, body) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/prices/anthropic/claude-admin",
        Some(spec.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut echoed = spec.clone();
    echoed["cached_input"] = Value::Null;
    echoed["cache_write"] = Value::Null;
    assert_eq!(body["price"], echoed);
    // Listed back whole, with where it came from.
    let (status, listed) = admin_call(&gw, reqwest::Method::GET, "/prices", None).await;
    assert_eq!(status, 200);
    let admin_entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "claude-admin")
        .unwrap();
    assert_eq!(admin_entry["source"], "database");
    assert_eq!(
        admin_entry["tiers"],
        json!([{"above_input_tokens": 100, "input": "4.00"}])
    );
    assert_eq!(
        admin_entry["service_tiers"],
        json!({"flex": {"input": "0.50"}})
    );
    let long = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "claude-long")
        .unwrap();
    assert_eq!(
        (long["source"].as_str(), long["cache_write_1h"].as_str()),
        (Some("config"), Some("6.00"))
    );
    let (status, body) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/prices/anthropic/claude-admin",
        Some(json!({"input": "1", "output": "2", "service_tiers": {"turbo": {}}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service_tiers.\"turbo\": unknown service tier"),
        "{body}"
    );
    // 101 input tokens > 100: 101 × 400 + 1 × 200 µ¢.
    let admin_priced = post(
        &gw,
        anthropic,
        "prompt=101,completion=1",
        message("anthropic/claude-admin", false),
    )
    .await;
    gw.wait_traces(6).await;
    assert_eq!(metric(&gw, "tollgate_partial_cost_requests_total").await, 0);
    gw.stop().await;

    let db = gw.db();
    let cost = |id: &str| -> (
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    ) {
        row(
            &db,
            "SELECT status, cost_uc, price_input, price_cache_write_1h, price_tier
             FROM costs WHERE trace_id = ?1",
            [id],
        )
    };
    assert_eq!(
        cost(&below),
        (
            "priced".into(),
            Some(226_500),
            Some(300_000_000),
            Some(600_000_000),
            None
        )
    );
    let tiered = (
        "priced".into(),
        Some(573_000),
        Some(600_000_000),
        // The tier omits the 1-hour rate: the base entry's applies.
        Some(600_000_000),
        Some("above_1000".into()),
    );
    assert_eq!(cost(&above), tiered);
    assert_eq!(cost(&above_streamed), tiered);
    assert_eq!(
        cost(&served_default),
        (
            "priced".into(),
            Some(225_000),
            Some(125_000_000),
            None,
            None
        )
    );
    let served_tier = |id: &str| -> Option<String> {
        value(
            &db,
            "SELECT service_tier FROM costs WHERE trace_id = ?1",
            [id],
        )
    };
    assert_eq!(served_tier(&served_default).as_deref(), Some("default"));
    assert_eq!(served_tier(&served_priority).as_deref(), Some("priority"));
    assert_eq!(
        cost(&served_priority),
        (
            "priced".into(),
            Some(450_000),
            Some(250_000_000),
            None,
            None
        )
    );
    assert_eq!(
        cost(&admin_priced),
        (
            "priced".into(),
            Some(40_600),
            Some(400_000_000),
            None,
            Some("above_100".into())
        )
    );
    let stored = tollgate::store::access_sql::price_overrides(&db).unwrap();
    assert_eq!(
        serde_json::to_value(&stored["anthropic/claude-admin"]).unwrap(),
        echoed
    );
}
