//! Request body limits (`server.limits.max_body`, a route's `max_body`): 413, and the upstream
//! never receives more than the limit — nothing at all when the declared length is too large.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// A raw upstream that counts the body bytes (`~`, which no header holds) it ever receives,
/// over every connection, and never answers.
struct Sink {
    addr: std::net::SocketAddr,
    received: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (Arc::clone(&received), Arc::clone(&connections));
        std::thread::spawn(move || {
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        r.fetch_add(buf[..n].iter().filter(|b| **b == b'~').count(), Ordering::SeqCst);
                    }
                });
            }
        });
        Sink {
            addr,
            received,
            connections,
        }
    }
}

fn config(target: std::net::SocketAddr, server_limit: &str, routes: &str) -> (String, String) {
    (
        format!("limits: {{ max_body: {server_limit} }}\n"),
        format!(
            "upstreams:\n  app:\n    targets: [\"{target}\"]\n    read_timeout: 2s\n    retry: {{ attempts: 1 }}\nroutes:\n{routes}"
        ),
    )
}

const ROUTES: &str = "  - { name: small, match: { path_prefix: /small }, upstream: app, max_body: 4KiB }\n  - { name: large, match: { path_prefix: /large }, upstream: app, max_body: 64KiB }\n  - { name: default, match: { path_prefix: / }, upstream: app }\n  - name: transformed\n    match: { path_prefix: /t }\n    upstream: app\n    max_body: 4KiB\n    transform: { response: { allow: [id] } }\n";

fn gateway(sink: &Sink) -> Gateway {
    let (server, body) = config(sink.addr, "16KiB", ROUTES);
    Gateway::start_with(&server, &body)
}

/// A chunked upload of `chunks` pieces of 1000 `~`, written as fast as the gateway takes them;
/// the gateway's answer (if any) and whether writing failed.
fn chunked_upload(gw: &Gateway, path: &str, chunks: usize) -> (Option<u16>, bool) {
    let mut s = TcpStream::connect(gw.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut write_failed = s.write_all(head.as_bytes()).is_err();
    let piece = format!("3e8\r\n{}\r\n", "~".repeat(1000));
    for _ in 0..chunks {
        if s.write_all(piece.as_bytes()).is_err() {
            write_failed = true;
            break;
        }
    }
    if !write_failed {
        write_failed = s.write_all(b"0\r\n\r\n").is_err();
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1.1 "))
        .and_then(|t| t.get(..3))
        .and_then(|t| t.parse().ok());
    (status, write_failed)
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_anything_is_forwarded() {
    let sink = Sink::start();
    let gw = gateway(&sink);
    for (path, len) in [
        ("/small", 4097),
        ("/x", 16 * 1024 + 1),
        ("/large", 64 * 1024 + 1),
        ("/t", 5000),
    ] {
        let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n");
        let r = gw.send(head.as_bytes());
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("connection"), Some("close"));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sink.connections.load(Ordering::SeqCst),
        0,
        "the upstream was never contacted"
    );
}

#[test]
fn a_chunked_body_growing_past_the_limit_is_cut_off_at_the_limit() {
    let sink = Sink::start();
    let gw = gateway(&sink);
    for (path, limit) in [("/small", 4096), ("/x", 16 * 1024), ("/t", 4096)] {
        let before = sink.received.load(Ordering::SeqCst);
        let (status, write_failed) = chunked_upload(&gw, path, 200);
        assert!(status == Some(413) || write_failed, "{path}: answered {status:?}");
        std::thread::sleep(Duration::from_millis(300));
        let got = sink.received.load(Ordering::SeqCst) - before;
        assert!(
            got <= limit,
            "{path}: the upstream received {got} body bytes, over {limit}"
        );
    }
}

#[test]
fn bodies_within_the_limit_pass_whole() {
    let up = Upstream::start("app");
    let (server, body) = config(up.addr(), "16KiB", ROUTES);
    let gw = Gateway::start_with(&server, &body);
    for (path, len) in [("/small", 4096), ("/x", 16 * 1024), ("/large", 64 * 1024)] {
        let payload = vec![b'~'; len];
        let r = request(gw.addr(), "POST", "localhost", path, &[], &payload);
        assert_eq!(r.status, 200, "{path}");
    }
    let sizes: Vec<usize> = up.requests().iter().map(|r| r.body.len()).collect();
    assert_eq!(sizes, vec![4096, 16 * 1024, 64 * 1024]);
}

#[test]
fn check_reports_a_bad_max_body() {
    let out = check(
        "server:\n  limits: { max_body: lots }\nupstreams:\n  a: { targets: [\"127.0.0.1:9001\"] }\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, max_body: 1XB }\n",
    );
    assert_ne!(out.code, 0);
    for want in ["server.limits.max_body", "routes[0].max_body"] {
        assert!(out.stderr.contains(want), "missing `{want}` in:\n{}", out.stderr);
    }
}
