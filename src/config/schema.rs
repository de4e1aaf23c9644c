//! The configuration schema: which fields each section has, their defaults, and how each is
//! decoded from the positioned YAML tree. Cross-item rules live in `validate.rs`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::auth_model::AuthConfig;
use super::auth_schema::{decode_auth, decode_route_auth};
use super::cidr::Cidr;
use super::decode::{check_name, index, named_items, Decode, Entries, Fields, Spanned};
use super::diag::{did_you_mean, Problems};
use super::limits_model::RateLimitConfig;
use super::limits_schema::decode_rate_limits;
use super::model::*;
use super::redis_model::RedisConfig;
use super::redis_schema::decode_redis;
use super::versions_schema::decode_versions;

use super::yaml::Node;
use crate::routing::normalize::normalize_target;

const TOP: &[&str] = &["server", "upstreams", "auth", "rate_limits", "redis", "routes"];

/// The sections of a document, each decoded as far as it could be, so cross-item checks can
/// run even when some item is broken.
pub struct Parts {
    pub server: Option<ServerConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub auth: Vec<AuthConfig>,
    /// Every authenticator name declared, including broken ones.
    pub auth_names: Vec<String>,
    pub rate_limits: Vec<RateLimitConfig>,
    pub limit_names: Vec<String>,
    pub redis: Option<RedisConfig>,
    /// Per route in file order; `None` where the route itself is unusable.
    pub routes: Vec<Option<RouteConfig>>,
    pub complete: bool,
}

impl Parts {
    fn empty() -> Parts {
        Parts {
            server: None,
            upstreams: Vec::new(),
            auth: Vec::new(),
            auth_names: Vec::new(),
            rate_limits: Vec::new(),
            limit_names: Vec::new(),
            redis: None,
            routes: Vec::new(),
            complete: false,
        }
    }

    pub fn into_config(self) -> Option<Config> {
        if !self.complete {
            return None;
        }
        Some(Config {
            server: self.server?,
            upstreams: self.upstreams,
            auth: self.auth,
            rate_limits: self.rate_limits,
            redis: self.redis,
            routes: self.routes.into_iter().collect::<Option<_>>()?,
        })
    }
}

/// Decode the whole document, reporting every problem.
pub fn decode_parts(root: &Node, base_dir: &std::path::Path, p: &mut Problems) -> Parts {
    let before = p.len();
    if let Node::Null { pos } = root {
        p.add(
            *pos,
            "",
            "the configuration is empty; it needs at least `server:` with `listen`",
        );
        return Parts::empty();
    }
    let Some(f) = Fields::new(root, "", TOP, p) else {
        return Parts::empty();
    };
    let server = match f.node("server") {
        Some(node) => decode_server(node, "server", p),
        None => {
            p.add(
                f.pos(),
                "server",
                "missing required section `server` (at least `listen`)",
            );
            None
        }
    };
    let upstreams: Vec<UpstreamConfig> = match f.node("upstreams") {
        Some(node) => decode_upstreams(node, p),
        None => Vec::new(),
    };
    let (auth, auth_names) = match f.node("auth") {
        Some(node) => decode_auth(node, base_dir, p),
        None => (Vec::new(), Vec::new()),
    };
    let redis = f.node("redis").and_then(|node| decode_redis(node, p));
    let (rate_limits, limit_names) = match f.node("rate_limits") {
        Some(node) => decode_rate_limits(node, f.has("redis"), p),
        None => (Vec::new(), Vec::new()),
    };
    let routes: Vec<Option<RouteConfig>> = match f.node("routes") {
        Some(Node::Seq { items, .. }) => items
            .iter()
            .enumerate()
            .map(|(i, n)| decode_route(n, &index("routes", i), p))
            .collect(),
        Some(other) => {
            p.add(
                other.pos(),
                "routes",
                format!("expected a list of routes, found {}", other.kind()),
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let complete = p.len() == before;
    Parts {
        server,
        upstreams,
        auth,
        auth_names,
        rate_limits,
        limit_names,
        redis,
        routes,
        complete,
    }
}

fn decode_server(node: &Node, path: &str, p: &mut Problems) -> Option<ServerConfig> {
    const FIELDS: &[&str] = &[
        "listen",
        "threads",
        "admin",
        "admin_hosts",
        "pid_file",
        "upgrade_sock",
        "error_log",
        "grace_period",
        "shutdown_timeout",
        "log_level",
        "access_log",
        "trusted_proxies",
        "limits",
        "underscores_in_headers",
        "max_connections",
        "max_connections_per_ip",
    ];
    let f = Fields::new(node, path, FIELDS, p)?;
    let listen: Option<Vec<Spanned<String>>> = f.req("listen", p);
    let listen = listen.and_then(|l| {
        if l.is_empty() {
            p.add(
                f.pos(),
                &f.path_of("listen"),
                "needs at least one address such as 0.0.0.0:8080",
            );
        }
        let ok = l
            .iter()
            .enumerate()
            .all(|(i, a)| socket_addr(a, &index(&f.path_of("listen"), i), p).is_some());
        ok.then(|| l.into_iter().map(|a| a.value).collect::<Vec<_>>())
    });
    let admin: Option<Spanned<String>> = f.opt("admin", p);
    let admin_ok = admin
        .as_ref()
        .is_none_or(|a| socket_addr(a, &f.path_of("admin"), p).is_some());
    let admin_hosts: Vec<Spanned<String>> = f.or("admin_hosts", Vec::new(), p);
    let admin_hosts: Vec<String> = admin_hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let host = host_pattern(h, &index(&f.path_of("admin_hosts"), i), p)?;
            if host.starts_with("*.") {
                p.add(
                    h.pos,
                    &index(&f.path_of("admin_hosts"), i),
                    "list exact host names, not wildcards",
                );
            }
            Some(host)
        })
        .collect();
    let threads = f.ranged("threads", 1..=1024, 2usize, p);
    let log_level: Option<Spanned<String>> = f.opt("log_level", p);
    if let Some(l) = &log_level {
        const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
        if !LEVELS.contains(&l.value.as_str()) {
            p.add(
                l.pos,
                &f.path_of("log_level"),
                format!("expected one of {}, found `{}`", LEVELS.join(", "), l.value),
            );
        }
    }
    let proxies: Vec<Spanned<String>> = f.or("trusted_proxies", Vec::new(), p);
    let mut trusted_proxies = Vec::new();
    for (i, s) in proxies.iter().enumerate() {
        match s.value.parse::<Cidr>() {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => p.add(s.pos, &index(&f.path_of("trusted_proxies"), i), e),
        }
    }
    let limits = match f.node("limits") {
        Some(n) => decode_limits(n, &f.path_of("limits"), p),
        None => Some(RequestLimits::default()),
    };
    Some(ServerConfig {
        process: ProcessSettings {
            listen: listen?,
            threads,
            admin: if admin_ok { admin.map(|a| a.value) } else { None },
            admin_hosts,
            pid_file: f.or("pid_file", DEFAULT_PID_FILE.to_string(), p),
            upgrade_sock: f.or("upgrade_sock", DEFAULT_UPGRADE_SOCK.to_string(), p),
            error_log: f.opt("error_log", p),
            grace_period: f.or("grace_period", Duration::from_secs(30), p),
            shutdown_timeout: f.or("shutdown_timeout", Duration::from_secs(5), p),
            log_level: log_level.map(|l| l.value),
        },
        access_log: f.or("access_log", true, p),
        trusted_proxies,
        limits: limits?,
        connections: ConnectionLimits {
            max_connections: f.ranged("max_connections", 1..=1_000_000, 10_000usize, p),
            max_connections_per_ip: f.ranged("max_connections_per_ip", 0..=1_000_000, 1_000usize, p),
        },
        underscores_in_headers: f.choice(
            "underscores_in_headers",
            &[
                ("drop", Underscores::Drop),
                ("reject", Underscores::Reject),
                ("allow", Underscores::Allow),
            ],
            Underscores::Drop,
            p,
        )?,
    })
}

/// Defaults in the runtime directory systemd creates (`RuntimeDirectory=portcullis`), not in
/// `/tmp`, where any local user could plant a pid file naming another process.
pub const DEFAULT_PID_FILE: &str = "/run/portcullis/portcullis.pid";
pub const DEFAULT_UPGRADE_SOCK: &str = "/run/portcullis/upgrade.sock";

fn decode_limits(node: &Node, path: &str, p: &mut Problems) -> Option<RequestLimits> {
    let d = RequestLimits::default();
    let f = Fields::new(
        node,
        path,
        &[
            "max_header_count",
            "max_header_bytes",
            "max_uri_length",
            "header_read_timeout",
            "body_idle_timeout",
            "body_timeout",
            "body_min_rate",
            "send_timeout",
        ],
        p,
    )?;
    // Pingora itself refuses more than 256 headers; a larger cap would be a lie.
    let max_header_count = f.ranged("max_header_count", 1..=256, d.max_header_count, p);
    let max_header_bytes = f.ranged("max_header_bytes", 1024..=1024 * 1024, d.max_header_bytes, p);
    let max_uri_length = f.ranged("max_uri_length", 256..=64 * 1024, d.max_uri_length, p);
    let limits = RequestLimits {
        max_header_count,
        max_header_bytes,
        max_uri_length,
        header_read_timeout: f.or("header_read_timeout", d.header_read_timeout, p),
        body_idle_timeout: f.or("body_idle_timeout", d.body_idle_timeout, p),
        body_timeout: f.or("body_timeout", d.body_timeout, p),
        body_min_rate: f.ranged("body_min_rate", 0..=u64::from(u32::MAX), d.body_min_rate, p),
        send_timeout: f.or("send_timeout", d.send_timeout, p),
    };
    for (key, d) in [
        ("header_read_timeout", limits.header_read_timeout),
        ("body_idle_timeout", limits.body_idle_timeout),
        ("body_timeout", limits.body_timeout),
        ("send_timeout", limits.send_timeout),
    ] {
        if d.is_zero() {
            p.add(f.pos_of(key), &f.path_of(key), "must be greater than 0");
        }
    }
    Some(limits)
}

fn socket_addr(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    match s.value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(
                s.pos,
                path,
                format!(
                    "bad address `{}`: expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080",
                    s.value
                ),
            );
            None
        }
    }
}

/// Upstream names are kept even when the upstream itself is broken, so routes naming it are
/// not reported a second time as "undefined".
fn decode_upstreams(node: &Node, p: &mut Problems) -> Vec<UpstreamConfig> {
    named_items(node, "upstreams", "upstream", UPSTREAM_FIELDS, p, decode_upstream).0
}

const UPSTREAM_FIELDS: &[&str] = &[
    "targets",
    "balance",
    "hash_key",
    "health_check",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "retries",
];

fn decode_upstream(
    name: Spanned<String>,
    node: &Node,
    path: &str,
    p: &mut Problems,
) -> Option<UpstreamConfig> {
    let f = Fields::new(node, path, UPSTREAM_FIELDS, p)?;
    let targets = match f.node("targets") {
        Some(Node::Seq { items, .. }) => {
            if items.is_empty() {
                p.add(
                    f.node("targets").map_or(f.pos(), Node::pos),
                    &f.path_of("targets"),
                    "upstream has no targets",
                );
            }
            let all: Vec<Option<TargetConfig>> = items
                .iter()
                .enumerate()
                .map(|(i, n)| decode_target(n, &index(&f.path_of("targets"), i), p))
                .collect();
            all.into_iter().collect::<Option<Vec<_>>>()
        }
        Some(other) => {
            p.add(
                other.pos(),
                &f.path_of("targets"),
                format!("expected a list of targets, found {}", other.kind()),
            );
            None
        }
        None => {
            p.add(
                f.pos(),
                &f.path_of("targets"),
                "upstream has no targets (missing required field `targets`)",
            );
            None
        }
    };
    let balance = match f.opt::<Spanned<String>>("balance", p) {
        None => Some(Balance::RoundRobin),
        Some(b) => match b.value.as_str() {
            "round_robin" => Some(Balance::RoundRobin),
            "random" => Some(Balance::Random),
            "hash" => Some(Balance::Hash),
            "least_conn" => Some(Balance::LeastConn),
            "least_time" => Some(Balance::LeastTime),
            other => {
                p.add(
                    b.pos,
                    &f.path_of("balance"),
                    one_of_message(other, &Balance::NAMES),
                );
                None
            }
        },
    };
    let hash_key = match f.opt::<Spanned<String>>("hash_key", p) {
        None => Some(HashKey::ClientIp),
        Some(k) => {
            if balance.is_some() && balance != Some(Balance::Hash) {
                p.add(
                    k.pos,
                    &f.path_of("hash_key"),
                    "hash_key only applies to `balance: hash`",
                );
            }
            decode_hash_key(&k, &f.path_of("hash_key"), p)
        }
    };
    let health_check = match f.node("health_check") {
        None | Some(Node::Null { .. }) => Some(None),
        Some(n) => decode_health_check(n, &f.path_of("health_check"), p).map(Some),
    };
    let connect_timeout: Duration = f.or("connect_timeout", Duration::from_secs(1), p);
    let read_timeout: Duration = f.or("read_timeout", Duration::from_secs(30), p);
    let write_timeout: Duration = f.or("write_timeout", Duration::from_secs(30), p);
    for (key, d) in [
        ("connect_timeout", connect_timeout),
        ("read_timeout", read_timeout),
        ("write_timeout", write_timeout),
    ] {
        if d.is_zero() {
            p.add(
                f.node(key).map_or(f.pos(), Node::pos),
                &f.path_of(key),
                "must be greater than 0",
            );
        }
    }
    // Pingora stops after 16 attempts per request whatever we ask for.
    let retries = f.ranged("retries", 0..=15, 1usize, p);
    Some(UpstreamConfig {
        name,
        targets: targets?,
        balance: balance?,
        hash_key: hash_key?,
        health_check: health_check?,
        connect_timeout,
        read_timeout,
        write_timeout,
        retries,
    })
}

fn one_of_message(found: &str, allowed: &[&str]) -> String {
    match did_you_mean(found, allowed) {
        Some(s) => format!("unknown value `{found}`; did you mean `{s}`?"),
        None => format!("unknown value `{found}`; expected one of {}", allowed.join(", ")),
    }
}

fn decode_hash_key(k: &Spanned<String>, path: &str, p: &mut Problems) -> Option<HashKey> {
    if k.value == "ip" {
        return Some(HashKey::ClientIp);
    }
    if let Some(name) = k.value.strip_prefix("header:") {
        return match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => Some(HashKey::Header(h)),
            Err(_) => {
                p.add(k.pos, path, format!("`{name}` is not a valid header name"));
                None
            }
        };
    }
    if let Some(name) = k.value.strip_prefix("cookie:") {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b"=;,".contains(&b)) {
            return Some(HashKey::Cookie(name.to_string()));
        }
        p.add(k.pos, path, format!("`{name}` is not a valid cookie name"));
        return None;
    }
    p.add(
        k.pos,
        path,
        format!(
            "unknown hash key `{}`; expected ip, header:NAME or cookie:NAME",
            k.value
        ),
    );
    None
}

fn decode_target(node: &Node, path: &str, p: &mut Problems) -> Option<TargetConfig> {
    let (addr, weight) = match node {
        Node::Scalar { .. } => (Spanned::<String>::decode(node, path, p)?, 1usize),
        Node::Map { .. } => {
            let f = Fields::new(node, path, &["addr", "weight"], p)?;
            let addr = f.req::<Spanned<String>>("addr", p);
            if matches!(f.node("weight"), Some(Node::Scalar { value, .. }) if value == "0") {
                p.add(
                    f.pos_of("weight"),
                    &f.path_of("weight"),
                    "weight must be at least 1 (remove the target to take it out)",
                );
                return None;
            }
            let weight = f.ranged("weight", 1..=10_000, 1usize, p);
            (addr?, weight)
        }
        other => {
            p.add(
                other.pos(),
                path,
                format!("expected HOST:PORT or {{ addr, weight }}, found {}", other.kind()),
            );
            return None;
        }
    };
    let resolved = resolve(&addr, path, p)?;
    Some(TargetConfig {
        addr,
        resolved,
        weight,
    })
}

/// Targets are IP:PORT, or HOST:PORT resolved once when the configuration is loaded.
fn resolve(addr: &Spanned<String>, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    if let Ok(a) = addr.value.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Some((scheme, rest)) = addr.value.split_once("://") {
        let host_port = rest.split('/').next().unwrap_or(rest);
        p.add(
            addr.pos,
            path,
            format!(
                "`{}`: targets are HOST:PORT without a scheme or path, such as `{host_port}`{}",
                addr.value,
                if scheme.eq_ignore_ascii_case("https") {
                    " (TLS to upstreams is not supported yet)"
                } else {
                    ""
                }
            ),
        );
        return None;
    }
    if addr.value.contains('/') {
        p.add(
            addr.pos,
            path,
            format!("`{}`: a target has no path; write HOST:PORT only", addr.value),
        );
        return None;
    }
    let looks_like_host_port = addr
        .value
        .rsplit_once(':')
        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
    if looks_like_host_port {
        if let Some(a) = addr.value.to_socket_addrs().ok().and_then(|mut it| it.next()) {
            return Some(a);
        }
        p.add(
            addr.pos,
            path,
            format!("bad address `{}`: host name does not resolve", addr.value),
        );
        return None;
    }
    p.add(
        addr.pos,
        path,
        format!(
            "bad address `{}`: expected HOST:PORT such as 127.0.0.1:9001",
            addr.value
        ),
    );
    None
}

fn decode_health_check(node: &Node, path: &str, p: &mut Problems) -> Option<HealthCheckConfig> {
    const FIELDS: &[&str] = &[
        "type",
        "path",
        "host",
        "expect_status",
        "interval",
        "timeout",
        "healthy_threshold",
        "unhealthy_threshold",
    ];
    let f = Fields::nested(node, path, FIELDS, UPSTREAM_FIELDS, p)?;
    let kind: Spanned<String> = f.opt("type", p).unwrap_or(Spanned {
        value: "http".into(),
        pos: f.pos(),
    });
    let probe = match kind.value.as_str() {
        "http" => {
            let hc_path: Spanned<String> = f.opt("path", p).unwrap_or(Spanned {
                value: "/".into(),
                pos: f.pos(),
            });
            if !hc_path.value.starts_with('/')
                || normalize_target(hc_path.value.as_bytes(), 8192).is_err()
                || http::Uri::try_from(hc_path.value.as_str()).is_err()
            {
                p.add(
                    hc_path.pos,
                    &f.path_of("path"),
                    format!("`{}` is not a valid request path", hc_path.value),
                );
            }
            let expect: Vec<Spanned<u16>> = f.opt("expect_status", p).unwrap_or_default();
            for (i, s) in expect.iter().enumerate() {
                if !(100..=599).contains(&s.value) {
                    p.add(
                        s.pos,
                        &index(&f.path_of("expect_status"), i),
                        "expected an HTTP status 100-599",
                    );
                }
            }
            let expect_status = if expect.is_empty() {
                vec![200]
            } else {
                expect.into_iter().map(|s| s.value).collect()
            };
            let host: String = f.or("host", "localhost".to_string(), p);
            if HeaderValue::from_str(&host).is_err() {
                p.add(f.pos(), &f.path_of("host"), "not a valid Host header value");
            }
            Some(HealthProbe::Http {
                path: hc_path.value,
                host,
                expect_status,
            })
        }
        "tcp" => {
            for key in ["path", "host", "expect_status"] {
                if f.has(key) {
                    p.add(
                        f.pos(),
                        &f.path_of(key),
                        format!("`{key}` only applies to `type: http`"),
                    );
                }
            }
            Some(HealthProbe::Tcp)
        }
        other => {
            p.add(
                kind.pos,
                &f.path_of("type"),
                one_of_message(other, &["http", "tcp"]),
            );
            None
        }
    };
    let interval: Duration = f.or("interval", Duration::from_secs(5), p);
    let timeout: Duration = f.or("timeout", Duration::from_secs(1), p);
    let healthy_threshold: usize = f.or("healthy_threshold", 2, p);
    let unhealthy_threshold: usize = f.or("unhealthy_threshold", 3, p);
    for (key, zero) in [
        ("interval", interval.is_zero()),
        ("timeout", timeout.is_zero()),
        ("healthy_threshold", healthy_threshold == 0),
        ("unhealthy_threshold", unhealthy_threshold == 0),
    ] {
        if zero {
            p.add(
                f.node(key).map_or(f.pos(), Node::pos),
                &f.path_of(key),
                "must be greater than 0",
            );
        }
    }
    Some(HealthCheckConfig {
        probe: probe?,
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    })
}

const ROUTE_FIELDS: &[&str] = &[
    "name",
    "match",
    "upstream",
    "strip_prefix",
    "request_headers",
    "response_headers",
    "timeout",
    "auth",
    "require",
    "forward_credential",
    "rate_limit",
    "versions",
    "pass_headers",
    "websocket",
];

fn decode_route(node: &Node, path: &str, p: &mut Problems) -> Option<RouteConfig> {
    let f = Fields::new(node, path, ROUTE_FIELDS, p)?;
    let auth = decode_route_auth(&f, p);
    let pass_headers = decode_pass_headers(&f, p);
    let name: Option<Spanned<String>> = f.req("name", p);
    if let Some(n) = &name {
        check_name(n, &f.path_of("name"), p);
    }
    let matcher = match f.node("match") {
        Some(n) => decode_match(n, &f.path_of("match"), p),
        None => {
            p.add(
                f.pos(),
                &f.path_of("match"),
                "missing required field `match` (at least `path` or `path_prefix`)",
            );
            None
        }
    };
    let upstream: Option<Spanned<String>> = f.opt("upstream", p);
    let versions = match (f.node("versions"), &name) {
        (Some(n), Some(route)) => decode_versions(n, &f.path_of("versions"), &route.value, p).map(Some),
        (Some(_), None) => None,
        (None, _) => Some(None),
    };
    match (f.has("upstream"), f.has("versions")) {
        (true, true) => p.add(
            f.pos_of("versions"),
            &f.path_of("versions"),
            "a route has either `upstream` or `versions`, not both",
        ),
        // Written inside `match` by mistake: reported there, once.
        (false, false) if f.misplaced("match", "upstream") || f.misplaced("match", "versions") => {}
        (false, false) => p.add(
            f.pos(),
            &f.path_of("upstream"),
            "missing required field `upstream` (or `versions` for a versioned API)",
        ),
        _ => {}
    }
    let strip_prefix: Option<Spanned<String>> = f.opt("strip_prefix", p);
    if let Some(s) = &strip_prefix {
        canonical_path(s, &f.path_of("strip_prefix"), p);
    }
    let request_headers = rules(&f, "request_headers", p);
    let response_headers = rules(&f, "response_headers", p);
    let timeout: Option<Duration> = f.opt("timeout", p);
    if timeout.is_some_and(|t| t.is_zero()) {
        p.add(f.pos(), &f.path_of("timeout"), "must be greater than 0");
    }
    Some(RouteConfig {
        name: name?,
        matcher: matcher?,
        upstream,
        versions: versions?,
        strip_prefix,
        request_headers: request_headers?,
        response_headers: response_headers?,
        timeout,
        auth: auth?,
        rate_limit: f.or("rate_limit", Vec::new(), p),
        pass_headers: pass_headers?,
        websocket: f.or("websocket", false, p),
    })
}

/// `pass_headers`: only headers the gateway strips by default can be let through.
fn decode_pass_headers(f: &Fields<'_>, p: &mut Problems) -> Option<Vec<HeaderName>> {
    let names: Vec<Spanned<String>> = f.or("pass_headers", Vec::new(), p);
    let mut out = Vec::new();
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        let path = index(&f.path_of("pass_headers"), i);
        match header_name(n, &path, p) {
            Some(h) if super::client_header_names::strippable(h.as_str()) => out.push(h),
            Some(h) => {
                p.add(
                    n.pos,
                    &path,
                    format!("`{h}` is not a header the gateway strips; it reaches the upstream anyway"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A route path must already be in the canonical form request paths are normalized to,
/// otherwise it could never match (or would match something else than it says).
fn canonical_path(s: &Spanned<String>, path: &str, p: &mut Problems) -> bool {
    if let Some(syntax) = pattern_syntax(&s.value) {
        p.add(
            s.pos,
            path,
            format!(
                "path `{}` uses pattern syntax ({syntax}), but route paths are literal: path \
                 templates and wildcards are not supported yet, so it would match only a request \
                 for exactly these characters; write a literal `path`, or a `path_prefix`",
                s.value
            ),
        );
        return false;
    }
    if s.value.contains(';') {
        p.add(s.pos, path, format!("path `{}` contains `;`; requests with `;` path parameters are refused, so it could never match", s.value));
        return false;
    }
    match normalize_target(s.value.as_bytes(), 8192) {
        Ok(n) if n.path == s.value && n.query.is_none() => true,
        Ok(n) if n.query.is_none() => {
            p.add(
                s.pos,
                path,
                format!(
                    "path `{}` is not canonical; requests are normalized, write `{}`",
                    s.value, n.path
                ),
            );
            false
        }
        Ok(_) => {
            p.add(
                s.pos,
                path,
                format!("path `{}` must not contain a query", s.value),
            );
            false
        }
        Err(e) => {
            p.add(s.pos, path, format!("path `{}` is invalid: {e}", s.value));
            false
        }
    }
}

/// Pattern syntax an operator may expect to work in a route path: `*` wildcards, `{id}`
/// templates, `:id` segments, regular-expression classes and anchors.
fn pattern_syntax(path: &str) -> Option<&'static str> {
    if path.contains('*') {
        Some("`*`")
    } else if path.contains(['{', '}']) {
        Some("`{…}`")
    } else if path.split('/').any(|seg| seg.starts_with(':')) {
        Some("a `:name` segment")
    } else if path.contains(['[', ']', '^', '$', '|']) {
        Some("regular-expression characters")
    } else {
        None
    }
}

fn rules(f: &Fields<'_>, key: &str, p: &mut Problems) -> Option<HeaderRulesConfig> {
    match f.node(key) {
        None | Some(Node::Null { .. }) => Some(HeaderRulesConfig::default()),
        Some(n) => decode_rules(n, &f.path_of(key), p),
    }
}

fn decode_rules(node: &Node, path: &str, p: &mut Problems) -> Option<HeaderRulesConfig> {
    let f = Fields::new(node, path, &["set", "add", "remove"], p)?;
    let set = header_pairs(&f, "set", p);
    let add = header_pairs(&f, "add", p);
    let remove: Vec<Spanned<String>> = f.or("remove", Vec::new(), p);
    let remove: Option<Vec<HeaderName>> = remove
        .iter()
        .enumerate()
        .map(|(i, s)| header_name(s, &index(&f.path_of("remove"), i), p))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    Some(HeaderRulesConfig {
        set: set?,
        add: add?,
        remove: remove?,
    })
}

fn header_pairs(f: &Fields<'_>, key: &str, p: &mut Problems) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let entries: Entries<Spanned<String>> = f.or(key, Entries::default(), p);
    let path = f.path_of(key);
    let pairs: Vec<Option<(HeaderName, HeaderValue)>> = entries
        .0
        .iter()
        .map(|(name, value)| {
            let n = header_name(name, &format!("{path}.{}", name.value), p);
            let v = header_value(value, &format!("{path}.{}", name.value), p);
            Some((n?, v?))
        })
        .collect();
    pairs.into_iter().collect()
}

pub(super) fn header_name(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.value.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            p.add(s.pos, path, format!("`{}` is not a valid header name", s.value));
            None
        }
    }
}

fn header_value(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<HeaderValue> {
    match HeaderValue::from_str(&s.value) {
        Ok(v) => Some(v),
        Err(_) => {
            p.add(
                s.pos,
                path,
                "header value must be visible ASCII without CR, LF or NUL",
            );
            None
        }
    }
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

fn decode_match(node: &Node, path: &str, p: &mut Problems) -> Option<MatchConfig> {
    let f = Fields::nested(
        node,
        path,
        &["hosts", "path", "path_prefix", "methods", "headers"],
        ROUTE_FIELDS,
        p,
    )?;
    let exact: Option<Spanned<String>> = f.opt("path", p);
    let prefix: Option<Spanned<String>> = f.opt("path_prefix", p);
    let path_match = match (exact, prefix) {
        (Some(e), None) => canonical_path(&e, &f.path_of("path"), p).then_some(PathMatch::Exact(e.value)),
        (None, Some(pre)) => {
            canonical_path(&pre, &f.path_of("path_prefix"), p).then_some(PathMatch::Prefix(pre.value))
        }
        (Some(_), Some(_)) => {
            p.add(
                f.pos(),
                path,
                "give either `path` (exact) or `path_prefix`, not both",
            );
            None
        }
        (None, None) => {
            p.add(
                f.pos(),
                path,
                "needs `path` (exact) or `path_prefix` (use `path_prefix: /` to match everything)",
            );
            None
        }
    };
    let hosts: Vec<Spanned<String>> = f.or("hosts", Vec::new(), p);
    let hosts: Option<Vec<String>> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| host_pattern(h, &index(&f.path_of("hosts"), i), p))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let methods: Vec<Spanned<String>> = f.or("methods", Vec::new(), p);
    let methods: Option<Vec<String>> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let upper = m.value.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                Some(upper)
            } else {
                p.add(
                    m.pos,
                    &index(&f.path_of("methods"), i),
                    one_of_message(&m.value, METHODS),
                );
                None
            }
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let headers: Entries<Spanned<String>> = f.or("headers", Entries::default(), p);
    let headers: Option<Vec<(HeaderName, HeaderValue)>> = headers
        .0
        .iter()
        .map(|(n, v)| {
            let hp = format!("{}.{}", f.path_of("headers"), n.value);
            let name = header_name(n, &hp, p);
            let value = header_value(v, &hp, p);
            Some((name?, value?))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    Some(MatchConfig {
        hosts: hosts?,
        path: path_match?,
        methods: methods?,
        headers: headers?,
    })
}

/// `api.example.com` or `*.example.com`; lower-cased; no port (ports are ignored when matching).
fn host_pattern(h: &Spanned<String>, path: &str, p: &mut Problems) -> Option<String> {
    let host = h.value.to_ascii_lowercase();
    let body = host.strip_prefix("*.").unwrap_or(&host);
    let valid_label =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if host.contains(':') {
        p.add(
            h.pos,
            path,
            format!(
                "host `{}` must not include a port (ports are ignored when matching)",
                h.value
            ),
        );
        return None;
    }
    if body.is_empty() || !body.split('.').all(valid_label) {
        p.add(
            h.pos,
            path,
            format!("`{}` is not a host name or `*.domain` wildcard", h.value),
        );
        return None;
    }
    Some(host)
}
