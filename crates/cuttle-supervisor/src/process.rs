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
    spawn_in_group_with(argv, log, &[])
}

/// [`spawn_in_group`] with extra environment variables.
pub fn spawn_in_group_with(
    argv: &[String],
    log: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> anyhow::Result<Child> {
    let (program, args) = argv.split_first().context("the command is empty")?;
    // A log that cannot be opened (a full or read-only archive disk) must not stop a nuke
    // or a release: the command runs with its output discarded, and the supervisor's own
    // log says so.
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        Ok(file) => file,
        Err(error) => {
            tracing::warn!(log = %log.display(), %error, "cannot open the command's log; its output is discarded");
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .context("cannot open /dev/null")?
        }
    };
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(file.try_clone().context("cannot share the log file")?)
        .stderr(file)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("cannot run {program}"))
}

/// The file in a job's archive naming its running runner (`BOOT_ID PID STARTTIME`),
/// written when the runner starts and removed once it has ended. Left behind only when
/// the supervisor died: `--release` then ends the runner it names, if it runs on the same
/// host and boot (the kernel's boot id says so).
pub const RUNNER_RECORD: &str = "runner.pid";

/// A live process as `/proc/PID/stat` shows it: its process group and its start time in
/// clock ticks since boot. Together with the pid they name one process even if the pid is
/// reused later. `None` if there is no such process or it is a zombie.
pub fn process_identity(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses a `/proc/PID/stat` line into (process group, start time); `None` for a zombie.
/// The command name (field 2) is in parentheses and may hold spaces, so fields are counted
/// after its closing one: state is field 3, pgrp 5, starttime 22.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if *fields.first()? == "Z" {
        return None;
    }
    Some((fields.get(2)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// This host's current boot: differs between hosts and across reboots.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Records the runner `pid` in `record` (see [`RUNNER_RECORD`]).
pub fn record_runner(record: &Path, pid: u32) {
    let Some((_, started)) = process_identity(pid) else {
        return; // Already gone: nothing could be left behind.
    };
    if let Err(error) = std::fs::write(record, format!("{} {pid} {started}\n", boot_id())) {
        tracing::warn!(pid, %error, path = %record.display(), "cannot record the runner; a lost supervisor's runner would not be ended by --release");
    }
}

/// Ends the runner named by `record` if that very process, on this host and boot, still
/// leads its group (a supervisor that died left it running), then removes the record.
/// Returns its pid if it was ended. A record from another host or boot is left alone.
pub async fn end_recorded_runner(record: &Path, grace: Duration) -> Option<u32> {
    let text = std::fs::read_to_string(record).ok()?;
    let mut words = text.split_whitespace();
    let boot = words.next()?;
    let pid: u32 = words.next()?.parse().ok()?;
    let started: u64 = words.next()?.parse().ok()?;
    if boot != boot_id() {
        return None; // Another host, or before a reboot: not ours to judge.
    }
    let _ = std::fs::remove_file(record);
    if process_identity(pid) != Some((pid, started)) {
        return None; // Exited (or the pid now names another process).
    }
    signal_group(pid, "TERM").await;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && process_identity(pid).is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_group(pid, "KILL").await;
    Some(pid)
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

/// Interrupts a child's whole process group (SIGINT, as Ctrl-C would: teuthology then
/// tears the job down and writes its summary), gives it up to `grace`, then ends it
/// with [`end_group`] if it still runs.
pub async fn interrupt_group(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    signal_group(pid, "INT").await;
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        // The leader is gone; helpers it left are ended with the group.
        signal_group(pid, "KILL").await;
        return;
    }
    tracing::warn!(
        pid,
        grace_ms = grace.as_millis() as u64,
        "still running after SIGINT; sending SIGTERM to its process group"
    );
    end_group(child, grace).await;
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

/// The file in a job's archive naming the lab command (prepare, collect-logs, nuke)
/// running now, in the same form as [`RUNNER_RECORD`]: a supervisor that dies mid-command
/// leaves it, and `--release` ends that command before it nukes, so a reimage or a log
/// collection never runs on nodes that went to the next job.
pub const COMMAND_RECORD: &str = "command.pid";

/// Runs a lab command to completion within `timeout`, output appended to `log`. While it
/// runs, it is named in [`COMMAND_RECORD`] beside `log`.
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
    let record = log
        .parent()
        .filter(|dir| dir.is_dir() && *dir != Path::new("/dev"))
        .map(|dir| dir.join(COMMAND_RECORD));
    if let (Some(record), Some(pid)) = (&record, child.id()) {
        record_runner(record, pid);
    }
    let outcome = wait_command(&mut child, timeout, grace).await;
    if let Some(record) = &record {
        let _ = std::fs::remove_file(record);
    }
    outcome
}

async fn wait_command(child: &mut Child, timeout: Duration, grace: Duration) -> CommandOutcome {
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.code().is_some() => CommandOutcome::Exited(status.code()),
        Ok(Ok(status)) => CommandOutcome::Signalled(describe_exit(status)),
        Ok(Err(error)) => CommandOutcome::CannotStart(error.to_string()),
        Err(_) => {
            end_group(child, grace).await;
            CommandOutcome::TimedOut(timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_group_and_start_time_and_zombies_none() {
        let line = "4242 (tricky) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 rest";
        assert_eq!(parse_stat(line), Some((4242, 987654)));
        let zombie = "4242 (x) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_stat(zombie), None);
        assert_eq!(parse_stat("garbage"), None);
        let me = std::process::id();
        let (_, started) = process_identity(me).expect("this process is alive");
        assert!(started > 0);
    }

    #[tokio::test]
    async fn a_recorded_runner_is_ended_once_and_only_while_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join(RUNNER_RECORD);
        let mut child = spawn_in_group(&argv(&["sleep", "30"]), &dir.path().join("log")).unwrap();
        let pid = child.id().unwrap();
        record_runner(&record, pid);
        assert!(record.exists());
        assert_eq!(
            end_recorded_runner(&record, Duration::from_secs(2)).await,
            Some(pid)
        );
        assert!(!record.exists());
        let status = child.wait().await.unwrap();
        assert!(!status.success());
        // A record naming a process that is gone ends nothing.
        std::fs::write(&record, format!("{} {pid} 1\n", boot_id())).unwrap();
        assert_eq!(
            end_recorded_runner(&record, Duration::from_secs(1)).await,
            None
        );
        assert!(!record.exists());
        // Nor does one naming a live process with another start time (a reused pid), or
        // one from another boot or host.
        let mut alive = spawn_in_group(&argv(&["sleep", "30"]), &dir.path().join("log")).unwrap();
        let pid = alive.id().unwrap();
        let (_, started) = process_identity(pid).unwrap();
        std::fs::write(&record, format!("{} {pid} {}\n", boot_id(), started + 1)).unwrap();
        assert_eq!(
            end_recorded_runner(&record, Duration::from_secs(1)).await,
            None
        );
        std::fs::write(&record, format!("another-boot {pid} {started}\n")).unwrap();
        assert_eq!(
            end_recorded_runner(&record, Duration::from_secs(1)).await,
            None
        );
        assert!(
            record.exists(),
            "another boot's record is left for its own host"
        );
        assert!(
            process_identity(pid).is_some(),
            "the live process was not signalled"
        );
        end_group(&mut alive, Duration::from_secs(1)).await;
    }

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
