//! Authenticating proxy requests by client key, through a short-lived cache
//! so the hot path rarely touches SQLite. Entries live one second, so a key
//! revoked anywhere — the admin API (which also invalidates at once) or a
//! CLI in another process — is refused within a second.
//!
//! Failed authentication is throttled per client address ([`AuthThrottle`]);
//! a blocked address is refused before any lookup.

use super::throttle::{AuthThrottle, retry_after_secs};
use crate::config::AuthThrottleConfig;
use crate::providers::{Route, Router};
use crate::store::ReadPool;
use crate::store::access_sql::{self, ClientKeyRow};
use http::HeaderMap;
use moka::future::Cache;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub type ClientKey = Arc<ClientKeyRow>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
    Revoked,
    Expired,
    Unavailable,
    /// More than one credential header value, or `Authorization` and
    /// `x-api-key` carrying different keys.
    Conflicting,
    /// This address failed authentication too often; nothing was looked up.
    Throttled {
        retry_after_secs: u64,
    },
}

/// A refused request: why, and whether it is its address's traced sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: AuthError,
    pub traced: bool,
}

/// The request carries more than one credential, or two that disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictingCredentials;

/// Refusals counted for `/metrics`.
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Failed authentications (missing, wrong, revoked, expired or
    /// conflicting key), including ones answered 429.
    pub failures: AtomicU64,
    /// Requests answered 429 because their address failed too often.
    pub throttled: AtomicU64,
}

#[derive(Clone)]
pub struct ClientAuth {
    cache: Cache<[u8; 32], Option<ClientKey>>,
    reads: ReadPool,
    throttle: Arc<AuthThrottle>,
    stats: Arc<AuthStats>,
}

impl ClientAuth {
    pub fn new(reads: ReadPool, throttle: AuthThrottleConfig) -> ClientAuth {
        ClientAuth {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
            reads,
            throttle: Arc::new(AuthThrottle::new(throttle)),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// The key a request presents: `Authorization: Bearer` or `x-api-key`
    /// (the Anthropic SDK sends either, or both with the same key). Two
    /// values of one header, or two headers with different keys, are
    /// refused rather than one picked: a proxy in front may have checked
    /// the other one.
    pub fn presented(headers: &HeaderMap) -> Result<Option<&str>, ConflictingCredentials> {
        let bearer = single(headers, http::header::AUTHORIZATION.as_str())?.and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
        });
        let api_key = single(headers, "x-api-key")?;
        match (bearer, api_key) {
            (Some(a), Some(b)) if a != b => Err(ConflictingCredentials),
            (Some(a), _) => Ok(Some(a)),
            (None, b) => Ok(b),
        }
    }

    /// Authenticates a request from `peer`; a refusal says whether it is
    /// to be traced (the first per address per minute) or only counted.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
        now_ms: i64,
    ) -> Result<ClientKey, Refused> {
        if let Some(wait) = self.throttle.blocked(peer) {
            return Err(self.throttled(peer, wait));
        }
        match self.check(headers, now_ms).await {
            Ok(key) => Ok(key),
            Err(AuthError::Unavailable) => Err(Refused {
                error: AuthError::Unavailable,
                traced: true,
            }),
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                match self.throttle.failed(peer) {
                    Some(wait) => Err(self.throttled(peer, wait)),
                    None => Err(Refused {
                        error: e,
                        traced: self.throttle.sample(peer),
                    }),
                }
            }
        }
    }

    /// For credentials checked elsewhere (the admin API): when `peer` is
    /// blocked for failing too often, the seconds it must wait.
    pub fn blocked_for(&self, peer: IpAddr) -> Option<u64> {
        let wait = self.throttle.blocked(peer)?;
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        Some(retry_after_secs(wait))
    }

    /// Counts a failed authentication checked elsewhere (the admin API)
    /// against `peer`'s budget, the same one the proxy routes use; returns
    /// the seconds to wait once that blocked the address.
    pub fn failed_elsewhere(&self, peer: IpAddr) -> Option<u64> {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let wait = self.throttle.failed(peer)?;
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        Some(retry_after_secs(wait))
    }

    fn throttled(&self, peer: IpAddr, wait: Duration) -> Refused {
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        Refused {
            error: AuthError::Throttled {
                retry_after_secs: retry_after_secs(wait),
            },
            traced: self.throttle.sample(peer),
        }
    }

    async fn check(&self, headers: &HeaderMap, now_ms: i64) -> Result<ClientKey, AuthError> {
        let presented = Self::presented(headers)
            .map_err(|_| AuthError::Conflicting)?
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

/// The one value of header `name`, trimmed; `None` when absent, empty or
/// not text.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, ConflictingCredentials> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ConflictingCredentials);
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty()))
}

/// Whether `key` may use `route`. Each allowlist entry stands for
/// provider-qualified models: `*` for all; `provider/model` for exactly
/// that; anything else (a bare model name or an alias) for what the router
/// resolves it to now — a bare name for the provider that lists it, an
/// alias for any of its targets. So `gpt-4o-mini` allows `openai/gpt-4o-mini` (and
/// an alias pointing there) but not another provider's `gpt-4o-mini`.
pub fn model_allowed(key: &ClientKeyRow, router: &Router, route: &Route) -> bool {
    let Some(list) = &key.models else {
        return true;
    };
    let is_route =
        |provider: &str, model: &str| provider == route.provider.name && model == route.model;
    list.iter().any(|entry| {
        entry == "*"
            || entry
                .split_once('/')
                .is_some_and(|(provider, model)| is_route(provider, model))
            || router
                .resolve(entry)
                .is_some_and(|all| all.iter().any(|r| is_route(&r.provider.name, &r.model)))
    })
}
