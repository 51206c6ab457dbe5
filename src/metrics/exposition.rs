//! The `/metrics` page: every series, encoded by `prometheus-client` in the
//! Prometheus text format (0.0.4), which Prometheus, promtool and every
//! scraper read.
//!
//! The per-request families and the writer's histograms are kept by the
//! writer (`counters::requests`, `store::WriterStats`) and registered here
//! as shared handles; everything else is read at scrape time from the
//! atomics where it is counted (connections, authentication, writer, cache,
//! breakers) into a registry built for this one page. Names are written in
//! full below; the crate adds a counter's `_total` itself, so it is cut
//! before registering (the exposition is the same as before the crate).

use crate::counters::ConnectionError;
use crate::state::AppState;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicU64, Ordering};

type Labels = Vec<(&'static str, String)>;

/// A registry for one page, taking names and help as they are exposed.
struct Page(Registry);

impl Page {
    fn add(&mut self, name: &str, help: &str, metric: impl Metric) {
        // The crate ends every help text with a period of its own.
        let help = help.strip_suffix('.').unwrap_or(help);
        let name = name.strip_suffix("_total").unwrap_or(name);
        self.0.register(name, help, metric);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.add(name, help, ConstCounter::new(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.add(name, help, ConstGauge::new(value));
    }

    /// A counter family read at scrape time: one series per label set.
    fn counters(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).inc_by(value);
        }
        self.add(name, help, family);
    }

    fn gauges(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, i64)>) {
        let family = Family::<Labels, Gauge>::default();
        for (labels, value) in series {
            family.get_or_create(&labels).set(value);
        }
        self.add(name, help, family);
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The whole page, in the Prometheus text format.
pub fn render(state: &AppState) -> String {
    let mut page = Page(Registry::default());
    connection_series(&mut page, state);
    writer_series(&mut page, state);
    state.writer.stats().requests.register(&mut page.0);
    ledger_and_auth_series(&mut page, state);
    breaker_series(&mut page, state);
    cache_series(&mut page, state);
    semantic_series(&mut page, state);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &page.0);
    out
}

/// What the HTTP layer accepted, closed or refused on its own (those
/// connections leave no trace).
fn connection_series(page: &mut Page, state: &AppState) {
    let m = &state.metrics;
    page.counter(
        "tollgate_connections_accepted_total",
        "TCP connections accepted.",
        get(&m.connections_accepted),
    );
    page.gauge(
        "tollgate_connections_open",
        "TCP connections open now.",
        saturating_i64(get(&m.connections_open)),
    );
    page.counters(
        "tollgate_connections_timed_out_total",
        "Connections closed by tollgate for taking too long: \
         phase=\"header\" (no complete request head in time, protocol detection included), \
         phase=\"idle\" (nothing in flight for the idle timeout).",
        [
            ("header", get(&m.connections_timed_out_header)),
            ("idle", get(&m.connections_timed_out_idle)),
        ]
        .map(|(phase, n)| (vec![("phase", phase.to_string())], n)),
    );
    page.counter(
        "tollgate_connections_shed_total",
        "Idle connections closed to make room for a new one at max_connections.",
        get(&m.connections_shed),
    );
    page.counters(
        "tollgate_connection_errors_total",
        "Connections the HTTP layer ended with an error, by kind \
         (malformed: 400 for bad framing; head_too_large: 431; ping_timeout: HTTP/2 peer gone; \
         other: HTTP/2 protocol errors, resets, I/O). These requests leave no trace.",
        ConnectionError::ALL.map(|kind| {
            (
                vec![("kind", kind.label().to_string())],
                get(m.connection_error(kind)),
            )
        }),
    );
}

/// Whether the writer keeps up: its queue, batches, commits and failures.
fn writer_series(page: &mut Page, state: &AppState) {
    let w = state.writer.stats();
    page.gauge(
        "tollgate_writer_queue_depth",
        "Records reserved or queued, not yet committed.",
        saturating_i64(state.writer.queue_depth() as u64),
    );
    page.gauge(
        "tollgate_writer_queue_peak",
        "Deepest the writer queue has been since start.",
        saturating_i64(get(&w.queue_peak)),
    );
    page.counter(
        "tollgate_writer_records_committed_total",
        "Request records committed.",
        get(&w.records_committed),
    );
    page.counter(
        "tollgate_writer_batches_committed_total",
        "Write transactions committed.",
        get(&w.batches_committed),
    );
    page.gauge(
        "tollgate_writer_max_batch",
        "Largest batch committed.",
        saturating_i64(get(&w.max_batch)),
    );
    page.add(
        "tollgate_writer_batch_size",
        "Entries (request records and audit entries) per committed write transaction.",
        w.batch_size.clone(),
    );
    page.add(
        "tollgate_writer_commit_duration_seconds",
        "Time from BEGIN to COMMIT of each committed write transaction.",
        w.commit_seconds.clone(),
    );
    page.counter(
        "tollgate_writer_commit_failures_total",
        "Failed commit attempts (retried).",
        get(&w.commit_failures),
    );
    page.counter(
        "tollgate_writer_records_failed_total",
        "Records the database refused.",
        get(&w.records_failed),
    );
    page.counter(
        "tollgate_writer_backpressure_waits_total",
        "Requests that waited for room in the writer queue.",
        get(&w.backpressure_waits),
    );
    page.gauge(
        "tollgate_audit_head_seq",
        "Sequence number of the last committed audit entry.",
        saturating_i64(get(&w.audit_head_seq)),
    );
}

fn ledger_and_auth_series(page: &mut Page, state: &AppState) {
    let w = state.writer.stats();
    page.gauge(
        "tollgate_budget_reserved_microcents",
        "Micro-cents (1e-8 USD) reserved against budgets by requests in flight (their worst case).",
        state.budgets.reserved_total().max(0),
    );
    page.counter(
        "tollgate_unknown_price_requests_total",
        "Requests recorded with an unknown cost because their model (or the service tier served) has no price.",
        get(&w.unknown_price_requests),
    );
    page.counter(
        "tollgate_partial_cost_requests_total",
        "Requests recorded with a partial cost: a billed component (1-hour cache writes, audio, web search) had no price.",
        get(&w.partial_cost_requests),
    );
    let auth = state.auth.stats();
    page.counter(
        "tollgate_auth_failures_total",
        "Proxy requests whose client key was missing, wrong, revoked, expired or ambiguous.",
        get(&auth.failures),
    );
    page.counter(
        "tollgate_auth_throttled_total",
        "Proxy requests refused with 429 because their address failed authentication too often.",
        get(&auth.throttled),
    );
}

/// The circuit breakers: the state of every target remembered (closed ones
/// that have failures too), and how many times one opened.
fn breaker_series(page: &mut Page, state: &AppState) {
    page.gauges(
        "tollgate_breaker_state",
        "Circuit breaker per upstream target: 0 closed, 1 half-open, 2 open \
         (targets never failing are not listed).",
        state.breaker.snapshot().into_iter().map(|b| {
            (
                vec![("provider", b.provider), ("model", b.model)],
                i64::from(b.state.gauge()),
            )
        }),
    );
    page.counter(
        "tollgate_breaker_opens_total",
        "Circuit breakers opened (or reopened after a failed probe) since start.",
        state.breaker.opens(),
    );
}

/// The exact cache: lookups since start, and what the database holds (as
/// last polled, every second).
fn cache_series(page: &mut Page, state: &AppState) {
    let c = &state.cache;
    let (hits, misses) = c.hits_and_misses();
    page.counter(
        "tollgate_cache_hits_total",
        "Requests answered from the exact cache since start.",
        hits,
    );
    page.counter(
        "tollgate_cache_misses_total",
        "Requests looked up in the exact cache and not found since start.",
        misses,
    );
    page.gauge(
        "tollgate_cache_entries",
        "Answers stored in the exact cache.",
        saturating_i64(get(&c.stored_entries)),
    );
    page.gauge(
        "tollgate_cache_bytes",
        "Bytes of answers stored in the exact cache.",
        saturating_i64(get(&c.stored_bytes)),
    );
}

/// The semantic cache since start (its hits are in `tollgate_cache_hits_total` too).
fn semantic_series(page: &mut Page, state: &AppState) {
    let s = &state.semantic;
    page.counter(
        "tollgate_semantic_cache_hits_total",
        "Requests answered from the semantic cache since start.",
        get(&s.hits),
    );
    page.counter(
        "tollgate_semantic_cache_embed_failures_total",
        "Embeddings calls of the semantic cache that failed (the request went upstream).",
        get(&s.embed_failures),
    );
    page.gauge(
        "tollgate_semantic_cache_entries",
        "Vectors in the semantic cache's in-memory index.",
        saturating_i64(s.index.len() as u64),
    );
}
