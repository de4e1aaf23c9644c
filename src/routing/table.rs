//! The compiled route table and its precedence rules.
//!
//! Precedence, most specific first:
//! 1. host: an exact host, then wildcard hosts (longest domain first), then routes without hosts;
//!    a less specific host group is consulted only when nothing in a more specific one matched
//!    the path;
//! 2. path: the exact `path`, then `path_prefix` from the longest prefix to `/`;
//! 3. more conditions (a method list counts one, each header one);
//! 4. file order.
//!
//! If some route matched host, path and headers but none allows the method, the answer is 405
//! with the union of their methods in `Allow`.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::host::host_matches;
use super::methods::MethodSet;
use crate::auth::{Authenticator, RouteAuth};
use crate::config::{PathMatch, RouteConfig};
use crate::transform::headers::HeaderRules;
use crate::versions::Versions;

/// One route as the request path needs it.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path: PathMatch,
    pub methods: MethodSet,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Index of the route's pool in the snapshot (unversioned routes).
    pub upstream: Option<usize>,
    /// Per-version upstreams (versioned routes).
    pub versions: Option<Versions>,
    pub strip_prefix: Option<String>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    pub timeout: Option<Duration>,
    pub auth: RouteAuth,
    /// Indexes of the route's rate-limit policies in the snapshot.
    pub limits: Vec<usize>,
}

impl Route {
    pub fn compile(
        cfg: &RouteConfig,
        upstream: Option<usize>,
        versions: Option<Versions>,
        authenticators: &[Authenticator],
        policies: &[String],
    ) -> Route {
        Route {
            name: cfg.name.value.clone(),
            path: cfg.matcher.path.clone(),
            methods: MethodSet::from_names(cfg.matcher.methods.iter().map(String::as_str)),
            headers: cfg.matcher.headers.clone(),
            upstream,
            versions,
            strip_prefix: cfg.strip_prefix.as_ref().map(|s| s.value.clone()),
            request_headers: HeaderRules::compile(&cfg.request_headers),
            response_headers: HeaderRules::compile(&cfg.response_headers),
            timeout: cfg.timeout,
            auth: RouteAuth::compile(&cfg.auth, authenticators),
            limits: cfg
                .rate_limit
                .iter()
                .filter_map(|name| policies.iter().position(|p| *p == name.value))
                .collect(),
        }
    }

    fn conditions(&self) -> usize {
        usize::from(!self.methods.is_any()) + self.headers.len()
    }

    fn headers_match(&self, headers: &HeaderMap) -> bool {
        self.headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }
}

/// Routes of one host slot, indexed by exact path and by prefix.
#[derive(Debug, Default)]
struct HostGroup {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
}

impl HostGroup {
    fn insert(&mut self, id: usize, path: &PathMatch) {
        let slot = match path {
            PathMatch::Exact(p) => self.exact.entry(p.clone()).or_default(),
            PathMatch::Prefix(p) => self.prefix.entry(p.clone()).or_default(),
        };
        slot.push(id);
    }

    fn sort(&mut self, routes: &[Route]) {
        for ids in self.exact.values_mut().chain(self.prefix.values_mut()) {
            ids.sort_by_key(|&id| (std::cmp::Reverse(routes[id].conditions()), id));
        }
    }

    /// Candidate route ids for `path`, in precedence order.
    fn candidates<'a>(&'a self, path: &'a str) -> impl Iterator<Item = usize> + 'a {
        let exact = self.exact.get(path).into_iter().flatten().copied();
        let prefixes = segment_prefixes(path)
            .filter_map(|p| self.prefix.get(p))
            .flatten()
            .copied();
        exact.chain(prefixes)
    }
}

/// Every segment-boundary prefix of a canonical path, longest first:
/// `/a/b` -> `/a/b`, `/a/`, `/a`, `/`.
fn segment_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let bytes = path.as_bytes();
    let mut end = path.len();
    let mut pending_without_slash: Option<usize> = None;
    let mut first = true;
    std::iter::from_fn(move || {
        if first {
            first = false;
            return Some(path);
        }
        if let Some(e) = pending_without_slash.take() {
            return Some(&path[..e]);
        }
        // Find the previous '/' strictly before `end` that yields a shorter prefix.
        while end > 0 {
            end -= 1;
            if bytes[end] == b'/' {
                let with_slash = &path[..end + 1];
                if with_slash.len() < path.len() {
                    if end > 0 {
                        pending_without_slash = Some(end);
                    }
                    return Some(with_slash);
                } else if end > 0 {
                    // The path ends with '/': its form without the slash comes next.
                    return Some(&path[..end]);
                }
            }
        }
        None
    })
}

/// The outcome of routing one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    Found(usize),
    /// Host and path matched, the method did not: the methods that would have.
    MethodNotAllowed(MethodSet),
    NotFound,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    exact_hosts: HashMap<String, HostGroup>,
    /// `(pattern, group)`, longest domain first.
    wildcard_hosts: Vec<(String, HostGroup)>,
    any_host: HostGroup,
}

impl RouteTable {
    /// Build the table; `configs` and `upstream_of` are parallel (upstream index per route).
    pub fn build(routes: Vec<Route>, hosts: &[Vec<String>]) -> RouteTable {
        let mut t = RouteTable::default();
        for (id, route) in routes.iter().enumerate() {
            let route_hosts = hosts.get(id).map(Vec::as_slice).unwrap_or(&[]);
            if route_hosts.is_empty() {
                t.any_host.insert(id, &route.path);
            }
            for h in route_hosts {
                if h.starts_with("*.") {
                    match t.wildcard_hosts.iter_mut().find(|(p, _)| p == h) {
                        Some((_, g)) => g.insert(id, &route.path),
                        None => {
                            let mut g = HostGroup::default();
                            g.insert(id, &route.path);
                            t.wildcard_hosts.push((h.clone(), g));
                        }
                    }
                } else {
                    t.exact_hosts
                        .entry(h.clone())
                        .or_default()
                        .insert(id, &route.path);
                }
            }
        }
        t.wildcard_hosts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for g in t.exact_hosts.values_mut() {
            g.sort(&routes);
        }
        for (_, g) in t.wildcard_hosts.iter_mut() {
            g.sort(&routes);
        }
        t.any_host.sort(&routes);
        t.routes = routes;
        t
    }

    /// The most specific route for `host`, `path` and headers, whatever its methods.
    pub fn find_any_method(&self, host: &str, path: &str, headers: &HeaderMap) -> Option<usize> {
        self.groups(host).find_map(|group| {
            group
                .candidates(path)
                .find(|&id| self.routes[id].headers_match(headers))
        })
    }

    /// The host groups to try for `host`, most specific first.
    fn groups<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a HostGroup> + 'a {
        let exact = self.exact_hosts.get(host).into_iter();
        let wild = self
            .wildcard_hosts
            .iter()
            .filter(move |(p, _)| host_matches(p, host))
            .map(|(_, g)| g);
        exact.chain(wild).chain(std::iter::once(&self.any_host))
    }

    /// Route a request by canonical `host` (may be empty), canonical `path`, method, headers.
    pub fn find(&self, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> RouteMatch {
        for group in self.groups(host) {
            let mut allowed = MethodSet::default();
            let mut path_matched = false;
            for id in group.candidates(path) {
                let route = &self.routes[id];
                if !route.headers_match(headers) {
                    continue;
                }
                if route.methods.allows(method) {
                    return RouteMatch::Found(id);
                }
                path_matched = true;
                allowed = allowed.union(route.methods);
            }
            if path_matched {
                return RouteMatch::MethodNotAllowed(allowed);
            }
        }
        RouteMatch::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::headers::HeaderRules;

    fn route(name: &str, path: PathMatch, methods: &[&str], headers: &[(&str, &str)]) -> Route {
        Route {
            name: name.into(),
            path,
            methods: MethodSet::from_names(methods.iter().copied()),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect(),
            upstream: Some(0),
            versions: None,
            strip_prefix: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            timeout: None,
            auth: RouteAuth::default(),
            limits: Vec::new(),
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    fn name_of(t: &RouteTable, m: RouteMatch) -> String {
        match m {
            RouteMatch::Found(id) => t.routes[id].name.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn segment_prefixes_longest_first() {
        let v: Vec<&str> = segment_prefixes("/a/b").collect();
        assert_eq!(v, ["/a/b", "/a/", "/a", "/"]);
        let v: Vec<&str> = segment_prefixes("/a/b/").collect();
        assert_eq!(v, ["/a/b/", "/a/b", "/a/", "/a", "/"]);
        let v: Vec<&str> = segment_prefixes("/").collect();
        assert_eq!(v, ["/"]);
    }

    #[test]
    fn precedence_exact_then_longest_prefix_then_conditions_then_order() {
        let routes = vec![
            route("root", prefix("/"), &[], &[]),
            route("users", prefix("/users"), &[], &[]),
            route("users-get", prefix("/users"), &["GET"], &[]),
            route("users-admin", prefix("/users/admin"), &[], &[]),
            route("users-exact", PathMatch::Exact("/users".into()), &[], &[]),
            route("tenant", prefix("/users"), &["GET"], &[("x-tenant", "acme")]),
        ];
        let hosts = vec![vec![]; routes.len()];
        let t = RouteTable::build(routes, &hosts);
        let h = HeaderMap::new();
        let mut acme = HeaderMap::new();
        acme.insert("x-tenant", HeaderValue::from_static("acme"));
        assert_eq!(name_of(&t, t.find("", "/users", &Method::GET, &h)), "users-exact");
        assert_eq!(name_of(&t, t.find("", "/users/7", &Method::GET, &h)), "users-get");
        assert_eq!(name_of(&t, t.find("", "/users/7", &Method::POST, &h)), "users");
        assert_eq!(name_of(&t, t.find("", "/users/7", &Method::GET, &acme)), "tenant");
        assert_eq!(
            name_of(&t, t.find("", "/users/admin/x", &Method::GET, &h)),
            "users-admin"
        );
        assert_eq!(name_of(&t, t.find("", "/usersx", &Method::GET, &h)), "root");
    }

    #[test]
    fn hosts_and_405() {
        let routes = vec![
            route("any", prefix("/"), &["GET"], &[]),
            route("wild", prefix("/"), &["GET"], &[]),
            route("exact", prefix("/x"), &["POST", "PUT"], &[]),
        ];
        let hosts = vec![
            vec![],
            vec!["*.example.com".to_string()],
            vec!["api.example.com".to_string()],
        ];
        let t = RouteTable::build(routes, &hosts);
        let h = HeaderMap::new();
        assert_eq!(
            name_of(&t, t.find("a.example.com", "/", &Method::GET, &h)),
            "wild"
        );
        assert_eq!(name_of(&t, t.find("other.org", "/", &Method::GET, &h)), "any");
        // The exact host has no route for `/`: fall back to the wildcard group.
        assert_eq!(
            name_of(&t, t.find("api.example.com", "/", &Method::GET, &h)),
            "wild"
        );
        let m = t.find("api.example.com", "/x/1", &Method::GET, &h);
        assert_eq!(
            m,
            RouteMatch::MethodNotAllowed(MethodSet::from_names(["POST", "PUT"]))
        );
        assert_eq!(
            t.find("api.example.com", "/x", &Method::DELETE, &h),
            m_405(&["POST", "PUT"])
        );
    }

    fn m_405(m: &[&str]) -> RouteMatch {
        RouteMatch::MethodNotAllowed(MethodSet::from_names(m.iter().copied()))
    }

    #[test]
    fn no_route_is_not_found() {
        let routes = vec![route("a", prefix("/a"), &[], &[])];
        let t = RouteTable::build(routes, &[vec![]]);
        assert_eq!(
            t.find("", "/b", &Method::GET, &HeaderMap::new()),
            RouteMatch::NotFound
        );
    }
}
