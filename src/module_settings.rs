//! The module settings in force: the config file's `[modules.NAME]` tables,
//! then each module's runtime overrides from the database (set through
//! `PUT /admin/v1/modules/{name}` or `tollgate modules enable|disable`),
//! member by member. Once an operator sets a member at runtime it wins over
//! the file until `DELETE /admin/v1/modules/{name}` (or `tollgate modules
//! reset NAME`) removes the module's overrides.
//!
//! Shared by the admin API, the CLI and the running server's watcher, so
//! the three agree on what is in force.

use crate::store::access_sql::ModuleOverrides;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use tollgate_modules::ModuleSettings;
use tollgate_modules::settings::{Invalid, NAMES};

/// The file's settings with every stored module's overrides on top. A stored
/// row that no longer holds (a setting removed or tightened by an upgrade)
/// is skipped with a warning: the module keeps the file's settings.
pub fn in_force(
    file: &ModuleSettings,
    stored: &BTreeMap<String, ModuleOverrides>,
) -> ModuleSettings {
    let mut settings = file.clone();
    for (name, row) in stored {
        let applied = serde_json::from_str::<Value>(&row.overrides)
            .map_err(|e| Invalid::new(name.as_str(), e.to_string()))
            .and_then(|overrides| settings.with(name, &overrides));
        match applied {
            Ok(next) => settings = next,
            Err(e) => tracing::warn!(
                module = %name,
                error = %e,
                "the module's runtime settings in the database do not apply; its config file settings are in force"
            ),
        }
    }
    settings
}

/// The module's overrides after `patch` (the members it names replace the
/// stored ones), checked against the file's settings: the object to store.
pub fn patched(
    file: &ModuleSettings,
    stored: Option<&ModuleOverrides>,
    name: &str,
    patch: &Value,
) -> Result<Map<String, Value>, Invalid> {
    let Value::Object(members) = patch else {
        return Err(Invalid::new(name, "settings must be a JSON object"));
    };
    if members.is_empty() {
        return Err(Invalid::new(name, "name at least one setting to change"));
    }
    let mut overrides = stored_object(stored);
    overrides.extend(members.iter().map(|(k, v)| (k.clone(), v.clone())));
    let overrides_value = Value::Object(overrides);
    // Errors about members the patch did not name come from older overrides.
    file.with(name, &overrides_value)?;
    match overrides_value {
        Value::Object(o) => Ok(o),
        _ => unreachable!("built as an object"),
    }
}

/// What the admin API and `modules list --json` show for one module.
pub fn view(name: &str, in_force: &ModuleSettings, stored: Option<&ModuleOverrides>) -> Value {
    let settings = in_force.get(name).unwrap_or(Value::Null);
    json!({
        "name": name,
        "enabled": settings.get("enabled").and_then(Value::as_bool).unwrap_or(false),
        "settings": settings,
        "source": if stored.is_some() { "database" } else { "config" },
        "overrides": stored.map(|s| Value::Object(stored_object(Some(s)))),
        "updated_at": stored.map(|s| s.updated_at_ms),
    })
}

/// Every module's view, in [`NAMES`] order.
pub fn views(in_force: &ModuleSettings, stored: &BTreeMap<String, ModuleOverrides>) -> Vec<Value> {
    NAMES
        .iter()
        .map(|name| view(name, in_force, stored.get(*name)))
        .collect()
}

/// Whether `name` is a module.
pub fn known(name: &str) -> Result<(), Invalid> {
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(Invalid::new(
            "module",
            format!("no module named {name:?} (known: {})", NAMES.join(", ")),
        ))
    }
}

fn stored_object(stored: Option<&ModuleOverrides>) -> Map<String, Value> {
    match stored.map(|s| serde_json::from_str::<Value>(&s.overrides)) {
        Some(Ok(Value::Object(o))) => o,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> ModuleOverrides {
        ModuleOverrides {
            overrides: json.into(),
            updated_at_ms: 1,
        }
    }

    #[test]
    fn stored_members_win_over_the_file_one_by_one() {
        let mut file = ModuleSettings::default();
        file.rate_limit.rpm = 10;
        file.rate_limit.tpm = 99;
        let stored = [("rate_limit".to_string(), row(r#"{"rpm": 3}"#))].into();
        let s = in_force(&file, &stored);
        assert_eq!((s.rate_limit.rpm, s.rate_limit.tpm), (3, 99));
    }

    #[test]
    fn a_stored_row_that_no_longer_holds_leaves_the_file_in_force() {
        let mut file = ModuleSettings::default();
        file.rate_limit.rpm = 10;
        let stored = [
            ("rate_limit".to_string(), row(r#"{"gone": 1}"#)),
            ("retired_module".to_string(), row(r#"{"enabled": true}"#)),
        ]
        .into();
        assert_eq!(in_force(&file, &stored), file);
    }

    #[test]
    fn a_patch_accumulates_over_earlier_overrides() {
        let file = ModuleSettings::default();
        let before = row(r#"{"rpm": 3}"#);
        let next = patched(
            &file,
            Some(&before),
            "rate_limit",
            &json!({"enabled": false}),
        )
        .unwrap();
        assert_eq!(Value::Object(next), json!({"rpm": 3, "enabled": false}));
        let err = patched(&file, None, "rate_limit", &json!({"rpm": -2})).unwrap_err();
        assert_eq!(err.field, "rpm");
        assert_eq!(
            patched(&file, None, "rate_limit", &json!({}))
                .unwrap_err()
                .field,
            "rate_limit"
        );
    }
}
