//! Every module's switch and settings as one value, swapped whole when an
//! operator changes one at runtime.
//!
//! The same types read the config file's `[modules.NAME]` tables and the
//! admin API's `PUT /admin/v1/modules/{name}` bodies, so both are validated
//! by one set of rules. A runtime change is a *patch*: the members it names
//! replace the module's current ones and the rest are kept; the merged
//! module is then read back through its type (unknown members refused) and
//! checked by [`ModuleSettings::validate`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::invalid::Invalid;
use crate::{breaker, budget, cache, guardrails, rate_limit, retry, semantic_cache};

/// The modules an operator can switch, in the order the admin API lists them.
pub const NAMES: &[&str] = &[
    "rate_limit",
    "budget",
    "retry",
    "fallback",
    "breaker",
    "cache",
    "semantic_cache",
    "guardrails",
];

/// All modules' settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModuleSettings {
    pub rate_limit: rate_limit::Settings,
    pub budget: budget::Settings,
    pub retry: retry::Settings,
    pub fallback: retry::FallbackSettings,
    pub breaker: breaker::Settings,
    pub cache: cache::Settings,
    pub semantic_cache: semantic_cache::Settings,
    pub guardrails: guardrails::Settings,
}

impl ModuleSettings {
    /// Checks every module; the error names `module.field`.
    pub fn validate(&self) -> Result<(), Invalid> {
        let prefixed =
            |module: &str, e: Invalid| Invalid::new(format!("{module}.{}", e.field), e.reason);
        self.rate_limit
            .validate()
            .map_err(|e| prefixed("rate_limit", e))?;
        self.budget.validate().map_err(|e| prefixed("budget", e))?;
        self.retry.validate().map_err(|e| prefixed("retry", e))?;
        self.fallback
            .validate()
            .map_err(|e| prefixed("fallback", e))?;
        self.breaker
            .validate()
            .map_err(|e| prefixed("breaker", e))?;
        self.cache.validate().map_err(|e| prefixed("cache", e))?;
        self.semantic_cache
            .validate()
            .map_err(|e| prefixed("semantic_cache", e))?;
        self.guardrails
            .validate()
            .map_err(|e| prefixed("guardrails", e))?;
        Ok(())
    }

    /// One module's settings as a JSON object.
    pub fn get(&self, name: &str) -> Option<Value> {
        if !NAMES.contains(&name) {
            return None;
        }
        match serde_json::to_value(self) {
            Ok(Value::Object(mut all)) => all.remove(name),
            _ => None,
        }
    }

    /// Whether the module is switched on.
    pub fn enabled(&self, name: &str) -> Option<bool> {
        self.get(name)?.get("enabled")?.as_bool()
    }

    /// These settings with module `name` read from `module` (not validated).
    fn read_with(
        &self,
        name: &str,
        module: Map<String, Value>,
    ) -> Result<ModuleSettings, serde_json::Error> {
        let mut all = match serde_json::to_value(self) {
            Ok(Value::Object(all)) => all,
            _ => Map::new(),
        };
        all.insert(name.to_string(), Value::Object(module));
        serde_json::from_value(Value::Object(all))
    }

    /// These settings with `patch`'s members replacing module `name`'s,
    /// validated. Errors name the member (`rpm`), or the module when it is
    /// unknown or the patch is not an object.
    pub fn with(&self, name: &str, patch: &Value) -> Result<ModuleSettings, Invalid> {
        let Some(Value::Object(mut current)) = self.get(name) else {
            return Err(Invalid::new(
                name,
                format!("no such module (known: {})", NAMES.join(", ")),
            ));
        };
        let Value::Object(patch) = patch else {
            return Err(Invalid::new(name, "settings must be a JSON object"));
        };
        for (k, v) in patch {
            if !current.contains_key(k) {
                return Err(Invalid::new(
                    k.as_str(),
                    format!("module {name} has no such setting"),
                ));
            }
            current.insert(k.clone(), v.clone());
        }
        let next = self.read_with(name, current).map_err(|e| {
            // The message of a type error does not say which member; the
            // first member that fails alone is the one.
            let culprit = patch.iter().find(|(k, v)| {
                let mut alone = self
                    .get(name)
                    .and_then(|m| m.as_object().cloned())
                    .unwrap_or_default();
                alone.insert((*k).clone(), (*v).clone());
                self.read_with(name, alone).is_err()
            });
            Invalid::new(culprit.map_or(name, |(k, _)| k.as_str()), e.to_string())
        })?;
        next.validate().map_err(|e| {
            // `rate_limit.rpm` → `rpm` within the module being changed.
            let prefix = format!("{name}.");
            match e.field.strip_prefix(&prefix) {
                Some(field) => Invalid::new(field, e.reason),
                None => e,
            }
        })?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_replaces_only_the_members_it_names() {
        let base = ModuleSettings::default();
        let next = base
            .with("rate_limit", &json!({"rpm": 7, "enabled": false}))
            .unwrap();
        assert_eq!(next.rate_limit.rpm, 7);
        assert!(!next.rate_limit.enabled);
        assert_eq!(next.rate_limit.tpm, base.rate_limit.tpm);
        assert_eq!(next.enabled("rate_limit"), Some(false));
    }

    #[test]
    fn bad_patches_name_what_is_wrong() {
        let base = ModuleSettings::default();
        let err = |name: &str, patch: Value| base.with(name, &patch).unwrap_err().field;
        assert_eq!(err("nope", json!({})), "nope");
        assert_eq!(err("rate_limit", json!({"rpn": 1})), "rpn");
        assert_eq!(err("rate_limit", json!({"rpm": -1})), "rpm");
        assert_eq!(err("rate_limit", json!({"rpm": "ten"})), "rpm");
        assert_eq!(err("rate_limit", json!({"rpm": 5_000_000_000u64})), "rpm");
        assert_eq!(err("rate_limit", json!([1])), "rate_limit");
    }

    #[test]
    fn budget_patches_are_validated_by_member() {
        let base = ModuleSettings::default();
        let next = base
            .with(
                "budget",
                &json!({"global_usd": "1.5", "global_window": "day",
                        "providers": {"openai": {"usd": "2"}}}),
            )
            .unwrap();
        assert_eq!(next.budget.global().unwrap().limit_uc, 150_000_000);
        assert_eq!(
            next.budget.provider("openai").unwrap().limit_uc,
            200_000_000
        );
        let cleared = next.with("budget", &json!({"global_usd": null})).unwrap();
        assert_eq!(cleared.budget.global(), None);
        let err = |patch: Value| base.with("budget", &patch).unwrap_err().field;
        assert_eq!(err(json!({"global_usd": "1.123456789"})), "global_usd");
        assert_eq!(err(json!({"global_window": "week"})), "global_window");
        assert_eq!(
            err(json!({"unknown_price": "fallback"})),
            "fallback_input_usd_per_million"
        );
        assert_eq!(
            err(json!({"providers": {"openai": {"usd": "x"}}})),
            "providers"
        );
    }
}
