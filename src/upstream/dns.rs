//! Resolving host-name targets (`server.dns`) with hickory-resolver: the system's
//! configuration (`/etc/resolv.conf` with its search domains and `ndots`, `/etc/hosts`) or the
//! name servers the configuration names, every address of a name, a bounded time per lookup.
//!
//! Why not `getaddrinfo`: it cannot be pointed at a name server, cannot be bounded in time (a
//! hung lookup holds a blocking thread), and gives no TTLs.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::{AddressFamily, DnsConfig};

/// One resolver (with its cache) and the settings it was built from.
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
}

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
        options.ip_strategy = match cfg.family {
            AddressFamily::Ipv4Preferred => LookupIpStrategy::Ipv4thenIpv6,
            AddressFamily::All => LookupIpStrategy::Ipv4AndIpv6,
            AddressFamily::Ipv4 => LookupIpStrategy::Ipv4Only,
            AddressFamily::Ipv6 => LookupIpStrategy::Ipv6Only,
        };
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
        })
    }

    /// Every address of `host`, with `port`, sorted; an error when the lookup fails, times out
    /// or finds no address (the caller keeps what it had).
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let found = tokio::time::timeout(self.timeout, self.resolver.lookup_ip(host))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| e.to_string())?;
        let mut addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err("the name has no addresses".into());
        }
        Ok(addrs)
    }
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
