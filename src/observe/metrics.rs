//! The gateway's Prometheus metrics. One registry per process; label values are bounded
//! (route and upstream names from the configuration, known methods, status codes).

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub ratelimit_decisions: IntCounterVec,
    pub ratelimit_store_errors: IntCounterVec,
    pub ratelimit_store_duration: HistogramVec,
    pub ratelimit_store_breaker_open: IntGaugeVec,
    pub connections_open: prometheus::IntGauge,
    pub connections_refused: IntCounterVec,
    pub transforms: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub cache_stored: IntGaugeVec,
    pub cache_evictions: IntCounterVec,
    pub aggregate_parts: IntCounterVec,
    pub upstream_ejections: IntCounterVec,
    pub upstream_dns_failures: IntCounterVec,
    pub trace_spans: IntCounterVec,
    pub upstream_ejected: IntGaugeVec,
    pub upstream_inflight: IntGaugeVec,
    pub upstream_queued: IntGaugeVec,
    pub upstream_shed: IntCounterVec,
    pub upstream_max_requests: IntGaugeVec,
    pub upstream_response_seconds: HistogramVec,
    pub upstream_bytes: IntCounterVec,
    pub config_info: IntGaugeVec,
    pub access_log_dropped: prometheus::IntCounter,
    pub config_loaded: IntGaugeVec,
    pub upstream_circuit_open: IntGaugeVec,
    pub upstream_retries: IntCounterVec,
    pub upstream_retry_budget_exhausted: IntCounterVec,
    pub aggregate_part_duration: HistogramVec,
    pub tls_handshakes: IntCounterVec,
    pub websocket_connections: prometheus::IntGauge,
    pub tls_certificate_expiry: IntGaugeVec,
}

// The definitions are constants: creating them fails only on an invalid name, which the
// tests would catch at once. This is the one place that may panic, at first use.
static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| Metrics::try_new().unwrap_or_else(|e| unreachable!("invalid metric definition: {e}")));

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    fn try_new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
        };
        // Exponential buckets: `count` of them from `start` seconds, doubling.
        let histogram = |name: &str, help: &str, start: f64, count: usize, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(exponential_buckets(start, 2.0, count)?);
            register(&registry, HistogramVec::new(opts, labels)?)
        };
        let requests = counter(
            "portcullis_requests_total",
            "Requests answered, by route, API version (empty on unversioned routes), method, status \
             and, for gRPC calls, grpc_status (empty otherwise).",
            &["route", "version", "method", "status", "grpc_status"],
        )?;
        let upstream_requests = counter(
            "portcullis_upstream_requests_total",
            "Attempts sent to upstream targets, by upstream, target and status (`error` when no response, `aborted` when the client went away first).",
            &["upstream", "target", "status"],
        )?;
        let transforms = counter(
            "portcullis_transform_total",
            "Response transformations by route and outcome (applied, passed: the original sent after a failure with on_error: pass, rejected: 502 after a failure).",
            &["route", "outcome"],
        )?;
        let cache_requests = counter(
            "portcullis_cache_requests_total",
            "Requests on caching routes by route and cache status (HIT, MISS, EXPIRED, STALE, \
             UPDATING, REVALIDATED, BYPASS).",
            &["route", "status"],
        )?;
        let cache_stored = gauge(
            "portcullis_cache_stored",
            "What the response store holds: `bytes` (keys, heads and bodies) and `objects`.",
            &["what"],
        )?;
        let cache_evictions = counter(
            "portcullis_cache_evictions_total",
            "Entries leaving the response store, by reason (size: evicted for room, expired, \
             purged).",
            &["reason"],
        )?;
        let config_reloads = counter(
            "portcullis_config_reloads_total",
            "Live configuration reloads, by result (success or failure).",
            &["result"],
        )?;
        let jwks_fetches = counter(
            "portcullis_jwks_fetches_total",
            "JWKS fetches by URL and result (success or failure).",
            &["url", "result"],
        )?;
        let ratelimit_decisions = counter(
            "portcullis_ratelimit_decisions_total",
            "Rate-limit decisions by policy and decision (allow, reject, missing_key, \
             store_full, store_error_allow, store_error_deny).",
            &["policy", "decision"],
        )?;
        let ratelimit_store_errors = counter(
            "portcullis_ratelimit_store_errors_total",
            "Rate-limit store failures by store and kind (timeout, connect, io, protocol, refused, \
             breaker_open).",
            &["store", "kind"],
        )?;
        let ratelimit_store_duration = histogram(
            "portcullis_ratelimit_store_duration_seconds",
            "Time for one shared-store decision (connection, round trip, script).",
            0.000_05,
            14,
            &["store"],
        )?;
        let ratelimit_store_breaker_open = gauge(
            "portcullis_ratelimit_store_breaker_open",
            "1 while the store's circuit breaker is open (the store is not asked).",
            &["store"],
        )?;
        let request_duration = histogram(
            "portcullis_request_duration_seconds",
            "Time from request to last response byte.",
            0.0005,
            16,
            &["route"],
        )?;
        let upstream_healthy = gauge(
            "portcullis_upstream_healthy",
            "1 when the target passes its health check.",
            &["upstream", "target"],
        )?;
        let connections_open = register(
            &registry,
            prometheus::IntGauge::new(
                "portcullis_connections_open",
                "Client connections the proxy listeners hold.",
            )?,
        )?;
        let connections_refused = counter(
            "portcullis_connections_refused_total",
            "Client connections refused at accept, by the cap that refused them \
             (max_connections, max_connections_per_ip).",
            &["reason"],
        )?;
        let websocket_connections = register(
            &registry,
            prometheus::IntGauge::new(
                "portcullis_websocket_connections",
                "Upgraded (WebSocket) connections open through the gateway.",
            )?,
        )?;
        let tls_handshakes = counter(
            "portcullis_tls_handshakes_total",
            "TLS handshakes on the proxy listeners by result (ok, failed) and version (the \
             negotiated one when ok; when failed, the one the client hello asked for: TLSv1, \
             TLSv1.1, or TLSv1.2+).",
            &["result", "version"],
        )?;
        let tls_certificate_expiry = gauge(
            "portcullis_tls_certificate_expiry_seconds",
            "When each served certificate expires, as a Unix time (alert on \
             portcullis_tls_certificate_expiry_seconds - time() < 14 * 86400).",
            &["name"],
        )?;
        let aggregate_parts = counter(
            "portcullis_aggregate_parts_total",
            "Aggregation parts by route, part and outcome (ok, status: a non-2xx answer, timeout, \
             no_target, connect_error, error, invalid, too_large, missing_value, dependency_failed).",
            &["route", "part", "outcome"],
        )?;
        let aggregate_part_duration = histogram(
            "portcullis_aggregate_part_duration_seconds",
            "Time from a part's start to its document (or failure).",
            0.0005,
            16,
            &["route", "part"],
        )?;
        let trace_spans = counter(
            "portcullis_trace_spans_total",
            "Spans by what became of them: exported, export_failed (the collector refused or \
             was unreachable), queue_full (dropped before export: the collector is slower \
             than the traffic).",
            &["result"],
        )?;
        let upstream_dns_failures = counter(
            "portcullis_upstream_dns_failures_total",
            "Failed re-resolutions of a host-name target (its last good addresses are kept).",
            &["upstream", "target"],
        )?;
        let upstream_ejections = counter(
            "portcullis_upstream_ejections_total",
            "Targets ejected by passive health, by upstream, target and reason (consecutive_5xx, \
             consecutive_gateway_errors, failure_ratio, probation).",
            &["upstream", "target", "reason"],
        )?;
        let upstream_ejected = gauge(
            "portcullis_upstream_ejected",
            "1 while the target is ejected by passive health (noticed on the next selection once it ends).",
            &["upstream", "target"],
        )?;
        let upstream_inflight = gauge(
            "portcullis_upstream_inflight",
            "Requests holding one of the upstream's `limits.max_requests` slots.",
            &["upstream"],
        )?;
        let upstream_queued = gauge(
            "portcullis_upstream_queued",
            "Requests waiting for a slot (at most `limits.max_pending`).",
            &["upstream"],
        )?;
        let upstream_shed = counter(
            "portcullis_upstream_shed_total",
            "Requests refused with 503 because the upstream had no free slot within its queue's bounds.",
            &["upstream"],
        )?;
        let upstream_max_requests = gauge(
            "portcullis_upstream_max_requests",
            "The upstream's `limits.max_requests` (in-flight / this is how close the breaker is).",
            &["upstream"],
        )?;
        let upstream_circuit_open = gauge(
            "portcullis_upstream_circuit_open",
            "1 while every `limits.max_requests` slot is taken (requests queue, then are shed), as of the last slot taken or freed.",
            &["upstream"],
        )?;
        let upstream_retries = counter(
            "portcullis_upstream_retries_total",
            "Attempts made again after a failed one, by what failed (connect-failure, reset, timeout, or the status).",
            &["upstream", "reason"],
        )?;
        let upstream_retry_budget_exhausted = counter(
            "portcullis_upstream_retry_budget_exhausted_total",
            "Retries not made because the upstream's retry budget was spent.",
            &["upstream"],
        )?;
        let upstream_response_seconds = histogram(
            "portcullis_upstream_response_seconds",
            "Time from sending a request to a target to its response head, per upstream.",
            0.0005,
            16,
            &["upstream"],
        )?;
        let upstream_bytes = counter(
            "portcullis_upstream_bytes_total",
            "Body bytes sent to (`direction=\"sent\"`) and received from (`received`) an upstream's targets.",
            &["upstream", "direction"],
        )?;
        let access_log_dropped = register(
            &registry,
            prometheus::IntCounter::new(
                "portcullis_access_log_dropped_total",
                "Access-log lines dropped because the writer's queue was full or a write failed.",
            )?,
        )?;
        let config_info = gauge(
            "portcullis_config_info",
            "The configuration in effect: its file's SHA-256 (first 16 hex digits) as `hash`; always 1.",
            &["hash"],
        )?;
        let config_loaded = gauge(
            "portcullis_config_loaded_timestamp_seconds",
            "When the configuration in effect was loaded (Unix time).",
            &[],
        )?;
        // CPU, resident memory, open file descriptors and start time of this process.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let build_info = gauge(
            "portcullis_build_info",
            "Build information; always 1.",
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_requests,
            upstream_healthy,
            config_reloads,
            jwks_fetches,
            ratelimit_decisions,
            ratelimit_store_errors,
            ratelimit_store_duration,
            ratelimit_store_breaker_open,
            connections_open,
            connections_refused,
            tls_handshakes,
            tls_certificate_expiry,
            websocket_connections,
            transforms,
            cache_requests,
            cache_stored,
            cache_evictions,
            aggregate_parts,
            upstream_ejections,
            upstream_dns_failures,
            trace_spans,
            upstream_ejected,
            upstream_inflight,
            upstream_queued,
            upstream_shed,
            upstream_max_requests,
            upstream_response_seconds,
            upstream_bytes,
            config_info,
            access_log_dropped,
            config_loaded,
            upstream_circuit_open,
            upstream_retries,
            upstream_retry_budget_exhausted,
            aggregate_part_duration,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Spans the queue refused are counted where they are refused without a lock; the
        // counter catches up here.
        {
            // One scrape at a time catches up, so two cannot both add the same drops.
            static CATCH_UP: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one = CATCH_UP.lock();
            let queue_full = self.trace_spans.with_label_values(&["queue_full"]);
            queue_full.inc_by(super::trace::dropped().saturating_sub(queue_full.get()));
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Remove the per-target series of a target that left its pool (a reload or a DNS change), so
/// an operator never sees a departed target's last health.
pub fn forget_target(upstream: &str, target: &str) {
    let m = get();
    let _ = m.upstream_healthy.remove_label_values(&[upstream, target]);
    let _ = m.upstream_ejected.remove_label_values(&[upstream, target]);
    for reason in crate::upstream::outlier::Reason::ALL {
        let _ = m
            .upstream_ejections
            .remove_label_values(&[upstream, target, reason.label()]);
    }
    // Per-status request counters too: with DNS-named pools whose addresses churn (pods
    // coming and going), keeping them would grow the registry without bound.
    let statuses = (100..=999u16).map(|s| s.to_string());
    for status in statuses.chain(["error".to_string(), "aborted".to_string()]) {
        let _ = m
            .upstream_requests
            .remove_label_values(&[upstream, target, &status]);
    }
}

/// A bounded method label: known methods by name, anything else as `OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn definitions_are_valid() {
        let text = super::get().render();
        assert!(text.contains("portcullis_build_info"));
        assert!(text.contains("portcullis_config_reloads_total{result=\"failure\"} 0"));
    }
}
