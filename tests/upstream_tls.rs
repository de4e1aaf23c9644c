//! TLS to upstreams: the certificate and host name verified by default (CA and SNI from the
//! configuration), a client certificate for upstreams that ask for one, HTTP/2 over TLS, health
//! checks over the same TLS, and `verify: false` only with `insecure: true`, flagged by `check`.
//! The TLS origin is a second gateway with a TLS listener in front of a plain test upstream.

mod support;

use std::path::Path;

use support::*;

/// A TLS origin for `names`, asking for client certificates from `pki` when `client_auth`.
fn tls_origin(pki: &Pki, names: &[&str], app: &Upstream, client_auth: bool) -> Gateway {
    let (cert, key) = pki.server("origin", names, 90);
    let auth = if client_auth {
        format!(
            ", client_ca: \"{}\", client_auth: required",
            pki.ca_file.display()
        )
    } else {
        String::new()
    };
    Gateway::start_with(
        &format!(
            "listen: [ {{ addr: \"127.0.0.1:{{port}}\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ]{auth} }} }} ]",
            cert.display(),
            key.display()
        ),
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
            app.addr()
        ),
    )
}

fn front(origin: &Gateway, tls: &str, extra: &str) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  secure:\n    targets: [\"{}\"]\n    tls: {tls}\n{extra}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: secure }}\n",
        origin.addr()
    ))
}

fn ca(pki: &Pki) -> String {
    pki.ca_file.display().to_string()
}

#[test]
fn certificates_and_names_are_verified_and_a_mismatch_never_sends_the_request() {
    let pki = Pki::new("internal ca");
    let app = Upstream::start("app");
    let origin = tls_origin(&pki, &["payments.internal"], &app, false);
    let good = front(
        &origin,
        &format!("{{ sni: payments.internal, ca: \"{}\" }}", ca(&pki)),
        "",
    );
    let r = good.get("/pay");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.count(), 1);
    assert_eq!(
        app.requests()[0].header("x-forwarded-proto"),
        Some("https"),
        "the origin saw TLS"
    );

    // Another CA, or another name: refused before any request is written.
    let other = Pki::new("other ca");
    let wrong_ca = front(
        &origin,
        &format!("{{ sni: payments.internal, ca: \"{}\" }}", ca(&other)),
        "",
    );
    assert_eq!(wrong_ca.get("/pay").status, 502);
    let wrong_name = front(
        &origin,
        &format!("{{ sni: evil.internal, ca: \"{}\" }}", ca(&pki)),
        "",
    );
    assert_eq!(wrong_name.get("/pay").status, 502);
    assert_eq!(
        app.count(),
        1,
        "nothing reached the origin past a failed verification"
    );

    // Explicitly insecure: no verification (and `check` says so).
    let insecure = front(
        &origin,
        "{ sni: evil.internal, verify: false, insecure: true }",
        "",
    );
    assert_eq!(insecure.get("/pay").status, 200);
}

#[test]
fn a_client_certificate_is_presented_to_an_origin_that_requires_one_and_h2_is_spoken() {
    let pki = Pki::new("mutual ca");
    let app = Upstream::start("app");
    let origin = tls_origin(&pki, &["orders.internal"], &app, true);
    let client = pki.client(&["gateway.internal"]);
    let (cert, key) = client
        .write(pki.path(), "gateway-client", &[])
        .expect("write client");
    let without = front(
        &origin,
        &format!("{{ sni: orders.internal, ca: \"{}\" }}", ca(&pki)),
        "",
    );
    assert_eq!(without.get("/o").status, 502);
    assert_eq!(app.count(), 0);
    let tls = format!(
        "{{ sni: orders.internal, ca: \"{}\", client_cert: \"{}\", client_key: \"{}\" }}",
        ca(&pki),
        cert.display(),
        key.display()
    );
    let with = front(
        &origin,
        &tls,
        "    protocol: h2\n    health_check: { path: /health, interval: 1s }\n",
    );
    let r = with.get("/o");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(app.count() >= 1);
    // The health check speaks the same TLS (with the client certificate): the target is healthy.
    with.wait_metric("portcullis_upstream_healthy", &[("upstream", "secure")], 1.0);
    wait_for(
        "a health check reached the origin",
        std::time::Duration::from_secs(10),
        || (app.health_checks() > 0).then_some(()),
    );
}

#[test]
fn check_refuses_unverified_tls_unless_insecure_and_flags_it() {
    let pki = Pki::new("check ca");
    let d = |p: &Path| p.display().to_string();
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\n    tls: {{ verify: false }}\n  b:\n    targets: [\"127.0.0.1:3\"]\n    tls: {{ ca: \"{}\" }}\n  c:\n    targets: [\"127.0.0.1:4\"]\n    protocol: h2\n  d:\n    targets: [\"127.0.0.1:5\"]\n    tls: {{ sni: d.internal, ca: \"{}/missing.pem\" }}\n  e:\n    targets: [\"127.0.0.1:6\"]\n    tls: {{ sni: \"\" }}\n",
        d(&pki.ca_file),
        d(pki.path())
    ));
    assert_eq!(out.code, 1);
    for want in [
        "upstreams.a.tls.verify: verify: false sends requests to whoever answers",
        "upstreams.b.tls.sni: name the host the targets' certificate is for",
        "upstreams.e.tls.sni: name the host the targets' certificate is for",
        "upstreams.c.protocol: h2 is HTTP/2 over TLS",
        "upstreams.d.tls.ca: cannot read",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\n    tls: { verify: false, insecure: true }\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("WARNING: upstream `a`: TLS certificates are not verified"),
        "{}",
        out.stdout
    );
}

/// Without `ca`, an upstream's certificate is checked against the system trust store, which the
/// gateway reads from OpenSSL's hashed directory rather than the bundle file
/// (`src/tls/trust.rs`): with `SSL_CERT_FILE=/dev/null` and `SSL_CERT_DIR` as it sets them, a CA
/// linked there is trusted and any other is refused before a request is written. And with the
/// variables unset (a service's environment), the gateway's own choice still verifies: a CA the
/// system does not know is refused, an upstream's own `ca` is trusted.
#[test]
fn the_system_trust_store_is_read_from_the_hashed_directory() {
    let pki = Pki::new("system ca");
    let app = Upstream::start("app");
    let origin = tls_origin(&pki, &["payments.internal"], &app, false);
    let body = |tls: &str| {
        format!(
            "upstreams:\n  secure:\n    targets: [\"{}\"]\n    tls: {tls}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: secure }}\n",
            origin.addr()
        )
    };
    let system_tls = "{ sni: payments.internal }";

    let store = tempfile::tempdir().expect("store");
    let hash = pki.ca.issued.cert.subject_name_hash();
    std::fs::copy(&pki.ca_file, store.path().join(format!("{hash:08x}.0"))).expect("link");
    let store_dir = store.path().display().to_string();
    let trusted = Gateway::start_env(
        "",
        &body(system_tls),
        &[("SSL_CERT_FILE", "/dev/null"), ("SSL_CERT_DIR", &store_dir)],
    );
    let r = trusted.get("/pay");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.count(), 1);

    let empty = tempfile::tempdir().expect("empty store");
    let empty_dir = empty.path().display().to_string();
    let untrusted = Gateway::start_env(
        "",
        &body(system_tls),
        &[("SSL_CERT_FILE", "/dev/null"), ("SSL_CERT_DIR", &empty_dir)],
    );
    assert_eq!(untrusted.get("/pay").status, 502);

    let unset = [("SSL_CERT_FILE", ""), ("SSL_CERT_DIR", "")];
    let system = Gateway::start_env("", &body(system_tls), &unset);
    assert_eq!(system.get("/pay").status, 502, "a private CA is not a system CA");
    let own_ca = Gateway::start_env(
        "",
        &body(&format!("{{ sni: payments.internal, ca: \"{}\" }}", ca(&pki))),
        &unset,
    );
    assert_eq!(own_ca.get("/pay").status, 200);
    assert_eq!(
        app.count(),
        2,
        "nothing reached the origin past a failed verification"
    );
}
