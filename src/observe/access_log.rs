//! One access-log line per request, through `log` (target `portcullis::access`), as
//! space-separated `key=value` pairs. Values are the canonical path and validated header
//! values, so a client cannot inject line breaks into the log.

use std::fmt::Write;
use std::time::Duration;

pub struct AccessEntry<'a> {
    pub request_id: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    /// The resolved API version, empty on unversioned routes.
    pub version: &'a str,
    /// The authenticated consumer, `-` when none.
    pub consumer: &'a str,
    pub target: &'a str,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    /// Attempts made again after a failed one (see `upstream::retry`).
    pub retries: usize,
    /// Aggregated routes: `part:status:ms` per part (`part:reason:ms` when it failed).
    pub parts: Option<&'a str>,
}

pub const TARGET: &str = "portcullis::access";

pub fn write(entry: &AccessEntry<'_>) {
    if !log::log_enabled!(target: TARGET, log::Level::Info) {
        return;
    }
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "id={} client={} method={} path={} route={} version={} consumer={} target={} status={} bytes={} duration_ms={:.3} retries={}",
        entry.request_id,
        entry.client,
        entry.method,
        sanitize(entry.path),
        entry.route,
        if entry.version.is_empty() { "-" } else { entry.version },
        sanitize(entry.consumer),
        entry.target,
        entry.status,
        entry.bytes,
        entry.duration.as_secs_f64() * 1000.0,
        entry.retries
    );
    if let Some(parts) = entry.parts {
        let _ = write!(line, " parts={parts}");
    }
    log::info!(target: TARGET, "{line}");
}

/// Paths that failed normalization are logged raw; keep them printable and on one line.
fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(
            s.chars()
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect(),
        )
    }
}
