//! The operator's deny rules: regular expressions (one `RegexSet`) and
//! literal strings (one Aho-Corasick automaton, ASCII case-insensitive),
//! global and per client key, compiled once per settings value.

use super::{KeyRules, Refusal, Settings};
use crate::invalid::Invalid;
use aho_corasick::AhoCorasick;
use regex::RegexSet;
use std::collections::BTreeMap;

/// Compiled regexes are capped so that one rule cannot take the proxy's
/// memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One key's (or the global) deny rules.
#[derive(Debug, Default)]
pub(crate) struct Deny {
    regexes: Option<RegexSet>,
    literals: Option<AhoCorasick>,
}

impl Deny {
    fn build(
        regexes: &[&String],
        literals: &[&String],
        field: &str,
        literal_field: &str,
    ) -> Result<Deny, Invalid> {
        for (i, r) in regexes.iter().enumerate() {
            let one = regex::RegexBuilder::new(r)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    Invalid::new(
                        field,
                        format!("deny[{i}] is not a valid regular expression: {e}"),
                    )
                })?;
            if one.is_match("") {
                return Err(Invalid::new(
                    field,
                    format!("deny[{i}] matches the empty text (it would refuse everything)"),
                ));
            }
        }
        if literals.iter().any(|l| l.is_empty()) {
            return Err(Invalid::new(
                literal_field,
                "deny_literals must not contain an empty string",
            ));
        }
        let regexes = if regexes.is_empty() {
            None
        } else {
            Some(
                regex::RegexSetBuilder::new(regexes)
                    .size_limit(REGEX_SIZE_LIMIT * 4)
                    .build()
                    .map_err(|e| {
                        Invalid::new(field, format!("deny rules are too large together: {e}"))
                    })?,
            )
        };
        let literals = if literals.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(literals)
                    .map_err(|e| {
                        Invalid::new(field, format!("deny_literals cannot be compiled: {e}"))
                    })?,
            )
        };
        Ok(Deny { regexes, literals })
    }

    pub fn is_empty(&self) -> bool {
        self.regexes.is_none() && self.literals.is_none()
    }

    /// Refuses `text` if a rule matches it.
    pub fn check(&self, text: &str) -> Result<(), Refusal> {
        if self.regexes.as_ref().is_some_and(|s| s.is_match(text)) {
            return Err(Refusal::Denied {
                rule: "deny".into(),
            });
        }
        if self.literals.as_ref().is_some_and(|a| a.is_match(text)) {
            return Err(Refusal::Denied {
                rule: "deny_literals".into(),
            });
        }
        Ok(())
    }
}

/// The global rules and each listed key's (global + its own).
#[derive(Debug, Default)]
pub(crate) struct DenyRules {
    global: Deny,
    keys: BTreeMap<String, Deny>,
    /// No rule: a side `deny_on` leaves out.
    none: Deny,
}

impl DenyRules {
    pub fn build(s: &Settings) -> Result<DenyRules, Invalid> {
        let global = Deny::build(
            &s.deny.iter().collect::<Vec<_>>(),
            &s.deny_literals.iter().collect::<Vec<_>>(),
            "deny",
            "deny_literals",
        )?;
        let mut keys = BTreeMap::new();
        for (
            key,
            KeyRules {
                deny,
                deny_literals,
                ..
            },
        ) in &s.keys
        {
            if deny.is_empty() && deny_literals.is_empty() {
                continue;
            }
            let regexes: Vec<&String> = s.deny.iter().chain(deny).collect();
            let literals: Vec<&String> = s.deny_literals.iter().chain(deny_literals).collect();
            let rules = Deny::build(&regexes, &literals, "keys", "keys")
                .map_err(|e| Invalid::new("keys", format!("{key}: {}", e.reason)))?;
            keys.insert(key.clone(), rules);
        }
        Ok(DenyRules {
            global,
            keys,
            none: Deny::default(),
        })
    }

    /// The rules that apply to `key_id`.
    pub fn for_key(&self, key_id: &str) -> &Deny {
        self.keys.get(key_id).unwrap_or(&self.global)
    }

    /// The rules for `key_id` on a side, none when `deny_on` leaves it out.
    pub fn for_side(&self, key_id: &str, side_on: bool) -> &Deny {
        if side_on {
            self.for_key(key_id)
        } else {
            &self.none
        }
    }
}
