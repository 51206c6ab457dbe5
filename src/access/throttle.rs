//! Throttling failed authentication per client address, so that guessing
//! keys costs the guesser time and a stranger cannot fill the disk with
//! refusals.
//!
//! Each refusal takes a cell from the address's GCRA bucket (`burst` at
//! once, `per_minute` refilled evenly). When the bucket is empty the address
//! is *blocked* until the next cell is due: its requests get 429 before any
//! key is looked up, valid key or not. Only the first refusal per address
//! per minute is traced (see docs/AUDIT.md); all are counted.
//!
//! IPv6 clients are keyed by their /64, which one host usually owns whole.
//! Memory stays bounded: the blocked and sampled sets are capped caches, and
//! the bucket map is pruned of settled addresses every `PRUNE_EVERY` refusals.

use crate::config::AuthThrottleConfig;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::sync::Cache;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TRACKED_MAX: u64 = 100_000;
const PRUNE_EVERY: u64 = 1024;
const SAMPLE_PERIOD: Duration = Duration::from_secs(60);

pub struct AuthThrottle {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    blocked_until: Cache<IpAddr, Instant>,
    sampled: Cache<IpAddr, ()>,
    refusals: AtomicU64,
    /// When the last block ends, in ms after `epoch`: while none is in
    /// force, a request costs one atomic load here.
    blocks_end_ms: AtomicU64,
    epoch: Instant,
}

impl AuthThrottle {
    pub fn new(cfg: AuthThrottleConfig) -> AuthThrottle {
        let quota = Quota::per_minute(cfg.per_minute).allow_burst(cfg.burst);
        let clock = DefaultClock::default();
        let longest_block = quota.replenish_interval();
        AuthThrottle {
            buckets: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
            blocked_until: Cache::builder()
                .max_capacity(TRACKED_MAX)
                .time_to_live(longest_block.max(Duration::from_secs(1)))
                .build(),
            sampled: Cache::builder()
                .max_capacity(TRACKED_MAX)
                .time_to_live(SAMPLE_PERIOD)
                .build(),
            refusals: AtomicU64::new(0),
            blocks_end_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Before any key lookup: how long `peer` must still wait, if it is
    /// blocked.
    pub fn blocked(&self, peer: IpAddr) -> Option<Duration> {
        if self.ms_since_epoch(Instant::now()) >= self.blocks_end_ms.load(Ordering::Relaxed) {
            return None;
        }
        let until = self.blocked_until.get(&key(peer))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Whether this refusal of `peer` is the address's traced sample:
    /// the first in each period.
    pub fn sample(&self, peer: IpAddr) -> bool {
        self.sampled.entry(key(peer)).or_insert(()).is_fresh()
    }

    /// Records a failed authentication of `peer`; when that used up its
    /// budget, the address is now blocked for the returned time.
    pub fn failed(&self, peer: IpAddr) -> Option<Duration> {
        let peer = key(peer);
        if self.refusals.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.buckets.retain_recent();
            self.buckets.shrink_to_fit();
        }
        let not_until = self.buckets.check_key(&peer).err()?;
        let wait = not_until
            .wait_time_from(self.clock.now())
            .max(Duration::from_millis(1));
        let until = Instant::now() + wait;
        self.blocked_until.insert(peer, until);
        self.blocks_end_ms
            .fetch_max(self.ms_since_epoch(until) + 1, Ordering::Relaxed);
        Some(wait)
    }

    fn ms_since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

/// The address a client is throttled by: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// When the server did not say who the client is, all such requests share
/// one address (and one budget).
pub const UNKNOWN_PEER: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Whole seconds to put in `Retry-After`, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn throttle(per_minute: u32, burst: u32) -> AuthThrottle {
        AuthThrottle::new(AuthThrottleConfig {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn burst_then_blocked_and_sampled_once_per_address() {
        let t = throttle(60, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.blocked(a).is_none());
            assert!(t.failed(a).is_none());
        }
        let wait = t.failed(a).expect("the fourth failure is over the burst");
        assert!(wait <= Duration::from_secs(1));
        assert!(t.blocked(a).is_some());
        assert!(t.blocked(b).is_none());
        assert!(t.sample(a));
        assert!(!t.sample(a));
        assert!(t.sample(b));
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
