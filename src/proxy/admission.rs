//! The steps of admitting a request after the framing checks, each delegating to the module
//! that owns the concern: routing, authentication, API versions, and the upstream target.

use pingora::http::RequestHeader;

use super::ctx::RequestCtx;
use super::problem::Problem;
use crate::auth::{self, credentials, Denied};
use crate::route::{Route, Target};
use crate::routing::normalize::strip_segment_prefix;
use crate::routing::normalize::NormalizedTarget;
use crate::routing::RouteMatch;
use crate::runtime::Snapshot;
use crate::versions::{sources, Refused, Resolved};

/// The route for this request, or 404/405.
///
/// A first segment `v<version>` is first read as an API version: if the rest of the path
/// routes to a route versioned by path, that route takes the request (an unknown version then
/// gets its 404 with the supported list). Otherwise the full path is routed, and a route
/// versioned by path may not take it: the rest belongs to another route (or none), so reading
/// the segment as a version would send that route's path past its own rules.
/// `method`: the request's, or for a CORS preflight the one it asks about.
pub fn find_route(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    method: &http::Method,
    req: &RequestHeader,
) -> Result<usize, Problem> {
    let by_path = |id: usize| {
        snapshot
            .routes
            .routes
            .get(id)
            .and_then(|r| r.target.versions())
            .is_some_and(|v| v.by_path())
    };
    let routes = &snapshot.routes;
    if let Some((_, rest)) = sources::path_version(path) {
        if routes
            .find_any_method(host, rest, &req.headers)
            .is_some_and(by_path)
        {
            return match routes.find(host, rest, method, &req.headers) {
                RouteMatch::Found(id) if !by_path(id) => Err(Problem::no_route()),
                other => found(other),
            };
        }
        if routes
            .find_any_method(host, path, &req.headers)
            .is_some_and(by_path)
        {
            return Err(Problem::no_route());
        }
    }
    found(routes.find(host, path, method, &req.headers))
}

/// `https_redirect`: a plain-HTTP request is sent to the same host and path over https (308
/// keeps the method and body). A request a trusted proxy received over TLS
/// (`X-Forwarded-Proto: https`) is not redirected.
pub fn check_https(route: &Route, req: &RequestHeader, ctx: &RequestCtx) -> Result<(), Problem> {
    if !route.https_redirect || ctx.client.tls {
        return Ok(());
    }
    let settings = &ctx.snapshot.settings;
    let proxied_tls = super::forwarding::is_trusted(ctx.client.ip, &settings.trusted_proxies)
        && req
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    if proxied_tls {
        return Ok(());
    }
    // Canonical: lower case, IPv6 addresses already in brackets.
    let host = &ctx.client.host;
    let port = match settings.https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let query = req.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("https://{host}{port}{}{query}", ctx.admission.path);
    Err(Problem::answer(308, "use https").with_header(http::header::LOCATION, location))
}

/// For a CORS preflight, the route whose policy answers it: the route the actual request
/// (the method it asks about) would reach — only if it has a policy, and every route that
/// request could reach with other headers has the same one (a preflight carries none of the
/// actual request's headers, so it cannot tell those routes apart). `Ok(None)`: not a
/// preflight, or one for a route without a policy, which is then an ordinary OPTIONS request.
pub fn preflight_route(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    req: &RequestHeader,
) -> Result<Option<usize>, Problem> {
    let Some(asked) = crate::cors::requested_method(req).filter(|_| crate::cors::is_preflight(req)) else {
        return Ok(None);
    };
    let Ok(id) = find_route(snapshot, host, path, &asked, req) else {
        return Ok(None);
    };
    let routes = &snapshot.routes.routes;
    let Some(policy) = routes.get(id).and_then(|r| r.cors.as_ref()) else {
        return Ok(None);
    };
    let same = snapshot
        .routes
        .candidates(host, path, &asked)
        .iter()
        .all(|&other| routes.get(other).is_some_and(|r| r.cors.as_ref() == Some(policy)));
    if !same {
        return Err(Problem::new(
            403,
            "CORS preflight: the routes this request could reach have different CORS policies",
        ));
    }
    Ok(Some(id))
}

/// A CORS preflight routed by [`preflight_route`] is answered here (before authentication;
/// it never reaches the upstream). Other requests on a route with a policy get its response
/// headers in `ctx`.
pub fn check_cors(route: &Route, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), Problem> {
    let Some(policy) = &route.cors else {
        return Ok(());
    };
    if ctx.admission.preflight {
        return match policy.preflight(req) {
            Ok(headers) => Err(Problem::answer(204, "CORS preflight").with_headers(headers)),
            Err(why) => Err(Problem::new(403, why)),
        };
    }
    ctx.reply.cors = Some(policy.actual(req));
    Ok(())
}

fn found(m: RouteMatch) -> Result<usize, Problem> {
    match m {
        RouteMatch::Found(id) => Ok(id),
        RouteMatch::MethodNotAllowed(allowed) => {
            Err(Problem::new(405, "the route does not accept this method")
                .with_header(http::header::ALLOW, allowed.allow_header()))
        }
        RouteMatch::NotFound => Err(Problem::no_route()),
    }
}

fn unknown_version(supported: String) -> Problem {
    Problem::new(404, "the route has no such API version").with_extension(supported)
}

/// Authenticate and authorize for the route; the identity and its headers go into `ctx`.
/// `ip` rules (the server's, then the route's), on the client address `trusted_proxies`
/// determine; before authentication, so a refused address learns nothing about credentials.
pub fn check_ip(
    rules: &crate::config::IpRules,
    req: &RequestHeader,
    ctx: &RequestCtx,
) -> Result<(), Problem> {
    if rules.is_empty() {
        return Ok(());
    }
    let client =
        super::forwarding::client_address(req, ctx.client.ip, &ctx.snapshot.settings.trusted_proxies);
    if rules.admits(client) {
        Ok(())
    } else {
        Err(Problem::new(
            403,
            "requests from this address are not accepted here",
        ))
    }
}

pub fn authenticate(
    snapshot: &Snapshot,
    route: &Route,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> Result<(), Problem> {
    match auth::authenticate(
        &route.auth,
        &snapshot.authenticators,
        req,
        ctx.client.certificate.as_ref(),
    ) {
        Ok(None) => Ok(()),
        Ok(Some((identity, authenticator))) => {
            ctx.admission.authenticator = Some(authenticator);
            let authenticator = snapshot
                .authenticators
                .get(authenticator)
                .ok_or_else(|| Problem::unauthenticated("unknown authenticator"))?;
            ctx.admission.identity_headers = authenticator
                .forward_headers(&identity)
                .map_err(Problem::unauthenticated)?;
            ctx.admission.identity = Some(identity);
            Ok(())
        }
        Err(Denied::Unauthenticated(why)) => Err(Problem::unauthenticated(why)),
        Err(Denied::Forbidden { scopes, consumer }) => {
            ctx.admission.refused_consumer = Some(consumer);
            Err(Problem::forbidden(&scopes))
        }
    }
}

/// The pool (and, on versioned routes, the version) this request goes to.
pub fn resolve_version(
    route: &Route,
    req: &RequestHeader,
    target: &NormalizedTarget,
    ctx: &mut RequestCtx,
) -> Result<Option<Resolved>, Problem> {
    let versions = match &route.target {
        Target::Upstream(pool) => {
            ctx.admission.pool = Some(*pool);
            return Ok(None);
        }
        Target::Grpc(t) => {
            ctx.admission.pool = Some(t.pool);
            return Ok(None);
        }
        // Each part has its own pool.
        Target::Aggregate(_) => return Ok(None),
        Target::Versions(versions) => versions,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let resolved = versions
        .resolve(
            &req.headers,
            &ctx.admission.path,
            target.query.as_deref(),
            ctx.admission.identity.as_deref(),
            ctx.client.ip,
            now,
        )
        .map_err(|refused| match refused {
            Refused::Unknown(supported) => unknown_version(supported),
            Refused::Missing(supported) => {
                Problem::new(400, "the request does not say which API version it wants")
                    .with_extension(supported)
            }
            Refused::Conflict => Problem::new(400, "the request names conflicting API versions"),
            Refused::Gone(version, headers) => {
                ctx.admission.version = Some(version);
                Problem::new(410, "this API version has been retired").with_headers(headers)
            }
        })?;
    ctx.admission.pool = Some(resolved.pool);
    ctx.admission.version = Some(resolved.version);
    ctx.reply.version_headers = resolved.response_headers.clone();
    Ok(Some(resolved))
}

/// The query parameter frameworks read as a method override.
const METHOD_OVERRIDE_PARAM: &str = "_method";

/// Whether a query could name `_method` in some spelling (the cheap test before the exact
/// one, which allocates): it holds `method` in any case, or an escape.
fn may_name_method_override(query: &str) -> bool {
    query.contains('%')
        || query
            .as_bytes()
            .windows(6)
            .any(|w| w.eq_ignore_ascii_case(b"method"))
}

/// The path and query sent upstream: the version segment and `strip_prefix` removed from the
/// canonical path, credential and version query parameters removed from the query.
pub fn upstream_uri(
    route: &Route,
    path: &str,
    target: &NormalizedTarget,
    version: Option<Resolved>,
) -> Result<http::Uri, Problem> {
    let (rest, segment) = match version {
        Some(v) => (v.rest, v.kept_segment),
        None => (None, None),
    };
    let strip_query = route.target.versions().map_or(&[][..], |v| &v.strip_query);
    let base = rest.unwrap_or_else(|| path.to_string());
    let stripped = match (&route.rewrite, &route.strip_prefix) {
        (Some(rewrite), _) => {
            let literal_prefix = match &route.path {
                crate::config::PathMatch::Prefix(p) => Some(p.as_str()),
                _ => None,
            };
            rewrite
                .apply(&base, route.path.template(), literal_prefix)
                .ok_or_else(|| Problem::new(500, "the route's rewrite does not fit the path it matched"))?
        }
        (None, Some(prefix)) => strip_segment_prefix(&base, prefix),
        (None, None) => base,
    };
    let upstream_path = match segment {
        Some(segment) if stripped == "/" => segment,
        Some(segment) => format!("{segment}{stripped}"),
        None => stripped,
    };
    let mut query = target.query.clone();
    if let Some(q) = &mut query {
        if !route.auth.strip.is_empty() {
            *q = credentials::strip_from_query(q, &route.auth.strip);
        }
        for param in strip_query {
            *q = sources::strip_query(q, param);
        }
        // `?_method=DELETE` is a method override to Rails, Laravel and Express: it goes with
        // the header overrides (stripped unless the route lets them through).
        if !route.pass_method_override && may_name_method_override(q) {
            *q = crate::percent::strip_params(q, &[METHOD_OVERRIDE_PARAM]);
        }
    }
    if let Some(rules) = route.transform.query_rules() {
        query = Some(crate::transform::query::apply(
            rules,
            query.as_deref().unwrap_or(""),
        ));
    }
    let path_and_query = match query.filter(|q| !q.is_empty() || target.query.as_deref() == Some("")) {
        Some(q) => format!("{upstream_path}?{q}"),
        None => upstream_path,
    };
    http::Uri::try_from(path_and_query).map_err(|_| Problem::new(400, "request target cannot be forwarded"))
}
