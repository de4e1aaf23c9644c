//! The `ProxyHttp` implementation: the request pipeline's table of contents. Each step
//! delegates to the module that owns the concern.
//!
//! new_ctx:        the snapshot this request keeps to the end
//! request_filter: request id -> framing/Host/path checks -> route -> auth -> API version
//!                 (and canary) -> rate limits (local, then one round trip to Redis when shared)
//!                 transform routes: `exchange` (read the body, one upstream exchange,
//!                 transform, answer) and stop here; aggregated routes: `aggregated` (fan
//!                 the parts out, merge, answer) and stop here
//! upstream_peer:  pool selection (skipping targets this request already tried); an attempt
//!                 begins (`upstream::attempt`, which records every attempt's outcome)
//! upstream_request_filter: `edges::upstream_head` (hop-by-hop headers too: Pingora's own
//!                 removal is off, see `forwarding`)
//! response filters: hop-by-hop, `edges::decorate`, route deadline
//! logging: metrics, the access log and the request's SERVER span (`spans`)

mod admission;
mod aggregated;
#[cfg(test)]
mod boxed_sizes;
mod cached;
pub mod ctx;
mod edges;
mod errors;
mod exchange;
pub mod explain;
mod forwarding;
mod grpc;
mod peer;
pub mod problem;
mod request_checks;
mod request_id;
mod retrying;
mod spans;
mod transcode;
mod websocket;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

use crate::limits::{self, headers as limit_headers, Missing, Outcome};
use crate::observe::access_log::{self, AccessEntry};
use crate::observe::metrics;
use crate::runtime::Runtime;
use crate::tls::identity::ClientIdentity;
use crate::upstream::attempt::{Attempt, Outcome as AttemptOutcome};
use crate::upstream::client::UpstreamClient;
use ctx::RequestCtx;
use problem::Problem;

pub struct Gateway {
    runtime: Arc<Runtime>,
    /// The gateway's own upstream exchanges (transform, aggregated, transcoded and caching
    /// routes), one per process, so part connections are reused.
    client: Arc<UpstreamClient>,
    /// The response store of caching routes (one per process, kept across reloads).
    cache: Arc<crate::cache::store::Store>,
}

impl Gateway {
    pub fn new(runtime: Arc<Runtime>, cache: Arc<crate::cache::store::Store>) -> Gateway {
        Gateway {
            runtime,
            client: Arc::new(UpstreamClient::new()),
            cache,
        }
    }

    /// Answer with a gateway-generated problem; the request goes no further.
    async fn reject(&self, session: &mut Session, ctx: &mut RequestCtx, problem: Problem) -> Result<bool> {
        ctx.reply.gateway_status = Some(problem.status);
        ctx.reply.gateway_reason = Some(problem.detail);
        problem.send(session, ctx).await?;
        Ok(true)
    }

    /// Checks, routing, authentication and version; `Err(problem)` answers the client without
    /// contacting an upstream.
    fn admit(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> std::result::Result<(), Problem> {
        let snapshot = Arc::clone(&ctx.snapshot);
        let limits = &snapshot.settings.limits;
        request_checks::check_framing(req, limits)?;
        request_checks::check_header_names(req, &snapshot.settings.client_headers)?;
        ctx.client.host = request_checks::check_host(req)?;
        let target = request_checks::check_path(req, limits)?;
        ctx.admission.path = target.path.clone();
        admission::check_ip(&snapshot.settings.ip, req, ctx)?;
        // A CORS preflight is answered for the routes that would serve the actual request
        // (see `admission::preflight_route`); otherwise it is an ordinary OPTIONS request.
        let found = match admission::preflight_route(&snapshot, &ctx.client.host, &ctx.admission.path, req)? {
            Some(id) => {
                ctx.admission.preflight = true;
                Ok(id)
            }
            None => admission::find_route(&snapshot, &ctx.client.host, &ctx.admission.path, &req.method, req),
        };
        let route_id = match found {
            Ok(id) => id,
            Err(problem) => {
                if problem.status == 405 {
                    // Counted and logged under the route of the path that refused the method.
                    let path_route =
                        snapshot
                            .routes
                            .find_any_method(&ctx.client.host, &ctx.admission.path, &req.headers);
                    ctx.admission.refused_by = path_route;
                    // A 405 (with `Allow`) tells that the path exists: a refused address gets
                    // the path's IP refusal instead.
                    if let Some(r) = path_route.and_then(|id| snapshot.routes.routes.get(id)) {
                        admission::check_ip(&r.ip, req, ctx)?;
                    }
                }
                return Err(problem);
            }
        };
        // Known from here on, so refusals below are counted and logged under the route.
        ctx.admission.route = Some(route_id);
        let Some(route) = snapshot.routes.routes.get(route_id) else {
            return Err(Problem::no_route());
        };
        admission::check_ip(&route.ip, req, ctx)?;
        admission::check_https(route, req, ctx)?;
        admission::check_cors(route, req, ctx)?;
        websocket::check_handshake(route, req)?;
        request_checks::check_declared_body(req, ctx.max_body())?;
        admission::authenticate(&snapshot, route, req, ctx)?;
        let version = admission::resolve_version(route, req, &target, ctx)?;
        ctx.admission.upstream_uri = Some(admission::upstream_uri(
            route,
            &ctx.admission.path,
            &target,
            version,
        )?);
        ctx.admission.deadline = route.timeout.and_then(|t| ctx.start.checked_add(t));
        Ok(())
    }

    /// The route's rate limits (after `admit`); `Err(problem)` refuses the request.
    async fn rate_limit(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Problem> {
        let snapshot = Arc::clone(&ctx.snapshot);
        let Some(route) = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id)) else {
            return Ok(());
        };
        if route.limits.is_empty() {
            return Ok(());
        }
        let outcome = limits::decide(
            &route.limits,
            &snapshot.policies,
            snapshot.redis.as_deref(),
            ctx.admission.identity.as_deref(),
            ctx.client.ip,
            req,
        )
        .await;
        ctx.reply.ratelimit_headers = limit_problem(outcome, &snapshot.policies)?;
        Ok(())
    }
}

/// 503 for an upstream at its concurrency limit: nothing was sent, so a retry soon is safe.
fn overloaded() -> Problem {
    Problem::new(503, "the upstream is at its concurrency limit; retry later")
        .with_header(http::header::RETRY_AFTER, "1".into())
}

/// The upstream's part of a proxied answer is over (its last body piece, its trailers, or a
/// head with no body): the concurrency slot is freed and the attempt's outcome counted before
/// the client sees the answer's end, so the client's next request (on any thread) finds them
/// so. Logging finishes the attempt again, harmlessly, for answers that end otherwise.
fn upstream_done(ctx: &mut RequestCtx) {
    ctx.upstream.slot = None;
    if let Some(attempt) = ctx.upstream.current.as_mut() {
        attempt.finish();
    }
}

/// Record how the current attempt ended (once; later calls for the same attempt are no-ops).
fn record_attempt(ctx: &mut RequestCtx, outcome: AttemptOutcome) {
    if let Some(attempt) = &mut ctx.upstream.current {
        attempt.record(outcome);
    }
}

/// The response headers for an admitted request, or the problem that refuses it.
fn limit_problem(
    outcome: Outcome,
    policies: &[limits::Policy],
) -> std::result::Result<Vec<(http::HeaderName, http::HeaderValue)>, Problem> {
    match outcome {
        Outcome::Allowed(items) => Ok(limit_headers::headers(&items, policies)),
        Outcome::Limited(items) => Err(Problem::quota_exceeded(
            limit_headers::retry_after(&items),
            limit_headers::violated(&items),
        )
        .with_headers(limit_headers::headers(&items, policies))),
        Outcome::NoKey {
            missing: Missing::Identity,
            ..
        } => Err(Problem::unauthenticated(
            "rate limit needs an authenticated consumer",
        )),
        Outcome::NoKey {
            missing: Missing::Header,
            ..
        } => Err(Problem::new(
            400,
            "the request lacks the header its rate limit is keyed on",
        )),
        Outcome::NoKey {
            missing: Missing::Repeated,
            ..
        } => Err(Problem::new(
            400,
            "the header the rate limit is keyed on is given more than once",
        )),
        Outcome::StoreUnavailable { retry_after } => Err(Problem::new(
            429,
            "the rate limit cannot be checked right now; retry later",
        )
        .with_header(http::header::RETRY_AFTER, retry_after.to_string())),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora keeps the context inside its per-request future, more than once (the
    /// value and the future it is moved into), and copies that future into its box on every
    /// request; a pointer there instead of the context's 1.2 KiB saves the copying.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(self.runtime.load()))
    }

    /// No downstream modules. Pingora's default adds its response compression module switched
    /// off (level 0), which still builds a context, looks at `Accept-Encoding` and every
    /// response head and body piece, and is dropped, on every request: about 0.45k
    /// instructions for nothing. The gateway compresses nothing on the client side; it
    /// decodes upstream bodies itself where a transform needs them (`transform::body`).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn early_request_filter(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<()> {
        crate::front::header_deadline::mark_headers_read();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.request_id = request_id::RequestId::of(session.req_header());
        if self.runtime.is_draining() {
            // Shutting down: this connection's client should open its next one elsewhere.
            session.set_keepalive(None);
        }
        // IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d`: one client, one
        // address, everywhere (forwarding headers, rate-limit keys, logs).
        ctx.client.ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        ctx.trace = Some(spans::begin(session.req_header(), ctx));
        if let Some(tls) = session.digest().and_then(|d| d.ssl_digest.as_ref()) {
            ctx.client.tls = true;
            ctx.client.certificate = tls.extension.get::<ClientIdentity>().cloned();
        }
        let has_te = session
            .req_header()
            .headers
            .contains_key(http::header::TRANSFER_ENCODING);
        let admitted = request_checks::refuse_connect(session.req_header())
            .and_then(|()| request_checks::check_raw_head(session.as_downstream(), has_te))
            .and_then(|()| request_checks::adopt_h2_authority(session.req_header_mut()))
            .and_then(|()| self.admit(session.req_header(), ctx));
        let admitted = match admitted {
            Ok(()) => self.rate_limit(session.req_header(), ctx).await,
            refused => refused,
        };
        match admitted {
            Ok(()) => {
                // A client may pause this long between two pieces of its body (Pingora's own
                // default is a minute per read, which a trickling client never reaches).
                // And a client that stops reading the response is let go: Pingora sets no write
                // timeout, so it would hold this connection and the upstream's forever.
                let limits = &ctx.snapshot.settings.limits;
                // A WebSocket may be quiet for its route's idle timeout once upgraded.
                let idle = match ctx.route() {
                    Some(r) if forwarding::websocket_upgrade_allowed(session.req_header(), r.websocket) => {
                        r.websocket_idle_timeout
                    }
                    _ => limits.body_idle_timeout,
                };
                let downstream = session.as_downstream_mut();
                downstream.set_read_timeout(Some(idle));
                downstream.set_write_timeout(Some(limits.send_timeout));
                // Routes that fan out, or hold whole bodies, are served by the gateway's own
                // exchanges. Boxed: their state is large and would otherwise be part of (and
                // copied with) every request's `request_filter` future.
                let served = match ctx.route() {
                    Some(r) if r.cache.is_some() => {
                        Box::pin(cached::serve(&self.client, &self.cache, session, ctx)).await?
                    }
                    Some(r) if r.target.aggregate().is_some() => {
                        Box::pin(aggregated::serve(&self.client, session, ctx)).await?
                    }
                    Some(r) if r.target.grpc().is_some() => {
                        Box::pin(transcode::serve(&self.client, session, ctx)).await?
                    }
                    Some(r) if r.transform.reads_bodies() => {
                        Box::pin(exchange::serve(&self.client, session, ctx)).await?
                    }
                    _ => {
                        // A proxied request holds one of its upstream's slots to the end.
                        let Some(pool) = ctx.pool().cloned() else {
                            return Ok(false);
                        };
                        match pool.concurrency.acquire().await {
                            Ok(slot) => ctx.upstream.slot = Some(slot),
                            Err(_) => return self.reject(session, ctx, overloaded()).await,
                        }
                        return Ok(false);
                    }
                };
                match served {
                    exchange::Served::Answered => Ok(true),
                    exchange::Served::Refused(problem) => self.reject(session, ctx, problem).await,
                }
            }
            Err(problem) => self.reject(session, ctx, problem).await,
        }
    }

    /// The whole body has a deadline too, extended by what arrives: one byte every few
    /// seconds keeps each read alive but not the request.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // After a WebSocket upgrade these are frames, not a request body.
        if session.was_upgraded() {
            return websocket_alive(ctx);
        }
        let piece = body.as_ref().map_or(0, |b| b.len());
        ctx.admission.body_received += piece as u64;
        if let Some(attempt) = &ctx.upstream.current {
            attempt.count_sent(piece);
        }
        // This piece is not forwarded: the upstream never sees more than `max_body`.
        if ctx.admission.body_received > ctx.max_body() {
            return Err(errors::body_too_large());
        }
        let limits = &ctx.snapshot.settings.limits;
        if limits.body_overdue(ctx.start.elapsed(), ctx.admission.body_received) {
            // The client's doing: `into_down` keeps passive health from blaming the target.
            return Err(Error::explain(errors::BODY_TIMEOUT, "request body too slow").into_down());
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool().cloned() else {
            return Error::e_explain(errors::NO_HEALTHY_TARGET, "request was not routed");
        };
        let retry = !ctx.upstream.tried.is_empty();
        if retry {
            retrying::prepare(ctx).await;
        } else {
            pool.retries.note_request();
        }
        let deadline = ctx.admission.deadline;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Error::e_explain(errors::ROUTE_TIMEOUT, "route deadline passed before connecting");
        }
        let key = peer::hash_key(&pool, session.req_header(), ctx.client.ip);
        let selected = match retry {
            true => pool.select_retry(&key, &ctx.upstream.tried),
            false => pool.select(&key, &[]),
        };
        let Some(selected) = selected else {
            return Error::e_explain(errors::NO_HEALTHY_TARGET, format!("upstream {}", pool.name));
        };
        ctx.upstream.tried.push(selected.addr);
        let attempt_deadline =
            crate::upstream::retry::attempt_deadline(deadline, pool.retries.config.per_try_timeout);
        ctx.upstream.attempt_deadline = attempt_deadline;
        let mut peer = pool.peer(selected.addr, attempt_deadline);
        // A WebSocket handshake (only one the route passes on) is HTTP/1.1 (Pingora has no
        // RFC 8441 over HTTP/2), and once upgraded it may be quiet for its idle timeout, not
        // the route's deadline. Any other `Upgrade` header is removed before the request goes.
        if let Some(route) = ctx
            .route()
            .filter(|r| forwarding::websocket_upgrade_allowed(session.req_header(), r.websocket))
        {
            peer.options.set_http_version(1, 1);
            peer.options.read_timeout = Some(route.websocket_idle_timeout);
        }
        ctx.upstream.current = Some(Attempt::begin(pool, selected, ctx.trace.as_ref()));
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        record_attempt(ctx, AttemptOutcome::ConnectFailed);
        // Nothing was sent: any request may be tried again, within `retry` (otherwise the
        // client gets this connect error, 502/504, rather than "no healthy target").
        let retry = retrying::grant(session, ctx, crate::upstream::retry::Failure::Connect);
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let e = e.more_context(format!("Peer: {peer}"));
        retrying::after_error(session, ctx, e, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let snapshot = Arc::clone(&ctx.snapshot);
        let Some(route) = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id)) else {
            // Not reached (`upstream_peer` needs a route), but nothing else removes them.
            forwarding::strip_hop_by_hop_request(req);
            return Ok(());
        };
        let mut attempt = ctx.upstream.current.take();
        let client = session.req_header();
        let hop_by_hop = edges::HopByHop::Strip {
            may_upgrade: client.version == http::Version::HTTP_11,
            // Pingora has removed an HTTP/1 client's `Connection` before an HTTP/2 upstream.
            named_by: (req.version == http::Version::HTTP_2 && client.version != http::Version::HTTP_2)
                .then_some(&client.headers),
        };
        let head = edges::upstream_head(ctx, route, req, hop_by_hop, attempt.as_mut());
        ctx.upstream.current = attempt;
        head?;
        let repeatable = crate::upstream::retry::repeatable(req, route.retry_idempotency_key);
        ctx.upstream.repeatable = repeatable;
        ctx.upstream.upgrade_requested = req.headers.contains_key(http::header::UPGRADE);
        if let Some(attempt) = &mut ctx.upstream.current {
            attempt.mark_sent();
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        errors::check_upstream_status(resp.status.as_u16(), ctx.upstream.upgrade_requested)?;
        // 100 Continue and 103 Early Hints precede the answer: not the attempt's outcome.
        if !resp.status.is_informational() || resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            record_attempt(ctx, AttemptOutcome::Responded(resp.status));
            if let Some(retry) = retrying::retry_answer(session, ctx, resp.status) {
                return Err(retry);
            }
            // Not retried from here on: `per_try_timeout` no longer cuts the body short.
            ctx.upstream.attempt_deadline = ctx.admission.deadline;
            // No body follows this head: the upstream's part is over now.
            let empty = resp
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
            let bodiless = session.req_header().method == http::Method::HEAD
                || matches!(resp.status.as_u16(), 204 | 304)
                || empty;
            if bodiless && resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
                upstream_done(ctx);
            }
        }
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // A WebSocket lives as long as its connection: it does not hold a request slot.
            ctx.upstream.slot = None;
            let lifetime = ctx.route().and_then(|r| r.websocket_max_lifetime);
            ctx.upstream.websocket = Some(websocket::Open::begin(lifetime));
        }
        edges::without_case_response(resp)?;
        forwarding::strip_hop_by_hop_response(resp);
        // A Trailers-Only answer (an error without a body) carries it in the head.
        ctx.reply.grpc_status = grpc::status_in(&resp.headers);
        Ok(())
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(status) = grpc::status_in(trailers) {
            ctx.reply.grpc_status = Some(status);
        }
        // An answer that ends with trailers (gRPC) ends here, not with a last body piece.
        upstream_done(ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        edges::decorate(ctx, resp)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(attempt) = &ctx.upstream.current {
            attempt.count_received(body.as_ref().map_or(0, |b| b.len()));
        }
        // Upgraded: frames, on the WebSocket's own clock.
        if ctx.upstream.websocket.is_some() {
            return websocket_alive(ctx).map(|()| None);
        }
        // The attempt's deadline: the route's, or sooner with `retry.per_try_timeout`.
        if ctx.upstream.attempt_deadline.is_some_and(|d| Instant::now() > d) {
            return Error::e_explain(
                errors::ROUTE_TIMEOUT,
                "route deadline passed while streaming the response",
            );
        }
        if end_of_stream {
            upstream_done(ctx);
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Self::CTX) -> FailToProxy {
        // A client that went away, or had not finished sending its body (an upstream that
        // timed out waiting for it), is never its target's fault: passive health ignores it.
        let client_side = retrying::client_side(e, session);
        let outcome = match client_side {
            true => AttemptOutcome::Aborted,
            false => AttemptOutcome::Failed,
        };
        record_attempt(ctx, outcome);
        let code = match errors::problem_for(e) {
            Some(p) if session.response_written().is_none() => {
                let status = p.status;
                ctx.reply.gateway_status = Some(status);
                ctx.reply.gateway_reason = Some(p.detail);
                if let Err(write_err) = p.send(session, ctx).await {
                    log::debug!("could not send error response: {write_err}");
                }
                status
            }
            _ => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// What Pingora prints about a request in its own error lines (every proxy failure):
    /// its default prints the whole URI, query and API keys included.
    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        let req = session.req_header();
        let path = logged_path(req, ctx);
        format!(
            "{} {path}, route {}, request id {}",
            metrics::method_label(&req.method),
            ctx.route_name(),
            ctx.request_id
        )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some(attempt) = &mut ctx.upstream.current {
            attempt.finish();
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.reply.gateway_status)
            .unwrap_or(0);
        // The last attempt ends here (its CLIENT span, before the request's own).
        let last_attempt = ctx.upstream.current.take();
        let ctx = &*ctx;
        let route = ctx.route_name();
        let method = metrics::method_label(&session.req_header().method);
        let elapsed = ctx.start.elapsed();
        let m = metrics::get();
        let status_code = http::StatusCode::from_u16(status).ok();
        let status_label = status_code.as_ref().map_or("0", |s| s.as_str());
        // A proxied gRPC call ends with the upstream's status or the gateway's refusal in gRPC
        // terms; a transcoded one has a status only once the call was made.
        let grpc = if grpc::is_grpc(session.req_header()) {
            ctx.reply
                .grpc_status
                .or_else(|| ctx.reply.gateway_status.map(grpc::status_for))
        } else {
            ctx.reply.grpc_status
        };
        m.requests
            .with_label_values(&[route, ctx.version_name(), method, status_label, grpc::label(grpc)])
            .inc();
        match ctx
            .admission
            .route
            .and_then(|r| ctx.snapshot.route_durations.get(r))
        {
            Some(histogram) => histogram.observe(elapsed.as_secs_f64()),
            None => m
                .request_duration
                .with_label_values(&["-"])
                .observe(elapsed.as_secs_f64()),
        }
        let log_config = &ctx.snapshot.settings.access_log;
        if log_config.enabled {
            let client = ctx
                .client
                .ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into());
            let path = logged_path(session.req_header(), ctx);
            let req = session.req_header();
            let trace_id = ctx.trace.as_ref().map_or("-", |t| t.trace_id_hex());
            // Only once normalized (a refused target's query is not logged at all), and only
            // when the line shows it (the classic line never does).
            let query = req
                .uri
                .query()
                .filter(|_| !ctx.admission.path.is_empty() && log_config.shows_query())
                .map(|q| crate::redact::query(q, &ctx.snapshot.credential_query_params));
            let attempt = last_attempt.as_ref();
            access_log::write(
                &AccessEntry {
                    request_id: ctx.request_id.as_str(),
                    client: &client,
                    method,
                    path: &path,
                    route,
                    version: ctx.version_name(),
                    consumer: ctx
                        .admission
                        .identity
                        .as_ref()
                        .map(|id| id.consumer.as_str())
                        .or(ctx.admission.refused_consumer.as_deref())
                        .unwrap_or("-"),
                    target: attempt.map_or("-", |a| a.target_label()),
                    status,
                    bytes: session.body_bytes_sent(),
                    duration: elapsed,
                    retries: ctx.upstream.retries,
                    parts: ctx.reply.parts_summary.as_deref(),
                    time: std::time::SystemTime::now(),
                    trace_id,
                    host: &ctx.client.host,
                    query: query.as_deref(),
                    upstream: attempt.map_or("-", |a| a.upstream()),
                    upstream_status: attempt.and_then(|a| a.status()),
                    upstream_latency: attempt.and_then(|a| a.latency()),
                    bytes_in: ctx.admission.body_received,
                    reason: ctx.reply.gateway_reason,
                    grpc_method: ctx.reply.grpc_method.as_deref(),
                    grpc_status: grpc,
                    cache: ctx.reply.cache_status.map(crate::cache::CacheStatus::as_str),
                },
                log_config,
            );
        }
        drop(last_attempt);
        spans::finish(session, ctx, status);
    }
}

/// The path as logs show it: canonical once normalized; refused before that, the raw path
/// without its query (keys travel there).
fn logged_path(req: &RequestHeader, ctx: &RequestCtx) -> String {
    if ctx.admission.path.is_empty() {
        crate::redact::target(req.raw_path())
    } else {
        ctx.admission.path.clone()
    }
}

/// An upgraded connection past its `max_lifetime` ends at its next frame.
fn websocket_alive(ctx: &RequestCtx) -> Result<()> {
    match &ctx.upstream.websocket {
        Some(open) if open.expired() => {
            Error::e_explain(errors::ROUTE_TIMEOUT, "the WebSocket reached its max_lifetime")
        }
        _ => Ok(()),
    }
}
