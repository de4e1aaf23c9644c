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
use crate::config::{AfterSunset, Conflict, PathMatch, VersionSource, VersionsConfig};
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
    keep_query: bool,
    vendor: String,
    /// The header naming the resolved version (responses and the upstream request).
    pub header: HeaderName,
    pub versions: Vec<Version>,
    /// `"supported-versions":[…]`, the problem extension for unknown or missing versions.
    supported: String,
}

/// A request's version and where it goes.
#[derive(Debug)]
pub struct Resolved {
    pub version: usize,
    pub pool: usize,
    /// The path to forward when the version came from (and is stripped from) the path.
    pub path: Option<String>,
    /// The query parameter to remove before forwarding.
    pub strip_query: Option<String>,
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
    /// 410: the version's sunset has passed.
    Gone(Vec<(HeaderName, HeaderValue)>),
}

impl Versions {
    /// Compile; `pool` maps an upstream name to its index in the snapshot.
    pub fn compile(
        cfg: &VersionsConfig,
        route: &str,
        pool: impl Fn(&str) -> Option<usize>,
    ) -> Result<Versions, String> {
        let names = cfg.names();
        let find = |name: &str| names.iter().position(|n| *n == name);
        let versions = cfg
            .versions
            .iter()
            .map(|v| {
                let lookup = |u: &str| {
                    pool(u).ok_or_else(|| format!("route `{route}` names undefined upstream `{u}`"))
                };
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
        Ok(Versions {
            from: cfg.from.clone(),
            default: cfg.default.as_ref().and_then(|d| find(&d.value)),
            conflict: cfg.conflict,
            strip_path: cfg.strip_path,
            keep_query: cfg.keep_query,
            vendor: cfg.vendor.to_ascii_lowercase(),
            header: cfg.header.clone(),
            versions,
            supported: format!("\"supported-versions\":[{}]", quoted.join(",")),
        })
    }

    pub fn by_path(&self) -> bool {
        self.from.contains(&VersionSource::Path)
    }

    /// The paths the route also answers on: `/v<name>` in front of its own path, per version.
    pub fn path_variants(&self, path: &PathMatch) -> Vec<PathMatch> {
        if !self.by_path() {
            return Vec::new();
        }
        self.versions
            .iter()
            .map(|v| {
                let with = |p: &str| format!("/v{}{}", v.name, if p == "/" { "" } else { p });
                match path {
                    PathMatch::Exact(p) => PathMatch::Exact(with(p)),
                    PathMatch::Prefix(p) => PathMatch::Prefix(with(p)),
                }
            })
            .collect()
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
                VersionSource::MediaType => sources::media_type(headers, &self.vendor),
                VersionSource::Query(q) => sources::query(query, q),
            };
            match said {
                Found::None => {}
                Found::One(v) => found.push(v),
                Found::Many => return Err(Refused::Conflict),
            }
        }
        let considered = match self.conflict {
            Conflict::First => &found[..found.len().min(1)],
            Conflict::Reject => &found[..],
        };
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
        let response_headers = v.signals.headers(&self.header, successor_path);
        if v.gone_after.is_some_and(|t| now >= t) {
            return Err(Refused::Gone(response_headers));
        }
        let strip_query = self.from.iter().find_map(|s| match s {
            VersionSource::Query(q) if !self.keep_query => Some(q.clone()),
            _ => None,
        });
        Ok(Resolved {
            version,
            pool: v.split.choose(headers, identity, ip),
            path: path_claim
                .filter(|_| self.strip_path)
                .map(|(_, rest)| rest.to_string()),
            strip_query,
            response_headers,
        })
    }
}
