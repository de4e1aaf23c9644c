//! Passive health: each target's run of failures, and its ejection from rotation.
//!
//! Every attempt's outcome is counted here through `Attempt::record` (proxied requests,
//! retries, the gateway's own exchanges, aggregation parts), per attempt and never per
//! request, so a 5xx a retry then fixes still counts against its target. A client that goes
//! away is never its target's fault. An ejected target is skipped by selection until its
//! ejection ends (`base × n`, at most `max`, n counting its ejections); it then is on
//! probation: its first failure ejects it again at once, its first success ends probation.
//! The pool decides whether an ejection may happen (`max_ejected_percent`, at least one target
//! always stays); this state only counts and remembers.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::OutlierConfig;

/// How an attempt ended, as passive health counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An answer below 500.
    Success,
    /// A 5xx answer.
    Status5xx,
    /// Connection refused or timed out, reset, read timeout, invalid answer.
    GatewayError,
}

/// Why a target is ejected (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Consecutive5xx,
    ConsecutiveGatewayErrors,
    FailureRatio,
    /// A failure while on probation after an earlier ejection.
    Probation,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::Consecutive5xx,
        Reason::ConsecutiveGatewayErrors,
        Reason::FailureRatio,
        Reason::Probation,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Consecutive5xx => "consecutive_5xx",
            Reason::ConsecutiveGatewayErrors => "consecutive_gateway_errors",
            Reason::FailureRatio => "failure_ratio",
            Reason::Probation => "probation",
        }
    }
}

/// Attempts and failures in the current window of `failure_ratio`.
#[derive(Debug, Default)]
struct Window {
    start_micros: u64,
    requests: u32,
    failures: u32,
}

/// One target's passive-health state (lives with the target across live reloads).
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// When the ejection ends (microseconds on the stats clock); 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections so far (the multiplier of the next one).
    ejections: AtomicU32,
    /// When the last ejection ended; a target healthy for `max_ejection` since starts over.
    returned_at: AtomicU64,
    probation: AtomicBool,
    window: Mutex<Window>,
}

impl OutlierState {
    /// Count one outcome at `now`; `Some(reason)` when it calls for an ejection (which the
    /// pool may still refuse, see [`OutlierState::eject`]).
    pub fn record(&self, kind: Kind, policy: &OutlierConfig, now: u64) -> Option<Reason> {
        // Late answers of attempts begun before the ejection say nothing about the target
        // as it will be when it returns: neither a failure nor the success ending probation.
        if self.is_ejected(now) {
            return None;
        }
        let ratio = policy
            .failure_ratio
            .as_ref()
            .and_then(|r| self.count_in_window(kind != Kind::Success, r, now));
        match kind {
            Kind::Success => {
                self.consecutive_5xx.store(0, Ordering::Relaxed);
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                self.probation.store(false, Ordering::Relaxed);
                return None;
            }
            _ if self.probation.load(Ordering::Relaxed) => return Some(Reason::Probation),
            Kind::Status5xx => {
                let n = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
                if policy.consecutive_5xx > 0 && n >= policy.consecutive_5xx {
                    return Some(Reason::Consecutive5xx);
                }
            }
            Kind::GatewayError => {
                let n = self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
                if policy.consecutive_gateway_errors > 0 && n >= policy.consecutive_gateway_errors {
                    return Some(Reason::ConsecutiveGatewayErrors);
                }
            }
        }
        ratio.unwrap_or(false).then_some(Reason::FailureRatio)
    }

    /// Count in the ratio window; whether the failure ratio is now over its threshold.
    fn count_in_window(&self, failed: bool, ratio: &crate::config::FailureRatio, now: u64) -> Option<bool> {
        let mut w = self.window.lock().ok()?;
        let length = u64::try_from(ratio.window.as_micros()).unwrap_or(u64::MAX);
        if now.saturating_sub(w.start_micros) >= length {
            *w = Window {
                start_micros: now,
                requests: 0,
                failures: 0,
            };
        }
        w.requests += 1;
        w.failures += u32::from(failed);
        Some(
            failed
                && w.requests >= ratio.min_requests
                && f64::from(w.failures) > ratio.above * f64::from(w.requests),
        )
    }

    /// Eject from `now`; the ejection's length, or `None` when it already is ejected (another
    /// attempt's failure got there first). The pool calls this under its ejection lock.
    pub fn eject(&self, policy: &OutlierConfig, now: u64) -> Option<Duration> {
        if self.is_ejected(now) {
            return None;
        }
        let max = u64::try_from(policy.max_ejection.as_micros()).unwrap_or(u64::MAX);
        let returned = self.returned_at.load(Ordering::Relaxed);
        // Healthy for a whole `max_ejection` since it last came back: start over.
        if returned != 0 && now.saturating_sub(returned) >= max {
            self.ejections.store(0, Ordering::Relaxed);
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let length = policy.base_ejection.saturating_mul(n).min(policy.max_ejection);
        let micros = u64::try_from(length.as_micros()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now.saturating_add(micros).max(1), Ordering::Relaxed);
        self.probation.store(true, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
        if let Ok(mut w) = self.window.lock() {
            *w = Window::default();
        }
        Some(length)
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    /// Whether the ejection ended by `now` and this call is the one to notice (exactly one
    /// caller gets `true`, so the return is logged once).
    pub fn take_return(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 || now < until {
            return false;
        }
        let noticed = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if noticed {
            self.returned_at.store(now, Ordering::Relaxed);
        }
        noticed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FailureRatio;

    const S: u64 = 1_000_000;

    fn policy() -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: 3,
            consecutive_gateway_errors: 2,
            failure_ratio: None,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn runs_of_failures_eject_and_a_success_breaks_the_run() {
        let (o, p) = (OutlierState::default(), policy());
        let now = 100 * S;
        assert_eq!(o.record(Kind::Status5xx, &p, now), None);
        assert_eq!(o.record(Kind::Status5xx, &p, now), None);
        assert_eq!(o.record(Kind::Success, &p, now), None);
        assert_eq!(o.record(Kind::Status5xx, &p, now), None);
        assert_eq!(o.record(Kind::Status5xx, &p, now), None);
        assert_eq!(o.record(Kind::Status5xx, &p, now), Some(Reason::Consecutive5xx));
        assert_eq!(o.record(Kind::GatewayError, &p, now), None);
        assert_eq!(
            o.record(Kind::GatewayError, &p, now),
            Some(Reason::ConsecutiveGatewayErrors)
        );
    }

    #[test]
    fn ejections_grow_are_capped_and_probation_re_ejects() {
        let (o, p) = (OutlierState::default(), policy());
        let mut now = 100 * S;
        assert_eq!(o.eject(&p, now), Some(Duration::from_secs(10)));
        assert_eq!(o.eject(&p, now), None, "ejected once, however many failures race");
        assert!(o.is_ejected(now + 9 * S));
        assert!(!o.take_return(now + 9 * S));
        // While ejected, late answers of attempts already in flight count for nothing.
        assert_eq!(o.record(Kind::Status5xx, &p, now + S), None);
        assert_eq!(o.record(Kind::Success, &p, now + S), None);
        now += 10 * S;
        assert!(o.take_return(now));
        assert!(!o.take_return(now), "the return is noticed once");
        // On probation: one failure is enough, and the next ejection is longer.
        assert_eq!(o.record(Kind::GatewayError, &p, now), Some(Reason::Probation));
        assert_eq!(o.eject(&p, now), Some(Duration::from_secs(20)));
        now += 20 * S;
        assert!(o.take_return(now));
        assert_eq!(o.record(Kind::Status5xx, &p, now), Some(Reason::Probation));
        assert_eq!(
            o.eject(&p, now),
            Some(Duration::from_secs(25)),
            "capped by max_ejection"
        );
        now += 25 * S;
        assert!(o.take_return(now));
        // A success ends probation; healthy for max_ejection, the multiplier starts over.
        assert_eq!(o.record(Kind::Success, &p, now), None);
        assert_eq!(o.record(Kind::Status5xx, &p, now), None);
        now += 30 * S;
        assert_eq!(o.eject(&p, now), Some(Duration::from_secs(10)));
    }

    #[test]
    fn failure_ratio_needs_volume_and_a_majority() {
        let mut p = policy();
        p.consecutive_5xx = 0;
        p.failure_ratio = Some(FailureRatio {
            min_requests: 4,
            above: 0.5,
            window: Duration::from_secs(10),
        });
        let o = OutlierState::default();
        let now = 100 * S;
        // Alternating: never more than half.
        for _ in 0..4 {
            assert_eq!(o.record(Kind::Success, &p, now), None);
            assert_eq!(o.record(Kind::Status5xx, &p, now), None);
        }
        assert_eq!(o.record(Kind::Status5xx, &p, now), Some(Reason::FailureRatio));
        // A new window starts empty.
        let o = OutlierState::default();
        for i in 0..3 {
            assert_eq!(o.record(Kind::Status5xx, &p, now + i * 11 * S), None);
        }
    }
}
