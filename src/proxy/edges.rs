//! The two edges every request crosses, built once: the head of a request sent upstream, and
//! the gateway's decoration of every response the client gets (proxied, gateway-generated
//! problem, or assembled by the gateway).

use http::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TE, UPGRADE};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use super::ctx::RequestCtx;
use super::forwarding;
use crate::auth::credentials;
use crate::route::Route;
use crate::transform::headers::HeaderEdit;
use crate::upstream::attempt::Attempt;

/// Turn the client's request head into the head sent upstream: target (path rewrite, query
/// rules), method rewrite, client header rules, forwarding headers, request id, the route's
/// header rules, identity headers, the version header. Hop-by-hop headers go first (see
/// [`HopByHop`]), so a client's `Connection` cannot remove anything the gateway adds.
///
/// Edited as plain `http` parts, without Pingora's case map (see [`edit_request_parts`]);
/// `attempt` (the proxied path's) adds the trace context in the same pass.
pub fn upstream_head(
    ctx: &RequestCtx,
    route: &Route,
    req: &mut RequestHeader,
    hop_by_hop: HopByHop<'_>,
    attempt: Option<&mut Attempt>,
) -> Result<()> {
    edit_request_parts(req, |parts| {
        upstream_parts(ctx, route, parts, hop_by_hop, attempt)
    })
}

/// [`upstream_head`] on a head already taken apart (the gateway's own exchanges edit it
/// further in the same pass).
pub fn upstream_parts(
    ctx: &RequestCtx,
    route: &Route,
    parts: &mut http::request::Parts,
    hop_by_hop: HopByHop<'_>,
    attempt: Option<&mut Attempt>,
) -> Result<()> {
    if let Some(method) = route.transform.request_method() {
        parts.method = method.clone();
    }
    let Some(uri) = &ctx.admission.upstream_uri else {
        // Admission always sets the target before a request goes upstream.
        return pingora::Error::e_explain(
            pingora::ErrorType::InternalError,
            "no upstream target was resolved",
        );
    };
    parts.uri = uri.clone();
    // Room for what the gateway adds, so the map grows at most once.
    parts.headers.reserve(ADDED_HEADERS);
    let upstream_h2 = parts.version == http::Version::HTTP_2;
    upstream_headers(
        ctx,
        route,
        &parts.method,
        upstream_h2,
        &mut parts.headers,
        hop_by_hop,
        attempt,
    )
}

/// Run `edit` on the request's `http` parts, moved out and back: the head goes on without
/// Pingora's case map. Pingora's own `insert_header` turns every name into bytes and parses
/// them back, case map or not (about 1k instructions per edit; an aggregation part's head
/// took 8k); on the parts an edit is one `HeaderMap` operation, and the move costs about
/// 350. Header names are case-insensitive (RFC 9110 §5.1): they go out in lower case, as
/// Envoy sends them. The head is whole again whatever `edit` returns.
pub fn edit_request_parts(
    req: &mut RequestHeader,
    edit: impl FnOnce(&mut http::request::Parts) -> Result<()>,
) -> Result<()> {
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    let edited = edit(&mut parts);
    *req = RequestHeader::from(parts);
    if end_stream == Some(false) {
        req.set_send_end_stream(false);
    }
    edited
}

/// A request head built from nothing: `method` to `uri`, no headers yet.
fn new_request_parts(method: http::Method, uri: http::Uri) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts
}

/// Who removes the client's hop-by-hop headers from a request going upstream. Pingora's own
/// removal is off on the gateway's peers (see `forwarding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopByHop<'a> {
    /// [`upstream_head`] does, first (the proxied path). `may_upgrade`: the client spoke
    /// HTTP/1.1, so a WebSocket handshake may go to an HTTP/1.1 upstream where the route
    /// enables one, as Pingora's policy had it. An HTTP/2 upstream keeps `te: trailers`.
    /// `named_by`: the client's own head, when Pingora has removed its `Connection` already
    /// (an HTTP/1 client's request to an HTTP/2 upstream).
    Strip {
        may_upgrade: bool,
        named_by: Option<&'a http::HeaderMap>,
    },
    /// The caller did, before its own edits (the gateway's own exchanges, which never
    /// upgrade).
    Removed,
}

/// The headers the gateway usually adds to an upstream request: four forwarding headers, the
/// request id, `traceparent`, `tracestate` and an identity or version header.
const ADDED_HEADERS: usize = 8;

/// The header edits of [`upstream_head`].
fn upstream_headers(
    ctx: &RequestCtx,
    route: &Route,
    method: &http::Method,
    upstream_h2: bool,
    headers: &mut impl HeaderEdit,
    hop_by_hop: HopByHop<'_>,
    attempt: Option<&mut Attempt>,
) -> Result<()> {
    // Decided before the gateway's own edits: only a WebSocket handshake, on a route that
    // enables it (an `h2c` upgrade would tunnel later requests past routing).
    let websocket = match hop_by_hop {
        HopByHop::Strip {
            may_upgrade,
            named_by,
        } => {
            // An HTTP/2 upstream takes no HTTP/1.1 upgrade.
            let websocket = may_upgrade
                && !upstream_h2
                && forwarding::websocket_upgrade(method, headers.map(), route.websocket);
            // HTTP/2 carries `te: trailers` end to end (RFC 9113 §8.2.2), and gRPC needs it.
            let trailers = upstream_h2 && forwarding::te_trailers(headers.map());
            match named_by {
                Some(client) => forwarding::strip_hop_by_hop_named_by(headers, client),
                None => forwarding::strip_hop_by_hop_request(headers),
            }
            if trailers {
                headers.put(TE, HeaderValue::from_static("trailers"));
            }
            websocket
        }
        HopByHop::Removed => false,
    };
    let snapshot = &ctx.snapshot;
    let trusted = forwarding::is_trusted(ctx.client.ip, &snapshot.settings.trusted_proxies);
    snapshot
        .settings
        .client_headers
        .apply(headers, &route.pass_headers, trusted);
    forwarding_and_id(ctx, headers, trusted)?;
    route.request_headers.apply(headers);
    identity(ctx, route, headers)?;
    // The resolved version replaces whatever the client sent under that name.
    if let Some(versions) = route.target.versions() {
        headers.put(
            versions.header.clone(),
            crate::transform::headers::value(ctx.version_name())?,
        );
        if let Some(name) = ctx.admission.version.and_then(|v| versions.override_header(v)) {
            headers.remove(name);
        }
    }
    // Last, so no header rule can turn a request into an upgrade it may not make, or spoil
    // the handshake: it goes as Pingora's policy wrote it.
    if websocket {
        headers.put(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.put(UPGRADE, HeaderValue::from_static("websocket"));
    } else {
        headers.remove(&UPGRADE);
        headers.remove(&CONNECTION);
    }
    if let Some(attempt) = attempt {
        attempt.propagate(method, headers);
    }
    Ok(())
}

/// Pingora keeps a second, case-preserving map beside a parsed head's `HeaderMap`, and every
/// edit then re-cases the name, parses it back and updates both maps: about 1.4k instructions
/// per insert, and the gateway edits several headers on every request. HTTP field names are
/// case-insensitive (RFC 9110 §5.1), so the head goes on without the case map and its names
/// are written in lower case, as Envoy sends them. Moves the parts; copies nothing. (An
/// upstream's own reason phrase is kept.) [`upstream_head`] does the same for requests.
pub fn without_case_response(resp: &mut ResponseHeader) -> Result<()> {
    match resp.has_case() {
        true => edit_response_parts(resp, |_| Ok(())),
        false => Ok(()),
    }
}

/// Run `edit` on the response's `http` parts (moved out and back, leaving no case map), and keep
/// an upstream's own reason phrase. The head is whole again whatever `edit` returns.
fn edit_response_parts(
    resp: &mut ResponseHeader,
    edit: impl FnOnce(&mut http::response::Parts) -> Result<()>,
) -> Result<()> {
    let canonical = resp.status.canonical_reason();
    let reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != canonical)
        .map(str::to_owned);
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, placeholder));
    let edited = edit(&mut parts);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        resp.set_reason_phrase(reason.as_deref())?;
    }
    edited
}

/// The head of an aggregation part's request, built from nothing rather than from the
/// client's: from `client` (the head [`part_source`] cleaned), its `Host`, the headers the part forwards (`forward_headers`), `Accept:
/// application/json` unless forwarded, then the same gateway headers as every upstream
/// request (forwarding, request id, the route's rules), the part's own rules (`set` values
/// already rendered), and last the identity headers, which nothing can forge.
pub fn part_head(
    ctx: &RequestCtx,
    route: &Route,
    client: &RequestHeader,
    part: &crate::config::PartConfig,
    target: PartTarget,
) -> Result<RequestHeader> {
    let snapshot = &ctx.snapshot;
    let trusted = forwarding::is_trusted(ctx.client.ip, &snapshot.settings.trusted_proxies);
    let mut parts = new_request_parts(target.method, target.uri);
    let head = &mut parts.headers;
    let mut copied: Vec<&HeaderName> = vec![&HOST];
    if trusted {
        // Extended by `set_forwarding`, as on the proxied path.
        copied.extend(forwarding::FORWARDING_HEADERS.iter());
    }
    if target.body.is_some() {
        copied.push(&CONTENT_TYPE);
    }
    copy_client_headers(head, client, copied.into_iter().chain(&part.forward_headers));
    if !head.contains_key(ACCEPT) {
        head.insert(ACCEPT, HeaderValue::from_static("application/json"));
    }
    forwarding_and_id(ctx, head, trusted)?;
    route.request_headers.apply(head);
    for name in &part.remove_headers {
        head.remove(name);
    }
    for (name, value) in target.headers {
        head.insert(name, value);
    }
    identity(ctx, route, head)?;
    if let Some(len) = target.body {
        head.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(RequestHeader::from(parts))
}

/// Every value of each of `names` the client sent, appended to `head`.
fn copy_client_headers<'n>(
    head: &mut http::HeaderMap,
    client: &RequestHeader,
    names: impl Iterator<Item = &'n HeaderName>,
) {
    for name in names {
        for value in client.headers.get_all(name) {
            head.append(name.clone(), value.clone());
        }
    }
}

/// The head of a transcoded gRPC call, built from nothing like a part's: `POST
/// /pkg.Service/Method` with gRPC's own headers (no compression asked for, `te: trailers`), the
/// route's deadline as `grpc-timeout`, the client headers `grpc.forward_headers` names as
/// metadata, then the gateway headers every upstream request gets (forwarding, request id,
/// the route's rules) and last the identity headers, which nothing can forge.
pub fn grpc_head(
    ctx: &RequestCtx,
    route: &Route,
    client: &RequestHeader,
    rpc_path: &str,
    forward: &[HeaderName],
    body_len: usize,
) -> Result<RequestHeader> {
    let snapshot = &ctx.snapshot;
    let trusted = forwarding::is_trusted(ctx.client.ip, &snapshot.settings.trusted_proxies);
    let uri = http::Uri::try_from(rpc_path).map_err(|e| {
        pingora::Error::because(
            pingora::ErrorType::InternalError,
            "gRPC method path is not a URI",
            e,
        )
    })?;
    let mut parts = new_request_parts(http::Method::POST, uri);
    let head = &mut parts.headers;
    let mut copied: Vec<&HeaderName> = vec![&HOST];
    if trusted {
        copied.extend(forwarding::FORWARDING_HEADERS.iter());
    }
    copy_client_headers(head, client, copied.into_iter().chain(forward));
    forwarding_and_id(ctx, head, trusted)?;
    route.request_headers.apply(head);
    identity(ctx, route, head)?;
    // gRPC's own headers last: no header rule can change the call's framing or deadline.
    head.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    head.insert(TE, HeaderValue::from_static("trailers"));
    head.insert(GRPC_ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    head.remove(GRPC_ENCODING);
    match ctx.admission.deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // At most 8 digits (gRPC over HTTP/2): milliseconds up to about 27 hours.
            let ms = left.as_millis().clamp(1, 99_999_999);
            let value = HeaderValue::try_from(format!("{ms}m"))
                .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "grpc-timeout", e))?;
            head.insert(GRPC_TIMEOUT, value);
        }
        None => {
            head.remove(GRPC_TIMEOUT);
        }
    }
    head.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
    Ok(RequestHeader::from(parts))
}

const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The client's request head as aggregation parts may see it: hop-by-hop headers removed,
/// the client header rules applied (variant spellings, overrides, client-address headers), and
/// identity headers removed (a client's copy is a forgery). Part templates read it and
/// [`part_head`] copies from it.
pub fn part_source(ctx: &RequestCtx, route: &Route, client: &RequestHeader) -> RequestHeader {
    let mut head = client.clone();
    let trusted = forwarding::is_trusted(ctx.client.ip, &ctx.snapshot.settings.trusted_proxies);
    // Infallible: the edit returns no error.
    let _ = edit_request_parts(&mut head, |parts| {
        let headers = &mut parts.headers;
        forwarding::strip_hop_by_hop_request(headers);
        ctx.snapshot
            .settings
            .client_headers
            .apply(headers, &route.pass_headers, trusted);
        for name in &ctx.snapshot.identity_headers {
            headers.remove(name);
        }
        Ok(())
    });
    head
}

/// What a part's request head is built around.
pub struct PartTarget {
    pub method: http::Method,
    pub uri: http::Uri,
    /// The part's `set` headers, rendered.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The length of the body sent, for the part that receives it.
    pub body: Option<usize>,
}

/// Forwarding headers and the request id.
fn forwarding_and_id(ctx: &RequestCtx, req: &mut impl HeaderEdit, trusted: bool) -> Result<()> {
    forwarding::set_forwarding(req, ctx.client.ip, &ctx.client.host, trusted, ctx.client.tls)?;
    req.put(forwarding::X_REQUEST_ID, ctx.request_id.value());
    Ok(())
}

/// Identity headers come only from authentication: client copies (and copies set by any
/// header rule) go on every route, credentials are stripped unless forwarded, then the
/// verified identity's headers are set.
fn identity(ctx: &RequestCtx, route: &Route, req: &mut impl HeaderEdit) -> Result<()> {
    for name in &ctx.snapshot.identity_headers {
        req.remove(name);
    }
    for source in &route.auth.strip {
        credentials::strip_from_headers(source, req)?;
    }
    for (name, value) in &ctx.admission.identity_headers {
        req.put(name.clone(), value.clone());
    }
    Ok(())
}

/// What the gateway adds to every response: the route's response header rules, then the
/// request id, rate-limit and version headers (which the rules cannot forge).
///
/// Edited as plain `http` parts, like the upstream request head (see [`without_case_response`]).
pub fn decorate(ctx: &RequestCtx, resp: &mut ResponseHeader) -> Result<()> {
    decorate_with(ctx, resp, None)
}

/// [`decorate`], with one more header of this answer's own (a stored answer's `Age`) set
/// first, in the same edit: the route's rules still apply after it.
pub fn decorate_with(
    ctx: &RequestCtx,
    resp: &mut ResponseHeader,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Result<()> {
    edit_response_parts(resp, |parts| {
        parts
            .headers
            .reserve(most_decorations(ctx) + usize::from(extra.is_some()));
        if let Some((name, value)) = extra {
            parts.headers.insert(name, value);
        }
        decorate_headers(ctx, &mut parts.headers)
    })
}

/// The most headers [`decorate_headers`] adds: room reserved once, and no more. An upstream's
/// head is parsed into a map with a little room to spare, and reserving more than is added
/// grew (reallocated and rehashed) it on every response: about 0.7k instructions in scenario A.
fn most_decorations(ctx: &RequestCtx) -> usize {
    let rules = ctx.route().map_or(0, |r| r.response_headers.most_added());
    let cors = ctx.reply.cors.as_ref().map_or(0, Vec::len);
    let hsts = usize::from(ctx.client.tls && ctx.snapshot.settings.hsts.is_some());
    let cache = usize::from(ctx.reply.cache_status.is_some());
    // The request id.
    1 + rules + cors + hsts + cache + ctx.reply.ratelimit_headers.len() + ctx.reply.version_headers.len()
}

const X_CACHE_STATUS: HeaderName = HeaderName::from_static("x-cache-status");

/// The header edits of [`decorate`].
fn decorate_headers(ctx: &RequestCtx, headers: &mut impl HeaderEdit) -> Result<()> {
    if let Some(route) = ctx.route() {
        route.response_headers.apply(headers);
    }
    if let Some(cors) = &ctx.reply.cors {
        crate::cors::apply(headers, cors);
    }
    if ctx.client.tls {
        if let Some(hsts) = &ctx.snapshot.settings.hsts {
            headers.put(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    headers.put(forwarding::X_REQUEST_ID, ctx.request_id.value());
    if let Some(status) = ctx.reply.cache_status {
        headers.put(X_CACHE_STATUS, HeaderValue::from_static(status.as_str()));
    }
    for (name, value) in &ctx.reply.ratelimit_headers {
        headers.put(name.clone(), value.clone());
    }
    for (name, value) in &ctx.reply.version_headers {
        // The upstream's own `Link`s (pagination…) and `Vary` stay; the rest is the
        // gateway's to say.
        if name == http::header::LINK || name == http::header::VARY {
            headers.add(name, value);
        } else {
            headers.put(name.clone(), value.clone());
        }
    }
    Ok(())
}
