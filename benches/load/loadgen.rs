//! Open-loop load for the benchmark: requests are *scheduled* at a fixed rate and each
//! latency is measured from its scheduled time, so a stalled server is charged for every
//! request it delayed (no coordinated omission, as in wrk2).
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
    non_2xx: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--sequence") {
        sequence_mode(&args[1..]);
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
    let interval = Duration::from_secs_f64(conns as f64 / rate.max(1.0));
    let outcome = rt.block_on(async move {
        let start = Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..conns)
            .map(|c| {
                let (addr, requests) = (addr.clone(), Arc::clone(&requests));
                tokio::spawn(
                    async move { connection(addr, requests, c, conns, total, start, interval).await },
                )
            })
            .collect();
        let mut all = Outcome {
            latencies_us: Vec::with_capacity(total as usize),
            errors: 0,
            non_2xx: 0,
        };
        for t in tasks {
            if let Ok(o) = t.await {
                all.latencies_us.extend(o.latencies_us);
                all.errors += o.errors;
                all.non_2xx += o.non_2xx;
            }
        }
        all
    });
    let mut l = outcome.latencies_us;
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests={} errors={} non2xx={} p50_us={} p99_us={} p999_us={} max_us={}",
        l.len(),
        outcome.errors,
        outcome.non_2xx,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        l.last().copied().unwrap_or(0)
    );
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
                    let mut out = Outcome {
                        latencies_us: Vec::new(),
                        errors: 0,
                        non_2xx: 0,
                    };
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
        let mut all = Outcome {
            latencies_us: Vec::new(),
            errors: 0,
            non_2xx: 0,
        };
        for t in tasks {
            if let Ok(o) = t.await {
                all.latencies_us.extend(o.latencies_us);
                all.errors += o.errors;
                all.non_2xx += o.non_2xx;
            }
        }
        all
    });
    let mut l = outcome.latencies_us;
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "sequences={} per_s={:.0} errors={} non2xx={} p50_us={} p99_us={}",
        l.len(),
        l.len() as f64 / seconds,
        outcome.errors,
        outcome.non_2xx,
        pct(0.50),
        pct(0.99)
    );
}

/// Connection `c` sends requests c, c+conns, c+2·conns… each at its scheduled time.
async fn connection(
    addr: String,
    requests: Arc<Vec<Vec<u8>>>,
    c: usize,
    conns: usize,
    total: u64,
    start: Instant,
    interval: Duration,
) -> Outcome {
    let mut out = Outcome {
        latencies_us: Vec::new(),
        errors: 0,
        non_2xx: 0,
    };
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = c as u64;
    let mut k = 0u32;
    while n < total {
        let due = start + interval * k + interval.mul_f64(c as f64 / conns as f64);
        tokio::time::sleep_until(due.into()).await;
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
                if !(200..300).contains(&code) {
                    out.non_2xx += 1;
                }
                out.latencies_us.push(due.elapsed().as_micros() as u64);
            }
            None => {
                out.errors += 1;
                stream = None;
            }
        }
        n += conns as u64;
        k += 1;
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
