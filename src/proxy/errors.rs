//! Mapping proxy failures to the client-facing answer.

use pingora::{Error, ErrorSource, ErrorType};

use super::problem::Problem;

/// Raised by `upstream_peer` when every target is down (or already tried).
pub const NO_HEALTHY_TARGET: ErrorType = ErrorType::Custom("no healthy upstream target");
/// Raised when the route's deadline passed before the upstream answered.
pub const ROUTE_TIMEOUT: ErrorType = ErrorType::Custom("route timeout");

/// The problem to send for a failed proxy attempt; `None` when the client is gone.
pub fn problem_for(e: &Error) -> Option<Problem> {
    let p = match e.etype() {
        t if *t == NO_HEALTHY_TARGET => Problem::new(503, "no healthy upstream target is available"),
        t if *t == ROUTE_TIMEOUT => Problem::new(504, "the upstream did not answer in time"),
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
