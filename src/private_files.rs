//! Files that hold secrets or the books (the database, its `-wal`/`-shm`,
//! the checkpoint file) are created readable by their owner only, and an
//! existing one that others can read is warned about (not changed: the
//! operator may have reasons).

use std::path::Path;

/// Creates the database file owner-only if it does not exist yet (a SQLite
/// URI or `:memory:` is left to SQLite).
pub fn create_private(path: &Path) -> std::io::Result<()> {
    let text = path.to_string_lossy();
    if text.starts_with("file:") || text == ":memory:" || path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Created by another process meanwhile: theirs stands.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Warns when `path` exists and its group or others may read or write it.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = %format!("{mode:o}"),
                "this file is accessible to other users; restrict it with chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
