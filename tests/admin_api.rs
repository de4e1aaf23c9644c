//! The admin API: with `server.admin.token_env`, every endpoint but `/healthz` and `/readyz`
//! needs the token (the CLI's reload sends it); `/routes`, `/upstreams` and `/config` show what
//! the running gateway does.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

const TOKEN: &str = "admin-token-for-tests-0123456789";

fn admin(gw: &Gateway, method: &str, path: &str, token: Option<&str>) -> Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    request(gw.admin(), method, "127.0.0.1", path, &headers, b"")
}

#[test]
fn the_admin_token_guards_every_endpoint_but_health() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start_env(
        "admin: { addr: \"127.0.0.1:{admin_port}\", token_env: PORTCULLIS_ADMIN_TOKEN }",
        &format!(
            "upstreams:\n  a:\n    targets: [\"{}\"]\n  b:\n    targets: [\"{}\"]\n    limits: {{ max_requests: 7 }}\nroutes:\n  - {{ name: users, match: {{ path_prefix: /users }}, upstream: a }}\n  - {{ name: user, match: {{ path: \"/users/{{id}}\", methods: [GET] }}, upstream: b }}\n  - {{ name: me, match: {{ path: /users/me }}, upstream: a }}\n",
            a.addr(),
            b.addr()
        ),
        &[("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(admin(&gw, "GET", path, None).status, 200, "{path}");
    }
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/routes"),
        ("GET", "/upstreams"),
        ("GET", "/config"),
        ("POST", "/reload"),
        ("POST", "/cache/purge?route=users"),
    ] {
        for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
            let r = admin(&gw, method, path, token);
            assert_eq!(r.status, 401, "{method} {path} with {token:?}");
            assert!(r
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
    }
    let metrics = admin(&gw, "GET", "/metrics", Some(TOKEN)).text();
    assert_eq!(
        sum_metric(&metrics, "portcullis_build_info", &[]),
        1.0,
        "{metrics}"
    );

    // The table in the order routing consults it: /users/me, then /users/{id}, then /users.
    let routes: Value = admin(&gw, "GET", "/routes", Some(TOKEN)).json();
    let order: Vec<&str> = routes
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(order, ["/users/me", "/users/{id}", "/users"], "{routes}");
    assert_eq!(routes[1]["routes"][0]["name"], "user");
    assert_eq!(routes[1]["routes"][0]["methods"], "GET, HEAD");
    assert_eq!(routes[1]["routes"][0]["target"]["upstream"], "b");
    assert_eq!(routes[1]["template"], true);

    let upstreams: Value = admin(&gw, "GET", "/upstreams", Some(TOKEN)).json();
    let b_pool = upstreams
        .as_array()
        .and_then(|u| u.iter().find(|p| p["name"] == "b"))
        .expect("upstream b");
    assert_eq!(b_pool["max_requests"], 7);
    assert_eq!(b_pool["targets"][0]["healthy"], true);
    assert_eq!(b_pool["targets"][0]["ejected"], false);
    assert_eq!(b_pool["targets"][0]["target"], b.addr().to_string());

    let config: Value = admin(&gw, "GET", "/config", Some(TOKEN)).json();
    assert_eq!(config["file"], gw.config_path().display().to_string());
    assert_eq!(config["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        config["hash"].as_str(),
        config["sha256"].as_str().map(|s| &s[..16])
    );
    let loaded_at = config["loaded_at"].as_str().unwrap_or("");
    assert!(loaded_at.len() >= 20 && loaded_at.ends_with('Z'), "{config}");
    assert!(config["last_reload"].is_null());

    // The CLI reload sends the token from the same variable; without it, it is refused.
    let reload = |token: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["reload", "-c"]).arg(gw.config_path());
        match token {
            Some(t) => cmd.env("PORTCULLIS_ADMIN_TOKEN", t),
            None => cmd.env_remove("PORTCULLIS_ADMIN_TOKEN"),
        };
        cmd.output().expect("run reload")
    };
    let out = reload(Some(TOKEN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = reload(Some("a-different-token-of-enough-length"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Authorization"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = reload(None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORTCULLIS_ADMIN_TOKEN is not set"));
    let config: Value = admin(&gw, "GET", "/config", Some(TOKEN)).json();
    assert_eq!(config["last_reload"]["result"], "success", "{config}");

    // A failed reload is reported with its reason; the running configuration stays.
    let good = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(gw.config_path(), good.replace("upstream: b", "upstream: missing")).expect("write");
    assert_ne!(admin(&gw, "POST", "/reload", Some(TOKEN)).status, 200);
    let after: Value = admin(&gw, "GET", "/config", Some(TOKEN)).json();
    assert_eq!(after["last_reload"]["result"], "failure", "{after}");
    assert!(
        after["last_reload"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing")),
        "{after}"
    );
    assert_eq!(after["loaded_at"], config["loaded_at"]);
}

/// `metrics_without_token` opens `GET /metrics` (for Prometheus' pod annotations) and nothing
/// else.
#[test]
fn metrics_without_token_opens_only_the_metrics() {
    let a = Upstream::start("a");
    let gw = Gateway::start_env(
        "admin: { addr: \"127.0.0.1:{admin_port}\", token_env: PORTCULLIS_ADMIN_TOKEN, metrics_without_token: true }",
        &format!(
            "upstreams:\n  a:\n    targets: [\"{}\"]\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: a }}\n",
            a.addr()
        ),
        &[("PORTCULLIS_ADMIN_TOKEN", TOKEN)],
    );
    let metrics = admin(&gw, "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert_eq!(sum_metric(&metrics.text(), "portcullis_build_info", &[]), 1.0);
    for (method, path) in [
        ("POST", "/metrics"),
        ("GET", "/routes"),
        ("GET", "/upstreams"),
        ("GET", "/config"),
        ("POST", "/reload"),
        ("POST", "/cache/purge?route=all"),
    ] {
        assert_eq!(admin(&gw, method, path, None).status, 401, "{method} {path}");
    }
}

#[test]
fn check_refuses_a_missing_or_short_admin_token() {
    let body = "server:\n  listen: [\"127.0.0.1:8080\"]\n  admin: { addr: \"127.0.0.1:9090\", token_env: PORTCULLIS_TEST_ABSENT_TOKEN }\n";
    let out = check(body);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("server.admin.token_env: environment variable PORTCULLIS_TEST_ABSENT_TOKEN is not set"),
        "{}",
        out.stderr
    );
    let out = check("server:\n  listen: [\"127.0.0.1:8080\"]\n  admin: { addr: \"127.0.0.1:9090\", token_env: \"not a name\" }\n");
    assert!(
        out.stderr.contains("is not an environment variable name"),
        "{}",
        out.stderr
    );
    let out = check("server:\n  listen: [\"127.0.0.1:8080\"]\n  admin: { addr: \"127.0.0.1:9090\", metrics_without_token: true }\n");
    assert!(
        out.stderr
            .contains("server.admin.metrics_without_token: only applies with `token_env`"),
        "{}",
        out.stderr
    );
}
