//! `GET /metrics`: a few counters in the Prometheus text format — enough to
//! see load, errors and whether the writer keeps up (queue depth,
//! backpressure waits), and what the HTTP layer refused or closed on its
//! own (those connections leave no trace).
//!
//! Served on the main listener or, with `metrics.listen`, only on its own;
//! with `metrics.token`, only to `Authorization: Bearer <token>`.

use crate::config::Protocol;
use crate::counters::ConnectionError;
use crate::http::{Body, full};
use crate::proxy::error::ProxyError;
use crate::state::AppState;
use http::{HeaderValue, Method, Request, Response, header};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The circuit breakers: the state of every target remembered (closed ones
/// that have failures too), and how many times one opened.
fn breaker_series(out: &mut String, state: &AppState) {
    let _ = writeln!(
        out,
        "# HELP tollgate_breaker_state Circuit breaker per upstream target: 0 closed, 1 half-open, 2 open \
         (targets never failing are not listed).\n\
         # TYPE tollgate_breaker_state gauge"
    );
    for b in state.breaker.snapshot() {
        let _ = writeln!(
            out,
            "tollgate_breaker_state{{provider=\"{}\",model=\"{}\"}} {}",
            label(&b.provider),
            label(&b.model),
            b.state.gauge(),
        );
    }
    let _ = writeln!(
        out,
        "# HELP tollgate_breaker_opens_total Circuit breakers opened (or reopened after a failed probe) since start.\n\
         # TYPE tollgate_breaker_opens_total counter\n\
         tollgate_breaker_opens_total {}",
        state.breaker.opens(),
    );
}

/// The exact cache: lookups since start, and what the database holds (as
/// last polled, every second).
fn cache_series(out: &mut String, state: &AppState) {
    let c = &state.cache;
    let (hits, misses) = c.hits_and_misses();
    let _ = writeln!(
        out,
        "# HELP tollgate_cache_hits_total Requests answered from the exact cache since start.\n\
         # TYPE tollgate_cache_hits_total counter\n\
         tollgate_cache_hits_total {hits}\n\
         # HELP tollgate_cache_misses_total Requests looked up in the exact cache and not found since start.\n\
         # TYPE tollgate_cache_misses_total counter\n\
         tollgate_cache_misses_total {misses}\n\
         # HELP tollgate_cache_entries Answers stored in the exact cache.\n\
         # TYPE tollgate_cache_entries gauge\n\
         tollgate_cache_entries {}\n\
         # HELP tollgate_cache_bytes Bytes of answers stored in the exact cache.\n\
         # TYPE tollgate_cache_bytes gauge\n\
         tollgate_cache_bytes {}",
        c.stored_entries.load(Ordering::Relaxed),
        c.stored_bytes.load(Ordering::Relaxed),
    );
}

/// The semantic cache since start (its hits are in `tollgate_cache_hits_total` too).
fn semantic_series(out: &mut String, state: &AppState) {
    let s = &state.semantic;
    let _ = writeln!(
        out,
        "# HELP tollgate_semantic_cache_hits_total Requests answered from the semantic cache since start.\n\
         # TYPE tollgate_semantic_cache_hits_total counter\n\
         tollgate_semantic_cache_hits_total {}\n\
         # HELP tollgate_semantic_cache_embed_failures_total Embeddings calls of the semantic cache that failed (the request went upstream).\n\
         # TYPE tollgate_semantic_cache_embed_failures_total counter\n\
         tollgate_semantic_cache_embed_failures_total {}\n\
         # HELP tollgate_semantic_cache_entries Vectors in the semantic cache's in-memory index.\n\
         # TYPE tollgate_semantic_cache_entries gauge\n\
         tollgate_semantic_cache_entries {}",
        s.hits.load(Ordering::Relaxed),
        s.embed_failures.load(Ordering::Relaxed),
        s.index.len(),
    );
}

/// A label value escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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

pub fn render(state: &AppState) -> Response<Body> {
    let w = state.writer.stats();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let series: [(&str, &str, &str, u64); 16] = [
        (
            "tollgate_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            get(&state.metrics.connections_accepted),
        ),
        (
            "tollgate_connections_open",
            "gauge",
            "TCP connections open now.",
            get(&state.metrics.connections_open),
        ),
        (
            "tollgate_budget_reserved_microcents",
            "gauge",
            "Micro-cents (1e-8 USD) reserved against budgets by requests in flight (their worst case).",
            state.budgets.reserved_total().max(0) as u64,
        ),
        (
            "tollgate_writer_queue_depth",
            "gauge",
            "Records reserved or queued, not yet committed.",
            state.writer.queue_depth() as u64,
        ),
        (
            "tollgate_writer_records_committed_total",
            "counter",
            "Request records committed.",
            get(&w.records_committed),
        ),
        (
            "tollgate_writer_batches_committed_total",
            "counter",
            "Write transactions committed.",
            get(&w.batches_committed),
        ),
        (
            "tollgate_writer_max_batch",
            "gauge",
            "Largest batch committed.",
            get(&w.max_batch),
        ),
        (
            "tollgate_writer_commit_failures_total",
            "counter",
            "Failed commit attempts (retried).",
            get(&w.commit_failures),
        ),
        (
            "tollgate_writer_records_failed_total",
            "counter",
            "Records the database refused.",
            get(&w.records_failed),
        ),
        (
            "tollgate_writer_backpressure_waits_total",
            "counter",
            "Requests that waited for room in the writer queue.",
            get(&w.backpressure_waits),
        ),
        (
            "tollgate_writer_queue_peak",
            "gauge",
            "Deepest the writer queue has been since start.",
            get(&w.queue_peak),
        ),
        (
            "tollgate_unknown_price_requests_total",
            "counter",
            "Requests recorded with an unknown cost because their model (or the service tier served) has no price.",
            get(&w.unknown_price_requests),
        ),
        (
            "tollgate_partial_cost_requests_total",
            "counter",
            "Requests recorded with a partial cost: a billed component (1-hour cache writes, audio, web search) had no price.",
            get(&w.partial_cost_requests),
        ),
        (
            "tollgate_auth_failures_total",
            "counter",
            "Proxy requests whose client key was missing, wrong, revoked, expired or ambiguous.",
            get(&state.auth.stats().failures),
        ),
        (
            "tollgate_auth_throttled_total",
            "counter",
            "Proxy requests refused with 429 because their address failed authentication too often.",
            get(&state.auth.stats().throttled),
        ),
        (
            "tollgate_audit_head_seq",
            "gauge",
            "Sequence number of the last committed audit entry.",
            get(&w.audit_head_seq),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let m = &state.metrics;
    let _ = writeln!(
        out,
        "# HELP tollgate_connections_timed_out_total Connections closed by tollgate for taking too long: \
         phase=\"header\" (no complete request head in time, protocol detection included), \
         phase=\"idle\" (nothing in flight for the idle timeout).\n\
         # TYPE tollgate_connections_timed_out_total counter\n\
         tollgate_connections_timed_out_total{{phase=\"header\"}} {}\n\
         tollgate_connections_timed_out_total{{phase=\"idle\"}} {}",
        get(&m.connections_timed_out_header),
        get(&m.connections_timed_out_idle),
    );
    let _ = writeln!(
        out,
        "# HELP tollgate_connections_shed_total Idle connections closed to make room for a new one at max_connections.\n\
         # TYPE tollgate_connections_shed_total counter\n\
         tollgate_connections_shed_total {}",
        get(&m.connections_shed),
    );
    let _ = writeln!(
        out,
        "# HELP tollgate_connection_errors_total Connections the HTTP layer ended with an error, by kind \
         (malformed: 400 for bad framing; head_too_large: 431; ping_timeout: HTTP/2 peer gone; \
         other: HTTP/2 protocol errors, resets, I/O). These requests leave no trace.\n\
         # TYPE tollgate_connection_errors_total counter"
    );
    for kind in ConnectionError::ALL {
        let _ = writeln!(
            out,
            "tollgate_connection_errors_total{{kind=\"{}\"}} {}",
            kind.label(),
            get(m.connection_error(kind)),
        );
    }
    breaker_series(&mut out, state);
    cache_series(&mut out, state);
    semantic_series(&mut out, state);
    let mut resp = Response::new(full(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
