//! Aggregation against real upstreams: parts fanned out in parallel, merged in declaration
//! order whatever order they answer in, failures named, never silently dropped, and every
//! template value unable to change a part's path or to forge an identity.

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

const JWT_SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

/// `upstreams:` with one single-target upstream per `(name, upstream)`.
fn upstreams(list: &[(&str, &Upstream)]) -> String {
    let mut out = "upstreams:\n".to_string();
    for (name, up) in list {
        out.push_str(&format!("  {name}:\n    targets: [\"{}\"]\n", up.addr()));
    }
    out
}

/// A complete JSON response with a length, its body after `pause` (see `answer_after`).
fn json_response(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<Vec<u8>> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    vec![head.into_bytes(), body.as_bytes().to_vec()]
}

/// Script `path` on `up` to answer `body`, its body sent `pause` after its head.
fn answer_after(up: &Upstream, path: &str, body: &str, pause: Duration) {
    up.script_paced(path, json_response(200, &[], body), pause);
}

fn body_json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

fn token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

fn alice(tenant: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    token(&json!({"iss": "https://idp", "sub": "alice", "exp": now + 600, "iat": now - 5, "tenant": tenant}))
}

const JWT_AUTH: &str = "auth:\n  employees:\n    type: jwt\n    issuers: [\"https://idp\"]\n    algorithms: [HS256]\n    secret_env: PORTCULLIS_TEST_SECRET\n    forward_claims: { sub: X-Consumer-Id }\n";

fn start_with_jwt(body: &str) -> Gateway {
    Gateway::start_env("", body, &[("PORTCULLIS_TEST_SECRET", JWT_SECRET)])
}

#[test]
fn three_slow_parts_run_in_parallel_and_merge_in_declaration_order() {
    let (users, orders, prefs) = (
        Upstream::start("users"),
        Upstream::start("orders"),
        Upstream::start("prefs"),
    );
    let slow = "request_headers: { set: { x-delay-ms: \"400\" } }";
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: profile\n    match: {{ path_prefix: /profile }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: users, path: \"/users/{{path.2}}\", {slow}, forward_headers: [accept-language] }}\n        - {{ name: orders, upstream: orders, path: \"/orders?customer={{path.2}}\", {slow} }}\n        - {{ name: prefs, upstream: prefs, path: /prefs, into: root, {slow} }}\n",
        upstreams(&[("users", &users), ("orders", &orders), ("prefs", &prefs)])
    ));
    let begun = Instant::now();
    let r = request(
        gw.addr(),
        "GET",
        "api.example.com",
        "/profile/42?limit=5",
        &[
            ("Accept-Language", "nb"),
            ("X-Client-Secret", "s3cret"),
            ("Cookie", "sid=1"),
            // An untrusted client's forwarding headers are replaced, never extended.
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6"),
        ],
        b"",
    );
    let took = begun.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    // Sequential would be at least 1.2 s; parallel is one part's 400 ms plus overhead.
    assert!(
        took < Duration::from_millis(1100),
        "three 400 ms parts took {took:?}"
    );
    assert_eq!(r.header("x-aggregate-complete"), Some("true"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = body_json(&r);
    assert_eq!(
        keys(&doc),
        ["user", "orders", "upstream", "method", "target", "headers"]
    );
    assert_eq!(doc["user"]["target"], "/users/42");
    assert_eq!(doc["orders"]["target"], "/orders?customer=42");
    assert_eq!(doc["upstream"], "prefs");
    // What each part received: the gateway's headers, only what it forwards of the client's.
    let id = r.header("x-request-id").expect("request id");
    for up in [&users, &orders, &prefs] {
        let seen = &up.requests()[0];
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.header("x-request-id"), Some(id));
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("host"), Some("api.example.com"));
        assert_eq!(seen.header("accept"), Some("application/json"));
        for never in ["x-client-secret", "cookie", "accept-encoding"] {
            assert_eq!(seen.header(never), None, "{} got {never}", up.name());
        }
    }
    assert_eq!(users.requests()[0].header("accept-language"), Some("nb"));
    assert_eq!(orders.requests()[0].header("accept-language"), None);
    assert_eq!(
        orders.requests()[0].target,
        "/orders?customer=42",
        "the client's query is not forwarded"
    );
    for up in [&users, &orders, &prefs] {
        let seen = &up.requests()[0];
        assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
        assert_eq!(seen.header("forwarded"), None);
    }
    // The answer varies with the headers parts read.
    assert_eq!(r.header("vary"), Some("accept-language"));
    // HEAD: the same head as a GET (the parts get GET), no body.
    let get = request(gw.addr(), "GET", "api", "/profile/42", &[], b"");
    let head = request(gw.addr(), "HEAD", "api", "/profile/42", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
}

#[test]
fn merge_is_byte_identical_whatever_order_parts_answer_in() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: merged\n    match: {{ path: /m }}\n    aggregate:\n      merge: deep\n      arrays: concat\n      on_conflict: last\n      parts:\n        - {{ name: a, upstream: a, path: /a, into: root }}\n        - {{ name: b, upstream: b, path: /b, into: root }}\n",
        upstreams(&[("a", &a), ("b", &b)])
    ));
    let doc_a = r#"{"x":1,"shared":{"p":1,"list":[1]},"only_a":true}"#;
    let doc_b = r#"{"x":2,"shared":{"q":2,"list":[2]},"only_b":true}"#;
    let mut bodies = Vec::new();
    for (slow_a, slow_b) in [(300, 0), (0, 300), (300, 0)] {
        answer_after(&a, "/a", doc_a, Duration::from_millis(slow_a));
        answer_after(&b, "/b", doc_b, Duration::from_millis(slow_b));
        let r = gw.get("/m");
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.body);
    }
    assert_eq!(bodies[0], bodies[1], "arrival order changed the answer");
    assert_eq!(bodies[0], bodies[2]);
    assert_eq!(
        String::from_utf8_lossy(&bodies[0]),
        r#"{"x":2,"shared":{"p":1,"list":[1,2],"q":2},"only_a":true,"only_b":true}"#
    );
}

#[test]
fn each_on_conflict_policy() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    answer_after(&a, "/a", r#"{"x":"from-a","y":1}"#, Duration::from_millis(200));
    answer_after(&b, "/b", r#"{"x":"from-b","z":2}"#, Duration::ZERO);
    let route = |name: &str, policy: &str| {
        format!("  - name: {name}\n    match: {{ path: /{name} }}\n    aggregate:\n      on_conflict: {policy}\n      parts:\n        - {{ name: a, upstream: a, path: /a, into: root }}\n        - {{ name: b, upstream: b, path: /b, into: root }}\n")
    };
    let gw = Gateway::start(&format!(
        "{}routes:\n{}{}{}",
        upstreams(&[("a", &a), ("b", &b)]),
        route("error", "error"),
        route("first", "first"),
        route("last", "last")
    ));
    let r = gw.get("/error");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(
        !r.text().contains("from-"),
        "no part data in a refused answer: {}",
        r.text()
    );
    wait_for("the conflict logged", Duration::from_secs(10), || {
        gw.log().contains("parts `a` and `b` both set `x`").then_some(())
    });
    assert_eq!(
        body_json(&gw.get("/first")),
        json!({"x": "from-a", "y": 1, "z": 2})
    );
    assert_eq!(
        body_json(&gw.get("/last")),
        json!({"x": "from-b", "y": 1, "z": 2})
    );
}

#[test]
fn failed_optional_parts_are_named_and_placed_by_on_error() {
    let up = Upstream::start("svc");
    let failing = "request_headers: { set: { x-status: \"503\" } }";
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: p\n    match: {{ path: /p }}\n    aggregate:\n      parts:\n        - {{ name: good, upstream: svc, path: /good, transform: {{ allow: [target] }} }}\n        - {{ name: omitted, upstream: svc, path: /o, {failing} }}\n        - {{ name: nulled, upstream: svc, path: /n, on_error: null, {failing} }}\n        - {{ name: fallback, upstream: svc, path: /s, on_error: {{ static: {{ items: [] }} }}, {failing} }}\n  - name: quiet\n    match: {{ path: /quiet }}\n    aggregate:\n      errors: none\n      parts:\n        - {{ name: good, upstream: svc, path: /good, transform: {{ allow: [target] }} }}\n        - {{ name: omitted, upstream: svc, path: /o, {failing} }}\n",
        upstreams(&[("svc", &up)])
    ));
    let r = gw.get("/p");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "a partial answer is never cached"
    );
    assert_eq!(
        body_json(&r),
        json!({
            "good": {"target": "/good"},
            "nulled": null,
            "fallback": {"items": []},
            "errors": {"omitted": {"status": 503}, "nulled": {"status": 503}, "fallback": {"status": 503}}
        })
    );
    let r = gw.get("/quiet");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
    assert_eq!(body_json(&r), json!({"good": {"target": "/good"}}));
}

#[test]
fn a_required_part_failing_or_timing_out_fails_the_answer() {
    let up = Upstream::start("svc");
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: fails\n    match: {{ path: /fails }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: svc, path: /u, required: true, request_headers: {{ set: {{ x-status: \"500\" }} }} }}\n        - {{ name: extra, upstream: svc, path: /e, request_headers: {{ set: {{ x-delay-ms: \"3000\" }} }} }}\n  - name: slow\n    match: {{ path: /slow }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: svc, path: /u, required: true, timeout: 200ms, request_headers: {{ set: {{ x-delay-ms: \"3000\" }} }} }}\n        - {{ name: extra, upstream: svc, path: /e }}\n  - name: overall\n    match: {{ path: /overall }}\n    aggregate:\n      timeout: 300ms\n      parts:\n        - {{ name: user, upstream: svc, path: /u }}\n        - {{ name: extra, upstream: svc, path: /e, timeout: 5s, request_headers: {{ set: {{ x-delay-ms: \"3000\" }} }} }}\n  - name: waits\n    match: {{ path: /waits }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: svc, path: /u, timeout: 200ms, request_headers: {{ set: {{ x-delay-ms: \"3000\" }} }} }}\n        - {{ name: orders, upstream: svc, path: /o, required: true, after: [user] }}\n",
        upstreams(&[("svc", &up)])
    ));
    // A required part not sent because the part it waits for timed out: a deadline, 504.
    let r = gw.get("/waits");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(
        body_json(&r)["errors"],
        json!({"user": {"reason": "timeout"}, "orders": {"reason": "dependency_failed", "after": "user"}})
    );
    // The required part fails at once: the slow optional one is stopped, not waited for.
    let begun = Instant::now();
    let r = gw.get("/fails");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        begun.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        begun.elapsed()
    );
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
    assert_eq!(
        body_json(&r)["errors"],
        json!({"user": {"status": 500}, "extra": {"reason": "cancelled"}})
    );
    let begun = Instant::now();
    let r = gw.get("/slow");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        begun.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        begun.elapsed()
    );
    assert_eq!(body_json(&r)["errors"], json!({"user": {"reason": "timeout"}}));
    // An optional part is cut at the overall deadline, not at its own later one.
    let begun = Instant::now();
    let r = gw.get("/overall");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        begun.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        begun.elapsed()
    );
    assert_eq!(body_json(&r)["errors"], json!({"extra": {"reason": "timeout"}}));
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
}

#[test]
fn after_chains_use_fields_of_earlier_parts() {
    let (users, orders, prefs) = (
        Upstream::start("users"),
        Upstream::start("orders"),
        Upstream::start("prefs"),
    );
    users.script("/me", json_response(200, &[], r#"{"id":7,"region":"eu/north"}"#));
    orders.script(
        "/orders/7",
        json_response(200, &[], r#"{"count":3,"last":"o-9"}"#),
    );
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: chain\n    match: {{ path: /chain }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: users, path: /me }}\n        - {{ name: orders, upstream: orders, path: \"/orders/{{user.id}}\", after: [user] }}\n        - {{ name: prefs, upstream: prefs, path: \"/prefs/{{user.region}}?last={{orders.last}}\", after: [user, orders] }}\n  - name: broken\n    match: {{ path: /broken }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: users, path: /missing, request_headers: {{ set: {{ x-status: \"404\" }} }} }}\n        - {{ name: orders, upstream: orders, path: \"/orders/{{user.id}}\", after: [user] }}\n",
        upstreams(&[("users", &users), ("orders", &orders), ("prefs", &prefs)])
    ));
    let r = gw.get("/chain");
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = body_json(&r);
    assert_eq!(doc["orders"], json!({"count": 3, "last": "o-9"}));
    assert_eq!(prefs.requests()[0].target, "/prefs/eu%2Fnorth?last=o-9");
    orders.reset();
    let r = gw.get("/broken");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        body_json(&r)["errors"],
        json!({"user": {"status": 404}, "orders": {"reason": "dependency_failed", "after": "user"}})
    );
    assert_eq!(orders.count(), 0, "a part after a failed part is never sent");
}

#[test]
fn template_values_never_change_a_parts_path_or_headers() {
    let up = Upstream::start("svc");
    let gw = start_with_jwt(&format!(
        "{}{JWT_AUTH}routes:\n  - name: t\n    match: {{ path_prefix: /t }}\n    auth: [employees]\n    aggregate:\n      parts:\n        - {{ name: p, upstream: svc, path: \"/items/{{path.2}}/{{claim.tenant}}?q={{query.q}}&h={{header.x-id}}\", request_headers: {{ set: {{ x-tenant: \"{{claim.tenant}}\", x-q: \"{{query.q}}\" }} }} }}\n",
        upstreams(&[("svc", &up)])
    ));
    let attacks = [
        // (path segment, tenant claim, query value as sent, header value); the gateway
        // already refuses an encoded `/` or `\` in the client's own path.
        ("a%3Fb=1", "../admin", "x%26admin%3D1", "..%2f"),
        ("..%252f", "a/b?c=d", "%23frag", "x?y=1#z"),
        ("%23top", "t#x", "%3F%2e%2e", "%0d"),
    ];
    for (segment, tenant, query, header) in attacks {
        up.reset();
        let bearer = format!("Bearer {}", alice(tenant));
        let r = request(
            gw.addr(),
            "GET",
            "api",
            &format!("/t/{segment}?q={query}"),
            &[("Authorization", &bearer), ("X-Id", header)],
            b"",
        );
        assert_eq!(r.status, 200, "{segment} {tenant}: {}", r.text());
        let seen = &up.requests()[0];
        let (path, q) = seen.target.split_once('?').expect("a query");
        assert!(path.starts_with("/items/"), "{}", seen.target);
        assert_eq!(
            path.matches('/').count(),
            3,
            "a value added a segment: {}",
            seen.target
        );
        assert!(
            !path.contains("/../") && !path.ends_with("/.."),
            "{}",
            seen.target
        );
        let names: Vec<&str> = q.split('&').map(|p| p.split('=').next().unwrap_or("")).collect();
        assert_eq!(names, ["q", "h"], "a value added a parameter: {}", seen.target);
        assert!(!seen.target.contains('#'));
        assert_eq!(seen.header("x-tenant"), Some(tenant));
    }
    // A value that would split a header (here a signed claim: the client's own request
    // target cannot even carry one), or stand as a whole segment `..`, `.` or empty, fails the
    // part: it is never sent.
    up.reset();
    for tenant in ["a\r\nX-Injected: 1", "a\nb", "a\u{0}b", "..", ".", ""] {
        let r = request(
            gw.addr(),
            "GET",
            "api",
            "/t/x?q=1",
            &[
                ("Authorization", &format!("Bearer {}", alice(tenant))),
                ("X-Id", "1"),
            ],
            b"",
        );
        assert_eq!(r.status, 502, "{tenant:?}: {}", r.text());
        assert_eq!(body_json(&r)["errors"]["p"]["reason"], "missing_value");
    }
    // The same from the client's own query: an escape decoding to CR, LF or NUL is refused
    // (400) before any part is built.
    for q in ["a%0D%0AX-Injected:%201", "%0A", "a%00b"] {
        let r = request(
            gw.addr(),
            "GET",
            "api",
            &format!("/t/x?q={q}"),
            &[
                ("Authorization", &format!("Bearer {}", alice("t"))),
                ("X-Id", "1"),
            ],
            b"",
        );
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

/// Authorization and rate limiting run once, before the fan-out: a refused request sends no
/// part, and one admitted request counts once against the limit however many parts it has.
#[test]
fn authorization_and_rate_limits_run_once_before_the_fan_out() {
    let up = Upstream::start("svc");
    let gw = start_with_jwt(&format!(
        "{}{JWT_AUTH}rate_limits:\n  per-consumer:\n    key: consumer\n    limits: [{{ requests: 2, per: 1m }}]\nroutes:\n  - name: t\n    match: {{ path: /t }}\n    auth: [employees]\n    require: {{ claims: {{ tenant: acme }} }}\n    rate_limit: [per-consumer]\n    aggregate:\n      parts:\n        - {{ name: a, upstream: svc, path: /a }}\n        - {{ name: b, upstream: svc, path: /b }}\n",
        upstreams(&[("svc", &up)])
    ));
    let get = |tenant: &str| {
        request(
            gw.addr(),
            "GET",
            "api",
            "/t",
            &[("Authorization", &format!("Bearer {}", alice(tenant)))],
            b"",
        )
    };
    assert_eq!(get("other").status, 403);
    assert_eq!(up.count(), 0, "a refused request sends no part");
    assert_eq!(get("acme").status, 200);
    assert_eq!(get("acme").status, 200);
    assert_eq!(up.count(), 4, "two parts per request");
    let r = get("acme");
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(up.count(), 4, "a limited request sends no part");
}

#[test]
fn identity_headers_reach_parts_only_from_authentication() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = start_with_jwt(&format!(
        "{}{JWT_AUTH}routes:\n  - name: me\n    match: {{ path: /me }}\n    auth: [employees]\n    aggregate:\n      parts:\n        - {{ name: a, upstream: a, path: \"/users/{{consumer}}\", forward_headers: [x-consumer-id, authorization, accept-language], request_headers: {{ set: {{ x-tenant: \"{{claim.tenant}}\" }} }} }}\n        - {{ name: b, upstream: b, path: /b, forward_headers: [x-evil] }}\n",
        upstreams(&[("a", &a), ("b", &b)])
    ));
    let r = request(
        gw.addr(),
        "GET",
        "api",
        "/me",
        &[
            ("Authorization", &format!("Bearer {}", alice("acme"))),
            ("X-Consumer-Id", "mallory"),
            ("x-consumer-id", "eve"),
            ("X-Evil", "mallory"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for up in [&a, &b] {
        let seen = &up.requests()[0];
        assert_eq!(seen.header_all("x-consumer-id"), ["alice"], "{}", up.name());
        assert_eq!(seen.header("authorization"), None, "the credential is stripped");
    }
    assert_eq!(a.requests()[0].target, "/users/alice");
    assert_eq!(a.requests()[0].header("x-tenant"), Some("acme"));
    // Unauthenticated: no part is called at all.
    let r = gw.get("/me");
    assert_eq!(r.status, 401);
    assert_eq!(a.count() + b.count(), 2);
}

#[test]
fn parts_without_a_usable_target() {
    let up = Upstream::start("svc");
    let sick = Upstream::start("sick");
    sick.set_health_status(500);
    let closed = free_port();
    let gw = Gateway::start(&format!(
        "upstreams:\n  svc:\n    targets: [\"{}\"]\n  sick:\n    targets: [\"{}\"]\n    health_check: {{ path: /health, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }}\n  gone:\n    targets: [\"127.0.0.1:{closed}\"]\nroutes:\n  - name: p\n    match: {{ path: /p }}\n    aggregate:\n      parts:\n        - {{ name: ok, upstream: svc, path: /ok }}\n        - {{ name: sick, upstream: sick, path: /s }}\n        - {{ name: gone, upstream: gone, path: /g }}\n  - name: required\n    match: {{ path: /r }}\n    aggregate:\n      parts:\n        - {{ name: ok, upstream: svc, path: /ok }}\n        - {{ name: gone, upstream: gone, path: /g, required: true }}\n",
        up.addr(),
        sick.addr()
    ));
    let r = wait_for(
        "the sick target marked unhealthy",
        Duration::from_secs(10),
        || {
            let r = gw.get("/p");
            (body_json(&r)["errors"]["sick"]["reason"] == "no_target").then_some(r)
        },
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        body_json(&r)["errors"]["gone"],
        json!({"reason": "connect_error"})
    );
    let errors = body_json(&r)["errors"].to_string();
    assert!(
        !errors.contains("127.0.0.1") && !errors.contains(&closed.to_string()),
        "an internal address leaked: {errors}"
    );
    assert_eq!(gw.get("/r").status, 502);
}

#[test]
fn part_connections_are_reused() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: p\n    match: {{ path: /p }}\n    aggregate:\n      parts:\n        - {{ name: a, upstream: a, path: /a }}\n        - {{ name: b, upstream: b, path: /b, request_headers: {{ set: {{ x-status: \"404\" }} }} }}\n",
        upstreams(&[("a", &a), ("b", &b)])
    ));
    for _ in 0..30 {
        assert_eq!(gw.get("/p").status, 200);
    }
    assert_eq!(a.count(), 30);
    // Sequential requests: one connection each would do; a few allow for the gateway's
    // worker threads each keeping their own.
    assert!(
        a.connections() <= 4,
        "{} connections for 30 requests",
        a.connections()
    );
    assert!(
        b.connections() <= 4,
        "non-2xx answers are read to the end and reused too: {}",
        b.connections()
    );
}

#[test]
fn a_request_body_goes_to_exactly_one_part() {
    let (orders, audit) = (Upstream::start("orders"), Upstream::start("audit"));
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: checkout\n    match: {{ path: /checkout }}\n    aggregate:\n      allow_methods: [POST]\n      max_body: 1KiB\n      parts:\n        - {{ name: order, upstream: orders, path: /orders, body: true, required: true }}\n        - {{ name: audit, upstream: audit, path: /audit }}\n",
        upstreams(&[("orders", &orders), ("audit", &audit)])
    ));
    let r = request(
        gw.addr(),
        "POST",
        "api",
        "/checkout",
        &[("Content-Type", "application/json")],
        br#"{"sku":"a-1"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &orders.requests()[0];
    assert_eq!(
        (seen.method.as_str(), seen.body.as_slice()),
        ("POST", &br#"{"sku":"a-1"}"#[..])
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let other = &audit.requests()[0];
    assert_eq!((other.method.as_str(), other.body.len()), ("GET", 0));
    assert_eq!(other.header("content-length"), None);
    // A GET (with a body) is a GET for every part, the body part included.
    let r = request(
        gw.addr(),
        "GET",
        "api",
        "/checkout",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &orders.requests()[1];
    assert_eq!((seen.method.as_str(), seen.body.len()), ("GET", 0));
    assert_eq!(seen.header("content-length"), None);
    orders.reset();
    audit.reset();
    let r = request(gw.addr(), "DELETE", "api", "/checkout", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
    let r = request(gw.addr(), "POST", "api", "/checkout", &[], &[b'x'; 2048]);
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-aggregate-complete"), Some("false"));
    assert_eq!(orders.count(), 0, "no part saw the refused requests");
    assert_eq!(audit.count(), 0);
}

#[test]
fn exposed_headers_cookies_and_cache_control() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    a.script(
        "/a",
        json_response(
            200,
            &[
                ("ETag", "\"a1\""),
                ("Set-Cookie", "a=1"),
                ("Cache-Control", "max-age=60"),
            ],
            "{}",
        ),
    );
    b.script(
        "/b",
        json_response(
            200,
            &[
                ("Set-Cookie", "b=1"),
                ("Cache-Control", "public, max-age=30"),
                ("X-Internal", "yes"),
            ],
            "{}",
        ),
    );
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: p\n    match: {{ path: /p }}\n    response_headers: {{ set: {{ x-gw: \"1\" }} }}\n    transform:\n      response: {{ deny: [b] }}\n    aggregate:\n      parts:\n        - {{ name: a, upstream: a, path: /a, expose_headers: [etag, set-cookie] }}\n        - {{ name: b, upstream: b, path: /b }}\n",
        upstreams(&[("a", &a), ("b", &b)])
    ));
    let r = gw.get("/p");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header_all("set-cookie"), ["a=1"], "only exposed cookies");
    assert_eq!(r.header("etag"), Some("\"a1\""));
    assert_eq!(r.header("x-internal"), None);
    assert_eq!(r.header("cache-control"), Some("max-age=30"));
    assert_eq!(r.header("x-gw"), Some("1"), "the route's response rules apply");
    assert_eq!(
        body_json(&r),
        json!({"a": {}}),
        "the route's transform applies to the merged answer"
    );
}

#[test]
fn metrics_and_access_log_summarize_each_part() {
    let up = Upstream::start("svc");
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: p\n    match: {{ path: /p }}\n    aggregate:\n      parts:\n        - {{ name: good, upstream: svc, path: /g }}\n        - {{ name: bad, upstream: svc, path: /b, request_headers: {{ set: {{ x-status: \"503\" }} }} }}\n",
        upstreams(&[("svc", &up)])
    ));
    let r = gw.get("/p");
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").expect("id").to_string();
    let line = wait_for("access log line", Duration::from_secs(10), || {
        gw.log()
            .lines()
            .find(|l| l.contains(&format!("id={id}")))
            .map(str::to_string)
    });
    assert!(line.contains(" parts=good:200:"), "{line}");
    assert!(line.contains(",bad:503:"), "{line}");
    assert!(gw.log().contains("part `bad` failed (status 503)"));
    assert_eq!(
        gw.metric(
            "portcullis_aggregate_parts_total",
            &[("route", "p"), ("part", "good"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        gw.metric(
            "portcullis_aggregate_parts_total",
            &[("route", "p"), ("part", "bad"), ("outcome", "status")]
        ),
        1.0
    );
    assert_eq!(
        gw.metric(
            "portcullis_aggregate_part_duration_seconds_count",
            &[("route", "p"), ("part", "good")]
        ),
        1.0
    );
}

#[test]
fn check_reports_every_aggregation_mistake_at_once() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: r\n    match: { path: /r, methods: [GET, DELETE] }\n    upstream: a\n    aggregate:\n      arrays: concat\n      parts:\n        - { name: x, upstream: a, path: \"/x/{nope}\" }\n        - { name: y, upstream: b, path: \"/y/{x.id}\" }\n        - { name: y, upstream: a, path: \"/y/{consumer}\" }\n        - { name: c1, upstream: a, path: /c, after: [c2] }\n        - { name: c2, upstream: a, path: /c, after: [c1], into: c1 }\n        - { name: e, upstream: a, path: /e, body: true, into: errors }\n        - { name: s, upstream: a, path: /s, into: root, on_error: null }\n        - { name: h, upstream: a, path: /h, expose_headers: [content-length], request_headers: { set: { host: x } } }\n        - { name: z, upstream: a, path: \"/z/{header.authorization}\" }\n        - { name: w, upstream: a, path: \"/w/<{path.1}>\" }\n        - { name: v, upstream: a, path: /v, request_headers: { set: { x-forwarded-for: \"{header.x-ip}\" } }, forward_headers: [expect] }\n",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    for want in [
        "routes[0].upstream: `upstream` cannot go with `aggregate`",
        "routes[0].aggregate.arrays: `arrays: concat` applies to `merge: deep`",
        "routes[0].aggregate.parts[0].path: unknown variable `{nope}`",
        "routes[0].aggregate.parts[1].path: `{x.id}`: `x` is not a variable scope or a part named in `after`",
        "routes[0].aggregate.parts[2].path: {consumer} needs an authenticated consumer",
        "routes[0].aggregate.parts[2].name: duplicate part name `y`",
        "`after` forms a cycle: c1 → c2 → c1",
        "routes[0].aggregate.parts[5]: the key `errors` names failed parts",
        "routes[0].aggregate.parts[6].on_error: a part merged into the root has no key to hold `null`",
        "routes[0].aggregate.parts[7].expose_headers[0]: `content-length` cannot be listed here",
        "routes[0].aggregate.parts[7].request_headers.set.host: `host` is the gateway's to set",
        "receives the request body, but GET and HEAD have none",
        "routes[0].aggregate.parts[8].path: {header.authorization}: a template cannot read credentials",
        "routes[0].aggregate.parts[10].request_headers.set.x-forwarded-for: `x-forwarded-for` is the gateway's to set",
        "routes[0].aggregate.parts[10].forward_headers[0]: `expect` cannot be listed here",
        "routes[0].aggregate.parts[9].path: `/w/<{path.1}>` is not a valid request target",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    // A part's rule cannot set what authentication sets.
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nauth:\n  j:\n    type: jwt\n    issuers: [x]\n    algorithms: [RS256]\n    public_key_file: {}/tests/fixtures/jwt/rsa_public.pem\n    forward_claims: {{ sub: X-Consumer-Id }}\nroutes:\n  - name: r\n    match: {{ path: /r }}\n    auth: [j]\n    aggregate:\n      parts:\n        - {{ name: x, upstream: a, path: /x, request_headers: {{ set: {{ x-consumer-id: \"{{header.x-evil}}\" }} }} }}\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("routes[0].aggregate.parts[0].request_headers.set.x-consumer-id: `x-consumer-id` is set by authentication (auth.j forwards it)"),
        "{}",
        out.stderr
    );
    // A write's part must be required.
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: r\n    match: { path: /r }\n    aggregate:\n      allow_methods: [POST]\n      parts:\n        - { name: x, upstream: a, path: /x, body: true }\n",
    );
    assert!(
        out.stderr
            .contains("part `x` receives the request body: it must be `required: true`"),
        "{}",
        out.stderr
    );
    // What can be checked once the block itself is sound.
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: r\n    match: { path: /r, methods: [GET, DELETE] }\n    aggregate:\n      parts:\n        - { name: x, upstream: a, path: /x }\n        - { name: y, upstream: b, path: \"/y/{x.id}\", after: x }\n",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    for want in [
        "routes[0].match.methods: `DELETE` is matched but an aggregated route serves only GET, HEAD",
        "routes[0].aggregate.parts[1].upstream: route names undefined upstream `b`",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    // A key collision it can prove: both parts nested under `x`.
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: r\n    match: { path: /r }\n    aggregate:\n      parts:\n        - { name: x, upstream: a, path: /x }\n        - { name: z, upstream: a, path: /z, into: x }\n",
    );
    assert!(
        out.stderr.contains("routes[0].aggregate.parts[1]: parts `x` and `z` are both nested under `x`: with `merge: shallow` and `on_conflict: error` every answer where both succeed would be a 502"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_forwarded_query_cannot_repeat_a_parameter_the_part_sets() {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&format!(
        "{}routes:\n  - name: f\n    match: {{ path_prefix: /f }}\n    aggregate:\n      parts:\n        - {{ name: orders, upstream: orders, path: \"/orders?customer={{path.2}}\", forward_query: true }}\n",
        upstreams(&[("orders", &up)])
    ));
    let r = gw.get("/f/alice?customer=bob&limit=5&cust%6Fmer=eve&CUSTOMER=x&customer[]=y&customer%5B0%5D=z&a=1;customer=w");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.requests()[0].target, "/orders?customer=alice&limit=5");
}

#[test]
fn a_part_retries_a_refused_connection_on_another_target() {
    let up = Upstream::start("svc");
    let closed = free_port();
    let gw = Gateway::start(&format!(
        "upstreams:\n  svc:\n    targets: [\"127.0.0.1:{closed}\", \"{}\"]\n    retries: 1\nroutes:\n  - name: p\n    match: {{ path: /p }}\n    aggregate:\n      parts:\n        - {{ name: a, upstream: svc, path: /a, required: true }}\n",
        up.addr()
    ));
    // Round robin starts on either target: every request must succeed, some after a retry.
    for _ in 0..6 {
        let r = gw.get("/p");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-aggregate-complete"), Some("true"));
    }
    assert_eq!(up.count(), 6);
    assert!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("upstream", "svc"), ("status", "error")]
        ) >= 1.0,
        "the refused attempts are recorded like any other"
    );
}

#[test]
fn templates_read_identity_and_credential_headers_as_missing() {
    let up = Upstream::start("svc");
    let gw = start_with_jwt(&format!(
        "{}{JWT_AUTH}routes:\n  - name: t\n    match: {{ path: /t }}\n    auth: [employees]\n    aggregate:\n      parts:\n        - {{ name: who, upstream: svc, path: \"/who/{{header.x-consumer-id}}\" }}\n        - {{ name: ok, upstream: svc, path: /ok }}\n",
        upstreams(&[("svc", &up)])
    ));
    let r = request(
        gw.addr(),
        "GET",
        "api",
        "/t",
        &[
            ("Authorization", &format!("Bearer {}", alice("acme"))),
            ("X-Consumer-Id", "mallory"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        body_json(&r)["errors"]["who"],
        json!({"reason": "missing_value", "variable": "{header.x-consumer-id}"})
    );
    assert!(up.requests().iter().all(|s| !s.target.contains("mallory")));
}
