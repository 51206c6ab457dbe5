//! The on-disk shape of the configuration (mirrors `config.toml`), with the
//! embedded defaults, and its validation into [`Config`].

use super::{
    AuditConfig, AuthThrottleConfig, Config, ConfigError, ConnectionConfig, MetricsConfig,
    Protocol, ProviderConfig, StoreConfig, UiConfig, UpstreamConfig, WriterConfig, invalid,
};
use crate::ledger::prices::PriceSpec;
use crate::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A file that lists `[[providers]]` replaces the default provider list whole.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerSection,
    pub store: StoreSection,
    pub writer: WriterSection,
    pub upstream: UpstreamSection,
    pub traces: TracesSection,
    pub audit: AuditSection,
    pub auth: AuthSection,
    pub vault: VaultSection,
    pub metrics: MetricsSection,
    pub ledger: LedgerSection,
    pub ui: UiSection,
    pub modules: tollgate_modules::ModuleSettings,
    pub providers: Vec<ProviderEntry>,
    pub aliases: BTreeMap<String, AliasTargets>,
    pub prices: BTreeMap<String, PriceSpec>,
}

/// An alias's target: one `provider/model`, or an ordered list of them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AliasTargets {
    One(String),
    Many(Vec<String>),
}

impl AliasTargets {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            AliasTargets::One(t) => vec![t],
            AliasTargets::Many(all) => all,
        }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            server: ServerSection::default(),
            store: StoreSection::default(),
            writer: WriterSection::default(),
            upstream: UpstreamSection::default(),
            traces: TracesSection::default(),
            audit: AuditSection::default(),
            auth: AuthSection::default(),
            vault: VaultSection::default(),
            metrics: MetricsSection::default(),
            ledger: LedgerSection::default(),
            ui: UiSection::default(),
            modules: Default::default(),
            providers: default_providers(),
            aliases: BTreeMap::new(),
            prices: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    pub listen: String,
    pub max_body_bytes: u64,
    pub max_connections: u64,
    pub shutdown_grace_secs: u64,
    pub worker_threads: u64,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub h2_ping_interval_ms: u64,
    pub h2_ping_timeout_ms: u64,
    pub body_timeout_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 32 * 1024 * 1024,
            max_connections: 4096,
            shutdown_grace_secs: 30,
            worker_threads: 0,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            h2_ping_interval_ms: 30_000,
            h2_ping_timeout_ms: 20_000,
            body_timeout_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    pub path: PathBuf,
    pub busy_timeout_ms: u64,
    pub cache_size_kib: u64,
    pub mmap_size_bytes: u64,
    pub read_pool_size: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: "tollgate.db".into(),
            busy_timeout_ms: 5000,
            cache_size_kib: 2048,
            mmap_size_bytes: 0,
            read_pool_size: 4,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterSection {
    pub channel_capacity: u64,
    pub batch_max: u64,
    pub batch_max_delay_ms: u64,
}

impl Default for WriterSection {
    fn default() -> Self {
        WriterSection {
            channel_capacity: 16384,
            batch_max: 1024,
            batch_max_delay_ms: 5,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSection {
    pub connect_timeout_ms: u64,
    pub first_byte_timeout_ms: u64,
    pub total_timeout_ms: u64,
    pub pool_idle_timeout_secs: u64,
    pub pool_max_idle_per_host: u64,
    pub max_inspected_event_bytes: u64,
    pub key_retest_secs: u64,
}

impl Default for UpstreamSection {
    fn default() -> Self {
        UpstreamSection {
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 300_000,
            total_timeout_ms: 600_000,
            pool_idle_timeout_secs: 90,
            pool_max_idle_per_host: 256,
            max_inspected_event_bytes: 1024 * 1024,
            key_retest_secs: 300,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracesSection {
    pub store_bodies: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub require_client_key: bool,
    pub failed_per_minute: u64,
    pub failed_burst: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            require_client_key: true,
            failed_per_minute: 60,
            failed_burst: 30,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: String,
    pub token: String,
    pub per_key_labels: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSection {
    pub builtin_prices_max_age_days: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    pub enabled: bool,
    pub session_ttl_secs: u64,
    pub secure_cookie: bool,
}

impl Default for UiSection {
    fn default() -> Self {
        UiSection {
            enabled: true,
            session_ttl_secs: 43_200,
            secure_cookie: false,
        }
    }
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            builtin_prices_max_age_days: 90,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSection {
    pub master_key_file: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    pub key_file: PathBuf,
    pub checkpoint_file: PathBuf,
    pub checkpoint_every_entries: u64,
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            key_file: PathBuf::new(),
            checkpoint_file: PathBuf::new(),
            checkpoint_every_entries: 10_000,
            checkpoint_interval_secs: 300,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    pub name: String,
    pub protocol: Protocol,
    pub base_url: String,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub anthropic_version: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
}

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

fn default_providers() -> Vec<ProviderEntry> {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    vec![
        ProviderEntry {
            name: "openai".into(),
            protocol: Protocol::Openai,
            base_url: "https://api.openai.com/v1".into(),
            api_key_env: Some("OPENAI_API_KEY".into()),
            anthropic_version: None,
            models: strings(crate::providers::catalog::OPENAI_MODELS),
        },
        ProviderEntry {
            name: "anthropic".into(),
            protocol: Protocol::Anthropic,
            base_url: "https://api.anthropic.com/v1".into(),
            api_key_env: Some("ANTHROPIC_API_KEY".into()),
            anthropic_version: None,
            models: strings(crate::providers::catalog::ANTHROPIC_MODELS),
        },
    ]
}

impl FileConfig {
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("{:?} is not an IP:port address", self.server.listen),
            )
        })?;
        let positive = |key: &str, v: u64| -> Result<u64, ConfigError> {
            if v == 0 {
                Err(invalid(key, "must be greater than 0"))
            } else {
                Ok(v)
            }
        };
        positive("server.max_body_bytes", self.server.max_body_bytes)?;
        positive("ui.session_ttl_secs", self.ui.session_ttl_secs)?;
        if self.ui.session_ttl_secs > 31_536_000 {
            return Err(invalid(
                "ui.session_ttl_secs",
                "must be at most 31536000 (a year)",
            ));
        }
        positive("server.max_connections", self.server.max_connections)?;
        positive("server.header_timeout_ms", self.server.header_timeout_ms)?;
        positive("server.idle_timeout_ms", self.server.idle_timeout_ms)?;
        if self.server.h2_ping_interval_ms > 0 {
            positive("server.h2_ping_timeout_ms", self.server.h2_ping_timeout_ms)?;
        }
        let metrics_listen = match self.metrics.listen.as_str() {
            "" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{text:?} is not an IP:port address (or empty: the main listener)"),
                )
            })?),
        };
        if metrics_listen.is_some_and(|m| m == listen && m.port() != 0) {
            return Err(invalid(
                "metrics.listen",
                "must differ from server.listen (leave it empty to serve /metrics there)",
            ));
        }
        positive("store.read_pool_size", self.store.read_pool_size)?;
        positive("writer.channel_capacity", self.writer.channel_capacity)?;
        positive("writer.batch_max", self.writer.batch_max)?;
        positive(
            "upstream.connect_timeout_ms",
            self.upstream.connect_timeout_ms,
        )?;
        positive(
            "upstream.first_byte_timeout_ms",
            self.upstream.first_byte_timeout_ms,
        )?;
        positive("upstream.total_timeout_ms", self.upstream.total_timeout_ms)?;
        positive("server.body_timeout_ms", self.server.body_timeout_ms)?;
        if !(1024..=64 * 1024 * 1024).contains(&self.upstream.max_inspected_event_bytes) {
            return Err(invalid(
                "upstream.max_inspected_event_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        positive("upstream.key_retest_secs", self.upstream.key_retest_secs)?;
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        if self.ledger.builtin_prices_max_age_days > 36_500 {
            return Err(invalid(
                "ledger.builtin_prices_max_age_days",
                "must be between 0 (never warn) and 36500",
            ));
        }
        self.modules
            .validate()
            .map_err(|e| invalid(format!("modules.{}", e.field), e.reason))?;
        let failed_auth = AuthThrottleConfig {
            per_minute: in_u32_range("auth.failed_per_minute", self.auth.failed_per_minute)?,
            burst: in_u32_range("auth.failed_burst", self.auth.failed_burst)?,
        };

        let mut providers = Vec::with_capacity(self.providers.len());
        for (i, p) in self.providers.into_iter().enumerate() {
            providers.push(validate_provider(i, p, &providers)?);
        }
        let mut aliases = BTreeMap::new();
        for (alias, targets) in self.aliases {
            let key = format!("aliases.{alias}");
            if alias.is_empty() || alias.contains('/') {
                return Err(invalid(
                    key,
                    "an alias name must be non-empty and contain no '/'",
                ));
            }
            let targets = targets.into_vec();
            super::check_alias_targets(&alias, &targets, |name| {
                providers
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.protocol)
            })
            .map_err(|reason| invalid(&key, reason))?;
            aliases.insert(alias, targets);
        }

        crate::ledger::prices::PriceTable::builtin()
            .with_overrides(&self.prices, crate::ledger::prices::PriceSource::Config)
            .map_err(|e| invalid("[prices]", e.to_string()))?;

        let ms = Duration::from_millis;
        let non_empty = |p: PathBuf| (!p.as_os_str().is_empty()).then_some(p);
        Ok(Config {
            listen,
            max_body_bytes: self.server.max_body_bytes as usize,
            max_connections: self.server.max_connections as usize,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            worker_threads: self.server.worker_threads as usize,
            connections: ConnectionConfig {
                header_timeout: ms(self.server.header_timeout_ms),
                idle_timeout: ms(self.server.idle_timeout_ms),
                h2_ping_interval: (self.server.h2_ping_interval_ms > 0)
                    .then(|| ms(self.server.h2_ping_interval_ms)),
                h2_ping_timeout: ms(self.server.h2_ping_timeout_ms),
            },
            metrics: MetricsConfig {
                listen: metrics_listen,
                token: (!self.metrics.token.is_empty()).then(|| Secret::new(self.metrics.token)),
                per_key_labels: self.metrics.per_key_labels,
            },
            body_timeout: ms(self.server.body_timeout_ms),
            ui: UiConfig {
                enabled: self.ui.enabled,
                session_ttl: Duration::from_secs(self.ui.session_ttl_secs),
                secure_cookie: self.ui.secure_cookie,
            },
            store: StoreConfig {
                path: self.store.path,
                busy_timeout: ms(self.store.busy_timeout_ms),
                cache_size_kib: self.store.cache_size_kib as i64,
                mmap_size_bytes: self.store.mmap_size_bytes as i64,
                read_pool_size: self.store.read_pool_size as usize,
            },
            writer: WriterConfig {
                channel_capacity: self.writer.channel_capacity as usize,
                batch_max: self.writer.batch_max as usize,
                batch_max_delay: ms(self.writer.batch_max_delay_ms),
            },
            upstream: UpstreamConfig {
                connect_timeout: ms(self.upstream.connect_timeout_ms),
                first_byte_timeout: ms(self.upstream.first_byte_timeout_ms),
                total_timeout: ms(self.upstream.total_timeout_ms),
                pool_idle_timeout: Duration::from_secs(self.upstream.pool_idle_timeout_secs),
                pool_max_idle_per_host: self.upstream.pool_max_idle_per_host as usize,
                max_inspected_event_bytes: self.upstream.max_inspected_event_bytes as usize,
                key_retest: Duration::from_secs(self.upstream.key_retest_secs),
            },
            store_bodies: self.traces.store_bodies,
            audit: AuditConfig {
                key_file: non_empty(self.audit.key_file),
                checkpoint_file: non_empty(self.audit.checkpoint_file),
                checkpoint_every_entries: self.audit.checkpoint_every_entries,
                checkpoint_interval: Duration::from_secs(self.audit.checkpoint_interval_secs),
            },
            require_client_key: self.auth.require_client_key,
            failed_auth,
            modules: self.modules,
            master_key_file: non_empty(self.vault.master_key_file),
            builtin_prices_max_age_days: self.ledger.builtin_prices_max_age_days,
            providers,
            aliases,
            prices: self.prices,
        })
    }
}

/// 0..=u32::MAX (0: unlimited).
/// 1..=u32::MAX, as the rate limiter takes it.
fn in_u32_range(key: &str, v: u64) -> Result<std::num::NonZeroU32, ConfigError> {
    u32::try_from(v)
        .ok()
        .and_then(std::num::NonZeroU32::new)
        .ok_or_else(|| invalid(key, format!("must be between 1 and {}", u32::MAX)))
}

fn validate_provider(
    index: usize,
    p: ProviderEntry,
    earlier: &[ProviderConfig],
) -> Result<ProviderConfig, ConfigError> {
    let key = |field: &str| format!("providers[{index}].{field}");
    if p.name.is_empty() || p.name.contains('/') {
        return Err(invalid(key("name"), "must be non-empty and contain no '/'"));
    }
    if earlier.iter().any(|e| e.name == p.name) {
        return Err(invalid(
            key("name"),
            format!("duplicate provider {:?}", p.name),
        ));
    }
    let base_url = p.base_url.trim_end_matches('/').to_string();
    match reqwest::Url::parse(&base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => {
            return Err(invalid(
                key("base_url"),
                format!("{:?} is not an http(s) URL", p.base_url),
            ));
        }
    }
    if p.protocol != Protocol::Anthropic && p.anthropic_version.is_some() {
        return Err(invalid(
            key("anthropic_version"),
            "only applies to protocol = \"anthropic\"",
        ));
    }
    Ok(ProviderConfig {
        name: p.name,
        protocol: p.protocol,
        base_url,
        api_key_env: p.api_key_env.filter(|s| !s.is_empty()),
        anthropic_version: p
            .anthropic_version
            .unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.to_string()),
        models: p.models,
    })
}
