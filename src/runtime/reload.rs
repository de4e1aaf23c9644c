//! Live reload: re-read the configuration file, validate, compile and swap the snapshot,
//! without a new process. Triggered by SIGHUP, `portcullis reload`, or `POST /reload` on the
//! admin listener.
//!
//! A broken file changes nothing: the old snapshot keeps serving and every problem is logged.
//! Settings that belong to the process (listeners, threads, admin address, pid file, upgrade
//! socket, grace periods, log level) need a graceful upgrade; a reload that changes them
//! applies everything else and says so in the log.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Runtime, Snapshot};
use crate::config::{self, ProcessSettings};
use crate::observe::metrics;

pub struct Reloader {
    path: String,
    runtime: Arc<Runtime>,
    /// The process-level settings this process runs with.
    started_with: ProcessSettings,
    /// One reload at a time.
    busy: Mutex<()>,
    /// How the last reload went (for `GET /config`).
    last: Mutex<Option<LastReload>>,
}

/// When the last reload ran and how it ended.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: std::time::SystemTime,
    pub ok: bool,
    /// The summary, or every problem (one per line).
    pub message: String,
}

/// What a successful reload loaded.
#[derive(Debug)]
pub struct Reloaded {
    pub routes: usize,
    pub upstreams: usize,
    /// Process-level settings that changed and wait for a graceful upgrade.
    pub needs_upgrade: Vec<&'static str>,
}

impl Reloader {
    pub fn new(path: &str, runtime: Arc<Runtime>, started_with: ProcessSettings) -> Reloader {
        Reloader {
            path: path.to_string(),
            runtime,
            started_with,
            busy: Mutex::new(()),
            last: Mutex::new(None),
        }
    }

    /// How the last reload went, if one ran.
    pub fn last(&self) -> Option<LastReload> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The configuration file this process runs on (an absolute path).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Reload now; `Err` carries every problem, one per line.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = self.load_and_swap();
        let result = if outcome.is_ok() { "success" } else { "failure" };
        let last = LastReload {
            at: std::time::SystemTime::now(),
            ok: outcome.is_ok(),
            message: match &outcome {
                Ok(r) => format!("reloaded: {} routes, {} upstreams", r.routes, r.upstreams),
                Err(problems) => problems.clone(),
            },
        };
        *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(last);
        metrics::get().config_reloads.with_label_values(&[result]).inc();
        match &outcome {
            Ok(r) => {
                log::info!(
                    "configuration reloaded from {}: {} routes, {} upstreams",
                    self.path,
                    r.routes,
                    r.upstreams
                );
                if !r.needs_upgrade.is_empty() {
                    log::warn!(
                        "changed server settings take effect only after a graceful upgrade (systemctl reload): {}",
                        r.needs_upgrade.join(", ")
                    );
                }
            }
            Err(problems) => {
                for line in problems.lines() {
                    log::error!("reload rejected: {line}");
                }
                log::error!(
                    "reload of {} rejected; the previous configuration stays in effect",
                    self.path
                );
            }
        }
        outcome
    }

    fn load_and_swap(&self) -> Result<Reloaded, String> {
        let config = config::load_file(&self.path).map_err(|p| p.to_string())?;
        let current = self.runtime.load();
        let next = Snapshot::compile_reusing(&config, Some(&current))?;
        let gone = vanished_targets(&current, &next);
        let gone_upstreams: Vec<String> = current
            .pools
            .iter()
            .map(|p| p.name.clone())
            .filter(|name| !next.pools.iter().any(|p| &p.name == name))
            .collect();
        self.runtime.swap(next);
        // Series of targets and upstreams the configuration no longer has.
        let m = metrics::get();
        for (upstream, target) in gone {
            metrics::forget_target(&upstream, &target);
        }
        for upstream in gone_upstreams {
            let _ = m.upstream_inflight.remove_label_values(&[&upstream]);
            let _ = m.upstream_queued.remove_label_values(&[&upstream]);
            let _ = m.upstream_shed.remove_label_values(&[&upstream]);
            let _ = m.upstream_max_requests.remove_label_values(&[&upstream]);
            let _ = m.upstream_circuit_open.remove_label_values(&[&upstream]);
            let _ = m.upstream_response_seconds.remove_label_values(&[&upstream]);
            for direction in ["sent", "received"] {
                let _ = m.upstream_bytes.remove_label_values(&[&upstream, direction]);
            }
            let _ = m
                .upstream_retry_budget_exhausted
                .remove_label_values(&[&upstream]);
            let statuses = (500..=599u16).map(crate::upstream::retry::Failure::Status);
            let failures = [
                crate::upstream::retry::Failure::Connect,
                crate::upstream::retry::Failure::Reset,
                crate::upstream::retry::Failure::Timeout,
            ];
            for failure in failures.into_iter().chain(statuses) {
                let _ = m
                    .upstream_retries
                    .remove_label_values(&[&upstream, &failure.label()]);
            }
        }
        Ok(Reloaded {
            routes: config.routes.len(),
            upstreams: config.upstreams.len(),
            needs_upgrade: self.started_with.changes(&config.server.process),
        })
    }
}

/// `(upstream, target)` health series of `old` that `new` no longer has.
fn vanished_targets(old: &Snapshot, new: &Snapshot) -> Vec<(String, String)> {
    let series = |s: &Snapshot| -> Vec<(String, String)> {
        s.pools
            .iter()
            .flat_map(|p| {
                p.target_health()
                    .into_iter()
                    .map(|(target, _)| (p.name.clone(), target))
            })
            .collect()
    };
    let keep = series(new);
    series(old).into_iter().filter(|s| !keep.contains(s)).collect()
}

/// Reloads on SIGHUP.
pub struct HangupListener {
    reloader: Arc<Reloader>,
}

impl HangupListener {
    pub fn new(reloader: Arc<Reloader>) -> HangupListener {
        HangupListener { reloader }
    }
}

#[async_trait]
impl BackgroundService for HangupListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP; use `portcullis reload` or POST /reload instead: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    log::info!("SIGHUP received, reloading configuration");
                    let reloader = Arc::clone(&self.reloader);
                    // File reading and name resolution block; keep them off the async workers.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                }
            }
        }
    }
}
