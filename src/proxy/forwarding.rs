//! What the upstream learns about the client: `X-Forwarded-*`, `X-Real-IP`, the request id,
//! and the removal of hop-by-hop headers from requests and responses.
//!
//! On requests the gateway removes them itself, in one pass over the head's names, for every
//! request it sends upstream: proxied, its own exchanges, aggregation parts. Pingora's own
//! removal (the standard `HttpUpstreamRequestPolicy`) is switched off on the gateway's peers:
//! it looked up and removed ten names one by one and parsed `Connection` again, about 3.6k
//! instructions per request. `request_checks::check_framing` refuses the `Connection` headers
//! Pingora's policy refuses. `tests/routing.rs` attacks both.
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

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), `Connection` and
/// `Upgrade` first; a request also loses its framing (Pingora frames the body it sends
/// upstream: a length, or chunked) and an h2c upgrade's `HTTP2-Settings`. A `static`, not a
/// `const`: a `const` array is built and dropped again at every use (callgrind showed it per
/// header name of every answer).
static HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    HeaderName::from_static("http2-settings"),
];

/// How many of [`HOP_BY_HOP`] a response loses: its framing stays (Pingora reframes it).
const RESPONSE_HOP_BY_HOP: usize = 8;

/// The names a client's `Connection` may not nominate: the gateway sets them itself, and a
/// nomination would remove the gateway's copy (Pingora's policy refuses the same).
const PROTECTED_FROM_NOMINATION: [&str; 4] =
    ["host", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/// At most this many `Connection` tokens (Pingora's limit: the parse is bounded).
const MAX_CONNECTION_TOKENS: usize = 9;

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
        // The client's `Host` as sent, when that is already the canonical form (the usual
        // case): a shared handle instead of a copy and a check.
        let sent = req
            .map()
            .get(http::header::HOST)
            .filter(|v| v.as_bytes() == host.as_bytes())
            .cloned();
        let host = match sent {
            Some(v) => v,
            None => HeaderValue::from_str(host).map_err(|_| {
                pingora::Error::explain(
                    pingora::ErrorType::InvalidHTTPHeader,
                    "host is not a header value",
                )
            })?,
        };
        req.put(X_FORWARDED_HOST, host);
    }
    if !trusted {
        req.remove(&FORWARDED);
        req.put(X_REAL_IP, client);
    }
    Ok(())
}

/// The client address as a header value; IPv4 (the common case) without the formatting
/// machinery. One allocation, shared by the headers that carry it (`X-Forwarded-For`,
/// `X-Real-IP`): a `Vec`'s bytes took a second one for the sharing.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V4(v4) => {
            let mut out = Ipv4Text {
                text: [0; 15],
                len: 0,
            };
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
            bytes::Bytes::from_owner(out)
        }
        IpAddr::V6(v6) => bytes::Bytes::from(v6.to_string()),
    };
    HeaderValue::from_maybe_shared(text).unwrap_or(HeaderValue::from_static("unknown"))
}

/// A dotted-quad IPv4 address written in place (at most 15 bytes).
struct Ipv4Text {
    text: [u8; 15],
    len: usize,
}

impl Ipv4Text {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.text.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }
}

impl AsRef<[u8]> for Ipv4Text {
    fn as_ref(&self) -> &[u8] {
        self.text.get(..self.len).unwrap_or_default()
    }
}

pub fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop(resp, &HOP_BY_HOP[..RESPONSE_HOP_BY_HOP], switching, None);
}

/// The same for a request head on its way upstream, framing included. An upgrade is never
/// passed through as the client spelled it: [`crate::proxy::edges::upstream_head`] writes
/// the WebSocket handshake's `Connection` and `Upgrade` again where the route allows one.
pub fn strip_hop_by_hop_request(req: &mut impl HeaderEdit) {
    strip_hop_by_hop(req, &HOP_BY_HOP, false, None);
}

/// [`strip_hop_by_hop_request`] for a request Pingora is sending from an HTTP/1 client to an
/// HTTP/2 upstream: Pingora has removed `Connection` from it already (HTTP/2 has none), so
/// the headers the client's `Connection` named are read from the client's own head.
pub fn strip_hop_by_hop_named_by(req: &mut impl HeaderEdit, client: &http::HeaderMap) {
    strip_hop_by_hop(req, &HOP_BY_HOP, false, Some(client));
}

/// Remove the headers `Connection` names and the hop-by-hop ones in `names` (`Connection` and
/// `Upgrade` kept when the protocol switches). Removal only where present: on a Pingora head
/// it rebuilds the case map, and most heads carry none of these.
///
/// One pass over the head's names (a handful) rather than a lookup per hop-by-hop name; the
/// names found are noted as bits, so a head with only `Connection: keep-alive` (most upstream
/// answers) allocates nothing. `named_by`: the head whose `Connection` names more, when it is
/// not `head` itself.
fn strip_hop_by_hop(
    head: &mut impl HeaderEdit,
    names: &[HeaderName],
    switching: bool,
    named_by: Option<&http::HeaderMap>,
) {
    let mut found = 0u32;
    for name in head.map().keys() {
        if let Some(i) = hop_by_hop_index(name).filter(|&i| i < names.len()) {
            found |= 1 << i;
        }
    }
    // Bit 0 is `Connection`: only then can it name other headers.
    let nominated = match named_by {
        Some(client) => connection_nominated(client),
        None if found & 1 == 1 => connection_nominated(head.map()),
        None => Vec::new(),
    };
    if found == 0 && nominated.is_empty() {
        return;
    }
    if switching {
        // The handshake's answer keeps `Connection: upgrade` and `Upgrade` (bits 0 and 1).
        found &= !0b11;
    }
    for (i, name) in names.iter().enumerate() {
        if found & (1 << i) != 0 {
            head.remove(name);
        }
    }
    for name in nominated {
        if !(switching && name == UPGRADE) {
            head.remove(&name);
        }
    }
}

/// Whether a request asks for trailers, and only that: exactly one `TE`, `trailers`.
pub fn te_trailers(headers: &http::HeaderMap) -> bool {
    let mut te = headers.get_all(http::header::TE).iter();
    match (te.next(), te.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers"),
        _ => false,
    }
}

/// The place of `name` in [`HOP_BY_HOP`]: one match on the name's text (a length switch and
/// a comparison) where a search compared each name with all ten; a test keeps the two in step.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "upgrade" => 1,
        "keep-alive" => 2,
        "proxy-connection" => 3,
        "proxy-authenticate" => 4,
        "proxy-authorization" => 5,
        "te" => 6,
        "trailer" => 7,
        "transfer-encoding" => 8,
        "http2-settings" => 9,
        _ => return None,
    })
}

/// Refuse a request whose `Connection` header Pingora's standard request policy would refuse
/// (that policy is off on the gateway's peers: see the module comment): more than
/// [`MAX_CONNECTION_TOKENS`] tokens, a token that is not an HTTP `token` (RFC 9110 §5.6.2, so
/// `"X-Forwarded-For"` in quotes cannot slip past the comparison), a pseudo-header, or a name
/// in [`PROTECTED_FROM_NOMINATION`] (`Host`, `X-Forwarded-*`: nominating them would remove
/// what routing read or what the gateway sets). Returns why.
pub fn refused_nomination(headers: &http::HeaderMap) -> Option<&'static str> {
    for (n, token) in connection_options(headers).enumerate() {
        if n >= MAX_CONNECTION_TOKENS {
            return Some("too many Connection options");
        }
        if token.first() == Some(&b':') {
            return Some("Connection names a pseudo-header");
        }
        if !token.iter().all(|&b| is_tchar(b)) {
            return Some("a Connection option is not a token");
        }
        if PROTECTED_FROM_NOMINATION
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(token))
        {
            return Some("Connection names a header the gateway sets");
        }
    }
    None
}

/// The options of every `Connection` header, trimmed, empty ones skipped: what both the
/// refusal above and the removal below read, so the two cannot split a header differently.
fn connection_options(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// A `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a `Connection` header names any header (beyond `close` and `keep-alive`).
pub fn names_headers(headers: &http::HeaderMap) -> bool {
    headers.contains_key(CONNECTION) && !connection_nominated(headers).is_empty()
}

/// The field names a `Connection` header nominates as hop-by-hop (RFC 9110 §7.6.1), other than
/// the `close` and `keep-alive` options. Allocates only when it names something.
fn connection_nominated(headers: &http::HeaderMap) -> Vec<HeaderName> {
    connection_options(headers)
        .filter(|token| !token.eq_ignore_ascii_case(b"close") && !token.eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect()
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
    fn forwarded_host_is_always_the_canonical_host() {
        for sent in ["api.example.com", "API.Example.com:8443", "api.example.com."] {
            let mut r = req(&[("host", sent)]);
            set_forwarding(&mut r, None, "api.example.com", false, true).unwrap();
            assert_eq!(
                r.headers.get("x-forwarded-host").unwrap(),
                "api.example.com",
                "{sent}"
            );
        }
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
        // Every standard one, each alone; a response keeps its framing for Pingora.
        for h in &HOP_BY_HOP[..RESPONSE_HOP_BY_HOP] {
            let mut r = resp(200, &[(h.as_str(), "x"), ("X-Kept", "1")]);
            strip_hop_by_hop_response(&mut r);
            assert!(r.headers.get(h).is_none(), "{h}");
            assert_eq!(r.headers.len(), 1, "{h}");
        }
        let mut chunked = resp(200, &[("Transfer-Encoding", "chunked")]);
        strip_hop_by_hop_response(&mut chunked);
        assert_eq!(chunked.headers.len(), 1);
    }

    #[test]
    fn hop_by_hop_index_follows_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for other in [
            "x-te",
            "host",
            "connection2",
            "upgrade-insecure-requests",
            "trailers",
        ] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(other)), None, "{other}");
        }
    }

    #[test]
    fn request_hop_by_hop_removed() {
        // Each one alone, framing and `HTTP2-Settings` included, in any letter case, on either
        // kind of head the gateway edits.
        for h in &HOP_BY_HOP {
            let upper = h.as_str().to_ascii_uppercase();
            let mut r = req(&[(upper.as_str(), "x"), ("X-Kept", "1")]);
            strip_hop_by_hop_request(&mut r);
            assert!(r.headers.get(h).is_none(), "{h}");
            assert_eq!(r.headers.len(), 1, "{h}");
            let mut map = req(&[(h.as_str(), "x"), ("X-Kept", "1")]).headers.clone();
            strip_hop_by_hop_request(&mut map);
            assert_eq!(map.len(), 1, "{h}");
        }
        // What `Connection` names goes, across values and with odd spacing; an upgrade goes
        // whole (the edge writes a WebSocket handshake again where a route allows it).
        let mut r = req(&[
            ("Connection", "close ,X-A"),
            ("Connection", " x-b,,Upgrade"),
            ("Upgrade", "websocket"),
            ("X-A", "1"),
            ("X-B", "2"),
            ("X-C", "3"),
        ]);
        strip_hop_by_hop_request(&mut r);
        let left: Vec<_> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-c"]);
    }

    #[test]
    fn connection_nominations_refused_like_pingora_policy() {
        let refused = |v: &str| refused_nomination(&req(&[("Connection", v)]).headers);
        for ok in [
            "close",
            "keep-alive, X-Hop",
            "Upgrade",
            "x-real-ip, X-Request-Id",
            "a,b,c,d,e,f,g,h,i",
        ] {
            assert_eq!(refused(ok), None, "{ok}");
        }
        for bad in [
            "Host",
            "close, HOST",
            "x-forwarded-for",
            "X-Forwarded-Host",
            "x-FORWARDED-proto",
            "\"X-Forwarded-For\"",
            "x-forwarded-for;q=1",
            ":authority",
            "a b",
            "a,b,c,d,e,f,g,h,i,j",
        ] {
            assert!(refused(bad).is_some(), "{bad}");
        }
        // Split across values, the count and the names still hold.
        let two = req(&[("Connection", "a,b,c,d,e"), ("Connection", "f,g,h,i,j")]);
        assert!(refused_nomination(&two.headers).is_some());
        let two = req(&[("Connection", "close"), ("Connection", "host")]);
        assert!(refused_nomination(&two.headers).is_some());
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
}
