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
