//! Runtime-toggleable request modules (rate limit, budget, guardrails,
//! cache, …), free of HTTP and SQL so that each can be unit-tested alone.
//!
//! Two kinds of module. Those that decide on a whole request ([`rate_limit`],
//! [`budget`]) implement [`pipeline::Module`]: the proxy runs them in order
//! through a [`Pipeline`] right after authentication and routing, and
//! settles their holds with the actual usage and cost when the request ends.
//! Those that decide per upstream attempt ([`retry`] for retries and
//! fallbacks, [`breaker`] for a circuit breaker per target) are consulted by
//! the proxy's upstream loop between attempts. [`cache`] (the exact
//! response cache's settings and key) is consulted by the proxy before the
//! pipeline: a hit goes nowhere and costs nothing; after an exact miss,
//! [`semantic_cache`] (opt-in) looks for the stored answer of a similar
//! conversation within the request's partition. Every module's switch and
//! settings live in one [`ModuleSettings`] value, swapped whole at runtime.
//! Storage reaches a module only through traits defined here
//! ([`budget::Reservations`], [`breaker::BreakerStore`]).

pub mod admissions;
pub mod breaker;
pub mod budget;
pub mod cache;
pub mod guardrails;
pub mod invalid;
pub mod pipeline;
pub mod rate_limit;
pub mod retry;
pub mod semantic_cache;
pub mod settings;

pub use pipeline::{Admitted, Outcome, Pipeline};
pub use settings::ModuleSettings;
