//! Aggregated routes (`aggregate:`). Admission (checks, auth, version, rate limits) ran once,
//! before this step. Here the gateway reads the request body (bounded; it goes to the one part
//! that takes it), fans the parts out (`aggregate::fanout`), composes the answer
//! (`aggregate::answer`), writes it, and records how each part went (metrics, the access
//! log's part summary, a warning per failed part).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use serde_json::Value;

use super::ctx::RequestCtx;
use super::edges::{self, PartTarget};
use super::exchange::{self, Served};
use super::peer;
use super::problem::Problem;
use crate::aggregate::answer::{self, Answer, X_AGGREGATE_COMPLETE};
use crate::aggregate::fanout::{self, Done};
use crate::aggregate::inputs::Inputs;
use crate::aggregate::part::{Failure, PartRequest};
use crate::aggregate::plan::{Aggregate, Part};
use crate::aggregate::template::{Unfilled, Var};
use crate::observe::metrics;
use crate::route::Route;
use crate::upstream::client::UpstreamClient;

const COMPLETE: HeaderName = HeaderName::from_static(X_AGGREGATE_COMPLETE);

/// Serve an admitted request on an aggregated route.
pub async fn serve(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Served> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let route = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id));
    let Some((route, plan)) = route.and_then(|r| Some((r, r.target.aggregate()?))) else {
        return Ok(Served::no_route());
    };
    let method = session.req_header().method.clone();
    if !plan.serves(&method) {
        return Ok(Served::Refused(
            Problem::new(405, "the route does not accept this method")
                .with_header(ALLOW, plan.allow_header())
                .with_header(COMPLETE, "false".into()),
        ));
    }
    // Read even when no part takes it (GET with a body), so the connection stays usable.
    let body = match exchange::read_request_body(session, ctx, plan.max_request_body).await {
        Ok(body) => body,
        Err(problem) => return Ok(Served::Refused(problem.with_header(COMPLETE, "false".into()))),
    };
    // A timeout too large to add is no deadline at all (the part timeouts still apply).
    let overall = ctx.start.checked_add(plan.timeout).unwrap_or_else(far_future);
    ctx.admission.deadline = Some(overall);
    let done = {
        let ctx = &*ctx;
        // What parts may see of the client's head (hop-by-hop, override and identity headers
        // gone): templates read it, `forward_headers` copy from it.
        let client_head = &edges::part_source(ctx, route, session.req_header());

        let inputs = Inputs {
            identity: ctx.admission.identity.as_deref(),
            path: &ctx.admission.path,
            template: route.path.template(),
            query: ctx.admission.upstream_uri.as_ref().and_then(|u| u.query()),
            headers: &client_head.headers,
            refused_headers: &ctx.snapshot.template_refused_headers,
        };
        let request = Request {
            ctx,
            route,
            plan,
            client_head,
            inputs: &inputs,
            body: &body,
            overall,
        };
        fanout::run(client, plan, |part, done| request.prepare(part, done)).await
    };
    ctx.reply.parts_summary = Some(report(ctx, route, plan, &done));
    let rules = route.transform.response.as_ref().map(|r| &r.rules);
    let authenticated = !route.auth.authenticators.is_empty();
    match answer::compose(plan, done, rules, authenticated) {
        Answer::Merged {
            body,
            complete,
            headers,
        } => {
            write_merged(session, ctx, body, complete, headers).await?;
            Ok(Served::Answered)
        }
        Answer::Failed {
            status,
            detail,
            errors,
            why,
        } => {
            log::warn!(
                "route `{}`: aggregated answer failed ({why}); answering {status}, request id {}",
                route.name,
                ctx.request_id
            );
            let mut problem = Problem::new(status, detail).with_header(COMPLETE, "false".into());
            if let Some(errors) = errors {
                problem = problem.with_extension(format!("\"errors\":{errors}"));
            }
            Ok(Served::Refused(problem))
        }
    }
}

/// What every part's request is built from.
struct Request<'a> {
    ctx: &'a RequestCtx,
    route: &'a Route,
    plan: &'a Aggregate,
    client_head: &'a RequestHeader,
    inputs: &'a Inputs<'a>,
    body: &'a Bytes,
    overall: Instant,
}

impl Request<'_> {
    /// A part's request, its templates filled from the request and the parts already done.
    fn prepare(&self, part: &Part, done: &[Option<Done>]) -> Result<PartRequest, Failure> {
        let doc = |name: &str| -> Option<&Value> {
            let i = self.plan.parts.iter().position(|p| p.name() == name)?;
            done.get(i)?.as_ref()?.result.as_ref().ok().map(|a| &a.doc)
        };
        let lookup = |var: &Var| self.inputs.lookup(var, doc);
        let mut target = part.cfg.path.render(lookup).map_err(unfilled)?;
        if part.cfg.forward_query {
            forward_query(&mut target, self.inputs.query, &part.query_names);
        }
        let uri = http::Uri::try_from(target).map_err(|_| Failure::Error)?;
        let mut headers = Vec::with_capacity(part.cfg.set_headers.len());
        for (name, template) in &part.cfg.set_headers {
            let value = template.render(lookup).map_err(unfilled)?;
            let value = HeaderValue::try_from(value).map_err(|_| Failure::Missing(name.to_string()))?;
            headers.push((name.clone(), value));
        }
        // The body part gets the client's method and body only for a method the route allows
        // beyond GET and HEAD; on those, it is a plain GET like every part.
        let takes_body = part.cfg.body && self.plan.allow_methods.contains(&self.client_head.method);
        let (method, body) = match takes_body {
            true => (self.client_head.method.clone(), self.body.clone()),
            false => (Method::GET, Bytes::new()),
        };
        let target = PartTarget {
            method,
            uri,
            headers,
            body: takes_body.then_some(body.len()),
        };
        let head = edges::part_head(self.ctx, self.route, self.client_head, &part.cfg, target)
            .map_err(|_| Failure::Error)?;
        let pool = self
            .ctx
            .snapshot
            .pools
            .get(part.pool)
            .cloned()
            .ok_or(Failure::NoTarget)?;
        let key = peer::hash_key(&pool, self.client_head, self.ctx.client.ip);
        let deadline = part.cfg.timeout.map_or(self.overall, |t| {
            Instant::now()
                .checked_add(t)
                .map_or(self.overall, |d| d.min(self.overall))
        });
        Ok(PartRequest {
            pool,
            key,
            head,
            body,
            deadline,
            trace: self.ctx.trace.clone(),
        })
    }
}

/// A deadline that never comes (about thirty years away).
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}

fn unfilled(e: Unfilled) -> Failure {
    match e {
        Unfilled::Missing(var) | Unfilled::Unsafe(var) => Failure::Missing(var),
    }
}

/// Add the client's query (credentials already removed) to the part's, without the names the
/// part's path sets: a client cannot repeat `customer=` to reach another customer's data.
fn forward_query(target: &mut String, query: Option<&str>, set_by_part: &[String]) {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return;
    };
    let kept = crate::transform::query::without_params(query, set_by_part);
    if kept.is_empty() {
        return;
    }
    target.push(if target.contains('?') { '&' } else { '?' });
    target.push_str(&kept);
}

/// Metrics, a warning per failed part, and the access log's `part:status:ms` summary.
fn report(ctx: &RequestCtx, route: &Route, plan: &Aggregate, done: &[Done]) -> String {
    let m = metrics::get();
    let mut summary = String::new();
    for (part, d) in plan.parts.iter().zip(done) {
        let outcome = match &d.result {
            Ok(_) => "ok",
            Err(failure) => failure.label(),
        };
        m.aggregate_parts
            .with_label_values(&[&route.name, part.name(), outcome])
            .inc();
        part.duration.observe(d.elapsed.as_secs_f64());
        if !summary.is_empty() {
            summary.push(',');
        }
        let ms = d.elapsed.as_millis();
        let _ = match &d.result {
            Ok(answer) => write!(summary, "{}:{}:{ms}", part.name(), answer.status),
            Err(Failure::Status(status)) => write!(summary, "{}:{status}:{ms}", part.name()),
            Err(failure) => write!(summary, "{}:{}:{ms}", part.name(), failure.label()),
        };
        if let Err(failure) = &d.result {
            log::warn!(
                "route `{}`: part `{}` failed ({}{}), request id {}",
                route.name,
                part.name(),
                failure.label(),
                match failure {
                    Failure::Status(s) => format!(" {s}"),
                    Failure::Missing(var) => format!(" {var}"),
                    Failure::Dependency(p) => format!(" after `{p}`"),
                    _ => String::new(),
                },
                ctx.request_id
            );
        }
    }
    summary
}

/// Write the merged answer: the parts' exposed headers and `Cache-Control`, the gateway's
/// decoration (the route's response rules may still edit those), then the framing and
/// `X-Aggregate-Complete`, which no rule can change.
async fn write_merged(
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: Vec<u8>,
    complete: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> pingora::Result<()> {
    let mut head = ResponseHeader::build_no_case(200, Some(headers.len() + 8))?;
    for (name, value) in headers {
        if name == CACHE_CONTROL {
            head.insert_header(name, value)?;
        } else {
            head.append_header(name, value)?;
        }
    }
    edges::decorate(ctx, &mut head)?;
    if !complete {
        // After the route's rules: no rule may let a partial answer be stored as a whole one.
        head.insert_header(CACHE_CONTROL, "no-store")?;
    }
    head.insert_header(CONTENT_TYPE, "application/json")?;
    head.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    head.insert_header(COMPLETE, if complete { "true" } else { "false" })?;
    ctx.reply.gateway_status = Some(200);
    let head_only = session.req_header().method == Method::HEAD;
    session.write_response_header(Box::new(head), head_only).await?;
    if !head_only {
        session.write_response_body(Some(Bytes::from(body)), true).await?;
    }
    Ok(())
}
