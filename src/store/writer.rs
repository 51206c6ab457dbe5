//! The single writer: one named OS thread owns the only write connection and
//! commits what the proxy sends it, one transaction per batch.
//!
//! A batch closes when it holds `batch_max` operations or `batch_max_delay`
//! has passed since its first one, whichever comes first. The proxy reserves
//! a slot in the bounded channel when a request is admitted (waiting there is
//! the backpressure) and fills it synchronously when the request ends, so a
//! record is never dropped, not even from a `Drop` impl. The thread runs
//! until every sender and reserved slot is gone and the channel is empty.

use super::StoreError;
use super::trace_sql;
use crate::config::WriterConfig;
use crate::trace::Trace;
use rusqlite::{Connection, ErrorCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub enum WriteOp {
    Trace(Box<Trace>),
    /// Commit everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// Counters the writer keeps; read by `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub records_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commit_failures: AtomicU64,
    pub records_failed: AtomicU64,
    pub backpressure_waits: AtomicU64,
    pub max_batch: AtomicU64,
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
            Ok(permit) => Ok(Slot(permit)),
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
        store_bodies: bool,
    ) -> std::io::Result<(Writer, WriterHandle)> {
        let (tx, rx) = mpsc::channel(cfg.channel_capacity);
        let stats = Arc::new(WriterStats::default());
        let state = WriterLoop {
            conn,
            rx,
            batch_max: cfg.batch_max,
            max_delay: cfg.batch_max_delay,
            store_bodies,
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
    store_bodies: bool,
    stats: Arc<WriterStats>,
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
                let deadline = tokio::time::Instant::now() + self.max_delay;
                while batch.len() < self.batch_max && !has_flush(&batch) {
                    let room = self.batch_max - batch.len();
                    match tokio::time::timeout_at(deadline, self.rx.recv_many(&mut batch, room))
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                self.commit(&mut batch).await;
            }
        });
        tracing::debug!("writer drained and stopped");
    }

    async fn commit(&mut self, batch: &mut Vec<WriteOp>) {
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0u32;
        loop {
            match self.write_batch(batch) {
                Ok(records) => {
                    self.stats
                        .records_committed
                        .fetch_add(records, Ordering::Relaxed);
                    self.stats.batches_committed.fetch_add(1, Ordering::Relaxed);
                    self.stats.max_batch.fetch_max(records, Ordering::Relaxed);
                    break;
                }
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
                    self.write_one_by_one(batch);
                    break;
                }
            }
        }
        for op in batch.drain(..) {
            if let WriteOp::Flush(done) = op {
                let _ = done.send(());
            }
        }
    }

    fn write_batch(&mut self, batch: &[WriteOp]) -> rusqlite::Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut records = 0;
        for op in batch {
            if let WriteOp::Trace(trace) = op {
                trace_sql::insert(&tx, trace, self.store_bodies)?;
                records += 1;
            }
        }
        tx.commit()?;
        Ok(records)
    }

    /// A record the database refuses for good (not a busy or full disk) must
    /// not take the rest of its batch down with it.
    fn write_one_by_one(&mut self, batch: &[WriteOp]) {
        for op in batch {
            let WriteOp::Trace(trace) = op else { continue };
            let result = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .and_then(|tx| {
                    trace_sql::insert(&tx, trace, self.store_bodies)?;
                    tx.commit()
                });
            match result {
                Ok(()) => {
                    self.stats.records_committed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.records_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, trace_id = %trace.id, "record could not be written");
                }
            }
        }
    }
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
