//! `tollgate prices import|list`: keeping prices current.
//!
//! Prices in force come in three layers, each replacing the one before for
//! the models it names: the built-in table (shipped in the binary, with its
//! as-of date), the config file's `[prices]`, and the database's overrides
//! (the admin API's and `prices import`'s). These commands work on the
//! price *specs* of each layer, in the price-spec format, and leave every
//! field of a spec to its type: whatever the spec type learns to read
//! flows through import, diff and listing unchanged.

pub mod as_of;
pub mod decimal;
mod import;
mod list;
pub mod litellm;

pub use import::{ImportFormat, ImportOptions, import};
pub use list::{ListFormat, list};

use crate::ledger::prices::{PriceSource, PriceSpec, PriceTable};
use serde_json::Value;
use std::collections::BTreeMap;

const BUILTIN_PRICES: &str = include_str!("../../ledger/builtin_prices.toml");

/// The layer a price in force comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    Config,
    Database,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Builtin => "builtin",
            Origin::Config => "config",
            Origin::Database => "database",
        }
    }
}

/// The specs in force, keyed `provider/model`, with where each came from.
#[derive(Debug)]
pub struct InForce {
    pub entries: BTreeMap<String, (Origin, PriceSpec)>,
}

impl InForce {
    /// Built-in, then `config`, then `stored`, checked the way `serve`
    /// builds its table.
    pub fn load(
        config: &BTreeMap<String, PriceSpec>,
        stored: &BTreeMap<String, PriceSpec>,
    ) -> Result<InForce, String> {
        PriceTable::builtin()
            .with_overrides(config, PriceSource::Config)
            .and_then(|t| t.with_overrides(stored, PriceSource::Database))
            .map_err(|e| e.to_string())?;
        let mut entries: BTreeMap<_, _> = builtin_specs()?
            .into_iter()
            .map(|(key, spec)| (key, (Origin::Builtin, spec)))
            .collect();
        for (layer, origin) in [(config, Origin::Config), (stored, Origin::Database)] {
            for (key, spec) in layer {
                entries.insert(key.clone(), (origin, spec.clone()));
            }
        }
        Ok(InForce { entries })
    }
}

/// The built-in table's entries as specs.
fn builtin_specs() -> Result<Vec<(String, PriceSpec)>, String> {
    let mut file: toml::Table = toml::from_str(BUILTIN_PRICES).map_err(|e| e.to_string())?;
    let Some(toml::Value::Array(list)) = file.remove("price") else {
        return Err("built-in price table: no [[price]] entries".into());
    };
    list.into_iter()
        .map(|entry| {
            let toml::Value::Table(mut entry) = entry else {
                return Err("built-in price table: an entry is not a table".into());
            };
            let mut name = |field: &str| match entry.remove(field) {
                Some(toml::Value::String(s)) => Ok(s),
                _ => Err(format!("built-in price table: an entry has no {field}")),
            };
            let key = format!("{}/{}", name("provider")?, name("model")?);
            let spec: PriceSpec = toml::Value::Table(entry)
                .try_into()
                .map_err(|e| format!("built-in price table: {key}: {e}"))?;
            Ok((key, spec))
        })
        .collect()
}

/// A spec as JSON, without absent (null) rates.
pub fn spec_json(spec: &PriceSpec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    drop_nulls(&mut v);
    v
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// A spec's rates as `path → value`, e.g. `input`, `tiers[>200000].input`,
/// `service_tiers.flex.output`; decimal strings without insignificant zeros.
pub fn flatten(spec: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(&join(k), v, out);
                }
            }
            Value::Array(list) => {
                for (i, item) in list.iter().enumerate() {
                    let label = match item.get("above_input_tokens") {
                        Some(n) => format!("{prefix}[>{n}]"),
                        None => format!("{prefix}[{i}]"),
                    };
                    match item {
                        Value::Object(map) => {
                            for (k, v) in map.iter().filter(|(k, _)| *k != "above_input_tokens") {
                                walk(&format!("{label}.{k}"), v, out);
                            }
                        }
                        other => walk(&label, other, out),
                    }
                }
            }
            Value::String(s) => out.push((prefix.to_string(), decimal::normalize(s))),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", spec, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_builtin_table_reads_as_specs_that_match_the_table() {
        let specs = builtin_specs().unwrap();
        let table = PriceTable::builtin();
        assert_eq!(specs.len(), table.len());
        for (key, spec) in specs {
            let (provider, model) = key.split_once('/').unwrap();
            assert_eq!(
                Some(spec.parse().unwrap()),
                table.get(provider, model).map(|p| p.0.clone()),
                "{key}"
            );
        }
    }

    #[test]
    fn flattens_nested_rates() {
        let spec = json!({
            "input": "3.00", "output": "15",
            "tiers": [{"above_input_tokens": 200000, "input": "6"}],
            "service_tiers": {"flex": {"output": "7.50"}}
        });
        assert_eq!(
            flatten(&spec),
            [
                ("input".to_string(), "3".to_string()),
                ("output".into(), "15".into()),
                ("tiers[>200000].input".into(), "6".into()),
                ("service_tiers.flex.output".into(), "7.5".into()),
            ]
        );
    }
}
