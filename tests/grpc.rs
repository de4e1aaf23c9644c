//! gRPC pass-through with a real gRPC server and client (Python grpcio, installed by
//! `scripts/test.sh`): unary, server-streaming and bidirectional calls through h2c and TLS
//! listeners to an h2c upstream, trailers intact (an error sent after the messages stays an
//! error); the gateway's own refusals in gRPC terms; `grpc_status` in the request metrics.

mod support;

use std::process::Command;

use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/echo.py");

/// Run `calls` (see tests/grpc/echo.py) against `addr`; one JSON value per call.
fn calls(
    addr: &str,
    calls: serde_json::Value,
    tls: Option<(&std::path::Path, &str)>,
) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(python());
    cmd.args([SCRIPT, "call", addr, &calls.to_string()]);
    if let Some((ca, name)) = tls {
        cmd.env("GRPC_CA", ca).env("GRPC_NAME", name);
    }
    let out = cmd.output().expect("run the gRPC client");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn routes(server: &PythonServer) -> String {
    format!(
        "upstreams:\n  echo: {{ targets: [\"127.0.0.1:{}\"], protocol: h2c }}\nauth:\n  keys:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}/conf/keys.yaml\nrate_limits:\n  tiny: {{ key: consumer, limits: [ {{ requests: 1, per: 1h }} ] }}\nroutes:\n  - {{ name: echo, match: {{ path_prefix: /test.Echo/ }}, upstream: echo }}\n  - {{ name: private, match: {{ path_prefix: /private.Echo/ }}, upstream: echo, auth: [keys], rate_limit: [tiny] }}\n",
        server.port,
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn unary_and_streaming_calls_pass_with_their_trailers() {
    let server = PythonServer::start(SCRIPT);
    let (h2c_port, _) = two_free_ports();
    let gw = Gateway::start_with(
        &format!("listen: [\"127.0.0.1:{{port}}\", {{ addr: \"127.0.0.1:{h2c_port}\", h2c: true }}]"),
        &routes(&server),
    );
    let out = calls(
        &format!("127.0.0.1:{h2c_port}"),
        serde_json::json!([
            {"kind": "unary", "body": "hello"},
            {"kind": "unary", "body": "fail"},
            {"kind": "stream", "body": "s"},
            {"kind": "bidi", "bodies": ["a", "b", "c"]},
        ]),
        None,
    );
    assert_eq!(out[0]["code"], 0, "{out:?}");
    assert_eq!(out[0]["replies"], serde_json::json!(["hello"]));
    assert_eq!(out[0]["trailers"]["x-trailer"], "kept", "trailers pass: {out:?}");
    assert_eq!(out[1]["code"], 5, "NOT_FOUND from the service: {out:?}");
    assert_eq!(out[1]["message"], "no such thing");
    // Three messages, then an error in the trailers: never a false success.
    assert_eq!(out[2]["replies"], serde_json::json!(["s0", "s1", "s2"]));
    assert_eq!(out[2]["code"], 10, "ABORTED after the stream: {out:?}");
    assert_eq!(
        out[3]["replies"],
        serde_json::json!(["echo:a", "echo:b", "echo:c"])
    );
    assert_eq!(out[3]["code"], 0);
    for (code, n) in [("0", 2.0), ("5", 1.0), ("10", 1.0)] {
        gw.wait_metric(
            "portcullis_requests_total",
            &[("route", "echo"), ("grpc_status", code)],
            n,
        );
    }
}

#[test]
fn the_gateway_refuses_grpc_calls_in_grpc_terms_and_they_never_reach_the_service() {
    let server = PythonServer::start(SCRIPT);
    let pki = Pki::new("grpc ca");
    let (cert, key) = pki.server("g", &["grpc.test"], 90);
    let gw = Gateway::start_with(
        &format!(
            "listen: [ {{ addr: \"127.0.0.1:{{port}}\", tls: {{ certificates: [ {{ cert: \"{}\", key: \"{}\" }} ] }} }} ]",
            cert.display(),
            key.display()
        ),
        &routes(&server),
    );
    let addr = gw.addr().to_string();
    let tls = Some((pki.ca_file.as_path(), "grpc.test"));
    let key = serde_json::json!({"x-api-key": "demo-key-not-secret"});
    let out = calls(
        &addr,
        serde_json::json!([
            {"kind": "unary", "body": "over tls"},
            {"kind": "unary", "body": "x", "method": "/private.Echo/Unary"},
            {"kind": "unary", "body": "x", "method": "/private.Echo/Unary", "metadata": {"x-api-key": "wrong"}},
            {"kind": "unary", "body": "x", "method": "/private.Echo/Unary", "metadata": key},
            {"kind": "unary", "body": "x", "method": "/private.Echo/Unary", "metadata": key},
            {"kind": "unary", "body": "x", "method": "/nowhere.Svc/Call"},
        ]),
        tls,
    );
    assert_eq!(out[0]["code"], 0, "a call over TLS (HTTP/2 by ALPN): {out:?}");
    assert_eq!(out[1]["code"], 16, "UNAUTHENTICATED without a key: {out:?}");
    assert_eq!(out[2]["code"], 16, "UNAUTHENTICATED with a wrong key: {out:?}");
    assert_eq!(out[3]["code"], 0, "{out:?}");
    assert_eq!(out[4]["code"], 8, "RESOURCE_EXHAUSTED past the limit: {out:?}");
    assert_eq!(
        out[5]["code"], 12,
        "UNIMPLEMENTED where no route matches: {out:?}"
    );
    assert_eq!(out[1]["message"], "missing credentials");
    // Only the two admitted calls reached the service.
    gw.wait_metric("portcullis_upstream_requests_total", &[("upstream", "echo")], 2.0);
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "private"), ("grpc_status", "16")],
        2.0,
    );
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "private"), ("grpc_status", "8")],
        1.0,
    );
}
