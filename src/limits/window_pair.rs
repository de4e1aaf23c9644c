//! The current and the previous fixed window of one window length, each a count-min sketch
//! (pingora-limits' `Estimator`): what pingora-limits' `Rate` does, rewritten so that no
//! request can make it panic or wipe its counts.
//!
//! `Rate::maybe_reset` (pingora-limits 0.9.1, `rate.rs:143-177`) reads the clock, then the
//! last reset time, and computes `now - last_reset` with a plain `u64` subtraction; when it
//! loses the race to make a reset it asserts `new >= now - 1000`. Two threads race there on
//! every window roll. A thread that read its clock and was then descheduled can find a reset
//! time newer than its own `now`: the subtraction wraps (release builds), which looks like
//! "two windows passed" and clears both sketches — every key's count lost, so clients get
//! double their limit — and with overflow checks it panics. And a thread whose clock is more
//! than a second ahead of the winner's (the winner was descheduled between its clock read and
//! its swap) fails the assert: a panic in a request.
//!
//! Here every clock difference saturates (a stale clock reads as "no time passed"), the loser
//! of a reset race simply uses the winner's reset, and there is no assertion: nothing below
//! can panic for any interleaving (the interval is at least 1 ms, so the modulo is defined).

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pingora_limits::estimator::Estimator;

pub struct WindowPair {
    red: Estimator,
    blue: Estimator,
    /// true: `red` counts the current window, `blue` holds the previous one.
    red_is_current: AtomicBool,
    start: Instant,
    interval_ms: u64,
    /// When the current window began, in ms since `start`.
    last_reset: AtomicU64,
}

/// A key's counts, for the sliding-window estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub previous: isize,
    pub current: isize,
    /// How far into the current window `now` is, from 0 to 1.
    pub fraction: f64,
}

impl WindowPair {
    pub fn new(interval: Duration, hashes: usize, slots: usize) -> WindowPair {
        WindowPair {
            red: Estimator::new(hashes, slots),
            blue: Estimator::new(hashes, slots),
            red_is_current: AtomicBool::new(true),
            start: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1),
            last_reset: AtomicU64::new(0),
        }
    }

    /// `key`'s counts in the previous and the current window.
    pub fn counts<K: Hash>(&self, key: &K) -> Counts {
        self.counts_at(key, self.now_ms())
    }

    /// Count `delta` for `key` in the current window (negative takes back).
    pub fn observe<K: Hash>(&self, key: &K, delta: isize) {
        self.roll(self.now_ms());
        self.current().incr(key, delta);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn counts_at<K: Hash>(&self, key: &K, now: u64) -> Counts {
        let past = self.roll(now);
        if past >= self.interval_ms.saturating_mul(2) {
            return Counts {
                previous: 0,
                current: 0,
                fraction: 0.0,
            };
        }
        Counts {
            previous: self.previous().get(key),
            current: self.current().get(key),
            fraction: (past % self.interval_ms) as f64 / self.interval_ms as f64,
        }
    }

    /// Start a new window when the current one is over (one thread does it); the time since
    /// the current window began, as seen at `now`.
    fn roll(&self, now: u64) -> u64 {
        let last = self.last_reset.load(Ordering::Acquire);
        let past = now.saturating_sub(last);
        if past < self.interval_ms {
            return past;
        }
        match self
            .last_reset
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let red_is_current = self.red_is_current.load(Ordering::Acquire);
                // The previous window's counts are older than an interval now: clear that
                // sketch and make it the current one.
                self.sketch(!red_is_current).reset();
                self.red_is_current.store(!red_is_current, Ordering::Release);
                if past >= self.interval_ms.saturating_mul(2) {
                    // The window that just ended was idle past its end too: nothing in it is
                    // recent enough to count.
                    self.sketch(red_is_current).reset();
                }
                0
            }
            // Another thread started the new window: measure from its start (0 if our clock
            // read is older than its).
            Err(newer) => now.saturating_sub(newer),
        }
    }

    fn sketch(&self, red: bool) -> &Estimator {
        if red {
            &self.red
        } else {
            &self.blue
        }
    }

    fn current(&self) -> &Estimator {
        self.sketch(self.red_is_current.load(Ordering::Acquire))
    }

    fn previous(&self) -> &Estimator {
        self.sketch(!self.red_is_current.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> WindowPair {
        WindowPair::new(Duration::from_secs(1), 4, 1024)
    }

    #[test]
    fn counts_move_to_the_previous_window_then_expire() {
        let w = pair();
        w.current().incr("k", 5);
        assert_eq!(w.counts_at(&"k", 500).current, 5);
        let rolled = w.counts_at(&"k", 1200);
        assert_eq!((rolled.previous, rolled.current), (5, 0));
        assert_eq!(
            w.counts_at(&"k", 3500).previous,
            0,
            "two windows later nothing counts"
        );
    }

    /// The interleavings that break pingora-limits' `Rate`: a clock read older than the last
    /// reset, and losing a reset race to a winner whose clock is over a second behind ours.
    #[test]
    fn a_stale_clock_or_a_lost_reset_race_neither_panics_nor_wipes_the_counts() {
        let w = pair();
        w.roll(5_000);
        w.current().incr("k", 7);
        // A thread that read its clock (4_000) before that reset, and only now gets here.
        let stale = w.counts_at(&"k", 4_000);
        assert_eq!((stale.previous, stale.current), (0, 7), "read as no time passed");
        assert_eq!(w.last_reset.load(Ordering::Acquire), 5_000, "the reset stands");
        assert_eq!(w.current().get("k"), 7, "nothing was cleared");
        // (Losing the swap to a winner whose clock is far behind ours measures from the
        // winner's reset with a saturating difference: `racing_threads_never_panic` drives
        // that path at a 1 ms interval.)
    }

    #[test]
    fn racing_threads_never_panic() {
        let w = std::sync::Arc::new(WindowPair::new(Duration::from_millis(1), 2, 64));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let w = std::sync::Arc::clone(&w);
                std::thread::spawn(move || {
                    for n in 0..20_000u64 {
                        w.observe(&(n % 7), 1);
                        let c = w.counts(&(n % 7));
                        assert!((0.0..1.0).contains(&c.fraction), "{i}: {c:?}");
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
    }
}
