//! Distribution of each balance method, measured at the upstreams.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

fn pool(balance: &str, extra: &str, targets: &[String]) -> String {
    format!(
        "upstreams:\n  app:\n    targets: [{}]\n    balance: {balance}\n{extra}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
        targets.join(", ")
    )
}

fn plain(ups: &[&Upstream]) -> Vec<String> {
    ups.iter().map(|u| format!("\"{}\"", u.addr())).collect()
}

#[test]
fn weighted_round_robin_respects_weights() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let targets = vec![
        format!("\"{}\"", a.addr()),
        format!("{{ addr: \"{}\", weight: 3 }}", b.addr()),
    ];
    let gw = Gateway::start(&pool("round_robin", "", &targets));
    for _ in 0..400 {
        assert_eq!(gw.get("/").status, 200);
    }
    // Weighted round robin is deterministic: exactly 1:3 over whole cycles.
    assert!((90..=110).contains(&a.count()), "a={} b={}", a.count(), b.count());
    assert!(
        (290..=310).contains(&b.count()),
        "a={} b={}",
        a.count(),
        b.count()
    );
}

#[test]
fn random_uses_every_target() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&pool("random", "", &plain(&[&a, &b])));
    for _ in 0..200 {
        assert_eq!(gw.get("/").status, 200);
    }
    // Binomial(200, 0.5): 60..140 holds with probability 1 - 1e-8.
    assert!((60..=140).contains(&a.count()), "a={} b={}", a.count(), b.count());
}

fn owner_by_key(gw: &Gateway, header: &str, keys: impl Iterator<Item = String>) -> HashMap<String, String> {
    keys.map(|k| {
        let r = request(gw.addr(), "GET", "localhost", "/", &[(header, &k)], b"");
        assert_eq!(r.status, 200);
        (k, r.header("x-upstream").unwrap_or("-").to_string())
    })
    .collect()
}

#[test]
fn hash_on_header_is_sticky_and_consistent() {
    let ups: Vec<Upstream> = (0..4).map(|i| Upstream::start(&format!("u{i}"))).collect();
    let refs: Vec<&Upstream> = ups.iter().collect();
    let hash = "    hash_key: \"header:x-user-id\"\n";
    let gw3 = Gateway::start(&pool("hash", hash, &plain(&refs[..3])));
    let keys = || (0..300).map(|i| format!("user-{i}"));
    let first = owner_by_key(&gw3, "x-user-id", keys());
    let again = owner_by_key(&gw3, "x-user-id", keys());
    assert_eq!(first, again, "the same key must always reach the same target");
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 3, "keys spread over every target");
    drop(gw3);
    // Adding a fourth target moves only the keys it takes over (ideal 1/4).
    let gw4 = Gateway::start(&pool("hash", hash, &plain(&refs)));
    let after = owner_by_key(&gw4, "x-user-id", keys());
    let moved = first.iter().filter(|(k, owner)| after[*k] != **owner).count();
    let moved_to_new = first
        .iter()
        .filter(|(k, owner)| after[*k] != **owner && after[*k] == "u3")
        .count();
    assert!(moved <= 300 * 2 / 5, "{moved} of 300 keys moved");
    assert_eq!(moved, moved_to_new, "keys only move to the new target");
}

#[test]
fn hash_on_cookie_and_client_ip() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&pool(
        "hash",
        "    hash_key: \"cookie:session\"\n",
        &plain(&[&a, &b]),
    ));
    let owners: Vec<String> = (0..20)
        .map(|_| {
            let r = request(
                gw.addr(),
                "GET",
                "localhost",
                "/",
                &[("cookie", "theme=dark; session=abc123")],
                b"",
            );
            r.header("x-upstream").unwrap_or("-").to_string()
        })
        .collect();
    assert!(owners.iter().all(|o| *o == owners[0]), "{owners:?}");
    let gw_ip = Gateway::start(&pool("hash", "    hash_key: ip\n", &plain(&[&a, &b])));
    let owners: Vec<String> = (0..20)
        .map(|_| gw_ip.get("/").header("x-upstream").unwrap_or("-").to_string())
        .collect();
    assert!(
        owners.iter().all(|o| *o == owners[0]),
        "one client IP, one target: {owners:?}"
    );
}

/// Sends `n` requests from parallel threads, started `gap` apart, and waits for all.
fn paced_parallel(gw: &Gateway, n: usize, gap: Duration) -> Vec<u16> {
    let addr = gw.addr();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let h = std::thread::spawn(move || get(addr, "localhost", "/").status);
            std::thread::sleep(gap);
            h
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
}

#[test]
fn least_conn_avoids_a_slow_target() {
    let (slow, fast) = (Upstream::start("slow"), Upstream::start("fast"));
    slow.set_delay(Duration::from_secs(2));
    let gw = Gateway::start(&pool("least_conn", "", &plain(&[&slow, &fast])));
    let statuses = paced_parallel(&gw, 20, Duration::from_millis(40));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // While the slow target holds a request, every new one goes to the idle fast target.
    assert!(slow.count() <= 3, "slow={} fast={}", slow.count(), fast.count());
    assert!(fast.count() >= 17, "slow={} fast={}", slow.count(), fast.count());
}

#[test]
fn least_time_prefers_the_faster_target() {
    let (slow, fast) = (Upstream::start("slow"), Upstream::start("fast"));
    slow.set_delay(Duration::from_millis(150));
    let gw = Gateway::start(&pool("least_time", "", &plain(&[&slow, &fast])));
    for _ in 0..40 {
        assert_eq!(gw.get("/").status, 200);
    }
    // Each untried target is tried about once; then latency steers traffic to `fast`.
    assert!(slow.count() <= 4, "slow={} fast={}", slow.count(), fast.count());
}

#[test]
fn round_robin_does_not_avoid_a_slow_target() {
    // The contrast to least_conn: round robin keeps sending half the traffic to it.
    let (slow, fast) = (Upstream::start("slow"), Upstream::start("fast"));
    slow.set_delay(Duration::from_millis(500));
    let gw = Gateway::start(&pool("round_robin", "", &plain(&[&slow, &fast])));
    let statuses = paced_parallel(&gw, 10, Duration::from_millis(20));
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(slow.count(), 5);
}
