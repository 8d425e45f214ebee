//! Runs and jobs as cuttle understands them, and the bounded values inside them.
//!
//! A [`JobSpec`] is what a user asked for, already validated: every number in range, every
//! name well formed. The teuthology job YAML around it (roles, tasks, overrides, unknown
//! keys) is opaque here; the queue crate owns that format.

use serde::{Deserialize, Serialize};

use crate::{InvalidInput, JobId, JobStatus, MachineType, Owner, RunName, UnixMillis};

/// A beanstalkd priority: lower is more urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(u32);

impl Priority {
    /// teuthology-suite's and teuthology-schedule's default.
    pub const DEFAULT: Priority = Priority(1000);
    /// Highest accepted value. beanstalkd takes any u32, but teuthology's users live in
    /// 0..=1000 with a few "background" runs above; a bigger number is a typo.
    pub const MAX: u32 = 65_535;

    pub fn new(value: i64) -> Result<Priority, InvalidInput> {
        match u32::try_from(value) {
            Ok(value) if value <= Priority::MAX => Ok(Priority(value)),
            _ => Err(InvalidInput::new(
                "priority",
                format!(
                    "{value} is out of range; use 0 (most urgent) to {} (least urgent), default {}",
                    Priority::MAX,
                    Priority::DEFAULT.0
                ),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::DEFAULT
    }
}

/// How many nodes a job needs (teuthology: the number of entries in `roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeCount(u32);

impl NodeCount {
    /// No Ceph test needs more; a larger number is almost surely a mistake.
    pub const MAX: u32 = 1000;

    pub fn new(value: i64) -> Result<NodeCount, InvalidInput> {
        match u32::try_from(value) {
            Ok(value) if (1..=NodeCount::MAX).contains(&value) => Ok(NodeCount(value)),
            _ => Err(InvalidInput::new(
                "node count",
                format!(
                    "{value} is out of range; a job needs at least 1 node and at most {}",
                    NodeCount::MAX
                ),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// The longest a job may run, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeLimit(u32);

impl TimeLimit {
    /// A week. teuthology's `max_job_time` defaults to 3 days; nothing should take longer.
    pub const MAX_SECONDS: u32 = 7 * 24 * 3600;

    pub fn from_seconds(value: i64) -> Result<TimeLimit, InvalidInput> {
        match u32::try_from(value) {
            Ok(value) if (1..=TimeLimit::MAX_SECONDS).contains(&value) => Ok(TimeLimit(value)),
            _ => Err(InvalidInput::new(
                "time limit",
                format!(
                    "{value} seconds is out of range; use 1 to {} (a week)",
                    TimeLimit::MAX_SECONDS
                ),
            )),
        }
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}

/// Longest free-text field (description, branch, os) we store; a guard against pasted logs.
pub const MAX_TEXT_LEN: usize = 4096;

/// Checks a free-text field's length; returns it trimmed.
pub fn check_text(field: &'static str, text: &str) -> Result<String, InvalidInput> {
    let text = text.trim();
    if text.len() > MAX_TEXT_LEN {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} characters is too long; at most {MAX_TEXT_LEN}",
                text.len()
            ),
        ));
    }
    Ok(text.to_owned())
}

/// The run-level facts every job of a run shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub name: RunName,
    pub owner: Owner,
    /// The Ceph branch under test, e.g. `main`.
    pub branch: String,
    /// The Ceph commit under test; empty when not pinned.
    pub sha1: String,
    /// The suite the run came from, e.g. `rados`; empty for hand-made runs.
    pub suite: String,
}

/// One job as a user asked for it, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// teuthology's `description`: the facets the suite combined, or any label.
    pub description: String,
    pub machine_type: MachineType,
    pub priority: Priority,
    pub n_nodes: NodeCount,
    /// `None` means the lab's `max_job_time` applies.
    pub time_limit: Option<TimeLimit>,
    pub os_type: String,
    pub os_version: String,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub spec: RunSpec,
    pub created_at: UnixMillis,
}

/// A job as stored: what was asked for and where it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub run_name: RunName,
    pub owner: Owner,
    pub spec: JobSpec,
    pub status: JobStatus,
    /// Why the job is `dead` or `killed`, or the latest note on it.
    pub reason: Option<String>,
    /// The beanstalkd job id of its live copy on the tube, once it has been put there.
    pub beanstalk_id: Option<u64>,
    /// The job body exactly as put on the tube (teuthology job YAML).
    pub config_yaml: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// The latest heartbeat from its supervisor, while it runs.
    pub heartbeat_at: Option<UnixMillis>,
    /// The dispatcher (its lease holder id) that claimed the job from the tube.
    pub dispatcher: Option<String>,
    /// The supervisor process that runs (or ran) the job.
    pub supervisor: Option<crate::dispatch::SupervisorRef>,
    /// When its dispatch was recorded and it started running.
    pub started_at: Option<UnixMillis>,
}

/// A run with its jobs, as shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunWithJobs {
    pub run: Run,
    pub jobs: Vec<Job>,
}

/// A run with its status derived from its jobs' statuses, and the counts it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: Run,
    /// Machine type of its jobs (of its first job, when they differ).
    pub machine_type: MachineType,
    pub status: RunStatus,
    /// How many of its jobs are in each status; statuses with no job are absent.
    pub counts: Vec<(JobStatus, u32)>,
}

impl RunSummary {
    /// Summarises a run, deriving its status from `counts`.
    pub fn new(run: Run, machine_type: MachineType, counts: Vec<(JobStatus, u32)>) -> RunSummary {
        RunSummary {
            status: RunStatus::derive(&counts),
            run,
            machine_type,
            counts,
        }
    }
}

/// One line of a job's timeline: a status change and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: JobId,
    pub at: UnixMillis,
    pub from: Option<JobStatus>,
    pub to: JobStatus,
    pub reason: Option<String>,
}

/// A run's status, derived from its jobs' statuses (runs have no status of their own, so
/// the two can never disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// No job has started or ended yet.
    Queued,
    /// Some job has started or ended, and some job has not ended.
    Running,
    /// Every job ended and passed.
    Pass,
    /// Every job ended; the worst outcome was a failure.
    Fail,
    /// Every job ended; the worst outcome was a dead job.
    Dead,
    /// Every job ended; at least one was killed.
    Killed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Pass,
        RunStatus::Fail,
        RunStatus::Dead,
        RunStatus::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Pass => "pass",
            RunStatus::Fail => "fail",
            RunStatus::Dead => "dead",
            RunStatus::Killed => "killed",
        }
    }

    /// Parses a run status as a user types it.
    pub fn parse(text: &str) -> Result<RunStatus, InvalidInput> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                InvalidInput::new(
                    "run status",
                    format!("{text:?} is not a run status; use one of queued, running, pass, fail, dead, killed"),
                )
            })
    }

    /// Derives a run's status from how many of its jobs are in each status.
    pub fn derive(counts: &[(JobStatus, u32)]) -> RunStatus {
        let count = |wanted: &[JobStatus]| -> u32 {
            counts
                .iter()
                .filter(|(status, _)| wanted.contains(status))
                .map(|(_, n)| n)
                .sum()
        };
        let not_started = count(&[JobStatus::WaitingForBuild, JobStatus::Queued]);
        let total: u32 = counts.iter().map(|(_, n)| n).sum();
        let ended: u32 = count(&[
            JobStatus::Pass,
            JobStatus::Fail,
            JobStatus::Dead,
            JobStatus::Killed,
        ]);
        if not_started == total {
            RunStatus::Queued
        } else if ended < total {
            RunStatus::Running
        } else if count(&[JobStatus::Killed]) > 0 {
            RunStatus::Killed
        } else if count(&[JobStatus::Dead]) > 0 {
            RunStatus::Dead
        } else if count(&[JobStatus::Fail]) > 0 {
            RunStatus::Fail
        } else {
            RunStatus::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn priority_bounds() {
        assert_eq!(Priority::new(0).unwrap().get(), 0);
        assert_eq!(Priority::new(65_535).unwrap().get(), 65_535);
        let error = Priority::new(-1).unwrap_err();
        assert!(error.to_string().contains("0 (most urgent)"), "{error}");
        assert!(Priority::new(65_536).is_err());
        assert!(Priority::new(i64::MAX).is_err());
    }

    #[test]
    fn node_count_bounds() {
        assert!(NodeCount::new(0).is_err());
        assert!(NodeCount::new(-5).is_err());
        assert_eq!(NodeCount::new(3).unwrap().get(), 3);
        assert!(NodeCount::new(1001).is_err());
    }

    #[test]
    fn time_limit_bounds() {
        assert!(TimeLimit::from_seconds(0).is_err());
        assert!(TimeLimit::from_seconds(7 * 24 * 3600 + 1).is_err());
        assert_eq!(TimeLimit::from_seconds(3600).unwrap().seconds(), 3600);
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(check_text("branch", " main ").unwrap(), "main");
        assert!(check_text("description", &"x".repeat(MAX_TEXT_LEN + 1)).is_err());
    }

    #[test]
    fn run_status_is_derived_from_job_statuses() {
        use JobStatus::*;
        assert_eq!(RunStatus::derive(&[(Queued, 3)]), RunStatus::Queued);
        assert_eq!(
            RunStatus::derive(&[(Queued, 2), (Running, 1)]),
            RunStatus::Running
        );
        assert_eq!(
            RunStatus::derive(&[(Queued, 2), (Pass, 1)]),
            RunStatus::Running
        );
        assert_eq!(RunStatus::derive(&[(Pass, 3)]), RunStatus::Pass);
        assert_eq!(RunStatus::derive(&[(Pass, 2), (Fail, 1)]), RunStatus::Fail);
        assert_eq!(RunStatus::derive(&[(Dead, 1), (Fail, 1)]), RunStatus::Dead);
        assert_eq!(
            RunStatus::derive(&[(Dead, 1), (Killed, 1)]),
            RunStatus::Killed
        );
        assert_eq!(RunStatus::parse("pass"), Ok(RunStatus::Pass));
        assert!(RunStatus::parse("finished").is_err());
    }

    proptest! {
        #[test]
        fn bounded_numbers_accept_exactly_their_range(value in any::<i64>()) {
            prop_assert_eq!(Priority::new(value).is_ok(), (0..=65_535).contains(&value));
            prop_assert_eq!(NodeCount::new(value).is_ok(), (1..=1000).contains(&value));
        }
    }
}
