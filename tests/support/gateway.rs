//! Launches the real `portcullis` binary for a test.
//!
//! Each [`Gateway`] gets its own temp dir holding its config, log, pid file and
//! upgrade socket, and its own free proxy and admin ports, so tests can
//! run in parallel threads without colliding. The child is SIGKILLed on drop;
//! if the test is failing, its log is printed to stderr so failures are
//! diagnosable from `cargo test` output alone.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::client::{self, Response};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Default deadline for the gateway to come up, and for `check` to finish.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// How many times to retry a launch that lost a port race.
const PORT_ATTEMPTS: usize = 3;

/// What "started" means for a launch.
#[derive(Clone, Copy, PartialEq)]
enum WaitFor {
    /// `GET /readyz` on the admin port returns 200.
    Ready,
    /// The proxy port accepts TCP connections.
    Listening,
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    dir: TempDir,
    addr: SocketAddr,
    admin: SocketAddr,
    config_path: PathBuf,
    /// Set once the log was already shown (in a panic message) so Drop does
    /// not print it twice.
    log_shown: bool,
}

impl Gateway {
    /// Starts a gateway with the generated `server:` section plus `body`
    /// (every other top-level section) and waits for `/readyz` to return 200.
    pub fn start(body: &str) -> Gateway {
        Gateway::start_with("", body)
    }

    /// Like [`Gateway::start`], with extra `server:` fields: each line of
    /// `server_extra` is appended to the server section indented by 2 spaces. `{port}` in it
    /// is replaced by the proxy port the harness picked.
    pub fn start_with(server_extra: &str, body: &str) -> Gateway {
        launch(server_extra, body, &[], WaitFor::Ready)
    }

    /// Like [`Gateway::start_with`] with extra environment variables for the
    /// child (tests must not mutate their own process env: they run in
    /// parallel threads). An empty value removes the variable.
    pub fn start_env(server_extra: &str, body: &str, env: &[(&str, &str)]) -> Gateway {
        launch(server_extra, body, env, WaitFor::Ready)
    }

    /// Starts without waiting for readiness (for readiness tests): waits only
    /// until the proxy and admin ports accept TCP.
    pub fn start_unready(server_extra: &str, body: &str) -> Gateway {
        launch(server_extra, body, &[], WaitFor::Listening)
    }

    /// Proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The gateway's private temp dir (config, log, pid file, upgrade socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// Path of the combined stdout+stderr log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// Pid of the process this harness spawned.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Contents of gateway.log so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// `GET path` with `Host: localhost` on the proxy port.
    pub fn get(&self, path: &str) -> Response {
        client::get(self.addr, "localhost", path)
    }

    /// Sends raw bytes to the proxy port (see [`client::send_raw`]).
    pub fn send(&self, raw: &[u8]) -> Response {
        client::send_raw(self.addr, raw)
    }

    /// Body of `GET /metrics` on the admin port; panics unless 200.
    pub fn metrics(&self) -> String {
        let r = client::get(self.admin, "localhost", "/metrics");
        assert_eq!(r.status, 200, "GET /metrics failed: {}", r.text());
        r.text()
    }

    /// Sum of every sample of metric `name` whose labels include all of
    /// `labels`; 0.0 if there is none. Summing lets a test ask for e.g. all
    /// requests of a route regardless of status.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum_metric(&self.metrics(), name, labels)
    }

    /// Poll until metric `name` with `labels` equals `want` (the gateway records metrics after
    /// the response is written, so a client can read them a moment before they change).
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let mut last = f64::NAN;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            last = self.metric(name, labels);
            if last == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("metric {name}{labels:?} stayed at {last}, expected {want}");
    }

    /// Sends a signal to the child (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and has no memory-safety
        // preconditions; the pid is our own (unreaped) child, so it cannot
        // have been recycled for another process.
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            panic!("kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
        }
    }

    /// Polls for exit up to `deadline`; `None` if still running.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("try_wait on gateway failed: {e}"),
            }
            if start.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.log_shown {
            eprintln!(
                "----- gateway log ({}), its end -----\n{}\n----- end of gateway log -----",
                self.log_path().display(),
                log_excerpt(&self.log())
            );
        }
    }
}

/// What a failed test shows of a gateway's log: its last lines other than access lines
/// (warnings and errors say what went wrong), then its last few access lines. Short, so the
/// test's own panic message above it stays in view where only the end of the output is kept.
fn log_excerpt(log: &str) -> String {
    const OTHER: usize = 40;
    const ACCESS: usize = 8;
    let (access, other): (Vec<&str>, Vec<&str>) = log.lines().partition(|l| l.contains("portcullis::access"));
    let tail = |lines: &[&str], n: usize| {
        let skipped = lines.len().saturating_sub(n);
        let mut out = String::new();
        if skipped > 0 {
            out.push_str(&format!("[{skipped} earlier lines not shown]\n"));
        }
        out.push_str(&lines[skipped..].join("\n"));
        out
    };
    format!(
        "{}\n----- access lines -----\n{}",
        tail(&other, OTHER),
        tail(&access, ACCESS)
    )
}

/// Outcome of one launch attempt.
enum Attempt {
    Up(Gateway),
    PortRace,
}

fn launch(server_extra: &str, body: &str, env: &[(&str, &str)], wait: WaitFor) -> Gateway {
    for attempt in 1..=PORT_ATTEMPTS {
        match try_launch(server_extra, body, env, wait, attempt == PORT_ATTEMPTS) {
            Attempt::Up(g) => return g,
            Attempt::PortRace => continue,
        }
    }
    unreachable!("the last attempt panics instead of reporting a port race")
}

fn try_launch(
    server_extra: &str,
    body: &str,
    env: &[(&str, &str)],
    wait: WaitFor,
    last_attempt: bool,
) -> Attempt {
    let dir = tempfile::Builder::new()
        .prefix("portcullis-test-")
        .tempdir()
        .expect("create gateway temp dir");
    let (port, admin_port) = two_free_ports();
    // `{port}` in the extra server fields stands for the proxy port the harness picked (to
    // add listeners next to it).
    let server_extra = server_extra
        .replace("{port}", &port.to_string())
        .replace("{admin_port}", &admin_port.to_string());
    let config = format!(
        "{}\n{body}",
        server_section(dir.path(), port, admin_port, &server_extra)
    );
    let config_path = dir.path().join("portcullis.yaml");
    std::fs::write(&config_path, &config).expect("write gateway config");
    let log = File::create(dir.path().join("gateway.log")).expect("create gateway log");
    let log2 = log.try_clone().expect("clone gateway log handle");

    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    // An empty value removes the variable (e.g. RUST_LOG, to test `server.log_level`).
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {BIN}: {e}"));
    // Wrap immediately so any panic below still kills the child.
    let mut gw = Gateway {
        child,
        dir,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        config_path,
        log_shown: false,
    };

    let start = Instant::now();
    loop {
        let exited = match gw.child.try_wait() {
            Ok(s) => s,
            Err(e) => panic!("try_wait on gateway failed: {e}"),
        };
        let log = gw.log();
        // A port we picked was grabbed by someone else between our probe
        // bind and the gateway's bind: retry with fresh ports.
        if log.contains("Address already in use") && !last_attempt {
            gw.log_shown = true;
            return Attempt::PortRace;
        }
        if let Some(status) = exited {
            gw.log_shown = true;
            panic!(
                "gateway exited ({status}) before becoming ready.\nconfig ({}):\n{config}\nlog:\n{log}",
                gw.config_path.display()
            );
        }
        let up = match wait {
            // The admin listener can come up before the proxy listener: wait for both.
            WaitFor::Ready => {
                probe_ready(gw.admin) && TcpStream::connect_timeout(&gw.addr, Duration::from_secs(1)).is_ok()
            }
            // Both listeners accept TCP (tests of unready gateways call the admin port at once).
            WaitFor::Listening => [gw.addr, gw.admin]
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok()),
        };
        if up {
            return Attempt::Up(gw);
        }
        if start.elapsed() >= START_DEADLINE {
            gw.kill();
            gw.log_shown = true;
            let what = match wait {
                WaitFor::Ready => format!("GET /readyz on {} to return 200", gw.admin),
                WaitFor::Listening => format!("{} to accept connections", gw.addr),
            };
            panic!(
                "timed out after {START_DEADLINE:?} waiting for {what}.\nconfig:\n{config}\nlog:\n{}",
                gw.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if the admin port answers `/readyz` with 200. A response carrying
/// `x-upstream` came from a test upstream that happens to hold the port (port
/// race), not from our gateway, so it does not count.
fn probe_ready(admin: SocketAddr) -> bool {
    let req = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    match client::try_send_raw_timeout(admin, req, Duration::from_secs(2)) {
        Ok(r) => r.status == 200 && r.header("x-upstream").is_none(),
        Err(_) => false,
    }
}

/// The generated `server:` section; a field given in `extra` replaces the generated one.
fn server_section(dir: &Path, port: u16, admin_port: u16, extra: &str) -> String {
    let dir = dir.display();
    let generated = format!(
        "listen: [\"127.0.0.1:{port}\"]\nadmin: \"127.0.0.1:{admin_port}\"\nthreads: 2\npid_file: \"{dir}/portcullis.pid\"\nupgrade_sock: \"{dir}/upgrade.sock\"\ngrace_period: 1s\nshutdown_timeout: 1s\n"
    );
    let key = |line: &str| line.split(':').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let mut s = String::from("server:\n");
    for line in generated
        .lines()
        .filter(|l| !overridden.contains(&key(l)))
        .chain(extra.lines())
    {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Ports handed out by this test process. Pingora listens with `SO_REUSEPORT`, so two
/// gateways given the same port would both bind it and silently split its connections (one
/// test then sees the other's routes).
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// The ports this process hands out: a range just below the kernel's ephemeral range
/// (`ip_local_port_range`), or above it when nothing fits below. The kernel never gives a
/// port there to a `bind(0)` or an outgoing connection, so the upstreams, Redis servers and
/// clients other tests start meanwhile cannot take a port between its probe and the gateway's
/// bind (a probed ephemeral port once went to another test's upstream and this test's
/// requests with it).
fn handed_out_range() -> std::ops::Range<u32> {
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if lo >= 1024 + 8000 {
        lo - 8000..lo
    } else {
        hi + 1..65536
    }
}

/// A loopback port that was free a moment ago, outside the ephemeral range, and that no other
/// gateway of this test process has been given. The start is spread by process id so test
/// binaries that run one after another rarely probe the same ports.
fn unused_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let range = handed_out_range();
    let len = range.end - range.start;
    let start = std::process::id().wrapping_mul(2654435761) % len;
    for i in 0..len {
        let Ok(port) = u16::try_from(range.start + (start + (handed_out.len() as u32) + i) % len) else {
            continue;
        };
        if handed_out.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.push(port);
        return port;
    }
    panic!("no unused port in {range:?}");
}

/// Two distinct free ports, neither handed out before in this process.
pub fn two_free_ports() -> (u16, u16) {
    (unused_port(), unused_port())
}

/// A loopback port outside the ephemeral range that was free a moment ago. Racy by nature;
/// the launcher retries when the gateway reports "Address already in use".
pub fn free_port() -> u16 {
    unused_port()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Result of [`check`]. Holds the temp dir (`_dir`) so `path` stays valid
/// while the test inspects it; the dir is deleted when this is dropped.
#[derive(Debug)]
pub struct CheckOutput {
    /// Exit code; -1 if the process was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The config file, so tests can assert `"<path>:12:5: ..."` messages.
    pub path: PathBuf,
    pub _dir: TempDir,
}

impl CheckOutput {
    /// Asserts that `check` failed and reported every one of `wanted` (substrings of stderr).
    pub fn assert_reports(&self, wanted: &[&str]) {
        assert_eq!(self.code, 1, "check should fail:\n{}", self.stderr);
        for want in wanted {
            assert!(
                self.stderr.contains(want),
                "missing {want:?} in:\n{}",
                self.stderr
            );
        }
    }
}

/// Runs `portcullis check -c <file>` on `yaml` written verbatim (no generated
/// server section) to `<tempdir>/portcullis.yaml`. Panics if it takes longer
/// than 20 s.
pub fn check(yaml: &str) -> CheckOutput {
    let dir = tempfile::Builder::new()
        .prefix("portcullis-check-")
        .tempdir()
        .expect("create check temp dir");
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml).expect("write check config");
    let mut cmd = Command::new(BIN);
    cmd.arg("check")
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to spawn {BIN} check: {e}"));
    // Drain both pipes on threads so a chatty child cannot block on a full
    // pipe while we poll for its exit.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => panic!("try_wait on `portcullis check` failed: {e}"),
        }
        if start.elapsed() >= START_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`portcullis check -c {}` did not finish within {START_DEADLINE:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CheckOutput {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        path,
        _dir: dir,
    }
}

/// A minimal `upstreams:` section with one upstream:
/// `upstreams:\n  <name>:\n    targets: ["127.0.0.1:1", ...]\n`.
pub fn upstream_yaml(name: &str, targets: &[SocketAddr]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!("upstreams:\n  {name}:\n    targets: [{}]\n", list.join(", "))
}

/// Parses Prometheus text exposition and sums the samples of `name` whose
/// label set contains every pair in `want`.
pub fn sum_metric(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((metric, labels, value)) = parse_sample(line) else {
            continue;
        };
        if metric != name {
            continue;
        }
        if want
            .iter()
            .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        {
            total += value;
        }
    }
    total
}

/// Label pairs of one sample, in exposition order.
type Labels = Vec<(String, String)>;

/// Parses `name{k="v",...} value [timestamp]` or `name value [timestamp]`.
fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let mut chars = rest.char_indices().skip(1).peekable();
        let end;
        loop {
            // Skip separators, then read `key="value"` or the closing brace.
            while let Some((_, c)) = chars.peek() {
                if *c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let (i, c) = chars.next()?;
            if c == '}' {
                end = i + 1;
                break;
            }
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut val = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        other => val.push(other),
                    },
                    c => val.push(c),
                }
            }
            labels.push((key.trim().to_string(), val));
        }
        rest = &rest[end..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The SHA-256 hex of an API key, as `portcullis hash-key` prints it for `keys_file`.
pub fn hash_key(key: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run portcullis hash-key");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(key.as_bytes())
        .expect("write key");
    let out = child.wait_with_output().expect("hash-key output");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
