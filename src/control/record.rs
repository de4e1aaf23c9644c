//! The process record: what a running gateway really uses, written next to its pid file as
//! `<pid_file>.json`.
//!
//! The operator commands read the *new* configuration file, but a running process keeps the
//! process-level settings it started with (listeners, pid file, upgrade socket…). Acting on
//! the file alone went wrong: after a change of `server.upgrade_sock`, `portcullis upgrade`
//! waited on the new socket while the running process sent its listeners to its own, and both
//! processes ended. The record tells the commands what the running process uses: the socket
//! it hands over through, the file it reloads, the settings a reload cannot change.

use std::path::PathBuf;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::ProcessSettings;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRecord {
    pub pid: i32,
    /// The absolute path of the configuration file the process reloads.
    pub config: String,
    pub settings: ProcessSettings,
}

/// How long a process that has just started may take to write its record.
pub const RECORD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the record of the process named by `pid_file` lives.
pub fn path_for(pid_file: &str) -> PathBuf {
    PathBuf::from(format!("{pid_file}.json"))
}

impl ProcessRecord {
    /// The record of process `pid` (whose effective user is `owner`), if the file next to
    /// `pid_file` describes that process and that user wrote it: a regular file, not a link,
    /// owned by `owner` and writable by nobody else. (A record planted in a shared directory
    /// would otherwise choose the socket `upgrade` removes and listens on.)
    pub fn read_for(pid: i32, owner: u32, pid_file: &str) -> Option<ProcessRecord> {
        use std::io::Read;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path_for(pid_file))
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.uid() != owner || meta.mode() & 0o022 != 0 {
            return None;
        }
        let mut text = String::new();
        file.take(64 * 1024).read_to_string(&mut text).ok()?;
        serde_json::from_str::<ProcessRecord>(&text)
            .ok()
            .filter(|r| r.pid == pid)
    }

    /// [`ProcessRecord::read_for`], waiting up to `patience` for the record to appear. A
    /// gateway writes its record as soon as its services start, a moment after its pid file
    /// and its listeners: a command run right after a start (or an upgrade) would otherwise
    /// find none and act on the edited file's settings — for `upgrade`, a hand-over through a
    /// socket nobody listens on, which stops the service.
    pub fn wait_for(
        pid: i32,
        owner: u32,
        pid_file: &str,
        patience: std::time::Duration,
    ) -> Option<ProcessRecord> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let record = ProcessRecord::read_for(pid, owner, pid_file);
            if record.is_some() || std::time::Instant::now() >= deadline {
                return record;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Write atomically (a reader never sees half a record), through a new file of our own
    /// (never one someone prepared at a predictable name).
    fn write(&self) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = path_for(&self.settings.pid_file);
        let tmp = PathBuf::from(format!(
            "{}.{}.{:x}",
            path.display(),
            self.pid,
            rand::random::<u64>()
        ));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        drop(file);
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// Writes this process's record once it runs (after daemonizing, so the pid is final). It is
/// never removed: removing it at exit could race with the process that took over writing its
/// own, and a record whose pid is not the pid file's is ignored anyway.
pub struct RecordKeeper {
    config: String,
    settings: ProcessSettings,
}

impl RecordKeeper {
    pub fn new(config: &str, settings: ProcessSettings) -> RecordKeeper {
        RecordKeeper {
            config: config.to_string(),
            settings,
        }
    }
}

#[async_trait]
impl BackgroundService for RecordKeeper {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let record = ProcessRecord {
            pid: std::process::id() as i32,
            config: self.config.clone(),
            settings: self.settings.clone(),
        };
        if let Err(e) = record.write() {
            log::warn!(
                "cannot write the process record {}: {e}; `portcullis upgrade` and `reload` will \
                 assume the running process uses the settings of the configuration file",
                path_for(&record.settings.pid_file).display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn settings(pid_file: &str) -> ProcessSettings {
        ProcessSettings {
            listen: vec![crate::config::Listener::plain("127.0.0.1:1")],
            threads: 1,
            work_stealing: false,
            admin: None,
            admin_token_env: None,
            admin_metrics_without_token: false,
            admin_hosts: Vec::new(),
            pid_file: pid_file.into(),
            upgrade_sock: "/run/x.sock".into(),
            error_log: None,
            grace_period: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            log_level: None,
            cache: Default::default(),
        }
    }

    #[test]
    fn only_a_record_its_owner_alone_could_write_is_believed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("p.pid").display().to_string();
        // SAFETY: geteuid(2) has no preconditions.
        let me = unsafe { libc::geteuid() };
        let record = ProcessRecord {
            pid: 42,
            config: "/etc/portcullis/portcullis.yaml".into(),
            settings: settings(&pid_file),
        };
        record.write().expect("write");
        assert_eq!(ProcessRecord::read_for(42, me, &pid_file), Some(record.clone()));
        assert_eq!(ProcessRecord::read_for(43, me, &pid_file), None, "another pid");
        assert_eq!(
            ProcessRecord::read_for(42, me + 1, &pid_file),
            None,
            "another owner"
        );
        let path = path_for(&pid_file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(
            ProcessRecord::read_for(42, me, &pid_file),
            None,
            "writable by others"
        );
        std::fs::remove_file(&path).expect("remove");
        let elsewhere = dir.path().join("planted.json");
        std::fs::write(&elsewhere, serde_json::to_string(&record).expect("json")).expect("plant");
        std::os::unix::fs::symlink(&elsewhere, &path).expect("symlink");
        assert_eq!(
            ProcessRecord::read_for(42, me, &pid_file),
            None,
            "a link is not followed"
        );
    }
}
