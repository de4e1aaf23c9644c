//! The configuration schema: the top-level sections and how the whole document is decoded
//! from the positioned YAML tree. Each section is decoded in its own file (`server_schema.rs`,
//! `upstream_schema.rs`, `route_schema.rs`, ...). Cross-item rules live in `validate.rs`.

use super::auth_model::AuthConfig;
use super::auth_schema::decode_auth;
use super::decode::{index, Fields};
use super::diag::Problems;
use super::limits_model::RateLimitConfig;
use super::limits_schema::decode_rate_limits;
use super::model::*;
use super::redis_model::RedisConfig;
use super::redis_schema::decode_redis;
use super::route_schema::decode_route;
use super::server_schema::decode_server;
use super::upstream_schema::decode_upstreams;

use super::yaml::Node;

const TOP: &[&str] = &[
    "server",
    "upstreams",
    "auth",
    "rate_limits",
    "redis",
    "cors",
    "routes",
    "tracing",
];

/// The sections of a document, each decoded as far as it could be, so cross-item checks can
/// run even when some item is broken.
pub struct Parts {
    pub server: Option<ServerConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub auth: Vec<AuthConfig>,
    /// Every authenticator name declared, including broken ones.
    pub auth_names: Vec<String>,
    pub rate_limits: Vec<RateLimitConfig>,
    pub limit_names: Vec<String>,
    pub redis: Option<RedisConfig>,
    /// Per route in file order; `None` where the route itself is unusable.
    pub routes: Vec<Option<RouteConfig>>,
    pub tracing: Option<super::tracing_schema::TracingConfig>,
    pub complete: bool,
}

impl Parts {
    fn empty() -> Parts {
        Parts {
            server: None,
            upstreams: Vec::new(),
            auth: Vec::new(),
            auth_names: Vec::new(),
            rate_limits: Vec::new(),
            limit_names: Vec::new(),
            redis: None,
            routes: Vec::new(),
            tracing: None,
            complete: false,
        }
    }

    pub fn into_config(self) -> Option<Config> {
        if !self.complete {
            return None;
        }
        Some(Config {
            server: self.server?,
            upstreams: self.upstreams,
            auth: self.auth,
            rate_limits: self.rate_limits,
            redis: self.redis,
            routes: self.routes.into_iter().collect::<Option<_>>()?,
            tracing: self.tracing?,
            source_sha256: String::new(),
        })
    }
}

/// Decode the whole document, reporting every problem.
pub fn decode_parts(root: &Node, base_dir: &std::path::Path, p: &mut Problems) -> Parts {
    let before = p.len();
    if let Node::Null { pos } = root {
        p.add(
            *pos,
            "",
            "the configuration is empty; it needs at least `server:` with `listen`",
        );
        return Parts::empty();
    }
    let Some(f) = Fields::new(root, "", TOP, p) else {
        return Parts::empty();
    };
    let server = match f.node("server") {
        Some(node) => decode_server(node, "server", base_dir, p),
        None => {
            p.add(
                f.pos(),
                "server",
                "missing required section `server` (at least `listen`)",
            );
            None
        }
    };
    let mut upstreams: Vec<UpstreamConfig> = match f.node("upstreams") {
        Some(node) => decode_upstreams(node, base_dir, p),
        None => Vec::new(),
    };
    let dns = server.as_ref().map(|s| s.dns.clone()).unwrap_or_default();
    super::upstream_schema::resolve_targets(&mut upstreams, &dns, p);
    let (auth, auth_names) = match f.node("auth") {
        Some(node) => decode_auth(node, base_dir, p),
        None => (Vec::new(), Vec::new()),
    };
    let redis = f.node("redis").and_then(|node| decode_redis(node, base_dir, p));
    let (rate_limits, limit_names) = match f.node("rate_limits") {
        Some(node) => decode_rate_limits(node, f.has("redis"), p),
        None => (Vec::new(), Vec::new()),
    };
    let cors_policies = match f.node("cors") {
        Some(node) => super::cors_schema::decode_cors_policies(node, p),
        None => Vec::new(),
    };
    let routes: Vec<Option<RouteConfig>> = match f.node("routes") {
        Some(Node::Seq { items, .. }) => items
            .iter()
            .enumerate()
            .map(|(i, n)| decode_route(n, &index("routes", i), &cors_policies, base_dir, p))
            .collect(),
        Some(other) => {
            p.add(
                other.pos(),
                "routes",
                format!("expected a list of routes, found {}", other.kind()),
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let tracing = super::tracing_schema::decode_tracing(f.node("tracing"), p);
    let complete = p.len() == before;
    Parts {
        server,
        upstreams,
        auth,
        auth_names,
        rate_limits,
        limit_names,
        redis,
        routes,
        tracing,
        complete,
    }
}
