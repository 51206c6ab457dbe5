//! The PII detectors: one regular expression per candidate shape, checked
//! after the match (Luhn, mod-97, SSN number rules, JWT header…), run over a
//! text and resolved into non-overlapping hits.
//!
//! Everything here is bounded so that a stream can be scanned piecewise
//! with the same result as the whole text (see `redact`): every pattern
//! matches at most [`MAX_MATCH`] bytes and every check looks at most
//! [`CONTEXT`] bytes around its match. Secrets of any length are matched by
//! a bounded prefix and then *extended* over their token characters.

mod contact;
mod numbers;
mod secret;

pub(crate) use secret::PEM_END_MAX;

/// The PEM footer a PEM hit extends to.
pub(crate) fn secret_pem_end() -> &'static str {
    secret::PEM_END
}

use super::Rule;
use regex::{Regex, RegexSet};

/// The longest match of any pattern (bytes), lookahead included.
pub(crate) const MAX_MATCH: usize = 224;
/// How far a check looks before or after its match (bytes).
pub(crate) const CONTEXT: usize = 4;

/// How a hit goes on past its match.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Extend {
    /// The match is the whole hit.
    None,
    /// Over every following byte of the class (a token's body).
    Token(fn(u8) -> bool),
    /// To the end of the PEM footer (`-----END … PRIVATE KEY-----`), or of
    /// the text.
    Pem,
}

/// A candidate pattern and the check its matches must pass. The check gets
/// the haystack and the match; it returns the range that is PII (within the
/// match), or `None`.
pub(crate) struct Pattern {
    pub rule: Rule,
    pub regex: &'static str,
    pub check: fn(&str, usize, usize) -> Option<(usize, usize)>,
    pub extend: Extend,
}

/// One piece of PII found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub rule: Rule,
    pub extend: Extend,
}

/// What one scan found.
pub(crate) struct Scanned {
    /// The hits, resolved, all before `cut`.
    pub hits: Vec<Hit>,
    /// Every candidate match (checked or not), as byte ranges.
    pub raw: Vec<(usize, usize)>,
    /// Everything before it is decided.
    pub cut: usize,
}

impl Scanned {
    /// Whether what follows a hit ending at `end` could be found
    /// differently once the hit is a placeholder: a candidate reaches into
    /// the [`CONTEXT`] bytes after it.
    pub fn touches(&self, end: usize) -> bool {
        self.raw.iter().any(|(s, e)| *s < end + CONTEXT && *e > end)
    }
}

/// The compiled detectors of the rules that run.
#[derive(Debug)]
pub(crate) struct Detectors {
    patterns: Vec<(Rule, Regex, Check, Extend)>,
    /// All patterns at once: which can match at all (most texts: none).
    set: RegexSet,
}

type Check = fn(&str, usize, usize) -> Option<(usize, usize)>;

fn patterns() -> Vec<Pattern> {
    let mut all = secret::patterns();
    all.extend(contact::email());
    all.extend(numbers::patterns());
    all.extend(contact::phone());
    all
}

impl Detectors {
    /// Detectors for `rules`, in the fixed preference order of
    /// [`Rule::ALL`] (a secret beats an e-mail beats … a phone number when
    /// two start at the same place).
    pub fn new(rules: &[Rule]) -> Detectors {
        let mut chosen: Vec<Pattern> = patterns()
            .into_iter()
            .filter(|p| rules.contains(&p.rule))
            .collect();
        chosen.sort_by_key(|p| Rule::ALL.iter().position(|r| *r == p.rule));
        let set = RegexSet::new(chosen.iter().map(|p| p.regex)).expect("built-in patterns compile");
        let patterns = chosen
            .into_iter()
            .map(|p| {
                (
                    p.rule,
                    Regex::new(p.regex).expect("built-in patterns compile"),
                    p.check,
                    p.extend,
                )
            })
            .collect();
        Detectors { patterns, set }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The hits in `hay[from..]` that start before `limit`, resolved
    /// (earliest first; at one start the preferred rule, then the longer),
    /// and a cut `<= limit` that no candidate straddles: everything before
    /// it is decided whatever text follows `hay`, provided `limit` is at
    /// least [`MAX_MATCH`] before the end of `hay` (or is its end).
    pub fn scan(&self, hay: &str, from: usize, limit: usize) -> Scanned {
        let mut hits = Vec::new();
        let mut raw = Vec::new();
        if from < limit && !self.patterns.is_empty() {
            let active = self.set.matches_at(hay, from);
            for (prio, (rule, re, check, extend)) in self.patterns.iter().enumerate() {
                if !active.matched(prio) {
                    continue;
                }
                let mut pos = from;
                while pos < limit {
                    let Some(m) = re.find_at(hay, pos) else { break };
                    if m.start() >= limit {
                        break;
                    }
                    raw.push((m.start(), m.end()));
                    pos = m.end();
                    if let Some((start, end)) = check(hay, m.start(), m.end()) {
                        hits.push((
                            prio,
                            Hit {
                                start,
                                end,
                                rule: *rule,
                                extend: *extend,
                            },
                        ));
                        pos = end.max(start + 1);
                    }
                }
            }
        }
        let mut cut = limit;
        if limit < hay.len() {
            loop {
                let back = raw
                    .iter()
                    .filter(|(s, e)| *s < cut && cut < *e)
                    .map(|(s, _)| *s)
                    .min();
                match back {
                    Some(s) => cut = s,
                    None => break,
                }
            }
        }
        hits.sort_by_key(|(prio, h)| (h.start, *prio, std::cmp::Reverse(h.end)));
        let mut taken = Vec::new();
        let mut last_end = from;
        for (_, h) in hits {
            if h.start >= cut {
                break;
            }
            if h.start >= last_end {
                last_end = h.end;
                taken.push(h);
            }
        }
        Scanned {
            hits: taken,
            raw,
            cut,
        }
    }
}

/// The byte before `at`, if any.
pub(crate) fn before(hay: &str, at: usize) -> Option<u8> {
    at.checked_sub(1).map(|i| hay.as_bytes()[i])
}

/// The byte at `at`, if any.
pub(crate) fn after(hay: &str, at: usize) -> Option<u8> {
    hay.as_bytes().get(at).copied()
}

pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The texts `rule`'s detector finds in `text` (all rules on).
    pub fn found(text: &str) -> Vec<(Rule, String)> {
        let d = Detectors::new(&Rule::ALL);
        let hits = d.scan(text, 0, text.len()).hits;
        hits.iter()
            .map(|h| (h.rule, text[h.start..h.end].to_string()))
            .collect()
    }

    pub fn finds(rule: Rule, text: &str, want: &str) {
        let got = found(text);
        assert!(
            got.iter().any(|(r, t)| *r == rule && t == want),
            "{rule:?} should find {want:?} in {text:?}; found {got:?}"
        );
    }

    pub fn misses(rule: Rule, text: &str) {
        let got = found(text);
        assert!(
            !got.iter().any(|(r, _)| *r == rule),
            "{rule:?} should find nothing in {text:?}; found {got:?}"
        );
    }

    #[test]
    fn every_pattern_is_bounded() {
        for p in patterns() {
            let re = regex_syntax::parse(p.regex).unwrap();
            let max = re.properties().maximum_len().expect("bounded");
            assert!(
                max + CONTEXT <= MAX_MATCH,
                "{} can match {max} bytes",
                p.regex
            );
        }
    }
}
