//! The compiled guardrails (`tollgate_modules::guardrails::Guard`) for the
//! module settings in force. Compiling the detectors and deny rules is far
//! too slow for every request, so it happens once per settings value: the
//! first request that sees new settings (an `Arc` swapped whole at runtime)
//! compiles them, and every later one shares the result.
//!
//! A `Guard` that does not compile is remembered as an error, and the
//! requests that need it are refused (fail closed), never passed unscanned.

use std::sync::{Arc, RwLock};
use tollgate_modules::ModuleSettings;
use tollgate_modules::guardrails::Guard;

/// What one settings value compiled to; the error names the member.
pub type Compiled = Result<Arc<Guard>, String>;

#[derive(Default)]
pub struct GuardInForce {
    /// The settings the guard was compiled from, and the result.
    slot: RwLock<Option<(Arc<ModuleSettings>, Compiled)>>,
}

impl GuardInForce {
    /// The guard compiled from `settings.guardrails`.
    pub fn get(&self, settings: &Arc<ModuleSettings>) -> Compiled {
        if let Some((from, compiled)) = &*self.slot.read().unwrap_or_else(|e| e.into_inner())
            && Arc::ptr_eq(from, settings)
        {
            return compiled.clone();
        }
        let mut slot = self.slot.write().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            // Another request compiled it meanwhile, or only another module
            // changed: the compiled guard still holds.
            Some((from, compiled))
                if Arc::ptr_eq(from, settings) || from.guardrails == settings.guardrails =>
            {
                *from = settings.clone();
                compiled.clone()
            }
            _ => {
                let compiled = Guard::build(&settings.guardrails)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                if let Err(e) = &compiled {
                    tracing::error!(error = %e, "the guardrails settings do not compile; requests are refused");
                }
                *slot = Some((settings.clone(), compiled.clone()));
                compiled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_once_per_guardrails_settings() {
        let cache = GuardInForce::default();
        let mut s = ModuleSettings::default();
        s.guardrails.enabled = true;
        let first = Arc::new(s.clone());
        let a = cache.get(&first).unwrap();
        assert!(Arc::ptr_eq(&a, &cache.get(&first).unwrap()));
        // Another module changed: the same guard.
        s.rate_limit.rpm = 7;
        let b = cache.get(&Arc::new(s.clone())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // The guardrails changed: compiled again.
        s.guardrails.deny = vec!["forbidden".into()];
        let c = cache.get(&Arc::new(s)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.settings().deny, vec!["forbidden".to_string()]);
    }
}
