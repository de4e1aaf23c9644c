//! What the verified-token cache really holds per entry, counted by a counting allocator (a
//! test binary of its own, so no other test's allocations are counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::auth::jwt::JwtVerifier;
use portcullis::config::{CredentialSource, JwtConfig, JwtKeySource};
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract; it is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SECRET: &[u8] = b"test-only-hmac-secret-0123456789abcdef";
const ENTRIES: usize = 2_000;

fn verifier(keep_claims: &[&str]) -> JwtVerifier {
    let cfg = JwtConfig {
        issuers: vec!["https://id.example.com".into()],
        audiences: vec![],
        algorithms: vec![Algorithm::HS256],
        keys: JwtKeySource::Secret(SECRET.to_vec()),
        leeway: Duration::from_secs(30),
        max_age: None,
        required_claims: vec![],
        token_from: vec![CredentialSource::Header(http::header::AUTHORIZATION)],
        forward_claims: keep_claims
            .iter()
            .map(|c| (c.to_string(), http::HeaderName::from_static("x-claim")))
            .collect(),
        cache_entries: ENTRIES,
    };
    JwtVerifier::compile(&cfg, &[], None).expect("verifier")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Bytes held per cached entry after verifying `ENTRIES` distinct tokens made by `payload(i)`.
fn bytes_per_entry(v: &JwtVerifier, payload: impl Fn(usize) -> serde_json::Value) -> (usize, usize) {
    let key = EncodingKey::from_secret(SECRET);
    let tokens: Vec<String> = (0..ENTRIES)
        .map(|i| encode(&Header::new(Algorithm::HS256), &payload(i), &key).expect("sign"))
        .collect();
    let token_len = tokens.iter().map(String::len).max().unwrap_or(0);
    // Warm up whatever verification allocates once (lazy statics, the cache's shards).
    let _ = v.verify(&tokens[0]);
    let before = LIVE.load(Ordering::Relaxed);
    for t in &tokens[1..] {
        v.verify(t).expect("valid token");
    }
    let after = LIVE.load(Ordering::Relaxed);
    (((after - before) / (ENTRIES as isize - 1)) as usize, token_len)
}

#[test]
fn a_cached_token_costs_at_most_the_documented_bytes() {
    // A typical token: a handful of claims, two scopes.
    let v = verifier(&["tenant"]);
    let (typical, typical_len) = bytes_per_entry(&v, |i| {
        json!({ "iss": "https://id.example.com", "sub": format!("user-{i}"), "exp": now() + 600,
                "iat": now(), "scope": "orders:read orders:write", "tenant": "acme" })
    });
    // A hostile token just under the cacheable size: its payload spent on hundreds of
    // one-letter scopes and claims.
    let v = verifier(&["tenant"]);
    let (hostile, hostile_len) = bytes_per_entry(&v, |i| {
        let mut claims = json!({ "iss": "https://id.example.com", "sub": format!("u{i}"),
            "exp": now() + 600, "scope": "a ".repeat(600) });
        for c in 0..90 {
            claims[format!("c{c}")] = json!(1);
        }
        claims
    });
    eprintln!(
        "verified-token cache: typical token ({typical_len} B) {typical} B per entry; \
         hostile token ({hostile_len} B) {hostile} B per entry"
    );
    assert!(
        hostile_len <= 4096,
        "the hostile token is cacheable ({hostile_len} B)"
    );
    // The documented bound (docs/config.md): an entry holds at most 2 × the token's length
    // plus 512 bytes, i.e. under 8.5 KiB for the longest cached token.
    assert!(typical <= 2 * typical_len + 512, "typical: {typical} B");
    assert!(hostile <= 2 * hostile_len + 512, "hostile: {hostile} B");
}
