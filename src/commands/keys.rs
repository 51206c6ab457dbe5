//! `tollgate keys create|list|revoke|set-limits`.

use super::{EXIT_DATABASE, Failure, actor, commit};
use crate::access::limits::{LimitsEdit, budget_window, limits_json, spent_json};
use crate::access::printable;
use crate::admin::changes;
use crate::audit::encoding::ChainKey;
use crate::store::access_sql::{self, ClientKeyRow, KeyLimits};
use crate::store::budget_sql;
use rusqlite::Connection;
use tollgate_modules::budget::Window;

fn ms_to_text(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Creates a key; returns the lines to print, the key alone on the last.
pub fn create(
    conn: &mut Connection,
    key: &ChainKey,
    name: &str,
    expires: Option<&str>,
    models: Option<Vec<String>>,
    limits: &LimitsEdit,
) -> Result<Vec<String>, Failure> {
    let (mut row, plaintext) =
        crate::access::client_key_row(name, expires, models).map_err(|e| (2, e))?;
    row.limits = limits.apply(KeyLimits::default()).map_err(|e| (2, e))?;
    commit(conn, key, changes::create_client_key(&actor(), &row))?;
    Ok(vec![
        format!(
            "created client key {} ({}), expires {}",
            row.id,
            row.name,
            ms_to_text(row.expires_at_ms)
        ),
        "the key is shown only now; store it safely:".into(),
        plaintext.expose().to_string(),
    ])
}

pub fn list(conn: &Connection, json: bool) -> Result<String, Failure> {
    let keys = access_sql::client_keys(conn).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
    if json {
        let today = crate::ledger::utc_day(crate::trace::now_ms());
        let spending =
            budget_sql::spending(conn, &today).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
        let out: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                let mut out = as_json(k);
                let spent = spending
                    .keys
                    .iter()
                    .find(|r| r.name == k.id)
                    .map_or(0, |r| match budget_window(k.limits.budget_window) {
                        Window::Day => r.day_uc,
                        Window::Month => r.month_uc,
                        Window::Total => r.total_uc,
                    });
                // This process holds no reservations: those of a running
                // server are not visible here.
                if let (serde_json::Value::Object(out), serde_json::Value::Object(spent)) =
                    (&mut out, spent_json(&k.limits, spent, 0, "recorded"))
                {
                    out.extend(spent);
                }
                out
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n");
    }
    let mut out = format!(
        "{:<22} {:<20} {:<12} {:<26} {:<26} {:<26} MODELS\n",
        "ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "REVOKED"
    );
    for k in &keys {
        out.push_str(&format!(
            "{:<22} {:<20} {:<12} {:<26} {:<26} {:<26} {}\n",
            k.id,
            printable(&k.name),
            k.prefix,
            ms_to_text(Some(k.created_at_ms)),
            ms_to_text(k.expires_at_ms),
            ms_to_text(k.revoked_at_ms),
            k.models
                .as_ref()
                .map_or("any".into(), |m| printable(&m.join(",")).into_owned()),
        ));
    }
    Ok(out)
}

fn as_json(k: &ClientKeyRow) -> serde_json::Value {
    let mut out = serde_json::json!({
        "id": k.id, "name": k.name, "prefix": k.prefix, "models": k.models,
        "created_at": ms_to_text(Some(k.created_at_ms)),
        "expires_at": k.expires_at_ms.map(|m| ms_to_text(Some(m))),
        "revoked_at": k.revoked_at_ms.map(|m| ms_to_text(Some(m))),
    });
    if let (serde_json::Value::Object(out), serde_json::Value::Object(limits)) =
        (&mut out, limits_json(&k.limits))
    {
        out.extend(limits);
    }
    out
}

/// Sets or clears the limits `edit` names on the key `needle` names.
pub fn set_limits(
    conn: &mut Connection,
    key: &ChainKey,
    needle: &str,
    edit: &LimitsEdit,
) -> Result<String, Failure> {
    if edit.is_empty() {
        return Err((
            2,
            "name at least one limit to set: --rpm, --tpm, --max-parallel, --budget-usd, --budget-window".into(),
        ));
    }
    let found =
        access_sql::find_client_keys(conn, needle).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
    let target = changes::the_key(&found, needle).map_err(|e| (1, e.to_string()))?;
    let new = edit.apply(target.limits).map_err(|e| (2, e))?;
    commit(
        conn,
        key,
        changes::set_key_limits(&actor(), &target.id, &target.limits, &new),
    )?;
    Ok(format!(
        "limits of client key {} ({}) set: {}; a running gateway applies them within a second",
        target.id,
        printable(&target.name),
        limits_json(&new)
    ))
}

pub fn revoke(conn: &mut Connection, key: &ChainKey, needle: &str) -> Result<String, Failure> {
    let found =
        access_sql::find_client_keys(conn, needle).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
    let target = changes::revocable(&found, needle).map_err(|e| (1, e.to_string()))?;
    let at = crate::trace::now_ms();
    commit(
        conn,
        key,
        changes::revoke_client_key(&actor(), &target.id, at),
    )?;
    Ok(format!(
        "revoked client key {} ({}); a running gateway refuses it within a second",
        target.id,
        printable(&target.name)
    ))
}
