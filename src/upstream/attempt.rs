//! One attempt at one upstream target, and the one place its outcome is recorded.
//!
//! Every way a request reaches an upstream (the proxied path's hooks, the gateway's own
//! exchanges for transformed routes, later aggregation parts and retries) begins an `Attempt`
//! when a target is picked and calls [`Attempt::record`] once it knows how the attempt ended.
//! Recording feeds the metrics and the statistics selection reads (in-flight count, latency),
//! and is where passive health will count failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::outlier::Kind;
use super::pool::{Pool, Selected};
use super::stats::InflightGuard;
use crate::observe::metrics;
use crate::observe::trace::{self, Span, TraceContext, Value, TRACEPARENT, TRACESTATE};
use crate::transform::headers::HeaderEdit;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No connection (refused, timed out, reset while connecting).
    ConnectFailed,
    /// The target answered with this status.
    Responded(http::StatusCode),
    /// Connected, but no usable answer (reset, timeout, invalid response).
    Failed,
    /// The client went away or failed: never the target's fault, not counted against it.
    Aborted,
}

/// A refused or timed-out connect counts as the slowest possible answer for `least_time`.
const CONNECT_FAILURE_LATENCY: Duration = Duration::from_secs(1);

/// One attempt in flight: counted in its target's in-flight figure until dropped.
#[derive(Debug)]
pub struct Attempt {
    pool: Arc<Pool>,
    selected: Selected,
    begun: Instant,
    sent: Option<Instant>,
    inflight: Option<InflightGuard>,
    recorded: bool,
    /// The whole request (head and body) was written.
    request_done: bool,
    /// A failure after the answer began was already counted.
    late_failure: bool,
    /// The target's answer (its head) arrived.
    responded: bool,
    /// An answer below 500 arrived: a success for passive health once the answer is complete
    /// (a body that then breaks off makes it a failure instead).
    pending_success: bool,
    /// The target's status and how long its head took (for the access log).
    status: Option<u16>,
    latency: Option<Duration>,
    /// How it failed, when it did (the CLIENT span's `error.type`).
    failure: Option<&'static str>,
    /// This attempt's place in the request's trace.
    span: Option<ClientSpan>,
}

/// The CLIENT span of one attempt: its id is the parent the upstream sees in `traceparent`.
#[derive(Debug)]
struct ClientSpan {
    trace: TraceContext,
    span_id: [u8; 8],
    method: &'static str,
}

impl Attempt {
    pub fn begin(pool: Arc<Pool>, selected: Selected, trace: Option<&TraceContext>) -> Attempt {
        let inflight = Some(selected.stats.begin());
        let span = trace.map(|t| ClientSpan {
            trace: t.clone(),
            span_id: TraceContext::child_id(),
            method: "",
        });
        Attempt {
            pool,
            selected,
            begun: Instant::now(),
            sent: None,
            inflight,
            recorded: false,
            request_done: false,
            late_failure: false,
            responded: false,
            pending_success: false,
            status: None,
            latency: None,
            failure: None,
            span,
        }
    }

    /// Put this attempt's `traceparent` (and the client's `tracestate`) on the head sent to
    /// the target, replacing whatever the client sent.
    pub fn propagate(&mut self, method: &http::Method, head: &mut impl HeaderEdit) {
        let Some(span) = &mut self.span else {
            return;
        };
        span.method = metrics::method_label(method);
        head.put(TRACEPARENT, span.trace.traceparent(&span.span_id));
        match &span.trace.tracestate {
            Some(state) => head.put(TRACESTATE, state.clone()),
            None => head.remove(&TRACESTATE),
        }
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        &self.pool.name
    }

    /// The target's status, once its answer's head arrived.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// From sending the request to the answer's head.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// Body bytes sent to the target.
    pub fn count_sent(&self, bytes: usize) {
        self.pool.bytes_sent.inc_by(bytes as u64);
    }

    /// Body bytes received from the target.
    pub fn count_received(&self, bytes: usize) {
        self.pool.bytes_received.inc_by(bytes as u64);
    }

    pub fn addr(&self) -> SocketAddr {
        self.selected.addr
    }

    /// The target as configured (the metric and log label).
    pub fn target_label(&self) -> &str {
        &self.selected.stats.label
    }

    /// The request head left for the target: latency is measured from here.
    pub fn mark_sent(&mut self) {
        self.sent = Some(Instant::now());
    }

    /// The request's body was written to its end.
    pub fn mark_request_done(&mut self) {
        self.request_done = true;
    }

    pub fn request_done(&self) -> bool {
        self.request_done
    }

    /// Whether the attempt's outcome was recorded.
    pub fn recorded(&self) -> bool {
        self.recorded
    }

    /// Whether the target's answer began (a failure after it cannot be retried).
    pub fn responded(&self) -> bool {
        self.responded
    }

    /// Record how the attempt ended. The first call counts in the metrics; a later failure of
    /// the same attempt (the answer began, then the body broke off or stalled) is still the
    /// target's failure for passive health, counted once. A failure recorded twice (by the
    /// retry decision, then by the final error handler) counts once.
    pub fn record(&mut self, outcome: Outcome) {
        if self.recorded {
            if outcome == Outcome::Failed && self.responded && !self.late_failure {
                self.late_failure = true;
                self.failure = Some("failed");
                self.pending_success = false;
                self.pool.note_outcome(&self.selected.stats, Kind::GatewayError);
            }
            return;
        }
        self.recorded = true;
        self.failure = match outcome {
            Outcome::ConnectFailed => Some("connect_failed"),
            Outcome::Failed => Some("failed"),
            Outcome::Aborted => Some("aborted"),
            Outcome::Responded(_) => None,
        };
        let stats = &self.selected.stats;
        let (status, health) = match &outcome {
            Outcome::ConnectFailed => {
                self.inflight = None;
                stats.observe_latency(self.begun.elapsed().max(CONNECT_FAILURE_LATENCY));
                ("error", Some(Kind::GatewayError))
            }
            Outcome::Failed => ("error", Some(Kind::GatewayError)),
            Outcome::Aborted => ("aborted", None),
            Outcome::Responded(status) => {
                self.responded = true;
                let latency = self.sent.unwrap_or(self.begun).elapsed();
                stats.observe_latency(latency);
                self.pool.response_seconds.observe(latency.as_secs_f64());
                self.latency = Some(latency);
                self.status = Some(status.as_u16());
                let kind = if status.is_server_error() {
                    Kind::Status5xx
                } else {
                    Kind::Success
                };
                (status.as_str(), Some(kind))
            }
        };
        match health {
            Some(Kind::Success) => self.pending_success = true,
            Some(kind) => self.pool.note_outcome(stats, kind),
            None => {}
        }
        if !stats.is_retired() {
            metrics::get()
                .upstream_requests
                .with_label_values(&[&self.pool.name, &stats.label, status])
                .inc();
        }
    }

    /// The target is no longer busy with this request (the response is complete): an answer
    /// below 500 that arrived whole counts as a success now.
    pub fn finish(&mut self) {
        self.inflight = None;
        if std::mem::take(&mut self.pending_success) {
            self.pool.note_outcome(&self.selected.stats, Kind::Success);
        }
    }
}

/// An attempt ends when it is dropped (replaced by a retry, or with its request): a recorded
/// trace gets its CLIENT span then.
impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(span) = self.span.take().filter(|s| s.trace.recording) else {
            return;
        };
        // The start is read back from the monotonic clock: a wall-clock read on every attempt
        // would serve only the sampled ones.
        let end = SystemTime::now();
        let start = end.checked_sub(self.begun.elapsed()).unwrap_or(end);
        let addr = self.selected.addr;
        let mut attributes = vec![
            ("server.address", Value::Str(addr.ip().to_string())),
            ("server.port", Value::Int(i64::from(addr.port()))),
            ("portcullis.upstream", Value::Str(self.pool.name.clone())),
            ("portcullis.target", Value::Str(self.selected.stats.label.clone())),
        ];
        if !span.method.is_empty() {
            attributes.push(("http.request.method", Value::Str(span.method.to_string())));
        }
        if let Some(status) = self.status {
            attributes.push(("http.response.status_code", Value::Int(i64::from(status))));
        }
        let error = match (self.failure, self.status) {
            (Some(kind), _) => Some(kind.to_string()),
            (None, Some(status)) if status >= 500 => Some(status.to_string()),
            _ => None,
        };
        if let Some(kind) = &error {
            attributes.push(("error.type", Value::Str(kind.clone())));
        }
        trace::submit(
            Span {
                trace_id: span.trace.trace_id,
                span_id: span.span_id,
                parent_span_id: Some(span.trace.span_id),
                tracestate: span.trace.tracestate.clone(),
                name: match span.method {
                    "" => format!("upstream {}", self.pool.name),
                    m => m.to_string(),
                },
                kind: trace::Kind::Client,
                start_unix_nanos: trace::unix_nanos(start),
                end_unix_nanos: trace::unix_nanos(end),
                attributes,
                error,
            },
            span.trace.max_queued,
        );
    }
}
