//! One upstream exchange made by the gateway itself (not by Pingora's proxy loop): pick a
//! target through the pool's selection and health, connect with the pool's timeouts, send the
//! head and the (already complete) body, read the response head. Connect failures move on to
//! an untried target within the pool's `retries`, exactly like the proxied path; once the
//! request was sent, it is never repeated (it may not be idempotent).
//!
//! Used wherever the gateway must see a whole upstream answer before it answers the client:
//! response transformation today, aggregation parts next. Every attempt is an
//! [`Attempt`](super::attempt::Attempt), so outcomes are recorded in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use super::attempt::{Attempt, Outcome};
use super::concurrency::Slot;
use super::retry::{attempt_deadline, Failure, Replay, Verdict};
use super::Pool;

/// How long an idle connection stays in the client's pool.
const IDLE: Duration = Duration::from_secs(60);

/// Where the request body comes from: held whole (it can be sent again), or relayed from the
/// client as it arrives (sent once).
pub enum Body<'a> {
    Full(Bytes),
    Relayed(&'a mut (dyn BodySource + Send)),
}

/// A request body read piece by piece (the client's, with its deadlines).
#[async_trait]
pub trait BodySource {
    /// The next piece; `None` at the end.
    async fn next_piece(&mut self) -> pingora::Result<Option<Bytes>>;
}

/// Why an exchange produced no response.
#[derive(Debug)]
pub enum CallError {
    /// Reading the client's body failed (too slow, broken off).
    Downstream(Box<Error>),
    /// No healthy, untried target.
    NoTarget,
    /// The deadline passed.
    Timeout,
    /// Connecting failed on every target tried.
    Connect(Box<Error>),
    /// The target failed after the request was sent (reset, timeout, invalid answer).
    Failed(Box<Error>),
    /// The upstream had no free concurrency slot (`limits`): nothing was sent.
    Shed,
}

/// One request for [`UpstreamClient::exchange`].
pub struct Call<'a> {
    pub pool: &'a Arc<Pool>,
    /// What `balance: hash` hashes.
    pub key: &'a [u8],
    pub head: RequestHeader,
    pub body: Body<'a>,
    pub deadline: Option<Instant>,
    /// Sending it twice is harmless (see `retry::repeatable`): it may be retried after it
    /// may have reached the upstream.
    pub repeatable: bool,
    /// The request's trace: each attempt is a CLIENT span of it, and its `traceparent`.
    pub trace: Option<&'a crate::observe::trace::TraceContext>,
}

/// A response head, with the connection its body is read from.
pub struct Reply {
    pub head: ResponseHeader,
    session: HttpSession,
    /// Boxed as `Pool::peer` made it: a reply is moved through several futures, each of
    /// which would otherwise hold the peer's 680 bytes.
    peer: Box<HttpPeer>,
    /// The upstream's concurrency slot, held until the reply is released or dropped.
    _slot: Slot,
    /// The upstream's received-bytes counter.
    received: prometheus::IntCounter,
}

impl Reply {
    /// The next piece of the body; `None` at its end.
    pub async fn body_chunk(&mut self) -> pingora::Result<Option<Bytes>> {
        let piece = self.session.read_response_body().await?;
        if let Some(p) = &piece {
            self.received.inc_by(p.len() as u64);
        }
        Ok(piece)
    }

    /// The trailers after the body (where gRPC puts its status), once the body was read to
    /// its end; HTTP/1.1 answers have none here.
    pub async fn trailers(&mut self) -> pingora::Result<Option<http::HeaderMap>> {
        match &mut self.session {
            HttpSession::H2(h2) => h2.read_trailers().await,
            _ => Ok(None),
        }
    }
}

/// The gateway's own HTTP client: one per process, so its connections are reused across
/// requests and across live reloads.
pub struct UpstreamClient {
    connector: Connector,
}

impl Default for UpstreamClient {
    fn default() -> Self {
        UpstreamClient::new()
    }
}

impl UpstreamClient {
    pub fn new() -> UpstreamClient {
        UpstreamClient {
            connector: Connector::new(None),
        }
    }

    /// Make the exchange; the attempt in flight is kept in `current` (the request's context
    /// owns it, so logs name the target and a drop ends its in-flight count), and every
    /// target tried is added to `tried`.
    pub async fn exchange(
        &self,
        mut call: Call<'_>,
        tried: &mut Vec<SocketAddr>,
        current: &mut Option<Attempt>,
    ) -> Result<Reply, CallError> {
        // Waiting for a slot counts against the deadline like everything else.
        let acquire = call.pool.concurrency.acquire();
        let slot = match call.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), acquire)
                .await
                .map_err(|_| CallError::Timeout)?,
            None => acquire.await,
        }
        .map_err(|_| CallError::Shed)?;
        let relayed = matches!(call.body, Body::Relayed(_));
        let deadline = call.deadline;
        let work = self.exchange_untimed(&mut call, tried, current, slot);
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(result) => result,
                Err(_) => Err(CallError::Timeout),
            },
            None => work.await,
        };
        let unrecorded = current.as_mut().filter(|a| !a.recorded());
        if let (Err(CallError::Timeout), Some(attempt)) = (&outcome, unrecorded) {
            // Still relaying a slow client's body: the client's doing, not the target's.
            let client_side = relayed && !attempt.request_done();
            attempt.record(if client_side {
                Outcome::Aborted
            } else {
                Outcome::Failed
            });
        }
        outcome
    }

    /// The attempts of one call: each within its own deadline (`retry.per_try_timeout`), a
    /// failed one tried again when `upstream::retry` allows it.
    async fn exchange_untimed(
        &self,
        call: &mut Call<'_>,
        tried: &mut Vec<SocketAddr>,
        current: &mut Option<Attempt>,
        slot: Slot,
    ) -> Result<Reply, CallError> {
        let pool = call.pool;
        let retries = &pool.retries;
        retries.note_request();
        // One more try when a pooled connection turns out closed before any answer: the
        // upstream closed it while idle, so the request never reached it.
        let mut stale_retry = true;
        let mut first = true;
        loop {
            let selected = match first {
                true => pool.select(call.key, tried),
                false => pool.select_retry(call.key, tried),
            };
            first = false;
            let Some(selected) = selected else {
                return Err(CallError::NoTarget);
            };
            tried.push(selected.addr);
            let attempt_deadline = attempt_deadline(call.deadline, retries.config.per_try_timeout);
            let peer = pool.peer(selected.addr, attempt_deadline);
            let attempt = current.insert(Attempt::begin(Arc::clone(pool), selected, call.trace));
            let ended = match attempt_deadline {
                Some(d) => tokio::time::timeout_at(d.into(), self.attempt(&peer, call, attempt))
                    .await
                    .unwrap_or(Err(Ended::TimedOut)),
                None => self.attempt(&peer, call, attempt).await,
            };
            let resendable = matches!(call.body, Body::Full(_));
            let (failure, error) = match ended {
                Ok((head, session)) => {
                    let status = head.status;
                    let replay = Replay {
                        repeatable: call.repeatable,
                        body_resendable: resendable,
                        answer_started: false,
                    };
                    if status.is_server_error() {
                        if let Ok(wait) = self.decide(call, Failure::Status(status.as_u16()), replay, tried) {
                            // Its body is not read: the connection is closed, not reused.
                            drop(session);
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    return Ok(Reply {
                        head,
                        session,
                        peer,
                        _slot: slot,
                        received: pool.bytes_received.clone(),
                    });
                }
                Err(Ended::Downstream(e)) => {
                    // The client's fault, not the target's: nothing to record against it.
                    *current = None;
                    return Err(CallError::Downstream(e));
                }
                Err(Ended::Stale) if stale_retry && call.repeatable && resendable => {
                    stale_retry = false;
                    *current = None;
                    tried.pop();
                    continue;
                }
                Err(Ended::Stale) => (Failure::Reset, None),
                Err(Ended::Connect(e)) => (Failure::Connect, Some(CallError::Connect(e))),
                Err(Ended::Upstream(e)) => (
                    Failure::of_error(&e).unwrap_or(Failure::Reset),
                    Some(CallError::Failed(e)),
                ),
                Err(Ended::TimedOut) => (Failure::Timeout, None),
            };
            let request_done = current.as_ref().is_some_and(Attempt::request_done);
            if let Some(attempt) = current.as_mut() {
                // Still relaying a slow client's body: the client's doing, not the target's.
                attempt.record(match failure {
                    Failure::Connect => Outcome::ConnectFailed,
                    Failure::Timeout if !resendable && !request_done => Outcome::Aborted,
                    _ => Outcome::Failed,
                });
            }
            let replay = Replay {
                repeatable: call.repeatable,
                body_resendable: resendable,
                answer_started: false,
            };
            if let Ok(wait) = self.decide(call, failure, replay, tried) {
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(error.unwrap_or(match failure {
                Failure::Timeout => CallError::Timeout,
                _ => CallError::Failed(Error::explain(ErrorType::ConnectionClosed, "connection closed")),
            }));
        }
    }

    fn decide(&self, call: &Call<'_>, failure: Failure, replay: Replay, tried: &[SocketAddr]) -> Verdict {
        let pool = call.pool;
        pool.retries
            .decide(&pool.name, failure, replay, tried.len(), call.deadline, || {
                pool.can_retry(tried)
            })
    }

    /// One attempt: connect, send the request, read the answer's head.
    async fn attempt(
        &self,
        peer: &HttpPeer,
        call: &mut Call<'_>,
        attempt: &mut Attempt,
    ) -> Result<(ResponseHeader, HttpSession), Ended> {
        let (mut session, reused) = self
            .connector
            .get_http_session(peer)
            .await
            .map_err(Ended::Connect)?;
        attempt.mark_sent();
        match send(&mut session, &call.head, &mut call.body, attempt).await {
            Ok(()) => attempt.mark_request_done(),
            Err(Sent::Downstream(e)) => return Err(Ended::Downstream(e)),
            Err(Sent::Upstream(e)) => return Err(stale_or(e, reused)),
        }
        match read_head(&mut session).await {
            Ok(head) => {
                attempt.record(Outcome::Responded(head.status));
                Ok((head, session))
            }
            Err(e) => Err(stale_or(e, reused)),
        }
    }

    /// Return the connection for reuse once its body was read to the end (otherwise it is
    /// closed: a half-read response would poison the next request on it).
    pub async fn release(&self, reply: Reply) {
        self.connector
            .release_http_session(reply.session, &*reply.peer, Some(IDLE))
            .await;
    }
}

/// How an attempt ended without an answer.
enum Ended {
    Connect(Box<Error>),
    /// A pooled connection turned out closed before any answer.
    Stale,
    Upstream(Box<Error>),
    Downstream(Box<Error>),
    /// Its deadline (`per_try_timeout`, or the call's) passed.
    TimedOut,
}

/// A reused connection that failed before any answer was closed by the upstream while idle.
fn stale_or(e: Box<Error>, reused: bool) -> Ended {
    let closed = matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    );
    if reused && closed {
        Ended::Stale
    } else {
        Ended::Upstream(e)
    }
}

/// Which side failed while the request was being sent.
enum Sent {
    Upstream(Box<Error>),
    Downstream(Box<Error>),
}

async fn send(
    session: &mut HttpSession,
    head: &RequestHeader,
    body: &mut Body<'_>,
    attempt: &mut Attempt,
) -> Result<(), Sent> {
    let mut head = Box::new(head.clone());
    let method = head.method.clone();
    attempt.propagate(&method, &mut *head);
    session.write_request_header(head).await.map_err(Sent::Upstream)?;
    match body {
        Body::Full(bytes) if !bytes.is_empty() => {
            attempt.count_sent(bytes.len());
            session
                .write_request_body(bytes.clone(), true)
                .await
                .map_err(Sent::Upstream)?
        }
        Body::Full(_) => {}
        Body::Relayed(source) => {
            while let Some(piece) = source.next_piece().await.map_err(Sent::Downstream)? {
                attempt.count_sent(piece.len());
                session
                    .write_request_body(piece, false)
                    .await
                    .map_err(Sent::Upstream)?;
            }
        }
    }
    session.finish_request_body().await.map_err(Sent::Upstream)
}

async fn read_head(session: &mut HttpSession) -> pingora::Result<ResponseHeader> {
    // Informational answers (100 Continue, 103 Early Hints) precede the real one.
    loop {
        session.read_response_header().await?;
        let Some(resp) = session.response_header() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header");
        };
        let status = resp.status.as_u16();
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        if !(200..=599).contains(&status) {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, format!("status {status}"));
        }
        return Ok(resp.clone());
    }
}
