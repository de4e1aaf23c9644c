//! Retries on the proxied path: what Pingora's retry loop needs from the hooks. The decision
//! itself is `upstream::retry`'s, shared with the gateway's own exchanges.
//!
//! Pingora calls `upstream_peer` again for an error marked retryable; the body sent so far is
//! replayed from its retry buffer (64 KiB; beyond it the body cannot be resent and the
//! request is not retried after it may have arrived).

use std::time::Instant;

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, RetryType};

use super::ctx::RequestCtx;
use super::errors;
use crate::upstream::attempt::Outcome;
use crate::upstream::retry::{Failure, Replay};

/// Whether the attempt that just failed with `failure` is tried again; when it is, the
/// backoff waits in `ctx.upstream.backoff` for the next `upstream_peer`.
pub fn grant(session: &Session, ctx: &mut RequestCtx, failure: Failure) -> bool {
    let Some(pool) = ctx.pool() else {
        return false;
    };
    let replay = Replay {
        repeatable: ctx.upstream.repeatable,
        body_resendable: !session.as_ref().retry_buffer_truncated(),
        answer_started: answer_started(session),
    };
    let tried = &ctx.upstream.tried;
    let verdict = pool.retries.decide(
        &pool.name,
        failure,
        replay,
        tried.len(),
        ctx.admission.deadline,
        || pool.can_retry(tried),
    );
    match verdict {
        Ok(wait) => {
            ctx.upstream.backoff = Some(wait);
            ctx.upstream.retries += 1;
            true
        }
        Err(_) => false,
    }
}

/// An answer whose status `retry.on` lists, turned into a retryable error before any of it
/// reaches the client (`None`: the answer goes to the client as it is).
pub fn retry_answer(session: &Session, ctx: &mut RequestCtx, status: http::StatusCode) -> Option<Box<Error>> {
    if !status.is_server_error() || !grant(session, ctx, Failure::Status(status.as_u16())) {
        return None;
    }
    let mut e = Error::explain(errors::RETRIED_ANSWER, format!("status {status}")).into_up();
    e.set_retry(true);
    Some(e)
}

/// `error_while_proxy`: record how the attempt failed and decide whether it is tried again.
pub fn after_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    if *e.etype() == errors::RETRIED_ANSWER {
        // Decided (and recorded) when the answer arrived.
        return e;
    }
    let answered = ctx.upstream.current.as_ref().is_some_and(|a| a.responded());
    // A pooled connection the upstream had closed while idle: the request most likely never
    // reached it. Tried again once on a new connection (as Pingora does by default), without
    // counting against the target, the attempts or the budget.
    let stale = matches!(e.retry, RetryType::ReusedOnly) && client_reused && !answered;
    if stale
        && !ctx.upstream.stale_retried
        && !answer_started(session)
        && !session.as_ref().retry_buffer_truncated()
        && ctx.upstream.repeatable
    {
        ctx.upstream.stale_retried = true;
        ctx.upstream.current = None;
        e.set_retry(true);
        return e;
    }
    let client_side = client_side(&e, session);
    super::record_attempt(
        ctx,
        if client_side {
            Outcome::Aborted
        } else {
            Outcome::Failed
        },
    );
    let retry = !client_side
        && !answered
        && Failure::of_error(&e).is_some_and(|failure| grant(&*session, ctx, failure));
    e.set_retry(retry);
    e
}

/// Whether some of the answer went to the client (a forwarded `100 Continue` is not an answer).
fn answer_started(session: &Session) -> bool {
    session
        .response_written()
        .is_some_and(|r| !r.status.is_informational())
}

/// A client that went away, or had not finished sending its body (an upstream that timed
/// out waiting for it), is never its target's fault.
pub fn client_side(e: &Error, session: &mut Session) -> bool {
    *e.esource() == ErrorSource::Downstream || !session.is_body_done()
}

/// Before a retry's `upstream_peer`: the failed attempt is over (it no longer counts as in
/// flight, and nothing later records against it), the body is counted again as Pingora replays
/// it, and the backoff is waited, cut short by the deadline.
pub async fn prepare(ctx: &mut RequestCtx) {
    ctx.upstream.current = None;
    ctx.admission.body_received = 0;
    let Some(wait) = ctx.upstream.backoff.take() else {
        return;
    };
    let until = Instant::now() + wait;
    let until = ctx.admission.deadline.map_or(until, |d| d.min(until));
    if until > Instant::now() {
        tokio::time::sleep_until(until.into()).await;
    }
}
