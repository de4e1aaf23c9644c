//! The selection methods Pingora lacks, as `BackendSelection` implementations so they plug into
//! a pool's `Balancer` (and its health filtering) like Pingora's own.
//!
//! - [`LeastConn`]: fewest in-flight requests per unit of weight; ties rotate.
//! - [`LeastTime`]: power of two random choices by peak-EWMA latency × (in-flight + 1) / weight,
//!   as in Finagle and Linkerd: cheap, and it avoids herding onto one "best" target.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use rand::Rng;

use super::stats::TargetStats;

/// Backends with their stats, in a fixed order.
#[derive(Debug)]
struct Members {
    backends: Vec<Backend>,
    stats: Vec<Option<Arc<TargetStats>>>,
}

impl Members {
    fn new(set: &BTreeSet<Backend>) -> Members {
        let backends: Vec<Backend> = set.iter().cloned().collect();
        let stats = backends
            .iter()
            .map(|b| b.ext.get::<Arc<TargetStats>>().cloned())
            .collect();
        Members { backends, stats }
    }

    fn inflight(&self, i: usize) -> u64 {
        self.stats[i].as_ref().map_or(0, |s| s.inflight() as u64)
    }

    fn weight(&self, i: usize) -> u64 {
        self.backends[i].weight.max(1) as u64
    }
}

/// Yields backends in a precomputed order; the first is the choice, the rest are fallbacks
/// for when the first is unhealthy or was already tried.
pub struct OrderedIter<S> {
    owner: Arc<S>,
    order: Vec<usize>,
    next: usize,
}

/// Access to the members for [`OrderedIter`].
pub trait HasMembers {
    fn backend(&self, i: usize) -> &Backend;
}

impl<S: HasMembers> BackendIter for OrderedIter<S> {
    fn next(&mut self) -> Option<&Backend> {
        let i = *self.order.get(self.next)?;
        self.next += 1;
        Some(self.owner.backend(i))
    }
}

pub struct LeastConn {
    members: Members,
    rotation: AtomicUsize,
}

impl HasMembers for LeastConn {
    fn backend(&self, i: usize) -> &Backend {
        &self.members.backends[i]
    }
}

impl BackendSelection for LeastConn {
    type Iter = OrderedIter<LeastConn>;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        LeastConn {
            members: Members::new(backends),
            rotation: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        let m = &self.members;
        let n = m.backends.len();
        let start = if n == 0 {
            0
        } else {
            self.rotation.fetch_add(1, Ordering::Relaxed) % n
        };
        let mut order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        // Compare inflight/weight without division: a/wa < b/wb  <=>  a*wb < b*wa.
        // The sort is stable, so equal loads keep the rotated order and share the traffic.
        order.sort_by(|&a, &b| (m.inflight(a) * m.weight(b)).cmp(&(m.inflight(b) * m.weight(a))));
        OrderedIter {
            owner: Arc::clone(self),
            order,
            next: 0,
        }
    }
}

pub struct LeastTime {
    members: Members,
}

impl HasMembers for LeastTime {
    fn backend(&self, i: usize) -> &Backend {
        &self.members.backends[i]
    }
}

impl LeastTime {
    fn cost(&self, i: usize) -> f64 {
        let m = &self.members;
        let latency = m.stats[i].as_ref().map_or(0, |s| s.latency_micros()) as f64;
        // +1µs so untried targets (latency 0) still prefer the less loaded one.
        (latency + 1.0) * (m.inflight(i) as f64 + 1.0) / m.weight(i) as f64
    }
}

impl BackendSelection for LeastTime {
    type Iter = OrderedIter<LeastTime>;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        LeastTime {
            members: Members::new(backends),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        let n = self.members.backends.len();
        let mut rng = rand::thread_rng();
        let mut order: Vec<usize> = (0..n).collect();
        if n >= 2 {
            let a = rng.gen_range(0..n);
            let mut b = rng.gen_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) = if self.cost(b) < self.cost(a) {
                (b, a)
            } else {
                (a, b)
            };
            order.retain(|&i| i != first && i != second);
            order.insert(0, second);
            order.insert(0, first);
        }
        OrderedIter {
            owner: Arc::clone(self),
            order,
            next: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set(stats: &[Arc<TargetStats>]) -> BTreeSet<Backend> {
        stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut b = Backend::new(&format!("127.0.0.1:{}", 9000 + i)).unwrap();
                b.ext.insert(Arc::clone(s));
                b
            })
            .collect()
    }

    #[test]
    fn least_conn_prefers_idle_target() {
        let stats: Vec<_> = (0..3).map(|i| TargetStats::new(format!("t{i}"))).collect();
        let sel = Arc::new(LeastConn::build(&set(&stats)));
        let _busy: Vec<_> = (0..5).map(|_| stats[0].begin()).collect();
        let _busy2: Vec<_> = (0..5).map(|_| stats[2].begin()).collect();
        for _ in 0..10 {
            let mut it = sel.iter(b"");
            assert_eq!(it.next().unwrap().addr.to_string(), "127.0.0.1:9001");
        }
    }

    #[test]
    fn least_conn_rotates_ties() {
        let stats: Vec<_> = (0..3).map(|i| TargetStats::new(format!("t{i}"))).collect();
        let sel = Arc::new(LeastConn::build(&set(&stats)));
        let firsts: BTreeSet<String> = (0..3)
            .map(|_| sel.iter(b"").next().unwrap().addr.to_string())
            .collect();
        assert_eq!(firsts.len(), 3);
    }

    #[test]
    fn least_time_avoids_slow_target() {
        let stats: Vec<_> = (0..2).map(|i| TargetStats::new(format!("t{i}"))).collect();
        stats[0].observe_latency(Duration::from_millis(500));
        stats[1].observe_latency(Duration::from_millis(5));
        let sel = Arc::new(LeastTime::build(&set(&stats)));
        for _ in 0..20 {
            assert_eq!(sel.iter(b"").next().unwrap().addr.to_string(), "127.0.0.1:9001");
        }
    }
}
