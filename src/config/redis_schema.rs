//! Decoding the top-level `redis:` section.

use std::time::Duration;

use super::decode::{Fields, Spanned};
use super::diag::Problems;
use super::redis_model::{BreakerConfig, RedisAddr, RedisConfig};
use super::yaml::Node;

const FIELDS: &[&str] = &["url", "timeout", "pool", "prefix", "breaker"];

pub fn decode_redis(node: &Node, p: &mut Problems) -> Option<RedisConfig> {
    let f = Fields::new(node, "redis", FIELDS, p)?;
    let addr = f.req::<Spanned<String>>("url", p).and_then(|url| {
        parse_url(&url.value)
            .map_err(|e| p.add(url.pos, "redis.url", e))
            .ok()
    });
    let timeout: Duration = f.or("timeout", Duration::from_millis(50), p);
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
        p.add(
            f.pos_of("timeout"),
            "redis.timeout",
            "must be between 1ms and 10s",
        );
    }
    let pool: usize = f.or("pool", 16, p);
    if !(1..=1024).contains(&pool) {
        p.add(
            f.pos_of("pool"),
            "redis.pool",
            "must be between 1 and 1024 connections",
        );
    }
    let prefix: String = f.or("prefix", "portcullis:".to_string(), p);
    if prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.add(
            f.pos_of("prefix"),
            "redis.prefix",
            "must be at most 64 bytes without spaces or control characters",
        );
    }
    let breaker = match f.node("breaker") {
        None => Some(BreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(1),
        }),
        Some(n) => decode_breaker(n, p),
    };
    Some(RedisConfig {
        addr: addr?,
        timeout,
        pool,
        prefix,
        breaker: breaker?,
    })
}

fn decode_breaker(node: &Node, p: &mut Problems) -> Option<BreakerConfig> {
    let f = Fields::new(node, "redis.breaker", &["failures", "open_for"], p)?;
    let failures: u32 = f.or("failures", 3, p);
    let open_for: Duration = f.or("open_for", Duration::from_secs(1), p);
    if !(1..=1000).contains(&failures) {
        p.add(
            f.pos_of("failures"),
            "redis.breaker.failures",
            "must be between 1 and 1000",
        );
        return None;
    }
    if open_for < Duration::from_millis(10) || open_for > Duration::from_secs(600) {
        p.add(
            f.pos_of("open_for"),
            "redis.breaker.open_for",
            "must be between 10ms and 10m",
        );
        return None;
    }
    Some(BreakerConfig { failures, open_for })
}

/// `redis://[[user]:password@]host[:port][/db]`; the password may be percent-encoded.
pub fn parse_url(url: &str) -> Result<RedisAddr, String> {
    let expected = "expected redis://[[user]:password@]host[:port][/db]";
    let rest = match url.split_once("://") {
        Some(("redis", rest)) => rest,
        Some(("rediss", _)) => return Err(
            "TLS to Redis (rediss://) is not supported in this version; use redis:// on a trusted network"
                .into(),
        ),
        Some((scheme, _)) => return Err(format!("unsupported scheme `{scheme}`; {expected}")),
        None => return Err(format!("`{}`: {expected}", redact(url))),
    };
    // Credentials first (up to the last `@`), so a `/` or `@` in a password is never taken
    // for the database or the host, and never echoed.
    let (userinfo, hostpath) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (hostport, db) = match hostpath.split_once('/') {
        Some((h, "")) => (h, 0),
        Some((h, db)) => (
            h,
            db.parse::<u32>()
                .map_err(|_| format!("the database after `/` must be a number; {expected}"))?,
        ),
        None => (hostpath, 0),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').ok_or(format!(
                "credentials need a `:` before the password (redis://:password@host or redis://user:password@host); {expected}"
            ))?;
            let user = (!user.is_empty()).then(|| percent_decode(user)).transpose()?;
            (user, Some(percent_decode(pass)?))
        }
    };
    let (host, port) = split_host_port(hostport).ok_or(format!("bad host or port; {expected}"))?;
    if host.is_empty() {
        return Err(format!("missing host; {expected}"));
    }
    Ok(RedisAddr {
        host,
        port,
        username,
        password,
        db,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to 6379.
fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after {
            "" => 6379,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_string(), port));
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok().filter(|p| *p != 0)?)),
        None => Some((s.to_string(), 6379)),
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    crate::percent::decode_str(s)
        .ok_or_else(|| "bad percent-encoding in the credentials (or not UTF-8 after decoding)".to_string())
}

/// The URL without its credentials, for error messages.
fn redact(url: &str) -> String {
    crate::redact::url(url)
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn parses_addresses() {
        let a = parse_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.db), ("127.0.0.1", 6380, 2));
        assert_eq!((a.username, a.password), (None, None));
        let a = parse_url("redis://:s%40cret@cache.internal").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("cache.internal", 6379));
        assert_eq!(a.password.as_deref(), Some("s@cret"));
        let a = parse_url("redis://gw:pw@[::1]:7000/").unwrap();
        assert_eq!((a.host.as_str(), a.port, a.db), ("::1", 7000, 0));
        assert_eq!(a.username.as_deref(), Some("gw"));
        assert_eq!(a.display(), "redis://[::1]:7000/0");
    }

    #[test]
    fn refuses_bad_addresses_without_echoing_passwords() {
        for bad in [
            "127.0.0.1:6379",
            "http://h",
            "rediss://h",
            "redis://h:0",
            "redis://h:x",
            "redis:///0",
            "redis://h/db",
            "redis://user@h",
            "redis://:%zz@h",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        for url in [
            "redis:/:hunter2@h",
            "redis://:hunter2%@h",
            "redis://:hunter2@h/x",
            "redis://:hunter2@h:x",
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
        let a = parse_url("redis://:p@ss/w0rd@h/1").unwrap();
        assert_eq!(
            (a.password.as_deref(), a.host.as_str(), a.db),
            (Some("p@ss/w0rd"), "h", 1)
        );
        assert!(!format!("{:?}", parse_url("redis://:hunter2@h").unwrap()).contains("hunter2"));
    }
}
