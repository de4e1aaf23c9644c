//! Connections to Redis and the bounded pool that reuses them.
//!
//! A connection carries one command at a time. Any error or timeout drops the connection
//! (its stream may hold half a reply), and a failure empties the idle list: after Redis
//! restarts, every pooled connection is dead, and dropping them at the first error keeps the
//! next requests from each tripping over one.

use std::io;
use std::sync::Mutex;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

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
            expect_ok(reply, "AUTH")?;
        }
        if addr.db != 0 {
            let db = addr.db.to_string();
            expect_ok(conn.call(&[b"SELECT", db.as_bytes()]).await?, "SELECT")?;
        }
        Ok(conn)
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

/// `+OK`, or the server's refusal. Error texts from the server never contain the password.
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
    Connect(io::Error),
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
            StoreError::Connect(_) => "connect",
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
            StoreError::Connect(e) => write!(f, "cannot connect: {e}"),
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

    /// Run `op` on a pooled (or new) connection. The caller bounds the time; if the future is
    /// dropped mid-way the connection goes with it.
    pub async fn with_conn<T>(
        &self,
        op: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Protocol("pool closed".into()))?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match reused {
            Some(conn) => conn,
            None => Conn::open(&self.addr).await?,
        };
        match op(&mut conn).await {
            Ok(value) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn);
                }
                Ok(value)
            }
            Err(e) => {
                self.discard_idle();
                Err(e)
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
