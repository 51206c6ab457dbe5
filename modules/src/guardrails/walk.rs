//! Where the text is in each request and response shape. A walk hands
//! every text part to a visitor, which may rewrite it in place.
//!
//! Not text, not scanned: images, audio and file data, and Anthropic
//! `redacted_thinking`. Token arrays (embeddings or legacy completions
//! `input`/`prompt` given as token ids) are handed over as
//! [`Slot::Tokens`]: they carry no readable text, so the guard refuses them
//! while any rule would have to read them, and only counts them otherwise.

use super::{Refusal, RequestShape, ResponseShape};
use serde_json::Value;

/// One text part.
pub(crate) enum Slot<'a> {
    /// Plain text.
    Text(&'a mut String),
    /// A JSON document in a string (tool-call arguments).
    Args(&'a mut String),
    /// A JSON value whose strings are text (Anthropic `tool_use.input`).
    Json(&'a mut Value),
    /// A token array of this many tokens.
    Tokens(usize),
}

pub(crate) type Visit<'v> = dyn FnMut(Slot<'_>) -> Result<(), Refusal> + 'v;

fn text(v: Option<&mut Value>, f: &mut Visit) -> Result<(), Refusal> {
    if let Some(Value::String(s)) = v {
        f(Slot::Text(s))?;
    }
    Ok(())
}

fn args(v: Option<&mut Value>, f: &mut Visit) -> Result<(), Refusal> {
    match v {
        Some(Value::String(s)) => f(Slot::Args(s)),
        Some(v @ (Value::Object(_) | Value::Array(_))) => f(Slot::Json(v)),
        _ => Ok(()),
    }
}

fn each(v: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    match v {
        Some(Value::Array(items)) => items.iter_mut(),
        _ => [].iter_mut(),
    }
}

/// `content` as a string or a list of parts (`text`, `input_text`,
/// `output_text`, `refusal`, Anthropic blocks…).
fn content(v: Option<&mut Value>, f: &mut Visit) -> Result<(), Refusal> {
    match v {
        Some(Value::String(s)) => f(Slot::Text(s)),
        Some(Value::Array(parts)) => parts.iter_mut().try_for_each(|p| part(p, f)),
        _ => Ok(()),
    }
}

/// One content part or block of any protocol.
fn part(p: &mut Value, f: &mut Visit) -> Result<(), Refusal> {
    if let Value::String(s) = p {
        return f(Slot::Text(s));
    }
    let kind = p
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        "tool_use" | "server_tool_use" => args(p.get_mut("input"), f),
        "tool_result" | "web_search_tool_result" => content(p.get_mut("content"), f),
        "thinking" => text(p.get_mut("thinking"), f),
        "document" => {
            let src = p.get_mut("source");
            if src
                .as_ref()
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                == Some("text")
            {
                text(src.and_then(|s| s.get_mut("data")), f)?;
            }
            text(p.get_mut("context"), f)
        }
        "refusal" => text(p.get_mut("refusal"), f),
        "function_call" => args(p.get_mut("arguments"), f),
        "function_call_output" => content(p.get_mut("output"), f),
        "reasoning" => each(p.get_mut("summary")).try_for_each(|s| part(s, f)),
        _ => text(p.get_mut("text"), f),
    }
}

/// `tool_calls[].function.arguments` and legacy `function_call.arguments`.
fn tool_calls(msg: &mut Value, f: &mut Visit) -> Result<(), Refusal> {
    for call in each(msg.get_mut("tool_calls")) {
        args(
            call.get_mut("function")
                .and_then(|c| c.get_mut("arguments")),
            f,
        )?;
    }
    args(
        msg.get_mut("function_call")
            .and_then(|c| c.get_mut("arguments")),
        f,
    )
}

/// A string, a list of strings, or token arrays (`input`, `prompt`).
fn strings_or_tokens(v: Option<&mut Value>, f: &mut Visit) -> Result<(), Refusal> {
    match v {
        Some(Value::String(s)) => f(Slot::Text(s)),
        Some(Value::Array(items)) => {
            if !items.is_empty() && items.iter().all(Value::is_number) {
                return f(Slot::Tokens(items.len()));
            }
            for item in items {
                match item {
                    Value::String(s) => f(Slot::Text(s))?,
                    Value::Array(tokens) => f(Slot::Tokens(tokens.len()))?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(crate) fn request(shape: RequestShape, body: &mut Value, f: &mut Visit) -> Result<(), Refusal> {
    match shape {
        RequestShape::ChatCompletions => {
            for msg in each(body.get_mut("messages")) {
                content(msg.get_mut("content"), f)?;
                text(msg.get_mut("refusal"), f)?;
                tool_calls(msg, f)?;
            }
            Ok(())
        }
        RequestShape::Messages => {
            content(body.get_mut("system"), f)?;
            for msg in each(body.get_mut("messages")) {
                content(msg.get_mut("content"), f)?;
            }
            Ok(())
        }
        RequestShape::Embeddings => strings_or_tokens(body.get_mut("input"), f),
        RequestShape::Completions => {
            strings_or_tokens(body.get_mut("prompt"), f)?;
            text(body.get_mut("suffix"), f)
        }
        RequestShape::Responses => {
            text(body.get_mut("instructions"), f)?;
            match body.get_mut("input") {
                Some(Value::String(s)) => f(Slot::Text(s)),
                Some(Value::Array(items)) => items.iter_mut().try_for_each(|item| {
                    // A message item (with or without `type`) or any other item.
                    if item.get("content").is_some() {
                        content(item.get_mut("content"), f)
                    } else {
                        part(item, f)
                    }
                }),
                _ => Ok(()),
            }
        }
    }
}

pub(crate) fn response(
    shape: ResponseShape,
    body: &mut Value,
    f: &mut Visit,
) -> Result<(), Refusal> {
    match shape {
        ResponseShape::ChatCompletions => {
            for choice in each(body.get_mut("choices")) {
                if let Some(msg) = choice.get_mut("message") {
                    content(msg.get_mut("content"), f)?;
                    text(msg.get_mut("refusal"), f)?;
                    text(msg.get_mut("reasoning_content"), f)?;
                    tool_calls(msg, f)?;
                }
            }
            Ok(())
        }
        ResponseShape::Messages => content(body.get_mut("content"), f),
        ResponseShape::Completions => {
            for choice in each(body.get_mut("choices")) {
                text(choice.get_mut("text"), f)?;
            }
            Ok(())
        }
        ResponseShape::Responses => {
            text(body.get_mut("output_text"), f)?;
            for item in each(body.get_mut("output")) {
                if item.get("content").is_some() {
                    content(item.get_mut("content"), f)?;
                } else {
                    part(item, f)?;
                }
            }
            Ok(())
        }
    }
}

/// Every string inside a JSON value (object keys apart).
pub(crate) fn json_strings(
    v: &mut Value,
    f: &mut dyn FnMut(&mut String) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().try_for_each(|i| json_strings(i, f)),
        Value::Object(map) => map.values_mut().try_for_each(|i| json_strings(i, f)),
        _ => Ok(()),
    }
}
