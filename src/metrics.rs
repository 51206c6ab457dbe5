//! `GET /metrics`: a few counters in the Prometheus text format — enough to
//! see load, errors and whether the writer keeps up (queue depth,
//! backpressure waits).

use crate::app::AppState;
use crate::proxy::{Body, full};
use http::{HeaderValue, Response, header};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_open: AtomicU64,
}

pub fn render(state: &AppState) -> Response<Body> {
    let w = state.writer.stats();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let series: [(&str, &str, &str, u64); 14] = [
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
            "Requests recorded with an unknown cost because their model has no price.",
            get(&w.unknown_price_requests),
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
    let mut resp = Response::new(full(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
