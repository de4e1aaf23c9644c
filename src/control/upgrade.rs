//! `portcullis upgrade`: a zero-downtime hand-over to a new process (new binary, listeners or
//! other process-level settings), safe against Pingora's hazard that an old process shuts down
//! even if the hand-over fails. **The old process is never stopped unless the new one can hold
//! the listeners:**
//!
//! 1. the caller validated and compiled the new configuration;
//! 2. preflight: the directories of the new pid file, upgrade socket and error log exist and
//!    are writable, and new listener addresses can be bound — what would otherwise make the
//!    new process fail *after* the old one handed over;
//! 3. start the new process with `--upgrade --daemon`, receiving the listeners through the
//!    socket the *running* process sends to (from its process record: a changed
//!    `upgrade_sock` applies from the next upgrade on). Without a record (it is written a
//!    moment after the process starts; the command waits for it) the upgrade is refused;
//! 4. only once that socket exists as a socket (the new process got that far) send SIGQUIT to the old
//!    process, which hands over its listeners and drains within its grace period;
//! 5. the new process's foreground part exits with 0 once it holds the listeners and has
//!    daemonized; then its pid appears in the pid file.
//!
//! If the new process dies before step 4, the old one is never signalled and keeps serving.

use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::pid;
use super::record::{ProcessRecord, RECORD_PATIENCE};
use crate::config::{Config, ProcessSettings};

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
    let server = &config.server.process;
    let old_pid = pid::read_pid(&server.pid_file)?;
    pid::verify(old_pid, &server.pid_file)?;
    let owner =
        pid::effective_uid(old_pid).ok_or_else(|| format!("cannot read the owner of pid {old_pid}"))?;
    // The socket the running process sends its listeners to on SIGQUIT is only known from its
    // record: a guess that differs from it makes the old process give up handing over and
    // exit, with nothing left listening.
    let running = ProcessRecord::wait_for(old_pid, owner, &server.pid_file, RECORD_PATIENCE)
        .map(|r| r.settings)
        .ok_or_else(|| {
            format!(
                "pid {old_pid} has no process record at {} (a gateway writes it when it starts): \
                 the socket it hands its listeners over through is unknown, and a wrong guess \
                 would stop the service. Restart the gateway once so that it writes one; pid \
                 {old_pid} was not signalled and keeps serving",
                super::record::path_for(&server.pid_file).display()
            )
        })?;
    let handover = running.upgrade_sock.clone();
    preflight(server, &running, &handover, old_pid)?;

    let socket = Path::new(&handover);
    // A leftover socket file would look like the new process being ready.
    let _ = std::fs::remove_file(socket);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the portcullis binary: {e}"))?;
    let mut command = std::process::Command::new(&exe);
    command.args(["run", "--upgrade", "--daemon", "-c", path]);
    if handover != server.upgrade_sock {
        command.args(["--upgrade-sock", &handover]);
    }
    let mut child = command
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;

    // Step 3 -> 4: wait for the new process to wait for us.
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(socket);
            return Err(format!(
                "the new process exited early ({status}); pid {old_pid} was not signalled and keeps serving"
            ));
        }
        if is_socket(socket) {
            break;
        }
        if started.elapsed() > UPGRADE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the new process did not open {handover} in time; pid {old_pid} keeps serving"
            ));
        }
        std::thread::sleep(POLL);
    }

    // Step 4: hand over.
    if let Err(e) = pid::signal(old_pid, &server.pid_file, libc::SIGQUIT) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }

    // Step 5: the new process holds the listeners once its foreground part exits with 0.
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
        match pid::read_pid(&server.pid_file) {
            Ok(pid) if pid != old_pid && pid::is_running(pid) => break pid,
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

/// What would make the new process fail after the old one handed over, checked before
/// anything is started. `running` is what the old process uses (its record).
fn preflight(
    new: &ProcessSettings,
    running: &ProcessSettings,
    handover: &str,
    old_pid: i32,
) -> Result<(), String> {
    let keeps_serving = format!("pid {old_pid} keeps serving");
    let mut files = vec![
        ("server.pid_file", new.pid_file.as_str()),
        ("server.upgrade_sock", new.upgrade_sock.as_str()),
        ("the running process's upgrade socket", handover),
    ];
    if let Some(log) = &new.error_log {
        files.push(("server.error_log", log));
    }
    for (what, file) in files {
        let dir = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !writable_dir(dir) {
            return Err(format!(
                "{what} {file}: directory {} does not exist or is not writable; {keeps_serving}",
                dir.display()
            ));
        }
    }
    // Addresses the running process does not hold are bound by the new one: try them now.
    let new_admin = new.admin.iter().filter(|a| running.admin.as_ref() != Some(*a));
    let held = |addr: &String| running.listen.iter().any(|l| &l.addr == addr);
    for addr in new
        .listen
        .iter()
        .map(|l| &l.addr)
        .filter(|a| !held(a))
        .chain(new_admin)
    {
        if let Err(e) = TcpListener::bind(addr.as_str()) {
            return Err(format!("cannot listen on {addr}: {e}; {keeps_serving}"));
        }
    }
    Ok(())
}

/// A Unix socket (not merely something at that path: a directory or file left there would
/// otherwise look like the new process waiting, and the old one would be told to hand over).
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn writable_dir(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a NUL-terminated path we own.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
}
