//! Child processes of a supervisor: the runner and the lab's commands. Each runs in its
//! own process group with its output appended to a file in the job's archive, so ending
//! it ends everything it started (teuthology forks ssh sessions and helpers).
//!
//! Signals go to the whole group through the system's `kill` command: this workspace
//! forbids `unsafe`, and a process per time-out or kill costs nothing.

use std::fmt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// How a lab command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Exited(Option<i32>),
    Signalled(String),
    TimedOut(Duration),
    CannotStart(String),
}

impl CommandOutcome {
    pub fn succeeded(&self) -> bool {
        *self == CommandOutcome::Exited(Some(0))
    }
}

impl fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandOutcome::Exited(Some(code)) => write!(f, "exited with status {code}"),
            CommandOutcome::Exited(None) => f.write_str("exited without a status"),
            CommandOutcome::Signalled(how) => f.write_str(how),
            CommandOutcome::TimedOut(limit) => {
                write!(
                    f,
                    "did not finish within {} s and was ended",
                    limit.as_secs()
                )
            }
            CommandOutcome::CannotStart(why) => write!(f, "could not start: {why}"),
        }
    }
}

/// "exited with status 3" or "was killed by signal 9".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "exited without a status".to_owned(),
    }
}

/// Starts `argv` in a new process group, stdin closed, stdout and stderr appended to
/// `log` as they are written.
pub fn spawn_in_group(argv: &[String], log: &Path) -> anyhow::Result<Child> {
    let (program, args) = argv.split_first().context("the command is empty")?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().context("cannot share the log file")?)
        .stderr(file)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("cannot run {program}"))
}

/// Sends `signal` to the process group led by `pid`.
async fn signal_group(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = sent {
        tracing::warn!(pid, signal, %error, "cannot run kill");
    }
}

/// Ends a child's whole process group: SIGTERM, up to `grace` to exit, then SIGKILL.
pub async fn end_group(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return; // Already reaped.
    };
    signal_group(pid, "TERM").await;
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(
            pid,
            grace_ms = grace.as_millis() as u64,
            "still running after SIGTERM; sending SIGKILL to its process group"
        );
    }
    // Also reaches helpers that outlived the group leader.
    signal_group(pid, "KILL").await;
    let _ = child.wait().await;
}

/// Runs a lab command to completion within `timeout`, output appended to `log`.
pub async fn run_command(
    argv: &[String],
    log: &Path,
    timeout: Duration,
    grace: Duration,
) -> CommandOutcome {
    let mut child = match spawn_in_group(argv, log) {
        Ok(child) => child,
        Err(error) => return CommandOutcome::CannotStart(format!("{error:#}")),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.code().is_some() => CommandOutcome::Exited(status.code()),
        Ok(Ok(status)) => CommandOutcome::Signalled(describe_exit(status)),
        Ok(Err(error)) => CommandOutcome::CannotStart(error.to_string()),
        Err(_) => {
            end_group(&mut child, grace).await;
            CommandOutcome::TimedOut(timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn commands_report_how_they_ended_and_log_their_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let grace = Duration::from_millis(200);
        let ok = run_command(
            &argv(&["sh", "-c", "echo hello; echo oops >&2"]),
            &log,
            Duration::from_secs(5),
            grace,
        )
        .await;
        assert!(ok.succeeded(), "{ok}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("hello") && text.contains("oops"), "{text}");
        let failed = run_command(
            &argv(&["sh", "-c", "exit 3"]),
            &log,
            Duration::from_secs(5),
            grace,
        )
        .await;
        assert_eq!(failed, CommandOutcome::Exited(Some(3)));
        let missing = run_command(
            &argv(&["/nonexistent/nuke"]),
            &log,
            Duration::from_secs(5),
            grace,
        )
        .await;
        assert!(
            matches!(missing, CommandOutcome::CannotStart(_)),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_ended_with_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        let marker = dir.path().join("grandchild-survived");
        // The grandchild would write the marker after 2 s unless the group is killed.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let outcome = run_command(
            &argv(&["sh", "-c", &script]),
            &log,
            Duration::from_millis(300),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(
            outcome,
            CommandOutcome::TimedOut(Duration::from_millis(300))
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "a process of the command's group outlived the time-out"
        );
    }
}
