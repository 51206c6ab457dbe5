//! Every billed usage component the providers report, sent through tollgate
//! from the mock upstream (both protocols, streamed and not), and the counts
//! recorded on the trace, and each one priced to the µ¢ at the built-in list
//! prices (or named as unpriced).

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

/// (1-hour cache writes, audio in, audio out, image in, web search calls,
/// served tier) of trace `id`.
type Components = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn components(gw: &Gateway, id: &str) -> Components {
    row(
        &gw.db(),
        "SELECT cache_write_1h_tokens, input_audio_tokens, output_audio_tokens,
                input_image_tokens, web_search_calls, service_tier
         FROM traces WHERE id = ?1",
        [id],
    )
}

/// (status, cost in µ¢, unpriced components) of trace `id`'s cost row.
fn cost(gw: &Gateway, id: &str) -> (String, Option<i64>, Option<String>) {
    row(
        &gw.db(),
        "SELECT status, cost_uc, unpriced FROM costs WHERE trace_id = ?1",
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
        assert_eq!(
            components(&gw, id),
            (Some(300), None, None, None, None, Some("default".into())),
            "{id}"
        );
        // claude-haiku-4-5 at its list prices, in µ¢ per token: input 100,
        // cache read 10, 5-minute write 125, 1-hour write 200, output 500.
        // 10 × 100 + 1,000 × 10 + 200 × 125 + 300 × 200 + 9 × 500.
        assert_eq!(
            cost(&gw, id),
            ("priced".into(), Some(100_500), None),
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
        assert_eq!(
            components(&gw, id),
            (Some(0), None, None, None, Some(3), Some("priority".into()))
        );
        // claude-haiku-4-5 has no price for the priority tier: not priced
        // as the default tier.
        assert_eq!(
            cost(&gw, id),
            ("unknown_price".into(), None, Some("service_tier".into()))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_web_search_calls_are_priced_per_call() {
    let mut gw = Gateway::start().await;
    let mut ids = Vec::new();
    for stream in [false, true] {
        let (id, _) = send(
            &gw,
            "/v1/messages",
            &message("claude-haiku-4-5", stream),
            "prompt=40,completion=20,web_search=3",
        )
        .await;
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        // 40 × 100 + 20 × 500 µ¢, plus 3 searches at $10 per 1,000
        // (1,000,000 µ¢ each).
        assert_eq!(cost(&gw, id), ("priced".into(), Some(3_014_000), None));
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
        assert_eq!(
            components(&gw, id),
            (
                None,
                Some(30),
                Some(12),
                Some(5),
                None,
                Some("default".into())
            )
        );
        // gpt-4o-mini has no audio rates: the text is priced, the audio
        // named. 111 × 15 + 5 × 15 (images at the input rate) + 28 × 60 µ¢.
        assert_eq!(
            cost(&gw, id),
            (
                "partial".into(),
                Some(3_420),
                Some("input_audio,output_audio".into())
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_audio_tokens_are_priced_at_the_audio_rates() {
    let mut gw = Gateway::start().await;
    let usage = "prompt=146,completion=40,audio_in=30,audio_out=12,image=5";
    let mut ids = Vec::new();
    for stream in [false, true] {
        let model = "openai/gpt-4o-mini-audio-preview";
        let (id, _) = send(&gw, "/v1/chat/completions", &chat(model, stream), usage).await;
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        // µ¢ per token: text in 15, audio in 1,000, text out 60, audio out
        // 2,000. 111 × 15 + 5 × 15 + 30 × 1,000 + 28 × 60 + 12 × 2,000.
        assert_eq!(cost(&gw, id), ("priced".into(), Some(57_420), None));
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
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(tokens(&gw, id), (Some(20), Some(4), Some(0), None));
        let served = if i < 2 { "default" } else { "flex" };
        assert_eq!(components(&gw, id).5.as_deref(), Some(served));
        if served == "default" {
            // Asked for priority, served default: the base rates,
            // 20 × 15 + 4 × 60 µ¢.
            assert_eq!(cost(&gw, id), ("priced".into(), Some(540), None));
        } else {
            // gpt-4o-mini publishes no flex price: not priced as default.
            assert_eq!(
                cost(&gw, id),
                ("unknown_price".into(), None, Some("service_tier".into()))
            );
        }
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
        assert_eq!(components(&gw, id).4, Some(1));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_flex_tier_is_priced_at_flex_rates() {
    let mut gw = Gateway::start().await;
    let mut ids = Vec::new();
    for stream in [false, true] {
        let mut body = chat("openai/gpt-5", stream);
        body["service_tier"] = "flex".into();
        let (id, _) = send(
            &gw,
            "/v1/chat/completions",
            &body,
            "prompt=1000,cached=200,completion=100",
        )
        .await;
        ids.push(id);
    }
    gw.stop().await;
    for id in &ids {
        assert_eq!(components(&gw, id).5.as_deref(), Some("flex"));
        // gpt-5 on flex, µ¢ per token: input 62.5, cached 6.25, output 500.
        // 800 × 62.5 + 200 × 6.25 + 100 × 500.
        assert_eq!(cost(&gw, id), ("priced".into(), Some(101_250), None));
    }
}
