//! What every cuttle daemon shares: reading its TOML config file, starting logging, and
//! turning SIGTERM/SIGINT into one cancellation token.
//!
//! Layering is defaults < config file < `CUTTLE_*` environment < flags. The file is read
//! here; environment and flags are both handled by clap (each flag declares its `env`),
//! and a flag or variable that was given overrides the file's value. Nothing here writes
//! the process environment.

pub mod config;
pub mod lab;
pub mod shutdown;
pub mod telemetry;
