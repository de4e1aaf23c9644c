//! API keys: the presented key is hashed with SHA-256 and looked up; the stored hash is then
//! compared in constant time. Raw keys are never stored or logged.

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{digest, SHA256};

use crate::config::ApiKeyEntry;

#[derive(Debug)]
pub struct ApiKeys {
    entries: Vec<ApiKeyEntry>,
    by_hash: HashMap<[u8; 32], usize>,
}

impl ApiKeys {
    pub fn new(entries: Vec<ApiKeyEntry>) -> ApiKeys {
        let by_hash = entries.iter().enumerate().map(|(i, e)| (e.sha256, i)).collect();
        ApiKeys { entries, by_hash }
    }

    /// The entry for `key`, if it is a known key.
    pub fn lookup(&self, key: &str) -> Option<&ApiKeyEntry> {
        let hash = digest(&SHA256, key.as_bytes());
        let hash = hash.as_ref();
        let mut wanted = [0u8; 32];
        wanted.copy_from_slice(hash.get(..32)?);
        let entry = self.entries.get(*self.by_hash.get(&wanted)?)?;
        verify_slices_are_equal(&entry.sha256, &wanted).ok()?;
        Some(entry)
    }
}

/// Lower-case hex SHA-256, as `keys_file` stores it (used by tests and documentation tools).
pub fn sha256_hex(key: &str) -> String {
    digest(&SHA256, key.as_bytes())
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
        assert_eq!(keys.lookup("secret-1").map(|e| e.consumer.as_str()), Some("acme"));
        assert!(keys.lookup("secret-2").is_none());
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
