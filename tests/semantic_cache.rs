//! The semantic cache (`[modules.semantic_cache]`), black-box: a paraphrase
//! of a stored conversation is answered from its stored answer
//! (`x-tollgate-cache: semantic-hit`, the upstream's chat endpoint not
//! called, traced as `semantic_hit` costing nothing and recording the
//! saving), for a stream request too; an unrelated conversation misses;
//! the same text in any other partition (model, system prompt, temperature,
//! client key, endpoint) never hits, however many entries are stored; the
//! embeddings call is tollgate's own traced and costed request; entries
//! survive a restart; off by default; an embedding failure is a miss.
//!
//! The mock embeds a text by its words (`mock_embedding`): a reordering or
//! a change of case or punctuation is similarity 1, unrelated texts far.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tollgate_mock_upstream::MockConfig;

const PRICES: &str = TEST_PRICES;
const USAGE: &str = TEST_USAGE;
const COST_UC: i64 = TEST_USAGE_COST_UC;

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const EMBEDDINGS: &str = "/v1/embeddings";

fn config(semantic: &str) -> String {
    format!(
        "[modules.cache]\nenabled = true\n\n[modules.semantic_cache]\nenabled = true\n\
         dimensions = 256\n{semantic}\n{PRICES}"
    )
}

fn ask(system: &str, user: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
    })
}

struct Answer {
    status: u16,
    cache: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    id: String,
}

async fn post(gw: &Gateway, path: &str, body: &Value, key: Option<&str>) -> Answer {
    let mut req = client()
        .post(gw.url(path))
        .header("x-mock-usage", USAGE)
        .json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
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
        header("x-tollgate-request-id").unwrap_or_default(),
    );
    Answer {
        status,
        cache,
        content_type,
        body: resp.bytes().await.unwrap().to_vec(),
        id,
    }
}

/// Requests the mock got on `path`.
fn upstream_calls(gw: &Gateway, path: &str) -> usize {
    gw.mock.requests().iter().filter(|r| r.path == path).count()
}

/// Posts `body` and checks how the cache treated it.
async fn expect(gw: &Gateway, path: &str, body: &Value, key: Option<&str>, shown: &str) -> Answer {
    let a = post(gw, path, body, key).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.cache.as_deref(), Some(shown), "{body}");
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_is_a_semantic_hit_that_costs_nothing_and_records_the_saving() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let first = expect(
        &gw,
        CHAT,
        &ask("Be terse.", "What is the capital city of France?"),
        None,
        "miss",
    )
    .await;
    assert_eq!(upstream_calls(&gw, CHAT), 1);
    assert_eq!(upstream_calls(&gw, EMBEDDINGS), 1, "tollgate embedded it");

    // The same words reordered, in another case, other punctuation.
    let para = expect(
        &gw,
        CHAT,
        &ask("Be terse.", "the capital city of France: what is"),
        None,
        "semantic-hit",
    )
    .await;
    assert_eq!(upstream_calls(&gw, CHAT), 1, "the chat upstream was called");
    assert_eq!(metric(&gw, "tollgate_semantic_cache_hits_total").await, 1);
    assert_eq!(para.body, first.body, "the stored answer, as it was");
    assert_eq!(para.content_type.as_deref(), Some("application/json"));

    // A stream request is served by replaying the stored answer.
    let mut streamed = ask("Be terse.", "WHAT is the capital city of france");
    streamed["stream"] = json!(true);
    let s = expect(&gw, CHAT, &streamed, None, "semantic-hit").await;
    assert_eq!(s.content_type.as_deref(), Some("text/event-stream"));
    assert!(
        String::from_utf8_lossy(&s.body)
            .trim_end()
            .ends_with("data: [DONE]"),
        "{}",
        String::from_utf8_lossy(&s.body)
    );
    assert_eq!(upstream_calls(&gw, CHAT), 1);

    // Books: 3 requests + 3 embeddings calls.
    gw.wait_traces(6).await;
    let db = gw.db();
    for id in [&para.id, &s.id] {
        let (cache_status, cost_status, cost_uc, saved_uc): (String, String, i64, Option<i64>) =
            row(
                &db,
                "SELECT t.cache_status, c.status, c.cost_uc, c.saved_uc
                 FROM traces t JOIN costs c ON c.trace_id = t.id WHERE t.id = ?1",
                [id],
            );
        assert_eq!(cache_status, "semantic_hit");
        assert_eq!((cost_status.as_str(), cost_uc), ("no_charge", 0));
        assert_eq!(saved_uc, Some(COST_UC));
    }
    // The embeddings calls: tollgate's own traces, with usage and a cost.
    let own: Vec<(Option<String>, String, i64, i64, i64)> = rows(
        &db,
        "SELECT t.client_key_id, t.model_resolved, t.status, t.input_tokens, c.cost_uc
         FROM traces t JOIN costs c ON c.trace_id = t.id
         WHERE t.endpoint = '/v1/embeddings' ORDER BY t.started_at_ms",
    );
    assert_eq!(own.len(), 3, "{own:?}");
    for (key, model, status, tokens, cost) in own {
        assert_eq!(key, None);
        assert_eq!(model, "text-embedding-3-small");
        assert_eq!(status, 200);
        assert!(tokens > 0 && cost > 0, "traced with usage and a cost");
    }
    // The audit chain covers the semantic hits and tollgate's own calls.
    let verified = tollgate::audit::verify_database(
        &db,
        tollgate::audit::encoding::ChainKey::Unkeyed,
        Vec::new(),
    )
    .unwrap();
    assert_eq!(verified.entries, 6);
    // The entry's vector is stored with it.
    let dims: Vec<i64> = column(&db, "SELECT dims FROM semantic_entries");
    assert_eq!(dims, [256]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_prompt_misses() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    expect(
        &gw,
        CHAT,
        &ask("s", "What is the capital of France?"),
        None,
        "miss",
    )
    .await;
    expect(
        &gw,
        CHAT,
        &ask("s", "How do I bake sourdough bread?"),
        None,
        "miss",
    )
    .await;
    expect(
        &gw,
        CHAT,
        &ask("s", "What is the capital of Spain?"),
        None,
        "miss",
    )
    .await;
    assert_eq!(upstream_calls(&gw, CHAT), 3);
}

/// Many entries in one partition, then the exact same texts in every other
/// partition: not one hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hit_ever_crosses_a_partition() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("[auth]\nrequire_client_key = true\n{}", config("")),
    )
    .await;
    let key = |name: &'static str| {
        let gw = &gw;
        async move {
            let (status, k) =
                admin_call(gw, Method::POST, "/keys", Some(json!({"name": name}))).await;
            assert_eq!(status, 201, "{k}");
            k["key"].as_str().unwrap().to_string()
        }
    };
    let (a, b) = (key("a").await, key("b").await);
    let texts: Vec<String> = [
        "mars", "venus", "jupiter", "saturn", "neptune", "uranus", "mercury", "pluto", "ceres",
        "europa", "titan", "ganymede",
    ]
    .iter()
    .map(|p| format!("Tell me one surprising fact about {p}."))
    .collect();
    for t in &texts {
        expect(&gw, CHAT, &ask("sys", t), Some(&a), "miss").await;
    }
    // Each is there for its own partition.
    for t in &texts {
        expect(&gw, CHAT, &ask("sys", t), Some(&a), "hit").await;
    }
    let paraphrase = |t: &str| t.to_uppercase() + "?";
    expect(
        &gw,
        CHAT,
        &ask("sys", &paraphrase(&texts[3])),
        Some(&a),
        "semantic-hit",
    )
    .await;

    let calls = upstream_calls(&gw, CHAT);
    let mut other_calls = 0;
    for t in &texts {
        let mut variants: Vec<(&str, Value, &str)> = Vec::new();
        let mut model = ask("sys", t);
        model["model"] = json!("openai/gpt-4o");
        variants.push((CHAT, model, &a));
        variants.push((CHAT, ask("another system prompt", t), &a));
        let mut temperature = ask("sys", t);
        temperature["temperature"] = json!(0.3);
        variants.push((CHAT, temperature, &a));
        let mut developer = ask("sys", t);
        developer["messages"][0]["role"] = json!("developer");
        variants.push((CHAT, developer, &a));
        variants.push((CHAT, ask("sys", t), &b));
        let mut messages = ask("sys", t);
        messages["model"] = json!("claude-haiku-4-5");
        messages["max_tokens"] = json!(64);
        messages["system"] = json!("sys");
        messages["messages"] = json!([{"role": "user", "content": t}]);
        variants.push((MESSAGES, messages, &a));
        for (path, body, k) in variants {
            // The exact text a stored entry has: a miss all the same.
            expect(&gw, path, &body, Some(k), "miss").await;
            other_calls += 1;
        }
    }
    assert_eq!(
        upstream_calls(&gw, CHAT) + upstream_calls(&gw, MESSAGES),
        calls + other_calls,
        "every request in another partition went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_a_restart() {
    let mut gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let first = expect(
        &gw,
        CHAT,
        &ask("s", "Name three prime numbers"),
        None,
        "miss",
    )
    .await;
    gw.restart(&config("")).await;
    let after = expect(
        &gw,
        CHAT,
        &ask("s", "name three PRIME numbers!"),
        None,
        "semantic-hit",
    )
    .await;
    assert_eq!(after.body, first.body);
    assert_eq!(upstream_calls(&gw, CHAT), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default() {
    let gw = Gateway::start_with(
        MockConfig::default(),
        &format!("[modules.cache]\nenabled = true\n{PRICES}"),
    )
    .await;
    expect(
        &gw,
        CHAT,
        &ask("s", "What is the capital of France?"),
        None,
        "miss",
    )
    .await;
    expect(
        &gw,
        CHAT,
        &ask("s", "what is the capital of france"),
        None,
        "miss",
    )
    .await;
    assert_eq!(upstream_calls(&gw, EMBEDDINGS), 0, "nothing embedded");
    assert_eq!(upstream_calls(&gw, CHAT), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_failure_is_a_miss_not_an_error() {
    let gw = Gateway::start_with(MockConfig::default(), &config("model = \"nosuch-model\"")).await;
    expect(
        &gw,
        CHAT,
        &ask("s", "What is the capital of France?"),
        None,
        "miss",
    )
    .await;
    expect(
        &gw,
        CHAT,
        &ask("s", "what is the capital of france"),
        None,
        "miss",
    )
    .await;
    assert_eq!(upstream_calls(&gw, CHAT), 2);
    assert_eq!(
        metric(&gw, "tollgate_semantic_cache_embed_failures_total").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_answer_is_not_served_semantically() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    expect(
        &gw,
        CHAT,
        &ask("s", "Name three prime numbers"),
        None,
        "miss",
    )
    .await;
    gw.wait_traces(2).await;
    let (status, body) = admin_call(&gw, Method::DELETE, "/cache", None).await;
    assert_eq!(status, 200, "{body}");
    let db = gw.db();
    assert_eq!(
        value::<i64, _>(&db, "SELECT count(*) FROM semantic_entries", []),
        0,
        "the vector went with its answer"
    );
    expect(
        &gw,
        CHAT,
        &ask("s", "name three PRIME numbers!"),
        None,
        "miss",
    )
    .await;
    assert_eq!(upstream_calls(&gw, CHAT), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_hits_on_the_messages_endpoint_too() {
    let gw = Gateway::start_with(MockConfig::default(), &config("")).await;
    let msg = |text: &str, stream: bool| {
        json!({"model": "claude-haiku-4-5", "max_tokens": 64, "system": "Be brief.",
               "stream": stream,
               "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]})
    };
    let first = expect(
        &gw,
        MESSAGES,
        &msg("Why is the sky blue?", false),
        None,
        "miss",
    )
    .await;
    let para = expect(
        &gw,
        MESSAGES,
        &msg("why is the SKY blue", false),
        None,
        "semantic-hit",
    )
    .await;
    assert_eq!(para.body, first.body);
    // One word more ("it"): below 0.95 with the mock's embeddings, a miss.
    let s = expect(
        &gw,
        MESSAGES,
        &msg("the sky: why is it blue", true),
        None,
        "miss",
    )
    .await;
    assert_eq!(s.content_type.as_deref(), Some("text/event-stream"));
    let s = expect(
        &gw,
        MESSAGES,
        &msg("blue, why is the sky", true),
        None,
        "semantic-hit",
    )
    .await;
    let text = String::from_utf8_lossy(&s.body);
    assert!(text.contains("event: message_stop"), "{text}");
    assert_eq!(upstream_calls(&gw, MESSAGES), 2);
}
