//! Configuration: serde defaults ← `config.toml`-style file ← environment, then
//! validated into the typed [`Config`] the rest of the program uses.
//!
//! Every key has a default so the binary runs with no file at all. Unknown keys
//! are rejected (a typo must not silently fall back to a default), and
//! validation errors name the offending key.

mod env;
mod file;

pub use env::{EnvSource, ProcessEnv, key_text};
pub use file::{AliasTargets, FileConfig, ProviderEntry};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The protocol an upstream speaks; decides URL paths, auth headers, usage
/// fields and the error shape tollgate answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Openai,
    Anthropic,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Openai => "openai",
            Protocol::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The most targets one alias may list.
pub const MAX_ALIAS_TARGETS: usize = 8;

/// Checks an alias's targets: 1 to [`MAX_ALIAS_TARGETS`] `provider/model`
/// names of known providers (`protocol_of` a provider's protocol), no
/// repeats, all speaking one protocol (a client's request must fit every
/// target). The error names the alias.
pub fn check_alias_targets(
    alias: &str,
    targets: &[String],
    protocol_of: impl Fn(&str) -> Option<Protocol>,
) -> Result<(), String> {
    if targets.is_empty() || targets.len() > MAX_ALIAS_TARGETS {
        return Err(format!(
            "alias {alias}: must have 1 to {MAX_ALIAS_TARGETS} targets"
        ));
    }
    let mut first: Option<(&str, Protocol)> = None;
    for (i, target) in targets.iter().enumerate() {
        let Some((provider, model)) = target.split_once('/') else {
            return Err(format!(
                "alias {alias}: {target:?} must be \"provider/model\""
            ));
        };
        let protocol = protocol_of(provider).filter(|_| !model.is_empty());
        let Some(protocol) = protocol else {
            return Err(format!(
                "alias {alias}: {target:?} names no configured provider"
            ));
        };
        if targets[..i].contains(target) {
            return Err(format!("alias {alias}: {target:?} is listed twice"));
        }
        match first {
            None => first = Some((target, protocol)),
            Some((primary, p)) if p != protocol => {
                return Err(format!(
                    "alias {alias}: {target:?} speaks {} but {primary:?} speaks {}; every target of an alias must speak the client's protocol",
                    protocol.as_str(),
                    p.as_str()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// Async worker threads; 0: one per core.
    pub worker_threads: usize,
    pub connections: ConnectionConfig,
    pub metrics: MetricsConfig,
    /// The whole request body must arrive within this (408 otherwise).
    pub body_timeout: Duration,
    /// The operator dashboard under `/ui/` (`[ui]`).
    pub ui: UiConfig,
    pub store: StoreConfig,
    pub writer: WriterConfig,
    pub upstream: UpstreamConfig,
    pub store_bodies: bool,
    pub audit: AuditConfig,
    /// Proxy routes refuse requests without a valid client key.
    pub require_client_key: bool,
    /// How fast one client address may fail authentication.
    pub failed_auth: AuthThrottleConfig,
    /// `[modules.NAME]` as the file sets them; the database's runtime
    /// settings go on top (`AppState::modules`).
    pub modules: tollgate_modules::ModuleSettings,
    /// Where the vault's master key lives, when not in the environment.
    pub master_key_file: Option<PathBuf>,
    /// `serve` warns when the built-in price table is older (0: never).
    pub builtin_prices_max_age_days: u64,
    pub providers: Vec<ProviderConfig>,
    /// Each alias's targets (`provider/model`), in the order they are tried.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Price overrides by `provider/model`, checked to parse.
    pub prices: BTreeMap<String, crate::ledger::prices::PriceSpec>,
}

/// Failed authentications allowed per client address: `burst` at once,
/// then `per_minute` refilled evenly.
#[derive(Clone, Copy, Debug)]
pub struct AuthThrottleConfig {
    pub per_minute: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub key_file: Option<PathBuf>,
    /// `None`: the database path with `.checkpoints` appended.
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_every_entries: u64,
    pub checkpoint_interval: Duration,
}

impl Config {
    pub fn checkpoint_path(&self) -> PathBuf {
        self.audit.checkpoint_file.clone().unwrap_or_else(|| {
            let mut p = self.store.path.clone().into_os_string();
            p.push(".checkpoints");
            PathBuf::from(p)
        })
    }
}

/// How long a client connection may take or sit idle (`[server]`).
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// From accept to the first request's head (protocol detection
    /// included), and on HTTP/1.1 from the first byte of each later head to
    /// its end.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// HTTP/2: ping an otherwise quiet peer this often (`None`: never)...
    pub h2_ping_interval: Option<Duration>,
    /// ...and close the connection when a ping is not answered within this.
    pub h2_ping_timeout: Duration,
}

/// Where and for whom `/metrics` is served (`[metrics]`).
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// `None`: on the main listener; otherwise only on this address.
    pub listen: Option<SocketAddr>,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub token: Option<crate::secret::Secret>,
    /// Label requests, tokens and cost with the client key id too.
    pub per_key_labels: bool,
}

/// The operator dashboard (`[ui]`).
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// `false`: `/ui/` answers 404.
    pub enabled: bool,
    /// A session ends this long after sign-in (also the cookie's Max-Age).
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` on every response (it is also
    /// marked when the request says `X-Forwarded-Proto: https`).
    pub secure_cookie: bool,
}

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub cache_size_kib: i64,
    pub mmap_size_bytes: i64,
    pub read_pool_size: usize,
}

#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub channel_capacity: usize,
    pub batch_max: usize,
    pub batch_max_delay: Duration,
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// The most of one stream event held to read usage from; longer events
    /// pass through unread.
    pub max_inspected_event_bytes: usize,
    /// A stored key set aside after a confirmed 401 is probed again after
    /// this long, and used again if the upstream accepts it.
    pub key_retest: Duration,
}

#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub protocol: Protocol,
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub anthropic_version: String,
    pub models: Vec<String>,
}

impl Config {
    /// Loads the configuration: defaults, then the file (if any), then the
    /// environment. `explicit_path` wins over `TOLLGATE_CONFIG`.
    pub fn load(explicit_path: Option<&Path>, env: &dyn EnvSource) -> Result<Config, ConfigError> {
        let path = explicit_path
            .map(Path::to_path_buf)
            .or_else(|| env.var("TOLLGATE_CONFIG").map(PathBuf::from));
        let mut file = match path {
            Some(path) => FileConfig::read(&path)?,
            None => FileConfig::default(),
        };
        env::apply_overrides(&mut file, env);
        file.validate()
    }

    /// The embedded defaults, as used when there is no config file.
    pub fn defaults() -> Config {
        FileConfig::default()
            .validate()
            .expect("embedded defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_config_toml_is_exactly_the_embedded_defaults() {
        let text = include_str!("../../config.toml");
        let documented = FileConfig::parse(text).unwrap().validate().unwrap();
        assert_eq!(
            format!("{documented:?}"),
            format!("{:?}", Config::defaults())
        );
    }

    #[test]
    fn environment_overrides_the_file_and_errors_name_the_key() {
        let env = |name: &str| match name {
            "TOLLGATE_LISTEN" => Some("0.0.0.0:9000".to_string()),
            "TOLLGATE_DB" => Some("/tmp/x.db".to_string()),
            _ => None,
        };
        let cfg = Config::load(None, &env).unwrap();
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(cfg.store.path, PathBuf::from("/tmp/x.db"));

        let bad = FileConfig::parse("[aliases]\nfast = \"nowhere/m\"\n")
            .unwrap()
            .validate();
        assert!(matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "aliases.fast"));
        let ok = FileConfig::parse(
            "[aliases]\nsmart = [\"openai/gpt-4o-mini\", \"openai/gpt-4o\"]\none = \"openai/x\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(ok.aliases["smart"], ["openai/gpt-4o-mini", "openai/gpt-4o"]);
        assert_eq!(ok.aliases["one"], ["openai/x"]);
        let mixed = FileConfig::parse(
            "[aliases]\nsmart = [\"openai/gpt-4o-mini\", \"anthropic/claude-haiku-4-5\"]\n",
        )
        .unwrap()
        .validate();
        assert!(
            matches!(mixed, Err(ConfigError::Invalid { ref key, ref message }) if key == "aliases.smart" && message.contains("alias smart") && message.contains("protocol")),
            "{mixed:?}"
        );
        let empty = FileConfig::parse("[aliases]\nsmart = []\n")
            .unwrap()
            .validate();
        assert!(
            matches!(empty, Err(ConfigError::Invalid { ref key, .. }) if key == "aliases.smart")
        );
        let bad = FileConfig::parse("[auth]\nfailed_per_minute = 0\n")
            .unwrap()
            .validate();
        assert!(
            matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "auth.failed_per_minute")
        );
        let bad = FileConfig::parse("[modules.rate_limit]\nrpm = 5000000000\n")
            .unwrap()
            .validate();
        assert!(
            matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "modules.rate_limit.rpm")
        );
        let bad = FileConfig::parse("[writer]\nbatch_max = 0\n")
            .unwrap()
            .validate();
        assert!(
            matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "writer.batch_max")
        );
        assert!(
            FileConfig::parse("[store]\npaht = \"x\"\n")
                .unwrap_err()
                .contains("paht")
        );
    }

    #[test]
    fn metrics_token_from_the_environment_and_listen_validated() {
        let env = |name: &str| (name == "TOLLGATE_METRICS_TOKEN").then(|| "from-env".to_string());
        let cfg = Config::load(None, &env).unwrap();
        assert_eq!(
            cfg.metrics.token.as_ref().map(|t| t.expose()),
            Some("from-env")
        );
        assert!(!format!("{cfg:?}").contains("from-env"));
        assert!(Config::defaults().metrics.token.is_none());
        assert!(Config::defaults().metrics.listen.is_none());
        for bad in [
            "[metrics]\nlisten = \"nowhere\"\n",
            "[metrics]\nlisten = \"127.0.0.1:8080\"\n",
        ] {
            let bad = FileConfig::parse(bad).unwrap().validate();
            assert!(
                matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "metrics.listen")
            );
        }
        let bad = FileConfig::parse("[server]\nheader_timeout_ms = 0\n")
            .unwrap()
            .validate();
        assert!(
            matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "server.header_timeout_ms")
        );
    }
}
