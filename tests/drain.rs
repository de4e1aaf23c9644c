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
