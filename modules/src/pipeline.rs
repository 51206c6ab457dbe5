//! The admission pipeline: every module that decides on a whole request
//! (`rate_limit`, then `budget`) sees it once after authentication and
//! routing, and hears how it ended. A module refuses, or admits and hands
//! back an [`Admission`] that lives as long as the request; the admissions
//! are settled together with the request's [`Outcome`] (actual tokens and
//! cost), or released if dropped unsettled. A refusal releases what the
//! modules before it had admitted.
//!
//! Modules that decide per upstream attempt (`retry`, `fallback`,
//! `breaker`) are not here: they run between attempts in the proxy's
//! upstream loop, which a verdict given once per request cannot express.

use crate::budget::{self, Budget};
use crate::rate_limit;
use crate::settings::ModuleSettings;

/// A request's limits and budget of its own (`None`: the configured
/// default applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_parallel: Option<u32>,
    pub budget: Option<Budget>,
}

/// One upstream the request may go to, in the order tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// µ¢ per million input and output tokens at this request's size;
    /// `None` when the model has no price.
    pub rates: Option<(i64, i64)>,
}

/// What a module sees of a request at admission.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The client key's id (`anonymous` when keys are not required).
    pub key_id: &'a str,
    /// Whether `key_id` is a real client key.
    pub authenticated: bool,
    pub key: KeyPolicy,
    pub endpoint: &'a str,
    /// Never empty; the first is the primary.
    pub targets: &'a [Target<'a>],
    /// Estimated from the body's size.
    pub input_tokens: u64,
    /// The most output the request allows, when it names a cap.
    pub max_tokens: Option<u64>,
}

/// How a request ended, as the modules settle it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome<'a> {
    /// Input + output tokens used; `None` when unknown.
    pub tokens: Option<u64>,
    /// Its exact cost in µ¢; `None` when unknown.
    pub cost_uc: Option<i64>,
    /// The provider that answered, if any did.
    pub provider: Option<&'a str>,
}

impl Outcome<'_> {
    /// A request refused before it went anywhere: it used nothing.
    pub const NOTHING: Outcome<'static> = Outcome {
        tokens: Some(0),
        cost_uc: Some(0),
        provider: None,
    };
}

/// Why a module refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    RateLimited(rate_limit::Refusal),
    Budget(budget::BudgetRefusal),
}

impl Refusal {
    /// The module that refused.
    pub fn module(&self) -> &'static str {
        match self {
            Refusal::RateLimited(_) => "rate_limit",
            Refusal::Budget(_) => "budget",
        }
    }
}

/// A module's hold on an admitted request.
pub trait Admission: Send + std::fmt::Debug {
    /// Squares the hold with how the request ended.
    fn settle(self: Box<Self>, outcome: &Outcome<'_>);
}

/// A module that admits or refuses whole requests.
pub trait Module: Send + Sync {
    /// The name used in the admin API and `[modules.NAME]`.
    fn name(&self) -> &'static str;

    /// Admits (perhaps holding something until the request ends) or
    /// refuses. A module switched off in `settings` admits without a hold,
    /// unless it keeps accounts regardless (the budget tracks spending).
    fn admit(
        &self,
        request: &Request<'_>,
        settings: &ModuleSettings,
    ) -> Result<Option<Box<dyn Admission>>, Refusal>;
}

/// The modules in their run order.
#[derive(Default)]
pub struct Pipeline {
    modules: Vec<Box<dyn Module>>,
}

impl Pipeline {
    /// Runs `modules` in the order given.
    pub fn new(modules: Vec<Box<dyn Module>>) -> Pipeline {
        Pipeline { modules }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.name()).collect()
    }

    /// Every module's admission, or the first refusal (what the modules
    /// before it admitted is settled as having used nothing).
    pub fn admit(
        &self,
        request: &Request<'_>,
        settings: &ModuleSettings,
    ) -> Result<Admitted, Refusal> {
        let mut admitted = Admitted::default();
        for module in &self.modules {
            match module.admit(request, settings) {
                Ok(Some(hold)) => admitted.holds.push(hold),
                Ok(None) => {}
                Err(refusal) => {
                    admitted.settle(&Outcome::NOTHING);
                    return Err(refusal);
                }
            }
        }
        Ok(admitted)
    }
}

/// The holds of an admitted request; dropping them unsettled releases them.
#[derive(Debug, Default)]
pub struct Admitted {
    holds: Vec<Box<dyn Admission>>,
}

impl Admitted {
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    pub fn settle(self, outcome: &Outcome<'_>) {
        for hold in self.holds {
            hold.settle(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<String>>>;

    struct Probe {
        name: &'static str,
        refuse: bool,
        log: Log,
    }

    #[derive(Debug)]
    struct Held(&'static str, Log);

    impl Admission for Held {
        fn settle(self: Box<Self>, outcome: &Outcome<'_>) {
            self.1
                .lock()
                .unwrap()
                .push(format!("{} settled {:?}", self.0, outcome.cost_uc));
        }
    }

    impl Module for Probe {
        fn name(&self) -> &'static str {
            self.name
        }
        fn admit(
            &self,
            _r: &Request<'_>,
            _s: &ModuleSettings,
        ) -> Result<Option<Box<dyn Admission>>, Refusal> {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} admit", self.name));
            if self.refuse {
                return Err(Refusal::Budget(budget::BudgetRefusal::UnknownPrice {
                    model: "m".into(),
                    scope: budget::Scope::Global,
                }));
            }
            Ok(Some(Box::new(Held(self.name, self.log.clone()))))
        }
    }

    fn request() -> Request<'static> {
        Request {
            key_id: "k",
            authenticated: true,
            key: KeyPolicy::default(),
            endpoint: "/v1/chat/completions",
            targets: &[Target {
                provider: "p",
                model: "m",
                rates: None,
            }],
            input_tokens: 10,
            max_tokens: Some(5),
        }
    }

    #[test]
    fn runs_in_order_and_a_refusal_releases_the_earlier_holds() {
        let log = Log::default();
        let probe = |name, refuse| {
            Box::new(Probe {
                name,
                refuse,
                log: log.clone(),
            }) as Box<dyn Module>
        };
        let p = Pipeline::new(vec![
            probe("first", false),
            probe("second", true),
            probe("third", false),
        ]);
        assert_eq!(p.names(), ["first", "second", "third"]);
        let refusal = p.admit(&request(), &ModuleSettings::default()).unwrap_err();
        assert_eq!(refusal.module(), "budget");
        assert_eq!(
            *log.lock().unwrap(),
            ["first admit", "second admit", "first settled Some(0)"]
        );
    }

    #[test]
    fn admitted_holds_settle_with_the_outcome() {
        let log = Log::default();
        let probe = |name| {
            Box::new(Probe {
                name,
                refuse: false,
                log: log.clone(),
            }) as Box<dyn Module>
        };
        let p = Pipeline::new(vec![probe("a"), probe("b")]);
        let admitted = p.admit(&request(), &ModuleSettings::default()).unwrap();
        assert!(!admitted.is_empty());
        admitted.settle(&Outcome {
            tokens: Some(3),
            cost_uc: Some(42),
            provider: Some("p"),
        });
        assert_eq!(
            *log.lock().unwrap(),
            [
                "a admit",
                "b admit",
                "a settled Some(42)",
                "b settled Some(42)"
            ]
        );
        assert!(
            Pipeline::default()
                .admit(&request(), &ModuleSettings::default())
                .unwrap()
                .is_empty()
        );
    }
}
