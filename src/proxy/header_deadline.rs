//! A total deadline for reading a request's headers.
//!
//! Pingora applies only a per-read timeout while reading headers, so a client trickling one
//! byte at a time (slowloris) can hold a connection for as long as it likes. This wraps the
//! proxy app: each request gets `limit` to finish sending its headers, else the connection is
//! closed. The proxy marks the headers as read from its first filter via a task-local flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;

use crate::runtime::Runtime;

tokio::task_local! {
    static HEADERS_READ: Arc<AtomicBool>;
}

/// Called by the proxy once the request header has been parsed.
pub fn mark_headers_read() {
    let _ = HEADERS_READ.try_with(|flag| flag.store(true, Ordering::Relaxed));
}

pub struct HeaderDeadline<P> {
    proxy: Arc<HttpProxy<P>>,
    /// The limit comes from the current snapshot, so a live reload can change it.
    runtime: Arc<Runtime>,
}

impl<P> HeaderDeadline<P> {
    pub fn new(proxy: HttpProxy<P>, runtime: Arc<Runtime>) -> Self {
        HeaderDeadline {
            proxy: Arc::new(proxy),
            runtime,
        }
    }
}

#[async_trait]
impl<P> HttpServerApp for HeaderDeadline<P>
where
    P: ProxyHttp + Send + Sync + 'static,
    P::CTX: Send + Sync,
{
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let limit: Duration = self.runtime.load().settings.limits.header_read_timeout;
        let seen = Arc::new(AtomicBool::new(false));
        let work = HEADERS_READ.scope(Arc::clone(&seen), self.proxy.process_new_http(session, shutdown));
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
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.proxy.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await
    }
}
