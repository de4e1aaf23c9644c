//! Live per-target statistics, shared by the selector and the proxy through the `Backend`'s
//! extension slot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// Timestamps are microseconds since this instant, so they fit in an atomic. It lies an hour
/// before first use so that no timestamp is near zero (0 means "never updated").
static EPOCH: LazyLock<Instant> = LazyLock::new(|| {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
});

/// Microseconds on the statistics clock (monotonic).
pub fn now_micros() -> u64 {
    u64::try_from(EPOCH.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// What selection needs to know about one target right now.
#[derive(Debug)]
pub struct TargetStats {
    /// The target as written in the configuration, used as the metric label.
    pub label: String,
    inflight: AtomicUsize,
    /// Peak-EWMA of response latency in microseconds (see [`TargetStats::observe_latency`]).
    ewma_micros: AtomicU64,
    /// When `ewma_micros` last changed.
    updated_micros: AtomicU64,
    /// Passive health: the run of failures and the ejection.
    pub outlier: super::outlier::OutlierState,
    /// The target left its pool (DNS no longer names its address): requests still in flight
    /// finish, but nothing writes its metric series again.
    retired: std::sync::atomic::AtomicBool,
}

/// How fast the latency estimate forgets a past peak: each new lower sample moves it this
/// fraction of the way down. A higher sample replaces it at once ("peak" EWMA), so a target
/// that turns slow is avoided immediately and trusted again gradually.
const DECAY: f64 = 0.25;

/// Without new samples the estimate halves every this many microseconds, so a target that
/// was slow once (and is therefore never picked) gets probed again instead of starving.
const HALF_LIFE_MICROS: f64 = 5_000_000.0;

impl TargetStats {
    pub fn new(label: String) -> Arc<TargetStats> {
        Arc::new(TargetStats {
            label,
            inflight: AtomicUsize::new(0),
            ewma_micros: AtomicU64::new(0),
            updated_micros: AtomicU64::new(0),
            outlier: Default::default(),
            retired: Default::default(),
        })
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// The latency estimate, decayed by the time since it was last updated.
    pub fn latency_micros(&self) -> u64 {
        self.latency_micros_at(now_micros())
    }

    /// [`TargetStats::latency_micros`] at `now` (the statistics clock).
    fn latency_micros_at(&self, now: u64) -> u64 {
        let ewma = self.ewma_micros.load(Ordering::Relaxed);
        if ewma == 0 {
            return 0;
        }
        let age = now.saturating_sub(self.updated_micros.load(Ordering::Relaxed));
        (ewma as f64 * 0.5f64.powf(age as f64 / HALF_LIFE_MICROS)) as u64
    }

    /// Count one request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(Arc::clone(self))
    }

    pub fn observe_latency(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX).max(1);
        // Racing updates may lose one sample; the estimate stays a plausible latency. One
        // clock read for the decay and the update (each costs about 90 instructions).
        let now = now_micros();
        let old = self.latency_micros_at(now);
        let next = if sample >= old || old == 0 {
            sample
        } else {
            (old as f64 - (old - sample) as f64 * DECAY) as u64
        };
        self.ewma_micros.store(next, Ordering::Relaxed);
        self.updated_micros.store(now, Ordering::Relaxed);
    }
}

/// Decrements the target's in-flight count when the request is done with it.
#[derive(Debug)]
pub struct InflightGuard(Arc<TargetStats>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_decays_down() {
        let s = TargetStats::new("t".into());
        s.observe_latency(Duration::from_millis(100));
        assert!(s.latency_micros() > 95_000 && s.latency_micros() <= 100_000);
        s.observe_latency(Duration::from_millis(10));
        assert!(s.latency_micros() < 100_000 && s.latency_micros() > 10_000);
        s.observe_latency(Duration::from_millis(500));
        assert!(s.latency_micros() > 450_000 && s.latency_micros() <= 500_000);
    }

    #[test]
    fn estimate_decays_without_samples() {
        let s = TargetStats::new("t".into());
        s.observe_latency(Duration::from_millis(100));
        // Pretend the last sample is one half-life old.
        let now = now_micros();
        s.updated_micros
            .store(now.saturating_sub(HALF_LIFE_MICROS as u64), Ordering::Relaxed);
        let decayed = s.latency_micros();
        assert!((45_000..=55_000).contains(&decayed), "{decayed}");
    }

    #[test]
    fn guard_counts_inflight() {
        let s = TargetStats::new("t".into());
        let g = s.begin();
        assert_eq!(s.inflight(), 1);
        drop(g);
        assert_eq!(s.inflight(), 0);
    }
}
