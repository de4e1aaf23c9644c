//! Mapping proxy failures to the client-facing answer.

use pingora::{Error, ErrorSource, ErrorType};

use super::problem::Problem;

/// Raised by `upstream_peer` when every target is down (or already tried).
pub const NO_HEALTHY_TARGET: ErrorType = ErrorType::Custom("no healthy upstream target");
/// Raised when the route's deadline passed before the upstream answered.
pub const ROUTE_TIMEOUT: ErrorType = ErrorType::Custom("route timeout");

/// Raised when a request body arrives too slowly (see `RequestLimits::body_overdue`).
pub const BODY_TIMEOUT: ErrorType = ErrorType::Custom("request body too slow");

/// Raised when a request body grows past the route's `max_body` (413).
pub const BODY_TOO_LARGE: ErrorType = ErrorType::Custom("request body too large");

/// The error that stops relaying a body past `max_body`: the client's doing.
pub fn body_too_large() -> Box<Error> {
    Error::explain(BODY_TOO_LARGE, "request body larger than max_body").into_down()
}

/// Raised for an upstream answer retried instead of relayed (`retry.on` lists its status).
pub const RETRIED_ANSWER: ErrorType = ErrorType::Custom("upstream answer retried");

/// Raised for an upstream answer the gateway will not relay.
pub const BAD_UPSTREAM_RESPONSE: ErrorType = ErrorType::Custom("invalid upstream response");

/// Statuses outside 100–599 are not HTTP, and a 101 the request did not ask for would switch
/// the client's connection to a protocol it never negotiated.
pub fn check_upstream_status(status: u16, upgrade_requested: bool) -> pingora::Result<()> {
    if !(100..=599).contains(&status) {
        return Error::e_explain(BAD_UPSTREAM_RESPONSE, format!("status {status}"));
    }
    if status == 101 && !upgrade_requested {
        return Error::e_explain(BAD_UPSTREAM_RESPONSE, "101 without an upgrade request");
    }
    Ok(())
}

/// The problem to send for a failed proxy attempt; `None` when the client is gone.
pub fn problem_for(e: &Error) -> Option<Problem> {
    let p = match e.etype() {
        t if *t == NO_HEALTHY_TARGET => Problem::new(503, "no healthy upstream target is available"),
        t if *t == ROUTE_TIMEOUT => Problem::new(504, "the upstream did not answer in time"),
        t if *t == BAD_UPSTREAM_RESPONSE => Problem::new(502, "the upstream sent an invalid response"),
        t if *t == RETRIED_ANSWER => Problem::new(502, "the upstream failed to answer"),
        t if *t == BODY_TIMEOUT => body_too_slow(),
        t if *t == BODY_TOO_LARGE => Problem::body_too_large(),
        // The client stopped sending its body (the downstream read timeout).
        ErrorType::ReadTimedout if *e.esource() == ErrorSource::Downstream => body_too_slow(),
        // The client stopped reading: nobody to answer.
        ErrorType::WriteTimedout if *e.esource() == ErrorSource::Downstream => return None,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            Problem::new(504, "the upstream did not answer in time")
        }
        ErrorType::HTTPStatus(code) if (400..600).contains(code) => Problem::new(*code, "request failed"),
        _ => match e.esource() {
            ErrorSource::Upstream => Problem::new(502, "the upstream failed to answer"),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => return None,
                _ => Problem::new(400, "the request could not be read").closing(),
            },
            ErrorSource::Internal | ErrorSource::Unset => Problem::new(502, "the upstream failed to answer"),
        },
    };
    Some(p)
}

fn body_too_slow() -> Problem {
    Problem::new(408, "the request body was not received in time").closing()
}
