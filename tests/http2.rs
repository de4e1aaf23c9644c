//! The request-path rules over HTTP/2: the path-safety, JWT and rate-limit attacks sent as
//! HTTP/2 requests, and HTTP/2's own tricks — `:authority` against `host`, upper-case header
//! names, a body longer than its `content-length`, connection-specific headers. A raw client
//! (Python `h2` with its checks off) sends exactly what each case says; the upstream must never
//! see a refused request.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h2/raw.py");
const SECRET: &str = "test-only-hmac-secret-0123456789abcdef";

struct Setup {
    public: Upstream,
    internal: Upstream,
    /// Kept alive for the test (the requests go to `h2c`).
    _gw: Gateway,
    h2c: String,
}

fn setup() -> Setup {
    let public = Upstream::start("public");
    let internal = Upstream::start("internal");
    let (h2c_port, _) = two_free_ports();
    let gw = Gateway::start_env(
        &format!("listen: [\"127.0.0.1:{{port}}\", {{ addr: \"127.0.0.1:{h2c_port}\", h2c: true }}]"),
        &format!(
            "upstreams:\n  public: {{ targets: [\"{}\"] }}\n  internal: {{ targets: [\"{}\"] }}\nauth:\n  hs:\n    type: jwt\n    issuers: [\"https://hs.example.com\"]\n    audiences: [orders-api]\n    algorithms: [HS256]\n    secret_env: PORTCULLIS_TEST_SECRET\nrate_limits:\n  per-ip: {{ key: ip, limits: [ {{ requests: 2, per: 1h }} ] }}\nroutes:\n  - {{ name: internal, match: {{ hosts: [internal.test], path_prefix: / }}, upstream: internal }}\n  - {{ name: public, match: {{ path_prefix: /public }}, upstream: public }}\n  - {{ name: orders, match: {{ path_prefix: /orders }}, upstream: public, auth: [hs] }}\n  - {{ name: limited, match: {{ path_prefix: /limited }}, upstream: public, rate_limit: [per-ip] }}\n",
            public.addr(),
            internal.addr()
        ),
        &[("PORTCULLIS_TEST_SECRET", SECRET)],
    );
    Setup {
        public,
        internal,
        _gw: gw,
        h2c: format!("127.0.0.1:{h2c_port}"),
    }
}

/// One HTTP/2 request per entry of `cases` (header lists), on its own connection.
fn send(addr: &str, cases: &[Value]) -> Vec<Value> {
    let out = std::process::Command::new(python())
        .args([SCRIPT, addr, &Value::Array(cases.to_vec()).to_string()])
        .output()
        .expect("run the HTTP/2 client (python3 with h2, see scripts/test.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(results.len(), cases.len());
    for r in &results {
        assert!(
            r.get("error").is_none(),
            "the client failed, so nothing was tested: {r}"
        );
    }
    results
}

fn get(path: &str, authority: &str, extra: &[(&str, &str)]) -> Value {
    let mut headers = vec![
        json!([":method", "GET"]),
        json!([":scheme", "http"]),
        json!([":authority", authority]),
        json!([":path", path]),
    ];
    headers.extend(extra.iter().map(|(k, v)| json!([k, v])));
    json!({ "headers": headers })
}

/// Refused: an error status, or the stream or connection reset — never an answer from an
/// upstream.
fn refused(r: &Value) -> bool {
    r["status"].as_u64().is_none_or(|s| s >= 400)
}

#[test]
fn path_attacks_over_http2_are_answered_as_over_http1_and_never_reach_the_upstream() {
    let s = setup();
    let cases: Vec<Value> = PATH_ATTACKS
        .iter()
        .map(|(p, _)| get(p, "localhost", &[]))
        .collect();
    let results = send(&s.h2c, &cases);
    for ((path, want), r) in PATH_ATTACKS.iter().zip(&results) {
        match r["status"].as_u64() {
            Some(status) => assert_eq!(status, u64::from(*want), "{path}: {r}"),
            None => assert!(refused(r), "{path}: {r}"),
        }
    }
    assert_eq!(
        s.public.count() + s.internal.count(),
        0,
        "upstreams saw {:?}",
        s.public.requests()
    );
    // The canonical spelling does reach it, over HTTP/2, with a Host the upstream can use.
    let ok = send(&s.h2c, &[get("/public/a/../b", "localhost", &[])]);
    assert_eq!(ok[0]["status"], 200, "{ok:?}");
    assert_eq!(s.public.requests()[0].target, "/public/b");
    assert_eq!(s.public.requests()[0].header("host"), Some("localhost"));
}

#[test]
fn authority_and_host_tricks_cannot_choose_another_route() {
    let s = setup();
    let cases = [
        // `host` naming the internal virtual host under a public `:authority`, and the reverse.
        get("/x", "public.test", &[("host", "internal.test")]),
        get("/public/x", "internal.test:80", &[("host", "public.test")]),
        // Two `host` fields.
        get(
            "/x",
            "public.test",
            &[("host", "public.test"), ("host", "internal.test")],
        ),
        // No `:authority` and two hosts; no `:authority` nor `host`.
        json!({"headers": [[":method", "GET"], [":scheme", "http"], [":path", "/x"], ["host", "a"], ["host", "internal.test"]]}),
        json!({"headers": [[":method", "GET"], [":scheme", "http"], [":path", "/x"]]}),
        // A second `:path`, and a `:path` without a leading slash.
        json!({"headers": [[":method", "GET"], [":scheme", "http"], [":authority", "public.test"], [":path", "/public/x"], [":path", "/admin"]]}),
        get("public/x", "public.test", &[]),
        // A `host` whose port disagrees with `:authority`'s: beyond 16 bits (read as no port
        // by one parser, as digits by another), or behind a space an HTTP/2 field may carry.
        get("/public/x", "public.test", &[("host", "public.test:65616")]),
        get("/public/x", "public.test", &[("host", " public.test:81")]),
        get("/public/x", "public.test:65616", &[]),
    ];
    for (case, r) in cases.iter().zip(send(&s.h2c, &cases)) {
        assert!(refused(&r), "{case}: {r}");
    }
    assert_eq!(
        s.internal.count(),
        0,
        "the internal route was reached: {:?}",
        s.internal.requests()
    );
    assert_eq!(s.public.count(), 0, "{:?}", s.public.requests());
    // `:authority` alone routes by host as `Host` does.
    let r = send(&s.h2c, &[get("/x", "internal.test", &[])]);
    assert_eq!(r[0]["status"], 200);
    assert_eq!(s.internal.count(), 1);
}

#[test]
fn malformed_http2_requests_are_refused_before_the_upstream() {
    let s = setup();
    let post = |extra: &[(&str, &str)], body: &str| {
        let mut headers = vec![
            json!([":method", "POST"]),
            json!([":scheme", "http"]),
            json!([":authority", "localhost"]),
            json!([":path", "/public/p"]),
        ];
        headers.extend(extra.iter().map(|(k, v)| json!([k, v])));
        json!({"headers": headers, "body": body})
    };
    let cases = [
        get("/public/x", "localhost", &[("X-Upper", "1")]),
        get("/public/x", "localhost", &[("connection", "keep-alive")]),
        get("/public/x", "localhost", &[("transfer-encoding", "chunked")]),
        get("/public/x", "localhost", &[("keep-alive", "timeout=5")]),
        get("/public/x", "localhost", &[("proxy-connection", "keep-alive")]),
        get("/public/x", "localhost", &[("upgrade", "websocket")]),
        get("/public/x", "localhost", &[("te", "gzip")]),
        post(&[("content-length", "3")], "0123456789"),
        post(&[("content-length", "30")], "0123456789"),
    ];
    let results = send(&s.h2c, &cases);
    for (case, r) in cases.iter().zip(&results) {
        assert!(refused(r), "{case}: {r}");
    }
    // CONNECT asks for a tunnel: the gateway's own 405, never Pingora's (`Server: Pingora`).
    let connect = json!({"headers": [[":method", "CONNECT"], [":authority", "localhost:443"]]});
    let r = &send(&s.h2c, &[connect])[0];
    assert_eq!(r["status"], 405, "{r}");
    assert!(r["headers"].get("server").is_none(), "{r}");
    assert_eq!(r["headers"]["content-type"], "application/problem+json", "{r}");
    assert!(
        r["body"]
            .as_str()
            .unwrap_or("")
            .contains("CONNECT method is not supported"),
        "{r}"
    );
    // A mismatched body may have been started upstream before it ended, but never whole.
    for seen in s.public.requests() {
        assert!(
            seen.body.len() != 10,
            "a body that disagreed with content-length arrived: {seen:?}"
        );
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[test]
fn jwt_and_rate_limit_rules_hold_over_http2() {
    let s = setup();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let claims = |exp: i64, aud: &str| json!({"iss": "https://hs.example.com", "aud": aud, "sub": "alice", "exp": exp, "iat": now() - 10});
    let valid = encode(
        &Header::new(Algorithm::HS256),
        &claims(now() + 600, "orders-api"),
        &key,
    )
    .expect("sign");
    let expired = encode(
        &Header::new(Algorithm::HS256),
        &claims(now() - 600, "orders-api"),
        &key,
    )
    .expect("sign");
    let other_aud = encode(
        &Header::new(Algorithm::HS256),
        &claims(now() + 600, "other"),
        &key,
    )
    .expect("sign");
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &claims(now() + 600, "orders-api"),
        &EncodingKey::from_secret(b"another-secret-another-secret-00"),
    )
    .expect("sign");
    let parts: Vec<&str> = valid.split('.').collect();
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let bearer = |t: &str| format!("Bearer {t}");
    let attacks = [
        get("/orders", "localhost", &[]),
        get("/orders", "localhost", &[("authorization", &bearer(&expired))]),
        get("/orders", "localhost", &[("authorization", &bearer(&other_aud))]),
        get("/orders", "localhost", &[("authorization", &bearer(&wrong_key))]),
        get("/orders", "localhost", &[("authorization", &bearer(&alg_none))]),
        get(
            "/orders",
            "localhost",
            &[
                ("authorization", &bearer(&valid)),
                ("authorization", &bearer(&wrong_key)),
            ],
        ),
        get("/orders", "localhost", &[("x-consumer-id", "admin")]),
    ];
    for (case, r) in attacks.iter().zip(send(&s.h2c, &attacks)) {
        assert_eq!(r["status"].as_u64().unwrap_or(401), 401, "{case}: {r}");
    }
    assert_eq!(s.public.count(), 0);
    let ok = send(
        &s.h2c,
        &[get("/orders", "localhost", &[("authorization", &bearer(&valid))])],
    );
    assert_eq!(ok[0]["status"], 200, "{ok:?}");

    // Two per client address; a forged X-Forwarded-For or X-Real-IP changes nothing.
    let limited = [
        get("/limited", "localhost", &[]),
        get("/limited", "localhost", &[("x-forwarded-for", "203.0.113.7")]),
        get("/limited", "localhost", &[("x-real-ip", "203.0.113.8")]),
        get("/limited", "localhost", &[("x-forwarded-for", "203.0.113.9")]),
    ];
    let statuses: Vec<u64> = send(&s.h2c, &limited)
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, vec![200, 200, 429, 429]);
    assert_eq!(s.public.count(), 3, "one /orders and two /limited");
}

/// An HTTP/1.1 client's request to an HTTP/2 upstream: Pingora drops `Connection` itself
/// before the gateway sees the request, yet the headers it named are still removed (they are
/// read from the client's own head). The upstream here is a second gateway listening for h2c,
/// which passes on what it receives to an upstream that records it.
#[test]
fn headers_named_in_connection_never_reach_an_http2_upstream() {
    let app = Upstream::start("app");
    let (h2c_port, _) = two_free_ports();
    let _origin = Gateway::start_with(
        &format!("listen: [\"127.0.0.1:{{port}}\", {{ addr: \"127.0.0.1:{h2c_port}\", h2c: true }}]"),
        &format!(
            "upstreams:\n  app: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
            app.addr()
        ),
    );
    let front = Gateway::start(&format!(
        "upstreams:\n  origin: {{ targets: [\"127.0.0.1:{h2c_port}\"], protocol: h2c }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: origin }}\n"
    ));
    let r = front.send(
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Secret-Hop,x-other-hop\r\nX-Secret-Hop: 1\r\nX-Other-Hop: 2\r\nX-Kept: 3\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = app.requests().pop().expect("the request reached the app");
    assert_eq!(seen.header("x-kept"), Some("3"));
    assert_eq!(seen.header("x-secret-hop"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("x-other-hop"), None, "{:?}", seen.headers);
    // The refused nominations are refused on this path too.
    let before = app.count();
    let r = front.send(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Forwarded-For\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(app.count(), before);
}

/// Values that change with every response (the request id, the live rate-limit numbers) go to
/// an HTTP/2 client as HPACK "never indexed" literals: in the connection's header table they
/// would only push out the values that repeat. What repeats (the rate-limit policy) is
/// indexed as before, and every value arrives intact.
#[test]
fn per_response_values_are_never_indexed_over_http2() {
    let s = setup();
    let client_id = "client-chosen-id-1";
    let r = &send(
        &s.h2c,
        &[get("/limited", "localhost", &[("x-request-id", client_id)])],
    )[0];
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["headers"]["x-request-id"], client_id, "{r}");
    let live = r["headers"]["ratelimit"].as_str().unwrap_or_default();
    assert!(live.starts_with("\"per-ip\";r=1;t="), "{r}");
    let never: Vec<&str> = r["never_indexed"]
        .as_array()
        .expect("the client lists never-indexed fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(never.contains(&"x-request-id"), "{r}");
    assert!(never.contains(&"ratelimit"), "{r}");
    assert!(!never.contains(&"ratelimit-policy"), "{r}");
    let generated = &send(&s.h2c, &[get("/public", "localhost", &[])])[0];
    assert_eq!(
        generated["headers"]["x-request-id"].as_str().map(str::len),
        Some(32),
        "{generated}"
    );
    assert!(
        generated["never_indexed"].to_string().contains("x-request-id"),
        "{generated}"
    );
}
