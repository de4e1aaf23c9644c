//! Response caching (a route's `cache:` block; `server.cache` sizes the store).
//!
//! The store is the gateway's own, in memory and bounded (`store`); what may be stored and for
//! how long follows RFC 9111 (`policy`, with pingora-cache's `Cache-Control` parser); keys hold
//! the route's configuration fingerprint, the request's host, path, the chosen query parameters
//! and headers, and the consumer on authenticated routes (`key`). The request side (lookup,
//! fill lock, revalidation, stale answers, background refresh) is `proxy::cached`.
//!
//! Why not Pingora's cache phase: its storage is test-only by its own documentation, its key
//! callback and Vary are off by default, and it serves only Pingora's proxy loop, while
//! transformed answers are built by the gateway's own exchange; one store serves both here.

pub mod key;
pub mod policy;
pub mod store;

use std::hash::{Hash, Hasher};

use crate::config::cache_schema::RouteCacheConfig;
use crate::config::RouteConfig;

/// A route's compiled `cache:` block.
#[derive(Debug)]
pub struct RouteCache {
    pub config: RouteCacheConfig,
    /// Part of every key: a digest of what shapes the route's answers (its upstream, versions,
    /// path rewriting, request headers, transformation, authentication (what identity headers
    /// go upstream), passed headers and this block), so answers stored
    /// under an earlier configuration are never served after a reload that changed it.
    pub namespace: String,
}

impl RouteCache {
    pub fn compile(route: &RouteConfig) -> Option<RouteCache> {
        let config = route.cache.clone()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let shape = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            route.upstream.as_ref().map(|u| &u.value),
            route.versions,
            route.strip_prefix.as_ref().map(|s| &s.value),
            route.rewrite,
            route.request_headers,
            route.transform,
            route.auth,
            route.pass_headers,
            config,
        );
        shape.hash(&mut h);
        Some(RouteCache {
            namespace: format!("{}#{:016x}", route.name.value, h.finish()),
            config,
        })
    }
}

/// What the store did for a request: the `X-Cache-Status` header, the access log's `cache`
/// field and the metric's `status` label (nginx's `$upstream_cache_status` words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from a fresh entry.
    Hit,
    /// No entry: fetched (and stored when allowed).
    Miss,
    /// An expired entry was replaced by a new answer.
    Expired,
    /// An expired entry answered because the upstream failed (`stale_if_error`).
    Stale,
    /// An expired entry answered at once while a background request refreshes it
    /// (`stale_while_revalidate`).
    Updating,
    /// An expired entry the upstream confirmed unchanged (304).
    Revalidated,
    /// The request could not use the store (method, range, preconditions, a body).
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Updating => "UPDATING",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}
