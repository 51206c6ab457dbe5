//! Runtime-toggleable request modules (rate limit, budget, guardrails,
//! cache, …), free of HTTP and SQL so that each can be unit-tested alone.
//!
//! A module implements [`Module`], whose hooks default to doing nothing; the
//! pipeline runs enabled modules in [`Module::order`]. Storage reaches a
//! module only through traits defined here.
//!
//! [`rate_limit`] and [`budget`] are used directly by the proxy (they hand
//! out a ticket / hold that lives as long as the request, which a verdict
//! cannot carry), and so are [`retry`] (retry and fallback settings, the
//! backoff) and [`breaker`] (a circuit breaker per target, persisted through
//! [`breaker::BreakerStore`]): they decide between upstream attempts, which
//! no request-level verdict can.

pub mod breaker;
pub mod budget;
pub mod rate_limit;
pub mod retry;
pub mod settings;

pub use settings::ModuleSettings;

/// What a module sees of a request before it goes upstream.
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    pub endpoint: &'a str,
    pub model: &'a str,
    pub stream: bool,
}

/// A module's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Continue,
    /// Refuse with a status and a client-facing message.
    Reject {
        status: u16,
        message: String,
    },
}

pub trait Module: Send + Sync {
    /// A stable name, used in the admin API and the audit ledger.
    fn name(&self) -> &'static str;

    /// Lower runs first; fixed in code, not configurable.
    fn order(&self) -> u32;

    fn on_request(&self, _request: &RequestInfo<'_>) -> Decision {
        Decision::Continue
    }
}

/// The modules in their run order.
#[derive(Default)]
pub struct Pipeline {
    modules: Vec<Box<dyn Module>>,
}

impl Pipeline {
    pub fn new(mut modules: Vec<Box<dyn Module>>) -> Pipeline {
        modules.sort_by_key(|m| m.order());
        Pipeline { modules }
    }

    /// The first refusal, or `Continue` when every module lets it through.
    pub fn check(&self, request: &RequestInfo<'_>) -> Decision {
        self.modules
            .iter()
            .map(|m| m.on_request(request))
            .find(|d| *d != Decision::Continue)
            .unwrap_or(Decision::Continue)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str, u32, Option<u16>);
    impl Module for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn order(&self) -> u32 {
            self.1
        }
        fn on_request(&self, _r: &RequestInfo<'_>) -> Decision {
            match self.2 {
                Some(status) => Decision::Reject {
                    status,
                    message: self.0.into(),
                },
                None => Decision::Continue,
            }
        }
    }

    #[test]
    fn runs_in_order_and_stops_at_the_first_refusal() {
        let p = Pipeline::new(vec![
            Box::new(Named("budget", 20, Some(402))),
            Box::new(Named("rate_limit", 10, Some(429))),
            Box::new(Named("noop", 0, None)),
        ]);
        assert_eq!(p.names(), vec!["noop", "rate_limit", "budget"]);
        let r = RequestInfo {
            endpoint: "/v1/chat/completions",
            model: "m",
            stream: false,
        };
        assert_eq!(
            p.check(&r),
            Decision::Reject {
                status: 429,
                message: "rate_limit".into()
            }
        );
        assert_eq!(Pipeline::default().check(&r), Decision::Continue);
    }
}
