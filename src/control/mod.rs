//! Operator commands that act on a running gateway: `reload` (live) and `upgrade` (a new
//! process takes over the listeners). They find the running process through the pid file of
//! the configuration they are given, and learn what it really uses from its process record.

pub mod drain;
mod pid;
pub mod record;
mod reload;
pub mod route;
mod upgrade;

pub use pid::{is_running, read_pid};
pub use reload::{reload, wrong_file};
pub use upgrade::upgrade;

/// Exit status of `portcullis reload` when the file was applied except for process-level
/// settings that need `portcullis upgrade` (distinct from success and from a refused file).
pub const EXIT_NOT_APPLIED: u8 = 3;

/// The header a reload request names the file in; the gateway refuses to reload another file
/// than the one it runs on.
pub const CONFIG_HEADER: &str = "x-portcullis-config";

/// The header of a reload answer listing the settings that wait for an upgrade.
pub const NOT_APPLIED_HEADER: &str = "x-portcullis-not-applied";

/// The sentence every "not applied" report uses.
pub fn not_applied_message(settings: &[&str]) -> String {
    format!(
        "not applied (they take effect with `portcullis upgrade`): {}",
        settings.join(", ")
    )
}
