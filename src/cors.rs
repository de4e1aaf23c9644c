//! CORS (Fetch standard): a route's policy answers browsers' preflights itself — before
//! authentication, so a preflight never needs a credential and never reaches the upstream —
//! and puts the `Access-Control-*` headers on actual responses for allowed origins only. On a
//! route with a policy the gateway owns those headers: an upstream's own are removed.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;

use crate::config::CorsConfig;

type Headers = Vec<(HeaderName, HeaderValue)>;

/// One entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: any origin (never with credentials: `check` refuses that).
    Any,
    /// `https://app.example.com` (lower case; a port only if written).
    Exact(String),
    /// `https://*.example.com`: any subdomain of `example.com` (at any depth), same scheme and
    /// port, never `example.com` itself.
    Subdomains {
        scheme: String,
        parent: String,
        port: Option<u16>,
    },
}

impl OriginPattern {
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        if text == "*" {
            return Ok(OriginPattern::Any);
        }
        let expected = "expected `*`, an origin such as https://app.example.com, or \
                        https://*.example.com";
        let lower = text.to_ascii_lowercase().replacen("://*.", "://wildcard.", 1);
        let origin = Origin::parse(&lower)
            .ok_or_else(|| format!("`{text}`: {expected} (scheme, host and port only)"))?;
        if let Some(parent) = origin
            .host
            .strip_prefix("wildcard.")
            .filter(|_| text.contains("://*."))
        {
            if !parent.contains('.') {
                return Err(format!(
                    "`{text}`: a wildcard needs a parent domain with a dot, such as *.example.com"
                ));
            }
            return Ok(OriginPattern::Subdomains {
                scheme: origin.scheme.to_string(),
                parent: parent.to_string(),
                port: origin.port,
            });
        }
        if text.contains('*') {
            return Err(format!("`{text}`: {expected}"));
        }
        Ok(OriginPattern::Exact(origin.serialize()))
    }

    fn matches(&self, origin: &Origin<'_>, serialized: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(e) => e == serialized,
            OriginPattern::Subdomains { scheme, parent, port } => {
                origin.scheme == scheme
                    && origin.port == *port
                    && origin
                        .host
                        .strip_suffix(parent.as_str())
                        .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
            }
        }
    }
}

/// A request's `Origin`: `scheme://host[:port]` with a DNS name or IPv4 host; anything else
/// (`null`, paths, user info, odd characters) matches no pattern.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl<'a> Origin<'a> {
    /// `text` must already be lower case.
    fn parse(text: &'a str) -> Option<Origin<'a>> {
        let (scheme, rest) = text.split_once("://")?;
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && !host.starts_with('.')
            && !host.ends_with('.')
            && !host.contains("..")
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        host_ok.then_some(Origin { scheme, host, port })
    }

    fn serialize(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// A compiled policy; header values are built once.
#[derive(Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<OriginPattern>,
    methods: Vec<Method>,
    methods_value: HeaderValue,
    /// `None`: any header a preflight asks for (`allow_headers: ["*"]`), except
    /// `Authorization` unless listed too (as the Fetch standard's `*` never covers it).
    headers: Option<Vec<HeaderName>>,
    authorization_listed: bool,
    headers_value: Option<HeaderValue>,
    expose_value: Option<HeaderValue>,
    credentials: bool,
    max_age_value: Option<HeaderValue>,
}

/// Why a preflight is refused (403; the browser then blocks the actual request).
pub type Refused = &'static str;

fn joined<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let text = items.collect::<Vec<_>>().join(", ");
    (!text.is_empty())
        .then(|| HeaderValue::from_str(&text).ok())
        .flatten()
}

impl CorsPolicy {
    pub fn compile(cfg: &CorsConfig) -> CorsPolicy {
        let any_header = cfg.allow_headers.iter().any(|h| h == "*");
        let headers: Vec<HeaderName> = cfg
            .allow_headers
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect();
        CorsPolicy {
            origins: cfg.allow_origins.clone(),
            methods_value: joined(cfg.allow_methods.iter().map(Method::as_str))
                .unwrap_or(HeaderValue::from_static("GET, HEAD, POST")),
            methods: cfg.allow_methods.clone(),
            headers_value: joined(headers.iter().map(HeaderName::as_str)),
            authorization_listed: headers.contains(&http::header::AUTHORIZATION),
            headers: (!any_header).then_some(headers),
            expose_value: joined(cfg.expose_headers.iter().map(HeaderName::as_str)),
            credentials: cfg.allow_credentials,
            max_age_value: cfg.max_age.map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    /// The value of `Access-Control-Allow-Origin` for this request's origin, if allowed.
    fn allow_origin(&self, req: &RequestHeader) -> Option<HeaderValue> {
        let raw = req.headers.get(ORIGIN)?;
        let lower = raw.to_str().ok()?.to_ascii_lowercase();
        let origin = Origin::parse(&lower)?;
        let serialized = origin.serialize();
        let pattern = self.origins.iter().find(|p| p.matches(&origin, &serialized))?;
        if *pattern == OriginPattern::Any && !self.credentials {
            return Some(HeaderValue::from_static("*"));
        }
        HeaderValue::from_str(&serialized).ok()
    }

    /// The answer to a preflight, or why it is refused.
    pub fn preflight(&self, req: &RequestHeader) -> Result<Headers, Refused> {
        let origin = self
            .allow_origin(req)
            .ok_or("CORS preflight: origin not allowed")?;
        let method = req
            .headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or("CORS preflight: invalid Access-Control-Request-Method")?;
        if !self.methods.contains(&method) {
            return Err("CORS preflight: method not allowed");
        }
        let mut out = vec![
            (ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone()),
        ];
        let requested: Vec<String> = req
            .headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        match &self.headers {
            Some(allowed) => {
                if !requested.iter().all(|r| allowed.iter().any(|a| a.as_str() == r)) {
                    return Err("CORS preflight: header not allowed");
                }
                if let Some(v) = &self.headers_value {
                    out.push((ACCESS_CONTROL_ALLOW_HEADERS, v.clone()));
                }
            }
            // Any header: name the requested ones (a literal `*` means nothing to a browser
            // sending credentials).
            None => {
                if !self.authorization_listed && requested.iter().any(|h| h == "authorization") {
                    return Err("CORS preflight: header not allowed");
                }
                if let Some(v) = joined(requested.iter().map(String::as_str)) {
                    out.push((ACCESS_CONTROL_ALLOW_HEADERS, v));
                }
            }
        }
        if self.credentials {
            out.push((ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        if let Some(v) = &self.max_age_value {
            out.push((ACCESS_CONTROL_MAX_AGE, v.clone()));
        }
        out.push((
            VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ));
        Ok(out)
    }

    /// The headers an actual response gets: none for a request without an allowed origin
    /// (`Vary: Origin` always, so a cache does not hand one origin's answer to another).
    pub fn actual(&self, req: &RequestHeader) -> Headers {
        let mut out = vec![(VARY, HeaderValue::from_static("Origin"))];
        let Some(origin) = self.allow_origin(req) else {
            return out;
        };
        out.push((ACCESS_CONTROL_ALLOW_ORIGIN, origin));
        if self.credentials {
            out.push((ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        if let Some(v) = &self.expose_value {
            out.push((ACCESS_CONTROL_EXPOSE_HEADERS, v.clone()));
        }
        out
    }
}

/// A browser's preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS
        && req.headers.contains_key(ORIGIN)
        && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight asks about (routing uses it: the route that would serve the actual
/// request answers its preflight).
pub fn requested_method(req: &RequestHeader) -> Option<Method> {
    req.headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
}

/// On a route with a policy, the upstream's `Access-Control-*` headers are replaced by the
/// gateway's (`cors`: what [`CorsPolicy::actual`] computed for this request).
pub fn apply(resp: &mut impl crate::transform::headers::HeaderEdit, cors: &Headers) {
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS,
        ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_MAX_AGE,
    ] {
        resp.remove(&name);
    }
    for (name, value) in cors {
        resp.add(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::compile(&CorsConfig {
            allow_origins: origins
                .iter()
                .map(|o| OriginPattern::parse(o).expect("pattern"))
                .collect(),
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec!["authorization".into()],
            expose_headers: vec![],
            allow_credentials: credentials,
            max_age: None,
        })
    }

    fn req(origin: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("req");
        r.insert_header("origin", origin).expect("origin");
        r
    }

    #[test]
    fn wildcard_origins_cover_subdomains_only_with_the_same_scheme_and_port() {
        let p = policy(&["https://app.example.com", "https://*.example.com"], true);
        for ok in [
            "https://app.example.com",
            "https://a.example.com",
            "https://a.b.example.com",
            "HTTPS://A.Example.com",
        ] {
            assert!(p.allow_origin(&req(ok)).is_some(), "{ok}");
        }
        for bad in [
            "https://example.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://evil-example.com",
            "https://a.example.com.evil.com",
            "https://evil.com/.example.com",
            "https://evil.com?.example.com",
            "https://user@a.example.com",
            "null",
            "https://.example.com",
        ] {
            assert!(p.allow_origin(&req(bad)).is_none(), "{bad}");
        }
        assert_eq!(
            p.allow_origin(&req("https://A.example.com")),
            Some(HeaderValue::from_static("https://a.example.com"))
        );
    }

    #[test]
    fn any_header_never_covers_authorization_unless_listed() {
        let any = |headers: &[&str]| {
            CorsPolicy::compile(&CorsConfig {
                allow_origins: vec![OriginPattern::Any],
                allow_methods: vec![Method::GET],
                allow_headers: headers.iter().map(|h| h.to_string()).collect(),
                expose_headers: vec![],
                allow_credentials: false,
                max_age: None,
            })
        };
        let mut r = req("https://a.example.com");
        r.insert_header("access-control-request-method", "GET")
            .expect("method");
        r.insert_header("access-control-request-headers", "x-one, Authorization")
            .expect("headers");
        assert!(any(&["*"]).preflight(&r).is_err());
        let allowed = any(&["*", "authorization"]).preflight(&r).expect("listed");
        assert!(allowed
            .iter()
            .any(|(n, v)| n == ACCESS_CONTROL_ALLOW_HEADERS && v == "x-one, authorization"));
    }

    #[test]
    fn patterns_that_are_not_origins_are_refused() {
        for bad in [
            "https://*",
            "https://*.com",
            "example.com",
            "https://a.example.com/path",
            "https://a*.example.com",
            "ftp://a.example.com",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
