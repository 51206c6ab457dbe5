//! Provider keys stored in the database, sealed with AES-256-GCM under a
//! master key that never touches it (`crypto`), and held decrypted only in
//! memory while `serve` runs (`Vault`). Requests spread across a provider's
//! keys; a key the upstream rejects with 401 is set aside.

pub mod crypto;

use crate::config::EnvSource;
use crate::secret::Secret;
use crate::store::access_sql::ProviderKeyRow;
use crypto::{MasterKey, Sealed, VaultError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the master key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the master key from {from} is invalid: {source}")]
    Invalid { from: String, source: VaultError },
    #[error(
        "{count} provider key(s) are stored encrypted in the database but no master key is \
         configured: set TOLLGATE_MASTER_KEY (base64 of 32 bytes) or vault.master_key_file"
    )]
    MissingMaster { count: usize },
    #[error(
        "the configured master key (id {have}) is not the one that sealed provider key {key_id} \
         (sealed with id {sealed_with}); nothing was changed. Use the right key, or rotate with \
         the old one"
    )]
    WrongMaster {
        key_id: String,
        have: String,
        sealed_with: String,
    },
    #[error(
        "provider key {key_id} ({provider}) failed to decrypt: its ciphertext was altered or \
         moved from another row; nothing was changed"
    )]
    Tampered { key_id: String, provider: String },
}

/// The master key: `TOLLGATE_MASTER_KEY` wins over the key file.
pub fn load_master(
    file: Option<&Path>,
    env: &dyn EnvSource,
) -> Result<Option<MasterKey>, LoadError> {
    let found = crate::config::key_text("TOLLGATE_MASTER_KEY", file, env)
        .map_err(|(path, source)| LoadError::Read { path, source })?;
    let Some((text, from)) = found else {
        return Ok(None);
    };
    MasterKey::from_base64(&text)
        .map(Some)
        .map_err(|source| LoadError::Invalid { from, source })
}

/// Decrypts one stored row.
pub fn open_row(master: &MasterKey, row: &ProviderKeyRow) -> Result<Secret, LoadError> {
    let sealed = Sealed {
        nonce: row.nonce,
        ciphertext: row.ciphertext.clone(),
        master_key_id: row.master_key_id.clone(),
    };
    crypto::open(master, &row.provider, &row.id, &sealed).map_err(|e| match e {
        VaultError::WrongMasterKey { sealed_with, have } => LoadError::WrongMaster {
            key_id: row.id.clone(),
            have,
            sealed_with,
        },
        _ => LoadError::Tampered {
            key_id: row.id.clone(),
            provider: row.provider.clone(),
        },
    })
}

struct LiveKey {
    id: String,
    plain: Secret,
    disabled: AtomicBool,
}

/// A key chosen for one upstream call.
pub struct Chosen {
    pub id: String,
    pub key: Secret,
}

#[derive(Default)]
pub struct Vault {
    master: RwLock<Option<Arc<MasterKey>>>,
    keys: RwLock<HashMap<String, Vec<Arc<LiveKey>>>>,
    next: AtomicUsize,
}

impl Vault {
    /// Decrypts every stored key; any failure refuses the whole start.
    pub fn load(rows: &[ProviderKeyRow], master: Option<MasterKey>) -> Result<Vault, LoadError> {
        let vault = Vault::default();
        if !rows.is_empty() {
            let Some(m) = &master else {
                return Err(LoadError::MissingMaster { count: rows.len() });
            };
            for row in rows {
                let plain = open_row(m, row)?;
                vault.insert(&row.provider, &row.id, plain, row.disabled_at_ms.is_some());
            }
        }
        *vault.master.write().unwrap_or_else(|e| e.into_inner()) = master.map(Arc::new);
        Ok(vault)
    }

    pub fn master(&self) -> Option<Arc<MasterKey>> {
        self.master
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_master(&self, master: MasterKey) {
        *self.master.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(master));
    }

    pub fn insert(&self, provider: &str, id: &str, plain: Secret, disabled: bool) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.entry(provider.to_string())
            .or_default()
            .push(Arc::new(LiveKey {
                id: id.to_string(),
                plain,
                disabled: AtomicBool::new(disabled),
            }));
    }

    pub fn remove(&self, id: &str) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        for list in keys.values_mut() {
            list.retain(|k| k.id != id);
        }
    }

    /// The next enabled key of `provider`, round robin; `None` when the
    /// vault holds no usable key for it (the environment key is used then).
    pub fn pick(&self, provider: &str, skip: &[String]) -> Option<Chosen> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let list = keys.get(provider)?;
        let n = list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &list[(start + i) % n])
            .find(|k| !k.disabled.load(Ordering::Relaxed) && !skip.contains(&k.id))
            .map(|k| Chosen {
                id: k.id.clone(),
                key: k.plain.clone(),
            })
    }

    pub fn has_keys(&self, provider: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(provider).is_some_and(|l| !l.is_empty())
    }

    /// Brings the in-memory keys in line with the stored rows (keys added or
    /// deleted by another process); returns how many were added.
    pub fn sync(&self, rows: &[ProviderKeyRow]) -> Result<usize, LoadError> {
        let known: Vec<String> = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            keys.values().flatten().map(|k| k.id.clone()).collect()
        };
        let mut added = 0;
        for row in rows.iter().filter(|r| !known.contains(&r.id)) {
            let master = self
                .master()
                .ok_or(LoadError::MissingMaster { count: rows.len() })?;
            let plain = open_row(&master, row)?;
            self.insert(&row.provider, &row.id, plain, row.disabled_at_ms.is_some());
            added += 1;
        }
        for id in known.iter().filter(|id| !rows.iter().any(|r| &r.id == *id)) {
            self.remove(id);
        }
        Ok(added)
    }

    /// Sets a key aside; returns whether it was enabled until now.
    pub fn disable(&self, id: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.values()
            .flatten()
            .find(|k| k.id == id)
            .is_some_and(|k| !k.disabled.swap(true, Ordering::Relaxed))
    }
}

/// A new stored key for `provider`, sealed under `master`.
pub fn new_row(
    master: &MasterKey,
    provider: &str,
    plain: &Secret,
) -> Result<ProviderKeyRow, VaultError> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(|_| VaultError::Crypto)?;
    let id = format!("pk_{}", crate::audit::encoding::to_hex(&raw));
    let sealed = crypto::seal(master, provider, &id, plain.expose())?;
    Ok(ProviderKeyRow {
        id,
        provider: provider.to_string(),
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext,
        master_key_id: sealed.master_key_id,
        last4: crypto::last4(plain.expose()),
        created_at_ms: crate::trace::now_ms(),
        disabled_at_ms: None,
        disabled_reason: None,
    })
}

/// Every stored key re-sealed under `new`, as one mutation (applied in one
/// transaction, refused if the set of keys changed meanwhile).
pub fn reseal_all(
    old: &MasterKey,
    new: &MasterKey,
    rows: &[ProviderKeyRow],
) -> Result<(crate::store::access_sql::Mutation, usize), VaultError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let sealed = Sealed {
            nonce: row.nonce,
            ciphertext: row.ciphertext.clone(),
            master_key_id: row.master_key_id.clone(),
        };
        let next = crypto::reseal(old, new, &row.provider, &row.id, &sealed)?;
        out.push((row.id.clone(), next.nonce, next.ciphertext));
    }
    let count = out.len();
    Ok((
        crate::store::access_sql::Mutation::ResealProviderKeys {
            master_key_id: new.id().to_string(),
            rows: out,
        },
        count,
    ))
}
