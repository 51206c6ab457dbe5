//! Reading token usage and finish reasons out of provider JSON.
//!
//! Counts are normalised so that `input_tokens` is every input token and
//! `output_tokens` every output token on both protocols. OpenAI reports that
//! way already (`prompt_tokens` includes `cached_tokens`, `audio_tokens` and
//! any `image_tokens`; `completion_tokens` includes `reasoning_tokens` and
//! `audio_tokens`). Anthropic reports `input_tokens` *without* its cache
//! reads and writes, so those are added back here.
//!
//! The billed components beyond plain tokens, and where each is read:
//!
//! * **Cache writes by TTL** (Anthropic): `usage.cache_creation` holds
//!   `ephemeral_5m_input_tokens` and `ephemeral_1h_input_tokens`;
//!   `cache_creation_input_tokens` is their total. The 1-hour part becomes
//!   `cache_write_1h_tokens`; without the breakdown it is `None` (every
//!   write is a 5-minute one, as before 1-hour caching existed). When total
//!   and breakdown disagree, the total is the larger of the two (a count is
//!   never lowered) and the 1-hour part stays as reported, so any
//!   unexplained writes are priced as 5-minute ones. A breakdown without a
//!   total gives the total.
//! * **Audio and image tokens** (OpenAI): `prompt_tokens_details.audio_tokens`,
//!   `completion_tokens_details.audio_tokens` and, where reported,
//!   `prompt_tokens_details.image_tokens` (chat completions do not document
//!   it: images are billed as input tokens there, so it is usually `None`).
//!   A reported `0` stays `Some(0)`.
//! * **Web search calls**: Anthropic reports them in
//!   `usage.server_tool_use.web_search_requests`. OpenAI chat completions
//!   report no count: a search model (`gpt-4o-search-preview`,
//!   `gpt-4o-mini-search-preview`, `gpt-5-search-api`, …; see
//!   [`is_openai_search_model`]) always searches the web once before it
//!   answers, and that call is billed per request, so a completed chat
//!   completion from one records one call. Other models on chat completions
//!   cannot search (`web_search_options` is refused for them).
//! * **Service tier**: Anthropic puts it in `usage.service_tier`
//!   (`standard`/`priority`/`batch`); OpenAI on the completion object and on
//!   every stream chunk, outside `usage` (the tier actually served, which can
//!   differ from the one requested).
//!
//! The envelope facts (tier, search calls) are attached only to a usage that
//! reports tokens: a tier alone would otherwise read as a request that used
//! nothing, and be priced at zero.

use crate::config::Protocol;
use crate::trace::{ServiceTier, Usage};
use serde_json::Value;

fn int(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_i64()
}

/// Usage from an OpenAI `usage` object (chat, stream usage chunk,
/// embeddings). The envelope facts are added by [`with_openai_envelope`].
pub fn openai(usage: &Value) -> Usage {
    Usage {
        input_tokens: int(usage, &["prompt_tokens"]),
        output_tokens: int(usage, &["completion_tokens"]),
        cached_input_tokens: int(usage, &["prompt_tokens_details", "cached_tokens"]),
        cache_creation_input_tokens: None,
        reasoning_tokens: int(usage, &["completion_tokens_details", "reasoning_tokens"]),
        input_audio_tokens: int(usage, &["prompt_tokens_details", "audio_tokens"]),
        output_audio_tokens: int(usage, &["completion_tokens_details", "audio_tokens"]),
        input_image_tokens: int(usage, &["prompt_tokens_details", "image_tokens"]),
        ..Usage::default()
    }
}

/// Whether an OpenAI model is a chat-completions search model, which
/// searches the web once for every request.
pub fn is_openai_search_model(model: &str) -> bool {
    model.contains("-search-") || model.ends_with("-search")
}

/// Adds what an OpenAI response says outside its `usage` object: the
/// `service_tier` it was served on and, for a search model's chat
/// completion, its one web search call.
pub fn with_openai_envelope(mut usage: Usage, model: Option<&str>, tier: Option<&str>) -> Usage {
    if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
        return usage;
    }
    if usage.service_tier.is_none() {
        usage.service_tier = tier.and_then(ServiceTier::parse);
    }
    // Embeddings have no completion tokens and never search.
    if usage.output_tokens.is_some()
        && usage.web_search_calls.is_none()
        && model.is_some_and(is_openai_search_model)
    {
        usage.web_search_calls = Some(1);
    }
    usage
}

/// Usage from an Anthropic `usage` object (a message, `message_start`'s
/// message, or a `message_delta`).
pub fn anthropic(usage: &Value) -> Usage {
    let uncached = int(usage, &["input_tokens"]);
    let read = int(usage, &["cache_read_input_tokens"]);
    let (write, write_1h) = anthropic_cache_writes(usage);
    let input = uncached.map(|u| u + read.unwrap_or(0) + write.unwrap_or(0));
    Usage {
        input_tokens: input,
        output_tokens: int(usage, &["output_tokens"]),
        cached_input_tokens: read,
        cache_creation_input_tokens: write,
        reasoning_tokens: None,
        cache_write_1h_tokens: write_1h,
        web_search_calls: int(usage, &["server_tool_use", "web_search_requests"]),
        service_tier: usage
            .get("service_tier")
            .and_then(Value::as_str)
            .and_then(ServiceTier::parse),
        ..Usage::default()
    }
}

/// (all cache writes, the 1-hour ones) from an Anthropic usage object.
fn anthropic_cache_writes(usage: &Value) -> (Option<i64>, Option<i64>) {
    let total = int(usage, &["cache_creation_input_tokens"]);
    let five_min = int(usage, &["cache_creation", "ephemeral_5m_input_tokens"]);
    let one_hour = int(usage, &["cache_creation", "ephemeral_1h_input_tokens"]);
    let parts = match (five_min, one_hour) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    let total = match (total, parts) {
        (Some(t), Some(p)) => Some(t.max(p)),
        (t, p) => t.or(p),
    };
    (total, one_hour)
}

/// Merges a later Anthropic report into an earlier one: `message_delta`
/// carries cumulative counts and may omit the input side (see
/// [`anthropic_delta`]) and the cache-write breakdown, in which case the
/// earlier 1-hour count stands, never above the cache-write total.
pub fn merge(earlier: Usage, later: Usage) -> Usage {
    let cache_creation_input_tokens = later
        .cache_creation_input_tokens
        .or(earlier.cache_creation_input_tokens);
    let cache_write_1h_tokens = later
        .cache_write_1h_tokens
        .or(earlier.cache_write_1h_tokens)
        .map(|h| match cache_creation_input_tokens {
            Some(total) => h.min(total),
            None => h,
        });
    Usage {
        input_tokens: later.input_tokens.or(earlier.input_tokens),
        output_tokens: later.output_tokens.or(earlier.output_tokens),
        cached_input_tokens: later.cached_input_tokens.or(earlier.cached_input_tokens),
        cache_creation_input_tokens,
        reasoning_tokens: later.reasoning_tokens.or(earlier.reasoning_tokens),
        cache_write_1h_tokens,
        input_audio_tokens: later.input_audio_tokens.or(earlier.input_audio_tokens),
        output_audio_tokens: later.output_audio_tokens.or(earlier.output_audio_tokens),
        input_image_tokens: later.input_image_tokens.or(earlier.input_image_tokens),
        web_search_calls: later.web_search_calls.or(earlier.web_search_calls),
        service_tier: later.service_tier.or(earlier.service_tier),
    }
}

/// Usage from a `message_delta`'s `usage`, ready to [`merge`]. A delta
/// without `input_tokens` cannot restate the input side: its cache counts
/// would no longer add up to the earlier input total, so they are dropped
/// and `message_start`'s stand. Output, server tool and tier counts are
/// kept either way.
pub fn anthropic_delta(usage: &Value) -> Usage {
    let later = anthropic(usage);
    if later.input_tokens.is_some() {
        return later;
    }
    Usage {
        cached_input_tokens: None,
        cache_creation_input_tokens: None,
        cache_write_1h_tokens: None,
        ..later
    }
}

/// What a complete (non-stream) response body says.
#[derive(Debug, Default, PartialEq)]
pub struct BodyFacts {
    pub usage: Usage,
    pub finish_reason: Option<String>,
    /// For error bodies: the provider's error type, never its message (which
    /// can echo part of a credential).
    pub error_type: Option<String>,
}

#[derive(serde::Deserialize)]
struct BodyView<'a> {
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceView<'a>>>,
    #[serde(default, borrow)]
    stop_reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    error: Option<Value>,
    /// OpenAI's envelope: the served tier and the model (search models).
    #[serde(default, borrow)]
    service_tier: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

/// What a complete body says, read without building a tree of the whole
/// body (the answer's text is skipped, not copied); falls back to a full
/// parse for shapes the typed view does not expect.
pub fn from_body_bytes(protocol: Protocol, body: &[u8]) -> Option<BodyFacts> {
    let Ok(view) = serde_json::from_slice::<BodyView<'_>>(body) else {
        return serde_json::from_slice::<Value>(body)
            .ok()
            .map(|v| from_body(protocol, &v));
    };
    let usage = view.usage.as_ref().map(|u| match protocol {
        Protocol::Openai => with_openai_envelope(
            openai(u),
            view.model.as_deref(),
            view.service_tier.as_deref(),
        ),
        Protocol::Anthropic => anthropic(u),
    });
    let finish_reason = match protocol {
        Protocol::Openai => view
            .choices
            .and_then(|c| c.into_iter().next())
            .and_then(|c| c.finish_reason),
        Protocol::Anthropic => view.stop_reason,
    };
    let error_type = view.error.as_ref().and_then(|e| {
        e.get("type")
            .or_else(|| e.get("code"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    Some(BodyFacts {
        usage: usage.unwrap_or_default(),
        finish_reason: finish_reason.map(|r| r.into_owned()),
        error_type,
    })
}

pub fn from_body(protocol: Protocol, body: &Value) -> BodyFacts {
    let usage = body.get("usage").map(|u| match protocol {
        Protocol::Openai => with_openai_envelope(
            openai(u),
            body.get("model").and_then(Value::as_str),
            body.get("service_tier").and_then(Value::as_str),
        ),
        Protocol::Anthropic => anthropic(u),
    });
    let finish_reason = match protocol {
        Protocol::Openai => body
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str),
        Protocol::Anthropic => body.get("stop_reason").and_then(Value::as_str),
    };
    let error_type = body
        .pointer("/error/type")
        .or_else(|| body.pointer("/error/code"))
        .and_then(Value::as_str);
    BodyFacts {
        usage: usage.unwrap_or_default(),
        finish_reason: finish_reason.map(str::to_string),
        error_type: error_type.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_chat_usage_with_cache_and_reasoning() {
        let body = json!({"choices":[{"finish_reason":"length"}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
            "prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":256,"audio_tokens":0}}});
        let f = from_body(Protocol::Openai, &body);
        assert_eq!(f.usage.input_tokens, Some(2006));
        assert_eq!(f.usage.output_tokens, Some(300));
        assert_eq!(f.usage.cached_input_tokens, Some(1920));
        assert_eq!(f.usage.reasoning_tokens, Some(256));
        assert_eq!(f.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn anthropic_input_includes_cache_reads_and_writes() {
        let body = json!({"stop_reason":"end_turn","usage":{"input_tokens":21,"cache_creation_input_tokens":188086,"cache_read_input_tokens":4,"output_tokens":393}});
        let f = from_body(Protocol::Anthropic, &body);
        assert_eq!(f.usage.input_tokens, Some(21 + 188086 + 4));
        assert_eq!(f.usage.cached_input_tokens, Some(4));
        assert_eq!(f.usage.cache_creation_input_tokens, Some(188086));
        assert_eq!(f.usage.output_tokens, Some(393));
        assert_eq!(f.finish_reason.as_deref(), Some("end_turn"));
    }

    #[test]
    fn the_typed_view_agrees_with_the_full_parse() {
        let bodies = [
            json!({"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\""},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}),
            json!({"type":"message","content":[{"type":"text","text":"x"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"cache_read_input_tokens":4,"output_tokens":1}}),
            json!({"error":{"message":"m","type":"rate_limit_error","code":null}}),
            json!({"error":"plain string error"}),
            json!({"choices":"unexpected","usage":{"prompt_tokens":1}}),
            json!({"model":"gpt-4o-search-preview","service_tier":"flex","choices":[{"finish_reason":"stop"}],
                "usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"audio_tokens":3,"image_tokens":1},"completion_tokens_details":{"audio_tokens":1}}}),
            json!({"model":"gpt-\"4o\"-search-x","service_tier":"priority","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}),
            json!({"model":7,"service_tier":3,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}),
            json!({"model":"claude-x","type":"message","stop_reason":"end_turn","usage":{"input_tokens":1,"cache_creation_input_tokens":9,
                "cache_creation":{"ephemeral_5m_input_tokens":4,"ephemeral_1h_input_tokens":5},"output_tokens":1,
                "server_tool_use":{"web_search_requests":2},"service_tier":"standard"}}),
        ];
        for b in bodies {
            for p in [Protocol::Openai, Protocol::Anthropic] {
                let bytes = serde_json::to_vec(&b).unwrap();
                assert_eq!(from_body_bytes(p, &bytes), Some(from_body(p, &b)), "{b}");
            }
        }
        assert_eq!(from_body_bytes(Protocol::Openai, b"not json"), None);
    }

    #[test]
    fn openai_audio_tokens_and_served_tier() {
        // gpt-4o-audio-preview, as the API answers it (the details carry
        // undocumented text/image counts too).
        let body = json!({"id":"chatcmpl-A","object":"chat.completion","created":1,"model":"gpt-4o-audio-preview-2024-12-17",
            "choices":[{"index":0,"message":{"role":"assistant","content":null,"audio":{"id":"audio_1","data":"UklG","expires_at":1,"transcript":"Hi"}},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":117,"completion_tokens":103,"total_tokens":220,
                "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":100,"text_tokens":17,"image_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":78,"text_tokens":25,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},
            "service_tier":"default","system_fingerprint":"fp_1"});
        let f = from_body(Protocol::Openai, &body);
        assert_eq!(f.usage.input_tokens, Some(117));
        assert_eq!(f.usage.output_tokens, Some(103));
        assert_eq!(f.usage.input_audio_tokens, Some(100));
        assert_eq!(f.usage.output_audio_tokens, Some(78));
        assert_eq!(f.usage.input_image_tokens, Some(0));
        assert_eq!(f.usage.service_tier, Some(ServiceTier::Default));
        assert_eq!(f.usage.web_search_calls, None);
        assert_eq!(f.usage.cache_write_1h_tokens, None);
    }

    #[test]
    fn openai_documented_details_leave_image_tokens_unreported() {
        let body = json!({"object":"chat.completion","model":"o4-mini","choices":[{"finish_reason":"stop"}],
            "usage":{"prompt_tokens":1200,"completion_tokens":40,"total_tokens":1240,
                "prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}},
            "service_tier":"flex"});
        let f = from_body(Protocol::Openai, &body);
        assert_eq!(f.usage.input_audio_tokens, Some(0));
        assert_eq!(f.usage.output_audio_tokens, Some(0));
        assert_eq!(f.usage.input_image_tokens, None);
        assert_eq!(f.usage.service_tier, Some(ServiceTier::Flex));
    }

    #[test]
    fn openai_search_models_record_one_web_search_per_completion() {
        for model in [
            "gpt-4o-search-preview-2025-03-11",
            "gpt-4o-mini-search-preview",
            "gpt-5-search-api",
        ] {
            let body = json!({"object":"chat.completion","model":model,
                "choices":[{"index":0,"message":{"role":"assistant","content":"x","annotations":[{"type":"url_citation","url_citation":{"url":"https://e.example/","title":"e","start_index":0,"end_index":1}}]},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":9,"completion_tokens":40,"total_tokens":49}});
            let f = from_body(Protocol::Openai, &body);
            assert_eq!(f.usage.web_search_calls, Some(1), "{model}");
        }
        for model in ["gpt-4o-mini", "gpt-5", "research-model"] {
            let body = json!({"model":model,"choices":[{"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4}});
            assert_eq!(
                from_body(Protocol::Openai, &body).usage.web_search_calls,
                None,
                "{model}"
            );
        }
        // No usage, no call: an error or a cut-off answer bills nothing here.
        let body = json!({"model":"gpt-4o-search-preview","service_tier":"default","choices":[]});
        assert!(from_body(Protocol::Openai, &body).usage.is_empty());
    }

    #[test]
    fn embeddings_usage_is_input_tokens_only() {
        let body = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}],
            "model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}});
        for f in [
            from_body(Protocol::Openai, &body),
            from_body_bytes(Protocol::Openai, &serde_json::to_vec(&body).unwrap()).unwrap(),
        ] {
            assert_eq!(
                f.usage,
                Usage {
                    input_tokens: Some(8),
                    ..Usage::default()
                }
            );
        }
    }

    #[test]
    fn a_tier_without_tokens_leaves_usage_empty() {
        assert!(
            with_openai_envelope(
                Usage::default(),
                Some("gpt-4o-search-preview"),
                Some("flex")
            )
            .is_empty()
        );
    }

    #[test]
    fn anthropic_cache_writes_by_ttl_web_search_and_tier() {
        let body = json!({"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
            "content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","stop_sequence":null,
            "usage":{"input_tokens":12,"cache_creation_input_tokens":3000,"cache_read_input_tokens":500,
                "cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000},
                "output_tokens":300,"server_tool_use":{"web_search_requests":3,"web_fetch_requests":1},
                "service_tier":"priority"}});
        let f = from_body(Protocol::Anthropic, &body);
        assert_eq!(f.usage.input_tokens, Some(12 + 3000 + 500));
        assert_eq!(f.usage.cache_creation_input_tokens, Some(3000));
        assert_eq!(f.usage.cache_write_1h_tokens, Some(2000));
        assert_eq!(f.usage.cached_input_tokens, Some(500));
        assert_eq!(f.usage.web_search_calls, Some(3));
        assert_eq!(f.usage.service_tier, Some(ServiceTier::Priority));
    }

    #[test]
    fn anthropic_standard_tier_and_null_members() {
        let u = anthropic(
            &json!({"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,
            "output_tokens":2,"server_tool_use":null,"service_tier":"standard"}),
        );
        assert_eq!(u.service_tier, Some(ServiceTier::Default));
        assert_eq!(u.web_search_calls, None);
        assert_eq!(u.cache_write_1h_tokens, None);
        let u = anthropic(&json!({"input_tokens":5,"output_tokens":2,"service_tier":null}));
        assert_eq!(u.service_tier, None);
        let u = anthropic(&json!({"input_tokens":5,"output_tokens":2,"service_tier":"batch"}));
        assert_eq!(u.service_tier, Some(ServiceTier::Batch));
        let u = anthropic(&json!({"input_tokens":5,"output_tokens":2,"service_tier":"turbo"}));
        assert_eq!(u.service_tier, Some(ServiceTier::Other));
    }

    #[test]
    fn anthropic_cache_write_total_and_breakdown_are_reconciled() {
        let writes = |u: Value| {
            let u = anthropic(&u);
            (
                u.input_tokens,
                u.cache_creation_input_tokens,
                u.cache_write_1h_tokens,
            )
        };
        // Only the total: every write is a 5-minute one.
        assert_eq!(
            writes(json!({"input_tokens":1,"cache_creation_input_tokens":40})),
            (Some(41), Some(40), None)
        );
        // Only the breakdown: the total is derived.
        assert_eq!(
            writes(
                json!({"input_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":30}})
            ),
            (Some(41), Some(40), Some(30))
        );
        // A total below its parts is raised to them, never lowering a count.
        assert_eq!(
            writes(
                json!({"input_tokens":1,"cache_creation_input_tokens":20,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":30}})
            ),
            (Some(41), Some(40), Some(30))
        );
        // A total above its parts: the unexplained writes are 5-minute ones.
        assert_eq!(
            writes(
                json!({"input_tokens":1,"cache_creation_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":30}})
            ),
            (Some(51), Some(50), Some(30))
        );
    }

    #[test]
    fn a_delta_without_the_breakdown_keeps_the_earlier_1h_count() {
        let start = anthropic(
            &json!({"input_tokens":3,"cache_creation_input_tokens":1180,"cache_read_input_tokens":0,
            "cache_creation":{"ephemeral_5m_input_tokens":180,"ephemeral_1h_input_tokens":1000},"output_tokens":1,"service_tier":"standard"}),
        );
        // Current API: cumulative input side, no breakdown, server tools.
        let delta = anthropic_delta(
            &json!({"input_tokens":3,"cache_creation_input_tokens":1180,"cache_read_input_tokens":0,
            "output_tokens":205,"server_tool_use":{"web_search_requests":2}}),
        );
        let u = merge(start, delta);
        assert_eq!(u.input_tokens, Some(1183));
        assert_eq!(u.cache_creation_input_tokens, Some(1180));
        assert_eq!(u.cache_write_1h_tokens, Some(1000));
        assert_eq!(u.output_tokens, Some(205));
        assert_eq!(u.web_search_calls, Some(2));
        assert_eq!(u.service_tier, Some(ServiceTier::Default));
        // Older API: output only.
        let u = merge(start, anthropic_delta(&json!({"output_tokens":15})));
        assert_eq!(
            (
                u.input_tokens,
                u.cache_creation_input_tokens,
                u.cache_write_1h_tokens,
                u.output_tokens
            ),
            (Some(1183), Some(1180), Some(1000), Some(15))
        );
        // Cache counts without input_tokens cannot restate the input side.
        let u = merge(
            start,
            anthropic_delta(
                &json!({"cache_creation_input_tokens":7,"cache_creation":{"ephemeral_1h_input_tokens":7},"output_tokens":15}),
            ),
        );
        assert_eq!(
            (
                u.input_tokens,
                u.cache_creation_input_tokens,
                u.cache_write_1h_tokens
            ),
            (Some(1183), Some(1180), Some(1000))
        );
        // A restated total below the earlier 1-hour count caps it.
        let u = merge(
            start,
            anthropic_delta(
                &json!({"input_tokens":3,"cache_creation_input_tokens":600,"output_tokens":15}),
            ),
        );
        assert_eq!(
            (
                u.input_tokens,
                u.cache_creation_input_tokens,
                u.cache_write_1h_tokens
            ),
            (Some(603), Some(600), Some(600))
        );
    }

    #[test]
    fn error_bodies_give_their_type_only() {
        let body = json!({"error":{"message":"Incorrect API key provided: sk-abc***","type":"invalid_request_error","code":"invalid_api_key"}});
        let f = from_body(Protocol::Openai, &body);
        assert_eq!(f.error_type.as_deref(), Some("invalid_request_error"));
        assert!(f.usage.is_empty());
    }
}
