//! API version routing: which version a request asks for (path, header, media type, query,
//! in the configured precedence), which upstream serves it (with an optional sticky canary
//! split), and the signals a deprecated version sends. Versions are resolved on the
//! normalized path, after authentication (stickiness may use the consumer) and before rate
//! limiting (a refused version consumes no quota).

pub mod canary;
pub mod signals;
pub mod sources;

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::Identity;
use crate::config::{AfterSunset, Conflict, VersionSource, VersionsConfig};
use canary::Split;
use signals::Signals;
use sources::Found;

#[derive(Debug)]
pub struct Version {
    pub name: String,
    split: Split,
    signals: Signals,
    /// Unix seconds after which the version answers 410.
    gone_after: Option<i64>,
    successor: Option<usize>,
}

#[derive(Debug)]
pub struct Versions {
    from: Vec<VersionSource>,
    default: Option<usize>,
    conflict: Conflict,
    strip_path: bool,
    /// Query parameters that name the version, removed before forwarding (empty with
    /// `keep_query: true`).
    pub strip_query: Vec<String>,
    /// `vnd.<vendor>.v`, the media-type subtype prefix (lower case).
    vendor_prefix: String,
    /// The header naming the resolved version (responses and the upstream request).
    pub header: HeaderName,
    pub versions: Vec<Version>,
    /// `"supported-versions":[…]`, the problem extension for unknown or missing versions.
    supported: String,
    /// `Vary` for responses whose version may come from request headers (caches must not
    /// serve one version's response to a request for another).
    vary: Option<HeaderValue>,
}

/// A request's version and where it goes.
#[derive(Debug)]
pub struct Resolved {
    pub version: usize,
    pub pool: usize,
    /// The path without its version segment, when the version came from the path.
    pub rest: Option<String>,
    /// `/v2`, put back in front of the forwarded path when `strip_path: false`.
    pub kept_segment: Option<String>,
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why a request cannot be given a version.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// 404: a version the route does not have.
    Unknown(String),
    /// 400: no version given and no default.
    Missing(String),
    /// 400: sources disagree, or one source names two versions.
    Conflict,
    /// 410: the version (index) is past its sunset; the signals to send with the refusal.
    Gone(usize, Vec<(HeaderName, HeaderValue)>),
}

impl Versions {
    /// Compile; `pool` maps an upstream name to its index in the snapshot (or the error for
    /// an undefined one).
    pub fn compile(
        cfg: &VersionsConfig,
        route: &str,
        pool: impl Fn(&str) -> Result<usize, String>,
    ) -> Result<Versions, String> {
        let names = cfg.names();
        let find = |name: &str| names.iter().position(|n| *n == name);
        let versions = cfg
            .versions
            .iter()
            .map(|v| {
                let lookup = &pool;
                let mut upto = 0u32;
                let shares = v
                    .split
                    .iter()
                    .map(|s| {
                        upto += s.basis_points;
                        lookup(&s.upstream.value).map(|p| (p, upto))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Version {
                    name: v.name.value.clone(),
                    split: Split {
                        main: lookup(&v.upstream.value)?,
                        shares,
                        sticky: v.sticky.clone(),
                        override_header: v.override_header.clone(),
                        salt: format!("{route}/{}", v.name.value),
                    },
                    signals: Signals::new(&v.name.value, v.deprecated, v.sunset, v.link.as_deref()),
                    gone_after: v.sunset.filter(|_| v.after_sunset == AfterSunset::Gone),
                    successor: v.successor.as_ref().and_then(|s| find(&s.value)),
                })
            })
            .collect::<Result<_, String>>()?;
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let varies: Vec<String> = cfg
            .from
            .iter()
            .filter_map(|s| match s {
                VersionSource::Header(h) => Some(h.to_string()),
                VersionSource::MediaType => Some("accept".to_string()),
                _ => None,
            })
            .collect();
        Ok(Versions {
            from: cfg.from.clone(),
            default: cfg.default.as_ref().and_then(|d| find(&d.value)),
            conflict: cfg.conflict,
            strip_path: cfg.strip_path,
            strip_query: if cfg.keep_query {
                Vec::new()
            } else {
                cfg.from
                    .iter()
                    .filter_map(|s| match s {
                        VersionSource::Query(q) => Some(q.clone()),
                        _ => None,
                    })
                    .collect()
            },
            vendor_prefix: format!("vnd.{}.v", cfg.vendor.to_ascii_lowercase()),
            header: cfg.header.clone(),
            versions,
            supported: format!("\"supported-versions\":[{}]", quoted.join(",")),
            vary: (!varies.is_empty())
                .then(|| HeaderValue::from_str(&varies.join(", ")).ok())
                .flatten(),
        })
    }

    /// The header that forces version `version`'s canary split, if configured (removed before
    /// forwarding: it is the client's instruction to the gateway).
    pub fn override_header(&self, version: usize) -> Option<&HeaderName> {
        self.versions.get(version)?.split.override_header.as_ref()
    }

    pub fn by_path(&self) -> bool {
        self.from.contains(&VersionSource::Path)
    }

    /// The problem extension listing the versions.
    pub fn supported(&self) -> &str {
        &self.supported
    }

    /// Resolve the version of a request with canonical `path` and raw `query`.
    pub fn resolve(
        &self,
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Resolved, Refused> {
        let path_claim = self.by_path().then(|| sources::path_version(path)).flatten();
        let mut found: Vec<String> = Vec::new();
        for source in &self.from {
            let said = match source {
                VersionSource::Path => path_claim.map_or(Found::None, |(v, _)| Found::One(v.to_string())),
                VersionSource::Header(h) => sources::header(headers, h),
                VersionSource::MediaType => sources::media_type(headers, &self.vendor_prefix),
                VersionSource::Query(q) => sources::query(query, q),
            };
            match said {
                Found::None => {}
                Found::One(v) => found.push(v),
                Found::Many => return Err(Refused::Conflict),
            }
            // With `conflict: first`, later sources are not consulted at all.
            if self.conflict == Conflict::First && !found.is_empty() {
                break;
            }
        }
        let considered = &found;
        let index = |name: &str| self.versions.iter().position(|v| v.name == name);
        let mut chosen = None;
        for name in considered {
            let i = index(name).ok_or_else(|| Refused::Unknown(self.supported.clone()))?;
            if chosen.is_some_and(|c| c != i) {
                return Err(Refused::Conflict);
            }
            chosen = Some(i);
        }
        let version = chosen
            .or(self.default)
            .ok_or_else(|| Refused::Missing(self.supported.clone()))?;
        let v = self
            .versions
            .get(version)
            .ok_or_else(|| Refused::Unknown(self.supported.clone()))?;
        // The client-facing path without the version segment, for forwarding and links.
        let rest = path_claim.map_or(path, |(_, rest)| rest);
        let successor_path = self
            .by_path()
            .then_some(v.successor)
            .flatten()
            .and_then(|s| self.versions.get(s))
            .map(|s| format!("/v{}{}", s.name, if rest == "/" { "" } else { rest }));
        let mut response_headers = v.signals.headers(&self.header, successor_path);
        response_headers.extend(self.vary.clone().map(|v| (http::header::VARY, v)));
        if v.gone_after.is_some_and(|t| now >= t) {
            return Err(Refused::Gone(version, response_headers));
        }
        Ok(Resolved {
            version,
            pool: v.split.choose(headers, identity, ip),
            rest: path_claim.map(|(_, rest)| rest.to_string()),
            kept_segment: path_claim
                .filter(|_| !self.strip_path)
                .map(|(name, _)| format!("/v{name}")),
            response_headers,
        })
    }
}
