//! The request-level modules as the pipeline runs them: how `rate_limit`
//! and `budget` read a [`Request`] and [`ModuleSettings`], what they hold
//! while the request runs, and how an [`Outcome`] settles it. The modules
//! themselves know nothing of the pipeline; this is the glue between them.

use crate::budget::{BudgetRefusal, Budgets, Hold, Scope, Scoped, worst_case_uc};
use crate::pipeline::{Admission, Module, Outcome, Refusal, Request};
use crate::rate_limit::{Limits, RateLimiter, Ticket};
use crate::settings::ModuleSettings;

/// The rate-limit module: the key's own limits, else the configured
/// defaults; tokens reserved are the estimated input plus the request's
/// output cap (else `default_max_tokens`).
impl Module for RateLimiter {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn admit(
        &self,
        request: &Request<'_>,
        settings: &ModuleSettings,
    ) -> Result<Option<Box<dyn Admission>>, Refusal> {
        let settings = &settings.rate_limit;
        if !settings.enabled {
            return Ok(None);
        }
        let defaults = settings.limits();
        let own = request.key;
        let limits = Limits {
            rpm: own.rpm.unwrap_or(defaults.rpm),
            tpm: own.tpm.unwrap_or(defaults.tpm),
            max_parallel: own.max_parallel.unwrap_or(defaults.max_parallel),
        };
        if limits.is_unlimited() {
            return Ok(None);
        }
        let output = request.max_tokens.unwrap_or(settings.default_max_tokens);
        let estimate = request.input_tokens.saturating_add(output);
        match self.admit(request.key_id, limits, estimate) {
            Ok(ticket) => Ok(Some(Box::new(ticket))),
            Err(refusal) => Err(Refusal::RateLimited(refusal)),
        }
    }
}

impl Admission for Ticket {
    fn settle(self: Box<Self>, outcome: &Outcome<'_>) {
        Ticket::settle(*self, outcome.tokens);
    }
}

/// The budget module: every request reserves its worst case on every scope
/// it falls in — its key, each provider it may go to, all traffic — and is
/// admitted only if every budget among them has room. The worst case is the
/// largest over the request's targets (a fallback may answer). Spending is
/// tracked even for scopes without a budget and with the module off, so a
/// budget set later starts from the truth.
impl Module for Budgets {
    fn name(&self) -> &'static str {
        "budget"
    }

    fn admit(
        &self,
        request: &Request<'_>,
        settings: &ModuleSettings,
    ) -> Result<Option<Box<dyn Admission>>, Refusal> {
        let settings = &settings.budget;
        let on = settings.enabled;
        let mut scopes = Vec::with_capacity(2 + request.targets.len());
        if request.authenticated {
            scopes.push(Scoped {
                scope: Scope::Key(request.key_id.to_string()),
                budget: request.key.budget.filter(|_| on),
            });
        }
        for target in request.targets {
            let scope = Scope::Provider(target.provider.to_string());
            if scopes.iter().all(|s| s.scope != scope) {
                scopes.push(Scoped {
                    scope,
                    budget: settings.provider(target.provider).filter(|_| on),
                });
            }
        }
        scopes.push(Scoped {
            scope: Scope::Global,
            budget: settings.global().filter(|_| on),
        });
        let worst_case = match scopes.iter().find(|s| s.budget.is_some()) {
            None => 0,
            Some(first) => {
                let output = request.max_tokens.unwrap_or(settings.default_max_tokens);
                let mut worst = 0;
                for target in request.targets {
                    let Some((input_rate, output_rate)) =
                        target.rates.or_else(|| settings.fallback_rates())
                    else {
                        return Err(Refusal::Budget(BudgetRefusal::UnknownPrice {
                            model: format!("{}/{}", target.provider, target.model),
                            scope: first.scope.clone(),
                        }));
                    };
                    worst = worst.max(worst_case_uc(&[
                        (request.input_tokens, input_rate),
                        (output, output_rate),
                    ]));
                }
                worst
            }
        };
        let hold = self
            .admit(scopes, worst_case)
            .map_err(|r| Refusal::Budget(BudgetRefusal::Exceeded(r)))?;
        Ok(Some(Box::new(BudgetAdmission(hold))))
    }
}

/// An admitted request's reservation, settled to its cost (its worst case
/// when the cost stays unknown).
#[derive(Debug)]
struct BudgetAdmission(Hold);

impl Admission for BudgetAdmission {
    fn settle(self: Box<Self>, outcome: &Outcome<'_>) {
        let reserved = self.0.reserved_uc();
        self.0
            .settle_to(outcome.cost_uc.unwrap_or(reserved), outcome.provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Window;

    #[test]
    fn the_module_reserves_the_dearest_target_and_charges_only_the_one_that_answered() {
        use crate::pipeline::{KeyPolicy, Target};
        let budgets = Budgets::default();
        let mut settings = ModuleSettings::default();
        settings.budget.global_usd = Some("1".into());
        let targets = [
            Target {
                provider: "cheap",
                model: "m",
                rates: Some((1_000_000, 1_000_000)),
            },
            Target {
                provider: "dear",
                model: "m",
                rates: Some((10_000_000, 10_000_000)),
            },
        ];
        let request = Request {
            key_id: "k",
            authenticated: true,
            key: KeyPolicy::default(),
            endpoint: "/v1/chat/completions",
            targets: &targets,
            input_tokens: 1_000,
            max_tokens: Some(1_000),
        };
        let hold = budgets.admit_module(&request, &settings);
        // 2,000 tokens at the dearer target's 10 µ¢ each.
        assert_eq!(budgets.usage(&Scope::Global, Window::Month), (0, 20_000));
        assert_eq!(
            budgets
                .usage(&Scope::Provider("cheap".into()), Window::Month)
                .1,
            20_000
        );
        hold.settle(&Outcome {
            tokens: Some(100),
            cost_uc: Some(700),
            provider: Some("dear"),
        });
        for (scope, spent) in [
            (Scope::Global, 700),
            (Scope::Key("k".into()), 700),
            (Scope::Provider("dear".into()), 700),
            (Scope::Provider("cheap".into()), 0),
        ] {
            assert_eq!(
                budgets.usage(&scope, Window::Month),
                (spent, 0),
                "{scope:?}"
            );
        }
        // An unpriced fallback target cannot be bounded: refused by default.
        let unpriced = [
            targets[0],
            Target {
                provider: "x",
                model: "n",
                rates: None,
            },
        ];
        let refused = Module::admit(
            &budgets,
            &Request {
                targets: &unpriced,
                ..request
            },
            &settings,
        )
        .unwrap_err();
        assert!(
            matches!(&refused, Refusal::Budget(BudgetRefusal::UnknownPrice { model, .. }) if model == "x/n"),
            "{refused:?}"
        );
    }

    impl Budgets {
        fn admit_module(
            &self,
            request: &Request<'_>,
            settings: &ModuleSettings,
        ) -> Box<dyn Admission> {
            Module::admit(self, request, settings)
                .expect("admitted")
                .expect("held")
        }
    }
}
