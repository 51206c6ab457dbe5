//! Watching a response go by: learns usage, finish reason and errors from the
//! bytes in flight, and decides what the client gets.
//!
//! The client's bytes are the upstream's bytes, forwarded as they arrive —
//! with one exception: when tollgate itself asked an OpenAI stream for usage
//! (the client did not), the extra usage chunk and the `"usage":null` fields
//! that request adds are removed, so the client sees the stream it asked for.
//!
//! OpenAI puts the served `service_tier` (and the `model`, which tells a
//! search model) on every chunk, outside `usage`: they are found with a byte
//! search in the chunks until seen once, and joined to the usage at the end
//! ([`usage::with_openai_envelope`]).
//!
//! An event longer than the inspection cap is forwarded unchanged as it
//! arrives but not read; the usage of such a stream is then unknown
//! ([`Observed::usage_unreadable`]).

use super::sse::{self, Piece, SseSplitter};
use super::usage::{self, BodyFacts};
use crate::config::Protocol;
use crate::trace::Usage;
use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde_json::Value;

/// Non-stream bodies up to this size are parsed whole; beyond it only the
/// tail is kept to find the usage object, which providers put last.
const FULL_PARSE_LIMIT: usize = 8 * 1024 * 1024;
const TAIL_KEEP: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Observed {
    pub usage: Usage,
    pub finish_reason: Option<String>,
    /// The provider's error type, from an error body or an error event.
    pub error_type: Option<String>,
    /// The stream ended with its terminator (`[DONE]`, `message_stop`).
    pub stream_complete: bool,
    /// An event was too large to inspect, so usage may be missing from what
    /// was read.
    pub usage_unreadable: bool,
}

pub enum Watch {
    Json(JsonWatch),
    OpenAiStream(OpenAiStream),
    AnthropicStream(AnthropicStream),
}

impl Watch {
    /// `max_event_bytes`: the most of one stream event held for inspection.
    pub fn new(
        protocol: Protocol,
        event_stream: bool,
        strip_injected_usage: bool,
        max_event_bytes: usize,
    ) -> Watch {
        match (event_stream, protocol) {
            (false, _) => Watch::Json(JsonWatch {
                protocol,
                buf: BytesMut::new(),
                truncated: false,
                head_model: None,
            }),
            (true, Protocol::Openai) => Watch::OpenAiStream(OpenAiStream {
                splitter: SseSplitter::new(max_event_bytes),
                strip: strip_injected_usage,
                events: Vec::new(),
                seen: Observed::default(),
                envelope: OpenAiEnvelope::default(),
            }),
            (true, Protocol::Anthropic) => Watch::AnthropicStream(AnthropicStream {
                splitter: SseSplitter::new(max_event_bytes),
                events: Vec::new(),
                seen: Observed::default(),
            }),
        }
    }

    /// Takes one upstream chunk; appends what the client should get to `out`.
    pub fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        match self {
            Watch::Json(w) => {
                w.observe(&chunk);
                out.push(chunk);
            }
            Watch::OpenAiStream(w) => w.feed(chunk, out),
            Watch::AnthropicStream(w) => {
                w.observe(&chunk);
                out.push(chunk);
            }
        }
    }

    /// The upstream body ended; flushes anything held back.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Observed {
        match self {
            Watch::Json(w) => w.finish(),
            Watch::OpenAiStream(w) => {
                let rest = w.splitter.take_rest();
                if !rest.is_empty() && w.strip {
                    out.push(rest);
                }
                let mut seen = std::mem::take(&mut w.seen);
                seen.usage = usage::with_openai_envelope(
                    seen.usage,
                    w.envelope.model.as_deref(),
                    w.envelope.service_tier.as_deref(),
                );
                seen
            }
            Watch::AnthropicStream(w) => std::mem::take(&mut w.seen),
        }
    }

    /// The stream's terminator (`[DONE]`, `message_stop`) has gone by.
    pub fn saw_terminator(&self) -> bool {
        match self {
            Watch::Json(_) => false,
            Watch::OpenAiStream(w) => w.seen.stream_complete,
            Watch::AnthropicStream(w) => w.seen.stream_complete,
        }
    }

    pub fn is_event_stream(&self) -> bool {
        !matches!(self, Watch::Json(_))
    }
}

pub struct JsonWatch {
    protocol: Protocol,
    buf: BytesMut,
    truncated: bool,
    /// An OpenAI body's `model`, read before its head is dropped.
    head_model: Option<String>,
}

impl JsonWatch {
    fn observe(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > FULL_PARSE_LIMIT {
            if !self.truncated && self.protocol == Protocol::Openai {
                self.head_model = string_field(&self.buf, b"\"model\":\"");
            }
            let cut = self.buf.len() - TAIL_KEEP;
            let _ = self.buf.split_to(cut);
            self.truncated = true;
        }
    }

    fn finish(&mut self) -> Observed {
        let facts = if self.truncated {
            tail_usage(&self.buf).map(|u| BodyFacts {
                usage: match self.protocol {
                    Protocol::Openai => usage::with_openai_envelope(
                        usage::openai(&u),
                        self.head_model.as_deref(),
                        string_field(&self.buf, b"\"service_tier\":\"").as_deref(),
                    ),
                    Protocol::Anthropic => usage::anthropic(&u),
                },
                ..BodyFacts::default()
            })
        } else {
            usage::from_body_bytes(self.protocol, &self.buf)
        }
        .unwrap_or_default();
        Observed {
            usage: facts.usage,
            finish_reason: facts.finish_reason,
            error_type: facts.error_type,
            stream_complete: false,
            usage_unreadable: false,
        }
    }
}

/// The last `"usage": {...}` object in the tail of a large JSON body.
fn tail_usage(tail: &[u8]) -> Option<Value> {
    let at = memmem::rfind(tail, b"\"usage\"")?;
    let rest = &tail[at + b"\"usage\"".len()..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let mut values = serde_json::Deserializer::from_slice(&rest[colon + 1..]).into_iter::<Value>();
    values.next()?.ok().filter(Value::is_object)
}

pub struct OpenAiStream {
    splitter: SseSplitter,
    strip: bool,
    events: Vec<Piece>,
    seen: Observed,
    envelope: OpenAiEnvelope,
}

/// What every OpenAI chunk repeats outside `usage`; read from the first
/// chunk that has it, and looked for no more once found.
#[derive(Default)]
struct OpenAiEnvelope {
    model: Option<String>,
    service_tier: Option<String>,
}

impl OpenAiStream {
    fn feed(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) {
        let mut events = std::mem::take(&mut self.events);
        self.splitter.push(&chunk, &mut events);
        if !self.strip {
            out.push(chunk);
        }
        for piece in events.drain(..) {
            match piece {
                Piece::Event(event) => {
                    let keep = self.observe(&event);
                    if self.strip && keep {
                        out.push(strip_usage_null(event));
                    }
                }
                Piece::Oversized(part) => {
                    self.seen.usage_unreadable = true;
                    if self.strip {
                        out.push(part);
                    }
                }
            }
        }
        self.events = events;
    }

    /// Returns false for the usage-only chunk tollgate asked for itself.
    fn observe(&mut self, raw: &[u8]) -> bool {
        let event = sse::parse(raw);
        let data = event.data.as_bytes();
        if data == b"[DONE]" {
            self.seen.stream_complete = true;
            return true;
        }
        if let Some(reason) = string_field(data, b"\"finish_reason\":\"") {
            self.seen.finish_reason = Some(reason);
        }
        if self.envelope.service_tier.is_none() {
            self.envelope.service_tier = string_field(data, b"\"service_tier\":\"");
        }
        if self.envelope.model.is_none() {
            self.envelope.model = string_field(data, b"\"model\":\"");
        }
        let has_usage = memmem::find(data, b"\"usage\":{").is_some()
            || memmem::find(data, b"\"usage\": {").is_some();
        let is_error = data.starts_with(b"{\"error\"");
        if !has_usage && !is_error {
            return true;
        }
        let Ok(value) = serde_json::from_slice::<Value>(data) else {
            return true;
        };
        if let Some(err) = value.get("error") {
            self.seen.error_type = err
                .get("type")
                .or_else(|| err.get("code"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(Some("error".into()));
        }
        if let Some(u) = value.get("usage").filter(|u| u.is_object()) {
            self.seen.usage = usage::openai(u);
            let only_usage = value
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            return !only_usage;
        }
        true
    }
}

/// The value of a `"key":"value"` string field, found without parsing.
fn string_field(data: &[u8], key_with_quote: &[u8]) -> Option<String> {
    let at = memmem::find(data, key_with_quote)? + key_with_quote.len();
    let len = memchr::memchr(b'"', &data[at..])?;
    std::str::from_utf8(&data[at..at + len])
        .ok()
        .map(str::to_string)
}

/// Removes the `"usage":null` members that asking for usage adds to every
/// chunk. A `"` that is part of a JSON string is always escaped, so these
/// byte patterns can only be the member itself.
fn strip_usage_null(event: Bytes) -> Bytes {
    const PATTERNS: [&[u8]; 4] = [
        b",\"usage\":null",
        b"\"usage\":null,",
        b", \"usage\": null",
        b"\"usage\": null, ",
    ];
    let Some((at, pat)) = PATTERNS
        .iter()
        .find_map(|p| memmem::find(&event, p).map(|at| (at, *p)))
    else {
        return event;
    };
    let mut out = BytesMut::with_capacity(event.len());
    out.extend_from_slice(&event[..at]);
    out.extend_from_slice(&event[at + pat.len()..]);
    out.freeze()
}

pub struct AnthropicStream {
    splitter: SseSplitter,
    events: Vec<Piece>,
    seen: Observed,
}

impl AnthropicStream {
    fn observe(&mut self, chunk: &Bytes) {
        let mut events = std::mem::take(&mut self.events);
        self.splitter.push(chunk, &mut events);
        for piece in events.drain(..) {
            let raw = match piece {
                Piece::Event(raw) => raw,
                Piece::Oversized(_) => {
                    self.seen.usage_unreadable = true;
                    continue;
                }
            };
            let event = sse::parse(&raw);
            let name = event
                .event
                .or_else(|| type_of(&event.data))
                .unwrap_or_default();
            match name {
                "message_start" | "message_delta" | "error" => {}
                "message_stop" => {
                    self.seen.stream_complete = true;
                    continue;
                }
                _ => continue,
            }
            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            match name {
                "message_start" => {
                    if let Some(u) = value.pointer("/message/usage") {
                        self.seen.usage = usage::merge(self.seen.usage, usage::anthropic(u));
                    }
                }
                "message_delta" => {
                    if let Some(u) = value.get("usage") {
                        let later = usage::anthropic_delta(u);
                        self.seen.usage = usage::merge(self.seen.usage, later);
                    }
                    if let Some(r) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                        self.seen.finish_reason = Some(r.to_string());
                    }
                }
                _ => {
                    self.seen.error_type = value
                        .pointer("/error/type")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or(Some("error".into()));
                }
            }
        }
        self.events = events;
    }
}

fn type_of(data: &str) -> Option<&'static str> {
    ["message_start", "message_delta", "message_stop", "error"]
        .into_iter()
        .find(|t| data.contains(&format!("\"type\":\"{t}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ServiceTier;

    fn run(mut w: Watch, pieces: &[&str]) -> (String, Observed) {
        let mut out = Vec::new();
        for p in pieces {
            w.feed(Bytes::copy_from_slice(p.as_bytes()), &mut out);
        }
        let seen = w.finish(&mut out);
        let text = out
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        (text, seen)
    }

    const OPENAI_WITH_USAGE: &str = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn openai_stream_passes_through_when_client_asked_for_usage() {
        let (text, seen) = run(
            Watch::new(Protocol::Openai, true, false, 1 << 20),
            &[&OPENAI_WITH_USAGE[..50], &OPENAI_WITH_USAGE[50..]],
        );
        assert_eq!(text, OPENAI_WITH_USAGE);
        assert_eq!(seen.usage.input_tokens, Some(9));
        assert_eq!(seen.usage.output_tokens, Some(2));
        assert_eq!(seen.finish_reason.as_deref(), Some("stop"));
        assert!(seen.stream_complete);
    }

    #[test]
    fn openai_stream_strips_what_tollgate_injected() {
        let (text, seen) = run(
            Watch::new(Protocol::Openai, true, true, 1 << 20),
            &[&OPENAI_WITH_USAGE[..70], &OPENAI_WITH_USAGE[70..]],
        );
        assert_eq!(
            text,
            concat!(
                "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
                "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
                "data: [DONE]\n\n",
            )
        );
        assert_eq!(seen.usage.input_tokens, Some(9));
    }

    #[test]
    fn anthropic_stream_usage_and_stop_reason() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (text, seen) = run(
            Watch::new(Protocol::Anthropic, true, false, 1 << 20),
            &[stream],
        );
        assert_eq!(text, stream);
        assert_eq!(seen.usage.input_tokens, Some(35));
        assert_eq!(seen.usage.cached_input_tokens, Some(3));
        assert_eq!(seen.usage.cache_creation_input_tokens, Some(7));
        assert_eq!(seen.usage.output_tokens, Some(15));
        assert_eq!(seen.finish_reason.as_deref(), Some("end_turn"));
        assert!(seen.stream_complete);
    }

    /// A search model's stream on the flex tier, as the API sends it: the
    /// tier and model on every chunk, audio counts in the usage chunk.
    const OPENAI_FLEX_SEARCH: &str = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-search-preview-2025-03-11\",\"service_tier\":\"flex\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-search-preview-2025-03-11\",\"service_tier\":\"flex\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"service_tier\\\":\\\"scale\\\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-search-preview-2025-03-11\",\"service_tier\":\"flex\",\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-search-preview-2025-03-11\",\"service_tier\":\"flex\",\"system_fingerprint\":null,\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":20,\"total_tokens\":70,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":30},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":12}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn openai_stream_reads_tier_audio_and_search_call_from_chunks() {
        for strip in [false, true] {
            let (text, seen) = run(
                Watch::new(Protocol::Openai, true, strip, 1 << 20),
                &[&OPENAI_FLEX_SEARCH[..333], &OPENAI_FLEX_SEARCH[333..]],
            );
            if !strip {
                assert_eq!(text, OPENAI_FLEX_SEARCH);
            }
            let u = seen.usage;
            assert_eq!((u.input_tokens, u.output_tokens), (Some(50), Some(20)));
            assert_eq!(u.input_audio_tokens, Some(30));
            assert_eq!(u.output_audio_tokens, Some(12));
            assert_eq!(u.service_tier, Some(ServiceTier::Flex));
            assert_eq!(u.web_search_calls, Some(1));
        }
    }

    #[test]
    fn openai_stream_without_usage_records_no_tier() {
        let stream: String = OPENAI_FLEX_SEARCH
            .split_inclusive("\n\n")
            .filter(|e| !e.contains("\"usage\":{"))
            .collect();
        let (_, seen) = run(
            Watch::new(Protocol::Openai, true, false, 1 << 20),
            &[&stream],
        );
        assert!(seen.usage.is_empty());
        assert!(seen.stream_complete);
    }

    #[test]
    fn openai_stream_default_tier_and_plain_model() {
        let (_, seen) = run(
            Watch::new(Protocol::Openai, true, false, 1 << 20),
            &[&OPENAI_WITH_USAGE.replace(
                "{\"id\":\"c\",",
                "{\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"service_tier\":\"default\",",
            )],
        );
        assert_eq!(seen.usage.service_tier, Some(ServiceTier::Default));
        assert_eq!(seen.usage.web_search_calls, None);
        assert_eq!(seen.usage.input_audio_tokens, None);
    }

    /// A streamed message with 1-hour cache writes and a web search, in the
    /// current API's shape: `message_start` has the cache-write breakdown
    /// and the tier; `message_delta` restates the input side cumulatively
    /// (without the breakdown) and adds the server tool count.
    const ANTHROPIC_1H_SEARCH: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":2679,\"cache_creation_input_tokens\":1500,\"cache_read_input_tokens\":200,\"cache_creation\":{\"ephemeral_5m_input_tokens\":500,\"ephemeral_1h_input_tokens\":1000},\"output_tokens\":3,\"service_tier\":\"standard\"}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":10682,\"cache_creation_input_tokens\":1500,\"cache_read_input_tokens\":200,\"output_tokens\":510,\"server_tool_use\":{\"web_search_requests\":1}}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn anthropic_stream_1h_writes_web_search_and_tier() {
        let (_, seen) = run(
            Watch::new(Protocol::Anthropic, true, false, 1 << 20),
            &[&ANTHROPIC_1H_SEARCH[..100], &ANTHROPIC_1H_SEARCH[100..]],
        );
        let u = seen.usage;
        assert_eq!(u.input_tokens, Some(10682 + 1500 + 200));
        assert_eq!(u.cache_creation_input_tokens, Some(1500));
        assert_eq!(u.cache_write_1h_tokens, Some(1000));
        assert_eq!(u.cached_input_tokens, Some(200));
        assert_eq!(u.output_tokens, Some(510));
        assert_eq!(u.web_search_calls, Some(1));
        assert_eq!(u.service_tier, Some(ServiceTier::Default));
        assert!(seen.stream_complete);
    }

    #[test]
    fn anthropic_stream_output_only_delta_keeps_the_start_counts() {
        let stream = ANTHROPIC_1H_SEARCH.replace(
            "\"usage\":{\"input_tokens\":10682,\"cache_creation_input_tokens\":1500,\"cache_read_input_tokens\":200,\"output_tokens\":510,",
            "\"usage\":{\"output_tokens\":510,",
        );
        assert_ne!(stream, ANTHROPIC_1H_SEARCH);
        let (_, seen) = run(
            Watch::new(Protocol::Anthropic, true, false, 1 << 20),
            &[&stream],
        );
        let u = seen.usage;
        assert_eq!(u.input_tokens, Some(2679 + 1500 + 200));
        assert_eq!(u.cache_creation_input_tokens, Some(1500));
        assert_eq!(u.cache_write_1h_tokens, Some(1000));
        assert_eq!(u.output_tokens, Some(510));
        assert_eq!(u.web_search_calls, Some(1));
    }

    #[test]
    fn non_stream_bodies_read_the_envelope() {
        let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-search-preview","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"audio_tokens":1}},"service_tier":"priority"}"#;
        let (_, seen) = run(
            Watch::new(Protocol::Openai, false, false, 1 << 20),
            &[&body[..40], &body[40..]],
        );
        assert_eq!(seen.usage.service_tier, Some(ServiceTier::Priority));
        assert_eq!(seen.usage.web_search_calls, Some(1));
        assert_eq!(seen.usage.input_audio_tokens, Some(1));
    }

    #[test]
    fn an_oversized_event_is_forwarded_unchanged_and_marks_usage_unreadable() {
        let big = format!(
            "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n",
            "x".repeat(5000)
        );
        let stream = format!("{big}{OPENAI_WITH_USAGE}");
        for strip in [true, false] {
            let pieces: Vec<&str> = (0..stream.len())
                .step_by(700)
                .map(|i| &stream[i..(i + 700).min(stream.len())])
                .collect();
            let (text, seen) = run(Watch::new(Protocol::Openai, true, strip, 1024), &pieces);
            assert!(text.starts_with(&big), "the big event passes unchanged");
            assert!(seen.usage_unreadable);
            assert!(seen.stream_complete);
        }
    }

    #[test]
    fn large_json_body_usage_from_tail() {
        let mut body = String::from("{\"object\":\"list\",\"data\":[");
        let item = "{\"object\":\"embedding\",\"index\":0,\"embedding\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\"},";
        while body.len() < FULL_PARSE_LIMIT + 1000 {
            body.push_str(item);
        }
        body.pop();
        body.push_str("],\"model\":\"e\",\"usage\":{\"prompt_tokens\":123,\"total_tokens\":123}}");
        let (text, seen) = run(
            Watch::new(Protocol::Openai, false, false, 1 << 20),
            &[&body],
        );
        assert_eq!(text.len(), body.len());
        assert_eq!(seen.usage.input_tokens, Some(123));
    }

    #[test]
    fn large_chat_body_keeps_its_model_and_tier() {
        let mut body = String::from(
            "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-search-preview\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
        );
        body.push_str(&"x".repeat(FULL_PARSE_LIMIT + 1000));
        body.push_str("\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9},\"service_tier\":\"scale\"}");
        let pieces: Vec<&str> = (0..body.len())
            .step_by(1 << 20)
            .map(|i| &body[i..(i + (1 << 20)).min(body.len())])
            .collect();
        let (_, seen) = run(Watch::new(Protocol::Openai, false, false, 1 << 20), &pieces);
        assert_eq!(seen.usage.output_tokens, Some(9));
        assert_eq!(seen.usage.service_tier, Some(ServiceTier::Scale));
        assert_eq!(seen.usage.web_search_calls, Some(1));
    }
}
