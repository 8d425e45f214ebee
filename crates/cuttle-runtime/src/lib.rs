//! What every cuttle daemon shares: reading its TOML config file, starting logging (to
//! stderr or journald), telling systemd it is ready and alive, and turning SIGTERM/SIGINT
//! into one cancellation token.
//!
//! Layering is defaults < config file < `CUTTLE_*` environment < flags. The file is read
//! here; environment and flags are both handled by clap (each flag declares its `env`),
//! and a flag or variable that was given overrides the file's value. Nothing here writes
//! the process environment.

pub mod config;
pub mod lab;
pub mod notify;
pub mod shutdown;
pub mod telemetry;

/// This host's name, for the records an operator reads (and the supervisor a dispatch
/// names).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
