//! `tollgate prices import FILE`: a price list as database overrides.
//!
//! The whole file is read and checked before anything is written; then the
//! added and changed prices are set in one transaction together with one
//! audit entry (`prices.import`) that records them. Prices already in force
//! with the same rates are left alone (no override is added for them).

use super::{InForce, flatten, litellm, spec_json};
use crate::commands::{EXIT_DATABASE, Failure};
use crate::ledger::prices::PriceSpec;
use crate::store::access_sql::Mutation;
use crate::store::{self, AdminEntry};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Exit code for a file that cannot be imported.
const EXIT_INVALID: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// JSON (starts with `{`) is read as LiteLLM's, anything else as TOML.
    Auto,
    /// `[prices."provider/model"]` tables or `[[price]]` entries.
    Toml,
    /// LiteLLM's `model_prices_and_context_window.json`.
    Litellm,
}

pub struct ImportOptions<'a> {
    pub file: &'a Path,
    pub format: ImportFormat,
    pub dry_run: bool,
    pub actor: String,
}

/// What an import would do or did, as printed.
struct Plan {
    added: Vec<(String, PriceSpec)>,
    changed: Vec<(String, PriceSpec, PriceSpec)>,
    unchanged: Vec<String>,
}

/// Reads, checks and (unless a dry run) writes; returns the report.
/// `conn` is the database (migrated, for writing unless a dry run; `None`
/// when a dry run finds no database), `config` the config file's prices.
pub fn import(
    opts: &ImportOptions<'_>,
    conn: Option<&mut Connection>,
    key: Option<&crate::audit::encoding::ChainKey>,
    config: &BTreeMap<String, PriceSpec>,
) -> Result<String, Failure> {
    let shown = opts.file.display();
    let text = std::fs::read_to_string(opts.file)
        .map_err(|e| (EXIT_INVALID, format!("cannot read {shown}: {e}")))?;
    let litellm = match opts.format {
        ImportFormat::Litellm => true,
        ImportFormat::Toml => false,
        ImportFormat::Auto => text.trim_start().starts_with('{'),
    };
    let mut report = String::new();
    let parsed = if litellm {
        litellm_specs(&text, &mut report)
    } else {
        toml_specs(&text)
    };
    let incoming = parsed.map_err(|errors| invalid(&shown.to_string(), &errors))?;
    let stored = match &conn {
        Some(c) => crate::store::access_sql::price_overrides(c).map_err(|e| {
            (
                EXIT_DATABASE,
                format!("cannot read the price overrides: {e}"),
            )
        })?,
        None => BTreeMap::new(),
    };
    let mut after = stored.clone();
    after.extend(incoming.clone());
    // The table `serve` would build with these overrides must build.
    InForce::load(config, &after).map_err(|e| {
        invalid(
            &shown.to_string(),
            &[format!("in force with the others: {e}")],
        )
    })?;
    let now = InForce::load(config, &stored).map_err(|e| (EXIT_INVALID, e))?;
    let plan = plan(&now, incoming);

    let format = if litellm { "litellm" } else { "toml" };
    let mut out = format!(
        "{shown} ({format}): {} added, {} changed, {} unchanged\n",
        plan.added.len(),
        plan.changed.len(),
        plan.unchanged.len()
    );
    out.push_str(&report);
    render(&plan, &mut out);

    if opts.dry_run {
        out.push_str("dry run: nothing written\n");
        return Ok(out);
    }
    if plan.added.is_empty() && plan.changed.is_empty() {
        out.push_str("nothing to write: every price is already in force\n");
        return Ok(out);
    }
    let (Some(conn), Some(key)) = (conn, key) else {
        return Err((EXIT_DATABASE, "no database to write to".into()));
    };
    let entry = audit_entry(opts, format, &plan);
    let (seq, _) = store::commit_admin(conn, key, &entry)
        .map_err(|e| (EXIT_DATABASE, format!("nothing was saved: {e}")))?;
    let _ = writeln!(
        out,
        "written: {} price override(s) and audit entry {seq} (prices.import), in one transaction; \
         a running `tollgate serve` puts them in force on SIGHUP or restart",
        plan.added.len() + plan.changed.len()
    );
    Ok(out)
}

fn invalid(file: &str, errors: &[String]) -> Failure {
    let mut msg = format!("{file}: {} problem(s), nothing written:", errors.len());
    for e in errors {
        let _ = write!(msg, "\n  {}", crate::access::printable(e));
    }
    (EXIT_INVALID, msg)
}

/// Checks a spec the way the price table will read it.
fn checked(key: &str, spec: PriceSpec, errors: &mut Vec<String>) -> Option<PriceSpec> {
    let well_formed = key
        .split_once('/')
        .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty());
    if !well_formed {
        errors.push(format!("{key:?}: key must be \"provider/model\""));
        return None;
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push(format!(
            "{key:?}: a model name has no whitespace or control characters"
        ));
        return None;
    }
    match spec.parse() {
        Ok(_) => Some(spec),
        Err(e) => {
            errors.push(format!("{key}: {e}"));
            None
        }
    }
}

/// `[prices."provider/model"]` tables (as in config.toml) and/or `[[price]]`
/// entries (as in the built-in table).
fn toml_specs(text: &str) -> Result<BTreeMap<String, PriceSpec>, Vec<String>> {
    let top: toml::Table = toml::from_str(text).map_err(|e| vec![format!("not TOML: {e}")])?;
    let mut specs = BTreeMap::new();
    let mut errors = Vec::new();
    let mut add = |key: String, value: toml::Value, errors: &mut Vec<String>| match value
        .try_into::<PriceSpec>()
    {
        Ok(spec) => {
            if let Some(spec) = checked(&key, spec, errors)
                && specs.insert(key.clone(), spec).is_some()
            {
                errors.push(format!("{key} is listed twice"));
            }
        }
        Err(e) => errors.push(format!("{key}: {}", e.message().trim())),
    };
    for (name, value) in top {
        match (name.as_str(), value) {
            ("prices", toml::Value::Table(prices)) => {
                for (key, value) in prices {
                    add(key, value, &mut errors);
                }
            }
            ("price", toml::Value::Array(list)) => {
                for (i, entry) in list.into_iter().enumerate() {
                    let toml::Value::Table(mut entry) = entry else {
                        errors.push(format!("price[{i}]: not a table"));
                        continue;
                    };
                    match (entry.remove("provider"), entry.remove("model")) {
                        (Some(toml::Value::String(p)), Some(toml::Value::String(m))) => {
                            add(format!("{p}/{m}"), toml::Value::Table(entry), &mut errors);
                        }
                        _ => errors.push(format!("price[{i}]: needs provider and model strings")),
                    }
                }
            }
            ("as_of", toml::Value::String(_)) => {}
            (other, _) => errors.push(format!(
                "unexpected top-level key {other:?}: a price file holds [prices.\"provider/model\"] tables or [[price]] entries"
            )),
        }
    }
    if specs.is_empty() && errors.is_empty() {
        errors.push("no prices in the file".into());
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

/// LiteLLM's map; what was left out is written to `report`.
fn litellm_specs(
    text: &str,
    report: &mut String,
) -> Result<BTreeMap<String, PriceSpec>, Vec<String>> {
    let converted = litellm::convert(text)?;
    let mut errors = Vec::new();
    let mut specs = BTreeMap::new();
    for (key, value) in converted.prices {
        match serde_json::from_value::<PriceSpec>(value) {
            Ok(spec) => {
                if let Some(spec) = checked(&key, spec, &mut errors) {
                    specs.insert(key, spec);
                }
            }
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if specs.is_empty() {
        return Err(vec!["no OpenAI or Anthropic prices in the file".into()]);
    }
    if !converted.other_providers.is_empty() {
        let total: usize = converted.other_providers.values().sum();
        let by: Vec<String> = converted
            .other_providers
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        let _ = writeln!(
            report,
            "skipped {total} entries of providers tollgate does not serve: {}",
            by.join(", ")
        );
    }
    if !converted.skipped.is_empty() {
        let _ = writeln!(report, "skipped {} entries:", converted.skipped.len());
        for s in &converted.skipped {
            let _ = writeln!(report, "  {}", crate::access::printable(s));
        }
    }
    if !converted.ignored_keys.is_empty() {
        let keys: Vec<String> = converted
            .ignored_keys
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect();
        let _ = writeln!(
            report,
            "ignored cost keys (no place in tollgate's price format): {}",
            crate::access::printable(&keys.join(", "))
        );
    }
    for note in &converted.notes {
        let _ = writeln!(report, "note: {}", crate::access::printable(note));
    }
    Ok(specs)
}

fn plan(now: &InForce, incoming: BTreeMap<String, PriceSpec>) -> Plan {
    let mut plan = Plan {
        added: Vec::new(),
        changed: Vec::new(),
        unchanged: Vec::new(),
    };
    for (key, spec) in incoming {
        match now.entries.get(&key) {
            None => plan.added.push((key, spec)),
            // Both parse: `incoming` was checked, `now` was built.
            Some((_, old)) if old.parse().ok() == spec.parse().ok() => plan.unchanged.push(key),
            Some((_, old)) => plan.changed.push((key, old.clone(), spec)),
        }
    }
    plan
}

fn one_line(spec: &PriceSpec) -> String {
    flatten(&spec_json(spec))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `input 3 → 2.5; +cache_write_1h=6; -cached_input (was 0.3)`.
fn difference(old: &PriceSpec, new: &PriceSpec) -> String {
    let old: BTreeMap<_, _> = flatten(&spec_json(old)).into_iter().collect();
    let new_flat = flatten(&spec_json(new));
    let mut parts = Vec::new();
    for (k, v) in &new_flat {
        match old.get(k) {
            Some(o) if o == v => {}
            Some(o) => parts.push(format!("{k} {o} → {v}")),
            None => parts.push(format!("+{k}={v}")),
        }
    }
    for (k, o) in &old {
        if !new_flat.iter().any(|(n, _)| n == k) {
            parts.push(format!("-{k} (was {o})"));
        }
    }
    parts.join("; ")
}

fn render(plan: &Plan, out: &mut String) {
    let p = |s: &str| crate::access::printable(s).into_owned();
    if !plan.added.is_empty() {
        out.push_str("added:\n");
        for (key, spec) in &plan.added {
            let _ = writeln!(out, "  + {}  {}", p(key), p(&one_line(spec)));
        }
    }
    if !plan.changed.is_empty() {
        out.push_str("changed:\n");
        for (key, old, new) in &plan.changed {
            let _ = writeln!(out, "  ~ {}  {}", p(key), p(&difference(old, new)));
        }
    }
    if !plan.unchanged.is_empty() {
        out.push_str("unchanged:\n");
        for key in &plan.unchanged {
            let _ = writeln!(out, "  = {}", p(key));
        }
    }
}

fn audit_entry(opts: &ImportOptions<'_>, format: &str, plan: &Plan) -> AdminEntry {
    let at_ms = crate::trace::now_ms();
    let set: Vec<(&String, &PriceSpec)> = plan
        .added
        .iter()
        .map(|(k, s)| (k, s))
        .chain(plan.changed.iter().map(|(k, _, s)| (k, s)))
        .collect();
    let mutations = set
        .iter()
        .map(|(key, spec)| {
            let (provider, model) = key.split_once('/').unwrap_or((key.as_str(), ""));
            Mutation::SetPrice {
                provider: provider.into(),
                model: model.into(),
                spec: (*spec).clone(),
                at_ms,
            }
        })
        .collect();
    let prices: serde_json::Map<String, Value> = set
        .iter()
        .map(|(k, s)| ((*k).clone(), spec_json(s)))
        .collect();
    let detail = json!({
        "file": opts.file.display().to_string(),
        "format": format,
        "added": plan.added.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "changed": plan.changed.iter().map(|(k, _, _)| k).collect::<Vec<_>>(),
        "unchanged": plan.unchanged.len(),
        "prices": prices,
    });
    crate::admin::changes::import_prices(&opts.actor, detail, Mutation::Many(mutations))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_toml_shapes_and_names_every_problem() {
        let specs = toml_specs(
            r#"
            as_of = "2026-01-01"
            [prices."openai/gpt-x"]
            input = "1"
            output = "2"
            [[price]]
            provider = "anthropic"
            model = "claude-x"
            input = "3"
            output = "15"
            cache_write = "3.75"
            "#,
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            specs["anthropic/claude-x"].cache_write.as_deref(),
            Some("3.75")
        );

        let errors = toml_specs(
            r#"
            [server]
            listen = "x"
            [prices."openai/a"]
            input = "1e-3"
            output = "1"
            [prices."nomodel"]
            input = "1"
            output = "1"
            [prices."openai/b"]
            input = "1"
            [prices."openai/c\u001b[2J"]
            input = "1"
            output = "1"
            "#,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("control characters")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("exponent")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("\"nomodel\"")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("output")), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("\"server\"")),
            "{errors:?}"
        );
        assert!(toml_specs("").is_err());
    }

    #[test]
    fn a_change_shows_what_changed() {
        // Built by deserialising, so the test compiles whatever fields the spec has.
        let spec = |input: &str, cached: Option<&str>| -> PriceSpec {
            let cached = cached.map_or(String::new(), |c| format!("cached_input = \"{c}\"\n"));
            toml::from_str(&format!("input = \"{input}\"\noutput = \"15\"\n{cached}")).unwrap()
        };
        assert_eq!(
            difference(&spec("3", Some("0.30")), &spec("2.50", None)),
            "input 3 → 2.5; -cached_input (was 0.3)"
        );
        assert_eq!(
            difference(&spec("3", None), &spec("3.0", Some("1"))),
            "+cached_input=1"
        );
    }
}
