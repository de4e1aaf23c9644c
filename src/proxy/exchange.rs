//! Routes whose bodies the gateway must hold whole (`transform`): the gateway reads the
//! request body, makes the upstream exchange itself (`upstream::client`) and writes the
//! answer, instead of Pingora's streaming proxy loop.
//!
//! Why not body filters: Pingora writes the response head before a body filter sees the end
//! of the body, so a transform that fails there could only cut a 200 short. Here nothing
//! reaches the client until the transformed body is complete, and a failure is a whole 502.
//! A response the rules do not apply to (status, media type, HEAD, 204/206/304) is streamed
//! through untouched, so a download on a transform route is not held in memory.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, TRANSFER_ENCODING,
};
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use super::problem::Problem;
use super::{edges, forwarding, peer};
use crate::config::{OnError, RequestTransformConfig, ResponseTransformConfig, DEFAULT_MAX_BODY};
use crate::observe::metrics;
use crate::route::Route;
use crate::transform::body::{self, BodyError, Coding};
use crate::upstream::client::{Call, CallError, Reply, UpstreamClient};

/// How the exchange ended, for the caller.
pub enum Served {
    /// The response was written.
    Answered,
    /// Nothing was written: answer with this problem.
    Refused(Problem),
}

/// Serve an admitted request on a transform route.
pub async fn serve(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Served> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let Some(route) = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id)) else {
        return Ok(Served::Refused(Problem::new(
            404,
            "no route matches this request",
        )));
    };
    let Some(pool) = ctx.pool().cloned() else {
        return Ok(Served::Refused(Problem::new(
            503,
            "no healthy upstream target is available",
        )));
    };
    let request_rules = route.transform.request.as_ref();
    let body = match read_request_body(session, ctx, request_rules).await {
        Ok(body) => body,
        Err(problem) => return Ok(Served::Refused(problem)),
    };
    let body = match request_rules {
        Some(rules) => match transform_request_body(rules, session.req_header(), body) {
            Ok(body) => body,
            Err(problem) => return Ok(Served::Refused(problem)),
        },
        None => body,
    };
    let head = upstream_head(session.req_header(), ctx, route, &body)?;
    let key = peer::hash_key(&pool, session.req_header(), ctx.client.ip);
    let call = Call {
        pool: &pool,
        key: &key,
        head,
        body,
        deadline: ctx.admission.deadline,
    };
    let reply = match client
        .exchange(call, &mut ctx.upstream.tried, &mut ctx.upstream.current)
        .await
    {
        Ok(reply) => reply,
        Err(e) => return Ok(Served::Refused(call_problem(&e))),
    };
    respond(client, session, ctx, route, reply).await
}

/// Read the whole request body, at most `max_body` bytes, within the body deadlines.
async fn read_request_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    rules: Option<&RequestTransformConfig>,
) -> Result<Bytes, Problem> {
    let max = rules.map_or(DEFAULT_MAX_BODY, |r| r.max_body);
    let too_large = || Problem::new(413, "the request body is larger than this route accepts").closing();
    let declared = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    if session.is_body_empty() {
        return Ok(Bytes::new());
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .write_continue_response()
            .await
            .map_err(|_| Problem::new(400, "the request could not be read").closing())?;
    }
    let mut buf = BytesMut::new();
    loop {
        let chunk = match session.read_request_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if *e.etype() == ErrorType::ReadTimedout && *e.esource() == ErrorSource::Downstream => {
                return Err(body_too_slow());
            }
            Err(_) => return Err(Problem::new(400, "the request body could not be read").closing()),
        };
        ctx.admission.body_received += chunk.len() as u64;
        if buf.len() + chunk.len() > max {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
        let limits = &ctx.snapshot.settings.limits;
        if limits.body_overdue(ctx.start.elapsed(), ctx.admission.body_received) {
            return Err(body_too_slow());
        }
    }
    Ok(buf.freeze())
}

fn body_too_slow() -> Problem {
    Problem::new(408, "the request body was not received in time").closing()
}

/// Apply the route's request body rules to a JSON body. A body the rules cannot read is
/// refused, never forwarded unfiltered: otherwise a client would skip a `deny` by labelling
/// its JSON `text/plain` or compressing it.
fn transform_request_body(
    rules: &RequestTransformConfig,
    req: &RequestHeader,
    body: Bytes,
) -> Result<Bytes, Problem> {
    let Some(json_rules) = &rules.rules else {
        return Ok(body);
    };
    if body.is_empty() {
        return Ok(body);
    }
    let unsupported = || Problem::new(415, "this route accepts only uncompressed JSON request bodies");
    if req.headers.contains_key(CONTENT_ENCODING) {
        return Err(unsupported());
    }
    if !body::media_matches(&rules.content_types, req.headers.get(CONTENT_TYPE)) {
        return Err(unsupported());
    }
    match body::transform_json(json_rules, &body) {
        Ok(out) => Ok(Bytes::from(out)),
        Err(BodyError::InvalidJson(_)) => Err(Problem::new(400, "the request body is not valid JSON")),
        Err(_) => Err(Problem::new(400, "the request body could not be transformed")),
    }
}

/// The request head sent upstream: the client's, without hop-by-hop and framing headers,
/// through the shared `edges::upstream_head`, with the length of the body actually sent.
fn upstream_head(
    client_head: &RequestHeader,
    ctx: &RequestCtx,
    route: &Route,
    body: &Bytes,
) -> pingora::Result<RequestHeader> {
    let mut head = client_head.clone();
    forwarding::strip_hop_by_hop_request(&mut head);
    for name in [TRANSFER_ENCODING, CONTENT_LENGTH, EXPECT] {
        forwarding::remove(&mut head, &name);
    }
    // The gateway decodes gzip and br, but identity is cheapest and always readable.
    if route.transform.response.is_some() {
        forwarding::remove(&mut head, &ACCEPT_ENCODING);
    }
    edges::upstream_head(ctx, route, &mut head)?;
    let sends_body = !body.is_empty() || matches!(head.method, Method::POST | Method::PUT | Method::PATCH);
    if sends_body {
        head.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    }
    Ok(head)
}

fn call_problem(e: &CallError) -> Problem {
    match e {
        CallError::NoTarget => Problem::new(503, "no healthy upstream target is available"),
        CallError::Timeout => Problem::new(504, "the upstream did not answer in time"),
        CallError::Connect(e) | CallError::Failed(e) => match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Problem::new(504, "the upstream did not answer in time")
            }
            ErrorType::InvalidHTTPHeader => Problem::new(502, "the upstream sent an invalid response"),
            _ => Problem::new(502, "the upstream failed to answer"),
        },
    }
}

/// Answer the client from the upstream's reply: transformed when the rules apply, otherwise
/// streamed through.
async fn respond(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    mut reply: Reply,
) -> pingora::Result<Served> {
    let method = session.req_header().method.clone();
    let mut head = reply.head.clone();
    forwarding::strip_hop_by_hop_response(&mut head);
    let Some(cfg) = route
        .transform
        .response
        .as_ref()
        .filter(|cfg| body::applies(cfg, &method, &head))
    else {
        edges::decorate(ctx, &mut head)?;
        stream(
            session,
            &mut reply,
            head,
            Vec::new(),
            &method,
            ctx.admission.deadline,
        )
        .await?;
        client.release(reply).await;
        return Ok(Served::Answered);
    };
    let read = read_and_transform(&mut reply, cfg, &head);
    let (raw, outcome) = match ctx.admission.deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(done) => done,
            Err(_) => {
                return Ok(Served::Refused(Problem::new(
                    504,
                    "the upstream did not answer in time",
                )))
            }
        },
        None => read.await,
    };
    let route_name = route.name.as_str();
    match outcome {
        Ok(transformed) => {
            count(route_name, "applied");
            body::describe_new_body(&mut head, transformed.len())?;
            edges::decorate(ctx, &mut head)?;
            session.write_response_header(Box::new(head), false).await?;
            session
                .write_response_body(Some(Bytes::from(transformed)), true)
                .await?;
            client.release(reply).await;
            Ok(Served::Answered)
        }
        Err(e) if cfg.on_error == OnError::Pass => {
            count(route_name, "passed");
            log::warn!(
                "route `{route_name}`: response not transformed ({}); passing the original on (on_error: pass), request id {}",
                e.reason(),
                ctx.request_id
            );
            edges::decorate(ctx, &mut head)?;
            stream(session, &mut reply, head, raw, &method, ctx.admission.deadline).await?;
            client.release(reply).await;
            Ok(Served::Answered)
        }
        Err(e) => {
            count(route_name, "rejected");
            log::warn!(
                "route `{route_name}`: response not transformed ({}); answering 502, request id {}",
                e.reason(),
                ctx.request_id
            );
            Ok(Served::Refused(Problem::new(
                502,
                "the upstream response could not be transformed",
            )))
        }
    }
}

fn count(route: &str, outcome: &str) {
    metrics::get()
        .transforms
        .with_label_values(&[route, outcome])
        .inc();
}

/// Read the body (never more than `max_body` bytes held, before or after decoding) and
/// transform it. On failure, what was read comes back for `on_error: pass`: the bytes held,
/// then the piece that would have overflowed them.
async fn read_and_transform(
    reply: &mut Reply,
    cfg: &ResponseTransformConfig,
    head: &ResponseHeader,
) -> (Vec<Bytes>, Result<Vec<u8>, BodyError>) {
    let mut raw = BytesMut::new();
    let coding = body::coding(head);
    if let Coding::Other(name) = &coding {
        return (
            Vec::new(),
            Err(BodyError::Undecodable(format!("content coding `{name}`"))),
        );
    }
    if body::declared_too_large(head, cfg.max_body) {
        return (Vec::new(), Err(BodyError::TooLarge));
    }
    loop {
        match reply.body_chunk().await {
            Ok(Some(chunk)) if raw.len() + chunk.len() > cfg.max_body => {
                return (vec![raw.freeze(), chunk], Err(BodyError::TooLarge));
            }
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                return (
                    vec![raw.freeze()],
                    Err(BodyError::Undecodable(format!("reading the body: {e}"))),
                )
            }
        }
    }
    let outcome = body::decode(&coding, &raw, cfg.max_body)
        .and_then(|decoded| body::transform_json(&cfg.rules, &decoded));
    (vec![raw.freeze()], outcome)
}

/// Write `head`, the bytes already read, then the rest of the upstream body as it arrives.
async fn stream(
    session: &mut Session,
    reply: &mut Reply,
    mut head: ResponseHeader,
    already: Vec<Bytes>,
    method: &Method,
    deadline: Option<std::time::Instant>,
) -> pingora::Result<()> {
    let status = head.status.as_u16();
    let bodiless = *method == Method::HEAD || matches!(status, 204 | 304);
    if bodiless {
        session.write_response_header(Box::new(head), true).await?;
        return Ok(());
    }
    // A close-delimited upstream body is re-framed as chunked for the client's connection.
    if !head.headers.contains_key(CONTENT_LENGTH) && !head.headers.contains_key(TRANSFER_ENCODING) {
        head.insert_header(TRANSFER_ENCODING, "chunked")?;
    }
    session.write_response_header(Box::new(head), false).await?;
    for piece in already.into_iter().filter(|p| !p.is_empty()) {
        session.write_response_body(Some(piece), false).await?;
    }
    while let Some(chunk) = reply.body_chunk().await? {
        // The route's deadline covers the whole response, as on the proxied path.
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            return pingora::Error::e_explain(
                super::errors::ROUTE_TIMEOUT,
                "route deadline passed while streaming the response",
            );
        }
        session.write_response_body(Some(chunk), false).await?;
    }
    session.write_response_body(None, true).await
}
