//! `AppState`: everything a request handler needs, shared by all
//! connections — the configuration, the routing table and price table in
//! force (both swapped whole on change), the writer's handle, the read pool,
//! authentication, the vault and the counters. It lives below every room
//! that handles requests, so they all reach it without importing upward.

use crate::access::{AdminAuth, ClientAuth, UiSessions};
use crate::config::Config;
use crate::counters::Metrics;
use crate::ledger::PriceBook;
use crate::ledger::prices::{PriceSource, PriceSpec, PriceTable};
use crate::providers::Router;
use crate::store::access_sql;
use crate::store::{ReadPool, StoreError, WriterHandle};
use crate::vault::Vault;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Everything a request handler needs, shared by all connections.
pub struct AppState {
    pub config: Config,
    pub prices: PriceBook,
    pub(crate) router: RwLock<Arc<Router>>,
    pub client: reqwest::Client,
    pub writer: WriterHandle,
    pub reads: ReadPool,
    pub metrics: Metrics,
    pub auth: ClientAuth,
    pub admin: AdminAuth,
    pub vault: Vault,
    /// The modules' switches and settings in force: the config file's,
    /// then the database's runtime settings on top; swapped whole.
    pub(crate) modules: RwLock<Arc<tollgate_modules::ModuleSettings>>,
    /// The modules that admit or refuse whole requests, in order
    /// (`rate_limit`, `budget`; they share their state with the fields below).
    pub pipeline: tollgate_modules::Pipeline,
    /// A circuit breaker per upstream target (`[modules.breaker]`).
    pub breaker: tollgate_modules::breaker::Breaker,
    /// Per-key request, token and concurrency limits (`[modules.rate_limit]`).
    pub rate_limiter: tollgate_modules::rate_limit::RateLimiter,
    /// Spent and reserved per key, provider and globally (`[modules.budget]`).
    pub budgets: tollgate_modules::budget::Budgets,
    /// Price overrides from the config file (the database's come on top).
    pub(crate) file_prices: RwLock<BTreeMap<String, PriceSpec>>,
    /// The exact cache's in-memory tier and counters (`[modules.cache]`;
    /// the entries themselves are in the database).
    pub cache: crate::response_cache::ResponseCache,
    /// The semantic cache's index and counters (`[modules.semantic_cache]`).
    pub semantic: crate::semantic_index::Semantic,
    /// The dashboard's signed-in sessions (in memory only).
    pub ui_sessions: UiSessions,
    /// The dashboard's "verify now": one background audit verification.
    pub verify_job: crate::audit::job::VerifyJob,
}

impl AppState {
    /// The routing table in force.
    pub fn router(&self) -> Arc<Router> {
        self.router
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The modules' settings in force.
    pub fn modules(&self) -> Arc<tollgate_modules::ModuleSettings> {
        self.modules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts new module settings in force for the requests that start next.
    pub fn set_modules(&self, next: tollgate_modules::ModuleSettings) {
        *self.modules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    /// Puts the config file's module settings with the database's runtime
    /// overrides on top in force.
    pub async fn reload_modules(&self) -> Result<(), StoreError> {
        let stored = self.reads.read(access_sql::module_overrides).await?;
        self.set_modules(crate::module_settings::in_force(
            &self.config.modules,
            &stored,
        ));
        Ok(())
    }

    /// Rebuilds routing after an alias change: config aliases, then the
    /// database's on top.
    pub async fn reload_aliases(&self) -> Result<(), StoreError> {
        let stored = self.reads.read(access_sql::aliases).await?;
        let next = self
            .router()
            .with_aliases(&merged_aliases(&self.config, stored));
        *self.router.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Rebuilds the price table: built-in, then the config file's
    /// overrides, then the database's.
    pub async fn reload_price_table(&self) -> Result<usize, String> {
        let stored = self
            .reads
            .read(access_sql::price_overrides)
            .await
            .map_err(|e| e.to_string())?;
        let file = self
            .file_prices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let table = price_table(&file, &stored).map_err(|e| e.to_string())?;
        let n = table.len();
        self.prices.replace(table);
        Ok(n)
    }
}

/// Built-in prices, then the config file's overrides, then the database's.
pub(crate) fn price_table(
    file: &BTreeMap<String, PriceSpec>,
    stored: &BTreeMap<String, PriceSpec>,
) -> Result<PriceTable, crate::ledger::prices::PriceError> {
    PriceTable::builtin()
        .with_overrides(file, PriceSource::Config)?
        .with_overrides(stored, PriceSource::Database)
}

/// The config file's aliases, then the database's on top.
pub(crate) fn merged_aliases(
    config: &Config,
    stored: BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut aliases = config.aliases.clone();
    aliases.extend(stored);
    aliases
}
