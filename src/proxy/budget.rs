//! Admitting a request under the budgets (`[modules.budget]`): its worst
//! case at the route's price, the scopes it falls in (its key, its
//! provider, all traffic), and settling the reservation to the actual cost
//! when its trace is complete.
//!
//! The worst case is the estimated input tokens (the body size estimate the
//! rate limiter uses) at the input rate plus the most output tokens the
//! request allows (`max_completion_tokens` / `max_tokens`, else the
//! configured default) at the output rate, rounded up to a whole µ¢. A
//! request whose cost stays unknown (no usage reported, no price) keeps its
//! worst case as spent.

use crate::access::ClientKey;
use crate::access::limits::budget_window;
use crate::ledger::money::format_usd_exact;
use crate::ledger::prices::PriceTable;
use crate::providers::Route;
use crate::state::AppState;
use crate::trace::Trace;
use std::sync::Arc;
use tollgate_modules::budget::{Budget, Hold, Refusal, Scope, Scoped, Window, worst_case_uc};

/// The reservation of an admitted request, with the price table it was
/// priced at, so it settles against the same prices.
#[derive(Debug)]
pub struct BudgetHold {
    hold: Hold,
    prices: Arc<PriceTable>,
}

impl BudgetHold {
    /// Replaces the reservation by the trace's cost (the worst case when
    /// the cost is unknown).
    pub fn settle(self, trace: &Trace) {
        let cost = crate::ledger::assess(trace, &self.prices).cost_uc;
        let reserved = self.hold.reserved_uc();
        self.hold.settle(cost.unwrap_or(reserved));
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub enum BudgetRefusal {
    /// A budget has no room for the request's worst case.
    Exceeded(Refusal),
    /// The model has no price, so its cost cannot be bounded, and the
    /// policy (`unknown_price = "refuse"`) is to refuse.
    UnknownPrice { model: String, scope: Scope },
}

fn window_name(w: Window) -> &'static str {
    match w {
        Window::Day => "daily (UTC day)",
        Window::Month => "monthly (UTC calendar month)",
        Window::Total => "total",
    }
}

impl BudgetRefusal {
    /// The client-facing message: the scope and window, and for the
    /// client's own key the amounts; never a secret.
    pub fn message(&self) -> String {
        match self {
            BudgetRefusal::Exceeded(r) => {
                let window = window_name(r.budget.window);
                let amounts = match r.scope {
                    Scope::Key(_) => format!(
                        " (budget ${}, spent ${}, reserved by requests in flight ${}; this \
                         request could cost up to ${})",
                        format_usd_exact(r.budget.limit_uc),
                        format_usd_exact(r.spent_uc),
                        format_usd_exact(r.reserved_uc),
                        format_usd_exact(r.requested_uc),
                    ),
                    _ => String::new(),
                };
                format!(
                    "Budget exceeded: the {window} budget of {} has no room for this \
                     request{amounts}.",
                    r.scope
                )
            }
            BudgetRefusal::UnknownPrice { model, scope } => format!(
                "The model `{model}` has no price on this gateway, so its cost cannot be \
                 bounded under the budget of {scope}; the request is refused."
            ),
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            BudgetRefusal::Exceeded(_) => "budget_exceeded",
            BudgetRefusal::UnknownPrice { .. } => "budget_price_unknown",
        }
    }
}

/// A key's budget, if it has one (in the calendar month when it names no
/// window).
fn key_budget(key: &ClientKey) -> Option<Budget> {
    key.limits.budget_uc.map(|limit_uc| Budget {
        limit_uc,
        window: budget_window(key.limits.budget_window),
    })
}

/// Admits the request under every budget it falls in, reserving its worst
/// case; spending is tracked for its key and provider even without one.
pub fn admit(
    state: &AppState,
    key: Option<&ClientKey>,
    route: &Route,
    input_tokens: u64,
    max_output: Option<u64>,
) -> Result<BudgetHold, BudgetRefusal> {
    let modules = state.modules();
    let settings = &modules.budget;
    let on = settings.enabled;
    let mut scopes = Vec::with_capacity(3);
    if let Some(key) = key {
        scopes.push(Scoped {
            scope: Scope::Key(key.id.clone()),
            budget: key_budget(key).filter(|_| on),
        });
    }
    scopes.push(Scoped {
        scope: Scope::Provider(route.provider.name.clone()),
        budget: settings.provider(&route.provider.name).filter(|_| on),
    });
    scopes.push(Scoped {
        scope: Scope::Global,
        budget: settings.global().filter(|_| on),
    });
    let prices = state.prices.current();
    let budgeted = scopes.iter().find(|s| s.budget.is_some());
    let worst_case = match budgeted {
        None => 0,
        Some(first) => {
            let rates = prices
                .get(&route.provider.name, &route.model)
                .and_then(|(price, _)| {
                    let input = i64::try_from(input_tokens).unwrap_or(i64::MAX);
                    price.rates_for(input, None).ok()
                })
                .map(|applied| (applied.rates.input, applied.rates.output))
                .or_else(|| settings.fallback_rates());
            let Some((input_rate, output_rate)) = rates else {
                return Err(BudgetRefusal::UnknownPrice {
                    model: format!("{}/{}", route.provider.name, route.model),
                    scope: first.scope.clone(),
                });
            };
            let output = max_output.unwrap_or(settings.default_max_tokens);
            worst_case_uc(&[(input_tokens, input_rate), (output, output_rate)])
        }
    };
    state
        .budgets
        .admit(scopes, worst_case)
        .map(|hold| BudgetHold { hold, prices })
        .map_err(BudgetRefusal::Exceeded)
}
