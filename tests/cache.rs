//! The exact cache (`[modules.cache]`), black-box: a repeated request is
//! answered from the cache (the upstream is not called, the body is the
//! same, `x-tollgate-cache: hit`), traced as a hit that costs nothing and
//! records the original cost as saved; key order and whitespace do not
//! matter, every parameter, the client key (namespace `key`) and the system
//! prompt do; errors, cut and oversized answers are never stored; TTL,
//! purge (API and CLI), restart, the skip / refresh / TTL request headers.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

const PRICES: &str = TEST_PRICES;
const USAGE: &str = TEST_USAGE;
const COST_UC: i64 = TEST_USAGE_COST_UC;

fn config(cache: &str) -> String {
    format!("[modules.cache]\nenabled = true\n{cache}\n{PRICES}")
}

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";

struct Answer {
    status: u16,
    cache: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    /// The body arrived whole (not cut off).
    whole: bool,
    id: Option<String>,
}

async fn send(gw: &Gateway, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("x-mock-usage", USAGE)
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, cache, content_type, id) = (
        resp.status().as_u16(),
        header("x-tollgate-cache"),
        header("content-type"),
        header("x-tollgate-request-id"),
    );
    let (body, whole) = match resp.bytes().await {
        Ok(b) => (b.to_vec(), true),
        Err(_) => (Vec::new(), false),
    };
    Answer {
        status,
        cache,
        content_type,
        body,
        whole,
        id,
    }
}

async fn post(gw: &Gateway, path: &str, body: &Value) -> Answer {
    send(gw, path, &serde_json::to_vec(body).unwrap(), &[]).await
}

async fn post_with(gw: &Gateway, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    send(gw, path, &serde_json::to_vec(body).unwrap(), headers).await
}

/// `(cache_status, status, input_tokens)` of trace `id`, and its cost row's
/// `(status, cost_uc, saved_uc)`.
type Books = (
    (Option<String>, i64, Option<i64>),
    (String, Option<i64>, Option<i64>),
);

fn books(gw: &Gateway, id: &str) -> Books {
    let db = gw.db();
    (
        row(
            &db,
            "SELECT cache_status, status, input_tokens FROM traces WHERE id = ?1",
            [id],
        ),
        row(
            &db,
            "SELECT status, cost_uc, saved_uc FROM costs WHERE trace_id = ?1",
            [id],
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_a_hit_that_costs_nothing_and_records_the_saving() {
    let mut gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    for (n, (path, body)) in [
        (CHAT, chat("gpt-4o-mini", false)),
        (MESSAGES, message("claude-haiku-4-5", false)),
    ]
    .into_iter()
    .enumerate()
    {
        let calls = gw.mock.request_count();
        let first = post(&gw, path, &body).await;
        assert_eq!(first.status, 200, "{path}");
        assert_eq!(first.cache.as_deref(), Some("miss"), "{path}");
        assert_eq!(gw.mock.request_count(), calls + 1);
        // Right away, before the writer has committed: the memory tier has it.
        let second = post(&gw, path, &body).await;
        assert_eq!(second.status, 200, "{path}");
        assert_eq!(second.cache.as_deref(), Some("hit"), "{path}");
        assert_eq!(
            gw.mock.request_count(),
            calls + 1,
            "{path}: upstream called"
        );
        assert_eq!(second.body, first.body, "{path}");
        assert_eq!(second.content_type.as_deref(), Some("application/json"));
        let reply: Value = serde_json::from_slice(&second.body).unwrap();
        assert!(reply.get("usage").is_some(), "{reply}");
        gw.wait_traces(2 * (n as i64 + 1)).await;

        let miss = books(&gw, first.id.as_deref().unwrap());
        assert_eq!(miss.0, (Some("miss".into()), 200, Some(10)));
        assert_eq!(miss.1, ("priced".into(), Some(COST_UC), None));
        let hit = books(&gw, second.id.as_deref().unwrap());
        assert_eq!(hit.0, (Some("hit".into()), 200, None), "{path}: no usage");
        assert_eq!(
            hit.1,
            ("no_charge".into(), Some(0), Some(COST_UC)),
            "{path}: the hit costs 0 and saves the original cost"
        );
    }
    // Hit counts go to the entries; the API sums it all up.
    let (status, stats) = admin_call(&gw, Method::GET, "/cache", None).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["entries"], 2, "{stats}");
    assert_eq!(stats["entry_hits"], 2, "{stats}");
    assert_eq!(stats["hits"], 2, "{stats}");
    assert_eq!(stats["misses"], 2, "{stats}");
    assert_eq!(stats["saved_uc"], 2 * COST_UC, "{stats}");
    assert_eq!(stats["saved_usd"], "0.00202", "{stats}");
    assert_eq!(stats["since_start"]["hits"], 2, "{stats}");
    assert_eq!(stats["since_start"]["hit_ratio"], 0.5, "{stats}");
    assert!(stats["bytes"].as_i64().unwrap() > 100, "{stats}");
    assert_eq!(metric(&gw, "tollgate_cache_hits_total").await, 2);
    assert_eq!(metric(&gw, "tollgate_cache_misses_total").await, 2);

    // The books: the audit chain covers hits like any request, and the
    // cost report shows the savings.
    gw.stop().await;
    let (code, out, err) = cli(&gw.db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli(&gw.db, &["report", "costs", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["cache"],
        json!({"hits": 2, "saved_uc": 2 * COST_UC, "saved_usd": "0.00202"})
    );
    let (_, table, _) = cli(&gw.db, &["report", "costs"]);
    assert!(
        table.contains("The exact cache answered 2 request(s)"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_whitespace_and_the_alias_used_do_not_change_the_key() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let first = send(
        &gw,
        CHAT,
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"temperature":0.5,"stream":false}"#,
        &[],
    )
    .await;
    assert_eq!(first.cache.as_deref(), Some("miss"));
    // Same request: members reordered (nested too), spaced out, and named
    // through the alias that resolves to the same model.
    let again = send(
        &gw,
        CHAT,
        b"{ \"temperature\" : 0.5 ,\n \"messages\" : [ { \"content\" : \"Say hello\", \"role\" : \"user\" } ],\n \"model\" : \"fast\" }",
        &[],
    )
    .await;
    assert_eq!(again.cache.as_deref(), Some("hit"));
    assert_eq!(again.body, first.body);
    assert_eq!(gw.mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parameter_and_the_system_prompt_change_the_key() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let base = chat("gpt-4o-mini", false);
    assert_eq!(post(&gw, CHAT, &base).await.cache.as_deref(), Some("miss"));
    assert_eq!(post(&gw, CHAT, &base).await.cache.as_deref(), Some("hit"));
    let changes = [
        json!({"temperature": 0.7}),
        json!({"top_p": 0.5}),
        json!({"seed": 7}),
        json!({"response_format": {"type": "json_object"}}),
        json!({"tool_choice": "none", "tools": []}),
        json!({"reasoning_effort": "low"}),
        json!({"a_field_from_the_future": true}),
        json!({"messages": [{"role": "system", "content": "Be terse."},
                            {"role": "user", "content": "Say hello"}]}),
    ];
    for change in &changes {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let calls = gw.mock.request_count();
        let a = post(&gw, CHAT, &body).await;
        assert_eq!(a.cache.as_deref(), Some("miss"), "{change}");
        assert_eq!(gw.mock.request_count(), calls + 1, "{change}");
    }
    // Anthropic's system prompt is a member of its own.
    let msg = message("claude-haiku-4-5", false);
    let mut with_system = msg.clone();
    with_system["system"] = json!("You are a pirate.");
    let mut other_system = msg.clone();
    other_system["system"] = json!("You are a poet.");
    for body in [&msg, &with_system, &other_system] {
        assert_eq!(
            post(&gw, MESSAGES, body).await.cache.as_deref(),
            Some("miss"),
            "{body}"
        );
    }
    for body in [&msg, &with_system, &other_system] {
        assert_eq!(
            post(&gw, MESSAGES, body).await.cache.as_deref(),
            Some("hit"),
            "{body}"
        );
    }
}

const KEYED: &str = "[auth]\nrequire_client_key = true\n";

async fn create_key(gw: &Gateway, body: Value) -> (String, String) {
    let (status, key) = admin_call(gw, Method::POST, "/keys", Some(body)).await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    )
}

async fn post_as(gw: &Gateway, key: &str, body: &Value) -> Answer {
    let auth = format!("Bearer {key}");
    post_with(gw, CHAT, body, &[("authorization", auth.as_str())]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stay_within_a_client_key_unless_the_namespace_is_shared() {
    let gw = Gateway::start_with(MockConfig::default(), &format!("{KEYED}{}", config(""))).await;
    let (id_a, a) = create_key(&gw, json!({"name": "a"})).await;
    let (_, b) = create_key(&gw, json!({"name": "b"})).await;
    let body = chat("gpt-4o-mini", false);
    assert_eq!(post_as(&gw, &a, &body).await.cache.as_deref(), Some("miss"));
    assert_eq!(post_as(&gw, &b, &body).await.cache.as_deref(), Some("miss"));
    assert_eq!(gw.mock.request_count(), 2);
    assert_eq!(post_as(&gw, &a, &body).await.cache.as_deref(), Some("hit"));
    assert_eq!(post_as(&gw, &b, &body).await.cache.as_deref(), Some("hit"));
    assert_eq!(gw.mock.request_count(), 2);
    gw.wait_traces(4).await;
    let namespaces: Vec<String> = column(
        &gw.db(),
        "SELECT namespace FROM cache_entries ORDER BY created_at_ms",
    );
    assert_eq!(namespaces.len(), 2);
    assert_eq!(namespaces[0], id_a);

    let shared = Gateway::start_with(
        MockConfig::default(),
        &format!("{KEYED}{}", config("namespace = \"shared\"")),
    )
    .await;
    let (_, a) = create_key(&shared, json!({"name": "a"})).await;
    let (_, b) = create_key(&shared, json!({"name": "b"})).await;
    assert_eq!(
        post_as(&shared, &a, &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(
        post_as(&shared, &b, &body).await.cache.as_deref(),
        Some("hit")
    );
    assert_eq!(shared.mock.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_goes_before_the_modules_and_takes_no_rate_limit() {
    let gw = Gateway::start_with(MockConfig::default(), &format!("{KEYED}{}", config(""))).await;
    let (_, key) = create_key(&gw, json!({"name": "one-a-minute", "rpm": 1})).await;
    let body = chat("gpt-4o-mini", false);
    assert_eq!(post_as(&gw, &key, &body).await.status, 200);
    let hit = post_as(&gw, &key, &body).await;
    assert_eq!((hit.status, hit.cache.as_deref()), (200, Some("hit")));
    let mut other = body.clone();
    other["temperature"] = json!(1);
    let refused = post_as(&gw, &key, &other).await;
    assert_eq!(refused.status, 429, "a miss goes through the rate limit");
    assert_eq!(refused.cache.as_deref(), Some("miss"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_cut_and_oversized_answers_are_never_stored() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &config("max_entry_bytes = 2000\n[modules.retry]\nenabled = false"),
    )
    .await;
    let body = chat("gpt-4o-mini", false);
    for status in ["400", "500", "429"] {
        let err = post_with(&gw, CHAT, &body, &[("x-mock-status", status)]).await;
        assert_eq!(err.status.to_string(), status);
        assert_eq!(err.cache.as_deref(), Some("miss"));
    }
    let cut = post_with(&gw, CHAT, &body, &[("x-mock-cut-body", "1")]).await;
    assert_eq!((cut.status, cut.whole), (200, false));
    assert_eq!(cut.cache.as_deref(), Some("miss"));
    let big = post_with(&gw, CHAT, &body, &[("x-mock-words", "1000")]).await;
    assert_eq!((big.status, big.cache.as_deref()), (200, Some("miss")));
    assert!(big.body.len() > 2000);
    gw.wait_traces(5).await;
    let stored: i64 = value(&gw.db(), "SELECT count(*) FROM cache_entries", []);
    assert_eq!(stored, 0);
    // So the next one goes upstream, and only a good answer is then served.
    let calls = gw.mock.request_count();
    assert_eq!(post(&gw, CHAT, &body).await.cache.as_deref(), Some("miss"));
    let hit = post(&gw, CHAT, &body).await;
    assert_eq!((hit.status, hit.cache.as_deref()), (200, Some("hit")));
    assert_eq!(gw.mock.request_count(), calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_controls_skip_refresh_and_ttl() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let body = chat("gpt-4o-mini", false);
    let skip = post_with(&gw, CHAT, &body, &[("x-tollgate-cache", "skip")]).await;
    assert_eq!((skip.status, skip.cache.as_deref()), (200, Some("skip")));
    // Not stored.
    let three = post_with(&gw, CHAT, &body, &[("x-mock-words", "3")]).await;
    assert_eq!(three.cache.as_deref(), Some("miss"));
    assert_eq!(gw.mock.request_count(), 2);
    // Refresh: not looked up, and its answer replaces the entry.
    let five = post_with(
        &gw,
        CHAT,
        &body,
        &[("x-tollgate-cache", "refresh"), ("x-mock-words", "5")],
    )
    .await;
    assert_eq!(five.cache.as_deref(), Some("refresh"));
    assert_eq!(gw.mock.request_count(), 3);
    gw.wait_traces(3).await;
    let hit = post(&gw, CHAT, &body).await;
    assert_eq!(hit.cache.as_deref(), Some("hit"));
    assert_eq!(hit.body, five.body);
    assert_ne!(five.body, three.body);

    // A TTL of one second for the entry this request stores.
    let mut short = body.clone();
    short["seed"] = json!(1);
    let stored = post_with(&gw, CHAT, &short, &[("x-tollgate-cache-ttl", "1")]).await;
    assert_eq!(stored.cache.as_deref(), Some("miss"));
    assert_eq!(post(&gw, CHAT, &short).await.cache.as_deref(), Some("hit"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&gw, CHAT, &short).await.cache.as_deref(), Some("miss"));

    // Bad controls are refused, naming the header.
    for (name, value) in [
        ("x-tollgate-cache-ttl", "0"),
        ("x-tollgate-cache-ttl", "ten"),
        ("x-tollgate-cache-ttl", "-5"),
        ("x-tollgate-cache", "always"),
    ] {
        let calls = gw.mock.request_count();
        let bad = post_with(&gw, CHAT, &body, &[(name, value)]).await;
        assert_eq!(bad.status, 400, "{name}: {value}");
        let error: Value = serde_json::from_slice(&bad.body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(name), "{message}");
        assert_eq!(gw.mock.request_count(), calls);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_from_the_settings_expires_entries() {
    let gw = Gateway::start_with(MockConfig::default(), &config("ttl_secs = 1")).await;
    let body = message("claude-haiku-4-5", false);
    assert_eq!(
        post(&gw, MESSAGES, &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(
        post(&gw, MESSAGES, &body).await.cache.as_deref(),
        Some("hit")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        post(&gw, MESSAGES, &body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(gw.mock.request_count(), 2);
}

/// The text of an answer: a non-stream body's message, or a stream's
/// deltas joined; and whether a stream carried a usage chunk.
fn text_of(path: &str, a: &Answer) -> (String, bool) {
    let body = String::from_utf8_lossy(&a.body);
    if !a
        .content_type
        .as_deref()
        .unwrap_or("")
        .starts_with("text/event-stream")
    {
        let v: Value = serde_json::from_str(&body).unwrap();
        let text = if path == CHAT {
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            v["content"][0]["text"].as_str().unwrap().to_string()
        };
        return (text, true);
    }
    let mut text = String::new();
    let mut usage = false;
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if path == CHAT {
            usage |= v["usage"].is_object();
            text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        } else if v["type"] == "content_block_delta" {
            text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
        }
    }
    (text, usage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_non_streams_serve_each_other_in_both_protocols() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let mut upstream = 0;
    for (path, body) in [
        (CHAT, chat("gpt-4o-mini", false)),
        (MESSAGES, message("claude-haiku-4-5", false)),
    ] {
        let stream = |on: bool, prompt: &str| {
            let mut b = body.clone();
            b["stream"] = json!(on);
            b["messages"][0]["content"] = json!(prompt);
            b
        };
        // A non-stream answer serves a stream request, replayed.
        let first = post(&gw, path, &stream(false, "first prompt")).await;
        assert_eq!((first.status, first.cache.as_deref()), (200, Some("miss")));
        upstream += 1;
        let replayed = post(&gw, path, &stream(true, "first prompt")).await;
        assert_eq!(replayed.cache.as_deref(), Some("hit"), "{path}");
        assert!(
            replayed
                .content_type
                .as_deref()
                .unwrap()
                .starts_with("text/event-stream"),
            "{path}"
        );
        let tail = String::from_utf8_lossy(&replayed.body);
        if path == CHAT {
            assert!(tail.trim_end().ends_with("data: [DONE]"), "{tail}");
        } else {
            assert!(tail.contains("event: message_stop"), "{tail}");
        }
        let (text, usage) = text_of(path, &replayed);
        assert_eq!(text, text_of(path, &first).0, "{path}");
        if path == CHAT {
            assert!(!usage, "no usage chunk unless asked: {tail}");
            let mut asked = stream(true, "first prompt");
            asked["stream_options"] = json!({"include_usage": true});
            let with_usage = post(&gw, path, &asked).await;
            assert_eq!(with_usage.cache.as_deref(), Some("hit"));
            assert!(text_of(path, &with_usage).1, "the usage chunk when asked");
        }

        // A streamed answer, assembled, serves a non-stream request.
        let streamed = post(&gw, path, &stream(true, "second prompt")).await;
        assert_eq!(streamed.cache.as_deref(), Some("miss"), "{path}");
        upstream += 1;
        let served = post(&gw, path, &stream(false, "second prompt")).await;
        assert_eq!(served.cache.as_deref(), Some("hit"), "{path}");
        assert_eq!(
            text_of(path, &served).0,
            text_of(path, &streamed).0,
            "{path}"
        );
        let again = post(&gw, path, &stream(true, "second prompt")).await;
        assert_eq!(again.cache.as_deref(), Some("hit"), "{path}");
        assert_eq!(text_of(path, &again).0, text_of(path, &streamed).0);
    }
    assert_eq!(gw.mock.request_count(), upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_is_never_stored() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    for (path, body) in [
        (CHAT, chat("gpt-4o-mini", true)),
        (MESSAGES, message("claude-haiku-4-5", true)),
    ] {
        let cut = post_with(&gw, path, &body, &[("x-mock-break-after", "2")]).await;
        assert_eq!(cut.cache.as_deref(), Some("miss"), "{path}");
        let next = post(&gw, path, &body).await;
        assert_eq!(
            next.cache.as_deref(),
            Some("miss"),
            "{path}: the cut answer was not stored"
        );
        assert_eq!(
            post(&gw, path, &body).await.cache.as_deref(),
            Some("hit"),
            "{path}"
        );
    }
    assert_eq!(gw.mock.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_no_header_and_no_cache() {
    let gw = Gateway::start_with(MockConfig::default(), PRICES).await;
    let body = chat("gpt-4o-mini", false);
    for _ in 0..2 {
        let a = post(&gw, CHAT, &body).await;
        assert_eq!((a.status, a.cache.as_deref()), (200, None));
    }
    assert_eq!(gw.mock.request_count(), 2);
    gw.wait_traces(2).await;
    assert_eq!(last_trace(&gw.db())["cache_status"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_through_the_api_is_audited_and_takes_effect_at_once() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let chat_body = chat("gpt-4o-mini", false);
    let msg_body = message("claude-haiku-4-5", false);
    post(&gw, CHAT, &chat_body).await;
    post(&gw, MESSAGES, &msg_body).await;
    gw.wait_traces(2).await;
    let (status, out) = admin_call(&gw, Method::DELETE, "/cache?model=gpt-4o-mini", None).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["purged"], 1, "{out}");
    // The chat entry (held in memory too) is gone; the other one stays.
    assert_eq!(
        post(&gw, CHAT, &chat_body).await.cache.as_deref(),
        Some("miss")
    );
    assert_eq!(
        post(&gw, MESSAGES, &msg_body).await.cache.as_deref(),
        Some("hit")
    );
    gw.wait_traces(4).await;
    let (status, out) = admin_call(&gw, Method::DELETE, "/cache", None).await;
    assert_eq!((status, &out["purged"]), (200, &json!(2)), "{out}");
    assert_eq!(
        post(&gw, MESSAGES, &msg_body).await.cache.as_deref(),
        Some("miss")
    );
    let (status, out) = admin_call(&gw, Method::DELETE, "/cache?colour=red", None).await;
    assert_eq!(status, 400, "{out}");
    let actions: Vec<(String, String)> = rows(
        &gw.db(),
        "SELECT subject, detail FROM audit_log WHERE action = 'cache.purge' ORDER BY seq",
    );
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0].0, "cache:model=gpt-4o-mini");
    assert_eq!(actions[1].0, "cache:all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_by_the_cli_reaches_a_running_gateway_and_entries_survive_a_restart() {
    let mut gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let body = chat("gpt-4o-mini", false);
    let first = post(&gw, CHAT, &body).await;
    gw.wait_traces(1).await;

    // Survives a restart: served from the database.
    gw.restart(&config("")).await;
    let after = post(&gw, CHAT, &body).await;
    assert_eq!(after.cache.as_deref(), Some("hit"));
    assert_eq!(after.body, first.body);
    assert_eq!(gw.mock.request_count(), 1);
    // Now held in memory as well; the CLI purges the database.
    assert_eq!(post(&gw, CHAT, &body).await.cache.as_deref(), Some("hit"));
    gw.wait_traces(3).await;
    let (code, out, err) = cli(&gw.db, &["cache", "stats", "--json"]);
    assert_eq!(code, 0, "{err}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&stats["entries"], &stats["hits"]), (&json!(1), &json!(2)));
    let (code, out, err) = cli(&gw.db, &["cache", "purge", "--model", "gpt-4o-mini"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purged 1"), "{out}");
    // Within a second or so the running gateway stops serving it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let a = post(&gw, CHAT, &body).await;
        if a.cache.as_deref() == Some("miss") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.mock.request_count(), 2);
    let purges: i64 = value(
        &gw.db(),
        "SELECT count(*) FROM audit_log WHERE action = 'cache.purge'",
        [],
    );
    assert_eq!(purges, 1);
    let (code, out, _) = cli(&gw.db, &["cache", "stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("hit ratio"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_recently_used_entries_go_beyond_max_bytes() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &config("max_bytes = 2000\nmax_entry_bytes = 1000"),
    )
    .await;
    let words = [("x-mock-words", "100")];
    let ask = |seed: i64| {
        let mut body = chat("gpt-4o-mini", false);
        body["seed"] = json!(seed);
        body
    };
    let a = post_with(&gw, CHAT, &ask(1), &words).await;
    let b = post_with(&gw, CHAT, &ask(2), &words).await;
    assert!((700..1000).contains(&a.body.len()), "{}", a.body.len());
    gw.wait_traces(2).await;
    // A is used again, so B is now the least recently used.
    let hit = post_with(&gw, CHAT, &ask(1), &words).await;
    assert_eq!(hit.cache.as_deref(), Some("hit"));
    gw.wait_traces(3).await;
    let c = post_with(&gw, CHAT, &ask(3), &words).await;
    gw.wait_traces(4).await;
    let kept: Vec<String> = column(
        &gw.db(),
        "SELECT source_trace_id FROM cache_entries ORDER BY created_at_ms",
    );
    assert_eq!(kept, [a.id.unwrap(), c.id.unwrap()], "B was evicted");
    let bytes: i64 = value(&gw.db(), "SELECT sum(bytes) FROM cache_entries", []);
    assert!(bytes <= 2000);
    assert!(b.id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_cached_too() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let body = json!({"model": "text-embedding-3-small", "input": ["a", "b"]});
    let first = post(&gw, "/v1/embeddings", &body).await;
    assert_eq!((first.status, first.cache.as_deref()), (200, Some("miss")));
    let again = post(&gw, "/v1/embeddings", &body).await;
    assert_eq!(again.cache.as_deref(), Some("hit"));
    assert_eq!(again.body, first.body);
    let other = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["a"]}),
    )
    .await;
    assert_eq!(other.cache.as_deref(), Some("miss"));
    assert_eq!(gw.mock.request_count(), 2);
}
