//! A real `redis-server` for the shared rate-limit store tests: started on an ephemeral
//! loopback port with persistence off, in its own temp dir, killed when dropped. It can be
//! killed and restarted on the same port to simulate an outage.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::gateway::free_port;

const START_DEADLINE: Duration = Duration::from_secs(15);
const PORT_ATTEMPTS: usize = 5;

pub struct Redis {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with_password(None)
    }

    /// A server that requires `AUTH password`.
    pub fn start_with_password(password: Option<&str>) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-redis-")
            .tempdir()
            .expect("create redis temp dir");
        let mut redis = Redis {
            child: None,
            port: 0,
            password: password.map(String::from),
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            redis.port = free_port();
            if redis.spawn(attempt == PORT_ATTEMPTS) {
                return redis;
            }
        }
        unreachable!("the last attempt panics instead of reporting a port race")
    }

    /// Start (again) on this server's port; `false` when the port was taken meanwhile.
    fn spawn(&mut self, must_succeed: bool) -> bool {
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (scripts/test.sh installs it): {e}"));
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Address already in use") && !must_succeed {
                    return false;
                }
                panic!("redis-server exited ({status}):\n{text}");
            }
            if self.try_command(&["PING"]).is_ok_and(|r| r == "+PONG") {
                self.child = Some(child);
                return true;
            }
            if started.elapsed() > START_DEADLINE {
                let _ = child.kill();
                panic!("redis-server on port {} did not answer PING in time", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye to connected clients, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port (after [`Redis::kill`]), with an empty dataset.
    pub fn restart(&mut self) {
        self.kill();
        // The port is ours unless another test grabbed it in between; that is a test failure.
        self.spawn(true);
    }

    /// Run one command; the reply's first line (`+OK`, `:3`, `$5`...), followed by the bulk
    /// or array body lines joined with `\n`.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = Vec::new();
        let mut push = |args: &[&str]| {
            out.extend(format!("*{}\r\n", args.len()).bytes());
            for a in args {
                out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
            }
        };
        if let Some(p) = &self.password {
            push(&["AUTH", p]);
        }
        push(args);
        stream.write_all(&out)?;
        let mut reader = BufReader::new(stream);
        if self.password.is_some() {
            read_reply(&mut reader)?;
        }
        read_reply(&mut reader)
    }
}

/// One reply, flattened to text (arrays of scalars only).
fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    let count = |l: &str| l[1..].parse::<i64>().unwrap_or(-1);
    if line.starts_with('$') && count(&line) >= 0 {
        let mut body = vec![0; count(&line) as usize + 2];
        r.read_exact(&mut body)?;
        return Ok(format!("{line}\n{}", String::from_utf8_lossy(&body).trim_end()));
    }
    if line.starts_with('*') && count(&line) >= 0 {
        let mut parts = vec![line.clone()];
        for _ in 0..count(&line) {
            parts.push(read_reply(r)?);
        }
        return Ok(parts.join("\n"));
    }
    Ok(line)
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
