//! Assembling a streamed answer into the final message the provider's
//! non-stream endpoint would have returned, so the cache can keep one form
//! of every answer (the message plus its usage) whichever way it arrived.
//!
//! Fed the SSE events of a stream as they go by (the raw upstream bytes,
//! however the network cut them, or whole events), it builds the message
//! incrementally: content and arguments are appended, not re-parsed. Anything
//! it cannot account for makes the answer not cacheable (`None`): a stream
//! without its terminator, an `error` event, JSON that does not parse, an
//! event or member it does not know that carries content, more bytes than
//! its cap. A cache that drops an answer costs one upstream call; one that
//! keeps a wrong answer serves it again and again.
//!
//! Pure: bytes in, `serde_json::Value` out, no HTTP, no SQL.

use super::sse::{self, Piece, SseSplitter};
use crate::config::Protocol;
use bytes::Bytes;
use serde_json::{Map, Value};

/// The most choices (`n`) or tool calls per choice one answer may have; a
/// stream naming more is not assembled.
const MAX_PARTS: usize = 128;

/// Builds the final message of one stream.
pub struct Assembler {
    splitter: SseSplitter,
    pieces: Vec<Piece>,
    fed: usize,
    max_bytes: usize,
    state: State,
}

enum State {
    OpenAi(Box<OpenAiParts>),
    Anthropic(AnthropicParts),
    /// Not cacheable; everything fed from now on is ignored.
    GaveUp,
}

/// Why an answer is not assembled; the reason is not kept (the answer is
/// simply not cached).
#[derive(Debug)]
struct GiveUp;

type Step = Result<(), GiveUp>;

fn check(ok: bool) -> Step {
    if ok { Ok(()) } else { Err(GiveUp) }
}

impl Assembler {
    /// An assembler for a stream in `protocol`'s format that gives up once
    /// more than `max_bytes` of stream have been fed.
    pub fn new(protocol: Protocol, max_bytes: usize) -> Assembler {
        Assembler {
            splitter: SseSplitter::new(max_bytes.saturating_add(1)),
            pieces: Vec::new(),
            fed: 0,
            max_bytes,
            state: match protocol {
                Protocol::Openai => State::OpenAi(Box::default()),
                Protocol::Anthropic => State::Anthropic(AnthropicParts::default()),
            },
        }
    }

    /// Feeds raw stream bytes, cut anywhere.
    pub fn feed(&mut self, chunk: &Bytes) {
        if !self.count(chunk.len()) {
            return;
        }
        let mut pieces = std::mem::take(&mut self.pieces);
        self.splitter.push(chunk, &mut pieces);
        for piece in pieces.drain(..) {
            match piece {
                Piece::Event(raw) => self.apply(&raw),
                Piece::Oversized(_) => self.give_up(),
            }
        }
        self.pieces = pieces;
    }

    /// Feeds one whole event (with or without its blank line), as
    /// [`SseSplitter`] hands them out. Do not mix with [`Assembler::feed`].
    pub fn feed_event(&mut self, raw: &[u8]) {
        if self.count(raw.len()) {
            self.apply(raw);
        }
    }

    /// The final message, or `None` when the stream was not a complete,
    /// well-formed answer.
    pub fn finish(mut self) -> Option<Value> {
        let rest = self.splitter.take_rest();
        if !rest.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match self.state {
            State::OpenAi(parts) => (*parts).finish(),
            State::Anthropic(parts) => parts.finish(),
            State::GaveUp => None,
        }
    }

    /// Whether the stream was given up on (it will not be cacheable), so a
    /// caller can stop feeding early.
    pub fn gave_up(&self) -> bool {
        matches!(self.state, State::GaveUp)
    }

    /// Counts fed bytes against the cap; false once given up.
    fn count(&mut self, len: usize) -> bool {
        self.fed = self.fed.saturating_add(len);
        if self.fed > self.max_bytes {
            self.give_up();
        }
        !self.gave_up()
    }

    fn apply(&mut self, raw: &[u8]) {
        let event = sse::parse(raw);
        let step = match &mut self.state {
            State::OpenAi(parts) => parts.event(&event),
            State::Anthropic(parts) => parts.event(&event),
            State::GaveUp => Ok(()),
        };
        if step.is_err() {
            self.give_up();
        }
    }

    fn give_up(&mut self) {
        self.state = State::GaveUp;
        self.splitter = SseSplitter::new(1);
        self.pieces = Vec::new();
    }
}

/// A string member built from deltas: never seen, seen only as `null`, or
/// text.
#[derive(Default)]
enum Text {
    #[default]
    Absent,
    Null,
    Some(String),
}

impl Text {
    fn add(&mut self, delta: Value) -> Step {
        match (delta, &mut *self) {
            (Value::Null, Text::Absent) => *self = Text::Null,
            (Value::Null, _) => {}
            (Value::String(s), Text::Some(text)) => text.push_str(&s),
            (Value::String(s), _) => *self = Text::Some(s),
            _ => return Err(GiveUp),
        }
        Ok(())
    }

    fn into_value(self) -> Option<Value> {
        match self {
            Text::Absent => None,
            Text::Null => Some(Value::Null),
            Text::Some(s) => Some(Value::String(s)),
        }
    }
}

// ---------------------------------------------------------------------------
// OpenAI chat completions

#[derive(Default)]
struct OpenAiParts {
    id: Option<Value>,
    created: Option<Value>,
    model: Option<Value>,
    service_tier: Option<Value>,
    system_fingerprint: Option<Value>,
    /// In the order first seen; sorted by index at the end.
    choices: Vec<ChoiceParts>,
    usage: Option<Value>,
    done: bool,
}

#[derive(Default)]
struct ChoiceParts {
    index: u64,
    role: Option<Value>,
    content: Text,
    refusal: Text,
    annotations: Option<Vec<Value>>,
    tool_calls: Option<Vec<ToolCallParts>>,
    logprobs: Value,
    finish_reason: Option<Value>,
}

struct ToolCallParts {
    index: u64,
    id: Option<Value>,
    name: Option<Value>,
    arguments: String,
}

impl OpenAiParts {
    fn event(&mut self, event: &sse::Event<'_>) -> Step {
        check(!self.done && event.event.is_none())?;
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(data) else {
            return Err(GiveUp);
        };
        for (key, value) in chunk {
            match key.as_str() {
                "id" => keep_first(&mut self.id, value),
                "created" => keep_first(&mut self.created, value),
                "model" => keep_first(&mut self.model, value),
                "service_tier" => keep_first(&mut self.service_tier, value),
                "system_fingerprint" => keep_first(&mut self.system_fingerprint, value),
                "object" => check(value == "chat.completion.chunk")?,
                "choices" => {
                    let Value::Array(choices) = value else {
                        return Err(GiveUp);
                    };
                    for choice in choices {
                        self.choice(choice)?;
                    }
                }
                "usage" if value.is_object() => self.usage = Some(value),
                // Random padding some providers add to every chunk.
                "obfuscation" => {}
                _ => check(value.is_null())?,
            }
        }
        Ok(())
    }

    fn choice(&mut self, choice: Value) -> Step {
        let Value::Object(choice) = choice else {
            return Err(GiveUp);
        };
        let index = choice.get("index").and_then(Value::as_u64).ok_or(GiveUp)?;
        let parts = self.choice_parts(index)?;
        for (key, value) in choice {
            match key.as_str() {
                "index" => {}
                "delta" => parts.delta(value)?,
                "logprobs" => merge_logprobs(&mut parts.logprobs, value)?,
                "finish_reason" if !value.is_null() => parts.finish_reason = Some(value),
                _ => check(value.is_null())?,
            }
        }
        Ok(())
    }

    fn choice_parts(&mut self, index: u64) -> Result<&mut ChoiceParts, GiveUp> {
        let at = match self.choices.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                check(self.choices.len() < MAX_PARTS)?;
                self.choices.push(ChoiceParts {
                    index,
                    ..ChoiceParts::default()
                });
                self.choices.len() - 1
            }
        };
        Ok(&mut self.choices[at])
    }

    fn finish(mut self) -> Option<Value> {
        let complete = self.done
            && self.usage.is_some()
            && !self.choices.is_empty()
            && self.choices.iter().all(|c| c.finish_reason.is_some());
        if !complete {
            return None;
        }
        self.choices.sort_by_key(|c| c.index);
        let mut out = Map::new();
        out.insert("id".into(), self.id?);
        out.insert("object".into(), "chat.completion".into());
        out.insert("created".into(), self.created?);
        out.insert("model".into(), self.model?);
        let choices = self.choices.into_iter().map(ChoiceParts::finish).collect();
        out.insert("choices".into(), Value::Array(choices));
        out.insert("usage".into(), self.usage?);
        if let Some(tier) = self.service_tier {
            out.insert("service_tier".into(), tier);
        }
        if let Some(fingerprint) = self.system_fingerprint {
            out.insert("system_fingerprint".into(), fingerprint);
        }
        Some(Value::Object(out))
    }
}

/// Envelope members repeat on every chunk; the first non-null one stands.
fn keep_first(slot: &mut Option<Value>, value: Value) {
    if slot.as_ref().is_none_or(Value::is_null) {
        *slot = Some(value);
    }
}

impl ChoiceParts {
    fn delta(&mut self, delta: Value) -> Step {
        let Value::Object(delta) = delta else {
            return check(delta.is_null());
        };
        for (key, value) in delta {
            match key.as_str() {
                "role" if !value.is_null() => self.role = Some(value),
                "content" => self.content.add(value)?,
                "refusal" => self.refusal.add(value)?,
                "annotations" => {
                    let Value::Array(more) = value else {
                        return check(value.is_null());
                    };
                    self.annotations.get_or_insert_default().extend(more);
                }
                "tool_calls" => {
                    let Value::Array(calls) = value else {
                        return check(value.is_null());
                    };
                    let known = self.tool_calls.get_or_insert_default();
                    for call in calls {
                        tool_call_delta(known, call)?;
                    }
                }
                _ => check(value.is_null())?,
            }
        }
        Ok(())
    }

    fn finish(self) -> Value {
        let mut message = Map::new();
        let role = self.role.unwrap_or_else(|| "assistant".into());
        message.insert("role".into(), role);
        let content = self.content.into_value().unwrap_or(Value::Null);
        message.insert("content".into(), content);
        if let Some(refusal) = self.refusal.into_value() {
            message.insert("refusal".into(), refusal);
        }
        if let Some(annotations) = self.annotations {
            message.insert("annotations".into(), Value::Array(annotations));
        }
        if let Some(mut calls) = self.tool_calls {
            calls.sort_by_key(|c| c.index);
            let calls = calls.into_iter().map(ToolCallParts::finish).collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut choice = Map::new();
        choice.insert("index".into(), self.index.into());
        choice.insert("message".into(), Value::Object(message));
        choice.insert("logprobs".into(), self.logprobs);
        choice.insert(
            "finish_reason".into(),
            self.finish_reason.unwrap_or_default(),
        );
        Value::Object(choice)
    }
}

/// Merges one `tool_calls[]` delta: the id and name come with the first
/// delta of a call, the arguments arrive in pieces.
fn tool_call_delta(calls: &mut Vec<ToolCallParts>, delta: Value) -> Step {
    let Value::Object(delta) = delta else {
        return Err(GiveUp);
    };
    let index = delta.get("index").and_then(Value::as_u64).ok_or(GiveUp)?;
    let at = match calls.iter().position(|c| c.index == index) {
        Some(at) => at,
        None => {
            check(calls.len() < MAX_PARTS)?;
            calls.push(ToolCallParts {
                index,
                id: None,
                name: None,
                arguments: String::new(),
            });
            calls.len() - 1
        }
    };
    let call = &mut calls[at];
    for (key, value) in delta {
        match key.as_str() {
            "index" => {}
            "id" => keep_first(&mut call.id, value),
            "type" => check(value.is_null() || value == "function")?,
            "function" => {
                let Value::Object(function) = value else {
                    return check(value.is_null());
                };
                for (key, value) in function {
                    match (key.as_str(), value) {
                        ("name", value) => keep_first(&mut call.name, value),
                        ("arguments", Value::String(piece)) => call.arguments.push_str(&piece),
                        (_, value) => check(value.is_null())?,
                    }
                }
            }
            _ => check(value.is_null())?,
        }
    }
    Ok(())
}

impl ToolCallParts {
    fn finish(self) -> Value {
        let mut function = Map::new();
        function.insert("name".into(), self.name.unwrap_or_default());
        function.insert("arguments".into(), self.arguments.into());
        let mut call = Map::new();
        call.insert("id".into(), self.id.unwrap_or_default());
        call.insert("type".into(), "function".into());
        call.insert("function".into(), Value::Object(function));
        Value::Object(call)
    }
}

/// Log probabilities come per chunk; their lists (`content`, `refusal`)
/// are concatenated.
fn merge_logprobs(into: &mut Value, more: Value) -> Step {
    let Value::Object(more) = more else {
        return check(more.is_null());
    };
    if into.is_null() {
        *into = Value::Object(Map::new());
    }
    let Value::Object(into) = into else {
        return Err(GiveUp);
    };
    for (key, value) in more {
        match (into.get_mut(&key), value) {
            (Some(Value::Array(list)), Value::Array(items)) => list.extend(items),
            (Some(_), Value::Null) => {}
            (Some(old), value) if old.is_null() => *old = value,
            (None, value) => {
                into.insert(key, value);
            }
            _ => return Err(GiveUp),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Anthropic messages

#[derive(Default)]
struct AnthropicParts {
    /// `message_start`'s message; its `content` is filled in at the end.
    message: Option<Map<String, Value>>,
    blocks: Vec<Block>,
    stopped: bool,
}

struct Block {
    value: Map<String, Value>,
    /// `input_json_delta` pieces, parsed into `input` when the block stops.
    partial_json: String,
    open: bool,
}

impl AnthropicParts {
    fn event(&mut self, event: &sse::Event<'_>) -> Step {
        let data = event.data.trim();
        if data.is_empty() {
            // An event with nothing in it says nothing, whatever its name.
            return Ok(());
        }
        let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(data) else {
            return Err(GiveUp);
        };
        let name = match data.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err(GiveUp),
        };
        check(event.event.is_none_or(|e| e == name))?;
        check(!self.stopped || name == "ping")?;
        if name != "message_start" && name != "ping" {
            check(self.message.is_some())?;
        }
        match name.as_str() {
            "ping" => Ok(()),
            "message_start" => self.start(data.remove("message")),
            "content_block_start" => self.block_start(&mut data),
            "content_block_delta" => self.block_delta(&mut data),
            "content_block_stop" => self.block_stop(&data),
            "message_delta" => self.message_delta(&mut data),
            "message_stop" => {
                self.stopped = true;
                Ok(())
            }
            // "error" and event types this code does not know.
            _ => Err(GiveUp),
        }
    }

    fn start(&mut self, message: Option<Value>) -> Step {
        check(self.message.is_none())?;
        let Some(Value::Object(message)) = message else {
            return Err(GiveUp);
        };
        check(
            message
                .get("content")
                .is_some_and(|c| c == &Value::Array(Vec::new())),
        )?;
        self.message = Some(message);
        Ok(())
    }

    fn block_start(&mut self, data: &mut Map<String, Value>) -> Step {
        check(index_of(data) == Some(self.blocks.len()) && self.blocks.len() < MAX_PARTS)?;
        check(self.blocks.last().is_none_or(|b| !b.open))?;
        let Some(Value::Object(block)) = data.remove("content_block") else {
            return Err(GiveUp);
        };
        self.blocks.push(Block {
            value: block,
            partial_json: String::new(),
            open: true,
        });
        Ok(())
    }

    fn open_block(&mut self, data: &Map<String, Value>) -> Result<&mut Block, GiveUp> {
        let index = index_of(data).ok_or(GiveUp)?;
        match self.blocks.get_mut(index) {
            Some(block) if block.open => Ok(block),
            _ => Err(GiveUp),
        }
    }

    fn block_delta(&mut self, data: &mut Map<String, Value>) -> Step {
        let Some(Value::Object(mut delta)) = data.remove("delta") else {
            return Err(GiveUp);
        };
        let block = self.open_block(data)?;
        let kind = match delta.get("type") {
            Some(Value::String(t)) => t.as_str(),
            _ => return Err(GiveUp),
        };
        let (member, value) = match kind {
            "text_delta" => ("text", delta.remove("text")),
            "thinking_delta" => ("thinking", delta.remove("thinking")),
            "signature_delta" => ("signature", delta.remove("signature")),
            "input_json_delta" => {
                let Some(Value::String(piece)) = delta.remove("partial_json") else {
                    return Err(GiveUp);
                };
                block.partial_json.push_str(&piece);
                return Ok(());
            }
            "citations_delta" => {
                let citation = delta.remove("citation").ok_or(GiveUp)?;
                let list = block
                    .value
                    .entry("citations")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if list.is_null() {
                    *list = Value::Array(Vec::new());
                }
                let Value::Array(list) = list else {
                    return Err(GiveUp);
                };
                list.push(citation);
                return Ok(());
            }
            _ => return Err(GiveUp),
        };
        let Some(Value::String(piece)) = value else {
            return Err(GiveUp);
        };
        append_text(&mut block.value, member, &piece)
    }

    fn block_stop(&mut self, data: &Map<String, Value>) -> Step {
        let block = self.open_block(data)?;
        block.open = false;
        if !block.partial_json.is_empty() {
            let input = serde_json::from_str::<Value>(&block.partial_json).map_err(|_| GiveUp)?;
            block.value.insert("input".into(), input);
            block.partial_json = String::new();
        }
        Ok(())
    }

    fn message_delta(&mut self, data: &mut Map<String, Value>) -> Step {
        let message = self.message.as_mut().ok_or(GiveUp)?;
        if let Some(delta) = data.remove("delta") {
            let Value::Object(delta) = delta else {
                return Err(GiveUp);
            };
            message.extend(delta);
        }
        match data.remove("usage") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Object(later)) => {
                let usage = message
                    .entry("usage")
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(usage) = usage else {
                    return Err(GiveUp);
                };
                usage.extend(later.into_iter().filter(|(_, v)| !v.is_null()));
                Ok(())
            }
            Some(_) => Err(GiveUp),
        }
    }

    fn finish(self) -> Option<Value> {
        let mut message = self.message?;
        let complete = self.stopped
            && self.blocks.iter().all(|b| !b.open)
            && message.get("stop_reason").is_some_and(|r| !r.is_null())
            && message.get("usage").is_some_and(Value::is_object);
        if !complete {
            return None;
        }
        let content = self.blocks.into_iter().map(|b| Value::Object(b.value));
        message.insert("content".into(), Value::Array(content.collect()));
        Some(Value::Object(message))
    }
}

fn index_of(data: &Map<String, Value>) -> Option<usize> {
    data.get("index")
        .and_then(Value::as_u64)
        .and_then(|i| usize::try_from(i).ok())
}

/// Appends `piece` to the string member `member` of a block (created if
/// absent).
fn append_text(block: &mut Map<String, Value>, member: &str, piece: &str) -> Step {
    let slot = block
        .entry(member)
        .or_insert_with(|| Value::String(String::new()));
    let Value::String(text) = slot else {
        return Err(GiveUp);
    };
    text.push_str(piece);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assemble(protocol: Protocol, stream: &str, piece_len: usize) -> Option<Value> {
        let mut a = Assembler::new(protocol, 1 << 20);
        for piece in stream.as_bytes().chunks(piece_len.max(1)) {
            a.feed(&Bytes::copy_from_slice(piece));
        }
        a.finish()
    }

    fn openai_chunk(choices: Value, usage: Option<Value>) -> String {
        let mut chunk = json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7,
            "model": "gpt-4o-mini", "service_tier": "default", "system_fingerprint": "fp_1",
            "choices": choices,
        });
        if let Some(u) = usage {
            chunk["usage"] = u;
        }
        format!("data: {chunk}\n\n")
    }

    fn usage() -> Value {
        json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    }

    fn openai_text_stream() -> String {
        [
            openai_chunk(
                json!([{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]),
                Some(Value::Null),
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"content":"Hello "},"logprobs":null,"finish_reason":null}]),
                Some(Value::Null),
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"content":"wörld"},"logprobs":null,"finish_reason":null}]),
                Some(Value::Null),
            ),
            openai_chunk(
                json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]),
                Some(Value::Null),
            ),
            openai_chunk(json!([]), Some(usage())),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat()
    }

    #[test]
    fn openai_text_stream_becomes_a_chat_completion_however_it_is_cut() {
        let want = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello wörld", "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": usage(), "service_tier": "default", "system_fingerprint": "fp_1",
        });
        let stream = openai_text_stream();
        for piece_len in [1, 3, 50, 100_000] {
            assert_eq!(
                assemble(Protocol::Openai, &stream, piece_len),
                Some(want.clone())
            );
        }
        let mut a = Assembler::new(Protocol::Openai, 1 << 20);
        for event in stream.split_inclusive("\n\n") {
            a.feed_event(event.as_bytes());
        }
        assert_eq!(a.finish(), Some(want));
    }

    #[test]
    fn openai_tool_calls_merge_by_index_and_choices_stay_apart() {
        let stream = [
            openai_chunk(
                json!([{"index":1,"delta":{"role":"assistant","content":"B"},"finish_reason":null}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[
                    {"index":0,"id":"call_a","type":"function","function":{"name":"get","arguments":""}}]},"finish_reason":null}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"tool_calls":[
                    {"index":1,"id":"call_b","type":"function","function":{"name":"put","arguments":"{\"x\""}}]}}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":2}"}}]}}]),
                None,
            ),
            openai_chunk(
                json!([{"index":1,"delta":{"content":"b"},"finish_reason":"length"}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{},"finish_reason":"tool_calls"}]),
                None,
            ),
            openai_chunk(json!([]), Some(usage())),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let got = assemble(Protocol::Openai, &stream, 17).expect("assembled");
        assert_eq!(
            got["choices"],
            json!([
                {"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get", "arguments": "{\"q\":1}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "put", "arguments": "{\"x\":2}"}},
                ]}, "logprobs": null, "finish_reason": "tool_calls"},
                {"index": 1, "message": {"role": "assistant", "content": "Bb"}, "logprobs": null, "finish_reason": "length"},
            ])
        );
    }

    #[test]
    fn openai_logprobs_are_concatenated() {
        let lp = |t: &str| json!({"content": [{"token": t, "logprob": -0.5}], "refusal": null});
        let stream = [
            openai_chunk(
                json!([{"index":0,"delta":{"content":"a"},"logprobs":lp("a")}]),
                None,
            ),
            openai_chunk(
                json!([{"index":0,"delta":{"content":"b"},"logprobs":lp("b"),"finish_reason":"stop"}]),
                None,
            ),
            openai_chunk(json!([]), Some(usage())),
            "data: [DONE]\n\n".into(),
        ]
        .concat();
        let got = assemble(Protocol::Openai, &stream, 1000).expect("assembled");
        assert_eq!(
            got["choices"][0]["logprobs"],
            json!({"content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -0.5}], "refusal": null})
        );
    }

    #[test]
    fn openai_streams_that_are_not_complete_answers_are_not_assembled() {
        let good = openai_text_stream();
        let cases: Vec<(&str, String)> = vec![
            ("no [DONE]", good.replace("data: [DONE]\n\n", "")),
            ("cut inside an event", good[..good.len() - 5].to_string()),
            ("no usage", good.replace(&openai_chunk(json!([]), Some(usage())), "")),
            (
                "no finish_reason",
                good.replace("\"finish_reason\":\"stop\"", "\"finish_reason\":null"),
            ),
            (
                "an error event",
                good.replace(
                    "data: [DONE]",
                    "data: {\"error\":{\"type\":\"server_error\",\"message\":\"x\"}}\n\ndata: [DONE]",
                ),
            ),
            (
                "unparsable JSON",
                good.replace("\"content\":\"Hello \"", "\"content\":\"Hello \"}"),
            ),
            (
                "an unknown delta member with content",
                good.replace("\"content\":\"Hello \"", "\"audio\":{\"id\":\"a\"}"),
            ),
            (
                "a chunk after [DONE]",
                good.clone() + &openai_chunk(json!([]), None),
            ),
            (
                "a named event",
                good.replace("data: [DONE]", "event: x\ndata: {}"),
            ),
        ];
        for (what, stream) in cases {
            assert_ne!(stream, good, "{what}: the case changes the stream");
            assert_eq!(assemble(Protocol::Openai, &stream, 64), None, "{what}");
        }
        assert!(assemble(Protocol::Openai, &good, 64).is_some());
    }

    #[test]
    fn openai_padding_and_null_members_are_ignored() {
        let stream = openai_text_stream().replace(
            "\"object\":",
            "\"obfuscation\":\"Zq3\",\"citations\":null,\"object\":",
        );
        assert!(assemble(Protocol::Openai, &stream, 64).is_some());
    }

    #[test]
    fn the_byte_cap_gives_up() {
        let stream = openai_text_stream();
        for cap in [stream.len() - 1, 10] {
            let mut a = Assembler::new(Protocol::Openai, cap);
            for piece in stream.as_bytes().chunks(40) {
                a.feed(&Bytes::copy_from_slice(piece));
            }
            assert!(a.gave_up());
            assert_eq!(a.finish(), None, "cap {cap}");
        }
        let mut a = Assembler::new(Protocol::Openai, stream.len());
        a.feed(&Bytes::from(stream));
        assert!(a.finish().is_some());
    }

    fn named(name: &str, data: Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn anthropic_stream() -> String {
        [
            named(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",
                "model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,
                "usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"output_tokens":1,"service_tier":"standard"}}}),
            ),
            named(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
            ),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n".into(),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me "}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"think."}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}),
            ),
            named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":0}),
            ),
            named(
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Calling "}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ünïcode"}}),
            ),
            named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":1}),
            ),
            named(
                "content_block_start",
                json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"get","input":{}}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}),
            ),
            named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ris\", \"n\": [1]}"}}),
            ),
            named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":2}),
            ),
            named(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
                "usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":42,"server_tool_use":{"web_search_requests":1}}}),
            ),
            named("message_stop", json!({"type":"message_stop"})),
        ]
        .concat()
    }

    #[test]
    fn anthropic_stream_becomes_a_message() {
        let want = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
                {"type": "text", "text": "Calling ünïcode"},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris", "n": [1]}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5,
                      "output_tokens": 42, "service_tier": "standard", "server_tool_use": {"web_search_requests": 1}},
        });
        for piece_len in [1, 13, 100_000] {
            assert_eq!(
                assemble(Protocol::Anthropic, &anthropic_stream(), piece_len),
                Some(want.clone()),
                "pieces of {piece_len}"
            );
        }
    }

    #[test]
    fn anthropic_streams_that_are_not_complete_answers_are_not_assembled() {
        let good = anthropic_stream();
        let stop = named("message_stop", json!({"type":"message_stop"}));
        let cases: Vec<(&str, String)> = vec![
            ("no message_stop", good.replace(&stop, "")),
            (
                "an error event",
                good.replace(
                    &stop,
                    &named(
                        "error",
                        json!({"type":"error","error":{"type":"overloaded_error","message":"x"}}),
                    ),
                ),
            ),
            (
                "an unknown event with content",
                good.replace(
                    &stop,
                    &(named("surprise", json!({"type":"surprise","x":1})) + &stop),
                ),
            ),
            (
                "an unknown delta type",
                good.replace("\"text_delta\"", "\"fancy_delta\""),
            ),
            (
                "tool input that is not JSON",
                good.replace("ris\\\", \\\"n", "ris\\\" \\\"n"),
            ),
            (
                "a block never stopped",
                good.replace(
                    &named(
                        "content_block_stop",
                        json!({"type":"content_block_stop","index":1}),
                    ),
                    "",
                ),
            ),
            (
                "no stop_reason",
                good.replace("\"tool_use\",\"stop_sequence\"", "null,\"stop_sequence\""),
            ),
            (
                "event name and type disagree",
                good.replacen("event: content_block_delta", "event: content_block_stop", 1),
            ),
            (
                "unparsable JSON",
                good.replacen("{\"type\":\"ping\"}", "{\"type\":", 1),
            ),
        ];
        for (what, stream) in cases {
            assert_ne!(stream, good, "{what}: the case changes the stream");
            assert_eq!(assemble(Protocol::Anthropic, &stream, 64), None, "{what}");
        }
        let with_empty_unknown = good.replace(&stop, &format!("event: later\ndata:\n\n{stop}"));
        assert!(assemble(Protocol::Anthropic, &with_empty_unknown, 64).is_some());
    }

    #[test]
    fn anthropic_citations_are_collected() {
        let stream = anthropic_stream().replace(
            &named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":1}),
            ),
            &(named(
                "content_block_delta",
                json!({"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"c"}}}),
            ) + &named(
                "content_block_stop",
                json!({"type":"content_block_stop","index":1}),
            )),
        );
        let got = assemble(Protocol::Anthropic, &stream, 64).expect("assembled");
        assert_eq!(
            got["content"][1]["citations"],
            json!([{"type":"char_location","cited_text":"c"}])
        );
    }
}
