//! Attacks on path handling and request framing. Every rejected spelling is also checked
//! from the upstream's side: it must never have seen the request.

mod support;

use std::time::Duration;

use support::*;

/// A gateway with only `/public` routed; `/admin` exists on the upstream but has no route.
fn setup() -> (Upstream, Gateway) {
    let up = Upstream::start("public");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - name: public\n    match: {{ path_prefix: /public }}\n    upstream: app\n",
        up.addr()
    ));
    (up, gw)
}

fn raw_get(gw: &Gateway, target: &str) -> Response {
    gw.send(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn bypass_spellings_never_reach_the_upstream() {
    let (up, gw) = setup();
    let attacks = PATH_ATTACKS;
    for (target, want) in attacks {
        let r = raw_get(&gw, target);
        assert_eq!(r.status, *want, "{target}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{target}"
        );
        assert!(
            !r.text().contains("127.0.0.1"),
            "{target} leaks an address: {}",
            r.text()
        );
    }
    // Spellings Pingora's own parser rejects must not get through either.
    for target in ["/public\\..\\admin", "/public/x#/../../admin", "/public/x#frag"] {
        let r = try_send_raw(
            gw.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        if let Ok(r) = r {
            assert!(r.status >= 400, "{target} was accepted with {}", r.status);
        }
    }
    assert_eq!(up.count(), 0, "upstream saw: {:?}", up.requests());
}

#[test]
fn upstream_receives_the_canonical_path() {
    let (up, gw) = setup();
    let cases = [
        ("/public//a/./b/../c", "/public/a/c"),
        ("/public/%7Euser/%41", "/public/~user/A"),
        ("/public/a%3ab?q=%20x&y=1", "/public/a%3Ab?q=%20x&y=1"),
        // Pingora percent-encodes a raw space in the request line before any filter runs;
        // routing and the upstream then agree on the escaped form.
        ("/public/a b", "/public/a%20b"),
        ("/public/", "/public/"),
        ("/public", "/public"),
    ];
    for (sent, seen) in cases {
        let r = raw_get(&gw, sent);
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        assert_eq!(r.json()["target"], seen, "{sent}");
    }
    assert_eq!(up.count(), cases.len());
}

#[test]
fn absolute_form_must_agree_with_host() {
    let (up, gw) = setup();
    let r =
        gw.send(b"GET http://evil.example/public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    // Ports must agree too, and a port beyond 16 bits is no port (not "none, so 80").
    for (target, host) in [
        ("http://localhost/public/x", "localhost:81"),
        ("http://localhost:81/public/x", "localhost"),
        ("http://localhost/public/x", "localhost:65616"),
        ("http://localhost:65616/public/x", "localhost"),
    ] {
        let r =
            gw.send(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, 400, "{target} with Host {host}: {}", r.text());
    }
    let ok =
        gw.send(b"GET http://localhost/public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/public/x", "upstream gets origin-form");
}

#[test]
fn host_header_rules() {
    let (up, gw) = setup();
    let missing = gw.send(b"GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(missing.status, 400);
    let dup = gw.send(b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n");
    assert_eq!(dup.status, 400);
    let bad = gw.send(b"GET /public/x HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n");
    assert_eq!(bad.status, 400);
    // Empty labels would miss exact-host routes and fall to routes for every host.
    // A port beyond 16 bits: one parser reads no port (80), another the digits.
    for host in ["localhost..", ".localhost", "local..host", "localhost:65616"] {
        let r = gw
            .send(format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, 400, "Host: {host}");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let (up, gw) = setup();
    let smuggle = b"POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut conn = Conn::connect(gw.addr());
    let r = conn.send(smuggle).expect("a response");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    // The connection is closed: nothing more is answered on it.
    assert!(conn.read_response(false).is_err());
    for te in ["gzip, chunked", "chunked, identity", "identity"] {
        let req = format!("POST /public/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n0\r\n\r\n");
        if let Ok(r) = try_send_raw(gw.addr(), req.as_bytes()) {
            assert_eq!(r.status, 400, "TE {te}");
        }
    }
    let two_cl = b"POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab";
    if let Ok(r) = try_send_raw(gw.addr(), two_cl) {
        assert_eq!(r.status, 400);
    }
    assert_eq!(up.count(), 0, "upstream saw: {:?}", up.requests());
}

#[test]
fn header_count_size_and_uri_length_are_capped() {
    let (up, gw) = setup();
    let mut many = String::from("GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for i in 0..120 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(gw.send(many.as_bytes()).status, 431);
    let big = format!(
        "GET /public/x HTTP/1.1\r\nHost: localhost\r\nx-big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40_000)
    );
    assert_eq!(gw.send(big.as_bytes()).status, 431);
    let long = format!("/public/{}", "a".repeat(9000));
    assert_eq!(raw_get(&gw, &long).status, 414);
    assert_eq!(up.count(), 0);
}

#[test]
fn slow_header_senders_are_cut_off() {
    let up = Upstream::start("app");
    let gw = Gateway::start_with(
        "limits: { header_read_timeout: 1s }",
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: app\n",
            up.addr()
        ),
    );
    // Trickle a header byte every 100 ms (each read well inside Pingora's per-read timeout)
    // for up to 15 s; the gateway must close the connection on its total deadline.
    let outcome = trickle(
        gw.addr(),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n",
        b'x',
        Duration::from_millis(100),
        Duration::from_secs(15),
    );
    let closed = matches!(outcome, Trickled::Closed);
    assert!(closed, "a client trickling its headers kept the connection open");
    assert_eq!(up.count(), 0);
    // A normal client is unaffected.
    assert_eq!(gw.get("/ok").status, 200);
}

/// Requests refused before normalization (bad escape, 414) logged the raw target with its
/// query, API key included; Pingora's own line for every proxy failure printed the full URI.
#[test]
fn credentials_in_request_targets_never_reach_the_log() {
    let up = Upstream::start("app");
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\n  dead:\n    targets: [\"{dead}\"]\n    retries: 0\nroutes:\n  - {{ name: ok, match: {{ path_prefix: /ok }}, upstream: app }}\n  - {{ name: down, match: {{ path_prefix: /down }}, upstream: dead }}\n",
        up.addr()
    ));
    let secret = "sk_live_never_log_me";
    assert_eq!(raw_get(&gw, &format!("/bad%zz?api_key={secret}")).status, 400);
    let long = format!("/ok/{}?api_key={secret}", "a".repeat(9000));
    assert_eq!(raw_get(&gw, &long).status, 414);
    assert_eq!(raw_get(&gw, &format!("/down/x?api_key={secret}")).status, 502);
    wait_for("three access-log lines", Duration::from_secs(10), || {
        (gw.log().matches("portcullis::access").count() >= 3).then_some(())
    });
    let log = gw.log();
    assert!(!log.contains(secret), "a credential reached the log:\n{log}");
    assert!(log.contains("path=/bad%zz?<redacted>"), "{log}");
}

/// One body byte every 15 s kept a request (and its upstream connection) open indefinitely:
/// each read was within Pingora's one-minute read timeout. A body now has an idle timeout and
/// a deadline (408), and the upstream never receives the incomplete request.
#[test]
fn slow_request_bodies_are_cut_off_with_408() {
    let up = Upstream::start("app");
    let gw = Gateway::start_with(
        "limits: { body_idle_timeout: 1s, body_timeout: 2s, body_min_rate: 0 }",
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
            up.addr()
        ),
    );
    let head = b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n";
    // A byte every 300 ms: every read is well inside the idle timeout; the deadline ends it.
    let trickled = trickle(
        gw.addr(),
        head,
        b'x',
        Duration::from_millis(300),
        Duration::from_secs(15),
    );
    match &trickled {
        Trickled::Answered(r) => {
            assert_eq!(r.status, 408, "{}", r.text());
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        }
        other => panic!("a trickled body was not refused: {other:?}"),
    }
    // A pause longer than the idle timeout.
    let paused = trickle(
        gw.addr(),
        head,
        b'x',
        Duration::from_secs(4),
        Duration::from_secs(15),
    );
    assert!(
        matches!(&paused, Trickled::Answered(r) if r.status == 408),
        "a paused body was not refused: {paused:?}"
    );
    assert_eq!(up.count(), 0, "the upstream never received an incomplete request");
    // A body sent at once is unaffected.
    let r = request(gw.addr(), "POST", "localhost", "/upload", &[], &[b'x'; 1000]);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Requests Pingora refuses while parsing (a malformed head, `CONNECT`) were answered with
/// `Server: Pingora`, fingerprinting the framework. They get the gateway's own problem+json.
#[test]
fn requests_refused_while_parsing_do_not_name_the_framework() {
    let (up, gw) = setup();
    for (raw, status) in [
        (
            &b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: y\r\n\r\n"[..],
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (
            b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
            405,
        ),
    ] {
        let r = gw.send(raw);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("server"), None, "{:?}", r.headers);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(!r.text().contains("ingora"), "{}", r.text());
    }
    assert_eq!(up.count(), 0);
}

/// The review's attack on the canned-response rewrite: an upstream body that is exactly one
/// of Pingora's canned heads must reach the client byte for byte (a rewrite of a proxied body
/// would shift responses on a reused connection).
#[test]
fn a_proxied_body_that_looks_like_a_canned_head_is_never_rewritten() {
    use std::io::{Read, Write};
    let canned = "HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nDate: x\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().take(4) {
            let Ok(mut conn) = conn else { continue };
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{canned}",
                canned.len()
            );
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    let gw = Gateway::start(&format!(
        "upstreams:\n  raw:\n    targets: [\"{addr}\"]\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: raw }}\n"
    ));
    let r = gw.get("/download");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), canned, "the body arrived as the upstream sent it");
}

/// At `log_level: trace` Pingora prints whole request heads; Portcullis keeps Pingora's crates
/// at INFO unless RUST_LOG asks, so a credential never reaches the log that way.
#[test]
fn a_verbose_log_level_does_not_dump_credentials() {
    let up = Upstream::start("app");
    let gw = Gateway::start_env(
        "log_level: trace",
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
            up.addr()
        ),
        &[("RUST_LOG", "")],
    );
    let secret = "sk_live_trace_never_log_me";
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/x",
        &[("authorization", &format!("Bearer {secret}"))],
        b"",
    );
    assert_eq!(r.status, 200);
    wait_for("the access log line", Duration::from_secs(10), || {
        gw.log().contains("portcullis::access").then_some(())
    });
    assert!(!gw.log().contains(secret), "a credential reached the log");
}
