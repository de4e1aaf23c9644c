//! What the upstream learns about the client: `X-Forwarded-*`, `X-Real-IP`, the request id,
//! and the removal of hop-by-hop headers from responses.
//!
//! On requests, Pingora itself removes hop-by-hop headers and those named in `Connection`
//! before `upstream_request_filter` runs (the standard `HttpUpstreamRequestPolicy` every
//! `HttpPeer` carries; only WebSocket upgrades pass), so the gateway does not repeat it.
//! `tests/routing.rs` attacks that removal.
//!
//! A client that is not a trusted proxy cannot plant forwarding headers: its copies are
//! replaced, never extended. A trusted proxy's chain is extended with the peer address.

use std::net::IpAddr;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

use crate::config::cidr::Cidr;
use crate::transform::headers::HeaderEdit;

// Header names as constants: built at compile time, so the request path never parses them.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The forwarding headers a trusted proxy's request carries (and the gateway extends).
pub static FORWARDING_HEADERS: [HeaderName; 4] =
    [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, FORWARDED];

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1). A `static`, not a
/// `const`: a `const` array is built and dropped again at every use (callgrind showed it per
/// header name of every answer).
static HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
];

pub fn is_trusted(client: Option<IpAddr>, trusted: &[Cidr]) -> bool {
    crate::config::cidr::any_contains(trusted, client)
}

/// The client's address as `trusted_proxies` determine it: the TCP peer, unless the peer is a
/// trusted proxy; then the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy
/// (each trusted hop appended the address it saw; entries left of the first untrusted one are
/// the client's own claims). `None` when that entry is not an address, and when a trusted
/// proxy named no client at all (it would otherwise stand for every client behind it).
pub fn client_address(req: &RequestHeader, peer: Option<IpAddr>, trusted: &[Cidr]) -> Option<IpAddr> {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = None;
    for value in req.headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let text = value.to_str().ok()?;
        for entry in text.rsplit(',') {
            let entry = entry.trim();
            let ip = entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))?
                .to_canonical();
            if !is_trusted(Some(ip), trusted) {
                return Some(ip);
            }
            client = Some(ip);
        }
    }
    client
}

/// Set the forwarding headers on the upstream request.
pub fn set_forwarding(
    req: &mut impl HeaderEdit,
    client: Option<IpAddr>,
    host: &str,
    trusted: bool,
    https: bool,
) -> Result<()> {
    let client = client.map_or(HeaderValue::from_static("unknown"), ip_value);
    let prior: Vec<&[u8]> = if trusted {
        req.map()
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    } else {
        Vec::new()
    };
    let chain = if prior.is_empty() {
        client.clone()
    } else {
        let mut chain = prior.join(&b", "[..]);
        chain.extend_from_slice(b", ");
        chain.extend_from_slice(client.as_bytes());
        HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)).unwrap_or_else(|_| client.clone())
    };
    req.put(X_FORWARDED_FOR, chain);
    if !trusted || !req.map().contains_key(&X_FORWARDED_PROTO) {
        let proto = if https { "https" } else { "http" };
        req.put(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !trusted || !req.map().contains_key(&X_FORWARDED_HOST) {
        let host = HeaderValue::from_str(host).map_err(|_| {
            pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "host is not a header value",
            )
        })?;
        req.put(X_FORWARDED_HOST, host);
    }
    if !trusted {
        req.remove(&FORWARDED);
        req.put(X_REAL_IP, client);
    }
    Ok(())
}

/// The client address as a header value; IPv4 (the common case) without the formatting
/// machinery.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V4(v4) => {
            let mut out = Vec::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string().into_bytes(),
    };
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Remove a header only if present: removal also rebuilds Pingora's case map, and most
/// requests carry none of these.
pub fn remove(req: &mut impl HeaderEdit, name: &HeaderName) {
    req.remove(name);
}

pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(resp, switching);
}

/// The same for a request head the gateway sends itself (Pingora does it on the proxied
/// path): such requests never upgrade, so `Upgrade` goes too.
pub fn strip_hop_by_hop_request(req: &mut RequestHeader) {
    strip_hop_by_hop(req, false);
}

/// A request or response head, for [`strip_hop_by_hop`].
trait Head {
    fn map(&self) -> &http::HeaderMap;
    fn drop_header(&mut self, name: &HeaderName);
}

impl Head for RequestHeader {
    fn map(&self) -> &http::HeaderMap {
        &self.headers
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl Head for ResponseHeader {
    fn map(&self) -> &http::HeaderMap {
        &self.headers
    }
    fn drop_header(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

/// Remove the headers `Connection` names, the standard hop-by-hop ones, and `Upgrade` (kept
/// with `Connection` when the protocol switches). Removal only where present: it rebuilds
/// Pingora's case map, and most heads carry none of these.
///
/// One pass over the head's names (a handful) rather than a lookup per hop-by-hop name; the
/// standard names found are noted as bits, so a head with only `Connection: keep-alive` (most
/// upstream answers) allocates nothing.
fn strip_hop_by_hop(head: &mut impl Head, switching: bool) {
    /// Bit `HOP_BY_HOP.len()`: `Upgrade`.
    const UPGRADE_BIT: u32 = 1 << HOP_BY_HOP.len();
    let mut found = 0u32;
    for name in head.map().keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            found |= 1 << i;
        } else if name == UPGRADE {
            found |= UPGRADE_BIT;
        }
    }
    if found == 0 {
        return;
    }
    // Bit 0 is `Connection`: only then can it name other headers.
    let nominated = match found & 1 {
        1 => connection_nominated(head.map()),
        _ => Vec::new(),
    };
    if switching {
        // The handshake's answer keeps `Connection: upgrade` and `Upgrade`.
        found &= !(1 | UPGRADE_BIT);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if found & (1 << i) != 0 {
            head.drop_header(name);
        }
    }
    if found & UPGRADE_BIT != 0 {
        head.drop_header(&UPGRADE);
    }
    for name in nominated {
        if !(switching && name == UPGRADE) && head.map().contains_key(&name) {
            head.drop_header(&name);
        }
    }
}

/// The field names a `Connection` header nominates as hop-by-hop (RFC 9110 §7.6.1), other than
/// the `close` and `keep-alive` options. Allocates only when it names something.
fn connection_nominated(headers: &http::HeaderMap) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                out.push(name);
            }
        }
    }
    out
}

/// Whether the request may go upstream as a protocol upgrade: only a WebSocket handshake
/// (`GET` with exactly `Upgrade: websocket`), and only on a route that enables it. Any other
/// upgrade (`h2c`, …) would open a tunnel in which later requests bypass routing and auth.
pub fn websocket_upgrade_allowed(req: &RequestHeader, route_allows: bool) -> bool {
    websocket_upgrade(&req.method, &req.headers, route_allows)
}

/// [`websocket_upgrade_allowed`] for a head's parts.
pub fn websocket_upgrade(method: &http::Method, headers: &http::HeaderMap, route_allows: bool) -> bool {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    route_allows && websocket && method == http::Method::GET
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
    // 32 hex digits without the formatting machinery: this runs for most requests.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = rand::random::<u128>();
    let mut id = String::with_capacity(32);
    for _ in 0..32 {
        id.push(char::from(HEX[(n & 0xf) as usize]));
        n >>= 4;
    }
    id
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
            true,
        )
        .unwrap();
        assert_eq!(r.headers.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "10.0.0.9");
        assert_eq!(r.headers.get("x-real-ip").unwrap(), "10.0.0.9");
        assert!(r.headers.get("forwarded").is_none());
        assert_eq!(r.headers.get("x-forwarded-host").unwrap(), "api.example.com");
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut r = req(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        set_forwarding(&mut r, Some("10.0.0.9".parse().unwrap()), "h", true, false).unwrap();
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "1.2.3.4, 10.0.0.9");
        assert_eq!(r.headers.get("x-forwarded-proto").unwrap(), "https");
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn response_hop_by_hop_removed() {
        let mut r = resp(
            200,
            &[
                ("Connection", "Keep-Alive, X-Secret,, close"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Trailer", "x"),
                ("Upgrade", "h2c"),
                ("X-Kept", "1"),
            ],
        );
        strip_hop_by_hop_response(&mut r);
        for h in ["connection", "x-secret", "keep-alive", "trailer", "upgrade"] {
            assert!(r.headers.get(h).is_none(), "{h}");
        }
        assert_eq!(r.headers.get("x-kept").unwrap(), "1");
        let mut ws = resp(101, &[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        strip_hop_by_hop_response(&mut ws);
        assert_eq!(ws.headers.get("upgrade").unwrap(), "websocket");
        assert_eq!(ws.headers.get("connection").unwrap(), "Upgrade");
        // A switch keeps only those two: the other hop-by-hop headers and a nominated one go.
        let mut ws = resp(
            101,
            &[
                ("Connection", "Upgrade, X-Hop"),
                ("Upgrade", "websocket"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
            ],
        );
        strip_hop_by_hop_response(&mut ws);
        for h in ["x-hop", "keep-alive", "proxy-connection"] {
            assert!(ws.headers.get(h).is_none(), "{h}");
        }
        assert_eq!(ws.headers.get("upgrade").unwrap(), "websocket");
        // Every standard one, each alone.
        for h in &HOP_BY_HOP {
            let mut r = resp(200, &[(h.as_str(), "x"), ("X-Kept", "1")]);
            strip_hop_by_hop_response(&mut r);
            assert!(r.headers.get(h).is_none(), "{h}");
            assert_eq!(r.headers.len(), 1, "{h}");
        }
    }

    #[test]
    fn only_websocket_handshakes_upgrade() {
        let ws = req(&[("upgrade", "websocket"), ("connection", "Upgrade")]);
        assert!(websocket_upgrade_allowed(&ws, true));
        assert!(!websocket_upgrade_allowed(&ws, false), "the route must enable it");
        for other in ["h2c", "websocket, h2c", "TLS/1.2"] {
            let r = req(&[("upgrade", other), ("connection", "Upgrade")]);
            assert!(!websocket_upgrade_allowed(&r, true), "{other}");
        }
        let mut post = req(&[("upgrade", "websocket")]);
        post.set_method(http::Method::POST);
        assert!(!websocket_upgrade_allowed(&post, true));
    }

    #[test]
    fn client_addresses() {
        for ip in [
            "0.0.0.0",
            "10.0.0.9",
            "127.0.0.1",
            "192.168.100.255",
            "8.80.9.199",
            "::1",
            "2001:db8::7",
        ] {
            assert_eq!(ip_value(ip.parse().unwrap()), ip);
        }
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(&req(&[("x-request-id", "abc-123")])), "abc-123");
        assert_eq!(request_id(&req(&[("x-request-id", "bad id")])).len(), 32);
        assert_eq!(request_id(&req(&[])).len(), 32);
    }
}
