//! JWT keys from a JWKS URL: start-up without the identity provider, rotation, outages and
//! refresh storms, against a real HTTP server on loopback.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn jwks_with_rsa_kid(kid: &str) -> String {
    let mut set: Value =
        serde_json::from_slice(&std::fs::read(fixture("jwks.json")).expect("jwks")).expect("json");
    for key in set["keys"].as_array_mut().expect("keys") {
        if key["kty"] == "RSA" {
            key["kid"] = json!(kid);
        }
    }
    set.to_string()
}

fn token(kid: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).expect("key")).expect("rsa");
    encode(
        &header,
        &json!({"iss": "https://idp.example.com", "sub": "alice", "exp": now + 600, "iat": now}),
        &key,
    )
    .expect("sign")
}

/// A tiny identity provider: serves `body` with `status` at any path and counts requests.
struct Idp {
    /// The request head of the last fetch.
    last_head: Arc<Mutex<String>>,
    body: Arc<Mutex<String>>,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Idp {
    fn start_on(addr: SocketAddr, body: String) -> Idp {
        let listener = wait_for("bind the IdP port", Duration::from_secs(10), || {
            TcpListener::bind(addr).ok()
        });
        let idp = Idp {
            last_head: Arc::new(Mutex::new(String::new())),
            body: Arc::new(Mutex::new(body)),
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            addr,
        };
        let last_head = Arc::clone(&idp.last_head);
        let (body, status, hits, stop) = (
            Arc::clone(&idp.body),
            Arc::clone(&idp.status),
            Arc::clone(&idp.hits),
            Arc::clone(&idp.stop),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if let Ok(mut head) = last_head.lock() {
                    *head = String::from_utf8_lossy(&seen).into_owned();
                }
                hits.fetch_add(1, Ordering::Relaxed);
                let body = body.lock().map(|b| b.clone()).unwrap_or_default();
                let status = status.load(Ordering::Relaxed);
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                        .as_bytes(),
                );
            }
        });
        idp
    }

    fn serve(&self, body: String) {
        *self.body.lock().expect("body") = body;
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn gateway(up: &Upstream, idp: SocketAddr, cooldown: &str, ready: bool) -> Gateway {
    let body = format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  idp:\n    type: jwt\n    issuers: [\"https://idp.example.com\"]\n    algorithms: [RS256]\n    jwks_url: http://{idp}/.well-known/jwks.json\n    jwks_cooldown: {cooldown}\n    jwks_refresh: 1h\n    jwks_timeout: 1s\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, auth: [idp] }}\n",
        up.addr()
    );
    if ready {
        Gateway::start(&body)
    } else {
        Gateway::start_unready("", &body)
    }
}

fn bearer(gw: &Gateway, token: &str) -> u16 {
    request(
        gw.addr(),
        "GET",
        "localhost",
        "/x",
        &[("authorization", &format!("Bearer {token}"))],
        b"",
    )
    .status
}

#[test]
fn never_fails_open_before_the_first_key_set_then_recovers() {
    let up = Upstream::start("app");
    let idp_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = gateway(&up, idp_addr, "200ms", false);
    let ready = get(gw.admin(), "localhost", "/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("JWKS"), "{}", ready.text());
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/x",
        &[("authorization", &format!("Bearer {}", token("k1")))],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(r.text().contains("signing keys not available"), "{}", r.text());
    assert_eq!(up.count(), 0);
    let _idp = Idp::start_on(idp_addr, jwks_with_rsa_kid("k1"));
    wait_for("keys fetched, gateway ready", Duration::from_secs(15), || {
        (get(gw.admin(), "localhost", "/readyz").status == 200).then_some(())
    });
    assert_eq!(bearer(&gw, &token("k1")), 200);
}

#[test]
fn rotation_and_an_outage_keep_the_last_good_keys() {
    let up = Upstream::start("app");
    let idp = Idp::start_on(
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        jwks_with_rsa_kid("k1"),
    );
    let gw = gateway(&up, idp.addr, "200ms", true);
    assert_eq!(bearer(&gw, &token("k1")), 200);
    // The IdP rotates: `k1` is withdrawn, the key is now `rsa-2`.
    idp.serve(jwks_with_rsa_kid("rsa-2"));
    wait_for("the new kid is accepted", Duration::from_secs(15), || {
        (bearer(&gw, &token("rsa-2")) == 200).then_some(())
    });
    assert_eq!(bearer(&gw, &token("k1")), 401, "the removed key is rejected");
    // An outage: fetches fail, the last good set stays in use.
    idp.status.store(500, Ordering::Relaxed);
    let failures_before = gw.metric("portcullis_jwks_fetches_total", &[("result", "failure")]);
    assert_eq!(bearer(&gw, &token("unknown-kid")), 401, "asks for a refresh");
    wait_for("a failed fetch", Duration::from_secs(15), || {
        (gw.metric("portcullis_jwks_fetches_total", &[("result", "failure")]) > failures_before).then_some(())
    });
    assert_eq!(
        bearer(&gw, &token("rsa-2")),
        200,
        "still verified with the last good key set"
    );
    // The IdP comes back.
    idp.status.store(200, Ordering::Relaxed);
    idp.serve(jwks_with_rsa_kid("rsa-3"));
    wait_for("recovered after the outage", Duration::from_secs(15), || {
        (bearer(&gw, &token("rsa-3")) == 200).then_some(())
    });
}

#[test]
fn unknown_kid_storm_is_bounded_by_the_cooldown() {
    let up = Upstream::start("app");
    let idp = Idp::start_on(
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        jwks_with_rsa_kid("k1"),
    );
    let gw = gateway(&up, idp.addr, "1s", true);
    let before = idp.hits.load(Ordering::Relaxed);
    let started = Instant::now();
    for i in 0..200 {
        assert_eq!(bearer(&gw, &token(&format!("random-{i}"))), 401);
    }
    let elapsed = started.elapsed();
    let fetches = idp.hits.load(Ordering::Relaxed) - before;
    let bound = elapsed.as_secs_f64().ceil() as usize + 1;
    assert!(
        fetches <= bound,
        "{fetches} fetches for 200 unknown kids in {elapsed:?} (cooldown 1s, bound {bound})"
    );
    assert_eq!(up.count(), 0);
}

/// A `jwks_url` with user-info passed `check`, sent no credentials and showed the password in
/// `/metrics`, `/readyz` and logs; the fetch dropped the port from `Host`. User-info is refused,
/// a query (which may hold a token) is never shown, and `Host` names the port.
#[test]
fn jwks_urls_never_show_credentials_and_name_their_port() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:8080\"]\nauth:\n  idp:\n    type: jwt\n    issuers: [x]\n    algorithms: [RS256]\n    jwks_url: \"http://user:hunter2@127.0.0.1:9/jwks\"\n",
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("carries credentials"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);

    let idp = Idp::start_on(([127, 0, 0, 1], free_port()).into(), jwks_with_rsa_kid("k1"));
    idp.status.store(500, Ordering::Relaxed);
    let up = Upstream::start("app");
    let gw = Gateway::start_unready(
        "",
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  idp:\n    type: jwt\n    issuers: [\"https://idp.example.com\"]\n    algorithms: [RS256]\n    jwks_url: \"http://{}/jwks?token=s3cr3t-token\"\n    jwks_cooldown: 100ms\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, auth: [idp] }}\n",
            up.addr(),
            idp.addr
        ),
    );
    wait_for("a failed fetch", Duration::from_secs(10), || {
        (idp.hits.load(Ordering::Relaxed) >= 2).then_some(())
    });
    let head = idp.last_head.lock().expect("head").clone();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("host: {}\r\n", idp.addr)),
        "Host names the port: {head}"
    );
    let readyz = get(gw.admin(), "localhost", "/readyz");
    assert_eq!(readyz.status, 503);
    let metrics = gw.metrics();
    assert!(metrics.contains("portcullis_jwks_fetches_total"), "{metrics}");
    for (what, text) in [
        ("/readyz", readyz.text()),
        ("/metrics", metrics),
        ("the log", gw.log()),
    ] {
        assert!(!text.contains("s3cr3t"), "{what} shows the token: {text}");
    }
}
