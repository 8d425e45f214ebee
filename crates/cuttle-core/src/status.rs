//! The job state machine: the one place that decides which status changes are legal.
//!
//! ```text
//! waiting_for_build ─▶ queued ─▶ waiting ─▶ running ─▶ pass | fail
//!                        ▲ │        │        ▲
//!                        │ └────────┼────────┘  (locked and started in one step)
//!                        └──────────┘  (a reserved job handed back to the queue)
//! any non-terminal status ─▶ dead (with a reason) | killed
//! ```
//!
//! Every accepted job reaches exactly one terminal status; once there it never moves. No
//! daemon checks transitions itself: they all call [`JobStatus::transition`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. The string forms are what the database, the API and the CLI
/// show, and match teuthology's where teuthology has the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, but the packages it tests are not built yet; not on the queue.
    WaitingForBuild,
    /// On its machine type's beanstalkd tube, waiting to be reserved.
    Queued,
    /// Reserved by a dispatcher that has not locked its nodes yet.
    Waiting,
    /// Its nodes are locked and a supervisor is running it.
    Running,
    /// Ran and passed.
    Pass,
    /// Ran and failed.
    Fail,
    /// Could not run or could not finish (timed out, supervisor lost, unrunnable); always
    /// carries a reason.
    Dead,
    /// Stopped by a person.
    Killed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 8] = [
        JobStatus::WaitingForBuild,
        JobStatus::Queued,
        JobStatus::Waiting,
        JobStatus::Running,
        JobStatus::Pass,
        JobStatus::Fail,
        JobStatus::Dead,
        JobStatus::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::WaitingForBuild => "waiting_for_build",
            JobStatus::Queued => "queued",
            JobStatus::Waiting => "waiting",
            JobStatus::Running => "running",
            JobStatus::Pass => "pass",
            JobStatus::Fail => "fail",
            JobStatus::Dead => "dead",
            JobStatus::Killed => "killed",
        }
    }

    /// A terminal status is final: the job has ended and nothing may change it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Pass | JobStatus::Fail | JobStatus::Dead | JobStatus::Killed
        )
    }

    /// Whether the state machine has an edge from `self` to `to`.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match (self, to) {
            (from, _) if from.is_terminal() => false,
            // Any living job may die or be killed.
            (_, Dead | Killed) => true,
            (WaitingForBuild, Queued) => true,
            (Queued, Waiting | Running) => true,
            (Waiting, Queued | Running) => true,
            // Its nodes could not be prepared: the nodes' fault, not the job's, so it
            // goes back to the queue (a bounded number of times; see dispatch.rs).
            (Running, Queued) => true,
            (Running, Pass | Fail) => true,
            _ => false,
        }
    }

    /// Checks the move from `self` to `to`, with the reason the caller gives for it, and
    /// returns the new status. `dead` needs a non-empty reason (teuthology#2031: a dead job
    /// without a reason is a mystery to whoever reads the results).
    pub fn transition(
        self,
        to: JobStatus,
        reason: Option<&str>,
    ) -> Result<JobStatus, IllegalTransition> {
        if !self.can_become(to) {
            return Err(IllegalTransition::NoSuchEdge { from: self, to });
        }
        if to == JobStatus::Dead && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(IllegalTransition::DeadWithoutReason { from: self });
        }
        Ok(to)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a job status; use one of waiting_for_build, queued, waiting, running, pass, fail, dead, killed"
)]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<JobStatus, UnknownStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

/// A status change the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IllegalTransition {
    #[error("a job cannot go from {from} to {to}{}", terminal_hint(*from))]
    NoSuchEdge { from: JobStatus, to: JobStatus },
    #[error("a job going from {from} to dead needs a reason saying why it died")]
    DeadWithoutReason { from: JobStatus },
}

fn terminal_hint(from: JobStatus) -> &'static str {
    if from.is_terminal() {
        " (it has already ended, and an ended job's status is final)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn the_happy_path_is_legal() {
        let mut status = WaitingForBuild;
        for next in [Queued, Waiting, Running, Pass] {
            status = status.transition(next, None).unwrap();
        }
        assert_eq!(status, Pass);
    }

    #[test]
    fn terminal_statuses_never_move() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                let error = from.transition(to, Some("reason")).unwrap_err();
                assert!(error.to_string().contains("already ended"), "{error}");
            }
        }
    }

    #[test]
    fn dead_needs_a_reason() {
        assert_eq!(
            Running.transition(Dead, None),
            Err(IllegalTransition::DeadWithoutReason { from: Running })
        );
        assert!(Running.transition(Dead, Some("  ")).is_err());
        assert_eq!(Running.transition(Dead, Some("timed out")), Ok(Dead));
    }

    #[test]
    fn no_skipping_ahead_or_going_back() {
        assert!(Queued.transition(Pass, None).is_err());
        assert!(WaitingForBuild.transition(Running, None).is_err());
        assert!(Running.transition(Waiting, None).is_err());
        assert!(Pass.transition(Queued, None).is_err());
    }

    #[test]
    fn every_living_status_can_be_killed_and_reach_a_terminal_one() {
        for from in JobStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert_eq!(from.transition(Killed, None), Ok(Killed));
        }
    }

    #[test]
    fn strings_round_trip() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        let error = "finished".parse::<JobStatus>().unwrap_err();
        assert!(error.to_string().contains("queued"), "{error}");
    }
}
