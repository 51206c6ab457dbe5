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

mod deny;
mod detect;
mod redact;
mod settings;
mod stream;
mod walk;

pub use settings::{Action, DenyOn, KeyRules, MAX_SCAN_LIMIT_BYTES, Rule, Settings};
pub use stream::StreamText;

use deny::{Deny, DenyRules};
use detect::Detectors;
use redact::Redactor;
use walk::Slot;

use crate::invalid::Invalid;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most bytes [`StreamText::push`] holds back: a tail that could still
/// become (part of) a match once more text arrives (256 bytes, plus a
/// candidate match straddling them). A deny rule's match is caught across
/// pieces when at most 256 bytes long.
pub const LOOK_BEHIND: usize = 512;

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
    detectors: Detectors,
    /// No detector: for a side whose PII action is `off`.
    none: Detectors,
    deny: DenyRules,
}

impl Guard {
    /// Compiles `s`; the error names the member that does not hold.
    pub fn build(s: &Settings) -> Result<Guard, Invalid> {
        s.check_ranges()?;
        Ok(Guard {
            settings: s.clone(),
            detectors: Detectors::new(&s.rules),
            none: Detectors::new(&[]),
            deny: DenyRules::build(s)?,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The detectors for a side with `action`.
    fn detectors(&self, action: Action) -> &Detectors {
        if action == Action::Off {
            &self.none
        } else {
            &self.detectors
        }
    }

    /// Request side: every text part of `body` for `shape`, redacted in
    /// place, or the request refused. In order: the scan limit, the token
    /// limit (text bytes / 4 rounded up, plus token arrays' lengths), then
    /// per text part the deny rules and the PII detectors.
    pub fn inspect_request(
        &self,
        key_id: &str,
        shape: RequestShape,
        body: &mut Value,
    ) -> Result<Findings, Refusal> {
        if !self.settings.enabled {
            return Ok(Findings::default());
        }
        let (bytes, tokens) = measure(|f| walk::request(shape, body, f))?;
        self.within_scan_limit(bytes)?;
        let limit = self
            .settings
            .keys
            .get(key_id)
            .and_then(|k| k.max_input_tokens)
            .or(self.settings.max_input_tokens);
        if let Some(limit) = limit {
            let estimated = bytes.div_ceil(4).saturating_add(tokens);
            if estimated > limit {
                return Err(Refusal::TooManyTokens { limit, estimated });
            }
        }
        let action = self.settings.pii_action;
        let deny = self.deny.for_side(key_id, self.settings.deny_on.request());
        self.inspect(deny, action, tokens, |f| walk::request(shape, body, f))
    }

    /// Response side of a non-streamed response, in place: the scan limit,
    /// the deny rules, then the PII detectors.
    pub fn inspect_response(
        &self,
        key_id: &str,
        shape: ResponseShape,
        body: &mut Value,
    ) -> Result<Findings, Refusal> {
        if !self.settings.enabled {
            return Ok(Findings::default());
        }
        let (bytes, _) = measure(|f| walk::response(shape, body, f))?;
        self.within_scan_limit(bytes)?;
        let action = self.settings.response_pii_action;
        let deny = self.deny.for_side(key_id, self.settings.deny_on.response());
        self.inspect(deny, action, 0, |f| walk::response(shape, body, f))
    }

    fn within_scan_limit(&self, bytes: u64) -> Result<(), Refusal> {
        if bytes > self.settings.scan_limit_bytes {
            return Err(Refusal::Unscannable {
                reason: format!(
                    "{bytes} bytes of text exceed scan_limit_bytes ({})",
                    self.settings.scan_limit_bytes
                ),
            });
        }
        Ok(())
    }

    fn inspect(
        &self,
        deny: &Deny,
        action: Action,
        tokens: u64,
        walk: impl FnOnce(&mut walk::Visit) -> Result<(), Refusal>,
    ) -> Result<Findings, Refusal> {
        let detectors = self.detectors(action);
        if deny.is_empty() && detectors.is_empty() {
            return Ok(Findings::default());
        }
        if tokens > 0 {
            return Err(Refusal::Unscannable {
                reason: "token arrays carry no text the guardrails can read".into(),
            });
        }
        let mut r = Redactor::new(action == Action::Block);
        walk(&mut |slot| match slot {
            Slot::Text(s) => one_text(s, deny, detectors, &mut r),
            Slot::Args(s) => match serde_json::from_str::<Value>(s) {
                Ok(mut v @ (Value::Object(_) | Value::Array(_))) => {
                    deny.check(s)?;
                    let before = r.findings.redacted;
                    walk::json_strings(&mut v, &mut |t| one_text(t, deny, detectors, &mut r))?;
                    if r.findings.redacted != before {
                        *s = v.to_string();
                    }
                    Ok(())
                }
                _ => one_text(s, deny, detectors, &mut r),
            },
            Slot::Json(v) => walk::json_strings(v, &mut |t| one_text(t, deny, detectors, &mut r)),
            Slot::Tokens(_) => Ok(()),
        })?;
        Ok(r.findings)
    }

    /// One streamed text (one per choice index / content block).
    pub fn stream_text(self: &Arc<Self>, key_id: &str) -> StreamText {
        StreamText::new(Arc::clone(self), key_id)
    }
}

/// The text bytes and token-array tokens a walk visits.
fn measure(
    walk: impl FnOnce(&mut walk::Visit) -> Result<(), Refusal>,
) -> Result<(u64, u64), Refusal> {
    let (mut bytes, mut tokens) = (0u64, 0u64);
    walk(&mut |slot| {
        match slot {
            Slot::Text(s) | Slot::Args(s) => bytes += s.len() as u64,
            Slot::Json(v) => walk::json_strings(v, &mut |s| {
                bytes += s.len() as u64;
                Ok(())
            })?,
            Slot::Tokens(n) => tokens += n as u64,
        }
        Ok(())
    })?;
    Ok((bytes, tokens))
}

/// Deny rules, then PII, over one text part, rewritten in place.
fn one_text(
    s: &mut String,
    deny: &Deny,
    detectors: &Detectors,
    r: &mut Redactor,
) -> Result<(), Refusal> {
    deny.check(s)?;
    if !detectors.is_empty()
        && let Some(redacted) = r.text(detectors, s)?
    {
        *s = redacted;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
