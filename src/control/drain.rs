//! SIGTERM as a rolling deployment needs it: first `/readyz` fails (so the load balancer or
//! Kubernetes stops sending) while the gateway keeps serving for `server.drain_delay`, then
//! Pingora's graceful stop: listeners close, in-flight requests get `grace_period`, the process
//! exits. SIGQUIT (upgrade) is Pingora's. SIGINT stops at once, also during the drain and
//! during a graceful stop's or an upgrade's grace period.
//!
//! SIGINT does not go through Pingora's fast shutdown: that stops the runtimes without first
//! telling the listeners' accept loops to end, and with one runtime per thread (the default,
//! `server.work_stealing: false`) an accept loop whose listener belongs to a runtime already
//! stopped gets an error from every `accept()` at once, never yields, and holds its own
//! runtime's thread forever: the process spun at 100% CPU logging "Accept() failed" and did
//! not exit (2 of 25 runs under CPU load). The fast stop drops in-flight requests either way,
//! so the process flushes its access log and exits here.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::runtime::Runtime;

pub struct DrainingSignals {
    runtime: Arc<Runtime>,
}

impl DrainingSignals {
    pub fn new(runtime: Arc<Runtime>) -> DrainingSignals {
        DrainingSignals { runtime }
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot watch signals; stopping");
            stop_now(1);
        };
        tokio::select! {
            _ = quit.recv() => return stopping_gracefully(ShutdownSignal::GracefulUpgrade, int),
            _ = int.recv() => stop_now(0),
            _ = term.recv() => {}
        }
        let delay = self.runtime.load().settings.drain_delay;
        self.runtime.start_draining();
        if delay.is_zero() {
            return stopping_gracefully(ShutdownSignal::GracefulTerminate, int);
        }
        log::info!("SIGTERM: unready, serving for drain_delay {delay:?} before stopping");
        tokio::select! {
            _ = tokio::time::sleep(delay) => stopping_gracefully(ShutdownSignal::GracefulTerminate, int),
            _ = int.recv() => stop_now(0),
        }
    }
}

/// Hand Pingora a graceful stop (or upgrade), and keep listening for SIGINT through its grace
/// period: Pingora stops reading signals once it has one, and a SIGINT it does not read is
/// swallowed by Tokio's handler, so without this an operator's "stop now" would wait out
/// `grace_period`. The watch runs on Pingora's server runtime, which lives until the process
/// ends.
fn stopping_gracefully(how: ShutdownSignal, mut int: tokio::signal::unix::Signal) -> ShutdownSignal {
    tokio::spawn(async move {
        if int.recv().await.is_some() {
            stop_now(0);
        }
    });
    how
}

/// The fast stop: in-flight requests are cut, queued access-log lines are written (for at
/// most a second), and the process exits with `code`.
fn stop_now(code: i32) -> ! {
    if code == 0 {
        log::info!("SIGINT: stopping now, without Pingora's fast shutdown");
    }
    crate::observe::access_sink::flush_queued(std::time::Duration::from_secs(1));
    std::process::exit(code)
}
