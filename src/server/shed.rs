//! The connections of one listener, so that when the cap is reached the
//! one idle longest can be told to close and make room. Touched on accept,
//! on close and at the cap, never per request.

use super::activity::Activity;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A connection's place in the registry, removed on drop.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Registry {
    pub fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registration {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(id, activity);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Asks the connection idle longest (nothing in flight) to close;
    /// false when every connection is busy.
    pub fn shed_idlest(&self) -> bool {
        let conns = self.lock();
        let idlest = conns
            .values()
            .filter_map(|a| a.idle_since().map(|since| (since, a)))
            .filter(|(_, a)| !a.chosen_for_shedding())
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, a)) => {
                a.request_shed();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
