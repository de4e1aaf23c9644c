//! The top-level `redis:` section: where `store: redis` rate limits keep their counters.

use std::time::Duration;

/// A parsed `redis[s]://[[user]:password@]host[:port][/db]` address.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddr {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// `rediss://`: TLS to the server.
    pub tls: bool,
}

impl RedisAddr {
    /// The address without credentials, for logs and messages.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}/{}", host_port(&self.host, self.port), self.db)
    }
}

/// Never prints the password.
impl std::fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How the gateway finds the Redis server that holds a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server (a primary, or a proxy in front of several): `url`.
    Single(RedisAddr),
    /// The current primary of `master`, as the sentinels report it; re-asked after a failure,
    /// so a failover is followed.
    Sentinel {
        master: String,
        nodes: Vec<(String, u16)>,
        /// Credentials of the sentinels themselves (`sentinel.username`, `sentinel.password_env`).
        auth: Credentials,
        db: u32,
    },
    /// A Redis Cluster reached through any of `nodes` (slot map, MOVED and ASK followed).
    Cluster { nodes: Vec<(String, u16)> },
}

/// A user name and password; the password never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// TLS to Redis (`rediss://`, or a `tls:` block with sentinels or a cluster): certificates
/// read and checked at load, kept as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// The CA that signs the servers' certificates; the system's roots when absent.
    pub ca: Option<Vec<u8>>,
    /// A client certificate and key, for servers with `tls-auth-clients yes`.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub topology: RedisTopology,
    /// Credentials of the data nodes (from the URL, or `username` / `password_env`).
    pub auth: Credentials,
    pub tls: Option<RedisTls>,
    /// Budget for one decision: connecting (when needed) and the round trip.
    pub timeout: Duration,
    /// Connections to one server, each carrying any number of decisions at once (pipelined).
    pub pool: usize,
    /// Prepended to every key, so several deployments can share one Redis.
    pub prefix: String,
    /// The HMAC key for client-derived key parts (`key_secret_env` / `key_secret_file`);
    /// without one they are hashed with plain SHA-256.
    pub key_secret: Option<Secret>,
    pub breaker: BreakerConfig,
}

impl RedisConfig {
    /// Where the store is, without credentials, for logs and messages.
    pub fn display(&self) -> String {
        let list = |nodes: &[(String, u16)]| {
            nodes
                .iter()
                .map(|(h, p)| host_port(h, *p))
                .collect::<Vec<_>>()
                .join(",")
        };
        let s = if self.tls.is_some() { "s" } else { "" };
        match &self.topology {
            RedisTopology::Single(addr) => addr.display(),
            RedisTopology::Sentinel {
                master, nodes, db, ..
            } => format!("redis{s}+sentinel://{}/{master}/{db}", list(nodes)),
            RedisTopology::Cluster { nodes } => format!("redis{s}+cluster://{}", list(nodes)),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, RedisTopology::Cluster { .. })
    }
}

/// Secret bytes that never print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// After `failures` consecutive failures, stop asking Redis for `open_for`, then let one
/// request probe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures: u32,
    pub open_for: Duration,
}
