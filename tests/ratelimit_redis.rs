//! The shared rate-limit store through real gateways and a real redis-server: cluster-wide
//! accuracy across three gateway processes, a Redis crash mid-load (each policy follows its
//! `on_store_error`, no gateway 5xx, limits resume after the restart), the breaker in front of
//! an unresponsive Redis, authentication, database selection and what lands in Redis.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// A gateway whose routes `/<policy>` use the named policies (all `store: redis`).
fn gateway(up: &Upstream, redis: &str, policies: &str, routes: &[&str]) -> Gateway {
    let routes: String = routes
        .iter()
        .map(|p| {
            format!("  - {{ name: {p}, match: {{ path_prefix: /{p} }}, upstream: app, rate_limit: [{p}] }}\n")
        })
        .collect();
    Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nredis: {redis}\nrate_limits:\n{policies}routes:\n{routes}",
        up.addr()
    ))
}

fn keyed(addr: SocketAddr, path: &str, user: &str) -> Response {
    request(addr, "GET", "localhost", path, &[("x-user", user)], b"")
}

fn upstream_saw(up: &Upstream, prefix: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.target.starts_with(prefix))
        .count()
}

/// Milliseconds since the epoch on the Redis server's clock (the one the script uses).
fn redis_now_ms(redis: &Redis) -> u64 {
    let reply = redis.command(&["TIME"]);
    let nums: Vec<u64> = reply.lines().filter_map(|l| l.parse::<u64>().ok()).collect();
    match nums.as_slice() {
        [secs, micros] => secs * 1000 + micros / 1000,
        _ => panic!("unexpected TIME reply {reply:?}"),
    }
}

/// Three gateways, one Redis, a client at 3x the limit: sliding_window admits the limit per
/// second (±5 %), token_bucket its burst plus the rate (±3 %).
#[test]
fn three_gateways_sharing_one_redis_allow_the_limit_within_five_percent() {
    for (algorithm, expected, tolerance) in [("sliding_window", 1000, 50), ("token_bucket", 1100, 33)] {
        shared_limit_accuracy(algorithm, expected, tolerance);
    }
}

fn shared_limit_accuracy(algorithm: &str, expected: usize, tolerance: usize) {
    let redis = Redis::start();
    let up = Upstream::start("app");
    // A generous timeout: on a loaded 2-core machine a slow answer must not turn into a
    // fail-open admission, which would distort the count (asserted below: no store errors).
    let config = format!("{{ url: \"{}\", timeout: 2s }}", redis.url());
    let policy = format!(
        "  shared:\n    key: header:x-user\n    algorithm: {algorithm}\n    limits: [{{ requests: 100, per: 1s }}]\n    store: redis\n"
    );
    let gateways: Vec<Gateway> = (0..3)
        .map(|_| gateway(&up, &config, &policy, &["shared"]))
        .collect();
    // Start on a window edge of the Redis clock: the sliding-window estimate lets the first,
    // partial window admit a full window's quota (docs/config.md, the Redis store), which is the algorithm,
    // not the cluster coordination this test measures.
    let now = redis_now_ms(&redis);
    std::thread::sleep(Duration::from_millis(1000 - now % 1000 + 20));
    // 300 requests per second (3x the limit) for 10 s, 100/s through each gateway.
    let results: Vec<(usize, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = gateways
            .iter()
            .map(|gw| {
                let addr = gw.addr();
                s.spawn(move || {
                    let mut conn = Conn::connect(addr);
                    let req = b"GET /shared HTTP/1.1\r\nHost: localhost\r\nx-user: alice\r\n\r\n";
                    let started = Instant::now();
                    let (mut allowed, mut refused) = (0, 0);
                    for i in 0..1000u64 {
                        let due = started + Duration::from_millis(i * 10);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        match conn.send(req).expect("response").status {
                            200 => allowed += 1,
                            429 => refused += 1,
                            other => panic!("unexpected status {other}"),
                        }
                    }
                    (allowed, refused)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("load thread"))
            .collect()
    });
    let allowed: usize = results.iter().map(|r| r.0).sum();
    eprintln!(
        "cluster accuracy ({algorithm}): per gateway (allowed, refused) {results:?}; total allowed {allowed}, expected {expected}"
    );
    for gw in &gateways {
        assert_eq!(
            gw.metric("portcullis_ratelimit_store_errors_total", &[]),
            0.0,
            "no store errors (they would admit without counting)"
        );
    }
    assert!(
        results.iter().all(|r| r.0 > 0 && r.1 > 0),
        "every gateway admitted and refused some: {results:?}"
    );
    assert!(
        allowed.abs_diff(expected) <= tolerance,
        "{algorithm}: {allowed} allowed across three gateways, expected {expected} +/- {tolerance}"
    );
    assert_eq!(up.count(), allowed, "refused requests never reached the upstream");
}

/// Requests to `/open` and `/closed` from a background thread until stopped: every status.
fn background_load(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let mut conn = Conn::connect(addr);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let path = if i.is_multiple_of(2) { "/open" } else { "/closed" };
            let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nx-user: load\r\n\r\n");
            statuses.push(conn.send(req.as_bytes()).map(|r| r.status).unwrap_or(0));
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        statuses
    })
}

#[test]
fn redis_killed_mid_load_follows_on_store_error_and_limits_resume_after_restart() {
    let mut redis = Redis::start();
    let up = Upstream::start("app");
    let config = format!(
        "{{ url: \"{}\", timeout: 500ms, breaker: {{ failures: 2, open_for: 200ms }} }}",
        redis.url()
    );
    let policies = "  open:\n    key: header:x-user\n    limits: [{ requests: 100000, per: 1s }]\n    store: redis\n    on_store_error: allow\n  closed:\n    key: header:x-user\n    limits: [{ requests: 100000, per: 1s }]\n    store: redis\n    on_store_error: deny\n  tight:\n    key: header:x-user\n    limits: [{ requests: 3, per: 1h }]\n    store: redis\n";
    let gw = gateway(&up, &config, policies, &["open", "closed", "tight"]);
    let tight =
        |user: &str| -> Vec<u16> { (0..4).map(|_| keyed(gw.addr(), "/tight", user).status).collect() };
    assert_eq!(
        tight("before"),
        [200, 200, 200, 429],
        "the shared limit holds before the crash"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(gw.addr(), Arc::clone(&stop));
    wait_for("load reaches the upstream", Duration::from_secs(10), || {
        (upstream_saw(&up, "/closed") > 20).then_some(())
    });
    redis.kill();
    wait_for("the breaker opens", Duration::from_secs(10), || {
        (gw.metric("portcullis_ratelimit_store_breaker_open", &[("store", "redis")]) == 1.0).then_some(())
    });

    // While Redis is down: `allow` admits, `deny` refuses with 429 and never reaches upstream.
    let closed_before = upstream_saw(&up, "/closed");
    let open_before = upstream_saw(&up, "/open");
    for _ in 0..10 {
        let r = keyed(gw.addr(), "/closed", "probe");
        if r.status == 429 {
            assert!(
                r.header("retry-after").is_some(),
                "a fail-closed 429 says when to retry"
            );
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
        } else {
            // Only the breaker's half-open probe may find Redis back; it is not back yet.
            panic!(
                "deny policy admitted a request while Redis was down: {}",
                r.status
            );
        }
        assert_eq!(keyed(gw.addr(), "/open", "probe").status, 200);
    }
    let closed_during: usize = upstream_saw(&up, "/closed") - closed_before;
    let open_during: usize = upstream_saw(&up, "/open") - open_before;
    assert!(
        open_during >= 10,
        "fail-open requests reached the upstream ({open_during})"
    );
    // Background requests in flight when the breaker opened may have been admitted earlier;
    // none of the test's own ten refused ones reached the upstream.
    assert!(
        up.requests()
            .iter()
            .filter(|r| r.target == "/closed" && r.header("x-user") == Some("probe"))
            .count()
            == 0,
        "refused requests never reached the upstream (closed_during={closed_during})"
    );
    assert!(gw.metric("portcullis_ratelimit_store_errors_total", &[("kind", "connect")]) >= 1.0);
    assert!(
        gw.metric(
            "portcullis_ratelimit_store_errors_total",
            &[("kind", "breaker_open")]
        ) >= 1.0
    );
    assert!(
        gw.metric(
            "portcullis_ratelimit_decisions_total",
            &[("policy", "closed"), ("decision", "store_error_deny")]
        ) >= 10.0
    );

    redis.restart();
    wait_for("deny policy admits again", Duration::from_secs(10), || {
        (keyed(gw.addr(), "/closed", "probe").status == 200).then_some(())
    });
    gw.wait_metric(
        "portcullis_ratelimit_store_breaker_open",
        &[("store", "redis")],
        0.0,
    );
    assert_eq!(
        tight("after"),
        [200, 200, 200, 429],
        "the shared limit is enforced again after the restart"
    );
    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().expect("load thread");
    let unexpected: Vec<&u16> = statuses.iter().filter(|s| !matches!(s, 200 | 429)).collect();
    assert!(
        unexpected.is_empty(),
        "no gateway errors during the outage: {unexpected:?} in {} requests",
        statuses.len()
    );
    assert!(
        statuses.contains(&429),
        "the deny route refused during the outage"
    );
    let log = gw.log();
    assert!(log.contains("failing"), "the outage is logged:\n{log}");
    assert!(log.contains("answers again"), "the recovery is logged:\n{log}");
}

#[test]
fn an_unresponsive_redis_costs_one_timeout_per_open_period_not_one_per_request() {
    // Accepts connections and never answers: every call would wait for the whole timeout.
    let blackhole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = blackhole.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in blackhole.incoming().flatten() {
            if let Ok(mut v) = keep.lock() {
                v.push(conn);
            }
        }
    });
    let up = Upstream::start("app");
    let config =
        format!("{{ url: \"redis://{addr}\", timeout: 100ms, breaker: {{ failures: 3, open_for: 10m }} }}");
    let policy =
        "  shared:\n    key: header:x-user\n    limits: [{ requests: 5, per: 1s }]\n    store: redis\n";
    let gw = gateway(&up, &config, policy, &["shared"]);
    for i in 0..20 {
        let r = keyed(gw.addr(), "/shared", "u");
        assert_eq!(r.status, 200, "request {i}: on_store_error defaults to allow");
        assert!(
            r.header("ratelimit").is_none(),
            "no made-up RateLimit values without the store"
        );
    }
    assert_eq!(up.count(), 20);
    let errors = |kind| gw.metric("portcullis_ratelimit_store_errors_total", &[("kind", kind)]);
    assert_eq!(errors("timeout"), 3.0, "three timeouts opened the breaker");
    assert_eq!(errors("breaker_open"), 17.0, "later requests skipped Redis");
    assert_eq!(
        gw.metric("portcullis_ratelimit_store_breaker_open", &[("store", "redis")]),
        1.0
    );
    assert_eq!(
        gw.metric(
            "portcullis_ratelimit_decisions_total",
            &[("decision", "store_error_allow")]
        ),
        20.0
    );
}

#[test]
fn authenticates_selects_the_database_and_keeps_client_values_out_of_redis() {
    let redis = Redis::start_with_password(Some("s3cret-pw"));
    let up = Upstream::start("app");
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/3", redis.port());
    let policies = "  shared:\n    key: header:x-user\n    limits: [{ requests: 2, per: 1h }]\n    store: redis\n    on_store_error: deny\n  local:\n    key: header:x-user\n    limits: [{ requests: 1, per: 1h }]\n";
    let routes = "  - { name: shared, match: { path_prefix: /shared }, upstream: app, rate_limit: [shared] }\n  - { name: both, match: { path_prefix: /both }, upstream: app, rate_limit: [local, shared] }\n";
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nredis: {{ url: \"{url}\", prefix: \"t1:\" }}\nrate_limits:\n{policies}routes:\n{routes}",
        up.addr()
    ));
    let r = keyed(gw.addr(), "/shared", "secret-user-value");
    assert_eq!(r.status, 200);
    let rl = r.header("ratelimit").unwrap_or_default().to_string();
    let t: u64 = rl.rsplit("t=").next().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(
        rl.starts_with("\"shared\";r=1;t=") && (1..=3600).contains(&t),
        "{rl}"
    );
    assert_eq!(keyed(gw.addr(), "/shared", "secret-user-value").status, 200);
    let refused = keyed(gw.addr(), "/shared", "secret-user-value");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["violated-policies"][0], "shared");
    assert_eq!(up.count(), 2);

    // A request refused by the local policy consumes no shared quota.
    assert_eq!(keyed(gw.addr(), "/both", "erin").status, 200);
    for _ in 0..3 {
        assert_eq!(keyed(gw.addr(), "/both", "erin").status, 429);
    }
    assert_eq!(
        keyed(gw.addr(), "/shared", "erin").status,
        200,
        "erin used 1 of 2 shared"
    );
    assert_eq!(keyed(gw.addr(), "/shared", "erin").status, 429);

    assert_eq!(redis.command(&["DBSIZE"]), ":0", "nothing in database 0");
    let keys = redis.command(&[
        "EVAL",
        "redis.call('SELECT', 3) return redis.call('KEYS', '*')",
        "0",
    ]);
    assert!(
        keys.contains("}:tb:shared:3600000") && keys.contains("t1:{"),
        "token_bucket is the default, keys are prefixed and hash-tagged: {keys}"
    );
    assert!(
        !keys.contains("secret-user-value") && !keys.contains("erin"),
        "{keys}"
    );
    assert!(!gw.log().contains("s3cret-pw"), "the password is never logged");
}

#[test]
fn a_wrong_password_is_a_store_error_that_never_shows_the_password() {
    let redis = Redis::start_with_password(Some("right-pw"));
    let up = Upstream::start("app");
    let config = format!(
        "{{ url: \"redis://:wrong-pw@127.0.0.1:{}\", breaker: {{ failures: 1, open_for: 10m }} }}",
        redis.port()
    );
    let policy = "  shared:\n    key: header:x-user\n    limits: [{ requests: 5, per: 1s }]\n    store: redis\n    on_store_error: deny\n";
    let gw = gateway(&up, &config, policy, &["shared"]);
    let r = keyed(gw.addr(), "/shared", "u");
    assert_eq!(r.status, 429, "deny: refused while the store cannot be used");
    assert_eq!(up.count(), 0, "the upstream never saw it");
    assert_eq!(
        gw.metric("portcullis_ratelimit_store_errors_total", &[("kind", "connect")]),
        1.0,
        "a refused AUTH is a connection that could not be opened"
    );
    wait_for("the failure is logged", Duration::from_secs(5), || {
        gw.log().contains("failing").then_some(())
    });
    let log = gw.log();
    assert!(!log.contains("wrong-pw") && !log.contains("right-pw"), "{log}");
}

#[test]
fn check_reports_redis_mistakes_without_echoing_the_password() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nredis:\n  url: \"redis://:hunter2@cache:6379\"\n  tls: {}\n  timeout: 0ms\n  pool: 0\n  breaker: { failures: 0 }\nrate_limits:\n  p:\n    key: ip\n    limits: [{ requests: 1, per: 1s }]\n    store: redis\n    on_store_error: maybe\n  l:\n    key: ip\n    limits: [{ requests: 1, per: 1s }]\n    on_store_error: deny\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, rate_limit: [p, l] }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "redis.tls: TLS needs a rediss:// url",
        "redis.timeout: must be between 1ms and 10s",
        "redis.pool: must be between 1 and 1024",
        "redis.breaker.failures: must be between 1 and 1000",
        "rate_limits.p.on_store_error: unknown value `maybe`; expected allow or deny",
        "rate_limits.l.on_store_error: on_store_error applies to store: redis only",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nrate_limits:\n  p:\n    key: ip\n    limits: [{ requests: 1, per: 1s }]\n    store: redis\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a, rate_limit: [p] }\n",
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("rate_limits.p.store: store: redis needs a top-level `redis:` section"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_pooled_connection_closed_by_redis_while_idle_is_replaced_without_an_error() {
    let redis = Redis::start();
    assert_eq!(redis.command(&["CONFIG", "SET", "timeout", "1"]), "+OK");
    let up = Upstream::start("app");
    let config = format!("{{ url: \"{}\", timeout: 2s }}", redis.url());
    let policy = "  shared:\n    key: header:x-user\n    limits: [{ requests: 100, per: 1h }]\n    store: redis\n    on_store_error: deny\n";
    let gw = gateway(&up, &config, policy, &["shared"]);
    // Four decisions: both pooled connections (pool: 2 by default) are open and used.
    for _ in 0..4 {
        assert_eq!(keyed(gw.addr(), "/shared", "u").status, 200);
    }
    // Redis closes the gateway's idle connections after 1 s; only this helper's is left.
    wait_for(
        "redis closes the idle connection",
        Duration::from_secs(15),
        || {
            let clients = redis.command(&["CLIENT", "LIST"]);
            (clients.matches("id=").count() == 1).then_some(())
        },
    );
    // Each of the next requests meets a dead pooled connection (both were closed).
    let mut r = keyed(gw.addr(), "/shared", "u");
    for _ in 0..2 {
        assert_eq!(
            r.status, 200,
            "the stale connection was replaced on the same request"
        );
        r = keyed(gw.addr(), "/shared", "u");
    }
    assert_eq!(r.status, 200);
    assert!(
        r.header("ratelimit").unwrap_or_default().contains("r=93"),
        "{:?}",
        r.header("ratelimit")
    );
    assert_eq!(gw.metric("portcullis_ratelimit_store_errors_total", &[]), 0.0);
}

#[test]
fn check_reports_topology_tls_secret_and_cluster_slot_mistakes() {
    let base = "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\n";
    let policies = "rate_limits:\n  by-ip:\n    key: ip\n    limits: [{ requests: 1, per: 1s }]\n    store: redis\n  by-user:\n    key: header:x-user\n    limits: [{ requests: 1, per: 1s }]\n    store: redis\n  by-ip-too:\n    key: ip\n    limits: [{ requests: 5, per: 1m }]\n    store: redis\nroutes:\n  - { name: mixed, match: { path_prefix: /m }, upstream: a, rate_limit: [by-ip, by-user] }\n  - { name: same, match: { path_prefix: /s }, upstream: a, rate_limit: [by-ip, by-ip-too] }\n";
    let out = check(&format!(
        "{base}redis:\n  cluster: [\"127.0.0.1:7000\", \"127.0.0.1:x\"]\n  db: 2\n  prefix: \"a{{b}}:\"\n  key_secret_env: PORTCULLIS_TEST_UNSET_SECRET\n  username: gw\n  tls: {{ ca: missing-ca.pem, client_cert: missing.pem }}\n{policies}"
    ));
    out.assert_reports(&[
        "redis.cluster[1]: expected host:port",
        "redis.db: a Redis Cluster has only database 0",
        "redis.prefix: must be at most 64 bytes without spaces, control characters or braces",
        "redis.key_secret_env: environment variable PORTCULLIS_TEST_UNSET_SECRET is not set",
        "redis.username: a user needs its password: add password_env",
        "redis.tls.ca: cannot read",
    ]);
    // The cluster's slot rule needs a usable `redis:` section to know it is a cluster.
    let out = check(&format!(
        "{base}redis:\n  cluster: [\"127.0.0.1:7000\"]\n{policies}"
    ));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("routes[0].rate_limit[1]: in a Redis Cluster one decision's keys must share a slot"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("routes[1]"),
        "same key, same slot: {}",
        out.stderr
    );
    // Outside a cluster the same routes are fine.
    let out = check(&format!(
        "{base}redis:\n  url: \"redis://127.0.0.1:6379\"\n{policies}"
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = check(&format!(
        "{base}redis:\n  url: \"redis://:hunter2@127.0.0.1\"\n  sentinel: {{ master: m, nodes: [\"127.0.0.1:26379\"] }}\n{policies}"
    ));
    assert!(
        out.stderr
            .contains("give one of url, sentinel and cluster, not url and sentinel"),
        "{}",
        out.stderr
    );
    let out = check(&format!(
        "{base}redis:\n  sentinel: {{ master: \"\", nodes: [] }}\n  key_secret_file: short-secret.txt\n{policies}"
    ));
    out.assert_reports(&[
        "redis.sentinel.master: the name the sentinels monitor",
        "redis.sentinel.nodes: list between 1 and 64 addresses",
        "redis.key_secret_file: cannot read",
    ]);
    let out = check(&format!(
        "{base}redis:\n  url: \"redis+sentinel://127.0.0.1:26379/m\"\n{policies}"
    ));
    assert!(
        out.stderr.contains("is written as a `sentinel:` block"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"));
}

/// The key of `policy` in Redis (the one key the test made for it).
fn stored_key(redis: &Redis, policy_part: &str) -> String {
    let keys = redis.command(&["KEYS", "*"]);
    keys.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .find(|k| k.contains(policy_part))
        .unwrap_or_else(|| panic!("no key with {policy_part:?} in {keys:?}"))
        .to_string()
}

/// A clock stepped back on the Redis host (NTP) leaves state that looks as if it came from the
/// future. The test plants exactly that state, an hour ahead, and checks that a token bucket
/// waits at most one interval (not the hour) and hands out no fresh burst, and that a sliding
/// window counts the "later" window as the previous one: fewer than a fresh quota admitted,
/// and admitted again within two windows.
#[test]
fn a_clock_stepped_back_on_the_redis_host_neither_locks_a_key_out_nor_hands_out_a_quota() {
    let redis = Redis::start();
    let up = Upstream::start("app");
    let policies = "  tb:\n    key: header:x-user\n    limits: [{ requests: 10, per: 1s }]\n    store: redis\n  sw:\n    key: header:x-user\n    algorithm: sliding_window\n    limits: [{ requests: 10, per: 2s }]\n    store: redis\n";
    let gw = gateway(
        &up,
        &format!("{{ url: \"{}\" }}", redis.url()),
        policies,
        &["tb", "sw"],
    );
    let hour_us: u64 = 3_600_000_000;

    assert_eq!(keyed(gw.addr(), "/tb", "u").status, 200);
    let key = stored_key(&redis, ":tb:tb:");
    let ahead = (redis_now_ms(&redis) * 1000 + hour_us).to_string();
    redis.command(&["HSET", &key, "t", &ahead, "i", "100000"]);
    // Expiry is wall-clock time too: after the step the key lives on for the hour.
    redis.command(&["PEXPIRE", &key, "7200000"]);
    let refused = keyed(gw.addr(), "/tb", "u");
    assert_eq!(refused.status, 429, "no fresh burst after the step");
    let rl = refused.header("ratelimit").unwrap_or_default().to_string();
    assert!(
        rl.ends_with(";t=1") || rl.ends_with(";t=0"),
        "waits at most one interval: {rl}"
    );
    wait_for("the token bucket admits again", Duration::from_secs(5), || {
        (keyed(gw.addr(), "/tb", "u").status == 200).then_some(())
    });

    assert_eq!(keyed(gw.addr(), "/sw", "v").status, 200);
    let key = stored_key(&redis, ":rl:sw:");
    // Plant at the start of a window, so the "previous" window still weighs most of its count.
    let per_ms = 2000;
    wait_for("the first half of a window", Duration::from_secs(5), || {
        (redis_now_ms(&redis) % per_ms < per_ms / 4).then_some(())
    });
    let idx = redis_now_ms(&redis) / per_ms;
    let later = (idx + 1800).to_string();
    redis.command(&["HSET", &key, "i", &later, "c", "10", "p", "0"]);
    redis.command(&["PEXPIRE", &key, "7200000"]);
    let admitted = (0..10)
        .filter(|_| keyed(gw.addr(), "/sw", "v").status == 200)
        .count();
    assert!(
        admitted < 6,
        "a step back hands out no fresh quota: {admitted} of 10 admitted"
    );
    wait_for("the sliding window admits again", Duration::from_secs(10), || {
        (keyed(gw.addr(), "/sw", "v").status == 200).then_some(())
    });
}

#[test]
fn check_refuses_tls_files_the_connection_could_not_use() {
    let pki = Pki::new("redis check ca");
    let (cert, _) = pki
        .client(&["gateway"])
        .write(pki.path(), "gw", &[])
        .expect("write client");
    let (_, other_key) = pki
        .client(&["someone-else"])
        .write(pki.path(), "other", &[])
        .expect("write other");
    let garbage = pki.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN X509 CERTIFICATE-----\nAAAA\n-----END X509 CERTIFICATE-----\n",
    )
    .expect("write");
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nredis:\n  url: \"rediss://127.0.0.1:6380\"\n  tls: {{ ca: \"{}\", client_cert: \"{}\", client_key: \"{}\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: a }}\n",
        garbage.display(),
        cert.display(),
        other_key.display()
    ));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("redis.tls.ca: no PEM certificate"),
        "{}",
        out.stderr
    );
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\nredis:\n  url: \"rediss://127.0.0.1:6380\"\n  tls: {{ ca: \"{}\", client_cert: \"{}\", client_key: \"{}\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: a }}\n",
        pki.ca_file.display(),
        cert.display(),
        other_key.display()
    ));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("redis.tls.client_key: does not belong to client_cert"),
        "{}",
        out.stderr
    );
}
