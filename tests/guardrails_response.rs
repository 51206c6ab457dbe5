//! Guardrails on answers (`[modules.guardrails]`, response side), black-box:
//! a card number or e-mail address in the upstream's answer reaches the
//! client redacted — in a stream even when it is split over several events
//! (OpenAI and Anthropic, text and tool-call arguments), and the stream
//! still parses; a JSON answer is re-sent with its own `content-length`;
//! block mode ends a stream with the protocol's error event and refuses a
//! JSON answer with a 400; an answer beyond the scan limit is refused (fail
//! closed); the exact cache keeps the redacted answer; and the matched text
//! is in no trace, no stored body, no database page and no log line.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tollgate_mock_upstream::MockConfig;

const CARD: &str = "4111 1111 1111 1111";
const EMAIL: &str = "jane.roe@example.com";
/// The answer the mock gives: a card and an e-mail address in prose.
fn reply() -> String {
    format!("Your card {CARD} is on file; we mail {EMAIL} today.")
}

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";

/// Every log line of this test binary, at debug level.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn gateway(guardrails: &str) -> Gateway {
    logs();
    Gateway::start_with(
        MockConfig::default(),
        &format!(
            "[traces]\nstore_bodies = true\n[modules.guardrails]\nenabled = true\n{guardrails}\n"
        ),
    )
    .await
}

struct Answer {
    status: u16,
    content_length: Option<usize>,
    body: String,
}

async fn send(gw: &Gateway, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().post(gw.url(path)).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let content_length = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    Answer {
        status: resp.status().as_u16(),
        content_length,
        body: resp.text().await.unwrap(),
    }
}

/// The (event name, data) of each event of an SSE body; every data that is
/// not `[DONE]` must be JSON.
fn sse_events(body: &str) -> Vec<(Option<String>, Value)> {
    assert!(
        body.ends_with("\n\n"),
        "the stream ends on an event boundary"
    );
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data = if data == "[DONE]" {
                Value::String(data)
            } else {
                serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"))
            };
            (name, data)
        })
        .collect()
}

/// The text an OpenAI stream's client assembles (content, tool arguments).
fn openai_text(events: &[(Option<String>, Value)]) -> (String, String) {
    let (mut text, mut args) = (String::new(), String::new());
    for (_, e) in events {
        let Some(choices) = e.get("choices").and_then(Value::as_array) else {
            continue;
        };
        for c in choices {
            if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                text.push_str(t);
            }
            for call in c
                .pointer("/delta/tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    args.push_str(a);
                }
            }
        }
    }
    (text, args)
}

/// The text of each content block an Anthropic stream's client assembles.
fn anthropic_blocks(events: &[(Option<String>, Value)]) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for (name, e) in events {
        if name.as_deref() != Some("content_block_delta") {
            continue;
        }
        let i = e["index"].as_u64().unwrap() as usize;
        if blocks.len() <= i {
            blocks.resize(i + 1, String::new());
        }
        let piece = e
            .pointer("/delta/text")
            .or_else(|| e.pointer("/delta/partial_json"))
            .and_then(Value::as_str)
            .unwrap();
        blocks[i].push_str(piece);
    }
    blocks
}

/// The matched values are nowhere: not in the trace row, the stored
/// bodies, any database file (WAL included), or the log.
fn assert_nowhere(gw: &Gateway, what: &[&str]) {
    let trace = Value::Object(last_trace(&gw.db())).to_string();
    let conn = gw.db();
    let mut bodies: Vec<Option<Vec<u8>>> = column(&conn, "SELECT request_body FROM traces");
    bodies.extend(column::<Option<Vec<u8>>>(
        &conn,
        "SELECT response_body FROM traces",
    ));
    let mut disk = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = gw.db.clone().into_os_string();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            disk.extend_from_slice(&bytes);
        }
    }
    let logs = logs().lock().unwrap().clone();
    assert!(!logs.is_empty(), "the log is captured");
    for value in what {
        let v = value.as_bytes();
        let found = |hay: &[u8]| hay.windows(v.len()).any(|w| w == v);
        assert!(!trace.contains(value), "{value} is in the trace: {trace}");
        for body in bodies.iter().flatten() {
            assert!(!found(body), "{value} is in a stored body");
        }
        assert!(!found(&disk), "{value} is in the database files");
        assert!(!found(&logs), "{value} is in the log");
    }
}

fn fired(gw: &Gateway) -> Value {
    let t = last_trace(&gw.db());
    match &t["guardrails"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    }
}

#[tokio::test]
async fn an_openai_stream_with_a_card_split_over_three_events_reaches_the_client_redacted() {
    let gw = gateway("").await;
    let text = reply();
    // 8-byte events: the 19-byte card number spans three of them.
    let a = send(
        &gw,
        CHAT,
        &chat("gpt-4o-mini", true),
        &[("x-mock-reply", &text), ("x-mock-split-bytes", "8")],
    )
    .await;
    assert_eq!(a.status, 200);
    let events = sse_events(&a.body);
    assert_eq!(
        events.last().unwrap().1,
        "[DONE]",
        "the stream ends normally"
    );
    let (content, _) = openai_text(&events);
    assert!(!content.contains("4111"), "{content}");
    assert!(!content.contains(EMAIL), "{content}");
    assert_eq!(
        content,
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    gw.wait_traces(1).await;
    let t = last_trace(&gw.db());
    assert_eq!(t["error_kind"], Value::Null, "{t:?}");
    assert_eq!(t["finish_reason"], "stop");
    assert!(
        t["output_tokens"].as_i64().unwrap() > 0,
        "usage still read: {t:?}"
    );
    assert_eq!(fired(&gw), json!({"card": 1, "email": 1}));
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn an_anthropic_stream_with_a_card_split_over_events_reaches_the_client_redacted() {
    let gw = gateway("").await;
    let text = reply();
    for split in ["5", "8", "13"] {
        let a = send(
            &gw,
            MESSAGES,
            &message("claude-haiku-4-5", true),
            &[("x-mock-reply", &text), ("x-mock-split-bytes", split)],
        )
        .await;
        assert_eq!(a.status, 200);
        let events = sse_events(&a.body);
        assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
        let blocks = anthropic_blocks(&events);
        assert_eq!(
            blocks,
            vec!["Your card [CARD_1] is on file; we mail [EMAIL_1] today.".to_string()],
            "split {split}"
        );
        // Every delta comes before its block's stop.
        let stop = events
            .iter()
            .position(|(n, _)| n.as_deref() == Some("content_block_stop"))
            .unwrap();
        assert!(
            events[stop..]
                .iter()
                .all(|(n, _)| n.as_deref() != Some("content_block_delta"))
        );
    }
    gw.wait_traces(3).await;
    let t = last_trace(&gw.db());
    assert_eq!(t["error_kind"], Value::Null, "{t:?}");
    assert_eq!(t["finish_reason"], "end_turn");
    assert_eq!(fired(&gw), json!({"card": 1, "email": 1}));
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn tool_call_arguments_in_a_stream_are_redacted_too() {
    let gw = gateway("").await;
    let text = reply();
    let headers = [
        ("x-mock-reply", text.as_str()),
        ("x-mock-split-bytes", "7"),
        ("x-mock-tool-call", "save"),
    ];
    let a = send(&gw, CHAT, &chat("gpt-4o-mini", true), &headers).await;
    let (_, args) = openai_text(&sse_events(&a.body));
    let args: Value = serde_json::from_str(&args).expect("the arguments stay JSON");
    assert_eq!(
        args["text"],
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    let a = send(&gw, MESSAGES, &message("claude-haiku-4-5", true), &headers).await;
    let blocks = anthropic_blocks(&sse_events(&a.body));
    assert_eq!(blocks.len(), 2);
    assert!(!blocks[0].contains("4111"), "{}", blocks[0]);
    let input: Value = serde_json::from_str(&blocks[1]).expect("the input stays JSON");
    assert_eq!(
        input["text"],
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    gw.wait_traces(2).await;
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn a_json_answer_is_redacted_and_sent_with_its_own_content_length() {
    let gw = gateway("").await;
    let text = reply();
    let a = send(
        &gw,
        CHAT,
        &chat("gpt-4o-mini", false),
        &[("x-mock-reply", &text)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.content_length,
        Some(a.body.len()),
        "content-length matches the body"
    );
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    assert!(v["usage"]["completion_tokens"].as_u64().is_some());
    let a = send(
        &gw,
        MESSAGES,
        &message("claude-haiku-4-5", false),
        &[("x-mock-reply", &text)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_length, Some(a.body.len()));
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        v["content"][0]["text"],
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    gw.wait_traces(2).await;
    let t = last_trace(&gw.db());
    assert_eq!(t["error_kind"], Value::Null, "{t:?}");
    assert!(
        t["output_tokens"].as_i64().unwrap() > 0,
        "usage still read: {t:?}"
    );
    assert_eq!(fired(&gw), json!({"card": 1, "email": 1}));
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn block_mode_ends_a_stream_with_an_error_event_and_refuses_a_json_answer() {
    let gw = gateway("response_pii_action = \"block\"").await;
    let text = reply();
    let headers = [("x-mock-reply", text.as_str()), ("x-mock-split-bytes", "6")];

    let a = send(&gw, CHAT, &chat("gpt-4o-mini", true), &headers).await;
    assert_eq!(a.status, 200, "the head had gone out");
    let events = sse_events(&a.body);
    let (_, last) = events.last().unwrap();
    assert_eq!(last["error"]["code"], "guardrails_blocked", "{last}");
    assert!(!a.body.contains("[DONE]"));
    assert!(!a.body.contains("4111"));
    gw.wait_traces(1).await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "guardrails");
    assert_eq!(fired(&gw), json!({"card": 1}), "the rule that ended it");

    let a = send(&gw, MESSAGES, &message("claude-haiku-4-5", true), &headers).await;
    let events = sse_events(&a.body);
    let (name, last) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(last["type"], "error");
    assert_eq!(last["error"]["type"], "invalid_request_error");
    assert!(!a.body.contains("message_stop"));
    assert!(!a.body.contains("4111"));
    gw.wait_traces(2).await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "guardrails");

    let a = send(&gw, CHAT, &chat("gpt-4o-mini", false), &headers).await;
    assert_eq!(a.status, 400);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["error"]["code"], "guardrails_blocked");
    assert_eq!(a.content_length, Some(a.body.len()));
    let a = send(&gw, MESSAGES, &message("claude-haiku-4-5", false), &headers).await;
    assert_eq!(a.status, 400);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    gw.wait_traces(4).await;
    let t = last_trace(&gw.db());
    assert_eq!(t["error_kind"], "guardrails");
    assert_eq!(t["status"], 400);
    assert_eq!(fired(&gw), json!({"card": 1}));
    assert!(
        t["output_tokens"].as_i64().unwrap() > 0,
        "the upstream's usage is kept: {t:?}"
    );
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn an_answer_beyond_the_scan_limit_is_refused_not_passed() {
    let gw = gateway("scan_limit_bytes = 2048").await;
    let a = send(
        &gw,
        CHAT,
        &chat("gpt-4o-mini", false),
        &[("x-mock-words", "2000")],
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["error"]["code"], "guardrails_unscannable");
    assert!(!a.body.contains("w1999"));
    gw.wait_traces(1).await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "guardrails");
    assert_eq!(fired(&gw), json!({"unscannable": 1}));
}

#[tokio::test]
async fn a_stream_event_beyond_the_scan_limit_ends_the_stream_not_passed() {
    let gw = gateway("scan_limit_bytes = 2048").await;
    for (path, body) in [
        (CHAT, chat("gpt-4o-mini", true)),
        (MESSAGES, message("claude-haiku-4-5", true)),
    ] {
        let a = send(&gw, path, &body, &[("x-mock-huge-event-bytes", "10000")]).await;
        assert!(
            !a.body.contains("xxxxxxxxxx"),
            "the unscanned event did not pass"
        );
        let events = sse_events(&a.body);
        let (_, last) = events.last().unwrap();
        assert_eq!(last["error"]["type"], "invalid_request_error", "{last}");
        if path == CHAT {
            assert_eq!(last["error"]["code"], "guardrails_unscannable");
        }
    }
    gw.wait_traces(2).await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "guardrails");
    assert_eq!(fired(&gw), json!({"unscannable": 1}));
}

#[tokio::test]
async fn the_exact_cache_keeps_the_redacted_answer() {
    let gw = gateway("[modules.cache]\nenabled = true").await;
    let text = reply();
    let headers = [("x-mock-reply", text.as_str()), ("x-mock-split-bytes", "9")];
    for stream in [true, false] {
        let body = json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": format!("cache me {stream}")}],
        });
        send(&gw, CHAT, &body, &headers).await;
        gw.wait_traces(if stream { 1 } else { 3 }).await;
        let before = gw.mock.request_count();
        let hit = send(&gw, CHAT, &body, &headers).await;
        assert_eq!(gw.mock.request_count(), before, "answered from the cache");
        let content = if stream {
            openai_text(&sse_events(&hit.body)).0
        } else {
            let v: Value = serde_json::from_str(&hit.body).unwrap();
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            content,
            "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
        );
    }
    gw.wait_traces(4).await;
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn switched_off_at_runtime_the_next_answer_passes_unchanged() {
    let gw = gateway("").await;
    let text = reply();
    let headers = [("x-mock-reply", text.as_str()), ("x-mock-split-bytes", "8")];
    let a = send(&gw, CHAT, &chat("gpt-4o-mini", true), &headers).await;
    assert_eq!(
        openai_text(&sse_events(&a.body)).0,
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/modules/guardrails",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let a = send(&gw, CHAT, &chat("gpt-4o-mini", true), &headers).await;
    assert_eq!(openai_text(&sse_events(&a.body)).0, text);
    gw.wait_traces(2).await;
    assert_eq!(fired(&gw), Value::Null);
}

#[tokio::test]
async fn log_probabilities_that_spell_out_the_text_do_not_pass() {
    let gw = gateway("").await;
    let text = reply();
    let headers = [
        ("x-mock-reply", text.as_str()),
        ("x-mock-split-bytes", "8"),
        ("x-mock-logprobs", "1"),
    ];
    let mut body = chat("gpt-4o-mini", true);
    body["logprobs"] = json!(true);
    let a = send(&gw, CHAT, &body, &headers).await;
    assert!(!a.body.contains("1111"), "{}", a.body);
    let events = sse_events(&a.body);
    assert_eq!(
        openai_text(&events).0,
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    body["stream"] = json!(false);
    let a = send(&gw, CHAT, &body, &headers).await;
    assert_eq!(a.status, 200);
    assert!(!a.body.contains("1111"), "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    gw.wait_traces(2).await;
    assert_nowhere(&gw, &[CARD, EMAIL]);
}

#[tokio::test]
async fn a_cached_answer_stored_before_the_guardrails_were_on_is_checked_on_a_hit() {
    logs();
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[modules.cache]\nenabled = true\n[modules.guardrails]\nenabled = false\n",
    )
    .await;
    let text = reply();
    let headers = [("x-mock-reply", text.as_str())];
    let body = |stream: bool| {
        json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": "cache me early"}],
        })
    };
    let a = send(&gw, CHAT, &body(false), &headers).await;
    assert!(
        a.body.contains(CARD),
        "stored while the guardrails were off"
    );
    gw.wait_traces(1).await;
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/modules/guardrails",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let before = gw.mock.request_count();
    let hit = send(&gw, CHAT, &body(false), &headers).await;
    let replayed = send(&gw, CHAT, &body(true), &headers).await;
    assert_eq!(
        gw.mock.request_count(),
        before,
        "both answered from the cache"
    );
    assert_eq!(hit.content_length, Some(hit.body.len()));
    let v: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    assert_eq!(
        openai_text(&sse_events(&replayed.body)).0,
        "Your card [CARD_1] is on file; we mail [EMAIL_1] today."
    );
    gw.wait_traces(3).await;
    assert_eq!(fired(&gw), json!({"card": 1, "email": 1}));

    // In block mode a stored answer with a card is refused, not replayed.
    let (status, _) = admin_call(
        &gw,
        reqwest::Method::PUT,
        "/modules/guardrails",
        Some(json!({"response_pii_action": "block"})),
    )
    .await;
    assert_eq!(status, 200);
    let refused = send(&gw, CHAT, &body(true), &headers).await;
    assert_eq!(refused.status, 400);
    assert!(!refused.body.contains("1111"), "{}", refused.body);
    assert_eq!(gw.mock.request_count(), before);
    gw.wait_traces(4).await;
    assert_eq!(last_trace(&gw.db())["error_kind"], "guardrails");
}
