//! The exact cache on the request path (`[modules.cache]`): consulted after
//! authentication and routing and *before* the module pipeline — a hit
//! goes nowhere upstream and costs nothing, so it reserves no budget and
//! takes no rate-limit token — and, on a miss, the answer to store is put
//! on the trace for the writer (`CacheEntry`), which inserts it with the
//! trace only if the request completed with a 2xx.
//!
//! The key is `tollgate_modules::cache::key` (docs/CACHE.md). Lookups read
//! the in-memory tier (`response_cache.rs`), then the database through the
//! read pool; nothing is written on the request path.
//!
//! Streams: an entry is a final message, so a stream request is served from
//! one by replaying it as a stream in the client's protocol ([`stream_hit`],
//! `providers/replay.rs`), and a streamed answer is stored once assembled
//! into its final message from the upstream's bytes (`body.rs`,
//! `providers/assemble.rs`) — so either kind of request serves the other.
//!
//! The semantic cache (`[modules.semantic_cache]`, `semantic.rs`) is asked
//! only when the exact lookup missed: a hit there serves the stored answer
//! of a similar conversation in the same partition like an exact hit
//! (`x-tollgate-cache: semantic-hit`).

use super::Endpoint;
use super::error::ProxyError;
use crate::http::{Body, full};
use crate::providers::Route;
use crate::providers::replay;
use crate::response_cache::Cached;
use crate::state::AppState;
use crate::trace::{CacheEntry, CacheStatus, SemanticVector, Trace, now_ms};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tollgate_modules::cache::{self, Directive, KeyInput};
use tollgate_modules::semantic_cache;

/// The request control and the response's report.
pub const HEADER: &str = "x-tollgate-cache";
/// The TTL (seconds) for the entry a request stores.
pub const TTL_HEADER: &str = "x-tollgate-cache-ttl";

/// The stream in `endpoint`'s protocol that replays the stored final
/// message `stored` (OpenAI chunks ending in `[DONE]`, the usage chunk only
/// when `include_usage`; Anthropic's full event sequence). `None`: cannot
/// replay, the request goes upstream.
fn stream_hit(stored: &[u8], endpoint: Endpoint, include_usage: bool) -> Option<Bytes> {
    let message: serde_json::Value = serde_json::from_slice(stored).ok()?;
    replay::stream_body(endpoint.protocol(), &message, include_usage)
}

/// An answer from the cache.
pub struct Hit {
    body: Bytes,
    content_type: &'static str,
    /// `hit`, or `semantic-hit` (the `x-tollgate-cache` value).
    shown: &'static str,
}

/// What the request asked of the cache in its headers.
struct Controls {
    directive: Option<Directive>,
    ttl_secs: Option<u64>,
}

fn controls(headers: &HeaderMap) -> Result<Controls, ProxyError> {
    let text = |name: &'static str| -> Result<Option<&str>, ProxyError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(Some)
                .map_err(|_| ProxyError::InvalidCacheHeader {
                    header: name,
                    reason: "is not visible ASCII".into(),
                }),
        }
    };
    let directive = text(HEADER)?
        .map(|v| {
            Directive::parse(v).map_err(|reason| ProxyError::InvalidCacheHeader {
                header: HEADER,
                reason,
            })
        })
        .transpose()?;
    let ttl_secs = text(TTL_HEADER)?
        .map(|v| {
            cache::parse_ttl(v).map_err(|reason| ProxyError::InvalidCacheHeader {
                header: TTL_HEADER,
                reason,
            })
        })
        .transpose()?;
    Ok(Controls {
        directive,
        ttl_secs,
    })
}

/// What the request is, for the cache.
pub struct Asked<'a> {
    pub endpoint: Endpoint,
    /// The client key's id (or the anonymous one).
    pub key_id: &'a str,
    pub route: &'a Route,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub stream: bool,
    /// A stream request that asked for its usage chunk.
    pub include_usage: bool,
}

/// Looks the request up when the module is on; a hit is returned, anything
/// else is noted on the trace (status, and the entry to store on a miss or
/// refresh). A bad control header is refused (400 naming it).
pub async fn consult(
    state: &AppState,
    asked: Asked<'_>,
    trace: &mut Trace,
) -> Result<Option<Hit>, ProxyError> {
    let settings = state.modules();
    let s = &settings.cache;
    if !s.enabled {
        return Ok(None);
    }
    let controls = controls(asked.headers)?;
    if controls.directive == Some(Directive::Skip) {
        trace.cache.status = Some(CacheStatus::Skip);
        return Ok(None);
    }
    let namespace = s.namespace_of(asked.key_id);
    let (provider, model) = (&asked.route.provider.name, &asked.route.model);
    let raw = cache::raw_key(
        namespace,
        asked.endpoint.path(),
        provider,
        model,
        asked.body,
    );
    let mut parsed = None;
    let key = match state.cache.known_key(&raw) {
        Some(key) => key,
        None => {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(asked.body) else {
                // prepare() parsed it already; unreachable in practice.
                trace.cache.status = Some(CacheStatus::Skip);
                return Ok(None);
            };
            let key = cache::key(&KeyInput {
                namespace,
                endpoint: asked.endpoint.path(),
                provider,
                model,
                body: &body,
            });
            state.cache.remember_key(raw, key);
            parsed = Some(body);
            key
        }
    };
    let now = now_ms();
    let ttl_ms = controls.ttl_secs.unwrap_or(s.ttl_secs).saturating_mul(1000);
    let to_store = Box::new(CacheEntry {
        key,
        namespace: namespace.to_string(),
        endpoint: asked.endpoint.path(),
        provider: asked.route.provider.name.clone(),
        model: asked.route.model.clone(),
        created_at_ms: now,
        expires_at_ms: now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
        body: Bytes::new(),
        max_total_bytes: s.max_bytes,
        max_entry_bytes: s.max_entry_bytes,
        semantic: None,
    });
    if controls.directive == Some(Directive::Refresh) {
        trace.cache.status = Some(CacheStatus::Refresh);
        trace.cache.store = Some(to_store);
        return Ok(None);
    }
    let mut to_store = to_store;
    let mut found = entry(state, key, now, s.memory_bytes)
        .await
        .map(|e| (e, key, CacheStatus::Hit));
    if found.is_none() && settings.semantic_cache.enabled {
        let body = match parsed {
            Some(body) => body,
            None => serde_json::from_slice(asked.body).unwrap_or_default(),
        };
        found = semantic(state, &asked, &body, namespace, &mut to_store, now).await;
    }
    let hit = found.and_then(|(entry, key, status)| {
        let (body, content_type) = if asked.stream {
            (
                stream_hit(&entry.body, asked.endpoint, asked.include_usage)?,
                "text/event-stream",
            )
        } else {
            (entry.body.clone(), "application/json")
        };
        let shown = match status {
            CacheStatus::SemanticHit => "semantic-hit",
            _ => "hit",
        };
        Some((
            Hit {
                body,
                content_type,
                shown,
            },
            entry.cost_uc,
            key,
            status,
        ))
    });
    match hit {
        Some((hit, cost_uc, key, status)) => {
            state.cache.hits.fetch_add(1, Ordering::Relaxed);
            if status == CacheStatus::SemanticHit {
                state.semantic.hits.fetch_add(1, Ordering::Relaxed);
            }
            state
                .cache
                .saved_uc
                .fetch_add(cost_uc.unwrap_or(0), Ordering::Relaxed);
            trace.cache.status = Some(status);
            trace.cache.hit_key = Some(key);
            trace.cache.saved_uc = cost_uc;
            Ok(Some(hit))
        }
        None => {
            state.cache.misses.fetch_add(1, Ordering::Relaxed);
            trace.cache.status = Some(CacheStatus::Miss);
            trace.cache.store = Some(to_store);
            Ok(None)
        }
    }
}

/// The stored answer under `key`: memory, then the database.
async fn entry(
    state: &AppState,
    key: [u8; 32],
    now: i64,
    memory_bytes: u64,
) -> Option<Arc<Cached>> {
    match state.cache.get(&key, memory_bytes, now) {
        Some(hot) => Some(hot),
        None => stored(state, key, now, memory_bytes).await,
    }
}

/// The semantic cache, after the exact lookup missed: embeds the
/// conversation, searches the request's partition, and returns the stored
/// answer of the closest entry at or above the threshold. On a miss the
/// vector rides on `to_store`, so the answer is stored with it. Requests it
/// cannot take (not plain text, too long) and embedding failures are misses.
async fn semantic(
    state: &AppState,
    asked: &Asked<'_>,
    body: &serde_json::Value,
    namespace: &str,
    to_store: &mut CacheEntry,
    now: i64,
) -> Option<(Arc<Cached>, [u8; 32], CacheStatus)> {
    let settings = state.modules();
    let s = &settings.semantic_cache;
    let prompt = semantic_cache::prompt(
        &semantic_cache::Asked {
            namespace,
            endpoint: asked.endpoint.path(),
            provider: &asked.route.provider.name,
            model: &asked.route.model,
            body,
        },
        s.max_text_bytes,
    )
    .ok()?;
    let vector = super::semantic::embed(state, s, &prompt.text).await?;
    let found = state
        .semantic
        .index
        .search(&prompt.partition, &vector, s.threshold as f32, now);
    let answer = match found {
        Some(f) => match entry(state, f.key, now, settings.cache.memory_bytes).await {
            Some(e) => Some((e, f.key, CacheStatus::SemanticHit)),
            None => {
                // Its answer is gone (evicted, expired, purged).
                state.semantic.index.remove(&prompt.partition, &f.key);
                None
            }
        },
        None => None,
    };
    if answer.is_none() {
        to_store.semantic = Some(SemanticVector {
            partition: prompt.partition,
            vector: vector.into(),
        });
    }
    answer
}

/// The entry in the database, kept in memory once read. A read error is a
/// miss (logged): the cache must never fail a request.
async fn stored(
    state: &AppState,
    key: [u8; 32],
    now: i64,
    memory_bytes: u64,
) -> Option<Arc<Cached>> {
    let read = state
        .reads
        .read(move |conn| crate::store::cache_sql::lookup(conn, &key, now))
        .await;
    match read {
        Ok(Some(row)) => {
            let entry = Arc::new(Cached {
                body: Bytes::from(row.body),
                cost_uc: row.cost_uc,
                expires_at_ms: row.expires_at_ms,
            });
            state.cache.put(key, entry.clone(), memory_bytes);
            Some(entry)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cache lookup failed; treated as a miss");
            None
        }
    }
}

/// The response to a hit: 200, the stored body (or its replay),
/// `x-tollgate-cache: hit` (or `semantic-hit`).
pub fn response(hit: Hit) -> Response<Body> {
    let len = hit.body.len();
    let mut response = Response::new(full(hit.body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(hit.content_type),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(HEADER, HeaderValue::from_static(hit.shown));
    response
}

/// Puts `x-tollgate-cache` on a response: how the cache treated the
/// request, or `skip` when the module is on but the request never got to
/// it (refused before routing). Nothing when the module is off.
pub fn report(response: &mut Response<Body>, status: Option<CacheStatus>, enabled: bool) {
    if response.headers().contains_key(HEADER) {
        return;
    }
    let shown = match status {
        Some(s) => s.as_str(),
        None if enabled => CacheStatus::Skip.as_str(),
        None => return,
    };
    response
        .headers_mut()
        .insert(HEADER, HeaderValue::from_static(shown));
}
