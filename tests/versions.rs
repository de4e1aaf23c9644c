//! API version routing through the real gateway: every source, the precedence order and
//! conflicts, unknown and missing versions, path stripping on the normalized path, canary
//! splits (distribution, stickiness, override), deprecation / sunset signals, 410, metrics and
//! `check`. Refused requests never reach an upstream.

mod support;

use support::*;

/// One `upstreams:` entry.
fn pool(name: &str, targets: &[std::net::SocketAddr]) -> String {
    format!("  {name}:\n    targets: [\"{}\"]\n", targets[0])
}

struct Api {
    v1: Upstream,
    v2: Upstream,
    v3: Upstream,
    gw: Gateway,
}

impl Api {
    /// Upstreams `v1`, `v2`, `v3` and a gateway whose route `users` has `versions`.
    fn start(versions: &str) -> Api {
        let (v1, v2, v3) = (
            Upstream::start("v1"),
            Upstream::start("v2"),
            Upstream::start("v3"),
        );
        let gw = Gateway::start(&format!(
            "upstreams:\n{}{}{}routes:\n  - name: users\n    match: {{ path_prefix: /users }}\n    versions:\n{versions}",
            pool("users-v1", &[v1.addr()]),
            pool("users-v2", &[v2.addr()]),
            pool("users-v3", &[v3.addr()]),
        ));
        Api { v1, v2, v3, gw }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.gw.addr(), "GET", "localhost", path, headers, b"")
    }

    fn upstream_count(&self) -> usize {
        self.v1.count() + self.v2.count() + self.v3.count()
    }
}

const ALL_SOURCES: &str = "      from: [path, \"header:accept-version\", media_type, \"query:version\"]\n      default: \"2\"\n      \"1\": { upstream: users-v1 }\n      \"2\": { upstream: users-v2 }\n";

/// Which upstream answered, and the version the gateway announced.
fn served(r: &Response) -> (u16, &str, &str) {
    (
        r.status,
        r.header("x-upstream").unwrap_or("-"),
        r.header("x-api-version").unwrap_or("-"),
    )
}

#[test]
fn every_source_selects_a_version_and_the_default_applies_without_one() {
    let api = Api::start(ALL_SOURCES);
    assert_eq!(served(&api.get("/v1/users/7", &[])), (200, "v1", "1"));
    assert_eq!(served(&api.get("/users/7", &[])), (200, "v2", "2"), "default");
    assert_eq!(
        served(&api.get("/users/7", &[("accept-version", "1")])),
        (200, "v1", "1")
    );
    assert_eq!(
        served(&api.get("/users/7", &[("accept-version", "v1")])),
        (200, "v1", "1")
    );
    assert_eq!(
        served(&api.get("/users/7", &[("accept", "application/vnd.users.v1+json")])),
        (200, "v1", "1")
    );
    assert_eq!(
        served(&api.get("/users/7", &[("accept", "application/json; version=1")])),
        (200, "v1", "1")
    );
    assert_eq!(served(&api.get("/users/7?version=1&a=b", &[])), (200, "v1", "1"));
    assert_eq!(served(&api.get("/users/7?VERSION=1&b=c", &[])), (200, "v1", "1"));
    let seen = api.v1.requests();
    assert_eq!(seen[0].target, "/users/7", "the /v1 segment is stripped");
    assert_eq!(
        seen[0].header("x-api-version"),
        Some("1"),
        "the upstream is told the version"
    );
    assert_eq!(seen[5].target, "/users/7?a=b", "the version parameter is removed");
    assert_eq!(
        seen[6].target, "/users/7?b=c",
        "any spelling of the parameter is removed"
    );
    // A client's own X-API-Version is not a source here: it is replaced, never trusted.
    let r = api.get("/users/7", &[("x-api-version", "1")]);
    assert_eq!(served(&r), (200, "v2", "2"));
    assert_eq!(
        api.v2
            .requests()
            .last()
            .and_then(|s| s.header("x-api-version").map(String::from)),
        Some("2".into())
    );
}

#[test]
fn unknown_missing_and_conflicting_versions_never_reach_an_upstream() {
    let api = Api::start(ALL_SOURCES);
    let unknown = api.get("/v9/users/7", &[]);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        unknown.json()["supported-versions"],
        serde_json::json!(["1", "2"])
    );
    for (path, headers) in [
        ("/users/7", vec![("accept-version", "9")]),
        ("/users/7?version=9", vec![]),
        ("/users/7", vec![("accept", "application/vnd.users.v9+json")]),
    ] {
        let r = api.get(path, &headers);
        assert_eq!(r.status, 404, "{path} {headers:?}");
        assert_eq!(r.json()["supported-versions"][0], "1");
    }
    for (path, headers) in [
        ("/v2/users/7", vec![("accept-version", "1")]),
        ("/users/7", vec![("accept-version", "1"), ("accept-version", "2")]),
        ("/users/7?version=1&vers%69on=2", vec![]),
        (
            "/users/7?version=2",
            vec![("accept", "application/vnd.users.v1+json")],
        ),
        // Frameworks that split on `;` or ignore case would read these differently.
        ("/users/7?a=1;version=1", vec![]),
        ("/users/7?version=2&Version=1", vec![]),
    ] {
        let r = api.get(path, &headers);
        assert_eq!(r.status, 400, "{path} {headers:?}: {}", r.text());
        assert!(r.text().contains("conflicting API versions"), "{}", r.text());
    }
    assert_eq!(api.upstream_count(), 0, "no refused request reached an upstream");

    let strict = Api::start("      from: [\"header:x-api-version\"]\n      \"1\": { upstream: users-v1 }\n");
    let missing = strict.get("/users", &[]);
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["supported-versions"], serde_json::json!(["1"]));
    assert_eq!(
        served(&strict.get("/users", &[("x-api-version", "1")])),
        (200, "v1", "1")
    );
}

#[test]
fn with_conflict_first_the_earlier_source_wins() {
    let header_first = Api::start(
        "      from: [\"header:accept-version\", path]\n      conflict: first\n      \"1\": { upstream: users-v1 }\n      \"2\": { upstream: users-v2 }\n",
    );
    let r = header_first.get("/v1/users/7", &[("accept-version", "2")]);
    assert_eq!(served(&r), (200, "v2", "2"));
    assert_eq!(
        header_first.v2.requests()[0].target,
        "/users/7",
        "the path segment is still a version marker"
    );
    let path_first = Api::start(
        "      from: [path, \"header:accept-version\"]\n      conflict: first\n      \"1\": { upstream: users-v1 }\n      \"2\": { upstream: users-v2 }\n",
    );
    assert_eq!(
        served(&path_first.get("/v1/users/7", &[("accept-version", "2")])),
        (200, "v1", "1")
    );
    // Only the winning source has to name a known version.
    assert_eq!(
        served(&path_first.get("/v1/users/7", &[("accept-version", "9")])),
        (200, "v1", "1")
    );
}

#[test]
fn versions_are_resolved_on_the_normalized_path() {
    let api = Api::start(ALL_SOURCES);
    for (raw, version, forwarded) in [
        ("/v1/../v1/users/7", "1", "/users/7"),
        ("//v1//users/7", "1", "/users/7"),
        ("/%76%31/users/7", "1", "/users/7"),
        ("/v2/./users/%37", "2", "/users/7"),
    ] {
        let r = api.get(raw, &[]);
        assert_eq!(r.status, 200, "{raw}");
        assert_eq!(r.header("x-api-version"), Some(version), "{raw}");
        let up = if version == "1" { &api.v1 } else { &api.v2 };
        assert_eq!(
            up.requests().last().map(|s| s.target.clone()).as_deref(),
            Some(forwarded),
            "{raw}"
        );
    }
    let before = api.upstream_count();
    for attack in [
        "/v1/users/../../admin",
        "/v1%2fusers/7",
        "/v1/users/..%2f..%2fadmin",
        "/v1;x=1/users/7",
    ] {
        let r = api.get(attack, &[]);
        assert!(matches!(r.status, 400 | 404), "{attack}: {}", r.status);
    }
    assert_eq!(api.upstream_count(), before, "no attack reached an upstream");
}

#[test]
fn a_route_prefix_and_strip_prefix_combine_with_path_versions() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let gw = Gateway::start(&format!(
        "upstreams:\n{}{}routes:\n  - name: api-users\n    match: {{ path_prefix: /api/users }}\n    strip_prefix: /api\n    versions:\n      from: [path]\n      strip_path: true\n      default: \"1\"\n      \"1\": {{ upstream: users-v1 }}\n      \"2\": {{ upstream: users-v2 }}\n  - name: other\n    match: {{ path_prefix: / }}\n    upstream: users-v1\n",
        pool("users-v1", &[v1.addr()]),
        pool("users-v2", &[v2.addr()]),
    ));
    let r = gw.get("/v2/api/users/7");
    assert_eq!(r.header("x-api-version"), Some("2"));
    assert_eq!(v2.requests()[0].target, "/users/7");
    // `/v2/...` that is not the versioned route's path goes to the catch-all unchanged.
    let r = gw.get("/v2/other");
    assert_eq!(r.header("x-api-version"), None);
    assert_eq!(
        v1.requests().last().map(|s| s.target.clone()).as_deref(),
        Some("/v2/other")
    );
    // An unknown version of the versioned route is its 404, not the catch-all's.
    let before = v1.count() + v2.count();
    let r = gw.get("/v9/api/users/7");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["supported-versions"], serde_json::json!(["1", "2"]));
    assert_eq!(v1.count() + v2.count(), before);
}

#[test]
fn strip_path_false_keeps_the_segment_and_still_applies_strip_prefix() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let gw = Gateway::start(&format!(
        "upstreams:\n{}{}routes:\n  - name: api-users\n    match: {{ path_prefix: /api/users }}\n    strip_prefix: /api\n    versions:\n      from: [path]\n      strip_path: false\n      default: \"1\"\n      \"1\": {{ upstream: users-v1 }}\n      \"2\": {{ upstream: users-v2 }}\n",
        pool("users-v1", &[v1.addr()]),
        pool("users-v2", &[v2.addr()]),
    ));
    assert_eq!(gw.get("/v2/api/users/7").status, 200);
    assert_eq!(v2.requests()[0].target, "/v2/users/7");
    assert_eq!(gw.get("/api/users/7").status, 200);
    assert_eq!(v1.requests()[0].target, "/users/7");
}

#[test]
fn a_version_segment_cannot_carry_a_request_past_a_more_specific_route() {
    let keys = tempfile::tempdir().expect("tempdir");
    let keys_file = keys.path().join("keys.yaml");
    std::fs::write(
        &keys_file,
        format!(
            "keys:\n  - {{ sha256: {}, consumer: ops }}\n",
            hash_key("admin-key")
        ),
    )
    .expect("write keys");
    let (v1, admin) = (Upstream::start("v1"), Upstream::start("admin"));
    let gw = Gateway::start(&format!(
        "upstreams:\n{}{}auth:\n  ops:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}\nroutes:\n  - name: users\n    match: {{ path_prefix: /users }}\n    versions: {{ from: [path], default: \"1\", \"1\": {{ upstream: users-v1 }} }}\n  - {{ name: admin, match: {{ path_prefix: /users/admin }}, upstream: admin, auth: [ops] }}\n",
        pool("users-v1", &[v1.addr()]),
        pool("admin", &[admin.addr()]),
        keys_file.display()
    ));
    assert_eq!(
        gw.get("/users/admin/x").status,
        401,
        "the admin route needs a key"
    );
    for attack in ["/v1/users/admin/x", "/v1/users/admin", "/v1//users/./admin/x"] {
        let r = gw.get(attack);
        assert_eq!(r.status, 404, "{attack}: {}", r.text());
    }
    assert_eq!(v1.count() + admin.count(), 0, "nothing reached either upstream");
    assert_eq!(gw.get("/v1/users/7").status, 200);
}

#[test]
fn a_canary_split_follows_its_weight_and_sticks_to_each_client() {
    let api = Api::start(
        "      from: [\"header:accept-version\"]\n      default: \"2\"\n      \"1\": { upstream: users-v1 }\n      \"2\": { upstream: users-v2, split: [ { upstream: users-v3, percent: 20 } ], sticky: \"header:x-user\", override_header: x-canary }\n",
    );
    let addr = api.gw.addr();
    let mut canary = 0;
    for i in 0..2000 {
        let user = format!("user-{i}");
        let r = request(addr, "GET", "localhost", "/users", &[("x-user", &user)], b"");
        assert_eq!(r.header("x-api-version"), Some("2"));
        if r.header("x-upstream") == Some("v3") {
            canary += 1;
        }
    }
    eprintln!("canary share: {canary} of 2000 (20% = 400)");
    assert!(
        (320..=480).contains(&canary),
        "{canary} of 2000 went to the 20% canary"
    );
    for i in 0..50 {
        let user = format!("sticky-{i}");
        let first = api.get("/users", &[("x-user", &user)]);
        for _ in 0..4 {
            let again = api.get("/users", &[("x-user", &user)]);
            assert_eq!(
                again.header("x-upstream"),
                first.header("x-upstream"),
                "{user} flapped"
            );
        }
    }
    assert_eq!(
        api.get("/users", &[("x-user", "u"), ("x-canary", "on")])
            .header("x-upstream"),
        Some("v3")
    );
    let forwarded = api
        .v3
        .requests()
        .last()
        .map(|r| r.header("x-canary").map(String::from));
    assert_eq!(
        forwarded,
        Some(None),
        "the override header is the gateway's, not forwarded"
    );
    assert_eq!(
        api.get("/users", &[("x-user", "u"), ("x-canary", "off")])
            .header("x-upstream"),
        Some("v2")
    );
    // The override only exists where configured: version 1 has no split, the header is ignored.
    let r = api.get("/users", &[("accept-version", "1"), ("x-canary", "on")]);
    assert_eq!(r.header("x-upstream"), Some("v1"));
}

#[test]
fn deprecated_versions_announce_their_sunset_and_are_gone_after_it() {
    let api = Api::start(
        "      from: [path]\n      default: \"3\"\n      \"1\": { upstream: users-v1, deprecated: 2019-01-01, sunset: 2020-01-01, successor: \"3\", after_sunset: gone }\n      \"2\": { upstream: users-v2, deprecated: 2026-01-01, sunset: 2099-06-30, successor: \"3\" }\n      \"3\": { upstream: users-v3 }\n      \"4\": { upstream: users-v3, deprecated: 2020-01-01, sunset: 2021-01-01, link: \"https://api.example.com/v3/\" }\n",
    );
    let r = api.get("/v2/users/7?x=1", &[]);
    assert_eq!(served(&r), (200, "v2", "2"));
    assert_eq!(r.header("deprecation"), Some("@1767225600"));
    assert_eq!(r.header("sunset"), Some("Tue, 30 Jun 2099 00:00:00 GMT"));
    assert_eq!(r.header("link"), Some("</v3/users/7>; rel=\"successor-version\""));
    let current = api.get("/v3/users/7", &[]);
    assert_eq!(served(&current), (200, "v3", "3"));
    for h in ["deprecation", "sunset", "link"] {
        assert_eq!(current.header(h), None, "{h} on a current version");
    }
    let gone = api.get("/v1/users/7", &[]);
    assert_eq!(gone.status, 410);
    assert_eq!(gone.header("content-type"), Some("application/problem+json"));
    assert_eq!(gone.header("sunset"), Some("Wed, 01 Jan 2020 00:00:00 GMT"));
    assert_eq!(
        gone.header("link"),
        Some("</v3/users/7>; rel=\"successor-version\"")
    );
    assert_eq!(gone.header("x-api-version"), Some("1"));
    assert_eq!(api.v1.count(), 0, "a retired version never reaches its upstream");
    api.gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "users"), ("version", "1"), ("status", "410")],
        1.0,
    );
    // Past its sunset but not `gone`: still served, with the configured link.
    let late = api.get("/v4/users", &[]);
    assert_eq!(served(&late), (200, "v3", "4"));
    assert_eq!(
        late.header("link"),
        Some("<https://api.example.com/v3/>; rel=\"successor-version\"")
    );
}

#[test]
fn metrics_and_the_access_log_carry_the_version() {
    let api = Api::start(ALL_SOURCES);
    api.get("/v1/users", &[]);
    api.get("/v1/users", &[]);
    let r = api.get("/users", &[]);
    assert_eq!(
        r.header("vary"),
        Some("accept-version, accept"),
        "caches must key on the headers that choose the version"
    );
    api.gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "users"), ("version", "1")],
        2.0,
    );
    api.gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "users"), ("version", "2")],
        1.0,
    );
    wait_for("access log line", std::time::Duration::from_secs(5), || {
        api.gw.log().contains("route=users version=1").then_some(())
    });
}

#[test]
fn check_reports_version_mistakes() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: r\n    match: { path_prefix: /r }\n    versions:\n      from: [path, \"cookie:v\"]\n      default: \"3\"\n      \"1\": { upstream: a, split: [ { upstream: b, percent: 60 }, { upstream: a, percent: 50.5 } ], sticky: consumer }\n      \"2\": { upstream: a, deprecated: 2027-01-01, sunset: 2026-01-01, successor: \"2\" }\n      \"4\": { upstream: a, after_sunset: gone, override_header: x-canary }\n      v5: { upstream: a }\n  - name: s\n    match: { path_prefix: /v1/s }\n    upstream: a\n    versions: { from: [path], \"1\": { upstream: a } }\n  - name: t\n    match: { path_prefix: /v1/t }\n    versions: { from: [path], \"1\": { upstream: a, sunset: 2026-02-30 } }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "routes[0].versions.from[1]: `cookie:v`: expected path, header:NAME, media_type or query:NAME",
        "routes[0].versions.default: default `3` is not one of the versions",
        "routes[0].versions.1.split: split percentages add up to 110.50, over 100",
        "routes[0].versions.2.sunset: sunset is before the deprecation date",
        "routes[0].versions.2.successor: successor `2` must be another of the versions",
        "routes[0].versions.4.after_sunset: after_sunset: gone needs a `sunset` date",
        "routes[0].versions.4.override_header: override_header only applies to a version with a `split`",
        "routes[0].versions.v5: unknown field `v5`",
        "routes[1].versions: a route has either `upstream` or `versions`, not both",
        "routes[2].versions.1.sunset: `2026-02-30`: no such day",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: r\n    match: { path_prefix: /r }\n    versions:\n      from: [path]\n      \"1\": { upstream: a, split: [ { upstream: b, percent: 5 } ], sticky: consumer }\n  - name: t\n    match: { path_prefix: /v1/t }\n    versions: { from: [path], \"1\": { upstream: nope } }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "routes[0].versions.1.split[0].upstream: route names undefined upstream `b`",
        "routes[0].versions.1.sticky: sticky: consumer needs an authenticated consumer",
        "routes[1].versions.1.upstream: route names undefined upstream `nope`",
        "routes[1].versions.from: the route path `/v1/t` starts with a version segment",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nroutes:\n  - name: users\n    match: { path_prefix: /users }\n    versions: { from: [path], \"1\": { upstream: a } }\n  - { name: bad, match: { path_prefix: /bad }, versions: { from: [path], header: content-length, \"1\": { upstream: a } } }\n  - { name: legacy, match: { path_prefix: /v2/users/old }, upstream: a }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "routes[1].versions.header: `content-length` cannot carry the version",
        "routes[2].match: path `/v2/users/old` collides with the path versions of route `users`",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}
