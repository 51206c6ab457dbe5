//! Upstream providers: who they are, how a model name reaches one, and what
//! their wire formats say about usage.

pub mod assemble;
pub mod catalog;
pub mod guard_stream;
pub mod redact;
pub mod replay;
mod router;
pub mod sse;
pub mod usage;
pub mod watch;

pub use router::{Route, Router, Routes};

use crate::config::{EnvSource, Protocol, ProviderConfig};
use crate::secret::Secret;

/// The paths under a provider's `base_url` that tollgate calls.
pub const UPSTREAM_PATHS: [&str; 3] = ["/chat/completions", "/embeddings", "/messages"];

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
    /// `{base_url}{path}` for each upstream path, parsed once.
    urls: Vec<(&'static str, reqwest::Url)>,
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
            urls: Vec::new(),
        }
        .with_urls()
    }

    /// Parses the upstream URLs once, not per request.
    pub fn with_urls(mut self) -> Provider {
        self.urls = UPSTREAM_PATHS
            .iter()
            .filter_map(|p| {
                reqwest::Url::parse(&format!("{}{p}", self.base_url))
                    .ok()
                    .map(|u| (*p, u))
            })
            .collect();
        self
    }

    pub fn url(&self, path: &'static str) -> reqwest::Url {
        self.urls
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| {
                reqwest::Url::parse(&format!("{}{path}", self.base_url))
                    .expect("base_url was validated as a URL")
            })
    }
}
