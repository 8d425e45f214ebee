//! One logging setup for every daemon: the filter comes from `CUTTLE_LOG` (default
//! `info`); the lines go to stderr as human-readable text or one JSON object per line, or,
//! when systemd connected stderr to the journal, to journald natively, with each level as
//! the entry's `PRIORITY` and each field as a journal field (`job_id` becomes `JOB_ID`).
//!
//! It never stops a daemon: a bad filter, a bad `CUTTLE_LOG_TARGET` or an unreachable
//! journal is logged as a warning and the nearest working setup is used instead.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::str::FromStr;

use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Compact human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format; use text or json")),
        }
    }
}

/// Where log entries go. `CUTTLE_LOG_TARGET` forces one; otherwise [`choose_target`]
/// picks journald exactly when stderr is the journal stream systemd set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// Text or JSON lines on stderr (`log_format` applies).
    Stderr,
    /// journald's native protocol: structured fields, `log_format` does not apply.
    Journald,
}

impl FromStr for LogTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<LogTarget, String> {
        match text {
            "stderr" => Ok(LogTarget::Stderr),
            "journald" => Ok(LogTarget::Journald),
            other => Err(format!(
                "{other:?} is not a log target; use journald or stderr"
            )),
        }
    }
}

/// The variable that forces a [`LogTarget`] (`journald` or `stderr`).
pub const LOG_TARGET_VAR: &str = "CUTTLE_LOG_TARGET";

/// Decides where logs go. `forced` is `CUTTLE_LOG_TARGET`, `journal_stream` is
/// `JOURNAL_STREAM` ("DEV:INODE", set by systemd for a service whose stderr is the
/// journal) and `stderr` the device and inode of this process's stderr. A child whose
/// stderr was redirected (a supervisor writing `supervisor.log`) inherits the variable
/// but not the stream, so it keeps writing to stderr. Also returns a warning to log once
/// logging works, for a `forced` value that means nothing.
pub fn choose_target(
    forced: Option<&str>,
    journal_stream: Option<&str>,
    stderr: Option<(u64, u64)>,
) -> (LogTarget, Option<String>) {
    let mut warning = None;
    if let Some(text) = forced.map(str::trim).filter(|text| !text.is_empty()) {
        match text.parse() {
            Ok(target) => return (target, None),
            Err(error) => {
                warning = Some(format!(
                    "{LOG_TARGET_VAR}: {error}; choosing by JOURNAL_STREAM"
                ))
            }
        }
    }
    let on_journal = match (journal_stream.and_then(parse_journal_stream), stderr) {
        (Some(stream), Some(stderr)) => stream == stderr,
        _ => false,
    };
    let target = if on_journal {
        LogTarget::Journald
    } else {
        LogTarget::Stderr
    };
    (target, warning)
}

/// `JOURNAL_STREAM`'s "DEV:INODE", both decimal (systemd.exec(5)).
fn parse_journal_stream(text: &str) -> Option<(u64, u64)> {
    let (dev, ino) = text.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// `fstat(2)`'s device and inode: a duplicate of the descriptor, so no `unsafe`.
fn stderr_identity() -> Option<(u64, u64)> {
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    Some((metadata.dev(), metadata.ino()))
}

/// This executable's file name: the `SYSLOG_IDENTIFIER` of a process that names none.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "cuttle".to_owned())
}

/// Installs the global subscriber for a process that is not a daemon of its own (the
/// supervisor), named in the journal after its executable. See [`init_daemon`].
pub fn init(format: LogFormat, filter: Option<&str>) {
    init_daemon(&program_name(), format, filter, &[]);
}

/// Installs the global subscriber of the daemon `identifier` (the journal's
/// `SYSLOG_IDENTIFIER`, `journalctl -t`). `filter` is the value of `CUTTLE_LOG` if set
/// (the caller reads it); an invalid filter falls back to `info` with a warning.
/// `journal_fields` are added to every journal entry of this process, upper-case names
/// (a dispatcher's `MACHINE_TYPE`); they do not appear on stderr.
///
/// In the journal, event and span fields keep their names upper-cased and with no prefix
/// (`job_id` is `JOB_ID`, `run` is `RUN`), so `journalctl JOB_ID=42` finds a job's lines;
/// levels map to syslog priorities as systemd's own stderr handling does: error 3,
/// warn 4, info 6, debug and trace 7.
pub fn init_daemon(
    identifier: &str,
    format: LogFormat,
    filter: Option<&str>,
    journal_fields: &[(&str, &str)],
) {
    let (filter, bad_filter) = match filter.map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new("info"), Some(error.to_string())),
        None => (EnvFilter::new("info"), None),
    };
    let (target, mut warning) = choose_target(
        std::env::var(LOG_TARGET_VAR).ok().as_deref(),
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    );
    let journald = match target {
        LogTarget::Stderr => None,
        // Connecting sends an empty datagram: an error here means no journald listens.
        LogTarget::Journald => match tracing_journald::layer() {
            Ok(layer) => Some(layer),
            Err(error) => {
                warning = Some(format!(
                    "cannot log to journald at /run/systemd/journal/socket ({error}); logging to stderr"
                ));
                None
            }
        },
    };
    let installed = match journald {
        Some(layer) => {
            let layer = layer
                // No "F_" prefix: the journal fields are named as in the code, upper-cased.
                .with_field_prefix(None)
                .with_syslog_identifier(identifier.to_owned())
                .with_priority_mappings(PriorityMappings {
                    error: Priority::Error,
                    warn: Priority::Warning,
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    trace: Priority::Debug,
                })
                .with_custom_fields(journal_fields.iter().copied());
            tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init()
                .is_ok()
        }
        None => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                // Colour only for a person at a terminal; files and the journal get plain text.
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false);
            match format {
                LogFormat::Text => builder.compact().try_init().is_ok(),
                LogFormat::Json => builder.json().flatten_event(true).try_init().is_ok(),
            }
        }
    };
    if !installed {
        return;
    }
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "CUTTLE_LOG is not a valid log filter; logging at info");
    }
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: Option<(u64, u64)> = Some((64769, 1234));

    #[test]
    fn journald_exactly_when_stderr_is_the_journal_stream() {
        let cases = [
            (None, Some("64769:1234"), LogTarget::Journald),
            // A child with stderr redirected inherits the variable, not the stream.
            (None, Some("64769:9999"), LogTarget::Stderr),
            (None, Some("1:1234"), LogTarget::Stderr),
            (None, None, LogTarget::Stderr),
            (None, Some("garbage"), LogTarget::Stderr),
            (None, Some("64769:"), LogTarget::Stderr),
            (Some("stderr"), Some("64769:1234"), LogTarget::Stderr),
            (Some("journald"), None, LogTarget::Journald),
            (Some(" journald "), Some("1:1"), LogTarget::Journald),
            (Some(""), Some("64769:1234"), LogTarget::Journald),
        ];
        for (forced, stream, expected) in cases {
            let (target, warning) = choose_target(forced, stream, STDERR);
            assert_eq!(
                target, expected,
                "forced {forced:?}, JOURNAL_STREAM {stream:?}"
            );
            assert_eq!(warning, None);
        }
        assert_eq!(
            choose_target(None, Some("64769:1234"), None).0,
            LogTarget::Stderr,
            "no stderr, no journal"
        );
    }

    #[test]
    fn a_bad_forced_target_warns_and_falls_back_to_detection() {
        let (target, warning) = choose_target(Some("syslog"), Some("64769:1234"), STDERR);
        assert_eq!(target, LogTarget::Journald);
        let warning = warning.unwrap();
        assert!(
            warning.contains("CUTTLE_LOG_TARGET") && warning.contains("\"syslog\""),
            "{warning}"
        );
        let (target, _) = choose_target(Some("syslog"), None, STDERR);
        assert_eq!(target, LogTarget::Stderr);
    }

    #[test]
    fn stderr_identity_is_fstat_of_descriptor_2() {
        let (dev, ino) = stderr_identity().unwrap();
        let metadata = std::fs::metadata("/proc/self/fd/2").unwrap();
        assert_eq!((dev, ino), (metadata.dev(), metadata.ino()));
    }
}
