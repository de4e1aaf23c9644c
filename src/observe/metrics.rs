//! The gateway's Prometheus metrics. One registry per process; label values are bounded
//! (route and upstream names from the configuration, known methods, status codes).

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "portcullis_requests_total",
                "Requests answered, by route, method and status.",
            ),
            &["route", "method", "status"],
        );
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Time from request to last response byte.",
            )
            .buckets(exponential_buckets(0.0005, 2.0, 16).unwrap_or_default()),
            &["route"],
        );
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "portcullis_upstream_requests_total",
                "Attempts sent to upstream targets, by upstream, target and status (`error` when no response).",
            ),
            &["upstream", "target", "status"],
        );
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "portcullis_upstream_healthy",
                "1 when the target passes its health check.",
            ),
            &["upstream", "target"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new("portcullis_build_info", "Build information; always 1."),
            &["version"],
        );
        // Metric construction only fails on invalid names, which are constants here.
        let (requests, request_duration, upstream_requests, upstream_healthy, build_info) = match (
            requests,
            request_duration,
            upstream_requests,
            upstream_healthy,
            build_info,
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
            _ => unreachable!("metric definitions are static and valid"),
        };
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_healthy.clone()),
            Box::new(build_info.clone()),
        ] {
            let _ = registry.register(c);
        }
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_requests,
            upstream_healthy,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
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
