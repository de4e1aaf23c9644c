//! An HTTP/2 client must send its connection preface before the head deadline, as an
//! HTTP/1.1 client must send its request head: Pingora's HTTP/2 server waits for it without
//! limit, and a TLS connection cannot be peeked at to wait for it here. This wrapper fails the
//! reads of a connection whose first bytes (the 24-byte preface) have not all arrived by the
//! deadline; after them, reads pass untouched (an idle HTTP/2 connection is Pingora's
//! `h2_idle_timeout`'s to close).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::delegate::{delegate_peek, delegate_stream_traits};

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug)]
pub struct PrefaceDeadline {
    inner: Stream,
    /// Preface bytes still to come; the deadline is dropped once they have.
    missing: usize,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl PrefaceDeadline {
    pub fn wrap(inner: Stream, deadline: Instant) -> Stream {
        Box::new(PrefaceDeadline {
            inner,
            missing: PREFACE.len(),
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        })
    }
}

impl AsyncRead for PrefaceDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.missing = this.missing.saturating_sub(buf.filled().len() - before);
                if this.missing == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no HTTP/2 preface before the head deadline",
                ))),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for PrefaceDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

delegate_stream_traits!(PrefaceDeadline);
delegate_peek!(PrefaceDeadline);
