//! Per-key rate limits: requests per minute, tokens per minute and requests
//! in flight at once, decided at admission and settled when a request ends.
//!
//! Requests per minute are a GCRA per key (the `governor` crate): a key may
//! send its whole `rpm` at once, then one more every `60 s / rpm`, so there
//! is no window edge at which twice the limit gets through. Remaining is
//! governor's burst capacity after the request; reset, the time until the
//! key could burst its whole `rpm` again.
//!
//! Tokens per minute are counted in a fixed one-minute window per key that
//! opens with the key's first request after the last one closed (a GCRA
//! cannot take back what a request reserved but did not use). Tokens are
//! *reserved* at admission (the caller's estimate of input plus
//! the most output the request may produce) and settled with the actual
//! count when the request ends: the unused part is given back; use beyond
//! the reservation is added, and whatever exceeds the limit when the window
//! closes is carried as debt into the next one. A request whose usage is
//! unknown keeps its reservation.
//!
//! A refused request counts against nothing: the checks that only look come
//! first, and governor's (which takes a cell only when it admits) last.
//!
//! Memory is bounded: every [`PRUNE_EVERY`] admissions, keys with nothing
//! in flight, whose token window has closed and whose request rate has
//! fully recovered are forgotten (forgetting them changes nothing).

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
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
    pub fn validate(&self) -> Result<(), crate::invalid::Invalid> {
        use crate::invalid::Invalid;
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

/// Governor's clock, set to the admission's instant just before each check.
/// Checks run with the keys' map locked, so none sees another's time; and
/// a caller-given instant lets tests move time.
#[derive(Clone, Debug)]
struct AdmissionClock {
    base: Instant,
    offset_ns: Arc<AtomicU64>,
}

impl AdmissionClock {
    fn new() -> AdmissionClock {
        AdmissionClock {
            base: Instant::now(),
            offset_ns: Arc::default(),
        }
    }

    fn set(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.base).as_nanos();
        self.offset_ns
            .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Clock for AdmissionClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::Relaxed))
    }
}

type Gcra =
    governor::RateLimiter<NotKeyed, InMemoryState, AdmissionClock, StateInformationMiddleware>;

/// A key's requests-per-minute GCRA, built for one `rpm` (a new limit gets
/// a new one).
struct Requests {
    rpm: NonZeroU32,
    gcra: Gcra,
    /// Burst capacity after the last admission, and when: what a refusal by
    /// another limit reports without taking a cell.
    remaining: u32,
    at: Instant,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("rpm", &self.rpm)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Requests {
    fn new(rpm: NonZeroU32, clock: &AdmissionClock, now: Instant) -> Requests {
        Requests {
            rpm,
            gcra: governor::RateLimiter::direct_with_clock(Quota::per_minute(rpm), clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            remaining: rpm.get(),
            at: now,
        }
    }

    /// The time one request's cell takes to come back.
    fn period(&self) -> Duration {
        WINDOW / self.rpm.get()
    }

    /// Until `remaining` is back to the whole `rpm`.
    fn reset(&self, remaining: u32) -> Duration {
        self.period() * self.rpm.get().saturating_sub(remaining)
    }

    /// The burst capacity now, from the last admission and the time since
    /// (cells come back one per period).
    fn remaining_now(&self, now: Instant) -> u32 {
        let back =
            now.saturating_duration_since(self.at).as_nanos() / self.period().as_nanos().max(1);
        let back = u32::try_from(back).unwrap_or(u32::MAX);
        self.remaining.saturating_add(back).min(self.rpm.get())
    }

    fn dimension(&self, remaining: u32) -> Dimension {
        Dimension {
            limit: self.rpm.get().into(),
            remaining: remaining.into(),
            reset: self.reset(remaining),
        }
    }
}

#[derive(Debug)]
struct KeyState {
    window_start: Instant,
    tokens: u64,
    in_flight: u32,
    requests: Option<Requests>,
    last_admitted: Instant,
}

impl KeyState {
    fn new(now: Instant) -> KeyState {
        KeyState {
            window_start: now,
            tokens: 0,
            in_flight: 0,
            requests: None,
            last_admitted: now,
        }
    }

    /// Opens a new token window when the current one has closed, carrying
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
        self.window_start = now;
    }

    /// Whether forgetting this key would change nothing.
    fn idle(&self, now: Instant) -> bool {
        self.in_flight == 0
            && now.saturating_duration_since(self.window_start) >= WINDOW
            && now.saturating_duration_since(self.last_admitted) >= WINDOW
    }

    /// The GCRA for `rpm`. When the limit changed, a new one that starts
    /// with the requests the old one still counted as used.
    fn requests_for(
        &mut self,
        rpm: NonZeroU32,
        clock: &AdmissionClock,
        now: Instant,
    ) -> &mut Requests {
        match &mut self.requests {
            Some(r) if r.rpm == rpm => {}
            slot => {
                let used = slot
                    .as_ref()
                    .map_or(0, |old| old.rpm.get() - old.remaining_now(now));
                let mut next = Requests::new(rpm, clock, now);
                if let Some(used) = NonZeroU32::new(used.min(rpm.get())) {
                    clock.set(now);
                    if let Ok(Ok(snapshot)) = next.gcra.check_n(used) {
                        next.remaining = snapshot.remaining_burst_capacity();
                    }
                }
                *slot = Some(next);
            }
        }
        self.requests.as_mut().expect("set above")
    }

    fn status(&self, limits: Limits, now: Instant, requests_remaining: Option<u32>) -> Status {
        let reset = (self.window_start + WINDOW).saturating_duration_since(now);
        Status {
            requests: match (&self.requests, NonZeroU32::new(limits.rpm)) {
                (Some(r), Some(rpm)) if r.rpm == rpm => {
                    Some(r.dimension(requests_remaining.unwrap_or_else(|| r.remaining_now(now))))
                }
                (_, Some(rpm)) => Some(Dimension {
                    limit: rpm.get().into(),
                    remaining: rpm.get().into(),
                    reset: Duration::ZERO,
                }),
                (_, None) => None,
            },
            tokens: (limits.tpm > 0).then(|| Dimension {
                limit: limits.tpm,
                remaining: limits.tpm.saturating_sub(self.tokens),
                reset,
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    keys: Mutex<HashMap<String, KeyState>>,
    clock: AdmissionClock,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            keys: Mutex::default(),
            clock: AdmissionClock::new(),
        }
    }
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
            keys.retain(|_, s| !s.idle(now));
        }
        let state = keys
            .entry(key.to_string())
            .or_insert_with(|| KeyState::new(now));
        state.roll(now, limits.tpm);
        let refuse = |exceeded, limit: u64, retry_after, state: &KeyState| Refusal {
            exceeded,
            limit,
            retry_after,
            status: state.status(limits, now, None),
        };
        if limits.max_parallel > 0 && state.in_flight >= limits.max_parallel {
            return Err(refuse(
                Exceeded::Parallel,
                limits.max_parallel.into(),
                Duration::from_secs(1),
                state,
            ));
        }
        if limits.tpm > 0 && state.tokens.saturating_add(estimate) > limits.tpm {
            let reset = (state.window_start + WINDOW).saturating_duration_since(now);
            return Err(refuse(Exceeded::Tokens, limits.tpm, reset, state));
        }
        let mut requests_remaining = None;
        if let Some(rpm) = NonZeroU32::new(limits.rpm) {
            let clock = &self.inner.clock;
            let requests = state.requests_for(rpm, clock, now);
            clock.set(now);
            match requests.gcra.check() {
                Ok(snapshot) => {
                    requests.remaining = snapshot.remaining_burst_capacity();
                    requests.at = now;
                    requests_remaining = Some(requests.remaining);
                }
                Err(not_until) => {
                    let wait = NotUntil::wait_time_from(&not_until, now);
                    let status = state.status(limits, now, Some(0));
                    return Err(Refusal {
                        exceeded: Exceeded::Requests,
                        limit: rpm.get().into(),
                        retry_after: wait,
                        status,
                    });
                }
            }
        }
        state.last_admitted = now;
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
            status: state.status(limits, now, requests_remaining),
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
    fn rpm_is_a_gcra_a_burst_then_one_per_period_without_a_window_edge() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let l = limits(2, 0, 0);
        let a = rl.admit_at("k", l, 10, t0).unwrap();
        let requests = a.status.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (2, 1));
        assert_eq!(requests.reset, Duration::from_secs(30));
        assert!(a.status.tokens.is_none());
        let b = rl.admit_at("k", l, 10, t0).unwrap();
        assert_eq!(b.status.requests.unwrap().remaining, 0);
        assert_eq!(b.status.requests.unwrap().reset, WINDOW);
        let r = rl
            .admit_at("k", l, 10, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(r.exceeded, Exceeded::Requests);
        assert_eq!(r.limit, 2);
        // One cell comes back every 30 s.
        assert_eq!(r.retry_after, Duration::from_secs(10));
        assert_eq!(r.retry_after_secs(), 10);
        assert_eq!(r.status.requests.unwrap().remaining, 0);
        // Another key is not affected.
        rl.admit_at("other", l, 10, t0).unwrap();
        rl.admit_at("k", l, 10, t0 + Duration::from_secs(30))
            .unwrap();
        // No second burst at a window edge: a minute after the first two,
        // one more came back, not two.
        rl.admit_at("k", l, 10, t0 + WINDOW).unwrap();
        let r = rl.admit_at("k", l, 10, t0 + WINDOW).unwrap_err();
        assert_eq!(r.retry_after, Duration::from_secs(30));
    }

    #[test]
    fn a_refusal_by_another_limit_takes_no_request_cell() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let l = limits(2, 100, 0);
        let a = rl.admit_at("k", l, 60, t0).unwrap();
        let r = rl.admit_at("k", l, 60, t0).unwrap_err();
        assert_eq!(r.exceeded, Exceeded::Tokens);
        assert_eq!(r.status.requests.unwrap().remaining, 1);
        a.settle(Some(10));
        let b = rl.admit_at("k", l, 60, t0).unwrap();
        assert_eq!(b.status.requests.unwrap().remaining, 0);
    }

    #[test]
    fn a_changed_rpm_applies_to_the_next_request() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        rl.admit_at("k", limits(1, 0, 0), 0, t0).unwrap();
        assert!(rl.admit_at("k", limits(1, 0, 0), 0, t0).is_err());
        // Raised to 5: the one already used still counts.
        let c = rl.admit_at("k", limits(5, 0, 0), 0, t0).unwrap();
        let requests = c.status.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (5, 3));
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
