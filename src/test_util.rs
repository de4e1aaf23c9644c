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
