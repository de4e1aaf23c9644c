//! Decoding the top-level `redis:` section: one server (`url`), the primary that sentinels
//! name (`sentinel:`), or a cluster (`cluster:`); credentials, TLS, the key secret, timeouts,
//! connections and the breaker.

use std::path::Path;
use std::time::Duration;

use super::decode::{Fields, Spanned};
use super::diag::Problems;
use super::redis_model::{
    BreakerConfig, Credentials, RedisAddr, RedisConfig, RedisTls, RedisTopology, Secret,
};
use super::yaml::Node;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const FIELDS: &[&str] = &[
    "url",
    "sentinel",
    "cluster",
    "username",
    "password_env",
    "db",
    "tls",
    "key_secret_env",
    "key_secret_file",
    "timeout",
    "pool",
    "prefix",
    "breaker",
];

/// A key secret shorter than this is refused: the HMAC is only as strong as its key.
const MIN_KEY_SECRET_BYTES: usize = 32;

pub fn decode_redis(node: &Node, base_dir: &Path, p: &mut Problems) -> Option<RedisConfig> {
    let f = Fields::new(node, "redis", FIELDS, p)?;
    let topology = decode_topology(&f, p);
    let auth = decode_credentials(&f, topology.as_ref(), p);
    let tls = decode_tls(&f, topology.as_ref(), base_dir, p);
    let timeout: Duration = f.or("timeout", Duration::from_millis(50), p);
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
        p.add(
            f.pos_of("timeout"),
            "redis.timeout",
            "must be between 1ms and 10s",
        );
    }
    let pool: usize = f.or("pool", 2, p);
    if !(1..=1024).contains(&pool) {
        p.add(
            f.pos_of("pool"),
            "redis.pool",
            "must be between 1 and 1024 connections (each carries any number of decisions at once; 2 is plenty)",
        );
    }
    let prefix: String = f.or("prefix", "portcullis:".to_string(), p);
    if prefix.len() > 64
        || prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        p.add(
            f.pos_of("prefix"),
            "redis.prefix",
            "must be at most 64 bytes without spaces, control characters or braces (braces would move the cluster hash tag)",
        );
    }
    let key_secret = decode_key_secret(&f, base_dir, p);
    let breaker = match f.node("breaker") {
        None => Some(BreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(1),
        }),
        Some(n) => decode_breaker(n, p),
    };
    Some(RedisConfig {
        topology: topology?,
        auth: auth?,
        tls: tls?,
        timeout,
        pool,
        prefix,
        key_secret: key_secret?,
        breaker: breaker?,
    })
}

/// Exactly one of `url`, `sentinel` and `cluster`.
fn decode_topology(f: &Fields<'_>, p: &mut Problems) -> Option<RedisTopology> {
    let given: Vec<&str> = ["url", "sentinel", "cluster"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    match given.as_slice() {
        [] => {
            p.add(
                f.pos(),
                "redis",
                "give where Redis is: `url` (one server), `sentinel` (master name and sentinels) or `cluster` (node addresses)",
            );
            None
        }
        ["url"] => {
            if f.has("db") {
                p.add(
                    f.pos_of("db"),
                    "redis.db",
                    "with `url` the database is the URL's path (redis://host:6379/2)",
                );
            }
            let url = f.req::<Spanned<String>>("url", p)?;
            parse_url(&url.value)
                .map_err(|e| p.add(url.pos, "redis.url", e))
                .ok()
                .map(RedisTopology::Single)
        }
        ["sentinel"] => decode_sentinel(f, p),
        ["cluster"] => {
            if f.has("db") {
                p.add(f.pos_of("db"), "redis.db", "a Redis Cluster has only database 0");
            }
            let nodes = decode_nodes(f, "cluster", 6379, p)?;
            Some(RedisTopology::Cluster { nodes })
        }
        many => {
            p.add(
                f.pos_of(many[1]),
                &f.path_of(many[1]),
                format!(
                    "give one of url, sentinel and cluster, not {}",
                    many.join(" and ")
                ),
            );
            None
        }
    }
}

/// `sentinel: { master, nodes, username, password_env }`.
fn decode_sentinel(f: &Fields<'_>, p: &mut Problems) -> Option<RedisTopology> {
    let node = f.node("sentinel")?;
    let s = Fields::new(
        node,
        "redis.sentinel",
        &["master", "nodes", "username", "password_env"],
        p,
    )?;
    let master: Option<String> = s.req("master", p);
    let master = master.filter(|m| {
        let ok = !m.is_empty() && !m.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            p.add(
                s.pos_of("master"),
                "redis.sentinel.master",
                "the name the sentinels monitor (`sentinel monitor NAME ...`): not empty, no spaces",
            );
        }
        ok
    });
    let nodes = decode_nodes(&s, "nodes", 26379, p);
    let auth = credentials(&s, p);
    let db: u32 = f.or("db", 0, p);
    Some(RedisTopology::Sentinel {
        master: master?,
        nodes: nodes?,
        auth: auth?,
        db,
    })
}

/// A list of `host:port` (the port defaults to `default_port`), at least one, at most 64.
fn decode_nodes(
    f: &Fields<'_>,
    key: &str,
    default_port: u16,
    p: &mut Problems,
) -> Option<Vec<(String, u16)>> {
    let list: Vec<Spanned<String>> = f.req(key, p)?;
    if list.is_empty() || list.len() > 64 {
        p.add(
            f.pos_of(key),
            &f.path_of(key),
            "list between 1 and 64 addresses (host:port)",
        );
        return None;
    }
    let mut nodes = Vec::with_capacity(list.len());
    let mut ok = true;
    for (i, addr) in list.iter().enumerate() {
        match split_host_port(&addr.value, default_port) {
            Some((host, port)) if !host.is_empty() && !host.contains('@') => nodes.push((host, port)),
            _ => {
                p.add(
                    addr.pos,
                    &format!("{}[{i}]", f.path_of(key)),
                    format!(
                        "expected host:port (a name or an address; [v6]:port), port {default_port} by default; credentials go in username / password_env"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(nodes)
}

/// The data nodes' credentials: in `url`, or `username` / `password_env`, not both.
fn decode_credentials(
    f: &Fields<'_>,
    topology: Option<&RedisTopology>,
    p: &mut Problems,
) -> Option<Credentials> {
    let fields = credentials(f, p)?;
    match topology {
        Some(RedisTopology::Single(addr)) => {
            let in_url = addr.username.is_some() || addr.password.is_some();
            if in_url && (fields.username.is_some() || fields.password.is_some()) {
                p.add(
                    f.pos_of(if f.has("username") {
                        "username"
                    } else {
                        "password_env"
                    }),
                    &f.path_of(if f.has("username") {
                        "username"
                    } else {
                        "password_env"
                    }),
                    "the url carries credentials already: give them in one place",
                );
                return None;
            }
            Some(if in_url {
                Credentials {
                    username: addr.username.clone(),
                    password: addr.password.clone(),
                }
            } else {
                fields
            })
        }
        _ => Some(fields),
    }
}

/// `username` and `password_env` of one mapping.
fn credentials(f: &Fields<'_>, p: &mut Problems) -> Option<Credentials> {
    let username: Option<String> = f.opt("username", p);
    let password = match f.opt::<Spanned<String>>("password_env", p) {
        None => None,
        Some(name) => Some(super::env_secret(&name, &f.path_of("password_env"), 1, p)?),
    };
    if username.is_some() && password.is_none() {
        p.add(
            f.pos_of("username"),
            &f.path_of("username"),
            "a user needs its password: add password_env",
        );
        return None;
    }
    Some(Credentials { username, password })
}

/// `tls: { ca, client_cert, client_key }`: with `url` only for `rediss://` (which needs no
/// block when the system's roots sign the server); with sentinels or a cluster the block turns
/// TLS on for every connection (`tls: {}` for the system's roots).
fn decode_tls(
    f: &Fields<'_>,
    topology: Option<&RedisTopology>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Option<RedisTls>> {
    let url_tls = match topology {
        Some(RedisTopology::Single(addr)) => Some(addr.tls),
        _ => None,
    };
    let Some(node) = f.node("tls") else {
        return Some((url_tls == Some(true)).then_some(RedisTls {
            ca: None,
            client: None,
        }));
    };
    if url_tls == Some(false) {
        p.add(
            f.pos_of("tls"),
            "redis.tls",
            "TLS needs a rediss:// url (redis:// is plain TCP)",
        );
        return None;
    }
    let t = Fields::new(node, "redis.tls", &["ca", "client_cert", "client_key"], p)?;
    let read = |key: &str, p: &mut Problems| -> Option<Option<Vec<u8>>> {
        let Some(file) = t.opt::<Spanned<String>>(key, p) else {
            return Some(None);
        };
        let path = base_dir.join(&file.value);
        match super::read_bounded_bytes(&path) {
            Ok(bytes) => Some(Some(bytes)),
            Err(e) => {
                p.add(
                    file.pos,
                    &t.path_of(key),
                    format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    };
    let ca = read("ca", p);
    let cert = read("client_cert", p);
    let key = read("client_key", p);
    let (ca, cert, key) = (ca?, cert?, key?);
    // Parsed as the TLS client (rustls) parses them, so a file `check` accepts is one the
    // connections can use; the key match is checked with OpenSSL on the parsed DER (no
    // passphrase prompt: an encrypted key is refused here).
    let certificates = |pem: &[u8]| -> Vec<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .map(|c| c.as_ref().to_vec())
            .collect()
    };
    if let Some(ca) = &ca {
        if certificates(ca).is_empty() {
            p.add(
                t.pos_of("ca"),
                "redis.tls.ca",
                "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
            );
            return None;
        }
    }
    let client = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let leaf = certificates(&cert)
                .first()
                .and_then(|der| openssl::x509::X509::from_der(der).ok());
            let pkey = PrivateKeyDer::from_pem_slice(&key)
                .ok()
                .and_then(|k| openssl::pkey::PKey::private_key_from_der(k.secret_der()).ok());
            match (leaf.as_ref(), pkey) {
                (None, _) => {
                    p.add(
                        t.pos_of("client_cert"),
                        "redis.tls.client_cert",
                        "not a PEM certificate",
                    );
                    return None;
                }
                (_, None) => {
                    p.add(
                        t.pos_of("client_key"),
                        "redis.tls.client_key",
                        "not an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    );
                    return None;
                }
                (Some(leaf), Some(pkey)) => {
                    if !leaf.public_key().is_ok_and(|k| k.public_eq(&pkey)) {
                        p.add(
                            t.pos_of("client_key"),
                            "redis.tls.client_key",
                            "does not belong to client_cert",
                        );
                        return None;
                    }
                    Some((cert, key))
                }
            }
        }
        _ => {
            let missing = if t.has("client_cert") {
                "client_key"
            } else {
                "client_cert"
            };
            p.add(
                t.pos(),
                &t.path_of(missing),
                "a client certificate needs both client_cert and client_key",
            );
            return None;
        }
    };
    Some(Some(RedisTls { ca, client }))
}

/// `key_secret_env` or `key_secret_file`: the HMAC key of client-derived key parts.
fn decode_key_secret(f: &Fields<'_>, base_dir: &Path, p: &mut Problems) -> Option<Option<Secret>> {
    match (f.has("key_secret_env"), f.has("key_secret_file")) {
        (false, false) => Some(None),
        (true, true) => {
            p.add(
                f.pos_of("key_secret_file"),
                "redis.key_secret_file",
                "give key_secret_env or key_secret_file, not both",
            );
            None
        }
        (true, false) => {
            let name: Spanned<String> = f.req("key_secret_env", p)?;
            let secret = super::env_secret(&name, "redis.key_secret_env", MIN_KEY_SECRET_BYTES, p)?;
            Some(Some(Secret(secret.into_bytes())))
        }
        (false, true) => {
            let file: Spanned<String> = f.req("key_secret_file", p)?;
            let path = base_dir.join(&file.value);
            match super::read_bounded_bytes(&path) {
                Ok(bytes) if bytes.trim_ascii_end().len() >= MIN_KEY_SECRET_BYTES => {
                    Some(Some(Secret(bytes.trim_ascii_end().to_vec())))
                }
                Ok(_) => {
                    p.add(
                        file.pos,
                        "redis.key_secret_file",
                        format!(
                            "the secret in {} is shorter than {MIN_KEY_SECRET_BYTES} bytes",
                            path.display()
                        ),
                    );
                    None
                }
                Err(e) => {
                    p.add(
                        file.pos,
                        "redis.key_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    }
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

/// `redis[s]://[[user]:password@]host[:port][/db]`; the password may be percent-encoded.
pub fn parse_url(url: &str) -> Result<RedisAddr, String> {
    let expected = "expected redis[s]://[[user]:password@]host[:port][/db]";
    let (tls, rest) = match url.split_once("://") {
        Some(("redis", rest)) => (false, rest),
        Some(("rediss", rest)) => (true, rest),
        Some((scheme, _)) if scheme.contains("sentinel") || scheme.contains("cluster") => {
            return Err(format!(
                "`{scheme}://` is written as a `sentinel:` block (master, nodes) or a `cluster:` list, not a url"
            ))
        }
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
    let (host, port) = split_host_port(hostport, 6379).ok_or(format!("bad host or port; {expected}"))?;
    if host.is_empty() {
        return Err(format!("missing host; {expected}"));
    }
    Ok(RedisAddr {
        host,
        port,
        username,
        password,
        db,
        tls,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to `default_port`.
fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after {
            "" => default_port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_string(), port));
    }
    match s.split_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok().filter(|p| *p != 0)?)),
        None => Some((s.to_string(), default_port)),
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
            "redis+sentinel://h",
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
