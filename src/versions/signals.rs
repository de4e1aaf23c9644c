//! The response headers a resolved version carries: the version itself, and for deprecated
//! versions `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and
//! `Link: <…>; rel="successor-version"` (RFC 5829).

use http::{HeaderName, HeaderValue};

use crate::config::date::http_date;

const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
const SUNSET: HeaderName = HeaderName::from_static("sunset");

/// Precomputed per version at compile time; only the successor link may depend on the path.
#[derive(Debug, Default)]
pub struct Signals {
    pub version: Option<HeaderValue>,
    pub deprecation: Option<HeaderValue>,
    pub sunset: Option<HeaderValue>,
    /// Configured link target, if any.
    pub link: Option<String>,
}

impl Signals {
    pub fn new(version: &str, deprecated: Option<i64>, sunset: Option<i64>, link: Option<&str>) -> Signals {
        Signals {
            version: HeaderValue::from_str(version).ok(),
            // RFC 9745: a Structured Field Date, `@` and Unix seconds.
            deprecation: deprecated.and_then(|t| HeaderValue::from_str(&format!("@{t}")).ok()),
            sunset: sunset.and_then(|t| HeaderValue::from_str(&http_date(t)).ok()),
            link: link.map(String::from),
        }
    }

    /// The headers for one response. `successor_path` is the client-facing path of the same
    /// resource in the successor version, when the version is chosen by path.
    pub fn headers(
        &self,
        header: &HeaderName,
        successor_path: Option<String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(4);
        if let Some(v) = &self.version {
            out.push((header.clone(), v.clone()));
        }
        if let Some(d) = &self.deprecation {
            out.push((DEPRECATION, d.clone()));
        }
        if let Some(s) = &self.sunset {
            out.push((SUNSET, s.clone()));
        }
        let target = self.link.clone().or(successor_path);
        if let Some(link) = target
            .filter(|_| self.deprecation.is_some() || self.sunset.is_some())
            .and_then(|t| HeaderValue::from_str(&format!("<{t}>; rel=\"successor-version\"")).ok())
        {
            out.push((http::header::LINK, link));
        }
        out
    }
}
