//! `tollgate modules list|enable|disable|set|reset`: the runtime module
//! settings, changed in the database with an audit entry like the admin
//! API's `PUT /admin/v1/modules/{name}`; a running server puts them in force
//! within a second (it polls the table).

use super::{EXIT_DATABASE, Failure, actor, commit};
use crate::admin::changes;
use crate::audit::encoding::ChainKey;
use crate::module_settings::{self, in_force, views};
use crate::store::access_sql::{self, ModuleOverrides};
use rusqlite::Connection;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tollgate_modules::ModuleSettings;

fn stored(conn: &Connection) -> Result<BTreeMap<String, ModuleOverrides>, Failure> {
    access_sql::module_overrides(conn).map_err(|e| (EXIT_DATABASE, e.to_string()))
}

/// Every module, whether it is on, its settings in force and where they
/// come from (`config` or `database`).
pub fn list(file: &ModuleSettings, conn: &Connection, json: bool) -> Result<String, Failure> {
    let stored = stored(conn)?;
    let all = views(&in_force(file, &stored), &stored);
    if json {
        return Ok(serde_json::to_string_pretty(&all).unwrap_or_default() + "\n");
    }
    let mut out = format!(
        "{:<15} {:<8} {:<9} SETTINGS\n",
        "MODULE", "ENABLED", "SOURCE"
    );
    for m in &all {
        let settings = match &m["settings"] {
            Value::Object(o) => o
                .iter()
                .filter(|(k, _)| *k != "enabled")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<15} {:<8} {:<9} {}\n",
            m["name"].as_str().unwrap_or_default(),
            if m["enabled"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            m["source"].as_str().unwrap_or_default(),
            settings
        ));
    }
    Ok(out)
}

/// Reads `KEY=VALUE` pairs into a patch: a VALUE that parses as JSON is
/// taken as such (`rpm=60`, `enabled=false`), any other as a string.
pub fn patch_from_pairs(pairs: &[String]) -> Result<Value, Failure> {
    let mut patch = Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err((2, format!("{pair:?}: settings are given as KEY=VALUE")));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        patch.insert(k.trim().to_string(), value);
    }
    Ok(Value::Object(patch))
}

/// Sets members of module `name` (enable/disable set `enabled`).
pub fn set(
    file: &ModuleSettings,
    conn: &mut Connection,
    key: &ChainKey,
    name: &str,
    patch: &Value,
) -> Result<String, Failure> {
    module_settings::known(name).map_err(|e| (2, e.reason))?;
    let rows = stored(conn)?;
    let (entry, now) = changes::set_module(&actor(), file, &rows, name, patch).map_err(|e| {
        let field = if e.field == name {
            String::new()
        } else {
            format!("{name}.{}: ", e.field)
        };
        (2, format!("{field}{}", e.reason))
    })?;
    commit(conn, key, entry)?;
    Ok(format!(
        "module {name} set: {now}; a running gateway applies it within a second"
    ))
}

/// Removes module `name`'s runtime settings: the config file's apply again.
pub fn reset(
    file: &ModuleSettings,
    conn: &mut Connection,
    key: &ChainKey,
    name: &str,
) -> Result<String, Failure> {
    module_settings::known(name).map_err(|e| (2, e.reason))?;
    let rows = stored(conn)?;
    let Some((entry, now)) = changes::reset_module(&actor(), file, &rows, name) else {
        return Err((
            1,
            format!("module {name} has no runtime settings: the config file's are in force"),
        ));
    };
    commit(conn, key, entry)?;
    Ok(format!(
        "module {name} back to the config file's settings: {now}; a running gateway applies it within a second"
    ))
}
