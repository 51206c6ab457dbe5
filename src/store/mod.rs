//! The store: the only code that speaks SQL.
//!
//! One SQLite file in WAL mode. Exactly one connection writes, owned by the
//! writer thread ([`writer`]); reads go through a small pool of read-only
//! connections ([`reader`]). Everything else reaches the database through the
//! handles defined here, so that another backend can replace this module.

pub mod access_sql;
pub mod audit_sql;
pub mod breaker_sink;
pub mod budget_sql;
pub mod cache_sql;
mod connection;
pub mod cost_sql;
pub mod dashboard_sql;
mod migrate;
mod reader;
pub mod report_sql;
mod rollup_sql;
pub mod semantic_sql;
pub mod trace_sql;
mod writer;

pub use connection::{OpenMode, open};
pub use migrate::{MigrateError, SCHEMA_VERSION, migrate};
pub use reader::ReadPool;
pub use writer::{AdminEntry, Books, Slot, WriteOp, Writer, WriterHandle, WriterStats};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is shutting down")]
    Closed,
    #[error("{0}")]
    Rejected(String),
    #[error("cannot create database {path}: {source}")]
    Create {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Applies one administrative change with its audit entry in a transaction
/// of its own: how CLI commands change a database `serve` may be using.
pub fn commit_admin(
    conn: &mut rusqlite::Connection,
    key: &crate::audit::encoding::ChainKey,
    entry: &AdminEntry,
) -> rusqlite::Result<audit_sql::Head> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head = audit_sql::head(&tx)?;
    let head = writer::write_admin(&tx, key, head, entry)?;
    tx.commit()?;
    Ok(head)
}

/// `INSERT INTO table (columns…) VALUES (?1…)`.
fn insert_sql(table: &str, columns: &[&str]) -> String {
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    )
}

/// Runs a cached `INSERT` with borrowed values (no copies of the row).
fn insert_values(
    conn: &rusqlite::Connection,
    sql: &str,
    values: &[rusqlite::types::ValueRef<'_>],
) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(
            values
                .iter()
                .map(|v| rusqlite::types::ToSqlOutput::Borrowed(*v)),
        ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit digest covers rows by their column lists; those must be
    /// the tables' real columns, in order.
    #[test]
    fn column_lists_match_the_schema() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        for (table, columns) in [
            ("traces", &trace_sql::ALL_COLUMNS[..]),
            ("costs", &cost_sql::ALL_COLUMNS[..]),
        ] {
            let actual: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(actual, columns, "{table}");
        }
    }
}
