//! Response and request transformation against real upstreams. Every "must never reach the
//! client" rule is attacked: the secret is looked for anywhere in the raw bytes the client
//! received, whatever the framing and encoding the upstream used.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::*;

const SECRET: &str = "S3CR3T-4111-1111";

/// Send `request` (with `Connection: close`) and return every byte received until close.
fn raw_exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("no close within 10 s; got {:?}", String::from_utf8_lossy(&out))
            }
            Err(_) => break,
        }
    }
    out
}

fn get_raw(gw: &Gateway, path: &str) -> Vec<u8> {
    raw_exchange(
        gw.addr(),
        &format!("GET {path} HTTP/1.1\r\nHost: api\r\nAccept-Encoding: gzip, br, zstd\r\nConnection: close\r\n\r\n"),
    )
}

/// The attack check: the secret appears nowhere in the raw bytes the client receives.
fn assert_secret_never_sent(gw: &Gateway, path: &str) {
    let raw = get_raw(gw, path);
    assert!(
        !contains(&raw, SECRET),
        "{path}: {}",
        String::from_utf8_lossy(&raw)
    );
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A complete response with a length.
fn fixed(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<Vec<u8>> {
    let mut head = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    vec![out]
}

/// A chunked response, one chunk per piece, each written separately.
fn chunked(headers: &[(&str, &str)], pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n".to_string();
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = vec![head.into_bytes()];
    for p in pieces {
        let mut c = format!("{:x}\r\n", p.len()).into_bytes();
        c.extend_from_slice(p);
        c.extend_from_slice(b"\r\n");
        out.push(c);
    }
    out.push(b"0\r\n\r\n".to_vec());
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn user_doc() -> String {
    format!(
        r#"{{"id":7,"name":"Ann","password":"{SECRET}","address":{{"city":"Oslo","zip":"0150"}},"orders":[{{"id":1,"card":"{SECRET}"}},{{"id":2,"card":"{SECRET}"}}]}}"#
    )
}

const JSON: (&str, &str) = ("Content-Type", "application/json; charset=utf-8");

fn gateway(up: &Upstream, transform: &str) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  users:\n    targets: [\"{}\"]\nroutes:\n  - name: users\n    match: {{ path_prefix: / }}\n    upstream: users\n    transform:\n{transform}",
        up.addr()
    ))
}

const DENY: &str = "      response:\n        deny: [password, \"orders[].card\"]\n        rename: { id: user_id, \"address.city\": city }\n        set: { \"meta.source\": users-api, \"meta.version\": 2 }\n        wrap: user\n";

#[test]
fn deny_rename_set_wrap_on_a_fixed_length_body() {
    let up = Upstream::start("u");
    up.script(
        "/u",
        fixed(
            200,
            &[
                JSON,
                ("ETag", "\"v1\""),
                ("Accept-Ranges", "bytes"),
                ("Content-MD5", "x"),
            ],
            user_doc().as_bytes(),
        ),
    );
    let gw = gateway(&up, DENY);
    assert_secret_never_sent(&gw, "/u");
    let r = gw.send(b"GET /u HTTP/1.1\r\nHost: api\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!(r.status, 200);
    // Key order of the upstream document is kept; renames keep their place.
    assert_eq!(
        r.text(),
        r#"{"user":{"user_id":7,"name":"Ann","address":{"zip":"0150"},"orders":[{"id":1},{"id":2}],"city":"Oslo","meta":{"source":"users-api","version":2}}}"#
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    assert!(r.header("accept-ranges").is_none() && r.header("content-md5").is_none());
    assert!(
        r.header("x-request-id").is_some(),
        "decorated like every response"
    );
    // The upstream was asked for identity: no encoding the gateway might not decode.
    for seen in up.requests() {
        assert!(seen.header("accept-encoding").is_none(), "{:?}", seen.headers);
    }
    gw.wait_metric(
        "portcullis_transform_total",
        &[("route", "users"), ("outcome", "applied")],
        2.0,
    );
}

#[test]
fn chunked_gzip_and_br_bodies_are_decoded_and_filtered() {
    let up = Upstream::start("u");
    let doc = user_doc();
    let (a, b) = doc.as_bytes().split_at(doc.find(SECRET).unwrap() + 4);
    // The secret itself is split across chunks.
    up.script("/chunked", chunked(&[JSON], &[a, &b[..10], &b[10..]]));
    up.script(
        "/gzip",
        fixed(200, &[JSON, ("Content-Encoding", "gzip")], &gzip(doc.as_bytes())),
    );
    let gz = gzip(doc.as_bytes());
    let (g1, g2) = gz.split_at(gz.len() / 2);
    up.script(
        "/gzip-chunked",
        chunked(&[JSON, ("Content-Encoding", "gzip")], &[g1, g2]),
    );
    up.script(
        "/br",
        fixed(
            200,
            &[JSON, ("Content-Encoding", "br")],
            &brotli_encode(doc.as_bytes()),
        ),
    );
    let gw = gateway(&up, DENY);
    for path in ["/chunked", "/gzip", "/gzip-chunked", "/br"] {
        assert_secret_never_sent(&gw, path);
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-encoding").is_none(), "{path}");
        assert_eq!(r.json()["user"]["user_id"], 7, "{path}");
        assert_eq!(
            r.json()["user"]["orders"][1],
            serde_json::json!({"id": 2}),
            "{path}"
        );
    }
}

#[test]
fn escaped_duplicate_and_nested_keys_are_the_same_key() {
    let up = Upstream::start("u");
    let docs = [
        format!(r#"{{"pass\u0077ord":"{SECRET}","ok":1}}"#),
        format!(r#"{{"password":"x","password":"{SECRET}","ok":1}}"#),
        format!(r#"{{"password":"{SECRET}","ok":1,"password":"{SECRET}"}}"#),
        format!("{{ \"ok\" : 1 ,\n \"password\"\t:\t\"{SECRET}\" }}"),
    ];
    for (i, d) in docs.iter().enumerate() {
        up.script(&format!("/d{i}"), fixed(200, &[JSON], d.as_bytes()));
    }
    // A root array is transformed element by element.
    up.script(
        "/list",
        fixed(
            200,
            &[("Content-Type", "application/vnd.api+json")],
            format!(r#"[{{"ok":1,"password":"{SECRET}"}},{{"ok":2,"password":"{SECRET}"}}]"#).as_bytes(),
        ),
    );
    let gw = gateway(&up, "      response:\n        deny: [password]\n");
    for i in 0..docs.len() {
        assert_secret_never_sent(&gw, &format!("/d{i}"));
        assert_eq!(gw.get(&format!("/d{i}")).text(), r#"{"ok":1}"#);
    }
    assert_eq!(gw.get("/list").text(), r#"[{"ok":1},{"ok":2}]"#);
}

#[test]
fn allow_list_and_target() {
    let up = Upstream::start("u");
    up.script(
        "/u",
        fixed(
            200,
            &[JSON],
            format!(r#"{{"data":{},"meta":{{"page":1}}}}"#, user_doc()).as_bytes(),
        ),
    );
    let gw = gateway(
        &up,
        "      response:\n        target: data\n        allow: [id, name, \"address.city\", \"orders[].id\"]\n",
    );
    assert_secret_never_sent(&gw, "/u");
    assert_eq!(
        gw.get("/u").text(),
        r#"{"id":7,"name":"Ann","address":{"city":"Oslo"},"orders":[{"id":1},{"id":2}]}"#
    );
}

/// Failures with `on_error: reject` (the default): a whole 502 problem, none of the body,
/// whether the body is undecodable, too large (declared or not), or not JSON.
#[test]
fn failures_are_a_complete_502_without_the_body() {
    let up = Upstream::start("u");
    let doc = user_doc();
    let big = format!(r#"{{"password":"{SECRET}","pad":"{}"}}"#, "x".repeat(3000));
    up.script(
        "/zstd",
        fixed(200, &[JSON, ("Content-Encoding", "zstd")], doc.as_bytes()),
    );
    up.script("/big", fixed(200, &[JSON], big.as_bytes()));
    up.script(
        "/big-chunked",
        chunked(&[JSON], &[&big.as_bytes()[..1500], &big.as_bytes()[1500..]]),
    );
    let bomb = gzip(format!(r#"{{"password":"{SECRET}","pad":"{}"}}"#, "x".repeat(100_000)).as_bytes());
    up.script("/bomb", fixed(200, &[JSON, ("Content-Encoding", "gzip")], &bomb));
    up.script(
        "/invalid",
        fixed(200, &[JSON], format!(r#"{{"password":"{SECRET}""#).as_bytes()),
    );
    let gw = gateway(
        &up,
        "      response:\n        deny: [password]\n        max_body: 2KiB\n",
    );
    for path in ["/zstd", "/big", "/big-chunked", "/bomb", "/invalid"] {
        assert_secret_never_sent(&gw, path);
        let r = gw.get(path);
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(
            r.text().contains("could not be transformed"),
            "{path}: {}",
            r.text()
        );
    }
    gw.wait_metric(
        "portcullis_transform_total",
        &[("route", "users"), ("outcome", "rejected")],
        10.0,
    );
    // The connection to the gateway stays usable after a rejection.
    let mut c = Conn::connect(gw.addr());
    for _ in 0..2 {
        let r = c
            .send(b"GET /invalid HTTP/1.1\r\nHost: api\r\n\r\n")
            .expect("keep-alive after a 502");
        assert_eq!(r.status, 502);
    }
}

/// `on_error: pass` (allowed with a deny list only with `allow_unfiltered: true`) forwards
/// the original, complete, and logs it.
#[test]
fn on_error_pass_forwards_the_original_whole() {
    let up = Upstream::start("u");
    let big = format!(r#"{{"kept":"{}"}}"#, "y".repeat(5000));
    up.script(
        "/big-chunked",
        chunked(&[JSON], &[&big.as_bytes()[..3000], &big.as_bytes()[3000..]]),
    );
    up.script("/big", fixed(200, &[JSON], big.as_bytes()));
    up.script("/invalid", fixed(200, &[JSON], b"{not json"));
    up.script(
        "/zstd",
        fixed(200, &[JSON, ("Content-Encoding", "zstd")], b"\x28\xb5\x2f\xfd"),
    );
    let gw = gateway(
        &up,
        "      response:\n        rename: { kept: renamed }\n        max_body: 2KiB\n        on_error: pass\n",
    );
    for path in ["/big-chunked", "/big"] {
        let r = gw.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.text(), big, "{path}");
    }
    assert_eq!(gw.get("/invalid").text(), "{not json");
    let z = gw.get("/zstd");
    assert_eq!(z.header("content-encoding"), Some("zstd"));
    assert_eq!(z.body, b"\x28\xb5\x2f\xfd");
    gw.wait_metric(
        "portcullis_transform_total",
        &[("route", "users"), ("outcome", "passed")],
        4.0,
    );
    assert!(gw.log().contains("passing the original on"), "{}", gw.log());
}

/// What the rules do not apply to passes untouched: HEAD, 204, 304, 206, statuses outside
/// the list, other media types.
#[test]
fn untouched_responses() {
    let up = Upstream::start("u");
    let doc = user_doc();
    up.script(
        "/text",
        fixed(200, &[("Content-Type", "text/plain")], doc.as_bytes()),
    );
    up.script("/err", fixed(500, &[JSON], doc.as_bytes()));
    up.script(
        "/partial",
        fixed(
            206,
            &[JSON, ("Content-Range", "bytes 0-9/100")],
            &doc.as_bytes()[..10],
        ),
    );
    up.script(
        "/none",
        vec![b"HTTP/1.1 204 No Content\r\nETag: \"a\"\r\n\r\n".to_vec()],
    );
    up.script(
        "/same",
        vec![b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n".to_vec()],
    );
    let gw = gateway(&up, "      response:\n        deny: [password]\n");
    assert_eq!(gw.get("/text").text(), doc);
    assert_eq!(gw.get("/err").status, 500);
    assert_eq!(gw.get("/err").text(), doc, "only 2xx by default");
    let partial = gw.get("/partial");
    assert_eq!((partial.status, partial.body.len()), (206, 10));
    let none = gw.get("/none");
    assert_eq!((none.status, none.header("etag")), (204, Some("\"a\"")));
    assert_eq!(gw.get("/same").status, 304);
    up.script("/u", fixed(200, &[JSON, ("ETag", "\"v\"")], doc.as_bytes()));
    let head = gw.send(b"HEAD /u HTTP/1.1\r\nHost: api\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("etag"), Some("\"v\""), "HEAD is not transformed");
    assert!(head.body.is_empty());
}

/// Request bodies: filtered before they go upstream, refused when they cannot be read as
/// the route's JSON, bounded by `max_body` without the upstream ever seeing the request.
#[test]
fn request_body_rules() {
    let up = Upstream::start("u");
    let gw = gateway(
        &up,
        "      request:\n        deny: [role, \"profile.admin\"]\n        rename: { mail: email }\n        set: { source: gateway }\n        max_body: 1KiB\n        query: { set: { v: \"2\" }, remove: [debug], rename: { q: query } }\n        method: PUT\n",
    );
    let body = r#"{"name":"Ann","role":"admin","mail":"a@x","profile":{"admin":true,"bio":"hi"}}"#;
    let r = request(
        gw.addr(),
        "POST",
        "api",
        "/users?q=ann&debug=1&De%62ug=2",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests().pop().expect("upstream saw the request");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.target, "/users?query=ann&v=2");
    let sent = String::from_utf8(seen.body.clone()).unwrap();
    assert_eq!(
        sent,
        r#"{"name":"Ann","email":"a@x","profile":{"bio":"hi"},"source":"gateway"}"#
    );
    assert_eq!(
        seen.header("content-length"),
        Some(sent.len().to_string().as_str())
    );
    up.reset();
    // Refused, and the upstream never sees them.
    let chunked_big = format!(
        "POST /users HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{}\r\n400\r\n{}\r\n0\r\n\r\n",
        "a".repeat(1024),
        "b".repeat(1024)
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            build_request(
                "POST",
                "api",
                "/users",
                &[("Content-Type", "application/json")],
                &vec![b' '; 2000],
            ),
            413,
        ),
        (chunked_big.into_bytes(), 413),
        (
            build_request(
                "POST",
                "api",
                "/users",
                &[("Content-Type", "application/json")],
                b"{\"role\":",
            ),
            400,
        ),
        (
            build_request(
                "POST",
                "api",
                "/users",
                &[("Content-Type", "text/plain")],
                br#"{"role":"admin"}"#,
            ),
            415,
        ),
        (
            build_request(
                "POST",
                "api",
                "/users",
                &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
                &gzip(br#"{"role":"admin"}"#),
            ),
            415,
        ),
    ];
    for (raw, want) in cases {
        let r = gw.send(&raw);
        assert_eq!(
            r.status,
            want,
            "{}",
            String::from_utf8_lossy(&raw[..60.min(raw.len())])
        );
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    assert_eq!(up.count(), 0, "the upstream saw a refused request");
}

/// Header rules gained `rename`; framing headers are out of their reach.
#[test]
fn header_rename() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&format!(
        "upstreams:\n  users:\n    targets: [\"{}\"]\nroutes:\n  - name: users\n    match: {{ path_prefix: / }}\n    upstream: users\n    request_headers: {{ rename: {{ x-client-token: x-token }} }}\n    response_headers: {{ rename: {{ x-upstream: x-served-by }} }}\n",
        up.addr()
    ));
    let r = request(
        gw.addr(),
        "GET",
        "api",
        "/h",
        &[("X-Client-Token", "t1"), ("X-Token", "planted")],
        b"",
    );
    assert_eq!(r.header("x-served-by"), Some("u"));
    assert!(r.header("x-upstream").is_none());
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.header_all("x-token"), ["t1"]);
    assert!(seen.header("x-client-token").is_none());
}

#[test]
fn check_reports_every_transform_problem() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:0\"]\nupstreams:\n  u:\n    targets: [\"127.0.0.1:9\"]\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    websocket: true\n    transform:\n      response:\n        allow: [id]\n        deny: [\"a..b\", password]\n        rename: { a: x, b: x }\n        set: { \"password.hash\": 1 }\n        max_body: 0\n        on_error: pass\n        shout: true\n      request:\n        method: get\n        query: { remove: [\"a&b\"] }\n    request_headers: { set: { content-length: \"5\" } }\n",
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    for want in [
        "transform.response.deny[0]: `a..b` has an empty key",
        "use `allow` or `deny`, not both",
        "transform.response.rename.b: `x` is already the new name of `a`",
        "`set` writes under `password`, which `deny` removes",
        "transform.response.max_body: must be from 1 byte",
        "unknown field `shout`",
        "transform.request.method: `get` is not a method name",
        "is not a query parameter name",
        "`content-length` frames the message",
        "cannot also pass WebSocket upgrades",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    let fail_open = check(
        "server:\n  listen: [\"127.0.0.1:0\"]\nupstreams:\n  u:\n    targets: [\"127.0.0.1:9\"]\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    transform:\n      response: { deny: [password], on_error: pass }\n",
    );
    assert!(
        fail_open.stderr.contains("would send the unfiltered body"),
        "{}",
        fail_open.stderr
    );
    let allowed = check(
        "server:\n  listen: [\"127.0.0.1:0\"]\nupstreams:\n  u:\n    targets: [\"127.0.0.1:9\"]\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: u\n    transform:\n      response: { deny: [password], on_error: pass, allow_unfiltered: true }\n",
    );
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
}

/// A transform route's exchange goes through the pool like any route: a refused connect moves
/// on to an untried target within `retries`, no healthy target is 503, the route deadline 504;
/// the access log names the target that answered.
#[test]
fn exchange_uses_selection_retries_and_deadlines() {
    let up = Upstream::start("u");
    up.script("/ok", fixed(200, &[JSON], br#"{"a":1,"password":"x"}"#));
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gw = Gateway::start(&format!(
        "upstreams:\n  users:\n    targets: [\"{dead}\", \"{}\"]\n    retries: 1\n  gone:\n    targets: [\"{dead}\"]\n    health_check: {{ type: tcp, interval: 1h, timeout: 500ms, unhealthy_threshold: 1 }}\nroutes:\n  - name: users\n    match: {{ path_prefix: / }}\n    upstream: users\n    timeout: 1s\n    transform: {{ response: {{ deny: [password] }} }}\n  - name: gone\n    match: {{ path_prefix: /gone }}\n    upstream: gone\n    transform: {{ response: {{ deny: [password] }} }}\n",
        up.addr()
    ));
    for _ in 0..4 {
        let r = gw.get("/ok");
        assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#));
    }
    assert_eq!(gw.get("/gone/x").status, 503);
    // The echo upstream (no script for this path) answers after the route deadline.
    let slow = request(gw.addr(), "GET", "api", "/slow", &[("x-delay-ms", "3000")], b"");
    assert_eq!(slow.status, 504, "{}", slow.text());
    let id = gw.get("/ok").header("x-request-id").unwrap().to_string();
    // A whole line (the log may be read while the line is being written): it ends with the
    // retries field.
    let line = wait_for("access log line", Duration::from_secs(10), || {
        gw.log()
            .lines()
            .find(|l| l.contains(&id) && l.contains(" retries="))
            .map(String::from)
    });
    assert!(line.contains(&format!("target={}", up.addr())), "{line}");
}

/// An upstream that forgets its `Content-Type` still sends the fields a filter must remove:
/// on a filtering route such a body is transformed (or refused). An empty body has nothing
/// to hide and passes as it is.
#[test]
fn a_missing_content_type_does_not_skip_the_filter() {
    let up = Upstream::start("u");
    up.script("/bare", fixed(200, &[], user_doc().as_bytes()));
    up.script(
        "/bare-text",
        fixed(200, &[], format!("password={SECRET}").as_bytes()),
    );
    up.script("/empty", fixed(200, &[JSON], b""));
    let gw = gateway(
        &up,
        "      response:\n        deny: [password, \"orders[].card\"]\n",
    );
    assert_secret_never_sent(&gw, "/bare");
    assert_eq!(gw.get("/bare").json()["name"], "Ann");
    assert_secret_never_sent(&gw, "/bare-text");
    assert_eq!(gw.get("/bare-text").status, 502);
    let empty = gw.get("/empty");
    assert_eq!((empty.status, empty.body.len()), (200, 0));
}

/// What a client could send to get the original past a filter: a `Range` (a 206 passes
/// untouched), an `Accept` for another syntax, a response `Connection` header naming
/// `Content-Type`, two `Content-Type`s on a request body. None of them works.
#[test]
fn client_and_upstream_tricks_do_not_skip_the_filter() {
    let up = Upstream::start("u");
    up.script("/u", fixed(200, &[JSON], user_doc().as_bytes()));
    up.script(
        "/nominated",
        fixed(
            200,
            &[JSON, ("Connection", "content-type")],
            user_doc().as_bytes(),
        ),
    );
    up.script(
        "/two-types",
        vec![[
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\n".as_slice(),
            format!("Content-Length: {}\r\n\r\n{}", user_doc().len(), user_doc()).as_bytes(),
        ]
        .concat()],
    );
    let gw = gateway(
        &up,
        "      response:\n        deny: [password, \"orders[].card\"]\n      request:\n        deny: [role]\n",
    );
    let r = request(
        gw.addr(),
        "GET",
        "api",
        "/u",
        &[
            ("Range", "bytes=0-"),
            ("If-Range", "\"v1\""),
            ("Accept", "application/xml"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(SECRET));
    let seen = up.requests().pop().unwrap();
    assert!(
        seen.header("range").is_none() && seen.header("if-range").is_none(),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_secret_never_sent(&gw, "/nominated");
    assert_secret_never_sent(&gw, "/two-types");
    assert_eq!(
        gw.get("/two-types").header_all("content-type"),
        ["application/json"]
    );
    // `Connection` cannot remove what the gateway sets on its own exchange either: naming
    // `Host` is refused before anything is sent, naming `Accept` removes only the client's copy.
    let before = up.count();
    let r = gw.send(b"GET /u HTTP/1.1\r\nHost: api\r\nConnection: close, Host\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(up.count(), before, "the upstream never saw it");
    let r = gw.send(
        b"GET /u HTTP/1.1\r\nHost: api\r\nConnection: close, Accept\r\nAccept: application/xml\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(SECRET));
    assert_eq!(
        up.requests().pop().unwrap().header("accept"),
        Some("application/json")
    );
    up.reset();
    let raw = format!(
        "POST /u HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 38\r\n\r\n{}",
        r#"{"name":"x","note":"&role=admin&x=1&"}"#
    );
    let r = gw.send(raw.as_bytes());
    assert_eq!(r.status, 415);
    assert_eq!(up.count(), 0);
}

/// A document that would cost far more memory once parsed than its size (an array of small
/// numbers) is refused within `max_body`, on both sides.
#[test]
fn documents_that_explode_when_parsed_are_refused() {
    let up = Upstream::start("u");
    let zeros = format!("[{}0]", "0,".repeat(300_000));
    up.script("/zeros", fixed(200, &[JSON], zeros.as_bytes()));
    let gw = gateway(
        &up,
        "      response:\n        deny: [password]\n      request:\n        deny: [role]\n",
    );
    assert_eq!(gw.get("/zeros").status, 502);
    let r = request(
        gw.addr(),
        "POST",
        "api",
        "/in",
        &[("Content-Type", "application/json")],
        zeros.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(up.requests().iter().all(|s| s.target != "/in"));
}

/// A rename into a key met by an array copies the value into every element, so a small body
/// could be made to grow without end (the gateway would run out of memory writing it): such a
/// body is refused, the upstream never sees it, and the gateway goes on serving.
#[test]
fn copies_that_multiply_a_body_are_refused() {
    let up = Upstream::start("u");
    let gw = gateway(
        &up,
        "      request:\n        rename: { mail: contact.email }\n        max_body: 4MiB\n",
    );
    let json = [("Content-Type", "application/json")];
    let body = format!(
        r#"{{"mail":"{}","contact":[{}{{}}]}}"#,
        "m".repeat(400_000),
        "{},".repeat(2_000)
    );
    let r = request(gw.addr(), "POST", "api", "/in", &json, body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    // Refused for its copies (the parse itself is within budget), not as invalid JSON.
    assert!(r.text().contains("could not be transformed"), "{}", r.text());
    assert!(up.requests().iter().all(|s| s.target != "/in"));
    let small = br#"{"mail":"m","contact":[{},{"id":1}]}"#;
    let r = request(gw.addr(), "POST", "api", "/ok", &json, small);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests().pop().expect("upstream saw the small body");
    assert_eq!(
        String::from_utf8(seen.body.clone()).unwrap(),
        r#"{"contact":[{"email":"m"},{"id":1,"email":"m"}]}"#
    );
}

/// `orders[].card` still applies when the upstream sends one record where a list was
/// expected, and values no rule reaches pass as they came.
#[test]
fn a_record_where_a_list_was_expected_is_filtered() {
    let up = Upstream::start("u");
    let doc = format!(r#"{{"orders": {{"id": 1, "card": "{SECRET}"}}, "keep": {{ "a" : [1, 2.50] }}}}"#);
    up.script("/one", fixed(200, &[JSON], doc.as_bytes()));
    let gw = gateway(&up, "      response:\n        deny: [\"orders[].card\"]\n");
    assert_secret_never_sent(&gw, "/one");
    assert_eq!(
        gw.get("/one").text(),
        r#"{"orders":{"id":1},"keep":{ "a" : [1, 2.50] }}"#
    );
}

/// On a route that transforms only responses, request bodies are relayed as they arrive, not
/// held (and not capped); untransformed response bodies reach the client as they come.
#[test]
fn bodies_not_transformed_are_relayed() {
    let up = Upstream::start("u");
    let gw = gateway(&up, "      response:\n        deny: [password]\n");
    let big = vec![b'x'; 3 * 1024 * 1024];
    let r = request(
        gw.addr(),
        "POST",
        "api",
        "/upload",
        &[("Content-Type", "application/octet-stream")],
        &big,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.body.len(), big.len());
    // Chunked too.
    let chunked_req = b"POST /upload HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_eq!(gw.send(chunked_req).status, 200);
    assert_eq!(up.requests().pop().unwrap().body, b"hello world");
    // A text stream: the first piece arrives long before the last.
    let pieces = chunked(&[("Content-Type", "text/plain")], &[b"first ", b"second"]);
    up.script_paced(
        "/stream",
        vec![
            [pieces[0].clone(), pieces[1].clone()].concat(),
            [pieces[2].clone(), pieces[3].clone()].concat(),
        ],
        Duration::from_secs(8),
    );
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !contains(&got, "first") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first piece");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the first piece waited for the last ({:?})",
        started.elapsed()
    );
    assert!(!contains(&got, "second"));
}
