//! The rendered-prompt cache: whole utterances already synthesised, kept by voice, rate,
//! pitch and text, so a prompt said on every call (a greeting, "sorry, could you repeat
//! that?") costs no synthesis after the first time.
//!
//! Bounded by bytes, not entries: each entry costs its samples, its word marks and its
//! key. Least recently used entries go first ("LRU-ish": a use stamps the entry with a
//! counter and eviction scans for the oldest stamp, O(entries), which at a few hundred
//! entries is cheaper than keeping a list in order). One entry may take at most a quarter
//! of the cache, so a single long utterance never flushes every prompt.
//!
//! It never synthesises and never blocks beyond its own short mutex; it holds only
//! finished utterances (an utterance that was cancelled or failed is never stored).

use std::collections::HashMap;
use std::sync::Arc;

use super::speech::WordMark;

/// What an utterance was rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Voice name, `+variant` included.
    pub voice: String,
    /// Words per minute.
    pub rate_wpm: u32,
    /// Base pitch.
    pub pitch: u8,
    /// The text, exactly as given.
    pub text: String,
}

/// A finished utterance.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// All of its audio.
    pub samples: Arc<[i16]>,
    /// All of its words, in order.
    pub words: Vec<WordMark>,
}

/// Bookkeeping bytes counted per entry on top of its samples, marks and key.
const ENTRY_OVERHEAD: usize = 96;

struct Entry {
    rendered: Rendered,
    cost: usize,
    used: u64,
}

/// Finished utterances by [`Key`], at most `capacity` bytes of them.
pub struct Cache {
    capacity: usize,
    bytes: usize,
    clock: u64,
    entries: HashMap<Key, Entry>,
}

impl Cache {
    /// An empty cache holding at most `capacity` bytes; 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            bytes: 0,
            clock: 0,
            entries: HashMap::new(),
        }
    }

    /// Whether anything can ever be stored.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The largest utterance, in bytes of samples, worth keeping while it is synthesised.
    pub fn max_entry_bytes(&self) -> usize {
        self.capacity / 4
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The utterance rendered from `key`, marked as just used.
    pub fn get(&mut self, key: &Key) -> Option<Rendered> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.used = self.clock;
        Some(entry.rendered.clone())
    }

    /// Keeps `rendered` under `key`, evicting the least recently used entries to make
    /// room; an utterance larger than [`Cache::max_entry_bytes`] is not kept.
    pub fn insert(&mut self, key: Key, rendered: Rendered) {
        let cost = cost(&key, &rendered);
        if cost > self.max_entry_bytes() {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.cost;
        }
        while self.bytes + cost > self.capacity {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.cost;
            }
        }
        self.clock += 1;
        self.bytes += cost;
        let used = self.clock;
        self.entries.insert(
            key,
            Entry {
                rendered,
                cost,
                used,
            },
        );
    }
}

fn cost(key: &Key, rendered: &Rendered) -> usize {
    std::mem::size_of_val(&*rendered.samples)
        + std::mem::size_of_val(rendered.words.as_slice())
        + key.voice.len()
        + key.text.len()
        + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key {
            voice: "en-us".into(),
            rate_wpm: 175,
            pitch: 50,
            text: text.into(),
        }
    }

    fn audio(samples: usize) -> Rendered {
        Rendered {
            samples: vec![7; samples].into(),
            words: vec![],
        }
    }

    #[test]
    fn evicts_the_least_recently_used_to_stay_within_its_bytes() {
        // Room for four 9 000-byte utterances (and their keys), not five.
        let mut cache = Cache::new(40_000);
        for text in ["a", "b", "c", "d"] {
            cache.insert(key(text), audio(4_500));
        }
        assert_eq!(cache.len(), 4);
        assert!(cache.get(&key("a")).is_some(), "a is now the most recent");
        cache.insert(key("e"), audio(4_500));
        assert!(cache.bytes() <= 40_000);
        assert_eq!(cache.len(), 4);
        assert!(
            cache.get(&key("b")).is_none(),
            "b was the least recently used"
        );
        for kept in ["a", "c", "d", "e"] {
            assert!(cache.get(&key(kept)).is_some(), "{kept}");
        }
    }

    #[test]
    fn keys_differ_by_voice_rate_pitch_and_text() {
        let mut cache = Cache::new(1 << 20);
        cache.insert(key("hello"), audio(10));
        for other in [
            Key {
                voice: "en-us+f3".into(),
                ..key("hello")
            },
            Key {
                rate_wpm: 176,
                ..key("hello")
            },
            Key {
                pitch: 51,
                ..key("hello")
            },
            key("hello."),
        ] {
            assert!(cache.get(&other).is_none(), "{other:?}");
        }
        assert_eq!(cache.get(&key("hello")).unwrap().samples.len(), 10);
    }

    #[test]
    fn an_utterance_over_a_quarter_of_the_cache_is_not_kept() {
        let mut cache = Cache::new(40_000);
        cache.insert(key("small"), audio(100));
        cache.insert(key("huge"), audio(6_000));
        assert!(cache.get(&key("huge")).is_none());
        assert!(
            cache.get(&key("small")).is_some(),
            "nothing was evicted for it"
        );
        let mut off = Cache::new(0);
        off.insert(key("small"), audio(1));
        assert_eq!((off.len(), off.bytes()), (0, 0));
    }

    #[test]
    fn storing_a_key_again_replaces_it_without_counting_it_twice() {
        let mut cache = Cache::new(1 << 20);
        cache.insert(key("x"), audio(100));
        let once = cache.bytes();
        cache.insert(key("x"), audio(100));
        assert_eq!((cache.len(), cache.bytes()), (1, once));
    }
}
