//! One upstream pool: its targets, selection method, timeouts and health state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};

use arc_swap::ArcSwap;
use futures::FutureExt;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora_load_balancing::{Backend, Backends};

use super::concurrency::Concurrency;
use super::discovery::{Published, Targets};
use super::health::{build_check, HealthState};
use super::outlier::Kind;
use super::retry::Retries;
use super::selection::{LeastConn, LeastTime};
use super::stats::now_micros;
use super::stats::TargetStats;
use super::transport::Transport;
use crate::config::{Balance, DnsConfig, HashKey, HealthCheckConfig, OutlierConfig, UpstreamConfig};
use crate::observe::metrics;

/// [`Balancer`] is generic over the selection method; this closes over the choice.
enum Selector {
    RoundRobin(Balancer<RoundRobin>),
    Random(Balancer<Random>),
    Hash(Balancer<Consistent>),
    LeastConn(Balancer<LeastConn>),
    LeastTime(Balancer<LeastTime>),
}

/// The targets' membership and health (Pingora's `Backends`, which runs the active checks)
/// with the selection method's state built from that membership: what Pingora's
/// `LoadBalancer` pairs, walked here without its per-request costs. `LoadBalancer::select_with`
/// hands back an owned `Backend` (its extensions map cloned: two allocations) and remembers
/// visited targets in a hashed set (an allocation and a SipHash per step): 2.5k instructions
/// per request in scenario A (callgrind), for a choice whose result is an address and an
/// `Arc`. [`Balancer::select`] borrows each candidate and remembers visited ones by address.
struct Balancer<S> {
    backends: Backends,
    /// Rebuilt whenever the membership changes (`Backends::update` calls back then only).
    selector: ArcSwap<S>,
}

/// Visited candidates remembered in place per selection; a walk past this many distinct ones
/// (a large pool in an outage) remembers the rest in a set.
const SEEN: usize = 32;

impl<S: BackendSelection> Balancer<S>
where
    S::Iter: BackendIter,
{
    /// An empty selection over `backends`, filled by [`Balancer::update`].
    fn new(backends: Backends) -> Balancer<S> {
        Balancer {
            selector: ArcSwap::from_pointee(S::build(&backends.get_backend())),
            backends,
        }
    }

    /// Run discovery; a changed membership gets a new selector (as `LoadBalancer::update`).
    async fn update(&self) -> pingora::Result<()> {
        self.backends
            .update(|set| self.selector.store(Arc::new(S::build(&set))))
            .await
    }

    /// The first candidate, in the selection method's order for `key`, that `accept` takes
    /// (given the target's active health), looking at no more than `max_steps` candidates and
    /// at each distinct one once (as `LoadBalancer::select_with`).
    fn select(
        &self,
        key: &[u8],
        max_steps: usize,
        accept: impl Fn(&Backend, bool) -> bool,
    ) -> Option<Selected> {
        let selector = self.selector.load();
        let mut candidates = selector.iter(key);
        let mut seen = [std::ptr::null::<Backend>(); SEEN];
        let mut seen_count = 0;
        let mut more_seen: Option<std::collections::HashSet<*const Backend>> = None;
        for _ in 0..max_steps {
            let backend = candidates.next()?;
            // The selector holds each target once: the same target is the same address.
            let at = std::ptr::from_ref(backend);
            if seen[..seen_count].contains(&at) || more_seen.as_ref().is_some_and(|s| s.contains(&at)) {
                continue;
            }
            match seen.get_mut(seen_count) {
                Some(slot) => {
                    *slot = at;
                    seen_count += 1;
                }
                None => {
                    more_seen.get_or_insert_with(Default::default).insert(at);
                }
            }
            if accept(backend, self.backends.ready(backend)) {
                return Some(Selected {
                    addr: *backend.addr.as_inet()?,
                    stats: backend.ext.get::<Arc<TargetStats>>()?.clone(),
                });
            }
        }
        None
    }
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

/// What makes two pool definitions the same set of targets: a live reload keeps the
/// targets' health and statistics while this is unchanged, whatever else (timeouts, retries,
/// the hash key) was edited.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolIdentity {
    name: String,
    /// `(as written, weight)` in configuration order (a host name's addresses are the
    /// members' business: they follow DNS, not the file).
    targets: Vec<(String, usize)>,
    /// How host names are resolved, for pools that have one.
    dns: Option<crate::config::DnsConfig>,
    resolved_at_load: Vec<Vec<SocketAddr>>,
    balance: Balance,
    health_check: Option<HealthCheckConfig>,
    /// Health checks speak the targets' protocol and TLS, with the files' contents as read.
    protocol: crate::config::UpstreamProtocol,
    tls: Option<crate::config::UpstreamTls>,
    tls_files: String,
}

impl PoolIdentity {
    fn of(cfg: &UpstreamConfig, dns: &DnsConfig, transport: &Transport) -> PoolIdentity {
        PoolIdentity {
            name: cfg.name.value.clone(),
            targets: cfg
                .targets
                .iter()
                .map(|t| (t.addr.value.clone(), t.weight))
                .collect(),
            dns: cfg
                .targets
                .iter()
                .any(|t| matches!(t.host, crate::config::TargetHost::Name { .. }))
                .then(|| dns.clone()),
            // Names resolved only at load (`refresh: 0`): a reload that resolves them to other
            // addresses takes those.
            resolved_at_load: match dns.refresh.is_zero() {
                true => cfg.targets.iter().map(|t| t.resolved.clone()).collect(),
                false => Vec::new(),
            },
            balance: cfg.balance,
            health_check: cfg.health_check.clone(),
            protocol: cfg.protocol,
            tls: cfg.tls.clone(),
            tls_files: transport.files_sha256.clone(),
        }
    }
}

/// The long-lived part of a pool: its targets, their selection state, health and statistics.
struct Members {
    identity: PoolIdentity,
    selector: Selector,
    /// The targets (following DNS for host names), each carrying its stats in `ext`.
    targets: Arc<Targets>,
    health: HealthState,
    /// Held while deciding and making an ejection, so concurrent failures cannot both pass
    /// the cap.
    eject_lock: std::sync::Mutex<()>,
}

/// One target as `GET /upstreams` shows it.
#[derive(Debug, serde::Serialize)]
pub struct TargetView {
    /// As configured.
    pub target: String,
    /// As resolved.
    pub address: String,
    pub healthy: bool,
    pub ejected: bool,
    pub inflight: usize,
}

/// One upstream pool as a snapshot sees it: the long-lived targets plus this configuration's
/// settings for talking to them.
pub struct Pool {
    pub name: String,
    members: Arc<Members>,
    pub hash_key: HashKey,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Which failed attempts are tried again, and the budget they spend.
    pub retries: Arc<Retries>,
    /// Passive health (this configuration's; the targets' state lives in their stats).
    pub outlier: OutlierConfig,
    /// Concurrency slots and their queue.
    pub concurrency: Arc<Concurrency>,
    /// TLS and HTTP version to the targets.
    pub transport: Transport,
    /// `portcullis_upstream_response_seconds` and `portcullis_upstream_bytes_total` for this
    /// upstream, resolved once (not per attempt).
    pub response_seconds: prometheus::Histogram,
    pub bytes_sent: prometheus::IntCounter,
    pub bytes_received: prometheus::IntCounter,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("targets", &self.target_count())
            .finish()
    }
}

impl Pool {
    /// Build the pool for `cfg`, keeping `previous`'s targets (health, statistics) when it
    /// names the same targets with the same balancing and health check.
    pub fn build(cfg: &UpstreamConfig, dns: &DnsConfig, previous: Option<&Pool>) -> Result<Pool, String> {
        let transport = Transport::build(cfg)?;
        let identity = PoolIdentity::of(cfg, dns, &transport);
        let members = match previous.filter(|p| p.members.identity == identity) {
            Some(kept) => Arc::clone(&kept.members),
            None => Arc::new(Members::build(
                cfg,
                dns,
                &transport,
                identity,
                previous
                    .filter(|p| p.name == cfg.name.value)
                    .map(|p| p.members.as_ref()),
            )?),
        };
        let m = crate::observe::metrics::get();
        let name = cfg.name.value.as_str();
        Ok(Pool {
            response_seconds: m.upstream_response_seconds.with_label_values(&[name]),
            bytes_sent: m.upstream_bytes.with_label_values(&[name, "sent"]),
            bytes_received: m.upstream_bytes.with_label_values(&[name, "received"]),
            name: cfg.name.value.clone(),
            members,
            transport,
            hash_key: cfg.hash_key.clone(),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
            // Kept while unchanged: a reload does not refill the budget in an outage.
            retries: match previous.filter(|p| p.name == cfg.name.value && p.retries.config == cfg.retry) {
                Some(kept) => Arc::clone(&kept.retries),
                None => Arc::new(Retries::new(cfg.retry.clone())),
            },
            outlier: cfg.outlier.clone(),
            // Kept across a reload while the limits are the same: requests in flight keep
            // counting against the one cap.
            concurrency: match previous
                .filter(|p| p.name == cfg.name.value && p.concurrency.limits == cfg.limits)
            {
                Some(kept) => Arc::clone(&kept.concurrency),
                None => Concurrency::new(&cfg.name.value, cfg.limits),
            },
        })
    }

    /// Whether this pool kept `other`'s targets and their state (a reload's bookkeeping).
    pub fn shares_targets_with(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.members, &other.members)
    }

    pub fn health(&self) -> &HealthState {
        &self.members.health
    }
}

impl Members {
    /// `previous`: the same upstream's members before an edit (targets added or removed, a
    /// weight, the balance or the health check changed): a target it had keeps its statistics
    /// and passive-health state (an ejection holds, its gauge stays true).
    fn build(
        cfg: &UpstreamConfig,
        dns: &DnsConfig,
        transport: &Transport,
        identity: PoolIdentity,
        previous: Option<&Members>,
    ) -> Result<Members, String> {
        let earlier = previous.map(|m| m.targets.current());
        let kept = |label: &str| -> Option<Arc<TargetStats>> {
            earlier
                .as_ref()?
                .iter()
                .filter_map(|b| b.ext.get::<Arc<TargetStats>>())
                .find(|s| s.label == label)
                .cloned()
        };
        let targets = Arc::new(Targets::new(cfg, dns, kept)?);
        let selector = match cfg.balance {
            Balance::RoundRobin => Selector::RoundRobin(load_balancer(cfg, transport, &targets)?),
            Balance::Random => Selector::Random(load_balancer(cfg, transport, &targets)?),
            Balance::Hash => Selector::Hash(load_balancer(cfg, transport, &targets)?),
            Balance::LeastConn => Selector::LeastConn(load_balancer(cfg, transport, &targets)?),
            Balance::LeastTime => Selector::LeastTime(load_balancer(cfg, transport, &targets)?),
        };
        Ok(Members {
            identity,
            selector,
            targets,
            health: HealthState::new(cfg.health_check.as_ref()),
            eject_lock: std::sync::Mutex::new(()),
        })
    }
}

impl Pool {
    /// The target for a retry: an untried one when one exists, else any in rotation (the same
    /// target again, after the backoff).
    pub fn select_retry(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Selected> {
        self.select(key, tried).or_else(|| self.select(key, &[]))
    }

    /// Whether a retry would find a target (see [`Pool::select_retry`]).
    pub fn can_retry(&self, tried: &[SocketAddr]) -> bool {
        self.select(b"", tried)
            .or_else(|| self.select(b"", &[]))
            .is_some()
    }

    /// Pick a healthy target for `key` (used by `hash`), skipping targets already tried by
    /// this request. `None` when no healthy untried target is left.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<Selected> {
        // Ketama walks the ring point by point; allow enough steps to pass tried targets.
        let max_iterations = 16 * self.target_count().max(1) + 64;
        let now = now_micros();
        let accept = |b: &Backend, healthy: bool| {
            healthy
                && b.addr.as_inet().is_none_or(|a| !exclude.contains(a))
                && b.ext
                    .get::<Arc<TargetStats>>()
                    .is_none_or(|s| !self.still_ejected(s, now))
        };
        each_selector!(&self.members.selector, lb => lb.select(key, max_iterations, accept))
    }

    /// Whether `stats`' target is ejected at `now`; an ejection that just ended is noticed
    /// here (logged once, gauge back to 0).
    fn still_ejected(&self, stats: &TargetStats, now: u64) -> bool {
        if stats.outlier.is_ejected(now) {
            return true;
        }
        if stats.outlier.take_return(now) && !stats.is_retired() {
            log::info!(
                "upstream `{}` target {} returns to rotation after its ejection (on probation)",
                self.name,
                stats.label
            );
            metrics::get()
                .upstream_ejected
                .with_label_values(&[&self.name, &stats.label])
                .set(0);
        }
        false
    }

    /// Count one attempt's outcome against its target, and eject the target when its
    /// failures call for it and the pool can spare it: never more than `max_ejected_percent`
    /// of the targets, and never the last one in rotation.
    pub fn note_outcome(&self, stats: &TargetStats, kind: Kind) {
        if stats.is_retired() {
            return;
        }
        let now = now_micros();
        let Some(reason) = stats.outlier.record(kind, &self.outlier, now) else {
            return;
        };
        let Ok(_decide) = self.members.eject_lock.lock() else {
            return;
        };
        let all = self.members.targets.current();
        let backends = self.backends();
        let ejected = all
            .iter()
            .filter_map(|b| b.ext.get::<Arc<TargetStats>>())
            .filter(|s| s.outlier.is_ejected(now))
            .count();
        // What would still serve: healthy by the active check and not ejected.
        let serving = all
            .iter()
            .filter(|b| backends.ready(b))
            .filter(|b| {
                b.ext
                    .get::<Arc<TargetStats>>()
                    .is_none_or(|s| !s.outlier.is_ejected(now))
            })
            .count();
        let cap = all.len() * self.outlier.max_ejected_percent as usize / 100;
        if ejected + 1 > cap || serving <= 1 {
            return;
        }
        let Some(length) = stats.outlier.eject(&self.outlier, now) else {
            return;
        };
        let m = metrics::get();
        m.upstream_ejections
            .with_label_values(&[&self.name, &stats.label, reason.label()])
            .inc();
        m.upstream_ejected
            .with_label_values(&[&self.name, &stats.label])
            .set(1);
        log::warn!(
            "upstream `{}` target {} ejected for {:?} ({})",
            self.name,
            stats.label,
            length,
            reason.label()
        );
    }

    /// Connection settings for one attempt: the pool's timeouts, capped by what is left of
    /// the route's deadline so a slow upstream turns into a 504 on time.
    pub fn peer(&self, addr: SocketAddr, deadline: Option<Instant>) -> Box<HttpPeer> {
        let remaining = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let cap = |d: Duration| remaining.map_or(d, |r| d.min(r));
        let mut peer = self.transport.peer(addr);
        peer.options.connection_timeout = Some(cap(self.connect_timeout));
        peer.options.total_connection_timeout = Some(cap(self.connect_timeout));
        peer.options.read_timeout = Some(cap(self.read_timeout));
        peer.options.write_timeout = Some(cap(self.write_timeout));
        // Pooled connections idle for a minute are closed before the upstream's own keep-alive
        // (nginx: 75 s) can race a request onto a closing connection, and before a NAT or
        // firewall silently forgets them. Pingora re-arms this timer on every release: about
        // 1.4k instructions per request (scenario A, callgrind), kept for correctness.
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        // The gateway removes hop-by-hop headers itself, in one pass, and refuses the
        // `Connection` headers this policy refuses (see `proxy::forwarding`): Pingora's pass
        // repeated it with ten lookups and a second parse, about 3.6k instructions per request.
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::preserve();
        Box::new(peer)
    }

    /// Whether selection uses the request's hash key (`balance: hash`).
    pub fn hashes(&self) -> bool {
        matches!(self.members.selector, Selector::Hash(_))
    }

    pub fn backends(&self) -> &Backends {
        each_selector!(&self.members.selector, lb => &lb.backends)
    }

    /// `(target label, healthy)` for every target, in configuration order.
    pub fn target_health(&self) -> Vec<(String, bool)> {
        let backends = self.backends();
        self.members
            .targets
            .current()
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

    /// Every target in configuration order, as the admin API shows it.
    pub fn targets(&self) -> Vec<TargetView> {
        let backends = self.backends();
        let now = super::stats::now_micros();
        self.members
            .targets
            .current()
            .iter()
            .map(|b| {
                let stats = b.ext.get::<Arc<TargetStats>>();
                TargetView {
                    target: stats.map_or_else(|| b.addr.to_string(), |s| s.label.clone()),
                    address: b.addr.to_string(),
                    healthy: backends.ready(b),
                    ejected: stats.is_some_and(|s| s.outlier.is_ejected(now)),
                    inflight: stats.map_or(0, |s| s.inflight()),
                }
            })
            .collect()
    }

    pub fn target_count(&self) -> usize {
        self.members.targets.count()
    }

    /// Claim a due re-resolution of the pool's host names (see [`Targets::claim_refresh`]).
    pub fn claim_refresh(&self, now: Instant) -> bool {
        self.members.targets.claim_refresh(now)
    }

    /// Resolve the pool's host names again; when the set changed, the load balancer takes
    /// the new one (targets that stay keep their health) and departed targets' series go.
    pub async fn refresh_targets(&self) {
        let Some(gone) = self.members.targets.refresh().await else {
            return;
        };
        if let Err(e) = each_selector!(&self.members.selector, lb => lb.update().await) {
            log::warn!("upstream `{}`: taking the new targets failed: {e}", self.name);
        }
        for label in gone {
            metrics::forget_target(&self.name, &label);
        }
        super::health::publish_health(self);
    }
}

fn load_balancer<S>(
    cfg: &UpstreamConfig,
    transport: &Transport,
    targets: &Arc<Targets>,
) -> Result<Balancer<S>, String>
where
    S: BackendSelection,
    S::Iter: BackendIter,
{
    let mut backends = Backends::new(Box::new(Published(Arc::clone(targets))));
    if let Some(hc) = &cfg.health_check {
        backends.set_health_check(build_check(&cfg.name.value, hc, transport));
    }
    let lb = Balancer::new(backends);
    // Discovery publishes the resolved set; it never touches the network.
    match lb.update().now_or_never() {
        Some(Ok(())) => Ok(lb),
        Some(Err(e)) => Err(format!("upstream `{}`: {e}", cfg.name.value)),
        None => Err(format!(
            "upstream `{}`: static discovery did not complete",
            cfg.name.value
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::{BTreeSet, HashSet};

    /// Three targets on round robin, each carrying its stats as the pool's do.
    fn balancer() -> Balancer<RoundRobin> {
        balancer_of(3)
    }

    /// `n` targets on the selection method `S`.
    fn balancer_of<S: BackendSelection>(n: u16) -> Balancer<S>
    where
        S::Iter: BackendIter,
    {
        let set: BTreeSet<Backend> = (0..n)
            .map(|i| {
                let mut b = Backend::new(&format!("127.0.0.1:{}", 9000 + i)).unwrap();
                b.ext.insert(TargetStats::new(format!("t{i}")));
                b
            })
            .collect();
        let backends = Backends::new(pingora_load_balancing::discovery::Static::new(set));
        let balancer = Balancer::<S>::new(backends);
        balancer.update().now_or_never().unwrap().unwrap();
        balancer
    }

    #[test]
    fn takes_the_first_acceptable_and_looks_at_each_target_once() {
        let lb = balancer();
        let looked = Cell::new(0);
        let only_9002 = |b: &Backend, healthy: bool| {
            looked.set(looked.get() + 1);
            healthy && b.addr.as_inet().is_some_and(|a| a.port() == 9002)
        };
        for _ in 0..6 {
            looked.set(0);
            let chosen = lb.select(b"", 100, only_9002).unwrap();
            assert_eq!(chosen.addr.port(), 9002);
            assert_eq!(chosen.stats.label, "t2");
            assert!(looked.get() <= 3, "looked at {} candidates", looked.get());
        }
        // Nothing acceptable: no choice, each target looked at once, within the step bound.
        looked.set(0);
        assert!(lb
            .select(b"", 100, |_, _| {
                looked.set(looked.get() + 1);
                false
            })
            .is_none());
        assert_eq!(looked.get(), 3);
        // Round robin still spreads the first choices.
        let firsts: HashSet<u16> = (0..3)
            .map(|_| lb.select(b"", 100, |_, h| h).unwrap().addr.port())
            .collect();
        assert_eq!(firsts.len(), 3);
    }

    /// Every selection method, small and large pools: with nothing acceptable, each target is
    /// looked at exactly once (ketama's ring and a pool past the in-place memory repeat
    /// targets), and a step bound below the pool's size is kept.
    #[test]
    fn each_target_is_looked_at_once_whatever_the_method() {
        fn walk<S: BackendSelection>(n: u16, steps: usize) -> usize
        where
            S::Iter: BackendIter,
        {
            let lb = balancer_of::<S>(n);
            let looked = Cell::new(0);
            let none = lb.select(b"key", steps, |_, _| {
                looked.set(looked.get() + 1);
                false
            });
            assert!(none.is_none());
            looked.get()
        }
        for n in [3u16, 40] {
            let steps = 16 * n as usize + 64;
            let n = n as usize;
            assert_eq!(walk::<RoundRobin>(n as u16, steps), n, "round robin, {n}");
            if n == 3 {
                // Random fallbacks: all three turn up in 112 steps but for odds of 1e-19 (a
                // larger pool is left to the deterministic methods).
                assert_eq!(walk::<Random>(3, steps), 3, "random");
            }
            assert_eq!(walk::<Consistent>(n as u16, steps), n, "ketama, {n}");
            assert_eq!(walk::<LeastConn>(n as u16, steps), n, "least_conn, {n}");
            assert_eq!(walk::<LeastTime>(n as u16, steps), n, "least_time, {n}");
        }
        assert_eq!(walk::<RoundRobin>(40, 5), 5, "the step bound");
    }

    #[test]
    fn a_changed_membership_rebuilds_the_selection() {
        let targets = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        struct Shared(Arc<std::sync::Mutex<BTreeSet<Backend>>>);
        #[async_trait::async_trait]
        impl pingora_load_balancing::discovery::ServiceDiscovery for Shared {
            async fn discover(
                &self,
            ) -> pingora::Result<(BTreeSet<Backend>, std::collections::HashMap<u64, bool>)> {
                Ok((self.0.lock().unwrap().clone(), Default::default()))
            }
        }
        let lb = Balancer::<RoundRobin>::new(Backends::new(Box::new(Shared(Arc::clone(&targets)))));
        lb.update().now_or_never().unwrap().unwrap();
        assert!(lb.select(b"", 10, |_, _| true).is_none(), "no targets yet");
        let mut b = Backend::new("127.0.0.1:9100").unwrap();
        b.ext.insert(TargetStats::new("new".to_string()));
        targets.lock().unwrap().insert(b);
        lb.update().now_or_never().unwrap().unwrap();
        assert_eq!(lb.select(b"", 10, |_, _| true).unwrap().addr.port(), 9100);
    }
}
