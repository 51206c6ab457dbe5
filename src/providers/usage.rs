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
    fn error_bodies_give_their_type_only() {
        let body = json!({"error":{"message":"Incorrect API key provided: sk-abc***","type":"invalid_request_error","code":"invalid_api_key"}});
        let f = from_body(Protocol::Openai, &body);
        assert_eq!(f.error_type.as_deref(), Some("invalid_request_error"));
        assert!(f.usage.is_empty());
    }
}
