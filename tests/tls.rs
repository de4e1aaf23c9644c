//! TLS termination: certificates chosen by SNI, HTTP/2 by ALPN and h2c, TLS 1.0/1.1 refused,
//! certificates renewed by a live reload without dropping connections, `check`'s report, and
//! the handshake and expiry metrics. Real clients: OpenSSL (the test client) and curl.

mod support;

use std::path::Path;
use std::time::Duration;

use openssl::ssl::SslVersion;
use support::*;

fn tls_listener(certs: &[(&Path, &Path)], extra: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{ cert: \"{}\", key: \"{}\" }}", c.display(), k.display()))
        .collect();
    format!(
        "listen: [ {{ addr: \"127.0.0.1:{{port}}\", tls: {{ certificates: [{}]{extra} }} }} ]",
        list.join(", ")
    )
}

fn app(up: &Upstream) -> String {
    format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
        up.addr()
    )
}

#[test]
fn sni_chooses_the_certificate_and_alpn_offers_http2() {
    let pki = Pki::new("edge ca");
    let (a, ak) = pki.server("a", &["a.test"], 90);
    let (w, wk) = pki.server("w", &["*.w.test", "w.test"], 90);
    let up = Upstream::start("app");
    let gw = Gateway::start_with(&tls_listener(&[(&a, &ak), (&w, &wk)], ""), &app(&up));
    let ca = &pki.ca.issued.cert;

    let exact = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default()).expect("a.test");
    assert_eq!(exact.served_names(), vec!["a.test"]);
    let wild = tls_connect(gw.addr(), "api.w.test", ca, &TlsOptions::default()).expect("wildcard");
    assert_eq!(wild.served_names(), vec!["*.w.test", "w.test"]);
    // No certificate names it: the first is the default (and the client's check fails).
    let err = tls_connect(gw.addr(), "other.test", ca, &TlsOptions::default()).err();
    assert!(err.is_some(), "a certificate for other.test was served");

    // A request over TLS reaches the upstream marked as https, over HTTP/1.1 and HTTP/2.
    let mut conn = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default()).expect("connect");
    assert_eq!(conn.version(), "TLSv1.3");
    let r = conn.get("a.test", "/one").expect("response");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests().pop().expect("request upstream");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("host"), Some("a.test"));

    let port = gw.addr().port().to_string();
    let resolve = format!("a.test:{port}:127.0.0.1");
    let url = format!("https://a.test:{port}/two");
    let ca_file = pki.ca_file.to_str().expect("path");
    let (status, version, _) = curl(&["--resolve", &resolve, "--cacert", ca_file, &url]);
    assert_eq!((status, version.as_str()), (200, "2"), "HTTP/2 by ALPN");
    let (status, version, _) = curl(&["--http1.1", "--resolve", &resolve, "--cacert", ca_file, &url]);
    assert_eq!((status, version.as_str()), (200, "1.1"));
    let seen = up.requests().pop().expect("request upstream");
    assert_eq!(seen.target, "/two");
    assert_eq!(seen.header("host"), Some(format!("a.test:{port}").as_str()));
}

#[test]
fn tls_1_0_and_1_1_are_refused_and_every_handshake_is_counted() {
    let pki = Pki::new("versions ca");
    let (a, ak) = pki.server("a", &["a.test"], 90);
    let up = Upstream::start("app");
    let gw = Gateway::start_with(&tls_listener(&[(&a, &ak)], ", min_version: \"1.3\""), &app(&up));
    let ca = &pki.ca.issued.cert;
    for old in [SslVersion::TLS1_1, SslVersion::TLS1_2] {
        let options = TlsOptions {
            max_version: Some(old),
            ..TlsOptions::default()
        };
        assert!(
            tls_connect(gw.addr(), "a.test", ca, &options).is_err(),
            "{old:?} accepted by a min_version 1.3 listener"
        );
    }
    let mut ok = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default()).expect("1.3");
    assert_eq!(ok.get("a.test", "/").expect("response").status, 200);
    gw.wait_metric(
        "portcullis_tls_handshakes_total",
        &[("result", "ok"), ("version", "TLSv1.3")],
        1.0,
    );
    gw.wait_metric(
        "portcullis_tls_handshakes_total",
        &[("result", "failed"), ("version", "TLSv1.1")],
        1.0,
    );
    gw.wait_metric(
        "portcullis_tls_handshakes_total",
        &[("result", "failed"), ("version", "TLSv1.2+")],
        1.0,
    );
    let expiry = gw.metric("portcullis_tls_certificate_expiry_seconds", &[("name", "a.test")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let days = (expiry - now) / 86_400.0;
    assert!((88.0..=91.0).contains(&days), "expiry gauge says {days} days");
    // TLS 1.1 is refused on a default listener too: the minimum is 1.2.
    let gw12 = Gateway::start_with(&tls_listener(&[(&a, &ak)], ""), &app(&up));
    let options = TlsOptions {
        max_version: Some(SslVersion::TLS1_1),
        ..TlsOptions::default()
    };
    assert!(tls_connect(gw12.addr(), "a.test", ca, &options).is_err());
    let options = TlsOptions {
        max_version: Some(SslVersion::TLS1_2),
        ..TlsOptions::default()
    };
    let c = tls_connect(gw12.addr(), "a.test", ca, &options).expect("1.2");
    assert_eq!(c.version(), "TLSv1.2");
}

#[test]
fn a_renewed_certificate_serves_new_handshakes_after_a_reload_and_open_connections_stay() {
    let pki = Pki::new("renew ca");
    let (a, ak) = pki.server("a", &["a.test"], 90);
    let first = serial_of(&a);
    let up = Upstream::start("app");
    let gw = Gateway::start_with(&tls_listener(&[(&a, &ak)], ""), &app(&up));
    let ca = &pki.ca.issued.cert;
    let mut open = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default()).expect("connect");
    assert_eq!(open.served_serial(), first);
    assert_eq!(open.get("a.test", "/before").expect("response").status, 200);

    // Renewed in place (same paths), then SIGHUP.
    pki.server("a", &["a.test"], 180);
    let renewed = serial_of(&a);
    assert_ne!(renewed, first);
    gw.signal(libc::SIGHUP);
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "success")], 1.0);
    let fresh = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default()).expect("connect");
    assert_eq!(
        fresh.served_serial(),
        renewed,
        "new handshakes get the renewed certificate"
    );
    assert_eq!(
        open.get("a.test", "/after")
            .expect("the open connection still serves")
            .status,
        200
    );

    // A key that does not match: the reload is refused, with the reason, and the renewed
    // certificate keeps serving.
    let (_, other_key) = pki.server("other", &["a.test"], 90);
    std::fs::copy(&other_key, &ak).expect("replace key");
    gw.signal(libc::SIGHUP);
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "failure")], 1.0);
    wait_for("the refusal logged", Duration::from_secs(10), || {
        gw.log().contains("does not match the certificate").then_some(())
    });
    let still = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default()).expect("connect");
    assert_eq!(still.served_serial(), renewed);
}

#[test]
fn h2c_is_served_only_where_enabled() {
    let up = Upstream::start("app");
    let (h2c_port, _) = two_free_ports();
    let gw = Gateway::start_with(
        &format!("listen: [\"127.0.0.1:{{port}}\", {{ addr: \"127.0.0.1:{h2c_port}\", h2c: true }}]"),
        &app(&up),
    );
    let h2c_url = format!("http://127.0.0.1:{h2c_port}/x");
    let (status, version, _) = curl(&["--http2-prior-knowledge", &h2c_url]);
    assert_eq!((status, version.as_str()), (200, "2"));
    // HTTP/1.1 still works on the h2c listener.
    let (status, version, _) = curl(&[&h2c_url]);
    assert_eq!((status, version.as_str()), (200, "1.1"));
    // The plain listener does not speak HTTP/2.
    let plain = format!("http://{}/x", gw.addr());
    let (status, _, _) = curl(&["--http2-prior-knowledge", &plain]);
    assert_ne!(status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|r| r.header("host") == Some(format!("127.0.0.1:{h2c_port}").as_str())));
}

#[test]
fn check_reports_certificate_problems_and_summarises_the_good_ones() {
    let pki = Pki::new("check ca");
    let (good, good_key) = pki.server("good", &["good.test", "*.good.test"], 90);
    let (soon, soon_key) = pki.server("soon", &["soon.test"], 5);
    let (old, old_key) = pki.server("old", &["old.test"], -2);
    let (_, wrong_key) = pki.server("wrong", &["good.test"], 90);
    let d = |p: &Path| p.display().to_string();
    let out = check(&format!(
        "server:\n  listen:\n    - {{ addr: \"127.0.0.1:1\", tls: {{ certificates: [{{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}/missing.pem\", key: \"{}\" }}] }} }}\n    - {{ addr: \"127.0.0.1:2\", h2c: true, tls: {{ certificates: [{{ cert: \"{}\", key: \"{}\" }}], min_version: \"1.1\" }} }}\n",
        d(&good), d(&wrong_key), d(&old), d(&old_key), d(&soon), d(&soon_key), d(pki.path()), d(&good_key), d(&good), d(&good_key)
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    for want in [
        "server.listen[0].tls.certificates[0]: the key in",
        "does not match the certificate in",
        "server.listen[0].tls.certificates[1]: the certificate in",
        "expired on",
        "server.listen[0].tls.certificates[3]: cannot read",
        "server.listen[1].tls.min_version: TLS 1.1 is obsolete",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    let out = check(&format!(
        "server:\n  listen:\n    - {{ addr: \"127.0.0.1:1\", tls: {{ certificates: [{{ cert: \"{}\", key: \"{}\" }}, {{ cert: \"{}\", key: \"{}\" }}] }} }}\n",
        d(&good), d(&good_key), d(&soon), d(&soon_key)
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("tls 127.0.0.1:1 (default): ") && out.stdout.contains("[good.test, *.good.test]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("[soon.test]") && out.stdout.contains("WARNING: renew it"),
        "{}",
        out.stdout
    );
}

/// A listener asking for client certificates, an `mtls` authenticator and a route using it.
fn mtls_gateway(pki: &Pki, up: &Upstream, client_auth: &str) -> Gateway {
    let (a, ak) = pki.server("a", &["a.test"], 90);
    let listen = tls_listener(
        &[(&a, &ak)],
        &format!(
            ", client_ca: \"{}\", client_auth: {client_auth}",
            pki.ca_file.display()
        ),
    );
    Gateway::start_with(
        &listen,
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  partners:\n    type: mtls\n    subjects: [ {{ name: partner-a.test, consumer: partner-a, scopes: [orders:read] }}, partner-b.test ]\n    forward: {{ consumer: X-Consumer-Id }}\nrate_limits:\n  per-partner: {{ key: consumer, limits: [ {{ requests: 2, per: 1h }} ] }}\nroutes:\n  - name: orders\n    match: {{ path_prefix: /orders }}\n    upstream: app\n    auth: [partners]\n    require: {{ scopes: [orders:read] }}\n    rate_limit: [per-partner]\n  - {{ name: open, match: {{ path_prefix: / }}, upstream: app }}\n",
            up.addr()
        ),
    )
}

#[test]
fn a_verified_client_certificate_is_a_consumer_and_nothing_else_is() {
    let pki = Pki::new("mtls ca");
    let up = Upstream::start("app");
    let gw = mtls_gateway(&pki, &up, "optional");
    let ca = &pki.ca.issued.cert;
    let partner_a = pki.client(&["partner-a.test"]);
    let partner_b = pki.client(&["partner-b.test"]);
    let stranger = pki.client(&["stranger.test"]);
    let rogue_ca = Pki::new("rogue ca");
    let forged = rogue_ca.client(&["partner-a.test"]);
    fn with(client: Option<&portcullis::tls::mint::Issued>) -> TlsOptions<'_> {
        TlsOptions {
            client,
            ..TlsOptions::default()
        }
    }

    // No certificate: the public route works (client_auth optional), the mtls one is 401, and
    // headers claiming an identity change nothing.
    let mut anonymous = tls_connect(gw.addr(), "a.test", ca, &with(None)).expect("connect");
    assert_eq!(anonymous.get("a.test", "/open").expect("open").status, 200);
    let r = anonymous
        .send(b"GET /orders HTTP/1.1\r\nHost: a.test\r\nX-Consumer-Id: partner-a\r\nX-SSL-Client-S-DN: CN=partner-a.test\r\n\r\n")
        .expect("orders");
    assert_eq!(r.status, 401, "{}", r.text());
    // A listed certificate: its consumer, forwarded and rate limited as such.
    let mut a = tls_connect(gw.addr(), "a.test", ca, &with(Some(&partner_a))).expect("partner a");
    let before = up.count();
    let r = a
        .send(b"GET /orders HTTP/1.1\r\nHost: a.test\r\nX-Consumer-Id: someone-else\r\n\r\n")
        .expect("orders");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests().pop().expect("upstream request");
    assert_eq!(seen.header_all("x-consumer-id"), vec!["partner-a"]);
    assert_eq!(a.get("a.test", "/orders").expect("second").status, 200);
    assert_eq!(a.get("a.test", "/orders").expect("third").status, 429);
    assert_eq!(up.count(), before + 2);
    // Listed, but without the scope `require` asks for: 403.
    let mut b = tls_connect(gw.addr(), "a.test", ca, &with(Some(&partner_b))).expect("partner b");
    assert_eq!(b.get("a.test", "/orders").expect("orders").status, 403);
    // Valid but not listed: 401.
    let mut s = tls_connect(gw.addr(), "a.test", ca, &with(Some(&stranger))).expect("stranger");
    assert_eq!(s.get("a.test", "/orders").expect("orders").status, 401);
    // Signed by another CA: the handshake fails (in TLS 1.3 the client learns it at its first
    // read), and nothing is served.
    let forged = tls_connect(gw.addr(), "a.test", ca, &with(Some(&forged)))
        .and_then(|mut c| c.get("a.test", "/open").map_err(|e| e.to_string()));
    assert!(forged.is_err(), "served with a forged certificate: {forged:?}");
    assert_eq!(up.count(), before + 2, "no refused request reached the upstream");
}

#[test]
fn client_auth_required_refuses_a_handshake_without_a_certificate() {
    let pki = Pki::new("required ca");
    let up = Upstream::start("app");
    let gw = mtls_gateway(&pki, &up, "required");
    let ca = &pki.ca.issued.cert;
    let refused = tls_connect(gw.addr(), "a.test", ca, &TlsOptions::default())
        .and_then(|mut c| c.get("a.test", "/open").map_err(|e| e.to_string()));
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
    let partner = pki.client(&["partner-a.test"]);
    let options = TlsOptions {
        client: Some(&partner),
        ..TlsOptions::default()
    };
    let mut c = tls_connect(gw.addr(), "a.test", ca, &options).expect("with a certificate");
    assert_eq!(c.get("a.test", "/orders").expect("orders").status, 200);
    assert_eq!(up.count(), 1);
}

/// Closed by the gateway within `within`: a read sees the end (or a reset).
fn closed_within(stream: &mut impl std::io::Read, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn http2_connections_that_say_nothing_are_closed_like_http1_ones() {
    let pki = Pki::new("idle ca");
    let (a, ak) = pki.server("a", &["a.test"], 90);
    let up = Upstream::start("app");
    let (h2c_port, _) = two_free_ports();
    let gw = Gateway::start_with(
        &format!(
            "listen: [ {{ addr: \"127.0.0.1:{{port}}\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }} }}, {{ addr: \"127.0.0.1:{h2c_port}\", h2c: true }} ]\nlimits: {{ header_read_timeout: 1s }}",
            a.display(),
            ak.display()
        ),
        &app(&up),
    );
    let h2c = std::net::SocketAddr::from(([127, 0, 0, 1], h2c_port));
    let open = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(h2c).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        std::io::Write::write_all(&mut s, bytes).expect("write");
        s
    };
    // `PRI ` that never becomes the preface, a preface and SETTINGS then silence, and a TLS
    // connection that chose h2 and then sent nothing.
    let mut partial = open(b"PRI /x HTTP/1.1\r\nHost: a\r\n");
    let mut quiet = open(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    let options = TlsOptions {
        alpn: Some(b"\x02h2"),
        ..TlsOptions::default()
    };
    let mut tls = tls_connect(gw.addr(), "a.test", &pki.ca.issued.cert, &options).expect("tls");
    assert_eq!(tls.alpn().as_deref(), Some(&b"h2"[..]));
    tls.stream
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    for (what, closed) in [
        (
            "a partial preface",
            closed_within(&mut partial, Duration::from_secs(10)),
        ),
        (
            "an idle HTTP/2 connection",
            closed_within(&mut quiet, Duration::from_secs(10)),
        ),
        (
            "a TLS h2 connection without a preface",
            closed_within(&mut tls, Duration::from_secs(10)),
        ),
    ] {
        assert!(closed, "{what} was kept open");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn mtls_subjects_are_typed_and_tied_to_the_listeners_that_verified_them() {
    let internal = Pki::new("internal clients");
    let partners = Pki::new("partner clients");
    let (a, ak) = internal.server("a", &["a.test"], 90);
    let up = Upstream::start("app");
    let (internal_port, partner_port) = two_free_ports();
    let listener = |port: u16, ca: &Pki| {
        format!(
            "{{ addr: \"127.0.0.1:{port}\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ], client_ca: \"{}\", client_auth: optional }} }}",
            a.display(),
            ak.display(),
            ca.ca_file.display()
        )
    };
    let _gw = Gateway::start_with(
        &format!(
            "listen: [ \"127.0.0.1:{{port}}\", {}, {} ]",
            listener(internal_port, &internal),
            listener(partner_port, &partners)
        ),
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  internal:\n    type: mtls\n    listeners: [\"127.0.0.1:{internal_port}\"]\n    subjects: [\"cn:billing\", \"dns:reports.internal\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, auth: [internal] }}\n",
            up.addr()
        ),
    );
    let status = |port: u16, client: &portcullis::tls::mint::Issued| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let options = TlsOptions {
            client: Some(client),
            ..TlsOptions::default()
        };
        let mut c = tls_connect(addr, "a.test", &internal.ca.issued.cert, &options).expect("connect");
        c.get("a.test", "/x").expect("response").status
    };
    // Typed: `cn:billing` is the common name, `dns:reports.internal` a DNS name.
    assert_eq!(status(internal_port, &internal.client(&["billing"])), 200);
    assert_eq!(
        status(
            internal_port,
            &internal.client(&["x.internal", "reports.internal"])
        ),
        200
    );
    // A DNS name `billing` (the common name is something else) is not `cn:billing`.
    assert_eq!(
        status(internal_port, &internal.client(&["other", "billing"])),
        401
    );
    // The same name from the partner CA, on the listener that trusts it: not this
    // authenticator's (it counts certificates verified by the internal listener only).
    assert_eq!(status(partner_port, &partners.client(&["billing"])), 401);
    assert_eq!(up.count(), 2);
}
