//! What an operator reads about every request and about the process: upstream latency and
//! bytes, refusals under the route that refused them, process metrics, and which
//! configuration is loaded (so a fleet can confirm a rollout converged).

mod support;

use support::*;

fn sha256_prefix(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn upstream_process_and_configuration_metrics() {
    let up = Upstream::start("app");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: read, match: {{ path_prefix: /r, methods: [GET] }}, upstream: app }}\n  - {{ name: write, match: {{ path_prefix: /w }}, upstream: app }}\n",
        up.addr()
    ));
    assert_eq!(gw.get("/r/1").status, 200);
    let r = request(
        gw.addr(),
        "POST",
        "localhost",
        "/w",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(r.status, 200);
    let r = request(gw.addr(), "DELETE", "localhost", "/r/1", &[], b"");
    assert_eq!(r.status, 405);
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "read"), ("method", "DELETE"), ("status", "405")],
        1.0,
    );
    let text = gw.metrics();
    assert!(
        sum_metric(
            &text,
            "portcullis_upstream_response_seconds_count",
            &[("upstream", "app")]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sum_metric(
            &text,
            "portcullis_upstream_bytes_total",
            &[("upstream", "app"), ("direction", "sent")]
        ) >= 5.0
    );
    assert!(
        sum_metric(
            &text,
            "portcullis_upstream_bytes_total",
            &[("upstream", "app"), ("direction", "received")]
        ) > 0.0
    );
    for process in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(sum_metric(&text, process, &[]) > 0.0, "{process}: {text}");
    }
    assert!(text.contains("process_cpu_seconds_total"), "{text}");

    let file = std::fs::read(gw.config_path()).expect("read config");
    let hash = sha256_prefix(&file);
    assert_eq!(
        gw.metric("portcullis_config_info", &[("hash", &hash)]),
        1.0,
        "{text}"
    );
    assert!(sum_metric(&text, "portcullis_config_loaded_timestamp_seconds", &[]) > 1.7e9);
    // A reload of a changed file: the new hash replaces the old one.
    let changed = String::from_utf8_lossy(&file).replace("name: write", "name: writes");
    std::fs::write(gw.config_path(), &changed).expect("write config");
    let r = request(gw.admin(), "POST", "127.0.0.1", "/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let new_hash = sha256_prefix(changed.as_bytes());
    gw.wait_metric("portcullis_config_info", &[("hash", &new_hash)], 1.0);
    assert!(
        !gw.metrics().contains(&format!("hash=\"{hash}\"")),
        "the old hash is gone"
    );
}

fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `access_log: { format: json, path }`: one JSON object per request with what an operator
/// needs (credential query values redacted, the refusal's reason, the consumer a 403 refused,
/// the trace id, the upstream's status and latency), appended to a file that SIGUSR1 reopens.
#[test]
fn json_access_log_to_a_file_reopened_on_sigusr1() {
    let up = Upstream::start("app");
    let logs = tempfile::tempdir().expect("tempdir");
    let file = logs.path().join("access.log");
    let keys = logs.path().join("keys.yaml");
    std::fs::write(
        &keys,
        format!(
            "keys:\n  - {{ sha256: \"{}\", consumer: alice }}\n",
            hash_key("alice-key-0123456789")
        ),
    )
    .expect("write keys");
    let gw = Gateway::start_with(
        &format!("access_log: {{ format: json, path: \"{}\" }}", file.display()),
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  k:\n    type: api_key\n    from: [\"query:api_key\", \"header:x-api-key\"]\n    keys_file: {}\nroutes:\n  - {{ name: open, match: {{ path_prefix: /open }}, upstream: app }}\n  - {{ name: keyed, match: {{ path_prefix: /keyed }}, upstream: app, auth: [k] }}\n  - {{ name: admins, match: {{ path_prefix: /admins }}, upstream: app, auth: [k], require: {{ roles: [admin] }} }}\n",
            up.addr(),
            keys.display()
        ),
    );
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = request(
        gw.addr(),
        "POST",
        "api.example.com",
        "/open/x?y=1",
        &[("traceparent", traceparent)],
        b"12345",
    );
    assert_eq!(r.status, 200);
    assert_eq!(gw.get("/keyed/x?api_key=wrong-secret&x=1").status, 401);
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/admins/x",
        &[("x-api-key", "alice-key-0123456789")],
        b"",
    );
    assert_eq!(r.status, 403);
    let lines = wait_for("three JSON lines", std::time::Duration::from_secs(10), || {
        let lines = read_lines(&file);
        (lines.len() >= 3).then_some(lines)
    });
    // Refusals after routing are counted under the route that refused them.
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "keyed"), ("status", "401")],
        1.0,
    );
    gw.wait_metric(
        "portcullis_requests_total",
        &[("route", "admins"), ("status", "403")],
        1.0,
    );
    // Each line is written after its answer is sent, so the next request (on another thread)
    // may be logged first: lines are found by what they record, not by their place.
    let by_status = |status: u16| {
        lines
            .iter()
            .find(|l| l["status"] == status)
            .unwrap_or_else(|| panic!("no line with status {status}: {lines:?}"))
    };
    let ok = by_status(200);
    assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "{ok}");
    assert_eq!(ok["host"], "api.example.com");
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["route"], "open");
    assert_eq!(ok["upstream"], "app");
    assert_eq!(ok["upstream_status"], 200);
    assert!(ok["upstream_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{ok}");
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["bytes_in"], 5);
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["reason"], serde_json::Value::Null);
    assert!(
        ok["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{ok}"
    );
    let refused = by_status(401);
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(refused["query"], "api_key=REDACTED&x=1");
    assert!(!std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains("wrong-secret"));
    assert!(
        refused["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{refused}"
    );
    let forbidden = by_status(403);
    assert_eq!(forbidden["status"], 403, "{forbidden}");
    assert_eq!(
        forbidden["consumer"], "alice",
        "a 403 names the consumer it refused"
    );

    // logrotate: move the file, SIGUSR1, and the next line goes to a new file.
    std::fs::rename(&file, logs.path().join("access.log.1")).expect("rotate");
    gw.signal(libc::SIGUSR1);
    wait_for("the file reopened", std::time::Duration::from_secs(10), || {
        assert_eq!(gw.get("/open/after").status, 200);
        read_lines(&file)
            .iter()
            .any(|l| l["path"] == "/open/after")
            .then_some(())
    });
    assert!(
        read_lines(&logs.path().join("access.log.1")).len() >= 3,
        "the rotated file keeps its lines"
    );
}
