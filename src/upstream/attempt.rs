//! One attempt at one upstream target, and the one place its outcome is recorded.
//!
//! Every way a request reaches an upstream (the proxied path's hooks, the gateway's own
//! exchanges for transformed routes, later aggregation parts and retries) begins an `Attempt`
//! when a target is picked and calls [`Attempt::record`] once it knows how the attempt ended.
//! Recording feeds the metrics and the statistics selection reads (in-flight count, latency),
//! and is where passive health will count failures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outlier::Kind;
use super::pool::{Pool, Selected};
use super::stats::InflightGuard;
use crate::observe::metrics;

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
}

impl Attempt {
    pub fn begin(pool: Arc<Pool>, selected: Selected) -> Attempt {
        let inflight = Some(selected.stats.begin());
        Attempt {
            pool,
            selected,
            begun: Instant::now(),
            sent: None,
            inflight,
            recorded: false,
        }
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

    /// Record how the attempt ended. Only the first call counts: a later failure of the same
    /// attempt (say, the response body breaking off) does not count it twice.
    pub fn record(&mut self, outcome: Outcome) {
        if self.recorded {
            return;
        }
        self.recorded = true;
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
                stats.observe_latency(self.sent.unwrap_or(self.begun).elapsed());
                let kind = if status.is_server_error() {
                    Kind::Status5xx
                } else {
                    Kind::Success
                };
                (status.as_str(), Some(kind))
            }
        };
        if let Some(kind) = health {
            self.pool.note_outcome(stats, kind);
        }
        metrics::get()
            .upstream_requests
            .with_label_values(&[&self.pool.name, &stats.label, status])
            .inc();
    }

    /// The target is no longer busy with this request (the response is complete).
    pub fn finish(&mut self) {
        self.inflight = None;
    }
}
