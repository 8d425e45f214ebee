//! AutoSuites: suite requests that wait for their build (issue 12). A request whose
//! packages are not built yet is kept, not expanded, and fires (is scheduled) once the
//! build is reported ready, by the build-status webhook or by a poll of Shaman,
//! whichever comes first, and exactly once.
//!
//! Exactly once is a state machine with a claim: firing first moves the AutoSuite from
//! `waiting_for_build` to `scheduling` in one transaction (only one claimer wins), then
//! schedules its run under the name fixed by the claim (run names are unique, so a
//! second scheduling of it is refused), then records `scheduled`. A cuttle-api that dies
//! between the claim and the record finds the AutoSuite `scheduling` on restart and
//! finishes it: `scheduled` when the run exists, else it schedules that run.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::suite::RawSuiteArgs;
use crate::{InvalidInput, Owner, UnixMillis};

/// Where an AutoSuite is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AutoSuiteState {
    /// Kept; waiting for its build to be reported ready.
    WaitingForBuild,
    /// Claimed by one firing; its run is being scheduled.
    Scheduling,
    /// Its run was scheduled (final).
    Scheduled,
    /// Its build failed (final; the build URL is kept).
    BuildFailed,
    /// It waited longer than the lab allows (final).
    Expired,
    /// Its build was ready but the suite would not schedule (no job left after its
    /// filters, over the job threshold, ...): trying again would fail the same way
    /// (final; the reason is kept).
    Failed,
}

impl AutoSuiteState {
    pub const ALL: [AutoSuiteState; 6] = [
        AutoSuiteState::WaitingForBuild,
        AutoSuiteState::Scheduling,
        AutoSuiteState::Scheduled,
        AutoSuiteState::BuildFailed,
        AutoSuiteState::Expired,
        AutoSuiteState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AutoSuiteState::WaitingForBuild => "waiting_for_build",
            AutoSuiteState::Scheduling => "scheduling",
            AutoSuiteState::Scheduled => "scheduled",
            AutoSuiteState::BuildFailed => "build_failed",
            AutoSuiteState::Expired => "expired",
            AutoSuiteState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Result<AutoSuiteState, InvalidInput> {
        AutoSuiteState::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            InvalidInput::new(
                "autosuite state",
                format!("{text:?} is not one of waiting_for_build, scheduling, scheduled, build_failed, expired, failed"),
            )
        })
    }

    /// No change leaves a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AutoSuiteState::Scheduled
                | AutoSuiteState::BuildFailed
                | AutoSuiteState::Expired
                | AutoSuiteState::Failed
        )
    }

    /// Whether `self -> to` is a legal change.
    pub fn can_become(self, to: AutoSuiteState) -> bool {
        use AutoSuiteState::*;
        matches!(
            (self, to),
            (WaitingForBuild, Scheduling | BuildFailed | Expired)
                | (Scheduling, Scheduled | WaitingForBuild | Failed)
        )
    }

    /// An owner may edit or delete an AutoSuite only while nothing is firing it.
    pub fn may_change(self) -> bool {
        self != AutoSuiteState::Scheduling
    }
}

impl fmt::Display for AutoSuiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The build an AutoSuite waits for. Empty fields match any build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WantedBuild {
    pub branch: String,
    pub sha1: String,
    pub distro: String,
    pub distro_version: String,
    pub flavor: String,
}

/// What a build report (webhook or Shaman) says of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub branch: String,
    pub sha1: String,
    pub distro: String,
    pub distro_version: String,
    pub flavor: String,
    pub ready: bool,
    pub url: String,
}

/// An AutoSuite: who asked, for which build, to schedule what, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSuite {
    pub id: i64,
    pub owner: Owner,
    /// The role of the token that added it; its firing schedules with this role.
    pub role: Role,
    pub state: AutoSuiteState,
    pub build: WantedBuild,
    pub args: RawSuiteArgs,
    pub run_name: Option<String>,
    pub reason: Option<String>,
    pub build_url: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// One state change of an AutoSuite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSuiteEvent {
    pub at: UnixMillis,
    pub from: Option<AutoSuiteState>,
    pub to: AutoSuiteState,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_is_one_way_and_a_lost_firing_can_be_retried() {
        use AutoSuiteState::*;
        assert!(WaitingForBuild.can_become(Scheduling));
        assert!(Scheduling.can_become(Scheduled));
        assert!(Scheduling.can_become(WaitingForBuild));
        for from in AutoSuiteState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in AutoSuiteState::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
        assert!(
            !WaitingForBuild.can_become(Scheduled),
            "only a claim schedules"
        );
        assert!(!Scheduling.may_change());
        for state in AutoSuiteState::ALL {
            assert_eq!(AutoSuiteState::parse(state.as_str()).unwrap(), state);
        }
        assert!(AutoSuiteState::parse("done").is_err());
    }
}
