//! Running the module pipeline on a request (`rate_limit`, then `budget`)
//! right after authentication and routing, and settling it when the request
//! ends: what a module sees is built here from the client key, the targets
//! (with their prices) and the request's size and output cap; how the
//! request ended is read off its finished trace.

use super::{Endpoint, error::ProxyError};
use crate::access::ClientKey;
use crate::access::limits::budget_window;
use crate::ledger::prices::PriceTable;
use crate::providers::Routes;
use crate::state::AppState;
use crate::trace::Trace;
use std::sync::Arc;
use tollgate_modules::budget::Budget;
use tollgate_modules::pipeline::{KeyPolicy, Request, Target};
use tollgate_modules::{Admitted, Outcome};

/// Whom an unauthenticated request (`auth.require_client_key = false`) is
/// governed as: all such requests share one key's limits.
pub const ANONYMOUS_KEY: &str = "anonymous";

/// A cheap upper-bound-ish guess of the input tokens: about four bytes of
/// JSON per token. Settling with the reported usage corrects it.
const BYTES_PER_TOKEN: u64 = 4;

/// An admitted request's holds, with the price table its worst case was
/// priced at, so it settles against the same prices.
#[derive(Debug)]
pub struct Governed {
    admitted: Admitted,
    prices: Arc<PriceTable>,
}

/// Runs the pipeline; the targets are those the upstream loop may try
/// (only the primary when `[modules.fallback]` is off); `max_tokens` is
/// the request's output cap, when it names one.
pub fn admit(
    state: &AppState,
    endpoint: Endpoint,
    key: Option<&ClientKey>,
    routes: &Routes,
    max_tokens: Option<u64>,
    body_len: usize,
) -> Result<Option<Governed>, ProxyError> {
    let settings = state.modules();
    let prices = state.prices.current();
    let input_tokens = body_len as u64 / BYTES_PER_TOKEN;
    let tried = if settings.fallback.enabled {
        usize::MAX
    } else {
        1
    };
    let targets: Vec<Target<'_>> = routes
        .iter()
        .take(tried)
        .map(|route| Target {
            provider: &route.provider.name,
            model: &route.model,
            rates: prices
                .get(&route.provider.name, &route.model)
                .and_then(|(price, _)| {
                    price
                        .rates_for(i64::try_from(input_tokens).unwrap_or(i64::MAX), None)
                        .ok()
                })
                .map(|applied| (applied.rates.input, applied.rates.output)),
        })
        .collect();
    let request = Request {
        key_id: key.map_or(ANONYMOUS_KEY, |k| k.id.as_str()),
        authenticated: key.is_some(),
        key: key.map(policy).unwrap_or_default(),
        endpoint: endpoint.path(),
        targets: &targets,
        input_tokens,
        max_tokens,
    };
    let admitted = state.pipeline.admit(&request, &settings)?;
    Ok((!admitted.is_empty()).then_some(Governed { admitted, prices }))
}

/// A key's own limits and budget (a budget without a window is monthly).
fn policy(key: &ClientKey) -> KeyPolicy {
    let l = key.limits;
    KeyPolicy {
        rpm: l.rpm,
        tpm: l.tpm,
        max_parallel: l.max_parallel,
        budget: l.budget_uc.map(|limit_uc| Budget {
            limit_uc,
            window: budget_window(l.budget_window),
        }),
    }
}

impl Governed {
    /// Settles every hold with how the request ended, read off its trace.
    pub fn settle(self, trace: &Trace) {
        let usage = &trace.usage;
        // An error answer with no usage reported used nothing; a success
        // whose usage stayed unknown keeps its reservation.
        let tokens = match (usage.input_tokens, usage.output_tokens) {
            (None, None) if (200..300).contains(&trace.status) => None,
            (input, output) => {
                Some(input.unwrap_or(0).max(0) as u64 + output.unwrap_or(0).max(0) as u64)
            }
        };
        let cost_uc = crate::ledger::assess(trace, &self.prices).cost_uc;
        self.admitted.settle(&Outcome {
            tokens,
            cost_uc,
            provider: trace.provider.as_deref(),
        });
    }
}
