//! The cost of one request, from its token counts and the model's price.
//!
//! Prices are per million tokens, so per-token costs are fractions of a
//! micro-cent. The whole sum is kept exact in `i128` and rounded once at the
//! end; rounding each term separately would bias small requests.

use thiserror::Error;

use super::money::div_round_half_even;
use super::prices::Price;

const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;

/// Token counts for one request, normalised across providers.
///
/// `input` is every input token, cache reads and cache writes included (so an
/// Anthropic adapter adds `cache_read_input_tokens` and
/// `cache_creation_input_tokens` to `input_tokens`). `output` is every output
/// token, reasoning included, so reasoning is never billed twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub cache_write: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum CostError {
    #[error("inconsistent token counts {tokens:?}: {reason}")]
    Inconsistent {
        tokens: Tokens,
        reason: &'static str,
    },
    #[error("cost overflows i64 micro-cents")]
    Overflow,
}

/// Cost in micro-cents, rounded half-to-even once.
pub fn cost_uc(price: &Price, t: &Tokens) -> Result<i64, CostError> {
    let inconsistent = |reason| CostError::Inconsistent { tokens: *t, reason };
    if t.input < 0 || t.output < 0 || t.cached_input < 0 || t.cache_write < 0 {
        return Err(inconsistent("negative count"));
    }
    let uncached = t
        .input
        .checked_sub(t.cached_input)
        .and_then(|rest| rest.checked_sub(t.cache_write))
        .filter(|&uncached| uncached >= 0)
        .ok_or_else(|| inconsistent("cached_input + cache_write exceed input"))?;
    let terms = [
        (uncached, price.input),
        (t.cached_input, price.cached_input.unwrap_or(price.input)),
        (t.cache_write, price.cache_write.unwrap_or(price.input)),
        (t.output, price.output),
    ];
    // Each product fits in i128; only the sum can overflow.
    let numerator = terms.iter().try_fold(0i128, |sum, &(count, per_million)| {
        sum.checked_add(i128::from(count) * i128::from(per_million))
    });
    let numerator = numerator.ok_or(CostError::Overflow)?;
    i64::try_from(div_round_half_even(numerator, TOKENS_PER_PRICE_UNIT))
        .map_err(|_| CostError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::super::money::format_usd;
    use super::super::prices::PriceTable;
    use super::*;
    use proptest::prelude::*;

    const GPT_4O_MINI: Price = Price {
        input: 15_000_000,
        output: 60_000_000,
        cached_input: Some(7_500_000),
        cache_write: None,
    };

    const SONNET: Price = Price {
        input: 300_000_000,
        output: 1_500_000_000,
        cached_input: Some(30_000_000),
        cache_write: Some(375_000_000),
    };

    fn tokens(input: i64, cached_input: i64, cache_write: i64, output: i64) -> Tokens {
        Tokens {
            input,
            output,
            cached_input,
            cache_write,
        }
    }

    #[test]
    fn cached_and_reasoning_tokens() {
        // 86 uncached × 15 + 1920 cached × 7.5 + 300 output (256 of them
        // reasoning) × 60 = 1,290 + 14,400 + 18,000 µ¢.
        let t = tokens(2006, 1920, 0, 300);
        assert_eq!(cost_uc(&GPT_4O_MINI, &t), Ok(33_690));
    }

    #[test]
    fn rounds_exact_halves_to_even() {
        // One cached token at 7.5 µ¢: floor 7 is odd, so up to 8.
        assert_eq!(cost_uc(&GPT_4O_MINI, &tokens(1, 1, 0, 0)), Ok(8));
        // Three at 22.5 µ¢: floor 22 is even, so it stays.
        assert_eq!(cost_uc(&GPT_4O_MINI, &tokens(3, 3, 0, 0)), Ok(22));
        // Just off the half goes to the nearest.
        let half = Price {
            input: 500_000,
            output: 500_001,
            cached_input: None,
            cache_write: None,
        };
        assert_eq!(cost_uc(&half, &tokens(1, 0, 0, 0)), Ok(0));
        assert_eq!(cost_uc(&half, &tokens(3, 0, 0, 0)), Ok(2));
        assert_eq!(cost_uc(&half, &tokens(0, 0, 0, 1)), Ok(1));
    }

    #[test]
    fn rounds_once_not_per_term() {
        // 0.5 µ¢ + 0.5 µ¢: rounding each term to even would give 0.
        let half = Price {
            input: 500_000,
            output: 500_000,
            cached_input: None,
            cache_write: None,
        };
        assert_eq!(cost_uc(&half, &tokens(1, 0, 0, 1)), Ok(1));
    }

    #[test]
    fn anthropic_cache_read_and_write() {
        // Anthropic reports input_tokens 100, cache_read 5000, cache_creation
        // 2000: 100 × 300 + 5000 × 30 + 2000 × 375 + 400 × 1500 µ¢.
        let t = tokens(7100, 5000, 2000, 400);
        assert_eq!(cost_uc(&SONNET, &t), Ok(1_530_000));
        assert_eq!(format_usd(1_530_000), "$0.02");
    }

    #[test]
    fn missing_cache_prices_fall_back_to_input() {
        let plain = Price {
            cached_input: None,
            cache_write: None,
            ..SONNET
        };
        assert_eq!(cost_uc(&plain, &tokens(10, 4, 3, 0)), Ok(3_000));
        // gpt-4o-mini has no cache-write price.
        assert_eq!(cost_uc(&GPT_4O_MINI, &tokens(10, 0, 10, 0)), Ok(150));
    }

    #[test]
    fn embeddings_have_no_output() {
        let (price, _) = PriceTable::builtin()
            .get("openai", "text-embedding-3-small")
            .expect("embedding model in builtin table");
        assert_eq!(price.output, 0);
        // 0.02 USD per 1M = 2 µ¢ per token.
        assert_eq!(cost_uc(&price, &tokens(12_345, 0, 0, 0)), Ok(24_690));
    }

    #[test]
    fn zero_tokens_cost_nothing() {
        assert_eq!(cost_uc(&SONNET, &Tokens::default()), Ok(0));
    }

    #[test]
    fn overflow_is_an_error() {
        let t = tokens(i64::MAX, 0, 0, 0);
        assert_eq!(cost_uc(&SONNET, &t), Err(CostError::Overflow));
        let max = Price {
            input: i64::MAX,
            output: i64::MAX,
            cached_input: Some(i64::MAX),
            cache_write: Some(i64::MAX),
        };
        let t = tokens(i64::MAX, i64::MAX / 2, i64::MAX / 2, i64::MAX);
        assert_eq!(cost_uc(&max, &t), Err(CostError::Overflow));
        // The largest cost that fits still works.
        let per_token = Price {
            input: 1_000_000,
            ..max
        };
        assert_eq!(
            cost_uc(&per_token, &tokens(i64::MAX, 0, 0, 0)),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn inconsistent_counts_are_errors() {
        let bad = [
            tokens(10, 11, 0, 0),
            tokens(10, 6, 5, 0),
            tokens(-1, 0, 0, 0),
            tokens(10, -1, 0, 0),
            tokens(10, 0, -1, 0),
            tokens(10, 0, 0, -1),
            tokens(i64::MAX, i64::MAX, i64::MAX, 0),
            tokens(0, i64::MAX, i64::MAX, 0),
        ];
        for t in bad {
            assert!(
                matches!(cost_uc(&SONNET, &t), Err(CostError::Inconsistent { tokens, .. }) if tokens == t),
                "{t:?}"
            );
        }
    }

    fn price() -> impl Strategy<Value = Price> {
        let p = 0i64..10_000_000_000;
        (
            p.clone(),
            p.clone(),
            proptest::option::of(p.clone()),
            proptest::option::of(p),
        )
            .prop_map(|(input, output, cached_input, cache_write)| Price {
                input,
                output,
                cached_input,
                cache_write,
            })
    }

    proptest! {
        /// More tokens of any kind never cost less.
        #[test]
        fn monotonic_in_every_count(
            price in price(),
            [uncached, cached, write, output] in proptest::array::uniform4(0i64..1_000_000_000),
            extra in 1i64..1_000_000,
        ) {
            let base = tokens(uncached + cached + write, cached, write, output);
            let before = cost_uc(&price, &base);
            prop_assert!(before.is_ok());
            let bumped = [
                Tokens { input: base.input + extra, ..base },
                Tokens { input: base.input + extra, cached_input: cached + extra, ..base },
                Tokens { input: base.input + extra, cache_write: write + extra, ..base },
                Tokens { output: output + extra, ..base },
            ];
            for t in bumped {
                let after = cost_uc(&price, &t);
                prop_assert!(after.is_ok());
                prop_assert!(after.ok() >= before.ok(), "{:?} -> {:?}", base, t);
            }
        }

        /// The rounded cost is within half a micro-cent of the exact cost.
        #[test]
        fn within_half_a_micro_cent(
            price in price(),
            [uncached, cached, write, output] in proptest::array::uniform4(0i64..1_000_000_000),
        ) {
            let t = tokens(uncached + cached + write, cached, write, output);
            let cost = i128::from(cost_uc(&price, &t).unwrap_or(i64::MIN));
            let exact_millionths = i128::from(uncached) * i128::from(price.input)
                + i128::from(cached) * i128::from(price.cached_input.unwrap_or(price.input))
                + i128::from(write) * i128::from(price.cache_write.unwrap_or(price.input))
                + i128::from(output) * i128::from(price.output);
            prop_assert!((cost * 1_000_000 - exact_millionths).abs() <= 500_000);
        }
    }
}
