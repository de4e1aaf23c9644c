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

/// Where the record of the process named by `pid_file` lives.
pub fn path_for(pid_file: &str) -> PathBuf {
    PathBuf::from(format!("{pid_file}.json"))
}

impl ProcessRecord {
    /// The record of process `pid`, if the file next to `pid_file` describes that process.
    pub fn read_for(pid: i32, pid_file: &str) -> Option<ProcessRecord> {
        let text = std::fs::read_to_string(path_for(pid_file)).ok()?;
        serde_json::from_str::<ProcessRecord>(&text)
            .ok()
            .filter(|r| r.pid == pid)
    }

    /// Write atomically (a reader never sees half a record).
    fn write(&self) -> std::io::Result<()> {
        let path = path_for(&self.settings.pid_file);
        let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), self.pid));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
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
