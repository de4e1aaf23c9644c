//! API-key authentication and authorization, attacked through the real gateway. Every
//! rejected request is also checked from the upstream's side: it must never have seen it.

mod support;

use std::process::Command;

use support::*;

const GOOD: &str = "pk_live_acme_7f3a9c";
const READER: &str = "pk_live_reader_11b2";

struct Setup {
    up: Upstream,
    gw: Gateway,
    _keys: tempfile::TempDir,
}

fn setup() -> Setup {
    let keys = tempfile::tempdir().expect("tempdir");
    let file = keys.path().join("keys.yaml");
    std::fs::write(
        &file,
        format!(
            "keys:\n  - {{ sha256: {}, consumer: acme, plan: gold, scopes: [orders:read, orders:write] }}\n  - {{ sha256: {}, consumer: reader, scopes: [orders:read] }}\n",
            hash_key(GOOD),
            hash_key(READER)
        ),
    )
    .expect("write keys");
    let up = Upstream::start("app");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  partners:\n    type: api_key\n    from: [\"header:x-api-key\", \"query:api_key\"]\n    keys_file: {}\n    forward: {{ consumer: X-Consumer-Id, plan: X-Consumer-Plan }}\nroutes:\n  - {{ name: public, match: {{ path_prefix: /public }}, upstream: app }}\n  - {{ name: private, match: {{ path_prefix: /private }}, upstream: app, auth: [partners] }}\n  - name: writes\n    match: {{ path_prefix: /orders, methods: [POST] }}\n    upstream: app\n    auth: [partners]\n    require: {{ scopes: [orders:write] }}\n  - {{ name: passthrough, match: {{ path_prefix: /raw }}, upstream: app, auth: [partners], forward_credential: true }}\n",
        up.addr(),
        file.display()
    ));
    Setup { up, gw, _keys: keys }
}

fn with_key(gw: &Gateway, method: &str, path: &str, key: &str) -> Response {
    request(gw.addr(), method, "localhost", path, &[("x-api-key", key)], b"")
}

fn assert_401(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert!(
        !r.text().contains(GOOD) && !r.text().contains("pk_live"),
        "{what}: body echoes a key"
    );
}

#[test]
fn a_valid_key_reaches_the_upstream_as_an_identity() {
    let s = setup();
    let r = with_key(&s.gw, "GET", "/private/x", GOOD);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &s.up.requests()[0];
    assert_eq!(seen.header("x-consumer-id"), Some("acme"));
    assert_eq!(seen.header("x-consumer-plan"), Some("gold"));
    assert_eq!(seen.header("x-api-key"), None, "the credential is stripped");
    let line = wait_for("access log", std::time::Duration::from_secs(10), || {
        s.gw.log()
            .lines()
            .find(|l| l.contains("route=private"))
            .map(str::to_string)
    });
    assert!(line.contains("consumer=acme"), "{line}");
    assert!(!s.gw.log().contains(GOOD), "the raw key is never logged");
}

#[test]
fn missing_wrong_repeated_or_oversized_keys_are_refused() {
    let s = setup();
    assert_401(&s.gw.get("/private/x"), "no key");
    assert_401(
        &with_key(&s.gw, "GET", "/private/x", "pk_live_guess"),
        "wrong key",
    );
    assert_401(
        &with_key(&s.gw, "GET", "/private/x", &GOOD.to_uppercase()),
        "case-changed key",
    );
    assert_401(
        &with_key(&s.gw, "GET", "/private/x", &format!("{GOOD}x")),
        "key with an extra byte",
    );
    let two = request(
        s.gw.addr(),
        "GET",
        "localhost",
        "/private/x",
        &[("x-api-key", GOOD), ("x-api-key", "other")],
        b"",
    );
    assert_401(&two, "two key headers");
    let header_and_query = request(
        s.gw.addr(),
        "GET",
        "localhost",
        &format!("/private/x?api_key={GOOD}&api_key=x"),
        &[],
        b"",
    );
    assert_401(&header_and_query, "repeated query key");
    let huge = "k".repeat(9000);
    assert_401(&with_key(&s.gw, "GET", "/private/x", &huge), "oversized key");
    assert_eq!(s.up.count(), 0, "upstream saw: {:?}", s.up.requests());
}

#[test]
fn alternative_spellings_of_a_protected_path_still_need_a_key() {
    let s = setup();
    for target in [
        "//private/x",
        "/public/../private/x",
        "/public/%2e%2e/private/x",
        "/./private/x",
        "/private//x",
    ] {
        let r = s.gw.send(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_401(&r, target);
    }
    for target in ["/public/..%2fprivate/x", "/private;x/y", "/public/..;/private/x"] {
        let r = s.gw.send(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{target}");
    }
    assert_eq!(s.up.count(), 0, "upstream saw: {:?}", s.up.requests());
}

#[test]
fn query_keys_are_stripped_and_identity_headers_cannot_be_spoofed() {
    let s = setup();
    let r = request(
        s.gw.addr(),
        "GET",
        "localhost",
        &format!("/private/x?a=1&api_key={GOOD}&b=2"),
        &[("x-consumer-id", "admin")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &s.up.requests()[0];
    assert_eq!(seen.target, "/private/x?a=1&b=2");
    assert_eq!(
        seen.header_all("x-consumer-id"),
        vec!["acme"],
        "the client's copy is replaced"
    );
    // On a public route the spoofed identity headers are removed too.
    let r = request(
        s.gw.addr(),
        "GET",
        "localhost",
        "/public/y",
        &[("x-consumer-id", "admin"), ("X-Consumer-Plan", "platinum")],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = &s.up.requests()[1];
    assert_eq!(seen.header("x-consumer-id"), None);
    assert_eq!(seen.header("x-consumer-plan"), None);
}

#[test]
fn require_scopes_gives_403_with_the_missing_scope() {
    let s = setup();
    let r = with_key(&s.gw, "POST", "/orders/1", READER);
    assert_eq!(r.status, 403, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"orders:write\""),
        "{challenge}"
    );
    assert_eq!(s.up.count(), 0);
    assert_eq!(with_key(&s.gw, "POST", "/orders/1", GOOD).status, 200);
}

#[test]
fn forward_credential_keeps_the_key_for_that_route_only() {
    let s = setup();
    assert_eq!(with_key(&s.gw, "GET", "/raw/1", GOOD).status, 200);
    assert_eq!(s.up.requests()[0].header("x-api-key"), Some(GOOD));
}

#[test]
fn check_reports_auth_mistakes() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nauth:\n  k:\n    type: api_key\n    from: [\"headr:x\"]\n    keys_file: /nonexistent/keys.yaml\n  j:\n    type: magic\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, auth: [partner], require: { scopes: [\"bad scope\"] } }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "auth.k.from[0]: `headr:x`: expected header:NAME, cookie:NAME or query:NAME",
        "auth.k.keys_file: cannot read keys file /nonexistent/keys.yaml",
        "auth.j.type: unknown authenticator type `magic`",
        "routes[0].auth[0]: route names undefined authenticator `partner`",
        "routes[0].require.scopes: `bad scope` is not a valid scope token",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}

#[test]
fn a_reload_applies_key_changes() {
    let s = setup();
    assert_eq!(with_key(&s.gw, "GET", "/private/x", GOOD).status, 200);
    let file = s._keys.path().join("keys.yaml");
    let rotated = "pk_live_rotated_9d";
    std::fs::write(
        &file,
        format!("keys:\n  - {{ sha256: {}, consumer: acme }}\n", hash_key(rotated)),
    )
    .expect("rewrite keys");
    let out = Command::new(BIN)
        .args(["reload", "-c"])
        .arg(s.gw.config_path())
        .output()
        .expect("reload");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_401(&with_key(&s.gw, "GET", "/private/x", GOOD), "revoked key");
    assert_eq!(with_key(&s.gw, "GET", "/private/x", rotated).status, 200);
}

/// The hardening review's authorization bypass: with `/orders` public and `/orders/admin`
/// limited to `GET, POST` behind auth, every other method (custom ones and `HEAD` included)
/// used to fall through to the public route and reach its upstream without a credential.
/// The most specific path decides: 405 with `Allow`, and a header condition never hands a
/// request to a shorter path either.
#[test]
fn a_method_restricted_private_route_never_falls_through_to_a_public_one() {
    let keys = tempfile::tempdir().expect("tempdir");
    let file = keys.path().join("keys.yaml");
    std::fs::write(
        &file,
        format!(
            "keys:\n  - {{ sha256: {}, consumer: acme, scopes: [orders:admin] }}\n",
            hash_key(GOOD)
        ),
    )
    .expect("write keys");
    let public = Upstream::start("public");
    let admin = Upstream::start("admin");
    let gw = Gateway::start(&format!(
        "upstreams:\n  public:\n    targets: [\"{}\"]\n  admin:\n    targets: [\"{}\"]\nauth:\n  partners:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /orders }}, upstream: public }}\n  - name: orders-admin\n    match: {{ path_prefix: /orders/admin, methods: [GET, POST] }}\n    upstream: admin\n    auth: [partners]\n    require: {{ scopes: [orders:admin] }}\n  - name: orders-internal\n    match: {{ path_prefix: /orders/internal, headers: {{ x-internal: \"1\" }} }}\n    upstream: admin\n    auth: [partners]\n",
        public.addr(),
        admin.addr(),
        file.display()
    ));
    for method in ["DELETE", "PUT", "PATCH", "OPTIONS", "TRACE", "PURGE", "X-CUSTOM"] {
        let r = request(gw.addr(), method, "localhost", "/orders/admin/users/1", &[], b"");
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert_eq!(r.header("allow"), Some("GET, HEAD, POST"), "{method}");
    }
    let head = request(gw.addr(), "HEAD", "localhost", "/orders/admin/users/1", &[], b"");
    assert_eq!(head.status, 401, "HEAD is a GET: it needs the credential");
    assert_401(&gw.get("/orders/admin/users/1"), "GET without a key");
    let internal = gw.get("/orders/internal/x");
    assert_eq!(internal.status, 404, "a header mismatch never falls to /orders");
    assert_eq!(public.count(), 0, "the public upstream saw none of it");
    assert_eq!(admin.count(), 0, "nor did the private one");
    let r = with_key(&gw, "GET", "/orders/admin/users/1", GOOD);
    assert_eq!(r.header("x-upstream"), Some("admin"), "{}", r.text());
    let r = with_key(&gw, "HEAD", "/orders/admin/users/1", GOOD);
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("admin")));
    assert_eq!(gw.get("/orders/7").header("x-upstream"), Some("public"));
}

/// CGI, WSGI, PHP-FPM and Rack fold `_` and `.` into `-`: `X_Consumer_Id` reaches the
/// application as the consumer the gateway vouches for. Variant spellings of every managed
/// header, names with `_`, and URL/method-override and client-address headers never reach the
/// upstream, on public and authenticated routes alike.
#[test]
fn other_spellings_of_managed_headers_never_reach_the_upstream() {
    let s = setup();
    let spoofed: &[(&str, &str)] = &[
        ("X_Consumer_Id", "evil"),
        ("X.Consumer.Id", "evil"),
        ("X-Consumer_Id", "evil"),
        ("x-consumer.plan", "evil"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("X.Forwarded.For", "6.6.6.6"),
        ("X_Real_IP", "6.6.6.6"),
        ("X-Real_IP", "6.6.6.6"),
        ("X_Request_Id", "evil"),
        ("X_Api_Key", "evil"),
        ("X_Custom", "evil"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Port", "6666"),
        ("True-Client-IP", "6.6.6.6"),
        ("CF-Connecting-IP", "6.6.6.6"),
        ("Fly-Client-IP", "6.6.6.6"),
        ("X-Forwarded", "6.6.6.6"),
        ("X-Client-IP", "6.6.6.6"),
    ];
    for path in ["/public/x", "/private/x"] {
        let mut headers = spoofed.to_vec();
        headers.push(("x-api-key", GOOD));
        let r = request(s.gw.addr(), "GET", "localhost", path, &headers, b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let seen = s.up.requests();
    assert_eq!(seen.len(), 2);
    for req in &seen {
        for (name, value) in &req.headers {
            assert!(
                !["evil", "6.6.6.6", "/admin", "DELETE", "6666"].contains(&value.as_str()),
                "{} reached the upstream with {name}: {value}",
                req.target
            );
            assert!(
                !name.contains('_') && !name.contains('.'),
                "{name} reached the upstream"
            );
        }
    }
    assert_eq!(
        seen[1].header("x-consumer-id"),
        Some("acme"),
        "the real one is the gateway's"
    );
    // A method override in the query, in any spelling.
    let r =
        s.gw.get("/public/x?a=1&_method=DELETE&_METHOD=PUT&%5Fmethod=PATCH");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.up.requests()[2].target, "/public/x?a=1");
}

/// A key parameter spelled `API_KEY` or `api%5Fkey` was neither read nor stripped, so it
/// reached the upstream, whose framework reads it as `api_key`. Every spelling is read (two
/// spellings are two copies: refused) and stripped.
#[test]
fn query_keys_in_other_spellings_are_read_and_stripped() {
    let s = setup();
    let spellings = [
        "API_KEY",
        "api%5Fkey",
        "Api_Key",
        "api.key",
        "api+key",
        "api_key[]",
        "api_key%5B%5D",
        "api_key[0]",
    ];
    for spelling in spellings {
        let r = request(
            s.gw.addr(),
            "GET",
            "localhost",
            &format!("/private/x?a=1&{spelling}={GOOD}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{spelling}: {}", r.text());
    }
    for req in s.up.requests() {
        assert_eq!(req.target, "/private/x?a=1", "the key never reaches the upstream");
    }
    let twice = format!("/private/x?api_key={GOOD}&API_KEY={READER}");
    assert_401(&s.gw.get(&twice), "two spellings of the key");
    let hidden = format!("/private/x?a=1;api_key={GOOD}");
    assert_401(&s.gw.get(&hidden), "a key behind a `;` separator");
    let array = format!("/private/x?api_key={GOOD}&api_key[]=stolen");
    assert_401(&s.gw.get(&array), "an array spelling beside the key");
    assert_eq!(s.up.count(), spellings.len());
}
