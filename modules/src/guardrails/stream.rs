//! A streamed text (one choice's content, one content block…) inspected
//! piece by piece as it passes: PII redacted across piece boundaries with
//! a bounded held-back tail, deny rules checked over a sliding window.

use super::deny::Deny;
use super::redact::{HOLD, Redactor, Scan};
use super::{Action, Findings, Guard, Refusal};
use std::sync::Arc;

/// A streamed text under inspection.
#[derive(Debug)]
pub struct StreamText {
    guard: Arc<Guard>,
    key_id: String,
    scan: Scan,
    redactor: Redactor,
    /// Bytes pushed so far (against the scan limit).
    seen: u64,
    /// The last [`HOLD`] bytes pushed, for deny matches across pieces.
    deny_tail: String,
    /// Once refused, refused for good.
    refused: Option<Refusal>,
}

impl StreamText {
    pub(super) fn new(guard: Arc<Guard>, key_id: &str) -> StreamText {
        let block = guard.settings.response_pii_action == Action::Block;
        StreamText {
            guard,
            key_id: key_id.to_string(),
            scan: Scan::default(),
            redactor: Redactor::new(block),
            seen: 0,
            deny_tail: String::new(),
            refused: None,
        }
    }

    /// Feeds the next piece of text; returns the text safe to emit now
    /// (possibly shorter than given: a tail of at most
    /// [`super::LOOK_BEHIND`] bytes that could still become a match is held
    /// back). Err: block mode fired, a deny rule matched, or the text went
    /// past the scan limit.
    pub fn push(&mut self, text: &str) -> Result<String, Refusal> {
        self.step(text, false)
    }

    /// End of the text: the held-back tail, redacted.
    pub fn finish(&mut self) -> Result<String, Refusal> {
        self.step("", true)
    }

    pub fn findings(&self) -> &Findings {
        &self.redactor.findings
    }

    fn step(&mut self, text: &str, last: bool) -> Result<String, Refusal> {
        if let Some(refusal) = &self.refused {
            return Err(refusal.clone());
        }
        let result = self.inspect(text, last);
        if let Err(refusal) = &result {
            self.refused = Some(refusal.clone());
        }
        result
    }

    fn inspect(&mut self, text: &str, last: bool) -> Result<String, Refusal> {
        let guard = Arc::clone(&self.guard);
        let settings = guard.settings();
        if !settings.enabled {
            return Ok(text.to_string());
        }
        self.seen = self.seen.saturating_add(text.len() as u64);
        guard.within_scan_limit(self.seen)?;
        let deny: &Deny = guard
            .deny
            .for_side(&self.key_id, settings.deny_on.response());
        let detectors = guard.detectors(settings.response_pii_action);
        if deny.is_empty() && detectors.is_empty() {
            return Ok(text.to_string());
        }
        if !deny.is_empty() && !text.is_empty() {
            self.deny_tail.push_str(text);
            if let Err(refusal) = deny.check(&self.deny_tail) {
                if let Refusal::Denied { rule } = &refusal {
                    *self
                        .redactor
                        .findings
                        .fired
                        .entry(rule.clone())
                        .or_default() += 1;
                }
                return Err(refusal);
            }
            let mut from = self.deny_tail.len().saturating_sub(HOLD);
            while !self.deny_tail.is_char_boundary(from) {
                from -= 1;
            }
            self.deny_tail.drain(..from);
        }
        self.redactor.feed(detectors, &mut self.scan, text, last)
    }
}
