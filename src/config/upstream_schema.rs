//! Decoding `upstreams:`: targets (host names resolved at load), balancing and its hash key,
//! timeouts, retries (`retry_schema`) and the health check.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::decode::{index, named_items, Decode, Fields, Spanned};
use super::diag::Problems;
use super::model::*;
use super::values::one_of_message;
use super::yaml::Node;
use crate::routing::normalize::normalize_target;

/// Upstream names are kept even when the upstream itself is broken, so routes naming it are
/// not reported a second time as "undefined".
pub(super) fn decode_upstreams(
    node: &Node,
    base_dir: &std::path::Path,
    p: &mut Problems,
) -> Vec<UpstreamConfig> {
    named_items(
        node,
        "upstreams",
        "upstream",
        UPSTREAM_FIELDS,
        p,
        |name, node, path, p| decode_upstream(name, node, path, base_dir, p),
    )
    .0
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
    "retry",
    "outlier",
    "limits",
    "protocol",
    "tls",
];

fn decode_upstream(
    name: Spanned<String>,
    node: &Node,
    path: &str,
    base_dir: &std::path::Path,
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
    let retry = super::retry_schema::decode_retry(&f, UPSTREAM_FIELDS, p);
    let outlier = match f.node("outlier") {
        None | Some(Node::Null { .. }) => Some(OutlierConfig::default()),
        Some(n) => super::outlier_schema::decode_outlier(n, &f.path_of("outlier"), UPSTREAM_FIELDS, p),
    };
    let limits = match f.node("limits") {
        None | Some(Node::Null { .. }) => Some(UpstreamLimits::default()),
        Some(n) => decode_limits(n, &f.path_of("limits"), p),
    };
    let protocol = super::upstream_tls_schema::decode_protocol(&f, p);
    let tls = super::upstream_tls_schema::decode_upstream_tls(&f, targets.as_deref(), protocol, base_dir, p);
    Some(UpstreamConfig {
        name,
        targets: targets?,
        balance: balance?,
        hash_key: hash_key?,
        health_check: health_check?,
        connect_timeout,
        read_timeout,
        write_timeout,
        retry: retry?,
        outlier: outlier?,
        limits: limits?,
        protocol: protocol?,
        tls: tls?,
    })
}

fn decode_limits(node: &Node, path: &str, p: &mut Problems) -> Option<UpstreamLimits> {
    let f = Fields::nested(
        node,
        path,
        &["max_requests", "max_pending", "pending_timeout"],
        UPSTREAM_FIELDS,
        p,
    )?;
    let d = UpstreamLimits::default();
    let pending_timeout: Duration = f.or("pending_timeout", d.pending_timeout, p);
    let limits = UpstreamLimits {
        max_requests: f.ranged("max_requests", 1..=1_000_000, d.max_requests, p),
        max_pending: f.ranged("max_pending", 0..=1_000_000, d.max_pending, p),
        pending_timeout,
    };
    if pending_timeout.is_zero() || pending_timeout > Duration::from_secs(60) {
        p.add(
            f.pos_of("pending_timeout"),
            &f.path_of("pending_timeout"),
            "must be from 1ms to 60s (a request waits at most this long for a slot)",
        );
        return None;
    }
    Some(limits)
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
    let host = target_host(&addr, path, p)?;
    Some(TargetConfig {
        resolved: match &host {
            TargetHost::Ip(a) => vec![*a],
            TargetHost::Name { .. } => Vec::new(),
        },
        host,
        addr,
        weight,
    })
}

/// Resolve every host-name target (all at once, each within `dns.timeout`); a name that
/// does not resolve is a problem at its position.
pub(super) fn resolve_targets(upstreams: &mut [UpstreamConfig], dns: &DnsConfig, p: &mut Problems) {
    let names: Vec<(String, u16)> = upstreams
        .iter()
        .flat_map(|u| &u.targets)
        .filter_map(|t| match &t.host {
            TargetHost::Name { host, port } => Some((host.clone(), *port)),
            TargetHost::Ip(_) => None,
        })
        .collect();
    let mut results = crate::upstream::dns::resolve_blocking(dns, &names).into_iter();
    for u in upstreams.iter_mut() {
        for (i, t) in u.targets.iter_mut().enumerate() {
            if !matches!(t.host, TargetHost::Name { .. }) {
                continue;
            }
            match results.next() {
                Some(Ok(addrs)) => t.resolved = addrs,
                Some(Err(e)) => p.add(
                    t.addr.pos,
                    &index(&format!("upstreams.{}.targets", u.name.value), i),
                    format!("bad address `{}`: host name does not resolve ({e})", t.addr.value),
                ),
                None => {}
            }
        }
    }
}

/// Targets are IP:PORT, or HOST:PORT resolved at load and again every `server.dns.refresh`.
fn target_host(addr: &Spanned<String>, path: &str, p: &mut Problems) -> Option<TargetHost> {
    if let Ok(a) = addr.value.parse::<SocketAddr>() {
        return Some(TargetHost::Ip(a));
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
    let host_port = addr
        .value
        .rsplit_once(':')
        .and_then(|(h, port)| Some((h, port.parse::<u16>().ok()?)))
        .filter(|(h, _)| is_host_name(h));
    if let Some((host, port)) = host_port {
        return Some(TargetHost::Name {
            host: host.to_ascii_lowercase(),
            port,
        });
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

/// A DNS name: dot-separated labels of letters, digits, `-` and `_` (SRV-style service names),
/// none empty or longer than 63, at most 253 in all.
fn is_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
