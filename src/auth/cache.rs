//! Verified bearer tokens, so a token a client sends with every call is verified once: keyed by
//! the token's SHA-256 (the token itself is not kept), bounded in size, and each entry good only
//! while its token is. When full, the entry that lapses soonest (a lapsed one first) makes
//! room, found in an ordered index rather than by a scan, so a full cache costs no more.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::clock::UnixMillis;

use super::Identity;

/// The SHA-256 of a presented secret.
pub type Digest = [u8; 32];

/// One verified token: who it is, and the instants (server clock, leeway included) between
/// which it is accepted.
#[derive(Debug, Clone)]
pub struct Verified {
    pub identity: Identity,
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
    entries: Mutex<Entries>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<Digest, Verified>,
    /// (valid until, digest) of every entry, soonest to lapse first.
    by_lapse: BTreeSet<(UnixMillis, Digest)>,
}

impl Entries {
    fn remove(&mut self, digest: &Digest) {
        if let Some(old) = self.by_digest.remove(digest) {
            self.by_lapse.remove(&(old.valid_until_ms, *digest));
        }
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token's entry if it is valid at `now_ms`; an entry past its token's validity is
    /// dropped, and the token is verified again (and refused) by the caller.
    pub fn get(&self, digest: &Digest, now_ms: UnixMillis) -> Option<Identity> {
        let mut entries = self.lock();
        let entry = entries.by_digest.get(digest)?;
        if entry.is_valid_at(now_ms) {
            return Some(entry.identity.clone());
        }
        entries.remove(digest);
        None
    }

    /// Remembers a verified token; when full, the entry that lapses soonest makes room (its
    /// token, if still good, is verified again when next seen).
    pub fn insert(&self, digest: Digest, verified: Verified) {
        let mut entries = self.lock();
        entries.remove(&digest);
        if entries.by_digest.len() >= self.capacity {
            if let Some((_, soonest)) = entries.by_lapse.first().copied() {
                entries.remove(&soonest);
            }
        }
        entries.by_lapse.insert((verified.valid_until_ms, digest));
        entries.by_digest.insert(digest, verified);
    }

    pub fn len(&self) -> usize {
        self.lock().by_digest.len()
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
            identity: Identity::new("c", Vec::new()),
            valid_from_ms: 0,
            valid_until_ms: until_ms,
        }
    }

    #[test]
    fn an_entry_lapses_with_its_token() {
        let cache = TokenCache::new(4);
        cache.insert([1; 32], verified(1_000));
        assert!(cache.get(&[1; 32], 1_000).is_some());
        assert!(cache.get(&[1; 32], 1_001).is_none());
        assert!(cache.is_empty(), "a lapsed entry is dropped");
    }

    #[test]
    fn a_full_cache_makes_room_by_the_entry_that_lapses_soonest() {
        let cache = TokenCache::new(2);
        cache.insert([1; 32], verified(10));
        cache.insert([2; 32], verified(2_000));
        cache.insert([3; 32], verified(1_000));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&[1; 32], 5).is_none(),
            "the soonest to lapse made room"
        );
        cache.insert([4; 32], verified(3_000));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&[3; 32], 500).is_none());
        assert!(cache.get(&[2; 32], 500).is_some() && cache.get(&[4; 32], 500).is_some());
        cache.insert([4; 32], verified(500));
        assert_eq!(cache.len(), 2, "a token verified again replaces its entry");
    }
}
