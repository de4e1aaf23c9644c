//! Routes with `grpc:`: a REST/JSON request becomes one gRPC call, and its answer JSON.
//!
//! The gateway makes the call itself (`upstream::client`), not Pingora's proxy loop, because
//! the client's status depends on `grpc-status`, which arrives in the trailers after the
//! messages: the proxy loop would have sent a 200 by then (Kong's grpc-gateway does). Here a
//! unary answer is read whole, trailers included, before the client gets anything, so a failed
//! call is never a 200. A server-streaming answer is written as its messages arrive, once the
//! first one (or the status) is in; a failure after that ends the stream with an error
//! element and the response is cut short, never completed as a success.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::ctx::RequestCtx;
use super::edges;
use super::exchange::{call_problem, read_request_body, Served};
use super::peer;
use super::problem::Problem;
use crate::config::{GrpcConfig, StreamFormat};
use crate::grpc::bindings::{Binding, Found, Rpc};
use crate::grpc::message::{self, BodyField, Deframer, FrameError};
use crate::grpc::status;
use crate::route::Route;
use crate::upstream::client::{Body, Call, Reply, UpstreamClient};

/// Serve an admitted request on a `grpc:` route.
pub async fn serve(
    client: &UpstreamClient,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Served> {
    let snapshot = Arc::clone(&ctx.snapshot);
    let Some(route) = ctx.admission.route.and_then(|id| snapshot.routes.routes.get(id)) else {
        return Ok(Served::no_route());
    };
    let Some(t) = route.target.grpc() else {
        return Ok(Served::no_route());
    };
    let Some(pool) = ctx.pool().cloned() else {
        return Ok(Served::Refused(Problem::new(
            503,
            "no healthy upstream target is available",
        )));
    };
    let cfg = &t.config;
    let (binding, rpc, vars) = match bound(route, cfg, &session.req_header().method, &ctx.admission.path) {
        Ok(found) => found,
        Err(problem) => return Ok(Served::Refused(problem)),
    };
    ctx.reply.grpc_method = Some(rpc.path.clone());
    let input = rpc.desc.input();
    let query = match query_params(
        session.req_header().uri.query(),
        &input,
        binding,
        cfg,
        &snapshot.credential_query_params,
    ) {
        Ok(q) => q,
        Err(p) => return Ok(Served::Refused(p)),
    };
    let json = match read_json(session, ctx, binding, cfg).await {
        Ok(json) => json,
        Err(p) => return Ok(Served::Refused(p)),
    };
    let request = match message::build(&input, &binding.body, json, &vars, &query) {
        Ok(m) => m,
        Err(invalid) => return Ok(Served::Refused(invalid_request(&invalid.0))),
    };
    let frame = message::frame(&request);
    let source = edges::part_source(ctx, route, session.req_header());
    let head = edges::grpc_head(ctx, route, &source, &rpc.path, &cfg.forward_headers, frame.len())?;
    let key = peer::hash_key(&pool, session.req_header(), ctx.client.ip);
    let call = Call {
        pool: &pool,
        key: &key,
        head,
        body: Body::Full(frame),
        deadline: ctx.admission.deadline,
        // A call may change state: never sent twice once it may have arrived.
        repeatable: false,
        trace: ctx.trace.as_ref(),
    };
    let outcome = client
        .exchange(call, &mut ctx.upstream.tried, &mut ctx.upstream.current)
        .await;
    ctx.upstream.retries = ctx.upstream.tried.len().saturating_sub(1);
    let reply = match outcome {
        Ok(reply) => reply,
        Err(e) => {
            let problem = call_problem(&e);
            ctx.reply.grpc_status = Some(super::grpc::status_for(problem.status));
            return Ok(Served::Refused(problem));
        }
    };
    let answer = Answer {
        cfg,
        binding,
        rpc,
        pool: rpc.desc.parent_pool(),
    };
    answer.respond(client, session, ctx, reply).await
}

/// A request's binding, its method, and the values its path binds.
pub(super) type Bound<'a> = (&'a Binding, &'a Rpc, Vec<(String, String)>);

/// The binding a request takes on a `grpc:` route, its method and the path's values; or
/// the problem that answers it (404, 405 with `Allow`, 400).
pub(super) fn bound<'a>(
    route: &Route,
    cfg: &'a GrpcConfig,
    method: &http::Method,
    path: &str,
) -> Result<Bound<'a>, Problem> {
    let unbound = || Problem::new(404, "no gRPC method is bound to this path");
    match cfg.table.find(method, &binding_path(route, path)) {
        Found::Binding(b, vars) => {
            let rpc = cfg.table.rpcs.get(b.rpc).ok_or_else(unbound)?;
            Ok((b, rpc, vars))
        }
        Found::WrongMethod(allowed) => {
            let allow = allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
            Err(Problem::new(405, "this method is not bound to this path")
                .with_header(http::header::ALLOW, allow))
        }
        Found::NotFound => Err(unbound()),
        Found::Undecodable(field) => Err(invalid_request(&format!(
            "the value of `{field}` in the path is not UTF-8"
        ))),
    }
}

/// The path the bindings see: the route's `strip_prefix` removed (so a route under `/api` can
/// serve annotations written as `/v1/...`).
fn binding_path(route: &Route, path: &str) -> String {
    match route.strip_prefix.as_deref() {
        Some(prefix) if crate::routing::normalize::has_segment_prefix(path, prefix) => {
            crate::routing::normalize::strip_segment_prefix(path, prefix)
        }
        _ => path.to_string(),
    }
}

/// The query parameters bound to fields: percent-decoded; the route's credential parameters
/// and `ignored_query_parameters` dropped; an unknown one refused unless
/// `ignore_unknown_query`. With `body: "*"` every field comes from the body, so any
/// parameter left is unknown.
fn query_params(
    query: Option<&str>,
    input: &MessageDescriptor,
    binding: &Binding,
    cfg: &GrpcConfig,
    credentials: &[String],
) -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = crate::percent::split_pair(pair);
        if credentials
            .iter()
            .any(|c| crate::percent::names_param(raw_name, c))
        {
            continue;
        }
        let (Some(name), Some(value)) = (
            crate::percent::decode_str(raw_name),
            crate::percent::decode_str(raw_value),
        ) else {
            return Err(Problem::new(
                400,
                "a query parameter is not valid percent-encoded UTF-8",
            ));
        };
        if cfg.ignored_query_parameters.contains(&name) {
            continue;
        }
        let known = binding.body != BodyField::Whole && message::resolves(input, &name);
        if !known {
            if cfg.ignore_unknown_query {
                continue;
            }
            return Err(invalid_request(&format!("unknown query parameter `{name}`")));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The request body as JSON, when the binding takes one; a body where none is bound is
/// refused rather than silently dropped.
async fn read_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    binding: &Binding,
    cfg: &GrpcConfig,
) -> Result<Option<serde_json::Value>, Problem> {
    if binding.body == BodyField::None {
        // Whatever the framing (an HTTP/2 client sends DATA without a length).
        if !session.is_body_empty() {
            return Err(Problem::new(400, "this method takes no request body").closing());
        }
        return Ok(None);
    }
    let body = read_request_body(session, ctx, cfg.max_request_body).await?;
    if body.is_empty() {
        return Ok(None);
    }
    // No `Content-Type` reads as JSON (curl -d sends form encoding by default, which is
    // refused).
    let types = session.req_header().headers.get_all(CONTENT_TYPE);
    let json_type = match (types.iter().next(), types.iter().nth(1)) {
        (None, _) => true,
        (Some(t), None) => {
            crate::transform::body::media_matches(&crate::config::default_content_types(), Some(t))
        }
        (Some(_), Some(_)) => false,
    };
    if !json_type
        || session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_ENCODING)
    {
        return Err(Problem::new(
            415,
            "this route accepts only uncompressed JSON request bodies",
        ));
    }
    message::document(&body)
        .map(Some)
        .map_err(|e| invalid_request(&e.0))
}

/// 400 for a request that does not fit the method's input, with what did not fit.
fn invalid_request(why: &str) -> Problem {
    Problem::new(400, "the request does not fit the gRPC method's input").with_extension(format!(
        "\"errors\":[{}]",
        serde_json::Value::String(why.to_string())
    ))
}

/// How the call's answer is turned into the client's.
struct Answer<'a> {
    cfg: &'a GrpcConfig,
    binding: &'a Binding,
    rpc: &'a Rpc,
    pool: &'a DescriptorPool,
}

/// How a call ended, from its trailers (or its head, for Trailers-Only).
struct Ending {
    /// 0–16 (anything else the upstream says is UNKNOWN, 2).
    code: u8,
    message: String,
    details: Option<Vec<u8>>,
    /// The gateway could not use the answer (no status, truncated, too large): a 502, not
    /// the upstream's word.
    broken: bool,
}

impl Ending {
    fn from(headers: &http::HeaderMap) -> Option<Ending> {
        let code = super::grpc::status_in(headers)?;
        let message = headers
            .get("grpc-message")
            .map(|m| status::decode_message(m.as_bytes()))
            .unwrap_or_default();
        let details = headers.get("grpc-status-details-bin").and_then(|v| {
            let text = v.as_bytes();
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(
                    text.strip_suffix(b"==")
                        .or_else(|| text.strip_suffix(b"="))
                        .unwrap_or(text),
                )
                .ok()
        });
        Some(Ending {
            code,
            message,
            details,
            broken: false,
        })
    }

    /// An answer the gateway cannot use, for `why`.
    fn broken(why: &str) -> Ending {
        Ending {
            code: 13,
            message: why.to_string(),
            details: None,
            broken: true,
        }
    }
}

impl Answer<'_> {
    async fn respond(
        &self,
        client: &UpstreamClient,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut reply: Reply,
    ) -> pingora::Result<Served> {
        let http_status = reply.head.status.as_u16();
        let is_grpc = reply
            .head
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        // Trailers-Only: the status is in the head, there are no messages (read before the
        // content type, which such an answer may lack).
        if http_status == 200 {
            if let Some(ending) = Ending::from(&reply.head.headers) {
                client.release(reply).await;
                if ending.code == 0 && self.rpc.server_streaming() {
                    ctx.reply.grpc_status = Some(0);
                    if self.start_stream(session, ctx).await? {
                        session
                            .write_response_body(Some(self.end_of_stream(0)), true)
                            .await?;
                    }
                    return Ok(Served::Answered);
                }
                return Ok(self.failed(ctx, ending));
            }
        }
        if http_status != 200 || !is_grpc {
            // Not a gRPC answer at all: the gRPC spec's mapping of HTTP statuses.
            let code: u8 = match http_status {
                200 => 13,
                400 => 13,
                401 => 16,
                403 => 7,
                404 => 12,
                429 | 502 | 503 | 504 => 14,
                _ => 2,
            };
            ctx.reply.grpc_status = Some(code);
            log::warn!(
                "route `{}`: {} answered HTTP {http_status} ({}) instead of a gRPC response, request id {}",
                ctx.route_name(),
                self.rpc.path,
                if is_grpc {
                    "application/grpc"
                } else {
                    "not application/grpc"
                },
                ctx.request_id
            );
            // Something in front of the service is overloaded or down (UNAVAILABLE): worth
            // retrying later, as any 503.
            if code == 14 {
                return Ok(Served::Refused(
                    Problem::new(503, "the gRPC service is unavailable")
                        .with_header(http::header::RETRY_AFTER, "1".into()),
                ));
            }
            return Ok(Served::Refused(Problem::new(
                502,
                "the upstream is not answering as a gRPC service",
            )));
        }
        if self.rpc.server_streaming() {
            // Boxed: streaming's state would otherwise be part of every unary call's future,
            // which the caller copies into its box per request.
            return Box::pin(self.stream(client, session, ctx, reply)).await;
        }
        let mut frames = Deframer::new(self.cfg.max_response_body);
        let mut messages = Vec::new();
        let read = self.read_all(&mut reply, &mut frames, &mut messages);
        let ending = match ctx.admission.deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), read).await {
                Ok(e) => e,
                Err(_) => {
                    ctx.reply.grpc_status = Some(4);
                    return Ok(Served::Refused(Problem::new(
                        504,
                        "the upstream did not answer in time",
                    )));
                }
            },
            None => read.await,
        };
        let ending = match ending {
            Ok(e) => e,
            Err(problem) => {
                ctx.reply.grpc_status = Some(13);
                return Ok(Served::Refused(problem));
            }
        };
        client.release(reply).await;
        if ending.code != 0 {
            return Ok(self.failed(ctx, ending));
        }
        let [only] = messages.as_slice() else {
            ctx.reply.grpc_status = Some(13);
            log::warn!(
                "route `{}`: {} answered OK with {} messages (a unary call has one), request id {}",
                ctx.route_name(),
                self.rpc.path,
                messages.len(),
                ctx.request_id
            );
            return Ok(Served::Refused(Problem::new(
                502,
                "the upstream's gRPC answer is malformed",
            )));
        };
        let body = match message::print(
            &self.rpc.desc.output(),
            only,
            self.binding.response_body.as_deref(),
            self.cfg.print,
        ) {
            Ok(b) => b,
            Err(why) => {
                ctx.reply.grpc_status = Some(13);
                log::warn!(
                    "route `{}`: {why}, request id {}",
                    ctx.route_name(),
                    ctx.request_id
                );
                return Ok(Served::Refused(Problem::new(
                    502,
                    "the upstream's gRPC answer is malformed",
                )));
            }
        };
        ctx.reply.grpc_status = Some(0);
        let mut head = ResponseHeader::build_no_case(200, Some(4))?;
        head.insert_header(CONTENT_TYPE, "application/json")?;
        head.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        edges::decorate(ctx, &mut head)?;
        ctx.reply.gateway_status = Some(200);
        let bodyless = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(head), bodyless).await?;
        if !bodyless {
            session.write_response_body(Some(Bytes::from(body)), true).await?;
        }
        Ok(Served::Answered)
    }

    /// Read every message and then the trailers.
    async fn read_all(
        &self,
        reply: &mut Reply,
        frames: &mut Deframer,
        messages: &mut Vec<Bytes>,
    ) -> Result<Ending, Problem> {
        loop {
            match reply.body_chunk().await {
                Ok(Some(chunk)) => {
                    frames.push(&chunk);
                    while let Some(m) = frames.next_message().map_err(|e| self.frame_problem(&e))? {
                        messages.push(m);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("{}: the answer broke off: {e}", self.rpc.path);
                    return Err(Problem::new(502, "the upstream's answer broke off"));
                }
            }
        }
        frames.finish().map_err(|e| self.frame_problem(&e))?;
        match reply.trailers().await {
            Ok(Some(trailers)) => Ok(Ending::from(&trailers)
                .unwrap_or_else(|| Ending::broken("the answer ended without a grpc-status"))),
            Ok(None) => Ok(Ending::broken("the answer ended without a grpc-status")),
            Err(e) => {
                log::warn!("{}: reading the trailers failed: {e}", self.rpc.path);
                Err(Problem::new(502, "the upstream's answer broke off"))
            }
        }
    }

    fn frame_problem(&self, e: &FrameError) -> Problem {
        match e {
            FrameError::TooLarge => {
                Problem::new(502, "the upstream's answer is larger than this route accepts")
            }
            FrameError::Compressed | FrameError::Truncated => {
                Problem::new(502, "the upstream's gRPC answer is malformed")
            }
        }
    }

    /// The answer for a unary call that ended with `ending` and no message: an error (a
    /// unary OK without its message is malformed).
    fn failed(&self, ctx: &mut RequestCtx, ending: Ending) -> Served {
        ctx.reply.grpc_status = Some(ending.code);
        if ending.code == 0 {
            return Served::Refused(self.malformed(ctx, "status OK without its message"));
        }
        if ending.broken {
            return Served::Refused(self.malformed(ctx, &ending.message));
        }
        Served::Refused(self.error_problem(&ending))
    }

    /// 502 for an answer the gateway cannot use (logged with why).
    fn malformed(&self, ctx: &mut RequestCtx, why: &str) -> Problem {
        ctx.reply.grpc_status = Some(13);
        log::warn!(
            "route `{}`: {}: {why}; answering 502, request id {}",
            ctx.route_name(),
            self.rpc.path,
            ctx.request_id
        );
        Problem::new(502, "the upstream's gRPC answer is malformed")
    }

    /// What closes a stream of `count` messages.
    fn end_of_stream(&self, count: usize) -> Bytes {
        match (self.cfg.stream, count) {
            (StreamFormat::JsonArray, 0) => Bytes::from_static(b"[]"),
            (StreamFormat::JsonArray, _) => Bytes::from_static(b"]"),
            (StreamFormat::Ndjson, _) => Bytes::new(),
        }
    }

    /// problem+json for a failed call: the mapped HTTP status, the gRPC code and name, the
    /// percent-decoded message, and the `google.rpc.Status` details printed with the
    /// descriptors (raw when their types are unknown).
    fn error_problem(&self, ending: &Ending) -> Problem {
        let code = u32::from(ending.code);
        let http = status::http_status(code);
        let mut ext = format!(
            "\"grpc_code\":{},\"grpc_status\":{},\"message\":{}",
            code,
            serde_json::Value::String(status::name(code).to_string()),
            serde_json::Value::String(ending.message.clone())
        );
        if let Some(details) = ending.details.as_deref().and_then(|d| self.details(d)) {
            ext.push_str(",\"details\":");
            ext.push_str(&details);
        }
        let mut p = Problem::new(http, "the gRPC call failed").with_extension(ext);
        if ending.code == 8 || ending.code == 14 {
            // RESOURCE_EXHAUSTED, UNAVAILABLE: worth retrying later.
            p = p.with_header(http::header::RETRY_AFTER, "1".into());
        }
        p
    }

    /// The details of a `google.rpc.Status`, as a JSON array.
    fn details(&self, bytes: &[u8]) -> Option<String> {
        let desc = self.pool.get_message_by_name("google.rpc.Status")?;
        let status = DynamicMessage::decode(desc, bytes).ok()?;
        let printed = message::print_message(&status, Some("details"), self.cfg.print)
            .ok()
            .or_else(|| raw_details(&status))?;
        String::from_utf8(printed).ok()
    }

    /// A server-streaming answer, written as messages arrive.
    async fn stream(
        &self,
        client: &UpstreamClient,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut reply: Reply,
    ) -> pingora::Result<Served> {
        let mut frames = Deframer::new(self.cfg.max_response_body);
        let deadline = ctx.admission.deadline;
        let output = self.rpc.desc.output();
        let mut started = false;
        let mut count = 0usize;
        loop {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), reply.body_chunk())
                    .await
                    .unwrap_or_else(|_| {
                        pingora::Error::e_explain(
                            super::errors::ROUTE_TIMEOUT,
                            "route deadline passed while streaming the answer",
                        )
                    }),
                None => reply.body_chunk().await,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    let timed_out = *e.etype() == super::errors::ROUTE_TIMEOUT;
                    let ending = Ending {
                        code: if timed_out { 4 } else { 14 },
                        message: if timed_out {
                            "deadline exceeded".into()
                        } else {
                            "the answer broke off".into()
                        },
                        details: None,
                        broken: false,
                    };
                    return self.stream_failed(session, ctx, started, ending).await;
                }
            };
            frames.push(&chunk);
            loop {
                let m = match frames.next_message() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        let ending = Ending::broken(match e {
                            FrameError::TooLarge => "the answer is larger than this route accepts",
                            _ => "a malformed message",
                        });
                        return self.stream_failed(session, ctx, started, ending).await;
                    }
                };
                let printed = match message::print(
                    &output,
                    &m,
                    self.binding.response_body.as_deref(),
                    self.cfg.print,
                ) {
                    Ok(p) => p,
                    Err(_) => {
                        return self
                            .stream_failed(session, ctx, started, Ending::broken("an undecodable message"))
                            .await;
                    }
                };
                if !started {
                    if !self.start_stream(session, ctx).await? {
                        // HEAD: the head is the answer (the rest of the stream is not read).
                        ctx.reply.grpc_status = Some(0);
                        return Ok(Served::Answered);
                    }
                    started = true;
                }
                let piece = self.element(&printed, count == 0);
                count += 1;
                session
                    .write_response_tasks(vec![HttpTask::Body(Some(piece), false)])
                    .await?;
            }
        }
        let ending = match frames.finish() {
            Err(_) => Ending::broken("the answer ended inside a message"),
            Ok(()) => match reply.trailers().await {
                Ok(Some(t)) => Ending::from(&t)
                    .unwrap_or_else(|| Ending::broken("the answer ended without a grpc-status")),
                _ => Ending::broken("the answer ended without a grpc-status"),
            },
        };
        if ending.code != 0 {
            return self.stream_failed(session, ctx, started, ending).await;
        }
        client.release(reply).await;
        ctx.reply.grpc_status = Some(0);
        if !started && !self.start_stream(session, ctx).await? {
            return Ok(Served::Answered);
        }
        session
            .write_response_body(Some(self.end_of_stream(count)), true)
            .await?;
        Ok(Served::Answered)
    }

    /// The stream's head; whether its body follows (not for HEAD).
    async fn start_stream(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<bool> {
        let mut head = ResponseHeader::build_no_case(200, Some(4))?;
        let media = match self.cfg.stream {
            StreamFormat::JsonArray => "application/json",
            StreamFormat::Ndjson => "application/x-ndjson",
        };
        head.insert_header(CONTENT_TYPE, media)?;
        head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        edges::decorate(ctx, &mut head)?;
        ctx.reply.gateway_status = Some(200);
        let head_only = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(head), head_only).await?;
        Ok(!head_only)
    }

    /// One message as an element of the answer: `[` before the first array element, `,`
    /// before the others; a line for NDJSON.
    fn element(&self, printed: &[u8], first: bool) -> Bytes {
        let mut out = Vec::with_capacity(printed.len() + 2);
        match self.cfg.stream {
            StreamFormat::JsonArray => {
                out.push(if first { b'[' } else { b',' });
                out.extend_from_slice(printed);
            }
            StreamFormat::Ndjson => {
                out.extend_from_slice(printed);
                out.push(b'\n');
            }
        }
        Bytes::from(out)
    }

    /// A stream that failed: before any message, an ordinary error answer; after, an error
    /// element closes what was sent and the response is cut short (an error, never a
    /// completed 200).
    async fn stream_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        started: bool,
        ending: Ending,
    ) -> pingora::Result<Served> {
        ctx.reply.grpc_status = Some(ending.code);
        if !started {
            if ending.broken {
                return Ok(Served::Refused(self.malformed(ctx, &ending.message)));
            }
            return Ok(Served::Refused(self.error_problem(&ending)));
        }
        let error = serde_json::json!({ "error": {
            "grpc_code": ending.code,
            "grpc_status": status::name(u32::from(ending.code)),
            "message": ending.message,
        }});
        let piece = self.element(error.to_string().as_bytes(), false);
        session
            .write_response_tasks(vec![HttpTask::Body(Some(piece), false)])
            .await?;
        pingora::Error::e_explain(
            pingora::ErrorType::HTTPStatus(502),
            format!(
                "{} failed after its first messages: {} {}",
                self.rpc.path,
                status::name(u32::from(ending.code)),
                ending.message
            ),
        )
    }
}

/// `details` with each `Any` left as its type URL and base64 value (its type is not in the
/// descriptors).
fn raw_details(status: &DynamicMessage) -> Option<Vec<u8>> {
    let details = status.get_field_by_name("details")?;
    let list = details.as_list()?;
    let items: Vec<serde_json::Value> = list
        .iter()
        .filter_map(|v| v.as_message())
        .map(|any| {
            let url = any
                .get_field_by_name("type_url")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let value = any
                .get_field_by_name("value")
                .and_then(|v| {
                    v.as_bytes()
                        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                })
                .unwrap_or_default();
            serde_json::json!({ "@type": url, "value": value })
        })
        .collect();
    serde_json::to_vec(&items).ok()
}
