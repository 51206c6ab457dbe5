//! `GET /metrics` in the Prometheus text format: requests, latencies,
//! tokens and cost by endpoint, provider and model; whether the writer
//! keeps up (queue depth, batches, commit time, backpressure waits); the
//! modules (refusals, breakers, caches); and what the HTTP layer refused or
//! closed on its own (those connections leave no trace). The series and
//! their label rules are in `exposition.rs` and `counters/requests.rs`.
//!
//! Served on the main listener or, with `metrics.listen`, only on its own;
//! with `metrics.token`, only to `Authorization: Bearer <token>`.

mod exposition;

use crate::config::Protocol;
use crate::http::{Body, full};
use crate::proxy::error::ProxyError;
use crate::state::AppState;
use http::{HeaderValue, Method, Request, Response, header};
use prometheus_client::encoding::prometheus_text;

/// A request to the metrics-only listener.
pub fn serve_request<B>(state: &AppState, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if path != "/metrics" {
        return ProxyError::NotFound {
            method: req.method().to_string(),
            path: path.to_string(),
        }
        .to_response(Protocol::Openai);
    }
    if req.method() != Method::GET {
        return ProxyError::MethodNotAllowed {
            method: req.method().to_string(),
            path: path.to_string(),
            allow: "GET",
        }
        .to_response(Protocol::Openai);
    }
    authorized(state, req)
}

/// `GET /metrics`, after checking the token when one is configured.
pub fn authorized<B>(state: &AppState, req: &Request<B>) -> Response<Body> {
    if let Some(token) = &state.config.metrics.token {
        let presented = crate::access::ClientAuth::presented(req.headers())
            .ok()
            .flatten()
            .unwrap_or("");
        // Compared as hashes: blake3::Hash's equality is constant-time.
        if blake3::hash(presented.as_bytes()) != blake3::hash(token.expose().as_bytes()) {
            return ProxyError::MetricsUnauthorized.to_response(Protocol::Openai);
        }
    }
    render(state)
}

/// The page, with the text format's content type.
pub fn render(state: &AppState) -> Response<Body> {
    let mut resp = Response::new(full(exposition::render(state)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    resp
}
