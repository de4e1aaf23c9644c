//! Circuit breaking by concurrency (`limits`): a stalled upstream holds at most its slots, a
//! short queue waits for a freed one, and everything beyond is shed at once with 503 without
//! reaching the upstream.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn gateway(up: &Upstream, limits: &str) -> Gateway {
    Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\n    limits: {limits}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
        up.addr()
    ))
}

fn hold(gw: &Gateway, n: usize) -> Vec<std::thread::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let addr = gw.addr();
            std::thread::spawn(move || get(addr, "api", "/x").status)
        })
        .collect()
}

#[test]
fn a_stalled_upstream_sheds_the_request_beyond_its_slots() {
    let up = Upstream::start("stalled");
    up.set_delay(Duration::from_secs(2));
    let gw = gateway(&up, "{ max_requests: 8, max_pending: 0 }");
    let holders = hold(&gw, 8);
    wait_for(
        "8 requests in flight at the upstream",
        Duration::from_secs(10),
        || (up.inflight() == 8).then_some(()),
    );
    let begun = Instant::now();
    let r = gw.get("/x");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        begun.elapsed() < Duration::from_secs(1),
        "shed at once, took {:?}",
        begun.elapsed()
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(up.count(), 8, "the shed request never reached the upstream");
    assert_eq!(
        gw.metric("portcullis_upstream_shed_total", &[("upstream", "app")]),
        1.0
    );
    assert_eq!(
        gw.metric("portcullis_upstream_inflight", &[("upstream", "app")]),
        8.0
    );
    // The breaker's state: every slot taken.
    assert_eq!(
        gw.metric("portcullis_upstream_max_requests", &[("upstream", "app")]),
        8.0
    );
    assert_eq!(
        gw.metric("portcullis_upstream_circuit_open", &[("upstream", "app")]),
        1.0
    );
    for h in holders {
        assert_eq!(h.join().expect("holder"), 200);
    }
    // Every slot is released with its request. The release follows the last byte written to
    // the client (the slot is dropped with the request's context), so poll for it.
    up.set_delay(Duration::ZERO);
    assert_eq!(gw.get("/x").status, 200);
    wait_for("every slot released", Duration::from_secs(10), || {
        (gw.metric("portcullis_upstream_inflight", &[("upstream", "app")]) == 0.0).then_some(())
    });
    assert_eq!(
        gw.metric("portcullis_upstream_circuit_open", &[("upstream", "app")]),
        0.0
    );
}

#[test]
fn a_queued_request_takes_a_freed_slot_and_the_queue_is_bounded() {
    let up = Upstream::start("slow");
    up.set_delay(Duration::from_millis(800));
    let gw = gateway(&up, "{ max_requests: 1, max_pending: 1, pending_timeout: 5s }");
    let holder = hold(&gw, 1);
    wait_for("the slot taken", Duration::from_secs(10), || {
        (up.inflight() == 1).then_some(())
    });
    let waiter = hold(&gw, 1);
    wait_for("one request queued", Duration::from_secs(10), || {
        (gw.metric("portcullis_upstream_queued", &[("upstream", "app")]) == 1.0).then_some(())
    });
    // The queue holds one: the next is shed at once.
    assert_eq!(gw.get("/x").status, 503);
    for h in holder.into_iter().chain(waiter) {
        assert_eq!(h.join().expect("request"), 200);
    }
    assert_eq!(up.count(), 2);
    assert_eq!(
        gw.metric("portcullis_upstream_shed_total", &[("upstream", "app")]),
        1.0
    );
}

/// One slot and no queue: a client's next request, sent the moment it has its answer (on a new
/// connection, so possibly served by the other thread), finds the slot its previous request
/// held already free, on a proxied route and on one the gateway answers itself (a transform),
/// with a body and without one (HEAD).
#[test]
fn the_next_request_finds_the_slot_its_answer_freed() {
    let up = Upstream::start("app");
    let gw = Gateway::start(&format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\n    limits: {{ max_requests: 1, max_pending: 0 }}\nroutes:\n  - {{ name: t, match: {{ path_prefix: /t }}, upstream: app, transform: {{ response: {{ deny: [password] }} }} }}\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
        up.addr()
    ));
    for method in ["GET", "HEAD"] {
        for path in ["/x", "/t/x"] {
            for i in 0..100 {
                let r = request(gw.addr(), method, "api", path, &[], b"");
                assert_eq!(r.status, 200, "{method} {path} request {i}: {}", r.text());
            }
        }
    }
    assert_eq!(up.count(), 400, "every request reached the upstream");
}

#[test]
fn check_reports_limit_mistakes() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  a:\n    targets: [\"127.0.0.1:2\"]\n    limits: { max_requests: 0, pending_timeout: 0s }\n",
    );
    assert_eq!(out.code, 1);
    for want in [
        "upstreams.a.limits.max_requests: must be a whole number from 1 to 1000000",
        "upstreams.a.limits.pending_timeout: must be from 1ms to 60s",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
}
