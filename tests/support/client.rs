//! A raw, blocking HTTP/1.1 client.
//!
//! Gateway tests need to send byte-exact requests (path-bypass spellings such
//! as `/a/%2e%2e/b`, duplicate `Host` headers, `Content-Length` together with
//! `Transfer-Encoding`), which any high-level HTTP library would normalise or
//! refuse. So requests are written verbatim to a `std::net::TcpStream` and only
//! the response is parsed. Every read and write has a timeout so a misbehaving
//! gateway makes a test fail instead of hang.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Read/write/connect timeout for every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response head accepted; a bound so a broken peer cannot make us
/// buffer forever.
const MAX_HEAD: usize = 1024 * 1024;

/// Largest body accepted (same reason).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// In received order; names lowercased.
    pub headers: Vec<(String, String)>,
    /// De-chunked body.
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::headers::first(&self.headers, name)
    }

    /// Every value of a header, in received order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::headers::all(&self.headers, name)
    }

    /// Body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON; panics with the status and body text if it is not JSON,
    /// so the failure message shows what the gateway actually sent.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}); status {}, headers {:?}, body: {}",
                self.status,
                self.headers,
                self.text()
            ),
        }
    }
}

/// Sends one request on a fresh connection and reads one response; panics
/// (with the address and error) on any connection error.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> Response {
    match try_send_raw(addr, request) {
        Ok(r) => r,
        Err(e) => panic!(
            "request to {addr} failed: {e}; request was: {:?}",
            String::from_utf8_lossy(request)
        ),
    }
}

/// Like [`send_raw`] but returns `Err` on connection errors, timeouts or a
/// connection closed without a (complete) response — for tests that expect
/// the gateway to drop the connection.
pub fn try_send_raw(addr: SocketAddr, request: &[u8]) -> io::Result<Response> {
    try_send_raw_timeout(addr, request, IO_TIMEOUT)
}

/// [`try_send_raw`] with a custom connect/read/write timeout (used by
/// readiness probes, which must not spend 10 s on one attempt).
pub fn try_send_raw_timeout(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut stream = connect(addr, timeout)?;
    stream.write_all(request)?;
    stream.flush()?;
    let mut buf = Vec::new();
    read_response(&mut stream, &mut buf, is_head(request)).map(|(r, _)| r)
}

/// `GET {path}` with the given Host and `Connection: close`.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    send_raw(addr, req.as_bytes())
}

/// A request with extra headers and an optional body. Adds `Content-Length`
/// when the body is non-empty, and `Connection: close`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    send_raw(addr, &build_request(method, host, path, headers, body))
}

/// The bytes [`request`] sends, for tests that want to tweak them or send them
/// on a [`Conn`] (note the `Connection: close`).
pub fn build_request(method: &str, host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A keep-alive client: one TCP connection reused for several requests, to
/// test connection reuse and pipelining-adjacent behaviour.
pub struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    /// Bytes read past the end of the previous response.
    buf: Vec<u8>,
}

impl Conn {
    /// Connects or panics.
    pub fn connect(addr: SocketAddr) -> Conn {
        match connect(addr, IO_TIMEOUT) {
            Ok(stream) => Conn {
                addr,
                stream,
                buf: Vec::new(),
            },
            Err(e) => panic!("connect to {addr} failed: {e}"),
        }
    }

    /// Writes `request` verbatim and reads one response. `Err` if the server
    /// closed the connection (e.g. it did not keep it alive).
    pub fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.write_raw(request)?;
        self.read_response(is_head(request))
    }

    /// Writes bytes without reading (partial requests, pipelining).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one response; `head` says whether it answers a HEAD request.
    pub fn read_response(&mut self, head: bool) -> io::Result<Response> {
        read_response(&mut self.stream, &mut self.buf, head).map(|(r, _)| r)
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The underlying stream, for tests that need socket-level control.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `deadline`;
/// panics mentioning `what` on timeout. This is the only sanctioned way to
/// wait for asynchronous effects (no bare sleeps).
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_head(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads more bytes into `buf`; `Ok(false)` at EOF. Timeouts become
/// `TimedOut` errors with a readable message.
fn fill(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut tmp) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out reading the response",
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

type Head = (u16, Vec<(String, String)>, usize);

/// Parses a response head; `Ok(None)` when more bytes are needed.
fn parse_response_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut n = 64;
    loop {
        let mut hs = vec![httparse::EMPTY_HEADER; n];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                return Ok(Some((resp.code.unwrap_or(0), headers, len)));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) if n < 8192 => n *= 4,
            Err(e) => {
                return Err(invalid(format!(
                    "bad response head ({e}): {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(512)])
                )))
            }
        }
    }
}

/// Decodes a chunked body at the start of `buf` (including the last chunk and
/// any trailers). Returns the body and the number of bytes consumed, or
/// `Ok(None)` if `buf` does not yet hold the whole body. Shared with the
/// upstream server, which decodes chunked request bodies the same way.
pub(crate) fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let Some(end) = find_crlf(&buf[pos..]).map(|i| pos + i) else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[pos..end]);
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .ok()
            .filter(|s| *s <= MAX_BODY)
            .ok_or_else(|| format!("bad chunk size line {line:?}"))?;
        pos = end + 2;
        if size == 0 {
            // Trailer section: header lines until an empty line.
            loop {
                let Some(end) = find_crlf(&buf[pos..]).map(|i| pos + i) else {
                    return Ok(None);
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("missing CRLF after chunk data".into());
        }
        pos += size + 2;
        if body.len() > MAX_BODY {
            return Err("chunked body too large".into());
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// True if the comma-separated header values end with `chunked`.
pub(crate) fn is_chunked<'a>(mut values: impl Iterator<Item = &'a str>) -> bool {
    values.any(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// Reads one response from `stream`, using and leaving leftovers in `buf`.
/// Skips interim 1xx responses (except 101, which is final). Returns the
/// response and whether the connection can carry another request.
pub fn read_response(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    head_request: bool,
) -> io::Result<(Response, bool)> {
    loop {
        let (status, headers, len) = loop {
            if let Some(h) = parse_response_head(buf)? {
                break h;
            }
            if buf.len() > MAX_HEAD {
                return Err(invalid("response head too large"));
            }
            if !fill(stream, buf)? {
                let msg = if buf.is_empty() {
                    "connection closed without a response".to_string()
                } else {
                    format!("connection closed mid-head: {:?}", String::from_utf8_lossy(buf))
                };
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
            }
        };
        buf.drain(..len);
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let conn_close = resp
            .header_all("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return Ok((resp, !conn_close && status != 101));
        }
        if is_chunked(resp.header_all("transfer-encoding").into_iter()) {
            loop {
                match decode_chunked(buf).map_err(invalid)? {
                    Some((body, used)) => {
                        buf.drain(..used);
                        resp.body = body;
                        return Ok((resp, !conn_close));
                    }
                    None => {
                        if !fill(stream, buf)? {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "connection closed mid chunked body",
                            ));
                        }
                    }
                }
            }
        }
        if let Some(cl) = resp.header("content-length") {
            let n: usize = cl
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= MAX_BODY)
                .ok_or_else(|| invalid(format!("bad content-length {cl:?}")))?;
            while buf.len() < n {
                if !fill(stream, buf)? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed after {} of {n} body bytes", buf.len()),
                    ));
                }
            }
            resp.body = buf.drain(..n).collect();
            return Ok((resp, !conn_close));
        }
        // Close-delimited body. A reset after the head still ends the body:
        // servers that close with unread request bytes send RST, not FIN.
        loop {
            if buf.len() > MAX_BODY {
                return Err(invalid("close-delimited body too large"));
            }
            match fill(stream, buf) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e),
            }
        }
        resp.body = std::mem::take(buf);
        return Ok((resp, false));
    }
}

/// How a trickling client ended.
#[derive(Debug)]
pub enum Trickled {
    /// The server closed the connection without answering.
    Closed,
    /// The server answered (and may have closed afterwards): the response.
    Answered(Response),
    /// Still open at the deadline.
    StillOpen,
}

/// Send `head`, then one byte of `fill` every `every`, until the server answers or closes, or
/// `deadline` passes (slowloris-style clients: headers or a body sent too slowly).
pub fn trickle(addr: SocketAddr, head: &[u8], fill: u8, every: Duration, deadline: Duration) -> Trickled {
    let mut conn = Conn::connect(addr);
    let _ = conn.stream().set_read_timeout(Some(every));
    if conn.write_raw(head).is_err() {
        return Trickled::Closed;
    }
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < deadline {
        match conn.stream().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                continue;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if !seen.is_empty() {
            break;
        }
        if conn.write_raw(&[fill]).is_err() {
            break;
        }
    }
    if seen.is_empty() {
        return if started.elapsed() < deadline {
            Trickled::Closed
        } else {
            Trickled::StillOpen
        };
    }
    // Whatever else the answer holds arrives at once.
    let _ = conn.stream().set_read_timeout(Some(IO_TIMEOUT));
    let mut rest = seen;
    match read_response(conn.stream(), &mut rest, false) {
        Ok((r, _)) => Trickled::Answered(r),
        Err(_) => Trickled::Closed,
    }
}
