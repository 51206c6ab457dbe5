//! Reading token usage and finish reasons out of provider JSON.
//!
//! Counts are normalised so that `input_tokens` is every input token and
//! `output_tokens` every output token on both protocols. OpenAI reports that
//! way already (`prompt_tokens` includes `cached_tokens`; `completion_tokens`
//! includes `reasoning_tokens`). Anthropic reports `input_tokens` *without*
//! its cache reads and writes, so those are added back here.

use crate::config::Protocol;
use crate::trace::Usage;
use serde_json::Value;

fn int(v: &Value, path: &[&str]) -> Option<i64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_i64()
}

/// Usage from an OpenAI `usage` object (chat, stream usage chunk, embeddings).
pub fn openai(usage: &Value) -> Usage {
    Usage {
        input_tokens: int(usage, &["prompt_tokens"]),
        output_tokens: int(usage, &["completion_tokens"]),
        cached_input_tokens: int(usage, &["prompt_tokens_details", "cached_tokens"]),
        cache_creation_input_tokens: None,
        reasoning_tokens: int(usage, &["completion_tokens_details", "reasoning_tokens"]),
        ..Usage::default()
    }
}

/// Usage from an Anthropic `usage` object.
pub fn anthropic(usage: &Value) -> Usage {
    let uncached = int(usage, &["input_tokens"]);
    let read = int(usage, &["cache_read_input_tokens"]);
    let write = int(usage, &["cache_creation_input_tokens"]);
    let input = uncached.map(|u| u + read.unwrap_or(0) + write.unwrap_or(0));
    Usage {
        input_tokens: input,
        output_tokens: int(usage, &["output_tokens"]),
        cached_input_tokens: read,
        cache_creation_input_tokens: write,
        reasoning_tokens: None,
        ..Usage::default()
    }
}

/// Merges a later Anthropic report into an earlier one: `message_delta`
/// carries cumulative counts and may omit the input side.
pub fn merge(earlier: Usage, later: Usage) -> Usage {
    Usage {
        input_tokens: later.input_tokens.or(earlier.input_tokens),
        output_tokens: later.output_tokens.or(earlier.output_tokens),
        cached_input_tokens: later.cached_input_tokens.or(earlier.cached_input_tokens),
        cache_creation_input_tokens: later
            .cache_creation_input_tokens
            .or(earlier.cache_creation_input_tokens),
        reasoning_tokens: later.reasoning_tokens.or(earlier.reasoning_tokens),
        cache_write_1h_tokens: later
            .cache_write_1h_tokens
            .or(earlier.cache_write_1h_tokens),
        input_audio_tokens: later.input_audio_tokens.or(earlier.input_audio_tokens),
        output_audio_tokens: later.output_audio_tokens.or(earlier.output_audio_tokens),
        input_image_tokens: later.input_image_tokens.or(earlier.input_image_tokens),
        web_search_calls: later.web_search_calls.or(earlier.web_search_calls),
        service_tier: later.service_tier.or(earlier.service_tier),
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
        Protocol::Openai => openai(u),
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
        Protocol::Openai => openai(u),
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
    fn error_bodies_give_their_type_only() {
        let body = json!({"error":{"message":"Incorrect API key provided: sk-abc***","type":"invalid_request_error","code":"invalid_api_key"}});
        let f = from_body(Protocol::Openai, &body);
        assert_eq!(f.error_type.as_deref(), Some("invalid_request_error"));
        assert!(f.usage.is_empty());
    }
}
