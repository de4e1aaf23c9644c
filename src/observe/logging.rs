//! Process logging: `env_logger` behind a thin filter that fixes two things Pingora says in
//! ways that mislead an operator.
//!
//! - While a new process waits for the old one to hand over its listeners, Pingora logs
//!   `No incoming socket transfer, sleep 1s and try again` at ERROR on every normal upgrade.
//!   It is the expected wait: logged at INFO here.
//! - A client that goes away before finishing its request head makes Pingora log ERROR
//!   (`Fail to proxy: Downstream ConnectionClosed … while reading request headers`): that is
//!   the client's doing, and a flood of such clients would flood the log. DEBUG here.
//! - At DEBUG and TRACE, Pingora prints whole request heads (`Authorization`, API keys,
//!   queries). `server.log_level: debug` raises Portcullis's own logs only; Pingora's stay at
//!   INFO unless `RUST_LOG` asks for them explicitly.

use log::{Level, Log, Metadata, Record};

/// Pingora's crates, capped at INFO by `server.log_level`.
const PINGORA_CRATES: &[&str] = &[
    "pingora_core",
    "pingora_proxy",
    "pingora_load_balancing",
    "pingora_pool",
];

/// `RUST_LOG` wins over `server.log_level`, which defaults to `info`.
pub fn init(level: Option<&str>) {
    let level = level.unwrap_or("info");
    let mut default = level.to_string();
    if matches!(level, "debug" | "trace") {
        for krate in PINGORA_CRATES {
            default.push_str(&format!(",{krate}=info"));
        }
    }
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default)).build();
    let max = inner.filter().max(log::LevelFilter::Info);
    if log::set_boxed_logger(Box::new(Relevel { inner })).is_ok() {
        log::set_max_level(max);
    }
}

struct Relevel {
    inner: env_logger::Logger,
}

/// The level a record should really have, when Pingora's is wrong.
fn relevel(record: &Record<'_>) -> Option<Level> {
    if record.level() != Level::Error || !record.target().starts_with("pingora_") {
        return None;
    }
    let text = record.args().to_string();
    if record.target().starts_with("pingora_core::server::transfer_fd")
        && text.starts_with("No incoming socket transfer")
    {
        return Some(Level::Info);
    }
    let client_left = record.target().starts_with("pingora_proxy")
        && text.starts_with("Fail to proxy: Downstream")
        && text.contains("while reading request headers");
    client_left.then_some(Level::Debug)
}

impl Log for Relevel {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        match relevel(record) {
            Some(level) => {
                let record = Record::builder()
                    .args(*record.args())
                    .level(level)
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build();
                if self.inner.enabled(record.metadata()) {
                    self.inner.log(&record);
                }
            }
            None => self.inner.log(record),
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level_of(target: &str, text: &str) -> Option<Level> {
        relevel(
            &Record::builder()
                .level(Level::Error)
                .target(target)
                .args(format_args!("{text}"))
                .build(),
        )
    }

    #[test]
    fn benign_pingora_errors_are_releveled() {
        assert_eq!(
            level_of(
                "pingora_core::server::transfer_fd",
                "No incoming socket transfer, sleep 1s and try again"
            ),
            Some(Level::Info)
        );
        assert_eq!(
            level_of(
                "pingora_proxy",
                "Fail to proxy: Downstream ConnectionClosed context: while reading request headers, bytes already read: 25"
            ),
            Some(Level::Debug)
        );
        assert_eq!(
            level_of("pingora_proxy", "Fail to proxy: Upstream ConnectRefused"),
            None
        );
        assert_eq!(level_of("portcullis", "No incoming socket transfer"), None);
    }
}
