//! The single writer: one named OS thread owns the only write connection and
//! commits what the proxy sends it, one transaction per batch.
//!
//! A batch closes `batch_max_delay` after its first operation, holding what
//! arrived by then up to `batch_max`; when more is waiting, the next batch
//! starts at once, so under load batches fill to `batch_max` without waiting. The proxy reserves
//! a slot in the bounded channel when a request is admitted (waiting there is
//! the backpressure) and fills it synchronously when the request ends, so a
//! record is never dropped, not even from a `Drop` impl. The thread runs
//! until every sender and reserved slot is gone and the channel is empty.

use super::access_sql::{self, Mutation};
use super::audit_sql::{self, Head};
use super::rollup_sql::Rollup;
use super::{StoreError, cache_sql, cost_sql, semantic_sql, trace_sql};
use crate::audit::{self, Checkpointer, encoding::ChainKey};
use crate::config::WriterConfig;
use crate::counters::requests::{Observation, RequestMetrics};
use crate::ledger::{CostRecord, CostStatus, PriceBook};
use crate::trace::{Trace, now_ms};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rusqlite::{Connection, ErrorCode};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

pub enum WriteOp {
    Trace(Box<Trace>),
    /// An administrative audit entry; answered with its place in the chain.
    Audit(
        Box<AdminEntry>,
        Option<oneshot::Sender<Result<Head, String>>>,
    ),
    /// Commit everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// An administrative change, as recorded in the ledger. `detail` (JSON) is
/// stored with the entry and covered by its digest.
#[derive(Clone, Debug)]
pub struct AdminEntry {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    /// The change itself, applied in the same transaction as the entry.
    pub mutation: Option<Mutation>,
}

/// What the writer needs to keep the books.
pub struct Books {
    pub prices: PriceBook,
    pub key: ChainKey,
    pub checkpoints: Checkpointer,
    pub store_bodies: bool,
}

/// Counters the writer keeps; read by `/metrics`.
#[derive(Debug)]
pub struct WriterStats {
    pub records_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commit_failures: AtomicU64,
    pub records_failed: AtomicU64,
    pub backpressure_waits: AtomicU64,
    pub max_batch: AtomicU64,
    pub unknown_price_requests: AtomicU64,
    /// Requests priced in part: a component had no rate.
    pub partial_cost_requests: AtomicU64,
    /// The deepest the queue has been (reserved + queued records).
    pub queue_peak: AtomicU64,
    pub audit_head_seq: AtomicU64,
    /// Entries (request records and audit entries) per committed transaction.
    pub batch_size: Histogram,
    /// Seconds from BEGIN to COMMIT of a committed transaction.
    pub commit_seconds: Histogram,
    /// The per-request series, recorded here once a request's record is
    /// committed (the one place that sees every traced request once).
    pub requests: RequestMetrics,
}

/// Commit duration buckets (seconds): from a small batch on a fast disk to
/// a stalled fsync.
const COMMIT_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl WriterStats {
    fn new(batch_max: usize) -> WriterStats {
        // Powers of two up to the first one reaching batch_max.
        let doublings = usize::BITS - batch_max.max(1).saturating_sub(1).leading_zeros();
        WriterStats {
            records_committed: AtomicU64::default(),
            batches_committed: AtomicU64::default(),
            commit_failures: AtomicU64::default(),
            records_failed: AtomicU64::default(),
            backpressure_waits: AtomicU64::default(),
            max_batch: AtomicU64::default(),
            unknown_price_requests: AtomicU64::default(),
            partial_cost_requests: AtomicU64::default(),
            queue_peak: AtomicU64::default(),
            audit_head_seq: AtomicU64::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, doublings as u16 + 1)),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
            requests: RequestMetrics::default(),
        }
    }
}

/// The cheap, cloneable sending side.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteOp>,
    stats: Arc<WriterStats>,
}

/// A reserved place in the writer's queue: filling it cannot block or fail.
pub struct Slot(mpsc::OwnedPermit<WriteOp>);

impl Slot {
    pub fn send(self, op: WriteOp) {
        self.0.send(op);
    }
}

impl WriterHandle {
    /// Reserves room for one record, waiting while the queue is full.
    pub async fn reserve(&self) -> Result<Slot, StoreError> {
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => {
                self.stats
                    .queue_peak
                    .fetch_max(self.queue_depth() as u64, Ordering::Relaxed);
                Ok(Slot(permit))
            }
            Err(mpsc::error::TrySendError::Full(tx)) => {
                self.stats
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
                tx.reserve_owned()
                    .await
                    .map(Slot)
                    .map_err(|_| StoreError::Closed)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Closed),
        }
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(WriteOp::Flush(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)
    }

    /// Appends an administrative entry to the audit ledger and waits until
    /// it is committed. The one call for every administrative change.
    pub async fn audit(&self, entry: AdminEntry) -> Result<Head, StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(WriteOp::Audit(Box::new(entry), Some(done)))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Rejected)
    }

    /// Appends an entry without waiting for it (a change the system makes
    /// on the request path, such as a circuit breaker's). When the queue is
    /// full, a task waits for room.
    pub fn submit(&self, entry: AdminEntry) {
        let op = WriteOp::Audit(Box::new(entry), None);
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(op)) => {
                let tx = self.tx.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            let _ = tx.send(op).await;
                        });
                    }
                    Err(_) => tracing::error!("an audit entry was lost: no runtime to queue it"),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("an audit entry was not written: the writer has stopped");
            }
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

pub struct Writer {
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which must be the only write
    /// connection of this process.
    pub fn start(
        conn: Connection,
        cfg: &WriterConfig,
        books: Books,
    ) -> std::io::Result<(Writer, WriterHandle)> {
        let (tx, rx) = mpsc::channel(cfg.channel_capacity);
        let stats = Arc::new(WriterStats::new(cfg.batch_max));
        let state = WriterLoop {
            conn,
            rx,
            batch_max: cfg.batch_max,
            max_delay: cfg.batch_max_delay,
            books,
            rollup: Rollup::default(),
            hits: CacheHits::default(),
            warned: WarnOnce::default(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tollgate-writer".into())
            .spawn(move || state.run())?;
        Ok((Writer { thread }, WriterHandle { tx, stats }))
    }

    /// Waits for the thread to drain the channel and exit. Returns once every
    /// `WriterHandle` and `Slot` has been dropped and the last batch committed.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

struct WriterLoop {
    conn: Connection,
    rx: mpsc::Receiver<WriteOp>,
    batch_max: usize,
    max_delay: Duration,
    books: Books,
    rollup: Rollup,
    hits: CacheHits,
    warned: WarnOnce,
    stats: Arc<WriterStats>,
}

/// How many unpriced `(provider, model)` pairs the writer remembers having
/// warned about; model names are client-chosen, so the set must not grow
/// with them.
const WARN_ONCE_MAX: usize = 1024;

/// The unpriced pairs already warned about, at most [`WARN_ONCE_MAX`]. Once
/// full, one last warning says so and later pairs are only counted.
#[derive(Default)]
struct WarnOnce {
    seen: HashSet<(String, String)>,
    full: bool,
}

enum First {
    Yes((String, String)),
    No,
    Full,
}

impl WarnOnce {
    fn first(&mut self, pair: (String, String)) -> First {
        if self.seen.contains(&pair) {
            return First::No;
        }
        if self.seen.len() < WARN_ONCE_MAX {
            self.seen.insert(pair.clone());
            return First::Yes(pair);
        }
        if std::mem::replace(&mut self.full, true) {
            First::No
        } else {
            First::Full
        }
    }
}

/// What one committed batch did.
struct Committed {
    records: u64,
    /// Request records and audit entries written.
    entries: u64,
    took: Duration,
    /// What each request record adds to the per-request series.
    observed: Vec<Observation>,
    partial: u64,
    unknown_price: Vec<(String, String)>,
    heads: Vec<Option<Head>>,
    head: Option<Head>,
}

impl WriterLoop {
    fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "writer cannot start its runtime");
                return;
            }
        };
        rt.block_on(async {
            let mut batch: Vec<WriteOp> = Vec::with_capacity(self.batch_max);
            loop {
                if self.rx.recv_many(&mut batch, self.batch_max).await == 0 {
                    break;
                }
                // Waiting out the batch window without polling the channel
                // means senders do not wake this thread once per record;
                // what arrived meanwhile is then taken in one go. A full
                // queue is drained without waiting.
                if batch.len() < self.batch_max && !has_flush(&batch) {
                    tokio::time::sleep(self.max_delay).await;
                    while batch.len() < self.batch_max && !has_flush(&batch) {
                        match self.rx.try_recv() {
                            Ok(op) => batch.push(op),
                            Err(_) => break,
                        }
                    }
                }
                self.commit(&mut batch).await;
            }
        });
        let head = audit_sql::head(&self.conn).ok().flatten();
        self.books.checkpoints.maybe_write(head, true);
        tracing::debug!("writer drained and stopped");
    }

    async fn commit(&mut self, batch: &mut Vec<WriteOp>) {
        for op in batch.iter_mut() {
            if let WriteOp::Trace(trace) = op {
                trace.bound_strings();
            }
        }
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0u32;
        let heads = loop {
            match self.write_batch(batch) {
                Ok(done) => break self.committed(done),
                Err(e) => {
                    attempts += 1;
                    self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                    if is_transient(&e) {
                        tracing::warn!(error = %e, attempts, "batch commit failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                    tracing::error!(error = %e, "batch commit failed; writing its records one by one");
                    break self.write_one_by_one(batch);
                }
            }
        };
        for (op, head) in batch.drain(..).zip(heads) {
            match op {
                WriteOp::Flush(done) => {
                    let _ = done.send(());
                }
                WriteOp::Audit(_, Some(done)) => {
                    let _ = done.send(
                        head.ok_or_else(|| "the audit entry could not be written".to_string()),
                    );
                }
                _ => {}
            }
        }
    }

    fn committed(&mut self, done: Committed) -> Vec<Option<Head>> {
        self.stats
            .records_committed
            .fetch_add(done.records, Ordering::Relaxed);
        self.stats.batches_committed.fetch_add(1, Ordering::Relaxed);
        self.stats.batch_size.observe(done.entries as f64);
        self.stats.commit_seconds.observe(done.took.as_secs_f64());
        for o in done.observed {
            self.stats.requests.record(o);
        }
        self.stats
            .max_batch
            .fetch_max(done.records, Ordering::Relaxed);
        self.stats
            .unknown_price_requests
            .fetch_add(done.unknown_price.len() as u64, Ordering::Relaxed);
        self.stats
            .partial_cost_requests
            .fetch_add(done.partial, Ordering::Relaxed);
        for pair in done.unknown_price {
            match self.warned.first(pair) {
                First::Yes(pair) => {
                    tracing::warn!(provider = ?pair.0, model = ?pair.1, "no price known for this model: its requests are recorded with an unknown cost; add it under [prices] in the config");
                }
                First::Full => tracing::warn!(
                    limit = WARN_ONCE_MAX,
                    "no price known for many models: further ones are only counted (tollgate_unknown_price_requests_total)"
                ),
                First::No => {}
            }
        }
        if let Some((seq, _)) = done.head {
            self.stats
                .audit_head_seq
                .store(seq as u64, Ordering::Relaxed);
        }
        self.books.checkpoints.maybe_write(done.head, false);
        done.heads
    }

    fn write_batch(&mut self, batch: &[WriteOp]) -> rusqlite::Result<Committed> {
        let began = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Read inside the write lock: another process (a CLI command) may
        // have appended since the last batch.
        let mut head = audit_sql::head(&tx)?;
        let prices = self.books.prices.current();
        self.rollup.clear();
        self.hits.clear();
        // The smallest cache size cap of the batch's inserts, if any.
        let mut evict_to: Option<u64> = None;
        let mut done = Committed {
            records: 0,
            entries: 0,
            took: Duration::ZERO,
            observed: Vec::with_capacity(batch.len()),
            partial: 0,
            unknown_price: Vec::new(),
            heads: Vec::with_capacity(batch.len()),
            head: None,
        };
        for op in batch {
            let entry_head = match op {
                WriteOp::Trace(trace) => {
                    let cost = crate::ledger::assess(trace, &prices);
                    if cost.status == CostStatus::UnknownPrice {
                        // Priced model, unpriced service tier: say which tier is missing.
                        let model = match (cost.unpriced.is_some(), cost.service_tier) {
                            (true, Some(tier)) => {
                                format!("{} service_tiers.{}", cost.model, tier.as_str())
                            }
                            _ => cost.model.clone(),
                        };
                        done.unknown_price.push((cost.provider.clone(), model));
                    }
                    let h = write_request(&tx, &self.books, head, trace, &cost)?;
                    if let Some(max_bytes) = write_cache(&tx, trace, &cost, &mut self.hits) {
                        evict_to = Some(evict_to.map_or(max_bytes, |m: u64| m.min(max_bytes)));
                    }
                    self.rollup.add(trace, &cost);
                    let priced = prices.get(&cost.provider, &cost.model).is_some();
                    done.observed
                        .push(self.stats.requests.observe(trace, cost.cost_uc, priced));
                    done.records += 1;
                    done.partial += u64::from(cost.status == CostStatus::Partial);
                    Some(h)
                }
                WriteOp::Audit(entry, _) => Some(write_admin(&tx, &self.books.key, head, entry)?),
                WriteOp::Flush(_) => None,
            };
            head = entry_head.or(head);
            done.entries += u64::from(entry_head.is_some());
            done.heads.push(entry_head);
        }
        self.hits.flush(&tx);
        if let Some(max_bytes) = evict_to
            && let Err(e) = cache_sql::evict(&tx, now_ms(), max_bytes)
        {
            tracing::warn!(error = %e, "cache eviction failed; retried after the next insert");
        }
        self.rollup.flush(&tx)?;
        tx.commit()?;
        done.took = began.elapsed();
        done.head = head;
        Ok(done)
    }

    /// A record the database refuses for good (not a busy or full disk) must
    /// not take the rest of its batch down with it.
    fn write_one_by_one(&mut self, batch: &[WriteOp]) -> Vec<Option<Head>> {
        let mut heads = Vec::with_capacity(batch.len());
        for op in batch {
            if matches!(op, WriteOp::Flush(_)) {
                heads.push(None);
                continue;
            }
            match self.write_batch(std::slice::from_ref(op)) {
                Ok(done) => heads.extend(self.committed(done)),
                Err(e) => {
                    heads.push(None);
                    self.stats.records_failed.fetch_add(1, Ordering::Relaxed);
                    match op {
                        WriteOp::Trace(t) => {
                            tracing::error!(error = %e, trace_id = %t.id, "record could not be written")
                        }
                        _ => tracing::error!(error = %e, "audit entry could not be written"),
                    }
                }
            }
        }
        heads
    }
}

/// Trace, cost and audit entry of one request.
fn write_request(
    conn: &Connection,
    books: &Books,
    head: Option<Head>,
    trace: &Trace,
    cost: &CostRecord,
) -> rusqlite::Result<Head> {
    let trace_values = trace_sql::values(trace, books.store_bodies);
    trace_sql::insert(conn, &trace_values)?;
    let cost_values = cost_sql::values(cost);
    cost_sql::insert(conn, &cost_values)?;
    let digest = audit::request_digest(&trace_values, &cost_values);
    let actor = trace.client_key_id.as_deref().unwrap_or("anonymous");
    let subject = format!("trace:{}", trace.id);
    audit_sql::append(
        conn,
        &books.key,
        head,
        trace.started_at_ms,
        actor,
        audit::REQUEST,
        &subject,
        digest,
        None,
    )
}

/// The exact cache's part of a request: a hit is counted for its entry; an
/// answer to store is inserted if the request completed with a 2xx from the
/// target its key names, with the cost just assessed (the saving of later
/// hits). Returns the size cap to evict down to after an insert.
///
/// A cache write that fails is logged and skipped: it must never cost the
/// request its trace (a failed statement rolls back alone; the transaction
/// goes on).
fn write_cache(
    conn: &Connection,
    trace: &Trace,
    cost: &CostRecord,
    hits: &mut CacheHits,
) -> Option<u64> {
    if let Some(key) = trace.cache.hit_key {
        hits.add(key, trace.started_at_ms);
    }
    let entry = trace.cache_storable()?;
    match cache_sql::insert(conn, entry, cost.cost_uc, &trace.id) {
        Ok(()) => {
            if let Some(v) = &entry.semantic
                && let Err(e) = semantic_sql::insert(conn, entry, v)
            {
                tracing::warn!(error = %e, trace_id = %trace.id, "a semantic cache vector could not be stored");
            }
            Some(entry.max_total_bytes)
        }
        Err(e) => {
            tracing::warn!(error = %e, trace_id = %trace.id, "an answer could not be cached");
            None
        }
    }
}

/// A batch's exact-cache hits per entry: counted on the entries once per
/// key when the batch ends, not one UPDATE per hit.
#[derive(Default)]
struct CacheHits(std::collections::HashMap<[u8; 32], (u64, i64)>);

impl CacheHits {
    fn clear(&mut self) {
        self.0.clear();
    }

    fn add(&mut self, key: [u8; 32], at_ms: i64) {
        let (n, last) = self.0.entry(key).or_insert((0, at_ms));
        *n += 1;
        *last = (*last).max(at_ms);
    }

    /// A count that fails is logged and dropped: it must never cost the
    /// batch its traces.
    fn flush(&self, conn: &Connection) {
        for (key, (n, last)) in &self.0 {
            if let Err(e) = cache_sql::record_hits(conn, key, *n, *last) {
                tracing::warn!(error = %e, hits = n, "cache hits could not be counted");
            }
        }
    }
}

/// Applies an administrative change and appends its entry, in the caller's
/// transaction.
pub(super) fn write_admin(
    conn: &Connection,
    key: &ChainKey,
    head: Option<Head>,
    e: &AdminEntry,
) -> rusqlite::Result<Head> {
    if let Some(m) = &e.mutation {
        access_sql::apply(conn, m)?;
    }
    let digest = audit::encoding::detail_digest(&e.detail);
    audit_sql::append(
        conn,
        key,
        head,
        now_ms(),
        &e.actor,
        &e.action,
        &e.subject,
        digest,
        Some(&e.detail),
    )
}

fn has_flush(batch: &[WriteOp]) -> bool {
    matches!(batch.last(), Some(WriteOp::Flush(_)))
}

fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warn_once_set_stays_bounded() {
        let mut warned = WarnOnce::default();
        let pair = |i: usize| ("openai".to_string(), format!("x-{i}"));
        let mut warnings = 0;
        let mut full = 0;
        for i in 0..5 * WARN_ONCE_MAX {
            match warned.first(pair(i)) {
                First::Yes(_) => warnings += 1,
                First::Full => full += 1,
                First::No => {}
            }
        }
        assert_eq!(warnings, WARN_ONCE_MAX);
        assert_eq!(full, 1);
        assert_eq!(warned.seen.len(), WARN_ONCE_MAX);
        assert!(matches!(warned.first(pair(0)), First::No));
    }
}
