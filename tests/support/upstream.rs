//! A scriptable HTTP/1.1 upstream (origin) server for gateway tests.
//!
//! Each [`Upstream`] listens on its own loopback port and echoes what it
//! received as JSON, so a test can assert what the gateway forwarded (method,
//! raw target, headers, body). Behaviour is adjustable at run time (status,
//! delay, health status) and it can be stopped and restarted on the same port
//! to simulate an origin going down and coming back.
//!
//! All upstreams share one background multi-thread tokio runtime: tests are
//! plain `#[test]` functions, and a per-upstream runtime would cost threads on
//! a 2-core machine for no benefit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

use super::client::{decode_chunked, is_chunked};

/// Largest request head accepted; bounds memory if a test sends garbage.
const MAX_HEAD: usize = 1024 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Raw request-target exactly as received (no normalisation), so tests can
    /// check what path spelling the gateway forwarded.
    pub target: String,
    /// In received order; names lowercased.
    pub headers: Vec<(String, String)>,
    /// De-chunked body.
    pub body: Vec<u8>,
}

impl SeenRequest {
    /// First value of a header (name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::headers::first(&self.headers, name)
    }

    /// Every value of a header, in received order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        super::headers::all(&self.headers, name)
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-upstream")
            .enable_all()
            .build()
            .expect("failed to build the upstream test runtime")
    })
}

/// A scripted answer: raw pieces and the pause between them.
type Script = (Vec<Vec<u8>>, Duration);

/// Behaviour knobs and recordings, shared with the connection tasks.
struct State {
    name: String,
    requests: Mutex<Vec<SeenRequest>>,
    health_checks: AtomicUsize,
    status: AtomicU16,
    health_status: AtomicU16,
    delay_us: AtomicU64,
    inflight: AtomicUsize,
    connections: AtomicUsize,
    /// Raw responses by request path, written piece by piece with a pause between pieces
    /// (see [`Upstream::script`]).
    scripts: Mutex<std::collections::HashMap<String, Script>>,
}

/// Tracks spawned tasks so `stop()` can abort them and know when they're gone.
struct Tasks {
    stopped: bool,
    handles: Vec<AbortHandle>,
}

/// Number of live sockets (listener + connections). `stop()` waits for zero so
/// that when it returns the port really refuses connections; aborting a tokio
/// task alone only *schedules* the drop.
#[derive(Default)]
struct Live {
    count: Mutex<usize>,
    cv: Condvar,
}

struct LiveGuard(Arc<Live>);

impl LiveGuard {
    fn new(live: &Arc<Live>) -> LiveGuard {
        *lock(&live.count) += 1;
        LiveGuard(live.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        *lock(&self.0.count) -= 1;
        self.0.cv.notify_all();
    }
}

/// A socket plus its liveness guard. Field order matters: `inner` is dropped
/// (closing the fd) before the guard reports it gone.
struct Tracked<T> {
    inner: T,
    _guard: LiveGuard,
}

/// Locks ignoring poisoning: a panicking test thread must not wedge the
/// shared upstream machinery for the other tests.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running test upstream; stopped on drop.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    tasks: Arc<Mutex<Tasks>>,
    live: Arc<Live>,
}

impl Upstream {
    /// Starts an upstream on an ephemeral loopback port.
    pub fn start(name: &str) -> Upstream {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        match bind(addr) {
            Ok(l) => Upstream::serve(name, l),
            Err(e) => panic!("upstream {name}: bind {addr} failed: {e}"),
        }
    }

    /// Starts an upstream on a known address, typically the one of a stopped
    /// upstream (restart scenario). Retries the bind for up to 5 s because the
    /// port may still be held briefly (TIME_WAIT, or the old listener being
    /// torn down); SO_REUSEADDR is set.
    pub fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match bind(addr) {
                Ok(l) => return Upstream::serve(name, l),
                Err(e) if Instant::now() < deadline => {
                    if e.kind() != std::io::ErrorKind::AddrInUse {
                        panic!("upstream {name}: bind {addr} failed: {e}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("upstream {name}: bind {addr} still failing after 5 s: {e}"),
            }
        }
    }

    fn serve(name: &str, listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().expect("listener local_addr");
        let state = Arc::new(State {
            name: name.to_string(),
            requests: Mutex::new(Vec::new()),
            health_checks: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            delay_us: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            scripts: Mutex::new(std::collections::HashMap::new()),
        });
        let tasks = Arc::new(Mutex::new(Tasks {
            stopped: false,
            handles: Vec::new(),
        }));
        let live = Arc::new(Live::default());
        let listener = Tracked {
            inner: listener,
            _guard: LiveGuard::new(&live),
        };
        let accept = runtime().spawn(accept_loop(listener, state.clone(), tasks.clone(), live.clone()));
        lock(&tasks).handles.push(accept.abort_handle());
        Upstream {
            addr,
            state,
            tasks,
            live,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Every recorded request except health checks, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.state.requests).clone()
    }

    /// `requests().len()`.
    pub fn count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Number of `/health` requests seen.
    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// Number of TCP connections accepted, e.g. to assert that the gateway
    /// reuses upstream connections.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Clears recorded requests and the health-check and connection counters
    /// (settings such as status and delay are kept).
    pub fn reset(&self) {
        lock(&self.state.requests).clear();
        self.state.health_checks.store(0, Ordering::SeqCst);
        self.state.connections.store(0, Ordering::SeqCst);
    }

    /// Status for normal requests (default 200).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Status for `/health` requests (default 200).
    pub fn set_health_status(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// Delay before answering normal requests (default 0).
    pub fn set_delay(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_us.store(us, Ordering::SeqCst);
    }

    /// Normal requests received whose response has not been produced yet.
    pub fn inflight(&self) -> usize {
        self.state.inflight.load(Ordering::SeqCst)
    }

    /// Closes the listener and aborts every open connection, and returns only
    /// once their sockets are closed, so the port refuses connections right
    /// away. Idempotent.
    /// Answer requests for exactly `path` (query ignored) with these raw bytes, written in
    /// pieces with a short pause between them. The connection closes afterwards unless the
    /// first piece declares a length or chunked framing.
    pub fn script(&self, path: &str, pieces: Vec<Vec<u8>>) {
        self.script_paced(path, pieces, Duration::from_millis(15));
    }

    /// [`Upstream::script`] with this pause between pieces.
    pub fn script_paced(&self, path: &str, pieces: Vec<Vec<u8>>, pause: Duration) {
        lock(&self.state.scripts).insert(path.to_string(), (pieces, pause));
    }

    pub fn stop(&self) {
        {
            let mut tasks = lock(&self.tasks);
            tasks.stopped = true;
            for h in tasks.handles.drain(..) {
                h.abort();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut n = lock(&self.live.count);
        while *n > 0 {
            let now = Instant::now();
            if now >= deadline {
                // Not a panic: stop() also runs from Drop, possibly while the
                // test is already panicking.
                eprintln!(
                    "upstream {}: {} socket(s) still open 5 s after stop()",
                    self.state.name, *n
                );
                return;
            }
            n = self
                .live
                .cv
                .wait_timeout(n, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop()
    }
}

/// Binds with SO_REUSEADDR inside the shared runtime's context (a tokio
/// listener must be registered with a reactor).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let _enter = runtime().enter();
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: Tracked<TcpListener>,
    state: Arc<State>,
    tasks: Arc<Mutex<Tasks>>,
    live: Arc<Live>,
) {
    loop {
        let stream = match listener.inner.accept().await {
            Ok((s, _)) => s,
            // Transient (e.g. EMFILE under load): back off briefly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Guard first, then check `stopped` under the lock: either stop()
        // sees this task's handle, or the stream is dropped here.
        let stream = Tracked {
            inner: stream,
            _guard: LiveGuard::new(&live),
        };
        let mut t = lock(&tasks);
        if t.stopped {
            return;
        }
        state.connections.fetch_add(1, Ordering::SeqCst);
        t.handles.retain(|h| !h.is_finished());
        let h = tokio::spawn(serve_conn(stream, state.clone()));
        t.handles.push(h.abort_handle());
    }
}

/// A parsed request.
struct Req {
    seen: SeenRequest,
    keep_alive: bool,
}

async fn serve_conn(mut stream: Tracked<TcpStream>, state: Arc<State>) {
    let _ = stream.inner.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut stream.inner, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(msg) => {
                let resp = build_response(
                    400,
                    &[("content-type".into(), "text/plain".into())],
                    msg.as_bytes(),
                    false,
                    false,
                    true,
                );
                let _ = stream.inner.write_all(&resp).await;
                return;
            }
        };
        let path = req.seen.target.split('?').next().unwrap_or("").to_string();
        let script = lock(&state.scripts).get(&path).cloned();
        if let Some((pieces, pause)) = script {
            // Recorded like any request, then the scripted bytes, a pause between pieces so
            // the gateway reads them separately.
            lock(&state.requests).push(req.seen.clone());
            let framed = pieces.first().is_some_and(|head| {
                let head = String::from_utf8_lossy(head).to_ascii_lowercase();
                head.contains("content-length:") || head.contains("transfer-encoding: chunked")
            });
            for (i, piece) in pieces.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(pause).await;
                }
                if stream.inner.write_all(piece).await.is_err() {
                    return;
                }
                let _ = stream.inner.flush().await;
            }
            if !framed || !req.keep_alive {
                let _ = stream.inner.shutdown().await;
                return;
            }
            continue;
        }
        let resp = respond(&state, req.seen, !req.keep_alive).await;
        if stream.inner.write_all(&resp).await.is_err() {
            return;
        }
        if !req.keep_alive {
            let _ = stream.inner.shutdown().await;
            return;
        }
    }
}

/// Reads more bytes; `Ok(false)` at EOF.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut tmp = [0u8; 16 * 1024];
    match stream.read(&mut tmp).await {
        Ok(0) => Ok(false),
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            Ok(true)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads one request. `Ok(None)` on a clean EOF between requests; `Err` on
/// malformed input (answered with 400 and close).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Req>, String> {
    let (mut seen, version, len) = loop {
        if let Some(h) = parse_request_head(buf)? {
            break h;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large".into());
        }
        if !fill(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed mid-head".into())
            };
        }
    };
    buf.drain(..len);

    let tokens = |name: &str| -> Vec<String> {
        seen.header_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect()
    };
    let conn = tokens("connection");
    let keep_alive = if version == 0 {
        conn.iter().any(|t| t == "keep-alive")
    } else {
        !conn.iter().any(|t| t == "close")
    };
    let expect_continue = tokens("expect").iter().any(|t| t == "100-continue");
    let chunked = is_chunked(seen.header_all("transfer-encoding").into_iter());
    let content_length = if chunked {
        None
    } else {
        let cls = seen.header_all("content-length");
        match cls.first() {
            None => None,
            Some(first) => {
                if cls.iter().any(|v| v.trim() != first.trim()) {
                    return Err("conflicting content-length headers".into());
                }
                let n: usize = first
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad content-length {first:?}"))?;
                if n > MAX_BODY {
                    return Err("body too large".into());
                }
                Some(n)
            }
        }
    };
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    if expect_continue && has_body && buf.is_empty() {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
    }

    if chunked {
        loop {
            if let Some((body, used)) = decode_chunked(buf)? {
                buf.drain(..used);
                seen.body = body;
                break;
            }
            if !fill(stream, buf).await? {
                return Err("connection closed mid chunked body".into());
            }
        }
    } else if let Some(n) = content_length {
        while buf.len() < n {
            if !fill(stream, buf).await? {
                return Err("connection closed mid body".into());
            }
        }
        seen.body = buf.drain(..n).collect();
    }
    Ok(Some(Req { seen, keep_alive }))
}

type Head = (SeenRequest, u8, usize);

fn parse_request_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut n = 64;
    loop {
        let mut hs = vec![httparse::EMPTY_HEADER; n];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let seen = SeenRequest {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                return Ok(Some((seen, req.version.unwrap_or(1), len)));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) if n < 8192 => n *= 4,
            Err(e) => return Err(format!("bad request head: {e}")),
        }
    }
}

/// Decrements `inflight` however the handler ends (including abort).
struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Produces the full response bytes for one request.
async fn respond(state: &State, req: SeenRequest, close: bool) -> Vec<u8> {
    let head = req.method.eq_ignore_ascii_case("HEAD");
    let path = req.target.split('?').next().unwrap_or("");
    if path == "/health" {
        state.health_checks.fetch_add(1, Ordering::SeqCst);
        let status = state.health_status.load(Ordering::SeqCst);
        let headers = [
            ("content-type".to_string(), "text/plain".to_string()),
            ("x-upstream".to_string(), state.name.clone()),
        ];
        return build_response(status, &headers, b"ok", head, false, close);
    }

    // Count as in flight before recording, so a test that sees the request
    // recorded also sees it in flight.
    state.inflight.fetch_add(1, Ordering::SeqCst);
    let _inflight = InflightGuard(&state.inflight);
    lock(&state.requests).push(req.clone());

    let mut delay = Duration::from_micros(state.delay_us.load(Ordering::SeqCst));
    if let Some(ms) = req.header("x-delay-ms").and_then(|v| v.trim().parse().ok()) {
        delay += Duration::from_millis(ms);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let status = req
        .header("x-status")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| state.status.load(Ordering::SeqCst));
    let mut header_map = serde_json::Map::new();
    for (n, v) in &req.headers {
        header_map.insert(n.clone(), serde_json::Value::String(v.clone()));
    }
    let body = serde_json::json!({
        "upstream": state.name,
        "method": req.method,
        "target": req.target,
        "headers": header_map,
    })
    .to_string();
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-upstream".to_string(), state.name.clone()),
    ];
    for v in req.header_all("x-response-header") {
        if let Some((n, v)) = v.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let chunked = req.header("x-chunked") == Some("1");
    build_response(status, &headers, body.as_bytes(), head, chunked, close)
    // `_inflight` drops here, before the response is written, so a client
    // that has the response never observes it as still in flight.
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Serialises a response. 1xx/204/304 carry no body or length; HEAD gets the
/// length of the body it would have had but no body; `chunked` sends the body
/// in two chunks with `transfer-encoding: chunked`.
fn build_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
    chunked: bool,
    close: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    if !bodiless {
        if chunked {
            out.push_str("transfer-encoding: chunked\r\n");
        } else {
            out.push_str(&format!("content-length: {}\r\n", body.len()));
        }
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if bodiless || head {
        return out;
    }
    if chunked {
        let (a, b) = body.split_at(body.len() / 2);
        for part in [a, b] {
            if !part.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(body);
    }
    out
}
