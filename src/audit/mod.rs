//! The audit ledger: a hash chain over every request and administrative
//! change, verifiable offline (format: `docs/AUDIT.md`).
//!
//! `encoding` is the byte format, `verify` the checking rules, `checkpoint`
//! the outside anchors. This file ties them to tollgate: loading the key,
//! digesting stored rows, writing checkpoints, verifying a database.

pub mod checkpoint;
pub mod encoding;
pub mod job;
pub mod verify;

use crate::config::EnvSource;
use crate::store::audit_sql::{self, Row};
use crate::store::{cost_sql, trace_sql};
use checkpoint::Anchor;
use encoding::{ChainKey, FieldValue, record_digest};
use rusqlite::types::{Value, ValueRef};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use verify::{Failure, FailureKind, RecordCheck, Verified, Verifier};

/// The action of a proxied request's entry.
pub const REQUEST: &str = "proxy.request";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the audit key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit key from {0} must be 64 hexadecimal characters (32 bytes)")]
    Format(String),
}

/// The audit key: `TOLLGATE_AUDIT_KEY` (hex) wins over a key file.
pub fn load_key(key_file: Option<&Path>, env: &dyn EnvSource) -> Result<ChainKey, KeyError> {
    let found = crate::config::key_text("TOLLGATE_AUDIT_KEY", key_file, env)
        .map_err(|(path, source)| KeyError::Read { path, source })?;
    let Some((text, from)) = found else {
        return Ok(ChainKey::Unkeyed);
    };
    encoding::from_hex32(text.trim())
        .map(ChainKey::Keyed)
        .ok_or(KeyError::Format(from))
}

/// The columns a request digest covers (docs/AUDIT.md, "Record digests"):
/// the first `always` columns (record format v1) whatever their value, and
/// each later column (added by a migration) only when it is not NULL — so a
/// row written before the column existed keeps its digest, and a value set
/// later, changed or removed changes it.
fn covered<'a>(
    row: impl Iterator<Item = (&'a str, FieldValue<'a>)>,
    always: usize,
) -> Vec<(&'a str, FieldValue<'a>)> {
    row.enumerate()
        .filter(|(i, (_, v))| *i < always || *v != FieldValue::Null)
        .map(|(_, f)| f)
        .collect()
}

fn fields<'a>(
    names: &[&'a str],
    values: &[ValueRef<'a>],
    always: usize,
) -> Vec<(&'a str, FieldValue<'a>)> {
    covered(
        names
            .iter()
            .copied()
            .zip(values.iter().map(|v| field_ref(*v))),
        always,
    )
}

fn field_ref(v: ValueRef<'_>) -> FieldValue<'_> {
    match v {
        ValueRef::Null => FieldValue::Null,
        ValueRef::Integer(n) => FieldValue::Integer(n),
        ValueRef::Real(f) => FieldValue::Real(f),
        // tollgate only stores text it holds as `str`, so this is UTF-8.
        ValueRef::Text(t) => std::str::from_utf8(t).map_or(FieldValue::Blob(t), FieldValue::Text),
        ValueRef::Blob(b) => FieldValue::Blob(b),
    }
}

fn field(v: &Value) -> FieldValue<'_> {
    match v {
        Value::Null => FieldValue::Null,
        Value::Integer(n) => FieldValue::Integer(*n),
        Value::Real(f) => FieldValue::Real(*f),
        Value::Text(s) => FieldValue::Text(s),
        Value::Blob(b) => FieldValue::Blob(b),
    }
}

/// The digest of a request's record, from the values about to be stored
/// (`trace_sql::values` and `cost_sql::values`: every column, in order).
pub fn request_digest(trace: &[ValueRef<'_>], cost: &[ValueRef<'_>]) -> [u8; 32] {
    let t = fields(&trace_sql::ALL_COLUMNS, trace, trace_sql::COLUMNS.len());
    let c = fields(&cost_sql::ALL_COLUMNS, cost, cost_sql::COLUMNS.len());
    record_digest(&[("traces", &t), ("costs", &c)])
}

/// The digest of a request's record, from the rows as read back
/// (`audit_sql::request_record`: every column, in order).
fn stored_digest(trace: &Row, cost: &Row) -> [u8; 32] {
    fn row(r: &Row) -> impl Iterator<Item = (&str, FieldValue<'_>)> {
        r.iter().map(|(n, v)| (n.as_str(), field(v)))
    }
    let t = covered(row(trace), trace_sql::COLUMNS.len());
    let c = covered(row(cost), cost_sql::COLUMNS.len());
    record_digest(&[("traces", &t), ("costs", &c)])
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Failed(Failure),
    #[error("cannot read the database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// How far a verification has got: `checked` entries of `total` (the head's
/// seq when it began).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub checked: u64,
    pub total: u64,
}

/// Entries checked between two progress reports.
const PROGRESS_EVERY: u64 = 1024;

/// Verifies the whole ledger in `conn` (read-only use).
pub fn verify_database(
    conn: &rusqlite::Connection,
    key: ChainKey,
    anchors: Vec<Anchor>,
) -> Result<Verified, VerifyError> {
    verify_database_with(conn, key, anchors, |_| {})
}

/// [`verify_database`], telling `progress` how far it got at the start,
/// every [`PROGRESS_EVERY`] entries and at the end.
///
/// Every read is in one read transaction, so a database being written
/// while it is verified is seen as of one moment: traces committed after
/// the last entry was read cannot pass for traces without an entry.
pub fn verify_database_with(
    conn: &rusqlite::Connection,
    key: ChainKey,
    anchors: Vec<Anchor>,
    mut progress: impl FnMut(Progress),
) -> Result<Verified, VerifyError> {
    let snapshot = conn.unchecked_transaction()?;
    let total = audit_sql::head(&snapshot)?.map_or(0, |(seq, _)| seq.max(0) as u64);
    let mut checked = 0u64;
    progress(Progress { checked, total });
    let key_id = audit_sql::key_id(conn)?;
    let columns = audit_sql::record_columns(conn)?;
    let mut verifier = Verifier::new(key, key_id, anchors).map_err(VerifyError::Failed)?;
    let mut covered: HashSet<String> = HashSet::new();
    let mut failure: Option<Failure> = None;
    audit_sql::for_each_entry(conn, |entry| -> Result<(), VerifyError> {
        if failure.is_some() {
            return Ok(());
        }
        checked += 1;
        if checked.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress { checked, total });
        }
        let mut db_error = None;
        let result = verifier.check(&entry, |e, digest| {
            let Some(trace_id) = e.subject.strip_prefix("trace:") else {
                return RecordCheck::Missing;
            };
            if !covered.insert(trace_id.to_string()) {
                return RecordCheck::Mismatch;
            }
            match audit_sql::request_record(conn, &columns, trace_id) {
                Ok(Some((t, c))) if &stored_digest(&t, &c) == digest => RecordCheck::Match,
                Ok(Some(_)) => RecordCheck::Mismatch,
                Ok(None) => RecordCheck::Missing,
                Err(e) => {
                    db_error = Some(e);
                    RecordCheck::Missing
                }
            }
        });
        if let Some(e) = db_error {
            return Err(e.into());
        }
        if let Err(f) = result {
            failure = Some(f);
        }
        Ok(())
    })?;
    progress(Progress { checked, total });
    if let Some(f) = failure {
        return Err(VerifyError::Failed(f));
    }
    let verified = verifier.finish().map_err(VerifyError::Failed)?;
    let traces = audit_sql::trace_count(conn)?;
    if traces != covered.len() as i64 {
        return Err(VerifyError::Failed(Failure {
            seq: verified.head.map_or(0, |h| h.seq),
            kind: FailureKind::RecordMissing,
            message: format!(
                "{} trace rows exist but the ledger covers {}: traces were inserted without an audit entry",
                traces,
                covered.len()
            ),
        }));
    }
    Ok(verified)
}

/// Writes the chain head outside the database every `every` entries and/or
/// every `interval`, so a truncated tail can be caught later.
pub struct Checkpointer {
    path: PathBuf,
    every: u64,
    interval: Duration,
    last_seq: i64,
    last_at: Instant,
}

impl Checkpointer {
    pub fn new(path: PathBuf, every: u64, interval: Duration) -> Checkpointer {
        crate::private_files::warn_if_readable_by_others(&path);
        Checkpointer {
            path,
            every,
            interval,
            last_seq: 0,
            last_at: Instant::now(),
        }
    }

    /// Writes a checkpoint if one is due (or `force`) and the head moved.
    pub fn maybe_write(&mut self, head: Option<audit_sql::Head>, force: bool) {
        let Some((seq, hash)) = head else { return };
        if seq == self.last_seq {
            return;
        }
        let due_by_count = self.every > 0 && (seq - self.last_seq) as u64 >= self.every;
        let due_by_time = !self.interval.is_zero() && self.last_at.elapsed() >= self.interval;
        if !(force || due_by_count || due_by_time) {
            return;
        }
        let anchor = Anchor { seq, hash };
        let line = checkpoint::format_line(&anchor, crate::trace::now_ms());
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&self.path).and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_data()
        });
        match written {
            Ok(()) => {
                tracing::info!(checkpoint = %anchor, file = %self.path.display(), "audit checkpoint");
                self.last_seq = seq;
                self.last_at = Instant::now();
            }
            Err(e) => {
                tracing::error!(checkpoint = %anchor, file = %self.path.display(), error = %e, "cannot write the audit checkpoint");
            }
        }
    }
}
