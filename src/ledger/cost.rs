//! The cost of one request, from its usage counts and the rates that apply.
//!
//! Prices are per million tokens (web search per thousand calls), so
//! per-token costs are fractions of a micro-cent. The whole sum is kept exact
//! in `i128` and rounded once at the end; rounding each term separately would
//! bias small requests. A component with tokens but no rate is left out of
//! the sum and named, so what cannot be priced is visible, not silently cheap.

use thiserror::Error;

use super::money::div_round_half_even;
use super::prices::Rates;

const TOKENS_PER_PRICE_UNIT: i128 = 1_000_000;
/// Web search is priced per 1,000 calls: one call is 1,000 "millionths".
const CALLS_PER_PRICE_UNIT: i128 = 1_000;

/// Usage counts for one request, normalised across providers.
///
/// `input` is every input token: cache reads, cache writes, audio and image
/// tokens included (so an Anthropic adapter adds `cache_read_input_tokens`
/// and `cache_creation_input_tokens` to `input_tokens`). `cache_write` is
/// every cache write, `cache_write_1h` the part of it with a 1-hour TTL.
/// `output` is every output token, reasoning and audio included, so nothing
/// is billed twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
    pub input_audio: i64,
    pub output_audio: i64,
    pub input_image: i64,
    pub web_search_calls: i64,
}

/// A billed component of a request, as named on a cost row's `unpriced`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Input,
    CachedInput,
    CacheWrite,
    CacheWrite1h,
    InputAudio,
    InputImage,
    Output,
    OutputAudio,
    WebSearch,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Input => "input",
            Component::CachedInput => "cached_input",
            Component::CacheWrite => "cache_write",
            Component::CacheWrite1h => "cache_write_1h",
            Component::InputAudio => "input_audio",
            Component::InputImage => "input_image",
            Component::Output => "output",
            Component::OutputAudio => "output_audio",
            Component::WebSearch => "web_search",
        }
    }
}

/// The cost of the priced components, and the components left unpriced
/// (in [`Component`] order; empty when everything was priced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cost {
    pub uc: i64,
    pub unpriced: Vec<Component>,
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

/// Cost in micro-cents of everything `rates` prices, rounded half-to-even once.
pub fn cost_uc(rates: &Rates, t: &Tokens) -> Result<Cost, CostError> {
    let inconsistent = |reason| CostError::Inconsistent { tokens: *t, reason };
    let counts = [
        t.input,
        t.output,
        t.cached_input,
        t.cache_write,
        t.cache_write_1h,
        t.input_audio,
        t.output_audio,
        t.input_image,
        t.web_search_calls,
    ];
    if counts.iter().any(|&n| n < 0) {
        return Err(inconsistent("negative count"));
    }
    if t.cache_write_1h > t.cache_write {
        return Err(inconsistent("cache_write_1h exceeds cache_write"));
    }
    // Every count is non-negative, so the i128 sums cannot overflow.
    let uncached = i128::from(t.input)
        - i128::from(t.cached_input)
        - i128::from(t.cache_write)
        - i128::from(t.input_audio)
        - i128::from(t.input_image);
    if uncached < 0 {
        return Err(inconsistent(
            "cached_input + cache_write + input_audio + input_image exceed input",
        ));
    }
    if t.output_audio > t.output {
        return Err(inconsistent("output_audio exceeds output"));
    }
    let per_token = i128::from;
    let terms: [(Component, i128, Option<i64>); 9] = [
        (Component::Input, uncached, Some(rates.input)),
        (
            Component::CachedInput,
            per_token(t.cached_input),
            Some(rates.cached_input.unwrap_or(rates.input)),
        ),
        (
            Component::CacheWrite,
            per_token(t.cache_write - t.cache_write_1h),
            Some(rates.cache_write.unwrap_or(rates.input)),
        ),
        (
            Component::CacheWrite1h,
            per_token(t.cache_write_1h),
            rates.cache_write_1h,
        ),
        (
            Component::InputAudio,
            per_token(t.input_audio),
            rates.input_audio,
        ),
        (
            Component::InputImage,
            per_token(t.input_image),
            Some(rates.input_image.unwrap_or(rates.input)),
        ),
        (
            Component::Output,
            per_token(t.output - t.output_audio),
            Some(rates.output),
        ),
        (
            Component::OutputAudio,
            per_token(t.output_audio),
            rates.output_audio,
        ),
        (
            Component::WebSearch,
            i128::from(t.web_search_calls) * CALLS_PER_PRICE_UNIT,
            rates.web_search_per_1k,
        ),
    ];
    let mut unpriced = Vec::new();
    let mut numerator = 0i128;
    for (component, millionths, rate) in terms {
        match rate {
            Some(rate) => {
                numerator = millionths
                    .checked_mul(i128::from(rate))
                    .and_then(|term| numerator.checked_add(term))
                    .ok_or(CostError::Overflow)?;
            }
            None if millionths > 0 => unpriced.push(component),
            None => {}
        }
    }
    let uc = i64::try_from(div_round_half_even(numerator, TOKENS_PER_PRICE_UNIT))
        .map_err(|_| CostError::Overflow)?;
    Ok(Cost { uc, unpriced })
}

#[cfg(test)]
mod tests {
    use super::super::money::format_usd;
    use super::super::prices::{
        LongContextTier, Price, PriceTable, RateOverrides, UnpricedServiceTier,
    };
    use super::*;
    use crate::trace::ServiceTier;
    use proptest::prelude::*;

    const GPT_4O_MINI: Rates = Rates {
        input: 15_000_000,
        output: 60_000_000,
        cached_input: Some(7_500_000),
        cache_write: None,
        cache_write_1h: None,
        input_audio: None,
        output_audio: None,
        input_image: None,
        web_search_per_1k: None,
    };

    /// $3 in, $15 out, $0.30 cache reads, $3.75 5-minute and $6 1-hour writes.
    const SONNET: Rates = Rates {
        input: 300_000_000,
        output: 1_500_000_000,
        cached_input: Some(30_000_000),
        cache_write: Some(375_000_000),
        cache_write_1h: Some(600_000_000),
        input_audio: None,
        output_audio: None,
        input_image: None,
        web_search_per_1k: Some(1_000_000_000),
    };

    fn tokens(input: i64, cached_input: i64, cache_write: i64, output: i64) -> Tokens {
        Tokens {
            input,
            output,
            cached_input,
            cache_write,
            ..Tokens::default()
        }
    }

    /// The cost when everything is priced.
    fn priced(rates: &Rates, t: &Tokens) -> Result<i64, CostError> {
        let cost = cost_uc(rates, t)?;
        assert_eq!(cost.unpriced, [], "{t:?}");
        Ok(cost.uc)
    }

    #[test]
    fn cached_and_reasoning_tokens() {
        // 86 uncached × 15 + 1920 cached × 7.5 + 300 output (256 of them
        // reasoning) × 60 = 1,290 + 14,400 + 18,000 µ¢.
        let t = tokens(2006, 1920, 0, 300);
        assert_eq!(priced(&GPT_4O_MINI, &t), Ok(33_690));
    }

    #[test]
    fn rounds_exact_halves_to_even() {
        // One cached token at 7.5 µ¢: floor 7 is odd, so up to 8.
        assert_eq!(priced(&GPT_4O_MINI, &tokens(1, 1, 0, 0)), Ok(8));
        // Three at 22.5 µ¢: floor 22 is even, so it stays.
        assert_eq!(priced(&GPT_4O_MINI, &tokens(3, 3, 0, 0)), Ok(22));
        // Just off the half goes to the nearest.
        let half = Rates {
            input: 500_000,
            output: 500_001,
            ..Rates::default()
        };
        assert_eq!(priced(&half, &tokens(1, 0, 0, 0)), Ok(0));
        assert_eq!(priced(&half, &tokens(3, 0, 0, 0)), Ok(2));
        assert_eq!(priced(&half, &tokens(0, 0, 0, 1)), Ok(1));
    }

    #[test]
    fn rounds_once_not_per_term() {
        // 0.5 µ¢ + 0.5 µ¢: rounding each term to even would give 0.
        let half = Rates {
            input: 500_000,
            output: 500_000,
            ..Rates::default()
        };
        assert_eq!(priced(&half, &tokens(1, 0, 0, 1)), Ok(1));
        // Half a µ¢ of web search ($0.000005 per 1,000 calls is 0.5 µ¢ a
        // call) and half a µ¢ of input make one.
        let search = Rates {
            web_search_per_1k: Some(500),
            ..half
        };
        let t = Tokens {
            web_search_calls: 1,
            ..tokens(1, 0, 0, 0)
        };
        assert_eq!(priced(&search, &t), Ok(1));
    }

    #[test]
    fn anthropic_cache_read_and_write() {
        // Anthropic reports input_tokens 100, cache_read 5000, cache_creation
        // 2000: 100 × 300 + 5000 × 30 + 2000 × 375 + 400 × 1500 µ¢.
        let t = tokens(7100, 5000, 2000, 400);
        assert_eq!(priced(&SONNET, &t), Ok(1_530_000));
        assert_eq!(format_usd(1_530_000), "$0.02");
    }

    #[test]
    fn five_minute_and_one_hour_writes_in_one_request() {
        // input_tokens 100, cache_read 5000, cache_creation 3000 of which
        // 1000 with the 1-hour TTL, 400 out:
        // 100 × 300 + 5000 × 30 + 2000 × 375 + 1000 × 600 + 400 × 1500
        // = 30,000 + 150,000 + 750,000 + 600,000 + 600,000 µ¢.
        let t = Tokens {
            cache_write_1h: 1000,
            ..tokens(8100, 5000, 3000, 400)
        };
        assert_eq!(priced(&SONNET, &t), Ok(2_130_000));
        // Priced as one rate, the 1-hour writes would have cost 225,000 µ¢ less.
        assert_eq!(
            priced(&SONNET, &tokens(8100, 5000, 3000, 400)),
            Ok(1_905_000)
        );
    }

    #[test]
    fn one_hour_writes_without_a_rate_are_partial() {
        let no_1h = Rates {
            cache_write_1h: None,
            web_search_per_1k: None,
            ..SONNET
        };
        let t = Tokens {
            cache_write_1h: 1000,
            web_search_calls: 2,
            ..tokens(8100, 5000, 3000, 400)
        };
        // The 5-minute writes and the rest are priced; 1h writes and search are not.
        assert_eq!(
            cost_uc(&no_1h, &t),
            Ok(Cost {
                uc: 30_000 + 150_000 + 750_000 + 600_000,
                unpriced: vec![Component::CacheWrite1h, Component::WebSearch],
            })
        );
        assert_eq!(Component::CacheWrite1h.as_str(), "cache_write_1h");
        assert_eq!(Component::WebSearch.as_str(), "web_search");
        // No such tokens, nothing unpriced.
        assert_eq!(
            priced(&no_1h, &tokens(8100, 5000, 3000, 400)),
            Ok(1_905_000)
        );
    }

    fn long_context_sonnet() -> Price {
        Price {
            base: SONNET,
            tiers: vec![LongContextTier {
                above_input_tokens: 200_000,
                rates: RateOverrides {
                    input: Some(600_000_000),
                    output: Some(2_250_000_000),
                    cached_input: Some(60_000_000),
                    cache_write: Some(750_000_000),
                    cache_write_1h: Some(1_200_000_000),
                    ..RateOverrides::default()
                },
            }],
            service_tiers: Vec::new(),
        }
    }

    #[test]
    fn above_a_long_context_threshold() {
        let price = long_context_sonnet();
        // 250,000 input tokens (40,000 cache reads, 10,000 writes, 2,000 of
        // them 1-hour) > 200,000: every token at the tier's rates:
        // 200,000 × 600 + 40,000 × 60 + 8,000 × 750 + 2,000 × 1,200 + 1,000 × 2,250
        // = 120,000,000 + 2,400,000 + 6,000,000 + 2,400,000 + 2,250,000 µ¢.
        let t = Tokens {
            cache_write_1h: 2_000,
            ..tokens(250_000, 40_000, 10_000, 1_000)
        };
        let applied = price.rates_for(t.input, None).unwrap();
        assert_eq!(applied.above_input_tokens, Some(200_000));
        assert_eq!(priced(&applied.rates, &t), Ok(133_050_000));
        // At the threshold itself, the base rates: 200,000 × 300 + 1,000 × 1,500.
        let at = tokens(200_000, 0, 0, 1_000);
        let applied = price.rates_for(at.input, None).unwrap();
        assert_eq!(applied.above_input_tokens, None);
        assert_eq!(priced(&applied.rates, &at), Ok(61_500_000));
        // A rate the tier omits comes from the base entry (web search).
        assert_eq!(
            price
                .rates_for(t.input, None)
                .unwrap()
                .rates
                .web_search_per_1k,
            Some(1_000_000_000)
        );
    }

    #[test]
    fn highest_matching_long_context_tier_wins() {
        let mut price = long_context_sonnet();
        price.tiers.push(LongContextTier {
            above_input_tokens: 1_000_000,
            rates: RateOverrides {
                input: Some(900_000_000),
                ..RateOverrides::default()
            },
        });
        let applied = price.rates_for(1_000_001, None).unwrap();
        assert_eq!(applied.above_input_tokens, Some(1_000_000));
        assert_eq!(applied.rates.input, 900_000_000);
        // Omitted rates fall back to the base entry's, not the lower tier's.
        assert_eq!(applied.rates.output, SONNET.output);
    }

    /// gpt-5: $1.25 / $10 / $0.125 cached; flex half; priority double.
    fn gpt_5() -> Price {
        Price {
            base: Rates {
                input: 125_000_000,
                output: 1_000_000_000,
                cached_input: Some(12_500_000),
                ..Rates::default()
            },
            service_tiers: vec![
                (
                    ServiceTier::Flex,
                    RateOverrides {
                        input: Some(62_500_000),
                        output: Some(500_000_000),
                        cached_input: Some(6_250_000),
                        ..RateOverrides::default()
                    },
                ),
                (
                    ServiceTier::Priority,
                    RateOverrides {
                        input: Some(250_000_000),
                        output: Some(2_000_000_000),
                        cached_input: Some(25_000_000),
                        ..RateOverrides::default()
                    },
                ),
                (
                    ServiceTier::Batch,
                    RateOverrides {
                        input: Some(62_500_000),
                        ..RateOverrides::default()
                    },
                ),
            ],
            ..Price::default()
        }
    }

    #[test]
    fn flex_and_priority_tiers() {
        let price = gpt_5();
        let t = tokens(10_000, 4_000, 0, 2_000);
        let cost = |tier| priced(&price.rates_for(t.input, tier).unwrap().rates, &t);
        // 6,000 × 125 + 4,000 × 12.5 + 2,000 × 1,000 µ¢.
        assert_eq!(cost(None), Ok(2_800_000));
        // Priority requested, default served: priced as reported.
        assert_eq!(cost(Some(ServiceTier::Default)), Ok(2_800_000));
        // 6,000 × 62.5 + 4,000 × 6.25 + 2,000 × 500 µ¢.
        assert_eq!(cost(Some(ServiceTier::Flex)), Ok(1_400_000));
        // 6,000 × 250 + 4,000 × 25 + 2,000 × 2,000 µ¢.
        assert_eq!(cost(Some(ServiceTier::Priority)), Ok(5_600_000));
        // Batch sets only input; output and cached fall back to the base:
        // 6,000 × 62.5 + 4,000 × 12.5 + 2,000 × 1,000 µ¢.
        assert_eq!(cost(Some(ServiceTier::Batch)), Ok(2_425_000));
    }

    #[test]
    fn a_tier_without_prices_is_never_priced_as_default() {
        let price = gpt_5();
        for tier in [ServiceTier::Scale, ServiceTier::Other] {
            assert_eq!(
                price.rates_for(10_000, Some(tier)),
                Err(UnpricedServiceTier(tier))
            );
        }
        // A non-default tier over a long-context threshold: the table's
        // long-context rates are the default tier's, so it is unpriced.
        let mut both = gpt_5();
        both.tiers = long_context_sonnet().tiers;
        assert_eq!(
            both.rates_for(300_000, Some(ServiceTier::Flex)),
            Err(UnpricedServiceTier(ServiceTier::Flex))
        );
        assert!(both.rates_for(100_000, Some(ServiceTier::Flex)).is_ok());
        assert!(both.rates_for(300_000, Some(ServiceTier::Default)).is_ok());
    }

    #[test]
    fn web_search_calls_per_thousand() {
        // 1,000 × 300 + 100 × 1,500 µ¢ of tokens, and 3 calls at $10 per
        // 1,000 = 3 × 1,000,000 µ¢.
        let t = Tokens {
            web_search_calls: 3,
            ..tokens(1_000, 0, 0, 100)
        };
        assert_eq!(priced(&SONNET, &t), Ok(3_450_000));
        let no_search = Rates {
            web_search_per_1k: None,
            ..SONNET
        };
        assert_eq!(
            cost_uc(&no_search, &t),
            Ok(Cost {
                uc: 450_000,
                unpriced: vec![Component::WebSearch]
            })
        );
    }

    /// gpt-4o audio: $2.50 / $10 text, $40 / $80 audio.
    const AUDIO: Rates = Rates {
        input: 250_000_000,
        output: 1_000_000_000,
        cached_input: None,
        cache_write: None,
        cache_write_1h: None,
        input_audio: Some(4_000_000_000),
        output_audio: Some(8_000_000_000),
        input_image: None,
        web_search_per_1k: None,
    };

    #[test]
    fn audio_in_and_out() {
        // 1,500 in (1,000 audio), 700 out (500 audio):
        // 500 × 250 + 1,000 × 4,000 + 200 × 1,000 + 500 × 8,000 µ¢.
        let t = Tokens {
            input_audio: 1_000,
            output_audio: 500,
            ..tokens(1_500, 0, 0, 700)
        };
        assert_eq!(priced(&AUDIO, &t), Ok(8_325_000));
        let text_only = Rates {
            input_audio: None,
            output_audio: None,
            ..AUDIO
        };
        assert_eq!(
            cost_uc(&text_only, &t),
            Ok(Cost {
                uc: 325_000,
                unpriced: vec![Component::InputAudio, Component::OutputAudio]
            })
        );
    }

    #[test]
    fn image_tokens() {
        // 3,000 in, 2,000 of them image tokens at $1: 1,000 × 250 + 2,000 × 100.
        let t = Tokens {
            input_image: 2_000,
            ..tokens(3_000, 0, 0, 0)
        };
        let images = Rates {
            input_image: Some(100_000_000),
            ..AUDIO
        };
        assert_eq!(priced(&images, &t), Ok(450_000));
        // Without an image rate, image tokens are input tokens: 3,000 × 250.
        assert_eq!(priced(&AUDIO, &t), Ok(750_000));
    }

    #[test]
    fn missing_cache_prices_fall_back_to_input() {
        let plain = Rates {
            cached_input: None,
            cache_write: None,
            ..SONNET
        };
        assert_eq!(priced(&plain, &tokens(10, 4, 3, 0)), Ok(3_000));
        // gpt-4o-mini has no cache-write price.
        assert_eq!(priced(&GPT_4O_MINI, &tokens(10, 0, 10, 0)), Ok(150));
    }

    #[test]
    fn embeddings_have_no_output() {
        let table = PriceTable::builtin();
        let (price, _) = table
            .get("openai", "text-embedding-3-small")
            .expect("embedding model in builtin table");
        assert_eq!(price.base.output, 0);
        // 0.02 USD per 1M = 2 µ¢ per token.
        assert_eq!(priced(&price.base, &tokens(12_345, 0, 0, 0)), Ok(24_690));
    }

    #[test]
    fn zero_tokens_cost_nothing() {
        assert_eq!(priced(&SONNET, &Tokens::default()), Ok(0));
    }

    #[test]
    fn overflow_is_an_error() {
        let t = tokens(i64::MAX, 0, 0, 0);
        assert_eq!(cost_uc(&SONNET, &t), Err(CostError::Overflow));
        let max = Rates {
            input: i64::MAX,
            output: i64::MAX,
            cached_input: Some(i64::MAX),
            cache_write: Some(i64::MAX),
            cache_write_1h: Some(i64::MAX),
            input_audio: Some(i64::MAX),
            output_audio: Some(i64::MAX),
            input_image: Some(i64::MAX),
            web_search_per_1k: Some(i64::MAX),
        };
        let t = tokens(i64::MAX, i64::MAX / 2, i64::MAX / 2, i64::MAX);
        assert_eq!(cost_uc(&max, &t), Err(CostError::Overflow));
        // Calls × 1,000 × rate overflows even i128.
        let calls = Tokens {
            web_search_calls: i64::MAX,
            ..Tokens::default()
        };
        assert_eq!(cost_uc(&max, &calls), Err(CostError::Overflow));
        // The largest cost that fits still works.
        let per_token = Rates {
            input: 1_000_000,
            ..max
        };
        assert_eq!(priced(&per_token, &tokens(i64::MAX, 0, 0, 0)), Ok(i64::MAX));
    }

    #[test]
    fn inconsistent_counts_are_errors() {
        let with = |f: fn(&mut Tokens)| {
            let mut t = tokens(10, 2, 4, 5);
            f(&mut t);
            t
        };
        let bad = [
            tokens(10, 11, 0, 0),
            tokens(10, 6, 5, 0),
            tokens(-1, 0, 0, 0),
            tokens(10, -1, 0, 0),
            tokens(10, 0, -1, 0),
            tokens(10, 0, 0, -1),
            tokens(i64::MAX, i64::MAX, i64::MAX, 0),
            tokens(0, i64::MAX, i64::MAX, 0),
            with(|t| t.cache_write_1h = 5),
            with(|t| t.cache_write_1h = -1),
            with(|t| t.input_audio = 5),
            with(|t| t.input_image = 5),
            with(|t| {
                t.input_audio = 2;
                t.input_image = 3;
            }),
            with(|t| t.output_audio = 6),
            with(|t| t.web_search_calls = -1),
            with(|t| t.input_audio = i64::MAX),
        ];
        for t in bad {
            assert!(
                matches!(cost_uc(&SONNET, &t), Err(CostError::Inconsistent { tokens, .. }) if tokens == t),
                "{t:?}"
            );
        }
        // At the limits, consistent.
        let full = with(|t| {
            t.cache_write_1h = 4;
            t.input_audio = 2;
            t.input_image = 2;
            t.output_audio = 5;
        });
        assert!(cost_uc(&AUDIO, &full).is_ok());
    }

    fn rates() -> impl Strategy<Value = Rates> {
        let p = 0i64..10_000_000_000;
        let o = || proptest::option::of(p.clone());
        ((p.clone(), p.clone(), o(), o(), o()), (o(), o(), o(), o())).prop_map(
            |((input, output, cached_input, cache_write, cache_write_1h), (ia, oa, ii, ws))| {
                Rates {
                    input,
                    output,
                    cached_input,
                    cache_write,
                    cache_write_1h,
                    input_audio: ia,
                    output_audio: oa,
                    input_image: ii,
                    web_search_per_1k: ws,
                }
            },
        )
    }

    /// Consistent counts: every part of the input and output drawn apart.
    fn usage() -> impl Strategy<Value = Tokens> {
        let n = || 0i64..1_000_000_000;
        ((n(), n(), n(), n(), n()), (n(), n(), n(), 0i64..1_000_000)).prop_map(
            |(
                (uncached, cached, write_5m, write_1h, audio_in),
                (image, text_out, audio_out, calls),
            )| Tokens {
                input: uncached + cached + write_5m + write_1h + audio_in + image,
                output: text_out + audio_out,
                cached_input: cached,
                cache_write: write_5m + write_1h,
                cache_write_1h: write_1h,
                input_audio: audio_in,
                output_audio: audio_out,
                input_image: image,
                web_search_calls: calls,
            },
        )
    }

    proptest! {
        /// More tokens of any kind never cost less.
        #[test]
        fn monotonic_in_every_count(
            rates in rates(),
            base in usage(),
            extra in 1i64..1_000_000,
        ) {
            let before = cost_uc(&rates, &base);
            prop_assert!(before.is_ok());
            let bumped = [
                Tokens { input: base.input + extra, ..base },
                Tokens { input: base.input + extra, cached_input: base.cached_input + extra, ..base },
                Tokens { input: base.input + extra, cache_write: base.cache_write + extra, ..base },
                Tokens { input: base.input + extra, cache_write: base.cache_write + extra, cache_write_1h: base.cache_write_1h + extra, ..base },
                Tokens { input: base.input + extra, input_audio: base.input_audio + extra, ..base },
                Tokens { input: base.input + extra, input_image: base.input_image + extra, ..base },
                Tokens { output: base.output + extra, ..base },
                Tokens { output: base.output + extra, output_audio: base.output_audio + extra, ..base },
                Tokens { web_search_calls: base.web_search_calls + extra, ..base },
            ];
            let before = before.map(|c| c.uc).unwrap_or(i64::MAX);
            for t in bumped {
                let after = cost_uc(&rates, &t);
                prop_assert!(after.is_ok());
                prop_assert!(after.map(|c| c.uc).unwrap_or(i64::MIN) >= before, "{:?} -> {:?}", base, t);
            }
        }

        /// The rounded cost is within half a micro-cent of the exact sum of
        /// the priced components, and exactly the unpriced ones are named.
        #[test]
        fn within_half_a_micro_cent(rates in rates(), t in usage()) {
            let cost = cost_uc(&rates, &t).unwrap();
            let r = |rate: Option<i64>| i128::from(rate.unwrap_or(0));
            let uncached = t.input - t.cached_input - t.cache_write - t.input_audio - t.input_image;
            let exact_millionths = i128::from(uncached) * i128::from(rates.input)
                + i128::from(t.cached_input) * i128::from(rates.cached_input.unwrap_or(rates.input))
                + i128::from(t.cache_write - t.cache_write_1h) * i128::from(rates.cache_write.unwrap_or(rates.input))
                + i128::from(t.cache_write_1h) * r(rates.cache_write_1h)
                + i128::from(t.input_audio) * r(rates.input_audio)
                + i128::from(t.input_image) * i128::from(rates.input_image.unwrap_or(rates.input))
                + i128::from(t.output - t.output_audio) * i128::from(rates.output)
                + i128::from(t.output_audio) * r(rates.output_audio)
                + i128::from(t.web_search_calls) * 1_000 * r(rates.web_search_per_1k);
            prop_assert!((i128::from(cost.uc) * 1_000_000 - exact_millionths).abs() <= 500_000);
            let mut unpriced = Vec::new();
            for (count, rate, c) in [
                (t.cache_write_1h, rates.cache_write_1h, Component::CacheWrite1h),
                (t.input_audio, rates.input_audio, Component::InputAudio),
                (t.output_audio, rates.output_audio, Component::OutputAudio),
                (t.web_search_calls, rates.web_search_per_1k, Component::WebSearch),
            ] {
                if count > 0 && rate.is_none() {
                    unpriced.push(c);
                }
            }
            prop_assert_eq!(cost.unpriced, unpriced);
        }

        /// With every component at one rate, the components add up to the
        /// whole: the cost is that of all input and output tokens (and the
        /// calls, at the same rate per 1,000) as one count.
        #[test]
        fn components_sum_to_the_total_at_one_rate(rate in 0i64..10_000_000_000, t in usage()) {
            let one = Rates {
                input: rate,
                output: rate,
                cached_input: Some(rate),
                cache_write: Some(rate),
                cache_write_1h: Some(rate),
                input_audio: Some(rate),
                output_audio: Some(rate),
                input_image: Some(rate),
                web_search_per_1k: Some(rate),
            };
            let whole = (i128::from(t.input) + i128::from(t.output) + 1_000 * i128::from(t.web_search_calls))
                * i128::from(rate);
            let want = super::super::money::div_round_half_even(whole, 1_000_000);
            prop_assert_eq!(priced(&one, &t).map(i128::from), Ok(want));
        }
    }
}
