//! The store: the only code that speaks SQL.
//!
//! One SQLite file in WAL mode. Exactly one connection writes, owned by the
//! writer thread ([`writer`]); reads go through a small pool of read-only
//! connections ([`reader`]). Everything else reaches the database through the
//! handles defined here, so that another backend can replace this module.

mod connection;
mod migrate;
mod reader;
mod trace_sql;
mod writer;

pub use connection::{OpenMode, open};
pub use migrate::{MigrateError, SCHEMA_VERSION, migrate};
pub use reader::ReadPool;
pub use writer::{Slot, WriteOp, Writer, WriterHandle, WriterStats};

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
}
