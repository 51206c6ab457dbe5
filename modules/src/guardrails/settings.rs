//! `[modules.guardrails]`: which detectors run, what each side does when
//! one fires, and the operator's deny rules — plain data (compared, stored,
//! patched through the admin API); [`super::Guard`] is its compiled form.

use crate::invalid::Invalid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a side (request or response) does with PII a detector found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Replace each match with a typed placeholder (`[EMAIL_1]`).
    #[default]
    Redact,
    /// Refuse the request (or cut the response) naming the rule.
    Block,
    /// Do not look: no detector runs on this side.
    Off,
}

/// The side(s) the deny rules apply to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyOn {
    /// Requests and responses.
    #[default]
    Both,
    Request,
    Response,
}

impl DenyOn {
    pub fn request(self) -> bool {
        self != DenyOn::Response
    }

    pub fn response(self) -> bool {
        self != DenyOn::Request
    }
}

/// A PII detector family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Email,
    Phone,
    Card,
    Ssn,
    Iban,
    Ip,
    Secret,
}

impl Rule {
    /// Every detector, in the order overlapping matches are preferred.
    pub const ALL: [Rule; 7] = [
        Rule::Secret,
        Rule::Email,
        Rule::Iban,
        Rule::Card,
        Rule::Ssn,
        Rule::Ip,
        Rule::Phone,
    ];

    /// The rule's name in settings, findings and refusals (`"email"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Email => "email",
            Rule::Phone => "phone",
            Rule::Card => "card",
            Rule::Ssn => "ssn",
            Rule::Iban => "iban",
            Rule::Ip => "ip",
            Rule::Secret => "secret",
        }
    }

    /// The placeholder's tag (`EMAIL` in `[EMAIL_1]`).
    pub fn tag(self) -> &'static str {
        match self {
            Rule::Email => "EMAIL",
            Rule::Phone => "PHONE",
            Rule::Card => "CARD",
            Rule::Ssn => "SSN",
            Rule::Iban => "IBAN",
            Rule::Ip => "IP",
            Rule::Secret => "SECRET",
        }
    }
}

/// Extra rules for one client key (by key id), on top of the global ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyRules {
    /// Regular expressions refused for this key (request and response).
    pub deny: Vec<String>,
    /// Literal strings refused for this key (case-insensitive).
    pub deny_literals: Vec<String>,
    /// Replaces the global `max_input_tokens` for this key.
    pub max_input_tokens: Option<u64>,
}

/// `[modules.guardrails]`. Off by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// What a PII match in a request does.
    pub pii_action: Action,
    /// What a PII match in a response does.
    pub response_pii_action: Action,
    /// The detectors that run (default: all).
    pub rules: Vec<Rule>,
    /// Regular expressions refused everywhere (request and response).
    pub deny: Vec<String>,
    /// Literal strings refused everywhere (case-insensitive).
    pub deny_literals: Vec<String>,
    /// Where `deny`, `deny_literals` and the keys' own deny rules apply:
    /// `both` (default), `request` or `response`.
    pub deny_on: DenyOn,
    /// The most input tokens a request may carry, estimated as text bytes
    /// / 4 rounded up; absent: no limit.
    pub max_input_tokens: Option<u64>,
    /// Text beyond this many bytes per request (or response) cannot be
    /// scanned: it is refused.
    pub scan_limit_bytes: u64,
    /// Per client key id: extra deny rules and a `max_input_tokens` override.
    pub keys: BTreeMap<String, KeyRules>,
}

/// The most a scan limit may be (64 MiB): request bodies are bounded well
/// below it anyway.
pub const MAX_SCAN_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            pii_action: Action::Redact,
            response_pii_action: Action::Redact,
            rules: Rule::ALL.to_vec(),
            deny: Vec::new(),
            deny_literals: Vec::new(),
            deny_on: DenyOn::Both,
            max_input_tokens: None,
            scan_limit_bytes: 4 * 1024 * 1024,
            keys: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Checks ranges and compiles every regular expression; the error names
    /// the member (`deny`, `keys`).
    pub fn validate(&self) -> Result<(), Invalid> {
        super::Guard::build(self).map(|_| ())
    }

    /// Range checks that need no compiling (called by `Guard::build`).
    pub(crate) fn check_ranges(&self) -> Result<(), Invalid> {
        if !(1..=MAX_SCAN_LIMIT_BYTES).contains(&self.scan_limit_bytes) {
            return Err(Invalid::new(
                "scan_limit_bytes",
                format!("must be between 1 and {MAX_SCAN_LIMIT_BYTES}"),
            ));
        }
        if self.max_input_tokens == Some(0) {
            return Err(Invalid::new(
                "max_input_tokens",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        for (key, rules) in &self.keys {
            if key.is_empty() {
                return Err(Invalid::new("keys", "a key id must not be empty"));
            }
            if rules.max_input_tokens == Some(0) {
                return Err(Invalid::new(
                    "keys",
                    format!("{key}.max_input_tokens must be at least 1"),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for rule in &self.rules {
            if !seen.insert(*rule) {
                return Err(Invalid::new(
                    "rules",
                    format!("{} is listed twice", rule.as_str()),
                ));
            }
        }
        Ok(())
    }
}
