//! `portcullis route`: what the gateway would do with a request, sending nothing, and
//! `route --test FILE` to review routing changes like code.

mod support;

use std::process::Command;

use support::*;

const CONFIG: &str = "server:\n  listen: [\"127.0.0.1:8080\"]\nupstreams:\n  users:\n    targets: [\"127.0.0.1:9\"]\n  legacy:\n    targets: [\"127.0.0.1:9\"]\nrate_limits:\n  per-ip:\n    key: ip\n    limits: [{ requests: 10, per: 1s }]\nroutes:\n  - { name: all-users, match: { path_prefix: /users }, upstream: legacy }\n  - { name: user, match: { path: \"/users/{id:[0-9]+}\", methods: [GET] }, upstream: users, rewrite: \"/api/v2/users/{id}\", rate_limit: [per-ip] }\n  - { name: tenant-user, match: { path: \"/users/{id:[0-9]+}\", methods: [GET], headers: { x-tenant: acme } }, upstream: users }\n";

fn run(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("route")
        .arg("-c")
        .arg(dir.join("portcullis.yaml"))
        .args(args)
        .output()
        .expect("run route");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn route_explains_a_request_without_sending_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("portcullis.yaml"), CONFIG).expect("write config");
    let (code, out) = run(dir.path(), &["GET https://api.example.com/users//7/?x=1"]);
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "path:          /users/7/",
        "route:         all-users",
        "upstream path: /users/7/?x=1",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let (code, out) = run(dir.path(), &["GET https://api.example.com/users/7?x=1"]);
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "path:          /users/7",
        "route:         user",
        "not tenant-user: its headers do not match (needs x-tenant: acme)",
        "not all-users: path /users/{id:[0-9]+} decides: it is more specific than path_prefix /users",
        "rate limits:   per-ip (key: ip)",
        "upstream:      users",
        "upstream path: /api/v2/users/7?x=1",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let (_, out) = run(dir.path(), &["DELETE https://api.example.com/users/7"]);
    assert!(out.contains("405 from the gateway"), "{out}");
    assert!(
        out.contains("not user: DELETE is not one of its methods (GET, HEAD)"),
        "{out}"
    );
    let (_, out) = run(
        dir.path(),
        &["-H", "X-Tenant: acme", "GET https://api.example.com/users/7"],
    );
    assert!(out.contains("route:         tenant-user"), "{out}");
    let (code, out) = run(dir.path(), &["GET not-a-url"]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn route_test_files_pass_or_name_every_difference() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("portcullis.yaml"), CONFIG).expect("write config");
    let tests = dir.path().join("routes.test.yaml");
    std::fs::write(
        &tests,
        "tests:\n  - request: GET https://api.example.com/users/7\n    expect: { route: user, status: 200, upstream: users, path: /api/v2/users/7 }\n  - request: GET https://api.example.com/users/ann\n    expect: { route: all-users, path: /users/ann }\n  - request: POST https://api.example.com/users/7\n    expect: { status: 405 }\n",
    )
    .expect("write tests");
    let (code, out) = run(dir.path(), &["--test", tests.to_str().unwrap_or("")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("3 of 3 routing tests passed"), "{out}");
    // A change that moves a request to another route fails its test.
    std::fs::write(
        dir.path().join("portcullis.yaml"),
        CONFIG.replace(
            "\"/users/{id:[0-9]+}\", methods: [GET] }, upstream: users, rewrite",
            "\"/users/{id}\", methods: [GET] }, upstream: users, rewrite",
        ),
    )
    .expect("rewrite config");
    let (code, out) = run(dir.path(), &["--test", tests.to_str().unwrap_or("")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL tests[1] GET https://api.example.com/users/ann: route: expected all-users, got user; path: expected /users/ann, got /api/v2/users/ann"),
        "{out}"
    );
}
