//! The shared rate-limit store in the topologies a fleet runs: a TLS-only Redis with client
//! certificates and an ACL user, Redis Sentinel through a master crash and a manual failover,
//! and a Redis Cluster through a live slot migration and a master crash. Real redis-server
//! processes on loopback (tests/support/redis.rs), real gateways; each failure is attacked and
//! the upstream is checked never to see a request the store could not admit.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const SECRET: &str = "fleet-test-key-secret-0123456789abcdef";

/// Routes `/strict` (3 per hour, refused when the store fails) and `/open` (a high limit,
/// admitted when the store fails), both counted by `x-user` in Redis.
fn gateway(up: &Upstream, redis: &str, env: &[(&str, &str)]) -> Gateway {
    let body = format!(
        "upstreams:\n  app:\n    targets: [\"{}\"]\nredis: {redis}\nrate_limits:\n  strict:\n    key: header:x-user\n    limits: [{{ requests: 3, per: 1h }}]\n    store: redis\n    on_store_error: deny\n  strict-minute:\n    key: header:x-user\n    limits: [{{ requests: 100, per: 1m }}]\n    store: redis\n    on_store_error: deny\n  open:\n    key: header:x-user\n    limits: [{{ requests: 1000000, per: 1s }}]\n    store: redis\n    on_store_error: allow\nroutes:\n  - {{ name: strict, match: {{ path_prefix: /strict }}, upstream: app, rate_limit: [strict, strict-minute] }}\n  - {{ name: open, match: {{ path_prefix: /open }}, upstream: app, rate_limit: [open] }}\n",
        up.addr()
    );
    Gateway::start_env("", &body, env)
}

fn keyed(addr: SocketAddr, path: &str, user: &str) -> Response {
    request(addr, "GET", "localhost", path, &[("x-user", user)], b"")
}

/// `RateLimit` says the request was counted in Redis (a store failure under `allow` sends none).
fn counted(r: &Response) -> bool {
    r.status == 200 && r.header("ratelimit").is_some()
}

/// The first 16 bytes of HMAC-SHA-256(secret, value), hex: the hash tag a key carries.
fn tag(value: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mac = aws_lc_rs::hmac::sign(&key, value.as_bytes());
    mac.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Requests to `/open` from one connection until `stop`: every status seen.
fn background_load(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let mut conn = Conn::connect(addr);
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
            let req = b"GET /open HTTP/1.1\r\nHost: localhost\r\nx-user: load\r\n\r\n";
            match conn.send(req) {
                Ok(r) => statuses.push(r.status),
                Err(_) => {
                    statuses.push(0);
                    conn = Conn::connect(addr);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        statuses
    })
}

fn assert_no_gateway_failure(statuses: &[u16]) {
    assert!(statuses.len() > 50, "the load ran: {} requests", statuses.len());
    let bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        bad.is_empty(),
        "every /open request is admitted (on_store_error: allow), never a 5xx or a dropped connection: {} of {} were {:?}",
        bad.len(),
        statuses.len(),
        bad.iter().take(10).collect::<Vec<_>>()
    );
}

#[test]
fn tls_with_a_client_certificate_and_an_acl_user_and_every_broken_credential_refused() {
    let pki = Pki::new("redis fleet ca");
    let redis = Redis::start_tls(&pki, true);
    redis.add_acl_user("gateway", "gateway-password-42");
    let up = Upstream::start("app");
    let client = pki.client(&["gateway"]);
    let (cert, key) = client
        .write(pki.path(), "gateway-client", &[])
        .expect("write client certificate");
    let ca = pki.ca_file.display().to_string();
    let tls = |ca: &str, client: bool| {
        let client = if client {
            format!(
                ", client_cert: \"{}\", client_key: \"{}\"",
                cert.display(),
                key.display()
            )
        } else {
            String::new()
        };
        format!("{{ ca: \"{ca}\"{client} }}")
    };
    let config = |tls: &str| {
        format!(
            "{{ url: \"{}\", username: gateway, password_env: FLEET_REDIS_PASSWORD, key_secret_env: FLEET_KEY_SECRET, tls: {tls}, timeout: 2s, breaker: {{ failures: 1, open_for: 10m }} }}",
            redis.tls_url()
        )
    };
    let env = [
        ("FLEET_REDIS_PASSWORD", "gateway-password-42"),
        ("FLEET_KEY_SECRET", SECRET),
    ];

    let gw = gateway(&up, &config(&tls(&ca, true)), &env);
    for _ in 0..3 {
        assert!(counted(&keyed(gw.addr(), "/strict", "alice")));
    }
    let refused = keyed(gw.addr(), "/strict", "alice");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["violated-policies"][0], "strict");
    assert_eq!(up.count(), 3);
    let keys = redis.command(&["KEYS", "*"]);
    let tagged = format!("portcullis:{{{}}}:tb:strict:3600000", tag("alice"));
    assert!(
        keys.contains(&tagged),
        "the key is the HMAC of the client key, in the hash tag: {tagged} in {keys}"
    );
    assert!(!keys.contains("alice"), "{keys}");
    assert!(!gw.log().contains("gateway-password-42"));
    assert!(
        !gw.log().contains("no redis.key_secret_env"),
        "no warning with a secret"
    );

    // Every broken credential is a store failure: on_store_error: deny refuses, and the
    // upstream never sees the request.
    let other_ca = Pki::new("some other ca");
    let wrong_password = [
        ("FLEET_REDIS_PASSWORD", "not-the-password"),
        ("FLEET_KEY_SECRET", SECRET),
    ];
    let broken = [
        ("no client certificate", config(&tls(&ca, false)), &env),
        (
            "a CA that did not sign the server",
            config(&tls(&other_ca.ca_file.display().to_string(), true)),
            &env,
        ),
        ("a wrong ACL password", config(&tls(&ca, true)), &wrong_password),
    ];
    for (what, config, env) in broken {
        let gw = gateway(&up, &config, env);
        let r = keyed(gw.addr(), "/strict", "bob");
        assert_eq!(r.status, 429, "{what}: refused while the store cannot be used");
        assert!(
            r.text().contains("cannot be checked right now"),
            "{what}: {}",
            r.text()
        );
        assert_eq!(up.count(), 3, "{what}: the upstream never saw it");
        let failures = gw.metric("portcullis_ratelimit_store_errors_total", &[("kind", "connect")])
            + gw.metric("portcullis_ratelimit_store_errors_total", &[("kind", "io")]);
        assert!(failures >= 1.0, "{what}: counted as a store error");
        assert!(!gw.log().contains("not-the-password"), "{what}");
    }
}

#[test]
fn sentinel_master_crash_and_manual_failover_are_followed_without_a_gateway_error() {
    let mut sentinel = Sentinel::start("fleet", 3);
    let up = Upstream::start("app");
    // The first sentinel listed accepts connections and never answers (a hung host): the
    // gateway must still find the master through the others, although one lookup takes
    // longer than a decision's timeout.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut nodes = vec![format!("\"{}\"", hung.local_addr().expect("addr"))];
    nodes.extend(sentinel.sentinel_addrs().iter().map(|a| format!("\"{a}\"")));
    // The breaker never opens here (it would drop the connections by itself): what follows
    // the failover is the connection handling alone (a dead primary, then READONLY). The
    // decision timeout (400 ms) is still shorter than one lookup past the hung sentinel (the
    // crate's 500 ms response timeout), but long enough that a loaded CI machine does not time
    // out a decision the exact counts below depend on.
    let config = format!(
        "{{ sentinel: {{ master: fleet, nodes: [{}] }}, timeout: 400ms, breaker: {{ failures: 1000, open_for: 200ms }} }}",
        nodes.join(", ")
    );
    let gw = gateway(&up, &config, &[]);
    wait_for(
        "the master found past the hung sentinel",
        Duration::from_secs(45),
        || counted(&keyed(gw.addr(), "/open", "warm-up")).then_some(()),
    );
    for _ in 0..2 {
        assert!(counted(&keyed(gw.addr(), "/strict", "carol")));
    }
    let first = sentinel.master_port();
    // The count is on the master and replicated before the crash.
    let carol = hash_tag_of_plain("carol");
    let on = |port: u16| {
        command_at(
            port,
            None,
            &["HGET", &format!("portcullis:{carol}:tb:strict:3600000"), "t"],
        )
    };
    let counted_t = on(first);
    assert!(!counted_t.is_empty() && !counted_t.contains("nil"), "{counted_t}");
    wait_for("the count replicated", Duration::from_secs(10), || {
        (on(sentinel.replica_port()) == counted_t).then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(gw.addr(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let promoted = sentinel.kill_master();
    assert_ne!(promoted, first);
    // Decisions resume on the promoted replica: a new client is counted there.
    wait_for(
        "decisions counted on the promoted master",
        Duration::from_secs(45),
        || {
            let r = keyed(gw.addr(), "/open", "after-crash");
            (counted(&r)
                && command_at(promoted, None, &["KEYS", "*"]).contains(&hash_tag_of_plain("after-crash")))
            .then_some(())
        },
    );
    // Manual failover: the old primary (the crashed one, restarted as a replica) takes over
    // again, and the promoted one turns replica: the gateway's connection gets READONLY (or
    // is closed) and it asks the sentinels again.
    sentinel.restart_node(first);
    sentinel.wait_settled();
    let back = sentinel.failover();
    sentinel.wait_settled();
    // Normally the old primary (`first`); should the sentinels have failed over by themselves
    // meanwhile (a loaded machine), the manual failover goes the other way, and the gateway must
    // follow that just the same.
    wait_for(
        "decisions counted on the master after the failover",
        Duration::from_secs(45),
        || {
            let r = keyed(gw.addr(), "/open", "after-failover");
            (counted(&r)
                && command_at(back, None, &["KEYS", "*"]).contains(&hash_tag_of_plain("after-failover")))
            .then_some(())
        },
    );
    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().expect("load thread");
    assert_no_gateway_failure(&statuses);
    // The strict client's usage survived both switches: 2 of 3 used, one more admitted.
    let admitted = (0..4)
        .filter(|_| keyed(gw.addr(), "/strict", "carol").status == 200)
        .count();
    assert_eq!(admitted, 1, "2 of 3 were used before the crash and the failover");
}

/// The hash tag of a client key when no secret is configured (SHA-256).
fn hash_tag_of_plain(value: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    let hex: String = d.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{{{hex}}}")
}

#[test]
fn cluster_keeps_a_decision_in_one_slot_and_follows_a_slot_move_and_a_master_crash() {
    let mut cluster = Cluster::start(3, 1);
    let up = Upstream::start("app");
    let seeds: Vec<String> = cluster
        .masters()
        .iter()
        .take(1)
        .map(|a| format!("\"{a}\""))
        .collect();
    let config = format!(
        "{{ cluster: [{}], timeout: 300ms, breaker: {{ failures: 3, open_for: 200ms }} }}",
        seeds.join(", ")
    );
    let gw = gateway(&up, &config, &[]);
    // Two policies, two keys, one script: no CROSSSLOT because both carry the same tag.
    for _ in 0..2 {
        assert!(counted(&keyed(gw.addr(), "/strict", "dave")));
    }
    let tag = hash_tag_of_plain("dave");
    let slot = cluster.slot_of(&tag);
    let owner = cluster.owner_of_slot(slot);
    let keys = cluster.command(owner, &["KEYS", "*"]);
    assert!(
        keys.contains(&format!("{tag}:tb:strict:3600000"))
            && keys.contains(&format!("{tag}:tb:strict-minute:60000")),
        "both windows on the slot's owner: {keys}"
    );

    // A live slot move: the client is redirected (MOVED) and the count moved with the keys.
    let to = cluster
        .master_ports()
        .into_iter()
        .find(|p| *p != owner)
        .expect("another master");
    cluster.move_slot(slot, to);
    assert!(
        counted(&keyed(gw.addr(), "/strict", "dave")),
        "the third of 3, on the new owner"
    );
    let refused = keyed(gw.addr(), "/strict", "dave");
    assert_eq!(refused.status, 429, "the count moved with the slot");
    assert_eq!(up.count(), 3);

    // Mid-migration: the keys are already on the target while the slot still belongs to the
    // source, which answers ASK; the decision follows it (ASKING) and reads the moved count.
    assert!(counted(&keyed(gw.addr(), "/strict", "erin")));
    let erin = cluster.slot_of(&hash_tag_of_plain("erin"));
    let erin_owner = cluster.owner_of_slot(erin);
    let erin_to = cluster
        .master_ports()
        .into_iter()
        .find(|p| *p != erin_owner)
        .expect("another master");
    cluster.begin_move_slot(erin, erin_to);
    cluster.migrate_slot_keys(erin, erin_to);
    for _ in 0..2 {
        assert!(
            counted(&keyed(gw.addr(), "/strict", "erin")),
            "followed ASK to the importing node"
        );
    }
    assert_eq!(
        keyed(gw.addr(), "/strict", "erin").status,
        429,
        "the count read through ASK is the migrated one"
    );
    cluster.finish_move_slot(erin, erin_to);
    assert_eq!(keyed(gw.addr(), "/strict", "erin").status, 429);
    assert_eq!(up.count(), 6);

    // A master crash under load: its replica is promoted, decisions resume, no gateway error.
    let stop = Arc::new(AtomicBool::new(false));
    let load = background_load(gw.addr(), Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(300));
    let load_slot = cluster.slot_of(&hash_tag_of_plain("load"));
    cluster.kill_master_of_slot(load_slot);
    wait_for(
        "decisions counted after the promotion",
        Duration::from_secs(20),
        || counted(&keyed(gw.addr(), "/open", "load")).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().expect("load thread");
    assert_no_gateway_failure(&statuses);
    assert_eq!(
        keyed(gw.addr(), "/strict", "dave").status,
        429,
        "still limited after the crash"
    );
}
