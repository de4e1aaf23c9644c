//! A million distinct keys in the local store: every one is admitted (two keys never share a
//! counter, so no key is refused for another's usage), and the memory they take, measured as
//! the growth of this process's resident set, stays well inside the gateway's budget.

use std::time::Duration;

use portcullis::config::{Algorithm, Limit};
use portcullis::limits::local::{Decision, LocalStore};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn a_million_keys_are_each_counted_exactly_in_bounded_memory() {
    const KEYS: usize = 1_000_000;
    for algorithm in [Algorithm::TokenBucket, Algorithm::SlidingWindow] {
        let limits = [
            Limit {
                requests: 1,
                per: Duration::from_secs(3600),
                burst: 1,
            },
            Limit {
                requests: 5,
                per: Duration::from_secs(1),
                burst: 5,
            },
        ];
        let windows: Vec<Duration> = limits.iter().map(|l| l.per).collect();
        let before = rss_bytes();
        let store = LocalStore::new(algorithm, &windows, 10_000, KEYS);
        let mut refused = 0;
        for i in 0..KEYS {
            // IPv4-address-like keys, as `key: ip` stores them.
            let key = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            match store.acquire(&key, &limits, store.now()) {
                Decision::Decided(u) if !u.iter().any(|u| u.exceeded) => {}
                _ => refused += 1,
            }
        }
        let grown = rss_bytes().saturating_sub(before);
        eprintln!(
            "{algorithm:?}: {KEYS} keys, {refused} refused, resident set grew {} MiB ({} bytes per key)",
            grown >> 20,
            grown / KEYS as u64
        );
        assert_eq!(refused, 0, "{algorithm:?}: a fresh key was refused");
        assert_eq!(store.len(), KEYS);
        // Each key is inside its one-hour window: its next request is refused, exactly.
        assert!(matches!(
            store.acquire("10.0.0.7", &limits, store.now()),
            Decision::Decided(u) if u[0].exceeded
        ));
        // Measured 92-95 MiB (about 96 bytes per key: a 64-byte table entry with the key and
        // both windows inline, at the table's load); it was 142 MiB with a boxed key and boxed
        // slots in power-of-two shards. This bound catches regressions.
        assert!(
            grown < 120 << 20,
            "{algorithm:?}: {} MiB for {KEYS} keys",
            grown >> 20
        );
        drop(store);
    }
}
