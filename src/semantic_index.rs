//! The semantic cache's in-memory index and counters
//! (`[modules.semantic_cache]`). The vectors are also in the database
//! (`store/semantic_sql.rs`, written by the writer with their exact-cache
//! entries); this copy is rebuilt from it at start (`app.rs`) and grows as
//! answers are stored (`proxy/body.rs`). An entry whose answer is gone
//! (evicted, purged) is dropped when a lookup finds it missing.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use tollgate_modules::semantic_cache::{Found, Index, Partition};

/// A cheap, shared handle on the index.
#[derive(Clone, Default)]
pub struct SemanticIndex(Arc<RwLock<Index>>);

impl SemanticIndex {
    pub fn insert(
        &self,
        partition: Partition,
        key: [u8; 32],
        vector: &[f32],
        expires_at_ms: i64,
        max_entries: usize,
    ) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(
            partition,
            key,
            vector,
            expires_at_ms,
            max_entries,
        );
    }

    pub fn search(
        &self,
        partition: &Partition,
        query: &[f32],
        threshold: f32,
        now_ms: i64,
    ) -> Option<Found> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .search(partition, query, threshold, now_ms)
    }

    pub fn remove(&self, partition: &Partition, key: &[u8; 32]) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(partition, key);
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index and what the semantic cache did since start.
#[derive(Default)]
pub struct Semantic {
    pub index: SemanticIndex,
    pub hits: AtomicU64,
    /// Embeddings calls that failed (the request went on as a miss).
    pub embed_failures: AtomicU64,
}
