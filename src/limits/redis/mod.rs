//! The Redis store: counters shared by every gateway instance that points at the same Redis.
//!
//! One decision is one round trip: `EVALSHA` of a Lua script that reads every window of the
//! route's `store: redis` policies, decides, and (only when all have room) counts the request,
//! atomically. The algorithms are the local store's (token bucket, sliding window), on the
//! Redis server's clock. A timeout bounds each decision; a breaker stops a dead Redis from
//! costing a timeout on every request. Failures are counted, logged (rate-limited) and answered
//! by each policy's `on_store_error`.
//!
//! The connections are the `redis` crate's ([`link`]): one server, Sentinel or Cluster, TLS and
//! ACL users, which the earlier hand-written client could not reach. Every key of one decision
//! carries the same hash tag (the hashed client key), so a cluster keeps them in one slot and
//! the script stays atomic there too.

mod breaker;
mod link;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::{digest, hmac};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::local::Usage;
use crate::config::Algorithm;
use crate::config::{Limit, RedisConfig};
use crate::observe::metrics;
use breaker::{Admission, Breaker, Transition};
use link::Link;

const SCRIPT: &str = include_str!("script.lua");

/// One window to check: its Redis key and limit.
pub struct Window {
    pub key: String,
    pub limit: Limit,
    pub algorithm: Algorithm,
}

pub struct RedisStore {
    config: RedisConfig,
    /// Where the store is, without credentials (for logs), built once.
    at: String,
    link: Link,
    breaker: Breaker,
    script: redis::Script,
    /// The HMAC key of client keys (`key_secret_*`), or `None` for plain SHA-256.
    key_secret: Option<hmac::Key>,
    /// When a failure was last logged (failures are logged at most once a second).
    last_logged: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("at", &self.at)
            .field("breaker_open", &self.breaker.is_open())
            .finish()
    }
}

/// Why the store could not decide.
#[derive(Debug)]
pub enum StoreError {
    /// No answer within the configured timeout.
    Timeout,
    /// The breaker is open: Redis was not asked.
    BreakerOpen,
    /// No connection could be opened (refused, unreachable, TLS or authentication failed).
    Connect(String),
    /// An open connection failed.
    Io(String),
    /// An answer that is not what the script returns.
    Protocol(String),
    /// Redis answered with an error (script, out of memory, read-only replica, cluster down...).
    Refused(String),
}

impl StoreError {
    /// The bounded `kind` label of the store error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::BreakerOpen => "breaker_open",
            StoreError::Connect(_) => "connect",
            StoreError::Io(_) => "io",
            StoreError::Protocol(_) => "protocol",
            StoreError::Refused(_) => "refused",
        }
    }

    /// Classify a client error; `connecting` when it happened while opening a connection.
    /// Only the error's kind and the server's message are kept: neither carries the password.
    fn from_redis(error: &RedisError, connecting: bool) -> StoreError {
        let text = error.to_string();
        if error.is_timeout() {
            return StoreError::Timeout;
        }
        match error.kind() {
            ErrorKind::AuthenticationFailed
            | ErrorKind::Server(ServerErrorKind::NoPerm)
            | ErrorKind::InvalidClientConfig
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::EmptySentinelList
            | ErrorKind::ClusterConnectionNotFound => StoreError::Connect(text),
            _ if connecting => StoreError::Connect(text),
            ErrorKind::Io => StoreError::Io(text),
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Protocol(text),
            _ => StoreError::Refused(text),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("no answer within the timeout"),
            StoreError::BreakerOpen => f.write_str("breaker open"),
            StoreError::Connect(e) => write!(f, "cannot connect: {e}"),
            StoreError::Io(e) => write!(f, "connection failed: {e}"),
            StoreError::Protocol(e) => write!(f, "protocol error: {e}"),
            StoreError::Refused(e) => write!(f, "redis refused: {e}"),
        }
    }
}

impl RedisStore {
    pub fn new(config: &RedisConfig) -> RedisStore {
        metrics::get()
            .ratelimit_store_breaker_open
            .with_label_values(&["redis"])
            .set(0);
        if config.key_secret.is_none() {
            log::warn!(
                "rate-limit store {}: no redis.key_secret_env / key_secret_file, so client keys are \
                 stored as plain SHA-256: whoever reads Redis can recover IPv4 addresses by trying \
                 them all; set a secret shared by every gateway instance",
                config.display()
            );
        }
        RedisStore {
            config: config.clone(),
            at: config.display(),
            link: Link::new(config),
            breaker: Breaker::new(config.breaker, config.timeout),
            script: redis::Script::new(SCRIPT),
            key_secret: config
                .key_secret
                .as_ref()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, &s.0)),
            last_logged: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The Redis key of `key`'s counters for one policy window:
    /// `PREFIX{TAG}:tb|rl:POLICY:PER_MS`.
    ///
    /// `TAG` is the client key hashed (HMAC-SHA-256 with `key_secret`, else SHA-256), first 16
    /// bytes in hex: header values, consumer ids and addresses stay out of Redis, every key has
    /// the same small size however long the client made its header, and with a secret a stored
    /// key cannot be turned back into the IPv4 address it counts by trying them all. In braces
    /// it is the cluster hash tag, so every window of one client key (all the policies of a
    /// route that count by the same key) lives in one slot. The algorithm is part of the name:
    /// the two keep different Redis types, so a policy whose algorithm changes never meets the
    /// other's state; so is the window, so a changed window never reads old counters.
    pub fn key(&self, policy: &str, algorithm: Algorithm, per: Duration, key: &str) -> String {
        self.key_with_tag(policy, algorithm, per, &self.tag(key))
    }

    /// The hashed client key (see [`RedisStore::key`]); computed once per client key, shared
    /// by the keys of all its windows.
    pub fn tag(&self, key: &str) -> String {
        match &self.key_secret {
            Some(secret) => hex_prefix(hmac::sign(secret, key.as_bytes()).as_ref()),
            None => hex_prefix(digest::digest(&digest::SHA256, key.as_bytes()).as_ref()),
        }
    }

    /// [`RedisStore::key`] with the tag already computed.
    pub fn key_with_tag(&self, policy: &str, algorithm: Algorithm, per: Duration, tag: &str) -> String {
        let kind = match algorithm {
            Algorithm::SlidingWindow => "rl",
            Algorithm::TokenBucket => "tb",
        };
        format!(
            "{}{{{tag}}}:{kind}:{policy}:{}",
            self.config.prefix,
            per.as_millis()
        )
    }

    /// Check every window and count the request in all of them if all have room.
    ///
    /// The whole decision, connecting included, fits in `timeout`.
    pub async fn check_and_record(&self, windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
        let m = metrics::get();
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.config.timeout);
        let result = match self.breaker.admit(started) {
            Admission::Skip => Err(StoreError::BreakerOpen),
            Admission::Call | Admission::Probe => {
                let result = tokio::time::timeout_at(deadline, self.call(windows))
                    .await
                    .unwrap_or(Err(StoreError::Timeout));
                m.ratelimit_store_duration
                    .with_label_values(&["redis"])
                    .observe(started.elapsed().as_secs_f64());
                self.settle(&result);
                result
            }
        };
        if let Err(e) = &result {
            m.ratelimit_store_errors
                .with_label_values(&["redis", e.kind()])
                .inc();
        }
        result
    }

    /// Feed the outcome of a real call to the breaker; log and update the gauge.
    fn settle(&self, result: &Result<Vec<Usage>, StoreError>) {
        let now = Instant::now();
        let at = &self.at;
        let transition = match result {
            Ok(_) => self.breaker.success(),
            Err(_) => self.breaker.failure(now),
        };
        if transition.is_some() {
            metrics::get()
                .ratelimit_store_breaker_open
                .with_label_values(&["redis"])
                .set(i64::from(self.breaker.is_open()));
        }
        match (result, transition) {
            (Ok(_), Some(Transition::Closed)) => {
                log::info!("rate-limit store {at} answers again; shared limits resume");
            }
            (Err(e), Some(Transition::Opened)) => {
                self.link.discard_all();
                log::warn!(
                    "rate-limit store {at} failing ({e}); not asking it for {:?}, \
                     store: redis policies follow on_store_error meanwhile",
                    self.config.breaker.open_for
                );
            }
            (Err(e), _) if self.should_log(now) => log::warn!("rate-limit store {at}: {e}"),
            _ => {}
        }
    }

    fn should_log(&self, now: Instant) -> bool {
        let Ok(mut last) = self.last_logged.lock() else {
            return false;
        };
        match *last {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// One decision on a pooled connection. A connection that had been open a while and turns
    /// out to be dead (Redis restarted, an idle timeout closed it) is replaced once, on the
    /// same decision.
    async fn call(&self, windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
        let mut invocation = self.script.prepare_invoke();
        for w in windows {
            invocation.key(&w.key);
        }
        for w in windows {
            invocation
                .arg(match w.algorithm {
                    Algorithm::SlidingWindow => 0,
                    Algorithm::TokenBucket => 1,
                })
                .arg(w.limit.requests)
                .arg(w.limit.per.as_micros() as u64)
                .arg(w.limit.burst);
        }
        let mut retry: Option<usize> = None;
        loop {
            let lent = match retry {
                Some(slot) => self.link.lend_at(slot).await?,
                None => self.link.lend().await?,
            };
            let result: Result<Vec<i64>, RedisError> = match lent.conn.clone() {
                link::Conn::Multiplexed(mut c) => invocation.invoke_async(&mut c).await,
                link::Conn::Cluster(mut c) => invocation.invoke_async(&mut c).await,
            };
            match result {
                Ok(numbers) => return parse_reply(&numbers, windows),
                Err(e) => {
                    self.link.settle(&lent, &e);
                    if retry.is_none() && !lent.fresh && e.is_connection_dropped() {
                        // The same slot, now reopened (settle dropped the dead connection).
                        retry = Some(lent.slot);
                        continue;
                    }
                    return Err(StoreError::from_redis(&e, false));
                }
            }
        }
    }
}

/// `{allowed, (exceeded, remaining, µs until admitted or whole again) per window}`.
fn parse_reply(numbers: &[i64], windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
    if numbers.len() != 1 + 3 * windows.len() {
        return Err(StoreError::Protocol(format!(
            "script returned {} values for {} windows",
            numbers.len(),
            windows.len()
        )));
    }
    Ok(numbers
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(3)
        .filter_map(|w| match *w {
            [exceeded, remaining, reset_micros] => Some(Usage {
                exceeded: exceeded != 0,
                remaining: remaining.max(0) as u64,
                reset: Duration::from_micros(reset_micros.max(0) as u64),
            }),
            _ => None,
        })
        .collect())
}

/// The first 16 bytes of a digest, in hex.
fn hex_prefix(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(32);
    for b in bytes.iter().take(16) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            key: "k".into(),
            limit: Limit {
                requests: 10,
                per: Duration::from_secs(1),
                burst: 10,
            },
            algorithm: Algorithm::SlidingWindow,
        }
    }

    #[test]
    fn parses_script_replies() {
        let states = parse_reply(&[0, 1, 0, 250_000], &[window()]).unwrap();
        assert!(states[0].exceeded);
        assert_eq!(states[0].remaining, 0);
        assert_eq!(states[0].reset, Duration::from_millis(250));
        assert!(parse_reply(&[1], &[window()]).is_err());
    }

    fn store(secret: Option<&[u8]>) -> RedisStore {
        RedisStore::new(&crate::config::RedisConfig {
            topology: crate::config::RedisTopology::Single(crate::config::RedisAddr {
                host: "127.0.0.1".into(),
                port: 1,
                username: None,
                password: None,
                db: 0,
                tls: false,
            }),
            auth: crate::config::Credentials::default(),
            tls: None,
            timeout: Duration::from_millis(50),
            pool: 1,
            prefix: "p:".into(),
            key_secret: secret.map(|s| crate::config::Secret(s.to_vec())),
            breaker: crate::config::BreakerConfig {
                failures: 1,
                open_for: Duration::from_secs(1),
            },
        })
    }

    #[test]
    fn keys_are_hashed_tagged_and_bounded() {
        let store = store(None);
        let long = "x".repeat(8000);
        let k = store.key(
            "per-consumer",
            Algorithm::TokenBucket,
            Duration::from_secs(60),
            &long,
        );
        assert!(k.starts_with("p:{"), "{k}");
        assert!(k.ends_with("}:tb:per-consumer:60000"), "{k}");
        assert_eq!(k.len(), "p:{}:tb:per-consumer:60000".len() + 32);
        let sliding = store.key(
            "per-consumer",
            Algorithm::SlidingWindow,
            Duration::from_secs(60),
            &long,
        );
        assert_ne!(k, sliding, "the algorithms never share a key");
        assert_eq!(
            k.split('}').next(),
            sliding.split('}').next(),
            "one client key, one hash tag: one cluster slot"
        );
        let alice = store.key("a", Algorithm::TokenBucket, Duration::from_secs(1), "alice");
        assert!(!alice.contains("alice"));
        assert_ne!(
            alice,
            store.key("a", Algorithm::TokenBucket, Duration::from_secs(1), "bob")
        );
        assert_ne!(
            store.key("a", Algorithm::TokenBucket, Duration::from_millis(500), "alice"),
            store.key("a", Algorithm::TokenBucket, Duration::from_millis(800), "alice"),
            "sub-second windows never share a key"
        );
    }

    #[test]
    fn a_key_secret_changes_every_tag() {
        let plain = store(None).key("a", Algorithm::TokenBucket, Duration::from_secs(1), "10.0.0.1");
        let secret = [7u8; 32];
        let keyed = store(Some(&secret)).key("a", Algorithm::TokenBucket, Duration::from_secs(1), "10.0.0.1");
        let other =
            store(Some(&[8u8; 32])).key("a", Algorithm::TokenBucket, Duration::from_secs(1), "10.0.0.1");
        assert_ne!(plain, keyed);
        assert_ne!(keyed, other);
        let sha = digest::digest(&digest::SHA256, b"10.0.0.1");
        assert!(
            plain.contains(&hex_prefix(sha.as_ref())),
            "without a secret: SHA-256"
        );
        assert!(!keyed.contains(&hex_prefix(sha.as_ref())));
    }
}
