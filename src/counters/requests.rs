//! The per-request series of `/metrics`: requests, their durations, the
//! tokens they used and what they cost, by endpoint, provider and model.
//!
//! Recorded in one place: the writer, once the batch holding a request's
//! trace has committed (`store/writer.rs`), from the trace and the cost the
//! writer assessed for it. So every traced request — success, refusal,
//! cache hit, upstream error, broken stream — is counted exactly once, off
//! the request path, and the totals are the sums of the rows in the
//! database. (Requests refused before authentication beyond their address's
//! sample leave no trace: they are in `tollgate_auth_failures_total` and
//! `tollgate_auth_throttled_total` only; a record the database refuses for
//! good is in `tollgate_writer_records_failed_total` only.)
//!
//! Cardinality rule: every label value comes from a bounded set.
//! * `endpoint`: one of the proxied routes ([`ENDPOINTS`]).
//! * `provider`: a provider of the config, or `none` (refused before
//!   routing).
//! * `model`: the resolved model when the price table prices it or its
//!   provider's `models` lists it; any other name is `other` (a
//!   `provider/name` target passes any name a client chooses); `none`
//!   before routing.
//! * `status_class`: `1xx` .. `5xx` (`other` for anything else).
//! * `kind` (tokens): `input`, `output`, `cached_input`, `cache_creation`,
//!   `reasoning`. `module` (refusals): `rate_limit`, `budget`, `breaker`.
//! * `client_key`, the client key id, on requests, tokens and cost only with
//!   `[metrics] per_key_labels = true` (keys are made by the operator, so
//!   bounded by the keys table; `none` without a key).
//!
//! Money stays integer: the cost counter counts micro-cents (1e-8 USD),
//! added as the integers the ledger assessed.

use crate::trace::{ErrorKind, Trace};
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::RwLock;

/// The proxied routes: the only `endpoint` label values (else `other`).
pub const ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/embeddings", "/v1/messages"];

/// The modules whose refusals are counted (`tollgate_module_refusals_total`).
pub const REFUSING_MODULES: [&str; 3] = ["rate_limit", "budget", "breaker"];

/// Request and time-to-first-byte buckets (seconds): an LLM answer takes
/// from a few milliseconds (a cache hit, a refusal) to minutes (a long
/// generation).
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0,
    60.0, 120.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn label(enc: &mut LabelSetEncoder, name: &'static str, value: &str) -> fmt::Result {
    (name, value).encode(enc.encode_label())
}

/// `{provider, model}`, both already bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub model: String,
}

impl EncodeLabelSet for Target {
    fn encode(&self, enc: &mut LabelSetEncoder) -> fmt::Result {
        label(enc, "provider", &self.provider)?;
        label(enc, "model", &self.model)
    }
}

/// The client key label, present only with per-key labels on.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key(Option<String>);

impl EncodeLabelSet for Key {
    fn encode(&self, enc: &mut LabelSetEncoder) -> fmt::Result {
        match &self.0 {
            Some(key) => label(enc, "client_key", key),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RequestLabels {
    endpoint: &'static str,
    target: Target,
    status_class: &'static str,
    key: Key,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> fmt::Result {
        label(enc, "endpoint", self.endpoint)?;
        self.target.encode(enc)?;
        label(enc, "status_class", self.status_class)?;
        self.key.encode(enc)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TokenLabels {
    target: Target,
    kind: &'static str,
    key: Key,
}

impl EncodeLabelSet for TokenLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> fmt::Result {
        self.target.encode(enc)?;
        label(enc, "kind", self.kind)?;
        self.key.encode(enc)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct CostLabels {
    target: Target,
    key: Key,
}

impl EncodeLabelSet for CostLabels {
    fn encode(&self, enc: &mut LabelSetEncoder) -> fmt::Result {
        self.target.encode(enc)?;
        self.key.encode(enc)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ModuleLabel(&'static str);

impl EncodeLabelSet for ModuleLabel {
    fn encode(&self, enc: &mut LabelSetEncoder) -> fmt::Result {
        label(enc, "module", self.0)
    }
}

type Histograms = Family<Target, Histogram, fn() -> Histogram>;

/// Which values label a request: set once at start from the config.
#[derive(Debug, Default)]
struct LabelRules {
    per_key: bool,
    /// Per provider, the models its `models` list names.
    listed: HashMap<String, HashSet<String>>,
}

/// What one finished request adds to the series, its labels resolved.
#[derive(Debug)]
pub struct Observation {
    endpoint: &'static str,
    target: Target,
    status_class: &'static str,
    key: Key,
    total_s: f64,
    ttfb_s: Option<f64>,
    upstream_s: Option<f64>,
    tokens: [(&'static str, Option<i64>); 5],
    cost_uc: Option<i64>,
    refused_by: Option<&'static str>,
}

/// The per-request families; cheap to clone into a registry (shared
/// handles).
#[derive(Debug)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost_uc: Family<CostLabels, Counter>,
    duration: Histograms,
    ttfb: Histograms,
    upstream: Histograms,
    refusals: Family<ModuleLabel, Counter>,
    rules: RwLock<LabelRules>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let refusals = Family::<ModuleLabel, Counter>::default();
        for module in REFUSING_MODULES {
            let _ = refusals.get_or_create(&ModuleLabel(module));
        }
        RequestMetrics {
            requests: Family::default(),
            tokens: Family::default(),
            cost_uc: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            ttfb: Family::new_with_constructor(latency_histogram),
            upstream: Family::new_with_constructor(latency_histogram),
            refusals,
            rules: RwLock::default(),
        }
    }
}

fn micros_to_seconds(us: i64) -> f64 {
    us.max(0) as f64 / 1e6
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

fn refused_by(kind: Option<ErrorKind>) -> Option<&'static str> {
    match kind? {
        ErrorKind::RateLimited => Some("rate_limit"),
        ErrorKind::BudgetExceeded => Some("budget"),
        ErrorKind::BreakerOpen => Some("breaker"),
        _ => None,
    }
}

impl RequestMetrics {
    /// Sets the label rules: client key labels on or off, and the models
    /// the providers list (labelled by name even when unpriced).
    pub fn configure(&self, per_key: bool, listed: impl IntoIterator<Item = (String, String)>) {
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        rules.per_key = per_key;
        rules.listed.clear();
        for (provider, model) in listed {
            rules.listed.entry(provider).or_default().insert(model);
        }
    }

    /// What `trace` adds, with `cost_uc` the cost assessed for it and
    /// `priced` whether the price table knows its provider and model.
    pub fn observe(&self, trace: &Trace, cost_uc: Option<i64>, priced: bool) -> Observation {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        let provider = trace.provider.as_deref().filter(|p| !p.is_empty());
        let model = match (provider, trace.model_resolved.as_deref()) {
            (Some(p), Some(m)) if priced || rules.listed.get(p).is_some_and(|l| l.contains(m)) => {
                m.to_string()
            }
            (_, Some(m)) if !m.is_empty() => "other".to_string(),
            _ => "none".to_string(),
        };
        let key = rules
            .per_key
            .then(|| trace.client_key_id.clone().unwrap_or_else(|| "none".into()));
        let u = &trace.usage;
        Observation {
            endpoint: ENDPOINTS
                .into_iter()
                .find(|e| *e == trace.endpoint)
                .unwrap_or("other"),
            target: Target {
                provider: provider.unwrap_or("none").to_string(),
                model,
            },
            status_class: status_class(trace.status),
            key: Key(key),
            total_s: micros_to_seconds(trace.total_us),
            ttfb_s: trace.ttfb_us.map(micros_to_seconds),
            upstream_s: trace.upstream_us.map(micros_to_seconds),
            tokens: [
                ("input", u.input_tokens),
                ("output", u.output_tokens),
                ("cached_input", u.cached_input_tokens),
                ("cache_creation", u.cache_creation_input_tokens),
                ("reasoning", u.reasoning_tokens),
            ],
            cost_uc,
            refused_by: refused_by(trace.error_kind),
        }
    }

    /// Adds a committed request to the series.
    pub fn record(&self, o: Observation) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: o.endpoint,
                target: o.target.clone(),
                status_class: o.status_class,
                key: o.key.clone(),
            })
            .inc();
        self.duration.get_or_create(&o.target).observe(o.total_s);
        if let Some(s) = o.ttfb_s {
            self.ttfb.get_or_create(&o.target).observe(s);
        }
        if let Some(s) = o.upstream_s {
            self.upstream.get_or_create(&o.target).observe(s);
        }
        for (kind, n) in o.tokens {
            if let Some(n) = n {
                self.tokens
                    .get_or_create(&TokenLabels {
                        target: o.target.clone(),
                        kind,
                        key: o.key.clone(),
                    })
                    .inc_by(n.max(0) as u64);
            }
        }
        if let Some(uc) = o.cost_uc {
            self.cost_uc
                .get_or_create(&CostLabels {
                    target: o.target,
                    key: o.key,
                })
                .inc_by(uc.max(0) as u64);
        }
        if let Some(module) = o.refused_by {
            self.refusals.get_or_create(&ModuleLabel(module)).inc();
        }
    }

    /// Puts the families (shared handles) into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tollgate_requests",
            "Proxied requests traced, by endpoint, provider, model (bounded: see the docs) and status class",
            self.requests.clone(),
        );
        registry.register(
            "tollgate_request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            self.duration.clone(),
        );
        registry.register(
            "tollgate_ttfb_seconds",
            "Time from a request's arrival to the first byte of its response to the client",
            self.ttfb.clone(),
        );
        registry.register(
            "tollgate_upstream_duration_seconds",
            "Time from sending a request to the upstream that answered it to the end of that answer",
            self.upstream.clone(),
        );
        registry.register(
            "tollgate_tokens",
            "Tokens the upstreams reported, by kind (output includes reasoning; input includes cached_input and cache_creation)",
            self.tokens.clone(),
        );
        registry.register(
            "tollgate_cost_microcents",
            "Assessed cost of requests in micro-cents (1e-8 USD), an integer count; unknown costs are not included",
            self.cost_uc.clone(),
        );
        registry.register(
            "tollgate_module_refusals",
            "Requests refused by a module: rate_limit (429), budget (402), breaker (503, every target open)",
            self.refusals.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &RequestMetrics) -> String {
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).unwrap();
        out
    }

    fn trace(model: &str) -> Trace {
        let mut t = Trace::new("/v1/chat/completions", 0);
        t.provider = Some("openai".into());
        t.model_resolved = Some(model.into());
        t.status = 200;
        t.client_key_id = Some("key-1".into());
        t
    }

    #[test]
    fn unknown_models_are_other_listed_and_priced_ones_named() {
        let m = RequestMetrics::default();
        m.configure(false, [("openai".to_string(), "listed".to_string())]);
        for (model, priced) in [
            ("listed", false),
            ("priced", true),
            ("client-made-up", false),
        ] {
            m.record(m.observe(&trace(model), Some(0), priced));
        }
        let out = text(&m);
        for model in ["listed", "priced", "other"] {
            assert!(out.contains(&format!(
                "tollgate_requests_total{{endpoint=\"/v1/chat/completions\",provider=\"openai\",model=\"{model}\",status_class=\"2xx\"}} 1"
            )), "{out}");
        }
        assert!(!out.contains("client-made-up"), "{out}");
        assert!(!out.contains("client_key="), "{out}");
    }

    #[test]
    fn per_key_labels_only_when_configured() {
        let m = RequestMetrics::default();
        m.configure(true, []);
        m.record(m.observe(&trace("gpt"), Some(1_234), true));
        let out = text(&m);
        assert!(
            out.contains("tollgate_cost_microcents_total{provider=\"openai\",model=\"gpt\",client_key=\"key-1\"} 1234"),
            "{out}"
        );
    }
}
