//! Verified bearer tokens, so a token a client sends with every call is verified once: keyed by
//! the token's SHA-256 (the token itself is not kept), bounded in size, and each entry good only
//! while its token is.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::clock::UnixMillis;

use super::Caller;

/// The SHA-256 of a presented secret.
pub type Digest = [u8; 32];

/// One verified token: who it is, and the instants (server clock, leeway included) between
/// which it is accepted.
#[derive(Debug, Clone)]
pub struct Verified {
    pub caller: Caller,
    pub valid_from_ms: UnixMillis,
    pub valid_until_ms: UnixMillis,
}

impl Verified {
    pub fn is_valid_at(&self, now_ms: UnixMillis) -> bool {
        (self.valid_from_ms..=self.valid_until_ms).contains(&now_ms)
    }
}

#[derive(Debug)]
pub struct TokenCache {
    entries: Mutex<HashMap<Digest, Verified>>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::with_capacity(capacity.min(1024))),
            capacity: capacity.max(1),
        }
    }

    /// The token's entry if it is valid at `now_ms`; an entry past its token's validity is
    /// dropped, and the token is verified again (and refused) by the caller.
    pub fn get(&self, digest: &Digest, now_ms: UnixMillis) -> Option<Caller> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(digest)?;
        if entry.is_valid_at(now_ms) {
            return Some(entry.caller.clone());
        }
        entries.remove(digest);
        None
    }

    /// Remembers a verified token. When full, entries no longer valid go first, and if none
    /// has lapsed one arbitrary entry makes room (its token is verified again when next seen).
    pub fn insert(&self, digest: Digest, verified: Verified, now_ms: UnixMillis) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, entry| entry.is_valid_at(now_ms));
            if entries.len() >= self.capacity {
                if let Some(victim) = entries.keys().next().copied() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(digest, verified);
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(until_ms: UnixMillis) -> Verified {
        Verified {
            caller: Caller::new("c", Vec::new()),
            valid_from_ms: 0,
            valid_until_ms: until_ms,
        }
    }

    #[test]
    fn an_entry_lapses_with_its_token() {
        let cache = TokenCache::new(4);
        cache.insert([1; 32], verified(1_000), 0);
        assert!(cache.get(&[1; 32], 1_000).is_some());
        assert!(cache.get(&[1; 32], 1_001).is_none());
        assert!(cache.is_empty(), "a lapsed entry is dropped");
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_drops_lapsed_entries_first() {
        let cache = TokenCache::new(2);
        cache.insert([1; 32], verified(10), 0);
        cache.insert([2; 32], verified(1_000), 0);
        cache.insert([3; 32], verified(1_000), 500);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[1; 32], 5).is_none(), "the lapsed one made room");
        cache.insert([4; 32], verified(1_000), 500);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[4; 32], 500).is_some());
    }
}
