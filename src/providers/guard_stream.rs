//! Guardrails inside a streamed answer: the stream is re-framed into whole
//! SSE events and the text each event carries is replaced by what the
//! guardrails' [`StreamText`] releases, so that a value split over several
//! events (a card number in three `delta.content` pieces) is still found.
//!
//! One [`StreamText`] per piece of text the client reassembles: OpenAI
//! `choices[i].delta.content` and each `delta.tool_calls[j].function.arguments`;
//! Anthropic each content block's `text_delta` or `input_json_delta`. Every
//! event keeps its shape — an event whose text is held back goes out with
//! an empty text, which both SDKs accumulate as nothing — and the held-back
//! tail (at most `LOOK_BEHIND` bytes of text per [`StreamText`]) is released
//! before the event that ends its choice or block: OpenAI appends it to the
//! `finish_reason` chunk's delta, Anthropic sends it as one more delta
//! before `content_block_stop`. Whatever is still held at `[DONE]` /
//! `message_stop` goes out in one more chunk / delta before it.
//!
//! OpenAI `logprobs` spell the text out token by token and cannot be
//! redacted with it: they are replaced by `null`.
//!
//! Fails closed: an event that is not UTF-8, a text-carrying event that is
//! not JSON, or an event larger than the scan limit is a [`Refusal`], as
//! is a block or deny rule firing. Everything else (usage chunks, pings,
//! `message_delta`, errors) passes byte for byte.

use super::sse::{self, Piece, SseSplitter};
use crate::config::Protocol;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tollgate_modules::guardrails::{Findings, Guard, Refusal, ResponseShape, StreamText};

/// Which text of a choice (OpenAI) or content block (Anthropic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// `delta.content` / `text_delta`.
    Text,
    /// A tool call's arguments (OpenAI: by tool-call index) / `input_json_delta`.
    Arguments(u64),
}

pub struct GuardStream {
    protocol: Protocol,
    guard: Arc<Guard>,
    key_id: String,
    splitter: SseSplitter,
    pieces: Vec<Piece>,
    /// The texts still open, by choice / block index.
    open: BTreeMap<(u64, Part), StreamText>,
    /// The findings of the texts already finished.
    finished: Findings,
    /// OpenAI: the first chunk's envelope (id, model...), for a chunk that
    /// carries only held-back text.
    envelope: Option<Map<String, Value>>,
}

fn unscannable(reason: &str) -> Refusal {
    Refusal::Unscannable {
        reason: reason.to_string(),
    }
}

impl GuardStream {
    /// `max_event_bytes`: the largest event scanned; a larger one is refused.
    pub fn new(
        protocol: Protocol,
        guard: Arc<Guard>,
        key_id: &str,
        max_event_bytes: usize,
    ) -> GuardStream {
        GuardStream {
            protocol,
            guard,
            key_id: key_id.to_string(),
            splitter: SseSplitter::new(max_event_bytes),
            pieces: Vec::new(),
            open: BTreeMap::new(),
            finished: Findings::default(),
            envelope: None,
        }
    }

    /// Takes the next bytes of the stream; appends what the client may get.
    /// An internal error (a panic in the rules) is a refusal, never a pass.
    pub fn feed(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) -> Result<(), Refusal> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.feed_events(chunk, out)
        }))
        .unwrap_or_else(|_| Err(unscannable("internal error")))
    }

    fn feed_events(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) -> Result<(), Refusal> {
        let mut pieces = std::mem::take(&mut self.pieces);
        self.splitter.push(chunk, &mut pieces);
        let mut result = Ok(());
        for piece in pieces.drain(..) {
            result = match piece {
                Piece::Event(raw) => self.event(raw, out),
                Piece::Oversized(_) => Err(unscannable("a stream event beyond the scan limit")),
            };
            if result.is_err() {
                break;
            }
        }
        pieces.clear();
        self.pieces = pieces;
        result
    }

    /// The stream ended: releases any text still held. Bytes that never
    /// became a whole event are dropped, as an SSE client would drop them.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), Refusal> {
        self.splitter.take_rest();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.flush_all(out)))
            .unwrap_or_else(|_| Err(unscannable("internal error")))
    }

    /// Everything found so far (counts only).
    pub fn findings(&self) -> Findings {
        let mut all = self.finished.clone();
        for text in self.open.values() {
            all.merge(text.findings());
        }
        all
    }

    /// The final message of the answer (a non-stream body, assembled for the
    /// cache) redacted as the stream was; `None` when it cannot be.
    pub fn redact_message(&self, body: &[u8]) -> Option<Bytes> {
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let shape = match self.protocol {
            Protocol::Openai => ResponseShape::ChatCompletions,
            Protocol::Anthropic => ResponseShape::Messages,
        };
        self.guard
            .inspect_response(&self.key_id, shape, &mut value)
            .ok()?;
        serde_json::to_vec(&value).ok().map(Bytes::from)
    }

    fn event(&mut self, raw: Bytes, out: &mut Vec<Bytes>) -> Result<(), Refusal> {
        if std::str::from_utf8(&raw).is_err() {
            return Err(unscannable("a stream event that is not UTF-8"));
        }
        let event = sse::parse(&raw);
        if event.data.is_empty() {
            out.push(raw);
            return Ok(());
        }
        let name = event.event.map(str::to_string);
        let data = event.data.into_owned();
        match self.protocol {
            Protocol::Openai => self.openai(raw, &data, out),
            Protocol::Anthropic => self.anthropic(raw, name, &data, out),
        }
    }

    fn push(&mut self, at: (u64, Part), text: &str) -> Result<String, Refusal> {
        let (guard, key_id) = (&self.guard, &self.key_id);
        self.open
            .entry(at)
            .or_insert_with(|| guard.stream_text(key_id))
            .push(text)
    }

    /// Finishes the open texts of choice / block `index`: their tails.
    fn finish_index(&mut self, index: u64) -> Result<Vec<(Part, String)>, Refusal> {
        let parts: Vec<(u64, Part)> = self
            .open
            .range((index, Part::Text)..=(index, Part::Arguments(u64::MAX)))
            .map(|(k, _)| *k)
            .collect();
        let mut tails = Vec::new();
        for at in parts {
            if let Some(mut text) = self.open.remove(&at) {
                let tail = text.finish();
                self.finished.merge(text.findings());
                let tail = tail?;
                if !tail.is_empty() {
                    tails.push((at.1, tail));
                }
            }
        }
        Ok(tails)
    }

    fn flush_all(&mut self, out: &mut Vec<Bytes>) -> Result<(), Refusal> {
        let indexes: Vec<u64> = self.open.keys().map(|k| k.0).collect();
        let mut last = None;
        for index in indexes {
            if last == Some(index) {
                continue;
            }
            last = Some(index);
            let tails = self.finish_index(index)?;
            if tails.is_empty() {
                continue;
            }
            match self.protocol {
                Protocol::Openai => {
                    let mut chunk = self.envelope.clone().unwrap_or_default();
                    let mut choice = json!({"index": index, "delta": {}, "finish_reason": null});
                    append_openai_tails(&mut choice, tails);
                    chunk.insert("choices".into(), Value::Array(vec![choice]));
                    out.push(frame(None, &Value::Object(chunk)));
                }
                Protocol::Anthropic => {
                    for (part, tail) in tails {
                        out.push(anthropic_delta(index, part, tail));
                    }
                }
            }
        }
        Ok(())
    }

    fn openai(&mut self, raw: Bytes, data: &str, out: &mut Vec<Bytes>) -> Result<(), Refusal> {
        if data == "[DONE]" {
            self.flush_all(out)?;
            out.push(raw);
            return Ok(());
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            return Err(unscannable("a stream event that is not JSON"));
        };
        let Some(Value::Array(mut choices)) = chunk.remove("choices") else {
            out.push(raw);
            return Ok(());
        };
        if self.envelope.is_none() {
            let mut envelope = chunk.clone();
            envelope.remove("usage");
            self.envelope = Some(envelope);
        }
        let mut touched = false;
        for (pos, choice) in choices.iter_mut().enumerate() {
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            if let Some(Value::String(text)) = choice.pointer_mut("/delta/content") {
                *text = self.push((index, Part::Text), text)?;
                touched = true;
            }
            if let Some(Value::Array(calls)) = choice.pointer_mut("/delta/tool_calls") {
                for (at, call) in calls.iter_mut().enumerate() {
                    let tool = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(at as u64);
                    if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                        *args = self.push((index, Part::Arguments(tool)), args)?;
                        touched = true;
                    }
                }
            }
            // Log probabilities spell the text out token by token: they
            // cannot be redacted with it, so they do not pass.
            if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
                choice["logprobs"] = Value::Null;
                touched = true;
            }
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                let tails = self.finish_index(index)?;
                touched |= !tails.is_empty();
                append_openai_tails(choice, tails);
            }
        }
        if !touched {
            out.push(raw);
            return Ok(());
        }
        chunk.insert("choices".into(), Value::Array(choices));
        out.push(frame(None, &Value::Object(chunk)));
        Ok(())
    }

    fn anthropic(
        &mut self,
        raw: Bytes,
        name: Option<String>,
        data: &str,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Refusal> {
        let parsed = || match serde_json::from_str::<Value>(data) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(unscannable("a stream event that is not JSON")),
        };
        let (name, mut value) = match name {
            Some(name) => (name, None),
            None => {
                let v = parsed()?;
                let name = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                (name, Some(v))
            }
        };
        let label = Some(name.as_str());
        match name.as_str() {
            "content_block_delta" => {
                let mut v = match value.take() {
                    Some(v) => v,
                    None => parsed()?,
                };
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let (part, field) = match v.pointer("/delta/type").and_then(Value::as_str) {
                    Some("text_delta") => (Part::Text, "text"),
                    Some("input_json_delta") => (Part::Arguments(0), "partial_json"),
                    _ => {
                        out.push(raw);
                        return Ok(());
                    }
                };
                if let Some(Value::String(text)) = v.get_mut("delta").and_then(|d| d.get_mut(field))
                {
                    *text = self.push((index, part), text)?;
                }
                out.push(frame(label, &v));
            }
            "content_block_start" => {
                let mut v = match value.take() {
                    Some(v) => v,
                    None => parsed()?,
                };
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                match v.pointer_mut("/content_block/text") {
                    Some(Value::String(text)) if !text.is_empty() => {
                        *text = self.push((index, Part::Text), text)?;
                        out.push(frame(label, &v));
                    }
                    _ => out.push(raw),
                }
            }
            "content_block_stop" => {
                let v = match value.take() {
                    Some(v) => v,
                    None => parsed()?,
                };
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                for (part, tail) in self.finish_index(index)? {
                    out.push(anthropic_delta(index, part, tail));
                }
                out.push(raw);
            }
            "message_stop" => {
                self.flush_all(out)?;
                out.push(raw);
            }
            _ => out.push(raw),
        }
        Ok(())
    }
}

/// Puts held-back tails into an OpenAI choice's delta (the text after its
/// `content`, the arguments after their tool call's).
fn append_openai_tails(choice: &mut Value, tails: Vec<(Part, String)>) {
    for (part, tail) in tails {
        let Some(choice) = choice.as_object_mut() else {
            return;
        };
        let delta = choice
            .entry("delta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !delta.is_object() {
            *delta = Value::Object(Map::new());
        }
        let Some(delta) = delta.as_object_mut() else {
            return;
        };
        match part {
            Part::Text => {
                let before = delta.get("content").and_then(Value::as_str).unwrap_or("");
                let joined = format!("{before}{tail}");
                delta.insert("content".into(), Value::String(joined));
            }
            Part::Arguments(tool) => {
                let calls = delta
                    .entry("tool_calls")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !calls.is_array() {
                    *calls = Value::Array(Vec::new());
                }
                let Some(calls) = calls.as_array_mut() else {
                    return;
                };
                let found = calls
                    .iter_mut()
                    .find(|c| c.get("index").and_then(Value::as_u64) == Some(tool));
                match found.and_then(|c| c.pointer_mut("/function/arguments")) {
                    Some(Value::String(args)) => args.push_str(&tail),
                    _ => calls.push(json!({"index": tool, "function": {"arguments": tail}})),
                }
            }
        }
    }
}

fn anthropic_delta(index: u64, part: Part, tail: String) -> Bytes {
    let delta = match part {
        Part::Text => json!({"type": "text_delta", "text": tail}),
        Part::Arguments(_) => json!({"type": "input_json_delta", "partial_json": tail}),
    };
    frame(
        Some("content_block_delta"),
        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
    )
}

/// One SSE event.
fn frame(event: Option<&str>, data: &Value) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_default();
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n").into(),
        None => format!("data: {data}\n\n").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tollgate_modules::guardrails::Settings;

    const TEXT: &str = "Card 4111 1111 1111 1111 and 5500-0000-0000-0004, mail jane.roe@example.com \
        or call +1 415 555 0132; key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 from 10.0.0.42. \
        ünïcødé ✓ tail";

    /// Compiled once: building the detectors dominates a test case.
    fn guard() -> Arc<Guard> {
        static GUARD: std::sync::OnceLock<Arc<Guard>> = std::sync::OnceLock::new();
        GUARD
            .get_or_init(|| {
                let settings = Settings {
                    enabled: true,
                    ..Settings::default()
                };
                Arc::new(Guard::build(&settings).unwrap())
            })
            .clone()
    }

    /// An upstream stream whose text is cut at `cuts` (byte offsets moved
    /// to character boundaries), one event per piece.
    fn stream(protocol: Protocol, text: &str, cuts: &[usize]) -> String {
        let mut at: Vec<usize> = cuts
            .iter()
            .map(|&c| {
                let mut c = c % (text.len() + 1);
                while !text.is_char_boundary(c) {
                    c -= 1;
                }
                c
            })
            .collect();
        at.push(0);
        at.push(text.len());
        at.sort();
        at.dedup();
        let pieces = at.windows(2).map(|w| &text[w[0]..w[1]]);
        let mut out = String::new();
        match protocol {
            Protocol::Openai => {
                let chunk = |choice: Value| {
                    format!(
                        "data: {}\n\n",
                        json!({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})
                    )
                };
                out += &chunk(
                    json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
                );
                for p in pieces {
                    out +=
                        &chunk(json!({"index": 0, "delta": {"content": p}, "finish_reason": null}));
                }
                out += &chunk(json!({"index": 0, "delta": {}, "finish_reason": "stop"}));
                out += "data: [DONE]\n\n";
            }
            Protocol::Anthropic => {
                out += "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n";
                out += "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
                for p in pieces {
                    out += &format!(
                        "event: content_block_delta\ndata: {}\n\n",
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
                    );
                }
                out += "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
                out += "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
            }
        }
        out
    }

    /// Feeds `raw` in reads of `read` bytes; the text the client assembles.
    fn through(protocol: Protocol, raw: &str, read: usize) -> (String, Findings) {
        let mut g = GuardStream::new(protocol, guard(), "k", 1 << 20);
        let mut out = Vec::new();
        for piece in raw.as_bytes().chunks(read.max(1)) {
            g.feed(&Bytes::copy_from_slice(piece), &mut out).unwrap();
        }
        g.finish(&mut out).unwrap();
        let body: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
        let body = String::from_utf8(body).unwrap();
        let mut text = String::new();
        for event in body.split("\n\n").filter(|e| !e.is_empty()) {
            let data = sse::parse(event.as_bytes()).data.into_owned();
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(&data).expect("every event stays JSON");
            let piece = v
                .pointer("/choices/0/delta/content")
                .or_else(|| v.pointer("/delta/text"));
            if let Some(p) = piece.and_then(Value::as_str) {
                text.push_str(p);
            }
        }
        (text, g.findings())
    }

    #[test]
    fn the_unsplit_answer_is_redacted() {
        for protocol in [Protocol::Openai, Protocol::Anthropic] {
            let (text, findings) = through(protocol, &stream(protocol, TEXT, &[]), 1 << 20);
            assert!(!text.contains("4111"), "{text}");
            assert!(!text.contains("jane.roe"), "{text}");
            assert!(text.ends_with("ünïcødé ✓ tail"), "{text}");
            assert!(findings.redacted > 0);
        }
    }

    #[test]
    fn a_refusal_stops_the_stream() {
        let settings = Settings {
            enabled: true,
            response_pii_action: tollgate_modules::guardrails::Action::Block,
            ..Settings::default()
        };
        let mut g = GuardStream::new(
            Protocol::Openai,
            Arc::new(Guard::build(&settings).unwrap()),
            "k",
            1 << 20,
        );
        let raw = stream(Protocol::Openai, TEXT, &[7, 13, 19]);
        let mut out = Vec::new();
        let fed = g
            .feed(&Bytes::from(raw), &mut out)
            .and_then(|()| g.finish(&mut out));
        assert!(matches!(fed, Err(Refusal::Blocked { .. })), "{fed:?}");
        let sent: Vec<u8> = out.iter().flat_map(|b| b.to_vec()).collect();
        assert!(!String::from_utf8_lossy(&sent).contains("4111"));
    }

    #[test]
    fn an_event_that_cannot_be_read_is_refused() {
        let mut g = GuardStream::new(Protocol::Openai, guard(), "k", 64);
        let mut out = Vec::new();
        let bad = g.feed(
            &Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}\n\n"),
            &mut out,
        );
        assert!(matches!(bad, Err(Refusal::Unscannable { .. })));
        let mut g = GuardStream::new(Protocol::Openai, guard(), "k", 64);
        let big = format!("data: {}\n\n", "x".repeat(100));
        assert!(matches!(
            g.feed(&Bytes::from(big), &mut out),
            Err(Refusal::Unscannable { .. })
        ));
        let mut g = GuardStream::new(Protocol::Anthropic, guard(), "k", 1024);
        let not_json = Bytes::from_static(b"event: content_block_delta\ndata: {oops\n\n");
        assert!(matches!(
            g.feed(&not_json, &mut out),
            Err(Refusal::Unscannable { .. })
        ));
        assert!(out.is_empty(), "nothing unscanned went out");
    }

    proptest! {
        /// However the text is cut into events and the stream into reads,
        /// the client assembles exactly the redacted unsplit answer.
        #[test]
        fn random_event_splits_redact_like_the_unsplit_answer(
            cuts in proptest::collection::vec(0usize..400, 0..40),
            read in 1usize..300,
            anthropic in any::<bool>(),
        ) {
            let protocol = if anthropic { Protocol::Anthropic } else { Protocol::Openai };
            let (whole, whole_findings) = through(protocol, &stream(protocol, TEXT, &[]), 1 << 20);
            let (split, split_findings) = through(protocol, &stream(protocol, TEXT, &cuts), read);
            prop_assert_eq!(split, whole);
            prop_assert_eq!(split_findings, whole_findings);
        }
    }
}
