//! The front door of every listener, before any HTTP is parsed: how many connections the
//! gateway holds (in all and per client), how little a connection costs while it waits for a
//! request, and how long a client may take to send its request head. Shared by the proxy and
//! the admin listener.
//!
//! **Memory.** Pingora gives every accepted connection a 64 KiB read buffer and, as soon as
//! it is handed over, the whole state of an HTTP session and its request future: about
//! 92 KiB per idle connection, measured. Listeners here read unbuffered (the HTTP session
//! reads into its own buffer anyway), and a connection that has not sent a byte holds only
//! its socket and this small future: the session is built once the first byte arrives.
//! Measured (tests/failures.rs, resident memory over 500 connections): 4–8 KiB per idle
//! connection, about 16 KiB with a request head in progress; see docs/config.md.

mod canned;
mod delegate;
pub mod gate;
pub mod header_deadline;
pub mod listening;
mod preface_deadline;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::tls::ALPN;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::config::cidr::any_contains;
use crate::observe::metrics;
use crate::runtime::Runtime;
use gate::{Gate, Refused};

/// How long connections accepted just before a shutdown get to send their request head.
const ACCEPTED_CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Front<A> {
    app: Arc<A>,
    /// Limits come from the current snapshot, so a live reload can change them.
    runtime: Arc<Runtime>,
    /// Connection caps apply (the proxy listeners, which share one), or not (the admin
    /// listener).
    gate: Option<Arc<Gate>>,
    /// This listener serves HTTP/2 with prior knowledge (h2c) beside HTTP/1.1.
    h2c: bool,
}

impl<A> Front<A> {
    /// The front of one proxy listener: connection caps, first-byte wait, head deadline.
    pub fn proxy(app: Arc<A>, runtime: Arc<Runtime>, gate: Arc<Gate>, h2c: bool) -> Front<A> {
        Front {
            app,
            runtime,
            gate: Some(gate),
            h2c,
        }
    }

    /// The front of the admin listener: the head deadline only.
    pub fn admin(app: A, runtime: Arc<Runtime>) -> Front<A> {
        Front {
            app: Arc::new(app),
            runtime,
            gate: None,
            h2c: false,
        }
    }
}

/// What an HTTP/2 connection starts with (`PRI * HTTP/2.0`); no HTTP/1 method is `PRI`, so
/// four bytes tell the protocols apart without waiting for a whole preface.
const H2_PREFACE_START: &[u8; 4] = b"PRI ";

#[async_trait]
impl<A> ServerApp for Front<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let _slot = match &self.gate {
            Some(gate) => match self.admit(gate, &stream) {
                Ok(slot) => Some(slot),
                Err(refused) => {
                    refuse(stream, refused).await;
                    return None;
                }
            },
            None => None,
        };
        let limit = self.runtime.load().settings.limits.header_read_timeout;
        let mut stream = stream;
        let deadline = Instant::now() + limit;
        if self.speaks_h2(&mut stream, deadline).await? {
            // Pingora's own HTTP/2 server: every stream of the connection goes through the
            // same proxy pipeline as an HTTP/1.1 request.
            let stream = preface_deadline::PrefaceDeadline::wrap(stream, deadline);
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let mut stream = canned::Canned::wrap(stream);
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            let limit = self.runtime.load().settings.limits.header_read_timeout;
            let deadline = Instant::now() + limit;
            // Hold nothing but the socket until the client says something. (Pipelining stays
            // off, as in Pingora's default, so no next request is ever buffered already.)
            let mut first = [0u8; 1];
            match tokio::time::timeout_at(deadline, stream.try_peek(&mut first)).await {
                Ok(Ok(_)) => {}
                // Closed, reset, or silent until the deadline.
                _ => return None,
            }
            let mut session = ServerSession::new_http1(stream);
            match carried.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
                    let limit = self.app.server_options().and_then(|o| o.keepalive_request_limit);
                    session.set_keepalive_reuses_remaining(limit);
                }
            }
            let reused =
                header_deadline::within(deadline, self.app.process_new_http(session, shutdown)).await?;
            let (next, settings) = reused.consume();
            stream = next;
            carried = settings;
        }
    }

    /// Pingora runs this when the listeners stop (graceful stop or upgrade hand-over) and then
    /// drops every connection still waiting for its request head. A connection accepted a
    /// moment before the listener closed would be dropped unanswered, which a client sees as a
    /// failed fresh request. Waiting briefly lets those send their heads and be served (with
    /// `Connection: close`); the grace period still bounds everything.
    async fn cleanup(&self) {
        tokio::time::sleep(ACCEPTED_CONNECTION_GRACE).await;
        self.app.http_cleanup().await
    }
}

impl<A> Front<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// HTTP/2: negotiated by ALPN on TLS, or, on an h2c listener, a plain connection that
    /// opens with the whole HTTP/2 preface before the deadline. `None`: close the connection
    /// (nothing before the deadline, or `PRI ` that is not the preface).
    async fn speaks_h2(&self, stream: &mut Stream, deadline: Instant) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.h2c {
            return Some(false);
        }
        let mut start = [0u8; 4];
        match tokio::time::timeout_at(deadline, stream.try_peek(&mut start)).await {
            Ok(Ok(true)) if &start == H2_PREFACE_START => {}
            Ok(Ok(_)) => return Some(false),
            _ => return None,
        }
        let mut preface = [0u8; 24];
        match tokio::time::timeout_at(deadline, stream.try_peek(&mut preface)).await {
            Ok(Ok(true)) if &preface == preface_deadline::PREFACE => Some(true),
            _ => None,
        }
    }

    fn admit<'g>(&self, gate: &'g Gate, stream: &Stream) -> Result<gate::Slot<'g>, Refused> {
        let client = stream.get_socket_digest().and_then(|d| {
            d.peer_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_canonical())
        });
        let snapshot = self.runtime.load();
        let settings = &snapshot.settings;
        let trusted = any_contains(&settings.trusted_proxies, client);
        gate.admit(client, trusted, &settings.connections)
            .inspect_err(|refused| {
                metrics::get()
                    .connections_refused
                    .with_label_values(&[refused.label()])
                    .inc();
            })
    }
}

/// Tell a refused client why, briefly, and close.
async fn refuse(mut stream: Stream, refused: Refused) {
    let body = format!(
        r#"{{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections ({})"}}"#,
        refused.label()
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\ncache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.flush().await;
        let _ = AsyncWriteExt::shutdown(&mut stream).await;
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}
