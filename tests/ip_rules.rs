//! `ip: { allow, deny }` per route and under `server:`, on the client address `trusted_proxies`
//! determine: refused with 403 before authentication, and the upstream never sees the request.

mod support;

use support::*;

fn routes(up: &Upstream) -> String {
    format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  keys:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}/conf/keys.yaml\nroutes:\n  - {{ name: denied, match: {{ path_prefix: /denied }}, upstream: app, ip: {{ deny: [127.0.0.0/8] }} }}\n  - {{ name: office, match: {{ path_prefix: /office, methods: [GET, POST] }}, upstream: app, ip: {{ allow: [10.0.0.0/8, \"2001:db8::/32\"] }} }}\n  - {{ name: private, match: {{ path_prefix: /private }}, upstream: app, auth: [keys], ip: {{ allow: [10.0.0.0/8] }} }}\n  - {{ name: open, match: {{ path_prefix: / }}, upstream: app }}\n",
        up.addr(),
        env!("CARGO_MANIFEST_DIR")
    )
}

fn get_with(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.addr(), "GET", "localhost", path, headers, b"")
}

#[test]
fn route_rules_refuse_before_anything_else_and_the_upstream_never_sees_it() {
    let up = Upstream::start("app");
    let gw = Gateway::start(&routes(&up));
    let r = gw.get("/denied/x");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    // Not in the allow list; a forged X-Forwarded-For from an untrusted peer changes nothing.
    for xff in [None, Some("10.1.2.3"), Some("10.1.2.3, 10.9.9.9")] {
        let headers: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
        assert_eq!(get_with(&gw, "/office", &headers).status, 403, "{xff:?}");
    }
    // Nor a 405 with `Allow` telling it the path exists.
    let r = request(gw.addr(), "DELETE", "localhost", "/office", &[], b"");
    assert_eq!(r.status, 403, "{}", r.text());
    // Refused before authentication: no 401 telling the client a credential would help.
    assert_eq!(gw.get("/private").status, 403);
    assert_eq!(up.count(), 0, "the upstream saw none of them");
    assert_eq!(gw.get("/open").status, 200);
    assert_eq!(up.count(), 1);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_client_address_decides() {
    let up = Upstream::start("app");
    let gw = Gateway::start_with("trusted_proxies: [127.0.0.1]", &routes(&up));
    assert_eq!(
        get_with(&gw, "/office", &[("x-forwarded-for", "10.1.2.3")]).status,
        200
    );
    assert_eq!(
        get_with(&gw, "/office", &[("x-forwarded-for", "2001:db8::7")]).status,
        200
    );
    // The client put an allowed address in front of its own: the proxy appended the real one.
    let r = get_with(&gw, "/office", &[("x-forwarded-for", "10.1.2.3, 192.0.2.7")]);
    assert_eq!(r.status, 403);
    // Trusted hops are skipped from the right; the first untrusted entry is the client.
    let r = get_with(
        &gw,
        "/office",
        &[("x-forwarded-for", "192.0.2.7, 10.1.2.3, 127.0.0.1")],
    );
    assert_eq!(r.status, 200);
    for junk in ["garbage", "10.1.2.3, not-an-ip", ""] {
        assert_eq!(
            get_with(&gw, "/office", &[("x-forwarded-for", junk)]).status,
            403,
            "{junk:?}"
        );
    }
    // A trusted proxy that names no client does not stand for every client behind it.
    assert_eq!(gw.get("/office").status, 403);
    assert_eq!(gw.get("/denied").status, 403);
    assert_eq!(up.count(), 3);
}

#[test]
fn server_rules_apply_to_every_route() {
    let up = Upstream::start("app");
    let gw = Gateway::start_with("ip: { deny: [127.0.0.1/32] }", &routes(&up));
    for path in ["/open", "/office", "/nowhere"] {
        assert_eq!(gw.get(path).status, 403, "{path}");
    }
    assert_eq!(up.count(), 0);
}

/// Found in review: an IPv4-mapped entry kept its IPv6 prefix and matched every IPv4 address.
#[test]
fn an_ipv4_mapped_network_is_the_ipv4_network_it_maps() {
    let up = Upstream::start("app");
    let body = format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, ip: {{ allow: [\"::ffff:10.0.0.0/104\"] }} }}\n",
        up.addr()
    );
    let gw = Gateway::start(&body);
    assert_eq!(gw.get("/x").status, 403, "127.0.0.1 is not in 10.0.0.0/8");
    assert_eq!(up.count(), 0);
}

#[test]
fn check_reports_bad_networks() {
    let out = check(
        "server:\n  ip: { allow: [10.0.0.0/33] }\nupstreams:\n  a: { targets: [\"127.0.0.1:9001\"] }\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, ip: { deny: [nonsense], alow: [] } }\n",
    );
    assert_ne!(out.code, 0);
    for want in ["server.ip.allow[0]", "routes[0].ip.deny[0]", "routes[0].ip.alow"] {
        assert!(out.stderr.contains(want), "missing `{want}` in:\n{}", out.stderr);
    }
}
