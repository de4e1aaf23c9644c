//! SIGTERM as a rolling deployment needs it: first `/readyz` fails (so the load balancer or
//! Kubernetes stops sending) while the gateway keeps serving for `server.drain_delay`, then
//! Pingora's graceful stop: listeners close, in-flight requests get `grace_period`, the process
//! exits. SIGQUIT (upgrade) and SIGINT (fast stop) are unchanged; a SIGINT during the drain
//! still stops at once.

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
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = term.recv() => {}
        }
        let delay = self.runtime.load().settings.drain_delay;
        self.runtime.start_draining();
        if delay.is_zero() {
            return ShutdownSignal::GracefulTerminate;
        }
        log::info!("SIGTERM: unready, serving for drain_delay {delay:?} before stopping");
        tokio::select! {
            _ = tokio::time::sleep(delay) => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
