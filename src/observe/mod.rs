//! Observability: Prometheus metrics, the access log, and the admin listener.

pub mod access_log;
pub mod access_sink;
pub mod admin;
pub mod admin_views;
pub mod logging;
pub mod metrics;
pub mod trace;
pub mod trace_export;
