//! Authenticating proxy requests by client key, through a short-lived cache
//! so the hot path rarely touches SQLite. Entries live one second, so a key
//! revoked anywhere — the admin API (which also invalidates at once) or a
//! CLI in another process — is refused within a second.

use crate::store::ReadPool;
use crate::store::access_sql::{self, ClientKeyRow};
use http::HeaderMap;
use moka::future::Cache;
use std::sync::Arc;
use std::time::Duration;

pub type ClientKey = Arc<ClientKeyRow>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
    Revoked,
    Expired,
    Unavailable,
}

#[derive(Clone)]
pub struct ClientAuth {
    cache: Cache<[u8; 32], Option<ClientKey>>,
    reads: ReadPool,
}

impl ClientAuth {
    pub fn new(reads: ReadPool) -> ClientAuth {
        ClientAuth {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
            reads,
        }
    }

    /// The key a request presents: `Authorization: Bearer` or `x-api-key`
    /// (the Anthropic SDK sends either).
    pub fn presented(headers: &HeaderMap) -> Option<&str> {
        if let Some(v) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let v = v.trim();
            if let Some(token) = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            {
                return Some(token.trim());
            }
        }
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Result<ClientKey, AuthError> {
        let presented = Self::presented(headers)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = *blake3::hash(presented.as_bytes()).as_bytes();
        let reads = self.reads.clone();
        let found = self
            .cache
            .try_get_with(hash, async move {
                reads
                    .read(move |c| access_sql::client_key_by_hash(c, &hash))
                    .await
                    .map(|row| row.map(Arc::new))
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "client key lookup failed");
                AuthError::Unavailable
            })?;
        let key = found.ok_or(AuthError::Invalid)?;
        // Found by hash; compared again in constant time all the same.
        if blake3::Hash::from_bytes(key.hash) != blake3::Hash::from_bytes(hash) {
            return Err(AuthError::Invalid);
        }
        if key.revoked_at_ms.is_some() {
            return Err(AuthError::Revoked);
        }
        if key.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(AuthError::Expired);
        }
        Ok(key)
    }

    /// Forgets every cached key now (after a revocation through this process).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

/// Whether `key` may use `requested` (as asked) / `resolved` (provider/model).
pub fn model_allowed(key: &ClientKeyRow, requested: &str, provider: &str, model: &str) -> bool {
    match &key.models {
        None => true,
        Some(list) => list.iter().any(|m| {
            m == requested || m == model || *m == format!("{provider}/{model}") || m == "*"
        }),
    }
}
