//! LiteLLM's `model_prices_and_context_window.json` → tollgate price specs.
//!
//! The file maps model names to objects with per-token costs in USD as JSON
//! numbers (`"input_cost_per_token": 3e-06`). Each OpenAI and Anthropic entry
//! becomes a spec in tollgate's price-spec format (decimal strings per
//! million tokens, `tiers`, `service_tiers`), built as JSON with the format's
//! key names so that the spec type reads it by deserialisation. Numbers are
//! rescaled from their literal text, never through a float.
//!
//! Mapping (a suffix `_above_{N}k_tokens` makes a long-context tier above
//! N×1000 input tokens; `_flex`, `_priority`, `_batches` a service tier):
//!
//! | LiteLLM key | spec key |
//! |---|---|
//! | `input_cost_per_token` | `input` |
//! | `output_cost_per_token` | `output` (embeddings without one: `"0"`) |
//! | `cache_read_input_token_cost` | `cached_input` |
//! | `cache_creation_input_token_cost` | `cache_write` |
//! | `cache_creation_input_token_cost_above_1hr` | `cache_write_1h` |
//! | `input_cost_per_audio_token` | `input_audio` |
//! | `output_cost_per_audio_token` | `output_audio` |
//! | `input_cost_per_image_token` | `input_image` |
//! | `search_context_cost_per_query` (all sizes equal) | `web_search_per_1k` |
//!
//! Other cost keys (per image, per second, per character, reasoning…) have
//! no place in the format; they are named in the notes, never guessed.

use super::decimal::rescale;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Per token → per million tokens.
const PER_MILLION: i64 = 6;
/// Per call → per 1,000 calls.
const PER_THOUSAND: i64 = 3;

/// LiteLLM modes whose calls tollgate proxies.
const PROXIED_MODES: [&str; 4] = ["chat", "completion", "embedding", "responses"];

/// Rates a model has per token, by LiteLLM name.
const RATES: [(&str, &str); 8] = [
    ("input_cost_per_token", "input"),
    ("output_cost_per_token", "output"),
    ("cache_read_input_token_cost", "cached_input"),
    ("cache_creation_input_token_cost", "cache_write"),
    (
        "cache_creation_input_token_cost_above_1hr",
        "cache_write_1h",
    ),
    ("input_cost_per_audio_token", "input_audio"),
    ("output_cost_per_audio_token", "output_audio"),
    ("input_cost_per_image_token", "input_image"),
];

/// LiteLLM's service-tier suffixes and tollgate's tier names.
const SERVICE_TIERS: [(&str, &str); 3] = [
    ("_flex", "flex"),
    ("_priority", "priority"),
    ("_batches", "batch"),
];

/// What a LiteLLM file yields.
#[derive(Debug, Default)]
pub struct Converted {
    /// Specs keyed `provider/model`, in the price-spec format.
    pub prices: BTreeMap<String, Value>,
    /// Entries of providers tollgate does not serve, counted by provider.
    pub other_providers: BTreeMap<String, usize>,
    /// OpenAI/Anthropic entries left out, and why.
    pub skipped: Vec<String>,
    /// Cost keys with no place in the format, with how many entries had them.
    pub ignored_keys: BTreeMap<String, usize>,
    /// Rates left out of an imported entry, and why.
    pub notes: Vec<String>,
}

/// Converts a whole file; every problem in an entry that would be imported
/// is reported, and any makes the whole file fail.
pub fn convert(text: &str) -> Result<Converted, Vec<String>> {
    let top: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| vec![format!("not a LiteLLM price map: {e}")])?;
    let mut out = Converted::default();
    let mut errors = Vec::new();
    for (name, raw) in top {
        if name == "sample_spec" {
            continue;
        }
        let Ok(fields) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
            out.skipped.push(format!("{name}: not an object"));
            continue;
        };
        let provider = fields
            .get("litellm_provider")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            .unwrap_or_default();
        let provider = match provider.as_str() {
            "openai" | "anthropic" => provider,
            _ => {
                let shown = if provider.is_empty() {
                    "(none)".to_string()
                } else {
                    provider
                };
                *out.other_providers.entry(shown).or_default() += 1;
                continue;
            }
        };
        let model = name
            .strip_prefix(&format!("{provider}/"))
            .unwrap_or(&name)
            .to_string();
        if model.is_empty() || model.contains('/') {
            out.skipped
                .push(format!("{name}: not a model name tollgate routes"));
            continue;
        }
        let mode = fields
            .get("mode")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
        if let Some(mode) = &mode
            && !PROXIED_MODES.contains(&mode.as_str())
        {
            out.skipped
                .push(format!("{name}: mode {mode:?} is not proxied"));
            continue;
        }
        if !fields.contains_key("input_cost_per_token") {
            out.skipped.push(format!("{name}: not priced per token"));
            continue;
        }
        let embedding = mode.as_deref() == Some("embedding");
        match entry(&name, &fields, embedding, &mut out) {
            Ok(spec) => {
                // `openai/gpt-x` and `gpt-x` name the same model: fine when
                // they agree.
                let key = format!("{provider}/{model}");
                match out.prices.get(&key) {
                    Some(seen) if *seen != spec => errors.push(format!(
                        "{key} is listed twice, with different prices ({name})"
                    )),
                    Some(_) => {}
                    None => {
                        out.prices.insert(key, spec);
                    }
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Where one LiteLLM cost key goes in a spec.
struct Place<'a> {
    rate: &'static str,
    tier: Option<u64>,
    service_tier: Option<&'a str>,
}

fn place(key: &str) -> Option<Place<'static>> {
    let (key, service_tier) = SERVICE_TIERS
        .iter()
        .find_map(|(suffix, tier)| Some((key.strip_suffix(suffix)?, Some(*tier))))
        .unwrap_or((key, None));
    let (key, tier) = match key
        .strip_suffix("k_tokens")
        .and_then(|k| k.rsplit_once("_above_"))
    {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (base, Some(n.parse::<u64>().ok()?.checked_mul(1000)?))
        }
        _ => (key, None),
    };
    let rate = RATES.iter().find(|(name, _)| *name == key)?.1;
    Some(Place {
        rate,
        tier,
        service_tier,
    })
}

fn entry(
    name: &str,
    fields: &BTreeMap<String, &RawValue>,
    embedding: bool,
    out: &mut Converted,
) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let mut base = Map::new();
    let mut tiers: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    let mut service: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (key, raw) in fields {
        if key == "search_context_cost_per_query" {
            match web_search(raw) {
                Ok(Some(per_1k)) => {
                    base.insert("web_search_per_1k".into(), per_1k.into());
                }
                Ok(None) => out.notes.push(format!(
                    "{name}: web search is priced by search context size; web_search_per_1k left out"
                )),
                Err(e) => errors.push(format!("{name}: {key}: {e}")),
            }
            continue;
        }
        let Some(place) = place(key) else {
            if ["cost", "pric", "tier"].iter().any(|w| key.contains(w)) {
                *out.ignored_keys.entry(key.clone()).or_default() += 1;
            }
            continue;
        };
        let text = raw.get();
        if text == "null" {
            continue;
        }
        let value = match rescale(text, PER_MILLION) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{name}: {key}: {e}"));
                continue;
            }
        };
        let target = match (place.tier, place.service_tier) {
            (None, None) => &mut base,
            (Some(n), None) => tiers.entry(n).or_default(),
            (None, Some(t)) => service.entry(t).or_default(),
            (Some(_), Some(_)) => {
                *out.ignored_keys.entry(key.clone()).or_default() += 1;
                continue;
            }
        };
        target.insert(place.rate.into(), value.into());
    }
    if !fields.contains_key("output_cost_per_token") {
        if embedding {
            base.insert("output".into(), "0".into());
        } else {
            errors.push(format!("{name}: no output_cost_per_token"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !tiers.is_empty() {
        let list: Vec<Value> = tiers
            .into_iter()
            .map(|(above, mut rates)| {
                let mut tier = Map::new();
                tier.insert("above_input_tokens".into(), above.into());
                tier.append(&mut rates);
                Value::Object(tier)
            })
            .collect();
        base.insert("tiers".into(), list.into());
    }
    if !service.is_empty() {
        let tiers: Map<String, Value> = service
            .into_iter()
            .map(|(name, rates)| (name.to_string(), Value::Object(rates)))
            .collect();
        base.insert("service_tiers".into(), tiers.into());
    }
    Ok(Value::Object(base))
}

/// USD per 1,000 searches when every context size costs the same.
fn web_search(raw: &RawValue) -> Result<Option<String>, String> {
    let sizes: BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| "expected an object".to_string())?;
    let mut per_1k = None;
    for (size, cost) in sizes {
        let value = rescale(cost.get(), PER_THOUSAND).map_err(|e| format!("{size}: {e}"))?;
        match &per_1k {
            None => per_1k = Some(value),
            Some(seen) if *seen == value => {}
            Some(_) => return Ok(None),
        }
    }
    Ok(per_1k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_every_mapped_rate_exactly() {
        let text = r#"{
            "sample_spec": {"input_cost_per_token": "x", "litellm_provider": "one of"},
            "claude-sonnet-4-5": {
                "litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07,
                "cache_creation_input_token_cost": 3.75e-06,
                "cache_creation_input_token_cost_above_1hr": 6e-06,
                "input_cost_per_token_above_200k_tokens": 6e-06,
                "output_cost_per_token_above_200k_tokens": 2.25e-05,
                "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
                "search_context_cost_per_query": {"search_context_size_high": 0.01,
                    "search_context_size_low": 0.01, "search_context_size_medium": 0.01},
                "max_tokens": 64000
            },
            "gpt-5": {
                "litellm_provider": "openai", "mode": "chat",
                "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                "input_cost_per_token_flex": 6.25e-07, "output_cost_per_token_flex": 5e-06,
                "input_cost_per_token_priority": 2.5e-06, "output_cost_per_token_batches": 5e-06,
                "output_cost_per_reasoning_token": 1e-05
            },
            "openai/gpt-4o-audio-preview": {
                "litellm_provider": "openai", "mode": "chat",
                "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                "input_cost_per_audio_token": 4e-05, "output_cost_per_audio_token": 8e-05,
                "search_context_cost_per_query": {"search_context_size_low": 0.025,
                    "search_context_size_medium": 0.0275}
            },
            "gpt-4o-audio-preview": {
                "litellm_provider": "openai", "mode": "chat",
                "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                "input_cost_per_audio_token": 4e-05, "output_cost_per_audio_token": 8e-05
            },
            "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding",
                "input_cost_per_token": 2e-08},
            "whisper-1": {"litellm_provider": "openai", "mode": "audio_transcription",
                "input_cost_per_second": 0.0001},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation"},
            "bedrock/claude": {"litellm_provider": "bedrock", "input_cost_per_token": 1},
            "gemini-x": {"litellm_provider": "gemini", "input_cost_per_token": 1}
        }"#;
        let c = convert(text).unwrap();
        assert_eq!(
            c.prices["anthropic/claude-sonnet-4-5"],
            json!({
                "cache_write": "3.75", "cache_write_1h": "6", "cached_input": "0.3",
                "input": "3", "output": "15", "web_search_per_1k": "10",
                "tiers": [{"above_input_tokens": 200000, "cache_write_1h": "12",
                           "input": "6", "output": "22.5"}]
            })
        );
        assert_eq!(
            c.prices["openai/gpt-5"],
            json!({
                "input": "1.25", "output": "10",
                "service_tiers": {"batch": {"output": "5"},
                                  "flex": {"input": "0.625", "output": "5"},
                                  "priority": {"input": "2.5"}}
            })
        );
        assert_eq!(
            c.prices["openai/gpt-4o-audio-preview"],
            json!({"input": "2.5", "input_audio": "40", "output": "10", "output_audio": "80"})
        );
        assert_eq!(
            c.prices["openai/text-embedding-3-small"],
            json!({"input": "0.02", "output": "0"})
        );
        assert_eq!(c.prices.len(), 4);
        assert_eq!(
            c.other_providers,
            BTreeMap::from([("bedrock".into(), 1), ("gemini".into(), 1)])
        );
        assert_eq!(c.skipped.len(), 2, "{:?}", c.skipped);
        assert_eq!(c.ignored_keys["output_cost_per_reasoning_token"], 1);
        assert!(c.notes[0].contains("gpt-4o-audio-preview"), "{:?}", c.notes);
    }

    #[test]
    fn any_bad_rate_fails_the_file_and_names_it() {
        let text = r#"{
            "gpt-a": {"litellm_provider": "openai", "input_cost_per_token": 1e-15,
                      "output_cost_per_token": 1e-06},
            "gpt-b": {"litellm_provider": "openai", "input_cost_per_token": -1e-06,
                      "output_cost_per_token": "0.1"},
            "gpt-c": {"litellm_provider": "openai", "input_cost_per_token": 1e-06},
            "other": {"litellm_provider": "bedrock", "input_cost_per_token": -5}
        }"#;
        let errors = convert(text).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("gpt-a: input_cost_per_token: 1e-15"));
        assert!(errors[1].contains("negative"));
        assert!(errors[2].contains("\"0.1\" is not a number"));
        assert_eq!(errors[3], "gpt-c: no output_cost_per_token");
        let twice = r#"{
            "gpt-a": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
            "openai/gpt-a": {"litellm_provider": "openai", "input_cost_per_token": 2e-06, "output_cost_per_token": 1e-06}
        }"#;
        assert!(convert(twice).unwrap_err()[0].contains("listed twice, with different prices"));
        assert!(convert("[1, 2]").is_err());
        assert!(convert("{").is_err());
    }

    #[test]
    fn places_keys() {
        let p = place("cache_read_input_token_cost_above_272k_tokens").unwrap();
        assert_eq!(
            (p.rate, p.tier, p.service_tier),
            ("cached_input", Some(272_000), None)
        );
        let p = place("cache_read_input_token_cost_priority").unwrap();
        assert_eq!((p.rate, p.service_tier), ("cached_input", Some("priority")));
        assert!(place("input_cost_per_token_above_k_tokens").is_none());
        assert!(place("input_cost_per_image").is_none());
    }
}
