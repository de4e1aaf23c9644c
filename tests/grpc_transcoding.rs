//! REST/JSON clients calling a real gRPC service (tests/grpc/orders_server.py, Python grpcio,
//! messages generated from conf/protos/orders.proto at start) through the gateway's `grpc:`
//! routes: every HttpRule kind, path/query/body binding, proto3 JSON printing, errors from
//! trailers (after a message) and Trailers-Only (never a 200), deadlines, limits, metadata,
//! server streaming, and the request-side rules (auth, rate limits) still applying. The
//! service counts its calls, so a refused request is shown never to have reached it.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc/orders_server.py");
const PROTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/protos/orders.proto");
const SERVICE: &str = "shop.orders.v1.OrderService";
const KEY: &str = "demo-key-not-secret";

/// Routes: `/v1` (defaults, 3 s), `/alt` (strip_prefix, every print option, NDJSON,
/// unknown query ignored, `authorization` and `x-tenant` forwarded, 64-byte bodies,
/// `auto_mapping`, 1 s), `/private` (API key, 1 call per hour).
fn gateway(server: &PythonServer) -> Gateway {
    let grpc = |extra: &str| {
        format!("{{ upstream: orders-grpc, protos: [\"{PROTO}\"], services: [{SERVICE}]{extra} }}")
    };
    let body = format!(
        "upstreams:\n  orders-grpc: {{ targets: [\"127.0.0.1:{port}\"], protocol: h2c }}\n\
auth:\n  keys:\n    type: api_key\n    from: [\"header:x-api-key\", \"query:api_key\"]\n    keys_file: {dir}/conf/keys.yaml\n\
rate_limits:\n  tiny: {{ key: consumer, limits: [ {{ requests: 1, per: 1h }} ] }}\n\
routes:\n\
  - {{ name: orders, match: {{ path_prefix: /v1 }}, timeout: 3s, grpc: {v1} }}\n\
  - {{ name: alt, match: {{ path_prefix: /alt }}, strip_prefix: /alt, timeout: 1s, grpc: {alt} }}\n\
  - {{ name: private, match: {{ path_prefix: /private }}, strip_prefix: /private, auth: [keys], rate_limit: [tiny], grpc: {v1} }}\n",
        port = server.port,
        dir = env!("CARGO_MANIFEST_DIR"),
        v1 = grpc(""),
        alt = grpc(
            ", print: { proto_field_names: true, enums_as_ints: true, emit_defaults: true }, stream: ndjson, ignore_unknown_query: true, forward_headers: [authorization, x-tenant], max_request_body: 64, auto_mapping: true"
        ),
    );
    Gateway::start(&body)
}

fn call(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> Response {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![];
    if !text.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    request(gw.addr(), method, "localhost", path, &headers, text.as_bytes())
}

/// The calls the service received so far (`Inspect` reports those before itself).
fn service_calls(gw: &Gateway) -> i64 {
    let r = call(gw, "GET", "/v1/inspect", None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["calls"].as_i64().unwrap_or(0)
}

#[test]
fn every_binding_kind_transcodes_with_proto3_json() {
    let server = PythonServer::start(SERVER);
    let gw = gateway(&server);

    // GET with a path variable; int64 as a string, enums by name, defaults left out.
    let r = call(&gw, "GET", "/v1/orders/42?verbose=true", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"id": "42", "customer": "ann", "items": [{"sku": "a-1", "quantity": 2}],
               "totalCents": "9007199254740993", "status": "SHIPPED", "note": "verbose"})
    );
    // An additional binding with `response_body`.
    let r = call(&gw, "GET", "/v1/orders/42/summary", None);
    assert_eq!(r.json(), json!([{"sku": "a-1", "quantity": 2}]));
    // Query parameters: typed, dotted, repeated, an enum by name.
    let r = call(
        &gw,
        "GET",
        "/v1/orders?customer=bob&page_size=2&status=PENDING&filter.min_total=5&filter.tags=a&filter.tags=b%20c",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["count"], 2);
    assert_eq!(
        v["orders"][1],
        json!({"id": "o-1", "customer": "bob", "status": "PENDING", "note": "min_total=5 tags=a,b c"})
    );
    // A path variable and `response_body: orders` (an empty list prints `[]`).
    let r = call(&gw, "GET", "/v1/customers/bob/orders?page_size=1", None);
    assert_eq!(
        r.json(),
        json!([{"id": "o-0", "customer": "bob", "note": "min_total=0 tags="}])
    );
    let r = call(&gw, "GET", "/v1/customers/bob/orders?page_size=0", None);
    assert_eq!(r.json(), json!([]));
    // POST with `body: "order"` and a query parameter for the rest.
    let r = call(
        &gw,
        "POST",
        "/v1/orders?idempotency=k1",
        Some(json!({"customer": "zed", "items": [{"sku": "b", "quantity": "3"}], "totalCents": 12})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "new-1", "customer": "zed", "items": [{"sku": "b", "quantity": 3}], "totalCents": "12", "note": "k1"})
    );
    // PUT with `body: "*"`: the path variable wins over the body.
    let r = call(
        &gw,
        "PUT",
        "/v1/orders/9",
        Some(json!({"id": "from-body", "order": {"customer": "x"}})),
    );
    assert_eq!(r.json(), json!({"id": "9", "customer": "x", "note": "updated"}));
    // PATCH with a nested path variable (`order.id`).
    let r = call(&gw, "PATCH", "/v1/orders/77", Some(json!({"customer": "y"})));
    assert_eq!(r.json(), json!({"id": "77", "customer": "y", "note": "patched"}));
    // DELETE answering an empty message.
    let r = call(&gw, "DELETE", "/v1/orders/77", None);
    assert_eq!((r.status, r.json()), (200, json!({})));
    // A verb (`:cancel`) after a multi-segment variable.
    let r = call(
        &gw,
        "POST",
        "/v1/orders/5:cancel",
        Some(json!({"reason": "late"})),
    );
    assert_eq!(
        r.json(),
        json!({"id": "orders/5", "status": "PENDING", "note": "late"})
    );
    // A custom method with `body: "filter"`.
    let r = call(
        &gw,
        "SEARCH",
        "/v1/orders:search",
        Some(json!({"tags": ["a", "b", "c"]})),
    );
    assert_eq!(r.json(), json!({"count": 3}));
    // `**`, and bytes as base64.
    let r = call(&gw, "GET", "/v1/files/a/b/c.txt", None);
    assert_eq!(r.json(), json!({"path": "a/b/c.txt", "content": "AAFoaQ=="}));
    // Path variables are percent-decoded.
    let r = call(&gw, "GET", "/v1/orders/a%20b", None);
    assert_eq!(r.json()["id"], "a b");
    // HEAD takes the GET binding: the head of its answer, no body.
    let r = call(&gw, "HEAD", "/v1/orders/42", None);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = call(&gw, "HEAD", "/v1/customers/ann/orders:watch?count=2", None);
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Print options: proto field names, enums as numbers, defaults printed.
    let r = call(&gw, "GET", "/alt/v1/customers/bob/orders?page_size=1", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!([{"id": "o-0", "customer": "bob", "items": [], "total_cents": "0", "status": 0, "note": "min_total=0 tags="}])
    );
    // auto_mapping: POST /pkg.Service/Method with the whole message as JSON.
    let r = call(
        &gw,
        "POST",
        &format!("/alt/{SERVICE}/GetOrder"),
        Some(json!({"id": "auto"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "auto");
    assert_eq!(r.json()["total_cents"], "9007199254740993");
    // Not on the route without it.
    assert_eq!(
        call(
            &gw,
            "POST",
            &format!("/v1/{SERVICE}/GetOrder"),
            Some(json!({"id": "x"}))
        )
        .status,
        404
    );
}

#[test]
fn failed_calls_map_to_their_status_never_200() {
    let server = PythonServer::start(SERVER);
    let gw = gateway(&server);
    // Trailers-Only (the error before any message), with google.rpc.Status details.
    let r = call(&gw, "GET", "/v1/orders/missing", None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v = r.json();
    assert_eq!(v["grpc_code"], 5);
    assert_eq!(v["grpc_status"], "NOT_FOUND");
    assert_eq!(v["message"], "no order missing: 100%", "percent-decoded");
    assert_eq!(
        v["details"],
        json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ORDER_NOT_FOUND",
                "domain": "shop.example", "metadata": {"id": "missing"}}])
    );
    // A message, then the error in the trailers: still the error, not the message.
    let r = call(&gw, "GET", "/v1/orders/partial", None);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["grpc_status"], "INTERNAL");
    assert!(
        !r.text().contains("ann"),
        "the partial message is not sent: {}",
        r.text()
    );
    // The documented table.
    for (code, http) in [
        (1, 499),
        (2, 500),
        (3, 400),
        (4, 504),
        (6, 409),
        (7, 403),
        (8, 429),
        (9, 400),
        (10, 409),
        (11, 400),
        (12, 501),
        (13, 500),
        (14, 503),
        (15, 500),
        (16, 401),
    ] {
        let r = call(&gw, "GET", &format!("/v1/orders/code-{code}"), None);
        assert_eq!(r.status, http, "grpc status {code}: {}", r.text());
        assert_eq!(r.json()["grpc_code"], code);
    }
    // By route and gRPC status in the metrics; the method and status in the access log.
    let m = gw.metrics();
    assert_eq!(
        sum_metric(
            &m,
            "portcullis_requests_total",
            &[("route", "orders"), ("grpc_status", "5"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        sum_metric(
            &m,
            "portcullis_requests_total",
            &[("route", "orders"), ("grpc_status", "13")]
        ),
        2.0
    );
    let log = gw.log();
    assert!(
        log.lines().any(|l| l.contains("path=/v1/orders/missing")
            && l.contains("grpc=/shop.orders.v1.OrderService/GetOrder")
            && l.contains("grpc_status=5")),
        "{log}"
    );
}

#[test]
fn mistakes_are_refused_before_the_service_sees_them() {
    let server = PythonServer::start(SERVER);
    let gw = gateway(&server);
    let before = service_calls(&gw);
    let refused: Vec<(&str, &str, Option<Value>, u16)> = vec![
        ("POST", "/v1/orders", Some(json!({"bogus": 1})), 400),
        ("GET", "/v1/orders/1?nope=1", None, 400),
        ("GET", "/v1/orders?page_size=many", None, 400),
        ("GET", "/v1/orders?page_size=99999999999", None, 400),
        ("GET", "/v1/orders?status=LOST", None, 400),
        ("GET", "/v1/orders?customer=a&customer=b", None, 400),
        ("GET", "/v1/orders?filter=x", None, 400),
        ("GET", "/v1/customers/bob/orders?customer=eve", None, 400),
        ("PUT", "/v1/orders/9?note=x", Some(json!({"order": {}})), 400),
        ("POST", "/v1/orders", Some(json!(["not", "an", "object"])), 400),
        ("GET", "/v1/orders/%FF", None, 400),
        ("POST", "/v1/orders/5", Some(json!({})), 405),
        ("GET", "/v1/nothing/here", None, 404),
    ];
    for (method, path, body, status) in &refused {
        let r = call(&gw, method, path, body.clone());
        assert_eq!(r.status, *status, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{method} {path}"
        );
    }
    let r = call(&gw, "POST", "/v1/orders/5", Some(json!({})));
    assert_eq!(r.header("allow"), Some("GET, PUT, PATCH, DELETE"));
    let r = call(&gw, "POST", "/v1/orders", Some(json!({"bogus": 1})));
    assert!(
        r.json()["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("bogus")),
        "{}",
        r.text()
    );
    // A body where the binding takes none; a body that is not JSON; an oversize body (413,
    // declared or not).
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/v1/orders/1",
        &[("content-type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request(
        gw.addr(),
        "POST",
        "localhost",
        "/v1/orders",
        &[("content-type", "text/plain")],
        b"{}",
    );
    assert_eq!(r.status, 415);
    let r = request(gw.addr(), "POST", "localhost", "/v1/orders", &[], b"{not json");
    assert_eq!(r.status, 400);
    let big = json!({"customer": "x".repeat(100)}).to_string();
    let r = request(
        gw.addr(),
        "POST",
        "localhost",
        "/alt/v1/orders",
        &[("content-type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let chunked = format!(
        "POST /alt/v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    assert_eq!(send_raw(gw.addr(), chunked.as_bytes()).status, 413);
    assert_eq!(
        service_calls(&gw),
        before + 1,
        "only the Inspect call itself reached the service"
    );

    // `ignore_unknown_query` drops what it does not know, and binds the rest.
    let r = call(&gw, "GET", "/alt/v1/orders/3?nope=1&verbose=true", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["note"], "verbose");
}

#[test]
fn the_deadline_and_the_metadata_reach_the_service() {
    let server = PythonServer::start(SERVER);
    let gw = gateway(&server);
    let headers = [
        ("authorization", "Bearer not-for-the-service"),
        ("x-tenant", "t1"),
        ("x-other", "dropped"),
        ("grpc-timeout", "99S"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let inspect = |path: &str| {
        let r = request(gw.addr(), "GET", "localhost", path, &headers, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let v = inspect("/v1/inspect");
    let md = &v["metadata"];
    assert!(md["x-request-id"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(
        md["traceparent"]
            .as_str()
            .is_some_and(|t| t.contains("0af7651916cd43dd8448eb211c80319c")),
        "the trace continues: {v}"
    );
    for absent in ["authorization", "x-tenant", "x-other"] {
        assert!(
            md.get(absent).is_none(),
            "{absent} is not forwarded by default: {v}"
        );
    }
    // The route's 3 s timeout as grpc-timeout, not the client's 99 s.
    let left = v["deadlineLeft"].as_f64().unwrap_or(0.0);
    assert!(left > 0.5 && left <= 3.0, "deadline left {left}");
    // Forwarded when listed.
    let v = inspect("/alt/v1/inspect");
    let md = &v["metadata"];
    assert_eq!(md["authorization"], "Bearer not-for-the-service");
    assert_eq!(md["x-tenant"], "t1");
    assert!(md.get("x-other").is_none());
    let left = v["deadline_left"].as_f64().unwrap_or(0.0);
    assert!(left > 0.0 && left <= 1.0, "deadline left {left}");

    // Past the route's timeout: 504, well before the service answers.
    let started = Instant::now();
    let r = call(&gw, "GET", "/alt/v1/inspect?sleep_ms=5000", None);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn server_streaming_is_written_as_messages_arrive() {
    let server = PythonServer::start(SERVER);
    let gw = gateway(&server);
    let r = call(&gw, "GET", "/v1/customers/ann/orders:watch?count=3", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!([{"id": "w-0", "customer": "ann"}, {"id": "w-1", "customer": "ann"}, {"id": "w-2", "customer": "ann"}])
    );
    let r = call(&gw, "GET", "/v1/customers/ann/orders:watch?count=0", None);
    assert_eq!(r.json(), json!([]));
    let r = call(&gw, "GET", "/alt/v1/customers/ann/orders:watch?count=2", None);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["id"], "w-1");
    // An error before any message is an ordinary error answer.
    let r = call(
        &gw,
        "GET",
        "/v1/customers/ann/orders:watch?count=0&fail=true",
        None,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // After messages: an error element, and the response is cut short (no final chunk), so
    // no client reads it as a complete success.
    let raw = raw_exchange(
        gw.addr(),
        "GET /v1/customers/ann/orders:watch?count=2&fail=true HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"grpc_status\":\"ABORTED\""), "{raw}");
    assert!(raw.contains("w-1"), "{raw}");
    assert!(
        !raw.ends_with("0\r\n\r\n"),
        "the chunked body is not completed: {raw:?}"
    );
}

/// Send `request` and read until the gateway closes the connection.
fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn authentication_and_rate_limits_apply_to_transcoded_routes() {
    let server = PythonServer::start(SERVER);
    let gw = gateway(&server);
    let before = service_calls(&gw);
    let r = call(&gw, "GET", "/private/v1/orders/1", None);
    assert_eq!(r.status, 401);
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/private/v1/orders/1",
        &[("x-api-key", "wrong")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        service_calls(&gw),
        before + 1,
        "refused calls never reached the service"
    );
    // The key in the query is the credential, not an unknown parameter, and not a field.
    let r = call(
        &gw,
        "GET",
        &format!("/private/v1/orders/1?api_key={KEY}&verbose=true"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["note"], "verbose");
    assert!(r.header("ratelimit").is_some());
    let r = request(
        gw.addr(),
        "GET",
        "localhost",
        "/private/v1/orders/2",
        &[("x-api-key", KEY)],
        b"",
    );
    assert_eq!(r.status, 429, "1 per hour: {}", r.text());
    assert_eq!(
        service_calls(&gw),
        before + 3,
        "the limited call never reached the service"
    );
}

#[test]
fn check_reports_every_grpc_problem_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write proto");
        p.display().to_string()
    };
    let streaming = write(
        "streaming.proto",
        "syntax = \"proto3\";\npackage s;\nimport \"google/api/annotations.proto\";\nmessage M { string id = 1; }\nservice S {\n  rpc Up(stream M) returns (M) { option (google.api.http) = { post: \"/s/up\" body: \"*\" }; }\n  rpc Both(stream M) returns (stream M);\n  rpc Plain(M) returns (M);\n  rpc Get(M) returns (M) { option (google.api.http) = { get: \"/s/{nope}\" }; }\n  rpc Twin(M) returns (M) { option (google.api.http) = { get: \"/v1/orders/{id}\" }; }\n}\nservice Bare { rpc Plain(M) returns (M); }\n",
    );
    let broken = write(
        "broken.proto",
        "syntax = \"proto3\";\npackage b;\nmessage M {\n  string id = 1\n}\n",
    );
    let no_http = write("nohttp.proto", "syntax = \"proto3\";\npackage n;\nmessage M { string id = 1; }\nservice N { rpc Get(M) returns (M); }\n");
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  g: {{ targets: [\"127.0.0.1:1\"], protocol: h2c }}\n  plain: {{ targets: [\"127.0.0.1:2\"] }}\n\
routes:\n\
  - {{ name: a, match: {{ path_prefix: /s }}, grpc: {{ upstream: g, protos: [\"{streaming}\"], services: [s.S, s.Missing, s.Bare] }} }}\n\
  - {{ name: b, match: {{ path_prefix: /b }}, grpc: {{ upstream: g, protos: [\"{broken}\"], services: [b.S] }} }}\n\
  - {{ name: c, match: {{ path_prefix: /n }}, grpc: {{ upstream: plain, protos: [\"{no_http}\"], services: [n.N] }} }}\n\
  - {{ name: d, match: {{ path_prefix: /d }}, upstream: g, grpc: {{ upstream: g, services: [x.Y] }} }}\n\
  - {{ name: e, match: {{ path_prefix: /v1 }}, grpc: {{ upstream: plain, protos: [\"{PROTO}\"], services: [{SERVICE}], forward_headers: [grpc-timeout, x-ok, connection] }} }}\n"
    );
    let out = check(&yaml);
    out.assert_reports(&[
        "routes[0].grpc.services[0]",
        "`/s.S/Up` is a client-streaming method",
        "`/s.S/Both` is a bidirectional-streaming method",
        "`nope` is not a field of s.M",
        "service `s.Missing` is not in the descriptors (they define: s.S, s.Bare)",
        "service `s.Bare` has no method with a `google.api.http` annotation",
        "broken.proto:5:1",
        "do not hold the `google.api.http` extension",
        "upstream `plain` speaks HTTP/1.1",
        "`grpc-timeout` is never forwarded as gRPC metadata",
        "`connection` is never forwarded as gRPC metadata",
        "`upstream` cannot go with `grpc`",
        "missing `protos`",
    ]);

    // A binding another route takes, and one outside the route's own match.
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  g: {{ targets: [\"127.0.0.1:1\"], protocol: h2c }}\n\
routes:\n\
  - {{ name: orders, match: {{ path_prefix: /v1/orders }}, grpc: {{ upstream: g, protos: [\"{PROTO}\"], services: [{SERVICE}] }} }}\n\
  - {{ name: legacy, match: {{ path_prefix: /v1/orders/legacy }}, upstream: g }}\n"
    );
    let out = check(&yaml);
    assert_eq!(out.code, 1, "{}", out.stderr);
    for want in [
        "grpc binding `GET /v1/customers/{customer}/orders` (/shop.orders.v1.OrderService/ListOrders) is outside the route's `match`",
        "grpc binding `GET /v1/files/{path=**}` (/shop.orders.v1.OrderService/GetFile) is outside",
        "grpc binding `SEARCH /v1/orders:search`",
    ] {
        assert!(out.stderr.contains(want), "missing {want:?} in:\n{}", out.stderr);
    }
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  g: {{ targets: [\"127.0.0.1:1\"], protocol: h2c }}\n\
routes:\n\
  - {{ name: orders, match: {{ path_prefix: /v1 }}, grpc: {{ upstream: g, protos: [\"{PROTO}\"], services: [{SERVICE}] }} }}\n\
  - {{ name: files, match: {{ path_prefix: /v1/files }}, upstream: g }}\n"
    );
    let out = check(&yaml);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("grpc binding `GET /v1/files/{path=**}` (/shop.orders.v1.OrderService/GetFile) is taken by route `files`"), "{}", out.stderr);

    // The worked example's shape passes.
    let yaml = format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  g: {{ targets: [\"127.0.0.1:1\"], protocol: h2c }}\n\
routes:\n\
  - {{ name: orders, match: {{ path_prefix: /v1 }}, grpc: {{ upstream: g, protos: [\"{PROTO}\"], services: [{SERVICE}] }} }}\n"
    );
    let out = check(&yaml);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// Build a FileDescriptorSet of orders.proto with grpcio-tools' protoc (`--include_imports`
/// or not).
fn descriptor_set(dir: &std::path::Path, include_imports: bool) -> String {
    let out = dir.join(if include_imports {
        "orders.pb"
    } else {
        "orders-bare.pb"
    });
    let script = format!(
        "import os, sys, grpc_tools\nfrom grpc_tools import protoc\nwk = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto')\nargs = ['protoc', '-I{here}', '-I{protos}', '-I' + wk, '--descriptor_set_out={out}'{imports}, 'orders.proto']\nsys.exit(protoc.main(args))\n",
        here = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/protos"),
        protos = concat!(env!("CARGO_MANIFEST_DIR"), "/protos"),
        out = out.display(),
        imports = if include_imports { ", '--include_imports'" } else { "" },
    );
    let status = std::process::Command::new(python())
        .args(["-c", &script])
        .status()
        .expect("run protoc");
    assert!(status.success(), "protoc failed");
    out.display().to_string()
}

#[test]
fn a_descriptor_set_serves_like_the_protos_and_one_without_imports_is_refused() {
    let server = PythonServer::start(SERVER);
    let dir = tempfile::tempdir().expect("tempdir");
    let set = descriptor_set(dir.path(), true);
    let body = format!(
        "upstreams:\n  orders-grpc: {{ targets: [\"127.0.0.1:{}\"], protocol: h2c }}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /v1 }}, grpc: {{ upstream: orders-grpc, descriptor_set: \"{set}\", services: [{SERVICE}] }} }}\n",
        server.port
    );
    let gw = Gateway::start(&body);
    let r = call(&gw, "GET", "/v1/orders/42", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["totalCents"], "9007199254740993");
    // Error details print although the set does not hold google.rpc.ErrorInfo: the bundled
    // error types are added.
    let r = call(&gw, "GET", "/v1/orders/missing", None);
    assert_eq!(
        r.json()["details"][0]["reason"],
        "ORDER_NOT_FOUND",
        "{}",
        r.text()
    );

    let bare = descriptor_set(dir.path(), false);
    let out = check(&format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nupstreams:\n  g: {{ targets: [\"127.0.0.1:1\"], protocol: h2c }}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /v1 }}, grpc: {{ upstream: g, descriptor_set: \"{bare}\", services: [{SERVICE}] }} }}\n  - {{ name: junk, match: {{ path_prefix: /j }}, grpc: {{ upstream: g, descriptor_set: \"{PROTO}\", services: [{SERVICE}] }} }}\n"
    ));
    out.assert_reports(&[
        "routes[0].grpc.descriptor_set",
        "an incomplete FileDescriptorSet (imported file 'google/api/annotations.proto' has not been added): build it with protoc --include_imports",
        "routes[1].grpc.descriptor_set",
        "not a FileDescriptorSet",
    ]);
}
