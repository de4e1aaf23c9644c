//! Rules that span several items: names that must be unique, references that must resolve,
//! routes that can never be selected.

use std::collections::{HashMap, HashSet};

use super::auth_model::{AuthConfig, AuthKind};
use super::decode::Spanned;
use super::diag::{did_you_mean, Problems};
use super::limits_model::{KeyPart, MissingKey, RateLimitConfig, Store};
use super::model::{MatchConfig, RouteConfig, ServerConfig, TargetHost, UpstreamConfig};
use super::schema::Parts;
use super::versions_model::{split_path_version, Sticky, VersionSource};
use crate::routing::normalize::has_segment_prefix;

pub fn validate(parts: &Parts, upstream_names: &[String], p: &mut Problems) {
    if let Some(server) = &parts.server {
        check_listeners(server, p);
        check_mtls_listeners(server, &parts.auth, p);
    }
    check_targets(&parts.upstreams, p);
    check_routes(&parts.routes, upstream_names, p);
    check_route_auth(&parts.routes, &parts.auth_names, p);
    check_route_limits(&parts.routes, &parts.limit_names, p);
    check_identity_keys(&parts.routes, &parts.rate_limits, p);
    if parts.redis.as_ref().is_some_and(|r| r.is_cluster()) {
        check_cluster_slots(&parts.routes, &parts.rate_limits, p);
    }
    check_path_version_collisions(&parts.routes, p);
    check_part_identity_headers(&parts.routes, &parts.auth, p);
    check_grpc_upstreams(&parts.routes, &parts.upstreams, p);
}

/// A transcoding route's upstream speaks HTTP/2 (gRPC needs it: trailers, `te: trailers`).
fn check_grpc_upstreams(routes: &[Option<RouteConfig>], upstreams: &[UpstreamConfig], p: &mut Problems) {
    for (i, r) in routes.iter().enumerate() {
        let Some(grpc) = r.as_ref().and_then(|r| r.grpc.as_ref()) else {
            continue;
        };
        let Some(u) = upstreams.iter().find(|u| u.name.value == grpc.upstream.value) else {
            continue;
        };
        if u.protocol == super::model::UpstreamProtocol::Http1 {
            p.add(
                grpc.upstream.pos,
                &format!("routes[{i}].grpc.upstream"),
                format!(
                    "upstream `{}` speaks HTTP/1.1; gRPC needs `protocol: h2c` (or `h2` with `tls`)",
                    u.name.value
                ),
            );
        }
    }
}

/// A part's header rule naming a header authentication sets (`forward`, `forward_claims`)
/// would be silently replaced by the verified identity: say so instead.
fn check_part_identity_headers(routes: &[Option<RouteConfig>], auth: &[AuthConfig], p: &mut Problems) {
    let identity: Vec<(&http::HeaderName, &str)> = auth
        .iter()
        .flat_map(|a| {
            let forwarded = match &a.kind {
                AuthKind::Jwt(j) => &j.forward_claims,
                AuthKind::ApiKey(k) => &k.forward,
                AuthKind::Mtls(m) => &m.forward,
            };
            forwarded.iter().map(move |(_, h)| (h, a.name.value.as_str()))
        })
        .collect();
    for (i, r) in routes.iter().enumerate() {
        let Some(aggregate) = r.as_ref().and_then(|r| r.aggregate.as_ref()) else {
            continue;
        };
        for (k, part) in aggregate.parts.iter().enumerate() {
            for (name, _) in &part.set_headers {
                if let Some((_, by)) = identity.iter().find(|(h, _)| *h == name) {
                    p.add(
                        part.name.pos,
                        &format!("routes[{i}].aggregate.parts[{k}].request_headers.set.{name}"),
                        format!("`{name}` is set by authentication (auth.{by} forwards it); a header rule cannot set it"),
                    );
                }
            }
        }
    }
}

/// A route whose path starts with `/v<version>` competes with the path versions of a route
/// versioned by path (`/v2/users` against `/users` with `from: [path]`): the versioned reading
/// would win, so the other route would lose those requests. Refuse the ambiguity, for literal
/// paths and templates alike (`/{ver}/users/{id}`, or `/v1/users` against `/users/{id}`).
fn check_path_version_collisions(routes: &[Option<RouteConfig>], p: &mut Problems) {
    use crate::routing::overlap::{intersects, SegMatch};
    let versioned: Vec<(crate::routing::overlap::Pattern<'_>, &RouteConfig)> = routes
        .iter()
        .flatten()
        .filter(|r| {
            r.versions
                .as_ref()
                .is_some_and(|v| v.from.contains(&VersionSource::Path))
        })
        .map(|r| (r.matcher.path.pattern(), r))
        .collect();
    if versioned.is_empty() {
        return;
    }
    for (i, r) in routes.iter().enumerate() {
        let Some(r) = r else { continue };
        let pattern = r.matcher.path.pattern();
        let Some(&first) = pattern.segs.first() else {
            continue;
        };
        let rest = pattern.without_first();
        let collides = versioned.iter().find(|(v_pattern, v)| {
            // Could the first segment be read as one of this route's versions?
            let version_segment = match first {
                SegMatch::Literal(l) => split_path_version(&format!("/{l}")).is_some(),
                SegMatch::Any(None) => true,
                SegMatch::Any(Some(re)) => v
                    .versions
                    .iter()
                    .flat_map(|vs| &vs.versions)
                    .any(|ver| re.is_match(&format!("v{}", ver.name.value))),
            };
            !std::ptr::eq(*v, r) && version_segment && intersects(&rest, v_pattern)
        });
        if let Some((_, v)) = collides {
            p.add(
                r.name.pos,
                &format!("routes[{i}].match"),
                format!(
                    "path `{}` collides with the path versions of route `{}` (/v<version>{}); requests would go to that route",
                    r.matcher.path.text(),
                    v.name.value,
                    v.matcher.path.text()
                ),
            );
        }
    }
}

/// In a Redis Cluster one decision's keys must share a slot (one script touches them all).
/// Every key is tagged with the hashed client key, so the route's `store: redis` policies must
/// count by the same key, computed the same way: the same parts, the same IPv6 prefix and the
/// same fallback when the identity is missing.
fn check_cluster_slots(routes: &[Option<RouteConfig>], policies: &[RateLimitConfig], p: &mut Problems) {
    let by_name: HashMap<&str, &RateLimitConfig> = policies
        .iter()
        .map(|pol| (pol.name.value.as_str(), pol))
        .collect();
    let uses_ip = |pol: &RateLimitConfig| pol.key.contains(&KeyPart::Ip) || pol.missing_key == MissingKey::Ip;
    for (i, r) in routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    {
        let mut first: Option<&RateLimitConfig> = None;
        for (j, name) in r.rate_limit.iter().enumerate() {
            let Some(policy) = by_name.get(name.value.as_str()).copied() else {
                continue;
            };
            if !matches!(policy.store, Store::Redis { .. }) {
                continue;
            }
            let Some(first) = first else {
                first = Some(policy);
                continue;
            };
            let same = first.key == policy.key
                && first.missing_key == policy.missing_key
                && (!uses_ip(first) || first.ipv6_prefix == policy.ipv6_prefix);
            if !same {
                p.add(
                    name.pos,
                    &format!("routes[{i}].rate_limit[{j}]"),
                    format!(
                        "in a Redis Cluster one decision's keys must share a slot, so the route's store: redis policies must count by the same key: `{}` does not count like `{}` (key, missing_key and ipv6_prefix must match; or make one of them store: local)",
                        policy.name.value, first.name.value
                    ),
                );
            }
        }
    }
}

/// A policy keyed on the consumer or a claim needs an authenticated request: on a route
/// without `auth` every request would be refused (unless the policy falls back to the IP).
fn check_identity_keys(routes: &[Option<RouteConfig>], policies: &[RateLimitConfig], p: &mut Problems) {
    let by_name: HashMap<&str, &RateLimitConfig> = policies
        .iter()
        .map(|pol| (pol.name.value.as_str(), pol))
        .collect();
    for (i, r) in routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    {
        if !r.auth.authenticators.is_empty() {
            continue;
        }
        for v in r.versions.iter().flat_map(|v| &v.versions) {
            if v.sticky == Sticky::Consumer && !v.split.is_empty() {
                p.add(
                    v.name.pos,
                    &format!("routes[{i}].versions.{}.sticky", v.name.value),
                    "sticky: consumer needs an authenticated consumer, but the route has no `auth` (use ip or header:NAME)",
                );
            }
        }
        for (j, name) in r.rate_limit.iter().enumerate() {
            let Some(policy) = by_name.get(name.value.as_str()) else {
                continue;
            };
            let needs_identity = policy
                .key
                .iter()
                .any(|k| matches!(k, KeyPart::Consumer | KeyPart::Claim(_)));
            if needs_identity && policy.missing_key == MissingKey::Reject {
                p.add(
                    name.pos,
                    &format!("routes[{i}].rate_limit[{j}]"),
                    format!(
                        "policy `{}` is keyed on the consumer or a claim, but the route has no `auth`: every request would be refused (add `auth`, or `missing_key: ip` to the policy)",
                        name.value
                    ),
                );
            }
        }
    }
}

/// An `mtls` authenticator can only ever see a certificate a listener asked for.
fn check_mtls_listeners(server: &ServerConfig, auth: &[AuthConfig], p: &mut Problems) {
    let asking: Vec<&str> = server
        .process
        .listen
        .iter()
        .filter(|l| l.tls.as_ref().is_some_and(|t| t.client_ca.is_some()))
        .map(|l| l.addr.as_str())
        .collect();
    for a in auth {
        let AuthKind::Mtls(m) = &a.kind else { continue };
        for l in m.listeners.iter().filter(|l| !asking.contains(&l.as_str())) {
            p.add(
                a.name.pos,
                &format!("auth.{}.listeners", a.name.value),
                format!("`{l}` is not a listener that asks for client certificates"),
            );
        }
        if asking.is_empty() {
            p.add(
                a.name.pos,
                &format!("auth.{}", a.name.value),
                "an mtls authenticator needs a TLS listener that asks for client certificates \
                 (`tls: { client_ca: ..., client_auth: optional }` under server.listen)",
            );
        }
    }
}

fn check_listeners(server: &ServerConfig, p: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, l) in server.process.listen.iter().map(|l| &l.addr).enumerate() {
        if !seen.insert(l.as_str()) {
            p.add_unpositioned(&format!("server.listen[{i}]"), format!("`{l}` is listed twice"));
        }
    }
    if let Some(admin) = &server.process.admin {
        if seen.contains(admin.as_str()) {
            p.add_unpositioned("server.admin", format!("`{admin}` is also a proxy listener"));
        }
    }
}

fn check_targets(upstreams: &[UpstreamConfig], p: &mut Problems) {
    for u in upstreams {
        let mut seen = HashSet::new();
        for (i, t) in u.targets.iter().enumerate() {
            let identity = match &t.host {
                TargetHost::Ip(a) => a.to_string(),
                TargetHost::Name { host, port } => format!("{host}:{port}"),
            };
            if !seen.insert(identity) {
                p.add(
                    t.addr.pos,
                    &format!("upstreams.{}.targets[{i}]", u.name.value),
                    format!("target `{}` is listed twice", t.addr.value),
                );
            }
        }
    }
}

fn check_routes(routes: &[Option<RouteConfig>], upstream_names: &[String], p: &mut Problems) {
    let names = Known::new(upstream_names);
    // Route names seen so far, and the routes of each host-and-path slot so far (only routes
    // in the same slot can shadow each other): one pass, not one per pair of routes.
    let mut first_named: HashMap<&str, &RouteConfig> = HashMap::new();
    // Keyed by path, one host ("" for routes without hosts) and header conditions: a route that
    // shadows another has the same path and covers its hosts, so it sits in the slot of the
    // other's first host; and it has the same header conditions (a subset, with at least as
    // many conditions in all and methods covering, can only be the same set). Thousands of
    // routes on `/` that differ by a header are then never compared with each other.
    let mut slots: HashMap<SlotOf<'_>, Vec<(usize, &RouteConfig)>> = HashMap::new();
    for (i, r) in routes.iter().enumerate() {
        let Some(r) = r else { continue };
        let path = format!("routes[{i}]");
        match first_named.get(r.name.value.as_str()) {
            Some(first) => p.add(
                r.name.pos,
                &format!("{path}.name"),
                format!(
                    "duplicate route name `{}` (first at line {})",
                    r.name.value, first.name.pos.line
                ),
            ),
            None => {
                first_named.insert(&r.name.value, r);
            }
        }
        if let Some(upstream) = &r.upstream {
            check_reference(
                p,
                upstream,
                &format!("{path}.upstream"),
                "upstream",
                "upstreams",
                &names,
            );
        }
        if let Some(grpc) = &r.grpc {
            check_reference(
                p,
                &grpc.upstream,
                &format!("{path}.grpc.upstream"),
                "upstream",
                "upstreams",
                &names,
            );
        }
        for (k, part) in r.aggregate.iter().flat_map(|a| a.parts.iter().enumerate()) {
            let at = format!("{path}.aggregate.parts[{k}].upstream");
            check_reference(p, &part.upstream, &at, "upstream", "upstreams", &names);
        }
        if let Some(versions) = r
            .versions
            .as_ref()
            .filter(|v| v.from.contains(&VersionSource::Path))
        {
            let route_path = r.matcher.path.text();
            if split_path_version(route_path).is_some() {
                p.add(
                    versions.pos,
                    &format!("{path}.versions.from"),
                    format!(
                        "the route path `{route_path}` starts with a version segment; with `from: path` the version goes in front of the route path (/v2{route_path}), so write the path without it"
                    ),
                );
            }
        }
        for v in r.versions.iter().flat_map(|v| &v.versions) {
            let vpath = format!("{path}.versions.{}", v.name.value);
            let splits = v
                .split
                .iter()
                .enumerate()
                .map(|(k, s)| (format!("{vpath}.split[{k}].upstream"), &s.upstream));
            for (at, upstream) in std::iter::once((format!("{vpath}.upstream"), &v.upstream)).chain(splits) {
                check_reference(p, upstream, &at, "upstream", "upstreams", &names);
            }
        }
        if let Some(strip) = &r.strip_prefix {
            let route_path = r.matcher.path.text();
            if !has_segment_prefix(route_path, &strip.value) {
                p.add(
                    strip.pos,
                    &format!("{path}.strip_prefix"),
                    format!(
                        "`{}` is not a prefix of the route's path `{route_path}`",
                        strip.value
                    ),
                );
            }
        }
        let hosts: Vec<&str> = match r.matcher.hosts.as_slice() {
            [] => vec![""],
            hosts => hosts.iter().map(String::as_str).collect(),
        };
        let header_set = header_set(&r.matcher);
        let candidates = slots
            .get(&(r.matcher.path.slot_key(), hosts[0], header_set.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some((j, earlier)) = candidates.iter().find(|(_, a)| shadows(&a.matcher, &r.matcher)) {
            p.add(
                r.name.pos,
                &path,
                format!(
                    "route `{}` can never match: it is fully shadowed by routes[{j}] `{}` (line {})",
                    r.name.value, earlier.name.value, earlier.name.pos.line
                ),
            );
        }
        for host in hosts {
            slots
                .entry((r.matcher.path.slot_key(), host, header_set.clone()))
                .or_default()
                .push((i, r));
        }
    }
    check_template_coverage(routes, p);
}

/// A route's slot for the shadowing check: path, one host, header conditions.
type SlotOf<'a> = (super::model::SlotKey<'a>, &'a str, Vec<(&'a str, &'a [u8])>);

/// A route's header conditions as a set (sorted, without repeats).
fn header_set(m: &MatchConfig) -> Vec<(&str, &[u8])> {
    let mut set: Vec<(&str, &[u8])> = m
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}

/// A template every path of which a higher-ranked template of the same host also matches
/// (`path_prefix: /orgs/*/billing` under `path_prefix: /orgs/{org}`: a capture beats `*`, so
/// the first decides every such request): it can never match.
fn check_template_coverage(routes: &[Option<RouteConfig>], p: &mut Problems) {
    type Entry<'a> = (usize, &'a RouteConfig, &'a crate::routing::template::PathTemplate);
    // By host; within it by first literal segment (`None`: starts with a capture or `*`),
    // since only those can cover each other.
    let mut hosts: HashMap<&str, HashMap<Option<&str>, Vec<Entry<'_>>>> = HashMap::new();
    for (i, r) in routes.iter().enumerate() {
        let Some(r) = r else { continue };
        let Some(t) = r.matcher.path.template() else {
            continue;
        };
        let names: Vec<&str> = match r.matcher.hosts.as_slice() {
            [] => vec![""],
            hs => hs.iter().map(String::as_str).collect(),
        };
        for host in names {
            hosts
                .entry(host)
                .or_default()
                .entry(t.first_literal())
                .or_default()
                .push((i, r, t));
        }
    }
    let mut reported = std::collections::HashSet::new();
    for by_first in hosts.values() {
        let open = by_first.get(&None).map(Vec::as_slice).unwrap_or(&[]);
        for (first, entries) in by_first {
            let mut candidates: Vec<&Entry<'_>> = open.iter().collect();
            if first.is_some() {
                candidates.extend(entries.iter());
            }
            for &(i, r, t) in entries {
                let covering = candidates.iter().find(|(j, _, a)| {
                    *j != i
                        && a.ranks() > t.ranks()
                        && crate::routing::overlap::covers(&a.pattern(), &t.pattern())
                });
                let Some(&&(j, best, best_t)) = covering else {
                    continue;
                };
                if reported.insert(i) {
                    p.add(
                        r.name.pos,
                        &format!("routes[{i}].match"),
                        format!(
                            "route `{}` can never match: every path {} `{}` matches is matched by {} `{}` of routes[{j}] `{}` (line {}), which takes precedence (segment by segment from the left, a literal beats a constrained capture beats a capture beats `*`)",
                            r.name.value,
                            r.matcher.path.field(),
                            t.text(),
                            best.matcher.path.field(),
                            best_t.text(),
                            best.name.value,
                            best.name.pos.line
                        ),
                    );
                }
            }
        }
    }
}

fn check_route_auth(routes: &[Option<RouteConfig>], auth_names: &[String], p: &mut Problems) {
    let known = Known::new(auth_names);
    for (i, r) in routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    {
        for (j, a) in r.auth.authenticators.iter().enumerate() {
            check_reference(
                p,
                a,
                &format!("routes[{i}].auth[{j}]"),
                "authenticator",
                "auth",
                &known,
            );
        }
    }
}

/// Policies per route: with at most 16 windows each, one Redis decision stays small.
const MAX_ROUTE_POLICIES: usize = 16;

fn check_route_limits(routes: &[Option<RouteConfig>], names: &[String], p: &mut Problems) {
    let known = Known::new(names);
    for (i, r) in routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    {
        for (j, l) in r.rate_limit.iter().enumerate() {
            let path = format!("routes[{i}].rate_limit[{j}]");
            check_reference(p, l, &path, "rate limit", "rate_limits", &known);
            if r.rate_limit[..j].iter().any(|earlier| earlier.value == l.value) {
                p.add(l.pos, &path, format!("rate limit `{}` is listed twice", l.value));
            }
        }
        if let Some(extra) = r.rate_limit.get(MAX_ROUTE_POLICIES) {
            p.add(
                extra.pos,
                &format!("routes[{i}].rate_limit"),
                format!("at most {MAX_ROUTE_POLICIES} rate limits per route"),
            );
        }
    }
}

/// The names defined in one section: looked up in constant time (a file may define tens of
/// thousands), listed in file order for hints.
struct Known<'a> {
    set: HashSet<&'a str>,
    list: Vec<&'a str>,
}

impl<'a> Known<'a> {
    fn new(names: &'a [String]) -> Known<'a> {
        let list: Vec<&str> = names.iter().map(String::as_str).collect();
        Known {
            set: list.iter().copied().collect(),
            list,
        }
    }
}

/// Names listed in a hint at most; longer lists are cut.
const MAX_LISTED: usize = 20;

/// Report `name` at `path` if it is not among `known` (the names defined under `section`),
/// with a "did you mean" hint or the list of what is defined.
fn check_reference(
    p: &mut Problems,
    name: &Spanned<String>,
    path: &str,
    what: &str,
    section: &str,
    known: &Known<'_>,
) {
    if known.set.contains(name.value.as_str()) {
        return;
    }
    let hint = match did_you_mean(&name.value, &known.list) {
        Some(s) => format!("; did you mean `{s}`?"),
        None if known.list.is_empty() => format!("; none are defined under `{section}:`"),
        None if known.list.len() > MAX_LISTED => format!(
            "; defined: {}, … ({} in all)",
            known.list[..MAX_LISTED].join(", "),
            known.list.len()
        ),
        None => format!("; defined: {}", known.list.join(", ")),
    };
    p.add(
        name.pos,
        path,
        format!("route names undefined {what} `{}`{hint}", name.value),
    );
}

/// Number of conditions besides host and path; more conditions win a tie (see routing docs).
pub fn condition_count(m: &MatchConfig) -> usize {
    usize::from(!m.methods.is_empty()) + m.headers.len()
}

/// Whether an earlier route `a` wins every request that the later route `b` matches.
///
/// Precedence is host specificity, then exact path over prefix and longer prefixes first, then
/// the number of conditions, then file order. So `a` shadows `b` exactly when both sit in the
/// same host and path slot, `a` accepts everything `b` accepts, and `a` has at least as many
/// conditions (otherwise `b`, being more specific, is tried first).
fn shadows(a: &MatchConfig, b: &MatchConfig) -> bool {
    // Templates are equal by shape: `/users/{id}` and `/users/{uid}` are one path.
    let same_path = a.path == b.path;
    let hosts_cover = if a.hosts.is_empty() || b.hosts.is_empty() {
        a.hosts.is_empty() && b.hosts.is_empty()
    } else {
        b.hosts.iter().all(|h| a.hosts.contains(h))
    };
    let methods_cover =
        a.methods.is_empty() || (!b.methods.is_empty() && b.methods.iter().all(|m| a.methods.contains(m)));
    let headers_subset = a.headers.iter().all(|h| b.headers.contains(h));
    same_path && hosts_cover && methods_cover && headers_subset && condition_count(a) >= condition_count(b)
}
