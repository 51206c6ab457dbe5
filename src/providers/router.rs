//! Model resolution: alias → its targets (`provider/model`, tried in
//! order) → `provider/model` → a bare model listed under a provider (the
//! first provider listing it wins).

use super::Provider;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Route {
    pub provider: Arc<Provider>,
    /// The model name as the upstream knows it.
    pub model: String,
}

/// A requested model's targets, in the order they are tried; never empty.
#[derive(Clone, Debug)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// The target tried first.
    pub fn primary(&self) -> &Route {
        &self.0[0]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Route> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Keeps the targets `keep` accepts; `None` when none is left.
    pub fn filtered(self, keep: impl Fn(&Route) -> bool) -> Option<Routes> {
        let kept: Vec<Route> = self.0.into_iter().filter(|r| keep(r)).collect();
        (!kept.is_empty()).then_some(Routes(kept))
    }
}

#[derive(Debug)]
pub struct Router {
    providers: Vec<Arc<Provider>>,
    by_name: HashMap<String, usize>,
    by_model: HashMap<String, usize>,
    aliases: Vec<(String, Vec<String>)>,
}

impl Router {
    pub fn new(providers: Vec<Provider>, aliases: &BTreeMap<String, Vec<String>>) -> Router {
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

    /// The targets of `requested`: an alias's, in order, else the one model
    /// it names. A target whose provider is gone is left out.
    pub fn resolve(&self, requested: &str) -> Option<Routes> {
        if let Some((_, targets)) = self.aliases.iter().find(|(alias, _)| alias == requested) {
            let all: Vec<Route> = targets.iter().filter_map(|t| self.one(t)).collect();
            return (!all.is_empty()).then_some(Routes(all));
        }
        self.one(requested).map(|r| Routes(vec![r]))
    }

    fn one(&self, target: &str) -> Option<Route> {
        if let Some((prefix, model)) = target.split_once('/')
            && let Some(&i) = self.by_name.get(prefix)
            && !model.is_empty()
        {
            return Some(self.route(i, model));
        }
        self.by_model.get(target).map(|&i| self.route(i, target))
    }

    /// The same providers with another alias table.
    pub fn with_aliases(&self, aliases: &BTreeMap<String, Vec<String>>) -> Router {
        Router {
            providers: self.providers.clone(),
            by_name: self.by_name.clone(),
            by_model: self.by_model.clone(),
            aliases: aliases
                .iter()
                .map(|(a, t)| (a.clone(), t.clone()))
                .collect(),
        }
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

    /// Each alias with its targets.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.aliases.iter().map(|(a, t)| (a.as_str(), t.as_slice()))
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
        let aliases = [
            ("fast".to_string(), vec!["b/tiny".to_string()]),
            (
                "smart".to_string(),
                vec!["a/m1".to_string(), "gone/m".to_string(), "b/m2".to_string()],
            ),
        ]
        .into();
        let r = Router::new(
            vec![
                provider("a", &["m1", "org/model"]),
                provider("b", &["m1", "m2"]),
            ],
            &aliases,
        );
        let got = |m: &str| {
            r.resolve(m)
                .map(|r| (r.primary().provider.name.clone(), r.primary().model.clone()))
        };
        let smart: Vec<(String, String)> = r
            .resolve("smart")
            .unwrap()
            .iter()
            .map(|r| (r.provider.name.clone(), r.model.clone()))
            .collect();
        assert_eq!(
            smart,
            vec![("a".into(), "m1".into()), ("b".into(), "m2".into())]
        );
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
