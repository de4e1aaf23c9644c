//! `server.cache` (the process's response store) and a route's `cache:` block.

use std::time::Duration;

use http::HeaderName;

use super::decode::{index, Fields, Spanned};
use super::diag::Problems;
use super::size::ByteSize;
use super::values::header_name;
use super::yaml::Node;

/// `server.cache`: one store for the process, sized at start (a change applies at the next
/// upgrade).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheStoreConfig {
    /// What stored responses may hold in all (keys, heads and bodies); the least recently
    /// used are evicted beyond it.
    pub max_memory: u64,
    /// A larger response is streamed to its client and not stored.
    pub max_object: u64,
}

impl Default for CacheStoreConfig {
    fn default() -> Self {
        CacheStoreConfig {
            max_memory: 256 << 20,
            max_object: 1 << 20,
        }
    }
}

/// Which query parameters are part of a cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyQuery {
    /// The whole query as the client sent it.
    All,
    /// None: `?a=1` and `?a=2` share an entry.
    Ignored,
    /// Only these parameters, sorted by name.
    Only(Vec<String>),
}

/// Whether cached answers on a route with authentication are kept per consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKey {
    /// On a route with `auth`, every consumer has its own entries.
    Auto,
    /// Consumers share an answer the origin marked `public`; others stay per consumer.
    Shared,
}

/// A route's `cache:` block.
#[derive(Debug, Clone)]
pub struct RouteCacheConfig {
    /// Freshness of a response that says nothing about it (no `Cache-Control` max-age, no
    /// `Expires`), or of every response when `respect_cache_control` is off.
    pub ttl: Duration,
    pub respect_cache_control: bool,
    pub statuses: Vec<u16>,
    /// `GET` and `HEAD` (a `HEAD` is answered from, and fills, the `GET` entry).
    pub methods: Vec<http::Method>,
    pub key_query: KeyQuery,
    pub key_headers: Vec<HeaderName>,
    pub consumer: ConsumerKey,
    /// Request headers the origin's `Vary` may name; a response varying on any other is not
    /// stored.
    pub vary: Vec<HeaderName>,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    /// How long a request waits for another one filling the same entry.
    pub lock_timeout: Duration,
    /// How long an expired entry with a validator (`ETag`, `Last-Modified`) is kept to be
    /// revalidated, beyond its freshness and stale windows.
    pub keep: Duration,
}

const STORE_FIELDS: &[&str] = &["max_memory", "max_object"];
const ROUTE_FIELDS: &[&str] = &[
    "ttl",
    "respect_cache_control",
    "statuses",
    "methods",
    "key",
    "vary",
    "stale_while_revalidate",
    "stale_if_error",
    "lock_timeout",
    "keep",
];
const DEFAULT_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 404, 410];
const DAY: Duration = Duration::from_secs(86_400);

/// `server.cache`, defaults when absent.
pub(super) fn decode_store(f: &Fields<'_>, p: &mut Problems) -> Option<CacheStoreConfig> {
    let d = CacheStoreConfig::default();
    let Some(node) = f.node("cache").filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(d);
    };
    let c = Fields::new(node, &f.path_of("cache"), STORE_FIELDS, p)?;
    let max_memory = c.or("max_memory", ByteSize(d.max_memory as usize), p).0 as u64;
    let max_object = c.or("max_object", ByteSize(d.max_object as usize), p).0 as u64;
    let mut ok = true;
    if !(1 << 20..=1 << 40).contains(&max_memory) {
        p.add(
            c.pos_of("max_memory"),
            &c.path_of("max_memory"),
            "must be from 1MiB to 1TiB",
        );
        ok = false;
    }
    if max_object == 0 || max_object > max_memory / 4 {
        p.add(
            c.pos_of("max_object"),
            &c.path_of("max_object"),
            "must be at least 1 byte and at most a quarter of `max_memory`",
        );
        ok = false;
    }
    ok.then_some(CacheStoreConfig {
        max_memory,
        max_object,
    })
}

/// A route's `cache:` block (`None` in the outer option: invalid).
pub(super) fn decode_route_cache(f: &Fields<'_>, p: &mut Problems) -> Option<Option<RouteCacheConfig>> {
    let Some(node) = f.node("cache").filter(|n| !matches!(n, Node::Null { .. })) else {
        return Some(None);
    };
    let c = Fields::new(node, &f.path_of("cache"), ROUTE_FIELDS, p)?;
    let mut ok = true;
    let mut duration = |key: &str, default: Duration, min: Duration, p: &mut Problems| {
        let d: Duration = c.or(key, default, p);
        if d < min || d > DAY {
            let from = if min.is_zero() { "0s" } else { "1s" };
            p.add(
                c.pos_of(key),
                &c.path_of(key),
                format!("must be from {from} to 24h"),
            );
            ok = false;
        }
        d
    };
    let ttl = duration("ttl", Duration::from_secs(60), Duration::ZERO, p);
    let stale_while_revalidate = duration("stale_while_revalidate", Duration::ZERO, Duration::ZERO, p);
    let stale_if_error = duration("stale_if_error", Duration::ZERO, Duration::ZERO, p);
    let lock_timeout = duration("lock_timeout", Duration::from_secs(5), Duration::ZERO, p);
    let keep = duration("keep", Duration::from_secs(300), Duration::ZERO, p);
    let statuses = decode_statuses(&c, p);
    let methods = decode_methods(&c, p);
    let vary = header_list(&c, "vary", p);
    let key = match c.node("key") {
        None | Some(Node::Null { .. }) => Some((KeyQuery::All, Some(Vec::new()), ConsumerKey::Auto)),
        Some(n) => decode_key(n, &c.path_of("key"), p),
    };
    let (key_query, key_headers, consumer) = key?;
    if !ok {
        return None;
    }
    Some(Some(RouteCacheConfig {
        ttl,
        respect_cache_control: c.or("respect_cache_control", true, p),
        statuses: statuses?,
        methods: methods?,
        key_query,
        key_headers: key_headers?,
        consumer,
        vary: vary?,
        stale_while_revalidate,
        stale_if_error,
        lock_timeout,
        keep,
    }))
}

fn decode_statuses(c: &Fields<'_>, p: &mut Problems) -> Option<Vec<u16>> {
    let given: Option<Vec<Spanned<String>>> = c.opt("statuses", p);
    let Some(given) = given else {
        return Some(DEFAULT_STATUSES.to_vec());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, s) in given.iter().enumerate() {
        match s.value.parse::<u16>() {
            // A partial answer or a 304 is not a representation to store; 1xx precede one.
            Ok(n) if (200..=599).contains(&n) && n != 206 && n != 304 => out.push(n),
            _ => {
                p.add(
                    s.pos,
                    &index(&c.path_of("statuses"), i),
                    format!(
                        "`{}`: expected a final status from 200 to 599, not 206 or 304",
                        s.value
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn decode_methods(c: &Fields<'_>, p: &mut Problems) -> Option<Vec<http::Method>> {
    let given: Option<Vec<Spanned<String>>> = c.opt("methods", p);
    let Some(given) = given else {
        return Some(vec![http::Method::GET, http::Method::HEAD]);
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, m) in given.iter().enumerate() {
        match m.value.to_ascii_uppercase().as_str() {
            "GET" => out.push(http::Method::GET),
            "HEAD" => out.push(http::Method::HEAD),
            _ => {
                p.add(
                    m.pos,
                    &index(&c.path_of("methods"), i),
                    format!("`{}`: only GET and HEAD answers are cached", m.value),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn header_list(c: &Fields<'_>, key: &str, p: &mut Problems) -> Option<Vec<HeaderName>> {
    let given: Vec<Spanned<String>> = c.or(key, Vec::new(), p);
    let names: Vec<Option<HeaderName>> = given
        .iter()
        .enumerate()
        .map(|(i, h)| header_name(h, &index(&c.path_of(key), i), p))
        .collect();
    names.into_iter().collect()
}

type KeyParts = (KeyQuery, Option<Vec<HeaderName>>, ConsumerKey);

fn decode_key(node: &Node, path: &str, p: &mut Problems) -> Option<KeyParts> {
    let k = Fields::new(node, path, &["query", "headers", "consumer"], p)?;
    let query = match k.node("query") {
        None | Some(Node::Null { .. }) => Some(KeyQuery::All),
        Some(Node::Seq { .. }) => {
            let names: Vec<String> = k.or("query", Vec::new(), p);
            let mut names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
            names.sort();
            names.dedup();
            Some(KeyQuery::Only(names))
        }
        Some(_) => k.choice("query", &[("all", 0u8), ("none", 1u8)], 0, p).map(|c| {
            if c == 0 {
                KeyQuery::All
            } else {
                KeyQuery::Ignored
            }
        }),
    };
    let consumer = k.choice(
        "consumer",
        &[("auto", ConsumerKey::Auto), ("shared", ConsumerKey::Shared)],
        ConsumerKey::Auto,
        p,
    );
    Some((query?, header_list(&k, "headers", p), consumer?))
}
