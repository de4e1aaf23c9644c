//! Response caching against a real origin (tests/cache/origin.py) that counts what it serves
//! and sets `Cache-Control`, `Vary` and `ETag` as each test asks. What the origin counted is
//! the proof: a hit is an answer the origin never saw.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const ORIGIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cache/origin.py");

struct Origin {
    server: PythonServer,
}

impl Origin {
    fn start() -> Origin {
        Origin {
            server: PythonServer::start(ORIGIN),
        }
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.server.port).into()
    }

    /// How `path` answers from now on (see origin.py).
    fn spec(&self, path: &str, spec: serde_json::Value) {
        let body = spec.to_string();
        let r = request(
            self.addr(),
            "POST",
            "localhost",
            &format!("/__spec?path={path}"),
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "spec {path}");
    }

    /// How many requests for `path` (any query) the origin answered with `status` ("all":
    /// every one).
    fn hits(&self, path: &str, status: &str) -> u64 {
        let r = get(self.addr(), "localhost", &format!("/__hits?path={path}"));
        r.json()[status].as_u64().unwrap_or(0)
    }
}

fn config(origin: &Origin, cache: &str) -> String {
    format!(
        "upstreams:\n  catalog:\n    targets: [\"{}\"]\nroutes:\n  - name: catalog\n    match: {{ path_prefix: /catalog }}\n    upstream: catalog\n    cache: {cache}\n",
        origin.addr()
    )
}

fn status(r: &Response) -> &str {
    r.header("x-cache-status").unwrap_or("-")
}

fn fetch(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    request(gw.addr(), "GET", "localhost", path, headers, b"")
}

#[test]
fn a_second_get_is_a_hit_with_age_and_head_and_validators_are_answered_from_the_store() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/a",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" }, "etag": "\"v1\"" }),
    );
    let gw = Gateway::start(&config(&origin, "{ ttl: 60s }"));
    let first = fetch(&gw, "/catalog/a", &[]);
    assert_eq!((first.status, status(&first)), (200, "MISS"));
    assert_eq!(first.text(), "path=/catalog/a n=1");
    let second = fetch(&gw, "/catalog/a", &[]);
    assert_eq!((second.status, status(&second)), (200, "HIT"));
    assert_eq!(second.text(), "path=/catalog/a n=1");
    assert!(second.header("age").is_some_and(|a| a.parse::<u64>().is_ok()));
    assert_eq!(second.header("etag"), Some("\"v1\""));
    assert!(
        second.header("x-request-id").is_some(),
        "hits are decorated per request"
    );
    // HEAD is answered from the GET entry.
    let head = request(gw.addr(), "HEAD", "localhost", "/catalog/a", &[], b"");
    assert_eq!((head.status, status(&head)), (200, "HIT"));
    assert!(head.body.is_empty());
    assert!(head.header("age").is_some_and(|a| a.parse::<u64>().is_ok()));
    // The client's own validator: 304 from the store, with its age (RFC 9111 §5.1), once.
    let cond = fetch(&gw, "/catalog/a", &[("if-none-match", "\"v1\"")]);
    assert_eq!((cond.status, status(&cond)), (304, "HIT"));
    assert!(cond.body.is_empty());
    let ages = cond.header_all("age");
    assert!(ages.len() == 1 && ages[0].parse::<u64>().is_ok(), "{ages:?}");
    assert_eq!(origin.hits("/catalog/a", "all"), 1, "the origin answered once");
    // Another query is another entry.
    let other = fetch(&gw, "/catalog/a?page=2", &[]);
    assert_eq!(
        (status(&other), other.text().as_str()),
        ("MISS", "path=/catalog/a n=2")
    );
    // A stored 204 is answered without a Content-Length (RFC 9110 §8.6).
    origin.spec(
        "/catalog/empty",
        serde_json::json!({ "status": 204, "headers": { "Cache-Control": "max-age=60" }, "body": "" }),
    );
    fetch(&gw, "/catalog/empty", &[]);
    let empty = fetch(&gw, "/catalog/empty", &[]);
    assert_eq!((empty.status, status(&empty)), (204, "HIT"));
    assert_eq!(empty.header("content-length"), None);
    // So is another Host spelling the upstream would see (it may build links from it).
    let port = request(gw.addr(), "GET", "localhost:6666", "/catalog/a", &[], b"");
    assert_eq!(
        (status(&port), port.text().as_str()),
        ("MISS", "path=/catalog/a n=3")
    );
    let m = gw.metrics();
    assert_eq!(
        sum_metric(
            &m,
            "portcullis_cache_requests_total",
            &[("route", "catalog"), ("status", "HIT")]
        ),
        4.0
    );
    assert!(sum_metric(&m, "portcullis_cache_stored", &[("what", "objects")]) >= 2.0);
}

/// The upstream builds links and redirects from the site it is told it serves: the forwarding
/// headers a trusted proxy sent, the gateway's own view otherwise, and what a route lets
/// through with `pass_headers`. The key follows what the upstream is told, so neither a client
/// nor another site can plant an answer for a site.
#[test]
fn the_site_the_upstream_is_told_is_part_of_the_key() {
    let origin = Origin::start();
    let spec = serde_json::json!({ "body": "host={xfh} proto={xfp} fwd={fwd} pfx={pfx} n={n}" });
    origin.spec("/catalog/site", spec);
    let path = "/catalog/site";
    // An untrusted client's forwarding headers are replaced or removed before the upstream
    // sees them (each sent first, on an entry of its own, so the upstream is asked), and they
    // do not split the key either.
    let gw = Gateway::start(&config(&origin, "{ ttl: 60s }"));
    let forged = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "host=evil.example;proto=https"),
        ("x-forwarded-prefix", "/evil"),
    ];
    for (i, header) in forged.iter().enumerate() {
        let r = fetch(&gw, &format!("{path}?f={i}"), &[*header]);
        let told = format!("host=localhost proto=http fwd= pfx= n={}", i + 1);
        assert_eq!((status(&r), r.text()), ("MISS", told), "{header:?}");
    }
    let plain = fetch(&gw, &format!("{path}?f=0"), &[]);
    assert_eq!(
        (status(&plain), plain.text().as_str()),
        ("HIT", "host=localhost proto=http fwd= pfx= n=1")
    );
    assert_eq!(origin.hits(path, "all"), 4);
    drop(gw);
    // Behind a trusted proxy the upstream believes the headers, and so does the key: one site's
    // answer is never another's, and http's (a redirect, say) is never https's.
    let gw = Gateway::start_with("trusted_proxies: [127.0.0.1]", &config(&origin, "{ ttl: 60s }"));
    let a = ("x-forwarded-host", "a.example");
    let https = ("x-forwarded-proto", "https");
    let answers = [
        (vec![a], "MISS", "host=a.example proto=http fwd= pfx= n=5"),
        (
            vec![("x-forwarded-host", "b.example")],
            "MISS",
            "host=b.example proto=http fwd= pfx= n=6",
        ),
        (vec![a, https], "MISS", "host=a.example proto=https fwd= pfx= n=7"),
        (
            vec![a, ("x-forwarded-prefix", "/v2")],
            "MISS",
            "host=a.example proto=http fwd= pfx=/v2 n=8",
        ),
        (vec![a], "HIT", "host=a.example proto=http fwd= pfx= n=5"),
        (vec![a, https], "HIT", "host=a.example proto=https fwd= pfx= n=7"),
    ];
    for (headers, cache, body) in answers {
        let r = fetch(&gw, path, &headers);
        assert_eq!((status(&r), r.text().as_str()), (cache, body), "{headers:?}");
    }
    assert_eq!(origin.hits(path, "all"), 8);
    drop(gw);
    // A header a route passes from any client reaches the upstream, so it is in the key.
    let passing = format!(
        "upstreams:\n  catalog:\n    targets: [\"{}\"]\nroutes:\n  - name: catalog\n    match: {{ path_prefix: /catalog }}\n    upstream: catalog\n    pass_headers: [x-forwarded-prefix]\n    cache: {{ ttl: 60s }}\n",
        origin.addr()
    );
    let gw = Gateway::start(&passing);
    for (prefix, cache, n) in [("/a", "MISS", 9), ("/b", "MISS", 10), ("/a", "HIT", 9)] {
        let r = fetch(&gw, path, &[("x-forwarded-prefix", prefix)]);
        let told = format!("host=localhost proto=http fwd= pfx={prefix} n={n}");
        assert_eq!((status(&r), r.text()), (cache, told), "{prefix}");
    }
}

/// A GET that a route lets override its method (`pass_headers: [x-http-method-override]`, which
/// also lets `?_method=` through) is another method to the framework behind: it is never
/// answered from the store, never stored, and a successful one invalidates like the method it
/// names.
#[test]
fn a_method_override_is_never_answered_from_the_store() {
    let origin = Origin::start();
    let passing = format!(
        "upstreams:\n  catalog:\n    targets: [\"{}\"]\nroutes:\n  - name: catalog\n    match: {{ path_prefix: /catalog }}\n    upstream: catalog\n    pass_headers: [x-http-method-override]\n    cache: {{ ttl: 60s, key: {{ query: none }} }}\n",
        origin.addr()
    );
    let gw = Gateway::start(&passing);
    let path = "/catalog/o";
    assert_eq!(status(&fetch(&gw, path, &[])), "MISS");
    assert_eq!(status(&fetch(&gw, path, &[])), "HIT");
    let header = fetch(&gw, path, &[("x-http-method-override", "DELETE")]);
    assert_eq!(
        (status(&header), header.text().as_str()),
        ("BYPASS", "path=/catalog/o n=2"),
        "the upstream was asked"
    );
    let after = fetch(&gw, path, &[]);
    assert_eq!(
        (status(&after), after.text().as_str()),
        ("MISS", "path=/catalog/o n=3"),
        "the overridden DELETE invalidated the entry"
    );
    // The query is not part of this route's key: `?_method=` must not share the plain entry.
    let query = fetch(&gw, &format!("{path}?_method=DELETE"), &[]);
    assert_eq!(
        (status(&query), query.text().as_str()),
        ("BYPASS", "path=/catalog/o n=4")
    );
    let again = fetch(&gw, path, &[]);
    assert_eq!(
        (status(&again), again.text().as_str()),
        ("MISS", "path=/catalog/o n=5")
    );
    assert_eq!(status(&fetch(&gw, path, &[])), "HIT");
    assert_eq!(origin.hits(path, "all"), 5);
}

/// An origin whose answer for `path` is fresh for one second and carries `etag`, and a
/// gateway that has stored it (the first request was a miss).
fn stored_for_a_second(path: &str, etag: &str) -> (Origin, Gateway) {
    let origin = Origin::start();
    origin.spec(
        path,
        serde_json::json!({ "headers": { "Cache-Control": "max-age=1" }, "etag": etag }),
    );
    let gw = Gateway::start(&config(&origin, "{ ttl: 60s }"));
    assert_eq!(status(&fetch(&gw, path, &[])), "MISS");
    (origin, gw)
}

/// The first answer for `path` that is not a hit: the stored entry has expired.
fn after_expiry(gw: &Gateway, path: &str) -> Response {
    wait_for("the entry to expire", Duration::from_secs(10), || {
        let r = fetch(gw, path, &[]);
        (status(&r) != "HIT").then_some(r)
    })
}

#[test]
fn an_expired_entry_is_revalidated_and_a_304_keeps_the_body() {
    let (origin, gw) = stored_for_a_second("/catalog/r", "\"r1\"");
    let revalidated = after_expiry(&gw, "/catalog/r");
    assert_eq!((revalidated.status, status(&revalidated)), (200, "REVALIDATED"));
    assert_eq!(revalidated.text(), "path=/catalog/r n=1", "the stored body");
    assert!(revalidated
        .header("age")
        .is_some_and(|a| a.parse::<u64>().is_ok()));
    assert_eq!(origin.hits("/catalog/r", "304"), 1, "the origin confirmed it");
    assert_eq!(origin.hits("/catalog/r", "200"), 1);
    assert_eq!(status(&fetch(&gw, "/catalog/r", &[])), "HIT", "fresh again");
}

/// A 304 that passed through another cache says how old the confirmed answer already is: the
/// refreshed entry counts that age (RFC 9111 §4.2.3), so it is neither reported younger nor
/// kept fresh longer than the origin allowed.
#[test]
fn an_origin_304s_age_counts_in_the_refreshed_entry() {
    let (origin, gw) = stored_for_a_second("/catalog/aged", "\"a1\"");
    // From now on the origin's answers (its 304 too) say they are 1,000 s into 1,060 s.
    origin.spec(
        "/catalog/aged",
        serde_json::json!({
            "headers": { "Cache-Control": "max-age=1060", "Age": "1000" },
            "etag": "\"a1\""
        }),
    );
    let revalidated = after_expiry(&gw, "/catalog/aged");
    assert_eq!((revalidated.status, status(&revalidated)), (200, "REVALIDATED"));
    assert_eq!(origin.hits("/catalog/aged", "304"), 1, "the origin confirmed it");
    let age = |r: &Response| r.header("age").and_then(|a| a.parse::<u64>().ok());
    assert!(
        age(&revalidated).is_some_and(|a| (1000..1060).contains(&a)),
        "the 304's age counts: {:?}",
        revalidated.header("age")
    );
    let hit = fetch(&gw, "/catalog/aged", &[]);
    assert_eq!(status(&hit), "HIT");
    assert!(age(&hit).is_some_and(|a| a >= 1000), "{:?}", hit.header("age"));
}

/// An origin (or a cache before it) claiming an absurd `Age`, first on a 200 and then on the
/// 304 that revalidates it: the gateway keeps answering, with the age RFC 9111 §1.2.2 caps it
/// to (2^31 s), rather than overflowing the entry's age.
#[test]
fn an_absurd_age_from_the_origin_is_capped_not_overflowed() {
    let absurd = "18446744073709551615";
    let origin = Origin::start();
    origin.spec(
        "/catalog/old",
        serde_json::json!({
            "headers": { "Cache-Control": "max-age=60", "Age": absurd },
            "etag": "\"o1\""
        }),
    );
    let gw = Gateway::start(&config(&origin, "{ ttl: 60s }"));
    assert_eq!(status(&fetch(&gw, "/catalog/old", &[])), "MISS");
    // Already stale by its age: each request revalidates (the 304 carries the same Age) and
    // is answered from the stored body; a second passes so the age grows past the cap.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..2 {
        let r = fetch(&gw, "/catalog/old", &[]);
        assert_eq!(r.status, 200, "{:?}", status(&r));
        let age = r.header("age").and_then(|a| a.parse::<u64>().ok());
        assert!(
            age.is_some_and(|a| (1u64 << 31..(1u64 << 31) + 60).contains(&a)),
            "{:?}",
            r.header("age")
        );
    }
    assert!(
        origin.hits("/catalog/old", "304") >= 1,
        "revalidated against the origin"
    );
    assert_eq!(
        status(&fetch(&gw, "/catalog/miss-after", &[])),
        "MISS",
        "still serving"
    );
}

#[test]
fn fifty_concurrent_cold_requests_reach_the_origin_once() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/hot",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" }, "delay": 0.5 }),
    );
    let gw = Gateway::start(&config(&origin, "{ lock_timeout: 10s }"));
    let addr = gw.addr();
    let answers: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| s.spawn(move || request(addr, "GET", "localhost", "/catalog/hot", &[], b"")))
            .collect();
        handles.into_iter().map(|h| h.join().expect("client")).collect()
    });
    assert_eq!(origin.hits("/catalog/hot", "all"), 1);
    assert!(answers
        .iter()
        .all(|r| r.status == 200 && r.text() == "path=/catalog/hot n=1"));
    let misses = answers.iter().filter(|r| status(r) == "MISS").count();
    assert_eq!(misses, 1, "one filled, 49 waited and hit");
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/s",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=1, stale-while-revalidate=60" } }),
    );
    // A rate limit: the background refresh is not one of the requests it counts.
    let gw = Gateway::start(&format!(
        "rate_limits:\n  per-client:\n    key: ip\n    limits: [{{ requests: 1000, per: 60s }}]\n{}    rate_limit: [per-client]\n",
        config(&origin, "{ ttl: 60s }")
    ));
    let mut sent = 1;
    assert_eq!(fetch(&gw, "/catalog/s", &[]).text(), "path=/catalog/s n=1");
    std::thread::sleep(Duration::from_millis(1_500));
    let stale = fetch(&gw, "/catalog/s", &[]);
    sent += 1;
    assert_eq!((stale.status, status(&stale)), (200, "UPDATING"));
    assert_eq!(stale.text(), "path=/catalog/s n=1", "the stale copy, at once");
    let fresh = wait_for("the refreshed entry", Duration::from_secs(10), || {
        let r = fetch(&gw, "/catalog/s", &[]);
        sent += 1;
        (r.text() == "path=/catalog/s n=2").then_some(r)
    });
    assert_eq!(status(&fresh), "HIT");
    assert_eq!(origin.hits("/catalog/s", "all"), 2, "one refresh");
    let allowed = sum_metric(
        &gw.metrics(),
        "portcullis_ratelimit_decisions_total",
        &[("policy", "per-client"), ("decision", "allow")],
    );
    assert_eq!(
        allowed,
        f64::from(sent),
        "only the client's requests were counted"
    );
}

#[test]
fn stale_if_error_serves_the_stale_copy_when_the_origin_fails() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/e",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=1" } }),
    );
    let gw = Gateway::start(&config(&origin, "{ stale_if_error: 60s }"));
    assert_eq!(fetch(&gw, "/catalog/e", &[]).text(), "path=/catalog/e n=1");
    std::thread::sleep(Duration::from_millis(1_500));
    origin.spec("/catalog/e", serde_json::json!({ "status": 503, "headers": {} }));
    let stale = fetch(&gw, "/catalog/e", &[]);
    assert_eq!((stale.status, status(&stale)), (200, "STALE"));
    assert_eq!(stale.text(), "path=/catalog/e n=1");
    assert!(stale
        .header("age")
        .is_some_and(|a| a.parse::<u64>().unwrap_or(0) >= 1));
    // The origin gone altogether: the same.
    drop(origin);
    let stale = fetch(&gw, "/catalog/e", &[]);
    assert_eq!((stale.status, status(&stale)), (200, "STALE"));
    assert_eq!(stale.text(), "path=/catalog/e n=1");
}

#[test]
fn answers_vary_on_the_allowed_headers_and_a_gzip_body_never_reaches_a_client_without_gzip() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/lang",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60", "Vary": "Accept-Language" },
                            "body": "{lang} n={n}" }),
    );
    // gzip when accepted, and no Vary at all: the gateway varies on Accept-Encoding itself.
    origin.spec(
        "/catalog/zip",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" }, "gzip": true }),
    );
    origin.spec(
        "/catalog/cookie",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60", "Vary": "Cookie" } }),
    );
    let gw = Gateway::start(&config(&origin, "{ vary: [accept-encoding, accept-language] }"));
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(fetch(&gw, "/catalog/lang", &en).text(), "en n=1");
    assert_eq!(fetch(&gw, "/catalog/lang", &fr).text(), "fr n=2");
    let en_again = fetch(&gw, "/catalog/lang", &en);
    assert_eq!((status(&en_again), en_again.text().as_str()), ("HIT", "en n=1"));
    let fr_again = fetch(&gw, "/catalog/lang", &fr);
    assert_eq!((status(&fr_again), fr_again.text().as_str()), ("HIT", "fr n=2"));
    // A client whose `Connection` names a header removes it from the request that goes
    // upstream, so the answer would be stored under a variant its request never asked for
    // (the default language under `de`): such a request is not the store's.
    let named = fetch(
        &gw,
        "/catalog/lang",
        &[("accept-language", "de"), ("connection", "Accept-Language")],
    );
    assert_eq!((status(&named), named.text().as_str()), ("BYPASS", " n=3"));
    let de = fetch(&gw, "/catalog/lang", &[("accept-language", "de")]);
    assert_eq!((status(&de), de.text().as_str()), ("MISS", "de n=4"));

    let zipped = fetch(&gw, "/catalog/zip", &[("accept-encoding", "gzip")]);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let zipped = fetch(&gw, "/catalog/zip", &[("accept-encoding", "gzip")]);
    assert_eq!(
        (status(&zipped), zipped.header("content-encoding")),
        ("HIT", Some("gzip"))
    );
    let plain = fetch(&gw, "/catalog/zip", &[]);
    assert_eq!(plain.header("content-encoding"), None, "never the gzip body");
    assert_eq!(plain.text(), "path=/catalog/zip n=2");
    let plain = fetch(&gw, "/catalog/zip", &[]);
    assert_eq!((status(&plain), plain.header("content-encoding")), ("HIT", None));

    // Vary on a header outside the list: never stored.
    for _ in 0..2 {
        assert_eq!(status(&fetch(&gw, "/catalog/cookie", &[])), "MISS");
    }
    // Vary: * likewise.
    origin.spec(
        "/catalog/star",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60", "Vary": "*" } }),
    );
    for _ in 0..2 {
        assert_eq!(status(&fetch(&gw, "/catalog/star", &[])), "MISS");
    }
    assert_eq!(origin.hits("/catalog/star", "all"), 2);
}

/// Consumer A never receives consumer B's answer; an answer without `public` is not stored on
/// an authenticated route; `consumer: shared` shares only what the origin made public; and a
/// request without credentials never reaches the store.
#[test]
fn consumers_are_isolated_and_authentication_runs_before_the_store() {
    const A: &str = "pk_live_consumer_a_1";
    const B: &str = "pk_live_consumer_b_2";
    // Consumer `a` again, on another plan: the upstream is told another plan.
    const A_FREE: &str = "pk_live_consumer_a_free_3";
    let origin = Origin::start();
    origin.spec(
        "/catalog/me",
        serde_json::json!({ "headers": { "Cache-Control": "public, max-age=60" } }),
    );
    origin.spec(
        "/catalog/mine",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" } }),
    );
    origin.spec(
        "/shared/me",
        serde_json::json!({ "headers": { "Cache-Control": "public, max-age=60" } }),
    );
    let keys = tempfile::tempdir().expect("tempdir");
    let file = keys.path().join("keys.yaml");
    std::fs::write(
        &file,
        format!(
            "keys:\n  - {{ sha256: {}, consumer: a, plan: gold }}\n  - {{ sha256: {}, consumer: b, plan: gold }}\n  - {{ sha256: {}, consumer: a, plan: free }}\n",
            hash_key(A),
            hash_key(B),
            hash_key(A_FREE)
        ),
    )
    .expect("write keys");
    let gw = Gateway::start(&format!(
        "upstreams:\n  catalog:\n    targets: [\"{}\"]\nauth:\n  keys:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}\n    forward: {{ consumer: X-Consumer-Id, plan: X-Consumer-Plan }}\nroutes:\n  - name: catalog\n    match: {{ path_prefix: /catalog }}\n    upstream: catalog\n    auth: [keys]\n    cache: {{}}\n  - name: shared\n    match: {{ path_prefix: /shared }}\n    upstream: catalog\n    auth: [keys]\n    cache: {{ key: {{ consumer: shared }} }}\n",
        origin.addr(),
        file.display()
    ));
    let as_a = [("x-api-key", A)];
    let as_b = [("x-api-key", B)];
    assert_eq!(fetch(&gw, "/catalog/me", &as_a).text(), "path=/catalog/me n=1");
    let b = fetch(&gw, "/catalog/me", &as_b);
    assert_eq!((status(&b), b.text().as_str()), ("MISS", "path=/catalog/me n=2"));
    let a = fetch(&gw, "/catalog/me", &as_a);
    assert_eq!((status(&a), a.text().as_str()), ("HIT", "path=/catalog/me n=1"));
    let b = fetch(&gw, "/catalog/me", &as_b);
    assert_eq!((status(&b), b.text().as_str()), ("HIT", "path=/catalog/me n=2"));

    // Without credentials: refused before the store, whatever it holds.
    let anonymous = fetch(&gw, "/catalog/me", &[]);
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("x-cache-status"), None);
    let forged = fetch(&gw, "/catalog/me", &[("x-api-key", "pk_live_forged_000")]);
    assert_eq!(forged.status, 401);
    assert_eq!(origin.hits("/catalog/me", "all"), 2);
    // The same consumer with another plan (another identity header upstream): its own entry.
    let free = fetch(&gw, "/catalog/me", &[("x-api-key", A_FREE)]);
    assert_eq!(
        (status(&free), free.text().as_str()),
        ("MISS", "path=/catalog/me n=3")
    );

    // Not public on an authenticated route: never stored.
    for n in 1..=2 {
        let r = fetch(&gw, "/catalog/mine", &as_a);
        assert_eq!(
            (status(&r), r.text()),
            ("MISS", format!("path=/catalog/mine n={n}"))
        );
    }

    // Shared: a public answer serves every consumer.
    assert_eq!(fetch(&gw, "/shared/me", &as_a).text(), "path=/shared/me n=1");
    let b = fetch(&gw, "/shared/me", &as_b);
    assert_eq!((status(&b), b.text().as_str()), ("HIT", "path=/shared/me n=1"));
}

#[test]
fn cookies_private_answers_and_oversize_bodies_are_never_stored() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/cookie",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60", "Set-Cookie": "s=1" } }),
    );
    origin.spec(
        "/catalog/private",
        serde_json::json!({ "headers": { "Cache-Control": "private, max-age=60" } }),
    );
    origin.spec(
        "/catalog/nostore",
        serde_json::json!({ "headers": { "Cache-Control": "no-store" } }),
    );
    origin.spec(
        "/catalog/big",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" }, "size": 4096 }),
    );
    origin.spec(
        "/catalog/bigchunked",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" }, "size": 4096, "chunked": true }),
    );
    origin.spec(
        "/catalog/small",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" }, "size": 1000, "chunked": true }),
    );
    let gw = Gateway::start_with(
        "cache: { max_memory: 1MiB, max_object: 2KiB }",
        &config(&origin, "{}"),
    );
    for path in ["/catalog/cookie", "/catalog/private", "/catalog/nostore"] {
        for _ in 0..2 {
            assert_eq!(status(&fetch(&gw, path, &[])), "MISS", "{path}");
        }
        assert_eq!(origin.hits(path, "all"), 2, "{path}");
    }
    let cookie = fetch(&gw, "/catalog/cookie", &[]);
    assert_eq!(cookie.header("set-cookie"), Some("s=1"), "passed on, not stored");
    // A request with credentials for the origin (a cookie, an Authorization): its answer may
    // be personal, so it is stored only if the origin said `public` (or `s-maxage`).
    origin.spec(
        "/catalog/session",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" } }),
    );
    for credential in [("cookie", "session=alice"), ("authorization", "Bearer alice")] {
        for _ in 0..2 {
            assert_eq!(status(&fetch(&gw, "/catalog/session", &[credential])), "MISS");
        }
    }
    assert_eq!(
        status(&fetch(&gw, "/catalog/session", &[])),
        "MISS",
        "nothing was stored"
    );
    assert_eq!(origin.hits("/catalog/session", "all"), 5);
    for path in ["/catalog/big", "/catalog/bigchunked"] {
        for _ in 0..2 {
            let r = fetch(&gw, path, &[]);
            assert_eq!(
                (r.status, status(&r), r.body.len()),
                (200, "MISS", 4096),
                "{path}"
            );
        }
        assert_eq!(origin.hits(path, "all"), 2, "{path}");
    }
    // A chunked answer within `max_object` is stored.
    fetch(&gw, "/catalog/small", &[]);
    let small = fetch(&gw, "/catalog/small", &[]);
    assert_eq!((status(&small), small.body.len()), ("HIT", 1000));
    assert_eq!(small.header("content-length"), Some("1000"));
}

#[test]
fn purge_by_route_and_path_or_by_prefix_with_the_admin_token() {
    let origin = Origin::start();
    let gw = Gateway::start_env(
        "admin: { addr: \"127.0.0.1:{admin_port}\", token_env: PORTCULLIS_TEST_ADMIN }",
        &config(&origin, "{}"),
        &[("PORTCULLIS_TEST_ADMIN", "purge-token-0123456789")],
    );
    for path in ["/catalog/p1", "/catalog/p1?x=1", "/catalog/p2", "/catalog/q/1"] {
        fetch(&gw, path, &[]);
        assert_eq!(status(&fetch(&gw, path, &[])), "HIT", "{path}");
    }
    let purge = |query: &str, token: &str| {
        request(
            gw.admin(),
            "POST",
            "localhost",
            &format!("/cache/purge?{query}"),
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        )
    };
    assert_eq!(purge("route=catalog&path=/catalog/p1", "wrong-token").status, 401);
    assert_eq!(status(&fetch(&gw, "/catalog/p1", &[])), "HIT", "not purged");
    assert_eq!(purge("path=/catalog/p1", "purge-token-0123456789").status, 400);
    let done = purge("route=catalog&path=/catalog/p1", "purge-token-0123456789");
    assert_eq!((done.status, done.json()["purged"].as_u64()), (200, Some(2)));
    assert_eq!(status(&fetch(&gw, "/catalog/p1", &[])), "MISS");
    assert_eq!(status(&fetch(&gw, "/catalog/p1?x=1", &[])), "MISS");
    assert_eq!(status(&fetch(&gw, "/catalog/p2", &[])), "HIT");
    let done = purge("prefix=catalog:localhost/catalog/q/", "purge-token-0123456789");
    assert_eq!(done.json()["purged"].as_u64(), Some(1));
    assert_eq!(status(&fetch(&gw, "/catalog/q/1", &[])), "MISS");
    assert_eq!(status(&fetch(&gw, "/catalog/p2", &[])), "HIT");
}

#[test]
fn transformed_answers_are_stored_transformed_and_a_reload_never_serves_the_old_shape() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/t",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60", "Content-Type": "application/json" },
                            "body": "{{\"n\": {n}, \"secret\": \"s\"}}" }),
    );
    let route = |drop: &str| {
        format!(
            "upstreams:\n  catalog:\n    targets: [\"{}\"]\nroutes:\n  - name: catalog\n    match: {{ path_prefix: /catalog }}\n    upstream: catalog\n    transform: {{ response: {{ deny: [\"{drop}\"] }} }}\n    cache: {{}}\n",
            origin.addr()
        )
    };
    let gw = Gateway::start(&route("secret"));
    let first = fetch(&gw, "/catalog/t", &[]);
    assert_eq!(
        (status(&first), first.json()),
        ("MISS", serde_json::json!({ "n": 1 }))
    );
    let hit = fetch(&gw, "/catalog/t", &[]);
    assert_eq!((status(&hit), hit.json()), ("HIT", serde_json::json!({ "n": 1 })));
    // Another transform: the entry of the old one is not served.
    let text = std::fs::read_to_string(gw.config_path()).expect("read config");
    std::fs::write(gw.config_path(), text.replace(&route("secret"), &route("n"))).expect("write");
    let reload = request(gw.admin(), "POST", "localhost", "/reload", &[], b"");
    assert_eq!(reload.status, 200, "{}", reload.text());
    let after = fetch(&gw, "/catalog/t", &[]);
    assert_eq!(
        (status(&after), after.json()),
        ("MISS", serde_json::json!({ "secret": "s" }))
    );
}

#[test]
fn requests_the_store_cannot_answer_bypass_it() {
    let origin = Origin::start();
    let gw = Gateway::start(&config(&origin, "{}"));
    fetch(&gw, "/catalog/b", &[]);
    let ranged = fetch(&gw, "/catalog/b", &[("range", "bytes=0-3")]);
    assert_eq!(status(&ranged), "BYPASS");
    assert_eq!(status(&fetch(&gw, "/catalog/b", &[])), "HIT");
    let posted = request(gw.addr(), "POST", "localhost", "/catalog/b", &[], b"{}");
    assert_eq!(status(&posted), "BYPASS");
    assert_eq!(
        posted.text(),
        "posted n=3",
        "never stored, never answered from the store"
    );
    // A successful unsafe request invalidates what was stored for its target (RFC 9111 §4.4).
    let after = fetch(&gw, "/catalog/b", &[]);
    assert_eq!(
        (status(&after), after.text().as_str()),
        ("MISS", "path=/catalog/b n=4")
    );
    // A request that asks nothing be stored is answered but leaves nothing behind.
    let no_store = fetch(&gw, "/catalog/c", &[("cache-control", "no-store")]);
    assert_eq!(status(&no_store), "MISS");
    assert_eq!(status(&fetch(&gw, "/catalog/c", &[])), "MISS");
    assert_eq!(origin.hits("/catalog/b", "all"), 4);
}

/// RFC 9111 §4.4, for every unsafe method: the stored answer goes before the client hears of
/// the success, so the GET it sends next on a new connection (served by either thread's own
/// runtime) is never answered from it. A failed unsafe request leaves the entry alone.
#[test]
fn an_unsafe_request_invalidates_before_it_is_answered() {
    let origin = Origin::start();
    let gw = Gateway::start_with("threads: 2\nwork_stealing: false", &config(&origin, "{}"));
    for round in 0..8 {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let stored = fetch(&gw, "/catalog/u", &[]);
            assert_eq!(stored.status, 200);
            assert_eq!(
                status(&fetch(&gw, "/catalog/u", &[])),
                "HIT",
                "{method} round {round}"
            );
            let changed = request(gw.addr(), method, "localhost", "/catalog/u", &[], b"{}");
            assert_eq!((changed.status, status(&changed)), (200, "BYPASS"), "{method}");
            let after = fetch(&gw, "/catalog/u", &[]);
            assert_eq!(status(&after), "MISS", "{method} round {round}: {}", after.text());
        }
    }
    // A client may act on the status line alone: the entry is gone once it can read it, while
    // the answer's body is still on its way.
    origin.spec("/catalog/u", serde_json::json!({ "unsafe_pause": 1 }));
    assert_eq!(status(&fetch(&gw, "/catalog/u", &[])), "HIT");
    let mut slow = Conn::connect(gw.addr());
    slow.write_raw(&build_request("PUT", "localhost", "/catalog/u", &[], b"{}"))
        .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        std::io::Read::read_exact(slow.stream(), &mut byte).expect("the answer's head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let during = fetch(&gw, "/catalog/u", &[]);
    assert_eq!(status(&during), "MISS", "{}", during.text());
    origin.spec("/catalog/u", serde_json::json!({ "unsafe_status": 409 }));
    let refused = request(gw.addr(), "DELETE", "localhost", "/catalog/u", &[], b"");
    assert_eq!(refused.status, 409);
    assert_eq!(
        status(&fetch(&gw, "/catalog/u", &[])),
        "HIT",
        "a failed DELETE changed nothing"
    );
}

/// An invalidation reaches what `Vary` stored beside the entry (a later answer for one
/// variant must not make the old others reachable again) and the fill that was already asking
/// the upstream when the write succeeded (it answers its client but stores nothing).
#[test]
fn an_invalidation_reaches_every_variant_and_the_fill_in_flight() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/v",
        serde_json::json!({
            "headers": { "Cache-Control": "max-age=60", "Vary": "Accept-Language" },
            "body": "lang={lang} n={n}",
        }),
    );
    let gw = Gateway::start(&config(&origin, "{ vary: [accept-language] }"));
    let in_lang = |lang: &str| fetch(&gw, "/catalog/v", &[("accept-language", lang)]);
    for lang in ["en", "de"] {
        assert_eq!(status(&in_lang(lang)), "MISS");
        assert_eq!(status(&in_lang(lang)), "HIT", "{lang}");
    }
    let put = request(gw.addr(), "PUT", "localhost", "/catalog/v", &[], b"{}");
    assert_eq!(put.status, 200);
    let en = in_lang("en");
    assert_eq!(status(&en), "MISS", "{}", en.text());
    let de = in_lang("de");
    assert_eq!(
        (status(&de), de.text().starts_with("lang=de")),
        ("MISS", true),
        "the old de variant came back: {}",
        de.text()
    );

    // A slow answer is being fetched for the store when a PUT succeeds.
    origin.spec("/catalog/f", serde_json::json!({ "delay": 2 }));
    let addr = gw.addr();
    let filling = std::thread::spawn(move || request(addr, "GET", "localhost", "/catalog/f", &[], b""));
    // It reaches the origin in milliseconds; the origin holds it for 2 s.
    std::thread::sleep(Duration::from_millis(500));
    let put = request(gw.addr(), "PUT", "localhost", "/catalog/f", &[], b"{}");
    assert_eq!(put.status, 200);
    assert!(!filling.is_finished(), "the fill is still in flight");
    let filled = filling.join().expect("the filling request");
    assert_eq!((filled.status, status(&filled)), (200, "MISS"));
    let after = fetch(&gw, "/catalog/f", &[]);
    assert_eq!(status(&after), "MISS", "the fill stored what the PUT invalidated");
}

#[test]
fn check_refuses_what_cannot_be_cached() {
    let out = check(
        "server:\n  listen: [\"127.0.0.1:8080\"]\n  cache: { max_memory: 1KiB, max_object: 2MiB }\nupstreams:\n  a:\n    targets: [\"127.0.0.1:9\"]\nroutes:\n  - name: r\n    match: { path_prefix: /r }\n    upstream: a\n    cache: { methods: [POST], statuses: [206, 200], ttl: 2d, key: { consumer: everyone } }\n  - name: w\n    match: { path_prefix: /w }\n    upstream: a\n    websocket: true\n    cache: {}\n  - name: m\n    match: { path_prefix: /m }\n    upstream: a\n    transform: { request: { method: POST } }\n    cache: {}\n",
    );
    out.assert_reports(&[
        "server.cache.max_memory",
        "server.cache.max_object",
        "routes[0].cache.methods[0]",
        "routes[0].cache.statuses[0]",
        "routes[0].cache.ttl",
        "routes[0].cache.key.consumer",
        "routes[1].cache",
        "routes[2].cache",
    ]);
}

/// 100,000 distinct keys through a store of 1 MiB: what it holds stays within it, the least
/// used are evicted, and the gateway's memory stays bounded.
#[test]
fn memory_stays_bounded_under_a_hundred_thousand_distinct_keys() {
    // The echoing upstream (faster than the Python origin): no Cache-Control, so `ttl`.
    let up = Upstream::start("catalog");
    let gw = Gateway::start_with(
        "cache: { max_memory: 1MiB, max_object: 64KiB }",
        &format!(
            "upstreams:\n  catalog:\n    targets: [\"{}\"]\nroutes:\n  - name: catalog\n    match: {{ path_prefix: /catalog }}\n    upstream: catalog\n    cache: {{ ttl: 600s }}\n",
            up.addr()
        ),
    );
    let addr = gw.addr();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            s.spawn(move || {
                let mut conn = Conn::connect(addr);
                for i in 0..50_000u32 {
                    let req = format!("GET /catalog/k?id={t}-{i} HTTP/1.1\r\nHost: localhost\r\n\r\n");
                    let r = match conn.send(req.as_bytes()) {
                        Ok(r) => r,
                        Err(_) => {
                            conn = Conn::connect(addr);
                            conn.send(req.as_bytes()).expect("resend")
                        }
                    };
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    let m = gw.metrics();
    let bytes = sum_metric(&m, "portcullis_cache_stored", &[("what", "bytes")]);
    assert!(
        bytes > 0.0 && bytes <= (1 << 20) as f64 * 1.1,
        "stored bytes {bytes}"
    );
    let evicted = sum_metric(&m, "portcullis_cache_evictions_total", &[("reason", "size")]);
    assert!(evicted > 50_000.0, "evicted {evicted}");
    let rss = sum_metric(&m, "process_resident_memory_bytes", &[]);
    assert!(rss < 200.0 * 1024.0 * 1024.0, "resident {rss}");
}

/// A hit's `Age` is written before the route's response rules, which can still remove it (a
/// route that hides how stale its answers are) or set their own.
#[test]
fn the_routes_response_rules_apply_to_a_hits_age() {
    let origin = Origin::start();
    origin.spec(
        "/catalog/h",
        serde_json::json!({ "headers": { "Cache-Control": "max-age=60" } }),
    );
    let hidden = config(&origin, "{ ttl: 60s }").replace(
        "    cache:",
        "    response_headers: { remove: [age], set: { x-rules: applied } }\n    cache:",
    );
    let gw = Gateway::start(&hidden);
    assert_eq!(status(&fetch(&gw, "/catalog/h", &[])), "MISS");
    let hit = fetch(&gw, "/catalog/h", &[]);
    assert_eq!((hit.status, status(&hit)), (200, "HIT"));
    assert_eq!(hit.header("x-rules"), Some("applied"), "the rules ran on the hit");
    assert_eq!(hit.header_all("age"), Vec::<&str>::new(), "and removed its age");
}
