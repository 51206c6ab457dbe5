//! The money side: prices as exact integers, the cost of each request, and
//! the report over them. Money is integer micro-cents everywhere (see
//! `money`); nothing here uses floating point.

pub mod cost;
pub mod money;
pub mod prices;
pub mod report;

use crate::trace::{ServiceTier, Trace};
use prices::{PriceSource, PriceTable, Rates};
use std::sync::{Arc, RwLock};

/// The price table in force, swapped whole on reload so a request is
/// always costed against one consistent table.
#[derive(Clone)]
pub struct PriceBook {
    current: Arc<RwLock<Arc<PriceTable>>>,
}

impl PriceBook {
    pub fn new(table: PriceTable) -> PriceBook {
        PriceBook {
            current: Arc::new(RwLock::new(Arc::new(table))),
        }
    }

    pub fn current(&self) -> Arc<PriceTable> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, table: PriceTable) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

/// How a request's cost came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostStatus {
    /// Computed from the reported usage and a known price.
    Priced,
    /// Some components have no rate (named in `unpriced`): the cost is
    /// that of the priced ones, a lower bound of the bill.
    Partial,
    /// Nothing billable happened (never sent, or the upstream refused it).
    NoCharge,
    /// Tokens are known, the model's price is not (or not for the service
    /// tier the provider served): cost NULL, never 0.
    UnknownPrice,
    /// The upstream may have billed, but reported no usage (the client left
    /// mid-stream, the stream broke before its usage): cost NULL.
    UnknownUsage,
}

impl CostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CostStatus::Priced => "priced",
            CostStatus::Partial => "partial",
            CostStatus::NoCharge => "no_charge",
            CostStatus::UnknownPrice => "unknown_price",
            CostStatus::UnknownUsage => "unknown_usage",
        }
    }
}

/// One row of `costs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostRecord {
    pub trace_id: String,
    pub day: String,
    pub provider: String,
    pub model: String,
    pub client_key_id: String,
    pub status: CostStatus,
    pub cost_uc: Option<i64>,
    /// The rates applied (after long-context and service tiers) and where
    /// the model's price came from.
    pub price: Option<(Rates, PriceSource)>,
    /// The long-context tier applied, as `above_<threshold>`.
    pub price_tier: Option<String>,
    /// The service tier the usage reported, which chose the rates.
    pub service_tier: Option<ServiceTier>,
    /// What could not be priced, comma-separated (`cache_write_1h,web_search`;
    /// `service_tier` when the served tier has no prices).
    pub unpriced: Option<String>,
    /// A cache hit (which costs nothing): what the original answer cost,
    /// i.e. what the hit saved (µ¢). `None` otherwise.
    pub saved_uc: Option<i64>,
}

/// The `unpriced` entry of a request served on a tier with no prices.
pub const UNPRICED_SERVICE_TIER: &str = "service_tier";

/// Costs `trace` against `table`, once, at the record.
pub fn assess(trace: &Trace, table: &PriceTable) -> CostRecord {
    let provider = trace.provider.clone().unwrap_or_default();
    let model = trace.model_resolved.clone().unwrap_or_default();
    let mut record = CostRecord {
        trace_id: trace.id.clone(),
        day: utc_day(trace.started_at_ms),
        provider,
        model,
        client_key_id: trace.client_key_id.clone().unwrap_or_default(),
        status: CostStatus::NoCharge,
        cost_uc: Some(0),
        price: None,
        price_tier: None,
        service_tier: trace.usage.service_tier,
        unpriced: None,
        saved_uc: None,
    };
    if trace
        .cache
        .status
        .is_some_and(crate::trace::CacheStatus::is_hit)
    {
        // Nothing went upstream: no charge, whatever the stored usage says.
        record.saved_uc = trace.cache.saved_uc;
        return record;
    }
    let u = &trace.usage;
    // A served tier without counts (an OpenAI stream cut after its first
    // chunk names its tier) is no usage: it must not price as 0 tokens.
    let counted = crate::trace::Usage {
        service_tier: None,
        ..*u
    };
    if counted.is_empty() {
        let answered_ok = trace
            .upstream_status
            .is_some_and(|s| (200..300).contains(&s));
        let unanswered = trace.upstream_attempted && trace.upstream_status.is_none();
        if answered_ok || unanswered {
            record.status = CostStatus::UnknownUsage;
            record.cost_uc = None;
        }
        return record;
    }
    let Some((price, source)) = table.get(&record.provider, &record.model) else {
        record.status = CostStatus::UnknownPrice;
        record.cost_uc = None;
        return record;
    };
    let tokens = cost::Tokens {
        input: u.input_tokens.unwrap_or(0),
        output: u.output_tokens.unwrap_or(0),
        cached_input: u.cached_input_tokens.unwrap_or(0),
        cache_write: u.cache_creation_input_tokens.unwrap_or(0),
        cache_write_1h: u.cache_write_1h_tokens.unwrap_or(0),
        input_audio: u.input_audio_tokens.unwrap_or(0),
        output_audio: u.output_audio_tokens.unwrap_or(0),
        input_image: u.input_image_tokens.unwrap_or(0),
        web_search_calls: u.web_search_calls.unwrap_or(0),
    };
    let applied = match price.rates_for(tokens.input, u.service_tier) {
        Ok(applied) => applied,
        Err(_) => {
            record.status = CostStatus::UnknownPrice;
            record.cost_uc = None;
            record.unpriced = Some(UNPRICED_SERVICE_TIER.into());
            return record;
        }
    };
    record.price = Some((applied.rates, source));
    record.price_tier = applied.above_input_tokens.map(|n| format!("above_{n}"));
    match cost::cost_uc(&applied.rates, &tokens) {
        Ok(cost) if cost.unpriced.is_empty() => {
            record.status = CostStatus::Priced;
            record.cost_uc = Some(cost.uc);
        }
        Ok(cost) => {
            let names: Vec<&str> = cost.unpriced.iter().map(|c| c.as_str()).collect();
            record.status = CostStatus::Partial;
            record.cost_uc = Some(cost.uc);
            record.unpriced = Some(names.join(","));
        }
        Err(e) => {
            tracing::warn!(trace_id = %trace.id, error = %e, "usage cannot be costed");
            record.status = CostStatus::UnknownUsage;
            record.cost_uc = None;
        }
    }
    record
}

/// `YYYY-MM-DD` (UTC) of a Unix-millisecond time. The writer asks for the
/// same few days over and over, so the last one is remembered per thread.
pub fn utc_day(ms: i64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let days = ms.div_euclid(86_400_000);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != days {
            *last = (days, format_day(ms));
        }
        last.1.clone()
    })
}

fn format_day(ms: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    let format = time::macros::format_description!("[year]-[month]-[day]");
    date.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Usage;

    fn trace(provider: &str, model: &str, usage: Usage) -> Trace {
        let mut t = Trace::new("/v1/chat/completions", 1_763_856_000_000);
        t.provider = Some(provider.into());
        t.model_resolved = Some(model.into());
        t.usage = usage;
        t.upstream_attempted = true;
        t.upstream_status = Some(200);
        t
    }

    #[test]
    fn day_is_utc() {
        assert_eq!(utc_day(1_763_856_000_000), "2025-11-23");
        assert_eq!(utc_day(1_763_855_999_999), "2025-11-22");
        assert_eq!(utc_day(0), "1970-01-01");
    }

    #[test]
    fn statuses() {
        let table = PriceTable::builtin();
        let usage = Usage {
            input_tokens: Some(1000),
            output_tokens: Some(100),
            ..Usage::default()
        };
        let priced = assess(&trace("openai", "gpt-4o-mini", usage), &table);
        // 1000 × 0.15 $/M + 100 × 0.60 $/M = 0.00021 $ = 21,000 µ¢
        assert_eq!(
            (priced.status, priced.cost_uc),
            (CostStatus::Priced, Some(21_000))
        );
        let unknown = assess(&trace("openai", "gpt-unknown", usage), &table);
        assert_eq!(
            (unknown.status, unknown.cost_uc),
            (CostStatus::UnknownPrice, None)
        );
        let mut broken = trace("openai", "gpt-4o-mini", Usage::default());
        assert_eq!(assess(&broken, &table).status, CostStatus::UnknownUsage);
        broken.usage.service_tier = Some(ServiceTier::Default);
        assert_eq!(assess(&broken, &table).status, CostStatus::UnknownUsage);
        broken.upstream_status = Some(429);
        assert_eq!(assess(&broken, &table).cost_uc, Some(0));
        let never_sent = Trace::new("/v1/chat/completions", 0);
        assert_eq!(assess(&never_sent, &table).status, CostStatus::NoCharge);
    }

    #[test]
    fn partial_and_tiered_costs_name_what_they_used() {
        let spec = |toml_src: &str| -> prices::PriceSpec { toml::from_str(toml_src).unwrap() };
        let table = PriceTable::default()
            .with_overrides(
                &std::collections::BTreeMap::from([(
                    "anthropic/m".to_owned(),
                    spec(
                        "input = \"3\"\noutput = \"15\"\ncache_write = \"3.75\"\n\
                     [[tiers]]\nabove_input_tokens = 1000\ninput = \"6\"\n\
                     [service_tiers.priority]\ninput = \"5\"\n",
                    ),
                )]),
                prices::PriceSource::Config,
            )
            .unwrap();
        let usage = Usage {
            input_tokens: Some(500),
            output_tokens: Some(10),
            cache_creation_input_tokens: Some(200),
            cache_write_1h_tokens: Some(100),
            web_search_calls: Some(1),
            ..Usage::default()
        };
        // 300 × 300 + 100 × 375 (5-minute) + 10 × 1500; 1-hour writes and
        // the search call have no rate.
        let partial = assess(&trace("anthropic", "m", usage), &table);
        assert_eq!(partial.status, CostStatus::Partial);
        assert_eq!(partial.cost_uc, Some(90_000 + 37_500 + 15_000));
        assert_eq!(
            partial.unpriced.as_deref(),
            Some("cache_write_1h,web_search")
        );
        assert_eq!(partial.price_tier, None);
        assert_eq!(CostStatus::Partial.as_str(), "partial");

        let long = Usage {
            input_tokens: Some(1001),
            service_tier: Some(ServiceTier::Default),
            ..Usage::default()
        };
        let tiered = assess(&trace("anthropic", "m", long), &table);
        assert_eq!(
            (tiered.status, tiered.cost_uc),
            (CostStatus::Priced, Some(600_600))
        );
        assert_eq!(tiered.price_tier.as_deref(), Some("above_1000"));
        assert_eq!(tiered.service_tier, Some(ServiceTier::Default));
        assert_eq!(tiered.price.map(|p| p.0.input), Some(600_000_000));

        let priority = Usage {
            input_tokens: Some(100),
            service_tier: Some(ServiceTier::Priority),
            ..Usage::default()
        };
        let p = assess(&trace("anthropic", "m", priority), &table);
        assert_eq!((p.status, p.cost_uc), (CostStatus::Priced, Some(50_000)));

        let flex = Usage {
            service_tier: Some(ServiceTier::Flex),
            ..priority
        };
        let unknown = assess(&trace("anthropic", "m", flex), &table);
        assert_eq!(
            (unknown.status, unknown.cost_uc),
            (CostStatus::UnknownPrice, None)
        );
        assert_eq!(unknown.unpriced.as_deref(), Some(UNPRICED_SERVICE_TIER));
        assert_eq!(unknown.service_tier, Some(ServiceTier::Flex));
        assert!(unknown.price.is_none());
    }
}
