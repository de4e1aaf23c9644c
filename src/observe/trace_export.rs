//! The span exporter: a background task that drains the span queue ([`super::trace`]) and
//! POSTs batches to the current configuration's `tracing.otlp_endpoint` as OTLP/HTTP JSON
//! (`resourceSpans` → `scopeSpans` → `spans`; ids in hex, enums as integers, 64-bit
//! integers as strings, per the OTLP JSON encoding).
//!
//! It never touches the request path: a slow or absent collector makes the queue fill and
//! spans drop (counted), nothing else. One batch is in flight at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::{json, Value as Json};

use super::metrics;
use super::trace::{hex, Span, Value};
use crate::runtime::Runtime;

/// Waiting spans leave this often, in batches of at most this many.
const BATCH_SPANS: usize = 512;
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Per connect, read and write to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct TraceExporter {
    runtime: Arc<Runtime>,
    /// The last export failed.
    failing: AtomicBool,
}

impl TraceExporter {
    pub fn new(runtime: Arc<Runtime>) -> TraceExporter {
        TraceExporter {
            runtime,
            failing: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl BackgroundService for TraceExporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(BATCH_DELAY) => {}
            }
            self.export_waiting().await;
        }
        // Shutting down: what is queued goes out once, within the export timeout.
        self.export_waiting().await;
    }
}

impl TraceExporter {
    /// Send every waiting span, in batches of at most [`BATCH_SPANS`], one at a time. After a
    /// failed batch the rest are counted as failed rather than sent: a collector that is down
    /// is not asked again until the next round.
    async fn export_waiting(&self) {
        let mut waiting = super::trace::drain();
        while !waiting.is_empty() {
            let rest = waiting.split_off(waiting.len().min(BATCH_SPANS));
            if !self.export(&mut waiting).await {
                metrics::get()
                    .trace_spans
                    .with_label_values(&["export_failed"])
                    .inc_by(rest.len() as u64);
                return;
            }
            waiting = rest;
        }
    }
}

impl TraceExporter {
    /// Send `batch` (emptied either way) to the configured collector; whether it took it.
    async fn export(&self, batch: &mut Vec<Span>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let spans = std::mem::take(batch);
        let snapshot = self.runtime.load();
        let tracing = &snapshot.tracing;
        let m = metrics::get();
        let Some(endpoint) = tracing.otlp_endpoint.as_deref() else {
            // Tracing was switched off by a reload: what was queued has nowhere to go.
            m.trace_spans
                .with_label_values(&["export_failed"])
                .inc_by(spans.len() as u64);
            return false;
        };
        let body = serde_json::to_vec(&payload(&spans, &tracing.service_name)).unwrap_or_default();
        let sent = crate::upstream::url_call::call(crate::upstream::url_call::UrlRequest {
            method: "POST",
            url: endpoint,
            headers: &[("content-type", "application/json")],
            body: Some(body.into()),
            timeout: EXPORT_TIMEOUT,
            max_body: 64 * 1024,
        })
        .await;
        let result = match &sent {
            Ok((status, _)) if (200..300).contains(status) => "exported",
            _ => "export_failed",
        };
        m.trace_spans
            .with_label_values(&[result])
            .inc_by(spans.len() as u64);
        let exported = result == "exported";
        // A run of failures is logged once, and its end.
        let was_failing = self.failing.swap(!exported, Ordering::Relaxed);
        match (exported, was_failing) {
            (false, false) => {
                let why = match sent {
                    Ok((status, _)) => format!("HTTP status {status}"),
                    Err(e) => e,
                };
                log::warn!(
                    "tracing: exporting {} spans to {} failed: {why} (further failures are \
                     counted in portcullis_trace_spans_total{{result=\"export_failed\"}})",
                    spans.len(),
                    crate::redact::url(endpoint)
                );
            }
            (true, true) => log::info!(
                "tracing: exporting to {} works again",
                crate::redact::url(endpoint)
            ),
            _ => {}
        }
        exported
    }
}

/// One OTLP `ExportTraceServiceRequest` in its JSON encoding.
pub fn payload(spans: &[Span], service_name: &str) -> Json {
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [attribute("service.name", &Value::Str(service_name.to_string()))] },
            "scopeSpans": [{
                "scope": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn span_json(s: &Span) -> Json {
    let mut out = json!({
        "traceId": hex(&s.trace_id),
        "spanId": hex(&s.span_id),
        "name": s.name,
        "kind": s.kind as u8,
        "startTimeUnixNano": s.start_unix_nanos.to_string(),
        "endTimeUnixNano": s.end_unix_nanos.to_string(),
        "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
        "status": match &s.error {
            Some(message) => json!({ "code": 2, "message": message }),
            None => json!({}),
        },
    });
    if let Some(parent) = &s.parent_span_id {
        out["parentSpanId"] = json!(hex(parent));
    }
    if let Some(state) = s.tracestate.as_ref().and_then(|v| v.to_str().ok()) {
        out["traceState"] = json!(state);
    }
    out
}

fn attribute(key: &str, value: &Value) -> Json {
    let value = match value {
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Int(i) => json!({ "intValue": i.to_string() }),
    };
    json!({ "key": key, "value": value })
}
