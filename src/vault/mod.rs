//! Provider keys stored in the database, sealed with AES-256-GCM under a
//! master key that never touches it (`crypto`), and held decrypted only in
//! memory while `serve` runs (`Vault`). Requests spread across a provider's
//! keys; a key the upstream rejects with 401 is set aside once a probe
//! confirms it, and re-tested later (`proxy/key_recheck.rs`, which sends
//! the probes).

pub mod crypto;

use crate::config::EnvSource;
use crate::secret::Secret;
use crate::store::access_sql::ProviderKeyRow;
use crypto::{MasterKey, Sealed, VaultError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
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
    /// A probe of this key is under way.
    checking: AtomicBool,
    /// When this process set the key aside, the time (Unix ms) it is due to
    /// be probed again; 0: not due (enabled, or disabled by an operator).
    retest_at_ms: AtomicI64,
}

/// A claim on probing one stored key: at most one probe per key at a time,
/// released on drop. Holds the key itself, so it stays valid (and its
/// outcome harmless) if the key is deleted meanwhile.
pub struct KeyCheck {
    key: Arc<LiveKey>,
    next_retest_ms: Arc<AtomicI64>,
}

impl KeyCheck {
    pub fn id(&self) -> &str {
        &self.key.id
    }

    pub fn key(&self) -> &Secret {
        &self.key.plain
    }

    /// Sets the key aside until `retest_at_ms`; returns whether it was
    /// enabled until now.
    pub fn set_aside(&self, retest_at_ms: i64) -> bool {
        self.postpone(retest_at_ms);
        !self.key.disabled.swap(true, Ordering::Relaxed)
    }

    /// The key failed its re-test: try again at `retest_at_ms`.
    pub fn postpone(&self, retest_at_ms: i64) {
        self.key.retest_at_ms.store(retest_at_ms, Ordering::Relaxed);
        let _ = self
            .next_retest_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == 0 || retest_at_ms < cur).then_some(retest_at_ms)
            });
    }

    /// Uses the key again; returns whether it was disabled until now.
    pub fn restore(&self) -> bool {
        self.key.retest_at_ms.store(0, Ordering::Relaxed);
        self.key.disabled.swap(false, Ordering::Relaxed)
    }
}

impl Drop for KeyCheck {
    fn drop(&mut self) {
        self.key.checking.store(false, Ordering::Release);
    }
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
    /// The earliest `retest_at_ms` of any key (0: none), so that requests
    /// look for keys due a re-test only when one may be.
    next_retest_ms: Arc<AtomicI64>,
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
                vault.retest_if_set_aside_by_upstream(row);
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
                checking: AtomicBool::new(false),
                retest_at_ms: AtomicI64::new(0),
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
            self.retest_if_set_aside_by_upstream(row);
            added += 1;
        }
        for id in known.iter().filter(|id| !rows.iter().any(|r| &r.id == *id)) {
            self.remove(id);
        }
        Ok(added)
    }

    /// A stored key disabled because the upstream refused it (not by an
    /// operator) is re-tested when its provider is next used.
    fn retest_if_set_aside_by_upstream(&self, row: &ProviderKeyRow) {
        let by_upstream = row
            .disabled_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("upstream answered 401"));
        if row.disabled_at_ms.is_none() || !by_upstream {
            return;
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.values().flatten().find(|k| k.id == row.id)
            && let Some(check) = self.claim(key)
        {
            check.postpone(1);
        }
    }

    fn claim(&self, key: &Arc<LiveKey>) -> Option<KeyCheck> {
        (!key.checking.swap(true, Ordering::Acquire)).then(|| KeyCheck {
            key: key.clone(),
            next_retest_ms: self.next_retest_ms.clone(),
        })
    }

    /// Claims the probe of key `id` (still enabled) after the upstream
    /// refused it; `None` when it is unknown, already set aside, or being
    /// probed.
    pub fn claim_check(&self, id: &str) -> Option<KeyCheck> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.values().flatten().find(|k| k.id == id)?;
        if key.disabled.load(Ordering::Relaxed) {
            return None;
        }
        self.claim(key)
    }

    /// Claims the re-test of every key of `provider` set aside by this
    /// process whose time has come. One atomic load when none is due.
    pub fn due_for_retest(&self, provider: &str, now_ms: i64) -> Vec<KeyCheck> {
        let next = self.next_retest_ms.load(Ordering::Relaxed);
        if next == 0 || now_ms < next {
            return Vec::new();
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut earliest = 0;
        let mut due = Vec::new();
        for (name, list) in keys.iter() {
            for key in list {
                let at = key.retest_at_ms.load(Ordering::Relaxed);
                if at == 0 || !key.disabled.load(Ordering::Relaxed) {
                    continue;
                }
                if name == provider
                    && at <= now_ms
                    && let Some(check) = self.claim(key)
                {
                    due.push(check);
                    continue;
                }
                if earliest == 0 || at < earliest {
                    earliest = at;
                }
            }
        }
        // Claimed keys are rescheduled (postponed or restored) by their check.
        self.next_retest_ms.store(earliest, Ordering::Relaxed);
        due
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        let v = Vault::default();
        v.insert("openai", "pk_a", Secret::new("sk-a".into()), false);
        v.insert("openai", "pk_b", Secret::new("sk-b".into()), false);
        v
    }

    #[test]
    fn a_refused_key_is_probed_once_set_aside_and_retested_when_due() {
        let v = vault();
        let check = v.claim_check("pk_a").unwrap();
        assert!(
            v.claim_check("pk_a").is_none(),
            "one probe per key at a time"
        );
        assert!(check.set_aside(1_000));
        drop(check);
        assert!(
            v.claim_check("pk_a").is_none(),
            "a set-aside key is not re-confirmed"
        );
        assert_eq!(v.pick("openai", &[]).unwrap().id, "pk_b");
        assert_eq!(v.pick("openai", &[]).unwrap().id, "pk_b");

        assert!(v.due_for_retest("openai", 999).is_empty(), "not due yet");
        assert!(
            v.due_for_retest("anthropic", 5_000).is_empty(),
            "another provider's"
        );
        let due = v.due_for_retest("openai", 1_000);
        assert_eq!(due.len(), 1);
        assert!(v.due_for_retest("openai", 1_000).is_empty(), "claimed");
        due[0].postpone(2_000);
        drop(due);
        assert!(v.due_for_retest("openai", 1_500).is_empty());
        let due = v.due_for_retest("openai", 2_000);
        assert!(due[0].restore());
        drop(due);
        assert!(v.due_for_retest("openai", i64::MAX).is_empty());
        let picked: Vec<String> = (0..2).map(|_| v.pick("openai", &[]).unwrap().id).collect();
        assert!(picked.contains(&"pk_a".to_string()), "{picked:?}");
    }

    #[test]
    fn keys_the_upstream_refused_before_a_restart_are_retested_not_operator_disabled_ones() {
        let master = MasterKey::generate();
        let plain = Secret::new("sk-x".into());
        let mut rows = Vec::new();
        for reason in ["upstream answered 401", "disabled by an operator"] {
            let mut row = new_row(&master, "openai", &plain).unwrap();
            row.disabled_at_ms = Some(1);
            row.disabled_reason = Some(reason.into());
            rows.push(row);
        }
        let v = Vault::load(&rows, Some(master)).unwrap();
        assert!(v.pick("openai", &[]).is_none());
        let due = v.due_for_retest("openai", 2);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id(), rows[0].id);
    }
}
