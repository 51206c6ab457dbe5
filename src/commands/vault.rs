//! `tollgate providers set-key` and `tollgate vault rotate|generate-key`.

use super::{EXIT_CONFIG, EXIT_DATABASE, Failure, actor, commit};
use crate::admin::changes;
use crate::audit::encoding::ChainKey;
use crate::config::{Config, EnvSource};
use crate::secret::Secret;
use crate::store::access_sql;
use crate::vault::crypto::MasterKey;
use rusqlite::Connection;

fn master(config: &Config, env: &dyn EnvSource) -> Result<MasterKey, Failure> {
    crate::vault::load_master(config.master_key_file.as_deref(), env)
        .map_err(|e| (EXIT_CONFIG, e.to_string()))?
        .ok_or((
            EXIT_CONFIG,
            "no master key: set TOLLGATE_MASTER_KEY (base64 of 32 bytes) or vault.master_key_file \
             (`tollgate vault generate-key` makes one)"
                .to_string(),
        ))
}

/// Checks that `master` opens every stored key before anything is added.
fn check_master(
    conn: &Connection,
    master: &MasterKey,
) -> Result<Vec<access_sql::ProviderKeyRow>, Failure> {
    let rows = access_sql::provider_keys(conn).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
    for row in &rows {
        crate::vault::open_row(master, row).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    }
    Ok(rows)
}

pub fn set_key(
    conn: &mut Connection,
    key: &ChainKey,
    config: &Config,
    env: &dyn EnvSource,
    provider: &str,
    plaintext: String,
) -> Result<String, Failure> {
    if !config.providers.iter().any(|p| p.name == provider) {
        return Err((2, format!("no provider named {provider:?} is configured")));
    }
    let plain = Secret::new(plaintext.trim().to_string());
    if plain.expose().is_empty() {
        return Err((2, "no key on standard input".into()));
    }
    let master = master(config, env)?;
    check_master(conn, &master)?;
    let row = crate::vault::new_row(&master, provider, &plain).map_err(|e| (1, e.to_string()))?;
    commit(conn, key, changes::set_provider_key(&actor(), &row))?;
    Ok(format!(
        "stored provider key {} for {provider} (…{}), sealed with master key {}; a running gateway picks it up on SIGHUP or restart",
        row.id, row.last4, row.master_key_id
    ))
}

pub fn rotate(
    conn: &mut Connection,
    key: &ChainKey,
    config: &Config,
    env: &dyn EnvSource,
    new_key_text: &str,
) -> Result<String, Failure> {
    let old = master(config, env)?;
    let new = MasterKey::from_base64(new_key_text)
        .map_err(|e| (EXIT_CONFIG, format!("the new master key: {e}")))?;
    let rows = check_master(conn, &old)?;
    let (mutation, count) =
        crate::vault::reseal_all(&old, &new, &rows).map_err(|e| (1, e.to_string()))?;
    commit(
        conn,
        key,
        changes::rotate_vault(&actor(), &old, &new, count, mutation),
    )?;
    Ok(format!(
        "re-encrypted {count} provider key(s) under master key {} (was {}); configure the new key before the next restart",
        new.id(),
        old.id()
    ))
}

pub fn generate() -> String {
    MasterKey::generate().to_base64()
}
