//! The bytes `balance: hash` keys target selection on.

use pingora::http::RequestHeader;

use crate::config::HashKey;
use crate::upstream::Pool;

/// The bytes `hash` balancing keys on (empty for the other methods, which ignore it): client IP, a header, or a cookie (falling back to the
/// client IP when the header or cookie is absent, so such clients are still spread and sticky).
pub fn hash_key(pool: &Pool, req: &RequestHeader, client_ip: Option<std::net::IpAddr>) -> Vec<u8> {
    if !pool.hashes() {
        return Vec::new();
    }
    let from_request = match &pool.hash_key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()),
        HashKey::Cookie(name) => cookie(req, name).map(|v| v.as_bytes().to_vec()),
    };
    from_request.unwrap_or_else(|| {
        client_ip
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
