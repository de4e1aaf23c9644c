//! A total deadline for reading a request's head.
//!
//! Pingora applies only a per-read timeout while reading headers, so a client trickling one
//! byte at a time (slowloris) could hold a connection for as long as it liked. The front door
//! gives each request until a deadline to finish sending its head; the app marks the head as
//! read (the proxy from its first filter, the admin listener when it starts answering)
//! through a task-local flag, after which the request runs to its end.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use tokio::time::Instant;

tokio::task_local! {
    static HEADERS_READ: Arc<AtomicBool>;
}

/// Called by an app once the request head has been parsed.
pub fn mark_headers_read() {
    let _ = HEADERS_READ.try_with(|flag| flag.store(true, Ordering::Relaxed));
}

/// Whether the app running now has read its request head (`true` outside a request).
pub fn headers_read() -> bool {
    HEADERS_READ
        .try_with(|flag| flag.load(Ordering::Relaxed))
        .unwrap_or(true)
}

/// Run `work` (one request) unless its head is not read by `deadline`: then `None`, which
/// closes the connection without an answer.
pub async fn within<T>(deadline: Instant, work: impl Future<Output = Option<T>>) -> Option<T> {
    let seen = Arc::new(AtomicBool::new(false));
    let work = HEADERS_READ.scope(Arc::clone(&seen), work);
    tokio::pin!(work);
    // The first step runs before any timer is set: a head that has arrived whole (the usual
    // case, read with the first byte) is parsed in it, and then no deadline applies at all.
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        return done;
    }
    if seen.load(Ordering::Relaxed) {
        return work.await;
    }
    tokio::select! {
        done = &mut work => return done,
        _ = tokio::time::sleep_until(deadline) => {}
    }
    if seen.load(Ordering::Relaxed) {
        work.await
    } else {
        log::debug!("closing a connection that did not send its request head in time");
        None
    }
}
