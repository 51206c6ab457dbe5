//! Model prices: the built-in list, config overrides, and lookup.
//!
//! Prices are written as decimal strings of USD per million tokens (how
//! providers publish them) and parsed exactly into integer micro-cents per
//! million tokens, so `"0.075"` is exactly 7,500,000 and never 0.07499999.
//! The table is built once, shared read-only and replaced whole on reload.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use thiserror::Error;

use super::money::format_usd_exact;
use crate::trace::ServiceTier;

const BUILTIN_PRICES: &str = include_str!("builtin_prices.toml");

/// Decimal places of USD that fit in a micro-cent.
const USD_DECIMALS: usize = 8;

/// The rates one request is priced at, in micro-cents: token rates per
/// million tokens, `web_search_per_1k` per thousand calls.
///
/// `cached_input`, `cache_write` and `input_image` fall back to `input` when
/// `None`; the other optional rates have no fallback: tokens of a kind with no
/// rate are left unpriced (and named), never priced at some other rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub input: i64,
    pub output: i64,
    pub cached_input: Option<i64>,
    /// 5-minute cache writes.
    pub cache_write: Option<i64>,
    pub cache_write_1h: Option<i64>,
    pub input_audio: Option<i64>,
    pub output_audio: Option<i64>,
    pub input_image: Option<i64>,
    pub web_search_per_1k: Option<i64>,
}

/// Rates a long-context or service tier sets; each `None` keeps the base
/// entry's rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateOverrides {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub cached_input: Option<i64>,
    pub cache_write: Option<i64>,
    pub cache_write_1h: Option<i64>,
    pub input_audio: Option<i64>,
    pub output_audio: Option<i64>,
    pub input_image: Option<i64>,
    pub web_search_per_1k: Option<i64>,
}

impl RateOverrides {
    /// `base` with every rate this sets replaced.
    pub fn over(&self, base: Rates) -> Rates {
        Rates {
            input: self.input.unwrap_or(base.input),
            output: self.output.unwrap_or(base.output),
            cached_input: self.cached_input.or(base.cached_input),
            cache_write: self.cache_write.or(base.cache_write),
            cache_write_1h: self.cache_write_1h.or(base.cache_write_1h),
            input_audio: self.input_audio.or(base.input_audio),
            output_audio: self.output_audio.or(base.output_audio),
            input_image: self.input_image.or(base.input_image),
            web_search_per_1k: self.web_search_per_1k.or(base.web_search_per_1k),
        }
    }
}

/// Rates for requests whose input tokens (cached included) exceed
/// `above_input_tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongContextTier {
    pub above_input_tokens: i64,
    pub rates: RateOverrides,
}

/// The price of one model: base rates, long-context tiers (ascending by
/// threshold) and per-service-tier rates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Price {
    /// The default service tier's rates below every long-context threshold.
    pub base: Rates,
    pub tiers: Vec<LongContextTier>,
    pub service_tiers: Vec<(ServiceTier, RateOverrides)>,
}

/// Which rates apply to one request, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub rates: Rates,
    /// The long-context tier's threshold, when one applied.
    pub above_input_tokens: Option<i64>,
}

/// Why no rates apply to a request: the provider served it on a service
/// tier the table has no prices for (or on one with a long-context tier,
/// a combination the table cannot express).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpricedServiceTier(pub ServiceTier);

impl Price {
    /// A price with only the base input and output rates.
    pub fn flat(input: i64, output: i64) -> Price {
        Price {
            base: Rates {
                input,
                output,
                ..Rates::default()
            },
            ..Price::default()
        }
    }

    /// The rates for a request of `input_tokens` (all of them, cached
    /// included) served on `service_tier` (`None`: not reported, priced as
    /// the default tier).
    ///
    /// A reported non-default tier needs its own table; it is never priced
    /// as the default. The table's long-context rates are the default tier's,
    /// so a non-default tier above a long-context threshold is unpriced too.
    pub fn rates_for(
        &self,
        input_tokens: i64,
        service_tier: Option<ServiceTier>,
    ) -> Result<Applied, UnpricedServiceTier> {
        let tier = self
            .tiers
            .iter()
            .rev()
            .find(|t| input_tokens > t.above_input_tokens);
        let base = match service_tier {
            None | Some(ServiceTier::Default) => self.base,
            Some(name) => {
                let found = self.service_tiers.iter().find(|(n, _)| *n == name);
                match found {
                    Some((_, rates)) if tier.is_none() => rates.over(self.base),
                    _ => return Err(UnpricedServiceTier(name)),
                }
            }
        };
        Ok(Applied {
            rates: tier.map_or(base, |t| t.rates.over(base)),
            above_input_tokens: tier.map(|t| t.above_input_tokens),
        })
    }
}

/// Where a table entry came from, shown when listing prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceSource {
    Builtin,
    Config,
    /// Set through the admin API or `tollgate prices import`.
    Database,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Builtin => "builtin",
            PriceSource::Config => "config",
            PriceSource::Database => "database",
        }
    }
}

/// Why a price string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    Empty,
    Negative,
    Exponent,
    Whitespace,
    MultipleDots,
    NotADigit,
    MissingDigits,
    TooPrecise,
    Overflow,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Empty => "empty",
            Malformed::Negative => "must not be negative",
            Malformed::Exponent => "exponent notation is not accepted",
            Malformed::Whitespace => "must not contain whitespace",
            Malformed::MultipleDots => "more than one decimal point",
            Malformed::NotADigit => "expected a decimal number like \"0.15\"",
            Malformed::MissingDigits => "expected digits on both sides of the decimal point",
            Malformed::TooPrecise => "more than 8 decimal places (finer than 1 µ¢ per 1M tokens)",
            Malformed::Overflow => "too large",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PriceError {
    #[error("invalid price {value:?}: {reason}")]
    Invalid { value: String, reason: Malformed },
    #[error("invalid {field} price {value:?}: {reason}")]
    Field {
        field: &'static str,
        value: String,
        reason: Malformed,
    },
    #[error("prices.{key:?}: {error}")]
    Override { key: String, error: Box<PriceError> },
    #[error("prices.{key:?}: key must be \"provider/model\"")]
    OverrideKey { key: String },
    #[error("price table: {provider}/{model}: {error}")]
    Entry {
        provider: String,
        model: String,
        error: Box<PriceError>,
    },
    #[error("price table: {provider}/{model} is listed twice")]
    Duplicate { provider: String, model: String },
    #[error("price table: {0}")]
    Syntax(String),
    #[error("tiers[{index}]: {error}")]
    Tier {
        index: usize,
        error: Box<PriceError>,
    },
    #[error("above_input_tokens is required")]
    MissingThreshold,
    #[error("above_input_tokens must not be negative (got {0})")]
    NegativeThreshold(i64),
    #[error(
        "tiers[{index}].above_input_tokens: {above} must be above the previous tier's {previous} (tiers ascend, no duplicates)"
    )]
    TierOrder {
        index: usize,
        above: i64,
        previous: i64,
    },
    #[error("service_tiers.{name}: {error}")]
    ServiceTier {
        name: String,
        error: Box<PriceError>,
    },
    #[error(
        "service_tiers.{name:?}: unknown service tier (expected flex, priority, scale or batch)"
    )]
    UnknownServiceTier { name: String },
    #[error("above_input_tokens belongs in a long-context tier ([[…tiers]]), not a service tier")]
    ThresholdInServiceTier,
}

/// Parses an exact decimal string of USD per million tokens into micro-cents
/// per million tokens: `"0.15"` → 15,000,000.
///
/// Only plain non-negative decimals are accepted (`"3"`, `"0.075"`); signs,
/// exponents, whitespace, `"1."` and `".5"` are rejected, as are digits finer
/// than a micro-cent unless they are zeros.
pub fn parse_usd_per_million(s: &str) -> Result<i64, PriceError> {
    parse_decimal(s).map_err(|reason| PriceError::Invalid {
        value: s.to_owned(),
        reason,
    })
}

fn parse_decimal(s: &str) -> Result<i64, Malformed> {
    if s.is_empty() {
        return Err(Malformed::Empty);
    }
    if s.starts_with('-') {
        return Err(Malformed::Negative);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(Malformed::Whitespace);
    }
    let numeric = |c: char| c.is_ascii_digit() || c == '.';
    // Only blame the exponent when it is the sole thing wrong ("1e-3", not "free").
    if s.contains(['e', 'E']) && s.chars().all(|c| numeric(c) || "eE+-".contains(c)) {
        return Err(Malformed::Exponent);
    }
    if !s.chars().all(numeric) {
        return Err(Malformed::NotADigit);
    }
    if s.matches('.').count() > 1 {
        return Err(Malformed::MultipleDots);
    }
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || (s.contains('.') && frac.is_empty()) {
        return Err(Malformed::MissingDigits);
    }
    let (frac, beyond) = frac.split_at(frac.len().min(USD_DECIMALS));
    if beyond.bytes().any(|b| b != b'0') {
        return Err(Malformed::TooPrecise);
    }
    // Right-pad the fraction to exactly 8 digits, so "0.5" reads as 50000000.
    let padding = std::iter::repeat_n(b'0', USD_DECIMALS - frac.len());
    whole
        .bytes()
        .chain(frac.bytes())
        .chain(padding)
        .try_fold(0i64, |acc, digit| {
            acc.checked_mul(10)?.checked_add(i64::from(digit - b'0'))
        })
        .ok_or(Malformed::Overflow)
}

/// A price as written in config, the built-in table and the database:
/// decimal strings of USD per 1M tokens (web search: per 1,000 calls).
/// The format is described in `config.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub cached_input: Option<String>,
    #[serde(default)]
    pub cache_write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_per_1k: Option<String>,
    /// Long-context tiers, ascending by `above_input_tokens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<RateSpec>,
    /// Rates by service tier name (`flex`, `priority`, `scale`, `batch`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tiers: BTreeMap<String, RateSpec>,
}

/// A long-context tier (`above_input_tokens` required) or a service tier
/// (`above_input_tokens` not allowed): rates that replace the base entry's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above_input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_per_1k: Option<String>,
}

fn rate(field: &'static str, value: &str) -> Result<i64, PriceError> {
    parse_decimal(value).map_err(|reason| PriceError::Field {
        field,
        value: value.to_owned(),
        reason,
    })
}

fn optional(field: &'static str, value: &Option<String>) -> Result<Option<i64>, PriceError> {
    value.as_deref().map(|v| rate(field, v)).transpose()
}

/// The service tiers a price table can name (`default` is the base entry).
fn service_tier_named(name: &str) -> Option<ServiceTier> {
    match name {
        "flex" => Some(ServiceTier::Flex),
        "priority" => Some(ServiceTier::Priority),
        "scale" => Some(ServiceTier::Scale),
        "batch" => Some(ServiceTier::Batch),
        _ => None,
    }
}

impl RateSpec {
    fn parse(&self) -> Result<RateOverrides, PriceError> {
        Ok(RateOverrides {
            input: optional("input", &self.input)?,
            output: optional("output", &self.output)?,
            cached_input: optional("cached_input", &self.cached_input)?,
            cache_write: optional("cache_write", &self.cache_write)?,
            cache_write_1h: optional("cache_write_1h", &self.cache_write_1h)?,
            input_audio: optional("input_audio", &self.input_audio)?,
            output_audio: optional("output_audio", &self.output_audio)?,
            input_image: optional("input_image", &self.input_image)?,
            web_search_per_1k: optional("web_search_per_1k", &self.web_search_per_1k)?,
        })
    }
}

impl From<&Price> for PriceSpec {
    /// The spec that parses back to `price`: how a price in force is shown.
    fn from(price: &Price) -> PriceSpec {
        let usd = |uc: Option<i64>| uc.map(format_usd_exact);
        let overrides = |above: Option<i64>, r: &RateOverrides| RateSpec {
            above_input_tokens: above,
            input: usd(r.input),
            output: usd(r.output),
            cached_input: usd(r.cached_input),
            cache_write: usd(r.cache_write),
            cache_write_1h: usd(r.cache_write_1h),
            input_audio: usd(r.input_audio),
            output_audio: usd(r.output_audio),
            input_image: usd(r.input_image),
            web_search_per_1k: usd(r.web_search_per_1k),
        };
        let b = &price.base;
        PriceSpec {
            input: format_usd_exact(b.input),
            output: format_usd_exact(b.output),
            cached_input: usd(b.cached_input),
            cache_write: usd(b.cache_write),
            cache_write_1h: usd(b.cache_write_1h),
            input_audio: usd(b.input_audio),
            output_audio: usd(b.output_audio),
            input_image: usd(b.input_image),
            web_search_per_1k: usd(b.web_search_per_1k),
            tiers: price
                .tiers
                .iter()
                .map(|t| overrides(Some(t.above_input_tokens), &t.rates))
                .collect(),
            service_tiers: price
                .service_tiers
                .iter()
                .map(|(tier, r)| (tier.as_str().to_string(), overrides(None, r)))
                .collect(),
        }
    }
}

impl PriceSpec {
    /// A spec with only input and output rates.
    pub fn flat(input: &str, output: &str) -> PriceSpec {
        PriceSpec {
            input: input.into(),
            output: output.into(),
            ..PriceSpec::default()
        }
    }

    pub fn parse(&self) -> Result<Price, PriceError> {
        let mut tiers: Vec<LongContextTier> = Vec::with_capacity(self.tiers.len());
        for (index, spec) in self.tiers.iter().enumerate() {
            let in_tier = |error| PriceError::Tier {
                index,
                error: Box::new(error),
            };
            let above = match spec.above_input_tokens {
                None => return Err(in_tier(PriceError::MissingThreshold)),
                Some(n) if n < 0 => return Err(in_tier(PriceError::NegativeThreshold(n))),
                Some(n) => n,
            };
            if let Some(previous) = tiers.last().map(|t| t.above_input_tokens)
                && above <= previous
            {
                return Err(PriceError::TierOrder {
                    index,
                    above,
                    previous,
                });
            }
            tiers.push(LongContextTier {
                above_input_tokens: above,
                rates: spec.parse().map_err(in_tier)?,
            });
        }
        let mut service_tiers = Vec::with_capacity(self.service_tiers.len());
        for (name, spec) in &self.service_tiers {
            let in_tier = |error| PriceError::ServiceTier {
                name: name.clone(),
                error: Box::new(error),
            };
            let tier = service_tier_named(name)
                .ok_or_else(|| PriceError::UnknownServiceTier { name: name.clone() })?;
            if spec.above_input_tokens.is_some() {
                return Err(in_tier(PriceError::ThresholdInServiceTier));
            }
            service_tiers.push((tier, spec.parse().map_err(in_tier)?));
        }
        Ok(Price {
            base: Rates {
                input: rate("input", &self.input)?,
                output: rate("output", &self.output)?,
                cached_input: optional("cached_input", &self.cached_input)?,
                cache_write: optional("cache_write", &self.cache_write)?,
                cache_write_1h: optional("cache_write_1h", &self.cache_write_1h)?,
                input_audio: optional("input_audio", &self.input_audio)?,
                output_audio: optional("output_audio", &self.output_audio)?,
                input_image: optional("input_image", &self.input_image)?,
                web_search_per_1k: optional("web_search_per_1k", &self.web_search_per_1k)?,
            },
            tiers,
            service_tiers,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    price: Vec<toml::Table>,
    /// The day the prices were checked; read by `commands::prices::as_of`.
    #[serde(default, rename = "as_of")]
    _as_of: Option<String>,
}

/// A `[[price]]` entry: its provider and model, the rest a [`PriceSpec`].
fn file_entry(mut entry: toml::Table) -> Result<(String, String, PriceSpec), PriceError> {
    let mut name = |key: &str| match entry.remove(key) {
        Some(toml::Value::String(s)) => Ok(s),
        _ => Err(PriceError::Syntax(format!(
            "every [[price]] needs {key} = \"…\""
        ))),
    };
    let provider = name("provider")?;
    let model = name("model")?;
    let spec = toml::Value::Table(entry)
        .try_into::<PriceSpec>()
        .map_err(|e| PriceError::Entry {
            provider: provider.clone(),
            model: model.clone(),
            error: Box::new(PriceError::Syntax(e.to_string())),
        })?;
    Ok((provider, model, spec))
}

#[derive(Clone, Debug, Default)]
struct ProviderPrices {
    by_model: HashMap<String, (Price, PriceSource)>,
    /// Model names in file order, then added overrides in key order.
    order: Vec<String>,
}

impl ProviderPrices {
    /// Returns whether the model was new.
    fn set(&mut self, model: &str, price: Price, source: PriceSource) -> bool {
        let new = self
            .by_model
            .insert(model.to_owned(), (price, source))
            .is_none();
        if new {
            self.order.push(model.to_owned());
        }
        new
    }
}

/// Prices by provider and model.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    providers: HashMap<String, ProviderPrices>,
}

impl PriceTable {
    /// The table shipped in the binary.
    pub fn builtin() -> PriceTable {
        // The embedded file is fixed at compile time and a unit test parses
        // it, so this cannot fail in a tested build.
        Self::from_toml(BUILTIN_PRICES).expect("embedded builtin_prices.toml is valid")
    }

    fn from_toml(src: &str) -> Result<PriceTable, PriceError> {
        let file: PriceFile = toml::from_str(src).map_err(|e| PriceError::Syntax(e.to_string()))?;
        let mut table = PriceTable::default();
        for entry in file.price {
            let (provider, model, spec) = file_entry(entry)?;
            let price = spec.parse().map_err(|error| PriceError::Entry {
                provider: provider.clone(),
                model: model.clone(),
                error: Box::new(error),
            })?;
            let prices = table.providers.entry(provider.clone()).or_default();
            if !prices.set(&model, price, PriceSource::Builtin) {
                return Err(PriceError::Duplicate { provider, model });
            }
        }
        Ok(table)
    }

    /// Applies config prices keyed `"provider/model"`; each replaces the
    /// entry for that model or adds one.
    pub fn with_overrides(
        mut self,
        overrides: &BTreeMap<String, PriceSpec>,
        source: PriceSource,
    ) -> Result<PriceTable, PriceError> {
        for (key, spec) in overrides {
            let (provider, model) = key
                .split_once('/')
                .filter(|(p, m)| !p.is_empty() && !m.is_empty())
                .ok_or_else(|| PriceError::OverrideKey { key: key.clone() })?;
            let price = spec.parse().map_err(|error| PriceError::Override {
                key: key.clone(),
                error: Box::new(error),
            })?;
            self.providers
                .entry(provider.to_owned())
                .or_default()
                .set(model, price, source);
        }
        Ok(self)
    }

    /// Looks up a model, falling back from a dated snapshot name
    /// (`gpt-4o-2024-08-06`, `claude-x-20250514`) to its undated alias.
    pub fn get(&self, provider: &str, model: &str) -> Option<(&Price, PriceSource)> {
        let models = &self.providers.get(provider)?.by_model;
        models
            .get(model)
            .or_else(|| models.get(strip_snapshot_date(model)?))
            .map(|(price, source)| (price, *source))
    }

    pub fn len(&self) -> usize {
        self.providers.values().map(|p| p.by_model.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, sorted by provider then model.
    pub fn entries(&self) -> Vec<(String, String, Price, PriceSource)> {
        let mut all: Vec<_> = self
            .providers
            .iter()
            .flat_map(|(provider, prices)| {
                prices.by_model.iter().map(|(model, (price, source))| {
                    (provider.clone(), model.clone(), price.clone(), *source)
                })
            })
            .collect();
        all.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// A provider's model names in file order, config additions last.
    pub fn models(&self, provider: &str) -> Vec<String> {
        self.providers
            .get(provider)
            .map(|p| p.order.clone())
            .unwrap_or_default()
    }
}

/// Shapes of a dated snapshot suffix; `0` stands for any digit.
const SNAPSHOT_SHAPES: [&str; 2] = ["-0000-00-00", "-00000000"];

/// `model` without a trailing `-YYYY-MM-DD` or `-YYYYMMDD`, if it has one.
fn strip_snapshot_date(model: &str) -> Option<&str> {
    SNAPSHOT_SHAPES.iter().find_map(|shape| {
        let cut = model.len().checked_sub(shape.len()).filter(|&c| c > 0)?;
        let suffix = model.get(cut..)?;
        let fits = suffix.bytes().zip(shape.bytes()).all(|(c, s)| match s {
            b'0' => c.is_ascii_digit(),
            _ => c == s,
        });
        if !fits {
            return None;
        }
        let ymd: String = suffix.chars().filter(char::is_ascii_digit).collect();
        let month: u8 = ymd.get(4..6)?.parse().ok()?;
        let day: u8 = ymd.get(6..8)?.parse().ok()?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        model.get(..cut)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(input: &str, output: &str) -> PriceSpec {
        PriceSpec::flat(input, output)
    }

    #[test]
    fn parses_decimal_prices() {
        let cases = [
            ("0.15", 15_000_000),
            ("3", 300_000_000),
            ("0.075", 7_500_000),
            ("1.25", 125_000_000),
            ("0", 0),
            ("0.0", 0),
            ("00.50", 50_000_000),
            ("12.50", 1_250_000_000),
            ("0.00000001", 1),
            ("0.0000000100", 1),
            ("1.500000000000", 150_000_000),
            ("92233720368.54775807", i64::MAX),
        ];
        for (s, want) in cases {
            assert_eq!(parse_usd_per_million(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_prices() {
        use Malformed::*;
        let cases = [
            ("", Empty),
            ("-1", Negative),
            ("-0", Negative),
            ("1e-3", Exponent),
            ("1E3", Exponent),
            ("1 .5", Whitespace),
            (" 1", Whitespace),
            ("1\t", Whitespace),
            ("1.2.3", MultipleDots),
            ("..", MultipleDots),
            ("abc", NotADigit),
            ("free", NotADigit),
            ("1-2", NotADigit),
            ("+1", NotADigit),
            ("1,5", NotADigit),
            ("$1", NotADigit),
            ("١", NotADigit),
            ("0x10", NotADigit),
            (".5", MissingDigits),
            ("5.", MissingDigits),
            (".", MissingDigits),
            ("0.000000001", TooPrecise),
            ("0.000000015", TooPrecise),
            ("92233720368.54775808", Overflow),
            ("99999999999999999999999", Overflow),
        ];
        for (s, reason) in cases {
            assert_eq!(
                parse_usd_per_million(s),
                Err(PriceError::Invalid {
                    value: s.into(),
                    reason
                }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn errors_quote_the_input() {
        let err = parse_usd_per_million("1e-3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid price \"1e-3\": exponent notation is not accepted"
        );
    }

    #[test]
    fn parses_specs() {
        let full = PriceSpec {
            cached_input: Some("0.30".into()),
            cache_write: Some("3.75".into()),
            ..spec("3", "15")
        };
        assert_eq!(
            full.parse(),
            Ok(Price {
                base: Rates {
                    input: 300_000_000,
                    output: 1_500_000_000,
                    cached_input: Some(30_000_000),
                    cache_write: Some(375_000_000),
                    ..Rates::default()
                },
                ..Price::default()
            })
        );
        let bad = PriceSpec {
            cache_write: Some("x".into()),
            ..spec("3", "15")
        };
        let err = bad.parse().unwrap_err();
        assert!(matches!(
            err,
            PriceError::Field {
                field: "cache_write",
                ..
            }
        ));
        assert!(
            err.to_string()
                .starts_with("invalid cache_write price \"x\"")
        );
    }

    /// The example of the price-spec format, as a config override.
    const FULL_SPEC: &str = r#"
        [prices."anthropic/claude-sonnet-4-5"]
        input = "3"
        output = "15"
        cached_input = "0.30"
        cache_write = "3.75"
        cache_write_1h = "6"
        input_audio = "40"
        output_audio = "80"
        input_image = "2.5"
        web_search_per_1k = "10"
        [[prices."anthropic/claude-sonnet-4-5".tiers]]
        above_input_tokens = 200000
        input = "6"
        output = "22.50"
        cached_input = "0.60"
        cache_write = "7.50"
        cache_write_1h = "12"
        [prices."anthropic/claude-sonnet-4-5".service_tiers.flex]
        input = "0.625"
        output = "5"
        cached_input = "0.0625"
    "#;

    #[derive(Deserialize)]
    struct Overrides {
        prices: BTreeMap<String, PriceSpec>,
    }

    fn overrides(src: &str) -> BTreeMap<String, PriceSpec> {
        toml::from_str::<Overrides>(src).expect("toml").prices
    }

    fn full_price() -> Price {
        Price {
            base: Rates {
                input: 300_000_000,
                output: 1_500_000_000,
                cached_input: Some(30_000_000),
                cache_write: Some(375_000_000),
                cache_write_1h: Some(600_000_000),
                input_audio: Some(4_000_000_000),
                output_audio: Some(8_000_000_000),
                input_image: Some(250_000_000),
                web_search_per_1k: Some(1_000_000_000),
            },
            tiers: vec![LongContextTier {
                above_input_tokens: 200_000,
                rates: RateOverrides {
                    input: Some(600_000_000),
                    output: Some(2_250_000_000),
                    cached_input: Some(60_000_000),
                    cache_write: Some(750_000_000),
                    cache_write_1h: Some(1_200_000_000),
                    ..RateOverrides::default()
                },
            }],
            service_tiers: vec![(
                ServiceTier::Flex,
                RateOverrides {
                    input: Some(62_500_000),
                    output: Some(500_000_000),
                    cached_input: Some(6_250_000),
                    ..RateOverrides::default()
                },
            )],
        }
    }

    #[test]
    fn parses_the_full_spec_from_config() {
        let table = PriceTable::default()
            .with_overrides(&overrides(FULL_SPEC), PriceSource::Config)
            .expect("full spec");
        let (price, source) = table.get("anthropic", "claude-sonnet-4-5").unwrap();
        assert_eq!(source, PriceSource::Config);
        assert_eq!(*price, full_price());
    }

    #[test]
    fn parses_the_full_spec_from_the_builtin_format() {
        let src = r#"
            [[price]]
            provider = "anthropic"
            model = "claude-sonnet-4-5"
            input = "3"
            output = "15"
            cached_input = "0.30"
            cache_write = "3.75"
            cache_write_1h = "6"
            input_audio = "40"
            output_audio = "80"
            input_image = "2.5"
            web_search_per_1k = "10"
            [[price.tiers]]
            above_input_tokens = 200000
            input = "6"
            output = "22.50"
            cached_input = "0.60"
            cache_write = "7.50"
            cache_write_1h = "12"
            [price.service_tiers.flex]
            input = "0.625"
            output = "5"
            cached_input = "0.0625"
        "#;
        let table = PriceTable::from_toml(src).expect("table");
        let (price, source) = table.get("anthropic", "claude-sonnet-4-5").unwrap();
        assert_eq!(source, PriceSource::Builtin);
        assert_eq!(*price, full_price());
        let typo = src.replace("web_search_per_1k", "web_search");
        let err = PriceTable::from_toml(&typo).unwrap_err().to_string();
        assert!(
            err.contains("anthropic/claude-sonnet-4-5") && err.contains("web_search"),
            "{err}"
        );
        let unnamed = "[[price]]\nmodel = \"m\"\ninput = \"1\"\noutput = \"1\"\n";
        assert!(matches!(
            PriceTable::from_toml(unnamed),
            Err(PriceError::Syntax(_))
        ));
    }

    #[test]
    fn spec_errors_name_the_key() {
        let cases = [
            (
                "[[prices.\"a/b\".tiers]]\ninput = \"1\"",
                "tiers[0]: above_input_tokens is required",
            ),
            (
                "[[prices.\"a/b\".tiers]]\nabove_input_tokens = -1",
                "tiers[0]: above_input_tokens must not be negative",
            ),
            (
                "[[prices.\"a/b\".tiers]]\nabove_input_tokens = 10\ninput = \"x\"",
                "tiers[0]: invalid input price \"x\"",
            ),
            (
                "[[prices.\"a/b\".tiers]]\nabove_input_tokens = 10\n[[prices.\"a/b\".tiers]]\nabove_input_tokens = 10",
                "tiers[1].above_input_tokens: 10 must be above the previous tier's 10",
            ),
            (
                "[[prices.\"a/b\".tiers]]\nabove_input_tokens = 20\n[[prices.\"a/b\".tiers]]\nabove_input_tokens = 10",
                "tiers[1].above_input_tokens: 10 must be above the previous tier's 20",
            ),
            (
                "[prices.\"a/b\".service_tiers.turbo]\ninput = \"1\"",
                "service_tiers.\"turbo\": unknown service tier",
            ),
            (
                "[prices.\"a/b\".service_tiers.default]\ninput = \"1\"",
                "service_tiers.\"default\": unknown service tier",
            ),
            (
                "[prices.\"a/b\".service_tiers.flex]\noutput = \"-1\"",
                "service_tiers.flex: invalid output price \"-1\"",
            ),
            (
                "[prices.\"a/b\".service_tiers.priority]\nabove_input_tokens = 5",
                "service_tiers.priority: above_input_tokens belongs in a long-context tier",
            ),
        ];
        for (extra, want) in cases {
            let src = format!("[prices.\"a/b\"]\ninput = \"1\"\noutput = \"2\"\n{extra}\n");
            let err = PriceTable::default()
                .with_overrides(&overrides(&src), PriceSource::Config)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("prices.\"a/b\": {want}")),
                "{err}\n  wanted: {want}"
            );
        }
        for field in [
            "cache_write_1h",
            "input_audio",
            "output_audio",
            "input_image",
            "web_search_per_1k",
        ] {
            let src =
                format!("[prices.\"a/b\"]\ninput = \"1\"\noutput = \"2\"\n{field} = \"1e3\"\n");
            let err = PriceTable::default()
                .with_overrides(&overrides(&src), PriceSource::Config)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("invalid {field} price \"1e3\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn spec_json_round_trips_and_old_specs_keep_their_shape() {
        // The admin API and audit details serialise specs: a spec with only
        // the original rates keeps the JSON it had before the new fields.
        let old = PriceSpec {
            cached_input: Some("0.5".into()),
            ..spec("1", "2")
        };
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"input":"1","output":"2","cached_input":"0.5","cache_write":null}"#
        );
        let full = overrides(FULL_SPEC)
            .remove("anthropic/claude-sonnet-4-5")
            .unwrap();
        let json = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<PriceSpec>(&json).unwrap(), full);
        assert!(
            serde_json::from_str::<PriceSpec>(r#"{"input":"1","output":"2","nope":"1"}"#).is_err()
        );
    }

    #[test]
    fn spec_rejects_unknown_fields() {
        let ok: Result<BTreeMap<String, PriceSpec>, _> =
            toml::from_str("[\"a/b\"]\ninput = \"1\"\noutput = \"2\"\n");
        assert!(ok.is_ok());
        let typo: Result<BTreeMap<String, PriceSpec>, _> =
            toml::from_str("[\"a/b\"]\ninput = \"1\"\noutput = \"2\"\ncached = \"1\"\n");
        assert!(typo.is_err());
    }

    #[test]
    fn embedded_table_parses_without_duplicates() {
        let table = PriceTable::from_toml(BUILTIN_PRICES).expect("builtin table");
        let listed = BUILTIN_PRICES
            .lines()
            .filter(|l| l.trim() == "[[price]]")
            .count();
        assert!(listed > 0);
        // from_toml rejects duplicates, and nothing was silently merged.
        assert_eq!(table.len(), listed);
        assert!(!table.is_empty());
        assert_eq!(PriceTable::builtin().len(), listed);
        let entries = table.entries();
        let mut keys: Vec<_> = entries.iter().map(|e| (&e.0, &e.1)).collect();
        keys.dedup();
        assert_eq!(keys.len(), listed);
        assert!(entries.iter().all(|e| e.3 == PriceSource::Builtin));
        for provider in ["openai", "anthropic"] {
            assert!(!table.models(provider).is_empty(), "{provider}");
        }
    }

    #[test]
    fn embedded_prices_are_sane() {
        for (provider, model, p, _) in PriceTable::builtin().entries() {
            let name = format!("{provider}/{model}");
            assert!(p.base.input > 0, "{name}");
            assert!(p.base.output >= 0, "{name}");
            assert!(p.base.cached_input.unwrap_or(0) <= p.base.input, "{name}");
            if provider == "anthropic" {
                assert!(p.base.cache_write.is_some(), "{name}");
            }
            // A 1-hour write costs more than a 5-minute one; a long
            // context costs more, never less.
            if let Some(hour) = p.base.cache_write_1h {
                assert!(hour >= p.base.cache_write.unwrap_or(p.base.input), "{name}");
            }
            for tier in &p.tiers {
                assert!(
                    tier.rates.input.unwrap_or(p.base.input) >= p.base.input,
                    "{name}"
                );
                assert!(
                    tier.rates.output.unwrap_or(p.base.output) >= p.base.output,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn table_rejects_duplicates_and_bad_entries() {
        let entry = "[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninput = \"1\"\noutput = \"2\"\n";
        assert_eq!(PriceTable::from_toml(entry).map(|t| t.len()), Ok(1));
        assert_eq!(
            PriceTable::from_toml(&format!("{entry}{entry}")).map(|t| t.len()),
            Err(PriceError::Duplicate {
                provider: "p".into(),
                model: "m".into()
            })
        );
        let bad = entry.replace("\"2\"", "\"two\"");
        let err = PriceTable::from_toml(&bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("p/m: invalid output price \"two\"")
        );
        assert!(matches!(
            PriceTable::from_toml("[[price]]\nprovider = \"p\"\n"),
            Err(PriceError::Syntax(_))
        ));
    }

    fn sample() -> PriceTable {
        PriceTable::from_toml(
            r#"
            [[price]]
            provider = "openai"
            model = "gpt-b"
            input = "2"
            output = "8"
            cached_input = "0.50"

            [[price]]
            provider = "openai"
            model = "gpt-a"
            input = "1"
            output = "4"

            [[price]]
            provider = "openai"
            model = "gpt-a-2024-08-06"
            input = "3"
            output = "9"

            [[price]]
            provider = "anthropic"
            model = "claude-x"
            input = "3"
            output = "15"
            cached_input = "0.30"
            cache_write = "3.75"
            "#,
        )
        .expect("sample table")
    }

    #[test]
    fn overrides_replace_and_add() {
        let overrides = BTreeMap::from([
            ("openai/gpt-a".to_owned(), spec("0.5", "1")),
            ("openai/gpt-new".to_owned(), spec("7", "21")),
            ("local/org/model".to_owned(), spec("0", "0")),
        ]);
        let table = sample()
            .with_overrides(&overrides, PriceSource::Config)
            .expect("overrides");
        assert_eq!(table.len(), 6);
        let (a, source) = table.get("openai", "gpt-a").expect("gpt-a");
        assert_eq!(
            (a.base.input, a.base.output, source),
            (50_000_000, 100_000_000, PriceSource::Config)
        );
        let (b, source) = table.get("openai", "gpt-b").expect("gpt-b");
        assert_eq!((b.base.input, source), (200_000_000, PriceSource::Builtin));
        assert_eq!(
            table.get("openai", "gpt-new").map(|p| p.0.base.output),
            Some(2_100_000_000)
        );
        assert!(table.get("local", "org/model").is_some());
        // A replaced model keeps its place; an added one goes last.
        assert_eq!(
            table.models("openai"),
            ["gpt-b", "gpt-a", "gpt-a-2024-08-06", "gpt-new"]
        );
    }

    #[test]
    fn override_errors_name_the_key() {
        let bad = BTreeMap::from([("openai/gpt-4o".to_owned(), spec("abc", "1"))]);
        let err = sample()
            .with_overrides(&bad, PriceSource::Config)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("prices.\"openai/gpt-4o\": invalid input price \"abc\""),
            "{err}"
        );
        for key in ["gpt-4o", "/gpt-4o", "openai/", ""] {
            let bad = BTreeMap::from([(key.to_owned(), spec("1", "1"))]);
            assert_eq!(
                sample()
                    .with_overrides(&bad, PriceSource::Config)
                    .unwrap_err(),
                PriceError::OverrideKey { key: key.into() }
            );
        }
    }

    #[test]
    fn lookup_falls_back_from_snapshot_dates() {
        let t = sample();
        let input = |model: &str| t.get("openai", model).map(|p| p.0.base.input);
        assert_eq!(input("gpt-a"), Some(100_000_000));
        // An exact snapshot entry wins over its alias.
        assert_eq!(input("gpt-a-2024-08-06"), Some(300_000_000));
        assert_eq!(input("gpt-a-2024-11-20"), Some(100_000_000));
        assert_eq!(input("gpt-b-20250514"), Some(200_000_000));
        assert_eq!(input("gpt-b-2025-13-01"), None);
        assert_eq!(input("gpt-b-20250532"), None);
        assert_eq!(input("gpt-b-2025-05"), None);
        assert_eq!(input("gpt-b-latest"), None);
        assert_eq!(input("gpt-c"), None);
        assert_eq!(input("GPT-A"), None);
        assert!(t.get("anthropic", "gpt-a").is_none());
        assert!(t.get("nobody", "gpt-a").is_none());
    }

    #[test]
    fn strips_only_date_suffixes() {
        assert_eq!(strip_snapshot_date("m-2024-08-06"), Some("m"));
        assert_eq!(strip_snapshot_date("m-20240806"), Some("m"));
        assert_eq!(strip_snapshot_date("-20240806"), None);
        assert_eq!(strip_snapshot_date("20240806"), None);
        assert_eq!(strip_snapshot_date("m-2024080"), None);
        assert_eq!(strip_snapshot_date("m-2024_08-06"), None);
        assert_eq!(strip_snapshot_date("é-2024-08-06"), Some("é"));
        assert_eq!(strip_snapshot_date("m-2024-08-0é"), None);
        assert_eq!(strip_snapshot_date(""), None);
    }

    #[test]
    fn entries_are_sorted() {
        let names: Vec<_> = sample()
            .entries()
            .into_iter()
            .map(|(p, m, _, _)| format!("{p}/{m}"))
            .collect();
        assert_eq!(
            names,
            [
                "anthropic/claude-x",
                "openai/gpt-a",
                "openai/gpt-a-2024-08-06",
                "openai/gpt-b"
            ]
        );
        assert_eq!(sample().models("nobody"), Vec::<String>::new());
        assert_eq!(PriceSource::Builtin.as_str(), "builtin");
        assert_eq!(PriceSource::Config.as_str(), "config");
        assert!(PriceTable::default().is_empty());
    }

    proptest! {
        #[test]
        fn round_trips_eight_decimals(whole in 0i64..=92_233_720_367, frac in 0i64..100_000_000) {
            let s = format!("{whole}.{frac:08}");
            prop_assert_eq!(parse_usd_per_million(&s), Ok(whole * 100_000_000 + frac));
        }

        #[test]
        fn round_trips_exact_formatting(uc in 0i64..=i64::MAX) {
            let s = format_usd_exact(uc);
            prop_assert_eq!(parse_usd_per_million(&s), Ok(uc));
        }

        #[test]
        fn never_panics(s in "[0-9.eE+ -]{0,24}") {
            let _ = parse_usd_per_million(&s);
        }
    }
}
