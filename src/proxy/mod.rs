//! The `ProxyHttp` implementation: the request pipeline's table of contents. Each step
//! delegates to the module that owns the concern.
//!
//! request_filter: snapshot -> request id -> framing/Host/path checks -> route -> auth
//!                 -> API version (and canary) -> rate limits (local, then one round trip to
//!                 Redis when shared)
//! upstream_peer:  pool selection (skipping targets this request already tried)
//! upstream_request_filter: rewrite path, forwarding headers, header rules (Pingora has
//!                 already removed hop-by-hop headers)
//! response filters: hop-by-hop, header rules, request id, route deadline
//! logging: metrics and the access log

mod admission;
pub mod ctx;
mod errors;
mod forwarding;
mod peer;
pub mod problem;
mod request_checks;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};

use crate::auth::credentials;
use crate::limits::{self, headers as limit_headers, Missing, Outcome};
use crate::observe::access_log::{self, AccessEntry};
use crate::observe::metrics;
use crate::runtime::Runtime;
use ctx::RequestCtx;
use problem::Problem;

pub struct Gateway {
    runtime: Arc<Runtime>,
}

impl Gateway {
    pub fn new(runtime: Arc<Runtime>) -> Gateway {
        Gateway { runtime }
    }

    /// Answer with a gateway-generated problem; the request goes no further.
    async fn reject(&self, session: &mut Session, ctx: &mut RequestCtx, problem: Problem) -> Result<bool> {
        // Refused after its version was resolved (e.g. 429): the answer still names the version.
        let problem = problem.with_headers(ctx.version_headers.clone());
        ctx.gateway_status = Some(problem.status);
        problem.send(session, &ctx.request_id).await?;
        Ok(true)
    }

    /// Checks, routing, authentication and version; `Err(problem)` answers the client without
    /// contacting an upstream.
    fn admit(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> std::result::Result<(), Problem> {
        let snapshot = self.runtime.load();
        let limits = &snapshot.settings.limits;
        request_checks::check_framing(req, limits)?;
        request_checks::check_header_names(req, &snapshot.settings.client_headers)?;
        ctx.host = request_checks::check_host(req)?;
        let target = request_checks::check_path(req, limits)?;
        ctx.path = target.path.clone();
        let route_id = admission::find_route(&snapshot, &ctx.host, &ctx.path, req)?;
        // Known from here on, so refusals below are counted and logged under the route.
        ctx.route = Some(route_id);
        ctx.snapshot = Some(Arc::clone(&snapshot));
        let Some(route) = snapshot.routes.routes.get(route_id) else {
            return Err(Problem::new(404, "no route matches this request"));
        };
        admission::authenticate(&snapshot, route, req, ctx)?;
        let version = admission::resolve_version(route, req, &target, ctx)?;
        ctx.upstream_uri = Some(admission::upstream_uri(route, &ctx.path, &target, version)?);
        ctx.deadline = route.timeout.map(|t| ctx.start + t);
        Ok(())
    }

    /// The route's rate limits (after `admit`); `Err(problem)` refuses the request.
    async fn rate_limit(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Problem> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Ok(());
        };
        let Some(route) = ctx.route.and_then(|id| snapshot.routes.routes.get(id)) else {
            return Ok(());
        };
        if route.limits.is_empty() {
            return Ok(());
        }
        let outcome = limits::decide(
            &route.limits,
            &snapshot.policies,
            snapshot.redis.as_deref(),
            ctx.identity.as_deref(),
            ctx.client_ip,
            req,
        )
        .await;
        ctx.ratelimit_headers = limit_problem(outcome, &snapshot.policies)?;
        Ok(())
    }

    fn count_upstream(&self, ctx: &mut RequestCtx, status: &str) {
        if ctx.upstream_counted {
            return;
        }
        if let (Some(pool), Some(sel)) = (ctx.pool(), &ctx.selected) {
            metrics::get()
                .upstream_requests
                .with_label_values(&[&pool.name, &sel.stats.label, status])
                .inc();
            ctx.upstream_counted = true;
        }
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
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(&self, _session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        crate::front::header_deadline::mark_headers_read();
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.start = Instant::now();
        ctx.request_id = forwarding::request_id(session.req_header());
        // IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d`: one client, one
        // address, everywhere (forwarding headers, rate-limit keys, logs).
        ctx.client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        let has_te = session
            .req_header()
            .headers
            .contains_key(http::header::TRANSFER_ENCODING);
        let admitted = request_checks::check_raw_head(session.as_downstream(), has_te)
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
                if let Some(snapshot) = &ctx.snapshot {
                    let limits = &snapshot.settings.limits;
                    let downstream = session.as_downstream_mut();
                    downstream.set_read_timeout(Some(limits.body_idle_timeout));
                    downstream.set_write_timeout(Some(limits.send_timeout));
                }
                Ok(false)
            }
            Err(problem) => self.reject(session, ctx, problem).await,
        }
    }

    /// The whole body has a deadline too, extended by what arrives: one byte every few
    /// seconds keeps each read alive but not the request.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.body_received += body.as_ref().map_or(0, |b| b.len() as u64);
        let overdue = ctx.snapshot.as_ref().is_some_and(|s| {
            s.settings
                .limits
                .body_overdue(ctx.start.elapsed(), ctx.body_received)
        });
        if overdue {
            return Error::e_explain(errors::BODY_TIMEOUT, "request body too slow");
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let Some(pool) = ctx.pool().cloned() else {
            return Error::e_explain(errors::NO_HEALTHY_TARGET, "request was not routed");
        };
        if ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            return Error::e_explain(errors::ROUTE_TIMEOUT, "route deadline passed before connecting");
        }
        let key = peer::hash_key(&pool, session.req_header(), ctx);
        let Some(selected) = pool.select(&key, &ctx.tried) else {
            return Error::e_explain(errors::NO_HEALTHY_TARGET, format!("upstream {}", pool.name));
        };
        ctx.tried.push(selected.addr);
        ctx.inflight = Some(selected.stats.begin());
        ctx.upstream_counted = false;
        let peer = peer::build_peer(&pool, selected.addr, ctx.deadline);
        ctx.selected = Some(selected);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.count_upstream(ctx, "error");
        ctx.inflight = None;
        if let Some(sel) = &ctx.selected {
            // A refused or timed-out connect is the slowest possible answer for least_time.
            sel.stats
                .observe_latency(ctx.start.elapsed().max(std::time::Duration::from_secs(1)));
        }
        // Retry only while the budget lasts and an untried healthy target exists; otherwise
        // the client gets this connect error (502/504) rather than "no healthy target".
        // `tried` holds every attempt so far, the first included.
        if let Some(pool) = ctx.pool() {
            if ctx.tried.len() <= pool.retries && pool.select(b"", &ctx.tried).is_some() {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(snapshot), Some(route)) = (&ctx.snapshot, ctx.route()) else {
            return Ok(());
        };
        if let Some(uri) = &ctx.upstream_uri {
            req.set_uri(uri.clone());
        }
        let trusted = forwarding::is_trusted(ctx.client_ip, &snapshot.settings.trusted_proxies);
        snapshot
            .settings
            .client_headers
            .apply(req, &route.pass_headers, trusted);
        forwarding::set_forwarding(req, ctx.client_ip, &ctx.host, trusted)?;
        req.insert_header(forwarding::X_REQUEST_ID_WIRE, ctx.request_id.as_str())?;
        route.request_headers.apply(req);
        // Identity headers come only from authentication: client copies go on every route.
        for name in &snapshot.identity_headers {
            forwarding::remove(req, name);
        }
        for source in &route.auth.strip {
            credentials::strip_from_headers(source, req)?;
        }
        for (name, value) in &ctx.identity_headers {
            req.insert_header(name.clone(), value.clone())?;
        }
        // The resolved version replaces whatever the client sent under that name.
        if let Some(versions) = &route.versions {
            req.insert_header(versions.header.clone(), ctx.version_name())?;
            if let Some(name) = ctx.version.and_then(|v| versions.override_header(v)) {
                req.remove_header(name);
            }
        }
        // Last, so no header rule can turn a request into an upgrade it may not make.
        if !forwarding::websocket_upgrade_allowed(req, route.websocket) {
            forwarding::remove(req, &http::header::UPGRADE);
            forwarding::remove(req, &http::header::CONNECTION);
        }
        ctx.upgrade_requested = req.headers.contains_key(http::header::UPGRADE);
        let _ = session;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(sel), Some(sent)) = (&ctx.selected, ctx.upstream_sent) {
            sel.stats.observe_latency(sent.elapsed());
        }
        errors::check_upstream_status(resp.status.as_u16(), ctx.upgrade_requested)?;
        self.count_upstream(ctx, resp.status.as_str());
        forwarding::strip_hop_by_hop_response(resp);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(route) = ctx.route() {
            route.response_headers.apply(resp);
        }
        resp.insert_header(forwarding::X_REQUEST_ID_WIRE, ctx.request_id.as_str())?;
        for (name, value) in &ctx.ratelimit_headers {
            resp.insert_header(name.clone(), value.clone())?;
        }
        for (name, value) in &ctx.version_headers {
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

    fn response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if ctx.deadline.is_some_and(|d| Instant::now() > d) {
            return Error::e_explain(
                errors::ROUTE_TIMEOUT,
                "route deadline passed while streaming the response",
            );
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        self.count_upstream(ctx, "error");
        let problem = errors::problem_for(e).map(|p| p.with_headers(ctx.version_headers.clone()));
        let code = match problem {
            Some(p) if session.response_written().is_none() => {
                let status = p.status;
                ctx.gateway_status = Some(status);
                if let Err(write_err) = p.send(session, &ctx.request_id).await {
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
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        let path = if ctx.path.is_empty() {
            crate::redact::target(req.raw_path())
        } else {
            ctx.path.clone()
        };
        format!(
            "{} {path}, route {}, request id {}",
            metrics::method_label(&req.method),
            ctx.route_name(),
            ctx.request_id
        )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.inflight = None;
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.gateway_status)
            .unwrap_or(0);
        let ctx = &*ctx;
        let route = ctx.route_name();
        let method = metrics::method_label(&session.req_header().method);
        let elapsed = ctx.start.elapsed();
        let m = metrics::get();
        let status_code = http::StatusCode::from_u16(status).ok();
        let status_label = status_code.as_ref().map_or("0", |s| s.as_str());
        m.requests
            .with_label_values(&[route, ctx.version_name(), method, status_label])
            .inc();
        match ctx
            .route
            .and_then(|r| ctx.snapshot.as_ref()?.route_durations.get(r))
        {
            Some(histogram) => histogram.observe(elapsed.as_secs_f64()),
            None => m
                .request_duration
                .with_label_values(&["-"])
                .observe(elapsed.as_secs_f64()),
        }
        let log_enabled = ctx.snapshot.as_ref().is_none_or(|s| s.settings.access_log);
        if log_enabled {
            let client = ctx
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into());
            let target = ctx.selected.as_ref().map_or("-", |s| s.stats.label.as_str());
            // Refused before normalization: the raw path, never its query (keys travel there).
            let path = if ctx.path.is_empty() {
                crate::redact::target(session.req_header().raw_path())
            } else {
                ctx.path.clone()
            };
            access_log::write(&AccessEntry {
                request_id: &ctx.request_id,
                client: &client,
                method,
                path: &path,
                route,
                version: ctx.version_name(),
                consumer: ctx.identity.as_ref().map_or("-", |id| id.consumer.as_str()),
                target,
                status,
                bytes: session.body_bytes_sent(),
                duration: elapsed,
            });
        }
    }
}
