//! Passive health (outlier ejection) against real upstreams: a target that fails is taken out
//! of rotation after its threshold and comes back on probation; the cap on ejections holds; a
//! client going away is never its target's fault.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::*;

fn pool(targets: &[&Upstream], extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{}\"", t.addr())).collect();
    format!(
        "upstreams:\n  app:\n    targets: [{}]\n{extra}routes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
        list.join(", ")
    )
}

fn ejections(gw: &Gateway, target: &Upstream, reason: &str) -> f64 {
    gw.metric(
        "portcullis_upstream_ejections_total",
        &[
            ("upstream", "app"),
            ("target", &target.addr().to_string()),
            ("reason", reason),
        ],
    )
}

fn ejected(gw: &Gateway, target: &Upstream) -> f64 {
    gw.metric(
        "portcullis_upstream_ejected",
        &[("upstream", "app"), ("target", &target.addr().to_string())],
    )
}

/// Send requests until `target` has seen `n` of them (at most `limit` requests).
fn until_seen(gw: &Gateway, target: &Upstream, n: usize, limit: usize) {
    for _ in 0..limit {
        if target.count() >= n {
            return;
        }
        gw.get("/x");
    }
    assert!(
        target.count() >= n,
        "{} saw {} of {n}",
        target.name(),
        target.count()
    );
}

#[test]
fn a_target_answering_500_is_ejected_then_returns_on_probation() {
    let (good, bad) = (Upstream::start("good"), Upstream::start("bad"));
    bad.set_status(500);
    let gw = Gateway::start(&pool(
        &[&good, &bad],
        "    outlier: { consecutive_5xx: 3, base_ejection: 1s, max_ejection: 10s }\n",
    ));
    until_seen(&gw, &bad, 3, 20);
    assert_eq!(ejections(&gw, &bad, "consecutive_5xx"), 1.0);
    assert_eq!(ejected(&gw, &bad), 1.0);
    for _ in 0..10 {
        assert_eq!(gw.get("/x").status, 200, "an ejected target gets no traffic");
    }
    assert_eq!(bad.count(), 3);
    // After its second, it comes back on probation: one more 500 ejects it again at once.
    std::thread::sleep(Duration::from_millis(1200));
    until_seen(&gw, &bad, 4, 20);
    assert_eq!(ejections(&gw, &bad, "probation"), 1.0);
    for _ in 0..10 {
        assert_eq!(gw.get("/x").status, 200);
    }
    assert_eq!(bad.count(), 4, "the second ejection holds");
    // Healed, it gets traffic again once the (twice as long) ejection ends.
    bad.set_status(200);
    wait_for("the target back in rotation", Duration::from_secs(10), || {
        gw.get("/x");
        (bad.count() > 4).then_some(())
    });
    assert_eq!(ejected(&gw, &bad), 0.0);
    assert!(gw.log().contains("returns to rotation"), "{}", gw.log());
}

#[test]
fn a_target_that_hangs_is_ejected_on_timeouts() {
    let (good, hung) = (Upstream::start("good"), Upstream::start("hung"));
    hung.set_delay(Duration::from_secs(10));
    let gw = Gateway::start(&pool(
        &[&good, &hung],
        "    read_timeout: 200ms\n    outlier: { consecutive_gateway_errors: 2 }\n",
    ));
    until_seen(&gw, &hung, 2, 20);
    // The request that saw the second timeout may still be on its way back; then nothing.
    wait_for("the ejection", Duration::from_secs(5), || {
        (ejections(&gw, &hung, "consecutive_gateway_errors") == 1.0).then_some(())
    });
    for _ in 0..10 {
        assert_eq!(gw.get("/x").status, 200);
    }
    assert_eq!(hung.count(), 2);
}

#[test]
fn ejections_never_exceed_the_cap() {
    let ups: Vec<Upstream> = (0..4).map(|i| Upstream::start(&format!("t{i}"))).collect();
    for bad in &ups[1..] {
        bad.set_status(500);
    }
    let refs: Vec<&Upstream> = ups.iter().collect();
    let gw = Gateway::start(&pool(
        &refs,
        "    outlier: { consecutive_5xx: 1, base_ejection: 60s, max_ejected_percent: 50 }\n",
    ));
    for _ in 0..40 {
        gw.get("/x");
    }
    let ejected_now: f64 = ups[1..].iter().map(|u| ejected(&gw, u)).sum();
    assert_eq!(ejected_now, 2.0, "three of four failing: at most two ejected");
    // The third failing target stays in rotation.
    let before: Vec<usize> = ups.iter().map(Upstream::count).collect();
    for _ in 0..20 {
        gw.get("/x");
    }
    let gained: Vec<usize> = ups.iter().zip(&before).map(|(u, b)| u.count() - b).collect();
    assert_eq!(gained.iter().filter(|&&g| g > 0).count(), 2, "{gained:?}");
    assert!(gained[0] > 0);
}

#[test]
fn a_client_that_goes_away_never_ejects_its_target() {
    let (good, slow) = (Upstream::start("good"), Upstream::start("slow"));
    slow.set_delay(Duration::from_secs(3));
    // One counted failure would eject; a read timeout would be one.
    let gw = Gateway::start(&pool(
        &[&good, &slow],
        "    read_timeout: 1s\n    outlier: { consecutive_gateway_errors: 1, consecutive_5xx: 1 }\n",
    ));
    for _ in 0..20 {
        if slow.count() >= 3 {
            break;
        }
        let mut s = TcpStream::connect(gw.addr()).expect("connect");
        s.write_all(b"GET /x HTTP/1.1\r\nHost: api\r\n\r\n")
            .expect("send");
        std::thread::sleep(Duration::from_millis(150));
        drop(s);
    }
    assert!(slow.count() >= 3, "slow saw {}", slow.count());
    wait_for("the aborts recorded", Duration::from_secs(10), || {
        let aborted = gw.metric(
            "portcullis_upstream_requests_total",
            &[
                ("upstream", "app"),
                ("target", &slow.addr().to_string()),
                ("status", "aborted"),
            ],
        );
        (aborted >= 3.0).then_some(())
    });
    assert_eq!(ejected(&gw, &slow), 0.0);
    let total: f64 = ["consecutive_gateway_errors", "consecutive_5xx", "probation"]
        .iter()
        .map(|r| ejections(&gw, &slow, r))
        .sum();
    assert_eq!(total, 0.0);
}

#[test]
fn check_reports_outlier_mistakes() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\n    outlier: { consecutive_5xx: -1, base_ejection: 0s, max_ejected_percent: 101, failure_ratio: { above: 1.5, window: 0s } }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "upstreams.a.outlier.consecutive_5xx: must be a whole number from 0 to 10000",
        "upstreams.a.outlier.base_ejection: must be greater than 0",
        "upstreams.a.outlier.max_ejected_percent: must be a whole number from 0 to 100",
        "upstreams.a.outlier.failure_ratio.above: must be a fraction between 0 and 1",
        "upstreams.a.outlier.failure_ratio.window: must be from 1ms to 1h",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}

#[test]
fn a_slow_upload_is_never_its_targets_fault() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    // One counted failure would eject; the upstream's read timeout fires while the client is
    // still sending its body.
    let gw = Gateway::start(&pool(
        &[&a, &b],
        "    read_timeout: 300ms\n    outlier: { consecutive_gateway_errors: 1, consecutive_5xx: 1 }\n",
    ));
    for _ in 0..4 {
        let mut s = TcpStream::connect(gw.addr()).expect("connect");
        s.write_all(b"POST /x HTTP/1.1\r\nHost: api\r\nContent-Length: 10\r\n\r\nhello")
            .expect("send");
        std::thread::sleep(Duration::from_millis(900));
        let _ = s.write_all(b"world");
        let mut answer = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut answer);
    }
    for t in [&a, &b] {
        assert_eq!(ejected(&gw, t), 0.0, "{}", t.name());
    }
    let total: f64 = [&a, &b]
        .iter()
        .flat_map(|t| {
            ["consecutive_gateway_errors", "consecutive_5xx", "probation"].map(|r| ejections(&gw, t, r))
        })
        .sum();
    assert_eq!(total, 0.0);
}

#[test]
fn an_answer_that_breaks_off_counts_against_its_target() {
    let (good, bad) = (Upstream::start("good"), Upstream::start("bad"));
    // The head promises 100 bytes, 10 arrive, then nothing: a read timeout mid-body.
    bad.script(
        "/x",
        vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec()],
    );
    let gw = Gateway::start(&pool(
        &[&good, &bad],
        "    read_timeout: 300ms\n    outlier: { consecutive_gateway_errors: 2 }\n",
    ));
    // The client sees its answer cut short (the gateway cannot take back the head).
    let get = || {
        try_send_raw(
            gw.addr(),
            b"GET /x HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
        )
    };
    for _ in 0..20 {
        if bad.count() >= 2 {
            break;
        }
        let _ = get();
    }
    assert_eq!(bad.count(), 2);
    wait_for("the ejection", Duration::from_secs(5), || {
        (ejections(&gw, &bad, "consecutive_gateway_errors") == 1.0).then_some(())
    });
    for _ in 0..6 {
        assert_eq!(get().expect("a whole answer").status, 200);
    }
    assert_eq!(bad.count(), 2);
}

/// Aggregation parts count toward ejection like proxied requests (one place records every
/// attempt), and a target that passes its active health checks stays ejected until its
/// ejection ends.
#[test]
fn part_failures_eject_and_passing_health_checks_do_not_return_the_target_early() {
    let (good, bad) = (Upstream::start("good"), Upstream::start("bad"));
    bad.set_status(500);
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\", \"{}\"]\n    retries: 0\n    health_check: {{ path: /health, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }}\n    outlier: {{ consecutive_5xx: 3, base_ejection: 30s }}\nroutes:\n  - name: agg\n    match: {{ path: /agg }}\n    aggregate:\n      parts:\n        - {{ name: p, upstream: app, path: /p }}\n",
        good.addr(),
        bad.addr()
    ));
    for _ in 0..40 {
        if bad.count() >= 3 {
            break;
        }
        gw.get("/agg");
    }
    assert_eq!(bad.count(), 3, "three part requests reached the failing target");
    assert_eq!(ejections(&gw, &bad, "consecutive_5xx"), 1.0);
    assert_eq!(ejected(&gw, &bad), 1.0);
    let checks = bad.health_checks();
    wait_for("health checks pass meanwhile", Duration::from_secs(10), || {
        (bad.health_checks() >= checks + 3).then_some(())
    });
    for _ in 0..10 {
        assert_eq!(gw.get("/agg").status, 200);
    }
    assert_eq!(bad.count(), 3, "still ejected although its health checks pass");
    assert_eq!(ejected(&gw, &bad), 1.0);
}
