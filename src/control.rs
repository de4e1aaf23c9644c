//! Operator commands that act on a running gateway: `reload` (and the graceful upgrade).
//! They talk to the process named by the same configuration file: its admin listener, or
//! its pid file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;

/// Ask the running gateway to reload its configuration. The file was validated by the caller,
/// so a typo is reported here and nothing is sent.
pub fn reload(config: &Config) -> ExitCode {
    let outcome = match &config.server.admin {
        Some(admin) => reload_via_admin(admin),
        None => {
            signal_pid_file(&config.server.pid_file, libc::SIGHUP).map(|pid| format!("sent SIGHUP to {pid}"))
        }
    };
    match outcome {
        Ok(message) => {
            println!("portcullis: {message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: reload failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `POST /reload` on the admin listener; it answers once the new snapshot is live.
fn reload_via_admin(admin: &str) -> Result<String, String> {
    let mut addr: SocketAddr = admin
        .parse()
        .map_err(|e| format!("admin address `{admin}`: {e}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the admin listener at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let request =
        format!("POST /reload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    if ok {
        Ok(body.trim().to_string())
    } else {
        Err(format!(
            "the gateway rejected the configuration:\n{}",
            body.trim_end()
        ))
    }
}

/// Send `signal` to the process whose pid is in `pid_file`.
pub fn signal_pid_file(pid_file: &str, signal: libc::c_int) -> Result<i32, String> {
    let pid = read_pid(pid_file)?;
    // SAFETY: kill(2) with a pid read from our own pid file; no memory is shared.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(format!(
            "cannot signal pid {pid} from {pid_file}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(pid)
}

pub fn read_pid(pid_file: &str) -> Result<i32, String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("cannot read pid file {pid_file}: {e}"))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("pid file {pid_file} does not hold a process id"))
}

/// Placeholder until the graceful upgrade sequence lands.
pub fn upgrade(_path: &str, _config: &Config) -> ExitCode {
    eprintln!("portcullis: upgrade is not implemented yet");
    ExitCode::FAILURE
}
