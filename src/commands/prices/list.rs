//! `tollgate prices list`: every price in force, every rate, and its origin.

use super::{InForce, as_of, flatten, spec_json};
use crate::access::printable;
use serde_json::{Value, json};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// The base rates shown in columns; every other rate goes in the last one.
const COLUMNS: [&str; 4] = ["input", "output", "cached_input", "cache_write"];

/// Renders the prices in force, only those of `model` (a model name or
/// `provider/model`) when given; `None` when it matches nothing.
pub fn list(
    prices: &InForce,
    model: Option<&str>,
    format: ListFormat,
    today: time::Date,
) -> Option<String> {
    let chosen: Vec<_> = prices
        .entries
        .iter()
        .filter(|(key, _)| {
            model
                .is_none_or(|m| *key == m || key.split_once('/').is_some_and(|(_, name)| name == m))
        })
        .collect();
    if chosen.is_empty() && model.is_some() {
        return None;
    }
    let as_of = as_of::builtin_as_of();
    let age = as_of.map(|d| as_of::age_days(d, today));
    match format {
        ListFormat::Json => {
            let list: Vec<Value> = chosen
                .iter()
                .map(|(key, (origin, spec))| {
                    let (provider, model) = key.split_once('/').unwrap_or((key.as_str(), ""));
                    let mut row = json!({
                        "provider": provider,
                        "model": model,
                        "source": origin.as_str(),
                    });
                    if let (Value::Object(row), Value::Object(rates)) = (&mut row, spec_json(spec))
                    {
                        row.extend(rates);
                    }
                    row
                })
                .collect();
            let doc = json!({
                "builtin_as_of": as_of.map(|d| d.to_string()),
                "builtin_age_days": age,
                "unit": "USD per 1,000,000 tokens; web_search_per_1k: USD per 1,000 calls",
                "prices": list,
            });
            Some(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
        }
        ListFormat::Table => {
            let mut out = match (as_of, age) {
                (Some(d), Some(age)) => {
                    format!("built-in prices as of {d} ({age} days ago); USD per 1M tokens\n")
                }
                _ => "built-in prices: no as-of date; USD per 1M tokens\n".to_string(),
            };
            let _ = writeln!(
                out,
                "{:<10} {:<34} {:<9} {:>9} {:>9} {:>13} {:>12}  OTHER RATES",
                "PROVIDER", "MODEL", "SOURCE", "INPUT", "OUTPUT", "CACHED_INPUT", "CACHE_WRITE"
            );
            for (key, (origin, spec)) in chosen {
                let (provider, model) = key.split_once('/').unwrap_or((key.as_str(), ""));
                let rates = flatten(&spec_json(spec));
                let rate = |name: &str| {
                    rates
                        .iter()
                        .find(|(k, _)| k == name)
                        .map_or("-".to_string(), |(_, v)| v.clone())
                };
                let other: Vec<String> = rates
                    .iter()
                    .filter(|(k, _)| !COLUMNS.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<10} {:<34} {:<9} {:>9} {:>9} {:>13} {:>12}  {}",
                    printable(provider),
                    printable(model),
                    origin.as_str(),
                    rate("input"),
                    rate("output"),
                    rate("cached_input"),
                    rate("cache_write"),
                    printable(&other.join(" ")),
                );
            }
            Some(out)
        }
    }
}
