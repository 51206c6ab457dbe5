//! The administrative changes that both the admin API and the CLI make:
//! each as the audit entry that carries it, so the two record the same
//! thing, and the checks they share.

use crate::access::limits::limits_json;
use crate::store::AdminEntry;
use crate::store::access_sql::{ClientKeyRow, KeyLimits, Mutation, ProviderKeyRow};
use crate::vault::crypto::MasterKey;
use serde_json::{Value, json};

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

/// `PUT /admin/v1/modules/{name}` / `tollgate modules enable|disable`: the
/// module's runtime overrides replaced; `detail` has the settings in force
/// before and after.
pub fn set_module(
    actor: &str,
    name: &str,
    overrides: serde_json::Map<String, Value>,
    old: Value,
    new: Value,
) -> AdminEntry {
    let stored = Value::Object(overrides);
    entry(
        actor,
        "module.set",
        format!("module:{name}"),
        json!({"name": name, "overrides": stored, "old": old, "new": new}),
        Mutation::SetModule {
            name: name.to_string(),
            overrides: stored.to_string(),
            at_ms: crate::trace::now_ms(),
        },
    )
}

/// `DELETE /admin/v1/modules/{name}` / `tollgate modules reset`: back to the
/// config file's settings.
pub fn reset_module(actor: &str, name: &str, old: Value, new: Value) -> AdminEntry {
    entry(
        actor,
        "module.reset",
        format!("module:{name}"),
        json!({"name": name, "old": old, "new": new}),
        Mutation::ResetModule {
            name: name.to_string(),
        },
    )
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
