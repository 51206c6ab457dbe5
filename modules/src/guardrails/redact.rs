//! Replacing PII with placeholders, over a whole text or piece by piece.
//!
//! A text is scanned as a stream even when it comes whole: [`Redactor::feed`]
//! takes the next piece; when more may follow it decides only what no
//! later text can change — everything before a *cut* at least [`HOLD`]
//! bytes before the end that no candidate match straddles —
//! and keeps the rest pending. Since every pattern is bounded
//! ([`detect::MAX_MATCH`]) and a hit that goes on (a secret's body, a PEM
//! block) is followed byte by byte, the pieces' output joined is exactly
//! the whole text's output, however the text was split.

use super::detect::{self, CONTEXT, Detectors, Extend, Hit};
use super::{Findings, Refusal, Rule};
use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Text within this many bytes of the end of what has arrived is not
/// decided yet (more than any pattern's match and lookaround). A held tail
/// is at most this plus one candidate straddling the cut:
/// [`super::LOOK_BEHIND`].
pub(crate) const HOLD: usize = 256;
const _: () = assert!(detect::MAX_MATCH < HOLD && HOLD + detect::MAX_MATCH <= super::LOOK_BEHIND);

static PEM_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(detect::secret_pem_end()).expect("PEM footer pattern compiles"));

/// Where a text's scan stands between pieces.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The last bytes of the output (lookbehind for the checks: after a
    /// hit they see its placeholder, as a second pass over the output
    /// would, which keeps redaction idempotent).
    ctx: String,
    /// Text not yet decided.
    pending: String,
    /// Inside a hit that goes on.
    extending: Option<Extend>,
}

impl Scan {
    /// Bytes held back.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Moves `hay[ctx.len()..n]` out of pending; `emitted` is its output.
    fn advance(&mut self, hay: &str, n: usize, emitted: &str) {
        self.ctx.push_str(emitted);
        let mut from = self.ctx.len().saturating_sub(CONTEXT);
        while !self.ctx.is_char_boundary(from) {
            from -= 1;
        }
        self.ctx.drain(..from);
        self.pending = hay[n..].to_string();
    }
}

/// Text is fed in slices of at most this many bytes, so that the work
/// after each hit (a fresh scan from its end) stays bounded.
const SLICE: usize = 1024;

/// Numbers placeholders (per request or per streamed text) and counts what
/// fired.
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    /// Block instead of redacting.
    pub block: bool,
    seen: HashMap<(Rule, String), u32>,
    next: HashMap<Rule, u32>,
    pub findings: Findings,
}

impl Redactor {
    pub fn new(block: bool) -> Redactor {
        Redactor {
            block,
            ..Redactor::default()
        }
    }

    fn placeholder(&mut self, rule: Rule, text: &str) -> String {
        let n = match self.seen.get(&(rule, text.to_string())) {
            Some(n) => *n,
            None => {
                let next = self.next.entry(rule).or_insert(0);
                *next += 1;
                self.seen.insert((rule, text.to_string()), *next);
                *next
            }
        };
        *self
            .findings
            .fired
            .entry(rule.as_str().to_string())
            .or_default() += 1;
        self.findings.redacted += 1;
        format!("[{}_{n}]", rule.tag())
    }

    /// A whole text, redacted (`None`: nothing found).
    pub fn text(&mut self, det: &Detectors, text: &str) -> Result<Option<String>, Refusal> {
        let before = self.findings.redacted;
        let out = self.feed(det, &mut Scan::default(), text, true)?;
        Ok((self.findings.redacted != before).then_some(out))
    }

    /// The next piece of a text; `last`: no more follows. Returns what is
    /// decided (redacted); the rest stays in `scan`.
    pub fn feed(
        &mut self,
        det: &Detectors,
        scan: &mut Scan,
        mut piece: &str,
        last: bool,
    ) -> Result<String, Refusal> {
        let mut out = String::new();
        loop {
            let mut n = piece.len().min(SLICE);
            while !piece.is_char_boundary(n) {
                n -= 1;
            }
            let (slice, rest) = piece.split_at(n);
            out += &self.feed_slice(det, scan, slice, last && rest.is_empty())?;
            if rest.is_empty() {
                return Ok(out);
            }
            piece = rest;
        }
    }

    fn feed_slice(
        &mut self,
        det: &Detectors,
        scan: &mut Scan,
        piece: &str,
        last: bool,
    ) -> Result<String, Refusal> {
        scan.pending.push_str(piece);
        let mut out = String::new();
        loop {
            let hay = format!("{}{}", scan.ctx, scan.pending);
            let base = scan.ctx.len();
            if let Some(ext) = scan.extending {
                match extend(ext, &hay, base, last) {
                    Some(end) => {
                        scan.extending = None;
                        scan.advance(&hay, end, "");
                        continue;
                    }
                    None => {
                        // Still inside: swallow all but what could begin a
                        // PEM footer.
                        let keep = if matches!(ext, Extend::Pem) {
                            detect::PEM_END_MAX
                        } else {
                            0
                        };
                        let mut end = hay.len().saturating_sub(keep).max(base);
                        while !hay.is_char_boundary(end) {
                            end -= 1;
                        }
                        scan.advance(&hay, end, "");
                        return Ok(out);
                    }
                }
            }
            let limit = if last {
                hay.len()
            } else {
                let Some(mut limit) = hay.len().checked_sub(HOLD) else {
                    return Ok(out);
                };
                while !hay.is_char_boundary(limit) {
                    limit -= 1;
                }
                if limit <= base {
                    return Ok(out);
                }
                limit
            };
            let scanned = det.scan(&hay, base, limit);
            let mut emitted = String::new();
            let mut pos = base;
            let mut restart = false;
            for Hit {
                start,
                end,
                rule,
                extend,
            } in scanned.hits.iter().copied()
            {
                if self.block {
                    *self
                        .findings
                        .fired
                        .entry(rule.as_str().to_string())
                        .or_default() += 1;
                    return Err(Refusal::Blocked {
                        rule: rule.as_str().to_string(),
                    });
                }
                emitted.push_str(&hay[pos..start]);
                emitted.push_str(&self.placeholder(rule, &hay[start..end]));
                pos = end;
                if !matches!(extend, Extend::None) {
                    scan.extending = Some(extend);
                    restart = true;
                } else {
                    // What follows is scanned afresh, after the
                    // placeholder, unless nothing near could change.
                    restart = scanned.touches(end);
                }
                if restart {
                    break;
                }
            }
            let stop = if restart { pos } else { scanned.cut };
            emitted.push_str(&hay[pos..stop]);
            out.push_str(&emitted);
            scan.advance(&hay, stop, &emitted);
            if !restart {
                return Ok(out);
            }
        }
    }
}

/// Where a hit that goes on ends in `hay[from..]`, or `None` when it may go
/// on past the end (only when more text may follow).
fn extend(ext: Extend, hay: &str, from: usize, last: bool) -> Option<usize> {
    let end = match ext {
        Extend::None => Some(from),
        Extend::Token(class) => hay.as_bytes()[from..]
            .iter()
            .position(|b| !class(*b))
            .map(|n| from + n),
        Extend::Pem => PEM_END.find_at(hay, from).map(|m| m.end()),
    };
    match end {
        Some(end) => Some(end),
        None if last => Some(hay.len()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        let det = Detectors::new(&Rule::ALL);
        Redactor::new(false)
            .text(&det, text)
            .unwrap()
            .unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn placeholders_are_typed_and_numbered_by_first_appearance() {
        assert_eq!(
            redact("a@x.com, b@x.com, a@x.com; card 4111 1111 1111 1111"),
            "[EMAIL_1], [EMAIL_2], [EMAIL_1]; card [CARD_1]"
        );
    }

    #[test]
    fn secrets_are_redacted_whole_whatever_their_length() {
        let key = format!("sk-proj-{}", "aB3".repeat(60));
        assert_eq!(redact(&format!("key={key} ok")), "key=[SECRET_1] ok");
        let pem =
            "-----BEGIN PRIVATE KEY-----\nMIIEvQ\nabc==\n-----END PRIVATE KEY-----\nbye a@x.com";
        assert_eq!(redact(pem), "[SECRET_1]\nbye [EMAIL_1]");
        assert_eq!(redact("-----BEGIN EC PRIVATE KEY-----\nMIIE"), "[SECRET_1]");
    }

    #[test]
    fn pieces_give_the_whole_texts_result() {
        let det = Detectors::new(&Rule::ALL);
        let text = format!(
            "{}card 4111 1111 1111 1111 and jane@example.com {} tail",
            "x".repeat(300),
            "y".repeat(400)
        );
        let whole = redact(&text);
        let mut r = Redactor::new(false);
        let mut scan = Scan::default();
        let mut out = String::new();
        for piece in text.as_bytes().chunks(3) {
            out += &r
                .feed(&det, &mut scan, std::str::from_utf8(piece).unwrap(), false)
                .unwrap();
            assert!(scan.pending() <= super::super::LOOK_BEHIND);
        }
        out += &r.feed(&det, &mut scan, "", true).unwrap();
        assert_eq!(out, whole);
        assert!(whole.contains("[CARD_1]") && whole.contains("[EMAIL_1]"));
    }
}
