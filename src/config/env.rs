//! Environment overrides, read through one trait so tests can inject them
//! instead of mutating the process environment.

use super::FileConfig;

/// Where environment variables come from.
pub trait EnvSource: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F> EnvSource for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

pub(super) fn apply_overrides(file: &mut FileConfig, env: &dyn EnvSource) {
    if let Some(listen) = env.var("TOLLGATE_LISTEN") {
        file.server.listen = listen;
    }
    if let Some(db) = env.var("TOLLGATE_DB") {
        file.store.path = db.into();
    }
}
