//! Administrative CLI commands (`keys`, `modules`, `cache`, `providers`, `vault`, `prices`). They work on
//! the database directly, in their own process, whether or not `serve` is
//! running: each change commits with its audit entry in one transaction.

pub mod cache;
pub mod keys;
pub mod modules;
pub mod prices;
pub mod vault;

use crate::audit::encoding::ChainKey;
use crate::config::{Config, EnvSource};
use crate::store::{self, AdminEntry, OpenMode};
use rusqlite::Connection;

/// What a command failed with: an exit code and a message.
pub type Failure = (u8, String);

pub const EXIT_CONFIG: u8 = 3;
pub const EXIT_DATABASE: u8 = 4;

/// The database, migrated, with the audit key it is chained with.
pub fn open_for_admin(
    config: &Config,
    env: &dyn EnvSource,
) -> Result<(Connection, ChainKey), Failure> {
    let mut conn = store::open(&config.store, OpenMode::ReadWrite)
        .map_err(|e| (EXIT_DATABASE, e.to_string()))?;
    store::migrate(&mut conn).map_err(|e| (EXIT_DATABASE, e.to_string()))?;
    let key = crate::audit::load_key(config.audit.key_file.as_deref(), env)
        .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    crate::app::check_audit_key(&conn, &key, config).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    Ok((conn, key))
}

pub fn commit(conn: &mut Connection, key: &ChainKey, entry: AdminEntry) -> Result<(), Failure> {
    store::commit_admin(conn, key, &entry)
        .map(drop)
        .map_err(|e| (EXIT_DATABASE, format!("the change was not saved: {e}")))
}

/// The actor recorded for CLI changes: the OS user, when known.
pub fn actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".into(),
    }
}
