//! The compiled route table and its precedence rules.
//!
//! A request is decided by the **most specific path** that any route covers for its host:
//! 1. host: an exact host, then wildcard hosts (longest domain first), then routes without
//!    hosts; a less specific host group is consulted only when the more specific one has no
//!    route for the path at all;
//! 2. path: within that group, the path that matches the request's segments most specifically
//!    is the *deciding path*: segment by segment from the left, a literal beats a constrained
//!    capture beats a capture beats `*` beats nothing (a shorter prefix); then an exact `path`
//!    beats a `path_prefix`, a longer literal prefix a shorter one, and the first declared
//!    template an equal one (see `template.rs`). For literal paths this is simply the exact
//!    path, then the longest prefix;
//! 3. the routes of the deciding path compete: more conditions first (a method list counts one,
//!    each header one), then file order; the first whose headers and method match takes it.
//!
//! Methods and headers never hand a request to a shorter path. If routes of the deciding path
//! match the headers but none allows the method, the answer is 405 with their methods in
//! `Allow` (`HEAD` wherever `GET`). If none matches the headers, the less specific host groups
//! decide as they would for any request (a tenant route with a default for everyone else), but
//! only by a path at least as specific as the one that refused; otherwise the answer is 404.
//!
//! Why: with `/orders` public and `/orders/admin` limited to `GET, POST` behind `auth`, a
//! `DELETE /orders/admin/users/1` used to fall through to the public route and reach its
//! upstream without a credential. The most specific path an operator wrote decides.

use std::collections::HashMap;

use http::{HeaderMap, Method};

use super::host::host_matches;
use super::methods::MethodSet;
use super::template::{PathTemplate, LITERAL};
use crate::config::PathMatch;
use crate::route::Route;

/// Routes of one host slot, indexed by exact path and by prefix; templates apart.
#[derive(Debug, Default)]
pub(crate) struct HostGroup {
    exact: HashMap<String, Vec<usize>>,
    prefix: HashMap<String, Vec<usize>>,
    templates: Templates,
}

/// The template paths of a host group, in precedence order (best first), indexed by their
/// first literal segment so a request only tries the templates that could match it.
#[derive(Debug, Default)]
struct Templates {
    slots: Vec<(std::sync::Arc<PathTemplate>, Vec<usize>)>,
    /// First literal segment -> positions in `slots`, ascending.
    by_first: HashMap<String, Vec<usize>>,
    /// Positions of templates that start with a capture or wildcard, ascending.
    open: Vec<usize>,
    /// Template -> position in `slots`.
    positions: HashMap<std::sync::Arc<PathTemplate>, usize>,
}

impl Templates {
    fn insert(&mut self, id: usize, template: &std::sync::Arc<PathTemplate>) {
        match self.positions.get(template) {
            Some(&at) => self.slots[at].1.push(id),
            None => {
                self.positions.insert(template.clone(), self.slots.len());
                self.slots.push((template.clone(), vec![id]));
            }
        }
    }

    fn get(&self, template: &PathTemplate) -> Option<&[usize]> {
        let at = *self.positions.get(template)?;
        self.slots.get(at).map(|(_, ids)| ids.as_slice())
    }

    /// Order the slots by precedence and build the index (after every insert).
    fn finish(&mut self) {
        self.slots.sort_by(|(a, a_ids), (b, b_ids)| {
            b.ranks()
                .cmp(a.ranks())
                .then(a.is_prefix().cmp(&b.is_prefix()))
                .then(a_ids.iter().min().cmp(&b_ids.iter().min()))
        });
        self.positions.clear();
        for (at, (t, _)) in self.slots.iter().enumerate() {
            self.positions.insert(t.clone(), at);
            match t.first_literal() {
                Some(first) => self.by_first.entry(first.to_string()).or_default().push(at),
                None => self.open.push(at),
            }
        }
    }

    /// The best template slot matching `path`.
    fn best(&self, path: &str) -> Option<&(std::sync::Arc<PathTemplate>, Vec<usize>)> {
        if self.slots.is_empty() {
            return None;
        }
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let indexed = self.by_first.get(first).map(Vec::as_slice).unwrap_or(&[]);
        let matching = |at: &&usize| self.slots[**at].0.matches(path);
        let a = indexed.iter().find(matching);
        let b = self.open.iter().find(matching);
        let at = match (a, b) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        self.slots.get(*at)
    }
}

impl HostGroup {
    fn insert(&mut self, id: usize, path: &PathMatch) {
        let slot = match path {
            PathMatch::Exact(p) => self.exact.entry(p.clone()).or_default(),
            PathMatch::Prefix(p) => self.prefix.entry(p.clone()).or_default(),
            PathMatch::Template(t) => return self.templates.insert(id, t),
        };
        slot.push(id);
    }

    fn sort(&mut self, routes: &[Route]) {
        let templates = self.templates.slots.iter_mut().map(|(_, ids)| ids);
        for ids in self
            .exact
            .values_mut()
            .chain(self.prefix.values_mut())
            .chain(templates)
        {
            ids.sort_by_key(|&id| (std::cmp::Reverse(routes[id].conditions()), id));
        }
        self.templates.finish();
    }

    /// The deciding path of this group for `path` (see the module docs), with its routes in
    /// precedence order.
    fn deciding<'a>(&'a self, path: &'a str) -> Option<(Slot<'a>, &'a [usize])> {
        if let Some(ids) = self.exact.get(path) {
            return Some((Slot::Exact(path), ids));
        }
        let literal = segment_prefixes(path)
            .find_map(|p| self.prefix.get(p).map(|ids| (Slot::Prefix(p), ids.as_slice())));
        let Some((template, ids)) = self.templates.best(path) else {
            return literal;
        };
        let template = (Slot::Template(template), ids.as_slice());
        match literal {
            Some(l) if l.0.more_specific_than(&template.0) => Some(l),
            _ => Some(template),
        }
    }

    /// The routes of exactly `slot` in this group.
    pub(crate) fn slot(&self, slot: Slot<'_>) -> Option<&[usize]> {
        match slot {
            Slot::Exact(p) => self.exact.get(p).map(Vec::as_slice),
            Slot::Prefix(p) => self.prefix.get(p).map(Vec::as_slice),
            Slot::Template(t) => self.templates.get(t),
        }
    }

    /// Every slot with its routes (for reports).
    pub(crate) fn slots(&self) -> impl Iterator<Item = (Slot<'_>, &[usize])> {
        let exact = self.exact.iter().map(|(p, ids)| (Slot::Exact(p), ids.as_slice()));
        let prefix = self
            .prefix
            .iter()
            .map(|(p, ids)| (Slot::Prefix(p), ids.as_slice()));
        let templates = self
            .templates
            .slots
            .iter()
            .map(|(t, ids)| (Slot::Template(t), ids.as_slice()));
        exact.chain(prefix).chain(templates)
    }

    /// The nearest slot strictly less specific than `slot` that covers it, if any: for a
    /// template, the longest literal prefix of its literal head.
    pub(crate) fn enclosing<'a>(&'a self, slot: Slot<'a>) -> Option<(Slot<'a>, &'a [usize])> {
        let (path, skip) = match slot {
            // An exact path is covered by a prefix of the same text.
            Slot::Exact(p) => (p, 0),
            Slot::Prefix(p) => (p, 1),
            Slot::Template(t) => {
                let head = t.literal_head();
                return segment_prefixes(&head).find_map(|p| {
                    self.prefix
                        .get_key_value(p)
                        .map(|(k, ids)| (Slot::Prefix(k.as_str()), ids.as_slice()))
                });
            }
        };
        segment_prefixes(path)
            .skip(skip)
            .find_map(|p| self.prefix.get(p).map(|ids| (Slot::Prefix(p), ids.as_slice())))
    }
}

/// One path entry of a host group: an exact path, a prefix or a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Template(&'a PathTemplate),
}

impl Slot<'_> {
    pub(crate) fn path(&self) -> &str {
        match self {
            Slot::Exact(p) | Slot::Prefix(p) => p,
            Slot::Template(t) => t.text(),
        }
    }

    /// Whether the slot is a prefix (covers the paths below it).
    pub(crate) fn is_prefix(&self) -> bool {
        match self {
            Slot::Exact(_) => false,
            Slot::Prefix(_) => true,
            Slot::Template(t) => t.is_prefix(),
        }
    }

    /// The precedence key (see `template.rs`): a literal path ranks every segment it names
    /// as a literal.
    fn ranks(&self) -> impl Iterator<Item = u8> + '_ {
        let (literal, template) = match self {
            Slot::Exact(p) | Slot::Prefix(p) => (p.split('/').filter(|s| !s.is_empty()).count(), &[][..]),
            Slot::Template(t) => (0, t.ranks()),
        };
        std::iter::repeat_n(LITERAL, literal).chain(template.iter().copied())
    }

    /// Whether this slot decides over `other` for a path both match: the precedence key, then
    /// exact over prefix, then the longer literal text (`/a/` over `/a`).
    pub(crate) fn more_specific_than(&self, other: &Slot<'_>) -> bool {
        self.specificity_cmp(other) == std::cmp::Ordering::Greater
    }

    fn specificity_cmp(&self, other: &Slot<'_>) -> std::cmp::Ordering {
        let by_rank = self
            .ranks()
            .cmp(other.ranks())
            .then(other.is_prefix().cmp(&self.is_prefix()));
        match (self, other) {
            // `/a/` over `/a`; a template's text length (its capture names) means nothing.
            (Slot::Template(_), _) | (_, Slot::Template(_)) => by_rank,
            _ => by_rank.then(self.path().len().cmp(&other.path().len())),
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}",
            if self.is_prefix() { "path_prefix" } else { "path" },
            self.path()
        )
    }
}

/// Every segment-boundary prefix of a canonical path, longest first:
/// `/a/b` -> `/a/b`, `/a/`, `/a`, `/`.
pub(crate) fn segment_prefixes(path: &str) -> impl Iterator<Item = &str> {
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
        let mut wildcard_index: HashMap<&str, usize> = HashMap::new();
        for (id, route) in routes.iter().enumerate() {
            let route_hosts = hosts.get(id).map(Vec::as_slice).unwrap_or(&[]);
            if route_hosts.is_empty() {
                t.any_host.insert(id, &route.path);
            }
            for h in route_hosts {
                if h.starts_with("*.") {
                    let at = *wildcard_index.entry(h.as_str()).or_insert_with(|| {
                        t.wildcard_hosts.push((h.clone(), HostGroup::default()));
                        t.wildcard_hosts.len() - 1
                    });
                    t.wildcard_hosts[at].1.insert(id, &route.path);
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

    /// The route that would take the request if its method were allowed: the first route of
    /// the deciding path whose headers match.
    pub fn find_any_method(&self, host: &str, path: &str, headers: &HeaderMap) -> Option<usize> {
        match self.decide(host, path, headers, None) {
            RouteMatch::Found(id) => Some(id),
            _ => None,
        }
    }

    /// The host groups to try for `host`, most specific first.
    pub(crate) fn groups<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a HostGroup> + 'a {
        let exact = self.exact_hosts.get(host).into_iter();
        let wild = self
            .wildcard_hosts
            .iter()
            .filter(move |(p, _)| host_matches(p, host))
            .map(|(_, g)| g);
        exact.chain(wild).chain(std::iter::once(&self.any_host))
    }

    /// Every host group with its hosts (`None` for routes without hosts), for reports.
    pub(crate) fn all_groups(&self) -> impl Iterator<Item = (Option<&str>, &HostGroup)> {
        let exact = self.exact_hosts.iter().map(|(h, g)| (Some(h.as_str()), g));
        let wild = self.wildcard_hosts.iter().map(|(h, g)| (Some(h.as_str()), g));
        exact.chain(wild).chain(std::iter::once((None, &self.any_host)))
    }

    /// The routes without hosts (the group every host falls back to).
    pub(crate) fn any_host_group(&self) -> &HostGroup {
        &self.any_host
    }

    /// Route a request by canonical `host` (may be empty), canonical `path`, method, headers.
    pub fn find(&self, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> RouteMatch {
        self.decide(host, path, headers, Some(method))
    }

    /// The deciding path (see the module docs) and the competition among its routes;
    /// `method: None` accepts any method.
    fn decide(&self, host: &str, path: &str, headers: &HeaderMap, method: Option<&Method>) -> RouteMatch {
        let mut groups = self.groups(host);
        let mut deciding = None;
        for group in groups.by_ref() {
            if let Some((slot, ids)) = group.deciding(path) {
                deciding = Some(slot);
                if let Some(m) = self.compete(ids, headers, method) {
                    return m;
                }
                break;
            }
        }
        let Some(slot) = deciding else {
            return RouteMatch::NotFound;
        };
        // No route of the deciding path matched the headers. A less specific host group may
        // take the request as it would decide any request — by its own most specific path —
        // as long as that path is not shorter than the one that refused: a header mismatch
        // never hands a request to a shorter path.
        for group in groups {
            let Some((own, ids)) = group.deciding(path) else {
                continue;
            };
            if slot.more_specific_than(&own) {
                return RouteMatch::NotFound;
            }
            if let Some(m) = self.compete(ids, headers, method) {
                return m;
            }
        }
        RouteMatch::NotFound
    }

    /// Every route of a host group consulted for `host` whose path matches `path`, with its
    /// slot and its host group's rank (0: the most specific group): groups most specific first, in each the slots most specific first, on each slot
    /// the routes in the order they compete. What `portcullis route` explains.
    pub(crate) fn matching_routes<'a>(
        &'a self,
        host: &'a str,
        path: &'a str,
    ) -> Vec<(usize, Slot<'a>, usize)> {
        let mut out = Vec::new();
        for (rank, group) in self.groups(host).enumerate() {
            let mut slots: Vec<(Slot<'a>, &'a [usize])> = Vec::new();
            if let Some(ids) = group.exact.get(path) {
                slots.push((Slot::Exact(path), ids));
            }
            for p in segment_prefixes(path) {
                if let Some((k, ids)) = group.prefix.get_key_value(p) {
                    slots.push((Slot::Prefix(k.as_str()), ids));
                }
            }
            for (t, ids) in &group.templates.slots {
                if t.matches(path) {
                    slots.push((Slot::Template(t), ids));
                }
            }
            slots.sort_by(|(a, _), (b, _)| b.specificity_cmp(a));
            for (slot, ids) in slots {
                out.extend(ids.iter().map(|&id| (id, slot, rank)));
            }
        }
        out
    }

    /// Every route a request for `host`, `path` and `method` could reach whatever its headers
    /// (header conditions are ignored): what a CORS preflight, which carries none of the
    /// actual request's headers, must speak for.
    pub fn candidates(&self, host: &str, path: &str, method: &Method) -> Vec<usize> {
        let mut out = Vec::new();
        let mut first: Option<Slot<'_>> = None;
        for group in self.groups(host) {
            let Some((slot, ids)) = group.deciding(path) else {
                continue;
            };
            match first {
                None => first = Some(slot),
                Some(f) if f.more_specific_than(&slot) => break,
                Some(_) => {}
            }
            out.extend(
                ids.iter()
                    .copied()
                    .filter(|&id| self.routes[id].methods.allows(method)),
            );
        }
        out
    }

    /// Among the routes of one path (precedence order): the first matching headers and method;
    /// 405 when some match the headers but none the method; `None` when none match the headers.
    fn compete(&self, ids: &[usize], headers: &HeaderMap, method: Option<&Method>) -> Option<RouteMatch> {
        let mut allowed = MethodSet::default();
        let mut headers_matched = false;
        for &id in ids {
            let route = &self.routes[id];
            if !route.headers_match(headers) {
                continue;
            }
            if method.is_none_or(|m| route.methods.allows(m)) {
                return Some(RouteMatch::Found(id));
            }
            headers_matched = true;
            allowed = allowed.union(route.methods);
        }
        headers_matched.then_some(RouteMatch::MethodNotAllowed(allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    use crate::test_util::route;

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

    /// The hardening review's bypass: a method-restricted route must not hand other methods to
    /// a less specific route, and header conditions must not either.
    #[test]
    fn the_most_specific_path_decides() {
        let routes = vec![
            route("public", prefix("/orders"), &[], &[]),
            route("admin", prefix("/orders/admin"), &["GET", "POST"], &[]),
            route(
                "internal",
                prefix("/orders/internal"),
                &[],
                &[("x-internal", "1")],
            ),
            route("tenant", prefix("/t"), &[], &[("x-tenant", "acme")]),
            route("t-default", prefix("/t"), &[], &[]),
        ];
        let hosts = vec![
            vec![],
            vec![],
            vec![],
            vec!["api.example.com".to_string()],
            vec![],
        ];
        let t = RouteTable::build(routes, &hosts);
        let h = HeaderMap::new();
        for m in [
            "DELETE",
            "PUT",
            "PATCH",
            "OPTIONS",
            "TRACE",
            "PURGE",
            "X-ANYTHING",
        ] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                t.find("", "/orders/admin/users/1", &method, &h),
                m_405(&["GET", "POST"]),
                "{m}"
            );
        }
        assert_eq!(
            name_of(&t, t.find("", "/orders/admin/users/1", &Method::HEAD, &h)),
            "admin",
            "HEAD wherever GET"
        );
        assert_eq!(
            t.find("", "/orders/internal/x", &Method::GET, &h),
            RouteMatch::NotFound,
            "a header mismatch never falls to a shorter path"
        );
        assert_eq!(
            name_of(&t, t.find("", "/orders/other", &Method::DELETE, &h)),
            "public"
        );
        assert_eq!(
            name_of(&t, t.find("api.example.com", "/t/1", &Method::GET, &h)),
            "t-default",
            "the same path on a less specific host takes a header mismatch"
        );
        assert_eq!(t.find_any_method("", "/orders/admin/x", &h), Some(1));
    }

    /// The review's attack on the fallback: a tenant route for a host, a public `/orders` and
    /// a protected `/orders/admin` for every host. A request without the tenant header falls
    /// to the routes for every host, where `/orders/admin` decides.
    #[test]
    fn a_header_mismatch_falls_back_to_the_most_specific_path_only() {
        let routes = vec![
            route("tenant", prefix("/orders"), &[], &[("x-tenant", "acme")]),
            route("orders", prefix("/orders"), &[], &[]),
            route("orders-admin", prefix("/orders/admin"), &["GET", "POST"], &[]),
            route(
                "tenant-admin",
                prefix("/billing/admin"),
                &[],
                &[("x-tenant", "acme")],
            ),
            route("billing", prefix("/billing"), &[], &[]),
        ];
        let api = vec!["api.example.com".to_string()];
        let hosts = vec![api.clone(), vec![], vec![], api, vec![]];
        let t = RouteTable::build(routes, &hosts);
        let h = HeaderMap::new();
        let host = "api.example.com";
        assert_eq!(
            t.find(host, "/orders/admin/users/1", &Method::DELETE, &h),
            m_405(&["GET", "POST"]),
            "not the public /orders"
        );
        assert_eq!(
            name_of(&t, t.find(host, "/orders/7", &Method::DELETE, &h)),
            "orders"
        );
        assert_eq!(
            t.find(host, "/billing/admin/x", &Method::GET, &h),
            RouteMatch::NotFound,
            "a header mismatch never falls to the shorter /billing"
        );
    }

    fn template(text: &str, prefix: bool) -> PathMatch {
        PathMatch::Template(std::sync::Arc::new(
            crate::routing::template::PathTemplate::parse(text, prefix).unwrap(),
        ))
    }

    /// A literal segment beats a constrained capture beats a capture beats `*` beats a shorter
    /// prefix, whatever the declaration order; the deciding template's methods give the 405.
    #[test]
    fn templates_rank_by_segment_then_declaration() {
        let routes = vec![
            route("wild", template("/users/*", true), &[], &[]),
            route("prefix", prefix("/users"), &[], &[]),
            route("name", template("/users/{name}", false), &["GET"], &[]),
            route("id", template("/users/{id:[0-9]+}", false), &[], &[]),
            route("me", PathMatch::Exact("/users/me".into()), &[], &[]),
            route("left", template("/{a}/x", false), &[], &[]),
            route("right", template("/x/{b}", false), &[], &[]),
            route("deep-literal", prefix("/users/ann/orders"), &[], &[]),
        ];
        let t = RouteTable::build(routes, &vec![vec![]; 8]);
        let h = HeaderMap::new();
        let get = |p: &str| name_of(&t, t.find("", p, &Method::GET, &h));
        assert_eq!(get("/users/me"), "me");
        assert_eq!(get("/users/42"), "id");
        assert_eq!(get("/users/ann"), "name");
        assert_eq!(get("/users/ann/x"), "wild");
        assert_eq!(get("/users/ann/orders/1"), "deep-literal");
        assert_eq!(get("/users"), "prefix");
        assert_eq!(get("/x/x"), "right", "the leftmost difference decides");
        assert_eq!(get("/y/x"), "left");
        assert_eq!(
            t.find("", "/users/ann", &Method::DELETE, &h),
            m_405(&["GET"]),
            "never the less specific `/users/*`"
        );
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
