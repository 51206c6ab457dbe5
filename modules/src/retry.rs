//! `retry` and `fallback`: what to do when an upstream attempt fails before
//! anything reached the client — try the same target again after a jittered
//! exponential backoff (`retry`), then the alias's next target (`fallback`).
//!
//! Only failures that say nothing about the request itself are retried: a
//! connect error, a timeout before the first byte, 429 and 5xx. The proxy
//! decides before the response is handed to the client; once a byte has
//! gone out nothing is retried. This file holds the settings and the pure
//! decisions; the sending is the proxy's.

use crate::invalid::Invalid;
use std::time::Duration;

/// The most retries of one target a setting may ask for.
pub const MAX_RETRIES: u64 = 10;
/// The longest backoff a setting may ask for (ms).
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// `[modules.retry]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// Further attempts of the same target after its first one fails.
    pub max_retries: u64,
    /// The backoff before the first retry; it doubles per retry.
    pub backoff_initial_ms: u64,
    /// The longest backoff, also the most of an upstream `Retry-After` obeyed.
    pub backoff_max_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            max_retries: 2,
            backoff_initial_ms: 200,
            backoff_max_ms: 2000,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_retries > MAX_RETRIES {
            return Err(Invalid::new(
                "max_retries",
                format!("must be between 0 and {MAX_RETRIES}"),
            ));
        }
        for (field, v) in [
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            if v > MAX_BACKOFF_MS {
                return Err(Invalid::new(
                    field,
                    format!("must be between 0 and {MAX_BACKOFF_MS}"),
                ));
            }
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return Err(Invalid::new(
                "backoff_initial_ms",
                "must not exceed backoff_max_ms",
            ));
        }
        Ok(())
    }

    /// Attempts of one target: 1, plus the retries when enabled.
    pub fn attempts_per_target(&self) -> u64 {
        if self.enabled {
            1 + self.max_retries
        } else {
            1
        }
    }

    /// The pause before retry number `retry` (1 for the first): the
    /// exponential step `initial · 2^(retry-1)` capped at the maximum, then
    /// "full jitter" (`jitter` in [0, 1) picks a point in [step/2, step]), so
    /// clients failing together do not retry together. An upstream's
    /// `Retry-After` is obeyed when longer, up to the maximum.
    pub fn backoff(&self, retry: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let max = Duration::from_millis(self.backoff_max_ms);
        let step = Duration::from_millis(self.backoff_initial_ms)
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(max);
        let jitter = jitter.clamp(0.0, 1.0);
        let pause = step / 2 + step.mul_f64(jitter) / 2;
        match retry_after {
            Some(asked) if asked > pause => asked.min(max),
            _ => pause,
        }
    }
}

/// `[modules.fallback]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackSettings {
    /// When a target has failed (after its retries), try the alias's next.
    pub enabled: bool,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        FallbackSettings { enabled: true }
    }
}

impl FallbackSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// Whether an upstream answer with this status may be retried elsewhere or
/// later: rate limited, or the server's fault.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_obeys_retry_after_up_to_the_cap() {
        let s = Settings::default();
        let ms = |d: Duration| d.as_millis() as u64;
        assert_eq!(ms(s.backoff(1, 1.0, None)), 200);
        assert_eq!(ms(s.backoff(1, 0.0, None)), 100);
        assert_eq!(ms(s.backoff(2, 1.0, None)), 400);
        assert_eq!(ms(s.backoff(9, 1.0, None)), 2000);
        assert_eq!(ms(s.backoff(40, 1.0, None)), 2000);
        assert_eq!(ms(s.backoff(1, 0.0, Some(Duration::from_secs(1)))), 1000);
        assert_eq!(ms(s.backoff(1, 0.0, Some(Duration::from_secs(60)))), 2000);
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retryable() {
        for s in [429, 500, 502, 503, 599] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413, 422] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn settings_are_bounded() {
        let bad = |s: Settings| s.validate().unwrap_err().field;
        let d = Settings::default();
        assert_eq!(
            bad(Settings {
                max_retries: 11,
                ..d
            }),
            "max_retries"
        );
        assert_eq!(
            bad(Settings {
                backoff_initial_ms: 3000,
                ..d
            }),
            "backoff_initial_ms"
        );
        assert_eq!(
            bad(Settings {
                backoff_max_ms: 100_000,
                ..d
            }),
            "backoff_initial_ms".replace("initial", "max")
        );
        assert_eq!(d.attempts_per_target(), 3);
        assert_eq!(
            Settings {
                enabled: false,
                ..d
            }
            .attempts_per_target(),
            1
        );
    }
}
