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
}

/// A response head, with the connection its body is read from.
pub struct Reply {
    pub head: ResponseHeader,
    session: HttpSession,
    peer: HttpPeer,
    /// The upstream's concurrency slot, held until the reply is released or dropped.
    _slot: Slot,
}

impl Reply {
    /// The next piece of the body; `None` at its end.
    pub async fn body_chunk(&mut self) -> pingora::Result<Option<Bytes>> {
        self.session.read_response_body().await
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
        let work = self.exchange_untimed(
            call.pool,
            call.key,
            &call.head,
            &mut call.body,
            call.deadline,
            tried,
            current,
            slot,
        );
        let outcome = match call.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(result) => result,
                Err(_) => Err(CallError::Timeout),
            },
            None => work.await,
        };
        if let (Err(CallError::Timeout), Some(attempt)) = (&outcome, current.as_mut()) {
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

    #[allow(clippy::too_many_arguments)]
    async fn exchange_untimed(
        &self,
        pool: &Arc<Pool>,
        key: &[u8],
        head: &RequestHeader,
        body: &mut Body<'_>,
        deadline: Option<Instant>,
        tried: &mut Vec<SocketAddr>,
        current: &mut Option<Attempt>,
        slot: Slot,
    ) -> Result<Reply, CallError> {
        // One more try when a pooled connection turns out closed before any answer: the
        // upstream closed it while idle, so the request never reached it.
        let mut stale_retry = true;
        loop {
            let Some(selected) = pool.select(key, tried) else {
                return Err(CallError::NoTarget);
            };
            tried.push(selected.addr);
            let peer = pool.peer(selected.addr, deadline);
            let attempt = current.insert(Attempt::begin(Arc::clone(pool), selected));
            let (mut session, reused) = match self.connector.get_http_session(&*peer).await {
                Ok(connected) => connected,
                Err(e) => {
                    attempt.record(Outcome::ConnectFailed);
                    // The first attempt plus `retries` more, while an untried target exists.
                    if tried.len() <= pool.retries && pool.select(b"", tried).is_some() {
                        continue;
                    }
                    return Err(CallError::Connect(e));
                }
            };
            attempt.mark_sent();
            let sent = send(&mut session, head, body)
                .await
                .map(|()| attempt.mark_request_done());
            let answered = match sent {
                Ok(()) => read_head(&mut session).await.map_err(Sent::Upstream),
                Err(e) => Err(e),
            };
            match answered {
                Ok(head) => {
                    attempt.record(Outcome::Responded(head.status));
                    return Ok(Reply {
                        head,
                        session,
                        peer: *peer,
                        _slot: slot,
                    });
                }
                Err(Sent::Downstream(e)) => {
                    // The client's fault, not the target's: nothing to record against it.
                    *current = None;
                    return Err(CallError::Downstream(e));
                }
                Err(Sent::Upstream(e)) => {
                    let closed_idle = reused
                        && matches!(
                            e.etype(),
                            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
                        );
                    // Never for a method that may not be repeated: the write may have arrived.
                    let repeatable = head.method.is_idempotent();
                    if closed_idle && stale_retry && repeatable && matches!(body, Body::Full(_)) {
                        stale_retry = false;
                        *current = None;
                        tried.pop();
                        continue;
                    }
                    attempt.record(Outcome::Failed);
                    return Err(CallError::Failed(e));
                }
            }
        }
    }

    /// Return the connection for reuse once its body was read to the end (otherwise it is
    /// closed: a half-read response would poison the next request on it).
    pub async fn release(&self, reply: Reply) {
        self.connector
            .release_http_session(reply.session, &reply.peer, Some(IDLE))
            .await;
    }
}

/// Which side failed while the request was being sent.
enum Sent {
    Upstream(Box<Error>),
    Downstream(Box<Error>),
}

async fn send(session: &mut HttpSession, head: &RequestHeader, body: &mut Body<'_>) -> Result<(), Sent> {
    session
        .write_request_header(Box::new(head.clone()))
        .await
        .map_err(Sent::Upstream)?;
    match body {
        Body::Full(bytes) if !bytes.is_empty() => session
            .write_request_body(bytes.clone(), true)
            .await
            .map_err(Sent::Upstream)?,
        Body::Full(_) => {}
        Body::Relayed(source) => {
            while let Some(piece) = source.next_piece().await.map_err(Sent::Downstream)? {
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
