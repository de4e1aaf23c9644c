//! Rate-limit decisions in the local store, per algorithm, with one key and with 1,000,000 keys
//! (the default `max_keys`, every key present: the table at its largest, lookups missing the
//! CPU caches). One decision = `acquire` of two limits (per second and per hour), as a policy
//! with two windows makes. Run with `cargo bench --bench ratelimit`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::config::{Algorithm, Limit};
use portcullis::limits::local::{Decision, LocalStore};

const KEYS: usize = 1_000_000;

fn limits() -> [Limit; 2] {
    [
        Limit {
            requests: 1_000_000_000,
            per: Duration::from_secs(1),
            burst: 1_000_000_000,
        },
        Limit {
            requests: 1_000_000_000,
            per: Duration::from_secs(3600),
            burst: 1_000_000_000,
        },
    ]
}

/// IPv4-address-like keys, as `key: ip` stores them.
fn key(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn decisions(c: &mut Criterion) {
    let limits = limits();
    let windows: Vec<Duration> = limits.iter().map(|l| l.per).collect();
    for (name, algorithm) in [
        ("token_bucket", Algorithm::TokenBucket),
        ("sliding_window", Algorithm::SlidingWindow),
    ] {
        let one = LocalStore::new(algorithm, &windows, 10_000, KEYS);
        c.bench_function(&format!("ratelimit/{name}/1 key"), |b| {
            b.iter(|| {
                let d = one.acquire(black_box("10.0.0.1"), &limits, one.now());
                assert!(matches!(d, Decision::Decided(_)));
            })
        });

        let many = LocalStore::new(algorithm, &windows, 10_000, KEYS);
        let keys: Vec<String> = (0..KEYS).map(key).collect();
        for k in &keys {
            many.acquire(k, &limits, many.now());
        }
        assert_eq!(many.len(), KEYS);
        let mut i = 0usize;
        c.bench_function(&format!("ratelimit/{name}/1M keys"), |b| {
            b.iter(|| {
                // A stride that visits every key before repeating, in no cache-friendly order.
                i = (i + 7919) % KEYS;
                let k = keys.get(i).map_or("", String::as_str);
                let d = many.acquire(black_box(k), &limits, many.now());
                assert!(matches!(d, Decision::Decided(_)));
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = decisions
}
criterion_main!(benches);
