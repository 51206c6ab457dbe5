//! Opening connections, each with the same PRAGMAs.
//!
//! The database holds traces, key hashes and sealed provider keys: it is
//! created owner-only (0600). SQLite gives `-wal` and `-shm` the database
//! file's mode, so they follow; existing files readable by others are
//! warned about, not changed.

use super::{MigrateError, SCHEMA_VERSION, StoreError};
use crate::config::StoreConfig;
use crate::private_files::{create_private, warn_if_readable_by_others};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The writer's connection (and CLI commands run in their own process).
    ReadWrite,
    /// Pool connections: SQLite itself refuses writes through them.
    ReadOnly,
}

pub fn open(cfg: &StoreConfig, mode: OpenMode) -> Result<Connection, StoreError> {
    let flags = match mode {
        OpenMode::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        OpenMode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if mode == OpenMode::ReadWrite {
        create_private(&cfg.path).map_err(|source| StoreError::Create {
            path: cfg.path.clone(),
            source,
        })?;
    }
    let conn =
        Connection::open_with_flags(&cfg.path, flags).map_err(|source| StoreError::Open {
            path: cfg.path.clone(),
            source,
        })?;
    let too_new = apply_pragmas(&conn, cfg, mode).map_err(|source| StoreError::Open {
        path: cfg.path.clone(),
        source,
    })?;
    if let Some(found) = too_new {
        return Err(MigrateError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    if mode == OpenMode::ReadWrite {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = cfg.path.clone().into_os_string();
            file.push(suffix);
            warn_if_readable_by_others(Path::new(&file));
        }
    }
    Ok(conn)
}

/// Returns the schema version found when it is too new to touch.
fn apply_pragmas(
    conn: &Connection,
    cfg: &StoreConfig,
    mode: OpenMode,
) -> rusqlite::Result<Option<i64>> {
    conn.busy_timeout(cfg.busy_timeout)?;
    if mode == OpenMode::ReadWrite {
        // A database from a newer tollgate is refused before anything, even
        // the journal mode, is written to it.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Ok(Some(version));
        }
        // journal_mode is persistent in the file; a read-only connection
        // cannot change it and does not need to.
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "could not enable WAL mode (got {journal})"
            )));
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{};
         PRAGMA mmap_size = {};",
        cfg.cache_size_kib, cfg.mmap_size_bytes
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(None)
}
