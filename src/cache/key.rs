//! Cache keys. A key is text, compared whole: the route's namespace, the upstream chosen
//! (versioned routes), the host, the path and query sent upstream (the query as `key.query`
//! says), the `key.headers` values, and who may share the answer. Each part is
//! length-prefixed, so no value can forge a boundary and collide with another key.

use std::fmt::Write;
use std::sync::Arc;

use http::HeaderName;
use pingora::http::RequestHeader;

use super::store::Label;
use super::RouteCache;
use crate::config::cache_schema::KeyQuery;

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
    pub label: Arc<Label>,
}

impl RequestKey {
    /// `upstream_uri`: the path and query sent upstream; `client_path`: the canonical path the
    /// client asked for (what purges name).
    pub fn new(
        cache: &RouteCache,
        pool: &str,
        host: &str,
        upstream_uri: &http::Uri,
        client_path: &str,
        req: &RequestHeader,
    ) -> RequestKey {
        let mut base = String::with_capacity(128);
        let path = upstream_uri.path();
        let query = query_part(&cache.config.key_query, upstream_uri.query());
        for part in [cache.namespace.as_str(), pool, host, path, query.as_str()] {
            push(&mut base, part);
        }
        for name in &cache.config.key_headers {
            push(&mut base, &header_values(req, name));
        }
        let route = cache.namespace.split('#').next().unwrap_or_default();
        let printable = match query.is_empty() {
            true => format!("{route}:{host}{path}"),
            false => format!("{route}:{host}{path}?{query}"),
        };
        RequestKey {
            base,
            label: Arc::new(Label {
                route: route.to_string(),
                path: client_path.to_string(),
                printable,
            }),
        }
    }

    /// The primary key for `audience`.
    pub fn primary(&self, audience: &Audience) -> Arc<str> {
        let mut key = self.base.clone();
        match audience {
            Audience::Everyone => push(&mut key, "*"),
            Audience::Consumer(who) => push(&mut key, &format!("c:{who}")),
        }
        Arc::from(key)
    }
}

/// The key of one variant: the primary key and the values of the headers it varies on.
pub fn variant(primary: &str, names: &[HeaderName], req: &RequestHeader) -> Arc<str> {
    let mut key = String::with_capacity(primary.len() + 64);
    key.push_str(primary);
    key.push_str("|v");
    for name in names {
        push(&mut key, name.as_str());
        push(&mut key, &header_values(req, name));
    }
    Arc::from(key)
}

fn push(key: &mut String, part: &str) {
    let _ = write!(key, "{}:{part};", part.len());
}

/// Every value of `name`, in order, joined as one list.
fn header_values(req: &RequestHeader, name: &HeaderName) -> String {
    let values: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}").trim())
        .collect();
    values.join(", ")
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
    fn parts_cannot_forge_a_boundary() {
        let mut one = String::new();
        push(&mut one, "a;1:b");
        let mut two = String::new();
        push(&mut two, "a");
        push(&mut two, "b");
        assert_ne!(one, two);
    }
}
