//! The verified-token cache: a client that reuses its token does not pay the signature check
//! every time. Entries are keyed by the SHA-256 of the token's exact bytes, bounded in number,
//! never kept past the token's expiry (or `max_age`), and ignored once the key set changes.
//! Only successful verifications are cached, so a failure is always re-checked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{digest, SHA256};

use super::Identity;

const SHARDS: usize = 16;

struct Entry {
    identity: Identity,
    /// Unix seconds after which the entry is no longer valid.
    valid_until: f64,
    /// The key-set generation the token was verified against.
    generation: u64,
}

pub struct TokenCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Entry>>>,
    per_shard: usize,
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
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        })
    }

    pub fn key(token: &str) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(&digest(&SHA256, token.as_bytes()).as_ref()[..32]);
        k
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Entry>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    pub fn get(&self, key: &[u8; 32], generation: u64) -> Option<Identity> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let entry = shard.get(key)?;
        if entry.generation == generation && now_secs() < entry.valid_until {
            return Some(entry.identity.clone());
        }
        shard.remove(key);
        None
    }

    pub fn put(&self, key: [u8; 32], identity: &Identity, valid_until: f64, generation: u64) {
        let mut shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard {
            // Drop expired entries first; if still full, drop an arbitrary one.
            let now = now_secs();
            shard.retain(|_, e| e.valid_until > now && e.generation == generation);
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            key,
            Entry {
                identity: identity.clone(),
                valid_until,
                generation,
            },
        );
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

    fn id() -> Identity {
        Identity {
            consumer: "a".into(),
            plan: None,
            scopes: vec![],
            roles: vec![],
            claims: vec![],
        }
    }

    #[test]
    fn bounded_expiring_and_generation_checked() {
        let cache = TokenCache::new(32).expect("enabled");
        let k = TokenCache::key("t1");
        cache.put(k, &id(), now_secs() + 60.0, 1);
        assert!(cache.get(&k, 1).is_some());
        assert!(cache.get(&k, 2).is_none(), "a new key set invalidates");
        cache.put(k, &id(), now_secs() - 1.0, 1);
        assert!(cache.get(&k, 1).is_none(), "never past expiry");
        for i in 0..1000 {
            cache.put(TokenCache::key(&format!("t{i}")), &id(), now_secs() + 60.0, 1);
        }
        assert!(cache.entry_count() <= 32, "{}", cache.entry_count());
        assert!(TokenCache::new(0).is_none());
    }
}
