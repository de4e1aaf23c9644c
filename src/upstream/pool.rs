//! One upstream pool: its targets, selection method, timeouts and health state.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::{Consistent, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};

use super::health::{build_check, HealthState};
use super::selection::{LeastConn, LeastTime};
use super::stats::TargetStats;
use crate::config::{Balance, HashKey, UpstreamConfig};

/// Pingora's `LoadBalancer` is generic over the selection method; this closes over the choice.
enum Selector {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Hash(LoadBalancer<Consistent>),
    LeastConn(LoadBalancer<LeastConn>),
    LeastTime(LoadBalancer<LeastTime>),
}

macro_rules! each_selector {
    ($sel:expr, $lb:ident => $body:expr) => {
        match $sel {
            Selector::RoundRobin($lb) => $body,
            Selector::Random($lb) => $body,
            Selector::Hash($lb) => $body,
            Selector::LeastConn($lb) => $body,
            Selector::LeastTime($lb) => $body,
        }
    };
}

/// The target picked for one attempt.
#[derive(Debug, Clone)]
pub struct Selected {
    pub addr: SocketAddr,
    pub stats: Arc<TargetStats>,
}

pub struct Pool {
    pub name: String,
    selector: Selector,
    /// Targets in configuration order, each carrying its stats in `ext`.
    members: Vec<Backend>,
    pub hash_key: HashKey,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: usize,
    pub health: HealthState,
    /// The definition this pool was built from, to recognise it on a live reload.
    pub config: UpstreamConfig,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("targets", &self.members.len())
            .finish()
    }
}

impl Pool {
    pub fn build(cfg: &UpstreamConfig) -> Result<Pool, String> {
        let members: Vec<Backend> = cfg
            .targets
            .iter()
            .map(|t| {
                let mut b = Backend::new_with_weight(&t.resolved.to_string(), t.weight)
                    .map_err(|e| format!("upstream `{}`: target `{}`: {e}", cfg.name.value, t.addr.value))?;
                b.ext.insert(TargetStats::new(t.addr.value.clone()));
                Ok(b)
            })
            .collect::<Result<_, String>>()?;
        let set: BTreeSet<Backend> = members.iter().cloned().collect();
        let selector = match cfg.balance {
            Balance::RoundRobin => Selector::RoundRobin(load_balancer(cfg, set)?),
            Balance::Random => Selector::Random(load_balancer(cfg, set)?),
            Balance::Hash => Selector::Hash(load_balancer(cfg, set)?),
            Balance::LeastConn => Selector::LeastConn(load_balancer(cfg, set)?),
            Balance::LeastTime => Selector::LeastTime(load_balancer(cfg, set)?),
        };
        Ok(Pool {
            name: cfg.name.value.clone(),
            selector,
            members,
            hash_key: cfg.hash_key.clone(),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
            retries: cfg.retries,
            health: HealthState::new(cfg.health_check.as_ref()),
            config: cfg.clone(),
        })
    }

    /// Pick a healthy target for `key` (used by `hash`), skipping targets already tried by
    /// this request. `None` when no healthy untried target is left.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<Selected> {
        // Ketama walks the ring point by point; allow enough steps to pass tried targets.
        let max_iterations = 16 * self.members.len().max(1) + 64;
        let accept =
            |b: &Backend, healthy: bool| healthy && b.addr.as_inet().is_none_or(|a| !exclude.contains(a));
        let backend = each_selector!(&self.selector, lb => lb.select_with(key, max_iterations, accept))?;
        let addr = *backend.addr.as_inet()?;
        let stats = backend.ext.get::<Arc<TargetStats>>()?.clone();
        Some(Selected { addr, stats })
    }

    /// Whether selection uses the request's hash key (`balance: hash`).
    pub fn hashes(&self) -> bool {
        matches!(self.selector, Selector::Hash(_))
    }

    pub fn backends(&self) -> &Backends {
        each_selector!(&self.selector, lb => lb.backends())
    }

    /// `(target label, healthy)` for every target, in configuration order.
    pub fn target_health(&self) -> Vec<(String, bool)> {
        let backends = self.backends();
        self.members
            .iter()
            .map(|b| {
                let label = b
                    .ext
                    .get::<Arc<TargetStats>>()
                    .map_or_else(|| b.addr.to_string(), |s| s.label.clone());
                (label, backends.ready(b))
            })
            .collect()
    }

    pub fn target_count(&self) -> usize {
        self.members.len()
    }
}

fn load_balancer<S>(cfg: &UpstreamConfig, set: BTreeSet<Backend>) -> Result<LoadBalancer<S>, String>
where
    S: pingora_load_balancing::selection::BackendSelection + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let mut backends = Backends::new(Static::new(set));
    if let Some(hc) = &cfg.health_check {
        backends.set_health_check(build_check(&cfg.name.value, hc));
    }
    let lb = LoadBalancer::from_backends(backends);
    // Static discovery completes immediately; it never touches the network.
    match lb.update().now_or_never() {
        Some(Ok(())) => Ok(lb),
        Some(Err(e)) => Err(format!("upstream `{}`: {e}", cfg.name.value)),
        None => Err(format!(
            "upstream `{}`: static discovery did not complete",
            cfg.name.value
        )),
    }
}
