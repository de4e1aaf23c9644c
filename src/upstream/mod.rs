//! Upstream pools: target selection over Pingora's `Backends` (membership, active health) and
//! selection methods, health checks, and the
//! per-target statistics that least-connections and least-time selection read.

pub mod attempt;
pub mod client;
pub mod concurrency;
pub mod discovery;
pub mod dns;
pub mod health;
pub mod outlier;
pub mod periodic;
pub mod pool;
pub mod retry;
pub mod selection;
pub mod stats;
pub mod transport;
pub mod url_call;

pub use pool::Pool;
pub use stats::InflightGuard;
