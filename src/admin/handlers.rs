//! One function per admin route: check, commit through the writer with the
//! audit entry, update what this process holds in memory, answer.

use super::Reply;
use super::changes::{self, KeyRefusal};
use super::error::AdminError;
use crate::access::limits::LimitsEdit;
use crate::ledger::prices::PriceSpec;
use crate::module_settings;
use crate::secret::Secret;
use crate::state::AppState;
use crate::store::AdminEntry;
use crate::store::access_sql::{self, Mutation};
use crate::trace::now_ms;
use crate::vault::crypto::MasterKey;
use serde::Deserialize;
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, AdminError>;

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Commits a change with its audit entry through the writer.
async fn commit(state: &AppState, entry: AdminEntry) -> Result<()> {
    state
        .writer
        .audit(entry)
        .await
        .map(drop)
        .map_err(AdminError::internal)
}

/// A change that only this API makes, as its audit entry.
fn change(action: &str, subject: String, detail: Value, mutation: Mutation) -> AdminEntry {
    AdminEntry {
        actor: ACTOR.into(),
        action: action.into(),
        subject,
        detail: detail.to_string(),
        mutation: Some(mutation),
    }
}

const ACTOR: &str = "admin";

pub async fn list_keys(state: &AppState) -> Result<Reply> {
    let keys = state
        .reads
        .read(access_sql::client_keys)
        .await
        .map_err(AdminError::internal)?;
    let shown = keys.iter().map(|k| {
        let mut out = changes::client_key_json(k);
        let window = crate::access::limits::budget_window(k.limits.budget_window);
        let scope = tollgate_modules::budget::Scope::Key(k.id.clone());
        let (spent, reserved) = state.budgets.usage(&scope, window);
        let spent = crate::access::limits::spent_json(&k.limits, spent, reserved, "live");
        if let (Value::Object(out), Value::Object(spent)) = (&mut out, spent) {
            out.extend(spent);
        }
        out
    });
    Ok(Reply::ok(shown.collect::<Vec<_>>()))
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

/// A JSON object body, its limit fields taken out.
fn object_with_limits(body: &[u8]) -> Result<(serde_json::Map<String, Value>, LimitsEdit)> {
    let Value::Object(mut fields) = parse::<Value>(body)? else {
        return Err(AdminError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    let edit = LimitsEdit::take_from_json(&mut fields).map_err(AdminError::BadRequest)?;
    Ok((fields, edit))
}

pub async fn create_key(state: &AppState, body: &[u8]) -> Result<Reply> {
    let (rest, edit) = object_with_limits(body)?;
    let req: NewKeyBody = serde_json::from_value(Value::Object(rest))
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    let mut row = crate::access::client_key_row(&req.name, req.expires_at.as_deref(), req.models)
        .map_err(AdminError::BadRequest)?;
    row.0.limits = edit
        .apply(access_sql::KeyLimits::default())
        .map_err(AdminError::BadRequest)?;
    commit(state, changes::create_client_key(ACTOR, &row.0)).await?;
    let mut out = changes::client_key_json(&row.0);
    out["key"] = row.1.expose().into();
    Ok(Reply::created(out))
}

/// The client keys `id` (an id or a display prefix) matches.
async fn keys_named(state: &AppState, id: &str) -> Result<Vec<access_sql::ClientKeyRow>> {
    let needle = id.to_string();
    state
        .reads
        .read(move |c| access_sql::find_client_keys(c, &needle))
        .await
        .map_err(AdminError::internal)
}

fn refused(e: KeyRefusal) -> AdminError {
    match e {
        KeyRefusal::NotFound(_) => AdminError::NotFound(e.to_string()),
        _ => AdminError::Conflict(e.to_string()),
    }
}

pub async fn revoke_key(state: &AppState, id: &str) -> Result<Reply> {
    let key = changes::revocable(&keys_named(state, id).await?, id).map_err(refused)?;
    let at = now_ms();
    commit(state, changes::revoke_client_key(ACTOR, &key.id, at)).await?;
    state.auth.invalidate_all();
    Ok(Reply::ok(json!({"id": key.id, "revoked_at": at})))
}

/// `PATCH /admin/v1/keys/{id}`: a limit field present sets it, `null`
/// clears it, absent leaves it.
pub async fn patch_key(state: &AppState, id: &str, body: &[u8]) -> Result<Reply> {
    let (rest, edit) = object_with_limits(body)?;
    if let Some(other) = rest.keys().next() {
        return Err(AdminError::BadRequest(format!(
            "unknown field {other:?}: a key's {} can be changed",
            crate::access::limits::FIELDS.join(", ")
        )));
    }
    let mut key = changes::the_key(&keys_named(state, id).await?, id).map_err(refused)?;
    let new = edit.apply(key.limits).map_err(AdminError::BadRequest)?;
    commit(
        state,
        changes::set_key_limits(ACTOR, &key.id, &key.limits, &new),
    )
    .await?;
    state.auth.invalidate_all();
    key.limits = new;
    Ok(Reply::ok(changes::client_key_json(&key)))
}

pub async fn list_provider_keys(state: &AppState) -> Result<Reply> {
    let keys = state
        .reads
        .read(access_sql::provider_keys)
        .await
        .map_err(AdminError::internal)?;
    Ok(Reply::ok(
        keys.iter()
            .map(changes::provider_key_json)
            .collect::<Vec<_>>(),
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
    let plain = Secret::new(req.key);
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
    commit(state, changes::set_provider_key(ACTOR, &row)).await?;
    state.vault.insert(&row.provider, &row.id, plain, false);
    Ok(Reply::created(changes::provider_key_json(&row)))
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
        change(
            "provider_key.delete",
            format!("provider_key:{id}"),
            json!({"id": id, "provider": row.provider}),
            Mutation::DeleteProviderKey { id: id.to_string() },
        ),
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
        changes::rotate_vault(ACTOR, &old, &new, count, mutation),
    )
    .await
    .map_err(|_| {
        AdminError::Conflict("the keys changed during rotation; nothing was rotated, retry".into())
    })?;
    let id = new.id().to_string();
    state.vault.set_master(new);
    Ok(Reply::ok(json!({"rotated": count, "master_key_id": id})))
}

/// Aliases with one target show it as a string, others as the list.
fn targets_json(targets: &[String]) -> Value {
    match targets {
        [one] => Value::String(one.clone()),
        all => json!(all),
    }
}

pub async fn list_aliases(state: &AppState) -> Result<Reply> {
    let router = state.router();
    let all: serde_json::Map<String, Value> = router
        .aliases()
        .map(|(a, t)| (a.to_string(), targets_json(t)))
        .collect();
    Ok(Reply::ok(all))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    /// `"provider/model"`, or a list of them tried in order.
    target: crate::config::AliasTargets,
}

pub async fn set_alias(state: &AppState, name: &str, body: &[u8]) -> Result<Reply> {
    let req: AliasBody = parse(body)?;
    let targets = req.target.into_vec();
    let router = state.router();
    crate::config::check_alias_targets(name, &targets, |provider| {
        router
            .providers()
            .iter()
            .find(|p| p.name == provider)
            .map(|p| p.protocol)
    })
    .map_err(AdminError::BadRequest)?;
    let shown = targets_json(&targets);
    commit(
        state,
        change(
            "alias.set",
            format!("alias:{name}"),
            json!({"name": name, "target": shown}),
            Mutation::SetAlias {
                name: name.to_string(),
                targets,
                at_ms: now_ms(),
            },
        ),
    )
    .await?;
    state.reload_aliases().await.map_err(AdminError::internal)?;
    Ok(Reply::ok(json!({"name": name, "target": shown})))
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
        change(
            "alias.delete",
            format!("alias:{name}"),
            json!({"name": name}),
            Mutation::DeleteAlias { name: owned },
        ),
    )
    .await?;
    state.reload_aliases().await.map_err(AdminError::internal)?;
    Ok(Reply::no_content())
}

async fn module_overrides(
    state: &AppState,
) -> Result<std::collections::BTreeMap<String, access_sql::ModuleOverrides>> {
    state
        .reads
        .read(access_sql::module_overrides)
        .await
        .map_err(AdminError::internal)
}

fn bad_setting(module: &str, e: tollgate_modules::settings::Invalid) -> AdminError {
    AdminError::BadRequest(if e.field == module || e.field == "module" {
        e.reason
    } else {
        format!("invalid value for {module}.{}: {}", e.field, e.reason)
    })
}

pub async fn list_modules(state: &AppState) -> Result<Reply> {
    let stored = module_overrides(state).await?;
    Ok(Reply::ok(json!({
        "modules": module_settings::views(&state.modules(), &stored)
    })))
}

pub async fn get_module(state: &AppState, name: &str) -> Result<Reply> {
    module_settings::known(name).map_err(|e| AdminError::NotFound(e.reason))?;
    let stored = module_overrides(state).await?;
    Ok(Reply::ok(module_settings::view(
        name,
        &state.modules(),
        stored.get(name),
    )))
}

/// The members named replace the module's; validated against the whole
/// module before anything is stored.
pub async fn put_module(state: &AppState, name: &str, body: &[u8]) -> Result<Reply> {
    module_settings::known(name).map_err(|e| bad_setting(name, e))?;
    let patch: Value = parse(body)?;
    let stored = module_overrides(state).await?;
    let (entry, _) = changes::set_module(ACTOR, &state.config.modules, &stored, name, &patch)
        .map_err(|e| bad_setting(name, e))?;
    commit(state, entry).await?;
    state.reload_modules().await.map_err(AdminError::internal)?;
    get_module(state, name).await
}

/// Back to the config file's settings.
pub async fn reset_module(state: &AppState, name: &str) -> Result<Reply> {
    module_settings::known(name).map_err(|e| AdminError::NotFound(e.reason))?;
    let stored = module_overrides(state).await?;
    let Some((entry, _)) = changes::reset_module(ACTOR, &state.config.modules, &stored, name)
    else {
        return Err(AdminError::NotFound(format!(
            "module {name} has no runtime settings: the config file's are in force"
        )));
    };
    commit(state, entry).await?;
    state.reload_modules().await.map_err(AdminError::internal)?;
    get_module(state, name).await
}

/// The circuit breakers of targets that have failed: state, consecutive
/// failures, when the breaker opened and when it lets a probe through.
pub async fn list_breakers(state: &AppState) -> Result<Reply> {
    let cooldown = state.modules().breaker.cooldown_ms as i64;
    let list: Vec<Value> = state
        .breaker
        .snapshot()
        .into_iter()
        .map(|b| {
            json!({
                "provider": b.provider,
                "model": b.model,
                "state": b.state.as_str(),
                "failures": b.failures,
                "opened_at": b.opened_at_ms,
                "probe_after": b.opened_at_ms.map(|t| t + cooldown),
            })
        })
        .collect();
    Ok(Reply::ok(json!({"breakers": list})))
}

pub async fn list_prices(state: &AppState) -> Result<Reply> {
    let table = state.prices.current();
    let list: Vec<Value> = table
        .entries()
        .into_iter()
        .map(|(provider, model, price, source)| {
            let mut row = json!({
                "provider": provider,
                "model": model,
                "source": source.as_str(),
                "unit": "USD per 1M tokens; web_search_per_1k: USD per 1,000 calls",
            });
            if let (Value::Object(row), Ok(Value::Object(spec))) =
                (&mut row, serde_json::to_value(PriceSpec::from(&price)))
            {
                row.extend(spec);
            }
            row
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
        change(
            "price.set",
            format!("price:{provider}/{model}"),
            json!({"provider": provider, "model": model, "price": spec}),
            Mutation::SetPrice {
                provider: provider.into(),
                model: model.into(),
                spec: spec.clone(),
                at_ms: now_ms(),
            },
        ),
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
        change(
            "price.delete",
            format!("price:{provider}/{model}"),
            json!({"provider": provider, "model": model}),
            Mutation::DeletePrice {
                provider: provider.into(),
                model: model.into(),
            },
        ),
    )
    .await?;
    state
        .reload_price_table()
        .await
        .map_err(AdminError::internal)?;
    Ok(Reply::no_content())
}

/// `GET /admin/v1/cache`: what is stored and what the traces record, plus
/// this process's hits, misses and savings since it started.
pub async fn cache_stats(state: &AppState) -> Result<Reply> {
    use std::sync::atomic::Ordering;
    let stats = state
        .reads
        .read(crate::store::cache_sql::stats)
        .await
        .map_err(AdminError::internal)?;
    let mut out = changes::cache_stats_json(&stats);
    let settings = state.modules();
    let (hits, misses) = state.cache.hits_and_misses();
    let saved = state.cache.saved_uc.load(Ordering::Relaxed);
    if let Value::Object(o) = &mut out {
        o.insert("enabled".into(), json!(settings.cache.enabled));
        o.insert(
            "since_start".into(),
            json!({
                "hits": hits,
                "misses": misses,
                "hit_ratio": (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                "saved_uc": saved,
                "saved_usd": crate::ledger::money::format_usd_exact(saved),
            }),
        );
    }
    Ok(Reply::ok(out))
}

/// `DELETE /admin/v1/cache[?namespace=N][&model=M]`: deletes the entries
/// selected (all without a filter), audited as `cache.purge`; this
/// process stops serving them at once.
pub async fn purge_cache(state: &AppState, query: Option<&str>) -> Result<Reply> {
    let filter = purge_filter(query)?;
    let counted = filter.clone();
    let entries = state
        .reads
        .read(move |conn| crate::store::cache_sql::count(conn, &counted))
        .await
        .map_err(AdminError::internal)?;
    commit(state, changes::purge_cache(ACTOR, &filter, entries)).await?;
    state.cache.clear();
    Ok(Reply::ok(json!({
        "purged": entries,
        "namespace": filter.namespace,
        "model": filter.model,
    })))
}

fn purge_filter(query: Option<&str>) -> Result<crate::store::cache_sql::PurgeFilter> {
    let mut filter = crate::store::cache_sql::PurgeFilter::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decoded(v)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                AdminError::BadRequest(format!("query parameter `{k}` needs a value"))
            })?;
        match k {
            "namespace" => filter.namespace = Some(v),
            "model" => filter.model = Some(v),
            _ => {
                return Err(AdminError::BadRequest(format!(
                    "unknown query parameter `{}` (known: namespace, model)",
                    crate::trace::truncated(k, 64)
                )));
            }
        }
    }
    Ok(filter)
}

/// A query value with `%XX` and `+` decoded; `None` if not UTF-8.
fn percent_decoded(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
