//! Per-request tracing cost, one server span and one client span per request, sampled and
//! exported (to a no-op exporter behind each side's own queue), with `traceparent` read from
//! the client and written for the upstream:
//!
//! - `sdk`: opentelemetry 0.31 + opentelemetry_sdk 0.31 (`SdkTracerProvider` with the batch
//!   span processor, W3C `TraceContextPropagator`), as pingap uses it;
//! - `portcullis`: `src/observe/trace.rs`, the code the gateway runs.
//!
//! Prints nanoseconds per request (median of 7 rounds of 200,000 requests) for each, for a
//! sampled trace (both spans recorded and queued; queues large enough that none is dropped)
//! and an unsampled one (propagation only).

#[path = "../../../src/observe/trace.rs"]
#[allow(dead_code)]
mod trace;

use std::collections::HashMap;
use std::time::Instant;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
const ROUNDS: usize = 7;
const REQUESTS: usize = 200_000;
const QUEUE: usize = 1 << 24;

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

fn sdk_round(
    tracer: &impl Tracer<Span = opentelemetry_sdk::trace::Span>,
    propagator: &TraceContextPropagator,
    incoming_tp: &str,
) {
    for i in 0..REQUESTS {
        let mut incoming = HashMap::new();
        incoming.insert("traceparent".to_string(), incoming_tp.to_string());
        let parent = propagator.extract_with_context(&Context::new(), &incoming);
        // Attributes only for a recording span, as the gateway does.
        let server = tracer
            .span_builder("GET all")
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, &parent);
        let cx = parent.with_span(server);
        if cx.span().is_recording() {
            cx.span().set_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("url.path", "/app/orders"),
                KeyValue::new("http.route", "all"),
                KeyValue::new("client.address", "127.0.0.1"),
                KeyValue::new("portcullis.request_id", format!("{i:032x}")),
            ]);
        }
        let client = tracer
            .span_builder("GET")
            .with_kind(SpanKind::Client)
            .start_with_context(tracer, &cx);
        let ccx = cx.with_span(client);
        if ccx.span().is_recording() {
            ccx.span().set_attributes([
                KeyValue::new("server.address", "127.0.0.1"),
                KeyValue::new("server.port", 9001i64),
                KeyValue::new("portcullis.upstream", "app"),
                KeyValue::new("portcullis.target", "127.0.0.1:9001"),
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200i64),
            ]);
        }
        let mut outgoing = HashMap::new();
        propagator.inject_context(&ccx, &mut outgoing);
        std::hint::black_box(&outgoing);
        ccx.span().end();
        cx.span().end();
    }
}

fn portcullis_round(incoming: &'static str) {
    use trace::{Kind, Sampling, Span, TraceContext, Value};
    let sampling = Sampling {
        ratio: 1.0,
        export: true,
        max_queued: QUEUE,
        client_sampling: trace::ClientSampling::Always,
    };
    let incoming = http::HeaderValue::from_static(incoming);
    for i in 0..REQUESTS {
        let t = TraceContext::begin(Some(&incoming), None, &sampling, true);
        let client_id = TraceContext::child_id();
        let outgoing = t.traceparent(&client_id);
        std::hint::black_box(&outgoing);
        if !t.recording {
            continue;
        }
        let now = trace::unix_nanos(std::time::SystemTime::now());
        trace::submit(
            Span {
                trace_id: t.trace_id,
                span_id: client_id,
                parent_span_id: Some(t.span_id),
                tracestate: t.tracestate.clone(),
                name: "GET".to_string(),
                kind: Kind::Client,
                start_unix_nanos: now,
                end_unix_nanos: now,
                attributes: vec![
                    ("server.address", Value::Str("127.0.0.1".to_string())),
                    ("server.port", Value::Int(9001)),
                    ("portcullis.upstream", Value::Str("app".to_string())),
                    ("portcullis.target", Value::Str("127.0.0.1:9001".to_string())),
                    ("http.request.method", Value::Str("GET".to_string())),
                    ("http.response.status_code", Value::Int(200)),
                ],
                error: None,
            },
            t.max_queued,
        );
        trace::submit(
            Span {
                trace_id: t.trace_id,
                span_id: t.span_id,
                parent_span_id: t.parent_span_id,
                tracestate: t.tracestate.clone(),
                name: "GET all".to_string(),
                kind: Kind::Server,
                start_unix_nanos: now,
                end_unix_nanos: now,
                attributes: vec![
                    ("http.request.method", Value::Str("GET".to_string())),
                    ("http.response.status_code", Value::Int(200)),
                    ("url.path", Value::Str("/app/orders".to_string())),
                    ("http.route", Value::Str("all".to_string())),
                    ("client.address", Value::Str("127.0.0.1".to_string())),
                    ("portcullis.request_id", Value::Str(format!("{i:032x}"))),
                ],
                error: None,
            },
            t.max_queued,
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // The gateway's exporter side: drain the queue as its background task does.
    std::thread::spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::hint::black_box(trace::drain());
    });
    // Both queues large enough that no span is dropped: the cost of recording every span.
    let processor = BatchSpanProcessor::builder(Discard)
        .with_batch_config(BatchConfigBuilder::default().with_max_queue_size(QUEUE).build())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("bench");
    let propagator = TraceContextPropagator::new();
    // The client's trace, sampled (every span recorded) and not sampled (propagation only:
    // the SDK's parent-based sampler makes non-recording spans).
    for (label, incoming) in [("sampled", INCOMING), ("not sampled", UNSAMPLED)] {
        let mut sdk = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            sdk_round(&tracer, &propagator, incoming);
            sdk.push(t.elapsed().as_nanos() as f64 / REQUESTS as f64);
            let t = Instant::now();
            portcullis_round(incoming);
            ours.push(t.elapsed().as_nanos() as f64 / REQUESTS as f64);
        }
        let (sdk, ours) = (median(sdk), median(ours));
        println!(
            "{label}: sdk {sdk:.0} ns, portcullis {ours:.0} ns per request; sdk/portcullis {:.2}",
            sdk / ours
        );
    }
    println!("dropped: portcullis {}", trace::dropped());
    let _ = provider.shutdown();
}
