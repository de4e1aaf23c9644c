//! Request-pipeline micro-benchmarks: route matching (10, 1,000 and 10,000 routes), path
//! normalization, a rate-limit decision on the local store, header rules, and a JSON response
//! transform (1 KiB and 64 KiB).
//! Run with `cargo bench --bench pipeline`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use pingora::http::RequestHeader;
use portcullis::config;
use portcullis::limits;
use portcullis::routing::normalize::normalize_target;
use portcullis::runtime::Snapshot;

/// A snapshot with `routes` prefix routes (`/svc<i>/...`, every fourth with a method list,
/// every eighth on a host) and one rate-limit policy.
fn snapshot(routes: usize) -> Snapshot {
    let mut yaml = String::from(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  app:\n    targets: [\"127.0.0.1:2\"]\nrate_limits:\n  per-user:\n    key: header:x-user\n    limits: [{ requests: 1000000000, per: 1s }, { requests: 1000000000, per: 1h }]\n    expected_keys: 10000\nroutes:\n",
    );
    for i in 0..routes {
        let extra = match i % 8 {
            0 => ", hosts: [\"api.example.com\"]",
            4 => ", methods: [GET, POST]",
            _ => "",
        };
        yaml.push_str(&format!(
            "  - {{ name: r{i}, match: {{ path_prefix: /svc{i}/items{extra} }}, upstream: app, rate_limit: [per-user],\n      request_headers: {{ set: {{ x-gateway: portcullis }}, remove: [x-debug], add: {{ x-route: r{i} }} }} }}\n"
        ));
    }
    let cfg = config::load_str(&yaml, "bench.yaml").expect("valid bench config");
    Snapshot::compile(&cfg).expect("compiles")
}

fn request(path: &str) -> RequestHeader {
    let mut req = RequestHeader::build(Method::GET, path.as_bytes(), None).expect("request");
    req.insert_header("host", "localhost").expect("host");
    req.insert_header("x-user", "user-42").expect("header");
    req.insert_header("x-debug", "1").expect("header");
    req
}

fn route_matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10, 1_000, 10_000] {
        let s = snapshot(n);
        let path = format!("/svc{}/items/42/details", n - 3);
        let req = request(&path);
        group.bench_with_input(BenchmarkId::new("hit", n), &n, |b, _| {
            b.iter(|| {
                s.routes.find(
                    black_box("localhost"),
                    black_box(&path),
                    &Method::GET,
                    &req.headers,
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &n, |b, _| {
            b.iter(|| {
                s.routes.find(
                    black_box("localhost"),
                    black_box("/nowhere/at/all"),
                    &Method::GET,
                    &req.headers,
                )
            })
        });
    }
    group.finish();
}

fn normalization(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    for (name, raw) in [
        ("clean", "/api/orders/12345/items?expand=true"),
        ("dirty", "//api/./orders/%7Euser/../12345/items/%41?expand=true"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| normalize_target(black_box(raw.as_bytes()), 8192))
        });
    }
    group.finish();
}

fn rate_limit_decision(c: &mut Criterion) {
    let s = snapshot(10);
    let Some(route) = s.routes.routes.get(1) else {
        return;
    };
    let req = request("/svc1/items");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    c.bench_function("rate_limit_decision/local_2_windows", |b| {
        b.iter(|| {
            rt.block_on(limits::decide(
                &route.limits,
                &s.policies,
                None,
                None,
                None,
                black_box(&req),
            ))
        })
    });
}

fn header_rules(c: &mut Criterion) {
    let s = snapshot(10);
    let Some(route) = s.routes.routes.get(1) else {
        return;
    };
    let base = request("/svc1/items");
    c.bench_function("header_rules/set_remove_add", |b| {
        b.iter_batched(
            || base.clone(),
            |mut req| {
                route.request_headers.apply(&mut req);
                req
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

/// A user document of about `size` bytes: a few fields, a nested address, and as many
/// orders (each with a card number the rules deny) as it takes.
fn user_document(size: usize) -> Vec<u8> {
    let mut orders = Vec::new();
    let mut doc = String::new();
    for i in 0.. {
        orders.push(format!(
            r#"{{"id":{i},"sku":"SKU-{i:06}","qty":{},"card":"4111-1111-1111-{i:04}","note":"gift wrap"}}"#,
            i % 7 + 1
        ));
        doc = format!(
            r#"{{"id":42,"name":"Ann Example","email":"ann@example.com","password":"hunter2","address":{{"street":"1 Main St","city":"Oslo","zip":"0150"}},"orders":[{}]}}"#,
            orders.join(",")
        );
        if doc.len() >= size {
            break;
        }
    }
    doc.into_bytes()
}

/// The issue's typical response transform: deny + rename + set, parsed and serialized.
fn json_transform(c: &mut Criterion) {
    use portcullis::transform::json::{JsonPath, JsonRules};
    let path = |p: &str| JsonPath::parse(p).expect("valid path");
    let rules = JsonRules {
        deny: vec![path("password"), path("orders[].card")],
        rename: vec![
            (path("id"), path("user_id")),
            (path("address.city"), path("city")),
        ],
        set: vec![(path("meta.source"), serde_json::json!("users-api"))],
        ..JsonRules::default()
    };
    let mut group = c.benchmark_group("transform");
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let doc = user_document(size);
        group.throughput(criterion::Throughput::Bytes(doc.len() as u64));
        group.bench_with_input(BenchmarkId::new("deny_rename_set", label), &doc, |b, doc| {
            b.iter(|| portcullis::transform::body::transform_json(&rules, black_box(doc)))
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    route_matching,
    normalization,
    rate_limit_decision,
    header_rules,
    json_transform
);
criterion_main!(benches);
