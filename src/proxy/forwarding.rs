//! What the upstream learns about the client: `X-Forwarded-*`, `X-Real-IP`, the request id,
//! and the removal of hop-by-hop headers.
//!
//! A client that is not a trusted proxy cannot plant forwarding headers: its copies are
//! replaced, never extended. A trusted proxy's chain is extended with the peer address.

use std::net::IpAddr;

use http::header::{CONNECTION, UPGRADE};
use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use crate::config::cidr::Cidr;

// Header names as constants: built at compile time, so the request path never parses them.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
];

pub fn is_trusted(client: Option<IpAddr>, trusted: &[Cidr]) -> bool {
    client.is_some_and(|ip| trusted.iter().any(|c| c.contains(ip)))
}

/// Set the forwarding headers on the upstream request.
pub fn set_forwarding(
    req: &mut RequestHeader,
    client: Option<IpAddr>,
    host: &str,
    trusted: bool,
) -> Result<()> {
    let client = client
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    let chain = if trusted {
        let prior: Vec<&str> = req
            .headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            client.clone()
        } else {
            format!("{}, {client}", prior.join(", "))
        }
    } else {
        client.clone()
    };
    req.insert_header(X_FORWARDED_FOR, chain)?;
    if !trusted || !req.headers.contains_key(&X_FORWARDED_PROTO) {
        req.insert_header(X_FORWARDED_PROTO, "http")?;
    }
    if !trusted || !req.headers.contains_key(&X_FORWARDED_HOST) {
        req.insert_header(X_FORWARDED_HOST, host)?;
    }
    if !trusted {
        remove(req, &FORWARDED);
        req.insert_header(X_REAL_IP, client)?;
    }
    Ok(())
}

/// Remove hop-by-hop headers, including any named in `Connection`. A WebSocket-style
/// `Upgrade` handshake keeps `Upgrade` and `Connection: upgrade` so it can still be proxied.
pub fn strip_hop_by_hop_request(req: &mut RequestHeader) -> Result<()> {
    let upgrading =
        req.headers.contains_key(UPGRADE) && connection_tokens(&req.headers).iter().any(|t| t == "upgrade");
    for name in connection_tokens(&req.headers) {
        if name != "upgrade" {
            req.remove_header(&name);
        }
    }
    for name in &HOP_BY_HOP {
        remove(req, name);
    }
    if upgrading {
        req.insert_header(CONNECTION, "upgrade")?;
    } else {
        remove(req, &UPGRADE);
    }
    Ok(())
}

/// Remove a header only if present: removal also rebuilds Pingora's case map, and most
/// requests carry none of these.
pub fn remove(req: &mut RequestHeader, name: &HeaderName) {
    if req.headers.contains_key(name) {
        req.remove_header(name);
    }
}

pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    for name in connection_tokens(&resp.headers) {
        if !(switching && name == "upgrade") {
            resp.remove_header(&name);
        }
    }
    for name in &HOP_BY_HOP {
        if !(switching && name == CONNECTION) && resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
    if !switching && resp.headers.contains_key(UPGRADE) {
        resp.remove_header(&UPGRADE);
    }
}

fn connection_tokens(headers: &http::HeaderMap) -> Vec<String> {
    if !headers.contains_key(CONNECTION) {
        return Vec::new();
    }
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && HeaderName::from_bytes(t.as_bytes()).is_ok())
        .collect()
}

/// Keep a client's request id if it is short and plain (it ends up in logs), else make one.
pub fn request_id(req: &RequestHeader) -> String {
    if let Some(v) = req.headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
        {
            if let Ok(s) = v.to_str() {
                return s.to_string();
            }
        }
    }
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        crate::test_util::request_header("/", headers)
    }

    #[test]
    fn untrusted_client_cannot_spoof() {
        let mut r = req(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        set_forwarding(
            &mut r,
            Some("10.0.0.9".parse().unwrap()),
            "api.example.com",
            false,
        )
        .unwrap();
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(r.headers.get("x-real-ip").unwrap(), "10.0.0.9");
        assert!(r.headers.get("forwarded").is_none());
        assert_eq!(r.headers.get("x-forwarded-host").unwrap(), "api.example.com");
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut r = req(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        set_forwarding(&mut r, Some("10.0.0.9".parse().unwrap()), "h", true).unwrap();
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
        assert_eq!(r.headers.get("x-forwarded-proto").unwrap(), "https");
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut r = req(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
        ]);
        strip_hop_by_hop_request(&mut r).unwrap();
        for h in ["connection", "x-secret", "keep-alive", "te"] {
            assert!(r.headers.get(h).is_none(), "{h}");
        }
        let mut ws = req(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop_request(&mut ws).unwrap();
        assert_eq!(ws.headers.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(&req(&[("x-request-id", "abc-123")])), "abc-123");
        assert_eq!(request_id(&req(&[("x-request-id", "bad id")])).len(), 32);
        assert_eq!(request_id(&req(&[])).len(), 32);
    }
}
