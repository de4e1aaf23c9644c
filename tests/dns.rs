//! Host-name targets follow DNS: a name server written by the test on loopback answers for
//! `svc.portcullis.test`, and its answers change while the gateway runs.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// What the test name server answers for every A query.
#[derive(Clone)]
enum Answer {
    Addresses(Vec<Ipv4Addr>),
    ServFail,
    Silence,
    /// `A` fails (SERVFAIL) while `AAAA` answers `::1`: a transient failure must not swap a
    /// dual-stack name's IPv4 targets for IPv6 ones.
    OnlyAaaa,
}

/// A minimal authoritative DNS server over UDP: A queries get `answer` (TTL 1 s), other
/// types an empty NOERROR answer.
struct NameServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    queries: Arc<Mutex<usize>>,
}

impl NameServer {
    fn start(answer: Answer) -> NameServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the name server");
        let addr = socket.local_addr().expect("name server address");
        let answer = Arc::new(Mutex::new(answer));
        let queries = Arc::new(Mutex::new(0));
        let (a, q) = (Arc::clone(&answer), Arc::clone(&queries));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                *q.lock().unwrap() += 1;
                let current = a.lock().unwrap().clone();
                if let Some(reply) = reply(&buf[..n], &current) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        NameServer {
            addr,
            answer,
            queries,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn queries(&self) -> usize {
        *self.queries.lock().unwrap()
    }
}

/// The response to `query`: its header and question echoed, then the answers.
fn reply(query: &[u8], answer: &Answer) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    end += 5;
    let qtype = u16::from_be_bytes([*query.get(end - 4)?, *query.get(end - 3)?]);
    let ips: Vec<Vec<u8>> = match answer {
        Answer::Silence => return None,
        Answer::ServFail => Vec::new(),
        Answer::Addresses(ips) if qtype == 1 => ips.iter().map(|ip| ip.octets().to_vec()).collect(),
        Answer::Addresses(_) => Vec::new(),
        Answer::OnlyAaaa if qtype == 28 => vec![std::net::Ipv6Addr::LOCALHOST.octets().to_vec()],
        Answer::OnlyAaaa => Vec::new(),
    };
    let failed = matches!(answer, Answer::ServFail) || (matches!(answer, Answer::OnlyAaaa) && qtype == 1);
    let rcode = if failed { 2 } else { 0 };
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x85, 0x80 | rcode]);
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..end]);
    for ip in ips {
        out.extend_from_slice(&[0xc0, 0x0c, 0, qtype as u8, 0, 1, 0, 0, 0, 1, 0, ip.len() as u8]);
        out.extend_from_slice(&ip);
    }
    Some(out)
}

const NAME: &str = "svc.portcullis.test";

fn config(port: u16) -> String {
    format!(
        "upstreams:\n  app:\n    targets: [\"{NAME}:{port}\"]\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n"
    )
}

fn dns_settings(ns: &NameServer) -> String {
    format!(
        "dns: {{ nameservers: [\"{}\"], refresh: 200ms, timeout: 500ms }}\n",
        ns.addr
    )
}

/// `n` requests; every one must succeed.
fn send(gw: &Gateway, n: usize) {
    for _ in 0..n {
        let r = gw.get("/");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn host_name_targets_follow_dns_and_keep_the_last_good_set_when_resolution_fails() {
    let a = Upstream::start("a");
    let port = a.addr().port();
    // 127.0.0.2 is loopback too: the second address of the name, on the same port.
    let b = Upstream::start_on("b", SocketAddr::from(([127, 0, 0, 2], port)));
    let ns = NameServer::start(Answer::Addresses(vec![Ipv4Addr::new(127, 0, 0, 1)]));
    let gw = Gateway::start_with(&dns_settings(&ns), &config(port));
    send(&gw, 10);
    assert_eq!((a.count(), b.count()), (10, 0), "one address: one target");
    let label = |ip: &str| format!("{NAME}:{port} ({ip}:{port})");
    assert_eq!(
        gw.metric(
            "portcullis_upstream_healthy",
            &[("upstream", "app"), ("target", &label("127.0.0.1"))]
        ),
        1.0,
        "each address is a target with its own series:\n{}",
        gw.metrics()
    );

    // The name gains an address: it becomes a target without a reload.
    ns.set(Answer::Addresses(vec![
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
    ]));
    wait_for(
        "the second address to receive requests",
        Duration::from_secs(15),
        || {
            send(&gw, 4);
            (b.count() > 0).then_some(())
        },
    );
    assert!(gw.log().contains("now resolves to [127.0.0.1:"), "{}", gw.log());
    a.reset();
    b.reset();
    send(&gw, 20);
    assert_eq!(
        (a.count(), b.count()),
        (10, 10),
        "round robin over both addresses"
    );

    // Resolution fails (SERVFAIL, then no answer at all): the last good set stays.
    for failure in [Answer::ServFail, Answer::OnlyAaaa, Answer::Silence] {
        let before = sum_metric(
            &gw.metrics(),
            "portcullis_upstream_dns_failures_total",
            &[("upstream", "app")],
        );
        ns.set(failure);
        wait_for("a counted resolution failure", Duration::from_secs(15), || {
            let now = sum_metric(
                &gw.metrics(),
                "portcullis_upstream_dns_failures_total",
                &[("upstream", "app")],
            );
            (now >= before + 2.0).then_some(())
        });
        a.reset();
        b.reset();
        send(&gw, 20);
        assert_eq!(
            (a.count(), b.count()),
            (10, 10),
            "a failed resolution keeps both targets"
        );
    }
    let log = gw.log();
    assert_eq!(
        log.matches("resolving `svc.portcullis.test").count(),
        1,
        "a run of failures is logged once, with what is kept:\n{log}"
    );
    assert!(
        log.contains("failed") && log.contains("keeping [127.0.0.1:"),
        "{log}"
    );

    // The name loses its first address: that target leaves, and so does its series.
    ns.set(Answer::Addresses(vec![Ipv4Addr::new(127, 0, 0, 2)]));
    wait_for(
        "the first address to leave the pool",
        Duration::from_secs(15),
        || {
            a.reset();
            send(&gw, 6);
            (a.count() == 0).then_some(())
        },
    );
    b.reset();
    send(&gw, 10);
    assert_eq!((a.count(), b.count()), (0, 10));
    let text = gw.metrics();
    assert!(
        !text.contains(&label("127.0.0.1")),
        "the departed target's series is gone:\n{text}"
    );
    assert!(text.contains(&label("127.0.0.2")), "{text}");
    assert!(ns.queries() > 5, "the gateway asked the configured name server");
}

#[test]
fn check_reports_a_host_name_that_does_not_resolve_through_the_configured_servers() {
    let ns = NameServer::start(Answer::ServFail);
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:8080\"]\n  {}{}",
        dns_settings(&ns),
        config(9001)
    ));
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains(&format!("bad address `{NAME}:9001`: host name does not resolve"))
            && out.stderr.contains("upstreams.app.targets[0]"),
        "{}",
        out.stderr
    );

    ns.set(Answer::Addresses(vec![Ipv4Addr::new(127, 0, 0, 1)]));
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:8080\"]\n  {}{}",
        dns_settings(&ns),
        config(9001)
    ));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let out = check(
        "server:\n  listen: [\"127.0.0.1:8080\"]\n  dns: { nameservers: [\"ns.example:53\"], refresh: 10ms, family: both }\n",
    );
    assert_ne!(out.code, 0);
    for expected in [
        "server.dns.nameservers[0]",
        "refresh must be from 100ms to 24h",
        "server.dns.family",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
    }
}
