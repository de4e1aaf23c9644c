//! Pingora answers some requests itself before any filter runs — a request head it cannot
//! parse (400), `CONNECT` (405) — with a canned response that says `Server: Pingora`. That
//! fingerprints the framework for every scanner, and differs from every other error the
//! gateway sends. Pingora offers no hook for it, so the client stream is wrapped: before the app
//! has read a request head — so never while a request is proxied, and never an upstream's
//! response or any body — a write that is exactly one of Pingora's canned heads is replaced by
//! the gateway's own problem+json answer. Everything else passes as written.
//!
//! The wrapper also owns the wait for each request's first byte ([`Peek`]): Pingora's
//! `try_peek` reads exactly the bytes asked for, so the read that follows (the request head)
//! costs a second system call. Here the wait reads whatever has arrived, up to
//! [`READ_AHEAD`] bytes, and the head is parsed from what it holds: one `recvfrom` per
//! request fewer, as the minimal proxy does it (measured with strace: 3 → 2 per request).
//! Nothing is held while a connection waits, so an idle connection costs what it did.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_trait::async_trait;
use pingora::protocols::{Peek, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::header_deadline;

/// The lines of Pingora's canned error heads (`error_resp::gen_error_response`).
const PINGORA_LINE: &[u8] = b"\r\nServer: Pingora\r\n";
const EMPTY_BODY_LINE: &[u8] = b"\r\nContent-Length: 0\r\n";

/// The most a wait for a request's first byte reads at once: a typical request head whole.
const READ_AHEAD: usize = 4096;

#[derive(Debug)]
pub struct Canned {
    inner: Stream,
    /// A replacement being written, how much of it is out, and the length of the write it
    /// stands for (reported once it is all out).
    pending: Option<(Vec<u8>, usize, usize)>,
    /// What a [`Peek`] read ahead and no read has taken yet (freed once taken).
    held: Vec<u8>,
    /// How much of `held` reads have taken.
    taken: usize,
}

impl Canned {
    pub fn wrap(inner: Stream) -> Stream {
        Box::new(Canned {
            inner,
            pending: None,
            held: Vec::new(),
            taken: 0,
        })
    }

    /// What is held and not yet read.
    fn unread(&self) -> &[u8] {
        self.held.get(self.taken..).unwrap_or_default()
    }

    /// One read from the client, of whatever has arrived (at most [`READ_AHEAD`] bytes),
    /// added to what is held; 0 at the end of the stream. The buffer lives on the stack for
    /// one poll only, so a connection waiting here holds nothing.
    fn poll_read_ahead(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_AHEAD];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
        let filled = read.filled();
        if self.taken == self.held.len() {
            self.held.clear();
            self.taken = 0;
        }
        self.held.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    }
}

#[async_trait]
impl Peek for Canned {
    /// `buf` filled with the first bytes the client sends, which stay unread.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        while self.unread().len() < buf.len() {
            if std::future::poll_fn(|cx| self.poll_read_ahead(cx)).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        for (to, from) in buf.iter_mut().zip(self.unread()) {
            *to = *from;
        }
        Ok(true)
    }
}

/// The gateway's answer instead of a canned Pingora response head, if `buf` is exactly one
/// (a whole head, nothing after it, with Pingora's `Server` line and an empty body).
fn replacement(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.starts_with(b"HTTP/1.1 ") || buf.len() > 512 || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head_end + 4 != buf.len() {
        return None;
    }
    let has = |line: &[u8]| buf.windows(line.len()).any(|w| w == line);
    if !has(PINGORA_LINE) || !has(EMPTY_BODY_LINE) {
        return None;
    }
    let status: u16 = std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()?;
    let (title, detail) = match status {
        405 => ("Method Not Allowed", "the CONNECT method is not supported"),
        400 => ("Bad Request", "the request could not be parsed"),
        _ => ("Error", "the request could not be served"),
    };
    let body = format!(r#"{{"type":"about:blank","title":"{title}","status":{status},"detail":"{detail}"}}"#);
    Some(
        format!(
            "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncWrite for Canned {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        // Only Pingora's own answers before any request head was read; never a proxied one.
        if this.pending.is_none() {
            // The cheap test first: after a request head, every write passes untouched.
            let canned = match header_deadline::headers_read() {
                true => None,
                false => replacement(buf),
            };
            match canned {
                Some(bytes) => this.pending = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // Write the replacement out; the caller (write_all) retries with the same buffer
        // while this is pending.
        while let Some((bytes, written, stands_for)) = this.pending.as_mut() {
            if *written == bytes.len() {
                let n = *stands_for;
                this.pending = None;
                return Poll::Ready(Ok(n));
            }
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(0))
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
        // A response head goes through `poll_write`, where it can be recognized.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) if first.starts_with(b"HTTP/1.1 ") || self.pending.is_some() => {
                self.poll_write(cx, first)
            }
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl AsyncRead for Canned {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let unread = this.unread();
        if unread.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = unread.len().min(buf.remaining());
        buf.put_slice(unread.get(..n).unwrap_or_default());
        this.taken += n;
        if this.taken == this.held.len() {
            this.held = Vec::new();
            this.taken = 0;
        }
        Poll::Ready(Ok(()))
    }
}

super::delegate::delegate_stream_traits!(Canned);

#[cfg(test)]
mod tests {
    use super::*;

    /// A peek reads ahead; reads then take what it holds, in order, and then the socket.
    #[tokio::test]
    async fn a_peek_reads_ahead_and_reads_take_what_it_holds() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            c.flush().await.unwrap();
            // The rest after the server has peeked (it answers one byte when it has).
            let mut ack = [0u8; 1];
            c.read_exact(&mut ack).await.unwrap();
            c.write_all(b"Host: x\r\n\r\n").await.unwrap();
        });
        let (socket, _) = listener.accept().await.unwrap();
        let l4: pingora::protocols::l4::stream::Stream = socket.into();
        let mut stream = Canned::wrap(Box::new(l4));
        let mut first = [0u8; 1];
        assert!(stream.try_peek(&mut first).await.unwrap());
        assert_eq!(&first, b"G");
        let mut four = [0u8; 4];
        assert!(stream.try_peek(&mut four).await.unwrap());
        assert_eq!(&four, b"GET ", "a second peek sees the same bytes");
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"GET /");
        stream.write_all(b"k").await.unwrap();
        stream.flush().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" HTTP/1.1\r\nHost: x\r\n\r\n");
        client.await.unwrap();
        let mut after = [0u8; 1];
        assert!(
            stream.try_peek(&mut after).await.is_err(),
            "the end of the stream"
        );
    }

    #[test]
    fn replaces_only_pingoras_canned_heads() {
        let canned = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nDate: x\r\nContent-Length: 0\r\nCache-Control: private, no-store\r\nConnection: close\r\n\r\n";
        let ours = String::from_utf8(replacement(canned).expect("replaced")).unwrap();
        assert!(ours.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json"));
        assert!(!ours.contains("Pingora"));
        let proxied = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n";
        assert!(replacement(proxied).is_none());
        let with_body = [&canned[..], b"x"].concat();
        assert!(
            replacement(&with_body).is_none(),
            "a whole head and nothing after it"
        );
        let not_empty = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 5\r\n\r\n";
        assert!(replacement(not_empty).is_none());
        assert!(replacement(b"{\"json\": true}").is_none());
    }
}
