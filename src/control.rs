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

/// Zero-downtime upgrade (new binary or listener changes), safe against Pingora's hazard that
/// an old process shuts down even if the hand-over fails:
///
/// 1. the caller validated and compiled the new configuration;
/// 2. start the new process with `--upgrade --daemon`; it binds `upgrade_sock` and waits;
/// 3. only once that socket exists (so the new process got that far) send SIGQUIT to the old
///    one, which hands over its listeners and drains within its grace period;
/// 4. the new process exits its foreground part with status 0 once it holds the listeners
///    and has daemonized; then its pid appears in the pid file.
///
/// If the new process dies before step 3, the old one is never signalled and keeps serving.
pub fn upgrade(path: &str, config: &Config) -> ExitCode {
    match run_upgrade(path, config) {
        Ok(message) => {
            println!("portcullis: {message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: upgrade failed: {e}");
            ExitCode::FAILURE
        }
    }
}

const UPGRADE_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

fn run_upgrade(path: &str, config: &Config) -> Result<String, String> {
    let server = &config.server;
    let old_pid = read_pid(&server.pid_file)?;
    if !is_running(old_pid) {
        return Err(format!(
            "no running gateway: pid {old_pid} from {} is gone",
            server.pid_file
        ));
    }
    let socket = std::path::Path::new(&server.upgrade_sock);
    // A leftover socket file would look like the new process being ready.
    let _ = std::fs::remove_file(socket);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the portcullis binary: {e}"))?;
    let mut child = std::process::Command::new(&exe)
        .args(["run", "--upgrade", "--daemon", "-c", path])
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;

    // Step 2 -> 3: wait for the new process to wait for us.
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(socket);
            return Err(format!(
                "the new process exited early ({status}); pid {old_pid} was not signalled and keeps serving"
            ));
        }
        if socket.exists() {
            break;
        }
        if started.elapsed() > UPGRADE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the new process did not open {} in time; pid {old_pid} keeps serving",
                server.upgrade_sock
            ));
        }
        std::thread::sleep(POLL);
    }

    // Step 3: hand over.
    // SAFETY: kill(2) on the pid read from our pid file; no memory is shared.
    if unsafe { libc::kill(old_pid, libc::SIGQUIT) } != 0 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "cannot signal pid {old_pid}: {}",
            std::io::Error::last_os_error()
        ));
    }

    // Step 4: the new process holds the listeners once its foreground part exits with 0.
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if started.elapsed() > 2 * UPGRADE_DEADLINE {
            let _ = child.kill();
            return Err("the new process did not finish taking over the listeners".into());
        }
        std::thread::sleep(POLL);
    };
    if !status.success() {
        return Err(format!(
            "the new process failed after the hand-over ({status}); check server.error_log. \
             pid {old_pid} is draining and will exit"
        ));
    }
    let new_pid = loop {
        match read_pid(&server.pid_file) {
            Ok(pid) if pid != old_pid && is_running(pid) => break pid,
            _ if started.elapsed() > 2 * UPGRADE_DEADLINE => {
                return Err(format!("{} never named the new process", server.pid_file))
            }
            _ => std::thread::sleep(POLL),
        }
    };
    Ok(format!(
        "upgraded: pid {new_pid} serves; pid {old_pid} drains and exits"
    ))
}

/// Whether `pid` is a live (not zombie) process.
pub fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
