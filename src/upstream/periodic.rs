//! A background job that comes due every `interval` and never runs twice at once: a pool's
//! health checks, and its re-resolution of host names. The supervisor ticks; whoever claims a
//! due round runs it and marks it done.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Periodic {
    /// `None`: never due.
    interval: Option<Duration>,
    next_due: Mutex<Instant>,
    running: AtomicBool,
}

impl Periodic {
    pub fn new(interval: Option<Duration>, first_due: Instant) -> Periodic {
        Periodic {
            interval,
            next_due: Mutex::new(first_due),
            running: AtomicBool::new(false),
        }
    }

    /// Claim the next round if it is due and none is running.
    pub fn claim(&self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        let Ok(mut due) = self.next_due.lock() else {
            return false;
        };
        if now < *due || self.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        *due = now
            .checked_add(interval)
            .unwrap_or(now + Duration::from_secs(86_400));
        true
    }

    /// The claimed round finished.
    pub fn done(&self) {
        self.running.store(false, Ordering::Release);
    }
}
