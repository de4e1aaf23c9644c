//! Distributed tracing: W3C `traceparent` continued or started and passed to every upstream
//! request (proxied, retried, aggregation parts), and spans exported over OTLP/HTTP JSON to a
//! collector written here, which decodes what it receives.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// An OTLP/HTTP receiver: decodes each POSTed `ExportTraceServiceRequest` (JSON) and keeps
/// its spans, each with the batch's `service.name`. With `hang`, it reads requests and never
/// answers (a stuck collector).
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
    hang: Arc<AtomicBool>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let hang = Arc::new(AtomicBool::new(false));
        let (kept, stuck) = (Arc::clone(&spans), Arc::clone(&hang));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, stuck) = (Arc::clone(&kept), Arc::clone(&stuck));
                std::thread::spawn(move || serve(stream, &kept, &stuck));
            }
        });
        Collector { addr, spans, hang }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }

    /// Wait until spans of `trace_id` satisfy `done`.
    fn wait_trace(&self, trace_id: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        wait_for(what, Duration::from_secs(20), || {
            let of: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["traceId"] == trace_id)
                .collect();
            done(&of).then_some(of)
        })
    }
}

/// Batches a hanging collector took and never answered.
static HUNG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn serve(stream: TcpStream, kept: &Mutex<Vec<Value>>, hang: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first {
                assert!(line.starts_with("POST /v1/traces "), "{line}");
                first = false;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if hang.load(Ordering::SeqCst) {
            HUNG.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        let doc: Value = serde_json::from_slice(&body).expect("the export is JSON");
        for rs in doc["resourceSpans"].as_array().expect("resourceSpans") {
            let service = rs["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
                .map(|kv| kv["value"]["stringValue"].clone())
                .unwrap_or(Value::Null);
            for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
                for span in ss["spans"].as_array().expect("spans") {
                    let mut span = span.clone();
                    span["service"] = service.clone();
                    kept.lock().unwrap().push(span);
                }
            }
        }
        let mut out = &stream;
        let _ = out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    }
}

/// A span attribute's value (string or integer, as text).
fn attr(span: &Value, key: &str) -> Option<String> {
    let kv = span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)?;
    let v = &kv["value"];
    v["stringValue"]
        .as_str()
        .or_else(|| v["intValue"].as_str())
        .map(str::to_string)
}

/// `(trace id, parent id, flags)` of a `traceparent` an upstream received.
fn parent_of(seen: &SeenRequest) -> (String, String, String) {
    let tp = seen
        .header("traceparent")
        .expect("the upstream got a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{tp}");
    (parts[1].to_string(), parts[2].to_string(), parts[3].to_string())
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{CLIENT_SPAN}-{flags}")
}

#[test]
fn traces_are_continued_propagated_to_every_attempt_and_part_and_exported() {
    let collector = Collector::start();
    let (app, a, b) = (Upstream::start("app"), Upstream::start("a"), Upstream::start("b"));
    let gw = Gateway::start_with(
        "access_log: { format: json, fields: [trace_id, path] }",
        &format!(
        "tracing: {{ otlp_endpoint: \"{}\", service_name: shop-gateway }}\n\
         upstreams:\n  app: {{ targets: [\"{}\"], retry: {{ attempts: 2, on: [503], backoff: {{ base: 1ms, max: 1ms }} }} }}\n  \
         a: {{ targets: [\"{}\"] }}\n  b: {{ targets: [\"{}\"] }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: /app }}, upstream: app }}\n  \
         - name: both\n    match: {{ path: /both }}\n    aggregate:\n      parts:\n        \
         - {{ name: a, upstream: a, path: /a }}\n        - {{ name: b, upstream: b, path: /b }}\n",
        collector.endpoint(),
        app.addr(),
        a.addr(),
        b.addr()
    ));

    // A valid traceparent is continued: same trace, the gateway's span in between.
    let tp = traceparent("01");
    let r = request(
        gw.addr(),
        "GET",
        "shop.example",
        "/app/orders",
        &[("traceparent", &tp), ("tracestate", "vendor=opaque,other=1")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = app.requests().pop().expect("the upstream saw the request");
    let (trace, upstream_parent, flags) = parent_of(&seen);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(
        upstream_parent, CLIENT_SPAN,
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(seen.header("tracestate"), Some("vendor=opaque,other=1"));
    let spans = collector.wait_trace(TRACE, "the request's two spans", |s| s.len() >= 2);
    let server = spans.iter().find(|s| s["kind"] == 2).expect("a SERVER span");
    let client = spans.iter().find(|s| s["kind"] == 3).expect("a CLIENT span");
    assert_eq!(
        server["parentSpanId"], CLIENT_SPAN,
        "SERVER continues the client's span"
    );
    assert_eq!(
        client["parentSpanId"], server["spanId"],
        "CLIENT is a child of SERVER"
    );
    assert_eq!(
        client["spanId"],
        upstream_parent.as_str(),
        "the upstream's parent is the CLIENT span"
    );
    assert_eq!(server["name"], "GET all");
    assert_eq!(server["service"], "shop-gateway");
    assert_eq!(server["traceState"], "vendor=opaque,other=1");
    assert_eq!(attr(server, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(server, "http.route").as_deref(), Some("all"));
    assert_eq!(attr(server, "url.path").as_deref(), Some("/app/orders"));
    assert_eq!(attr(client, "server.port"), Some(app.addr().port().to_string()));
    let start: u128 = server["startTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap();
    let end: u128 = server["endTimeUnixNano"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap();
    assert!(start > 1_600_000_000_000_000_000 && end >= start, "{server}");
    // The CLIENT span's start is read back from the monotonic clock: it lies inside the
    // SERVER span (a millisecond's margin: the two spans' wall-clock reads are microseconds
    // apart), and an upstream round trip takes time.
    let time =
        |span: &Value, field: &str| -> u128 { span[field].as_str().and_then(|t| t.parse().ok()).unwrap() };
    let (client_start, client_end) = (time(client, "startTimeUnixNano"), time(client, "endTimeUnixNano"));
    assert!(client_end > client_start, "{client}");
    let millisecond = 1_000_000;
    assert!(
        client_start + millisecond >= start && client_end <= end + millisecond,
        "{client} inside {server}"
    );

    // A retry is a second CLIENT span, and the upstream sees each attempt's own parent.
    app.reset();
    app.set_status(503);
    let tp = format!("00-{}-{CLIENT_SPAN}-01", "1".repeat(32));
    let r = request(
        gw.addr(),
        "GET",
        "shop.example",
        "/app/x",
        &[("traceparent", &tp)],
        b"",
    );
    assert_eq!(r.status, 503);
    let parents: Vec<String> = app.requests().iter().map(|s| parent_of(s).1).collect();
    assert_eq!(parents.len(), 2, "tried twice");
    assert_ne!(parents[0], parents[1], "each attempt is its own span");
    let spans = collector.wait_trace(&"1".repeat(32), "two attempts", |s| {
        s.iter().filter(|s| s["kind"] == 3).count() >= 2 && s.iter().any(|s| s["kind"] == 2)
    });
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    let mut attempts: Vec<String> = spans
        .iter()
        .filter(|s| s["kind"] == 3)
        .map(|s| {
            assert_eq!(s["parentSpanId"], server["spanId"]);
            assert_eq!(attr(s, "error.type").as_deref(), Some("503"), "{s}");
            assert_eq!(s["status"]["code"], 2);
            s["spanId"].as_str().unwrap().to_string()
        })
        .collect();
    attempts.sort();
    let mut expected = parents.clone();
    expected.sort();
    assert_eq!(attempts, expected);
    app.set_status(200);

    // Every aggregation part carries the trace, with its own span as the parent.
    let tp = format!("00-{}-{CLIENT_SPAN}-01", "2".repeat(32));
    let r = request(
        gw.addr(),
        "GET",
        "shop.example",
        "/both",
        &[("traceparent", &tp)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let part_parents: Vec<String> = [&a, &b]
        .iter()
        .map(|up| {
            let (trace, parent, _) = parent_of(&up.requests().pop().expect("the part was called"));
            assert_eq!(trace, "2".repeat(32));
            parent
        })
        .collect();
    assert_ne!(part_parents[0], part_parents[1]);
    let spans = collector.wait_trace(&"2".repeat(32), "the parts' spans", |s| {
        s.iter().filter(|s| s["kind"] == 3).count() >= 2 && s.iter().any(|s| s["kind"] == 2)
    });
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    for parent in &part_parents {
        let part = spans
            .iter()
            .find(|s| s["spanId"] == parent.as_str())
            .expect("the part's span");
        assert_eq!(part["parentSpanId"], server["spanId"]);
    }

    // An invalid traceparent starts a new trace; its tracestate is not passed on.
    app.reset();
    let bad = format!("00-{}-{CLIENT_SPAN}-01", TRACE.to_uppercase());
    let r = request(
        gw.addr(),
        "GET",
        "shop.example",
        "/app/y",
        &[("traceparent", &bad), ("tracestate", "vendor=opaque")],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = app.requests().pop().unwrap();
    let (trace, _, flags) = parent_of(&seen);
    assert_ne!(trace.to_uppercase(), TRACE.to_uppercase());
    assert_eq!(flags, "01", "a new trace is sampled at the default ratio 1");
    assert_eq!(seen.header("tracestate"), None);
    let spans = collector.wait_trace(&trace, "the new trace's spans", |s| s.len() >= 2);
    assert!(spans
        .iter()
        .all(|s| s.get("parentSpanId").is_none() || s["kind"] == 3));

    // A tracestate without any traceparent is not passed on either.
    app.reset();
    let r = request(
        gw.addr(),
        "GET",
        "shop.example",
        "/app/z",
        &[("tracestate", "vendor=opaque")],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = app.requests().pop().unwrap();
    assert_eq!(seen.header("tracestate"), None);
    assert_eq!(parent_of(&seen).2, "01", "a new trace is started");

    // The access log names the trace the gateway continued or started.
    let line = format!(r#"{{"trace_id":"{trace}","path":"/app/y"}}"#);
    wait_for("the access log line", Duration::from_secs(10), || {
        gw.log().contains(&line).then_some(())
    });
    assert!(gw
        .log()
        .contains(&format!(r#"{{"trace_id":"{TRACE}","path":"/app/orders"}}"#)));
    wait_for("exported spans counted", Duration::from_secs(10), || {
        (gw.metric("portcullis_trace_spans_total", &[("result", "exported")]) >= 8.0).then_some(())
    });
}

#[test]
fn propagation_works_without_a_collector_and_new_traces_are_sampled_at_the_ratio() {
    let app = Upstream::start("app");
    let gw = Gateway::start(&format!(
        "tracing: {{ sample_ratio: 0.5 }}\n{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
        upstream_yaml("app", &[app.addr()])
    ));
    // Continued traces keep the client's decision, sampled or not.
    for flags in ["01", "00"] {
        app.reset();
        let tp = traceparent(flags);
        let r = request(gw.addr(), "GET", "x", "/", &[("traceparent", &tp)], b"");
        assert_eq!(r.status, 200);
        let (trace, parent, seen_flags) = parent_of(&app.requests()[0]);
        assert_eq!((trace.as_str(), seen_flags.as_str()), (TRACE, flags));
        assert_ne!(parent, CLIENT_SPAN);
    }
    // New traces: sampled at 0.5 (400 draws: mean 200, σ 10; the bounds are ±7σ).
    app.reset();
    for _ in 0..400 {
        assert_eq!(gw.get("/").status, 200);
    }
    let seen = app.requests();
    let sampled = seen.iter().filter(|s| parent_of(s).2 == "01").count();
    assert!((130..=270).contains(&sampled), "{sampled} of 400 sampled");
    let mut traces: Vec<String> = seen.iter().map(|s| parent_of(s).0).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 400, "every new request is its own trace");
    // Nothing to export to: nothing counted as exported.
    assert_eq!(
        gw.metric("portcullis_trace_spans_total", &[("result", "exported")]),
        0.0
    );

    // `client_sampling: never`: the trace continues, but the ratio (0) decides, not the flag.
    let gw = Gateway::start(&format!(
        "tracing: {{ sample_ratio: 0, client_sampling: never }}\n{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
        upstream_yaml("app", &[app.addr()])
    ));
    app.reset();
    let tp = traceparent("01");
    assert_eq!(
        request(gw.addr(), "GET", "x", "/", &[("traceparent", &tp)], b"").status,
        200
    );
    let (trace, _, flags) = parent_of(&app.requests()[0]);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));

    // No `tracing` block at all: traces are still continued (with their tracestate) or started.
    let gw = Gateway::start(&format!(
        "{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
        upstream_yaml("app", &[app.addr()])
    ));
    app.reset();
    let tp = traceparent("01");
    let r = request(
        gw.addr(),
        "GET",
        "x",
        "/",
        &[("traceparent", &tp), ("tracestate", "vendor=opaque")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(gw.get("/").status, 200);
    let seen = app.requests();
    let (trace, parent, flags) = parent_of(&seen[0]);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(seen[0].header("tracestate"), Some("vendor=opaque"));
    let (started, _, _) = parent_of(&seen[1]);
    assert_eq!(started.len(), 32);
    assert_ne!(started, TRACE);

    // The configuration is checked.
    let out = check(
        "server:\n  listen: [\"127.0.0.1:8080\"]\ntracing: { otlp_endpoint: \"grpc://collector:4317\", sample_ratio: 2 }\n",
    );
    assert_ne!(out.code, 0);
    for expected in [
        "tracing.otlp_endpoint",
        "tracing.sample_ratio",
        "must be a fraction from 0 to 1",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
    }
}

#[test]
fn a_down_or_stuck_collector_never_fails_requests_and_drops_are_counted() {
    let app = Upstream::start("app");
    // Nothing listens on this port: every export fails.
    let closed = free_port();
    let gw = Gateway::start(&format!(
        "tracing: {{ otlp_endpoint: \"http://127.0.0.1:{closed}/v1/traces\" }}\n{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
        upstream_yaml("app", &[app.addr()])
    ));
    for _ in 0..20 {
        assert_eq!(gw.get("/").status, 200);
    }
    wait_for("failed exports counted", Duration::from_secs(20), || {
        (gw.metric("portcullis_trace_spans_total", &[("result", "export_failed")]) >= 40.0).then_some(())
    });
    assert!(gw.log().contains("tracing: exporting"), "{}", gw.log());

    // A collector that takes the batch and never answers: the queue (4 spans here) fills,
    // further spans are dropped and counted, and requests go on being served.
    let collector = Collector::start();
    collector.hang.store(true, Ordering::SeqCst);
    let gw = Gateway::start(&format!(
        "tracing: {{ otlp_endpoint: \"{}\", max_queued_spans: 4 }}\n{}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: app }}\n",
        collector.endpoint(),
        upstream_yaml("app", &[app.addr()])
    ));
    assert_eq!(gw.get("/").status, 200);
    wait_for(
        "the collector to take a batch and hang",
        Duration::from_secs(20),
        || (HUNG.load(Ordering::SeqCst) > 0).then_some(()),
    );
    for _ in 0..200 {
        assert_eq!(gw.get("/").status, 200);
    }
    wait_for("dropped spans counted", Duration::from_secs(10), || {
        (gw.metric("portcullis_trace_spans_total", &[("result", "queue_full")]) >= 100.0).then_some(())
    });
    assert!(collector.spans().is_empty());
}
