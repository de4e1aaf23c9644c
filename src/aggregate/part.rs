//! One part's exchange: its request through the part's pool (`upstream::client`: balance,
//! health, retries and the pool's timeouts all apply), its answer read whole within
//! `max_body` and the part's deadline, decoded, parsed within a memory budget and passed
//! through the part's rules. The connection goes back to the pool only when the answer was
//! read to its end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::ErrorType;
use serde_json::Value;

use crate::config::PartConfig;
use crate::transform::{body, bounded};
use crate::upstream::attempt::{Attempt, Outcome};
use crate::upstream::client::{Body, Call, CallError, Reply, UpstreamClient};
use crate::upstream::Pool;

/// A part's request, ready to send.
pub struct PartRequest {
    pub pool: Arc<Pool>,
    /// What `balance: hash` hashes.
    pub key: Vec<u8>,
    pub head: RequestHeader,
    pub body: Bytes,
    /// `min(part timeout, what is left of the overall deadline)`.
    pub deadline: Instant,
    /// The request's trace: the part's attempts are its CLIENT spans.
    pub trace: Option<crate::observe::trace::TraceContext>,
}

/// A part that answered 2xx with a readable document.
#[derive(Debug)]
pub struct PartAnswer {
    pub status: u16,
    /// After the part's rules; `null` for an empty body.
    pub doc: Value,
    /// The headers listed in `expose_headers`, every value, in order.
    pub exposed: Vec<(HeaderName, HeaderValue)>,
    /// The part's `Cache-Control` values joined, if it sent any.
    pub cache_control: Option<String>,
}

/// Why a part contributed no document. Never an internal address: this is what the client's
/// `errors` member says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The part answered this non-2xx status.
    Status(u16),
    /// Its deadline passed (the part's own, or the overall one).
    Timeout,
    /// Its pool had no healthy, untried target.
    NoTarget,
    /// No target accepted a connection.
    Connect,
    /// The target failed after the request was sent (reset, invalid answer).
    Error,
    /// The answer is not a JSON document the part's rules can apply to.
    Invalid,
    /// The answer is larger than `max_body`.
    TooLarge,
    /// A template variable had no usable value (it is named, never its value).
    Missing(String),
    /// A part named in `after` failed.
    Dependency(String),
    /// Stopped, or never sent, because a required part had already failed.
    Cancelled,
    /// Its upstream had no free concurrency slot (`limits`): never sent.
    Overloaded,
}

impl Failure {
    /// The metric outcome and access-log word.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Status(_) => "status",
            Failure::Timeout => "timeout",
            Failure::NoTarget => "no_target",
            Failure::Connect => "connect_error",
            Failure::Error => "error",
            Failure::Invalid => "invalid",
            Failure::TooLarge => "too_large",
            Failure::Missing(_) => "missing_value",
            Failure::Dependency(_) => "dependency_failed",
            Failure::Cancelled => "cancelled",
            Failure::Overloaded => "overloaded",
        }
    }

    /// The `errors` member entry: `{"status": 503}` or `{"reason": "timeout"}`.
    pub fn describe(&self) -> Value {
        let mut entry = serde_json::Map::new();
        match self {
            Failure::Status(status) => {
                entry.insert("status".into(), Value::from(*status));
            }
            other => {
                entry.insert("reason".into(), Value::from(other.label()));
                match other {
                    Failure::Missing(var) => {
                        entry.insert("variable".into(), Value::from(var.as_str()));
                    }
                    Failure::Dependency(part) => {
                        entry.insert("after".into(), Value::from(part.as_str()));
                    }
                    _ => {}
                }
            }
        }
        Value::Object(entry)
    }
}

/// Make the part's exchange and read its document.
pub async fn call(
    client: &UpstreamClient,
    req: PartRequest,
    part: &PartConfig,
) -> Result<PartAnswer, Failure> {
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut current: Option<Attempt> = None;
    let deadline = req.deadline;
    let call = Call {
        pool: &req.pool,
        key: &req.key,
        repeatable: crate::upstream::retry::repeatable(&req.head, false),
        head: req.head,
        body: Body::Full(req.body),
        deadline: Some(deadline),
        trace: req.trace.as_ref(),
    };
    let mut reply = client
        .exchange(call, &mut tried, &mut current)
        .await
        .map_err(|e| call_failure(&e))?;
    let status = reply.head.status.as_u16();
    let read = tokio::time::timeout_at(deadline.into(), read_whole(&mut reply, part.max_body)).await;
    if let Some(attempt) = &mut current {
        // The answer began, then broke off or stalled: the target's failure too.
        if matches!(read, Err(_) | Ok(Err(Failure::Error))) {
            attempt.record(Outcome::Failed);
        }
        attempt.finish();
    }
    if !(200..300).contains(&status) {
        // Its body is not used, but read to its end the connection can be reused.
        if matches!(read, Ok(Ok(_))) {
            client.release(reply).await;
        }
        return Err(Failure::Status(status));
    }
    let raw = match read {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(failure)) => return Err(failure),
        Ok(Ok(raw)) => raw,
    };
    let exposed = exposed_headers(&reply, &part.expose_headers);
    let cache_control = joined(&reply, &http::header::CACHE_CONTROL);
    let coding = body::coding(&reply.head);
    // Read to its end: the connection can carry the next part request.
    client.release(reply).await;
    let doc = document(&raw, &coding, part)?;
    Ok(PartAnswer {
        status,
        doc,
        exposed,
        cache_control,
    })
}

fn call_failure(e: &CallError) -> Failure {
    match e {
        CallError::NoTarget => Failure::NoTarget,
        CallError::Shed => Failure::Overloaded,
        CallError::Timeout => Failure::Timeout,
        CallError::Connect(e) if *e.etype() == ErrorType::ConnectTimedout => Failure::Timeout,
        CallError::Connect(_) => Failure::Connect,
        CallError::Failed(e) if matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
            Failure::Timeout
        }
        CallError::Failed(_) | CallError::Downstream(_) => Failure::Error,
    }
}

/// The whole body, at most `max` bytes.
async fn read_whole(reply: &mut Reply, max: usize) -> Result<Bytes, Failure> {
    if body::declared_too_large(&reply.head, max) {
        return Err(Failure::TooLarge);
    }
    let mut raw = BytesMut::new();
    while let Some(chunk) = reply.body_chunk().await.map_err(|_| Failure::Error)? {
        if raw.len() + chunk.len() > max {
            return Err(Failure::TooLarge);
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(raw.freeze())
}

/// Decode, parse within the memory budget, apply the part's rules. An empty body is `null`.
fn document(raw: &[u8], coding: &body::Coding, part: &PartConfig) -> Result<Value, Failure> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    let decoded = body::decode(coding, raw, part.max_body).map_err(|e| match e {
        body::BodyError::TooLarge => Failure::TooLarge,
        _ => Failure::Invalid,
    })?;
    let doc = bounded::parse(&decoded, bounded::budget_for(decoded.len())).map_err(|_| Failure::Invalid)?;
    match &part.rules {
        Some(rules) => rules.apply(doc).map_err(|_| Failure::Invalid),
        None => Ok(doc),
    }
}

fn exposed_headers(reply: &Reply, names: &[HeaderName]) -> Vec<(HeaderName, HeaderValue)> {
    names
        .iter()
        .flat_map(|name| {
            reply
                .head
                .headers
                .get_all(name)
                .iter()
                .map(move |v| (name.clone(), v.clone()))
        })
        .collect()
}

fn joined(reply: &Reply, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = reply
        .head
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}
