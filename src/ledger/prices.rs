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

const BUILTIN_PRICES: &str = include_str!("builtin_prices.toml");

/// Decimal places of USD that fit in a micro-cent.
const USD_DECIMALS: usize = 8;

/// Price of one million tokens, in micro-cents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    /// Cache reads; `None` bills them at the input price.
    pub cached_input: Option<i64>,
    /// Cache writes; `None` bills them at the input price.
    pub cache_write: Option<i64>,
}

/// Where a table entry came from, shown when listing prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceSource {
    Builtin,
    Config,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Builtin => "builtin",
            PriceSource::Config => "config",
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

/// A price as written in config: decimal strings of USD per 1M tokens.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub cached_input: Option<String>,
    #[serde(default)]
    pub cache_write: Option<String>,
}

impl PriceSpec {
    pub fn parse(&self) -> Result<Price, PriceError> {
        let field = |field: &'static str, value: &str| {
            parse_decimal(value).map_err(|reason| PriceError::Field {
                field,
                value: value.to_owned(),
                reason,
            })
        };
        Ok(Price {
            input: field("input", &self.input)?,
            output: field("output", &self.output)?,
            cached_input: self
                .cached_input
                .as_deref()
                .map(|v| field("cached_input", v))
                .transpose()?,
            cache_write: self
                .cache_write
                .as_deref()
                .map(|v| field("cache_write", v))
                .transpose()?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    price: Vec<PriceFileEntry>,
    /// The day the prices were checked; read by `commands::prices::as_of`.
    #[serde(default, rename = "as_of")]
    _as_of: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFileEntry {
    provider: String,
    model: String,
    input: String,
    output: String,
    #[serde(default)]
    cached_input: Option<String>,
    #[serde(default)]
    cache_write: Option<String>,
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
        for e in file.price {
            let spec = PriceSpec {
                input: e.input,
                output: e.output,
                cached_input: e.cached_input,
                cache_write: e.cache_write,
            };
            let price = spec.parse().map_err(|error| PriceError::Entry {
                provider: e.provider.clone(),
                model: e.model.clone(),
                error: Box::new(error),
            })?;
            let provider = table.providers.entry(e.provider.clone()).or_default();
            if !provider.set(&e.model, price, PriceSource::Builtin) {
                return Err(PriceError::Duplicate {
                    provider: e.provider,
                    model: e.model,
                });
            }
        }
        Ok(table)
    }

    /// Applies config prices keyed `"provider/model"`; each replaces the
    /// entry for that model or adds one.
    pub fn with_overrides(
        mut self,
        overrides: &BTreeMap<String, PriceSpec>,
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
            self.providers.entry(provider.to_owned()).or_default().set(
                model,
                price,
                PriceSource::Config,
            );
        }
        Ok(self)
    }

    /// Looks up a model, falling back from a dated snapshot name
    /// (`gpt-4o-2024-08-06`, `claude-x-20250514`) to its undated alias.
    pub fn get(&self, provider: &str, model: &str) -> Option<(Price, PriceSource)> {
        let models = &self.providers.get(provider)?.by_model;
        models
            .get(model)
            .or_else(|| models.get(strip_snapshot_date(model)?))
            .copied()
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
                prices.by_model.iter().map(|(model, &(price, source))| {
                    (provider.clone(), model.clone(), price, source)
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
    use super::super::money::format_usd_exact;
    use super::*;
    use proptest::prelude::*;

    fn spec(input: &str, output: &str) -> PriceSpec {
        PriceSpec {
            input: input.into(),
            output: output.into(),
            cached_input: None,
            cache_write: None,
        }
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
                input: 300_000_000,
                output: 1_500_000_000,
                cached_input: Some(30_000_000),
                cache_write: Some(375_000_000),
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
            assert!(p.input > 0, "{name}");
            assert!(p.output >= 0, "{name}");
            assert!(p.cached_input.unwrap_or(0) <= p.input, "{name}");
            if provider == "anthropic" {
                assert!(p.cache_write.is_some(), "{name}");
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
        let table = sample().with_overrides(&overrides).expect("overrides");
        assert_eq!(table.len(), 6);
        let (a, source) = table.get("openai", "gpt-a").expect("gpt-a");
        assert_eq!(
            (a.input, a.output, source),
            (50_000_000, 100_000_000, PriceSource::Config)
        );
        let (b, source) = table.get("openai", "gpt-b").expect("gpt-b");
        assert_eq!((b.input, source), (200_000_000, PriceSource::Builtin));
        assert_eq!(
            table.get("openai", "gpt-new").map(|p| p.0.output),
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
        let err = sample().with_overrides(&bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("prices.\"openai/gpt-4o\": invalid input price \"abc\""),
            "{err}"
        );
        for key in ["gpt-4o", "/gpt-4o", "openai/", ""] {
            let bad = BTreeMap::from([(key.to_owned(), spec("1", "1"))]);
            assert_eq!(
                sample().with_overrides(&bad).unwrap_err(),
                PriceError::OverrideKey { key: key.into() }
            );
        }
    }

    #[test]
    fn lookup_falls_back_from_snapshot_dates() {
        let t = sample();
        let input = |model: &str| t.get("openai", model).map(|p| p.0.input);
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
