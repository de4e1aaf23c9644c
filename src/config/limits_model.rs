//! The `rate_limits:` section and the route-level `rate_limit` list, as validated values.

use std::time::Duration;

use http::HeaderName;

use super::decode::Spanned;

/// One part of a rate-limit key; several parts make a composite key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The authenticated consumer (JWT `sub` or API-key consumer).
    Consumer,
    Ip,
    Header(HeaderName),
    /// A claim of the verified JWT.
    Claim(String),
}

/// `requests` per `per`; with `token_bucket`, up to `burst` at once (default `requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u64,
    pub per: Duration,
    pub burst: u64,
}

/// How a policy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// GCRA: one theoretical arrival time per key and limit; a request is admitted when it
    /// arrives no earlier than `burst` emission intervals before it. Exact.
    TokenBucket,
    /// A weighted two-window counter per key and limit (the previous fixed window's count,
    /// weighted by how much of it the sliding window still covers, plus the current one's).
    SlidingWindow,
}

/// What to do when a request lacks a part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    /// 401 when the consumer or a claim is missing, 400 when a header is.
    Reject,
    /// Limit by client IP instead.
    Ip,
}

/// Where a policy keeps its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// In this process (exact per-key state); each instance counts on its own.
    Local,
    /// In the shared Redis of the top-level `redis:` section.
    Redis { on_error: OnStoreError },
}

/// What a `store: redis` policy does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Admit the request unlimited by this policy (fail open).
    Allow,
    /// Refuse it with 429 (fail closed).
    Deny,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub name: Spanned<String>,
    pub key: Vec<KeyPart>,
    pub limits: Vec<Limit>,
    pub missing_key: MissingKey,
    pub store: Store,
    /// Plan name (from API keys or a `plan` claim) -> limits replacing `limits`.
    pub plans: Vec<(String, Vec<Limit>)>,
    pub algorithm: Algorithm,
    /// Keys the local store reserves room for at start (it grows up to `max_keys`).
    pub expected_keys: usize,
    /// The most keys the local store holds; idle keys make room, a key inside its window is
    /// never dropped.
    pub max_keys: usize,
    /// Also send `X-RateLimit-Limit/Remaining/Reset`.
    pub legacy_headers: bool,
    /// IPv6 clients are keyed by their network of this prefix length (a client usually holds
    /// a whole /64, so per-/128 keys would give it 2^64 buckets).
    pub ipv6_prefix: u8,
}
