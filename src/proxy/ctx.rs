//! Everything one request carries between pipeline steps, grouped by the step that fills it:
//! who the client is, what admission decided, the upstream attempts, and what the response
//! will say about the gateway's decisions.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue};

use crate::auth::Identity;
use crate::route::Route;
use crate::runtime::Snapshot;
use crate::upstream::attempt::Attempt;
use crate::upstream::Pool;

pub type Headers = Vec<(HeaderName, HeaderValue)>;

pub struct RequestCtx {
    /// When the request began: set in `new_ctx`, which Pingora calls right after it has read
    /// the request head (HTTP/1.1) or accepted the stream with its head (HTTP/2). Deadlines,
    /// the access log's duration and the SERVER span start from it.
    pub start: Instant,
    /// The snapshot this request started with (taken in `new_ctx`); kept to the end even if
    /// a reload swaps it, so every step, logging included, follows one configuration.
    pub snapshot: Arc<Snapshot>,
    pub request_id: super::request_id::RequestId,
    pub client: Client,
    pub admission: Admission,
    pub upstream: Attempts,
    pub reply: Reply,
    /// The W3C trace this request continues or started (set first thing in
    /// `request_filter`).
    pub trace: Option<crate::observe::trace::TraceContext>,
}

/// The client as the gateway sees it.
#[derive(Default)]
pub struct Client {
    /// Canonical address (IPv4-mapped IPv6 unwrapped).
    pub ip: Option<IpAddr>,
    /// Canonical host (no port, lower case), empty when absent.
    pub host: String,
    /// The request came over TLS.
    pub tls: bool,
    /// The verified client certificate's names, on a listener that asks for one.
    pub certificate: Option<crate::tls::identity::ClientIdentity>,
}

/// What admission decided: route, identity, version and the upstream request target.
#[derive(Default)]
pub struct Admission {
    /// Canonical path; used for routing, policies and (after prefix stripping) upstream.
    pub path: String,
    /// A CORS preflight, routed by the method it asks about, that its route's policy answers.
    pub preflight: bool,
    pub route: Option<usize>,
    /// The route of the path that refused the request's method (405): labels only.
    pub refused_by: Option<usize>,
    /// The pool this request goes to: the route's, or its resolved version's (canary included).
    pub pool: Option<usize>,
    /// The resolved API version (index into the route's versions), on versioned routes.
    pub version: Option<usize>,
    /// The consumer a 403 refused (authenticated, `require` not met), for the access log.
    pub refused_consumer: Option<String>,
    /// Who the request is from, on routes with `auth`.
    pub identity: Option<Arc<Identity>>,
    /// Which authenticator (index into the snapshot's) accepted it.
    pub authenticator: Option<usize>,
    /// Identity headers to set upstream (computed and checked when authenticating).
    pub identity_headers: Headers,
    /// Path and query sent upstream.
    pub upstream_uri: Option<http::Uri>,
    /// Route deadline (504 after it), from the route's `timeout`.
    pub deadline: Option<Instant>,
    /// Request body bytes received so far.
    pub body_received: u64,
}

/// The upstream attempts of this request.
#[derive(Default)]
pub struct Attempts {
    /// Targets already tried, so a retry goes elsewhere.
    pub tried: Vec<SocketAddr>,
    /// The attempt in flight (or the last one, until logging).
    pub current: Option<Attempt>,
    /// Whether the request sent upstream asks for a protocol upgrade (only a 101 answers it).
    pub upgrade_requested: bool,
    /// The pool's concurrency slot, held until the request is done (proxied routes).
    pub slot: Option<crate::upstream::concurrency::Slot>,
    /// The wait before the retry that was just granted (taken by `upstream_peer`).
    pub backoff: Option<std::time::Duration>,
    /// The current attempt's deadline: the route's, or sooner with `retry.per_try_timeout`.
    pub attempt_deadline: Option<Instant>,
    /// Attempts made again after a failed one (exchanges and parts included).
    pub retries: usize,
    /// Whether sending the request as it went upstream twice is harmless (decided from the
    /// final upstream head; see `upstream::retry::repeatable`).
    pub repeatable: bool,
    /// The one retry on a fresh connection after a pooled one turned out closed was made.
    pub stale_retried: bool,
    /// After a 101: the upgraded connection (gauge, lifetime).
    pub websocket: Option<super::websocket::Open>,
}

/// What the response says about the gateway's decisions, whoever writes it.
#[derive(Default)]
pub struct Reply {
    /// Version signals (`X-API-Version`, `Deprecation`, `Sunset`, `Link`).
    pub version_headers: Headers,
    /// `RateLimit` headers.
    pub ratelimit_headers: Headers,
    /// The status of a response the gateway itself wrote (errors, transformed answers).
    pub gateway_status: Option<u16>,
    /// Why the gateway answered itself (its problem's detail), for the access log.
    pub gateway_reason: Option<&'static str>,
    /// Aggregated routes: how each part went, for the access log (`part:status:ms,...`).
    pub parts_summary: Option<String>,
    /// On a route with a CORS policy, the headers every response to this request gets.
    pub cors: Option<Headers>,
    /// How a gRPC call ended (upstream headers or trailers, or the gateway's refusal).
    pub grpc_status: Option<u8>,
    /// A transcoded call: the gRPC method it made (`/pkg.Service/Method`), for the access log.
    pub grpc_method: Option<String>,
    /// What the response store did (caching routes).
    pub cache_status: Option<crate::cache::CacheStatus>,
}

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot,
            request_id: Default::default(),
            client: Client::default(),
            admission: Admission::default(),
            upstream: Attempts::default(),
            reply: Reply::default(),
            trace: None,
        }
    }

    /// The matched route, from the snapshot this request started with.
    pub fn route(&self) -> Option<&Route> {
        self.snapshot.routes.routes.get(self.admission.route?)
    }

    /// The largest request body this request may have: its route's `max_body`, else the
    /// server's.
    pub fn max_body(&self) -> u64 {
        self.route()
            .and_then(|r| r.max_body)
            .unwrap_or(self.snapshot.settings.limits.max_body)
    }

    /// The pool this request goes to.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.snapshot.pools.get(self.admission.pool?)
    }

    /// The resolved version's name, empty on unversioned routes (the metric label).
    pub fn version_name(&self) -> &str {
        self.route()
            .and_then(|r| r.target.versions()?.versions.get(self.admission.version?))
            .map_or("", |v| v.name.as_str())
    }

    /// The route in metrics and logs: the matched one, or the one whose path refused the
    /// method.
    pub fn route_name(&self) -> &str {
        self.route()
            .or_else(|| self.snapshot.routes.routes.get(self.admission.refused_by?))
            .map_or("-", |r| r.name.as_str())
    }
}
