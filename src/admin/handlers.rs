//! One function per admin route: check, commit through the writer with the
//! audit entry, update what this process holds in memory, answer.

use super::Reply;
use super::error::AdminError;
use crate::app::AppState;
use crate::ledger::money::format_usd_exact;
use crate::ledger::prices::PriceSpec;
use crate::store::AdminEntry;
use crate::store::access_sql::{self, ClientKeyRow, Mutation, ProviderKeyRow};
use crate::trace::now_ms;
use crate::vault::crypto::{MasterKey, PlainKey};
use serde::Deserialize;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, AdminError>;

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn commit(
    state: &AppState,
    action: &str,
    subject: String,
    detail: Value,
    mutation: Option<Mutation>,
) -> Result<()> {
    state
        .writer
        .audit(AdminEntry {
            actor: "admin".into(),
            action: action.into(),
            subject,
            detail: detail.to_string(),
            mutation,
        })
        .await
        .map(drop)
        .map_err(AdminError::internal)
}

fn key_json(k: &ClientKeyRow) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "models": k.models,
        "created_at": k.created_at_ms,
        "expires_at": k.expires_at_ms,
        "revoked_at": k.revoked_at_ms,
    })
}

pub async fn list_keys(state: &AppState) -> Result<Reply> {
    let keys = state
        .reads
        .read(access_sql::client_keys)
        .await
        .map_err(AdminError::internal)?;
    Ok(Reply::ok(keys.iter().map(key_json).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
}

pub async fn create_key(state: &AppState, body: &[u8]) -> Result<Reply> {
    let req: NewKeyBody = parse(body)?;
    let row = crate::access::client_key_row(&req.name, req.expires_at.as_deref(), req.models)
        .map_err(AdminError::BadRequest)?;
    let detail = key_json(&row.0);
    commit(
        state,
        "client_key.create",
        format!("client_key:{}", row.0.id),
        detail,
        Some(Mutation::CreateClientKey(row.0.clone())),
    )
    .await?;
    let mut out = key_json(&row.0);
    out["key"] = row.1.expose().into();
    Ok(Reply::created(out))
}

pub async fn revoke_key(state: &AppState, id: &str) -> Result<Reply> {
    let needle = id.to_string();
    let found = state
        .reads
        .read(move |c| access_sql::find_client_keys(c, &needle))
        .await
        .map_err(AdminError::internal)?;
    let key = match found.as_slice() {
        [k] => k.clone(),
        [] => return Err(AdminError::NotFound(format!("no client key {id}"))),
        _ => {
            return Err(AdminError::Conflict(format!(
                "{id} matches several keys; use the id"
            )));
        }
    };
    if key.revoked_at_ms.is_some() {
        return Err(AdminError::Conflict(format!(
            "client key {} is already revoked",
            key.id
        )));
    }
    let at = now_ms();
    commit(
        state,
        "client_key.revoke",
        format!("client_key:{}", key.id),
        json!({"id": key.id, "revoked_at": at}),
        Some(Mutation::RevokeClientKey {
            id: key.id.clone(),
            at_ms: at,
        }),
    )
    .await?;
    state.auth.invalidate_all();
    Ok(Reply::ok(json!({"id": key.id, "revoked_at": at})))
}

fn provider_key_json(k: &ProviderKeyRow) -> Value {
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

pub async fn list_provider_keys(state: &AppState) -> Result<Reply> {
    let keys = state
        .reads
        .read(access_sql::provider_keys)
        .await
        .map_err(AdminError::internal)?;
    Ok(Reply::ok(
        keys.iter().map(provider_key_json).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderKeyBody {
    provider: String,
    key: String,
}

pub async fn set_provider_key(state: &AppState, body: &[u8]) -> Result<Reply> {
    let req: ProviderKeyBody = parse(body)?;
    let plain = PlainKey::new(req.key);
    if !state
        .router()
        .providers()
        .iter()
        .any(|p| p.name == req.provider)
    {
        return Err(AdminError::BadRequest(format!(
            "no provider named {:?} is configured",
            req.provider
        )));
    }
    let master = state.vault.master().ok_or_else(|| {
        AdminError::Conflict(
            "no master key is configured (TOLLGATE_MASTER_KEY or vault.master_key_file)".into(),
        )
    })?;
    let row =
        crate::vault::new_row(&master, &req.provider, &plain).map_err(AdminError::internal)?;
    commit(
        state,
        "provider_key.set",
        format!("provider_key:{}", row.id),
        provider_key_json(&row),
        Some(Mutation::SetProviderKey(row.clone())),
    )
    .await?;
    state.vault.insert(&row.provider, &row.id, plain, false);
    Ok(Reply::created(provider_key_json(&row)))
}

pub async fn delete_provider_key(state: &AppState, id: &str) -> Result<Reply> {
    let rows = state
        .reads
        .read(access_sql::provider_keys)
        .await
        .map_err(AdminError::internal)?;
    let Some(row) = rows.iter().find(|r| r.id == id) else {
        return Err(AdminError::NotFound(format!("no provider key {id}")));
    };
    commit(
        state,
        "provider_key.delete",
        format!("provider_key:{id}"),
        json!({"id": id, "provider": row.provider}),
        Some(Mutation::DeleteProviderKey { id: id.to_string() }),
    )
    .await?;
    state.vault.remove(id);
    Ok(Reply::no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    new_master_key: String,
}

pub async fn rotate_vault(state: &AppState, body: &[u8]) -> Result<Reply> {
    let req: RotateBody = parse(body)?;
    let new = MasterKey::from_base64(&req.new_master_key)
        .map_err(|e| AdminError::BadRequest(format!("new_master_key: {e}")))?;
    let old = state
        .vault
        .master()
        .ok_or_else(|| AdminError::Conflict("no master key is configured to rotate from".into()))?;
    let rows = state
        .reads
        .read(access_sql::provider_keys)
        .await
        .map_err(AdminError::internal)?;
    let (mutation, count) =
        crate::vault::reseal_all(&old, &new, &rows).map_err(AdminError::internal)?;
    commit(
        state,
        "vault.rotate",
        "vault".into(),
        json!({"from": old.id(), "to": new.id(), "keys": count}),
        Some(mutation),
    )
    .await
    .map_err(|_| {
        AdminError::Conflict("the keys changed during rotation; nothing was rotated, retry".into())
    })?;
    let id = new.id().to_string();
    state.vault.set_master(new);
    Ok(Reply::ok(json!({"rotated": count, "master_key_id": id})))
}

pub async fn list_aliases(state: &AppState) -> Result<Reply> {
    let router = state.router();
    let all: serde_json::Map<String, Value> = router
        .aliases()
        .map(|(a, t)| (a.to_string(), Value::String(t.to_string())))
        .collect();
    Ok(Reply::ok(all))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    target: String,
}

pub async fn set_alias(state: &AppState, name: &str, body: &[u8]) -> Result<Reply> {
    let req: AliasBody = parse(body)?;
    let Some((provider, model)) = req.target.split_once('/') else {
        return Err(AdminError::BadRequest(
            "target must be \"provider/model\"".into(),
        ));
    };
    if model.is_empty()
        || !state
            .router()
            .providers()
            .iter()
            .any(|p| p.name == provider)
    {
        return Err(AdminError::BadRequest(format!(
            "{:?} names no configured provider",
            req.target
        )));
    }
    commit(
        state,
        "alias.set",
        format!("alias:{name}"),
        json!({"name": name, "target": req.target}),
        Some(Mutation::SetAlias {
            name: name.to_string(),
            target: req.target.clone(),
            at_ms: now_ms(),
        }),
    )
    .await?;
    state.reload_aliases().await.map_err(AdminError::internal)?;
    Ok(Reply::ok(json!({"name": name, "target": req.target})))
}

pub async fn delete_alias(state: &AppState, name: &str) -> Result<Reply> {
    let owned = name.to_string();
    let stored = state
        .reads
        .read(access_sql::aliases)
        .await
        .map_err(AdminError::internal)?;
    if !stored.contains_key(&owned) {
        return Err(AdminError::NotFound(format!(
            "no alias {name} set through the admin API (aliases from the config file are changed there)"
        )));
    }
    commit(
        state,
        "alias.delete",
        format!("alias:{name}"),
        json!({"name": name}),
        Some(Mutation::DeleteAlias { name: owned }),
    )
    .await?;
    state.reload_aliases().await.map_err(AdminError::internal)?;
    Ok(Reply::no_content())
}

pub async fn list_prices(state: &AppState) -> Result<Reply> {
    let table = state.prices.current();
    let price = |uc: i64| format_usd_exact(uc);
    let list: Vec<Value> = table
        .entries()
        .into_iter()
        .map(|(provider, model, p, source)| {
            json!({
                "provider": provider,
                "model": model,
                "source": source.as_str(),
                "input": price(p.input),
                "output": price(p.output),
                "cached_input": p.cached_input.map(price),
                "cache_write": p.cache_write.map(price),
                "unit": "USD per 1M tokens",
            })
        })
        .collect();
    Ok(Reply::ok(list))
}

pub async fn set_price(
    state: &AppState,
    provider: &str,
    model: &str,
    body: &[u8],
) -> Result<Reply> {
    let spec: PriceSpec = parse(body)?;
    spec.parse()
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    commit(
        state,
        "price.set",
        format!("price:{provider}/{model}"),
        json!({"provider": provider, "model": model, "price": spec}),
        Some(Mutation::SetPrice {
            provider: provider.into(),
            model: model.into(),
            spec: spec.clone(),
            at_ms: now_ms(),
        }),
    )
    .await?;
    state
        .reload_price_table()
        .await
        .map_err(AdminError::internal)?;
    Ok(Reply::ok(
        json!({"provider": provider, "model": model, "price": spec}),
    ))
}

pub async fn delete_price(state: &AppState, provider: &str, model: &str) -> Result<Reply> {
    let stored = state
        .reads
        .read(access_sql::price_overrides)
        .await
        .map_err(AdminError::internal)?;
    if !stored.contains_key(&format!("{provider}/{model}")) {
        return Err(AdminError::NotFound(format!(
            "no price override for {provider}/{model} set through the admin API"
        )));
    }
    commit(
        state,
        "price.delete",
        format!("price:{provider}/{model}"),
        json!({"provider": provider, "model": model}),
        Some(Mutation::DeletePrice {
            provider: provider.into(),
            model: model.into(),
        }),
    )
    .await?;
    state
        .reload_price_table()
        .await
        .map_err(AdminError::internal)?;
    Ok(Reply::no_content())
}
