//! Resolving host-name targets (`server.dns`) with hickory-resolver: the system's
//! configuration (`/etc/resolv.conf` with its search domains and `ndots`, `/etc/hosts`) or the
//! name servers the configuration names, every address of a name, a bounded time per lookup.
//!
//! Why not `getaddrinfo`: it cannot be pointed at a name server, cannot be bounded in time (a
//! hung lookup holds a blocking thread), and gives no TTLs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::config::{AddressFamily, DnsConfig};

/// One resolver (with its cache) and the settings it was built from.
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
    family: AddressFamily,
}

/// The most addresses one name contributes (each is a target with its own metric series).
const MAX_ADDRESSES: usize = 64;

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").field("timeout", &self.timeout).finish()
    }
}

impl Dns {
    pub fn new(cfg: &DnsConfig) -> Result<Dns, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if cfg.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
        } else {
            let mut config = ResolverConfig::default();
            for ns in &cfg.nameservers {
                let mut server = NameServerConfig::udp_and_tcp(ns.ip());
                for c in &mut server.connections {
                    c.port = ns.port();
                }
                config.add_name_server(server);
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let options = builder.options_mut();
        options.timeout = cfg.timeout;
        // The cache may answer within a record's TTL, but never for longer than the refresh
        // interval: a change is seen within one `refresh`, whatever TTL the zone sets.
        if !cfg.refresh.is_zero() {
            options.positive_max_ttl = Some(cfg.refresh);
            options.negative_max_ttl = Some(cfg.refresh);
        }
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Dns {
            resolver,
            timeout: cfg.timeout,
            family: cfg.family,
        })
    }

    /// Every address of `host` in the configured family, with `port`, sorted (at most
    /// [`MAX_ADDRESSES`]); an error when a lookup fails, times out or finds no usable address
    /// (the caller keeps what it had).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let ips = tokio::time::timeout(self.timeout, self.addresses(host))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        let mut addrs: Vec<SocketAddr> = ips
            .into_iter()
            .filter(|ip| usable(*ip))
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs.truncate(MAX_ADDRESSES);
        if addrs.is_empty() {
            return Err("the name has no usable addresses".into());
        }
        Ok(addrs)
    }

    /// The family's addresses. A lookup that fails (timeout, `SERVFAIL`, refused) fails the
    /// whole resolution, so a transient error never swaps a dual-stack name's IPv4 targets
    /// for its IPv6 ones: only an answer with no records of a family counts as "none".
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        match self.family {
            AddressFamily::Ipv4 => self.records(host, RecordType::A).await,
            AddressFamily::Ipv6 => self.records(host, RecordType::AAAA).await,
            AddressFamily::Ipv4Preferred => {
                let v4 = self.records(host, RecordType::A).await?;
                match v4.is_empty() {
                    true => self.records(host, RecordType::AAAA).await,
                    false => Ok(v4),
                }
            }
            AddressFamily::All => {
                let (v4, v6) = futures::future::join(
                    self.records(host, RecordType::A),
                    self.records(host, RecordType::AAAA),
                )
                .await;
                Ok(v4?.into_iter().chain(v6?).collect())
            }
        }
    }

    /// The `A` or `AAAA` records of `host` (empty when the name has none of that type).
    async fn records(&self, host: &str, kind: RecordType) -> Result<Vec<IpAddr>, String> {
        match self.resolver.lookup(host, kind).await {
            Ok(found) => Ok(found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Whether a resolved address can be a target: never the unspecified address (connecting to
/// it reaches this host), a multicast or the broadcast address.
fn usable(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// Resolve `names` once, from any thread: a configuration is loaded before the runtime
/// starts, by `check`, and by a live reload inside it, so the lookups run on a thread and
/// runtime of their own. The results are in the order of `names`.
pub fn resolve_blocking(cfg: &DnsConfig, names: &[(String, u16)]) -> Vec<Result<Vec<SocketAddr>, String>> {
    if names.is_empty() {
        return Vec::new();
    }
    let cfg = cfg.clone();
    let owned = names.to_vec();
    let failed = |e: String| names.iter().map(|_| Err(e.clone())).collect();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the resolver: {e}"))?;
        runtime.block_on(async move {
            let dns = Dns::new(&cfg)?;
            let lookups = owned.iter().map(|(host, port)| dns.lookup(host, *port));
            Ok::<_, String>(futures::future::join_all(lookups).await)
        })
    });
    match worker.join() {
        Ok(Ok(results)) => results,
        Ok(Err(e)) => failed(e),
        Err(_) => failed("the resolver thread failed".into()),
    }
}
