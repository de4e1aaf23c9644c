//! The Redis store: counters shared by every gateway instance that points at the same Redis.
//!
//! One decision is one round trip: `EVALSHA` of a Lua script that reads every window of the
//! route's `store: redis` policies, decides, and (only when all have room) counts the request,
//! atomically. The algorithms are the local store's (token bucket, sliding window), on the
//! Redis server's clock. Connections are pooled; a timeout bounds each decision; a breaker
//! stops a dead Redis from costing a timeout on every request. Failures are counted, logged
//! (rate-limited) and answered by each policy's `on_store_error`.
//!
//! A hand-written client instead of the `redis` crate: the store needs one command (plus AUTH
//! and SELECT) and flat integer replies, and owning the connection lets a timeout or failure
//! drop exactly the connection involved, with no background driver task tied to one of
//! Pingora's runtimes.

mod breaker;
mod conn;
pub mod resp;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

use super::local::Usage;
use crate::config::Algorithm;
use crate::config::{Limit, RedisConfig};
use crate::observe::metrics;
use breaker::{Admission, Breaker, Transition};
pub use conn::StoreError;
use conn::{Conn, Pool};
use resp::Reply;

const SCRIPT: &str = include_str!("script.lua");

/// One window to check: its Redis key and limit.
pub struct Window {
    pub key: String,
    pub limit: Limit,
    pub algorithm: Algorithm,
}

pub struct RedisStore {
    config: RedisConfig,
    pool: Pool,
    breaker: Breaker,
    script_sha: String,
    /// When a failure was last logged (failures are logged at most once a second).
    last_logged: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.config.addr)
            .field("breaker_open", &self.breaker.is_open())
            .finish()
    }
}

impl RedisStore {
    pub fn new(config: &RedisConfig) -> RedisStore {
        let sha = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, SCRIPT.as_bytes());
        metrics::get()
            .ratelimit_store_breaker_open
            .with_label_values(&["redis"])
            .set(0);
        RedisStore {
            config: config.clone(),
            pool: Pool::new(config.addr.clone(), config.pool),
            breaker: Breaker::new(config.breaker, config.timeout),
            script_sha: hex(sha.as_ref()),
            last_logged: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The Redis key of `key`'s counters for one policy window. The request-derived key is
    /// hashed: header values and consumer ids stay out of Redis, and every key has the same
    /// small size however long the client made its header.
    /// The algorithm is part of the name: the two keep different Redis types, so a policy
    /// whose algorithm changes never meets the other's state.
    pub fn key(&self, policy: &str, algorithm: Algorithm, per: Duration, key: &str) -> String {
        let hash = digest::digest(&digest::SHA256, key.as_bytes());
        let short = hash.as_ref().get(..16).unwrap_or(hash.as_ref());
        let tag = match algorithm {
            Algorithm::SlidingWindow => "rl",
            Algorithm::TokenBucket => "tb",
        };
        format!(
            "{}{tag}:{policy}:{}:{}",
            self.config.prefix,
            per.as_secs(),
            hex(short)
        )
    }

    /// Check every window and count the request in all of them if all have room.
    ///
    /// The whole decision, waiting for a free connection included, fits in `timeout`. Only
    /// what Redis does (connecting, the round trip) feeds the breaker: when every connection is
    /// busy the gateway is the bottleneck, not Redis, and that must not open the breaker.
    pub async fn check_and_record(&self, windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
        let m = metrics::get();
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.config.timeout);
        let result = match self.breaker.admit(started) {
            Admission::Skip => Err(StoreError::BreakerOpen),
            Admission::Call | Admission::Probe => {
                match tokio::time::timeout_at(deadline, self.pool.slot()).await {
                    Err(_) | Ok(Err(_)) => Err(StoreError::PoolExhausted),
                    Ok(Ok(_slot)) => {
                        let result = tokio::time::timeout_at(deadline, self.call(windows))
                            .await
                            .unwrap_or(Err(StoreError::Timeout));
                        m.ratelimit_store_duration
                            .with_label_values(&["redis"])
                            .observe(started.elapsed().as_secs_f64());
                        self.settle(&result);
                        result
                    }
                }
            }
        };
        if let Err(e) = &result {
            m.ratelimit_store_errors
                .with_label_values(&["redis", e.kind()])
                .inc();
            if matches!(e, StoreError::PoolExhausted) && self.should_log(Instant::now()) {
                log::warn!(
                    "rate-limit store {}: {e}; raise redis.pool (at most pool / round-trip time decisions per second)",
                    self.pool.addr().display()
                );
            }
        }
        result
    }

    /// Feed the outcome of a real call to the breaker; log and update the gauge.
    fn settle(&self, result: &Result<Vec<Usage>, StoreError>) {
        let now = Instant::now();
        let addr = self.pool.addr().display();
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
                log::info!("rate-limit store {addr} answers again; shared limits resume");
            }
            (Err(e), Some(Transition::Opened)) => {
                self.pool.discard_idle();
                log::warn!(
                    "rate-limit store {addr} failing ({e}); not asking it for {:?}, \
                     store: redis policies follow on_store_error meanwhile",
                    self.config.breaker.open_for
                );
            }
            (Err(e), _) if self.should_log(now) => log::warn!("rate-limit store {addr}: {e}"),
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

    /// One decision on a pooled connection; a reused connection found closed before it
    /// answered is replaced once (the command cannot have run on it).
    async fn call(&self, windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
        let (mut conn, reused) = self.pool.checkout().await?;
        let mut result = self.run(&mut conn, windows).await;
        if reused && matches!(result, Err(StoreError::Closed(_))) {
            conn = self.pool.reopen().await?;
            result = self.run(&mut conn, windows).await;
        }
        self.pool.checkin(conn, &result);
        result
    }

    /// `EVALSHA` the script (falling back to `EVAL` when Redis does not have it cached yet).
    async fn run(&self, conn: &mut Conn, windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
        let numkeys = windows.len().to_string();
        let limits: Vec<[String; 4]> = windows
            .iter()
            .map(|w| {
                [
                    match w.algorithm {
                        Algorithm::SlidingWindow => "0".to_string(),
                        Algorithm::TokenBucket => "1".to_string(),
                    },
                    w.limit.requests.to_string(),
                    w.limit.per.as_micros().to_string(),
                    w.limit.burst.to_string(),
                ]
            })
            .collect();
        let mut args: Vec<&[u8]> = Vec::with_capacity(3 + windows.len() * 5);
        args.extend([&b"EVALSHA"[..], self.script_sha.as_bytes(), numkeys.as_bytes()]);
        args.extend(windows.iter().map(|w| w.key.as_bytes()));
        for window in &limits {
            args.extend(window.iter().map(|a| a.as_bytes()));
        }
        let mut reply = conn.call(&args).await?;
        if matches!(&reply, Reply::Error(e) if e.starts_with("NOSCRIPT")) {
            args[0] = b"EVAL";
            args[1] = SCRIPT.as_bytes();
            reply = conn.call(&args).await?;
        }
        parse_reply(reply, windows)
    }
}

/// `{allowed, (exceeded, remaining, µs until admitted or whole again) per window}`.
fn parse_reply(reply: Reply, windows: &[Window]) -> Result<Vec<Usage>, StoreError> {
    let items = match reply {
        Reply::Array(items) => items,
        Reply::Error(e) => return Err(StoreError::Refused(e)),
        other => return Err(StoreError::Protocol(format!("unexpected script reply {other:?}"))),
    };
    let numbers: Vec<i64> = items
        .into_iter()
        .map(|r| match r {
            Reply::Int(n) => Ok(n),
            other => Err(StoreError::Protocol(format!("unexpected script value {other:?}"))),
        })
        .collect::<Result<_, _>>()?;
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let reply = Reply::Array([0, 1, 0, 250_000].map(Reply::Int).to_vec());
        let states = parse_reply(reply, &[window()]).unwrap();
        assert!(states[0].exceeded);
        assert_eq!(states[0].remaining, 0);
        assert_eq!(states[0].reset, Duration::from_millis(250));
        assert!(parse_reply(Reply::Array(vec![Reply::Int(1)]), &[window()]).is_err());
        assert!(parse_reply(Reply::Error("OOM".into()), &[window()]).is_err());
    }

    #[test]
    fn keys_are_hashed_and_bounded() {
        let store = RedisStore::new(&crate::config::RedisConfig {
            addr: crate::config::redis_model::RedisAddr {
                host: "127.0.0.1".into(),
                port: 1,
                username: None,
                password: None,
                db: 0,
            },
            timeout: Duration::from_millis(50),
            pool: 1,
            prefix: "p:".into(),
            breaker: crate::config::BreakerConfig {
                failures: 1,
                open_for: Duration::from_secs(1),
            },
        });
        let long = "x".repeat(8000);
        let k = store.key(
            "per-consumer",
            Algorithm::TokenBucket,
            Duration::from_secs(60),
            &long,
        );
        assert!(k.starts_with("p:tb:per-consumer:60:"), "{k}");
        assert_eq!(k.len(), "p:tb:per-consumer:60:".len() + 32);
        let sliding = store.key(
            "per-consumer",
            Algorithm::SlidingWindow,
            Duration::from_secs(60),
            &long,
        );
        assert!(
            sliding.starts_with("p:rl:per-consumer:60:"),
            "the algorithms never share a key"
        );
        assert!(!store
            .key("a", Algorithm::TokenBucket, Duration::from_secs(1), "alice")
            .contains("alice"));
        assert_ne!(
            store.key("a", Algorithm::TokenBucket, Duration::from_secs(1), "alice"),
            store.key("a", Algorithm::TokenBucket, Duration::from_secs(1), "bob")
        );
    }
}
