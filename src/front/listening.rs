//! Whether every proxy listener is listening yet. Pingora binds each service's listeners on
//! that service's own runtime, so the admin listener can answer `/readyz` before a proxy
//! listener exists: a load balancer (or a test, or an orchestrator) told "ready" would then be
//! refused. `/readyz` waits for this check.
//!
//! The check reads the kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`) rather than
//! connecting: a probe connection would reach the pipeline (on a TLS listener, Pingora logs a
//! failed handshake for it). Once every listener was seen the answer is kept: listeners only
//! close at shutdown, which `/readyz` reports through draining. Where the tables cannot be read
//! (not Linux) the check passes, as before.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

/// The proxy listeners `/readyz` waits for.
pub struct Listening {
    addrs: Vec<SocketAddr>,
    seen: AtomicBool,
}

impl Listening {
    pub fn new(addrs: Vec<SocketAddr>) -> Listening {
        Listening {
            addrs,
            seen: AtomicBool::new(false),
        }
    }

    /// `Err(reason)` while a proxy listener is not yet listening.
    pub fn check(&self) -> Result<(), String> {
        if self.seen.load(Ordering::Acquire) {
            return Ok(());
        }
        let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .collect();
        if tables.is_empty() {
            return Ok(());
        }
        let listening = listening_sockets(&tables);
        if let Some(missing) = self.addrs.iter().find(|a| !listening.contains(a)) {
            return Err(format!("listener {missing} is not listening yet"));
        }
        self.seen.store(true, Ordering::Release);
        Ok(())
    }
}

/// The local addresses of the sockets in state LISTEN (`0A`) in the kernel's tables.
fn listening_sockets(tables: &[String]) -> Vec<SocketAddr> {
    tables
        .iter()
        .flat_map(|table| table.lines().skip(1))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            (state == "0A").then(|| parse_local(local)).flatten()
        })
        .collect()
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6), then the port: the kernel prints each
/// 32-bit word of the address as the host reads it, so its bytes come back in native order.
fn parse_local(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_of_both_families() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        let v6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 0\n";
        let found = listening_sockets(&[v4.to_string(), v6.to_string()]);
        if cfg!(target_endian = "little") {
            assert_eq!(
                found,
                vec![
                    "127.0.0.1:8080".parse().expect("addr"),
                    "[::1]:8082".parse().expect("addr"),
                ]
            );
        }
        assert_eq!(found.len(), 2, "the established socket is not a listener");
    }

    #[test]
    fn a_bound_listener_is_seen_and_a_free_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let bound = listener.local_addr().expect("addr");
        assert_eq!(Listening::new(vec![bound]).check(), Ok(()));
        drop(listener);
        if std::path::Path::new("/proc/net/tcp").exists() {
            let err = Listening::new(vec![bound]).check().expect_err("closed");
            assert!(err.contains(&bound.to_string()), "{err}");
        }
    }
}
