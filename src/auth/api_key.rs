//! API keys: the presented key is hashed with SHA-256 and looked up; the stored hash is then
//! compared in constant time. Raw keys are never stored or logged.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};

use super::{Identity, Words};
use crate::config::ApiKeyEntry;

#[derive(Debug)]
pub struct ApiKeys {
    /// Each key's hash and the identity it stands for, built once per snapshot so a lookup
    /// hands out a shared reference instead of copying the consumer's fields.
    entries: Vec<([u8; 32], Arc<Identity>)>,
    by_hash: HashMap<[u8; 32], usize>,
}

impl ApiKeys {
    pub fn new(entries: Vec<ApiKeyEntry>) -> ApiKeys {
        let by_hash = entries.iter().enumerate().map(|(i, e)| (e.sha256, i)).collect();
        let entries = entries
            .into_iter()
            .map(|e| {
                let identity = Identity {
                    consumer: e.consumer,
                    plan: e.plan,
                    scopes: Words::new(e.scopes.iter().map(String::as_str)),
                    roles: Words::new(e.roles.iter().map(String::as_str)),
                    claims: Vec::new(),
                };
                (e.sha256, Arc::new(identity))
            })
            .collect();
        ApiKeys { entries, by_hash }
    }

    /// The identity of `key`, if it is a known key.
    pub fn lookup(&self, key: &str) -> Option<Arc<Identity>> {
        let hash = digest(&SHA256, key.as_bytes());
        let hash = hash.as_ref();
        let mut wanted = [0u8; 32];
        wanted.copy_from_slice(hash.get(..32)?);
        let (sha256, identity) = self.entries.get(*self.by_hash.get(&wanted)?)?;
        verify_slices_are_equal(sha256, &wanted).ok()?;
        Some(Arc::clone(identity))
    }
}

/// Lower-case hex SHA-256, as `keys_file` stores it (used by tests and documentation tools).
pub fn sha256_hex(key: &str) -> String {
    sha256_hex_bytes(key.as_bytes())
}

/// Lower-case hex SHA-256 of `bytes` (file contents compared across reloads).
pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_by_hash() {
        let mut sha = [0u8; 32];
        sha.copy_from_slice(digest(&SHA256, b"secret-1").as_ref());
        let keys = ApiKeys::new(vec![ApiKeyEntry {
            sha256: sha,
            consumer: "acme".into(),
            plan: None,
            scopes: vec![],
            roles: vec![],
        }]);
        assert_eq!(
            keys.lookup("secret-1").map(|e| e.consumer.clone()).as_deref(),
            Some("acme")
        );
        assert!(keys.lookup("secret-2").is_none());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
