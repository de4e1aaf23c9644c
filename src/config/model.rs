//! The validated configuration, as typed values. Nothing here knows about Pingora.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::auth_model::{AuthConfig, RouteAuthConfig};
use super::cidr::Cidr;
use super::decode::Spanned;
use super::limits_model::RateLimitConfig;
use super::redis_model::RedisConfig;
use super::versions_model::VersionsConfig;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub auth: Vec<AuthConfig>,
    pub rate_limits: Vec<RateLimitConfig>,
    /// The shared store of `store: redis` policies.
    pub redis: Option<RedisConfig>,
    pub routes: Vec<RouteConfig>,
    pub tracing: super::tracing_schema::TracingConfig,
    /// SHA-256 of the file's text (hex): which configuration a fleet runs.
    pub source_sha256: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What belongs to the process (a live reload cannot change it).
    pub process: ProcessSettings,
    pub access_log: super::access_log_schema::AccessLogConfig,
    /// Peers whose `X-Forwarded-*` headers are believed and extended rather than replaced.
    pub trusted_proxies: Vec<Cidr>,
    pub limits: RequestLimits,
    pub connections: ConnectionLimits,
    /// Client addresses every route accepts or refuses.
    pub ip: IpRules,
    /// What happens to request header names containing `_`.
    pub underscores_in_headers: Underscores,
    /// Per TLS listener, its certificates (a live reload reads them again).
    pub certificates: Vec<ListenerCertificates>,
    /// `Strict-Transport-Security` on responses to requests that came over TLS.
    pub hsts: Option<Hsts>,
    /// After SIGTERM: unready but serving for this long, then the graceful stop.
    pub drain_delay: Duration,
    /// Resolving host-name targets.
    pub dns: DnsConfig,
}

/// A route's CORS policy (`cors:`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    pub allow_origins: Vec<crate::cors::OriginPattern>,
    /// Default GET, HEAD, POST.
    pub allow_methods: Vec<http::Method>,
    /// Lower-case header names, or `*` (any header a preflight asks for).
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Option<Duration>,
}

/// `server.hsts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The header value.
    pub fn value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// `ip:`: client addresses refused (`deny`) or, when `allow` is not empty, the only ones
/// accepted. The client address is the one `trusted_proxies` determine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl IpRules {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `client` may pass: not in `deny`, and in `allow` when it lists any. An
    /// unknown address passes only where there are no rules.
    pub fn admits(&self, client: Option<std::net::IpAddr>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(ip) = client else {
            return false;
        };
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}

/// Request header names with `_`: frameworks read `X_Foo` and `X-Foo` as one variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Underscores {
    /// Removed before the request goes upstream (as nginx does by default).
    #[default]
    Drop,
    /// The request is refused (400).
    Reject,
    /// Passed, except names that fold to a header the gateway manages.
    Allow,
}

/// The `server` settings a running process cannot change: a live reload leaves them as they
/// were, a graceful upgrade (a new process) applies them. A running gateway records its own
/// (see `control::record`), so the operator commands compare against what really runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessSettings {
    /// The proxy listeners (Pingora hands a listener over on upgrade only when the address
    /// string is identical in both configs). Their certificates are not here: a live reload
    /// re-reads those (see `ServerConfig::certificates`).
    pub listen: Vec<Listener>,
    pub threads: usize,
    /// `server.work_stealing`: one tokio runtime whose threads steal each other's tasks
    /// (`true`), or one single-threaded runtime per thread (`false`, the default, as nginx's
    /// workers and Envoy's worker threads own their connections): each HTTP/1 connection is
    /// placed on a random thread and stays there, so its request path has no task stealing
    /// (see docs/config.md for what still crosses threads, and BENCHMARKS.md).
    /// A record without the field was written by a binary that ran Pingora's default, `true`.
    #[serde(default = "ran_work_stealing")]
    pub work_stealing: bool,
    pub admin: Option<String>,
    /// The environment variable holding the admin token (`server.admin.token_env`): every
    /// admin endpoint but `/healthz` and `/readyz` then needs `Authorization: Bearer <token>`.
    #[serde(default)]
    pub admin_token_env: Option<String>,
    /// `server.admin.metrics_without_token`: `GET`/`HEAD /metrics` stay open with a token set, for
    /// scrapers that cannot send one (Prometheus' pod annotations).
    #[serde(default)]
    pub admin_metrics_without_token: bool,
    /// `Host` names the admin listener accepts besides loopback and its own address.
    pub admin_hosts: Vec<String>,
    pub pid_file: String,
    /// The socket this process hands its listeners to on SIGQUIT.
    pub upgrade_sock: String,
    pub error_log: Option<String>,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    pub log_level: Option<String>,
    /// `server.cache`: the response store is sized at start.
    #[serde(default)]
    pub cache: super::cache_schema::CacheStoreConfig,
}

/// What a process recorded before `server.work_stealing` existed ran: Pingora's default.
fn ran_work_stealing() -> bool {
    true
}

impl ProcessSettings {
    /// The admin token, from the variable `server.admin.token_env` names (`check` made sure it
    /// is set): the gateway reads it at start, `portcullis reload` to send it.
    pub fn admin_token(&self) -> Option<String> {
        self.admin_token_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
    }

    /// The names of the settings that differ in `new`.
    pub fn changes(&self, new: &ProcessSettings) -> Vec<&'static str> {
        let checks = [
            ("listen", self.listen != new.listen),
            ("threads", self.threads != new.threads),
            ("work_stealing", self.work_stealing != new.work_stealing),
            ("admin", self.admin != new.admin),
            ("admin_hosts", self.admin_hosts != new.admin_hosts),
            ("admin.token_env", self.admin_token_env != new.admin_token_env),
            (
                "admin.metrics_without_token",
                self.admin_metrics_without_token != new.admin_metrics_without_token,
            ),
            ("pid_file", self.pid_file != new.pid_file),
            ("upgrade_sock", self.upgrade_sock != new.upgrade_sock),
            ("error_log", self.error_log != new.error_log),
            ("grace_period", self.grace_period != new.grace_period),
            ("shutdown_timeout", self.shutdown_timeout != new.shutdown_timeout),
            ("log_level", self.log_level != new.log_level),
            ("cache", self.cache != new.cache),
        ];
        checks
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| name)
            .collect()
    }
}

/// One proxy listener: `"0.0.0.0:8080"`, or `{ addr, h2c, tls }`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "ListenerRecord")]
pub struct Listener {
    /// As written (it names the listener on upgrade hand-over and in the certificate index).
    pub addr: String,
    /// HTTP/2 with prior knowledge on a plain listener (HTTP/1.1 still works beside it).
    pub h2c: bool,
    pub tls: Option<ListenerTls>,
}

impl Listener {
    pub fn plain(addr: &str) -> Listener {
        Listener {
            addr: addr.to_string(),
            h2c: false,
            tls: None,
        }
    }
}

/// A process record written before listeners had settings lists bare addresses.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum ListenerRecord {
    Addr(String),
    Full {
        addr: String,
        h2c: bool,
        tls: Option<ListenerTls>,
    },
}

impl From<ListenerRecord> for Listener {
    fn from(r: ListenerRecord) -> Listener {
        match r {
            ListenerRecord::Addr(addr) => Listener::plain(&addr),
            ListenerRecord::Full { addr, h2c, tls } => Listener { addr, h2c, tls },
        }
    }
}

/// The TLS settings of a listener a running process cannot change (its acceptor is built at
/// start); its certificates are re-read by a live reload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenerTls {
    pub min_version: TlsVersion,
    pub alpn: Alpn,
    /// PEM file of the CAs client certificates must chain to.
    pub client_ca: Option<String>,
    /// SHA-256 of that file when the configuration was loaded: its trust store is built at
    /// start, so new contents need an upgrade, and a reload says so.
    #[serde(default)]
    pub client_ca_sha256: Option<String>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Protocols offered by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Alpn {
    /// `[h2, http/1.1]` (the default): HTTP/2 preferred.
    H2Http1,
    Http1,
    H2,
}

/// Whether clients present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClientAuth {
    /// None is asked for.
    None,
    /// Asked for; a client without one connects, a client with an invalid one does not.
    Optional,
    /// A handshake without a valid client certificate fails.
    Required,
}

/// The certificates of one TLS listener, read and checked while the configuration loads.
#[derive(Debug, Clone)]
pub struct ListenerCertificates {
    pub addr: String,
    pub set: std::sync::Arc<crate::tls::certificates::CertificateSet>,
}

/// How many client connections the proxy listeners hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// In all; beyond it a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// From one client address (IPv6: one /64); trusted proxies are exempt. 0: no cap.
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
        }
    }
}

/// Caps on what a client may send before the gateway even routes the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub max_uri_length: usize,
    pub header_read_timeout: Duration,
    /// The longest pause between two reads of a request body.
    pub body_idle_timeout: Duration,
    /// The time a request body may take, counted from the request head...
    pub body_timeout: Duration,
    /// ...extended by one second for every this many bytes received (0: no extension).
    pub body_min_rate: u64,
    /// The longest one write to the client may take (a client that stops reading).
    pub send_timeout: Duration,
    /// The largest request body, in bytes (a route's `max_body` replaces it): 413 beyond.
    pub max_body: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_header_count: 100,
            max_header_bytes: 32 * 1024,
            max_uri_length: 8 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 8 * 1024,
            send_timeout: Duration::from_secs(60),
            max_body: 10 * 1024 * 1024,
        }
    }
}

impl RequestLimits {
    /// Whether a body of which `received` bytes arrived `elapsed` after the request head has
    /// taken too long: `body_timeout`, plus a second per `body_min_rate` bytes.
    pub fn body_overdue(&self, elapsed: Duration, received: u64) -> bool {
        let earned = match self.body_min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(received as f64 / rate as f64),
        };
        elapsed > self.body_timeout.saturating_add(earned)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    Hash,
    LeastConn,
    LeastTime,
}

impl Balance {
    pub const NAMES: [&'static str; 5] = ["round_robin", "random", "hash", "least_conn", "least_time"];
}

/// What a `hash` pool hashes to keep a client on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// As written, for messages and metric labels.
    pub addr: Spanned<String>,
    /// An IP literal, or a host name re-resolved every `server.dns.refresh`.
    pub host: TargetHost,
    /// The addresses at load (a host name's every address; an IP literal's one).
    pub resolved: Vec<SocketAddr>,
    pub weight: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetHost {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

/// `server.dns`: how host-name targets are resolved, at load and again every `refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsConfig {
    /// Name servers to ask (`IP:PORT`); empty: the system's (`/etc/resolv.conf`, `/etc/hosts`).
    pub nameservers: Vec<SocketAddr>,
    /// How often every host-name target is resolved again; zero: never (only at load).
    pub refresh: Duration,
    /// The longest one resolution may take.
    pub timeout: Duration,
    pub family: AddressFamily,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            refresh: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            family: AddressFamily::Ipv4Preferred,
        }
    }
}

/// Which addresses of a name become targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// The IPv4 addresses when the name has any, else the IPv6 ones (Envoy's `V4_PREFERRED`).
    Ipv4Preferred,
    /// Every IPv4 and IPv6 address.
    All,
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    Tcp,
    Http {
        path: String,
        host: String,
        expect_status: Vec<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: Spanned<String>,
    pub targets: Vec<TargetConfig>,
    pub balance: Balance,
    pub hash_key: HashKey,
    pub health_check: Option<HealthCheckConfig>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Which failed attempts are tried again, how often and within what budget.
    pub retry: RetryConfig,
    /// Passive health: when a failing target is taken out of rotation.
    pub outlier: OutlierConfig,
    /// Concurrency cap (circuit breaking) and its short queue.
    pub limits: UpstreamLimits,
    /// The HTTP version spoken to the targets.
    pub protocol: UpstreamProtocol,
    /// TLS to the targets (`None`: plain TCP).
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN), multiplexed.
    H2,
    /// HTTP/2 with prior knowledge, no TLS (gRPC services on a private network).
    H2c,
}

/// `tls:` of an upstream; the files were read and checked when the configuration loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Server name sent and verified.
    pub sni: String,
    /// PEM file of the CAs the targets' certificates chain to (`None`: the system's).
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Certificate and host name verified (`false` only with `insecure: true`).
    pub verify: bool,
}

/// `retry:` (or the older `retries: N`, the same as `attempts: N + 1`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Tries in all, the first included (1: never retry).
    pub attempts: usize,
    /// The failures a retry answers.
    pub on: RetryOn,
    /// One attempt's deadline, within the route's.
    pub per_try_timeout: Option<Duration>,
    /// Full-jitter backoff before retry n: a random wait in `[0, min(max, base × 2^(n-1))]`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retries in any second at most `ratio` × that second's requests + `min_per_second`.
    pub budget_ratio: f64,
    pub budget_min_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 2,
            on: RetryOn::default(),
            per_try_timeout: None,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_ratio: 0.2,
            budget_min_per_second: 5,
        }
    }
}

/// `retry.on`: the failures worth another attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// No connection (refused, unreachable, connect timeout): the request was never sent.
    pub connect_failure: bool,
    /// The connection broke before an answer arrived.
    pub reset: bool,
    /// No answer within the read timeout or `per_try_timeout`.
    pub timeout: bool,
    /// Answers with these statuses (500-599).
    pub statuses: Vec<u16>,
}

impl RetryOn {
    pub const NAMES: [&'static str; 3] = ["connect-failure", "reset", "timeout"];
}

impl Default for RetryOn {
    fn default() -> Self {
        RetryOn {
            connect_failure: true,
            reset: true,
            timeout: false,
            statuses: vec![502, 503, 504],
        }
    }
}

/// `limits:`: at most `max_requests` requests in flight to the upstream (all targets); beyond
/// it at most `max_pending` wait, each at most `pending_timeout`; the rest get 503 at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    pub max_requests: usize,
    pub max_pending: usize,
    pub pending_timeout: Duration,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            max_requests: 1024,
            max_pending: 64,
            pending_timeout: Duration::from_millis(100),
        }
    }
}

/// Passive health (`outlier:`): a target whose answers fail is ejected from rotation for a
/// while, counted from every attempt (see `upstream::outlier`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    /// 5xx answers in a row that eject (0: never).
    pub consecutive_5xx: u32,
    /// Connection failures, resets and timeouts in a row that eject (0: never).
    pub consecutive_gateway_errors: u32,
    pub failure_ratio: Option<FailureRatio>,
    /// Ejection n lasts `base_ejection × n`, at most `max_ejection`.
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Never more of the pool ejected than this; at least one target always stays.
    pub max_ejected_percent: u32,
}

/// Eject when more than `above` of a target's attempts in `window` failed, once it had at
/// least `min_requests` there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRatio {
    pub min_requests: u32,
    pub above: f64,
    pub window: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 3,
            failure_ratio: None,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// `(template, prefix, text or shape)`: see [`PathMatch::slot_key`].
pub type SlotKey<'a> = (bool, bool, &'a str);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// A `path` or `path_prefix` with captures or wildcards (`/users/{id}`, `/files/*/raw`).
    Template(std::sync::Arc<crate::routing::template::PathTemplate>),
}

impl PathMatch {
    pub fn text(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
            PathMatch::Template(t) => t.text(),
        }
    }

    /// The template, on a route whose path has captures or wildcards.
    pub fn template(&self) -> Option<&crate::routing::template::PathTemplate> {
        match self {
            PathMatch::Template(t) => Some(t),
            PathMatch::Exact(_) | PathMatch::Prefix(_) => None,
        }
    }

    /// Whether the path also covers the paths below it (`path_prefix`).
    pub fn is_prefix(&self) -> bool {
        match self {
            PathMatch::Exact(_) => false,
            PathMatch::Prefix(_) => true,
            PathMatch::Template(t) => t.is_prefix(),
        }
    }

    /// What makes two paths one (a template by its shape: `/users/{id}` is `/users/{uid}`),
    /// as a map key without the template's compiled constraints.
    pub fn slot_key(&self) -> SlotKey<'_> {
        match self {
            PathMatch::Exact(p) => (false, false, p),
            PathMatch::Prefix(p) => (false, true, p),
            PathMatch::Template(t) => (true, t.is_prefix(), t.shape()),
        }
    }

    /// The path as segment matchers (for `check`'s overlap reports).
    pub fn pattern(&self) -> crate::routing::overlap::Pattern<'_> {
        use crate::routing::overlap::Pattern;
        match self {
            PathMatch::Exact(p) => Pattern::literal(p, false),
            PathMatch::Prefix(p) => Pattern::literal(p, true),
            PathMatch::Template(t) => t.pattern(),
        }
    }

    /// The YAML field the path came from, for messages.
    pub fn field(&self) -> &'static str {
        if self.is_prefix() {
            "path_prefix"
        } else {
            "path"
        }
    }
}

#[derive(Debug, Clone)]
pub struct MatchConfig {
    /// Lower-cased; `*.example.com` wildcards allowed in the leftmost label.
    pub hosts: Vec<String>,
    pub path: PathMatch,
    /// Upper-cased; empty means any method.
    pub methods: Vec<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderRulesConfig {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    /// `from -> to`: every value of `from` moves to `to`.
    pub rename: Vec<(HeaderName, HeaderName)>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: Spanned<String>,
    pub matcher: MatchConfig,
    /// Where requests go: one upstream, or per API version (exactly one of the two is set).
    pub upstream: Option<Spanned<String>>,
    pub versions: Option<VersionsConfig>,
    pub strip_prefix: Option<Spanned<String>>,
    /// The upstream path as a template of the route path's captures (`rewrite:`).
    pub rewrite: Option<crate::routing::template::Rewrite>,
    pub request_headers: HeaderRulesConfig,
    pub response_headers: HeaderRulesConfig,
    pub timeout: Option<Duration>,
    pub auth: RouteAuthConfig,
    /// Rate-limit policies applied to this route, by name.
    pub rate_limit: Vec<Spanned<String>>,
    /// Override and client-address headers this route lets through (stripped by default).
    pub pass_headers: Vec<HeaderName>,
    /// Whether requests may upgrade the connection (WebSocket); otherwise a WebSocket handshake
    /// is refused (400) and any other `Upgrade` is removed.
    pub websocket: bool,
    /// After the upgrade: how long the connection may be quiet (default 60 s).
    pub websocket_idle_timeout: Duration,
    /// After the upgrade: how long it may live at most.
    pub websocket_max_lifetime: Option<Duration>,
    /// Body, query and method transformation.
    pub transform: super::TransformConfig,
    /// Fan-out to several upstreams, merged into one answer (instead of `upstream`).
    pub aggregate: Option<super::AggregateConfig>,
    /// REST/JSON transcoded to gRPC calls (instead of `upstream`).
    pub grpc: Option<super::GrpcConfig>,
    /// `retry: { idempotency_key: true }`: a non-idempotent request carrying
    /// `Idempotency-Key` may be retried like an idempotent one.
    pub retry_idempotency_key: bool,
    /// Client addresses this route accepts or refuses (after the server's).
    pub ip: IpRules,
    /// The largest request body this route accepts (instead of `server.limits.max_body`).
    pub max_body: Option<u64>,
    /// Browsers' cross-origin requests this route answers (`cors:`).
    pub cors: Option<CorsConfig>,
    /// A request over plain HTTP is answered 308 with the same URL over https.
    pub https_redirect: bool,
    /// Answers kept in the gateway's store (`cache:`).
    pub cache: Option<super::cache_schema::RouteCacheConfig>,
}
