//! Cache keys. A key is text, compared whole: the route's namespace, the upstream and API
//! version chosen, what tells the upstream which site it serves (scheme, `Host` as sent, and
//! the forwarding headers a trusted proxy passes), the path and query sent upstream (the query
//! as `key.query` says), the `key.headers` values, and who may share the answer. Each part is
//! length-prefixed, so no value can forge a boundary and collide with another key; header
//! values are kept byte for byte (escaped), never folded.

use std::fmt::Write;
use std::sync::Arc;

use http::HeaderName;
use pingora::http::RequestHeader;

use super::store::Label;
use super::RouteCache;
use crate::config::cache_schema::KeyQuery;
use crate::config::client_header_names::{METHOD_OVERRIDES, SITE_CLAIMS};

/// Who may be answered with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Anyone admitted to the route (no authentication, or `consumer: shared` with `public`).
    Everyone,
    /// One consumer: `authenticator/consumer`.
    Consumer(String),
}

/// The parts of a request's key that do not depend on the answer.
#[derive(Clone)]
pub struct RequestKey {
    /// Everything but the audience.
    base: String,
}

impl RequestKey {
    /// `pool`, `version`: the upstream and API version chosen; `site`: what the upstream
    /// learns of the site ([`site`]); `upstream_uri`: the path and query sent upstream.
    pub fn new(
        cache: &RouteCache,
        pool: &str,
        version: &str,
        site: &str,
        upstream_uri: &http::Uri,
        req: &RequestHeader,
    ) -> RequestKey {
        let mut base = String::with_capacity(160);
        let query = query_part(&cache.config.key_query, upstream_uri.query());
        push(&mut base, &cache.namespace);
        // The target as one part, `pool|version`, without a string of its own.
        push_joined(&mut base, &[pool, "|", version]);
        for part in [site, upstream_uri.path(), query.as_str()] {
            push(&mut base, part);
        }
        for name in &cache.config.key_headers {
            push(&mut base, &header_values(req, name));
        }
        RequestKey { base }
    }

    /// The primary key for `audience`.
    pub fn primary(&self, audience: &Audience) -> Arc<str> {
        Arc::from(self.primary_text(audience))
    }

    /// [`RequestKey::primary`] as text: what a lookup needs (the store is read by `&str`).
    pub fn primary_text(&self, audience: &Audience) -> String {
        let mut key = String::with_capacity(self.base.len() + 16);
        key.push_str(&self.base);
        match audience {
            Audience::Everyone => push(&mut key, "*"),
            Audience::Consumer(who) => {
                // `c:{who}` as one part.
                key.push_str(itoa::Buffer::new().format(who.len() + 2));
                key.push_str(":c:");
                key.push_str(who);
                key.push(';');
            }
        }
        key
    }
}

/// What purges and invalidations match an entry by: the route, the canonical path the client
/// asked for, and `route:host/path?query` (the query as `key.query` keeps it). Built only
/// when something is stored or invalidated: a hit never needs it.
pub fn label(cache: &RouteCache, host: &str, client_path: &str, upstream_uri: &http::Uri) -> Arc<Label> {
    let query = query_part(&cache.config.key_query, upstream_uri.query());
    let route = cache.namespace.split('#').next().unwrap_or_default();
    let printable = match query.is_empty() {
        true => format!("{route}:{host}{client_path}"),
        false => format!("{route}:{host}{client_path}?{query}"),
    };
    Arc::new(Label {
        route: route.to_string(),
        path: client_path.to_string(),
        printable,
    })
}

/// The audience part of one consumer: the authenticator, the consumer, and the identity
/// headers the upstream receives (plan, scopes, claims): the same consumer with another
/// token's claims may get another answer.
pub fn consumer(by: &str, consumer: &str, identity: &[(HeaderName, http::HeaderValue)]) -> String {
    let mut out = String::with_capacity(64);
    push(&mut out, by);
    push(&mut out, consumer);
    for (name, value) in identity {
        push(&mut out, name.as_str());
        push_escaped(&mut out, value.as_bytes(), false);
    }
    out
}

/// The key of one variant: the primary key, the generation of its variants record, and the
/// values of the headers it varies on.
pub fn variant(primary: &str, generation: u64, names: &[HeaderName], req: &RequestHeader) -> Arc<str> {
    let mut key = String::with_capacity(primary.len() + 64);
    key.push_str(primary);
    let _ = write!(key, "|v{generation}");
    for name in names {
        push(&mut key, name.as_str());
        push(&mut key, &header_values(req, name));
    }
    Arc::from(key)
}

/// Append `part` length-prefixed (`len:part;`). Spelled out rather than `write!`: a hit
/// builds a dozen parts, and the formatting machinery cost about 150 instructions each.
fn push(key: &mut String, part: &str) {
    push_joined(key, &[part]);
}

/// Append the concatenation of `pieces` as one length-prefixed part.
fn push_joined(key: &mut String, pieces: &[&str]) {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    key.push_str(itoa::Buffer::new().format(len));
    key.push(':');
    for piece in pieces {
        key.push_str(piece);
    }
    key.push(';');
}

/// Every value of `name`, in order, each length-prefixed and escaped.
pub fn header_values(req: &RequestHeader, name: &HeaderName) -> String {
    let mut out = String::new();
    for value in req.headers.get_all(name) {
        push_escaped(&mut out, value.as_bytes(), false);
    }
    out
}

/// Whether `b` stands for itself in a key: printable ASCII but `%` (the escape).
fn kept(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'%'
}

/// Append `bytes` escaped as one length-prefixed part, written in place: printable ASCII as it
/// is, any other byte (and `%`) as `%XX`, so two different values never become one. `lower`:
/// ASCII letters lower-cased first (a host).
fn push_escaped(key: &mut String, bytes: &[u8], lower: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let escaped = bytes.iter().filter(|&&b| !kept(b)).count();
    key.push_str(itoa::Buffer::new().format(bytes.len() + 2 * escaped));
    key.push(':');
    // The usual value (a host, a header) needs no escape: copied whole, not byte by byte.
    if let (0, Ok(text)) = (escaped, std::str::from_utf8(bytes)) {
        let start = key.len();
        key.push_str(text);
        if lower {
            key[start..].make_ascii_lowercase();
        }
        key.push(';');
        return;
    }
    for &b in bytes {
        let b = if lower { b.to_ascii_lowercase() } else { b };
        if kept(b) {
            key.push(char::from(b));
        } else {
            key.push('%');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    key.push(';');
}

/// What tells an upstream which site it serves, beyond the path: the scheme, the `Host` as the
/// client sent it (port included: the upstream sees it and may build links from it), every
/// site claim a trusted proxy passes on ([`SITE_CLAIMS`]: forwarded scheme, host, port,
/// prefix…), and whatever the route lets through from any client (`pass_headers`: a claim or
/// an override the upstream acts on). An answer for `http://` (a redirect to `https://`) is
/// never one for `https://`, nor one built for another prefix or host.
pub fn site(req: &RequestHeader, tls: bool, trusted_peer: bool, passed: &[HeaderName]) -> String {
    let mut out = String::with_capacity(64);
    push(&mut out, if tls { "https" } else { "http" });
    let authority = req.uri.authority().map(|a| a.as_str().as_bytes());
    let host = req.headers.get(http::header::HOST).map(|h| h.as_bytes());
    push_escaped(&mut out, host.or(authority).unwrap_or_default(), true);
    if trusted_peer {
        for name in SITE_CLAIMS {
            push(&mut out, &header_values(req, &HeaderName::from_static(name)));
        }
    }
    // A method override is left out: a request carrying one never reaches the store (it
    // bypasses it), and its invalidation must find the entries stored without it.
    for name in passed.iter().filter(|n| !METHOD_OVERRIDES.contains(&n.as_str())) {
        push(&mut out, name.as_str());
        push(&mut out, &header_values(req, name));
    }
    out
}

fn query_part(rule: &KeyQuery, query: Option<&str>) -> String {
    let query = query.unwrap_or_default();
    match rule {
        KeyQuery::All => query.to_string(),
        KeyQuery::Ignored => String::new(),
        KeyQuery::Only(names) => {
            let mut kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    let name = pair.split('=').next().unwrap_or_default();
                    let decoded = crate::percent::decode_str(name);
                    let name = decoded.as_deref().unwrap_or(name);
                    names.iter().any(|n| n == name)
                })
                .collect();
            // Sorted by name, values in the client's order within a name.
            kept.sort_by_key(|pair| pair.split('=').next().unwrap_or_default());
            kept.join("&")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_query_parameters_are_kept_sorted() {
        let only = KeyQuery::Only(vec!["a".into(), "b".into()]);
        assert_eq!(query_part(&only, Some("b=2&x=9&a=1&a=0")), "a=1&a=0&b=2");
        assert_eq!(query_part(&KeyQuery::Ignored, Some("a=1")), "");
        assert_eq!(query_part(&KeyQuery::All, Some("b=2&a=1")), "b=2&a=1");
    }

    #[test]
    fn header_values_are_kept_byte_for_byte() {
        let mut a = RequestHeader::build("GET", b"/", None).expect("head");
        a.append_header("x-t", http::HeaderValue::from_bytes(b"t\xe9").expect("value"))
            .expect("header");
        let mut b = RequestHeader::build("GET", b"/", None).expect("head");
        b.append_header("x-t", http::HeaderValue::from_bytes(b"t\xe8").expect("value"))
            .expect("header");
        let name = HeaderName::from_static("x-t");
        assert_ne!(header_values(&a, &name), header_values(&b, &name));
        let mut two = RequestHeader::build("GET", b"/", None).expect("head");
        two.append_header("x-t", "a, b").expect("header");
        let mut split = RequestHeader::build("GET", b"/", None).expect("head");
        split.append_header("x-t", "a").expect("header");
        split.append_header("x-t", "b").expect("header");
        assert_ne!(header_values(&two, &name), header_values(&split, &name));
    }

    /// What purges match: `route:host/path`, with the query as `key.query` keeps it.
    #[test]
    fn a_label_names_the_route_host_path_and_kept_query() {
        let mut cache = crate::test_util::route_cache();
        cache.namespace = "catalog#3".into();
        let uri = http::Uri::from_static("/up/p1?b=2&a=1");
        let named = label(&cache, "shop.example", "/catalog/p1", &uri);
        assert_eq!(
            (
                named.route.as_str(),
                named.path.as_str(),
                named.printable.as_str()
            ),
            (
                "catalog",
                "/catalog/p1",
                "catalog:shop.example/catalog/p1?b=2&a=1"
            )
        );
        cache.config.key_query = KeyQuery::Ignored;
        let named = label(&cache, "shop.example", "/catalog/p1", &uri);
        assert_eq!(named.printable, "catalog:shop.example/catalog/p1");
    }

    #[test]
    fn escaped_parts_count_the_escaped_bytes() {
        let mut out = String::new();
        push_escaped(&mut out, b"Ab%\xff ", true);
        assert_eq!(out, "9:ab%25%FF ;");
        let mut kept_case = String::new();
        push_escaped(&mut kept_case, b"Ab", false);
        assert_eq!(kept_case, "2:Ab;");
    }

    #[test]
    fn parts_cannot_forge_a_boundary() {
        let mut one = String::new();
        push(&mut one, "a;1:b");
        let mut two = String::new();
        push(&mut two, "a");
        push(&mut two, "b");
        assert_ne!(one, two);
        assert_eq!(one, "5:a;1:b;");
        // Lengths count bytes, past one digit too.
        let mut long = String::new();
        push(&mut long, "é0123456789");
        assert_eq!(long, "12:é0123456789;");
    }

    /// Each site claim is in the key when a trusted proxy sent it, and never otherwise (the
    /// gateway replaces or strips it for other clients); a header a route passes is in it
    /// for anyone, a method override never (such a request bypasses the store).
    #[test]
    fn every_site_claim_and_passed_header_is_keyed() {
        let base = crate::test_util::request_header("/", &[("host", "a.example")]);
        for name in SITE_CLAIMS {
            let claimed = crate::test_util::request_header("/", &[("host", "a.example"), (name, "x")]);
            assert_ne!(
                site(&claimed, false, true, &[]),
                site(&base, false, true, &[]),
                "{name}"
            );
            assert_eq!(
                site(&claimed, false, false, &[]),
                site(&base, false, false, &[]),
                "{name}"
            );
        }
        let passed = [
            HeaderName::from_static("x-original-url"),
            HeaderName::from_static("x-http-method-override"),
        ];
        let url =
            crate::test_util::request_header("/", &[("host", "a.example"), ("x-original-url", "/admin")]);
        assert_ne!(
            site(&url, false, false, &passed),
            site(&base, false, false, &passed)
        );
        let method = crate::test_util::request_header(
            "/",
            &[("host", "a.example"), ("x-http-method-override", "PUT")],
        );
        assert_eq!(
            site(&method, false, false, &passed),
            site(&base, false, false, &passed)
        );
        assert_ne!(
            site(&base, true, false, &[]),
            site(&base, false, false, &[]),
            "the scheme"
        );
    }

    #[test]
    fn a_consumer_is_one_length_prefixed_part() {
        let key = RequestKey {
            base: String::from("1:x;"),
        };
        let mut expected = String::from("1:x;");
        push(&mut expected, "c:7:keys;3:ann;");
        assert_eq!(
            &*key.primary(&Audience::Consumer("7:keys;3:ann;".into())),
            expected
        );
        assert_eq!(&*key.primary(&Audience::Everyone), "1:x;1:*;");
    }
}
