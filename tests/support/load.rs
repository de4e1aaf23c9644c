//! Background traffic for the operations tests: keep-alive and new-connection clients that
//! run until stopped and record every failure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::client::{try_send_raw, Conn};

/// How keep-alive clients treat a connection the server closed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Any failure counts (nothing should close connections).
    Strict,
    /// Like a browser or curl: honour `Connection: close`, and resend an idempotent request
    /// once when a *reused* connection was closed before any response (RFC 9112 §9.3.1).
    /// A draining process closes idle keep-alive connections; that is not a lost request.
    RetryStale,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    /// Requests resent after a reused keep-alive connection closed before answering.
    pub resent: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Vec<String>>>,
}

impl Load {
    /// `clients` threads, alternating keep-alive and one-connection-per-request, sending
    /// `GET {path}`. Each thread stops after 200k requests at most.
    pub fn start(addr: SocketAddr, path: &str, clients: usize, mode: KeepAlive) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let resent = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok, resent) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&resent));
                let keep = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();
                let close = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    .into_bytes();
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    let mut conn: Option<Conn> = None;
                    for _ in 0..200_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let result = if i.is_multiple_of(2) {
                            keep_alive_request(addr, &mut conn, &keep, mode, &resent)
                        } else {
                            try_send_raw(addr, &close).map_err(|e| e.to_string())
                        };
                        match result {
                            Ok(r) if (200..300).contains(&r.status) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => errors.push(format!("status {}: {}", r.status, r.text())),
                            Err(e) => errors.push(e),
                        }
                    }
                    errors
                })
            })
            .collect();
        Load {
            stop,
            ok,
            resent,
            threads,
        }
    }

    /// Stop; return the number of 2xx answers and a description of every failure.
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

fn keep_alive_request(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    request: &[u8],
    mode: KeepAlive,
    resent: &AtomicUsize,
) -> Result<super::client::Response, String> {
    let reused = conn.is_some();
    let c = conn.get_or_insert_with(|| Conn::connect(addr));
    match c.send(request) {
        Ok(r) => {
            if mode == KeepAlive::RetryStale
                && r.header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                *conn = None;
            }
            Ok(r)
        }
        Err(e) if mode == KeepAlive::RetryStale && reused => {
            resent.fetch_add(1, Ordering::Relaxed);
            let mut fresh = Conn::connect(addr);
            let r = fresh
                .send(request)
                .map_err(|e2| format!("resend after stale keep-alive ({e}): {e2}"));
            *conn = Some(fresh);
            r
        }
        Err(e) => {
            *conn = None;
            Err(format!("keep-alive request: {e}"))
        }
    }
}
