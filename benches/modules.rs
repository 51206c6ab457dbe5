//! The governance modules' cost per request, with every one enabled and
//! doing its full work (nothing refused): the module pipeline's admission
//! (`rate_limit` with rpm, tpm and in-flight limits; `budget` with a key,
//! a provider and a global budget over two targets), the price lookup that
//! feeds it, the breaker's admit and record for the answering target, the
//! cost that settles the budget, and the settlement. Target: ≤ 5 µs.
//! `cargo bench --bench modules`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate::ledger::assess;
use tollgate::ledger::prices::PriceTable;
use tollgate::trace::Trace;
use tollgate_modules::breaker::{Breaker, Forget};
use tollgate_modules::budget::{Budget, Budgets, ProviderBudget, Window};
use tollgate_modules::pipeline::{KeyPolicy, Request, Target};
use tollgate_modules::rate_limit::RateLimiter;
use tollgate_modules::{ModuleSettings, Outcome, Pipeline};

fn settings() -> ModuleSettings {
    let mut s = ModuleSettings::default();
    s.rate_limit.rpm = 1_000_000_000;
    s.rate_limit.tpm = 1_000_000_000_000;
    s.rate_limit.max_parallel = 1_000_000;
    s.budget.global_usd = Some("1000000000".into());
    s.budget.providers.insert(
        "openai".into(),
        ProviderBudget {
            usd: "1000000000".into(),
            window: Window::Month,
        },
    );
    s.validate().expect("valid settings");
    s
}

fn bench_pipeline(c: &mut Criterion) {
    let settings = settings();
    let rate_limiter = RateLimiter::new();
    let budgets = Budgets::default();
    let pipeline = Pipeline::new(vec![Box::new(rate_limiter), Box::new(budgets)]);
    let breaker = Breaker::new(Box::new(Forget));
    let prices = PriceTable::builtin();
    let targets = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o")];
    let key = KeyPolicy {
        rpm: Some(1_000_000_000),
        tpm: None,
        max_parallel: Some(1_000_000),
        budget: Some(Budget {
            limit_uc: i64::MAX / 4,
            window: Window::Total,
        }),
    };
    let mut trace = Trace::new("/v1/chat/completions", 0);
    trace.status = 200;
    trace.provider = Some("openai".into());
    trace.model_resolved = Some("gpt-4o-mini".into());
    trace.usage.input_tokens = Some(1200);
    trace.usage.output_tokens = Some(201);
    trace.usage.cached_input_tokens = Some(1024);

    c.bench_function("modules/governed_request", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let key_id = if n.is_multiple_of(2) {
                "key_a"
            } else {
                "key_b"
            };
            let input_tokens = 1200u64;
            let resolved: Vec<Target<'_>> = targets
                .iter()
                .map(|&(provider, model)| Target {
                    provider,
                    model,
                    rates: prices
                        .get(provider, model)
                        .and_then(|(p, _)| p.rates_for(input_tokens as i64, None).ok())
                        .map(|a| (a.rates.input, a.rates.output)),
                })
                .collect();
            let request = Request {
                key_id,
                authenticated: true,
                key,
                endpoint: "/v1/chat/completions",
                targets: &resolved,
                input_tokens,
                max_tokens: Some(256),
            };
            let admitted = pipeline.admit(&request, &settings).expect("admitted");
            let (provider, model) = targets[0];
            assert!(breaker.admit(&settings.breaker, provider, model, 1));
            breaker.record(&settings.breaker, provider, model, true, 2);
            let cost = assess(black_box(&trace), &prices).cost_uc;
            admitted.settle(&Outcome {
                tokens: Some(1401),
                cost_uc: cost,
                provider: Some(provider),
            });
        });
    });
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
