//! SIGTERM in a rolling deployment: `/readyz` fails at once while the gateway keeps serving
//! for `drain_delay` (keep-alive connections are closed after their request), then it stops
//! gracefully and exits.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn sigterm_makes_the_gateway_unready_but_serving_for_the_drain_delay_then_it_exits() {
    let up = Upstream::start("app");
    let mut gw = Gateway::start_with(
        "drain_delay: 6s",
        &format!(
            "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
            up.addr()
        ),
    );
    let readyz = |gw: &Gateway| get(gw.admin(), "localhost", "/readyz").status;
    assert_eq!(readyz(&gw), 200);
    let mut kept = Conn::connect(gw.addr());
    let first = kept
        .send(b"GET /before HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("before");
    assert_eq!(first.status, 200);
    gw.signal(libc::SIGTERM);
    wait_for("/readyz to fail", Duration::from_secs(5), || {
        (readyz(&gw) == 503).then_some(())
    });
    // Still serving, new connections and kept-alive ones, and telling the latter to go.
    assert_eq!(gw.get("/during").status, 200);
    let r = kept
        .send(b"GET /during-kept HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("kept-alive connection served during the drain");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("exited after the drain");
    assert!(status.success(), "{status:?}");
    assert_eq!(up.count(), 3);
}

fn routed_to(up: &Upstream) -> String {
    format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: app }}\n",
        up.addr()
    )
}

/// SIGINT means "stop now" at every stage of a graceful stop: during `drain_delay`, and after
/// it, in the grace period, where Pingora no longer reads signals itself.
#[test]
fn sigint_stops_at_once_during_the_drain_and_during_the_grace_period() {
    let up = Upstream::start("app");
    // During the drain: unready, still serving, 60 s to go.
    let mut draining = Gateway::start_with("drain_delay: 60s\ngrace_period: 60s", &routed_to(&up));
    draining.signal(libc::SIGTERM);
    wait_for("/readyz to fail", Duration::from_secs(10), || {
        (get(draining.admin(), "localhost", "/readyz").status == 503).then_some(())
    });
    draining.signal(libc::SIGINT);
    let status = draining.wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", draining.log());

    // In the grace period: the listeners are closed, Pingora waits 60 s.
    let mut grace = Gateway::start_with("grace_period: 60s", &routed_to(&up));
    let addr = grace.addr();
    grace.signal(libc::SIGTERM);
    wait_for("the listener to close", Duration::from_secs(10), || {
        try_send_raw(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .is_err()
            .then_some(())
    });
    assert!(grace.is_running(), "still in its grace period");
    grace.signal(libc::SIGINT);
    let status = grace.wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", grace.log());
    assert!(grace.log().contains("SIGINT: stopping now"), "{}", grace.log());
}
