//! How many connections the gateway holds, in all and per client: each idle connection costs
//! memory, and one client could otherwise hold them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::config::ConnectionLimits;
use crate::limits::ip_key;
use crate::observe::metrics;

/// Independent locks for the per-client counts (accepts from many clients do not queue on one).
const SHARDS: usize = 16;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerClient,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerClient => "max_connections_per_ip",
        }
    }
}

#[derive(Default)]
pub struct Gate {
    open: AtomicUsize,
    per_client: [Mutex<HashMap<String, usize>>; SHARDS],
}

/// One admitted connection; dropping it gives its place back.
pub struct Slot<'a> {
    gate: &'a Gate,
    client: Option<String>,
}

impl Gate {
    /// Admit a connection from `client` (`None` when unknown), unless a cap is reached.
    /// Clients that are trusted proxies carry many clients' connections: only the total cap
    /// applies to them.
    pub fn admit(
        &self,
        client: Option<IpAddr>,
        trusted: bool,
        limits: &ConnectionLimits,
    ) -> Result<Slot<'_>, Refused> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        // inc/dec, never `set`: two connections setting the count would race.
        metrics::get().connections_open.inc();
        let mut slot = Slot {
            gate: self,
            client: None,
        };
        if open > limits.max_connections {
            return Err(Refused::Total);
        }
        if let Some(ip) = client.filter(|_| !trusted && limits.max_connections_per_ip > 0) {
            // IPv6 clients by their /64, as the rate limits key them.
            let key = ip_key(ip, 64);
            let mut counts = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
            let count = counts.entry(key.clone()).or_insert(0);
            if *count >= limits.max_connections_per_ip {
                return Err(Refused::PerClient);
            }
            *count += 1;
            slot.client = Some(key);
        }
        Ok(slot)
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, usize>> {
        let mix = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        &self.per_client[mix % SHARDS]
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        metrics::get().connections_open.dec();
        if let Some(key) = self.client.take() {
            let mut counts = self.gate.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_client_and_gives_places_back() {
        let gate = Gate::default();
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a1 = gate.admit(Some(a), false, &limits).unwrap();
        let _a2 = gate.admit(Some(a), false, &limits).unwrap();
        assert_eq!(
            gate.admit(Some(a), false, &limits).err(),
            Some(Refused::PerClient)
        );
        assert!(
            gate.admit(Some(a), true, &limits).is_ok(),
            "trusted proxies: total cap only"
        );
        let _c = gate.admit(None, false, &limits).unwrap();
        assert_eq!(gate.admit(None, false, &limits).err(), Some(Refused::Total));
        drop(a1);
        assert!(
            gate.admit(Some(a), false, &limits).is_ok(),
            "a place was given back"
        );
        assert_eq!(gate.open.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let gate = Gate::default();
        let limits = ConnectionLimits {
            max_connections: 100,
            max_connections_per_ip: 1,
        };
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let _held = gate.admit(Some(one), false, &limits).unwrap();
        assert_eq!(
            gate.admit(Some(neighbour), false, &limits).err(),
            Some(Refused::PerClient)
        );
        assert!(gate.admit(Some(other), false, &limits).is_ok());
    }
}
