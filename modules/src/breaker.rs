//! `breaker`: a circuit breaker per upstream target (provider + model).
//!
//! A target that failed `failures` times in a row (connect error, timeout
//! before the first byte, 5xx — a 429 is the provider limiting one account,
//! not failing, and counts neither way) is *open*: it is skipped without a
//! request, so a dead provider costs its clients no time. After
//! `cooldown_ms` one probe request is let through (*half-open*); its success
//! closes the breaker, its failure opens it again for another cooldown.
//!
//! Every change of state goes to a [`BreakerStore`] (the writer, which
//! persists it and audits it), and [`Breaker::load`] takes the persisted
//! states back at start, so a restart does not forget a dead provider: an
//! open breaker stays open until its cooldown, measured from when it opened.
//!
//! Times are wall-clock milliseconds (they are persisted), passed in by the
//! caller. Memory is bounded: only targets with failures are kept, at most
//! [`MAX_TARGETS`] of them (model names come from clients).

use crate::invalid::Invalid;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The most targets with a failure count or an open breaker remembered.
pub const MAX_TARGETS: usize = 4096;
/// The longest cooldown a setting may ask for (one day, in ms).
pub const MAX_COOLDOWN_MS: u64 = 86_400_000;

/// `[modules.breaker]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// Consecutive failures that open a target's breaker.
    pub failures: u64,
    /// How long an open breaker skips its target before a probe.
    pub cooldown_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            failures: 5,
            cooldown_ms: 30_000,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.failures == 0 || self.failures > u64::from(u32::MAX) {
            return Err(Invalid::new(
                "failures",
                format!("must be between 1 and {}", u32::MAX),
            ));
        }
        if self.cooldown_ms > MAX_COOLDOWN_MS {
            return Err(Invalid::new(
                "cooldown_ms",
                format!("must be between 0 and {MAX_COOLDOWN_MS}"),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }

    pub fn from_name(s: &str) -> Option<State> {
        Some(match s {
            "closed" => State::Closed,
            "half_open" => State::HalfOpen,
            "open" => State::Open,
            _ => return None,
        })
    }

    /// The `/metrics` gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

/// A target's breaker as persisted and shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub provider: String,
    pub model: String,
    pub state: State,
    /// Consecutive failures counted.
    pub failures: u32,
    /// When the breaker last opened (wall-clock ms); the cooldown runs from it.
    pub opened_at_ms: Option<i64>,
    /// When this state was entered (wall-clock ms).
    pub changed_at_ms: i64,
}

/// Where state changes go: persisted and audited by the implementation
/// (`src/`), which must not block.
pub trait BreakerStore: Send + Sync {
    fn changed(&self, change: &Status);
}

/// A store that keeps nothing (tests, tools).
pub struct Forget;

impl BreakerStore for Forget {
    fn changed(&self, _: &Status) {}
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    failures: u32,
    opened_at_ms: i64,
    /// When the half-open probe was let through: a probe that never reports
    /// (its client went away) is replaced after a cooldown.
    probe_at_ms: i64,
}

type Key = (String, String);

pub struct Breaker {
    targets: Mutex<HashMap<Key, Entry>>,
    store: Box<dyn BreakerStore>,
    opens: AtomicU64,
}

impl Breaker {
    pub fn new(store: Box<dyn BreakerStore>) -> Breaker {
        Breaker {
            targets: Mutex::new(HashMap::new()),
            store,
            opens: AtomicU64::new(0),
        }
    }

    fn targets(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes back persisted states (closed ones are nothing to remember; a
    /// half-open one lost its probe with the process and counts as open).
    pub fn load(&self, persisted: impl IntoIterator<Item = Status>) {
        let mut targets = self.targets();
        for s in persisted {
            if s.state == State::Closed || targets.len() >= MAX_TARGETS {
                continue;
            }
            targets.insert(
                (s.provider, s.model),
                Entry {
                    state: State::Open,
                    failures: s.failures,
                    opened_at_ms: s.opened_at_ms.unwrap_or(s.changed_at_ms),
                    probe_at_ms: 0,
                },
            );
        }
    }

    /// Whether a request may go to the target now. Open and cooled down:
    /// this request is the half-open probe.
    pub fn admit(&self, s: &Settings, provider: &str, model: &str, now_ms: i64) -> bool {
        if !s.enabled {
            return true;
        }
        let mut targets = self.targets();
        // The usual case, every target healthy: no key to build.
        if targets.is_empty() {
            return true;
        }
        let Some(e) = targets.get_mut(&(provider.to_string(), model.to_string())) else {
            return true;
        };
        let cooled = |since: i64| now_ms.saturating_sub(since) >= s.cooldown_ms as i64;
        match e.state {
            State::Closed => true,
            State::Open if cooled(e.opened_at_ms) => {
                e.state = State::HalfOpen;
                e.probe_at_ms = now_ms;
                self.store.changed(&status(provider, model, e, now_ms));
                true
            }
            State::Open => false,
            State::HalfOpen if cooled(e.probe_at_ms) => {
                e.probe_at_ms = now_ms;
                true
            }
            State::HalfOpen => false,
        }
    }

    /// The outcome of a request to the target: `ok` when it answered
    /// anything but a retryable failure.
    pub fn record(&self, s: &Settings, provider: &str, model: &str, ok: bool, now_ms: i64) {
        if !s.enabled {
            return;
        }
        let mut targets = self.targets();
        if ok && targets.is_empty() {
            return;
        }
        let key = (provider.to_string(), model.to_string());
        if ok {
            let Some(e) = targets.get_mut(&key) else {
                return;
            };
            match e.state {
                State::Closed => {
                    targets.remove(&key);
                }
                State::HalfOpen => {
                    e.state = State::Closed;
                    e.failures = 0;
                    self.store.changed(&status(provider, model, e, now_ms));
                    targets.remove(&key);
                }
                // A request let through before the breaker opened: the
                // probe decides.
                State::Open => {}
            }
            return;
        }
        if !targets.contains_key(&key) && targets.len() >= MAX_TARGETS {
            return;
        }
        let e = targets.entry(key).or_insert(Entry {
            state: State::Closed,
            failures: 0,
            opened_at_ms: 0,
            probe_at_ms: 0,
        });
        e.failures = e.failures.saturating_add(1);
        let open = match e.state {
            State::Closed => u64::from(e.failures) >= s.failures,
            State::HalfOpen => true,
            State::Open => false,
        };
        if open {
            e.state = State::Open;
            e.opened_at_ms = now_ms;
            self.opens.fetch_add(1, Ordering::Relaxed);
            self.store.changed(&status(provider, model, e, now_ms));
        }
    }

    /// Every remembered target that is not closed, or has failures.
    pub fn snapshot(&self) -> Vec<Status> {
        let mut all: Vec<Status> = self
            .targets()
            .iter()
            .map(|((p, m), e)| status(p, m, e, e.opened_at_ms))
            .collect();
        all.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
        all
    }

    /// Breakers opened (or reopened) by this process.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }
}

fn status(provider: &str, model: &str, e: &Entry, now_ms: i64) -> Status {
    Status {
        provider: provider.to_string(),
        model: model.to_string(),
        state: e.state,
        failures: e.failures,
        opened_at_ms: (e.state != State::Closed).then_some(e.opened_at_ms),
        changed_at_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Default)]
    struct Log(Mutex<Vec<(String, State)>>);
    impl BreakerStore for Arc<Log> {
        fn changed(&self, c: &Status) {
            self.0.lock().unwrap().push((c.provider.clone(), c.state));
        }
    }

    fn settings() -> Settings {
        Settings {
            enabled: true,
            failures: 3,
            cooldown_ms: 1000,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_probes_after_cooldown_and_closes() {
        let log = Arc::new(Log::default());
        let b = Breaker::new(Box::new(log.clone()));
        let s = settings();
        for t in 0..2 {
            b.record(&s, "p", "m", false, t);
        }
        b.record(&s, "p", "m", true, 2);
        assert!(b.snapshot().is_empty(), "a success resets the count");
        for t in 10..13 {
            assert!(b.admit(&s, "p", "m", t));
            b.record(&s, "p", "m", false, t);
        }
        assert!(!b.admit(&s, "p", "m", 500));
        assert!(b.admit(&s, "q", "m", 500), "other targets unaffected");
        assert!(b.admit(&s, "p", "m", 1012), "the probe");
        assert!(!b.admit(&s, "p", "m", 1013), "one probe at a time");
        b.record(&s, "p", "m", false, 1020);
        assert!(!b.admit(&s, "p", "m", 1500), "reopened");
        assert!(b.admit(&s, "p", "m", 2020));
        b.record(&s, "p", "m", true, 2021);
        assert!(b.admit(&s, "p", "m", 2022));
        assert_eq!(b.opens(), 2);
        let states: Vec<State> = log.0.lock().unwrap().iter().map(|x| x.1).collect();
        use State::*;
        assert_eq!(states, vec![Open, HalfOpen, Open, HalfOpen, Closed]);
    }

    #[test]
    fn a_loaded_open_breaker_waits_out_its_cooldown_from_when_it_opened() {
        let b = Breaker::new(Box::new(Forget));
        let s = settings();
        b.load([Status {
            provider: "p".into(),
            model: "m".into(),
            state: State::Open,
            failures: 3,
            opened_at_ms: Some(100),
            changed_at_ms: 100,
        }]);
        assert!(!b.admit(&s, "p", "m", 1099));
        assert!(b.admit(&s, "p", "m", 1100));
    }

    #[test]
    fn disabled_lets_everything_through() {
        let b = Breaker::new(Box::new(Forget));
        let s = Settings {
            enabled: false,
            ..settings()
        };
        for t in 0..10 {
            b.record(&s, "p", "m", false, t);
        }
        assert!(b.admit(&s, "p", "m", 10));
        assert!(b.snapshot().is_empty());
    }

    #[test]
    fn settings_are_bounded() {
        let bad = |s: Settings| s.validate().unwrap_err().field;
        assert_eq!(
            bad(Settings {
                failures: 0,
                ..settings()
            }),
            "failures"
        );
        assert_eq!(
            bad(Settings {
                cooldown_ms: MAX_COOLDOWN_MS + 1,
                ..settings()
            }),
            "cooldown_ms"
        );
    }
}
