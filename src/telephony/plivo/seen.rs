//! A bounded memory of keys already seen: Plivo's callback retries, and the signature
//! nonces of WebSocket upgrades (a captured upgrade replayed with the same nonce).
//!
//! It remembers at most `capacity` keys; beyond that the oldest is forgotten first, so
//! memory stays fixed however many requests arrive. A key is "new" again once forgotten:
//! callers say how long that takes at their traffic (100,000 keys is hours of calls).
//! Touched once per request, never per frame; the lock is never held across an await.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Keys seen, oldest forgotten first.
#[derive(Debug)]
pub struct SeenOnce {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl SeenOnce {
    /// An empty memory of at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// True the first time `key` is seen (while it is remembered); records it.
    pub fn first_time(&self, key: &str) -> bool {
        // A panic while holding the lock cannot leave the two halves apart: recover it.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.set.contains(key) {
            return false;
        }
        if seen.order.len() == self.capacity
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.set.remove(&oldest);
        }
        let key: Arc<str> = key.into();
        seen.set.insert(Arc::clone(&key));
        seen.order.push_back(key);
        true
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .order
            .len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_new_once_and_then_seen() {
        let seen = SeenOnce::new(10);
        assert!(seen.first_time("nonce-1"));
        assert!(!seen.first_time("nonce-1"));
        assert!(seen.first_time("nonce-2"));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_is_forgotten_first() {
        let seen = SeenOnce::new(3);
        for key in ["a", "b", "c", "d"] {
            assert!(seen.first_time(key));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.first_time("d") && !seen.first_time("b"));
        assert!(seen.first_time("a"), "the oldest was forgotten");
    }
}
