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

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, IF_RANGE, RANGE,
    TRANSFER_ENCODING,
};
use http::{HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use pingora::{ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use super::problem::Problem;
use super::{edges, forwarding, peer};
use crate::config::{OnError, RequestTransformConfig, ResponseTransformConfig};
use crate::observe::metrics;
use crate::route::Route;
use crate::transform::body::{self, BodyError, Coding, Decision};
use crate::upstream::client::{Body, BodySource, Call, CallError, Reply, UpstreamClient};

/// How the exchange ended, for the caller.
pub enum Served {
    /// The response was written.
    Answered,
    /// Nothing was written: answer with this problem.
    Refused(Problem),
}

impl Served {
    /// Refused with 404: the gateway's own exchanges find no route (or not the kind they serve).
    pub fn no_route() -> Served {
        Served::Refused(Problem::no_route())
    }
}

/// Serve an admitted request on a transform route.
pub async fn serve(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Served> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let Some(route) = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id)) else {
        return Ok(Served::no_route());
    };
    // Awaited on its own line: a scrutinee's temporaries live to the end of the `match`, which
    // would keep the sending future's state beside the responding one's.
    let sent = send(client, session, ctx, route).await?;
    match sent {
        Ok(reply) => respond(client, session, ctx, route, reply).await,
        Err(problem) => Ok(Served::Refused(problem)),
    }
}

/// Send the client's request upstream on `route` (its body relayed or transformed) and wait
/// for the reply's head; a problem when nothing usable came back. The caller answers with
/// [`respond`], and may act on the reply's head first.
pub(super) async fn send(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
) -> pingora::Result<Result<Reply, Problem>> {
    let Some(pool) = ctx.pool().cloned() else {
        return Ok(Err(Problem::new(503, "no healthy upstream target is available")));
    };
    let request_rules = route.transform.request.as_ref();
    let key = peer::hash_key(&pool, session.req_header(), ctx.client.ip);
    let deadline = ctx.admission.deadline;
    // A body the rules rewrite is held whole; any other is relayed as it arrives.
    let mut relayed;
    let (head, body) = match request_rules.filter(|r| r.rules.is_some()) {
        Some(rules) => {
            let body = match read_request_body(session, ctx, rules.max_body).await {
                Ok(body) => body,
                Err(problem) => return Ok(Err(problem)),
            };
            let body = match transform_request_body(rules, session.req_header(), body) {
                Ok(body) => body,
                Err(problem) => return Ok(Err(problem)),
            };
            let head = upstream_head(session.req_header(), ctx, route, Framing::Length(body.len()))?;
            (head, Body::Full(body))
        }
        None => {
            let framing = relayed_framing(session)?;
            let head = upstream_head(session.req_header(), ctx, route, framing)?;
            if framing == Framing::None {
                // No body: nothing to relay, and the request can be sent again.
                (head, Body::Full(Bytes::new()))
            } else {
                send_continue(session).await?;
                relayed = ClientBody {
                    session: &mut *session,
                    limits: ctx.snapshot.settings.limits,
                    max: ctx.max_body(),
                    start: ctx.start,
                    received: &mut ctx.admission.body_received,
                };
                (head, Body::Relayed(&mut relayed))
            }
        }
    };
    let repeatable = crate::upstream::retry::repeatable(&head, route.retry_idempotency_key);
    let call = Call {
        pool: &pool,
        key: &key,
        head,
        body,
        deadline,
        repeatable,
        trace: ctx.trace.as_ref(),
    };
    let outcome = client
        .exchange(call, &mut ctx.upstream.tried, &mut ctx.upstream.current)
        .await;
    ctx.upstream.retries = ctx.upstream.tried.len().saturating_sub(1);
    Ok(outcome.map_err(|e| call_problem(&e)))
}

/// Read the whole request body, at most `max_body` bytes, within the body deadlines.
pub(super) async fn read_request_body(
    session: &mut Session,
    ctx: &mut RequestCtx,
    max: usize,
) -> Result<Bytes, Problem> {
    let max = max.min(usize::try_from(ctx.max_body()).unwrap_or(usize::MAX));
    super::request_checks::check_declared_body(session.req_header(), max as u64)?;
    if session.is_body_empty() {
        return Ok(Bytes::new());
    }
    send_continue(session)
        .await
        .map_err(|_| Problem::new(400, "the request could not be read").closing())?;
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
            return Err(Problem::body_too_large());
        }
        buf.extend_from_slice(&chunk);
        let limits = &ctx.snapshot.settings.limits;
        if limits.body_overdue(ctx.start.elapsed(), ctx.admission.body_received) {
            return Err(body_too_slow());
        }
    }
    Ok(buf.freeze())
}

/// Answer `Expect: 100-continue` before reading the body (the upstream never sees the
/// expectation: the gateway sends the body itself).
async fn send_continue(session: &mut Session) -> pingora::Result<()> {
    let expects_continue = session
        .req_header()
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session.write_continue_response().await?;
    }
    Ok(())
}

/// The client's body, relayed piece by piece within the body deadlines.
struct ClientBody<'a> {
    session: &'a mut Session,
    limits: crate::config::RequestLimits,
    /// The route's `max_body`: a piece beyond it is not relayed.
    max: u64,
    start: std::time::Instant,
    received: &'a mut u64,
}

#[async_trait]
impl BodySource for ClientBody<'_> {
    async fn next_piece(&mut self) -> pingora::Result<Option<Bytes>> {
        let piece = self.session.read_request_body().await?;
        if let Some(p) = &piece {
            *self.received += p.len() as u64;
            if *self.received > self.max {
                return Err(super::errors::body_too_large());
            }
            if self.limits.body_overdue(self.start.elapsed(), *self.received) {
                return Err(
                    pingora::Error::explain(super::errors::BODY_TIMEOUT, "request body too slow").into_down(),
                );
            }
        }
        Ok(piece)
    }
}

/// How the body sent upstream is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body.
    None,
    Length(usize),
    Chunked,
}

/// The framing of a body relayed as the client sends it: its length when declared, else
/// chunked. The framing checks already refused ambiguous requests.
fn relayed_framing(session: &mut Session) -> pingora::Result<Framing> {
    if session.is_body_empty() {
        return Ok(Framing::None);
    }
    let declared = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    Ok(declared.map_or(Framing::Chunked, Framing::Length))
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
    // One `Content-Type`, one the rules read: with two, the upstream may believe the other.
    let mut types = req.headers.get_all(CONTENT_TYPE).iter();
    let (Some(content_type), None) = (types.next(), types.next()) else {
        return Err(unsupported());
    };
    if req.headers.contains_key(CONTENT_ENCODING)
        || !body::media_matches(&rules.content_types, Some(content_type))
    {
        return Err(unsupported());
    }
    match body::transform_json(json_rules, &body) {
        Ok(out) => Ok(Bytes::from(out)),
        Err(BodyError::InvalidJson(_)) => Err(Problem::new(400, "the request body is not valid JSON")),
        Err(_) => Err(Problem::new(400, "the request body could not be transformed")),
    }
}

/// The request head sent upstream: the client's, without hop-by-hop and framing headers (first,
/// so a client's `Connection` cannot remove what the gateway sets), through the shared
/// `edges::upstream_head`, with the length of the body actually sent.
pub(super) fn upstream_head(
    client_head: &RequestHeader,
    ctx: &RequestCtx,
    route: &Route,
    framing: Framing,
) -> pingora::Result<RequestHeader> {
    let mut head = client_head.clone();
    // One move into `http` parts for every edit (see `edges::edit_request_parts`).
    edges::edit_request_parts(&mut head, |parts| {
        let headers = &mut parts.headers;
        forwarding::strip_hop_by_hop_request(headers);
        headers.remove(CONTENT_LENGTH);
        headers.remove(EXPECT);
        if let Some(response) = &route.transform.response {
            // The gateway decodes gzip and br, but identity is cheapest and always readable;
            // and it needs the whole representation, never a range of it.
            for name in [ACCEPT_ENCODING, RANGE, IF_RANGE] {
                headers.remove(name);
            }
            // A client must not steer a filtered route's upstream to a syntax the filter does
            // not read (`Accept: application/xml`).
            if response.rules.filters() {
                headers.remove(ACCEPT);
                if let Some(accept) = &response.accept {
                    headers.insert(ACCEPT, accept.clone());
                }
            }
        }
        edges::upstream_parts(ctx, route, parts, edges::HopByHop::Removed, None)?;
        let headers = &mut parts.headers;
        match framing {
            Framing::Length(len) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            Framing::Chunked => {
                headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            Framing::None if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
            Framing::None => {}
        }
        Ok(())
    })?;
    Ok(head)
}

pub(super) fn call_problem(e: &CallError) -> Problem {
    match e {
        CallError::Downstream(e) => super::errors::problem_for(e)
            .unwrap_or_else(|| Problem::new(400, "the request body could not be read"))
            .closing(),
        CallError::NoTarget => Problem::new(503, "no healthy upstream target is available"),
        CallError::Shed => super::overloaded(),
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
pub(super) async fn respond(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
    route: &Route,
    reply: Reply,
) -> pingora::Result<Served> {
    let method = session.req_header().method.clone();
    let prepared = prepare(
        route,
        &method,
        reply,
        ctx.admission.deadline,
        ctx.request_id.as_str(),
    )
    .await?;
    match prepared {
        Prepared::Whole { head, body, reply } => {
            // Read whole: the connection and its concurrency slot go back before the client
            // hears the answer.
            client.release(reply).await;
            write_whole(session, ctx, head, body).await?;
            Ok(Served::Answered)
        }
        // Boxed: streaming's state (about 11 KiB) would otherwise be part of every transformed
        // request's future, which is copied into its box per request.
        Prepared::Stream { head, reply, already } => {
            Box::pin(pass_through(client, session, ctx, reply, head, already)).await
        }
        Prepared::Refused(problem) => Ok(Served::Refused(problem)),
    }
}

/// An upstream answer made ready for clients (hop-by-hop headers removed, not yet decorated
/// for one request).
pub(super) enum Prepared {
    /// Transformed: the whole body, and the reply to release.
    Whole {
        head: ResponseHeader,
        body: Bytes,
        reply: Reply,
    },
    /// As the upstream sends it: the bytes already read, then the rest of `reply`.
    Stream {
        head: ResponseHeader,
        reply: Reply,
        already: Vec<Bytes>,
    },
    /// Nothing may reach the client: answer with this problem.
    Refused(Problem),
}

/// Apply the route's response rules to an upstream reply (`method`: the one sent upstream).
pub(super) async fn prepare(
    route: &Route,
    method: &Method,
    mut reply: Reply,
    deadline: Option<std::time::Instant>,
    request_id: &str,
) -> pingora::Result<Prepared> {
    // Decided on the head as the upstream sent it: a `Connection: content-type` must not
    // remove the header that decides whether the body is filtered.
    let decision = route
        .transform
        .response
        .as_ref()
        .map(|cfg| (cfg, body::decide(cfg, method, &reply.head)));
    let mut head = reply.head.clone();
    forwarding::strip_hop_by_hop_response(&mut head);
    let cfg = match decision {
        Some((cfg, Decision::Transform)) => cfg,
        Some((_, Decision::Refuse(why))) => return Ok(Prepared::Refused(refuse(request_id, route, &why))),
        Some((_, Decision::Pass)) | None => {
            return Ok(Prepared::Stream {
                head,
                reply,
                already: Vec::new(),
            });
        }
    };
    let coding = body::coding(&reply.head);
    let read = read_and_transform(&mut reply, cfg, &coding, &head);
    let (raw, outcome) = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(done) => done,
            Err(_) => {
                return Ok(Prepared::Refused(Problem::new(
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
            body::one_content_type(&mut head, &cfg.content_types)?;
            Ok(Prepared::Whole {
                head,
                body: Bytes::from(transformed),
                reply,
            })
        }
        Err(BodyError::Empty) => Ok(Prepared::Stream {
            head,
            reply,
            already: Vec::new(),
        }),
        Err(e) if cfg.on_error == OnError::Pass => {
            count(route_name, "passed");
            log::warn!(
                "route `{route_name}`: response not transformed ({}); passing the original on (on_error: pass), request id {request_id}",
                e.reason(),
            );
            Ok(Prepared::Stream {
                head,
                reply,
                already: raw,
            })
        }
        Err(e) => Ok(Prepared::Refused(refuse(request_id, route, &e.reason()))),
    }
}

/// Write a decorated head and a whole body.
async fn write_whole(
    session: &mut Session,
    ctx: &RequestCtx,
    mut head: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    edges::decorate(ctx, &mut head)?;
    session.write_response_header(Box::new(head), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Count, log and answer 502 for a response that must not reach the client as it is.
fn refuse(request_id: &str, route: &Route, why: &str) -> Problem {
    count(&route.name, "rejected");
    log::warn!(
        "route `{}`: response not transformed ({why}); answering 502, request id {request_id}",
        route.name,
    );
    Problem::new(502, "the upstream response could not be transformed")
}

/// Send the upstream's response as it is (decorated): the bytes already read, then the rest
/// as it arrives.
pub(super) async fn pass_through(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &RequestCtx,
    reply: Reply,
    mut head: ResponseHeader,
    already: Vec<Bytes>,
) -> pingora::Result<Served> {
    edges::decorate(ctx, &mut head)?;
    let method = session.req_header().method.clone();
    stream(
        client,
        session,
        reply,
        head,
        already,
        &method,
        ctx.admission.deadline,
    )
    .await?;
    Ok(Served::Answered)
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
    coding: &Coding,
    head: &ResponseHeader,
) -> (Vec<Bytes>, Result<Vec<u8>, BodyError>) {
    let mut raw = BytesMut::new();
    if let Coding::Other(name) = coding {
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
    if raw.is_empty() {
        return (Vec::new(), Err(BodyError::Empty));
    }
    let outcome = body::decode(coding, &raw, cfg.max_body)
        .and_then(|decoded| body::transform_json(&cfg.rules, &decoded));
    (vec![raw.freeze()], outcome)
}

/// Write `head`, the bytes already read, then the rest of the upstream body as it arrives. The
/// reply is released (its connection and concurrency slot) once the upstream's body has ended,
/// before the client is told the answer is complete.
async fn stream(
    client: &UpstreamClient,
    session: &mut Session,
    mut reply: Reply,
    mut head: ResponseHeader,
    already: Vec<Bytes>,
    method: &Method,
    deadline: Option<std::time::Instant>,
) -> pingora::Result<()> {
    let status = head.status.as_u16();
    let bodiless = *method == Method::HEAD || matches!(status, 204 | 304);
    if bodiless {
        client.release(reply).await;
        session.write_response_header(Box::new(head), true).await?;
        return Ok(());
    }
    // A close-delimited upstream body is re-framed as chunked for the client's connection.
    if !head.headers.contains_key(CONTENT_LENGTH) && !head.headers.contains_key(TRANSFER_ENCODING) {
        head.insert_header(TRANSFER_ENCODING, "chunked")?;
    }
    session.write_response_header(Box::new(head), false).await?;
    for piece in already.into_iter().filter(|p| !p.is_empty()) {
        relay(session, piece).await?;
    }
    loop {
        // The route's deadline covers the whole response, as on the proxied path.
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), reply.body_chunk())
                .await
                .or_else(|_| {
                    pingora::Error::e_explain(
                        super::errors::ROUTE_TIMEOUT,
                        "route deadline passed while streaming the response",
                    )
                })??,
            None => reply.body_chunk().await?,
        };
        match next {
            Some(piece) => relay(session, piece).await?,
            None => break,
        }
    }
    client.release(reply).await;
    session.write_response_body(None, true).await
}

/// Write one piece and flush it: a slow upstream's bytes reach the client as they come.
async fn relay(session: &mut Session, piece: Bytes) -> pingora::Result<()> {
    session
        .write_response_tasks(vec![HttpTask::Body(Some(piece), false)])
        .await
        .map(|_| ())
}
