//! Accuracy for honest and greedy clients, measured with a real gateway, a real Redis and
//! clients that pace themselves for 20 s: a client at 90 % of its limit is never refused; a
//! client at twice its limit is admitted within 3 % of what the algorithm promises (token
//! bucket: the burst plus the rate; sliding window: the rate).
//!
//! A greedy client keeps an absolute schedule. An honest one also never sends sooner than its
//! interval after the previous answer: on an absolute schedule, a stall of the machine (a
//! fresh-clone CI run refused one 8 times) makes it send its overdue requests back to back,
//! and a client that bursts above its limit is not an honest one.

mod support;

use std::time::{Duration, Instant};

use support::redis::Redis;
use support::*;

const SECONDS: u64 = 20;
const RATE: u64 = 10;

/// `(route, requests per second)` → `(admitted, refused)`.
fn paced(gw: &Gateway, route: &str, key: &str, per_second: u64) -> (u64, u64) {
    let mut conn = Conn::connect(gw.addr());
    let req = format!("GET /{route} HTTP/1.1\r\nHost: localhost\r\nx-user: {key}\r\n\r\n");
    let gap = Duration::from_secs(1) / per_second as u32;
    let honest = per_second < RATE;
    let start = Instant::now();
    let mut not_before = start;
    let (mut admitted, mut refused) = (0, 0);
    for i in 0..SECONDS * per_second {
        let due = (start + gap * i as u32).max(not_before);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match conn.send(req.as_bytes()).expect("response").status {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
        // The limiter decided between the send and the answer: the next decision comes at
        // least `gap` after this one.
        if honest {
            not_before = Instant::now() + gap;
        }
    }
    (admitted, refused)
}

#[test]
fn honest_clients_are_never_refused_and_greedy_ones_get_what_the_algorithm_promises() {
    let redis = Redis::start();
    let up = Upstream::start("app");
    let mut policies = String::new();
    let mut routes = String::new();
    for algorithm in ["token_bucket", "sliding_window"] {
        for store in ["local", "redis"] {
            let name = format!("{store}-{algorithm}");
            policies.push_str(&format!(
                "  {name}:\n    key: header:x-user\n    algorithm: {algorithm}\n    store: {store}\n    limits: [{{ requests: {RATE}, per: 1s }}]\n"
            ));
            routes.push_str(&format!(
                "  - {{ name: {name}, match: {{ path_prefix: /{name} }}, upstream: app, rate_limit: [{name}] }}\n"
            ));
        }
    }
    let gw = Gateway::start(&format!(
        "{}redis: {{ url: \"{}\", timeout: 2s }}\nrate_limits:\n{policies}routes:\n{routes}",
        upstream_yaml("app", &[up.addr()]),
        redis.url()
    ));
    let results: Vec<(String, u64, (u64, u64))> = std::thread::scope(|s| {
        let runs: Vec<_> = ["token_bucket", "sliding_window"]
            .into_iter()
            .flat_map(|a| ["local", "redis"].map(move |st| format!("{st}-{a}")))
            .flat_map(|route| [(route.clone(), RATE * 9 / 10), (route, RATE * 2)])
            .map(|(route, rate)| {
                let gw = &gw;
                s.spawn(move || {
                    let key = format!("{route}-{rate}");
                    let outcome = paced(gw, &route, &key, rate);
                    (route, rate, outcome)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("client")).collect()
    });
    eprintln!("accuracy over {SECONDS} s at a limit of {RATE}/s: (route, client rate, (admitted, refused)) {results:?}");
    for (route, rate, (admitted, refused)) in &results {
        if *rate < RATE {
            assert_eq!(*refused, 0, "{route}: a client at 90 % of its limit was refused");
            continue;
        }
        // Token bucket: the burst (= requests) at once, then exactly the rate.
        let expected = match route.ends_with("token_bucket") {
            true => RATE + RATE * SECONDS,
            false => RATE * SECONDS,
        };
        let tolerance = match route.ends_with("token_bucket") {
            true => expected * 3 / 100,
            false => expected * 12 / 100,
        };
        assert!(
            admitted.abs_diff(expected) <= tolerance,
            "{route}: a client at 2x was admitted {admitted} times, expected {expected} ± {tolerance}"
        );
    }
    assert_eq!(
        gw.metric("portcullis_ratelimit_store_errors_total", &[]),
        0.0,
        "no store errors (they would admit without counting)"
    );
}
