//! Local rate limiting through the real gateway: accuracy, many keys, windows, composite keys,
//! the missing-key policy, and the standard headers. Refused requests never reach the upstream.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn gateway(policy: &str, route_extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start("app");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nrate_limits:\n  p:\n{policy}routes:\n  - {{ name: limited, match: {{ path_prefix: / }}, upstream: app, rate_limit: [p]{route_extra} }}\n",
        up.addr()
    ));
    (up, gw)
}

fn keyed(gw: &Gateway, user: &str) -> Response {
    request(gw.addr(), "GET", "localhost", "/x", &[("x-user", user)], b"")
}

#[test]
fn one_key_offered_three_times_its_limit_gets_its_limit() {
    let (up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 20, per: 1s }]\n",
        "",
    );
    let mut conn = Conn::connect(gw.addr());
    let req = b"GET /x HTTP/1.1\r\nHost: localhost\r\nx-user: alice\r\n\r\n";
    let (mut allowed, mut refused) = (0usize, 0usize);
    let started = Instant::now();
    // 60 requests per second (3x the limit) for 10 seconds, paced on a fixed schedule.
    for i in 0..600u32 {
        let due = started + Duration::from_millis(u64::from(i) * 1000 / 60);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let r = conn.send(req).expect("response");
        match r.status {
            200 => allowed += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = 20.0 * elapsed;
    eprintln!(
        "accuracy: {allowed} allowed, {refused} refused in {elapsed:.2}s (limit x time = {expected:.0})"
    );
    assert!(
        (allowed as f64 - expected).abs() <= expected * 0.10,
        "{allowed} allowed, expected {expected:.0} +/- 10%"
    );
    assert_eq!(up.count(), allowed, "refused requests never reached the upstream");
}

#[test]
fn ten_thousand_keys_under_their_limit_are_never_refused() {
    let (up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 3, per: 10s }]\n    expected_keys: 20000\n",
        "",
    );
    let addr = gw.addr();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr);
                let mut refused = 0;
                for i in (t..10_000).step_by(4) {
                    let req = format!("GET /x HTTP/1.1\r\nHost: localhost\r\nx-user: user-{i}\r\n\r\n");
                    // Two requests per key: both under the limit of 3.
                    for _ in 0..2 {
                        if conn.send(req.as_bytes()).expect("response").status != 200 {
                            refused += 1;
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap_or(usize::MAX)).sum();
    assert_eq!(refused, 0, "false 429s for keys under their limit");
    assert_eq!(up.count(), 20_000);
}

#[test]
fn every_window_applies_and_the_429_names_the_violated_one() {
    let (up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 3, per: 1s }, { requests: 5, per: 1h }]\n",
        "",
    );
    for _ in 0..3 {
        assert_eq!(keyed(&gw, "bob").status, 200);
    }
    let r = keyed(&gw, "bob");
    assert_eq!(r.status, 429);
    assert!(
        r.text().contains("\"violated-policies\":[\"p-1s\"]"),
        "{}",
        r.text()
    );
    // The per-second window frees up; the hourly one then runs out at 5.
    wait_for("second window frees up", Duration::from_secs(10), || {
        (keyed(&gw, "bob").status == 200).then_some(())
    });
    let mut last = keyed(&gw, "bob");
    for _ in 0..20 {
        if last.status == 429 && last.text().contains("p-3600s") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        last = keyed(&gw, "bob");
    }
    assert_eq!(last.status, 429);
    assert!(last.text().contains("\"p-3600s\""), "{}", last.text());
    assert!(
        last.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            > 60,
        "hour window: long Retry-After"
    );
    assert_eq!(up.count(), 5, "exactly the hourly quota reached the upstream");
}

#[test]
fn composite_keys_separate_their_parts() {
    let (_up, gw) = gateway(
        "    key: [ip, header:x-tenant]\n    limits: [{ requests: 2, per: 1h }]\n",
        "",
    );
    let tenant = |t: &str| request(gw.addr(), "GET", "localhost", "/x", &[("x-tenant", t)], b"").status;
    assert_eq!((tenant("a"), tenant("a"), tenant("a")), (200, 200, 429));
    assert_eq!(
        tenant("b"),
        200,
        "another tenant from the same IP has its own bucket"
    );
}

#[test]
fn requests_without_a_key_are_refused_or_limited_by_ip() {
    let (up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 2, per: 1h }]\n",
        "",
    );
    let r = gw.get("/x");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(up.count(), 0);
    let (up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 2, per: 1h }]\n    missing_key: ip\n",
        "",
    );
    assert_eq!(
        (gw.get("/x").status, gw.get("/x").status, gw.get("/x").status),
        (200, 200, 429)
    );
    assert_eq!(
        keyed(&gw, "carol").status,
        200,
        "keyed clients are not in the IP bucket"
    );
    assert_eq!(up.count(), 3);
    gw.wait_metric(
        "portcullis_ratelimit_decisions_total",
        &[("policy", "p"), ("decision", "reject")],
        1.0,
    );
}

#[test]
fn headers_and_the_429_body_follow_the_standards() {
    let (_up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 2, per: 60s }]\n    legacy_headers: true\n",
        "",
    );
    let r = keyed(&gw, "dave");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-policy"), Some("\"p\";q=2;w=60"));
    let rl = r.header("ratelimit").unwrap_or_default().to_string();
    assert!(rl.starts_with("\"p\";r=1;t="), "{rl}");
    let t: u64 = rl.rsplit("t=").next().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&t), "{rl}");
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(keyed(&gw, "dave").status, 200);
    let refused = keyed(&gw, "dave");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    let body = refused.json();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"][0], "p");
    let retry: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    let t: u64 = refused
        .header("ratelimit")
        .and_then(|v| v.rsplit("t=").next())
        .and_then(|v| v.parse().ok())
        .expect("t");
    assert!(retry >= t, "Retry-After {retry} earlier than t={t}");
    assert!(refused.header("ratelimit").unwrap_or_default().contains("r=0"));
}

#[test]
fn check_reports_rate_limit_mistakes() {
    let many = vec!["p"; 17].join(", ");
    let out = check(&format!(
        "{}  - {{ name: u, match: {{ path_prefix: /u }}, upstream: a, rate_limit: [{many}] }}\n",
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nrate_limits:\n  c:\n    key: consumer\n    limits: [{ requests: 1, per: 1s }]\n  p:\n    key: [consumer, cookie:x]\n    limits: [{ requests: 0, per: 1s }, { requests: 5, per: 500ms }]\n    store: redis\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, rate_limit: [q] }\n  - { name: s, match: { path_prefix: /s }, upstream: a, rate_limit: [c] }\n  - { name: t, match: { path_prefix: /t }, upstream: a, rate_limit: [p, p] }\n"
    ));
    assert_eq!(out.code, 1);
    for want in [
        "rate_limits.p.key[1]: `cookie:x`: expected consumer, ip, header:NAME or claim:NAME",
        "rate_limits.p.limits[0].requests: must be from 1 to 1000000000",
        "rate_limits.p.limits[1].per: must be a whole number of seconds",
        "rate_limits.p.store: store: redis needs a top-level `redis:` section",
        "routes[0].rate_limit[0]: route names undefined rate limit `q`",
        "routes[1].rate_limit[0]: policy `c` is keyed on the consumer or a claim, but the route has no `auth`",
        "routes[2].rate_limit[1]: rate limit `p` is listed twice",
        "routes[3].rate_limit: at most 16 rate limits per route",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}

#[test]
fn a_plan_overrides_the_policy_limits_for_its_consumers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(
        &keys,
        format!(
            "keys:\n  - {{ sha256: {}, consumer: small, plan: free }}\n  - {{ sha256: {}, consumer: big, plan: gold }}\n",
            hash_key("free-key"),
            hash_key("gold-key")
        ),
    )
    .expect("keys");
    let up = Upstream::start("app");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nauth:\n  k:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}\nrate_limits:\n  p:\n    key: consumer\n    limits: [{{ requests: 2, per: 1h }}]\n    plans: {{ gold: [{{ requests: 5, per: 1h }}] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, auth: [k], rate_limit: [p] }}\n",
        up.addr(),
        keys.display()
    ));
    let send = |key: &str| request(gw.addr(), "GET", "localhost", "/x", &[("x-api-key", key)], b"");
    let free: Vec<u16> = (0..3).map(|_| send("free-key").status).collect();
    assert_eq!(free, vec![200, 200, 429]);
    let gold: Vec<u16> = (0..6).map(|_| send("gold-key").status).collect();
    assert_eq!(gold, vec![200, 200, 200, 200, 200, 429]);
    assert_eq!(
        send("gold-key").header("ratelimit-policy"),
        Some("\"p\";q=5;w=3600")
    );
    // Without a consumer the consumer-keyed policy cannot apply: 401, not a shared bucket.
    assert_eq!(gw.get("/x").status, 401);
    assert_eq!(up.count(), 7);
}

#[test]
fn a_live_reload_keeps_the_counters_of_unchanged_policies() {
    let (up, gw) = gateway(
        "    key: header:x-user\n    limits: [{ requests: 2, per: 1h }]\n",
        "",
    );
    let config = std::fs::read_to_string(gw.config_path()).expect("read config");
    assert_eq!((keyed(&gw, "fay").status, keyed(&gw, "fay").status), (200, 200));
    assert_eq!(keyed(&gw, "fay").status, 429);
    let reload = |text: &str| {
        std::fs::write(gw.config_path(), text).expect("write config");
        let r = request(gw.admin(), "POST", "localhost", "/reload", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    };
    // Same windows, different route table and quota: the count so far still applies.
    let changed = config.replace("requests: 2,", "requests: 3,").replace(
        "routes:\n",
        "routes:\n  - { name: other, match: { path_prefix: /other }, upstream: app }\n",
    );
    reload(&changed);
    assert_eq!(keyed(&gw, "fay").status, 200, "quota raised to 3: one more");
    assert_eq!(keyed(&gw, "fay").status, 429, "a reload is not a fresh quota");
    // A different window starts a fresh store.
    reload(&changed.replace("per: 1h", "per: 2h"));
    assert_eq!(keyed(&gw, "fay").status, 200);
    assert_eq!(up.count(), 4);
}

/// A key header sent twice: the key used the first value while the upstream saw both. Such a
/// request is refused, whatever `missing_key` says.
#[test]
fn a_repeated_key_header_is_refused() {
    for missing_key in ["reject", "ip"] {
        let (up, gw) = gateway(
            &format!("    key: header:x-user\n    limits: [{{ requests: 5, per: 1h }}]\n    missing_key: {missing_key}\n"),
            "",
        );
        let r = request(
            gw.addr(),
            "GET",
            "localhost",
            "/x",
            &[("x-user", "alice"), ("x-user", "mallory")],
            b"",
        );
        assert_eq!(r.status, 400, "{missing_key}: {}", r.text());
        assert_eq!(up.count(), 0, "the upstream never saw it");
    }
}

/// An IPv4 client reaching a dual-stack listener arrives as `::ffff:a.b.c.d`; it used to get a
/// bucket of its own. It shares its IPv4 bucket, and upstreams see the IPv4 address.
#[test]
fn ip_keys_are_canonical_across_address_families() {
    let up = Upstream::start("app");
    let dual = free_port();
    let gw = Gateway::start_with(
        &format!("listen: [\"127.0.0.1:{{port}}\", \"[::]:{dual}\"]"),
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nrate_limits:\n  p:\n    key: ip\n    limits: [{{ requests: 1, per: 1h }}]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app, rate_limit: [p] }}\n",
            up.addr()
        ),
    );
    let mapped = std::net::SocketAddr::from(([127, 0, 0, 1], dual));
    assert_eq!(get(mapped, "localhost", "/x").status, 200);
    assert_eq!(
        up.requests()[0].header("x-forwarded-for"),
        Some("127.0.0.1"),
        "not ::ffff:127.0.0.1"
    );
    assert_eq!(gw.get("/x").status, 429, "the same client, the same bucket");
}

#[test]
fn check_reports_algorithm_and_burst_mistakes() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nrate_limits:\n  b:\n    key: ip\n    algorithm: sliding_window\n    limits: [{ requests: 1, per: 1s, burst: 2 }]\n  g:\n    key: ip\n    limits: [{ requests: 1, per: 8784h, burst: 2 }]\n  z:\n    key: ip\n    algorithm: leaky\n    limits: [{ requests: 1, per: 1s, burst: 0 }]\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "rate_limits.b.limits[0].burst: burst applies to algorithm: token_bucket only",
        "rate_limits.g.limits[0].burst: burst × per / requests must be at most 8784h",
        "rate_limits.z.algorithm: unknown value `leaky`; expected token_bucket or sliding_window",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}
