//! The exact cache's in-memory tier and counters. Entries live in the
//! database (`store/cache_sql.rs`, written only by the writer); this tier
//! keeps hot ones in memory (moka, weighed in bytes, each entry expiring at
//! its own TTL) so a hit usually reads no SQLite at all. It is a copy: a
//! purge clears it at once in this process, and a purge by another process
//! (the CLI) is seen by the one-second poll of the purge generation
//! (`app.rs`).

use bytes::Bytes;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A stored answer, as served.
#[derive(Clone, Debug)]
pub struct Cached {
    /// The final message (JSON).
    pub body: Bytes,
    /// What the original answer cost (µ¢), the saving of a hit.
    pub cost_uc: Option<i64>,
    pub expires_at_ms: i64,
}

type Tier = moka::sync::Cache<[u8; 32], Arc<Cached>>;

/// Expires each entry at its own `expires_at_ms`.
struct ExpiresAt;

impl moka::Expiry<[u8; 32], Arc<Cached>> for ExpiresAt {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let left = value.expires_at_ms - crate::trace::now_ms();
        Some(Duration::from_millis(left.max(0) as u64))
    }
}

/// A cheap handle on the memory tier.
#[derive(Clone)]
pub struct Memory(Tier);

impl Memory {
    pub fn put(&self, key: [u8; 32], entry: Arc<Cached>) {
        self.0.insert(key, entry);
    }
}

pub struct ResponseCache {
    /// The tier and the byte capacity it was built with; rebuilt (empty)
    /// when `[modules.cache] memory_bytes` changes at runtime.
    tier: RwLock<(u64, Tier)>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Saved by hits since start (µ¢, where the original cost was known).
    pub saved_uc: AtomicI64,
    /// The database's purge generation last seen.
    generation: AtomicI64,
    /// Entries and bytes in the database, as last polled (`/metrics`).
    pub stored_entries: AtomicU64,
    pub stored_bytes: AtomicU64,
    /// The key of each body seen lately, by its exact bytes
    /// (`cache::raw_key`): a repeat skips parsing and canonicalising.
    keys: moka::sync::Cache<[u8; 32], [u8; 32]>,
}

/// Bodies whose key is remembered (64 bytes each, plus moka's overhead).
const REMEMBERED_KEYS: u64 = 16_384;

fn build(capacity: u64) -> Tier {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .weigher(|_k, v: &Arc<Cached>| {
            u32::try_from(v.body.len().saturating_add(64)).unwrap_or(u32::MAX)
        })
        .expire_after(ExpiresAt)
        .build()
}

impl ResponseCache {
    pub fn new(memory_bytes: u64) -> ResponseCache {
        ResponseCache {
            tier: RwLock::new((memory_bytes, build(memory_bytes))),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            saved_uc: AtomicI64::new(0),
            generation: AtomicI64::new(-1),
            stored_entries: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            keys: moka::sync::Cache::new(REMEMBERED_KEYS),
        }
    }

    /// The key remembered for the body with this `cache::raw_key`.
    pub fn known_key(&self, raw: &[u8; 32]) -> Option<[u8; 32]> {
        self.keys.get(raw)
    }

    pub fn remember_key(&self, raw: [u8; 32], key: [u8; 32]) {
        self.keys.insert(raw, key);
    }

    /// A handle on the memory tier, for storing an answer when its body
    /// completes (so the next request hits before the writer commits).
    pub fn memory(&self, memory_bytes: u64) -> Memory {
        Memory(self.tier(memory_bytes))
    }

    /// The tier for `memory_bytes` (a new, empty one when it changed).
    fn tier(&self, memory_bytes: u64) -> Tier {
        {
            let t = self.tier.read().unwrap_or_else(|e| e.into_inner());
            if t.0 == memory_bytes {
                return t.1.clone();
            }
        }
        let mut t = self.tier.write().unwrap_or_else(|e| e.into_inner());
        if t.0 != memory_bytes {
            *t = (memory_bytes, build(memory_bytes));
        }
        t.1.clone()
    }

    /// The entry for `key` if held in memory and not expired.
    pub fn get(&self, key: &[u8; 32], memory_bytes: u64, now_ms: i64) -> Option<Arc<Cached>> {
        self.tier(memory_bytes)
            .get(key)
            .filter(|c| c.expires_at_ms > now_ms)
    }

    pub fn put(&self, key: [u8; 32], entry: Arc<Cached>, memory_bytes: u64) {
        self.tier(memory_bytes).insert(key, entry);
    }

    /// Forgets every entry held in memory (after a purge).
    pub fn clear(&self) {
        self.tier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .invalidate_all();
    }

    /// Notes the database's purge generation; clears the tier when it moved
    /// since the last call (another process purged).
    pub fn saw_generation(&self, generation: i64) {
        let before = self.generation.swap(generation, Ordering::Relaxed);
        if before != -1 && before != generation {
            self.clear();
        }
    }

    /// `(hits, misses)` since start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_at_ms: i64) -> Arc<Cached> {
        Arc::new(Cached {
            body: Bytes::from_static(b"{}"),
            cost_uc: Some(1),
            expires_at_ms,
        })
    }

    #[test]
    fn expired_and_purged_entries_are_not_served() {
        let c = ResponseCache::new(1 << 20);
        let now = crate::trace::now_ms();
        c.put([1; 32], entry(now + 60_000), 1 << 20);
        c.put([2; 32], entry(now - 1), 1 << 20);
        assert!(c.get(&[1; 32], 1 << 20, now).is_some());
        assert!(c.get(&[2; 32], 1 << 20, now).is_none());
        c.saw_generation(0);
        assert!(c.get(&[1; 32], 1 << 20, now).is_some());
        c.saw_generation(1);
        assert!(c.get(&[1; 32], 1 << 20, now).is_none());
        c.put([1; 32], entry(now + 60_000), 1 << 20);
        // A new memory size starts an empty tier.
        assert!(c.get(&[1; 32], 2 << 20, now).is_none());
    }
}
