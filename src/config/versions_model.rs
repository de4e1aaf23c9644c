//! A route's `versions:` section: where the API version comes from, which upstream serves
//! each version, canary splits, and the deprecation / sunset schedule.

use http::HeaderName;

use super::decode::Spanned;
use super::yaml::Pos;

/// Where a request may say which version it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// A first path segment `v<version>`: `/v2/users/7`.
    Path,
    /// A header whose value is the version (`Accept-Version: 2`, `v2` also accepted).
    Header(HeaderName),
    /// `Accept: application/vnd.<vendor>.v2+json`, or any media type with `;version=2`.
    MediaType,
    /// A query parameter (`?version=2`).
    Query(String),
}

impl VersionSource {
    /// How the source is named in configuration and messages.
    pub fn label(&self) -> String {
        match self {
            VersionSource::Path => "path".into(),
            VersionSource::Header(h) => format!("header:{h}"),
            VersionSource::MediaType => "media_type".into(),
            VersionSource::Query(q) => format!("query:{q}"),
        }
    }
}

/// Two sources naming different versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// 400: the request is ambiguous.
    Reject,
    /// The first source in `from` order wins.
    First,
}

/// What keeps a client on the same side of a canary split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    Consumer,
    Ip,
    Header(HeaderName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSunset {
    /// Keep serving (with the `Sunset` header).
    Serve,
    /// 410 Gone once the sunset has passed.
    Gone,
}

/// A share of one version's traffic sent to another upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitConfig {
    pub upstream: Spanned<String>,
    /// Hundredths of a percent (5% = 500), so shares like 0.5% are exact.
    pub basis_points: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConfig {
    pub name: Spanned<String>,
    pub upstream: Spanned<String>,
    /// Unix seconds.
    pub deprecated: Option<i64>,
    pub sunset: Option<i64>,
    pub successor: Option<Spanned<String>>,
    pub after_sunset: AfterSunset,
    /// Target of `Link: <…>; rel="successor-version"` when it cannot be derived from the path.
    pub link: Option<String>,
    pub split: Vec<SplitConfig>,
    pub sticky: Sticky,
    /// A header that forces the split on (`on`) or off (`off`), for testing a canary.
    pub override_header: Option<HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionsConfig {
    pub pos: Pos,
    /// Sources in precedence order.
    pub from: Vec<VersionSource>,
    pub default: Option<Spanned<String>>,
    pub conflict: Conflict,
    /// Remove the `/v2` segment before forwarding (default true).
    pub strip_path: bool,
    /// Keep the version query parameter when forwarding (default false).
    pub keep_query: bool,
    /// `<vendor>` in `application/vnd.<vendor>.v2+json` (default: the route name).
    pub vendor: String,
    /// Response (and upstream request) header carrying the resolved version.
    pub header: HeaderName,
    pub versions: Vec<VersionConfig>,
}

impl VersionsConfig {
    pub fn names(&self) -> Vec<&str> {
        self.versions.iter().map(|v| v.name.value.as_str()).collect()
    }
}

/// A version name: starts with a digit; digits, letters, `.`, `_`, `-`; at most 32 bytes.
pub fn is_version_name(s: &str) -> bool {
    s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A first path segment `v<version>`: the version and the path without that segment
/// (`/v2/users/7` -> `("2", "/users/7")`, `/v2` -> `("2", "/")`).
pub fn split_path_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let (version, after) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    is_version_name(version).then_some((version, after))
}
