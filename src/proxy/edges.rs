//! The two edges every request crosses, built once: the head of a request sent upstream, and
//! the gateway's decoration of every response the client gets (proxied, gateway-generated
//! problem, or assembled by the gateway).

use http::header::{CONNECTION, UPGRADE};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use super::ctx::RequestCtx;
use super::forwarding;
use crate::auth::credentials;
use crate::route::Route;

/// Turn the client's request head into the head sent upstream: target (path rewrite, query
/// rules), method rewrite, client header rules, forwarding headers, request id, the route's
/// header rules, identity headers, the version header. Hop-by-hop headers are already gone
/// (Pingora removes them on the proxied path; the gateway's own exchanges remove them first).
pub fn upstream_head(ctx: &RequestCtx, route: &Route, req: &mut RequestHeader) -> Result<()> {
    let snapshot = &ctx.snapshot;
    if let Some(uri) = &ctx.admission.upstream_uri {
        req.set_uri(uri.clone());
    }
    if let Some(method) = route.transform.request_method() {
        req.set_method(method.clone());
    }
    let trusted = forwarding::is_trusted(ctx.client.ip, &snapshot.settings.trusted_proxies);
    snapshot
        .settings
        .client_headers
        .apply(req, &route.pass_headers, trusted);
    forwarding::set_forwarding(req, ctx.client.ip, &ctx.client.host, trusted)?;
    req.insert_header(forwarding::X_REQUEST_ID_WIRE, ctx.request_id.as_str())?;
    route.request_headers.apply(req);
    // Identity headers come only from authentication: client copies go on every route.
    for name in &snapshot.identity_headers {
        forwarding::remove(req, name);
    }
    for source in &route.auth.strip {
        credentials::strip_from_headers(source, req)?;
    }
    for (name, value) in &ctx.admission.identity_headers {
        req.insert_header(name.clone(), value.clone())?;
    }
    // The resolved version replaces whatever the client sent under that name.
    if let Some(versions) = route.target.versions() {
        req.insert_header(versions.header.clone(), ctx.version_name())?;
        if let Some(name) = ctx.admission.version.and_then(|v| versions.override_header(v)) {
            req.remove_header(name);
        }
    }
    // Last, so no header rule can turn a request into an upgrade it may not make.
    if !forwarding::websocket_upgrade_allowed(req, route.websocket) {
        forwarding::remove(req, &UPGRADE);
        forwarding::remove(req, &CONNECTION);
    }
    Ok(())
}

/// What the gateway adds to every response: the route's response header rules, then the
/// request id, rate-limit and version headers (which the rules cannot forge).
pub fn decorate(ctx: &RequestCtx, resp: &mut ResponseHeader) -> Result<()> {
    if let Some(route) = ctx.route() {
        route.response_headers.apply(resp);
    }
    resp.insert_header(forwarding::X_REQUEST_ID_WIRE, ctx.request_id.as_str())?;
    for (name, value) in &ctx.reply.ratelimit_headers {
        resp.insert_header(name.clone(), value.clone())?;
    }
    for (name, value) in &ctx.reply.version_headers {
        // The upstream's own `Link`s (pagination…) and `Vary` stay; the rest is the
        // gateway's to say.
        if name == http::header::LINK || name == http::header::VARY {
            resp.append_header(name.clone(), value.clone())?;
        } else {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(())
}
