//! Assembling the running gateway, and taking it down in order.
//!
//! Shutdown phases, in this order and nowhere else:
//! 1. stop accepting connections;
//! 2. let in-flight requests finish, up to `server.shutdown_grace`, then
//!    abort what is left (their traces are still recorded);
//! 3. drop the last handles to the writer's queue, which closes it;
//! 4. join the writer once it has committed everything queued.

use crate::config::{Config, EnvSource};
use crate::metrics::Metrics;
use crate::providers::{Provider, Router};
use crate::store::{self, OpenMode, ReadPool, StoreError, Writer, WriterHandle};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Everything a request handler needs, shared by all connections.
pub struct AppState {
    pub config: Config,
    pub router: Router,
    pub client: reqwest::Client,
    pub writer: WriterHandle,
    pub reads: ReadPool,
    pub metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the writer thread: {0}")]
    Writer(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// A gateway whose store is open and migrated, ready to serve.
pub struct App {
    state: Arc<AppState>,
    writer: Writer,
}

impl App {
    pub fn open(config: Config, env: &dyn EnvSource) -> Result<App, StartError> {
        let mut conn = store::open(&config.store, OpenMode::ReadWrite)?;
        let applied = store::migrate(&mut conn).map_err(StoreError::from)?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, path = %config.store.path.display(), "applied migrations");
        }
        let (writer, handle) =
            Writer::start(conn, &config.writer, config.store_bodies).map_err(StartError::Writer)?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.upstream.connect_timeout)
            .pool_idle_timeout(config.upstream.pool_idle_timeout)
            .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .build()
            .map_err(StartError::Client)?;
        let providers: Vec<Provider> = config
            .providers
            .iter()
            .map(|p| Provider::from_config(p, env))
            .collect();
        for p in &providers {
            if p.api_key.is_none()
                && let Some(env) = &p.api_key_env
            {
                tracing::warn!(provider = %p.name, "no API key: {env} is not set; requests to this provider will fail");
            }
        }
        let router = Router::new(providers, &config.aliases);
        let reads = ReadPool::new(&config.store);
        let state = Arc::new(AppState {
            config,
            router,
            client,
            writer: handle,
            reads,
            metrics: Metrics::default(),
        });
        Ok(App { state, writer })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves, then drains (see the
    /// module docs) and returns once every record is committed.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        let App { state, writer } = self;
        let grace = state.config.shutdown_grace;
        crate::server::serve(listener, state.clone(), shutdown, grace).await;
        drop(state);
        let joined = tokio::task::spawn_blocking(move || writer.join()).await;
        if joined.is_err() {
            tracing::error!("the writer could not be joined");
        }
        tracing::info!("shutdown complete");
    }
}

/// Opens the store and serves until `shutdown`: what `tollgate serve` does.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), StartError> {
    let app = App::open(config, &crate::config::ProcessEnv)?;
    app.serve(listener, shutdown).await;
    Ok(())
}
