//! Schema migrations: numbered SQL files from `migrations/`, embedded in the
//! binary and applied in order inside one transaction. The applied version
//! is `PRAGMA user_version`; a database newer than the binary is refused
//! before anything is written to it.

use rusqlite::Connection;

/// `(version, file name, sql)`, in order; versions are 1, 2, 3…
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_traces.sql",
        include_str!("../../migrations/0001_traces.sql"),
    ),
    (
        2,
        "0002_ledger.sql",
        include_str!("../../migrations/0002_ledger.sql"),
    ),
    (
        3,
        "0003_access.sql",
        include_str!("../../migrations/0003_access.sql"),
    ),
    (
        4,
        "0004_billing_components.sql",
        include_str!("../../migrations/0004_billing_components.sql"),
    ),
    (
        5,
        "0005_key_limits.sql",
        include_str!("../../migrations/0005_key_limits.sql"),
    ),
    (
        6,
        "0006_module_settings.sql",
        include_str!("../../migrations/0006_module_settings.sql"),
    ),
    (
        7,
        "0007_retry_breaker.sql",
        include_str!("../../migrations/0007_retry_breaker.sql"),
    ),
    (
        8,
        "0008_cache.sql",
        include_str!("../../migrations/0008_cache.sql"),
    ),
    (
        9,
        "0009_semantic_cache.sql",
        include_str!("../../migrations/0009_semantic_cache.sql"),
    ),
    (
        10,
        "0010_dashboard_indexes.sql",
        include_str!("../../migrations/0010_dashboard_indexes.sql"),
    ),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database schema is version {found}, newer than this tollgate supports \
         (version {supported}); it was written by a newer tollgate. Upgrade tollgate, \
         or point it at another database file"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("migration {name} failed: {source}")]
    Failed {
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("cannot read the schema version: {0}")]
    Version(rusqlite::Error),
}

/// Brings the database up to [`SCHEMA_VERSION`]; returns the versions applied.
pub fn migrate(conn: &mut Connection) -> Result<Vec<i64>, MigrateError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(MigrateError::Version)?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(MigrateError::Version)?;
    if current > SCHEMA_VERSION {
        return Err(MigrateError::TooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", version))
            .map_err(|source| MigrateError::Failed { name, source })?;
        applied.push(version);
    }
    tx.commit().map_err(|source| MigrateError::Failed {
        name: "commit",
        source,
    })?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0, i as i64 + 1, "{}", m.1);
            assert!(m.1.starts_with(&format!("{:04}_", m.0)), "{}", m.1);
        }
    }

    #[test]
    fn migrating_twice_is_a_no_op_and_newer_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap().len(), MIGRATIONS.len());
        assert!(migrate(&mut conn).unwrap().is_empty());
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match migrate(&mut conn) {
            Err(MigrateError::TooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
}
