//! Choosing the target for one attempt and describing the connection to it.

use std::time::{Duration, Instant};

use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

use super::ctx::RequestCtx;
use crate::config::HashKey;
use crate::upstream::Pool;

/// The bytes `hash` balancing keys on (empty for the other methods, which ignore it): client IP, a header, or a cookie (falling back to the
/// client IP when the header or cookie is absent, so such clients are still spread and sticky).
pub fn hash_key(pool: &Pool, req: &RequestHeader, ctx: &RequestCtx) -> Vec<u8> {
    if !pool.hashes() {
        return Vec::new();
    }
    let from_request = match &pool.hash_key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => cookie(req, name).map(|v| v.as_bytes().to_vec()),
    };
    from_request.unwrap_or_else(|| {
        ctx.client_ip
            .map(|ip| ip.to_string().into_bytes())
            .unwrap_or_default()
    })
}

fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Connection settings for one attempt: the pool's timeouts, capped by what is left of the
/// route's deadline so a slow upstream turns into a 504 on time.
pub fn build_peer(pool: &Pool, addr: std::net::SocketAddr, deadline: Option<Instant>) -> Box<HttpPeer> {
    let remaining = deadline.map(|d| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    });
    let cap = |d: Duration| remaining.map_or(d, |r| d.min(r));
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(cap(pool.connect_timeout));
    peer.options.total_connection_timeout = Some(cap(pool.connect_timeout));
    peer.options.read_timeout = Some(cap(pool.read_timeout));
    peer.options.write_timeout = Some(cap(pool.write_timeout));
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    Box::new(peer)
}
