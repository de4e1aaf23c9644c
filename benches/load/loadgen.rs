//! Open-loop load for the benchmark: requests are *scheduled* at a fixed rate and each
//! latency is measured from its scheduled time, so a stalled server is charged for every
//! request it delayed (no coordinated omission, as in wrk2).
//!
//! The schedule is kept by a periodic `timerfd` (the kernel's high-resolution timer, one
//! expiry per request) that the runtime's own thread waits on beside the sockets; each wake
//! hands every request that has fallen due to its connection's task. Tokio's own timer has a
//! 1 ms tick: sleeping until each due time with it released a millisecond's requests in one
//! burst and charged them up to a millisecond of the generator's own lateness (1.2 ms p50
//! against nginx directly at 9k req/s). A pacer thread sleeping per request fixed that but cost
//! two context switches per request on the generator's core: at 29k req/s loadgen alone kept
//! that core 97% busy (scenario CACHE, 2026-12-04), so the generator, not the server, set the
//! latencies of a fast server's open loop. The timerfd costs one `read` per wake, however
//! many requests fell due.
//!
//! `loadgen ADDR PATH RATE SECONDS CONNECTIONS [REQUESTS_FILE]`: prints one line of
//! `key=value` results. A requests file (the format `wrk.lua` reads) has one request per
//! line, `PATH|Header: value|…`, used round robin instead of `GET PATH`.
//!
//! `loadgen --sequence ADDR SECONDS CONNECTIONS REQUESTS_FILE`: closed loop, where one
//! *sequence* is every request of the file sent one after the other on one connection (a
//! client that needs three resources and asks for them in turn); prints sequences per second
//! and the latency of whole sequences. Scenario G compares one aggregated request with three
//! sequential direct requests this way.
//!
//! `loadgen --serial-upstream ADDR SERVICE_US`: an upstream that serves one request at a time,
//! each taking SERVICE_US (a service on one core: capacity 1/SERVICE_US), answering `200 ok`;
//! the overload scenario (`overload.sh`) offers twice that through the gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Outcome {
    latencies_us: Vec<u64>,
    /// Latencies of the 2xx answers alone, and of the others (refusals).
    ok_us: Vec<u64>,
    refused_us: Vec<u64>,
    errors: u64,
    non_2xx: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            latencies_us: Vec::new(),
            ok_us: Vec::new(),
            refused_us: Vec::new(),
            errors: 0,
            non_2xx: 0,
        }
    }

    fn add(&mut self, other: Outcome) {
        self.latencies_us.extend(other.latencies_us);
        self.ok_us.extend(other.ok_us);
        self.refused_us.extend(other.refused_us);
        self.errors += other.errors;
        self.non_2xx += other.non_2xx;
    }
}

/// The `p` quantile of `sorted` (0 when empty).
fn quantile(sorted: &[u64], p: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--sequence") {
        sequence_mode(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("--serial-upstream") {
        serial_upstream(&args[1..]);
        return;
    }
    let (addr, path, rate, seconds, conns, file) = match args.as_slice() {
        [a, p, r, s, c, rest @ ..] => (
            a.clone(),
            p.clone(),
            r.parse::<f64>().unwrap_or(0.0),
            s.parse::<f64>().unwrap_or(0.0),
            c.parse::<usize>().unwrap_or(1).max(1),
            rest.first().cloned(),
        ),
        _ => {
            eprintln!("usage: loadgen ADDR PATH RATE SECONDS CONNECTIONS [REQUESTS_FILE]");
            std::process::exit(2);
        }
    };
    let lines: Vec<String> = file
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let request = request_bytes;
    let requests: Vec<Vec<u8>> = if lines.is_empty() {
        vec![request(&path)]
    } else {
        lines.iter().map(|l| request(l)).collect()
    };
    let requests = Arc::new(requests);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let total = (rate * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..conns)
        .map(|_| tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>())
        .unzip();
    let start = Instant::now() + Duration::from_millis(50);
    let (outcome, pacer_late_us) = rt.block_on(async move {
        let pacer = tokio::spawn(pace(senders, total, start, interval));
        let tasks: Vec<_> = receivers
            .into_iter()
            .map(|due| {
                let (addr, requests) = (addr.clone(), Arc::clone(&requests));
                tokio::spawn(async move { connection(addr, requests, due).await })
            })
            .collect();
        let mut all = Outcome::new();
        for t in tasks {
            if let Ok(o) = t.await {
                all.add(o);
            }
        }
        (all, pacer.await.unwrap_or_default())
    });
    // From the first request's due time to the last answer.
    let elapsed = start.elapsed().as_secs_f64();
    let mut pacer_late_us = pacer_late_us;
    pacer_late_us.sort_unstable();
    let Outcome {
        latencies_us: mut l,
        mut ok_us,
        mut refused_us,
        errors,
        non_2xx,
    } = outcome;
    for v in [&mut l, &mut ok_us, &mut refused_us] {
        v.sort_unstable();
    }
    println!(
        "requests={} errors={errors} non2xx={non_2xx} p50_us={} p99_us={} p999_us={} max_us={} ok={} ok_p50_us={} ok_p99_us={} refused_p99_us={} elapsed_s={elapsed:.2} pacer_p99_us={} pacer_max_us={}",
        l.len(),
        quantile(&l, 0.50),
        quantile(&l, 0.99),
        quantile(&l, 0.999),
        l.last().copied().unwrap_or(0),
        ok_us.len(),
        quantile(&ok_us, 0.50),
        quantile(&ok_us, 0.99),
        quantile(&refused_us, 0.99),
        quantile(&pacer_late_us, 0.99),
        pacer_late_us.last().copied().unwrap_or(0),
    );
}

/// See the module documentation: one request at a time, each taking `SERVICE_US`.
fn serial_upstream(args: &[String]) {
    let [addr, service_us] = args else {
        eprintln!("usage: loadgen --serial-upstream ADDR SERVICE_US");
        std::process::exit(2);
    };
    let service = Duration::from_micros(service_us.parse().unwrap_or(2500));
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        std::process::exit(1);
    };
    rt.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::bind(addr.as_str()).await else {
            eprintln!("loadgen: cannot listen on {addr}");
            std::process::exit(1);
        };
        let one_at_a_time = Arc::new(tokio::sync::Semaphore::new(1));
        while let Ok((mut s, _)) = listener.accept().await {
            let one_at_a_time = Arc::clone(&one_at_a_time);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut filled = 0;
                loop {
                    let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut buf[filled..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => filled += n,
                        }
                        if filled == buf.len() {
                            return;
                        }
                        continue;
                    };
                    buf.copy_within(end + 4..filled, 0);
                    filled -= end + 4;
                    {
                        // One request at a time, as on a single busy core: the next waits.
                        let Ok(_turn) = one_at_a_time.acquire().await else {
                            return;
                        };
                        tokio::time::sleep(service).await;
                    }
                    let answer =
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// One line of a requests file, `PATH|Header: value|…`, as the request sent.
fn request_bytes(line: &str) -> Vec<u8> {
    let mut parts = line.split('|');
    let path = parts.next().unwrap_or("/");
    let headers: String = parts.map(|h| format!("{h}\r\n")).collect();
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n").into_bytes()
}

/// Closed loop of sequences (see the module documentation).
fn sequence_mode(args: &[String]) {
    let [addr, seconds, conns, file] = args else {
        eprintln!("usage: loadgen --sequence ADDR SECONDS CONNECTIONS REQUESTS_FILE");
        std::process::exit(2);
    };
    let seconds = seconds.parse::<f64>().unwrap_or(1.0);
    let conns = conns.parse::<usize>().unwrap_or(1).max(1);
    let requests: Vec<Vec<u8>> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(request_bytes)
        .collect();
    if requests.is_empty() {
        eprintln!("loadgen: {file} holds no request");
        std::process::exit(2);
    }
    let requests = Arc::new(requests);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        std::process::exit(1);
    };
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let outcome = rt.block_on(async move {
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                let (addr, requests) = (addr.clone(), Arc::clone(&requests));
                tokio::spawn(async move {
                    let mut out = Outcome::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut stream: Option<TcpStream> = None;
                    while Instant::now() < end {
                        let begun = Instant::now();
                        let mut ok = true;
                        for req in requests.iter() {
                            if stream.is_none() {
                                stream = TcpStream::connect(&addr).await.ok();
                                if let Some(s) = &stream {
                                    let _ = s.set_nodelay(true);
                                }
                            }
                            match stream.as_mut() {
                                Some(s) => match exchange(s, req, &mut buf).await {
                                    Some(code) if (200..300).contains(&code) => {}
                                    Some(_) => out.non_2xx += 1,
                                    None => {
                                        ok = false;
                                        stream = None;
                                    }
                                },
                                None => ok = false,
                            }
                            if !ok {
                                break;
                            }
                        }
                        if ok {
                            out.latencies_us.push(begun.elapsed().as_micros() as u64);
                        } else {
                            out.errors += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    out
                })
            })
            .collect();
        let mut all = Outcome::new();
        for t in tasks {
            if let Ok(o) = t.await {
                all.add(o);
            }
        }
        all
    });
    let mut l = outcome.latencies_us;
    l.sort_unstable();
    println!(
        "sequences={} per_s={:.0} errors={} non2xx={} p50_us={} p99_us={}",
        l.len(),
        l.len() as f64 / seconds,
        outcome.errors,
        outcome.non_2xx,
        quantile(&l, 0.50),
        quantile(&l, 0.99)
    );
}

/// The schedule: request `n` is due at `start + n·interval` and goes to connection
/// `n mod connections`, handed over when due (all at once for any the pacer is late for).
/// Returns how late each hand-over was (µs): a pacer that falls behind means the generator's
/// own core is saturated, and the latencies then measure the generator, not the server.
async fn pace(
    connections: Vec<tokio::sync::mpsc::UnboundedSender<(u64, Instant)>>,
    total: u64,
    start: Instant,
    interval: Duration,
) -> Vec<u64> {
    let mut late_us = Vec::with_capacity(total as usize);
    let ticks = match Ticks::new(start, interval) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: timerfd: {e}");
            std::process::exit(1);
        }
    };
    let mut n = 0;
    while n < total {
        // The requests due since the last wake (the timer counts its expiries).
        let due_now = match ticks.expired().await {
            Ok(k) => k,
            Err(e) => {
                eprintln!("loadgen: timerfd: {e}");
                std::process::exit(1);
            }
        };
        for _ in 0..due_now {
            if n == total {
                break;
            }
            let due = start + interval.mul_f64(n as f64);
            late_us.push(due.elapsed().as_micros() as u64);
            if let Some(c) = connections.get((n % connections.len() as u64) as usize) {
                let _ = c.send((n, due));
            }
            n += 1;
        }
    }
    // Dropping the senders ends each connection's loop once its queue is empty.
    late_us
}

/// A periodic `timerfd` on `CLOCK_MONOTONIC` (the clock `Instant` reads): first expiry at
/// `start`, then one every `interval`, so expiry `n` is request `n`'s due time.
struct Ticks {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Ticks {
    fn new(start: Instant, interval: Duration) -> std::io::Result<Ticks> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls on a descriptor this function owns; the structs are
        // fully initialised.
        unsafe {
            let raw = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC);
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            // `start` on the kernel's clock, even if it has passed already: the timer then
            // counts the expiries missed, and the pacer catches up rather than shifting the
            // whole schedule (and charging every request the delay).
            let kernel_now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
            let at = Instant::now();
            let first = match start.checked_duration_since(at) {
                Some(ahead) => kernel_now + ahead,
                None => kernel_now.saturating_sub(at - start),
            };
            let spec = libc::itimerspec {
                it_interval: timespec(interval.max(Duration::from_nanos(1))),
                it_value: timespec(first),
            };
            if libc::timerfd_settime(raw, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Ticks {
                // The descriptor is owned by the `AsyncFd` and closed only with it.
                fd: tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)?,
            })
        }
    }

    /// Wait for the timer, then how many expiries there have been since the last call.
    async fn expired(&self) -> std::io::Result<u64> {
        use std::os::fd::AsRawFd;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into an 8-byte buffer.
            let read = guard.try_io(|fd| {
                match unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) } {
                    8 => Ok(u64::from_ne_bytes(count)),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
            match read {
                Ok(result) => return result,
                // Not ready after all (the readiness was stale): wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// One connection: sends each request the pacer hands it, in order; a request whose
/// predecessor is still outstanding waits (and is charged for it: latency counts from `due`).
async fn connection(
    addr: String,
    requests: Arc<Vec<Vec<u8>>>,
    mut schedule: tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
) -> Outcome {
    let mut out = Outcome::new();
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some((n, due)) = schedule.recv().await {
        let req = &requests[(n as usize) % requests.len()];
        if stream.is_none() {
            stream = TcpStream::connect(&addr).await.ok();
            if let Some(s) = &stream {
                let _ = s.set_nodelay(true);
            }
        }
        let status = match stream.as_mut() {
            Some(s) => exchange(s, req, &mut buf).await,
            None => None,
        };
        match status {
            Some(code) => {
                let latency = due.elapsed().as_micros() as u64;
                if (200..300).contains(&code) {
                    out.ok_us.push(latency);
                } else {
                    out.non_2xx += 1;
                    out.refused_us.push(latency);
                }
                out.latencies_us.push(latency);
            }
            None => {
                out.errors += 1;
                stream = None;
            }
        }
    }
    out
}

/// Send one request and read one response (Content-Length framed); its status.
async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut [u8]) -> Option<u16> {
    s.write_all(req).await.ok()?;
    let mut filled = 0;
    let head_end = loop {
        let n = s.read(buf.get_mut(filled..)?).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let want = head_end + 4 + length;
    while filled < want {
        let n = s.read(buf.get_mut(filled..)?).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
    }
    Some(status)
}
