//! WebSocket upgrades: only on routes with `websocket`, only a valid RFC 6455 handshake; after
//! the 101 the connection lives by its own clock (an idle timeout and an optional maximum
//! lifetime, not the route's deadline), and the open ones are a gauge.

use std::time::{Duration, Instant};

use http::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use pingora::http::RequestHeader;

use super::problem::Problem;
use crate::observe::metrics;
use crate::route::Route;

/// The handshake asks for a WebSocket (any spelling of `Upgrade: websocket`).
pub fn is_handshake(req: &RequestHeader) -> bool {
    req.headers
        .get_all(UPGRADE)
        .iter()
        .any(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// Refuse a WebSocket handshake the route cannot take: 400 where the route has no
/// `websocket`, 426 naming version 13 for another protocol version (RFC 6455 §4.4).
pub fn check_handshake(route: &Route, req: &RequestHeader) -> Result<(), Problem> {
    if !is_handshake(req) {
        return Ok(());
    }
    if !route.websocket {
        return Err(Problem::new(400, "this route does not accept WebSocket upgrades"));
    }
    let version_13 = req
        .headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"13");
    if !version_13 {
        return Err(Problem::new(426, "WebSocket version 13 is required")
            .with_header(SEC_WEBSOCKET_VERSION, "13".to_string()));
    }
    Ok(())
}

/// An upgraded connection: counted while it lives, and when it must end.
pub struct Open {
    /// The end of its `max_lifetime`, if it has one.
    pub ends: Option<Instant>,
}

impl Open {
    pub fn begin(max_lifetime: Option<Duration>) -> Open {
        metrics::get().websocket_connections.inc();
        Open {
            ends: max_lifetime.and_then(|d| Instant::now().checked_add(d)),
        }
    }

    /// Past its maximum lifetime: the next frame in either direction closes it.
    pub fn expired(&self) -> bool {
        self.ends.is_some_and(|e| Instant::now() >= e)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::get().websocket_connections.dec();
    }
}
