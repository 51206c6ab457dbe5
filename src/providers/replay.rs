//! Replaying a stored final message as the stream a client asked for, so
//! one cached answer serves stream and non-stream requests alike.
//!
//! The events follow the providers' real streams closely enough for the
//! official SDKs' stream parsers and for tollgate's own watcher
//! ([`super::watch`]), which records a replayed stream like a real one:
//!
//! * OpenAI: `chat.completion.chunk` objects with the message's id,
//!   created, model (and tier, fingerprint); per choice a first chunk with
//!   the role, content and refusal in pieces, tool calls (id and name first,
//!   then the arguments in pieces), a last chunk with the finish reason;
//!   then, only when the client asked (`stream_options.include_usage`), the
//!   usage chunk with `choices: []` — and only then `"usage": null` on the
//!   other chunks, as OpenAI does; then `data: [DONE]`. Log probabilities
//!   go whole on the last chunk, annotations on a chunk of their own (none
//!   when the list is empty, as OpenAI streams do).
//! * Anthropic: `message_start` (the input side of the usage, 1 output
//!   token), per block `content_block_start` / deltas /
//!   `content_block_stop`, a `ping` after the first block's start,
//!   `message_delta` (stop reason, cumulative usage), `message_stop`.
//!
//! Text is sent in pieces of at most [`PIECE_BYTES`] bytes, cut after a
//! space where one is near. A message this code cannot express as a stream
//! (members it does not know, a tool call that is not a function) gives
//! `None`: the caller treats it as a miss rather than send a stream that
//! says less than the message.
//!
//! Pure: `serde_json::Value` in, bytes out, no HTTP, no SQL.

use crate::config::Protocol;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The most bytes of text in one stream event.
pub const PIECE_BYTES: usize = 64;

/// The stream a client of `protocol` gets for `message`, one `Bytes` per
/// event. `include_usage` (OpenAI only): the client's
/// `stream_options.include_usage`.
pub fn stream_events(
    protocol: Protocol,
    message: &Value,
    include_usage: bool,
) -> Option<Vec<Bytes>> {
    match protocol {
        Protocol::Openai => openai(message, include_usage),
        Protocol::Anthropic => anthropic(message),
    }
}

/// [`stream_events`] as one body.
pub fn stream_body(protocol: Protocol, message: &Value, include_usage: bool) -> Option<Bytes> {
    let events = stream_events(protocol, message, include_usage)?;
    Some(Bytes::from(events.concat()))
}

/// The body a non-stream client gets: the message itself.
pub fn non_stream_body(message: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(message).expect("a JSON value serializes"))
}

/// `text` cut into pieces of at most `max` bytes (at least one character
/// each), each cut after a space when one is in the second half of the
/// piece. The pieces concatenate to `text`.
pub fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(text.len() / max.max(1) + 1);
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() <= max {
            out.push(rest);
            break;
        }
        let mut cut = max;
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        } else if let Some(space) = rest[..cut].rfind(' ').filter(|&s| s + 1 > cut / 2) {
            cut = space + 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

fn data_event(data: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut out, data).expect("a JSON value serializes");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn named_event(name: &str, data: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut out, data).expect("a JSON value serializes");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Whether every member of `object` outside `known` is null (says nothing).
fn only_known(object: &Map<String, Value>, known: &[&str]) -> bool {
    object
        .iter()
        .all(|(k, v)| known.contains(&k.as_str()) || v.is_null())
}

// ---------------------------------------------------------------------------
// OpenAI

/// The members every chunk repeats, in the order OpenAI sends them.
struct Envelope {
    head: Map<String, Value>,
    include_usage: bool,
}

impl Envelope {
    fn chunk(&self, choices: Vec<Value>) -> Bytes {
        let mut chunk = self.head.clone();
        chunk.insert("choices".into(), Value::Array(choices));
        if self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        data_event(&Value::Object(chunk))
    }

    fn usage_chunk(&self, usage: &Value) -> Bytes {
        let mut chunk = self.head.clone();
        chunk.insert("choices".into(), Value::Array(Vec::new()));
        chunk.insert("usage".into(), usage.clone());
        data_event(&Value::Object(chunk))
    }
}

fn openai(message: &Value, include_usage: bool) -> Option<Vec<Bytes>> {
    const TOP: [&str; 8] = [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ];
    let m = message.as_object()?;
    let usage = m.get("usage").filter(|u| u.is_object())?;
    if !only_known(m, &TOP) {
        return None;
    }
    let mut head = Map::new();
    head.insert("id".into(), m.get("id")?.clone());
    head.insert("object".into(), "chat.completion.chunk".into());
    head.insert("created".into(), m.get("created")?.clone());
    head.insert("model".into(), m.get("model")?.clone());
    for member in ["service_tier", "system_fingerprint"] {
        if let Some(v) = m.get(member) {
            head.insert(member.into(), v.clone());
        }
    }
    let envelope = Envelope {
        head,
        include_usage,
    };
    let mut events = Vec::new();
    for (at, choice) in m.get("choices")?.as_array()?.iter().enumerate() {
        openai_choice(&envelope, at, choice, &mut events)?;
    }
    if include_usage {
        events.push(envelope.usage_chunk(usage));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Some(events)
}

/// What a stored message says, checked to be expressible as deltas.
struct MessageParts<'a> {
    role: Value,
    content: Option<&'a str>,
    /// `None`: no `refusal` member; `Some(None)`: null.
    refusal: Option<Option<&'a str>>,
    /// Non-empty annotations (OpenAI streams send none when there are none).
    annotations: Option<&'a Value>,
    /// `Some` when the message has a `tool_calls` list.
    tool_calls: Option<&'a Vec<Value>>,
}

fn message_parts(msg: &Map<String, Value>) -> Option<MessageParts<'_>> {
    let known = ["role", "content", "refusal", "annotations", "tool_calls"];
    if !only_known(msg, &known) {
        return None;
    }
    let refusal = match msg.get("refusal") {
        None => None,
        Some(_) => Some(text_member(msg, "refusal")?),
    };
    let annotations = match msg.get("annotations") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.is_empty() => None,
        Some(list @ Value::Array(_)) => Some(list),
        Some(_) => return None,
    };
    let tool_calls = match msg.get("tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Array(calls)) => Some(calls),
        Some(_) => return None,
    };
    Some(MessageParts {
        role: msg.get("role").cloned().unwrap_or("assistant".into()),
        content: text_member(msg, "content")?,
        refusal,
        annotations,
        tool_calls,
    })
}

fn openai_choice(env: &Envelope, at: usize, choice: &Value, out: &mut Vec<Bytes>) -> Option<()> {
    let c = choice.as_object()?;
    if !only_known(c, &["index", "message", "logprobs", "finish_reason"]) {
        return None;
    }
    let index = c.get("index").cloned().unwrap_or_else(|| at.into());
    let parts = message_parts(c.get("message")?.as_object()?)?;
    let mut call_deltas = Vec::new();
    for (i, call) in parts.tool_calls.into_iter().flatten().enumerate() {
        call_deltas.extend(tool_call_deltas(i, call)?);
    }
    let mut call_deltas = call_deltas.into_iter();
    let delta_chunk = |delta: Value| {
        env.chunk(vec![json!({
            "index": index, "delta": delta, "logprobs": null, "finish_reason": null,
        })])
    };

    let mut first = Map::new();
    first.insert("role".into(), parts.role);
    first.insert("content".into(), start_of(parts.content));
    let refusal_text = parts.refusal.flatten();
    let text_follows =
        parts.content.is_some() || refusal_text.is_some() || parts.annotations.is_some();
    if parts.tool_calls.is_some_and(Vec::is_empty) {
        first.insert("tool_calls".into(), Value::Array(Vec::new()));
    } else if !text_follows && let Some(delta) = call_deltas.next() {
        // With nothing before it, the first call opens in the first chunk.
        first.insert("tool_calls".into(), json!([delta]));
    }
    if let Some(refusal) = parts.refusal {
        first.insert("refusal".into(), start_of(refusal));
    }
    out.push(delta_chunk(Value::Object(first)));

    for piece in pieces(parts.content.unwrap_or(""), PIECE_BYTES) {
        out.push(delta_chunk(json!({ "content": piece })));
    }
    for piece in pieces(refusal_text.unwrap_or(""), PIECE_BYTES) {
        out.push(delta_chunk(json!({ "refusal": piece })));
    }
    if let Some(list) = parts.annotations {
        out.push(delta_chunk(json!({ "annotations": list })));
    }
    for delta in call_deltas {
        out.push(delta_chunk(json!({ "tool_calls": [delta] })));
    }
    out.push(env.chunk(vec![json!({
        "index": index,
        "delta": {},
        "logprobs": c.get("logprobs").cloned().unwrap_or(Value::Null),
        "finish_reason": c.get("finish_reason").cloned().unwrap_or(Value::Null),
    })]));
    Some(())
}

/// A member that is a string or null: `Some(None)` for null or absent,
/// `None` when it is something else.
fn text_member<'a>(object: &'a Map<String, Value>, member: &str) -> Option<Option<&'a str>> {
    match object.get(member) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// What the first delta says of a text member: `""` when text follows,
/// else null.
fn start_of(text: Option<&str>) -> Value {
    match text {
        Some(_) => Value::String(String::new()),
        None => Value::Null,
    }
}

/// The deltas of one function call: id, type and name with empty
/// arguments, then the arguments in pieces.
fn tool_call_deltas(i: usize, call: &Value) -> Option<Vec<Value>> {
    let call = call.as_object()?;
    let function = call.get("function")?.as_object()?;
    let ok = only_known(call, &["id", "type", "function"])
        && call.get("type").is_none_or(|t| t == "function")
        && only_known(function, &["name", "arguments"]);
    if !ok {
        return None;
    }
    let arguments = function.get("arguments").and_then(Value::as_str)?;
    let mut out = vec![json!({
        "index": i,
        "id": call.get("id")?,
        "type": "function",
        "function": {"name": function.get("name")?, "arguments": ""},
    })];
    for piece in pieces(arguments, PIECE_BYTES) {
        out.push(json!({"index": i, "function": {"arguments": piece}}));
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Anthropic

/// Usage members `message_delta` restates (cumulatively, as the current API
/// does); the rest are said once in `message_start`.
const DELTA_USAGE: [&str; 5] = [
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
];

fn anthropic(message: &Value) -> Option<Vec<Bytes>> {
    let m = message.as_object()?;
    if m.get("type").is_some_and(|t| t != "message") {
        return None;
    }
    let blocks = m.get("content")?.as_array()?;
    let usage = m.get("usage")?.as_object()?;

    let mut start = m.clone();
    start.insert("content".into(), Value::Array(Vec::new()));
    for member in ["stop_reason", "stop_sequence"] {
        if start.contains_key(member) {
            start.insert(member.into(), Value::Null);
        }
    }
    let mut start_usage = usage.clone();
    start_usage.remove("server_tool_use");
    if start_usage.contains_key("output_tokens") {
        start_usage.insert("output_tokens".into(), 1.into());
    }
    start.insert("usage".into(), Value::Object(start_usage));

    let mut events = vec![named_event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        anthropic_block(index, block.as_object()?, &mut events)?;
    }
    if blocks.is_empty() {
        events.push(named_event("ping", &json!({"type": "ping"})));
    }

    let mut delta = Map::new();
    for member in ["stop_reason", "stop_sequence"] {
        if let Some(v) = m.get(member) {
            delta.insert(member.into(), v.clone());
        }
    }
    let delta_usage: Map<String, Value> = usage
        .iter()
        .filter(|(k, _)| DELTA_USAGE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    events.push(named_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": delta, "usage": delta_usage}),
    ));
    events.push(named_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    Some(events)
}

/// One content block: its start (with the streamed members empty), its
/// deltas, its stop. Block types this code does not stream arrive whole in
/// their start event, as the API sends its server-tool results. The first
/// block's start is followed by a `ping`, as the API does.
fn anthropic_block(index: usize, block: &Map<String, Value>, out: &mut Vec<Bytes>) -> Option<()> {
    let mut start = block.clone();
    let mut deltas = Vec::new();
    let mut text_deltas =
        |member: &str, kind: &str, start: &mut Map<String, Value>| -> Option<()> {
            let Some(value) = block.get(member) else {
                return Some(());
            };
            let text = value.as_str()?;
            start.insert(member.into(), "".into());
            for piece in pieces(text, PIECE_BYTES) {
                deltas.push(json!({"type": kind, member: piece}));
            }
            Some(())
        };
    match block.get("type").and_then(Value::as_str)? {
        "text" => {
            text_deltas("text", "text_delta", &mut start)?;
            if let Some(Value::Array(citations)) = block.get("citations") {
                start.insert("citations".into(), Value::Array(Vec::new()));
                for citation in citations {
                    deltas.push(json!({"type": "citations_delta", "citation": citation}));
                }
            }
        }
        "thinking" => {
            text_deltas("thinking", "thinking_delta", &mut start)?;
            if let Some(signature) = block.get("signature") {
                start.insert("signature".into(), "".into());
                let signature = signature.as_str()?;
                if !signature.is_empty() {
                    deltas.push(json!({"type": "signature_delta", "signature": signature}));
                }
            }
        }
        "tool_use" | "server_tool_use" | "mcp_tool_use" => {
            if let Some(input) = block.get("input") {
                let json = serde_json::to_string(input).expect("a JSON value serializes");
                if json != "{}" {
                    start.insert("input".into(), json!({}));
                    for piece in pieces(&json, PIECE_BYTES) {
                        deltas.push(json!({"type": "input_json_delta", "partial_json": piece}));
                    }
                }
            }
        }
        _ => {}
    }
    out.push(named_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": start}),
    ));
    if index == 0 {
        out.push(named_event("ping", &json!({"type": "ping"})));
    }
    for delta in deltas {
        out.push(named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }
    out.push(named_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    ));
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::assemble::Assembler;
    use crate::providers::sse::{self, Piece, SseSplitter};
    use crate::providers::{usage, watch::Watch};
    use proptest::prelude::*;

    fn assemble(protocol: Protocol, events: &[Bytes]) -> Option<Value> {
        let mut a = Assembler::new(protocol, 1 << 24);
        for e in events {
            a.feed(e);
        }
        a.finish()
    }

    fn as_text(events: &[Bytes]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn pieces_are_bounded_whole_characters_and_not_single_characters() {
        let text = "The quick brown fox jumps over the lazy dog; ".repeat(10) + &"é".repeat(100);
        let got = pieces(&text, PIECE_BYTES);
        assert_eq!(got.concat(), text);
        assert!(got.iter().all(|p| !p.is_empty() && p.len() <= PIECE_BYTES));
        assert!(got.len() <= text.len() / (PIECE_BYTES / 2) + 1, "{got:?}");
        assert!(got[0].ends_with(' '), "cut after a word: {:?}", got[0]);
        assert_eq!(pieces("", 64), Vec::<&str>::new());
        assert_eq!(pieces("abc", 1), vec!["a", "b", "c"]);
        assert_eq!(pieces("ééé", 1), vec!["é", "é", "é"]);
    }

    fn openai_message() -> Value {
        json!({
            "id": "chatcmpl-9", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14,
                      "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_x",
        })
    }

    #[test]
    fn openai_usage_chunk_and_null_usage_only_when_asked() {
        let msg = openai_message();
        let with = as_text(&stream_events(Protocol::Openai, &msg, true).unwrap());
        let without = as_text(&stream_events(Protocol::Openai, &msg, false).unwrap());
        assert_eq!(with.len(), without.len() + 1);
        assert_eq!(with.last().unwrap(), "data: [DONE]\n\n");
        assert_eq!(without.last().unwrap(), "data: [DONE]\n\n");
        assert!(
            with[..with.len() - 2]
                .iter()
                .all(|e| e.contains(",\"usage\":null}"))
        );
        assert!(with[with.len() - 2].contains("\"choices\":[],\"usage\":{\"prompt_tokens\":12"));
        assert!(without.iter().all(|e| !e.contains("usage")));
        assert_eq!(
            with[0],
            "data: {\"id\":\"chatcmpl-9\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        );
    }

    /// A replayed stream is recorded like a real one: tollgate's watcher
    /// sees the usage the message has, its finish reason and the terminator
    /// — also when tollgate asked for usage the client did not and strips
    /// it again.
    #[test]
    fn the_watcher_reads_a_replayed_stream_like_the_message() {
        for (protocol, msg) in [
            (Protocol::Openai, openai_message()),
            (Protocol::Anthropic, anthropic_message()),
        ] {
            let body = non_stream_body(&msg);
            let want = usage::from_body_bytes(protocol, &body).unwrap();
            for (include_usage, strip) in [(true, false), (true, true)] {
                let events = stream_events(protocol, &msg, include_usage).unwrap();
                let mut w = Watch::new(protocol, true, strip, 1 << 20);
                let mut out = Vec::new();
                for e in &events {
                    w.feed(e.clone(), &mut out);
                }
                assert!(w.saw_terminator());
                let seen = w.finish(&mut out);
                assert_eq!(seen.usage, want.usage, "{protocol:?}");
                assert_eq!(seen.finish_reason, want.finish_reason);
                assert!(seen.stream_complete && seen.error_type.is_none());
                if strip {
                    let client = stream_body(protocol, &msg, false).unwrap();
                    assert_eq!(out.concat(), client.to_vec(), "stripped = not asked");
                }
            }
        }
    }

    #[test]
    fn the_splitter_cuts_a_replay_into_its_events() {
        for (protocol, msg) in [
            (Protocol::Openai, openai_message()),
            (Protocol::Anthropic, anthropic_message()),
        ] {
            let events = stream_events(protocol, &msg, true).unwrap();
            let body = stream_body(protocol, &msg, true).unwrap();
            let mut s = SseSplitter::new(1 << 16);
            let mut out = Vec::new();
            for piece in body.chunks(5) {
                s.push(&Bytes::copy_from_slice(piece), &mut out);
            }
            assert!(s.take_rest().is_empty());
            let got: Vec<Bytes> = out
                .into_iter()
                .map(|p| match p {
                    Piece::Event(e) => e,
                    Piece::Oversized(_) => panic!("small events"),
                })
                .collect();
            assert_eq!(got, events);
            for e in &got {
                let parsed = sse::parse(e);
                if protocol == Protocol::Anthropic {
                    let data: Value = serde_json::from_str(&parsed.data).unwrap();
                    assert_eq!(data["type"].as_str(), parsed.event, "name = type");
                } else {
                    assert!(parsed.event.is_none());
                }
            }
        }
    }

    fn anthropic_message() -> Value {
        json!({
            "id": "msg_9", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                {"type": "text", "text": "Let me look that up for you, it will take a moment."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x", "n": 2}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3,
                      "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 0},
                      "output_tokens": 21, "service_tier": "standard"},
        })
    }

    #[test]
    fn anthropic_event_sequence() {
        let events = stream_events(Protocol::Anthropic, &anthropic_message(), false).unwrap();
        let names: Vec<String> = events
            .iter()
            .map(|e| sse::parse(e).event.unwrap().to_string())
            .collect();
        let mut want = vec!["message_start", "content_block_start", "ping"];
        want.extend(["content_block_delta"; 2]); // thinking, signature
        want.extend([
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
        ]);
        want.extend([
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
        ]);
        want.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, want);
        let start: Value = serde_json::from_str(&sse::parse(&events[0]).data).unwrap();
        assert_eq!(start["message"]["usage"]["output_tokens"], 1);
        assert_eq!(start["message"]["usage"]["input_tokens"], 30);
        assert_eq!(start["message"]["stop_reason"], Value::Null);
        assert_eq!(start["message"]["content"], json!([]));
    }

    #[test]
    fn messages_a_stream_cannot_say_are_not_replayed() {
        let mut audio = openai_message();
        audio["choices"][0]["message"]["audio"] = json!({"id": "a"});
        let mut custom_tool = openai_message();
        custom_tool["choices"][0]["message"]["tool_calls"] =
            json!([{"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}]);
        let mut no_usage = openai_message();
        no_usage.as_object_mut().unwrap().remove("usage");
        for msg in [audio, custom_tool, no_usage] {
            assert!(
                stream_events(Protocol::Openai, &msg, false).is_none(),
                "{msg}"
            );
        }
        let mut no_content = anthropic_message();
        no_content.as_object_mut().unwrap().remove("content");
        assert!(stream_events(Protocol::Anthropic, &no_content, false).is_none());
        assert!(stream_events(Protocol::Anthropic, &json!("text"), false).is_none());
    }

    #[test]
    fn unknown_anthropic_blocks_arrive_whole_in_their_start() {
        let mut msg = anthropic_message();
        let result = json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                            "content": [{"type": "web_search_result", "url": "https://e.x", "title": "t"}]});
        msg["content"] = json!([result.clone(), {"type": "redacted_thinking", "data": "abc"}]);
        let events = stream_events(Protocol::Anthropic, &msg, false).unwrap();
        let first: Value = serde_json::from_str(&sse::parse(&events[1]).data).unwrap();
        assert_eq!(first["content_block"], result);
        assert_eq!(assemble(Protocol::Anthropic, &events), Some(msg));
    }

    // ---- generated round trips ------------------------------------------

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z ]{1,20}",
            "[ -~éü\\n\"\\\\]{0,300}",
            "\\PC{0,200}",
        ]
    }

    fn tool_call() -> impl Strategy<Value = Value> {
        ("[a-z_]{1,12}", "[a-zA-Z0-9]{1,10}", text()).prop_map(|(name, id, arg)| {
            json!({"id": format!("call_{id}"), "type": "function",
                   "function": {"name": name, "arguments": serde_json::to_string(&json!({"a": arg})).unwrap()}})
        })
    }

    /// One generated choice: content, refusal, tool calls, finish reason,
    /// with log probabilities, with annotations.
    type Choice = (
        Option<String>,
        Option<Option<String>>,
        Vec<Value>,
        String,
        bool,
        bool,
    );

    fn openai_choice() -> impl Strategy<Value = Choice> {
        (
            proptest::option::of(text()),
            proptest::option::of(proptest::option::of(text())),
            proptest::collection::vec(tool_call(), 0..3),
            prop_oneof![Just("stop"), Just("length"), Just("tool_calls")].prop_map(String::from),
            any::<bool>(),
            any::<bool>(),
        )
    }

    fn openai_generated() -> impl Strategy<Value = Value> {
        (proptest::collection::vec(openai_choice(), 1..4), 0u64..5000, any::<bool>()).prop_map(
            |(choices, tokens, fingerprint)| {
                let choices: Vec<Value> = choices
                    .into_iter()
                    .enumerate()
                    .map(|(i, (content, refusal, calls, finish, logprobs, annotated))| {
                        let mut m = json!({"role": "assistant", "content": content});
                        if let Some(r) = refusal {
                            m["refusal"] = json!(r);
                        }
                        if annotated {
                            m["annotations"] = json!([{"type": "url_citation", "url_citation":
                                {"url": "https://e.x", "title": "t", "start_index": 0, "end_index": 1}}]);
                        }
                        if !calls.is_empty() {
                            m["tool_calls"] = Value::Array(calls);
                        }
                        let logprobs = if logprobs {
                            json!({"content": [{"token": "a", "logprob": -1.25, "bytes": [97], "top_logprobs": []}], "refusal": null})
                        } else {
                            Value::Null
                        };
                        json!({"index": i, "message": m, "logprobs": logprobs, "finish_reason": finish})
                    })
                    .collect();
                let mut msg = json!({
                    "id": "chatcmpl-p", "object": "chat.completion", "created": 5, "model": "m",
                    "choices": choices,
                    "usage": {"prompt_tokens": tokens, "completion_tokens": 7, "total_tokens": tokens + 7},
                    "service_tier": "default",
                });
                if fingerprint {
                    msg["system_fingerprint"] = json!("fp_p");
                }
                msg
            },
        )
    }

    fn anthropic_block() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(|t| json!({"type": "text", "text": t})),
            (text(), "[a-zA-Z0-9+/]{0,80}")
                .prop_map(|(t, s)| json!({"type": "thinking", "thinking": t, "signature": s})),
            ("[a-z_]{1,10}", text(), 0i64..1000).prop_map(|(name, s, n)| {
                json!({"type": "tool_use", "id": "toolu_p", "name": name,
                       "input": if n % 3 == 0 { json!({}) } else { json!({"s": s, "n": n, "l": [n, {"x": null}]}) }})
            }),
        ]
    }

    fn anthropic_generated() -> impl Strategy<Value = Value> {
        (
            proptest::collection::vec(anthropic_block(), 0..5),
            prop_oneof![Just("end_turn"), Just("max_tokens"), Just("tool_use")],
            0u64..100_000,
            any::<bool>(),
        )
            .prop_map(|(content, stop, tokens, search)| {
                let mut usage = json!({"input_tokens": tokens, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": tokens / 2, "output_tokens": tokens % 977, "service_tier": "standard"});
                if search {
                    usage["server_tool_use"] = json!({"web_search_requests": 2});
                }
                json!({"id": "msg_p", "type": "message", "role": "assistant", "model": "claude-p",
                       "content": content, "stop_reason": stop, "stop_sequence": null, "usage": usage})
            })
    }

    /// A case proptest once shrank to: a thinking block with empty thinking
    /// and a one-character signature.
    #[test]
    fn an_empty_thinking_block_with_a_short_signature_round_trips() {
        let msg = json!({"id": "msg_p", "type": "message", "role": "assistant", "model": "claude-p",
            "content": [{"type": "thinking", "thinking": "", "signature": "0"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "output_tokens": 0, "service_tier": "standard"}});
        let events = stream_events(Protocol::Anthropic, &msg, false).unwrap();
        assert_eq!(assemble(Protocol::Anthropic, &events), Some(msg));
    }

    proptest! {
        // Shrunk failures become named tests above, not files at the
        // repository's root.
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn openai_assemble_of_replay_is_the_message(msg in openai_generated(), include_usage in any::<bool>()) {
            let events = stream_events(Protocol::Openai, &msg, include_usage).unwrap();
            if include_usage {
                prop_assert_eq!(assemble(Protocol::Openai, &events), Some(msg));
            } else {
                // Without the usage chunk the stream is not a cacheable answer.
                prop_assert_eq!(assemble(Protocol::Openai, &events), None);
            }
        }

        #[test]
        fn anthropic_assemble_of_replay_is_the_message(msg in anthropic_generated()) {
            let events = stream_events(Protocol::Anthropic, &msg, false).unwrap();
            prop_assert!(events.iter().all(|e| e.len() < 1024), "pieces stay small");
            prop_assert_eq!(assemble(Protocol::Anthropic, &events), Some(msg));
        }
    }
}
