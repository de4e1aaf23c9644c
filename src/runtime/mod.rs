//! The compiled, immutable runtime snapshot and the one atomic pointer the proxy reads it
//! through. Every request loads the snapshot once and keeps it to the end, so a later swap
//! (live reload) never changes the rules under an in-flight request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::aggregate::plan::Aggregate;
use crate::auth::Authenticator;
use crate::config::cidr::Cidr;
use crate::config::{Config, ConnectionLimits, RequestLimits};
use crate::limits::redis::RedisStore;
use crate::limits::Policy;
use crate::route::{Route, Target};
use crate::routing::RouteTable;
use crate::transform::client_headers::ClientHeaderRules;
use crate::upstream::Pool;
use crate::versions::Versions;

pub mod reload;

/// Server-wide settings the request path needs.
#[derive(Debug, Clone)]
pub struct RequestSettings {
    pub limits: RequestLimits,
    pub connections: ConnectionLimits,
    pub trusted_proxies: Vec<Cidr>,
    /// `server.ip`: client addresses every route accepts or refuses.
    pub ip: crate::config::IpRules,
    pub access_log: crate::config::access_log_schema::AccessLogConfig,
    /// What clients may not send upstream as written (header spellings, overrides).
    pub client_headers: ClientHeaderRules,
    /// `Strict-Transport-Security` for responses to requests over TLS.
    pub hsts: Option<http::HeaderValue>,
    /// After SIGTERM, how long the gateway keeps serving (unready) before it stops accepting.
    pub drain_delay: std::time::Duration,
    /// Where `https_redirect` sends clients: the first TLS listener's port, else 443 (TLS
    /// terminated in front of the gateway).
    pub https_port: u16,
}

#[derive(Debug)]
pub struct Snapshot {
    pub routes: RouteTable,
    pub pools: Vec<Arc<Pool>>,
    pub authenticators: Vec<Authenticator>,
    /// Every header an authenticator forwards; client copies are removed on every route.
    pub identity_headers: Vec<http::HeaderName>,
    /// Headers an aggregation template may not read: credentials and identity headers.
    pub template_refused_headers: Vec<http::HeaderName>,
    pub policies: Vec<Policy>,
    /// The shared store of `store: redis` policies, when configured.
    pub redis: Option<Arc<RedisStore>>,
    pub settings: RequestSettings,
    /// Per route (same index as `routes.routes`), the pre-resolved duration histogram.
    pub route_durations: Vec<prometheus::Histogram>,
    /// Per TLS listener address, the certificates its handshakes choose from.
    pub certificates: HashMap<String, Arc<crate::tls::certificates::CertificateSet>>,
    /// Query parameters an authenticator reads a credential from (redacted in access logs),
    /// gathered once here rather than per logged request.
    pub credential_query_params: Vec<String>,
    /// `tracing:`, and what every request's trace needs of it.
    pub tracing: crate::config::tracing_schema::TracingConfig,
    pub trace_sampling: crate::observe::trace::Sampling,
    /// The configuration file's SHA-256 (hex) and when it was loaded.
    pub config_sha256: String,
    pub loaded_at: std::time::SystemTime,
}

impl Snapshot {
    /// Compile a validated configuration. Fails only on what validation cannot know
    /// (e.g. Pingora refusing a backend).
    pub fn compile(config: &Config) -> Result<Snapshot, String> {
        Snapshot::compile_reusing(config, None)
    }

    /// Compile, keeping from `previous` what is unchanged so a live reload does not reset it:
    /// pools (health state and statistics), local rate-limit counters, and the Redis store
    /// (its connections and breaker). New or changed parts start fresh.
    pub fn compile_reusing(config: &Config, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
        let previous_pools: HashMap<&str, &Arc<Pool>> = previous
            .map(|p| p.pools.iter().map(|pool| (pool.name.as_str(), pool)).collect())
            .unwrap_or_default();
        let pools: Vec<Arc<Pool>> = config
            .upstreams
            .iter()
            .map(|u| {
                let previous = previous_pools.get(u.name.value.as_str()).map(|p| p.as_ref());
                Pool::build(u, &config.server.dns, previous).map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        let pool_index: HashMap<&str, usize> = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.value.as_str(), i))
            .collect();
        let used_claims = used_claims(config);
        let authenticators: Vec<Authenticator> = config
            .auth
            .iter()
            .map(|a| Authenticator::compile(a, &used_claims, previous.map_or(&[], |p| &p.authenticators)))
            .collect::<Result<_, _>>()?;
        let mut identity_headers: Vec<http::HeaderName> = Vec::new();
        for h in authenticators.iter().flat_map(|a| a.forwarded_headers()) {
            if !identity_headers.contains(h) {
                identity_headers.push(h.clone());
            }
        }
        let previous_policies = previous.map_or(&[][..], |p| &p.policies);
        let policies: Vec<Policy> = config
            .rate_limits
            .iter()
            .map(|cfg| Policy::compile(cfg, previous_policies))
            .collect();
        let redis = config.redis.as_ref().map(|cfg| {
            match previous
                .and_then(|p| p.redis.as_ref())
                .filter(|r| r.config() == cfg)
            {
                Some(kept) => Arc::clone(kept),
                None => Arc::new(RedisStore::new(cfg)),
            }
        });
        let policy_index: HashMap<&str, usize> = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let authenticator_index: HashMap<&str, usize> = authenticators
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut hosts = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let pool = |name: &str| {
                pool_index
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("route `{}` names undefined upstream `{name}`", r.name.value))
            };
            let target = match (&r.upstream, &r.versions) {
                _ if r.grpc.is_some() => match &r.grpc {
                    Some(g) => Target::Grpc(Box::new(crate::route::Transcoding {
                        pool: pool(&g.upstream.value)?,
                        config: g.clone(),
                    })),
                    None => return Err(format!("route `{}` has no upstream", r.name.value)),
                },
                _ if r.aggregate.is_some() => match &r.aggregate {
                    Some(a) => {
                        Target::Aggregate(Box::new(Aggregate::compile(a, &r.name.value, r.timeout, pool)?))
                    }
                    None => return Err(format!("route `{}` has no upstream", r.name.value)),
                },
                (_, Some(v)) => Target::Versions(Box::new(Versions::compile(v, &r.name.value, pool)?)),
                (Some(u), None) => Target::Upstream(pool(&u.value)?),
                (None, None) => return Err(format!("route `{}` has no upstream", r.name.value)),
            };
            routes.push(Route::compile(
                r,
                target,
                &authenticators,
                &authenticator_index,
                &policy_index,
            ));
            hosts.push(r.matcher.hosts.clone());
        }
        // Header names the configuration makes the gateway manage: other spellings of them
        // never reach an upstream.
        let configured: Vec<http::HeaderName> = identity_headers
            .iter()
            .cloned()
            .chain(
                authenticators
                    .iter()
                    .flat_map(|a| a.credential_headers().cloned()),
            )
            .chain(configured_header_names(config))
            .collect();
        let client_headers =
            ClientHeaderRules::compile(config.server.underscores_in_headers, configured.iter());
        let m = crate::observe::metrics::get();
        let route_durations = routes
            .iter()
            .map(|r| m.request_duration.with_label_values(&[&r.name]))
            .collect();
        let mut template_refused_headers = vec![
            http::header::AUTHORIZATION,
            http::header::PROXY_AUTHORIZATION,
            http::header::COOKIE,
        ];
        template_refused_headers.extend(identity_headers.iter().cloned());
        template_refused_headers.extend(
            authenticators
                .iter()
                .flat_map(|a| a.credential_headers().cloned()),
        );
        let credential_query_params = authenticators
            .iter()
            .flat_map(|a| a.query_params())
            .map(String::from)
            .collect();
        let routes = RouteTable::build(routes, &hosts);
        let unreachable = crate::grpc::reach::unreachable_bindings(&routes, &hosts);
        if !unreachable.is_empty() {
            return Err(unreachable.join("\n"));
        }
        Ok(Snapshot {
            template_refused_headers,
            routes,
            pools,
            authenticators,
            identity_headers,
            policies,
            redis,
            settings: RequestSettings {
                limits: config.server.limits,
                connections: config.server.connections,
                trusted_proxies: config.server.trusted_proxies.clone(),
                ip: config.server.ip.clone(),
                access_log: config.server.access_log.clone(),
                client_headers,
                drain_delay: config.server.drain_delay,
                hsts: config
                    .server
                    .hsts
                    .as_ref()
                    .and_then(|h| http::HeaderValue::from_str(&h.value()).ok()),
                https_port: config
                    .server
                    .process
                    .listen
                    .iter()
                    .filter(|l| l.tls.is_some())
                    .find_map(|l| l.addr.parse::<std::net::SocketAddr>().ok())
                    .map_or(443, |a| a.port()),
            },
            route_durations,
            credential_query_params,
            tracing: config.tracing.clone(),
            trace_sampling: crate::observe::trace::Sampling {
                ratio: config.tracing.sample_ratio,
                export: config.tracing.otlp_endpoint.is_some(),
                max_queued: config.tracing.max_queued_spans,
                client_sampling: config.tracing.client_sampling,
            },
            config_sha256: config.source_sha256.clone(),
            loaded_at: std::time::SystemTime::now(),
            certificates: config
                .server
                .certificates
                .iter()
                .map(|c| (c.addr.clone(), Arc::clone(&c.set)))
                .collect(),
        })
    }

    /// A route's authentication in words, for `check`: `public`, or `auth a, b` (plus
    /// `require`).
    pub fn auth_summary(&self, route: &Route) -> String {
        if route.auth.authenticators.is_empty() {
            return "public".into();
        }
        let names: Vec<&str> = route
            .auth
            .authenticators
            .iter()
            .filter_map(|&i| self.authenticators.get(i).map(|a| a.name.as_str()))
            .collect();
        let require = if route.auth.require.is_some() {
            " with require"
        } else {
            ""
        };
        format!("auth {}{require}", names.join(", "))
    }

    /// Key sets fetched from URLs, kept fresh by the JWKS refresher.
    pub fn remote_jwks(&self) -> Vec<Arc<crate::auth::jwks::RemoteJwks>> {
        self.authenticators
            .iter()
            .filter_map(|a| a.remote_jwks())
            .collect()
    }

    /// `Err(reason)` until every checked pool has finished a first health-check round and
    /// every JWKS URL has delivered a key set (tokens are refused until then).
    pub fn readiness(&self) -> Result<(), String> {
        for set in self.remote_jwks() {
            set.readiness()?;
        }
        let waiting: Vec<&str> = self
            .pools
            .iter()
            .filter(|p| !p.health().ready())
            .map(|p| p.name.as_str())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "first health check pending for upstream(s) {}",
                waiting.join(", ")
            ))
        }
    }
}

/// The token claims the configuration reads outside the authenticators (`require.claims`,
/// rate-limit keys): verified identities keep these and their authenticator's
/// `forward_claims`, nothing else.
fn used_claims(config: &Config) -> Vec<String> {
    let required = config
        .routes
        .iter()
        .filter_map(|r| r.auth.require.as_ref())
        .flat_map(|req| req.claims.iter().map(|(claim, _)| claim.clone()));
    let keyed = config.rate_limits.iter().flat_map(|p| {
        p.key.iter().filter_map(|part| match part {
            crate::config::KeyPart::Claim(claim) => Some(claim.clone()),
            _ => None,
        })
    });
    // `{claim.NAME}` in aggregation templates (paths and header values).
    let templated = config
        .routes
        .iter()
        .flat_map(|r| r.aggregate.iter().flat_map(|a| &a.parts))
        .flat_map(|part| {
            part.path
                .vars()
                .chain(part.set_headers.iter().flat_map(|(_, t)| t.vars()))
                .filter_map(|var| match var {
                    crate::aggregate::template::Var::Claim(c) => Some(c.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
    let mut claims: Vec<String> = required.chain(keyed).chain(templated).collect();
    claims.sort();
    claims.dedup();
    claims
}

/// Header names routes and policies read or set: header-rule names, rate-limit key headers,
/// version headers (the one the gateway sets, the ones versions are read from, overrides).
fn configured_header_names(config: &Config) -> Vec<http::HeaderName> {
    use crate::config::{KeyPart, VersionSource};
    let mut names = Vec::new();
    for r in &config.routes {
        let rules = &r.request_headers;
        names.extend(rules.set.iter().chain(&rules.add).map(|(n, _)| n.clone()));
        names.extend(rules.remove.iter().cloned());
        names.extend(rules.rename.iter().map(|(_, to)| to.clone()));
        if let Some(v) = &r.versions {
            names.push(v.header.clone());
            names.extend(v.from.iter().filter_map(|s| match s {
                VersionSource::Header(h) => Some(h.clone()),
                _ => None,
            }));
            names.extend(v.versions.iter().filter_map(|v| v.override_header.clone()));
        }
    }
    for policy in &config.rate_limits {
        names.extend(policy.key.iter().filter_map(|k| match k {
            KeyPart::Header(h) => Some(h.clone()),
            _ => None,
        }));
    }
    names
}

/// The current snapshot behind one atomic pointer.
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    /// Set once the first snapshot became ready; a reload never makes the process unready
    /// (pools added by a reload are health-checked, but do not pull the instance out).
    ready: AtomicBool,
    /// Set at SIGTERM: unready, and keep-alive connections are closed after their request.
    draining: AtomicBool,
}

impl Runtime {
    pub fn new(snapshot: Snapshot) -> Runtime {
        crate::tls::certificates::publish_expiry(snapshot.certificates.values());
        publish_config_info(None, &snapshot);
        crate::observe::access_sink::configure(&snapshot.settings.access_log.path);
        Runtime {
            current: ArcSwap::from_pointee(snapshot),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// The snapshot a request keeps for its whole life.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// From now on `/readyz` fails and connections are not kept alive (SIGTERM's drain).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Replace the snapshot atomically; in-flight requests keep the one they loaded.
    pub fn swap(&self, next: Snapshot) {
        crate::tls::certificates::publish_expiry(next.certificates.values());
        publish_config_info(Some(&self.current.load()), &next);
        crate::observe::access_sink::configure(&next.settings.access_log.path);
        self.current.store(Arc::new(next));
    }

    /// `Err(reason)` until the first snapshot's pools finished their first health round.
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining: shutting down".into());
        }
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.load().readiness()?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }
}

/// `portcullis_config_info{hash}` and the load time: a fleet converged when every instance
/// shows the same hash. The hash is the first 16 hex digits of the file's SHA-256.
fn publish_config_info(previous: Option<&Snapshot>, next: &Snapshot) {
    let m = crate::observe::metrics::get();
    if let Some(previous) = previous {
        let _ = m.config_info.remove_label_values(&[previous.config_hash()]);
    }
    m.config_info.with_label_values(&[next.config_hash()]).set(1);
    let loaded = next
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    m.config_loaded.with_label_values::<&str>(&[]).set(loaded);
}

impl Snapshot {
    /// The short form of the configuration's hash shown in metrics and `/config`.
    pub fn config_hash(&self) -> &str {
        self.config_sha256.get(..16).unwrap_or(&self.config_sha256)
    }
}
