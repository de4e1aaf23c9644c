//! Integration-test harness for Portcullis.
//!
//! Every integration test file pulls this in with `mod support;` and uses a
//! subset of it, hence `allow(dead_code)` (unused helpers) and
//! `allow(unused_imports)` (unused glob re-exports in that test binary). The pieces:
//!
//! * [`upstream`]: a scriptable HTTP/1.1 origin server (records requests,
//!   configurable status/delay, health-check counting, stop/restart).
//! * [`client`]: a byte-exact blocking HTTP/1.1 client, so tests can send
//!   malformed or ambiguous requests no high-level library would produce.
//! * [`redis`]: real redis-server processes on loopback: one server (plain, TLS, ACL users; killed
//!   and restarted), a Sentinel set (failover, master crash) and a Cluster (slot moves, master crash).
//! * [`gateway`]: launches the real `portcullis` binary with an isolated temp
//!   dir, ports, pid file and upgrade socket, and waits for readiness.
//!
//! Ground rules that every helper follows, because tests run in parallel
//! threads on a small, noisy machine: loopback only, ephemeral ports, every
//! network read has a timeout, every wait has a deadline and panics with a
//! clear message instead of hanging.
#![allow(dead_code, unused_imports)]

pub mod attacks;
pub mod client;
pub mod gateway;
mod headers;
pub mod load;
pub mod redis;
pub mod tls;
pub mod upstream;

pub use attacks::*;
pub use client::*;
pub use gateway::*;
pub use load::*;
pub use redis::*;
pub use tls::*;
pub use upstream::*;

/// A server written in Python (tests/grpc/echo.py, tests/ws/ws.py) that prints the port it
/// listens on as its first line; killed when dropped.
pub struct PythonServer {
    child: std::process::Child,
    pub port: u16,
}

impl PythonServer {
    /// Run `script serve`; its stderr is dropped (servers log the connections tests cut).
    pub fn start(script: &str) -> PythonServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(python())
            .args([script, "serve"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {script} (python3 with the test tools, see scripts/test.sh): {e}")
            });
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            panic!("{script} did not print its port (it said {line:?}); is its Python package installed?");
        };
        PythonServer { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with the test tools (grpcio): the virtualenv `scripts/test.sh` makes, else
/// `python3` from the path.
pub fn python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-venv/bin/python3");
    if std::path::Path::new(venv).exists() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}
