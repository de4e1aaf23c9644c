//! Connections to Redis and the bounded pool that reuses them.
//!
//! A connection carries one command at a time. An I/O or protocol error or a timeout drops the
//! connection (its stream may hold half a reply), and an I/O error also empties the idle list:
//! after Redis restarts every pooled connection is dead, and dropping them at the first error
//! keeps the next requests from each tripping over one. An error *reply* from Redis (OOM, BUSY)
//! leaves the connection usable, so it goes back to the pool.
//!
//! A reused connection that turns out to be closed (Redis `timeout`, a NAT or load balancer idle
//! limit) before any reply byte arrived is retried once on a fresh connection: the command
//! cannot have run.

use std::io;
use std::sync::Mutex;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::resp::{self, Reply};
use crate::config::RedisAddr;

pub struct Conn {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
}

impl Conn {
    /// Connect, authenticate and select the database.
    async fn open(addr: &RedisAddr) -> Result<Conn, StoreError> {
        let stream = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(StoreError::Connect)?;
        stream.set_nodelay(true).map_err(StoreError::Connect)?;
        let mut conn = Conn {
            stream: BufReader::new(stream),
            out: Vec::with_capacity(256),
        };
        if let Some(password) = &addr.password {
            let reply = match &addr.username {
                Some(user) => {
                    conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                        .await?
                }
                None => conn.call(&[b"AUTH", password.as_bytes()]).await?,
            };
            // Redis never echoes AUTH arguments, but a renamed command or a proxy might: the
            // server's text is not kept.
            if !matches!(reply, Reply::Status(_)) {
                return Err(StoreError::Refused(
                    "AUTH failed: check the credentials in redis.url".into(),
                ));
            }
        }
        if addr.db != 0 {
            let db = addr.db.to_string();
            expect_ok(conn.call(&[b"SELECT", db.as_bytes()]).await?, "SELECT")?;
        }
        Ok(conn)
    }

    /// Whether an idle connection is still usable: nothing to read yet. End of stream means
    /// Redis closed it while idle; unexpected bytes mean it is out of step.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        self.stream.buffer().is_empty()
            && matches!(self.stream.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Send one command and read its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, StoreError> {
        self.out.clear();
        resp::encode(&mut self.out, args);
        self.stream
            .get_mut()
            .write_all(&self.out)
            .await
            .map_err(StoreError::Io)?;
        resp::read(&mut self.stream).await.map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => StoreError::Protocol(e.to_string()),
            _ => StoreError::Io(e),
        })
    }
}

/// `+OK`, or the server's refusal.
fn expect_ok(reply: Reply, command: &str) -> Result<(), StoreError> {
    match reply {
        Reply::Status(_) => Ok(()),
        Reply::Error(e) => Err(StoreError::Refused(format!("{command}: {e}"))),
        other => Err(StoreError::Protocol(format!(
            "{command}: unexpected reply {other:?}"
        ))),
    }
}

/// Why the store could not decide.
#[derive(Debug)]
pub enum StoreError {
    /// No answer within the configured timeout.
    Timeout,
    /// The breaker is open: Redis was not asked.
    BreakerOpen,
    /// Every connection was busy for the whole timeout: the gateway, not Redis, is the limit.
    PoolExhausted,
    Connect(io::Error),
    /// The connection was closed before any reply byte (the command did not run).
    Closed(io::Error),
    Io(io::Error),
    Protocol(String),
    /// Redis answered with an error (authentication, script, out of memory...).
    Refused(String),
}

impl StoreError {
    /// The bounded `kind` label of the store error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::BreakerOpen => "breaker_open",
            StoreError::PoolExhausted => "pool_exhausted",
            StoreError::Connect(_) => "connect",
            StoreError::Closed(_) => "io",
            StoreError::Io(_) => "io",
            StoreError::Protocol(_) => "protocol",
            StoreError::Refused(_) => "refused",
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("no answer within the timeout"),
            StoreError::BreakerOpen => f.write_str("breaker open"),
            StoreError::PoolExhausted => {
                f.write_str("every pooled connection stayed busy for the whole timeout")
            }
            StoreError::Connect(e) => write!(f, "cannot connect: {e}"),
            StoreError::Closed(e) => write!(f, "connection closed: {e}"),
            StoreError::Io(e) => write!(f, "connection failed: {e}"),
            StoreError::Protocol(e) => write!(f, "protocol error: {e}"),
            StoreError::Refused(e) => write!(f, "redis refused: {e}"),
        }
    }
}

/// At most `size` connections, idle ones kept for reuse.
pub struct Pool {
    addr: RedisAddr,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl Pool {
    pub fn new(addr: RedisAddr, size: usize) -> Pool {
        Pool {
            addr,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
        }
    }

    pub fn addr(&self) -> &RedisAddr {
        &self.addr
    }

    /// Wait for a free slot (at most `size` connections are in use at once).
    pub async fn slot(&self) -> Result<SemaphorePermit<'_>, StoreError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| StoreError::PoolExhausted)
    }

    /// An idle connection (`true`: reused) or a new one. Call while holding a [`Pool::slot`].
    pub async fn checkout(&self) -> Result<(Conn, bool), StoreError> {
        while let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            if conn.is_open() {
                return Ok((conn, true));
            }
        }
        Ok((Conn::open(&self.addr).await?, false))
    }

    /// A new connection, replacing a reused one that turned out to be closed.
    pub async fn reopen(&self) -> Result<Conn, StoreError> {
        self.discard_idle();
        Conn::open(&self.addr).await
    }

    /// Return `conn` after a call that ended in `result`. Anything but a complete reply may
    /// leave bytes in flight, so such a connection is dropped (closing it); an I/O failure
    /// also closes the idle ones.
    pub fn checkin<T>(&self, conn: Conn, result: &Result<T, StoreError>) {
        if matches!(result, Err(StoreError::Io(_) | StoreError::Closed(_))) {
            self.discard_idle();
        }
        if matches!(result, Ok(_) | Err(StoreError::Refused(_))) {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(conn);
            }
        }
    }

    /// Close every idle connection (after a failure they are likely dead too).
    pub fn discard_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
