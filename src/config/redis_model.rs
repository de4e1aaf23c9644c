//! The top-level `redis:` section: where `store: redis` rate limits keep their counters.

use std::time::Duration;

/// A parsed `redis://[[user]:password@]host[:port][/db]` address.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddr {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisAddr {
    /// The address without credentials, for logs and messages.
    pub fn display(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("redis://{host}:{}/{}", self.port, self.db)
    }
}

/// Never prints the password.
impl std::fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub addr: RedisAddr,
    /// Budget for one decision: waiting for a connection, connecting and the round trip.
    pub timeout: Duration,
    /// Most connections open at once.
    pub pool: usize,
    /// Prepended to every key, so several deployments can share one Redis.
    pub prefix: String,
    pub breaker: BreakerConfig,
}

/// After `failures` consecutive failures, stop asking Redis for `open_for`, then let one
/// request probe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: u32,
    pub open_for: Duration,
}
