//! A circuit breaker in front of Redis, so a dead or slow Redis costs one timeout per
//! `open_for`, not one per request.
//!
//! Closed: every decision asks Redis; `failures` consecutive failures open the breaker.
//! Open: decisions skip Redis (the policy's `on_store_error` applies) until `open_for` passes.
//! Half-open: exactly one request probes Redis; success closes, failure re-opens.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out; if it never reports (its request was dropped), another may go after
    /// `until`.
    HalfOpen {
        until: Instant,
    },
}

/// What the breaker lets a decision do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Ask Redis.
    Call,
    /// Ask Redis as the one probe after an open period.
    Probe,
    /// Do not ask Redis.
    Skip,
}

/// A change worth a log line and a gauge update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

pub struct Breaker {
    config: BreakerConfig,
    /// How long a probe may take: a new probe goes out only after both this and `open_for`.
    probe_time: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(config: BreakerConfig, probe_time: Duration) -> Breaker {
        Breaker {
            config,
            probe_time,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let Ok(mut state) = self.state.lock() else {
            return Admission::Call;
        };
        match *state {
            State::Closed { .. } => Admission::Call,
            State::Open { until } | State::HalfOpen { until } if now >= until => {
                *state = State::HalfOpen {
                    until: now + self.config.open_for.max(self.probe_time),
                };
                Admission::Probe
            }
            State::Open { .. } | State::HalfOpen { .. } => Admission::Skip,
        }
    }

    pub fn success(&self) -> Option<Transition> {
        let mut state = self.state.lock().ok()?;
        let was_open = !matches!(*state, State::Closed { .. });
        *state = State::Closed { failures: 0 };
        was_open.then_some(Transition::Closed)
    }

    pub fn failure(&self, now: Instant) -> Option<Transition> {
        let mut state = self.state.lock().ok()?;
        let open = State::Open {
            until: now + self.config.open_for,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.config.failures => {
                *state = open;
                Some(Transition::Opened)
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            // A failed probe (or a late failure from before the breaker opened) keeps it open.
            State::HalfOpen { .. } | State::Open { .. } => {
                *state = open;
                None
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|s| !matches!(*s, State::Closed { .. }))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerConfig {
                failures: 3,
                open_for: Duration::from_secs(1),
            },
            Duration::from_millis(50),
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker();
        let t = Instant::now();
        assert_eq!(b.failure(t), None);
        assert_eq!(b.failure(t), None);
        assert_eq!(b.success(), None);
        assert_eq!(b.failure(t), None);
        assert_eq!(b.failure(t), None);
        assert_eq!(b.admit(t), Admission::Call);
        assert_eq!(b.failure(t), Some(Transition::Opened));
        assert_eq!(b.admit(t), Admission::Skip);
        assert!(b.is_open());
    }

    #[test]
    fn a_slow_probe_is_not_joined_by_a_second_one() {
        let b = Breaker::new(
            BreakerConfig {
                failures: 1,
                open_for: Duration::from_millis(10),
            },
            Duration::from_secs(2),
        );
        let t = Instant::now();
        b.failure(t);
        let later = t + Duration::from_millis(20);
        assert_eq!(b.admit(later), Admission::Probe);
        assert_eq!(b.admit(later + Duration::from_secs(1)), Admission::Skip);
        assert_eq!(b.admit(later + Duration::from_millis(2001)), Admission::Probe);
    }

    #[test]
    fn one_probe_after_the_open_period() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.failure(t);
        }
        let later = t + Duration::from_millis(1001);
        assert_eq!(b.admit(later), Admission::Probe);
        assert_eq!(b.admit(later), Admission::Skip, "only one probe at a time");
        assert_eq!(b.failure(later), None, "a failed probe re-opens quietly");
        assert_eq!(b.admit(later + Duration::from_millis(500)), Admission::Skip);
        let again = later + Duration::from_millis(1001);
        assert_eq!(b.admit(again), Admission::Probe);
        assert_eq!(
            b.admit(again + Duration::from_millis(1001)),
            Admission::Probe,
            "a probe that never reports does not wedge the breaker"
        );
        assert_eq!(b.success(), Some(Transition::Closed));
        assert_eq!(b.admit(again), Admission::Call);
        assert!(!b.is_open());
    }
}
