//! Helpers shared by unit tests.

use pingora::http::RequestHeader;

/// A request header with `target` and the given headers, in order.
pub fn request_header(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", target.as_bytes(), None).expect("valid test request");
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).expect("valid test header");
    }
    r
}

/// A route for routing tests: upstream 0, no auth, no rules.
pub fn route(
    name: &str,
    path: crate::config::PathMatch,
    methods: &[&str],
    headers: &[(&str, &str)],
) -> crate::route::Route {
    crate::route::Route {
        name: name.into(),
        path,
        methods: crate::routing::methods::MethodSet::from_names(methods.iter().copied()),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).expect("valid test header name"),
                    http::HeaderValue::from_str(v).expect("valid test header value"),
                )
            })
            .collect(),
        target: crate::route::Target::Upstream(0),
        strip_prefix: None,
        rewrite: None,
        request_headers: Default::default(),
        response_headers: Default::default(),
        timeout: None,
        auth: Default::default(),
        limits: Vec::new(),
        pass_headers: Vec::new(),
        pass_method_override: false,
        websocket: false,
        websocket_idle_timeout: std::time::Duration::from_secs(60),
        websocket_max_lifetime: None,
        retry_idempotency_key: false,
        max_body: None,
        ip: Default::default(),
        transform: Default::default(),
        cors: None,
        https_redirect: false,
        cache: None,
    }
}

/// A route's `cache:` block as the cache tests use it: 60 s, 200 and 404, GET and HEAD, the
/// whole query, `Accept-Language` allowed in `Vary`.
pub fn route_cache_config() -> crate::config::cache_schema::RouteCacheConfig {
    use crate::config::cache_schema::{ConsumerKey, KeyQuery, RouteCacheConfig};
    use std::time::Duration;
    RouteCacheConfig {
        ttl: Duration::from_secs(60),
        respect_cache_control: true,
        statuses: vec![200, 404],
        methods: vec![http::Method::GET, http::Method::HEAD],
        key_query: KeyQuery::All,
        key_headers: Vec::new(),
        consumer: ConsumerKey::Auto,
        vary: vec![http::header::ACCEPT_LANGUAGE],
        stale_while_revalidate: Duration::from_secs(5),
        stale_if_error: Duration::ZERO,
        lock_timeout: Duration::from_secs(5),
        keep: Duration::from_secs(300),
    }
}

/// A route's compiled cache with [`route_cache_config`] and a fixed namespace.
pub fn route_cache() -> crate::cache::RouteCache {
    crate::cache::RouteCache {
        config: route_cache_config(),
        namespace: "bench#1".into(),
    }
}
