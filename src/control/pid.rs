//! Finding the running gateway from its pid file, and making sure a pid names a Portcullis
//! process this user may signal before anything is sent to it: a stale pid file (the pid
//! reused by another program) or one planted by another user must never direct a signal.

use std::path::Path;

/// The pid in `pid_file`.
pub fn read_pid(pid_file: &str) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "cannot read pid file {pid_file}: {e} (is the gateway running with this server.pid_file? \
             The running gateway is found through it, so a changed pid_file needs a restart)"
        )
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("pid file {pid_file} does not hold a process id"))
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

/// `Ok` when `pid` (read from `pid_file`) is a running Portcullis process owned by this user
/// (root may signal any Portcullis process).
pub fn verify(pid: i32, pid_file: &str) -> Result<(), String> {
    if !is_running(pid) {
        return Err(format!("no running gateway: pid {pid} from {pid_file} is gone"));
    }
    let comm = |p: &str| {
        std::fs::read_to_string(Path::new("/proc").join(p).join("comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default()
    };
    let theirs = comm(&pid.to_string());
    if theirs != "portcullis" && theirs != comm("self") {
        return Err(format!(
            "pid {pid} from {pid_file} is `{theirs}`, not a portcullis process; \
             refusing to signal it (a stale pid file?)"
        ));
    }
    // SAFETY: geteuid(2) has no preconditions.
    let me = unsafe { libc::geteuid() };
    match effective_uid(pid) {
        Some(owner) if owner == me || me == 0 => Ok(()),
        Some(owner) => Err(format!(
            "pid {pid} from {pid_file} belongs to user id {owner}, not to you ({me}); refusing to signal it"
        )),
        None => Err(format!("cannot read the owner of pid {pid}")),
    }
}

/// The effective user id of `pid`, from `/proc/PID/status` (`Uid: real effective ...`).
pub fn effective_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Send `signal` to `pid` after [`verify`].
pub fn signal(pid: i32, pid_file: &str, signal: libc::c_int) -> Result<(), String> {
    verify(pid, pid_file)?;
    // SAFETY: kill(2) takes plain integers; the pid was just verified to be ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(format!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_processes_that_are_not_portcullis() {
        // pid 1 is init (or the container's entry point), never this test binary.
        let e = verify(1, "x.pid").unwrap_err();
        assert!(
            e.contains("not a portcullis process") || e.contains("gone"),
            "{e}"
        );
        let own = std::process::id() as i32;
        // The test binary is not called portcullis either, but its comm equals ours.
        assert!(verify(own, "x.pid").is_ok());
        assert!(verify(i32::MAX, "x.pid").unwrap_err().contains("gone"));
    }
}
