//! CORS: a preflight is answered by the gateway before authentication and never reaches the
//! upstream; actual responses carry `Access-Control-*` only for allowed origins (the
//! upstream's own are replaced); `check` refuses `*` with credentials. Also `https_redirect`
//! and `Strict-Transport-Security`.

mod support;

use support::*;

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  keys:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}/conf/keys.yaml\ncors:\n  web:\n    allow_origins: [\"https://app.example.com\", \"https://*.example.com\"]\n    allow_methods: [GET, POST, DELETE]\n    allow_headers: [authorization, x-api-key, content-type]\n    expose_headers: [etag]\n    allow_credentials: true\n    max_age: 10m\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /orders, methods: [GET, POST, DELETE] }}, upstream: app, auth: [keys], cors: web }}\n  - {{ name: public, match: {{ path_prefix: /public }}, upstream: app, cors: {{ allow_origins: [\"*\"] }} }}\n  - {{ name: plain, match: {{ path_prefix: / }}, upstream: app, auth: [keys] }}\n",
        up.addr(),
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn preflight(gw: &Gateway, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    let mut extra = vec![("origin", origin), ("access-control-request-method", method)];
    if !headers.is_empty() {
        extra.push(("access-control-request-headers", headers));
    }
    request(gw.addr(), "OPTIONS", "localhost", path, &extra, b"")
}

#[test]
fn a_preflight_is_answered_before_authentication_and_never_reaches_the_upstream() {
    let up = Upstream::start("app");
    let gw = gateway(&up);
    let r = preflight(
        &gw,
        "/orders/7",
        "https://app.example.com",
        "DELETE",
        "Authorization, X-Api-Key",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, DELETE")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, x-api-key, content-type")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), None, "a 204 has no length");
    // A subdomain by the wildcard; the OPTIONS method itself is not one the route lists.
    let r = preflight(
        &gw,
        "/orders",
        "https://admin.example.com",
        "POST",
        "content-type",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://admin.example.com")
    );
    // Refused: another origin, a look-alike, a method or a header the policy does not list.
    for (origin, method, headers) in [
        ("https://evil.com", "GET", ""),
        ("https://app.example.com.evil.com", "GET", ""),
        ("http://app.example.com", "GET", ""),
        ("null", "GET", ""),
        ("https://app.example.com", "GET", "x-admin"),
    ] {
        let r = preflight(&gw, "/orders", origin, method, headers);
        assert_eq!(r.status, 403, "{origin} {method} {headers}: {}", r.text());
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
    // A method the path's routes do not serve at all: 405, as for the actual request.
    let r = preflight(&gw, "/orders", "https://app.example.com", "PUT", "");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), None);
    // An OPTIONS request on a route without a policy is an ordinary request: it needs a key.
    let r = preflight(&gw, "/other", "https://app.example.com", "GET", "");
    assert_eq!(r.status, 401);
    assert_eq!(up.count(), 0, "no preflight reached the upstream");
}

#[test]
fn actual_responses_carry_the_policy_for_allowed_origins_only() {
    let up = Upstream::start("app");
    up.script(
        "/public/x",
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nAccess-Control-Allow-Origin: https://evil.com\r\nAccess-Control-Allow-Credentials: true\r\n\r\nok".to_vec()],
    );
    let gw = gateway(&up);
    let key = [
        ("x-api-key", "demo-key-not-secret"),
        ("origin", "https://app.example.com"),
    ];
    let r = request(gw.addr(), "GET", "localhost", "/orders/1", &key, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-expose-headers"), Some("etag"));
    assert!(r.header_all("vary").iter().any(|v| v.contains("Origin")));
    // An error the gateway writes is readable by the allowed origin too.
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/orders/1",
        &[("origin", "https://app.example.com")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // Another origin: no CORS headers, and the upstream's own are removed.
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/public/x",
        &[("origin", "https://evil.com")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("*"),
        "the public policy allows any origin"
    );
    assert_eq!(r.header("access-control-allow-credentials"), None);
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/orders/1",
        &[
            ("x-api-key", "demo-key-not-secret"),
            ("origin", "https://evil.com"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn check_refuses_a_wildcard_origin_with_credentials_and_bad_patterns() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\ncors:\n  open:\n    allow_origins: [\"*\"]\n    allow_credentials: true\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, cors: { allow_origins: [\"https://*.com\", \"app.example.com\", \"https://a.example.com/x\"], allow_methods: [get] } }\n  - { name: s, match: { path_prefix: /s }, upstream: a, cors: nope }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "cors.open.allow_origins: `*` with allow_credentials: true",
        "routes[0].cors.allow_origins[0]: `https://*.com`",
        "routes[0].cors.allow_origins[1]: `app.example.com`",
        "routes[0].cors.allow_origins[2]: `https://a.example.com/x`",
        "routes[0].cors.allow_methods[0]: `get` is not a method name",
        "routes[1].cors: no CORS policy named `nope`",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}

#[test]
fn plain_http_is_redirected_to_https_and_hsts_is_sent_over_tls_only() {
    let pki = Pki::new("redirect ca");
    let (a, ak) = pki.server("a", &["a.test"], 90);
    let up = Upstream::start("app");
    let (tls_port, _) = two_free_ports();
    let gw = Gateway::start_with(
        &format!(
            "listen: [\"127.0.0.1:{{port}}\", {{ addr: \"127.0.0.1:{tls_port}\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }} }}]\nhsts: {{ max_age: 8760h, include_subdomains: true }}",
            a.display(),
            ak.display()
        ),
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: secure, match: {{ path_prefix: /secure }}, upstream: app, https_redirect: true }}\n  - {{ name: open, match: {{ path_prefix: / }}, upstream: app }}\n",
            up.addr()
        ),
    );
    let r = request(gw.addr(), "POST", "a.test", "/secure/x?y=1", &[], b"body");
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://a.test:{tls_port}/secure/x?y=1").as_str())
    );
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "never over plain HTTP"
    );
    let v6_host = format!("[::1]:{}", gw.addr().port());
    let r = request(gw.addr(), "GET", &v6_host, "/secure/v6", &[], b"");
    assert_eq!(
        r.header("location"),
        Some(format!("https://[::1]:{tls_port}/secure/v6").as_str())
    );
    assert_eq!(up.count(), 0);
    assert_eq!(gw.get("/open").status, 200);
    let tls_addr = std::net::SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut c = tls_connect(tls_addr, "a.test", &pki.ca.issued.cert, &TlsOptions::default()).expect("tls");
    let r = c.get("a.test", "/secure/x").expect("over tls");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

#[test]
fn a_preflight_is_answered_only_when_every_route_the_request_could_reach_shares_the_policy() {
    let up = Upstream::start("app");
    let internal = Upstream::start("internal");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\n  internal:\n    targets: [\"{}\"]\ncors:\n  partner: {{ allow_origins: [\"https://partner.example.net\"], allow_methods: [DELETE], allow_headers: [\"*\"], allow_credentials: true }}\nroutes:\n  - {{ name: internal-json, match: {{ path_prefix: /api, methods: [DELETE], headers: {{ content-type: application/json }} }}, upstream: internal }}\n  - {{ name: partner, match: {{ path_prefix: /api, methods: [DELETE] }}, upstream: app, cors: partner }}\n  - {{ name: both-a, match: {{ path_prefix: /shared, methods: [DELETE], headers: {{ x-kind: a }} }}, upstream: app, cors: partner }}\n  - {{ name: both-b, match: {{ path_prefix: /shared, methods: [DELETE] }}, upstream: app, cors: partner }}\n",
        up.addr(),
        internal.addr()
    ));
    // The actual DELETE with a JSON body would reach `internal-json`, which has no policy: the
    // partner's policy must not approve it.
    let r = preflight(
        &gw,
        "/api/orders/1",
        "https://partner.example.net",
        "DELETE",
        "content-type",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Both candidates share the policy: answered.
    let r = preflight(
        &gw,
        "/shared/1",
        "https://partner.example.net",
        "DELETE",
        "x-kind",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(up.count() + internal.count(), 0);
}
