//! Real Redis for the shared rate-limit store tests. Every process listens on loopback
//! (127.0.0.1) only, on ports from [`free_port`] (outside the kernel's ephemeral range; a port
//! taken meanwhile is retried with new ones), with persistence off, in its own temp dir, and is
//! SIGKILLed and reaped when its handle is dropped.
//!
//! * [`Redis`]: one server, optionally requiring a password ([`Redis::start_with_password`]) or
//!   also serving TLS ([`Redis::start_tls`]), with ACL users ([`Redis::add_acl_user`]). It can
//!   be killed and restarted on the same ports to simulate an outage.
//! * [`Sentinel`]: a master, one replica and N sentinels; a manual failover and a master crash.
//! * [`Cluster`]: a Redis Cluster made by `redis-cli --cluster create`; key and slot lookups,
//!   a live slot migration (for MOVED/ASK) and a master crash that promotes its replica.
//! * [`command_at`] / [`pipeline_at`]: plain RESP to any loopback port; [`redis_cli`]: the real
//!   `redis-cli` under a deadline.
//!
//! Every wait polls (every [`POLL`]) up to a deadline, then panics saying what did not happen,
//! with the last thing seen and the tail of the logs of the processes involved.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use portcullis::tls::mint::{Issued, Usage};
use tempfile::TempDir;

use super::gateway::free_port;
use super::tls::{tls_connect, Pki, TlsOptions};

/// How long a process gets to answer after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a topology gets to converge (replication link, sentinel discovery, cluster state,
/// a failover). Generous: the test machine is small and busy.
const TOPOLOGY_DEADLINE: Duration = Duration::from_secs(30);
/// The interval between two looks at something being waited for.
const POLL: Duration = Duration::from_millis(25);
const PORT_ATTEMPTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of each log printed with a failure.
const LOG_TAIL_LINES: usize = 60;
/// The names in a TLS server's certificate: the IP (as an IP SAN) and the DNS name.
pub const TLS_SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// How a process is started.
#[derive(Clone, Debug)]
enum Mode {
    Plain,
    /// Also a TLS listener on `aux_port`.
    Tls {
        client_auth: bool,
    },
    /// `--replicaof 127.0.0.1 <of>`.
    Replica {
        of: u16,
    },
    /// Cluster mode, the cluster bus on `aux_port`.
    ClusterNode,
    /// `redis-server sentinel.conf --sentinel`, the config written into its dir.
    Sentinel {
        master_name: String,
        master_port: u16,
        quorum: usize,
    },
}

impl Mode {
    fn describe(&self) -> String {
        match self {
            Mode::Plain => "redis".into(),
            Mode::Tls { client_auth } => format!("redis with TLS (client auth {client_auth})"),
            Mode::Replica { of } => format!("redis replica of {of}"),
            Mode::ClusterNode => "cluster node".into(),
            Mode::Sentinel { .. } => "sentinel".into(),
        }
    }
}

pub struct Redis {
    child: Option<Child>,
    port: u16,
    /// The TLS port ([`Mode::Tls`]) or the cluster bus port ([`Mode::ClusterNode`]).
    aux_port: Option<u16>,
    password: Option<String>,
    mode: Mode,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with_password(None)
    }

    /// A server that requires `AUTH password`.
    pub fn start_with_password(password: Option<&str>) -> Redis {
        Redis::launch(Mode::Plain, password, |_| {})
    }

    /// A server that serves TLS on [`Redis::tls_port`] (`rediss://`) besides plain RESP on
    /// [`Redis::port`] (which [`Redis::command`] uses). Its certificate is issued by `pki`'s CA
    /// for [`TLS_SERVER_NAMES`] (`127.0.0.1` as an IP SAN, and `localhost`), so a client
    /// verifying it against `pki.ca_file` may name either. With `client_auth` it requires a
    /// client certificate issued by the same CA (`pki.client(..)`). The certificate, key and CA
    /// are copied into the server's own dir, so `pki` may go before the server (and restart).
    pub fn start_tls(pki: &Pki, client_auth: bool) -> Redis {
        Redis::launch(Mode::Tls { client_auth }, None, |dir| {
            pki.ca
                .issue(&TLS_SERVER_NAMES, 30, Usage::Server)
                .expect("mint redis server certificate")
                .write(dir, "server", &[])
                .expect("write redis server certificate");
            std::fs::copy(&pki.ca_file, dir.join("ca.pem")).expect("copy CA for redis");
        })
    }

    /// A new process in `mode` in a new temp dir (`setup` fills it first), on fresh ports.
    fn launch(mode: Mode, password: Option<&str>, setup: impl FnOnce(&Path)) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-redis-")
            .tempdir()
            .expect("create redis temp dir");
        setup(dir.path());
        let mut redis = Redis {
            child: None,
            port: 0,
            aux_port: None,
            password: password.map(String::from),
            mode,
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            redis.port = free_port();
            redis.aux_port = match redis.mode {
                Mode::Tls { .. } | Mode::ClusterNode => Some(free_port()),
                _ => None,
            };
            if let Mode::Sentinel { .. } = redis.mode {
                redis.write_sentinel_conf();
            }
            if redis.spawn(attempt == PORT_ATTEMPTS) {
                return redis;
            }
        }
        unreachable!("the last attempt panics instead of reporting a port race")
    }

    fn write_sentinel_conf(&self) {
        let Mode::Sentinel {
            master_name,
            master_port,
            quorum,
        } = &self.mode
        else {
            return;
        };
        let conf = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             daemonize no\n\
             dir {dir}\n\
             logfile {log}\n\
             sentinel resolve-hostnames no\n\
             sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {master_name} 3000\n\
             sentinel failover-timeout {master_name} 5000\n",
            port = self.port,
            dir = self.dir.path().display(),
            log = self.log_path().display(),
        );
        std::fs::write(self.dir.path().join("sentinel.conf"), conf).expect("write sentinel.conf");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Start (again) on this server's ports; `false` when a port was taken meanwhile (and
    /// `must_succeed` is false). Ready means: this very process (its pid) answers `INFO`.
    fn spawn(&mut self, must_succeed: bool) -> bool {
        let log = self.log_path();
        let logged_before = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open redis stderr file");
        let dir = self.dir.path();
        let mut cmd = Command::new("redis-server");
        if let Mode::Sentinel { .. } = self.mode {
            cmd.arg(dir.join("sentinel.conf")).arg("--sentinel");
        } else {
            cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                // A replica's full sync starts at once, not after the default 5 s wait for
                // more replicas.
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(&log);
            if let Some(p) = &self.password {
                cmd.args(["--requirepass", p]);
            }
        }
        match (&self.mode, self.aux_port) {
            (Mode::Tls { client_auth }, Some(tls_port)) => {
                cmd.args(["--tls-port", &tls_port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(dir.join("server.pem"))
                    .arg("--tls-key-file")
                    .arg(dir.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(dir.join("ca.pem"))
                    .args(["--tls-auth-clients", if *client_auth { "yes" } else { "no" }]);
            }
            (Mode::Replica { of }, _) => {
                cmd.args(["--replicaof", "127.0.0.1", &of.to_string()]);
            }
            (Mode::ClusterNode, Some(bus_port)) => {
                cmd.args(["--cluster-enabled", "yes"])
                    .args(["--cluster-config-file", "nodes.conf"])
                    .args(["--cluster-node-timeout", "1000"])
                    .args(["--cluster-port", &bus_port.to_string()]);
            }
            _ => {}
        }
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (scripts/test.sh installs it): {e}"));
        let pid_line = format!("process_id:{}", child.id());
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = read_lossy(&log);
                let fresh = text.get(logged_before..).unwrap_or(&text);
                if fresh.contains("Address already in use") && !must_succeed {
                    return false;
                }
                panic!(
                    "{} on port {} exited ({status}) instead of starting:\n{}",
                    self.mode.describe(),
                    self.port,
                    self.log_tail()
                );
            }
            // Our own process, not whichever server took the port in a race.
            let ours = self
                .try_command(&["INFO", "server"])
                .is_ok_and(|info| info.lines().any(|l| l.trim_end() == pid_line));
            if ours {
                self.child = Some(child);
                return true;
            }
            if started.elapsed() > START_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} on port {} did not answer INFO within {START_DEADLINE:?}:\n{}",
                    self.mode.describe(),
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The plain RESP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (plain).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port of a server from [`Redis::start_tls`].
    pub fn tls_port(&self) -> u16 {
        match (&self.mode, self.aux_port) {
            (Mode::Tls { .. }, Some(port)) => port,
            _ => panic!("{} on port {} serves no TLS", self.mode.describe(), self.port),
        }
    }

    /// `rediss://127.0.0.1:TLSPORT`: the certificate has `127.0.0.1` as an IP SAN (and
    /// `localhost` as a DNS name, so `rediss://localhost:TLSPORT` verifies as well).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port())
    }

    /// The CA that issued a TLS server's certificate (a copy of `pki.ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        let _tls_only = self.tls_port();
        self.dir.path().join("ca.pem")
    }

    /// Whether the process is running (not [`Redis::kill`]ed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no goodbye to connected clients, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same ports (after [`Redis::kill`]), with an empty dataset (a cluster
    /// node keeps its identity: `nodes.conf` is in its dir).
    pub fn restart(&mut self) {
        self.kill();
        // The port is ours unless another test grabbed it in between; that is a test failure.
        self.spawn(true);
    }

    /// Run one command; the reply's first line (`+OK`, `:3`, `$5`...), followed by the bulk
    /// or array body lines joined with `\n`.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} on port {} failed: {e}", self.port))
    }

    fn try_command(&self, args: &[&str]) -> io::Result<String> {
        try_command_at(self.port, self.password.as_deref(), args)
    }

    /// `ACL SETUSER user on >password ~* +@all`: a user that may run everything (for
    /// `redis://user:password@...` URLs and `AUTH user password`).
    pub fn add_acl_user(&self, user: &str, password: &str) {
        let pass = format!(">{password}");
        let reply = self.command(&["ACL", "SETUSER", user, "on", &pass, "~*", "+@all"]);
        assert_eq!(reply, "+OK", "ACL SETUSER {user} on port {}", self.port);
    }

    /// One command over TLS to [`Redis::tls_port`], verifying the server's certificate against
    /// `ca` for the name `127.0.0.1` (hostname checking on, as a client should), presenting
    /// `client` when given. `Err` when the handshake or the exchange fails; note that under
    /// TLS 1.3 a server refuses a missing client certificate only after the handshake, so the
    /// refusal shows up as a failed read.
    pub fn tls_command(&self, ca: &X509, client: Option<&Issued>, args: &[&str]) -> Result<String, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.tls_port()));
        let options = TlsOptions {
            client,
            ..TlsOptions::default()
        };
        let mut conn = tls_connect(addr, "127.0.0.1", ca, &options)?;
        exchange(&mut conn.stream, &[args])
            .map(|mut replies| replies.remove(0).flatten())
            .map_err(|e| format!("RESP over TLS to {addr}: {e}"))
    }

    /// The first word of `ROLE`: `master`, `slave` or `sentinel` (empty when unreachable).
    pub fn role(&self) -> String {
        query(self.port, self.password.as_deref(), &["ROLE"])
            .ok()
            .and_then(|r| r.items().first().map(|k| k.text().to_string()))
            .unwrap_or_default()
    }

    /// The last lines of this process's log (and of its stderr, when it wrote any), headed by
    /// what and where it is.
    pub fn log_tail(&self) -> String {
        let mut text = format!(
            "--- {} on 127.0.0.1:{} ({}) ---\n{}",
            self.mode.describe(),
            self.port,
            if self.is_running() {
                "running"
            } else {
                "not running"
            },
            tail(&read_lossy(&self.log_path()), LOG_TAIL_LINES)
        );
        let stderr = read_lossy(&self.stderr_path());
        if !stderr.trim().is_empty() {
            text.push_str(&format!("--- its stderr ---\n{}", tail(&stderr, LOG_TAIL_LINES)));
        }
        text
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// RESP

/// One RESP2 reply. Nil replies (`$-1`, `*-1`) are [`Reply::Line`]s.
#[derive(Debug, Clone)]
enum Reply {
    /// `+...`, `-...`, `:...`, `$-1`, `*-1`: the whole line.
    Line(String),
    Bulk {
        header: String,
        body: String,
    },
    Array {
        header: String,
        items: Vec<Reply>,
    },
}

impl Reply {
    /// The text form [`Redis::command`] returns.
    fn flatten(&self) -> String {
        match self {
            Reply::Line(l) => l.clone(),
            Reply::Bulk { header, body } => format!("{header}\n{}", body.trim_end()),
            Reply::Array { header, items } => std::iter::once(header.clone())
                .chain(items.iter().map(Reply::flatten))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// A bulk string's body, or a line without its type character.
    fn text(&self) -> &str {
        match self {
            Reply::Line(l) => l.get(1..).unwrap_or(""),
            Reply::Bulk { body, .. } => body,
            Reply::Array { .. } => "",
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Reply::Line(l) if l.starts_with(':') => l[1..].parse().ok(),
            Reply::Bulk { body, .. } => body.parse().ok(),
            _ => None,
        }
    }

    fn items(&self) -> &[Reply] {
        match self {
            Reply::Array { items, .. } => items,
            _ => &[],
        }
    }

    fn is_error(&self) -> bool {
        matches!(self, Reply::Line(l) if l.starts_with('-'))
    }
}

fn read_value(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    let line = line.trim_end().to_string();
    let count = |l: &str| l.get(1..).and_then(|n| n.parse::<i64>().ok()).unwrap_or(-1);
    if line.starts_with('$') && count(&line) >= 0 {
        let mut body = vec![0; count(&line) as usize + 2];
        r.read_exact(&mut body)?;
        body.truncate(body.len() - 2);
        let body = String::from_utf8_lossy(&body).into_owned();
        return Ok(Reply::Bulk { header: line, body });
    }
    if line.starts_with('*') && count(&line) >= 0 {
        let items = (0..count(&line))
            .map(|_| read_value(r))
            .collect::<io::Result<Vec<_>>>()?;
        return Ok(Reply::Array { header: line, items });
    }
    Ok(Reply::Line(line))
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend(format!("*{}\r\n", args.len()).bytes());
    for a in args {
        out.extend(format!("${}\r\n", a.len()).bytes());
        out.extend(a.as_bytes());
        out.extend(b"\r\n");
    }
}

/// Write `commands` pipelined, read one reply each.
fn exchange<S: Read + Write>(stream: &mut S, commands: &[&[&str]]) -> io::Result<Vec<Reply>> {
    let mut out = Vec::new();
    for c in commands {
        encode(&mut out, c);
    }
    stream.write_all(&out)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    commands.iter().map(|_| read_value(&mut reader)).collect()
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// One command on a new connection to 127.0.0.1:`port`, after `AUTH password` when given
/// (whose own reply is not checked: a refused AUTH shows in the command's `-NOAUTH`).
fn query(port: u16, password: Option<&str>, args: &[&str]) -> io::Result<Reply> {
    let mut stream = connect(port)?;
    let mut commands: Vec<&[&str]> = Vec::new();
    let auth;
    if let Some(p) = password {
        auth = ["AUTH", p];
        commands.push(&auth);
    }
    commands.push(args);
    let mut replies = exchange(&mut stream, &commands)?;
    Ok(replies.pop().expect("one reply per command"))
}

/// [`query`] that reports I/O failures and error replies as `Err` text (for polling).
fn ask(port: u16, args: &[&str]) -> Result<Reply, String> {
    match query(port, None, args) {
        Ok(r) if r.is_error() => Err(format!("{args:?} on port {port}: {}", r.flatten())),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("{args:?} on port {port}: {e}")),
    }
}

/// One command to 127.0.0.1:`port` on a new connection, after `AUTH password` when given; the
/// reply in [`Redis::command`]'s text form. Error replies come back as text (`-ERR ...`,
/// `-MOVED 866 127.0.0.1:31000`); I/O failures panic.
pub fn command_at(port: u16, password: Option<&str>, args: &[&str]) -> String {
    try_command_at(port, password, args)
        .unwrap_or_else(|e| panic!("redis command {args:?} on port {port} failed: {e}"))
}

/// [`command_at`] with I/O failures as `Err`.
pub fn try_command_at(port: u16, password: Option<&str>, args: &[&str]) -> io::Result<String> {
    query(port, password, args).map(|r| r.flatten())
}

/// Several commands pipelined on one connection to 127.0.0.1:`port` (so `AUTH user pass`
/// first applies to the rest); every reply in [`Redis::command`]'s text form.
pub fn pipeline_at(port: u16, commands: &[&[&str]]) -> Vec<String> {
    connect(port)
        .and_then(|mut s| exchange(&mut s, commands))
        .unwrap_or_else(|e| panic!("redis pipeline {commands:?} on port {port} failed: {e}"))
        .iter()
        .map(Reply::flatten)
        .collect()
}

/// The first word of `ROLE` at `port` (empty when it cannot be asked).
pub fn role_at(port: u16) -> String {
    ask(port, &["ROLE"])
        .ok()
        .and_then(|r| r.items().first().map(|k| k.text().to_string()))
        .unwrap_or_default()
}

/// `field:value` out of `INFO` / `CLUSTER INFO` text.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::to_string)
    })
}

/// `INFO replication` at a replica says its link to the master at `master` is up.
fn replica_link_up(port: u16, master: u16) -> Result<(), String> {
    let info = ask(port, &["INFO", "replication"])?;
    let info = info.text();
    let link = info_field(info, "master_link_status");
    let of = info_field(info, "master_port");
    if link.as_deref() == Some("up") && of == Some(master.to_string()) {
        Ok(())
    } else {
        Err(format!(
            "replica {port}: master_port {of:?}, master_link_status {link:?}"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting, logs, redis-cli

/// Call `attempt` every [`POLL`] until it succeeds; after `deadline` its last `Err`.
fn poll<T>(deadline: Duration, mut attempt: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let started = Instant::now();
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(why) if started.elapsed() > deadline => return Err(why),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`poll`] for up to [`TOPOLOGY_DEADLINE`], panicking with `what` did not happen, the last
/// reason, and the logs of `involved`.
fn wait_for<'a, T>(
    what: &str,
    involved: impl IntoIterator<Item = &'a Redis>,
    attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    poll(TOPOLOGY_DEADLINE, attempt).unwrap_or_else(|why| {
        panic!(
            "{what}: not within {:.1}s; last seen: {why}\n{}",
            started.elapsed().as_secs_f64(),
            logs(involved)
        )
    })
}

fn logs<'a>(nodes: impl IntoIterator<Item = &'a Redis>) -> String {
    nodes
        .into_iter()
        .map(Redis::log_tail)
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

/// What [`redis_cli`] printed.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit status 0.
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Run `redis-cli args` (no stdin), killing it and panicking after 30 s.
pub fn redis_cli(args: &[&str]) -> CliOutput {
    let out = tempfile::Builder::new()
        .prefix("portcullis-redis-cli-")
        .tempdir()
        .expect("redis-cli temp dir");
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let file = |p: &Path| std::fs::File::create(p).expect("redis-cli output file");
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(file(&stdout_path))
        .stderr(file(&stderr_path))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-cli (scripts/test.sh installs it): {e}"));
    let status = poll(TOPOLOGY_DEADLINE, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err("still running".to_string()),
        Err(e) => Err(e.to_string()),
    });
    let status = status.unwrap_or_else(|why| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "redis-cli {args:?} did not finish within {TOPOLOGY_DEADLINE:?} ({why}); it said:\n{}\n{}",
            read_lossy(&stdout_path),
            read_lossy(&stderr_path)
        )
    });
    CliOutput {
        success: status.success(),
        stdout: read_lossy(&stdout_path),
        stderr: read_lossy(&stderr_path),
    }
}

// ---------------------------------------------------------------------------------------------
// Sentinel

/// A monitored master, one replica and N sentinels, all on loopback. The two data nodes swap
/// roles on a failover; which one is the master is whatever the sentinels say.
pub struct Sentinel {
    name: String,
    /// The data nodes: started as master and as its replica.
    nodes: Vec<Redis>,
    sentinels: Vec<Redis>,
}

impl Sentinel {
    /// Start the master, its replica (`--replicaof`), then `sentinels` sentinels monitoring
    /// `master_name` with quorum `sentinels/2 + 1` (down after 3 s: a master stalled for a
    /// second by a full resync on a loaded machine is not failed over; failover timeout 5 s);
    /// return once every sentinel reports the master, knows the replica and the other
    /// sentinels, and the replica's link to the master is up.
    pub fn start(master_name: &str, sentinels: usize) -> Sentinel {
        assert!(sentinels >= 1, "a Sentinel setup needs at least one sentinel");
        let master = Redis::launch(Mode::Plain, None, |_| {});
        let replica = Redis::launch(Mode::Replica { of: master.port }, None, |_| {});
        let mut setup = Sentinel {
            name: master_name.to_string(),
            nodes: vec![master, replica],
            sentinels: Vec::new(),
        };
        for _ in 0..sentinels {
            let mode = Mode::Sentinel {
                master_name: master_name.to_string(),
                master_port: setup.nodes[0].port,
                quorum: sentinels / 2 + 1,
            };
            setup.sentinels.push(Redis::launch(mode, None, |_| {}));
        }
        let master = setup.nodes[0].port;
        wait_for(
            "sentinels agree on the master, its replica and each other",
            setup.all(),
            || setup.settled(master),
        );
        setup
    }

    fn all(&self) -> impl Iterator<Item = &Redis> {
        self.nodes.iter().chain(&self.sentinels)
    }

    /// The sentinels as `127.0.0.1:PORT`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// The ports of both data nodes (master and replica, in start order).
    pub fn data_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The master's port as the first sentinel reports it.
    pub fn master_port(&self) -> u16 {
        self.master_port_at(self.sentinels[0].port)
            .unwrap_or_else(|e| panic!("ask the sentinel for the master: {e}"))
    }

    /// The data node that is not [`Sentinel::master_port`].
    pub fn replica_port(&self) -> u16 {
        let master = self.master_port();
        self.other_node(master)
    }

    fn other_node(&self, port: u16) -> u16 {
        self.nodes
            .iter()
            .map(|n| n.port)
            .find(|p| *p != port)
            .expect("two data nodes")
    }

    fn master_port_at(&self, sentinel: u16) -> Result<u16, String> {
        let reply = ask(sentinel, &["SENTINEL", "get-master-addr-by-name", &self.name])?;
        reply
            .items()
            .get(1)
            .and_then(Reply::int)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("sentinel {sentinel} answered {}", reply.flatten()))
    }

    /// A command to the current master (plain RESP).
    pub fn command_master(&self, args: &[&str]) -> String {
        command_at(self.master_port(), None, args)
    }

    /// `SENTINEL FAILOVER` at the first sentinel (retried while it answers NOGOODSLAVE or
    /// INPROG); returns the new master's port once every sentinel reports it and it says
    /// `ROLE` master (about 1 s here). The old master keeps running, still a master, until
    /// the sentinels turn it into a replica: they wait 8 s after its first `INFO` and look
    /// every 10 s, so 10-20 s later ([`Sentinel::wait_settled`] waits for that).
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let new = self.other_node(old);
        let first = self.sentinels[0].port;
        wait_for("SENTINEL FAILOVER accepted", self.all(), || {
            let reply = ask(first, &["SENTINEL", "FAILOVER", &self.name]);
            match reply {
                Ok(r) if r.text() == "OK" => Ok(()),
                Ok(r) => Err(r.flatten()),
                Err(e) => Err(e),
            }
        });
        wait_for(&format!("failover from {old} to {new}"), self.all(), || {
            self.promoted(new)
        });
        new
    }

    /// SIGKILL the current master and wait until the sentinels have promoted the replica
    /// (every sentinel reports it, it says `ROLE` master); its port.
    pub fn kill_master(&mut self) -> u16 {
        let old = self.master_port();
        let new = self.other_node(old);
        self.node_mut(old).kill();
        wait_for(
            &format!("sentinels promote {new} after master {old} was killed"),
            self.all(),
            || self.promoted(new),
        );
        new
    }

    /// Every sentinel reports `new` as the master and `new` says it is one.
    fn promoted(&self, new: u16) -> Result<(), String> {
        for s in &self.sentinels {
            let reported = self.master_port_at(s.port)?;
            if reported != new {
                return Err(format!("sentinel {} still reports master {reported}", s.port));
            }
        }
        match role_at(new) {
            r if r == "master" => Ok(()),
            r => Err(format!("{new} has ROLE {r:?}")),
        }
    }

    /// Start a killed data node again, as a replica of the current master, and wait until it
    /// replicates and the sentinels list it as a healthy replica.
    pub fn restart_node(&mut self, port: u16) {
        let master = self.master_port();
        assert_ne!(port, master, "restart_node: {port} is the running master");
        let node = self.node_mut(port);
        node.mode = Mode::Replica { of: master };
        node.restart();
        self.wait_settled();
    }

    /// Wait until the topology is at rest around the current master: every sentinel reports
    /// it, lists every running data node other than it as a replica that is neither down nor
    /// disconnected, and knows the other sentinels; each such data node replicates from the
    /// master with its link up (its own `INFO replication`; the sentinels' copy of that is
    /// refreshed only every 10 s).
    pub fn wait_settled(&self) {
        // The master is asked again on every poll: should the sentinels fail over meanwhile,
        // the setup settles around the new one.
        wait_for("sentinel setup settles around its master", self.all(), || {
            let master = self.master_port_at(self.sentinels[0].port)?;
            self.settled(master)
        });
    }

    fn settled(&self, master: u16) -> Result<(), String> {
        if role_at(master) != "master" {
            return Err(format!("{master} is not (yet) a master"));
        }
        let replicas: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.is_running() && n.port != master)
            .map(|n| n.port)
            .collect();
        for r in &replicas {
            replica_link_up(*r, master)?;
        }
        for s in &self.sentinels {
            let reported = self.master_port_at(s.port)?;
            if reported != master {
                return Err(format!("sentinel {} reports master {reported}", s.port));
            }
            let listed = ask(s.port, &["SENTINEL", "replicas", &self.name])?;
            for r in &replicas {
                let healthy = listed.items().iter().any(|entry| {
                    let f = fields(entry);
                    f.get("port").map(String::as_str) == Some(&r.to_string())
                        && f.get("flags").map(String::as_str) == Some("slave")
                });
                if !healthy {
                    return Err(format!(
                        "sentinel {} does not list {r} as a healthy replica: {}",
                        s.port,
                        listed.flatten().replace('\n', " ")
                    ));
                }
            }
            let others = ask(s.port, &["SENTINEL", "sentinels", &self.name])?;
            if others.items().len() + 1 != self.sentinels.len() {
                return Err(format!(
                    "sentinel {} knows {} other sentinels, not {}",
                    s.port,
                    others.items().len(),
                    self.sentinels.len() - 1
                ));
            }
        }
        Ok(())
    }

    /// The data node on `port`.
    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Redis {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// All logs (data nodes and sentinels), for a test's own failure message.
    pub fn log_tails(&self) -> String {
        logs(self.all())
    }
}

/// A flat field/value array (`SENTINEL replicas` entries) as a map.
fn fields(entry: &Reply) -> std::collections::HashMap<String, String> {
    entry
        .items()
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => Some((k.text().to_string(), v.text().to_string())),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// Slots `start..=end` served by the master on `master`, replicated by `replicas` (ports, sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub master: u16,
    pub replicas: Vec<u16>,
}

/// A Redis Cluster on loopback, made by `redis-cli --cluster create`. Nodes run with
/// `cluster-node-timeout 1000` and the default `cluster-require-full-coverage yes` (as in
/// production: with a master and all its replicas gone the whole cluster answers CLUSTERDOWN).
pub struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    /// `masters * (1 + replicas_per_master)` nodes, each with its own cluster bus port from
    /// [`free_port`], joined into a cluster; returns once every node says `cluster_state:ok`,
    /// knows all nodes and sees the same slot map with every master's replicas, and every
    /// replica's link is up. `redis-cli --cluster create` needs `masters >= 3`.
    pub fn start(masters: usize, replicas_per_master: usize) -> Cluster {
        assert!(
            masters >= 3,
            "redis-cli --cluster create needs at least 3 masters, not {masters}"
        );
        let count = masters * (1 + replicas_per_master);
        let nodes = (0..count)
            .map(|_| Redis::launch(Mode::ClusterNode, None, |_| {}))
            .collect();
        let cluster = Cluster { nodes };
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(cluster.nodes());
        args.extend([
            "--cluster-replicas".into(),
            replicas_per_master.to_string(),
            "--cluster-yes".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = redis_cli(&args);
        if !out.success || !out.stdout.contains("[OK] All 16384 slots covered") {
            panic!(
                "redis-cli {args:?} failed:\n{}\n{}\n{}",
                out.stdout,
                out.stderr,
                cluster.log_tails()
            );
        }
        wait_for("the new cluster is ok everywhere", &cluster.nodes, || {
            let map = cluster.healthy()?;
            match map.iter().find(|r| r.replicas.len() != replicas_per_master) {
                Some(r) => Err(format!(
                    "not every master has {replicas_per_master} replicas yet: {r:?}"
                )),
                None => Ok(()),
            }
        });
        cluster
    }

    /// The running nodes as `127.0.0.1:PORT`.
    pub fn nodes(&self) -> Vec<String> {
        self.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// The ports of the running nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.port)
            .collect()
    }

    /// The masters serving slots as `127.0.0.1:PORT`.
    pub fn masters(&self) -> Vec<String> {
        self.master_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The ports of the masters serving slots (each once, in slot order).
    pub fn master_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::new();
        for r in self.slot_map() {
            if !ports.contains(&r.master) {
                ports.push(r.master);
            }
        }
        ports
    }

    /// The slot map as the first running node sees it.
    pub fn slot_map(&self) -> Vec<SlotRange> {
        let port = self.any_port();
        slot_map_at(port).unwrap_or_else(|e| panic!("CLUSTER SLOTS: {e}"))
    }

    /// The replicas (not failing, as `CLUSTER NODES` lists them) of the master on `master`.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        self.slot_map()
            .into_iter()
            .find(|r| r.master == master)
            .map(|r| r.replicas)
            .unwrap_or_default()
    }

    fn any_port(&self) -> u16 {
        self.ports().first().copied().expect("no cluster node is running")
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.any_port();
        ask(port, &["CLUSTER", "KEYSLOT", key])
            .ok()
            .and_then(|r| r.int())
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key} on port {port}"))
    }

    /// The port of the master serving `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> u16 {
        owner_in(&self.slot_map(), slot).unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// The port of the master serving `key`'s slot.
    pub fn node_for_key(&self, key: &str) -> u16 {
        self.owner_of_slot(self.slot_of(key))
    }

    /// One command to the node on `port` (no redirects followed: `-MOVED ...` comes back).
    pub fn command(&self, port: u16, args: &[&str]) -> String {
        command_at(port, None, args)
    }

    /// SIGKILL the master serving `slot` and wait until one of its replicas has taken the
    /// slot over (every running node's slot map says so, it says `ROLE` master) and the cluster
    /// is ok again everywhere. Returns the killed master's port.
    pub fn kill_master_of_slot(&mut self, slot: u16) -> u16 {
        let master = self.owner_of_slot(slot);
        let replicas = self.replicas_of(master);
        assert!(
            !replicas.is_empty(),
            "the master {master} of slot {slot} has no replica to promote"
        );
        self.node_mut(master).kill();
        wait_for(
            &format!("a replica of killed master {master} ({replicas:?}) takes slot {slot} over"),
            &self.nodes,
            || {
                let map = self.healthy()?;
                let owner = owner_in(&map, slot).ok_or("slot unserved")?;
                if !replicas.contains(&owner) {
                    return Err(format!("slot {slot} served by {owner}"));
                }
                Ok(())
            },
        );
        master
    }

    /// Move `slot` and its keys to the master on `to` while the cluster serves:
    /// [`Cluster::begin_move_slot`], [`Cluster::migrate_slot_keys`],
    /// [`Cluster::finish_move_slot`]. Afterwards the old owner answers `-MOVED`.
    pub fn move_slot(&self, slot: u16, to: u16) {
        self.begin_move_slot(slot, to);
        self.migrate_slot_keys(slot, to);
        self.finish_move_slot(slot, to);
    }

    /// `CLUSTER SETSLOT slot IMPORTING` on `to`, `MIGRATING` on the owner. From here until
    /// [`Cluster::finish_move_slot`] the owner answers `-ASK slot 127.0.0.1:to` for keys of
    /// the slot it does not hold (new ones included).
    pub fn begin_move_slot(&self, slot: u16, to: u16) {
        let from = self.owner_of_slot(slot);
        assert_ne!(from, to, "slot {slot} is already served by {to}");
        assert!(
            self.master_ports().contains(&to),
            "{to} is not a master serving slots"
        );
        let (from_id, to_id) = (node_id(from), node_id(to));
        let s = slot.to_string();
        let set = |port: u16, args: &[&str]| {
            let reply = command_at(port, None, args);
            assert_eq!(reply, "+OK", "{args:?} on {port}");
        };
        set(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
        set(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    }

    /// `MIGRATE` the slot's keys from its owner to `to`, 100 at a time, until none is left.
    pub fn migrate_slot_keys(&self, slot: u16, to: u16) {
        let from = self.owner_of_slot(slot);
        let (s, to_port) = (slot.to_string(), to.to_string());
        wait_for(
            &format!("keys of slot {slot} migrate from {from} to {to}"),
            &self.nodes,
            || {
                let keys = ask(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])?;
                let keys: Vec<&str> = keys.items().iter().map(Reply::text).collect();
                if keys.is_empty() {
                    return Ok(());
                }
                let mut args = vec!["MIGRATE", "127.0.0.1", to_port.as_str(), "", "0", "5000", "KEYS"];
                args.extend(&keys);
                let reply = ask(from, &args)?;
                Err(format!(
                    "{} keys moved ({}), looking for more",
                    keys.len(),
                    reply.flatten()
                ))
            },
        );
    }

    /// `CLUSTER SETSLOT slot NODE <to>` on `to`, the old owner and the other masters; waits
    /// until every running node's slot map gives the slot to `to`.
    pub fn finish_move_slot(&self, slot: u16, to: u16) {
        let from = self.owner_of_slot(slot);
        let to_id = node_id(to);
        let s = slot.to_string();
        let mut order = vec![to, from];
        order.extend(self.master_ports().into_iter().filter(|p| *p != to && *p != from));
        for port in order {
            let reply = command_at(port, None, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            assert_eq!(reply, "+OK", "CLUSTER SETSLOT {slot} NODE {to_id} on {port}");
        }
        wait_for(
            &format!("every node sees slot {slot} on {to}"),
            &self.nodes,
            || {
                let map = self.healthy()?;
                match owner_in(&map, slot) {
                    Some(owner) if owner == to => Ok(()),
                    owner => Err(format!("slot {slot} served by {owner:?}")),
                }
            },
        );
    }

    /// Start a killed node again on its ports (same node id) and wait until the cluster is ok
    /// everywhere with it replicating (a killed master comes back as a replica of the node
    /// that took its slots over).
    pub fn restart_node(&mut self, port: u16) {
        self.node_mut(port).restart();
        wait_for(
            &format!("cluster ok again with restarted node {port} replicating"),
            &self.nodes,
            || {
                let map = self.healthy()?;
                if role_at(port) != "slave" {
                    return Err(format!("restarted {port} has ROLE {:?}", role_at(port)));
                }
                if !map.iter().any(|r| r.replicas.contains(&port)) {
                    return Err(format!("no master lists {port} as its replica yet"));
                }
                Ok(())
            },
        );
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &Redis {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Redis {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// All nodes' logs, for a test's own failure message.
    pub fn log_tails(&self) -> String {
        logs(&self.nodes)
    }

    /// Every running node: `cluster_state:ok`, all slots assigned, all nodes known, the same
    /// slot map (masters) as the others; every running replica's link is up. The slot map.
    fn healthy(&self) -> Result<Vec<SlotRange>, String> {
        let mut first: Option<(u16, Vec<SlotRange>)> = None;
        for port in self.ports() {
            let info = ask(port, &["CLUSTER", "INFO"])?;
            let info = info.text();
            for (field, want) in [
                ("cluster_state", "ok".to_string()),
                ("cluster_slots_assigned", "16384".to_string()),
                ("cluster_known_nodes", self.nodes.len().to_string()),
            ] {
                let got = info_field(info, field);
                if got.as_deref() != Some(want.as_str()) {
                    return Err(format!("node {port}: {field} {got:?}, want {want}"));
                }
            }
            let map = slot_map_at(port)?;
            match &first {
                None => first = Some((port, map)),
                Some((p, m)) => {
                    let masters = |m: &[SlotRange]| -> Vec<(u16, u16, u16)> {
                        m.iter().map(|r| (r.start, r.end, r.master)).collect()
                    };
                    if masters(m) != masters(&map) {
                        return Err(format!(
                            "nodes {p} and {port} disagree on the slot map: {:?} vs {:?}",
                            masters(m),
                            masters(&map)
                        ));
                    }
                }
            }
            if role_at(port) == "slave" {
                let info = ask(port, &["INFO", "replication"])?;
                let link = info_field(info.text(), "master_link_status");
                if link.as_deref() != Some("up") {
                    return Err(format!("replica {port}: master_link_status {link:?}"));
                }
            }
        }
        let (_, map) = first.ok_or("no node is running")?;
        Ok(map)
    }
}

/// The slot map at `port`: the ranges and their masters from `CLUSTER SLOTS`, sorted by first
/// slot; the replicas from `CLUSTER NODES` (those not failing), because `CLUSTER SLOTS` leaves a
/// replica out until its replication offset is non-zero (the first write, or the master's
/// replication ping every 10 s).
fn slot_map_at(port: u16) -> Result<Vec<SlotRange>, String> {
    let reply = ask(port, &["CLUSTER", "SLOTS"])?;
    let nodes = ask(port, &["CLUSTER", "NODES"])?;
    // (id, port, flags, master id) per line.
    let lines: Vec<(&str, u16, &str, &str)> = nodes
        .text()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f.get(1)?.split(['@', ',']).next()?;
            let p = addr.rsplit(':').next()?.parse().ok()?;
            Some((*f.first()?, p, *f.get(2)?, *f.get(3)?))
        })
        .collect();
    let replicas_of = |master: u16| -> Vec<u16> {
        let Some((id, ..)) = lines.iter().find(|l| l.1 == master) else {
            return Vec::new();
        };
        let mut ports: Vec<u16> = lines
            .iter()
            .filter(|l| l.3 == *id && l.2.split(',').all(|f| f != "fail" && f != "fail?"))
            .map(|l| l.1)
            .collect();
        ports.sort_unstable();
        ports
    };
    let node_port = |n: &Reply| {
        n.items()
            .get(1)
            .and_then(Reply::int)
            .and_then(|p| u16::try_from(p).ok())
    };
    let mut map = Vec::new();
    for r in reply.items() {
        let items = r.items();
        let parsed = (|| {
            let master = node_port(items.get(2)?)?;
            Some(SlotRange {
                start: u16::try_from(items.first()?.int()?).ok()?,
                end: u16::try_from(items.get(1)?.int()?).ok()?,
                master,
                replicas: replicas_of(master),
            })
        })();
        map.push(parsed.ok_or_else(|| format!("CLUSTER SLOTS on {port}: odd entry {}", r.flatten()))?);
    }
    map.sort_by_key(|r| r.start);
    Ok(map)
}

fn owner_in(map: &[SlotRange], slot: u16) -> Option<u16> {
    map.iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .map(|r| r.master)
}

/// `CLUSTER MYID` at `port`.
fn node_id(port: u16) -> String {
    ask(port, &["CLUSTER", "MYID"])
        .map(|r| r.text().to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}
