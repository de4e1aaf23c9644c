//! A pool's target set: IP literals as written, and host names re-resolved every
//! `server.dns.refresh` so a Kubernetes Service or a DNS-named pool follows scaling without a
//! reload. Every address of a name is a target; a failed resolution keeps the name's last
//! good addresses. Pingora's `Backends` reads the set through [`Published`] (its
//! `ServiceDiscovery`), and keeps the active-health state of targets that stay.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;

use super::dns::Dns;
use super::periodic::Periodic;
use super::stats::TargetStats;
use crate::config::{TargetHost, UpstreamConfig};
use crate::observe::metrics;

/// One configured target.
#[derive(Debug)]
struct Spec {
    /// As written.
    written: String,
    host: TargetHost,
    weight: usize,
    /// Whether its last resolution failed (so a failure is logged once, and the recovery).
    failing: AtomicBool,
}

/// What the targets are now.
struct State {
    /// Per spec, its addresses (the last good resolution).
    addrs: Vec<Vec<SocketAddr>>,
    /// Per target label, its statistics, kept while the target is in the set.
    stats: HashMap<String, Arc<TargetStats>>,
}

pub struct Targets {
    pool: String,
    specs: Vec<Spec>,
    /// Present when a target is a host name and `refresh` is not zero.
    dns: Option<Dns>,
    /// When the names are resolved again (never without `dns`).
    schedule: Periodic,
    state: Mutex<State>,
    /// The targets in configuration order (a name's addresses sorted), each carrying its
    /// statistics in `ext`.
    current: ArcSwap<Vec<Backend>>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("pool", &self.pool)
            .field("specs", &self.specs)
            .finish()
    }
}

/// The metric and log label of `addr` from target `spec`: an IP literal as written; an address
/// a name resolved to as `name:port (address)`, so each address has its own series.
fn label(spec: &Spec, addr: SocketAddr) -> String {
    match spec.host {
        TargetHost::Ip(_) => spec.written.clone(),
        TargetHost::Name { .. } => format!("{} ({addr})", spec.written),
    }
}

impl Targets {
    /// The targets of `cfg` at their load-time addresses; `kept` finds the statistics a
    /// target had in the pool this one replaces.
    pub fn new(
        cfg: &UpstreamConfig,
        dns: &crate::config::DnsConfig,
        kept: impl Fn(&str) -> Option<Arc<TargetStats>>,
    ) -> Result<Targets, String> {
        let specs: Vec<Spec> = cfg
            .targets
            .iter()
            .map(|t| Spec {
                written: t.addr.value.clone(),
                host: t.host.clone(),
                weight: t.weight,
                failing: AtomicBool::new(false),
            })
            .collect();
        let has_names = specs.iter().any(|s| matches!(s.host, TargetHost::Name { .. }));
        let dns_client = match has_names && !dns.refresh.is_zero() {
            true => Some(Dns::new(dns).map_err(|e| format!("upstream `{}`: {e}", cfg.name.value))?),
            false => None,
        };
        let addrs: Vec<Vec<SocketAddr>> = cfg.targets.iter().map(|t| t.resolved.clone()).collect();
        let mut stats = HashMap::new();
        for (spec, addrs) in specs.iter().zip(&addrs) {
            for a in addrs {
                let l = label(spec, *a);
                let s = kept(&l).unwrap_or_else(|| TargetStats::new(l.clone()));
                stats.insert(l, s);
            }
        }
        let state = State { addrs, stats };
        let current = ArcSwap::from_pointee(build_backends(&specs, &state)?);
        Ok(Targets {
            pool: cfg.name.value.clone(),
            specs,
            schedule: Periodic::new(
                dns_client.as_ref().map(|_| dns.refresh),
                Instant::now()
                    .checked_add(dns.refresh)
                    .unwrap_or_else(Instant::now),
            ),
            dns: dns_client,
            state: Mutex::new(state),
            current,
        })
    }

    /// The targets now, in configuration order.
    pub fn current(&self) -> Arc<Vec<Backend>> {
        self.current.load_full()
    }

    /// How many targets there are now (without taking a reference to the set).
    pub fn count(&self) -> usize {
        self.current.load().len()
    }

    /// Claim the next re-resolution if one is due and none is running.
    pub fn claim_refresh(&self, now: Instant) -> bool {
        self.schedule.claim(now)
    }

    /// Resolve every host name again. `Some(labels that left the set)` when the set changed
    /// (the caller then updates the load balancer and forgets their series), `None` when it
    /// did not. Call after [`Targets::claim_refresh`].
    pub async fn refresh(&self) -> Option<Vec<String>> {
        let changed = self.resolve_all().await;
        self.schedule.done();
        changed
    }

    async fn resolve_all(&self) -> Option<Vec<String>> {
        let dns = self.dns.as_ref()?;
        let lookups = self.specs.iter().map(|s| async move {
            match &s.host {
                TargetHost::Name { host, port } => Some(dns.lookup(host, *port).await),
                TargetHost::Ip(_) => None,
            }
        });
        let results = futures::future::join_all(lookups).await;
        let mut state = self.state.lock().ok()?;
        let mut changed = false;
        for (i, (spec, result)) in self.specs.iter().zip(results).enumerate() {
            match result {
                None => {}
                Some(Ok(addrs)) => {
                    if spec.failing.swap(false, Ordering::Relaxed) {
                        log::info!(
                            "upstream `{}`: `{}` resolves again, to {}",
                            self.pool,
                            spec.written,
                            list(&addrs)
                        );
                    }
                    if state.addrs[i] != addrs {
                        log::info!(
                            "upstream `{}`: `{}` now resolves to {} (was {})",
                            self.pool,
                            spec.written,
                            list(&addrs),
                            list(&state.addrs[i])
                        );
                        state.addrs[i] = addrs;
                        changed = true;
                    }
                }
                Some(Err(e)) => {
                    metrics::get()
                        .upstream_dns_failures
                        .with_label_values(&[&self.pool, &spec.written])
                        .inc();
                    if !spec.failing.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "upstream `{}`: resolving `{}` failed ({e}); keeping {}",
                            self.pool,
                            spec.written,
                            list(&state.addrs[i])
                        );
                    }
                }
            }
        }
        if !changed {
            return None;
        }
        // Statistics of targets that stay are kept; new addresses start fresh.
        let wanted: Vec<String> = self
            .specs
            .iter()
            .zip(&state.addrs)
            .flat_map(|(s, addrs)| addrs.iter().map(move |a| label(s, *a)))
            .collect();
        let gone: Vec<String> = state
            .stats
            .keys()
            .filter(|l| !wanted.contains(l))
            .cloned()
            .collect();
        for l in &gone {
            if let Some(stats) = state.stats.remove(l) {
                stats.retire();
            }
        }
        for l in wanted {
            state
                .stats
                .entry(l.clone())
                .or_insert_with(|| TargetStats::new(l));
        }
        match build_backends(&self.specs, &state) {
            Ok(backends) => self.current.store(Arc::new(backends)),
            Err(e) => {
                log::warn!("upstream `{}`: {e}", self.pool);
                return None;
            }
        }
        Some(gone)
    }
}

/// The backends of `state`, in configuration order; an address two targets share is one
/// backend (the first one's).
fn build_backends(specs: &[Spec], state: &State) -> Result<Vec<Backend>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (spec, addrs) in specs.iter().zip(&state.addrs) {
        for a in addrs {
            if !seen.insert(*a) {
                continue;
            }
            let l = label(spec, *a);
            let mut b = Backend::new_with_weight(&a.to_string(), spec.weight)
                .map_err(|e| format!("target `{}`: {e}", spec.written))?;
            let stats = state
                .stats
                .get(&l)
                .cloned()
                .unwrap_or_else(|| TargetStats::new(l));
            b.ext.insert(stats);
            out.push(b);
        }
    }
    Ok(out)
}

fn list(addrs: &[SocketAddr]) -> String {
    let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!("[{}]", all.join(", "))
}

/// What Pingora's `Backends` discovers: the current set, no I/O (the resolution happened
/// in [`Targets::refresh`]).
pub struct Published(pub Arc<Targets>);

#[async_trait]
impl ServiceDiscovery for Published {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((self.0.current().iter().cloned().collect(), HashMap::new()))
    }
}
