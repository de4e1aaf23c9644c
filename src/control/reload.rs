//! `portcullis reload`: have the running gateway re-read its configuration file.
//!
//! The file was validated by the caller, so a typo is reported and nothing is sent. The
//! running process reloads the file it was started with; asking it to reload another one is
//! refused rather than silently reloading the start-up file. Settings a live reload cannot
//! apply are reported with exit status [`super::EXIT_NOT_APPLIED`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use super::pid;
use super::record::{ProcessRecord, RECORD_PATIENCE};
use super::{not_applied_message, CONFIG_HEADER, EXIT_NOT_APPLIED, NOT_APPLIED_HEADER};
use crate::config::Config;

/// What a reload achieved.
struct Reloaded {
    message: String,
    not_applied: Vec<String>,
}

/// `path` is the absolute path of the validated `config`.
pub fn reload(path: &str, config: &Config) -> ExitCode {
    let outcome = match &config.server.process.admin {
        Some(admin) => reload_via_admin(admin, path, config.server.process.admin_token().as_deref()),
        None => reload_via_signal(path, config),
    };
    match outcome {
        Ok(r) if r.not_applied.is_empty() => {
            println!("portcullis: {}", r.message);
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("portcullis: {}", r.message);
            let names: Vec<&str> = r.not_applied.iter().map(String::as_str).collect();
            eprintln!("portcullis: {}", not_applied_message(&names));
            ExitCode::from(EXIT_NOT_APPLIED)
        }
        Err(e) => {
            eprintln!("portcullis: reload failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `POST /reload` on the admin listener; it answers once the new snapshot is live.
fn reload_via_admin(admin: &str, path: &str, token: Option<&str>) -> Result<Reloaded, String> {
    // The path travels in a request header.
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(format!(
            "the configuration path {path:?} holds control characters"
        ));
    }
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
    let authorization = token
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /reload HTTP/1.1\r\nHost: {addr}\r\n{CONFIG_HEADER}: {path}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status != 200 {
        return Err(format!("the gateway refused: {}", body.trim_end()));
    }
    let not_applied = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(NOT_APPLIED_HEADER))
        .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let message = body.lines().next().unwrap_or("reloaded").trim().to_string();
    Ok(Reloaded { message, not_applied })
}

/// SIGHUP to the pid in `server.pid_file`, after checking that the process runs on this file.
fn reload_via_signal(path: &str, config: &Config) -> Result<Reloaded, String> {
    let pid_file = &config.server.process.pid_file;
    let pid = pid::read_pid(pid_file)?;
    pid::verify(pid, pid_file)?;
    // Which file a SIGHUP reloads is only known from the process record: without one, a reload
    // of another file would report success and reload the start-up file instead.
    let record = pid::effective_uid(pid)
        .and_then(|owner| ProcessRecord::wait_for(pid, owner, pid_file, RECORD_PATIENCE))
        .ok_or_else(|| {
            format!(
                "pid {pid} has no process record at {} (a gateway writes it when it starts), so \
                 which file it reloads is unknown; pid {pid} was not signalled. Send it SIGHUP \
                 yourself to reload the file it started with, or set `server.admin` and reload \
                 through it",
                super::record::path_for(pid_file).display()
            )
        })?;
    if record.config != path {
        return Err(wrong_file(&record.config, path));
    }
    pid::signal(pid, pid_file, libc::SIGHUP)?;
    let not_applied = record
        .settings
        .changes(&config.server.process)
        .into_iter()
        .map(String::from)
        .collect();
    Ok(Reloaded {
        message: format!("sent SIGHUP to {pid}"),
        not_applied,
    })
}

/// Why a reload of another file than the running one is refused.
pub fn wrong_file(running: &str, asked: &str) -> String {
    format!(
        "the running gateway reloads {running}, not {asked}; edit that file, or switch files \
         with `portcullis upgrade -c {asked}`"
    )
}
