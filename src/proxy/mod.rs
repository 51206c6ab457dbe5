//! The proxy: forwards a client request upstream and streams the answer
//! back while the trace is filled in. (Which requests come here is the
//! router's business: `src/router.rs`.)
//!
//! Phases of one request, each in its own file: [`request`] reads and checks
//! the body and picks the route, [`upstream`] sends it, [`body`] streams the
//! answer back and hands the finished trace to the writer. [`error`] is the
//! only place that turns tollgate's own failures into HTTP.

mod admission;
mod body;
pub mod cache;
pub mod error;
mod guard_response;
pub mod guardrails;
mod key_recheck;
pub mod models;
mod request;
mod semantic;
mod upstream;

use crate::config::Protocol;
pub use crate::http::{Body, BoxError, full, json_response};
use crate::state::AppState;
use crate::trace::{Trace, now_ms};
use body::{ObservedBody, PendingTrace};
use bytes::Bytes;
use error::ProxyError;
use http::{HeaderValue, Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// The proxied endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    Messages,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Messages => "/v1/messages",
        }
    }

    /// Path under a provider's `base_url`.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
        }
    }

    /// The protocol the client speaks here, and the one the provider must.
    pub fn protocol(self) -> Protocol {
        match self {
            Endpoint::ChatCompletions | Endpoint::Embeddings => Protocol::Openai,
            Endpoint::Messages => Protocol::Anthropic,
        }
    }
}

pub async fn forward<B>(state: Arc<AppState>, req: Request<B>, endpoint: Endpoint) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let protocol = endpoint.protocol();
    // Reserving the record's place first is the backpressure: when the
    // writer falls behind, new requests wait here, before any upstream cost.
    let Ok(slot) = state.writer.reserve().await else {
        return ProxyError::ShuttingDown.to_response(protocol);
    };
    let pending = PendingTrace::new(slot, Trace::new(endpoint.path(), now_ms()), started)
        .closing(req.extensions().get().cloned());
    let request_id = HeaderValue::from_str(&pending.trace.id).ok();
    let cache_on = state.modules().cache.enabled;
    let mut response = call(&state, req, endpoint, pending).await;
    cache::report(&mut response, None, cache_on);
    if let Some(id) = request_id
        && response.extensions().get::<Untraced>().is_none()
    {
        response.headers_mut().insert("x-tollgate-request-id", id);
    }
    response
}

/// The client's address, as the server put it on the request.
fn peer_ip<B>(req: &Request<B>) -> std::net::IpAddr {
    crate::request_facts::PeerAddr::ip_of(req).unwrap_or(crate::access::UNKNOWN_PEER)
}

/// Marks a response whose request left no trace, so it names none.
#[derive(Clone, Copy)]
struct Untraced;

/// Authenticate, prepare, send, and stream back; every ending completes
/// `pending`.
async fn call<B>(
    state: &AppState,
    req: Request<B>,
    endpoint: Endpoint,
    mut pending: PendingTrace,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let protocol = endpoint.protocol();
    let key = if state.config.require_client_key {
        match state
            .auth
            .authenticate(req.headers(), peer_ip(&req), pending.trace.started_at_ms)
            .await
        {
            Ok(key) => Some(key),
            Err(refused) if refused.traced => {
                return fail(ProxyError::Unauthorized(refused.error), protocol, pending);
            }
            Err(refused) => {
                // Counted in /metrics; only the address's sample is traced.
                pending.discard();
                let mut response = ProxyError::Unauthorized(refused.error).to_response(protocol);
                response.extensions_mut().insert(Untraced);
                return response;
            }
        }
    } else {
        None
    };
    pending.trace.client_key_id = key.as_ref().map(|k| k.id.clone());
    let ready = request::prepare(state, req, endpoint, key.as_ref(), &mut pending.trace).await;
    let cache_status = pending.trace.cache.status;
    let redacted = guardrails::redacted(&pending.trace);
    let mut response = match ready {
        Ok(request::Ready::Forward(mut prepared)) => {
            pending.governed = prepared.governed.take();
            match upstream::send(state, *prepared, &mut pending.trace).await {
                Ok(call) => ObservedBody::respond(state, call, pending).await,
                Err(e) => fail(e, protocol, pending),
            }
        }
        Ok(request::Ready::Cached(mut hit)) => {
            // A stored answer may predate the rules in force: checked too.
            if let Err(e) = guard_response::check_hit(state, &mut pending.trace, protocol, &mut hit)
            {
                return fail(e, protocol, pending);
            }
            let mut response = serve_hit(hit, pending);
            guardrails::report(&mut response, redacted);
            return response;
        }
        Err(e) => fail(e, protocol, pending),
    };
    cache::report(&mut response, cache_status, false);
    guardrails::report(&mut response, redacted);
    response
}

/// Answers from the cache; the hit's trace has no usage and no upstream
/// (`no_charge`, cost 0) and the saving.
fn serve_hit(hit: cache::Hit, mut pending: PendingTrace) -> Response<Body> {
    let response = cache::response(hit);
    pending.trace.status = response.status().as_u16();
    pending.trace.response_bytes = hyper::body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0) as i64;
    pending.trace.ttfb_us = Some(pending.elapsed_us());
    pending.finish();
    response
}

fn fail(e: ProxyError, protocol: Protocol, mut pending: PendingTrace) -> Response<Body> {
    let response = e.to_response(protocol);
    pending.trace.status = response.status().as_u16();
    pending.trace.fail(e.kind(), e.to_string());
    pending.trace.response_bytes = hyper::body::Body::size_hint(response.body())
        .exact()
        .unwrap_or(0) as i64;
    pending.finish();
    response
}
