//! The Redis topology launchers of the test support, exercised for real so the gateway tests
//! built on them can trust them: a TLS server (with and without client certificates), ACL
//! users, Sentinel (manual failover, master crash) and Cluster (hash tags, a live slot
//! migration with ASK and MOVED, a master crash that promotes its replica).

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use support::*;

/// `redis-cli` over TLS to `redis`, trusting its CA, with extra `args` (a client certificate).
fn tls_cli(redis: &Redis, args: &[&str], command: &[&str]) -> CliOutput {
    let ca = redis.ca_file();
    let port = redis.tls_port().to_string();
    let mut all = vec!["--tls", "--cacert", ca.to_str().expect("utf-8 path")];
    all.extend(["-h", "127.0.0.1", "-p", &port]);
    all.extend(args);
    all.extend(command);
    redis_cli(&all)
}

/// `SET key value` and `WAIT 1 5000` on one connection (WAIT counts the replicas that
/// acknowledged this connection's writes; on a new connection it would not wait at all).
fn set_and_wait(port: u16, key: &str, value: &str) -> Vec<String> {
    pipeline_at(port, &[&["SET", key, value], &["WAIT", "1", "5000"]])
}

fn timing(what: &str, started: Instant) {
    eprintln!("[timing] {what}: {:.2}s", started.elapsed().as_secs_f64());
}

#[test]
fn tls_server_answers_over_tls_and_after_a_restart() {
    let started = Instant::now();
    let pki = Pki::new("redis tls test CA");
    let mut redis = Redis::start_tls(&pki, false);
    let ca = &pki.ca.issued.cert;
    assert_eq!(
        redis.tls_url(),
        format!("rediss://127.0.0.1:{}", redis.tls_port())
    );
    assert_ne!(redis.tls_port(), redis.port());

    let out = tls_cli(&redis, &[], &["PING"]);
    assert!(
        out.success && out.stdout.trim() == "PONG",
        "redis-cli --tls PING: {out:?}"
    );

    // Verified with hostname checking, for the IP and for localhost; a name the certificate
    // does not carry fails, so the checks above mean something.
    assert_eq!(
        redis.tls_command(ca, None, &["SET", "over-tls", "yes"]),
        Ok("+OK".to_string())
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], redis.tls_port()));
    tls_connect(addr, "localhost", ca, &TlsOptions::default()).expect("TLS as localhost");
    let wrong = tls_connect(addr, "redis.example", ca, &TlsOptions::default());
    assert!(wrong.is_err(), "a certificate for another name must not verify");
    // Same server on the plain port.
    assert_eq!(redis.command(&["GET", "over-tls"]), "$3\nyes");

    let tls_port = redis.tls_port();
    redis.kill();
    assert!(
        redis.tls_command(ca, None, &["PING"]).is_err(),
        "killed server answered"
    );
    redis.restart();
    assert_eq!(redis.tls_port(), tls_port, "restart keeps the TLS port");
    assert_eq!(redis.tls_command(ca, None, &["PING"]), Ok("+PONG".to_string()));
    assert_eq!(
        redis.command(&["EXISTS", "over-tls"]),
        ":0",
        "restart empties the dataset"
    );
    timing("tls server", started);
}

#[test]
fn tls_server_with_client_auth_requires_a_client_certificate() {
    let started = Instant::now();
    let pki = Pki::new("redis mtls test CA");
    let redis = Redis::start_tls(&pki, true);
    let ca = &pki.ca.issued.cert;
    let client = pki.client(&["rate-limiter"]);
    let (cert, key) = client
        .write(pki.path(), "rate-limiter", &[])
        .expect("write client certificate");

    let refused = tls_cli(&redis, &[], &["PING"]);
    assert!(
        !refused.success && !refused.stdout.contains("PONG"),
        "no client certificate must be refused: {refused:?}"
    );
    let with_cert = [
        "--cert",
        cert.to_str().expect("utf-8 path"),
        "--key",
        key.to_str().expect("utf-8 path"),
    ];
    let out = tls_cli(&redis, &with_cert, &["PING"]);
    assert!(
        out.success && out.stdout.trim() == "PONG",
        "with a client certificate: {out:?}"
    );

    let none = redis.tls_command(ca, None, &["PING"]);
    assert!(none.is_err(), "no client certificate, yet: {none:?}");
    assert_eq!(
        redis.tls_command(ca, Some(&client), &["PING"]),
        Ok("+PONG".to_string())
    );
    let stranger = Pki::new("another CA").client(&["rate-limiter"]);
    let other = redis.tls_command(ca, Some(&stranger), &["PING"]);
    assert!(other.is_err(), "a certificate from another CA, yet: {other:?}");
    timing("tls server with client auth", started);
}

#[test]
fn acl_user_authenticates_and_a_wrong_password_is_refused() {
    let started = Instant::now();
    // A default password too: add_acl_user has to authenticate itself first.
    let redis = Redis::start_with_password(Some("admin-pw"));
    redis.add_acl_user("limiter", "limiter-pw");

    let replies = pipeline_at(
        redis.port(),
        &[
            &["AUTH", "limiter", "limiter-pw"],
            &["ACL", "WHOAMI"],
            &["SET", "acl-key", "1"],
        ],
    );
    assert_eq!(replies, ["+OK", "$7\nlimiter", "+OK"]);

    let wrong = command_at(redis.port(), None, &["AUTH", "limiter", "wrong"]);
    assert!(
        wrong.starts_with("-WRONGPASS"),
        "AUTH with a wrong password: {wrong}"
    );
    let anonymous = command_at(redis.port(), None, &["GET", "acl-key"]);
    assert!(anonymous.starts_with("-NOAUTH"), "GET without AUTH: {anonymous}");

    // The URL form the gateway is configured with.
    let url = format!("redis://limiter:limiter-pw@127.0.0.1:{}", redis.port());
    let out = redis_cli(&["--no-auth-warning", "-u", &url, "GET", "acl-key"]);
    assert!(
        out.success && out.stdout.trim() == "1",
        "redis-cli -u {url}: {out:?}"
    );
    timing("acl", started);
}

#[test]
fn sentinel_failover_moves_the_master() {
    let started = Instant::now();
    let setup = Sentinel::start("portcullis", 3);
    timing("sentinel start (3 sentinels)", started);
    assert_eq!(setup.sentinel_addrs().len(), 3);
    assert_eq!(setup.master_name(), "portcullis");
    let old = setup.master_port();
    assert_eq!(old, setup.data_ports()[0], "the first data node starts as master");
    assert_eq!(set_and_wait(old, "before", "1"), ["+OK", ":1"], "replicated");

    let failing_over = Instant::now();
    let new = setup.failover();
    timing("sentinel manual failover", failing_over);
    assert_ne!(new, old);
    assert_eq!(setup.master_port(), new);
    for addr in setup.sentinel_addrs() {
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let reply = command_at(port, None, &["SENTINEL", "get-master-addr-by-name", "portcullis"]);
        assert!(reply.ends_with(&format!("\n{new}")), "sentinel {addr}: {reply}");
    }
    assert_eq!(setup.command_master(&["SET", "after", "2"]), "+OK");
    assert_eq!(setup.command_master(&["GET", "before"]), "$1\n1", "data kept");

    let settling = Instant::now();
    setup.wait_settled();
    timing("old master turned into a replica", settling);
    assert_eq!(setup.replica_port(), old);
    assert_eq!(role_at(old), "slave");
    timing("sentinel failover test", started);
}

#[test]
fn sentinel_promotes_the_replica_when_the_master_dies() {
    let started = Instant::now();
    let mut setup = Sentinel::start("crash", 3);
    timing("sentinel start (3 sentinels)", started);
    let old = setup.master_port();
    assert_eq!(set_and_wait(old, "survives", "yes"), ["+OK", ":1"], "replicated");

    let killing = Instant::now();
    let new = setup.kill_master();
    timing("sentinel promotion after master SIGKILL", killing);
    assert_ne!(new, old);
    assert_eq!(setup.master_port(), new);
    assert_eq!(setup.command_master(&["GET", "survives"]), "$3\nyes");
    assert_eq!(setup.command_master(&["SET", "written-after", "1"]), "+OK");

    let restarting = Instant::now();
    setup.restart_node(old);
    timing("killed master back as replica", restarting);
    assert_eq!(role_at(old), "slave");
    assert_eq!(command_at(old, None, &["GET", "survives"]), "$3\nyes", "resynced");
    timing("sentinel crash test", started);
}

#[test]
fn cluster_hash_tags_and_a_live_slot_move() {
    let started = Instant::now();
    let cluster = Cluster::start(3, 0);
    timing("cluster start (3 masters)", started);
    assert_eq!(cluster.nodes().len(), 3);
    assert_eq!(cluster.masters().len(), 3);

    // One hash tag, one slot, one node: multi-key commands work there.
    let (a, b) = ("{user:42}:minute", "{user:42}:hour");
    let slot = cluster.slot_of(a);
    assert_eq!(cluster.slot_of(b), slot);
    assert_eq!(cluster.slot_of("user:42"), slot, "the tag alone hashes the same");
    let owner = cluster.node_for_key(a);
    assert_eq!(cluster.command(owner, &["MSET", a, "1", b, "2"]), "+OK");
    let cross = cluster.command(owner, &["MSET", "plain-a", "1", "plain-b", "2"]);
    assert!(cross.starts_with("-CROSSSLOT"), "keys of two slots: {cross}");
    let elsewhere = cluster.master_ports().into_iter().find(|p| *p != owner).unwrap();
    let moved = cluster.command(elsewhere, &["GET", a]);
    assert_eq!(moved, format!("-MOVED {slot} 127.0.0.1:{owner}"));

    // Mid-migration: keys still on the owner are served there, others are ASKed for.
    let moving = Instant::now();
    cluster.begin_move_slot(slot, elsewhere);
    assert_eq!(cluster.command(owner, &["GET", a]), "$1\n1");
    let ask = cluster.command(owner, &["SET", "{user:42}:new", "3"]);
    assert_eq!(ask, format!("-ASK {slot} 127.0.0.1:{elsewhere}"));
    cluster.migrate_slot_keys(slot, elsewhere);
    let ask = cluster.command(owner, &["GET", a]);
    assert_eq!(ask, format!("-ASK {slot} 127.0.0.1:{elsewhere}"), "key migrated");
    cluster.finish_move_slot(slot, elsewhere);
    timing("slot move", moving);

    assert_eq!(cluster.node_for_key(a), elsewhere);
    let moved = cluster.command(owner, &["GET", b]);
    assert_eq!(moved, format!("-MOVED {slot} 127.0.0.1:{elsewhere}"));
    let port = owner.to_string();
    let out = redis_cli(&["-c", "-h", "127.0.0.1", "-p", &port, "GET", b]);
    assert!(
        out.success && out.stdout.trim() == "2",
        "redis-cli -c follows MOVED: {out:?}"
    );
    // And a whole move in one go, back to where it was.
    cluster.move_slot(slot, owner);
    assert_eq!(cluster.node_for_key(a), owner);
    assert_eq!(cluster.command(owner, &["MGET", a, b]), "*2\n$1\n1\n$1\n2");
    timing("cluster slot test", started);
}

#[test]
fn cluster_master_crash_promotes_its_replica() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3, 1);
    timing("cluster start (3 masters, 3 replicas)", started);
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.masters().len(), 3);
    let key = "{tenant:7}:window";
    let slot = cluster.slot_of(key);
    let owner = cluster.node_for_key(key);
    let replicas = cluster.replicas_of(owner);
    assert_eq!(replicas.len(), 1);
    assert_eq!(set_and_wait(owner, key, "42"), ["+OK", ":1"], "replicated");

    let killing = Instant::now();
    let killed = cluster.kill_master_of_slot(slot);
    timing("cluster replica promotion after master SIGKILL", killing);
    assert_eq!(killed, owner);
    let promoted = cluster.node_for_key(key);
    assert_eq!(promoted, replicas[0]);
    assert_eq!(role_at(promoted), "master");
    assert_eq!(cluster.nodes().len(), 5);
    let got = cluster.command(promoted, &["GET", key]);
    assert_eq!(
        got,
        "$2\n42",
        "the promoted replica lost the key\n{}",
        cluster.log_tails()
    );
    let port = cluster.master_ports()[0].to_string();
    let out = redis_cli(&["-c", "-h", "127.0.0.1", "-p", &port, "INCR", key]);
    assert!(
        out.success && out.stdout.trim() == "43",
        "redis-cli -c after the failover: {out:?}"
    );

    let restarting = Instant::now();
    cluster.restart_node(killed);
    timing("killed master back as replica", restarting);
    assert_eq!(role_at(killed), "slave");
    assert_eq!(cluster.replicas_of(promoted), [killed]);
    timing("cluster crash test", started);
}
