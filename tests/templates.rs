//! Path templates against the real gateway: captures and wildcards route by the documented
//! precedence (literal, constrained capture, capture, `*`, shorter prefix), `rewrite` builds
//! the upstream path from captures, aggregation parts read `{path.NAME}`, and no spelling of a
//! path can make a captured value carry `/`, `..` or an encoded separator to an upstream.

mod support;

use support::*;

fn route(name: &str, matcher: &str, extra: &str) -> String {
    format!("  - name: {name}\n    match: {{ {matcher} }}\n    upstream: app\n{extra}")
}

#[test]
fn templates_route_by_precedence_and_rewrite_from_captures() {
    let up = Upstream::start("app");
    let routes = [
        route("users-prefix", "path_prefix: /users", ""),
        route("user-wild", "path_prefix: \"/users/*\"", ""),
        route(
            "user-name",
            "path: \"/users/{name}\"",
            "    rewrite: \"/api/v2/by-name/{name}\"\n",
        ),
        route(
            "user-id",
            "path: \"/users/{id:[0-9]+}\"",
            "    rewrite: \"/api/v2/users/{id}\"\n",
        ),
        route("user-me", "path: /users/me", ""),
        route(
            "files",
            "path_prefix: \"/files/*/raw\", methods: [GET]",
            "    rewrite: /blobs\n",
        ),
        route(
            "orders",
            "path_prefix: \"/t/{tenant}/orders\"",
            "    rewrite: \"/internal/{tenant}/orders.json\"\n",
        ),
    ];
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n{}",
        up.addr(),
        routes.concat()
    ));
    for (sent, seen) in [
        ("/users/me", "/users/me"),
        ("/users/42", "/api/v2/users/42"),
        ("/users/42?x=1&y", "/api/v2/users/42?x=1&y"),
        ("/users/ann", "/api/v2/by-name/ann"),
        ("/users/a%41n", "/api/v2/by-name/aAn"),
        ("/users/ann/x/y", "/users/ann/x/y"),
        ("/users", "/users"),
        ("/users/", "/users/"),
        ("/files/a/raw", "/blobs"),
        ("/files/a/raw/b/c", "/blobs/b/c"),
        ("/t/acme/orders", "/internal/acme/orders.json"),
        ("/t/acme/orders/7", "/internal/acme/orders.json/7"),
        // Normalized first: the capture is the canonical segment.
        ("/users//x/../42", "/api/v2/users/42"),
    ] {
        let r = gw.get(sent);
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        assert_eq!(r.json()["target"], seen, "{sent}");
    }
    let r = request(gw.addr(), "DELETE", "localhost", "/files/a/raw/x", &[], b"");
    assert_eq!(r.status, 405, "the deciding path's methods, never a shorter path");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(gw.get("/files/a").status, 404);
    assert_eq!(gw.get("/files/a/rawx").status, 404);
    assert_eq!(gw.get("/t/acme").status, 404);
    let access = gw.log();
    assert!(access.contains("route=user-id"), "{access}");
}

/// The shared path-safety suite against routes that are all templates, then spellings aimed
/// at the captures themselves: nothing refused reaches the upstream, and what does reach it
/// holds only canonical captures.
#[test]
fn template_routes_pass_the_path_safety_suite() {
    let up = Upstream::start("app");
    let routes = [
        route("one", "path: \"/public/{id}\"", "    rewrite: \"/in/{id}\"\n"),
        route("deep", "path_prefix: \"/public/*/files\"", ""),
        route(
            "tenant",
            "path_prefix: \"/{tenant}/data\"",
            "    rewrite: \"/internal/{tenant}\"\n",
        ),
    ];
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n{}",
        up.addr(),
        routes.concat()
    ));
    let raw = |target: &str| {
        gw.send(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
    };
    for (target, want) in PATH_ATTACKS {
        let r = raw(target);
        assert_eq!(r.status, *want, "{target}: {}", r.text());
    }
    for (target, want) in [
        ("/public/..%2Fadmin", 400),
        ("/public/%2e%2e", 404),
        ("/public/a%2Fb", 400),
        ("/public/a%5Cb", 400),
        ("/..%2f/data", 400),
        ("/%2e%2e/data", 400),
        ("/a%2Fb/data", 400),
        ("/a;x/data", 400),
        ("/./data", 404),
        ("/public/", 404),
        ("/public//", 404),
    ] {
        let r = raw(target);
        assert_eq!(r.status, want, "{target}: {}", r.text());
    }
    assert_eq!(up.count(), 0, "upstream saw: {:?}", up.requests());
    for (sent, seen) in [
        ("/public/%2e%2e%2e", "/in/..."),
        ("/public/a/../b", "/in/b"),
        ("/x/../acme/data/more", "/internal/acme/more"),
        ("/%61cme/data", "/internal/acme"),
        ("/public/x/files/../files/y", "/public/x/files/y"),
    ] {
        let r = raw(sent);
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        assert_eq!(r.json()["target"], seen, "{sent}");
    }
    for seen in up.requests() {
        let t = seen.target.to_ascii_uppercase();
        assert!(
            !t.contains("/../")
                && !t.ends_with("/..")
                && !t.contains("%2F")
                && !t.contains("%5C")
                && !t.contains("//"),
            "{t}"
        );
    }
}

#[test]
fn aggregation_parts_read_captures() {
    let users = Upstream::start("users");
    let gw = Gateway::start(&format!(
        "upstreams:\n  users:\n    targets: [\"{}\"]\nroutes:\n  - name: profile\n    match: {{ path: \"/profile/{{id}}\" }}\n    aggregate:\n      parts:\n        - {{ name: user, upstream: users, path: \"/users/{{path.id}}?n={{path.id}}\" }}\n",
        users.addr()
    ));
    let r = gw.get("/profile/a%20b");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["target"], "/users/a%20b?n=a%20b");
}

#[test]
fn check_reports_templates_that_cannot_match_or_shadow() {
    let up = "server:\n  listen: [\"127.0.0.1:8080\"]\nupstreams:\n  app:\n    targets: [\"127.0.0.1:9\"]\n";
    let cases: &[(&str, &str)] = &[
        (
            "  - { name: a, match: { path_prefix: \"/files/{id}/raw\" }, upstream: app }\n  - { name: b, match: { path_prefix: \"/files/*/raw\" }, upstream: app }\n",
            "route `b` can never match: every path path_prefix `/files/*/raw` matches is matched by path_prefix `/files/{id}/raw` of routes[0] `a`",
        ),
        (
            "  - { name: org, match: { path_prefix: \"/orgs/{org}\" }, upstream: app }\n  - { name: billing, match: { path_prefix: \"/orgs/*/billing\" }, upstream: app }\n",
            "route `billing` can never match: every path path_prefix `/orgs/*/billing` matches is matched by path_prefix `/orgs/{org}` of routes[0] `org`",
        ),
        (
            "  - { name: a, match: { path: \"/users/{id}\" }, upstream: app }\n  - { name: b, match: { path: \"/users/{uid}\" }, upstream: app }\n",
            "route `b` can never match: it is fully shadowed by routes[0] `a`",
        ),
        (
            "  - { name: a, match: { path: \"/users/x{id}\" }, upstream: app }\n",
            "must be a whole segment",
        ),
        (
            "  - { name: a, match: { path: \"/users/{id:a/b}\" }, upstream: app }\n",
            "a captured segment never contains one",
        ),
        (
            "  - { name: a, match: { path: \"/users/{id}/..\" }, upstream: app }\n",
            "can never match: segment `..`",
        ),
        (
            "  - { name: a, match: { path: \"/users/{id}/%7e\" }, upstream: app }\n",
            "segment `%7e` is not canonical; write `~`",
        ),
        (
            "  - { name: a, match: { path: \"/users/{id}\" }, upstream: app, rewrite: \"/u/{nope}\" }\n",
            "`{nope}` is not captured by the route's path (it captures id)",
        ),
        (
            "  - { name: a, match: { path_prefix: \"/u/{id}\" }, upstream: app, rewrite: \"/u/{id}\", strip_prefix: /u }\n",
            "give either `rewrite` or `strip_prefix`",
        ),
        (
            "  - { name: a, match: { path: \"/u/{id}\" }, upstream: app, rewrite: \"/u/../{id}\" }\n",
            "must be a canonical path",
        ),
        (
            "  - { name: v1-users, match: { path_prefix: /v1/users }, upstream: app }\n  - { name: users, match: { path: \"/users/{id}\" }, upstream: app, versions: { from: [path], default: \"1\", \"1\": { upstream: app } } }\n",
            "routes[0].match: path `/v1/users` collides with the path versions of route `users` (/v<version>/users/{id})",
        ),
        (
            "  - { name: any-version, match: { path: \"/{ver:v[0-9]+}/users/{id}\" }, upstream: app }\n  - { name: users, match: { path: \"/users/{id}\" }, upstream: app, versions: { from: [path], default: \"1\", \"1\": { upstream: app } } }\n",
            "routes[0].match: path `/{ver:v[0-9]+}/users/{id}` collides with the path versions of route `users`",
        ),
        (
            "  - { name: a, match: { path_prefix: /a, headers: { X-A: \"1\", x-a: \"1\" } }, upstream: app }\n",
            "header `x-a` is listed twice",
        ),
        (
            "  - name: a\n    match: { path: \"/p/{id}\" }\n    aggregate:\n      parts:\n        - { name: x, upstream: app, path: \"/x/{path.nope}\" }\n",
            "`{path.nope}`: the route's path captures id",
        ),
    ];
    for (routes, want) in cases {
        let out = check(&format!("{up}routes:\n{routes}"));
        assert_ne!(out.code, 0, "{routes}");
        assert!(
            out.stderr.contains(want),
            "{routes}\nwant: {want}\ngot: {}",
            out.stderr
        );
    }
    let ok = check(&format!(
        "{up}routes:\n  - {{ name: a, match: {{ path: \"/users/{{id:[0-9]+}}\" }}, upstream: app, rewrite: \"/v2/users/{{id}}.json\" }}\n  - {{ name: b, match: {{ path: \"/users/{{name}}\" }}, upstream: app }}\n  - {{ name: c, match: {{ path_prefix: \"/users/*\" }}, upstream: app }}\n"
    ));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

/// Where a template and another path share requests and authenticate differently, the
/// summary says which one takes them, within a host group and across hosts.
#[test]
fn the_summary_explains_template_overlaps_with_different_auth() {
    let keys = tempfile::tempdir().expect("tempdir");
    let file = keys.path().join("keys.yaml");
    std::fs::write(&file, "keys: []\n").expect("write keys");
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:8080\"]\nupstreams:\n  app:\n    targets: [\"127.0.0.1:9\"]\nauth:\n  k:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}\nroutes:\n  - {{ name: me, match: {{ path: /users/me }}, upstream: app }}\n  - {{ name: user, match: {{ path: \"/users/{{id}}\" }}, upstream: app, auth: [k] }}\n  - {{ name: v1, match: {{ path_prefix: /v1 }}, upstream: app }}\n  - {{ name: admin, match: {{ path_prefix: \"/{{version:v[0-9]+}}/admin\" }}, upstream: app, auth: [k] }}\n  - {{ name: tenant, match: {{ hosts: [a.example.com], path_prefix: \"/{{tenant}}\" }}, upstream: app }}\n  - {{ name: secret, match: {{ path_prefix: /secret }}, upstream: app, auth: [k] }}\n",
        file.display()
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    for want in [
        "precedence: path /users/me (`me`: public) decides the requests it shares with path /users/{id} (`user`: auth k), which never sees them",
        "precedence: path_prefix /v1 (`v1`: public) decides the requests it shares with path_prefix /{version:v[0-9]+}/admin (`admin`: auth k), which never sees them",
        "precedence: host a.example.com, path_prefix /{tenant} (`tenant`: public) decides the requests it shares with path_prefix /secret (`secret`: auth k) for that host: hosts come before paths",
    ] {
        assert!(out.stdout.contains(want), "missing {want:?} in:\n{}", out.stdout);
    }
}
