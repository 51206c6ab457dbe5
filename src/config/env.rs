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

/// Key material from the environment variable `var` or else from `file`:
/// the text and where it came from (to name in messages; never the text).
pub fn key_text(
    var: &str,
    file: Option<&std::path::Path>,
    env: &dyn EnvSource,
) -> Result<Option<(String, String)>, (std::path::PathBuf, std::io::Error)> {
    match (env.var(var), file) {
        (Some(v), _) => Ok(Some((v, var.to_string()))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some((text, path.display().to_string())))
            .map_err(|e| (path.to_path_buf(), e)),
        (None, None) => Ok(None),
    }
}

pub(super) fn apply_overrides(file: &mut FileConfig, env: &dyn EnvSource) {
    if let Some(listen) = env.var("TOLLGATE_LISTEN") {
        file.server.listen = listen;
    }
    if let Some(db) = env.var("TOLLGATE_DB") {
        file.store.path = db.into();
    }
    if let Some(token) = env.var("TOLLGATE_METRICS_TOKEN") {
        file.metrics.token = token;
    }
}
