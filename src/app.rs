//! Assembling the running gateway, and taking it down in order.
//!
//! Shutdown phases, in this order and nowhere else:
//! 1. stop accepting connections;
//! 2. let in-flight requests finish, up to `server.shutdown_grace`, then
//!    abort what is left (their traces are still recorded);
//! 3. drop the last handles to the writer's queue, which closes it;
//! 4. join the writer once it has committed everything queued.

use crate::access::{AdminAuth, ClientAuth};
use crate::audit::Checkpointer;
use crate::audit::encoding::ChainKey;
use crate::config::{Config, EnvSource};
use crate::counters::Metrics;
use crate::ledger::PriceBook;
use crate::providers::{Provider, Router};
use crate::secret::Secret;
use crate::state::{AppState, merged_aliases, price_table};
use crate::store::access_sql::{self, Mutation};
use crate::store::{self, OpenMode, ReadPool, StoreError, Writer};
use crate::store::{AdminEntry, Books};
use crate::store::{audit_sql, budget_sql};
use crate::vault::Vault;
use std::future::Future;
use std::sync::Arc;
use std::sync::RwLock;
use tokio::net::TcpListener;
use tollgate_modules::budget::{Budgets, Scope};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the writer thread: {0}")]
    Writer(std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error(transparent)]
    AuditKey(#[from] crate::audit::KeyError),
    #[error("{0}")]
    AuditKeyMismatch(String),
    #[error("price table: {0}")]
    Prices(#[from] crate::ledger::prices::PriceError),
    #[error(transparent)]
    Vault(#[from] crate::vault::LoadError),
    #[error("{0}")]
    AdminKey(String),
}

impl StartError {
    /// A mistake in the configuration (or environment), not in the database.
    pub fn is_config(&self) -> bool {
        matches!(self, StartError::AdminKey(_))
    }
}

/// A gateway whose store is open and migrated, ready to serve.
pub struct App {
    state: Arc<AppState>,
    writer: Writer,
    first_admin_key: Option<Secret>,
    metrics_listener: Option<TcpListener>,
}

impl App {
    pub fn open(config: Config, env: &dyn EnvSource) -> Result<App, StartError> {
        let mut conn = store::open(&config.store, OpenMode::ReadWrite)?;
        let applied = store::migrate(&mut conn).map_err(StoreError::from)?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, path = %config.store.path.display(), "applied migrations");
        }
        let key = crate::audit::load_key(config.audit.key_file.as_deref(), env)?;
        check_audit_key(&conn, &key, &config)?;
        let vault = Vault::load(
            &access_sql::provider_keys(&conn).map_err(StoreError::from)?,
            crate::vault::load_master(config.master_key_file.as_deref(), env)?,
        )?;
        let (admin, first_admin_key) = admin_credential(&mut conn, &key, env)?;
        if !config.require_client_key {
            tracing::warn!(
                "auth.require_client_key = false: the proxy routes are open to anyone who can reach them"
            );
        }
        if config.metrics.listen.is_none()
            && config.metrics.token.is_none()
            && !config.listen.ip().is_loopback()
        {
            tracing::warn!(
                listen = %config.listen,
                "/metrics is served without a credential on a non-loopback address: set \
                 metrics.token or metrics.listen"
            );
        }
        let budgets = load_budgets(&conn)?;
        let stored_prices = access_sql::price_overrides(&conn).map_err(StoreError::from)?;
        let prices = PriceBook::new(price_table(&config.prices, &stored_prices)?);
        let aliases = merged_aliases(
            &config,
            access_sql::aliases(&conn).map_err(StoreError::from)?,
        );
        let stored_modules = access_sql::module_overrides(&conn).map_err(StoreError::from)?;
        let modules = crate::module_settings::in_force(&config.modules, &stored_modules);
        let breakers = access_sql::breaker_states(&conn).map_err(StoreError::from)?;
        let semantic = load_semantic(&conn, modules.semantic_cache.max_entries)?;
        let verify_job = crate::audit::job::VerifyJob::new(
            config.store.clone(),
            key.clone(),
            config.checkpoint_path(),
        );
        let books = Books {
            prices: prices.clone(),
            key,
            checkpoints: Checkpointer::new(
                config.checkpoint_path(),
                config.audit.checkpoint_every_entries,
                config.audit.checkpoint_interval,
            ),
            store_bodies: config.store_bodies,
        };
        let (writer, handle) =
            Writer::start(conn, &config.writer, books).map_err(StartError::Writer)?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.upstream.connect_timeout)
            .pool_idle_timeout(config.upstream.pool_idle_timeout)
            .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
            .tcp_nodelay(true)
            // A redirect goes back to the client: following it would send
            // the provider key (x-api-key survives reqwest's redirect
            // scrubbing) to wherever the upstream points.
            .redirect(reqwest::redirect::Policy::none())
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
        handle.stats().requests.configure(
            config.metrics.per_key_labels,
            providers
                .iter()
                .flat_map(|p| p.models.iter().map(|m| (p.name.clone(), m.clone()))),
        );
        let router = Router::new(providers, &aliases);
        let reads = ReadPool::new(&config.store);
        let file_prices = RwLock::new(config.prices.clone());
        let auth = ClientAuth::new(reads.clone(), config.failed_auth);
        let cache = crate::response_cache::ResponseCache::new(modules.cache.memory_bytes);
        let modules = RwLock::new(Arc::new(modules));
        let rate_limiter = tollgate_modules::rate_limit::RateLimiter::new();
        let breaker = tollgate_modules::breaker::Breaker::new(Box::new(
            store::breaker_sink::BreakerSink(handle.clone()),
        ));
        breaker.load(breakers);
        let config_ui_ttl = config.ui.session_ttl;
        let state = Arc::new(AppState {
            config,
            modules,
            prices,
            router: RwLock::new(Arc::new(router)),
            client,
            writer: handle,
            auth,
            reads,
            metrics: Metrics::default(),
            admin,
            vault,
            pipeline: tollgate_modules::Pipeline::new(vec![
                Box::new(rate_limiter.clone()),
                Box::new(budgets.clone()),
            ]),
            rate_limiter,
            budgets,
            breaker,
            file_prices,
            cache,
            semantic,
            ui_sessions: crate::access::UiSessions::new(config_ui_ttl),
            verify_job,
        });
        Ok(App {
            state,
            writer,
            first_admin_key,
            metrics_listener: None,
        })
    }

    /// The admin credential created on this first run, to show once.
    pub fn take_first_admin_key(&mut self) -> Option<Secret> {
        self.first_admin_key.take()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Binds `metrics.listen`, when configured, and returns its address.
    /// [`App::serve`] binds it otherwise; calling this first lets a bind
    /// failure stop the start.
    pub async fn bind_metrics(&mut self) -> std::io::Result<Option<std::net::SocketAddr>> {
        let Some(addr) = self.state.config.metrics.listen else {
            return Ok(None);
        };
        if self.metrics_listener.is_none() {
            self.metrics_listener = Some(TcpListener::bind(addr).await?);
        }
        self.metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
    }

    /// Serves on `listener` (and on `metrics.listen`, when set) until
    /// `shutdown` resolves, then drains (see the module docs) and returns
    /// once every record is committed.
    pub async fn serve(mut self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        use crate::server::{Routes, serve};
        use futures_util::FutureExt;
        if let Err(e) = self.bind_metrics().await {
            tracing::error!(error = %e, "cannot listen on metrics.listen; /metrics is not served");
        }
        let App {
            state,
            writer,
            metrics_listener,
            ..
        } = self;
        let grace = state.config.shutdown_grace;
        let shutdown = shutdown.boxed().shared();
        let watcher = tokio::spawn(watch_module_settings(Arc::downgrade(&state)));
        let cache_watcher = tokio::spawn(watch_cache(Arc::downgrade(&state)));
        let main = serve(
            listener,
            state.clone(),
            shutdown.clone(),
            grace,
            Routes::Main,
        );
        match metrics_listener {
            Some(metrics) => {
                let metrics = serve(metrics, state.clone(), shutdown, grace, Routes::MetricsOnly);
                tokio::join!(main, metrics);
            }
            None => main.await,
        }
        watcher.abort();
        cache_watcher.abort();
        drop(state);
        let joined = tokio::task::spawn_blocking(move || writer.join()).await;
        if joined.is_err() {
            tracing::error!("the writer could not be joined");
        }
        tracing::info!("shutdown complete");
    }
}

/// How often a running server looks for module settings changed by another
/// process (`tollgate modules enable|disable`).
pub const MODULE_SETTINGS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Puts module settings changed in the database by another process in
/// force within [`MODULE_SETTINGS_POLL`]. Weak: it must not keep the
/// writer's queue open at shutdown.
async fn watch_module_settings(state: std::sync::Weak<AppState>) {
    let mut last = None;
    loop {
        tokio::time::sleep(MODULE_SETTINGS_POLL).await;
        let Some(state) = state.upgrade() else { return };
        match state.reads.read(access_sql::module_overrides).await {
            Ok(stored) if last.as_ref() != Some(&stored) => {
                if last.is_some() {
                    tracing::info!("module settings changed in the database; now in force");
                }
                state.set_modules(crate::module_settings::in_force(
                    &state.config.modules,
                    &stored,
                ));
                last = Some(stored);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read module settings; the ones in force stay")
            }
        }
    }
}

/// The semantic cache's index as stored (entries survive a restart), at
/// most `max_entries` a partition (the newest).
fn load_semantic(
    conn: &rusqlite::Connection,
    max_entries: usize,
) -> Result<crate::semantic_index::Semantic, StoreError> {
    let semantic = crate::semantic_index::Semantic::default();
    let rows =
        crate::store::semantic_sql::load(conn, crate::trace::now_ms()).map_err(StoreError::from)?;
    for row in rows {
        semantic.index.insert(
            row.partition,
            row.cache_key,
            &row.vector,
            row.expires_at_ms,
            max_entries,
        );
    }
    Ok(semantic)
}

/// Polls the exact cache's table every [`MODULE_SETTINGS_POLL`]: a purge by
/// another process (`tollgate cache purge`) moves the purge generation, and
/// this process then drops its in-memory copies; the entries and bytes
/// stored are kept for `/metrics`. Weak, as above.
async fn watch_cache(state: std::sync::Weak<AppState>) {
    loop {
        {
            let Some(state) = state.upgrade() else { return };
            match state.reads.read(crate::store::cache_sql::totals).await {
                Ok(t) => {
                    state.cache.saw_generation(t.generation);
                    let c = &state.cache;
                    c.stored_entries.store(
                        t.entries.max(0) as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    c.stored_bytes
                        .store(t.bytes.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the cache's purge generation"),
            }
        }
        tokio::time::sleep(MODULE_SETTINGS_POLL).await;
    }
}

/// A ledger is chained with one key (or none) for life: starting with another
/// would make it unverifiable, so that is refused before anything is written.
pub fn check_audit_key(
    conn: &rusqlite::Connection,
    key: &ChainKey,
    config: &Config,
) -> Result<(), StartError> {
    let db = config.store.path.display();
    let stored = audit_sql::key_id(conn).map_err(StoreError::from)?;
    let entries = audit_sql::entry_count(conn).map_err(StoreError::from)?;
    let configured = key.key_id();
    if entries == 0 {
        audit_sql::set_key_id(conn, configured.as_deref()).map_err(StoreError::from)?;
    } else if stored != configured {
        return Err(StartError::AuditKeyMismatch(match (stored, configured) {
            (Some(s), None) => format!(
                "the audit ledger in {db} is keyed (key id {s}) but no audit key is configured: \
                 set TOLLGATE_AUDIT_KEY or audit.key_file"
            ),
            (None, Some(_)) => format!(
                "the audit ledger in {db} is not keyed, but an audit key is configured; a \
                 ledger's key cannot change: unset the key or use a new database"
            ),
            (Some(s), Some(c)) => format!(
                "the configured audit key (key id {c}) is not the one the ledger in {db} was \
                 written with (key id {s})"
            ),
            (None, None) => unreachable!("equal"),
        }));
    }
    if configured.is_none() {
        tracing::warn!(
            "no audit key configured (TOLLGATE_AUDIT_KEY or audit.key_file): the audit chain is \
             unkeyed, so anyone who can write the database could recompute it; rely on the \
             checkpoint file, or configure a key for a new database"
        );
    }
    Ok(())
}

/// `TOLLGATE_ADMIN_KEY` when set; otherwise the stored credentials, creating
/// one on the first run (returned so `serve` can show it once).
fn admin_credential(
    conn: &mut rusqlite::Connection,
    key: &ChainKey,
    env: &dyn EnvSource,
) -> Result<(AdminAuth, Option<Secret>), StartError> {
    if let Some(k) = env.var("TOLLGATE_ADMIN_KEY") {
        crate::access::check_admin_key(&k).map_err(StartError::AdminKey)?;
        return Ok((AdminAuth::from_plaintext(&k), None));
    }
    let stored = access_sql::admin_credential_hashes(conn).map_err(StoreError::from)?;
    if !stored.is_empty() {
        return Ok((AdminAuth::new(stored), None));
    }
    let new = crate::access::new_admin_key();
    let entry = AdminEntry {
        actor: "system".into(),
        action: "admin_credential.create".into(),
        subject: format!("admin:{}", new.id),
        detail: serde_json::json!({"id": new.id, "prefix": new.prefix}).to_string(),
        mutation: Some(Mutation::CreateAdminCredential {
            id: new.id.clone(),
            prefix: new.prefix.clone(),
            hash: new.hash,
            at_ms: crate::trace::now_ms(),
        }),
    };
    store::commit_admin(conn, key, &entry).map_err(StoreError::from)?;
    Ok((AdminAuth::new(vec![new.hash]), Some(new.plaintext)))
}

/// Re-reads the price overrides from `path` and puts them in force (with
/// the database's on top); an audit entry records the change. Errors leave
/// the old table in force.
pub async fn reload_prices(state: &AppState, path: &std::path::Path) -> Result<usize, String> {
    let file = crate::config::FileConfig::read(path).map_err(|e| e.to_string())?;
    let previous = std::mem::replace(
        &mut *state.file_prices.write().unwrap_or_else(|e| e.into_inner()),
        file.prices.clone(),
    );
    let priced = match state.reload_price_table().await {
        Ok(n) => n,
        Err(e) => {
            *state.file_prices.write().unwrap_or_else(|e| e.into_inner()) = previous;
            return Err(e);
        }
    };
    let detail = serde_json::json!({"overrides": file.prices, "models_priced": priced});
    state
        .writer
        .audit(AdminEntry {
            actor: "system".into(),
            action: "prices.reload".into(),
            subject: format!("config:{}", path.display()),
            detail: detail.to_string(),
            mutation: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(priced)
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

/// Budgets with what every key and provider (and all traffic) has spent
/// today, this month and in total, from the daily cost rollup, so that a
/// restart forgets no spending. (Costs that stayed unknown count as
/// nothing here; before the restart they counted at their worst case.)
fn load_budgets(conn: &rusqlite::Connection) -> Result<Budgets, StartError> {
    let now = crate::trace::now_ms();
    let spending =
        budget_sql::spending(conn, &crate::ledger::utc_day(now)).map_err(StoreError::from)?;
    let budgets = Budgets::default();
    let rows = spending
        .keys
        .into_iter()
        .map(|r| (Scope::Key(r.name.clone()), r))
        .chain(
            spending
                .providers
                .into_iter()
                .map(|r| (Scope::Provider(r.name.clone()), r)),
        )
        .chain(std::iter::once((Scope::Global, spending.global)));
    for (scope, r) in rows {
        budgets.load(scope, r.day_uc, r.month_uc, r.total_uc);
    }
    Ok(budgets)
}
