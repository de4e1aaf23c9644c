//! One compiled route: how it matches (read by `routing`), what it requires (auth, limits),
//! how it rewrites requests and responses, and where admitted requests go (`Target`).
//!
//! Matching lives in `routing`; this is the plan the pipeline follows once a route is chosen.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::aggregate::plan::Aggregate;
use crate::auth::{Authenticator, RouteAuth};
use crate::config::{PathMatch, RouteConfig, TransformConfig};
use crate::routing::methods::MethodSet;
use crate::transform::headers::HeaderRules;
use crate::versions::Versions;

/// Where a route's admitted requests go: exactly one destination per route, so a new kind
/// (aggregation, gRPC) is a new variant the compiler makes every step consider.
#[derive(Debug)]
pub enum Target {
    /// One upstream pool (index in the snapshot).
    Upstream(usize),
    /// A pool per API version, chosen per request.
    Versions(Box<Versions>),
    /// Several parts, fanned out and merged (`aggregate:`).
    Aggregate(Box<Aggregate>),
    /// REST/JSON transcoded to gRPC calls (`grpc:`).
    Grpc(Box<Transcoding>),
}

/// A `grpc:` route as the request path needs it: its upstream pool and its validated block
/// (bindings, print options, limits).
#[derive(Debug)]
pub struct Transcoding {
    /// The pool of `grpc.upstream` (index in the snapshot).
    pub pool: usize,
    pub config: crate::config::GrpcConfig,
}

impl Target {
    /// The versions of a versioned route.
    pub fn versions(&self) -> Option<&Versions> {
        match self {
            Target::Versions(v) => Some(v.as_ref()),
            Target::Upstream(_) | Target::Aggregate(_) | Target::Grpc(_) => None,
        }
    }

    /// The parts of an aggregated route.
    pub fn aggregate(&self) -> Option<&Aggregate> {
        match self {
            Target::Aggregate(a) => Some(a.as_ref()),
            Target::Upstream(_) | Target::Versions(_) | Target::Grpc(_) => None,
        }
    }

    /// The transcoding of a `grpc:` route.
    pub fn grpc(&self) -> Option<&Transcoding> {
        match self {
            Target::Grpc(t) => Some(t.as_ref()),
            Target::Upstream(_) | Target::Versions(_) | Target::Aggregate(_) => None,
        }
    }
}

/// One route as the request path needs it.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path: PathMatch,
    pub methods: MethodSet,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Where admitted requests go.
    pub target: Target,
    pub strip_prefix: Option<String>,
    /// The upstream path built from the route path's captures (`rewrite:`).
    pub rewrite: Option<crate::routing::template::Rewrite>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    pub timeout: Option<Duration>,
    pub auth: RouteAuth,
    /// Indexes of the route's rate-limit policies in the snapshot.
    pub limits: Vec<usize>,
    /// Override and client-address headers this route lets through.
    pub pass_headers: Vec<HeaderName>,
    /// Whether method overrides pass (`X-HTTP-Method-Override` listed): then the `_method`
    /// query parameter passes too. Decided once, not per request.
    pub pass_method_override: bool,
    /// Whether requests may upgrade the connection (WebSocket).
    pub websocket: bool,
    pub websocket_idle_timeout: Duration,
    pub websocket_max_lifetime: Option<Duration>,
    /// Whether `Idempotency-Key` makes a non-idempotent request retryable.
    pub retry_idempotency_key: bool,
    /// Client addresses this route accepts or refuses (after the server's).
    pub ip: crate::config::IpRules,
    /// The largest request body (bytes) this route accepts, instead of `server.limits.max_body`.
    pub max_body: Option<u64>,
    /// Body, query and method transformation.
    pub transform: TransformConfig,
    pub cors: Option<crate::cors::CorsPolicy>,
    pub https_redirect: bool,
    /// `cache:`: answers kept in the gateway's store.
    pub cache: Option<crate::cache::RouteCache>,
}

impl Route {
    pub fn compile(
        cfg: &RouteConfig,
        target: Target,
        authenticators: &[Authenticator],
        authenticator_index: &HashMap<&str, usize>,
        policy_index: &HashMap<&str, usize>,
    ) -> Route {
        Route {
            name: cfg.name.value.clone(),
            path: cfg.matcher.path.clone(),
            methods: MethodSet::from_names(cfg.matcher.methods.iter().map(String::as_str)),
            headers: cfg.matcher.headers.clone(),
            target,
            strip_prefix: cfg.strip_prefix.as_ref().map(|s| s.value.clone()),
            rewrite: cfg.rewrite.clone(),
            request_headers: HeaderRules::compile(&cfg.request_headers),
            response_headers: HeaderRules::compile(&cfg.response_headers),
            timeout: cfg.timeout,
            auth: RouteAuth::compile(&cfg.auth, authenticators, authenticator_index),
            limits: cfg
                .rate_limit
                .iter()
                .filter_map(|name| policy_index.get(name.value.as_str()).copied())
                .collect(),
            pass_headers: cfg.pass_headers.clone(),
            pass_method_override: cfg.pass_headers.iter().any(|h| h == "x-http-method-override"),
            websocket: cfg.websocket,
            websocket_idle_timeout: cfg.websocket_idle_timeout,
            websocket_max_lifetime: cfg.websocket_max_lifetime,
            retry_idempotency_key: cfg.retry_idempotency_key,
            max_body: cfg.max_body,
            ip: cfg.ip.clone(),
            transform: cfg.transform.clone(),
            cors: cfg.cors.as_ref().map(crate::cors::CorsPolicy::compile),
            https_redirect: cfg.https_redirect,
            cache: crate::cache::RouteCache::compile(cfg),
        }
    }

    pub(crate) fn conditions(&self) -> usize {
        usize::from(!self.methods.is_any()) + self.headers.len()
    }

    pub(crate) fn headers_match(&self, headers: &HeaderMap) -> bool {
        self.headers
            .iter()
            .all(|(name, value)| headers.get_all(name).iter().any(|v| v == value))
    }
}
