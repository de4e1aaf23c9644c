//! Circuit breaking by concurrency (Envoy's `max_requests` and `max_pending_requests`): at most
//! `max_requests` requests in flight to one upstream across its targets; beyond that a request
//! waits in a short queue (at most `max_pending` of them, each at most `pending_timeout`), and
//! the rest are shed at once with 503, without touching the upstream. A slow upstream can then
//! hold only its share of the gateway, not every connection it has.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::UpstreamLimits;
use crate::observe::metrics;

/// One upstream's slots and queue (kept across live reloads while the limits are unchanged).
#[derive(Debug)]
pub struct Concurrency {
    pub limits: UpstreamLimits,
    slots: Arc<Semaphore>,
    pending: AtomicUsize,
    inflight_gauge: IntGauge,
    queued_gauge: IntGauge,
    /// 1 while no slot is free (Envoy's `rq_open`).
    open_gauge: IntGauge,
    shed: IntCounter,
}

/// A slot held for one request; released when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
        // The permit returns right after this: a slot is free.
        self.open.set(0);
    }
}

/// No slot within the queue's bounds: the request is shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

/// Decrements the queue length however the wait ends.
struct Queued<'a>(&'a Concurrency);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
        self.0.queued_gauge.dec();
    }
}

impl Concurrency {
    pub fn new(upstream: &str, limits: UpstreamLimits) -> Arc<Concurrency> {
        let m = metrics::get();
        m.upstream_max_requests
            .with_label_values(&[upstream])
            .set(i64::try_from(limits.max_requests).unwrap_or(i64::MAX));
        let open_gauge = m.upstream_circuit_open.with_label_values(&[upstream]);
        open_gauge.set(0);
        Arc::new(Concurrency {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_requests)),
            pending: AtomicUsize::new(0),
            inflight_gauge: m.upstream_inflight.with_label_values(&[upstream]),
            queued_gauge: m.upstream_queued.with_label_values(&[upstream]),
            open_gauge,
            shed: m.upstream_shed.with_label_values(&[upstream]),
        })
    }

    /// Requests holding a slot now.
    pub fn inflight(&self) -> usize {
        self.limits
            .max_requests
            .saturating_sub(self.slots.available_permits())
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// A slot now, or after a short wait in the queue, or `Shed`.
    pub async fn acquire(&self) -> Result<Slot, Shed> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.limits.max_pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.shed.inc();
            return Err(Shed);
        }
        self.queued_gauge.inc();
        let _queued = Queued(self);
        let wait = Arc::clone(&self.slots).acquire_owned();
        match tokio::time::timeout(self.limits.pending_timeout, wait).await {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            _ => {
                self.shed.inc();
                Err(Shed)
            }
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        self.inflight_gauge.inc();
        if self.slots.available_permits() == 0 {
            self.open_gauge.set(1);
        }
        Slot {
            _permit: permit,
            gauge: self.inflight_gauge.clone(),
            open: self.open_gauge.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max_requests: usize, max_pending: usize) -> UpstreamLimits {
        UpstreamLimits {
            max_requests,
            max_pending,
            pending_timeout: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn slots_then_a_bounded_queue_then_shedding() {
        let c = Concurrency::new("unit-a", limits(2, 1));
        let a = c.acquire().await.expect("first slot");
        let _b = c.acquire().await.expect("second slot");
        // Full, queue of one: the queued one times out (nobody frees a slot) and is shed.
        assert_eq!(c.acquire().await.unwrap_err(), Shed);
        // A slot freed while waiting is taken.
        let c2 = Arc::clone(&c);
        let waiter = tokio::spawn(async move { c2.acquire().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The queue holds one: a second waiter is shed at once.
        assert_eq!(c.acquire().await.unwrap_err(), Shed);
        drop(a);
        assert_eq!(waiter.await.expect("join"), Ok(()));
    }
}
