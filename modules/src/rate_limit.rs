//! Per-key rate limits: requests per minute, tokens per minute and requests
//! in flight at once, decided at admission and settled when a request ends.
//!
//! Requests and tokens are counted in a fixed one-minute window per key that
//! opens with the key's first request after the last one closed. A fixed
//! window (rather than governor's GCRA) is used because the refusal must
//! tell the client exact numbers — limit, remaining and reset per dimension,
//! as the providers' `x-ratelimit-*` headers do — and a window has them.
//!
//! Tokens are *reserved* at admission (the caller's estimate of input plus
//! the most output the request may produce) and settled with the actual
//! count when the request ends: the unused part is given back; use beyond
//! the reservation is added, and whatever exceeds the limit when the window
//! closes is carried as debt into the next one. A request whose usage is
//! unknown keeps its reservation.
//!
//! Memory is bounded: every [`PRUNE_EVERY`] admissions, keys with nothing
//! in flight whose window has closed are forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The length of a counting window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Idle keys are pruned after this many admissions.
pub const PRUNE_EVERY: u64 = 1024;

/// A key's limits; 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: u32,
    pub tpm: u64,
    pub max_parallel: u32,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.rpm == 0 && self.tpm == 0 && self.max_parallel == 0
    }
}

/// `[modules.rate_limit]`: the switch, and the limits of keys that set none
/// of their own (0: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    pub rpm: u64,
    pub tpm: u64,
    pub max_parallel: u64,
    /// The tokens reserved for output when a request names no `max_tokens`.
    pub default_max_tokens: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            rpm: 0,
            tpm: 0,
            max_parallel: 0,
            default_max_tokens: 4096,
        }
    }
}

/// The most tokens one request may be assumed to produce.
pub const MAX_DEFAULT_MAX_TOKENS: u64 = 100_000_000;

impl Settings {
    pub fn validate(&self) -> Result<(), crate::settings::Invalid> {
        use crate::settings::Invalid;
        for (field, v) in [("rpm", self.rpm), ("max_parallel", self.max_parallel)] {
            if u32::try_from(v).is_err() {
                return Err(Invalid::new(
                    field,
                    format!("must be between 0 (unlimited) and {}", u32::MAX),
                ));
            }
        }
        if self.default_max_tokens > MAX_DEFAULT_MAX_TOKENS {
            return Err(Invalid::new(
                "default_max_tokens",
                format!("must be between 0 and {MAX_DEFAULT_MAX_TOKENS}"),
            ));
        }
        Ok(())
    }

    /// The default limits (validated settings fit; larger values saturate).
    pub fn limits(&self) -> Limits {
        Limits {
            rpm: u32::try_from(self.rpm).unwrap_or(u32::MAX),
            tpm: self.tpm,
            max_parallel: u32::try_from(self.max_parallel).unwrap_or(u32::MAX),
        }
    }
}

/// One limited dimension after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dimension {
    pub limit: u64,
    pub remaining: u64,
    /// Until the window closes and the count starts again.
    pub reset: Duration,
}

/// The state of the limited dimensions (`None`: not limited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub requests: Option<Dimension>,
    pub tokens: Option<Dimension>,
}

/// Which limit refused the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    Requests,
    Tokens,
    Parallel,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::Requests => "requests per minute",
            Exceeded::Tokens => "tokens per minute",
            Exceeded::Parallel => "requests in flight",
        }
    }
}

/// Why a request was refused, and when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub exceeded: Exceeded,
    pub limit: u64,
    pub retry_after: Duration,
    pub status: Status,
}

impl Refusal {
    /// Whole seconds, at least 1, as `Retry-After` wants.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after)
    }
}

/// Rounds up to whole seconds, at least 1.
pub fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[derive(Debug)]
struct KeyState {
    window_start: Instant,
    requests: u32,
    tokens: u64,
    in_flight: u32,
}

impl KeyState {
    fn new(now: Instant) -> KeyState {
        KeyState {
            window_start: now,
            requests: 0,
            tokens: 0,
            in_flight: 0,
        }
    }

    /// Opens a new window when the current one has closed, carrying token
    /// use beyond `tpm` into it when it follows directly.
    fn roll(&mut self, now: Instant, tpm: u64) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        self.tokens = if elapsed < 2 * WINDOW && tpm > 0 {
            self.tokens.saturating_sub(tpm)
        } else {
            0
        };
        self.requests = 0;
        self.window_start = now;
    }

    fn reset(&self, now: Instant) -> Duration {
        (self.window_start + WINDOW).saturating_duration_since(now)
    }

    fn status(&self, limits: Limits, now: Instant) -> Status {
        let reset = self.reset(now);
        Status {
            requests: (limits.rpm > 0).then(|| Dimension {
                limit: limits.rpm.into(),
                remaining: u64::from(limits.rpm.saturating_sub(self.requests)),
                reset,
            }),
            tokens: (limits.tpm > 0).then(|| Dimension {
                limit: limits.tpm,
                remaining: limits.tpm.saturating_sub(self.tokens),
                reset,
            }),
        }
    }
}

#[derive(Default, Debug)]
struct Inner {
    keys: Mutex<HashMap<String, KeyState>>,
}

impl Inner {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, KeyState>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The limiter shared by all requests.
#[derive(Default, Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
    admissions: Arc<std::sync::atomic::AtomicU64>,
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    /// Admits a request of `key` reserving `estimate` tokens, or says which
    /// limit refuses it. A refused request counts against nothing.
    pub fn admit(&self, key: &str, limits: Limits, estimate: u64) -> Result<Ticket, Refusal> {
        self.admit_at(key, limits, estimate, Instant::now())
    }

    pub fn admit_at(
        &self,
        key: &str,
        limits: Limits,
        estimate: u64,
        now: Instant,
    ) -> Result<Ticket, Refusal> {
        let n = self
            .admissions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut keys = self.inner.keys();
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
            keys.retain(|_, s| {
                s.in_flight > 0 || now.saturating_duration_since(s.window_start) < WINDOW
            });
        }
        let state = keys
            .entry(key.to_string())
            .or_insert_with(|| KeyState::new(now));
        state.roll(now, limits.tpm);
        let refuse = |exceeded, limit: u64, retry_after, state: &KeyState| Refusal {
            exceeded,
            limit,
            retry_after,
            status: state.status(limits, now),
        };
        if limits.max_parallel > 0 && state.in_flight >= limits.max_parallel {
            return Err(refuse(
                Exceeded::Parallel,
                limits.max_parallel.into(),
                Duration::from_secs(1),
                state,
            ));
        }
        if limits.rpm > 0 && state.requests >= limits.rpm {
            return Err(refuse(
                Exceeded::Requests,
                limits.rpm.into(),
                state.reset(now),
                state,
            ));
        }
        if limits.tpm > 0 && state.tokens.saturating_add(estimate) > limits.tpm {
            return Err(refuse(
                Exceeded::Tokens,
                limits.tpm,
                state.reset(now),
                state,
            ));
        }
        state.requests += 1;
        let reserved = if limits.tpm > 0 { estimate } else { 0 };
        state.tokens = state.tokens.saturating_add(reserved);
        let counts_parallel = limits.max_parallel > 0;
        if counts_parallel {
            state.in_flight += 1;
        }
        Ok(Ticket {
            inner: self.inner.clone(),
            key: key.to_string(),
            window_start: state.window_start,
            reserved,
            counts_parallel,
            status: state.status(limits, now),
        })
    }

    /// Keys currently remembered.
    pub fn tracked_keys(&self) -> usize {
        self.inner.keys().len()
    }
}

/// An admitted request. Dropping it releases its place in flight; settling
/// it also squares its token reservation with what it used.
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<Inner>,
    key: String,
    window_start: Instant,
    reserved: u64,
    counts_parallel: bool,
    /// The limits' state just after admission.
    pub status: Status,
}

impl Ticket {
    /// Settles the reservation with the tokens the request used (`None`:
    /// unknown, the reservation stands).
    pub fn settle(self, used: Option<u64>) {
        let (Some(used), true) = (used, self.reserved > 0) else {
            return;
        };
        let mut keys = self.inner.keys();
        let state = keys
            .entry(self.key.clone())
            .or_insert_with(|| KeyState::new(Instant::now()));
        if state.window_start == self.window_start {
            state.tokens = state
                .tokens
                .saturating_sub(self.reserved)
                .saturating_add(used);
        } else {
            // The reservation's window has closed: only use beyond it is
            // still owed, by the window now open.
            state.tokens = state
                .tokens
                .saturating_add(used.saturating_sub(self.reserved));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.counts_parallel
            && let Some(state) = self.inner.keys().get_mut(&self.key)
        {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: u32, tpm: u64, max_parallel: u32) -> Limits {
        Limits {
            rpm,
            tpm,
            max_parallel,
        }
    }

    #[test]
    fn rpm_refuses_in_the_window_and_admits_after_it() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let l = limits(2, 0, 0);
        let a = rl.admit_at("k", l, 10, t0).unwrap();
        assert_eq!(a.status.requests.unwrap().remaining, 1);
        assert!(a.status.tokens.is_none());
        rl.admit_at("k", l, 10, t0).unwrap();
        let r = rl
            .admit_at("k", l, 10, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(r.exceeded, Exceeded::Requests);
        assert_eq!(r.limit, 2);
        assert_eq!(r.retry_after_secs(), 40);
        assert_eq!(r.status.requests.unwrap().remaining, 0);
        // Another key is not affected.
        rl.admit_at("other", l, 10, t0).unwrap();
        rl.admit_at("k", l, 10, t0 + WINDOW).unwrap();
    }

    #[test]
    fn parallel_is_released_when_the_ticket_drops() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let l = limits(0, 0, 1);
        let a = rl.admit_at("k", l, 0, t0).unwrap();
        let r = rl.admit_at("k", l, 0, t0).unwrap_err();
        assert_eq!(r.exceeded, Exceeded::Parallel);
        assert_eq!(r.retry_after_secs(), 1);
        drop(a);
        rl.admit_at("k", l, 0, t0).unwrap().settle(Some(5));
        rl.admit_at("k", l, 0, t0).unwrap();
    }

    #[test]
    fn tokens_are_reserved_then_refunded_on_settle() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let l = limits(0, 5000, 0);
        let a = rl.admit_at("k", l, 4096, t0).unwrap();
        assert_eq!(a.status.tokens.unwrap().remaining, 904);
        let r = rl.admit_at("k", l, 4096, t0).unwrap_err();
        assert_eq!(r.exceeded, Exceeded::Tokens);
        a.settle(Some(20));
        let b = rl.admit_at("k", l, 4096, t0).unwrap();
        assert_eq!(b.status.tokens.unwrap().remaining, 5000 - 20 - 4096);
        // Unknown usage keeps the reservation.
        b.settle(None);
        assert!(rl.admit_at("k", l, 1000, t0).is_err());
    }

    #[test]
    fn use_beyond_the_limit_is_carried_into_the_next_window() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let l = limits(0, 1000, 0);
        rl.admit_at("k", l, 100, t0).unwrap().settle(Some(1600));
        let t1 = t0 + WINDOW;
        let a = rl.admit_at("k", l, 100, t1).unwrap();
        // 600 of debt + 100 reserved.
        assert_eq!(a.status.tokens.unwrap().remaining, 300);
        // A reservation settled after its window closed adds only its excess.
        let t2 = t1 + WINDOW + Duration::from_secs(1);
        let b = rl.admit_at("k", l, 100, t1).unwrap();
        let c = rl.admit_at("k", l, 100, t2).unwrap();
        b.settle(Some(150));
        drop(a);
        let d = rl.admit_at("k", l, 0, t2).unwrap();
        assert_eq!(d.status.tokens.unwrap().remaining, 1000 - 100 - 50);
        drop(c);
    }

    #[test]
    fn unlimited_admits_everything_and_idle_keys_are_pruned() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        for i in 0..PRUNE_EVERY - 1 {
            rl.admit_at(&format!("k{i}"), Limits::default(), 1, t0)
                .unwrap();
        }
        assert_eq!(rl.tracked_keys(), (PRUNE_EVERY - 1) as usize);
        let held = rl
            .admit_at("busy", limits(0, 0, 1), 0, t0 + WINDOW)
            .unwrap();
        assert_eq!(rl.tracked_keys(), 1);
        drop(held);
    }
}
