//! Guardrails on the request path (`[modules.guardrails]`, issue 16),
//! black-box: PII in every text part is redacted before the request goes
//! upstream (checked on what the mock upstream received) or, in block mode,
//! refused in the client's protocol shape naming the rule; deny rules
//! (global and per key), the input token limit and text past the scan
//! limit refuse; the module switches at runtime through the admin API and
//! the CLI; the cache keys the redacted form; and the matched text reaches
//! neither the trace, the audit log, nor the server's log output.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tollgate_mock_upstream::MockConfig;

const EMAIL: &str = "jane.doe@example.com";
/// A Luhn-valid test card number.
const CARD: &str = "4111 1111 1111 1111";
/// An OpenAI-style project key (made up).
const OPENAI_KEY: &str = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd";
const ALL_SECRETS: [&str; 3] = [EMAIL, CARD, OPENAI_KEY];

const REDACT: &str = "[modules.guardrails]\nenabled = true\n";
const BLOCK: &str = "[modules.guardrails]\nenabled = true\npii_action = \"block\"\n";
const STORE_BODIES: &str = "[traces]\nstore_bodies = true\n";
const AUTH_ON: &str = "[auth]\nrequire_client_key = true\n";

fn chat_saying(text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
    })
}

fn message_with_system(system: &str, text: &str) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "system": system,
        "messages": [{"role": "user", "content": text}],
    })
}

async fn post(gw: &Gateway, path: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = client().post(gw.url(path)).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

/// Status and JSON body.
async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every body the mock upstream received, as text.
fn upstream_bodies(gw: &Gateway) -> Vec<String> {
    gw.mock
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// Every value of every row of `table`, as text (blobs lossily decoded).
fn dump(db: &rusqlite::Connection, table: &str) -> String {
    let mut stmt = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
    let n = stmt.column_count();
    let mut out = String::new();
    let mut rows = stmt.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        for i in 0..n {
            match row.get_ref(i).unwrap() {
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    out.push_str(&String::from_utf8_lossy(t));
                }
                other => out.push_str(&format!("{other:?}")),
            }
            out.push('\u{1}');
        }
        out.push('\n');
    }
    out
}

fn assert_none_in(haystack: &str, what: &str) {
    for secret in ALL_SECRETS {
        assert!(
            !haystack.contains(secret),
            "{what} holds {secret:?}:\n{haystack}"
        );
    }
    // Cards also without their spaces.
    assert!(
        !haystack.contains("4111111111111111"),
        "{what} holds the card"
    );
}

/// The trace's `guardrails` column, parsed.
fn fired(trace: &serde_json::Map<String, Value>) -> Value {
    match &trace["guardrails"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    }
}

async fn create_key(gw: &Gateway, name: &str) -> (String, String) {
    let (status, key) = admin_call(gw, Method::POST, "/keys", Some(json!({"name": name}))).await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn pii_in_chat_anthropic_system_and_embeddings_never_reaches_the_upstream() {
    let gw = Gateway::start_with(MockConfig::default(), &format!("{REDACT}{STORE_BODIES}")).await;

    let text = format!("Mail {EMAIL}, pay with {CARD}, and use the key {OPENAI_KEY} please.");
    let resp = post(&gw, "/v1/chat/completions", &chat_saying(&text), None).await;
    assert_eq!(resp.headers()["x-tollgate-guardrails"], "redacted=3");
    let (status, body) = answer(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        tollgate_mock_upstream::DEFAULT_REPLY
    );
    gw.wait_traces(1).await;
    let trace = last_trace(&gw.db());
    assert_eq!(fired(&trace), json!({"card": 1, "email": 1, "secret": 1}));
    assert_eq!(trace["error_kind"], Value::Null);

    let resp = post(
        &gw,
        "/v1/messages",
        &message_with_system(&format!("The user is {EMAIL}."), "Say hello"),
        None,
    )
    .await;
    assert_eq!(resp.headers()["x-tollgate-guardrails"], "redacted=1");
    let (status, body) = answer(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message");

    let resp = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": ["plain text", format!("card {CARD}")]}),
        None,
    )
    .await;
    let (status, body) = answer(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    // A request with nothing to redact carries no header and no finding.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("gpt-4o-mini", false),
        None,
    )
    .await;
    assert!(resp.headers().get("x-tollgate-guardrails").is_none());
    assert_eq!(resp.status(), 200);
    gw.wait_traces(4).await;
    assert_eq!(last_trace(&gw.db())["guardrails"], Value::Null);

    let received = upstream_bodies(&gw);
    assert_eq!(received.len(), 4);
    for body in &received {
        assert_none_in(body, "a body the upstream received");
    }
    assert!(received[0].contains("[EMAIL_1]"), "{}", received[0]);
    assert!(received[0].contains("[CARD_1]"), "{}", received[0]);
    assert!(received[0].contains("[SECRET_1]"), "{}", received[0]);
    let system = serde_json::from_str::<Value>(&received[1]).unwrap()["system"].clone();
    assert_eq!(system, "The user is [EMAIL_1].");
    let input = serde_json::from_str::<Value>(&received[2]).unwrap()["input"].clone();
    assert_eq!(input, json!(["plain text", "card [CARD_1]"]));

    // Stored bodies are the redacted ones; nothing found is anywhere in
    // the database.
    let db = gw.db();
    for table in ["traces", "costs", "audit_log"] {
        assert_none_in(&dump(&db, table), table);
    }
    let stored: Vec<Vec<u8>> = column(
        &db,
        "SELECT request_body FROM traces ORDER BY started_at_ms, id",
    );
    assert!(String::from_utf8_lossy(&stored[0]).contains("[EMAIL_1]"));
    // The new column is covered by the ledger and verifies.
    let (code, out, err) = cli(&gw.db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn block_mode_refuses_in_each_protocols_shape_naming_the_rule_never_the_match() {
    let gw = Gateway::start_with(MockConfig::default(), BLOCK).await;

    let (status, body) = answer(
        post(
            &gw,
            "/v1/chat/completions",
            &chat_saying(&format!("write to {EMAIL}")),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "guardrails_blocked");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`email`"), "{message}");
    assert_none_in(&body.to_string(), "the OpenAI error");

    let (status, body) = answer(
        post(
            &gw,
            "/v1/messages",
            &message_with_system("be nice", &format!("my card is {CARD}")),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`card`"),
        "{body}"
    );
    assert_none_in(&body.to_string(), "the Anthropic error");

    gw.wait_traces(2).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["status"], 400);
    assert_eq!(trace["error_kind"], "guardrails");
    assert_eq!(fired(&trace), json!({"card": 1}));
    assert_none_in(&dump(&gw.db(), "traces"), "traces");
    assert_eq!(gw.mock.request_count(), 0, "nothing went upstream");
}

#[tokio::test]
async fn deny_rules_apply_globally_and_per_key_and_the_token_limit_per_key() {
    let gw = Gateway::start_with(MockConfig::default(), AUTH_ON).await;
    let (plain_id, plain) = create_key(&gw, "plain").await;
    let (strict_id, strict) = create_key(&gw, "strict").await;
    let (status, view) = admin_call(
        &gw,
        Method::PUT,
        "/modules/guardrails",
        Some(json!({
            "enabled": true,
            "deny": ["(?i)project\\s+falcon"],
            "max_input_tokens": 40,
            "keys": {
                strict_id.as_str(): {"deny_literals": ["Banana"]},
                plain_id.as_str(): {"max_input_tokens": 1000},
            },
        })),
    )
    .await;
    assert_eq!(status, 200, "{view}");

    let status_of = |key: String, text: String| {
        let gw = &gw;
        async move {
            answer(post(gw, "/v1/chat/completions", &chat_saying(&text), Some(&key)).await).await
        }
    };
    // Global deny: every key.
    for key in [&plain, &strict] {
        let (status, body) = status_of(key.clone(), "tell me about Project  Falcon".into()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "guardrails_denied");
    }
    // The strict key's literal only for it.
    let (status, body) = status_of(strict.clone(), "I like bananas".into()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "guardrails_denied");
    let (status, body) = status_of(plain.clone(), "I like bananas".into()).await;
    assert_eq!(status, 200, "{body}");

    // About 100 tokens of input: over the global 40, under plain's 1000.
    let long = "word ".repeat(80);
    let (status, body) = status_of(strict.clone(), long.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "guardrails_too_many_tokens");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("40"),
        "{body}"
    );
    let (status, body) = status_of(plain.clone(), long).await;
    assert_eq!(status, 200, "{body}");

    gw.wait_traces(6).await;
    let kinds: Vec<Option<String>> = column(
        &gw.db(),
        "SELECT error_kind FROM traces ORDER BY started_at_ms, id",
    );
    let refused = kinds
        .iter()
        .filter(|k| k.as_deref() == Some("guardrails"))
        .count();
    assert_eq!(refused, 4, "{kinds:?}");
    assert_eq!(
        gw.mock.request_count(),
        2,
        "only the passed requests went upstream"
    );
}

#[tokio::test]
async fn text_past_the_scan_limit_is_refused_not_passed() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        "[modules.guardrails]\nenabled = true\nscan_limit_bytes = 1024\n",
    )
    .await;
    let (status, body) = answer(
        post(
            &gw,
            "/v1/chat/completions",
            &chat_saying(&"x".repeat(2000)),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "guardrails_unscannable");
    // Past the limit even when the PII sits at the end, where a scan that
    // stopped early would miss it.
    let (status, _) = answer(
        post(
            &gw,
            "/v1/messages",
            &message_with_system(&"y".repeat(2000), EMAIL),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    gw.wait_traces(2).await;
    let trace = last_trace(&gw.db());
    assert_eq!(trace["error_kind"], "guardrails");
    assert_eq!(fired(&trace), json!({"unscannable": 1}));
    assert_eq!(gw.mock.request_count(), 0);

    let (status, body) = answer(
        post(
            &gw,
            "/v1/chat/completions",
            &chat("gpt-4o-mini", false),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_large_request_is_scanned_to_its_end() {
    let gw = Gateway::start_with(MockConfig::default(), REDACT).await;
    // Past the size scanned on the request's task: scanned off it, whole.
    let text = format!("{} write to {EMAIL}", "lorem ipsum ".repeat(30_000));
    let resp = post(&gw, "/v1/chat/completions", &chat_saying(&text), None).await;
    assert_eq!(resp.headers()["x-tollgate-guardrails"], "redacted=1");
    assert_eq!(resp.status(), 200);
    let received = upstream_bodies(&gw);
    assert!(
        received[0].ends_with("write to [EMAIL_1]\"}]}"),
        "{}",
        &received[0][received[0].len() - 80..]
    );
    assert_none_in(&received[0], "the body the upstream received");
}

#[tokio::test]
async fn switching_the_module_at_runtime_applies_to_the_next_request() {
    let gw = Gateway::start_with(MockConfig::default(), BLOCK).await;
    let pii = chat_saying(&format!("mail {EMAIL}"));
    let status = |gw: &Gateway| {
        let req = client().post(gw.url("/v1/chat/completions")).json(&pii);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&gw).await, 400);

    // Off through the admin API: the very next request passes, unscanned.
    let (code, view) = admin_call(
        &gw,
        Method::PUT,
        "/modules/guardrails",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(status(&gw).await, 200);
    assert!(
        upstream_bodies(&gw)[0].contains(EMAIL),
        "off means not evaluated"
    );

    // On again, redacting.
    let (code, _) = admin_call(
        &gw,
        Method::PUT,
        "/modules/guardrails",
        Some(json!({"enabled": true, "pii_action": "redact"})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(status(&gw).await, 200);
    assert!(upstream_bodies(&gw)[1].contains("[EMAIL_1]"));

    // Block again through the CLI (another process): within a second.
    let (code, out, err) = cli(
        &gw.db,
        &["modules", "set", "guardrails", "pii_action=block"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while status(&gw).await != 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not blocking after the CLI changed it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _, err) = cli(&gw.db, &["modules", "disable", "guardrails"]);
    assert_eq!(code, 0, "{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while status(&gw).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still on after the CLI disabled it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every change is audited (API and CLI alike).
    let changes: i64 = value(
        &gw.db(),
        "SELECT count(*) FROM audit_log WHERE subject = 'module:guardrails'",
        [],
    );
    assert_eq!(changes, 4);
}

#[tokio::test]
async fn the_cache_keys_the_redacted_form() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("{REDACT}[modules.cache]\nenabled = true\n"),
    )
    .await;
    let first = post(
        &gw,
        "/v1/chat/completions",
        &chat_saying("Reply to jane.doe@example.com please"),
        None,
    )
    .await;
    assert_eq!(first.headers()["x-tollgate-cache"], "miss");
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    gw.wait_traces(1).await;
    // Another address: the same redacted request, so the same entry.
    let second = post(
        &gw,
        "/v1/chat/completions",
        &chat_saying("Reply to john.roe@example.org please"),
        None,
    )
    .await;
    assert_eq!(second.headers()["x-tollgate-cache"], "hit");
    assert_eq!(second.headers()["x-tollgate-guardrails"], "redacted=1");
    assert_eq!(second.status(), 200);
    assert_eq!(gw.mock.request_count(), 1);
    gw.wait_traces(2).await;
    let db = gw.db();
    assert!(!dump(&db, "traces").contains("example."));
    assert!(!dump(&db, "cache_entries").contains("example."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matched_text_is_never_logged() {
    let mock = tollgate_mock_upstream::MockUpstream::start_expecting(UPSTREAM_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        config_toml(
            &mock.base_url(),
            &dir.path().join("tollgate.db"),
            &format!("{REDACT}{STORE_BODIES}"),
        ),
    )
    .unwrap();
    let served = serve(
        &["--config", config.to_str().unwrap()],
        dir.path(),
        &[("TOLLGATE_LOG", "debug")],
    );
    let base = format!("http://{}", served.addr);
    let text = format!("Mail {EMAIL}, pay with {CARD}, key {OPENAI_KEY}.");
    let send = |path: &'static str, body: Value| {
        let req = client().post(format!("{base}{path}")).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("/v1/chat/completions", chat_saying(&text)).await, 200);
    assert_eq!(
        send("/v1/messages", message_with_system(&text, &text)).await,
        200
    );
    // Refusals too: block mode, and a deny rule the text matches.
    let admin = |patch: Value| {
        let req = client()
            .put(format!("{base}/admin/v1/modules/guardrails"))
            .bearer_auth(ADMIN_KEY)
            .json(&patch);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(admin(json!({"pii_action": "block"})).await, 200);
    assert_eq!(send("/v1/chat/completions", chat_saying(&text)).await, 400);
    assert_eq!(
        admin(json!({"pii_action": "off", "deny": ["jane\\.doe"]})).await,
        200
    );
    assert_eq!(send("/v1/chat/completions", chat_saying(&text)).await, 400);
    let (code, stderr) = stop(served.child);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("DEBUG") || stderr.contains("INFO"),
        "{stderr}"
    );
    assert_none_in(&stderr, "the server's log output");
    let db = rusqlite::Connection::open(dir.path().join("tollgate.db")).unwrap();
    let traces = dump(&db, "traces");
    assert_eq!(traces.lines().count(), 4);
    assert_none_in(&traces, "traces");
}
