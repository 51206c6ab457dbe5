//! Upstream providers: who they are, how a model name reaches one, and what
//! their wire formats say about usage.

pub mod catalog;
mod router;
pub mod sse;
pub mod usage;
pub mod watch;

pub use router::{Route, Router};

use crate::config::{EnvSource, Protocol, ProviderConfig};
use crate::secret::Secret;

/// A configured provider, with its key resolved from the environment.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub protocol: Protocol,
    pub base_url: String,
    pub api_key_env: Option<String>,
    pub api_key: Option<Secret>,
    pub anthropic_version: String,
    pub models: Vec<String>,
}

impl Provider {
    pub fn from_config(cfg: &ProviderConfig, env: &dyn EnvSource) -> Provider {
        Provider {
            name: cfg.name.clone(),
            protocol: cfg.protocol,
            base_url: cfg.base_url.clone(),
            api_key_env: cfg.api_key_env.clone(),
            api_key: cfg
                .api_key_env
                .as_deref()
                .and_then(|k| env.var(k))
                .map(Secret::new),
            anthropic_version: cfg.anthropic_version.clone(),
            models: cfg.models.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}
