//! Model resolution: alias → `provider/model` → a bare model listed under a
//! provider (the first provider listing it wins).

use super::Provider;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Route {
    pub provider: Arc<Provider>,
    /// The model name as the upstream knows it.
    pub model: String,
}

#[derive(Debug)]
pub struct Router {
    providers: Vec<Arc<Provider>>,
    by_name: HashMap<String, usize>,
    by_model: HashMap<String, usize>,
    aliases: Vec<(String, String)>,
}

impl Router {
    pub fn new(
        providers: Vec<Provider>,
        aliases: &std::collections::BTreeMap<String, String>,
    ) -> Router {
        let providers: Vec<Arc<Provider>> = providers.into_iter().map(Arc::new).collect();
        let mut by_name = HashMap::new();
        let mut by_model = HashMap::new();
        for (i, p) in providers.iter().enumerate() {
            by_name.insert(p.name.clone(), i);
            for m in &p.models {
                by_model.entry(m.clone()).or_insert(i);
            }
        }
        Router {
            providers,
            by_name,
            by_model,
            aliases: aliases
                .iter()
                .map(|(a, t)| (a.clone(), t.clone()))
                .collect(),
        }
    }

    pub fn resolve(&self, requested: &str) -> Option<Route> {
        let target = self
            .aliases
            .iter()
            .find(|(alias, _)| alias == requested)
            .map(|(_, target)| target.as_str())
            .unwrap_or(requested);
        if let Some((prefix, model)) = target.split_once('/')
            && let Some(&i) = self.by_name.get(prefix)
            && !model.is_empty()
        {
            return Some(self.route(i, model));
        }
        self.by_model.get(target).map(|&i| self.route(i, target))
    }

    /// The same providers with another alias table.
    pub fn with_aliases(&self, aliases: &std::collections::BTreeMap<String, String>) -> Router {
        let mut next = Router {
            providers: self.providers.clone(),
            by_name: self.by_name.clone(),
            by_model: self.by_model.clone(),
            aliases: Vec::new(),
        };
        next.aliases = aliases
            .iter()
            .map(|(a, t)| (a.clone(), t.clone()))
            .collect();
        next
    }

    fn route(&self, i: usize, model: &str) -> Route {
        Route {
            provider: self.providers[i].clone(),
            model: model.to_string(),
        }
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.aliases.iter().map(|(a, t)| (a.as_str(), t.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn provider(name: &str, models: &[&str]) -> Provider {
        Provider {
            name: name.into(),
            protocol: Protocol::Openai,
            base_url: "http://x".into(),
            api_key_env: None,
            api_key: None,
            anthropic_version: String::new(),
            models: models.iter().map(|s| s.to_string()).collect(),
            urls: Vec::new(),
        }
    }

    #[test]
    fn resolution_order() {
        let aliases = [("fast".to_string(), "b/tiny".to_string())].into();
        let r = Router::new(
            vec![
                provider("a", &["m1", "org/model"]),
                provider("b", &["m1", "m2"]),
            ],
            &aliases,
        );
        let got = |m: &str| r.resolve(m).map(|r| (r.provider.name.clone(), r.model));
        assert_eq!(got("fast"), Some(("b".into(), "tiny".into())));
        assert_eq!(got("b/m1"), Some(("b".into(), "m1".into())));
        assert_eq!(got("m1"), Some(("a".into(), "m1".into())));
        assert_eq!(got("m2"), Some(("b".into(), "m2".into())));
        assert_eq!(got("org/model"), Some(("a".into(), "org/model".into())));
        assert_eq!(got("nope"), None);
        assert_eq!(got("c/m1"), None);
        assert_eq!(got("a/"), None);
    }
}
