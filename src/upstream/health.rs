//! Active health checks, and the periodic re-resolution of host-name targets.
//!
//! One background task (the [`HealthSupervisor`]) runs the checks of every pool in the
//! *current* snapshot at each pool's interval. Pools are not Pingora background services of
//! their own, so pools created by a live reload get checked too, and removed ones stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora_load_balancing::Backend;

use super::periodic::Periodic;
use super::stats::TargetStats;
use super::transport::Transport;
use super::Pool;
use crate::config::{HealthCheckConfig, HealthProbe};
use crate::observe::metrics;

/// Build Pingora's check for one pool's configuration; `pool` names it in log lines.
pub fn build_check(
    pool: &str,
    cfg: &HealthCheckConfig,
    transport: &Transport,
) -> Box<dyn HealthCheck + Send + Sync + 'static> {
    Box::new(NamedCheck {
        pool: pool.to_string(),
        inner: probe(cfg, transport),
    })
}

/// A check that names its pool and target when Pingora logs a health change: Pingora's own
/// summary is the target's Rust debug structure, with no pool name.
struct NamedCheck {
    pool: String,
    inner: Box<dyn HealthCheck + Send + Sync + 'static>,
}

#[async_trait]
impl HealthCheck for NamedCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        self.inner.check(target).await
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        self.inner.health_status_change(target, healthy).await
    }

    fn backend_summary(&self, target: &Backend) -> String {
        let label = target
            .ext
            .get::<Arc<TargetStats>>()
            .map_or_else(|| target.addr.to_string(), |s| s.label.clone());
        format!("upstream `{}` target {label}", self.pool)
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

fn probe(cfg: &HealthCheckConfig, transport: &Transport) -> Box<dyn HealthCheck + Send + Sync + 'static> {
    match &cfg.probe {
        HealthProbe::Tcp => {
            // With TLS, a probe completes a handshake (and verifies the certificate).
            let mut check = match transport.is_tls() {
                true => TcpHealthCheck::new_tls(transport.sni()),
                false => TcpHealthCheck::new(),
            };
            transport.apply_options(&mut check.peer_template.options);
            check.consecutive_success = cfg.healthy_threshold;
            check.consecutive_failure = cfg.unhealthy_threshold;
            check.peer_template.options.connection_timeout = Some(cfg.timeout);
            check.peer_template.options.total_connection_timeout = Some(cfg.timeout);
            check
        }
        HealthProbe::Http {
            path,
            host,
            expect_status,
        } => {
            let mut check = HttpHealthCheck::new(host, transport.is_tls());
            check.peer_template.sni = transport.sni().to_string();
            transport.apply(&mut check.peer_template);
            check.consecutive_success = cfg.healthy_threshold;
            check.consecutive_failure = cfg.unhealthy_threshold;
            check.peer_template.options.connection_timeout = Some(cfg.timeout);
            check.peer_template.options.read_timeout = Some(cfg.timeout);
            check.peer_template.options.write_timeout = Some(cfg.timeout);
            // The config schema accepts only paths that parse as a URI; `/` is a fallback
            // that cannot be reached.
            check
                .req
                .set_uri(http::Uri::try_from(path.as_str()).unwrap_or_default());
            let expected = expect_status.clone();
            check.validator = Some(Box::new(move |resp| {
                if expected.contains(&resp.status.as_u16()) {
                    Ok(())
                } else {
                    pingora::Error::e_explain(
                        pingora::ErrorType::CustomCode(
                            "unexpected health check status",
                            resp.status.as_u16(),
                        ),
                        "health check",
                    )
                }
            }));
            Box::new(check)
        }
    }
}

/// When a pool is next due for a check, and whether it has completed its first round
/// (readiness waits for that: Pingora starts every target as healthy).
#[derive(Debug)]
pub struct HealthState {
    schedule: Periodic,
    first_round_done: AtomicBool,
}

impl HealthState {
    pub fn new(cfg: Option<&HealthCheckConfig>) -> HealthState {
        HealthState {
            schedule: Periodic::new(cfg.map(|c| c.interval), Instant::now()),
            first_round_done: AtomicBool::new(cfg.is_none()),
        }
    }

    /// True once the first round finished (always true without a health check).
    pub fn ready(&self) -> bool {
        self.first_round_done.load(Ordering::Acquire)
    }

    /// Claim the next round if it is due and none is running.
    fn claim(&self, now: Instant) -> bool {
        self.schedule.claim(now)
    }

    fn finish(&self) {
        self.first_round_done.store(true, Ordering::Release);
        self.schedule.done();
    }
}

/// Publish each target's health as `portcullis_upstream_healthy`.
pub fn publish_health(pool: &Pool) {
    for (label, healthy) in pool.target_health() {
        metrics::get()
            .upstream_healthy
            .with_label_values(&[&pool.name, &label])
            .set(i64::from(healthy));
    }
}

/// Source of the pools to check: the pools of the current runtime snapshot.
pub type PoolSource = Arc<dyn Fn() -> Vec<Arc<Pool>> + Send + Sync>;

pub struct HealthSupervisor {
    pools: PoolSource,
}

impl HealthSupervisor {
    pub fn new(pools: PoolSource) -> HealthSupervisor {
        HealthSupervisor { pools }
    }
}

/// How often the supervisor looks for due pools; intervals are honored to this resolution.
const TICK: Duration = Duration::from_millis(50);

#[async_trait]
impl BackgroundService for HealthSupervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        for pool in (self.pools)() {
            publish_health(&pool);
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let now = Instant::now();
            for pool in (self.pools)() {
                if pool.claim_refresh(now) {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move { pool.refresh_targets().await });
                }
                if pool.health().claim(now) {
                    tokio::spawn(async move {
                        pool.backends().run_health_check(true).await;
                        publish_health(&pool);
                        pool.health().finish();
                    });
                }
            }
        }
    }
}
