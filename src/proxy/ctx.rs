//! Everything one request carries between pipeline steps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::Identity;
use crate::routing::Route;
use crate::runtime::Snapshot;
use crate::upstream::pool::Selected;
use crate::upstream::InflightGuard;
use crate::upstream::Pool;

pub struct RequestCtx {
    pub start: Instant,
    /// The snapshot this request started with; kept to the end even if a reload swaps it.
    pub snapshot: Option<Arc<Snapshot>>,
    pub request_id: String,
    pub client_ip: Option<std::net::IpAddr>,
    /// Canonical host (no port, lower case), empty when absent.
    pub host: String,
    /// Canonical path; used for routing, policies and (after prefix stripping) upstream.
    pub path: String,
    /// Path and query sent upstream.
    pub upstream_uri: Option<http::Uri>,
    pub route: Option<usize>,
    /// The pool this request goes to: the route's, or its resolved version's (canary included).
    pub pool: Option<usize>,
    /// The resolved API version (index into the route's versions), on versioned routes.
    pub version: Option<usize>,
    /// Version signals (`X-API-Version`, `Deprecation`, `Sunset`, `Link`) for the response.
    pub version_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Route deadline (504 after it), from the route's `timeout`.
    pub deadline: Option<Instant>,
    pub selected: Option<Selected>,
    /// Targets already tried by this request, so a retry goes elsewhere.
    pub tried: Vec<SocketAddr>,
    pub inflight: Option<InflightGuard>,
    pub upstream_sent: Option<Instant>,
    /// Request body bytes received so far.
    pub body_received: u64,
    /// Whether the request sent upstream asks for a protocol upgrade (only a 101 answers it).
    pub upgrade_requested: bool,
    /// Set once this attempt's outcome has been counted in upstream metrics.
    pub upstream_counted: bool,
    /// The status of a response the gateway itself wrote (errors).
    pub gateway_status: Option<u16>,
    /// Who the request is from, on routes with `auth`.
    pub identity: Option<std::sync::Arc<Identity>>,
    /// Identity headers to set upstream (computed and checked when authenticating).
    pub identity_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `RateLimit` headers for the response.
    pub ratelimit_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl RequestCtx {
    pub fn new() -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot: None,
            request_id: String::new(),
            client_ip: None,
            host: String::new(),
            path: String::new(),
            upstream_uri: None,
            route: None,
            pool: None,
            version: None,
            version_headers: Vec::new(),
            deadline: None,
            selected: None,
            tried: Vec::new(),
            inflight: None,
            upstream_sent: None,
            body_received: 0,
            upgrade_requested: false,
            upstream_counted: false,
            gateway_status: None,
            identity: None,
            identity_headers: Vec::new(),
            ratelimit_headers: Vec::new(),
        }
    }

    /// The matched route, from the snapshot this request started with.
    pub fn route(&self) -> Option<&Route> {
        self.snapshot.as_ref()?.routes.routes.get(self.route?)
    }

    /// The matched route's upstream pool.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.snapshot.as_ref()?.pools.get(self.pool?)
    }

    /// The resolved version's name, empty on unversioned routes (the metric label).
    pub fn version_name(&self) -> &str {
        self.route()
            .and_then(|r| r.versions.as_ref()?.versions.get(self.version?))
            .map_or("", |v| v.name.as_str())
    }

    pub fn route_name(&self) -> &str {
        self.route().map_or("-", |r| r.name.as_str())
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
