//! Every billed usage component the providers report, sent through tollgate
//! from the mock upstream (both protocols, streamed and not), and the counts
//! recorded on the trace.

mod common;

use common::*;
use serde_json::Value;

/// Sends `body` to `path` with `x-mock-usage: usage`; returns the trace id
/// and the body the client got.
async fn send(gw: &Gateway, path: &str, body: &Value, usage: &str) -> (String, String) {
    let resp = client()
        .post(gw.url(path))
        .header("anthropic-version", "2023-06-01")
        .header("x-mock-usage", usage)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    (id, resp.text().await.unwrap())
}

type Tokens = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// (input, output, cached input, cache writes) of trace `id`.
fn tokens(gw: &Gateway, id: &str) -> Tokens {
    row(
        &gw.db(),
        "SELECT input_tokens, output_tokens, cached_input_tokens, cache_creation_input_tokens
         FROM traces WHERE id = ?1",
        [id],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_1h_cache_writes_are_cache_writes_streamed_and_not() {
    let mut gw = Gateway::start().await;
    let usage = "prompt=10,cached=1000,cache_write=200,cache_write_1h=300,completion=9";
    let mut ids = Vec::new();
    for (stream, extra) in [(false, ""), (true, ""), (true, ",delta_input=0")] {
        let (id, text) = send(
            &gw,
            "/v1/messages",
            &message("claude-haiku-4-5", stream),
            &format!("{usage}{extra}"),
        )
        .await;
        assert!(text.contains("\"ephemeral_1h_input_tokens\":300"), "{text}");
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        assert_eq!(
            tokens(&gw, id),
            (Some(10 + 1000 + 500), Some(9), Some(1000), Some(500)),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_web_search_and_served_tier_streamed_and_not() {
    let mut gw = Gateway::start().await;
    let mut ids = Vec::new();
    for stream in [false, true] {
        let (id, text) = send(
            &gw,
            "/v1/messages",
            &message("claude-haiku-4-5", stream),
            "prompt=40,completion=20,web_search=3,service_tier=priority",
        )
        .await;
        assert!(
            text.contains("\"server_tool_use\":{\"web_search_requests\":3}"),
            "{text}"
        );
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        assert_eq!(tokens(&gw, id), (Some(40), Some(20), Some(0), Some(0)));
        let finish: String = value(
            &gw.db(),
            "SELECT finish_reason FROM traces WHERE id = ?1",
            [id],
        );
        assert_eq!(finish, "end_turn");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_audio_and_image_tokens_are_part_of_input_and_output() {
    let mut gw = Gateway::start().await;
    let usage = "prompt=146,completion=40,audio_in=30,audio_out=12,image=5";
    let mut streamed_with_usage = chat("gpt-4o-mini", true);
    streamed_with_usage["stream_options"] = serde_json::json!({"include_usage": true});
    let mut ids = Vec::new();
    for (body, client_sees_usage) in [
        (chat("gpt-4o-mini", false), true),
        (chat("gpt-4o-mini", true), false),
        (streamed_with_usage, true),
    ] {
        let (id, text) = send(&gw, "/v1/chat/completions", &body, usage).await;
        if client_sees_usage {
            for part in [
                "\"audio_tokens\":30",
                "\"image_tokens\":5",
                "\"audio_tokens\":12",
            ] {
                assert!(text.contains(part), "{part} in {text}");
            }
        }
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        assert_eq!(tokens(&gw, id), (Some(146), Some(40), Some(0), None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_served_tier_reaches_the_client_when_tollgate_strips_usage() {
    let mut gw = Gateway::start().await;
    // Asked for priority, served on default; asked for flex, served flex.
    let mut ids = Vec::new();
    for (asked, header, served) in [
        (
            "priority",
            "prompt=20,completion=4,service_tier=default",
            "default",
        ),
        ("flex", "prompt=20,completion=4", "flex"),
    ] {
        for stream in [false, true] {
            let mut body = chat("gpt-4o-mini", stream);
            body["service_tier"] = asked.into();
            let (id, text) = send(&gw, "/v1/chat/completions", &body, header).await;
            assert!(
                text.contains(&format!("\"service_tier\":\"{served}\"")),
                "{text}"
            );
            if stream {
                assert!(!text.contains("usage"), "tollgate's usage request: {text}");
            }
            ids.push(id);
        }
    }
    assert_eq!(gw.mock.requests()[0].json()["service_tier"], "priority");
    gw.stop().await;
    for id in &ids {
        assert_eq!(tokens(&gw, id), (Some(20), Some(4), Some(0), None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_search_model_completion_streamed_and_not() {
    let mut gw = Gateway::start().await;
    let mut ids = Vec::new();
    for stream in [false, true] {
        let (id, _) = send(
            &gw,
            "/v1/chat/completions",
            &chat("openai/gpt-4o-search-preview", stream),
            "prompt=300,completion=50",
        )
        .await;
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        assert_eq!(tokens(&gw, id), (Some(300), Some(50), Some(0), None));
        let model: String = value(
            &gw.db(),
            "SELECT model_resolved FROM traces WHERE id = ?1",
            [id],
        );
        assert_eq!(model, "gpt-4o-search-preview");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_priced_per_input_token() {
    let mut gw = Gateway::start().await;
    let (id, _) = send(
        &gw,
        "/v1/embeddings",
        &serde_json::json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        "prompt=1234",
    )
    .await;
    gw.stop().await;
    assert_eq!(tokens(&gw, &id), (Some(1234), None, None, None));
    let (status, cost): (String, i64) = row(
        &gw.db(),
        "SELECT status, cost_uc FROM costs WHERE trace_id = ?1",
        [&id],
    );
    // text-embedding-3-small: $0.02 per 1M input tokens = 2 µ¢ a token.
    assert_eq!((status.as_str(), cost), ("priced", 1234 * 2));
}
