//! Requests the gateway refuses before routing: ambiguous framing, missing or conflicting
//! `Host`, oversized headers, a `Connection` header naming what the gateway sets, and paths
//! that cannot be made unambiguous.
//!
//! Pingora parses HTTP but does not validate `Host`, accepts both `Content-Length` and
//! `Transfer-Encoding`, and allows up to 256 headers / 1 MiB; these are the gateway's job.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;

use super::problem::Problem;
use crate::config::RequestLimits;
use crate::routing::host::canonical_host;
use crate::routing::normalize::{normalize_target, NormalizedTarget};
use crate::transform::client_headers::ClientHeaderRules;

/// Header names the configuration refuses (`underscores_in_headers: reject`).
pub fn check_header_names(req: &RequestHeader, rules: &ClientHeaderRules) -> Result<(), Problem> {
    if req.headers.keys().any(|name| rules.refuses(name)) {
        return Err(Problem::new(400, "header names with '_' are not accepted"));
    }
    Ok(())
}

/// A body larger than the route accepts (`max_body`), refused by its declared length before
/// any of it is read or forwarded.
pub fn check_declared_body(req: &RequestHeader, max: u64) -> Result<(), Problem> {
    let declared = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(Problem::body_too_large()),
        _ => Ok(()),
    }
}

/// Framing and header-size rules, and the `Connection` options the gateway refuses (see
/// `forwarding::refused_nomination`). Smuggling-shaped requests also close the connection.
pub fn check_framing(req: &RequestHeader, limits: &RequestLimits) -> Result<(), Problem> {
    let headers = &req.headers;
    if headers.len() > limits.max_header_count {
        return Err(Problem::new(431, "too many request header fields").closing());
    }
    let mut connection = false;
    let mut bytes = 0;
    for (name, value) in headers {
        connection |= name == CONNECTION;
        bytes += name.as_str().len() + value.len() + 4;
    }
    if bytes > limits.max_header_bytes {
        return Err(Problem::new(431, "request header fields too large").closing());
    }
    if connection {
        if let Some(why) = super::forwarding::refused_nomination(headers) {
            return Err(Problem::new(400, why));
        }
    }
    let te_count = headers.get_all(TRANSFER_ENCODING).iter().count();
    let cl: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
    if te_count > 0 && !cl.is_empty() {
        return Err(Problem::new(400, "both Content-Length and Transfer-Encoding are present").closing());
    }
    if cl.len() > 1
        || cl
            .first()
            .is_some_and(|v| v.to_str().map_or(true, |s| s.parse::<u64>().is_err()))
    {
        return Err(Problem::new(400, "invalid Content-Length").closing());
    }
    if te_count > 1
        || headers
            .get(TRANSFER_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        return Err(
            Problem::new(400, "unsupported Transfer-Encoding (only `chunked` is accepted)").closing(),
        );
    }
    Ok(())
}

/// Checks on the request head as received, for what Pingora normalizes away before any filter
/// runs: it drops `Content-Length` when `Transfer-Encoding` is also present (RFC 9112 lets a
/// proxy do that; the gateway refuses instead) and strips a `#fragment` from the target.
/// `CONNECT` asks the gateway to open a tunnel, which it never does: 405, and the connection
/// closes (a client would send tunnel bytes next). Pingora refuses it itself unless told not
/// to, but with `Server: Pingora` and, over HTTP/2, without the gateway's body: the server
/// lets it through (`allow_connect_method_proxying`) so that this check answers, for both.
pub fn refuse_connect(req: &RequestHeader) -> Result<(), Problem> {
    if req.method == http::Method::CONNECT {
        return Err(Problem::new(405, "the CONNECT method is not supported").closing());
    }
    Ok(())
}

pub fn check_raw_head(session: &ServerSession, has_transfer_encoding: bool) -> Result<(), Problem> {
    let ServerSession::H1(h1) = session else {
        return Ok(());
    };
    let raw = h1.get_headers_raw_bytes();
    let mut lines = raw.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    if request_line.contains(&b'#') {
        return Err(Problem::new(400, "fragment ('#') in request target").closing());
    }

    if has_transfer_encoding
        && lines.any(|l| l.len() >= 15 && l[..15].eq_ignore_ascii_case(b"content-length:"))
    {
        return Err(Problem::new(400, "both Content-Length and Transfer-Encoding are present").closing());
    }
    Ok(())
}

/// HTTP/2 names the host in `:authority` (RFC 9113 §8.3.1) and usually sends no `Host`: give
/// the request the `Host` its authority names, so one rule ([`check_host`]: exactly one
/// `Host`, agreeing with the target's authority) holds for both versions and HTTP/1.1
/// upstreams get the host. A `host` field that disagrees with `:authority` is refused there.
pub fn adopt_h2_authority(req: &mut RequestHeader) -> Result<(), Problem> {
    if req.version != http::Version::HTTP_2 || req.headers.contains_key(HOST) {
        return Ok(());
    }
    let Some(authority) = req.uri.authority().map(|a| a.as_str().to_string()) else {
        return Ok(());
    };
    req.insert_header(HOST, authority)
        .map_err(|_| Problem::new(400, "invalid :authority"))
}

/// The canonical host: exactly one `Host` header, and an absolute-form target must agree with it.
pub fn check_host(req: &RequestHeader) -> Result<String, Problem> {
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h,
        (None, _) => return Err(Problem::new(400, "missing Host header")),
        (Some(_), Some(_)) => return Err(Problem::new(400, "more than one Host header").closing()),
    };
    let raw_host = host
        .to_str()
        .map_err(|_| Problem::new(400, "invalid Host header"))?;
    let host = canonical_host(raw_host).ok_or_else(|| Problem::new(400, "invalid Host header"))?;
    if let Some(authority) = target_authority(req) {
        let same_host = canonical_host(authority.as_str()).is_some_and(|a| a == host);
        let port_of = |p: Option<u16>| p.unwrap_or(80);
        if !same_host || port_of(authority.port_u16()) != port_of(host_port(raw_host)) {
            return Err(Problem::new(
                400,
                "absolute-form request target disagrees with the Host header",
            ));
        }
    }
    Ok(host)
}

/// The port a `Host` value names (`host:port`, `[v6]:port`), read from the value
/// [`canonical_host`] accepted. Every HTTP/2 request has an authority to compare with its `Host`,
/// and parsing the value again as an `http::uri::Authority` (a copy and a full URI parse) cost
/// about 2k instructions per HTTP/2 request.
fn host_port(raw: &str) -> Option<u16> {
    let raw = raw.trim();
    let after_host = match raw.strip_prefix('[') {
        Some(rest) => rest.get(rest.find(']')? + 1..)?,
        None => raw,
    };
    after_host.rsplit_once(':')?.1.parse().ok()
}

/// The authority of an absolute-form target (`GET http://host/path`), from the parsed URI or
/// the raw target as received.
fn target_authority(req: &RequestHeader) -> Option<http::uri::Authority> {
    if let Some(a) = req.uri.authority() {
        return Some(a.clone());
    }
    let raw = req.raw_path();
    if raw.first() == Some(&b'/') {
        return None;
    }
    http::Uri::try_from(raw).ok().and_then(|u| u.authority().cloned())
}

/// The canonical path of the request target, or why it is refused.
pub fn check_path(req: &RequestHeader, limits: &RequestLimits) -> Result<NormalizedTarget, Problem> {
    let raw = req.raw_path();
    // Absolute-form (`http://host/path`) arrives with the authority in the raw target;
    // the authority was checked against Host, so keep only the path and query.
    let origin_form: &[u8] = if raw.first() == Some(&b'/') {
        raw
    } else if target_authority(req).is_some() {
        let after_scheme = raw.windows(3).position(|w| w == b"://").map_or(0, |i| i + 3);
        let rest = &raw[after_scheme..];
        match rest.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) if rest[i] == b'/' => &rest[i..],
            Some(_) => return Err(Problem::new(400, "request target has no path")),
            None => b"/",
        }
    } else {
        raw
    };
    let target = normalize_target(origin_form, limits.max_uri_length).map_err(|e| match e {
        crate::routing::normalize::PathError::TooLong => Problem::new(414, "request target too long"),
        other => Problem::new(400, other.reason()),
    })?;
    // `;` path parameters are dropped by some upstream frameworks (Tomcat, Jetty, Spring)
    // before routing, so `/admin;x` would reach `/admin` while the gateway routed it
    // elsewhere. Refuse rather than guess.
    if target.path.contains(';') || target.path.contains("%3B") {
        return Err(Problem::new(400, "';' path parameters are not accepted"));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::request_header as req;

    #[test]
    fn host_rules() {
        assert_eq!(
            check_host(&req("/", &[("host", "A.example.com:81")])).unwrap(),
            "a.example.com"
        );
        assert_eq!(check_host(&req("/", &[])).unwrap_err().status, 400);
        assert!(
            check_host(&req("/", &[("host", "a"), ("host", "b")]))
                .unwrap_err()
                .close
        );
        // (target, Host, agrees): an absolute-form target and Host name one host and port.
        let cases = [
            ("http://a.com/x", "a.com", true),
            ("http://evil.com/x", "a.com", false),
            ("http://a.com:8080/x", "a.com", false),
            ("http://a.com:8080/x", "a.com:8080", true),
            ("http://a.com/x", "a.com:81", false),
            ("http://a.com/x", "a.com:80", true),
            ("http://[::1]:8080/x", "[::1]:8080", true),
            ("http://[::1]/x", "[::1]:8080", false),
            ("http://[::1]:8080/x", "[::1]", false),
            // A padded value (an HTTP/2 `host` field may carry spaces) names the port it holds.
            ("http://a.com/x", " a.com:81", false),
            ("http://a.com:81/x", " a.com:81 ", true),
            ("http://a.com:8080/x", "a.com.:8080", true),
            ("http://a.com/x", "a.com:0080", true),
            // A port beyond 16 bits is no port at all: refused on either side.
            ("/", "a.com:65616", false),
            ("http://a.com/x", "a.com:65616", false),
            ("http://a.com:65616/x", "a.com", false),
        ];
        for (target, host, agrees) in cases {
            let result = check_host(&req(target, &[("host", host)]));
            assert_eq!(result.is_ok(), agrees, "{target} with Host {host:?}");
            if let Err(problem) = result {
                assert_eq!(problem.status, 400, "{target} with Host {host:?}");
            }
        }
    }

    #[test]
    fn framing_rules() {
        let l = RequestLimits::default();
        let both = req("/", &[("content-length", "3"), ("transfer-encoding", "chunked")]);
        assert_eq!(check_framing(&both, &l).unwrap_err().status, 400);
        let te = req("/", &[("transfer-encoding", "gzip, chunked")]);
        assert!(check_framing(&te, &l).is_err());
        let two_cl = req("/", &[("content-length", "3"), ("content-length", "4")]);
        assert!(check_framing(&two_cl, &l).is_err());
        assert!(check_framing(&req("/", &[("content-length", "3")]), &l).is_ok());
        let many: Vec<(String, String)> = (0..101).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(check_framing(&req("/", &many), &l).unwrap_err().status, 431);
    }

    #[test]
    fn path_rules() {
        let l = RequestLimits::default();
        assert_eq!(check_path(&req("/a//b/../c?x=1", &[]), &l).unwrap().path, "/a/c");
        assert_eq!(check_path(&req("http://h/a/./b", &[]), &l).unwrap().path, "/a/b");
        assert!(check_path(&req("/a;b/c", &[]), &l).is_err());
        assert!(check_path(&req("/a/%2e%2e/%2e%2e/x", &[]), &l).is_err());
    }
}
