//! The connections to the shared store, on the `redis` crate: one server, the primary the
//! sentinels name, or a cluster; TLS and ACL users on all three.
//!
//! A connection is multiplexed: any number of decisions share its socket, pipelined, so `pool`
//! counts sockets, not decisions in flight. A connection that fails at the transport level
//! (reset, closed, refused) or whose server is no longer a writable primary (`READONLY`,
//! `MASTERDOWN`: a Sentinel failover happened) is dropped, and the next decision opens a new
//! one; with Sentinel that asks the sentinels again, so a failover is followed. A cluster
//! connection follows `MOVED`/`ASK`, reconnects to nodes and refreshes its slot map itself, so
//! once open it is kept (a new one would start again from the configured seeds). Opening is single-flight per connection: a burst of decisions during an
//! outage waits for one attempt instead of starting one each.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ServerErrorKind, TlsCertificates, TlsMode,
};

use super::StoreError;
use crate::config::{Credentials, RedisConfig, RedisTopology};

pub struct Link {
    opener: Arc<Opener>,
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
}

/// How a new connection is made.
enum Opener {
    Single(redis::Client, AsyncConnectionConfig),
    Sentinel(tokio::sync::Mutex<SentinelClient>, AsyncConnectionConfig),
    Cluster(redis::cluster::ClusterClient),
    /// The configuration could not be turned into a client (which validation should prevent):
    /// every decision fails with this, as a store error.
    Broken(String),
}

/// One open connection, cheap to clone (both kinds are handles to a driver task).
#[derive(Clone)]
pub enum Conn {
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// One connection of the pool: the current one (with a generation, so a failure reported
/// late never drops its replacement) and the lock that makes opening single-flight.
struct Slot {
    current: Mutex<Option<(u64, Conn)>>,
    opening: Arc<tokio::sync::Mutex<()>>,
    generation: AtomicU64,
}

/// A connection lent for one decision.
pub struct Lent {
    pub conn: Conn,
    pub slot: usize,
    generation: u64,
    /// Opened for this decision (so a failure on it is not a stale idle socket).
    pub fresh: bool,
}

impl Link {
    pub fn new(config: &RedisConfig) -> Link {
        let opener = Opener::build(config).unwrap_or_else(|e| Opener::Broken(e.to_string()));
        let size = match config.topology {
            RedisTopology::Cluster { .. } => 1,
            _ => config.pool.max(1),
        };
        Link {
            opener: Arc::new(opener),
            slots: (0..size)
                .map(|_| {
                    Arc::new(Slot {
                        current: Mutex::new(None),
                        opening: Arc::new(tokio::sync::Mutex::new(())),
                        generation: AtomicU64::new(0),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connection for one decision: the next one of the pool. If that one is not open but
    /// another is, the open one carries this decision and the missing one is opened in the
    /// background (so a pool never makes a decision wait for a connection it does not need).
    pub async fn lend(&self) -> Result<Lent, StoreError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(index) else {
            return Err(StoreError::Connect("no connection slot".into()));
        };
        if let Some(lent) = slot.current(index) {
            return Ok(lent);
        }
        let open = self.slots.iter().enumerate().find_map(|(i, s)| s.current(i));
        if let Some(lent) = open {
            if let Ok(opening) = Arc::clone(&slot.opening).try_lock_owned() {
                // Its result lands in the slot; nobody waits for it.
                drop(self.spawn_open(slot, opening));
            }
            return Ok(lent);
        }
        self.lend_at(index).await
    }

    /// The connection of slot `index`, opened if it is not (after [`Link::settle`] dropped a
    /// dead one, a new one: the retry of a decision whose reused connection was dead).
    ///
    /// The opening runs as its own task, holding the slot's opening lock: a decision that runs
    /// out of time stops waiting but does not abort it, so an open slower than one decision's
    /// `timeout` (a TLS handshake, a Sentinel lookup that first tries a dead sentinel) still
    /// completes, and the decisions after it find the connection open.
    pub async fn lend_at(&self, index: usize) -> Result<Lent, StoreError> {
        let Some(slot) = self.slots.get(index) else {
            return Err(StoreError::Connect("no connection slot".into()));
        };
        if let Some(lent) = slot.current(index) {
            return Ok(lent);
        }
        let opening = Arc::clone(&slot.opening).lock_owned().await;
        if let Some(lent) = slot.current(index) {
            return Ok(lent);
        }
        let (generation, conn) = self
            .spawn_open(slot, opening)
            .await
            .map_err(|e| StoreError::Connect(format!("opening task failed: {e}")))??;
        Ok(Lent {
            conn,
            slot: index,
            generation,
            fresh: true,
        })
    }

    /// After a failed decision: drop the connection when the failure says it is of no more
    /// use (see the module comment). A cluster connection is kept: it repairs its node
    /// connections and slot map itself, and it holds the topology it learned, while a new one
    /// could only start again from the configured seeds (which may be the nodes that died).
    pub fn settle(&self, lent: &Lent, error: &RedisError) {
        if !is_fatal(error) || self.is_cluster() {
            return;
        }
        if let Some(slot) = self.slots.get(lent.slot) {
            if let Ok(mut current) = slot.current.lock() {
                if current.as_ref().is_some_and(|(g, _)| *g == lent.generation) {
                    *current = None;
                }
            }
        }
    }

    /// Drop every open connection (the breaker opened: whatever they were talking to failed);
    /// a cluster connection is kept, as in [`Link::settle`].
    pub fn discard_all(&self) {
        if self.is_cluster() {
            return;
        }
        for slot in &self.slots {
            if let Ok(mut current) = slot.current.lock() {
                *current = None;
            }
        }
    }
}

impl Link {
    /// Open a connection into `slot` as its own task, holding the slot's opening lock.
    fn spawn_open(
        &self,
        slot: &Arc<Slot>,
        opening: tokio::sync::OwnedMutexGuard<()>,
    ) -> tokio::task::JoinHandle<Result<(u64, Conn), StoreError>> {
        let (opener, slot) = (Arc::clone(&self.opener), Arc::clone(slot));
        tokio::spawn(async move {
            let _opening = opening;
            let conn = opener.open().await?;
            let generation = slot.generation.fetch_add(1, Ordering::Relaxed) + 1;
            if let Ok(mut current) = slot.current.lock() {
                *current = Some((generation, conn.clone()));
            }
            Ok((generation, conn))
        })
    }

    fn is_cluster(&self) -> bool {
        matches!(*self.opener, Opener::Cluster(_))
    }
}

impl Slot {
    fn current(&self, index: usize) -> Option<Lent> {
        let current = self.current.lock().ok()?;
        current.as_ref().map(|(generation, conn)| Lent {
            conn: conn.clone(),
            slot: index,
            generation: *generation,
            fresh: false,
        })
    }
}

/// Whether the connection must be replaced after `error`. Before Redis 7 an error inside a
/// script comes back as `ERR Error running script ... READONLY ...`, so the text is checked
/// too.
pub fn is_fatal(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
        || {
            let text = error.to_string();
            text.contains("READONLY") || text.contains("MASTERDOWN")
        }
}

impl Opener {
    fn build(config: &RedisConfig) -> Result<Opener, RedisError> {
        let timeout = config.timeout;
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        let certificates = config.tls.as_ref().map(|tls| TlsCertificates {
            client_tls: tls.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: tls.ca.clone(),
        });
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        match &config.topology {
            RedisTopology::Single(addr) => {
                let target = if addr.tls {
                    ConnectionAddr::TcpTls {
                        host: addr.host.clone(),
                        port: addr.port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    ConnectionAddr::Tcp(addr.host.clone(), addr.port)
                };
                let info = target
                    .into_connection_info()?
                    .set_tcp_settings(tcp)
                    .set_redis_settings(redis_settings(&config.auth, i64::from(addr.db)));
                let client = match certificates {
                    Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                    None => redis::Client::open(info)?,
                };
                Ok(Opener::Single(client, connection))
            }
            RedisTopology::Sentinel {
                master,
                nodes,
                auth,
                db,
            } => {
                let sentinels = nodes.iter().map(|(host, port)| match config.tls {
                    Some(_) => ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    },
                    None => ConnectionAddr::Tcp(host.clone(), *port),
                });
                let mut builder = SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)?
                    .set_client_to_redis_db(i64::from(*db))
                    .set_client_to_redis_tcp_settings(tcp.clone())
                    .set_client_to_sentinel_tcp_settings(tcp);
                if let Some(user) = &config.auth.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &config.auth.password {
                    builder = builder.set_client_to_redis_password(password);
                }
                if let Some(user) = &auth.username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(password) = &auth.password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                if let Some(certificates) = certificates {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                        .set_client_to_redis_certificates(certificates.clone())
                        .set_client_to_sentinel_certificates(certificates);
                }
                Ok(Opener::Sentinel(
                    tokio::sync::Mutex::new(builder.build()?),
                    connection,
                ))
            }
            RedisTopology::Cluster { nodes } => {
                let seeds: Vec<ConnectionInfo> = nodes
                    .iter()
                    .map(|(host, port)| {
                        ConnectionAddr::Tcp(host.clone(), *port)
                            .into_connection_info()
                            .map(|info| info.set_tcp_settings(tcp.clone()))
                    })
                    .collect::<Result<_, _>>()?;
                let mut builder = ClusterClientBuilder::new(seeds)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .tcp_settings(tcp);
                if let Some(user) = &config.auth.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &config.auth.password {
                    builder = builder.password(password);
                }
                if let Some(certificates) = certificates {
                    builder = builder.tls(TlsMode::Secure).certs(certificates);
                }
                Ok(Opener::Cluster(builder.build()?))
            }
        }
    }

    async fn open(&self) -> Result<Conn, StoreError> {
        let opened = match self {
            Opener::Single(client, config) => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Conn::Multiplexed),
            Opener::Sentinel(client, config) => client
                .lock()
                .await
                .get_async_connection_with_config(config)
                .await
                .map(Conn::Multiplexed),
            Opener::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            Opener::Broken(why) => return Err(StoreError::Connect(why.clone())),
        };
        opened.map_err(|e| StoreError::from_redis(&e, true))
    }
}

fn redis_settings(auth: &Credentials, db: i64) -> RedisConnectionInfo {
    let mut settings = RedisConnectionInfo::default().set_db(db);
    if let Some(user) = &auth.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &auth.password {
        settings = settings.set_password(password);
    }
    settings
}
