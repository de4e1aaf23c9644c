//! Route matching and precedence, 404/405, rewrites, header rules and proxy hygiene.

mod support;

use support::*;

fn two_upstreams() -> (Upstream, Upstream) {
    (Upstream::start("a"), Upstream::start("b"))
}

fn upstreams(a: &Upstream, b: &Upstream) -> String {
    format!(
        "upstreams:\n  a:\n    targets: [\"{}\"]\n  b:\n    targets: [\"{}\"]\n",
        a.addr(),
        b.addr()
    )
}

fn served_by(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-upstream").unwrap_or("-").to_string()
}

#[test]
fn precedence_exact_longest_prefix_conditions_order() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:
  - {{ name: root, match: {{ path_prefix: / }}, upstream: a }}
  - {{ name: users, match: {{ path_prefix: /users }}, upstream: a }}
  - {{ name: users-exact, match: {{ path: /users }}, upstream: b }}
  - {{ name: users-admin, match: {{ path_prefix: /users/admin }}, upstream: b }}
  - {{ name: tenant, match: {{ path_prefix: /users, headers: {{ x-tenant: acme }} }}, upstream: b }}
",
        upstreams(&a, &b)
    ));
    let tenant = |path: &str| request(gw.addr(), "GET", "localhost", path, &[("x-tenant", "acme")], b"");
    assert_eq!(served_by(&gw.get("/users")), "b", "exact path wins");
    assert_eq!(served_by(&gw.get("/users/7")), "a", "prefix");
    assert_eq!(served_by(&gw.get("/users/")), "a", "prefix with trailing slash");
    assert_eq!(served_by(&gw.get("/users/admin/x")), "b", "longest prefix");
    assert_eq!(served_by(&tenant("/users/7")), "b", "more conditions");
    assert_eq!(served_by(&gw.get("/usersx")), "a", "segment boundary: falls to /");
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "users-admin"), ("status", "200")],
        1.0,
    );
}

#[test]
fn hosts_exact_wildcard_case_and_port() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:
  - {{ name: api, match: {{ hosts: [api.example.com], path_prefix: / }}, upstream: a }}
  - {{ name: wild, match: {{ hosts: [\"*.example.com\"], path_prefix: / }}, upstream: b }}
",
        upstreams(&a, &b)
    ));
    assert_eq!(served_by(&get(gw.addr(), "api.example.com", "/x")), "a");
    assert_eq!(served_by(&get(gw.addr(), "API.Example.COM:8443", "/x")), "a");
    assert_eq!(served_by(&get(gw.addr(), "eu.example.com", "/x")), "b");
    assert_eq!(served_by(&get(gw.addr(), "a.b.example.com", "/x")), "b");
    assert_eq!(get(gw.addr(), "example.com", "/x").status, 404);
    assert_eq!(get(gw.addr(), "evil.com", "/x").status, 404);
}

#[test]
fn not_found_and_method_not_allowed_are_problem_json() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:
  - {{ name: read, match: {{ path_prefix: /items, methods: [GET, HEAD] }}, upstream: a }}
  - {{ name: write, match: {{ path_prefix: /items, methods: [post] }}, upstream: b }}
",
        upstreams(&a, &b)
    ));
    let r = gw.get("/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["request_id"].as_str(), r.header("x-request-id"));
    let r = request(gw.addr(), "DELETE", "localhost", "/items/1", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(r.json()["status"], 405);
    assert_eq!(
        served_by(&request(gw.addr(), "POST", "localhost", "/items/1", &[], b"x")),
        "b"
    );
    assert_eq!(
        a.count() + b.count(),
        1,
        "rejected requests never reached an upstream"
    );
}

#[test]
fn strip_prefix_and_header_rules() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:
  - name: api
    match: {{ path_prefix: /api/v1 }}
    upstream: a
    strip_prefix: /api
    request_headers:
      set: {{ x-gateway: portcullis }}
      add: {{ x-multi: two }}
      remove: [x-debug]
    response_headers:
      set: {{ cache-control: no-store }}
      remove: [x-upstream-secret]
",
        upstreams(&a, &b)
    ));
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/api/v1/users?x=1",
        &[
            ("x-debug", "1"),
            ("x-multi", "one"),
            ("x-gateway", "spoofed"),
            ("x-response-header", "x-upstream-secret: s3cret"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-upstream-secret"), None);
    let seen = &a.requests()[0];
    assert_eq!(seen.target, "/v1/users?x=1");
    assert_eq!(seen.header("x-gateway"), Some("portcullis"));
    assert_eq!(seen.header("x-debug"), None);
    assert_eq!(seen.header_all("x-multi"), vec!["one", "two"]);
}

#[test]
fn forwarding_headers_request_id_and_hop_by_hop() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: a }}\n",
        upstreams(&a, &b)
    ));
    let r = request(
        gw.addr(),
        "GET",
        "Front.Example:80",
        "/x",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("trailer", "x-t"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("upgrade", "h2c"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let generated = r.header("x-request-id").expect("request id echoed").to_string();
    assert_eq!(generated.len(), 32);
    let seen = &a.requests()[0];
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "spoofed chain replaced"
    );
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("forwarded"), None);
    assert_eq!(seen.header("x-forwarded-host"), Some("front.example"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-request-id"), Some(generated.as_str()));
    for hop in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "http2-settings",
        "upgrade",
        "connection",
    ] {
        assert_eq!(seen.header(hop), None, "{hop} forwarded");
    }
    // Headers named in Connection are hop-by-hop too.
    let r = gw.send(b"GET /y HTTP/1.1\r\nHost: localhost\r\nConnection: close, x-secret-hop\r\nx-secret-hop: 1\r\nx-request-id: client-id-42\r\n\r\n");
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    let seen = &a.requests()[1];
    assert_eq!(seen.header("x-secret-hop"), None);
    assert_eq!(seen.header("x-request-id"), Some("client-id-42"));
    // An id that could inject into logs is replaced.
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/z",
        &[("x-request-id", "a b\"c")],
        b"",
    );
    assert_ne!(r.header("x-request-id"), Some("a b\"c"));
    // A client may not use `Connection` to make the proxy drop the headers it sets itself
    // (the gateway's forwarding headers would vanish, or the client's copies survive).
    // Nominations of Host and X-Forwarded-* are refused outright (as Pingora's request policy
    // does), and so are other spellings of them and what no header name can be; others are
    // removed before the gateway sets its own values.
    let before = a.count();
    for (nominated, status) in [
        ("X-Forwarded-For", 400),
        ("host", 400),
        ("HOST", 400),
        ("x-forwarded-proto", 400),
        ("X-Forwarded-Host", 400),
        ("\"X-Forwarded-For\"", 400),
        ("x-forwarded-for;", 400),
        (":authority", 400),
        ("a, b, c, d, e, f, g, h, i", 400),
        ("x-real-ip", 200),
        ("X-Request-Id", 200),
    ] {
        let raw = format!(
            "GET /n HTTP/1.1\r\nHost: localhost\r\nConnection: close, {nominated}\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n"
        );
        assert_eq!(gw.send(raw.as_bytes()).status, status, "Connection: {nominated}");
    }
    assert_eq!(
        a.count(),
        before + 2,
        "the refused ones never reached the upstream"
    );
    for seen in a.requests().iter().skip(before) {
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
        assert!(seen.header("x-request-id").is_some());
        assert_eq!(seen.header("host"), Some("localhost"));
    }
}

#[test]
fn trusted_proxies_extend_the_chain() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start_with(
        "trusted_proxies: [\"127.0.0.0/8\"]",
        &format!(
            "{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: a }}\n",
            upstreams(&a, &b)
        ),
    );
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/x",
        &[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = &a.requests()[0];
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn access_log_and_metrics() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: a }}\n",
        upstreams(&a, &b)
    ));
    let r = gw.get("/users/1");
    let id = r.header("x-request-id").expect("id").to_string();
    assert_eq!(gw.get("/nope").status, 404);
    let line = wait_for("access log line", std::time::Duration::from_secs(10), || {
        gw.log()
            .lines()
            .find(|l| l.contains(&format!("id={id}")))
            .map(str::to_string)
    });
    for field in [
        "client=127.0.0.1",
        "method=GET",
        "path=/users/1",
        "route=users",
        "status=200",
        "bytes=",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(line.contains(&format!("target={}", a.addr())), "{line}");
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "users"), ("method", "GET"), ("status", "200")],
        1.0,
    );
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "-"), ("status", "404")],
        1.0,
    );
    gw.wait_metric(
        "portcullis_request_duration_seconds_count",
        &[("route", "users")],
        1.0,
    );
    gw.wait_metric(
        "portcullis_upstream_requests_total",
        &[("upstream", "a"), ("status", "200")],
        1.0,
    );
    gw.wait_metric("portcullis_build_info", &[], 1.0);
    let healthz = get(gw.admin(), "localhost", "/healthz");
    assert_eq!(healthz.status, 200);
}

/// `underscores_in_headers: reject` refuses such names; `allow` lets them through except
/// spellings of managed headers; a route may let an override header through by name.
#[test]
fn underscore_policy_and_pass_headers() {
    let (a, b) = two_upstreams();
    let routes = format!(
        "{}routes:\n  - {{ name: plain, match: {{ path_prefix: /plain }}, upstream: a }}\n  - {{ name: legacy, match: {{ path_prefix: /legacy }}, upstream: b, pass_headers: [X-HTTP-Method-Override] }}\n",
        upstreams(&a, &b)
    );
    let strict = Gateway::start_with("underscores_in_headers: reject", &routes);
    let r = request(
        strict.addr(),
        "GET",
        "localhost",
        "/plain",
        &[("x_custom", "1")],
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(a.count(), 0);

    let lax = Gateway::start_with("underscores_in_headers: allow", &routes);
    let headers = [
        ("x_custom", "kept"),
        ("x_forwarded_for", "6.6.6.6"),
        ("x-http-method-override", "DELETE"),
    ];
    assert_eq!(
        request(lax.addr(), "GET", "localhost", "/plain", &headers, b"").status,
        200
    );
    assert_eq!(
        request(lax.addr(), "GET", "localhost", "/legacy", &headers, b"").status,
        200
    );
    let plain = &a.requests()[0];
    assert_eq!(plain.header("x_custom"), Some("kept"));
    assert_eq!(plain.header("x_forwarded_for"), None);
    assert_eq!(plain.header("x-http-method-override"), None);
    let legacy = &b.requests()[0];
    assert_eq!(
        legacy.header("x-http-method-override"),
        Some("DELETE"),
        "passed by name"
    );
}

/// An upgrade the client did not ask for, or any upgrade on a route without `websocket`,
/// and statuses outside 100–599 are not relayed.
#[test]
fn upgrades_only_where_enabled_and_only_when_requested() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ name: api, match: {{ path_prefix: /api }}, upstream: a }}\n  - {{ name: ws, match: {{ path_prefix: /ws }}, upstream: b, websocket: true }}\n",
        upstreams(&a, &b)
    ));
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
    ];
    // A WebSocket handshake on a plain route is refused, not quietly turned into a request.
    let r = request(gw.addr(), "GET", "localhost", "/api/x", &upgrade, b"");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        a.count(),
        0,
        "no upgrade attempt reaches a plain route's upstream"
    );
    // Where enabled, only version 13: anything else is told which one (426).
    let old = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "8"),
    ];
    let r = request(gw.addr(), "GET", "localhost", "/ws/x", &old, b"");
    assert_eq!(r.status, 426, "{}", r.text());
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    assert_eq!(b.count(), 0);
    for status in ["101", "600", "999"] {
        let r = request(
            gw.addr(),
            "GET",
            "localhost",
            "/api/x",
            &[("x-status", status)],
            b"",
        );
        assert_eq!(r.status, 502, "upstream status {status}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/api/x",
        &[("connection", "Upgrade"), ("upgrade", "h2c"), ("x-status", "101")],
        b"",
    );
    assert_eq!(
        r.status, 502,
        "the upstream never saw the upgrade, so its 101 is refused"
    );
    assert_eq!(
        request(gw.addr(), "GET", "localhost", "/ws/x", &upgrade, b"").status,
        200
    );
    assert_eq!(
        b.requests()[0].header("upgrade"),
        Some("websocket"),
        "passed where enabled"
    );
    assert_eq!(b.requests()[0].header("connection"), Some("Upgrade"));
    // Only a WebSocket handshake: an h2c upgrade would tunnel later requests past routing.
    let h2c = [
        ("connection", "Upgrade, HTTP2-Settings"),
        ("upgrade", "h2c"),
        ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
    ];
    assert_eq!(
        request(gw.addr(), "GET", "localhost", "/ws/x", &h2c, b"").status,
        200
    );
    assert_eq!(
        b.requests()[1].header("upgrade"),
        None,
        "h2c never reaches the upstream"
    );
    assert_eq!(b.requests()[1].header("http2-settings"), None);
    // A handshake from an HTTP/1.0 client is not passed on as one (Pingora's policy), and a
    // `Connection` that nominates `Upgrade` or lists other options still yields the one
    // handshake the upstream expects.
    let r = gw.send(
        b"GET /ws/x HTTP/1.0\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(b.requests()[2].header("upgrade"), None, "HTTP/1.0");
    let r = gw.send(
        b"GET /ws/x HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Hop, Upgrade\r\nX-Hop: 1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = &b.requests()[3];
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("Upgrade"));
    assert_eq!(seen.header("x-hop"), None);
    assert!(seen.header("sec-websocket-key").is_some());
}

/// The review's attack on the header fallback: a tenant route for one host on `/orders`, a
/// public `/orders` and a method-restricted `/orders/admin` for every host. A request for that
/// host without the tenant header is decided by the most specific path for every host.
#[test]
fn a_header_mismatch_never_reaches_a_shorter_path_on_another_host_group() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ name: tenant, match: {{ hosts: [api.example.com], path_prefix: /orders, headers: {{ x-tenant: acme }} }}, upstream: b }}\n  - {{ name: orders, match: {{ path_prefix: /orders }}, upstream: a }}\n  - {{ name: orders-admin, match: {{ path_prefix: /orders/admin, methods: [GET, POST] }}, upstream: b }}\n",
        upstreams(&a, &b)
    ));
    let r = request(
        gw.addr(),
        "DELETE",
        "api.example.com",
        "/orders/admin/users/1",
        &[],
        b"",
    );
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(a.count(), 0, "the public /orders upstream never saw it");
    let r = request(gw.addr(), "DELETE", "api.example.com", "/orders/7", &[], b"");
    assert_eq!(served_by(&r), "a");
}

/// `access_log: false` holds for every request, including those refused before routing
/// (a malformed path, a missing Host): the snapshot is taken when the request begins.
#[test]
fn access_log_off_also_for_requests_refused_before_routing() {
    let (a, b) = two_upstreams();
    let gw = Gateway::start_with(
        "access_log: false\n",
        &format!(
            "{}routes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: a }}\n",
            upstreams(&a, &b)
        ),
    );
    let marker = "refusedbeforerouting";
    let refused = [
        format!("GET /users/%2e%2e/{marker} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!("GET /{marker} HTTP/1.1\r\n\r\n"),
        format!("GET /nope/{marker} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for raw in &refused {
        let r = gw.send(raw.as_bytes());
        assert!((400..500).contains(&r.status), "{raw:?}: {}", r.status);
    }
    assert_eq!(gw.get("/users/1").status, 200);
    // Metrics still count them; the log never names them.
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "users"), ("status", "200")],
        1.0,
    );
    let log = gw.log();
    assert!(!log.contains(marker), "{log}");
    assert!(!log.contains("method=GET"), "{log}");
}

/// An upstream answer's hop-by-hop headers (the standard ones, `Upgrade` on a non-101, and
/// whatever its `Connection` nominates, in any case) never reach the client; the rest does.
#[test]
fn hop_by_hop_headers_of_an_answer_never_reach_the_client() {
    let (a, b) = two_upstreams();
    let body = "ok";
    a.script(
        "/h",
        vec![format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, X-Internal-Token , x-other\r\n\
             X-Internal-Token: secret-1\r\nX-OTHER: secret-2\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Authenticate: Basic\r\nTrailer: x-t\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n\
             X-Kept: 1\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()],
    );
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: a }}\n",
        upstreams(&a, &b)
    ));
    let r = gw.get("/h");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), body);
    assert_eq!(r.header("x-kept"), Some("1"));
    for h in [
        "x-internal-token",
        "x-other",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(r.header(h), None, "{h} reached the client");
    }
    assert!(!r.text().contains("secret"));
}
