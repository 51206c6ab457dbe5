//! SQL for access control and runtime settings: client keys, admin
//! credentials, sealed provider keys, aliases, price overrides, module
//! settings. Every change
//! is a [`Mutation`], applied by [`apply`] inside the transaction that also
//! appends its audit entry — in the writer thread when `serve` makes it, in
//! the CLI's own transaction otherwise.

use crate::ledger::prices::PriceSpec;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClientKeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    #[serde(skip)]
    pub hash: [u8; 32],
    pub models: Option<Vec<String>>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// The key's own limits and budget; `None` fields fall back to the
    /// configured defaults (governance modules).
    #[serde(flatten)]
    pub limits: KeyLimits,
}

/// Per-key governance settings, as `keys create --rpm … --budget-usd …` and
/// `PATCH /admin/v1/keys/{id}` set them (migration 0005's columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u32>,
    /// Budget in micro-cents, spent within `budget_window`.
    pub budget_uc: Option<i64>,
    pub budget_window: Option<BudgetWindow>,
}

/// The window a budget is spent in: the UTC calendar day or month, or for
/// the key's whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetWindow {
    Day,
    Month,
    Total,
}

impl BudgetWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetWindow::Day => "day",
            BudgetWindow::Month => "month",
            BudgetWindow::Total => "total",
        }
    }

    pub fn from_name(s: &str) -> Option<BudgetWindow> {
        Some(match s {
            "day" => BudgetWindow::Day,
            "month" => BudgetWindow::Month,
            "total" => BudgetWindow::Total,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderKeyRow {
    pub id: String,
    pub provider: String,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
    pub master_key_id: String,
    pub last4: String,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
    pub disabled_reason: Option<String>,
}

/// A change to access or settings, applied with its audit entry.
#[derive(Clone, Debug)]
pub enum Mutation {
    CreateClientKey(ClientKeyRow),
    RevokeClientKey {
        id: String,
        at_ms: i64,
    },
    /// Replaces all of a key's limits (a `None` field: the default).
    SetKeyLimits {
        id: String,
        limits: KeyLimits,
    },
    CreateAdminCredential {
        id: String,
        prefix: String,
        hash: [u8; 32],
        at_ms: i64,
    },
    SetProviderKey(ProviderKeyRow),
    DeleteProviderKey {
        id: String,
    },
    DisableProviderKey {
        id: String,
        at_ms: i64,
        reason: String,
    },
    /// Every provider key re-sealed: `(id, nonce, ciphertext)` under
    /// `master_key_id`. Refused unless it covers every stored key.
    ResealProviderKeys {
        master_key_id: String,
        rows: Vec<(String, [u8; 12], Vec<u8>)>,
    },
    /// An alias and its targets, in order (at least one).
    SetAlias {
        name: String,
        targets: Vec<String>,
        at_ms: i64,
    },
    /// A circuit breaker's new state (the system's change, `breaker.*`).
    SetBreakerState(tollgate_modules::breaker::Status),
    DeleteAlias {
        name: String,
    },
    SetPrice {
        provider: String,
        model: String,
        spec: PriceSpec,
        at_ms: i64,
    },
    DeletePrice {
        provider: String,
        model: String,
    },
    /// A provider key set aside by the system, used again after a probe.
    EnableProviderKey {
        id: String,
    },
    /// A module's runtime overrides replaced (`overrides`: a JSON object).
    SetModule {
        name: String,
        overrides: String,
        at_ms: i64,
    },
    /// A module back to the config file's settings.
    ResetModule {
        name: String,
    },
    /// Exact-cache entries deleted (all, or by namespace / model); running
    /// servers drop their in-memory copies (the purge generation moves).
    PurgeCache {
        filter: super::cache_sql::PurgeFilter,
        at_ms: i64,
    },
    /// Several changes under one audit entry (e.g. `prices import`'s
    /// `SetPrice`s), applied in order; all or none.
    Many(Vec<Mutation>),
}

fn changed(n: usize) -> rusqlite::Result<()> {
    if n == 0 {
        Err(rusqlite::Error::QueryReturnedNoRows)
    } else {
        Ok(())
    }
}

pub fn apply(conn: &Connection, m: &Mutation) -> rusqlite::Result<()> {
    match m {
        Mutation::CreateClientKey(k) => {
            let models = k.models.as_ref().map(|m| serde_json::to_string(m).unwrap_or_default());
            let l = &k.limits;
            conn.execute(
                "INSERT INTO client_keys (id, name, prefix, hash, models, created_at_ms, expires_at_ms, revoked_at_ms,
                     rpm, tpm, max_parallel, budget_uc, budget_window)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9, ?10, ?11, ?12)",
                params![k.id, k.name, k.prefix, &k.hash[..], models, k.created_at_ms, k.expires_at_ms,
                    l.rpm, tpm_column(l)?, l.max_parallel, l.budget_uc, l.budget_window.map(BudgetWindow::as_str)],
            )
            .map(drop)
        }
        Mutation::SetKeyLimits { id, limits: l } => changed(conn.execute(
            "UPDATE client_keys SET rpm = ?2, tpm = ?3, max_parallel = ?4, budget_uc = ?5, budget_window = ?6
             WHERE id = ?1",
            params![id, l.rpm, tpm_column(l)?, l.max_parallel, l.budget_uc, l.budget_window.map(BudgetWindow::as_str)],
        )?),
        Mutation::RevokeClientKey { id, at_ms } => changed(conn.execute(
            "UPDATE client_keys SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
            params![id, at_ms],
        )?),
        Mutation::CreateAdminCredential { id, prefix, hash, at_ms } => conn
            .execute(
                "INSERT INTO admin_credentials (id, prefix, hash, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, prefix, &hash[..], at_ms],
            )
            .map(drop),
        Mutation::SetProviderKey(k) => conn
            .execute(
                "INSERT INTO provider_keys (id, provider, nonce, ciphertext, master_key_id, last4, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![k.id, k.provider, &k.nonce[..], k.ciphertext, k.master_key_id, k.last4, k.created_at_ms],
            )
            .map(drop),
        Mutation::DeleteProviderKey { id } => {
            changed(conn.execute("DELETE FROM provider_keys WHERE id = ?1", [id])?)
        }
        Mutation::DisableProviderKey { id, at_ms, reason } => changed(conn.execute(
            "UPDATE provider_keys SET disabled_at_ms = ?2, disabled_reason = ?3 WHERE id = ?1",
            params![id, at_ms, reason],
        )?),
        Mutation::EnableProviderKey { id } => changed(conn.execute(
            "UPDATE provider_keys SET disabled_at_ms = NULL, disabled_reason = NULL WHERE id = ?1",
            [id],
        )?),
        Mutation::ResealProviderKeys { master_key_id, rows } => {
            let stored: i64 = conn.query_row("SELECT count(*) FROM provider_keys", [], |r| r.get(0))?;
            if stored != rows.len() as i64 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            let mut stmt = conn.prepare(
                "UPDATE provider_keys SET nonce = ?2, ciphertext = ?3, master_key_id = ?4 WHERE id = ?1",
            )?;
            for (id, nonce, ciphertext) in rows {
                changed(stmt.execute(params![id, &nonce[..], ciphertext, master_key_id])?)?;
            }
            Ok(())
        }
        Mutation::SetAlias { name, targets, at_ms } => {
            let Some(first) = targets.first() else {
                return Err(rusqlite::Error::InvalidParameterCount(0, 1));
            };
            let list = (targets.len() > 1)
                .then(|| serde_json::to_string(targets))
                .transpose()
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            conn.execute(
                "INSERT INTO aliases (name, target, updated_at_ms, targets) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET target = excluded.target,
                     updated_at_ms = excluded.updated_at_ms, targets = excluded.targets",
                params![name, first, at_ms, list],
            )
            .map(drop)
        }
        Mutation::SetBreakerState(s) => conn
            .execute(
                "INSERT INTO breaker_state (provider, model, state, failures, opened_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (provider, model) DO UPDATE SET state = excluded.state,
                     failures = excluded.failures, opened_at_ms = excluded.opened_at_ms,
                     updated_at_ms = excluded.updated_at_ms",
                params![s.provider, s.model, s.state.as_str(), s.failures, s.opened_at_ms, s.changed_at_ms],
            )
            .map(drop),
        Mutation::DeleteAlias { name } => {
            changed(conn.execute("DELETE FROM aliases WHERE name = ?1", [name])?)
        }
        Mutation::SetPrice { provider, model, spec, at_ms } => conn
            .execute(
                "INSERT INTO price_overrides (provider, model, input, output, cached_input, cache_write, updated_at_ms, spec_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (provider, model) DO UPDATE SET input = excluded.input, output = excluded.output,
                     cached_input = excluded.cached_input, cache_write = excluded.cache_write,
                     updated_at_ms = excluded.updated_at_ms, spec_json = excluded.spec_json",
                params![provider, model, spec.input, spec.output, spec.cached_input, spec.cache_write, at_ms,
                    serde_json::to_string(spec).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?],
            )
            .map(drop),
        Mutation::DeletePrice { provider, model } => changed(conn.execute(
            "DELETE FROM price_overrides WHERE provider = ?1 AND model = ?2",
            params![provider, model],
        )?),
        Mutation::SetModule { name, overrides, at_ms } => conn
            .execute(
                "INSERT INTO module_settings (name, overrides, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET overrides = excluded.overrides, updated_at_ms = excluded.updated_at_ms",
                params![name, overrides, at_ms],
            )
            .map(drop),
        Mutation::ResetModule { name } => {
            changed(conn.execute("DELETE FROM module_settings WHERE name = ?1", [name])?)
        }
        Mutation::PurgeCache { filter, at_ms } => {
            super::cache_sql::purge(conn, filter, *at_ms).map(drop)
        }
        Mutation::Many(all) => all.iter().try_for_each(|m| apply(conn, m)),
    }
}

/// SQLite integers are i64; a larger `tpm` is refused rather than wrapped.
fn tpm_column(l: &KeyLimits) -> rusqlite::Result<Option<i64>> {
    l.tpm
        .map(|t| i64::try_from(t).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into())))
        .transpose()
}

const CLIENT_KEY_COLUMNS: &str = "id, name, prefix, hash, models, created_at_ms, expires_at_ms, revoked_at_ms, \
     rpm, tpm, max_parallel, budget_uc, budget_window";
const CLIENT_KEY_COLUMNS_BEFORE_LIMITS: &str = "id, name, prefix, hash, models, created_at_ms, expires_at_ms, revoked_at_ms, \
     NULL, NULL, NULL, NULL, NULL";

fn client_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientKeyRow> {
    let hash: Vec<u8> = r.get(3)?;
    let models: Option<String> = r.get(4)?;
    Ok(ClientKeyRow {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        hash: hash.try_into().unwrap_or([0; 32]),
        models: models.and_then(|m| serde_json::from_str(&m).ok()),
        created_at_ms: r.get(5)?,
        expires_at_ms: r.get(6)?,
        revoked_at_ms: r.get(7)?,
        limits: KeyLimits {
            rpm: r.get(8)?,
            tpm: r
                .get::<_, Option<i64>>(9)?
                .and_then(|t| u64::try_from(t).ok()),
            max_parallel: r.get(10)?,
            budget_uc: r.get(11)?,
            budget_window: r
                .get::<_, Option<String>>(12)?
                .as_deref()
                .and_then(BudgetWindow::from_name),
        },
    })
}

pub fn client_key_by_hash(
    conn: &Connection,
    hash: &[u8; 32],
) -> rusqlite::Result<Option<ClientKeyRow>> {
    conn.prepare_cached(&format!(
        "SELECT {CLIENT_KEY_COLUMNS} FROM client_keys WHERE hash = ?1"
    ))?
    .query_row([&hash[..]], client_key)
    .optional()
}

/// Every key. A database before migration 0005 (read, not migrated, by
/// `keys list`) reads back with no limits.
pub fn client_keys(conn: &Connection) -> rusqlite::Result<Vec<ClientKeyRow>> {
    let has_limits: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('client_keys') WHERE name = 'budget_window'",
        [],
        |r| r.get(0),
    )?;
    let columns = if has_limits {
        CLIENT_KEY_COLUMNS
    } else {
        CLIENT_KEY_COLUMNS_BEFORE_LIMITS
    };
    conn.prepare(&format!(
        "SELECT {columns} FROM client_keys ORDER BY created_at_ms, id"
    ))?
    .query_map([], client_key)?
    .collect()
}

/// Keys whose id or display prefix is `needle`.
pub fn find_client_keys(conn: &Connection, needle: &str) -> rusqlite::Result<Vec<ClientKeyRow>> {
    conn.prepare(&format!(
        "SELECT {CLIENT_KEY_COLUMNS} FROM client_keys WHERE id = ?1 OR prefix = ?1 ORDER BY id"
    ))?
    .query_map([needle], client_key)?
    .collect()
}

pub fn admin_credential_hashes(conn: &Connection) -> rusqlite::Result<Vec<[u8; 32]>> {
    conn.prepare("SELECT hash FROM admin_credentials")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .map(|h| h.map(|h| h.try_into().unwrap_or([0; 32])))
        .collect()
}

pub fn provider_keys(conn: &Connection) -> rusqlite::Result<Vec<ProviderKeyRow>> {
    conn.prepare(
        "SELECT id, provider, nonce, ciphertext, master_key_id, last4, created_at_ms, disabled_at_ms, disabled_reason
         FROM provider_keys ORDER BY provider, created_at_ms, id",
    )?
    .query_map([], |r| {
        let nonce: Vec<u8> = r.get(2)?;
        Ok(ProviderKeyRow {
            id: r.get(0)?,
            provider: r.get(1)?,
            nonce: nonce.try_into().unwrap_or([0; 12]),
            ciphertext: r.get(3)?,
            master_key_id: r.get(4)?,
            last4: r.get(5)?,
            created_at_ms: r.get(6)?,
            disabled_at_ms: r.get(7)?,
            disabled_reason: r.get(8)?,
        })
    })?
    .collect()
}

/// Each stored alias with its targets, in order.
pub fn aliases(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Vec<String>>> {
    conn.prepare("SELECT name, target, targets FROM aliases")?
        .query_map([], |r| {
            let targets = match r.get::<_, Option<String>>(2)? {
                Some(json) => serde_json::from_str(&json).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        2,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })?,
                None => vec![r.get(1)?],
            };
            Ok((r.get(0)?, targets))
        })?
        .collect()
}

/// A module's runtime overrides as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleOverrides {
    /// A JSON object: the members set at runtime.
    pub overrides: String,
    pub updated_at_ms: i64,
}

/// Every module's runtime overrides, by module name.
pub fn module_overrides(conn: &Connection) -> rusqlite::Result<BTreeMap<String, ModuleOverrides>> {
    conn.prepare("SELECT name, overrides, updated_at_ms FROM module_settings")?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                ModuleOverrides {
                    overrides: r.get(1)?,
                    updated_at_ms: r.get(2)?,
                },
            ))
        })?
        .collect()
}

/// Every persisted circuit breaker state.
pub fn breaker_states(
    conn: &Connection,
) -> rusqlite::Result<Vec<tollgate_modules::breaker::Status>> {
    use tollgate_modules::breaker::{State, Status};
    conn.prepare(
        "SELECT provider, model, state, failures, opened_at_ms, updated_at_ms FROM breaker_state",
    )?
    .query_map([], |r| {
        Ok(Status {
            provider: r.get(0)?,
            model: r.get(1)?,
            state: State::from_name(&r.get::<_, String>(2)?).unwrap_or(State::Closed),
            failures: r.get(3)?,
            opened_at_ms: r.get(4)?,
            changed_at_ms: r.get(5)?,
        })
    })?
    .collect()
}

/// Price overrides keyed `provider/model`: the whole spec as stored since
/// migration 0004, else (rows set before it) the four original rates.
pub fn price_overrides(conn: &Connection) -> rusqlite::Result<BTreeMap<String, PriceSpec>> {
    conn.prepare(
        "SELECT provider, model, input, output, cached_input, cache_write, spec_json FROM price_overrides",
    )?
    .query_map([], |r| {
        let key = format!("{}/{}", r.get::<_, String>(0)?, r.get::<_, String>(1)?);
        let spec = match r.get::<_, Option<String>>(6)? {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, e.into())
            })?,
            None => PriceSpec {
                input: r.get(2)?,
                output: r.get(3)?,
                cached_input: r.get(4)?,
                cache_write: r.get(5)?,
                ..PriceSpec::default()
            },
        };
        Ok((key, spec))
    })?
    .collect()
}
