//! Dashboard sessions: who signed in to `/ui/` with the admin credential.
//!
//! Kept in memory only (lost on restart, which just means signing in again):
//! a map from the BLAKE3 hash of the random session id to its expiry and its
//! CSRF token. Keying by the hash means a lookup never compares the secret
//! itself, and a memory dump of the map does not hold usable cookies. The
//! map is bounded: expired sessions are pruned on every sign-in, and beyond
//! `MAX_SESSIONS` the oldest goes.

use base64::Engine;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_SESSIONS: usize = 10_000;

/// A signed-in session as a handler sees it.
#[derive(Clone, Debug)]
pub struct UiSession {
    /// The token every mutating form of this session must carry.
    pub csrf: String,
}

struct Entry {
    created: Instant,
    expires: Instant,
    csrf: String,
}

pub struct UiSessions {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

impl UiSessions {
    pub fn new(ttl: Duration) -> UiSessions {
        UiSessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts from sign-in (also the cookie's Max-Age).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session; returns its id, the cookie value (256 random bits,
    /// base64url).
    pub fn create(&self) -> String {
        let id = random_token();
        let now = Instant::now();
        let entry = Entry {
            created: now,
            expires: now + self.ttl,
            csrf: random_token(),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(hash(&id), entry);
        id
    }

    /// The live session with this cookie value, if any.
    pub fn get(&self, id: &str) -> Option<UiSession> {
        let key = hash(id);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(e) if e.expires > Instant::now() => Some(UiSession {
                csrf: e.csrf.clone(),
            }),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session with this cookie value (signing out).
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash(id));
    }
}

fn hash(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

fn random_token() -> String {
    let mut buf = [0u8; 32];
    // The OS RNG failing means no secure session can be made at all.
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Equality that takes the same time wherever the first difference is.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_expire_and_end() {
        let s = UiSessions::new(Duration::from_secs(60));
        let a = s.create();
        let b = s.create();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let sa = s.get(&a).expect("live");
        assert_ne!(sa.csrf, s.get(&b).unwrap().csrf);
        assert!(s.get("nope").is_none());
        s.remove(&a);
        assert!(s.get(&a).is_none());
        let short = UiSessions::new(Duration::ZERO);
        let c = short.create();
        assert!(short.get(&c).is_none());
    }

    #[test]
    fn secret_comparison() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
