//! `portcullis route`: print what the gateway would do with one request, or check a file of
//! expected routings (`--test`), so route changes are reviewed like code.
//!
//! ```yaml
//! tests:
//!   - request: GET https://api.example.com/users/7
//!     headers: { x-tenant: acme }
//!     expect: { route: users, status: 200, upstream: users, path: /users/7 }
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::proxy::explain::{explain, Explanation};
use crate::runtime::Snapshot;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<RouteTest>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteTest {
    request: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    expect: Expect,
}

/// What a test expects; fields left out are not checked.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    route: Option<String>,
    status: Option<u16>,
    upstream: Option<String>,
    /// The path and query sent upstream.
    path: Option<String>,
    version: Option<String>,
    auth: Option<String>,
}

/// `METHOD URL` (or just `URL`, for GET) and `Name: value` headers, as a request head whose
/// `Host` is the URL's authority.
fn build_request(line: &str, headers: &[(String, String)]) -> Result<RequestHeader, String> {
    let (method, url) = match line.trim().split_once(char::is_whitespace) {
        Some((m, u)) => (m.trim(), u.trim()),
        None => ("GET", line.trim()),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}`: give an absolute http:// or https:// URL"))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    let mut req = RequestHeader::build(method.as_bytes(), target.as_bytes(), None)
        .map_err(|e| format!("`{line}`: {e}"))?;
    req.insert_header(http::header::HOST, authority)
        .map_err(|e| format!("host `{authority}`: {e}"))?;
    for (name, value) in headers {
        req.append_header(name.clone(), value.as_str())
            .map_err(|e| format!("header `{name}`: {e}"))?;
    }
    Ok(req)
}

fn parse_header(h: &str) -> Result<(String, String), String> {
    h.split_once(':')
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("header `{h}`: write it as `Name: value`"))
}

fn print(line: &str, e: &Explanation) {
    println!("request:       {line}");
    println!("host:          {}", if e.host.is_empty() { "-" } else { &e.host });
    println!(
        "path:          {}",
        e.path.as_deref().unwrap_or("- (refused before normalization)")
    );
    println!("route:         {}", e.route.as_deref().unwrap_or("-"));
    for p in &e.passed_over {
        println!("  not {}: {}", p.route, p.why);
    }
    match &e.refused {
        Some(why) => println!("answer:        {} from the gateway: {why}", e.status),
        None => println!("answer:        forwarded (after authentication and rate limits)"),
    }
    if let Some(auth) = &e.auth {
        println!("auth:          {auth}");
    }
    if !e.rate_limits.is_empty() {
        println!("rate limits:   {}", e.rate_limits.join(", "));
    }
    if let Some(v) = &e.version {
        println!("version:       {v}");
    }
    if let Some(u) = &e.upstream {
        println!("upstream:      {u}");
    }
    if let Some(p) = &e.upstream_path {
        println!("upstream path: {p}");
    }
}

/// One request, explained.
pub fn explain_one(snapshot: Snapshot, line: &str, headers: &[String]) -> ExitCode {
    let snapshot = Arc::new(snapshot);
    let run = || -> Result<Explanation, String> {
        let headers = headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let mut req = build_request(line, &headers)?;
        Ok(explain(&snapshot, &mut req))
    };
    match run() {
        Ok(e) => {
            print(line, &e);
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("portcullis: {why}");
            ExitCode::from(2)
        }
    }
}

/// Every test of `file`; a line per test, and exit 1 if any differs.
pub fn run_tests(snapshot: Snapshot, file: &str) -> ExitCode {
    let text = match crate::config::read_bounded(std::path::Path::new(file)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("portcullis: cannot read {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tests: TestFile = match serde_yaml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("portcullis: {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = Arc::new(snapshot);
    let mut failed = 0;
    for (i, t) in tests.tests.iter().enumerate() {
        let headers: Vec<(String, String)> = t.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let e = match build_request(&t.request, &headers) {
            Ok(mut req) => explain(&snapshot, &mut req),
            Err(why) => {
                println!("FAIL tests[{i}] {}: {why}", t.request);
                failed += 1;
                continue;
            }
        };
        let got_status = e.status;
        let checks = [
            ("route", t.expect.route.clone(), e.route.clone()),
            (
                "status",
                t.expect.status.map(|s| s.to_string()),
                Some(got_status.to_string()),
            ),
            ("upstream", t.expect.upstream.clone(), e.upstream.clone()),
            ("path", t.expect.path.clone(), e.upstream_path.clone()),
            ("version", t.expect.version.clone(), e.version.clone()),
            ("auth", t.expect.auth.clone(), e.auth.clone()),
        ];
        let wrong: Vec<String> = checks
            .into_iter()
            .filter_map(|(what, want, got)| {
                let want = want?;
                (Some(&want) != got.as_ref())
                    .then(|| format!("{what}: expected {want}, got {}", got.as_deref().unwrap_or("-")))
            })
            .collect();
        if wrong.is_empty() {
            println!("ok   tests[{i}] {}", t.request);
        } else {
            failed += 1;
            println!("FAIL tests[{i}] {}: {}", t.request, wrong.join("; "));
        }
    }
    println!(
        "portcullis: {} of {} routing tests passed",
        tests.tests.len() - failed,
        tests.tests.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
