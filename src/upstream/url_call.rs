//! One HTTP request to a URL the configuration names (a JWK set, an OTLP collector), outside
//! any pool: resolved, connected (TLS for `https`), sent and read through Pingora's
//! connector, the whole exchange within `2 × timeout`, the answer's body bounded.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

/// One connector (its TLS context and trust store built once) for every call.
fn connector() -> &'static pingora::connectors::http::Connector {
    static CONNECTOR: std::sync::OnceLock<pingora::connectors::http::Connector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| pingora::connectors::http::Connector::new(None))
}

/// A request to a URL.
pub struct UrlRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<Bytes>,
    /// Per connect, read and write.
    pub timeout: Duration,
    /// The largest answer body read; more is an error.
    pub max_body: usize,
}

/// The answer's status and body.
pub async fn call(r: UrlRequest<'_>) -> Result<(u16, Vec<u8>), String> {
    let uri: http::Uri = r.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let tls = uri.scheme_str() == Some("https");
    // `[::1]` in a URL is the address `::1`.
    let host = uri
        .host()
        .ok_or("URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // The `Host` header names the port when the URL does (RFC 9110 §7.2).
    let host_header = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or(a.as_str()).to_string())
        .ok_or("URL has no host")?;
    let timeout = r.timeout;
    let work = async {
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let mut peer = HttpPeer::new(addr, tls, host.clone());
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        let (mut session, _) = connector()
            .get_http_session(&peer)
            .await
            .map_err(|e| e.to_string())?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req =
            RequestHeader::build_no_case(r.method, path.as_bytes(), None).map_err(|e| e.to_string())?;
        req.insert_header("host", host_header.as_str())
            .map_err(|e| e.to_string())?;
        for (name, value) in r.headers {
            req.insert_header(name.to_string(), *value)
                .map_err(|e| e.to_string())?;
        }
        if let Some(body) = &r.body {
            req.insert_header("content-length", body.len().to_string())
                .map_err(|e| e.to_string())?;
        }
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(body) = r.body {
            session
                .write_request_body(body, true)
                .await
                .map_err(|e| e.to_string())?;
        }
        session.finish_request_body().await.map_err(|e| e.to_string())?;
        session.read_response_header().await.map_err(|e| e.to_string())?;
        let status = session.response_header().map(|r| r.status.as_u16()).unwrap_or(0);
        let mut body = Vec::new();
        while let Some(chunk) = session.read_response_body().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > r.max_body {
                return Err(format!("the answer is larger than {} bytes", r.max_body));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    };
    tokio::time::timeout(timeout * 2, work)
        .await
        .map_err(|_| "timed out".to_string())?
}
