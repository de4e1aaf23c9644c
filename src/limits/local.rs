//! The local store: sliding-window estimates over `pingora-limits` count-min sketches (in
//! `window_pair`, which replaces pingora-limits' `Rate`: that one can panic in a request).
//!
//! Each window length gets one `Rate` (two sketches: the current and the previous fixed
//! window). A key's usage is estimated as `previous × (1 − elapsed fraction) + current`, which
//! smooths the 2× burst a plain fixed window allows at its edges. Sketch collisions can only
//! over-count, so a key under its limit may in rare cases be refused but never over-admitted;
//! the sketch is sized from `expected_keys` to keep that rare. Memory is fixed whatever the
//! number of keys: 2 sketches × 4 rows × slots × 8 bytes per window.

use std::time::Duration;

use super::window_pair::WindowPair;

const HASHES: usize = 4;

pub struct LocalWindows {
    windows: Vec<(Duration, WindowPair)>,
    slots: usize,
    expected_keys: usize,
}

/// A window's estimate for one key.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Requests counted in the sliding window.
    pub estimate: f64,
    /// Seconds until the current fixed window ends.
    pub reset_secs: u64,
}

impl LocalWindows {
    /// One sketch pair per distinct window length; 8 slots per expected key keeps collisions
    /// rare (each row's expected noise is total requests / slots).
    pub fn new(windows: &[Duration], expected_keys: usize) -> LocalWindows {
        let distinct = distinct(windows);
        let slots = expected_keys
            .saturating_mul(8)
            .next_power_of_two()
            .clamp(1024, 1 << 26);
        LocalWindows {
            windows: distinct
                .into_iter()
                .map(|w| (w, WindowPair::new(w, HASHES, slots)))
                .collect(),
            slots,
            expected_keys,
        }
    }

    /// Whether this store was built for the same windows and sizing (so it can be kept).
    pub fn same_shape(&self, windows: &[Duration], expected_keys: usize) -> bool {
        expected_keys == self.expected_keys
            && distinct(windows).iter().eq(self.windows.iter().map(|(w, _)| w))
    }

    /// Bytes held by the sketches (fixed at construction).
    pub fn memory_bytes(&self) -> usize {
        self.windows.len() * 2 * HASHES * self.slots * std::mem::size_of::<isize>()
    }

    pub fn usage(&self, key: &str, per: Duration) -> Usage {
        let Some((_, rate)) = self.windows.iter().find(|(w, _)| *w == per) else {
            return Usage {
                estimate: 0.0,
                reset_secs: per.as_secs(),
            };
        };
        let c = rate.counts(&key);
        let fraction = c.fraction.clamp(0.0, 1.0);
        Usage {
            estimate: c.previous.max(0) as f64 * (1.0 - fraction) + c.current.max(0) as f64,
            reset_secs: ((1.0 - fraction) * per.as_secs_f64()).ceil().max(1.0) as u64,
        }
    }

    /// Count `delta` requests for `key` in every window (−1 takes back a reservation).
    pub fn add(&self, key: &str, delta: isize) {
        for (_, rate) in &self.windows {
            rate.observe(&key, delta);
        }
    }
}

fn distinct(windows: &[Duration]) -> Vec<Duration> {
    let mut distinct = windows.to_vec();
    distinct.sort();
    distinct.dedup();
    distinct
}
