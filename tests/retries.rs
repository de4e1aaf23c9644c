//! Retries against real upstreams: what is retried (listed failures, safe requests only), where
//! (another target), and how much (attempts, the per-upstream budget under a full outage).

mod support;

use std::time::{Duration, Instant};

use support::*;

fn config(targets: &[&Upstream], upstream_extra: &str, route_extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{}\"", t.addr())).collect();
    format!(
        "upstreams:\n  app:\n    targets: [{}]\n    outlier: {{ consecutive_5xx: 0, consecutive_gateway_errors: 0 }}\n{upstream_extra}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: app\n{route_extra}",
        list.join(", ")
    )
}

fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.addr(), "POST", "localhost", path, headers, b"{\"order\":1}")
}

fn retries_metric(gw: &Gateway, reason: &str) -> f64 {
    gw.metric(
        "portcullis_upstream_retries_total",
        &[("upstream", "app"), ("reason", reason)],
    )
}

#[test]
fn a_503_is_retried_on_the_other_target_and_the_log_and_metrics_say_so() {
    let (bad, good) = (Upstream::start("bad"), Upstream::start("good"));
    bad.set_status(503);
    let gw = Gateway::start(&config(&[&bad, &good], "", ""));
    for _ in 0..6 {
        let r = gw.get("/orders");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-upstream"), Some("good"));
    }
    assert!(
        bad.count() >= 1,
        "round robin sent some first attempts to the failing target"
    );
    assert_eq!(retries_metric(&gw, "503"), bad.count() as f64);
    wait_for("the access log", Duration::from_secs(5), || {
        gw.log().contains("retries=1").then_some(())
    });
}

/// The headline rule: a POST that may have reached the upstream is never sent again, whether
/// the upstream answered 503 or broke the connection after reading it. A GET in the same
/// situation is retried (so the counts below can tell the two apart).
#[test]
fn a_post_is_never_retried_after_it_reached_the_upstream() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    for up in [&a, &b] {
        up.script("/reset", Vec::new());
    }
    let gw = Gateway::start(&config(&[&a, &b], "    retry: { attempts: 3 }\n", ""));
    let r = post(&gw, "/orders", &[("x-status", "503")]);
    assert_eq!(r.status, 503, "the upstream's own answer");
    assert_eq!(a.count() + b.count(), 1, "a POST answered 503 is not sent again");

    let r = post(&gw, "/reset", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(
        a.count() + b.count(),
        2,
        "a POST whose connection broke is not sent again"
    );

    let r = gw.get("/reset");
    assert_eq!(r.status, 502);
    assert_eq!(a.count() + b.count(), 5, "a GET is tried three times");

    // PATCH is not idempotent either; PUT and DELETE are.
    let r = request(gw.addr(), "PATCH", "localhost", "/reset", &[], b"{}");
    assert_eq!(r.status, 502);
    assert_eq!(a.count() + b.count(), 6);
    let r = request(gw.addr(), "PUT", "localhost", "/reset", &[], b"{}");
    assert_eq!(r.status, 502);
    assert_eq!(a.count() + b.count(), 9);
}

/// A method override the route lets through makes the framework behind act on another
/// method: a GET carrying `X-HTTP-Method-Override: POST` is a POST, and is not repeated.
#[test]
fn a_get_overridden_to_post_is_not_retried() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start(&config(
        &[&a, &b],
        "",
        "    pass_headers: [x-http-method-override]\n",
    ));
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/orders",
        &[("x-http-method-override", "POST"), ("x-status", "503")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(a.count() + b.count(), 1);
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/orders?_method=POST",
        &[("x-status", "503")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(a.count() + b.count(), 2);
    // Without an override, the same GET is retried.
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/orders",
        &[("x-status", "503")],
        b"",
    );
    assert_eq!(r.status, 503);
    assert_eq!(a.count() + b.count(), 4);
}

#[test]
fn a_post_with_an_idempotency_key_is_retried_only_where_the_route_allows_it() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let body = format!(
        "{}  - name: keyed\n    match: {{ path_prefix: /keyed }}\n    upstream: app\n    retry: {{ idempotency_key: true }}\n",
        config(&[&a, &b], "", "")
    );
    let gw = Gateway::start(&body);
    let key = [("idempotency-key", "8e0f6c"), ("x-status", "503")];
    let r = post(&gw, "/orders", &key);
    assert_eq!(r.status, 503);
    assert_eq!(a.count() + b.count(), 1, "the route does not honour the key");
    let r = post(&gw, "/keyed", &key);
    assert_eq!(r.status, 503);
    assert_eq!(a.count() + b.count(), 3, "sent once and retried once");
    let seen: Vec<_> = [a.requests(), b.requests()].concat();
    let keyed: Vec<_> = seen.iter().filter(|r| r.target == "/keyed").collect();
    assert_eq!(keyed.len(), 2);
    assert!(
        keyed.iter().all(|r| r.body == b"{\"order\":1}"),
        "the whole body each time"
    );
    assert!(keyed
        .iter()
        .all(|r| r.header("idempotency-key") == Some("8e0f6c")));
}

/// Nothing is sent when a connect fails: any request is tried again, a POST too.
#[test]
fn a_post_is_retried_when_its_connection_was_refused() {
    let live = Upstream::start("live");
    let dead = Upstream::start("dead");
    dead.stop();
    let gw = Gateway::start(&config(&[&dead, &live], "", ""));
    for _ in 0..4 {
        let r = post(&gw, "/orders", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(live.count(), 4);
    assert!(retries_metric(&gw, "connect-failure") >= 1.0);
}

/// Under a full outage every attempt fails. Without a budget, `attempts: 5` would make each
/// request five attempts; the budget keeps the upstream at `requests × (1 + ratio)`.
#[test]
fn under_a_full_outage_retries_stay_within_the_budget() {
    let targets: Vec<Upstream> = (0..3).map(|i| Upstream::start(&format!("t{i}"))).collect();
    for t in &targets {
        t.set_status(503);
    }
    let refs: Vec<&Upstream> = targets.iter().collect();
    let gw = Gateway::start(&config(
        &refs,
        "    retry: { attempts: 5, backoff: { base: 1ms, max: 2ms }, budget: { ratio: 0.2, min_per_second: 0 } }\n",
        "",
    ));
    let requests = 100;
    for _ in 0..requests {
        assert_eq!(gw.get("/x").status, 503);
    }
    let attempts: usize = targets.iter().map(Upstream::count).sum();
    let retried = attempts - requests;
    assert!(
        attempts <= requests + requests / 5,
        "{attempts} attempts for {requests} requests: more than 20 % retries"
    );
    assert!(retried >= 5, "the budget allowed some retries ({retried})");
    assert_eq!(retries_metric(&gw, "503"), retried as f64);
    assert!(
        gw.metric(
            "portcullis_upstream_retry_budget_exhausted_total",
            &[("upstream", "app")]
        ) >= 1.0
    );
}

/// `per_try_timeout` ends an attempt that hangs and, with `timeout` listed, tries another
/// target well before the route's own deadline.
#[test]
fn a_hanging_target_is_left_after_the_per_try_timeout() {
    let (slow, fast) = (Upstream::start("slow"), Upstream::start("fast"));
    slow.set_delay(Duration::from_secs(5));
    let gw = Gateway::start(&config(
        &[&slow, &fast],
        "    retry: { attempts: 2, on: [timeout], per_try_timeout: 300ms }\n",
        "    timeout: 10s\n",
    ));
    for _ in 0..2 {
        let started = Instant::now();
        let r = gw.get("/x");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-upstream"), Some("fast"));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(slow.count() >= 1, "round robin tried the slow target");
    assert_eq!(
        retries_metric(&gw, "timeout"),
        slow.count() as f64,
        "each time left after 300ms"
    );
}

/// The gateway's own exchanges (transformed routes) follow the same rules.
#[test]
fn transformed_routes_retry_like_proxied_ones() {
    let (bad, good) = (Upstream::start("bad"), Upstream::start("good"));
    bad.set_status(503);
    let gw = Gateway::start(&config(
        &[&bad, &good],
        "",
        "    transform: { response: { allow: [method, target] } }\n",
    ));
    for _ in 0..4 {
        let r = gw.get("/t");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["target"], "/t");
    }
    assert!(bad.count() >= 1);
    let r = post(&gw, "/t", &[]);
    // A POST's first attempt may land on either target; on the failing one it is not retried.
    let posts: usize = [&bad, &good]
        .iter()
        .map(|u| u.requests().iter().filter(|r| r.method == "POST").count())
        .sum();
    assert_eq!(posts, 1, "status {}", r.status);
}

#[test]
fn check_reports_retry_mistakes() {
    let out = check(
        "upstreams:\n  a:\n    targets: [\"127.0.0.1:9001\"]\n    retries: 2\n    retry: { attempts: 3, on: [connect-failure, resets, 404], budget: { ratio: 1.5 }, backoff: { base: 100ms, max: 10ms } }\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a }\n",
    );
    for want in [
        "upstreams.a.retries: `retries` is the older spelling of `retry.attempts`",
        "upstreams.a.retry.on[1]: unknown value `resets`; did you mean `reset`?",
        "upstreams.a.retry.on[2]: only 5xx answers are retried",
        "upstreams.a.retry.budget.ratio: must be a fraction from 0 to 1",
        "upstreams.a.retry.backoff.max: must be at least `base`",
    ] {
        assert!(out.stderr.contains(want), "missing `{want}` in:\n{}", out.stderr);
    }
}

/// A retried body is replayed from Pingora's buffer: it counts once against `max_body`, and
/// arrives whole at the second target.
#[test]
fn a_retried_body_counts_once_against_max_body() {
    let (bad, good) = (Upstream::start("bad"), Upstream::start("good"));
    bad.set_status(503);
    let gw = Gateway::start(&config(&[&bad, &good], "", "    max_body: 60KiB\n"));
    let body = vec![b'~'; 40 * 1024];
    for _ in 0..4 {
        let r = request(gw.addr(), "PUT", "localhost", "/doc", &[], &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert!(bad.count() >= 1, "some first attempts went to the failing target");
    assert!(good.requests().iter().all(|r| r.body.len() == body.len()));
}
