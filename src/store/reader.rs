//! A small pool of read-only connections. Reads run on tokio's blocking pool
//! so they never stall the async workers, and never touch the writer's
//! connection.

use super::{OpenMode, StoreError, open};
use crate::config::StoreConfig;
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: StoreConfig,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    pub fn new(cfg: &StoreConfig) -> ReadPool {
        ReadPool {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(cfg.read_pool_size),
            }),
        }
    }

    /// Runs `f` on a pooled read-only connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // The lock guards only the idle list, never a query.
            let pooled = inner.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open(&inner.cfg, OpenMode::ReadOnly)?,
            };
            let result = f(&conn).map_err(StoreError::from);
            inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}
