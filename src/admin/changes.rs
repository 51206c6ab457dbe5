//! The administrative changes that both the admin API and the CLI make:
//! each as the audit entry that carries it, so the two record the same
//! thing, and the checks they share.

use crate::access::limits::limits_json;
use crate::module_settings;
use crate::store::AdminEntry;
use crate::store::access_sql::ModuleOverrides;
use crate::store::access_sql::{ClientKeyRow, KeyLimits, Mutation, ProviderKeyRow};
use crate::vault::crypto::MasterKey;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tollgate_modules::ModuleSettings;
use tollgate_modules::settings::Invalid;

/// A client key as shown and audited (never the key or its hash), with its
/// limits (`budget_usd` the exact decimal of `budget_uc`).
pub fn client_key_json(k: &ClientKeyRow) -> Value {
    let mut out = json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "models": k.models,
        "created_at": k.created_at_ms,
        "expires_at": k.expires_at_ms,
        "revoked_at": k.revoked_at_ms,
    });
    if let (Value::Object(out), Value::Object(limits)) = (&mut out, limits_json(&k.limits)) {
        out.extend(limits);
    }
    out
}

/// A stored provider key as shown and audited (never the key).
pub fn provider_key_json(k: &ProviderKeyRow) -> Value {
    json!({
        "id": k.id,
        "provider": k.provider,
        "last4": k.last4,
        "created_at": k.created_at_ms,
        "master_key_id": k.master_key_id,
        "disabled_at": k.disabled_at_ms,
        "disabled_reason": k.disabled_reason,
    })
}

fn entry(actor: &str, action: &str, subject: String, detail: Value, m: Mutation) -> AdminEntry {
    AdminEntry {
        actor: actor.into(),
        action: action.into(),
        subject,
        detail: detail.to_string(),
        mutation: Some(m),
    }
}

pub fn create_client_key(actor: &str, row: &ClientKeyRow) -> AdminEntry {
    entry(
        actor,
        "client_key.create",
        format!("client_key:{}", row.id),
        client_key_json(row),
        Mutation::CreateClientKey(row.clone()),
    )
}

pub fn revoke_client_key(actor: &str, id: &str, at_ms: i64) -> AdminEntry {
    entry(
        actor,
        "client_key.revoke",
        format!("client_key:{id}"),
        json!({"id": id, "revoked_at": at_ms}),
        Mutation::RevokeClientKey {
            id: id.to_string(),
            at_ms,
        },
    )
}

/// `keys set-limits` / `PATCH /admin/v1/keys/{id}`: every limit replaced;
/// `detail` names the old and the new values.
pub fn set_key_limits(actor: &str, id: &str, old: &KeyLimits, new: &KeyLimits) -> AdminEntry {
    entry(
        actor,
        "key.limits.set",
        format!("client_key:{id}"),
        json!({"id": id, "old": limits_json(old), "new": limits_json(new)}),
        Mutation::SetKeyLimits {
            id: id.to_string(),
            limits: *new,
        },
    )
}

pub fn set_provider_key(actor: &str, row: &ProviderKeyRow) -> AdminEntry {
    entry(
        actor,
        "provider_key.set",
        format!("provider_key:{}", row.id),
        provider_key_json(row),
        Mutation::SetProviderKey(row.clone()),
    )
}

/// `tollgate prices import`: every price it sets (`Mutation::Many` of
/// `SetPrice`s) under one entry; `detail` says what was added and changed.
pub fn import_prices(actor: &str, detail: Value, set: Mutation) -> AdminEntry {
    entry(actor, "prices.import", "prices".into(), detail, set)
}

/// `reseal` is the mutation from `vault::reseal_all`.
pub fn rotate_vault(
    actor: &str,
    old: &MasterKey,
    new: &MasterKey,
    count: usize,
    reseal: Mutation,
) -> AdminEntry {
    entry(
        actor,
        "vault.rotate",
        "vault".into(),
        json!({"from": old.id(), "to": new.id(), "keys": count}),
        reseal,
    )
}

/// The one key `needle` (an id or a display prefix) names; `found` is what
/// `access_sql::find_client_keys` returned.
pub fn the_key(found: &[ClientKeyRow], needle: &str) -> Result<ClientKeyRow, KeyRefusal> {
    match found {
        [k] => Ok(k.clone()),
        [] => Err(KeyRefusal::NotFound(needle.to_string())),
        _ => Err(KeyRefusal::Ambiguous(needle.to_string())),
    }
}

/// Why a key named by id or prefix cannot be acted on.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefusal {
    #[error("no client key with id or prefix {0:?}")]
    NotFound(String),
    #[error("{0:?} matches several keys; use the id")]
    Ambiguous(String),
    #[error("client key {0} is already revoked")]
    AlreadyRevoked(String),
}

/// The one key `needle` (an id or a display prefix) names, if it may be
/// revoked; `found` is what `access_sql::find_client_keys` returned.
pub fn revocable(found: &[ClientKeyRow], needle: &str) -> Result<ClientKeyRow, KeyRefusal> {
    let key = the_key(found, needle)?;
    if key.revoked_at_ms.is_some() {
        return Err(KeyRefusal::AlreadyRevoked(key.id));
    }
    Ok(key)
}

/// `PUT /admin/v1/modules/{name}` / `tollgate modules enable|disable|set`:
/// `patch`'s members replace module `name`'s runtime overrides (validated
/// against the file's settings with them on top); `detail` has the settings
/// in force before and after. Also returns the module as it will be.
pub fn set_module(
    actor: &str,
    file: &ModuleSettings,
    stored: &BTreeMap<String, ModuleOverrides>,
    name: &str,
    patch: &Value,
) -> Result<(AdminEntry, Value), Invalid> {
    let overrides = Value::Object(module_settings::patched(
        file,
        stored.get(name),
        name,
        patch,
    )?);
    let at_ms = crate::trace::now_ms();
    let mut after = stored.clone();
    after.insert(
        name.to_string(),
        ModuleOverrides {
            overrides: overrides.to_string(),
            updated_at_ms: at_ms,
        },
    );
    let (old, new) = before_and_after(file, stored, &after, name);
    let entry = entry(
        actor,
        "module.set",
        format!("module:{name}"),
        json!({"name": name, "overrides": overrides, "old": old, "new": new}),
        Mutation::SetModule {
            name: name.to_string(),
            overrides: overrides.to_string(),
            at_ms,
        },
    );
    Ok((entry, new))
}

/// `DELETE /admin/v1/modules/{name}` / `tollgate modules reset`: back to the
/// config file's settings. `None` when the module has no runtime settings.
pub fn reset_module(
    actor: &str,
    file: &ModuleSettings,
    stored: &BTreeMap<String, ModuleOverrides>,
    name: &str,
) -> Option<(AdminEntry, Value)> {
    let mut after = stored.clone();
    after.remove(name)?;
    let (old, new) = before_and_after(file, stored, &after, name);
    let entry = entry(
        actor,
        "module.reset",
        format!("module:{name}"),
        json!({"name": name, "old": old, "new": new}),
        Mutation::ResetModule {
            name: name.to_string(),
        },
    );
    Some((entry, new))
}

/// Module `name`'s settings in force with `before`'s and with `after`'s
/// runtime overrides.
fn before_and_after(
    file: &ModuleSettings,
    before: &BTreeMap<String, ModuleOverrides>,
    after: &BTreeMap<String, ModuleOverrides>,
    name: &str,
) -> (Value, Value) {
    let of = |stored| {
        module_settings::in_force(file, stored)
            .get(name)
            .unwrap_or_default()
    };
    (of(before), of(after))
}

/// A purge of exact-cache entries (`cache.purge`): the filter and how many
/// entries it selected when asked.
pub fn purge_cache(
    actor: &str,
    filter: &crate::store::cache_sql::PurgeFilter,
    entries: i64,
) -> AdminEntry {
    let subject = match (&filter.namespace, &filter.model) {
        (None, None) => "cache:all".to_string(),
        (Some(ns), None) => format!("cache:namespace={ns}"),
        (None, Some(m)) => format!("cache:model={m}"),
        (Some(ns), Some(m)) => format!("cache:namespace={ns},model={m}"),
    };
    entry(
        actor,
        "cache.purge",
        subject,
        json!({"namespace": filter.namespace, "model": filter.model, "entries": entries}),
        Mutation::PurgeCache {
            filter: filter.clone(),
            at_ms: crate::trace::now_ms(),
        },
    )
}

/// The exact cache as the API and `tollgate cache stats --json` show it:
/// what is stored, and the hits, misses and savings the traces record
/// (`saved_usd` exact).
pub fn cache_stats_json(s: &crate::store::cache_sql::Stats) -> Value {
    use crate::ledger::money::format_usd_exact;
    let looked_up = s.traced_hits + s.traced_misses;
    json!({
        "entries": s.entries,
        "bytes": s.bytes,
        "entry_hits": s.entry_hits,
        "hits": s.traced_hits,
        "misses": s.traced_misses,
        "hit_ratio": (looked_up > 0).then(|| s.traced_hits as f64 / looked_up as f64),
        "saved_uc": s.saved_uc,
        "saved_usd": format_usd_exact(s.saved_uc),
    })
}
