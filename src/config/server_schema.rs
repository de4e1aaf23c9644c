//! Decoding `server:`: listen addresses, process settings, request limits and connection
//! limits.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::cidr::Cidr;
use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::model::*;
use super::values::host_pattern;
use super::yaml::Node;

pub(super) fn decode_server(
    node: &Node,
    path: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<ServerConfig> {
    const FIELDS: &[&str] = &[
        "listen",
        "threads",
        "work_stealing",
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
        "ip",
        "hsts",
        "drain_delay",
        "dns",
        "cache",
    ];
    let f = Fields::new(node, path, FIELDS, p)?;
    let ip = super::ip_schema::decode_ip_rules(&f, FIELDS, p);
    let listen = super::listener_schema::decode_listen(&f, base_dir, p);
    let hsts = decode_hsts(&f, p);
    let (admin, admin_token_env, admin_metrics_without_token) = decode_admin(&f, p);
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
    let (listen, certificates) = listen?;
    Some(ServerConfig {
        certificates,
        hsts: hsts?,
        drain_delay: f.or("drain_delay", Duration::ZERO, p),
        dns: super::dns_schema::decode_dns(&f, p)?,
        process: ProcessSettings {
            listen,
            threads,
            work_stealing: f.or("work_stealing", false, p),
            admin: if admin_ok { admin.map(|a| a.value) } else { None },
            admin_token_env,
            admin_metrics_without_token,
            admin_hosts,
            pid_file: f.or("pid_file", DEFAULT_PID_FILE.to_string(), p),
            upgrade_sock: f.or("upgrade_sock", DEFAULT_UPGRADE_SOCK.to_string(), p),
            error_log: f.opt("error_log", p),
            grace_period: f.or("grace_period", Duration::from_secs(30), p),
            shutdown_timeout: f.or("shutdown_timeout", Duration::from_secs(5), p),
            log_level: log_level.map(|l| l.value),
            cache: super::cache_schema::decode_store(&f, p)?,
        },
        access_log: super::access_log_schema::decode_access_log(&f, p)?,
        trusted_proxies,
        ip: ip?,
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
/// `admin: "127.0.0.1:9090"` or `admin: { addr, token_env, metrics_without_token }`.
fn decode_admin(f: &Fields<'_>, p: &mut Problems) -> (Option<Spanned<String>>, Option<String>, bool) {
    let path = f.path_of("admin");
    match f.node("admin") {
        Some(node @ Node::Map { .. }) => {
            let Some(m) = Fields::new(node, &path, &["addr", "token_env", "metrics_without_token"], p) else {
                return (None, None, false);
            };
            let addr: Option<Spanned<String>> = m.req("addr", p);
            let token_env: Option<Spanned<String>> = m.opt("token_env", p);
            let open_metrics: Option<Spanned<bool>> = m.opt("metrics_without_token", p);
            if let (Some(open), None) = (&open_metrics, &token_env) {
                if open.value {
                    p.add(
                        open.pos,
                        &m.path_of("metrics_without_token"),
                        "only applies with `token_env` (without a token every endpoint is open)",
                    );
                }
            }
            let token_env = token_env.filter(|name| {
                super::env_secret(name, &m.path_of("token_env"), MIN_ADMIN_TOKEN_BYTES, p).is_some()
            });
            (
                addr,
                token_env.map(|t| t.value),
                open_metrics.is_some_and(|o| o.value),
            )
        }
        _ => (f.opt("admin", p), None, false),
    }
}

/// An admin token shorter than this is refused (it would be guessable).
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

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
            "max_body",
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
        max_body: f
            .opt::<super::size::ByteSize>("max_body", p)
            .map_or(d.max_body, |s| s.0 as u64),
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

/// `hsts: { max_age, include_subdomains, preload }` (absent: no header).
fn decode_hsts(f: &Fields<'_>, p: &mut Problems) -> Option<Option<Hsts>> {
    let Some(node) = f.node("hsts").filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(None);
    };
    let h = Fields::nested(
        node,
        &f.path_of("hsts"),
        &["max_age", "include_subdomains", "preload"],
        &[],
        p,
    )?;
    let hsts = Hsts {
        max_age: h.or("max_age", Duration::from_secs(365 * 86_400), p),
        include_subdomains: h.or("include_subdomains", false, p),
        preload: h.or("preload", false, p),
    };
    // Browsers' preload lists take a site only with a year or more and every subdomain.
    if hsts.preload && (hsts.max_age < Duration::from_secs(365 * 86_400) || !hsts.include_subdomains) {
        p.add(
            h.pos(),
            &f.path_of("hsts.preload"),
            "preload needs max_age of at least 8760h and include_subdomains: true",
        );
        return None;
    }
    Some(Some(hsts))
}

pub(super) fn socket_addr(s: &Spanned<String>, path: &str, p: &mut Problems) -> Option<SocketAddr> {
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

#[cfg(test)]
mod tests {
    /// The pid file and upgrade socket live under `/run/portcullis` (created by systemd's
    /// `RuntimeDirectory`, writable only by the service), not in a world-writable `/tmp`.
    #[test]
    fn the_pid_file_and_upgrade_socket_default_to_run_portcullis() {
        let config = crate::config::load_str("server:\n  listen: [\"127.0.0.1:8080\"]\n", "t.yaml")
            .unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(config.server.process.pid_file, "/run/portcullis/portcullis.pid");
        assert_eq!(config.server.process.upgrade_sock, "/run/portcullis/upgrade.sock");
    }
}
