//! A total deadline for reading a request's headers.
//!
//! Pingora applies only a per-read timeout while reading headers, so a client trickling one
//! byte at a time (slowloris) can hold a connection for as long as it likes. This wraps the
//! proxy app: each request gets `limit` to finish sending its headers, else the connection is
//! closed. The app marks the headers as read (the proxy from its first filter, the admin
//! listener when it starts answering) via a task-local flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::runtime::Runtime;

/// How long connections accepted just before a shutdown get to send their request header.
const ACCEPTED_CONNECTION_GRACE: Duration = Duration::from_secs(2);

tokio::task_local! {
    static HEADERS_READ: Arc<AtomicBool>;
}

/// Called by the proxy once the request header has been parsed.
pub fn mark_headers_read() {
    let _ = HEADERS_READ.try_with(|flag| flag.store(true, Ordering::Relaxed));
}

pub struct HeaderDeadline<A> {
    app: Arc<A>,
    /// The limit comes from the current snapshot, so a live reload can change it.
    runtime: Arc<Runtime>,
}

impl<A> HeaderDeadline<A> {
    pub fn new(app: A, runtime: Arc<Runtime>) -> Self {
        HeaderDeadline {
            app: Arc::new(app),
            runtime,
        }
    }
}

#[async_trait]
impl<A> HttpServerApp for HeaderDeadline<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    // Written out rather than `async fn`: the inner proxy's future (which owns the session) is
    // created and boxed first, so this wrapper's own boxed future holds only that box and a
    // timer instead of a second copy of the whole session state.
    fn process_new_http<'life0, 'life1, 'async_trait>(
        self: &'life0 Arc<Self>,
        session: ServerSession,
        shutdown: &'life1 ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let limit: Duration = self.runtime.load().settings.limits.header_read_timeout;
        let seen = Arc::new(AtomicBool::new(false));
        let work = HEADERS_READ.scope(Arc::clone(&seen), self.app.process_new_http(session, shutdown));
        Box::pin(async move {
            tokio::pin!(work);
            tokio::select! {
                done = &mut work => return done,
                _ = tokio::time::sleep(limit) => {}
            }
            if seen.load(Ordering::Relaxed) {
                work.await
            } else {
                log::debug!(
                    "closing a connection that did not send its request header within {:?}",
                    limit
                );
                None
            }
        })
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.app.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.app.server_options()
    }

    /// Pingora runs this when the listeners stop (graceful stop or upgrade hand-over) and then
    /// drops every connection still waiting for its request header. A connection accepted a
    /// moment before the listener closed would be dropped unanswered, which a client sees as
    /// a failed fresh request. Waiting briefly lets those send their headers and be served
    /// (with `Connection: close`); the grace period still bounds everything.
    async fn http_cleanup(&self) {
        tokio::time::sleep(ACCEPTED_CONNECTION_GRACE).await;
        self.app.http_cleanup().await
    }
}
