//! Live reload: SIGHUP, `portcullis reload` and `POST /reload` swap the snapshot in place.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Two configurations that differ in upstream and in a response header, over the same pools.
fn body(a: &Upstream, b: &Upstream, which: &str) -> String {
    let target = if which == "A" { "a" } else { "b" };
    format!(
        "upstreams:\n  a:\n    targets: [\"{}\"]\n  b:\n    targets: [\"{}\"]\nroutes:\n  - name: v\n    match: {{ path_prefix: /v }}\n    upstream: {target}\n    response_headers: {{ set: {{ x-config: {which} }} }}\n",
        a.addr(),
        b.addr()
    )
}

/// Replace the configuration body (everything after the generated `server:` section).
fn rewrite(gw: &Gateway, old_body: &str, new_body: &str) {
    let text = std::fs::read_to_string(gw.config_path()).expect("read config");
    assert!(text.contains(old_body), "config does not hold the expected body");
    std::fs::write(gw.config_path(), text.replacen(old_body, new_body, 1)).expect("write config");
}

fn reload_cli(gw: &Gateway) -> std::process::Output {
    Command::new(BIN)
        .args(["reload", "-c"])
        .arg(gw.config_path())
        .output()
        .expect("run portcullis reload")
}

#[test]
fn fifty_reloads_under_load_without_errors() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (body_a, body_b) = (body(&a, &b, "A"), body(&a, &b, "B"));
    let gw = Gateway::start(&body_a);
    let load = Load::start(gw.addr(), "/v/load", 4, KeepAlive::Strict);
    let mut current = body_a.clone();
    for i in 0u32..50 {
        let (next, which, upstream) = if i.is_multiple_of(2) {
            (&body_b, "B", "b")
        } else {
            (&body_a, "A", "a")
        };
        rewrite(&gw, &current, next);
        current = next.clone();
        let out = reload_cli(&gw);
        assert!(
            out.status.success(),
            "reload {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Visible at once: the reload command returns after the swap.
        let r = gw.get("/v/check");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-config"), Some(which), "reload {i}");
        assert_eq!(r.header("x-upstream"), Some(upstream), "reload {i}");
    }
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} failed requests during reloads: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(ok > 100, "the load generator ran ({ok} requests)");
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "success")], 50.0);
}

#[test]
fn broken_config_keeps_the_old_snapshot() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body_a = body(&a, &b, "A");
    let gw = Gateway::start(&body_a);
    let broken = body_a
        .replace("path_prefix", "path_prefx")
        .replace("targets: [", "targets: [\"nohost\", ");
    rewrite(&gw, &body_a, &broken);
    // The CLI validates first and sends nothing.
    let out = reload_cli(&gw);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `path_prefx`"));
    // The gateway itself rejects it too, listing every problem.
    let r = request(gw.admin(), "POST", "localhost", "/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("unknown field `path_prefx`"), "{}", r.text());
    assert!(
        r.text().contains("bad address `nohost`"),
        "every problem is listed: {}",
        r.text()
    );
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "failure")], 1.0);
    let still = gw.get("/v/x");
    assert_eq!(still.status, 200);
    assert_eq!(still.header("x-config"), Some("A"));
    assert!(gw.log().contains("reload rejected"), "problems are logged");
    assert_eq!(
        request(gw.admin(), "GET", "localhost", "/reload", &[], b"").status,
        405
    );
}

#[test]
fn sighup_reloads() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (body_a, body_b) = (body(&a, &b, "A"), body(&a, &b, "B"));
    let gw = Gateway::start(&body_a);
    rewrite(&gw, &body_a, &body_b);
    gw.signal(libc::SIGHUP);
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "success")], 1.0);
    assert_eq!(gw.get("/v/x").header("x-config"), Some("B"));
}

#[test]
fn in_flight_requests_finish_on_their_snapshot() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (body_a, body_b) = (body(&a, &b, "A"), body(&a, &b, "B"));
    let gw = Gateway::start(&body_a);
    let addr = gw.addr();
    let slow = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            "localhost",
            "/v/slow",
            &[("x-delay-ms", "1500")],
            b"",
        )
    });
    wait_for("slow request reached upstream a", Duration::from_secs(10), || {
        (a.inflight() == 1).then_some(())
    });
    rewrite(&gw, &body_a, &body_b);
    assert!(reload_cli(&gw).status.success());
    assert_eq!(gw.get("/v/new").header("x-config"), Some("B"));
    let r = slow.join().expect("slow request");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-config"),
        Some("A"),
        "the in-flight request kept its snapshot"
    );
}

#[test]
fn unchanged_pools_keep_health_state_and_new_pools_are_checked() {
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let c = Upstream::start("c");
    let checks = "    health_check: { type: tcp, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n";
    let one = format!(
        "upstreams:\n  down:\n    targets: [\"{dead}\"]\n{checks}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: down }}\n"
    );
    let gw = Gateway::start(&one);
    let healthy =
        |up: &str, t: String| gw.metric("portcullis_upstream_healthy", &[("upstream", up), ("target", &t)]);
    wait_for("dead target unhealthy", Duration::from_secs(10), || {
        (healthy("down", dead.to_string()) == 0.0).then_some(())
    });
    // Health changes name the pool and the target as configured, not a Rust debug structure.
    let line = wait_for("the health change in the log", Duration::from_secs(10), || {
        gw.log()
            .lines()
            .find(|l| l.contains("becomes unhealthy"))
            .map(String::from)
    });
    assert!(
        line.contains(&format!("upstream `down` target {dead} becomes unhealthy"))
            && !line.contains("Backend {"),
        "{line}"
    );
    // Same pool, another route name, plus a new checked pool.
    let two = format!(
        "upstreams:\n  down:\n    targets: [\"{dead}\"]\n{checks}  fresh:\n    targets: [\"{}\"]\n{checks}routes:\n  - {{ name: r2, match: {{ path_prefix: / }}, upstream: down }}\n  - {{ name: f, match: {{ path_prefix: /fresh }}, upstream: fresh }}\n",
        c.addr()
    );
    rewrite(&gw, &one, &two);
    assert!(reload_cli(&gw).status.success());
    // The kept pool still knows its target is down: 503 at once, no connection attempt.
    let r = gw.get("/x");
    assert_eq!(r.status, 503, "{}", r.text());
    wait_for("new pool checked", Duration::from_secs(10), || {
        (healthy("fresh", c.addr().to_string()) == 1.0).then_some(())
    });
    assert_eq!(gw.get("/fresh/1").status, 200);
    assert_eq!(
        get(gw.admin(), "localhost", "/readyz").status,
        200,
        "a reload does not make the gateway unready"
    );
    // Dropping the pool drops its health series.
    let three = format!(
        "upstreams:\n  fresh:\n    targets: [\"{}\"]\n{checks}routes:\n  - {{ name: f, match: {{ path_prefix: / }}, upstream: fresh }}\n",
        c.addr()
    );
    rewrite(&gw, &two, &three);
    assert!(reload_cli(&gw).status.success());
    assert!(!gw.metrics().contains("upstream=\"down\""), "{}", gw.metrics());
}

/// Settings a live reload cannot apply (here `threads` and `work_stealing`) are reported, in the admin answer and
/// by the CLI with exit status 3, instead of "reloaded" and 0.
#[test]
fn a_reload_reports_the_settings_it_cannot_apply() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (body_a, body_b) = (body(&a, &b, "A"), body(&a, &b, "B"));
    let gw = Gateway::start(&body_a);
    let text = std::fs::read_to_string(gw.config_path()).expect("read config");
    let text = text
        .replace("threads: 2", "threads: 3\n  work_stealing: true")
        .replace(&body_a, &body_b);
    std::fs::write(gw.config_path(), text).expect("write config");
    let out = reload_cli(&gw);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("not applied")
            && stderr.contains("threads")
            && stderr.contains("work_stealing")
            && stderr.contains("portcullis upgrade"),
        "{stderr}"
    );
    assert_eq!(
        gw.get("/v/x").header("x-config"),
        Some("B"),
        "the rest was applied"
    );
    let r = request(gw.admin(), "POST", "127.0.0.1", "/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-portcullis-not-applied"),
        Some("threads, work_stealing")
    );
    assert!(r.text().contains("not applied"), "{}", r.text());
}

/// `reload -c OTHER` validated OTHER but reloaded the start-up file. Now the running gateway
/// refuses to be told about a file it does not run on.
#[test]
fn a_reload_of_another_file_is_refused() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let (body_a, body_b) = (body(&a, &b, "A"), body(&a, &b, "B"));
    let gw = Gateway::start(&body_a);
    let other = gw.dir().join("other.yaml");
    let text = std::fs::read_to_string(gw.config_path()).expect("read config");
    std::fs::write(&other, text.replace(&body_a, &body_b)).expect("write other");
    let out = Command::new(BIN)
        .args(["reload", "-c"])
        .arg(&other)
        .output()
        .expect("run portcullis reload");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&gw.config_path().display().to_string()) && stderr.contains("portcullis upgrade"),
        "{stderr}"
    );
    assert_eq!(
        gw.get("/v/x").header("x-config"),
        Some("A"),
        "nothing was reloaded"
    );
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "success")], 0.0);
}

/// The admin listener answered any `Host` (a DNS-rebinding page could read `/metrics`),
/// accepted a cross-site `POST /reload`, and had no deadline for the request head.
#[test]
fn the_admin_listener_refuses_rebinding_cross_site_posts_and_slow_heads() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start_with("limits: { header_read_timeout: 1s }", &body(&a, &b, "A"));
    let admin_port = gw.admin().port();
    for host in ["evil.example", "localhost.evil.example", "10.1.2.3"] {
        let r = get(gw.admin(), host, "/metrics");
        assert_eq!(r.status, 403, "Host {host}: {}", r.text());
        assert!(!r.text().contains("portcullis_"), "no metrics for {host}");
    }
    for host in ["localhost", "127.0.0.1", &format!("127.0.0.1:{admin_port}")] {
        assert_eq!(get(gw.admin(), host, "/metrics").status, 200, "Host {host}");
    }
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = request(gw.admin(), "POST", "localhost", "/reload", &[(name, value)], b"");
        assert_eq!(r.status, 403, "{name}: {}", r.text());
    }
    gw.wait_metric("portcullis_config_reloads_total", &[("result", "success")], 0.0);
    let outcome = trickle(
        gw.admin(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n",
        b'x',
        Duration::from_millis(100),
        Duration::from_secs(15),
    );
    assert!(matches!(outcome, Trickled::Closed), "{outcome:?}");
}

/// A few hundred bytes of nested YAML aliases ("billion laughs") exhausted memory in `check`,
/// `run` and a live reload (the running gateway died). Expansion and file size are bounded:
/// each refuses the file quickly, and a running gateway keeps serving.
#[test]
fn a_yaml_alias_bomb_is_refused_and_the_gateway_keeps_serving() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body_a = body(&a, &b, "A");
    let gw = Gateway::start(&body_a);
    let mut bomb = String::from("x-bomb:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    assert!(bomb.len() < 1024, "a 1 KB file ({} bytes)", bomb.len());
    let text = std::fs::read_to_string(gw.config_path()).expect("read config");
    std::fs::write(gw.config_path(), format!("{text}{bomb}")).expect("write config");

    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(gw.config_path())
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("aliases expand to more than"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused quickly");

    let r = request(gw.admin(), "POST", "localhost", "/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("aliases expand"), "{}", r.text());
    assert_eq!(
        gw.get("/v/x").header("x-config"),
        Some("A"),
        "the old snapshot serves"
    );

    // A file over the size limit is refused without being read whole.
    let huge = gw.dir().join("huge.yaml");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(17 * 1024 * 1024).expect("sparse 17 MiB file");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&huge)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
}

/// A pool is kept by what makes it the same set of targets (names, addresses, weights,
/// balancing, health check): editing `retries` or a timeout must not reset what the health
/// checks learned, or a known-dead target would take traffic again after every such edit.
#[test]
fn editing_retries_or_timeouts_keeps_pool_health() {
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let checks = "    health_check: { type: tcp, interval: 1h, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n";
    let one = format!(
        "upstreams:\n  down:\n    targets: [\"{dead}\"]\n{checks}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: down }}\n"
    );
    let gw = Gateway::start_unready("", &one);
    wait_for("dead target unhealthy", Duration::from_secs(10), || {
        (gw.metric(
            "portcullis_upstream_healthy",
            &[("upstream", "down"), ("target", &dead.to_string())],
        ) == 0.0)
            .then_some(())
    });
    // Selection reads the health state a moment after the gauge (both follow the check):
    // wait until a request is refused for it.
    wait_for(
        "requests refused for the unhealthy target",
        Duration::from_secs(10),
        || (gw.get("/x").status == 503).then_some(()),
    );
    let two = format!(
        "upstreams:\n  down:\n    targets: [\"{dead}\"]\n    retries: 3\n    connect_timeout: 2s\n    read_timeout: 9s\n{checks}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: down }}\n"
    );
    rewrite(&gw, &one, &two);
    assert!(reload_cli(&gw).status.success());
    // The next check is an hour away: only kept state can know the target is down.
    let r = gw.get("/x");
    assert_eq!(r.status, 503, "{}", r.text());
}
