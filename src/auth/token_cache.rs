//! The verified-token cache: a client that reuses its token does not pay the signature check
//! every time. Entries are keyed by the token's exact bytes, bounded in number, never kept
//! past the token's expiry (or `max_age`), and ignored once the key set changes. Only
//! successful verifications are cached, so a failure is always re-checked.
//!
//! The map hashes with aHash, randomly keyed per process, so clients cannot aim tokens at one
//! bucket (std's SipHash cost about 0.7k instructions per 200-byte token), and a hit compares
//! the whole token, so no other token can match an entry. (A
//! SHA-256 digest as the key cost more than the rest of a cached verification.) Tokens longer
//! than [`MAX_CACHED_TOKEN`] are verified every time, which bounds the cache's memory at about
//! `1.25 × cache_entries × 4 KiB` (each shard has a quarter of headroom).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Identity;

const SHARDS: usize = 16;

/// The longest token kept in the cache (real JWTs are well under 2 KiB).
pub const MAX_CACHED_TOKEN: usize = 4096;

struct Entry {
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is no longer valid.
    valid_until: f64,
    /// The key-set generation the token was verified against.
    generation: u64,
}

pub struct TokenCache {
    shards: Vec<Mutex<HashMap<Box<str>, Entry, ahash::RandomState>>>,
    per_shard: usize,
    capacity: usize,
}

pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl TokenCache {
    /// `None` when `capacity` is 0 (caching disabled).
    pub fn new(capacity: usize) -> Option<TokenCache> {
        (capacity > 0).then(|| TokenCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(ahash::RandomState::new())))
                .collect(),
            // A quarter of headroom: `capacity` tokens never spread evenly over the shards,
            // and a shard that overflows early would evict tokens the operator sized for.
            per_shard: (capacity.div_ceil(SHARDS) * 5).div_ceil(4),
            capacity,
        })
    }

    /// Shards only spread lock contention, so a cheap mix of the token's last bytes (the
    /// signature's, effectively random for real tokens) picks one.
    fn shard(&self, token: &str) -> &Mutex<HashMap<Box<str>, Entry, ahash::RandomState>> {
        let tail = token.as_bytes().iter().rev().take(4);
        let mix = tail.fold(token.len(), |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        &self.shards[mix % SHARDS]
    }

    pub fn get(&self, token: &str, generation: u64) -> Option<Arc<Identity>> {
        let mut shard = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
        let entry = shard.get(token)?;
        if entry.generation == generation && now_secs() < entry.valid_until {
            return Some(Arc::clone(&entry.identity));
        }
        shard.remove(token);
        None
    }

    pub fn put(&self, token: &str, identity: &Arc<Identity>, valid_until: f64, generation: u64) {
        if token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let mut shard = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard {
            // Drop expired entries first; if still full, drop an arbitrary one.
            let now = now_secs();
            shard.retain(|_, e| e.valid_until > now && e.generation == generation);
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.keys().next().cloned() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            token.into(),
            Entry {
                identity: Arc::clone(identity),
                valid_until,
                generation,
            },
        );
    }

    /// The capacity it was sized for (at least this many entries fit).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[cfg(test)]
    pub fn entry_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Arc<Identity> {
        Arc::new(Identity {
            consumer: "a".into(),
            plan: None,
            scopes: Default::default(),
            roles: Default::default(),
            claims: vec![],
        })
    }

    #[test]
    fn bounded_expiring_and_generation_checked() {
        let cache = TokenCache::new(32).expect("enabled");
        cache.put("t1", &id(), now_secs() + 60.0, 1);
        assert!(cache.get("t1", 1).is_some());
        assert!(cache.get("t1x", 1).is_none(), "only the exact token matches");
        assert!(cache.get("t", 1).is_none(), "only the exact token matches");
        assert!(cache.get("t1", 2).is_none(), "a new key set invalidates");
        cache.put("t1", &id(), now_secs() - 1.0, 1);
        assert!(cache.get("t1", 1).is_none(), "never past expiry");
        for i in 0..1000 {
            cache.put(&format!("t{i}"), &id(), now_secs() + 60.0, 1);
        }
        assert!(cache.entry_count() <= 48, "{}", cache.entry_count());
        let roomy = TokenCache::new(10_000).expect("enabled");
        for i in 0..10_000 {
            roomy.put(
                &format!("header.payload.signature-{i}"),
                &id(),
                now_secs() + 60.0,
                1,
            );
        }
        assert_eq!(
            roomy.entry_count(),
            10_000,
            "cache_entries distinct tokens all fit"
        );
        assert!(TokenCache::new(0).is_none());
        let long = "a".repeat(MAX_CACHED_TOKEN + 1);
        cache.put(&long, &id(), now_secs() + 60.0, 1);
        assert!(cache.get(&long, 1).is_none(), "over-long tokens are not kept");
    }
}
