//! `portcullis check`: every problem, with file:line:col, field path and plain words; and the
//! gateway refusing to start with the same messages.

mod support;

use std::process::{Command, Stdio};

use support::*;

/// The problem lines of a failed check, with the temp file path replaced by `FILE`.
fn problems(out: &CheckOutput) -> Vec<String> {
    let path = out.path.display().to_string();
    out.stderr
        .lines()
        .map(|l| l.replace(&path, "FILE"))
        .filter(|l| !l.starts_with("portcullis: "))
        .collect()
}

const SERVER: &str = "server:\n  listen: [\"127.0.0.1:8080\"]\n";

#[test]
fn valid_config_prints_a_summary() {
    let out = check(&format!(
        "{SERVER}upstreams:\n  a:\n    targets: [\"127.0.0.1:9001\", {{ addr: \"127.0.0.1:9002\", weight: 2 }}]\n  b:\n    targets: [\"127.0.0.1:9003\"]\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: a }}\n"
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!(
            "portcullis: configuration {} is valid: 1 routes, 2 upstreams, 3 targets",
            out.path.display()
        )
    );
}

#[test]
fn the_example_config_is_valid() {
    // Its HTTPS listener's certificate, as scripts/run.sh makes it (kept when it exists).
    let cert = Command::new(BIN)
        .args(["demo-cert", concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tls")])
        .output()
        .expect("run demo-cert");
    assert!(cert.status.success(), "{}", String::from_utf8_lossy(&cert.stderr));
    // Checked in place: its keys file is relative to it.
    let out = Command::new(BIN)
        .args([
            "check",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/portcullis.yaml"),
        ])
        .output()
        .expect("run check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

const BROKEN: &str = "\
server:
  listen: [\"0.0.0.0:80800\"]
  admn: \"127.0.0.1:9090\"
upstreams:
  users:
    targets: []
    balance: round_robbin
  orders:
    targets: [{ addr: \"127.0.0.1:9003\", weight: 0 }, \"nohost\"]
    connect_timeout: 5
    retires: 2
routes:
  - name: a
    match: { path_prefix: /users }
    upstream: user
  - name: a
    match: { path_prefix: /users }
    upstream: users
  - name: c
    match: { path: /x/../y }
    upstream: orders
  - name: d
    match: { path_prefix: /d, methods: [GET] }
    upstream: orders
  - name: e
    match: { path_prefix: /d, methods: [GET] }
    upstream: orders
    timeout: 2 seconds
";

#[test]
fn every_problem_is_listed_with_position_path_and_words() {
    let out = check(BROKEN);
    assert_eq!(out.code, 1);
    let expected = [
        "FILE:2:12: server.listen[0]: bad address `0.0.0.0:80800`: expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080",
        "FILE:3:3: server.admn: unknown field `admn`; did you mean `admin`?",
        "FILE:6:14: upstreams.users.targets: upstream has no targets",
        "FILE:7:14: upstreams.users.balance: unknown value `round_robbin`; did you mean `round_robin`?",
        "FILE:9:49: upstreams.orders.targets[0].weight: weight must be at least 1 (remove the target to take it out)",
        "FILE:9:54: upstreams.orders.targets[1]: bad address `nohost`: expected HOST:PORT such as 127.0.0.1:9001",
        "FILE:10:22: upstreams.orders.connect_timeout: bad duration: `5`: missing unit; expected a duration such as 250ms, 2s, 1m or 1h",
        "FILE:11:5: upstreams.orders.retires: unknown field `retires`; did you mean `retries`?",
        "FILE:15:15: routes[0].upstream: route names undefined upstream `user`; did you mean `users`?",
        "FILE:16:11: routes[1].name: duplicate route name `a` (first at line 13)",
        "FILE:16:11: routes[1]: route `a` can never match: it is fully shadowed by routes[0] `a` (line 13)",
        "FILE:20:20: routes[2].match.path: path `/x/../y` is not canonical; requests are normalized, write `/y`",
        "FILE:25:11: routes[4]: route `e` can never match: it is fully shadowed by routes[3] `d` (line 22)",
        "FILE:28:14: routes[4].timeout: bad duration: `2 seconds`: no spaces allowed; expected a duration such as 250ms, 2s, 1m or 1h",
    ];
    assert_eq!(problems(&out), expected, "full stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .ends_with(&format!("has {} problem(s)\n", expected.len())),
        "{}",
        out.stderr
    );
}

#[test]
fn structural_mistakes() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "FILE:1:1: the configuration is empty; it needs at least `server:` with `listen`",
        ),
        (
            "upstreams: {}\n",
            "FILE:1:1: server: missing required section `server` (at least `listen`)",
        ),
        (
            "server: [1]\n",
            "FILE:1:9: server: expected a mapping with fields",
        ),
        (
            "server:\n  listen: [\"127.0.0.1:1\"]\nrouts: []\n",
            "FILE:3:1: routs: unknown field `routs`; did you mean `routes`?",
        ),
        (
            "server:\n  listen: [\"127.0.0.1:1\"]\nroutes: {}\n",
            "FILE:3:9: routes: expected a list of routes, found a mapping",
        ),
        (
            "server:\n  listen: [\"127.0.0.1:1\"\n",
            "FILE:3:1: YAML syntax error",
        ),
        (
            "server:\n  listen: [\"127.0.0.1:1\"]\n  threads: many\n",
            "FILE:3:12: server.threads: must be a whole number from 1 to 1024, found `many`",
        ),
        (
            "server:\n  listen: [\"127.0.0.1:1\"]\n  listen: [\"127.0.0.1:2\"]\n",
            "FILE:3:3: server.listen: `listen` is given twice (first at line 2)",
        ),
    ];
    for (yaml, want) in cases {
        let out = check(yaml);
        assert_eq!(out.code, 1, "{yaml}");
        let got = problems(&out);
        assert!(
            got.iter().any(|l| l.starts_with(want)),
            "{yaml:?}: want {want:?} in {got:#?}"
        );
    }
}

#[test]
fn route_and_upstream_rules() {
    let ups = "upstreams:\n  a:\n    targets: [\"127.0.0.1:9001\", \"127.0.0.1:9001\"]\n    retries: 16\n    hash_key: ip\n    health_check: { type: tcp, path: /x, interval: 0s }\n";
    let routes = "routes:\n  - name: r\n    match: { hosts: [\"api.example.com:80\"], path_prefix: /a, methods: [FETCH] }\n    upstream: a\n  - name: s\n    match: { path: /p, path_prefix: /p }\n    upstream: a\n  - name: t\n    match: { path_prefix: /a }\n    upstream: a\n    strip_prefix: /b\n  - name: u\n    match: { path_prefix: \"/a;b\" }\n    upstream: a\n";
    let out = check(&format!("{SERVER}{ups}{routes}"));
    let got = problems(&out).join("\n");
    for want in [
        "upstreams.a.targets[1]: target `127.0.0.1:9001` is listed twice",
        "upstreams.a.hash_key: hash_key only applies to `balance: hash`",
        "upstreams.a.health_check.path: `path` only applies to `type: http`",
        "upstreams.a.health_check.interval: must be greater than 0",
        "routes[0].match.hosts[0]: host `api.example.com:80` must not include a port",
        "routes[0].match.methods[0]: unknown value `FETCH`",
        "routes[2].strip_prefix: `/b` is not a prefix of the route's path `/a`",
        "routes[1].match: give either `path` (exact) or `path_prefix`, not both",
        "routes[3].match.path_prefix: path `/a;b` contains `;`",
        "upstreams.a.retries: must be a whole number from 0 to 15, found `16`",
    ] {
        assert!(got.contains(want), "missing {want:?} in:\n{got}");
    }
}

#[test]
fn run_refuses_to_start_with_the_same_messages() {
    let out = check(BROKEN);
    let run = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&out.path)
        .stdin(Stdio::null())
        .output()
        .expect("run portcullis");
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&run.stderr), out.stderr);
}

#[test]
fn cli_usage_errors() {
    let out = Command::new(BIN).arg("--bogus").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    let v = Command::new(BIN).arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("portcullis "));
    let missing = Command::new(BIN)
        .args(["check", "-c", "/nonexistent/p.yaml"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read configuration file"));
}

/// `check` explains the precedence where a more specific path authenticates differently from
/// the path around it: that path takes every request under it, whatever the method.
#[test]
fn the_summary_explains_overlapping_prefixes_with_different_auth() {
    let keys = tempfile::tempdir().expect("tempdir");
    let file = keys.path().join("keys.yaml");
    std::fs::write(&file, "keys: []\n").expect("write keys");
    let out = check(&format!(
        "{SERVER}upstreams:\n  a:\n    targets: [\"127.0.0.1:9001\"]\nauth:\n  staff:\n    type: api_key\n    from: [\"header:x-api-key\"]\n    keys_file: {}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /orders }}, upstream: a }}\n  - {{ name: orders-admin, match: {{ path_prefix: /orders/admin, methods: [GET, POST] }}, upstream: a, auth: [staff] }}\n  - {{ name: orders-list, match: {{ path_prefix: /orders/list }}, upstream: a }}\n",
        file.display()
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let precedence: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("precedence:"))
        .collect();
    assert_eq!(
        precedence,
        ["precedence: path_prefix /orders/admin (`orders-admin` GET, HEAD, POST: auth staff) decides every request under it; other methods get 405 there; path_prefix /orders (`orders`: public) never sees them"],
        "only the overlap with different auth is explained:\n{}",
        out.stdout
    );
}

/// Pattern syntax in a route path used to be taken literally without a word; mistakes of
/// indentation, numbers, percentages and target addresses were reported in parser or type
/// wording, or several times over. Each is now one message that says what to write.
#[test]
fn patterns_and_common_mistakes_get_one_plain_message_each() {
    let cases: &[(&str, &[&str])] = &[
        (
            "upstreams:\n  a: { targets: [\"127.0.0.1:9001\"] }\nroutes:\n  - { name: r, match: { path_prefix: \"/files/*/raw\" }, upstream: a }\n  - { name: s, match: { path: \"/users/{id}\" }, upstream: a }\n  - { name: t, match: { path: /users/:id }, upstream: a }\n  - { name: u, match: { path: \"/users/[0-9]+\" }, upstream: a }\n  - { name: v, match: { path: \"/v/{id}/x\" }, upstream: a, strip_prefix: \"/v/*\" }\n",
            &[
                "FILE:8:31: routes[2].match.path: path `/users/:id` uses pattern syntax (a `:name` segment) that would be taken literally: in a route path write a capture as `{name}` or `{name:regex}` (a whole segment) and any one segment as `*`",
                "FILE:9:31: routes[3].match.path: path `/users/[0-9]+` uses pattern syntax (regular-expression characters)",
                "FILE:10:73: routes[4].strip_prefix: path `/v/*` uses pattern syntax (`*`)",
            ],
        ),
        (
            "upstreams:\n  a:\n    targets: [{ addr: \"127.0.0.1:9001\", weight: 1.5 }, \"http://127.0.0.1:9002/api\"]\n    connect_timeout: 1.5s\n",
            &[
                "FILE:5:49: upstreams.a.targets[0].weight: must be a whole number from 1 to 10000, found `1.5`",
                "FILE:5:56: upstreams.a.targets[1]: `http://127.0.0.1:9002/api`: targets are HOST:PORT without a scheme or path, such as `127.0.0.1:9002`",
                "FILE:6:22: upstreams.a.connect_timeout: bad duration: `1.5s`: fractions are not accepted; use a smaller unit (1500ms, not 1.5s)",
            ],
        ),
        (
            "upstreams:\n  a: { targets: [\"127.0.0.1:9001\"] }\nroutes:\n  - name: c\n    match: { path_prefix: /c }\n    versions:\n      from: [path]\n      default: \"2\"\n      \"1\": { upstream: a, successor: \"2\" }\n      \"2\": { upstream: a, split: [ { upstream: a, percent: 150 } ] }\n",
            &["FILE:12:60: routes[0].versions.2.split[0].percent: `150`: expected a percentage above 0 and at most 100, with at most two decimals"],
        ),
        (
            "upstreams:\n  users:\n  targets: [\"127.0.0.1:9001\"]\n  balance: random\n",
            &["FILE:5:3: upstreams.users: `targets`, `balance` are indented at the level of upstream names: indent them under `users`"],
        ),
        (
            "upstreams:\n  a: { targets: [\"127.0.0.1:9001\"] }\nroutes:\n  - name: r\n    match:\n      path_prefix: /r\n      upstream: a\n",
            &["FILE:9:7: routes[0].match.upstream: `upstream` is a field of `routes[0]`, not of `match`: indent it to line up with `match`"],
        ),
        (
            "upstreams:\n  a:\n    targets: [\"127.0.0.1:9001\"]\n   balance: random\n",
            &["FILE:6:11: YAML syntax error: this line is not indented like the keys around it"],
        ),
    ];
    for (body, want) in cases {
        let out = check(&format!("{SERVER}{body}"));
        let got = problems(&out);
        assert_eq!(
            got.len(),
            want.len(),
            "one problem per mistake:\n{}",
            got.join("\n")
        );
        for (line, expected) in got.iter().zip(*want) {
            assert!(line.starts_with(expected), "\n got: {line}\nwant: {expected}");
        }
    }
}

/// `check` was quadratic in the number of routes (20,000 routes: 11 s on the reviewer's
/// machine, 7 s here). 40,000 routes and upstreams must take well under 10 s (about 1 s here;
/// the quadratic version needed about 28 s).
#[test]
fn check_stays_near_linear_where_routes_overlap() {
    // Routes for many hosts, and routes with header conditions, on `/`, over many prefixes
    // for every host: the precedence summary compares each slot with the one enclosing it.
    // It formatted every route of both for every pair (8,000 of each shape: 4.8 s and 3.5 s).
    let n = 12_000;
    let mut yaml = format!("{SERVER}upstreams:\n  u: {{ targets: [\"127.0.0.1:9001\"] }}\nroutes:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{ name: h{i}, match: {{ hosts: [h{i}.example.com], path_prefix: / }}, upstream: u }}\n  - {{ name: t{i}, match: {{ path_prefix: /, headers: {{ x-t: \"{i}\" }} }}, upstream: u }}\n  - {{ name: p{i}, match: {{ path_prefix: /p{i} }}, upstream: u }}\n"
        ));
    }
    let started = std::time::Instant::now();
    let out = check(&yaml);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    eprintln!("check of {} overlapping routes: {took:?}", 3 * n);
    assert!(
        took < std::time::Duration::from_secs(8),
        "{} routes took {took:?}",
        3 * n
    );
}

#[test]
fn check_is_near_linear_in_the_number_of_routes() {
    let n = 40_000;
    let mut yaml = String::from(SERVER);
    yaml.push_str("upstreams:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  u{i}: {{ targets: [\"127.0.0.1:{}\"] }}\n",
            1024 + i % 60_000
        ));
    }
    yaml.push_str("routes:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{ name: r{i}, match: {{ path_prefix: /api/s{i}/v1, methods: [GET, POST] }}, upstream: u{i} }}\n"
        ));
    }
    let started = std::time::Instant::now();
    let out = check(&yaml);
    let took = started.elapsed();
    assert_eq!(out.code, 0, "{}", out.stderr);
    eprintln!("check of {n} routes and upstreams: {took:?}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "{n} routes took {took:?}"
    );
}
