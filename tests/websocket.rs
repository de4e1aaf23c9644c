//! WebSocket through the gateway with a real server and client (Python `websockets`, installed
//! by `scripts/test.sh`): authentication applies to the handshake; after the 101 the route's
//! deadline and the body idle timeout no longer apply, the route's idle timeout and maximum
//! lifetime do; open connections are a gauge; a live reload does not cut them.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws/ws.py");

/// A client running `steps` over one connection (see tests/ws/ws.py), started now.
fn client(url: &str, headers: &str, steps: &[&str]) -> Child {
    Command::new(python())
        .args([SCRIPT, "client", url])
        .args(steps)
        .env("WS_HEADERS", headers)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the WebSocket client")
}

fn results(child: Child) -> Vec<serde_json::Value> {
    let out = child.wait_with_output().expect("client output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn gateway(server: &PythonServer) -> Gateway {
    Gateway::start_with(
        "limits: { body_idle_timeout: 1s }",
        &format!(
            "upstreams:\n  ws: {{ targets: [\"127.0.0.1:{}\"] }}\nauth:\n  keys:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}/conf/keys.yaml\nroutes:\n  - {{ name: chat, match: {{ path_prefix: /chat }}, upstream: ws, auth: [keys], timeout: 1s, websocket: {{ idle_timeout: 30s }} }}\n  - {{ name: short, match: {{ path_prefix: /short }}, upstream: ws, websocket: {{ idle_timeout: 1s }} }}\n  - {{ name: capped, match: {{ path_prefix: /capped }}, upstream: ws, websocket: {{ max_lifetime: 2s }} }}\n  - {{ name: plain, match: {{ path_prefix: / }}, upstream: ws }}\n",
            server.port,
            env!("CARGO_MANIFEST_DIR")
        ),
    )
}

const KEY: &str = r#"{"x-api-key": "demo-key-not-secret"}"#;

#[test]
fn an_authenticated_websocket_outlives_the_route_deadline_and_a_reload() {
    let server = PythonServer::start(SCRIPT);
    let gw = gateway(&server);
    let url = format!("ws://{}/chat", gw.addr());
    // Without a key the handshake is refused (and the echo server never sees it).
    let refused = results(client(&url, "{}", &["send:x"]));
    assert_eq!(refused[0]["ok"], false);
    assert_eq!(refused[0]["status"], 401, "{refused:?}");
    // With one: frames both ways, then quiet past the route's 1 s deadline and the 1 s body
    // idle timeout, through a live reload, and still open.
    let c = client(
        &url,
        KEY,
        &[
            "send:hello",
            "sleep:3",
            "send:after the quiet",
            "sleep:1",
            "send:after the reload",
        ],
    );
    gw.wait_metric("portcullis_websocket_connections", &[], 1.0);
    std::fs::write(
        gw.config_path(),
        std::fs::read_to_string(gw.config_path())
            .expect("config")
            .replace("idle_timeout: 1s", "idle_timeout: 2s"),
    )
    .expect("edit config");
    gw.signal(libc::SIGHUP);
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "success")], 1.0);
    let out = results(c);
    assert_eq!(out.len(), 6, "{out:?}");
    for step in &out {
        assert_eq!(step["ok"], true, "{out:?}");
    }
    gw.wait_metric("portcullis_websocket_connections", &[], 0.0);
}

#[test]
fn idle_timeout_and_max_lifetime_end_an_upgraded_connection() {
    let server = PythonServer::start(SCRIPT);
    let gw = gateway(&server);
    // Quiet for longer than its 1 s idle timeout: the gateway closes it.
    let idle = results(client(
        &format!("ws://{}/short", gw.addr()),
        "{}",
        &["send:a", "closed:15"],
    ));
    assert_eq!(idle[1]["ok"], true, "{idle:?}");
    assert_eq!(idle[2]["ok"], true, "closed for being idle: {idle:?}");
    // Busy, but past its 2 s lifetime: the next frame ends it.
    let capped = results(client(
        &format!("ws://{}/capped", gw.addr()),
        "{}",
        &["send:a", "sleep:2.5", "send:b", "closed:15"],
    ));
    assert_eq!(capped[1]["ok"], true, "{capped:?}");
    assert_eq!(capped[3]["ok"], false, "no echo past max_lifetime: {capped:?}");
    assert_eq!(capped[4]["ok"], true, "{capped:?}");
    // A plain route refuses the handshake.
    let plain = results(client(&format!("ws://{}/other", gw.addr()), "{}", &["send:x"]));
    assert_eq!(plain[0]["status"], 400, "{plain:?}");
    wait_for("the gauge back to zero", Duration::from_secs(10), || {
        (gw.metric("portcullis_websocket_connections", &[]) == 0.0).then_some(())
    });
}
