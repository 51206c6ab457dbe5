//! SQL for the audit ledger: appending entries (inside the caller's write
//! transaction, after reading the head in it, so two processes appending
//! never fork the chain) and reading it back for verification.

use crate::audit::encoding::{ChainKey, Entry, chain_hash};
use crate::audit::verify::StoredEntry;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

pub type Head = (i64, [u8; 32]);

pub fn head(conn: &Connection) -> rusqlite::Result<Option<Head>> {
    conn.prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            let seq: i64 = r.get(0)?;
            let hash: Vec<u8> = r.get(1)?;
            Ok((seq, hash.try_into().unwrap_or([0; 32])))
        })
        .optional()
}

/// Appends one entry after `prev` and returns the new head.
#[allow(clippy::too_many_arguments)]
pub fn append(
    conn: &Connection,
    key: &ChainKey,
    prev: Option<Head>,
    ts_ms: i64,
    actor: &str,
    action: &str,
    subject: &str,
    digest: [u8; 32],
    detail: Option<&str>,
) -> rusqlite::Result<Head> {
    let (prev_seq, prev_hash) = prev.unwrap_or((0, crate::audit::encoding::GENESIS));
    let entry = Entry {
        seq: prev_seq + 1,
        ts_ms,
        actor,
        action,
        subject,
        digest,
    };
    let hash = chain_hash(key, &prev_hash, &entry);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, ts_ms, actor, action, subject, digest, hash, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        entry.seq,
        ts_ms,
        actor,
        action,
        subject,
        &digest[..],
        &hash[..],
        detail
    ])?;
    Ok((entry.seq, hash))
}

pub fn key_id(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM audit_meta WHERE key = 'key_id'",
        [],
        |r| r.get(0),
    )
    .optional()
}

pub fn set_key_id(conn: &Connection, key_id: Option<&str>) -> rusqlite::Result<()> {
    match key_id {
        Some(id) => conn.execute(
            "INSERT INTO audit_meta (key, value) VALUES ('key_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [id],
        )?,
        None => conn.execute("DELETE FROM audit_meta WHERE key = 'key_id'", [])?,
    };
    Ok(())
}

pub fn entry_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
}

/// Calls `f` with every entry in ascending `seq` order; stops at `f`'s
/// first error.
pub fn for_each_entry<E: From<rusqlite::Error>>(
    conn: &Connection,
    mut f: impl FnMut(StoredEntry) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt = conn.prepare(
        "SELECT seq, ts_ms, actor, action, subject, digest, hash, detail
         FROM audit_log ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(StoredEntry {
            seq: r.get(0)?,
            ts_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            digest: r.get(5)?,
            hash: r.get(6)?,
            detail: r.get(7)?,
        })?;
    }
    Ok(())
}

/// A row as `(column, value)` pairs in table-definition order.
pub type Row = Vec<(String, Value)>;

fn row_by(
    conn: &Connection,
    table: &str,
    key: &str,
    columns: &[&str],
    id: &str,
) -> rusqlite::Result<Option<Row>> {
    // The columns by name (record format v1, then the added ones); which of
    // them a digest covers is decided in `audit::stored_digest`.
    let sql = format!(
        "SELECT {} FROM {table} WHERE {key} = ?1",
        columns.join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
    stmt.query_row([id], |r| {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| Ok((n.clone(), r.get::<_, Value>(i)?)))
            .collect()
    })
    .optional()
}

/// The columns of `traces` and `costs` a request record is read with: every
/// column tollgate knows that the database has (a database not yet migrated
/// to 0004 lacks the added ones, which is the same as their being NULL).
pub struct RecordColumns {
    traces: Vec<&'static str>,
    costs: Vec<&'static str>,
}

pub fn record_columns(conn: &Connection) -> rusqlite::Result<RecordColumns> {
    let present = |table: &str, all: &[&'static str]| -> rusqlite::Result<Vec<&'static str>> {
        let have: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(all
            .iter()
            .copied()
            .filter(|c| have.iter().any(|h| h == c))
            .collect())
    };
    Ok(RecordColumns {
        traces: present("traces", &super::trace_sql::ALL_COLUMNS)?,
        costs: present("costs", &super::cost_sql::ALL_COLUMNS)?,
    })
}

/// The `traces` and `costs` rows a request entry covers; `None` when either
/// is missing.
pub fn request_record(
    conn: &Connection,
    columns: &RecordColumns,
    trace_id: &str,
) -> rusqlite::Result<Option<(Row, Row)>> {
    let trace = row_by(conn, "traces", "id", &columns.traces, trace_id)?;
    let cost = row_by(conn, "costs", "trace_id", &columns.costs, trace_id)?;
    Ok(trace.zip(cost))
}

pub fn trace_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM traces", [], |r| r.get(0))
}
