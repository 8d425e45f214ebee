//! cuttle's domain: the ids, runs, jobs and nodes every other crate talks about, the job
//! state machine, and the validation of anything a user can type.
//!
//! This crate is pure. It must never do IO, read the clock or the environment, or depend on
//! an async runtime: callers pass `now` in. That keeps every rule here testable with plain
//! unit and property tests, and shared unchanged by the daemons and the simulator.

pub mod audit;
pub mod auth;
pub mod autosuite;
pub mod build;
pub mod dispatch;
pub mod expiry;
pub mod ids;
pub mod job;
pub mod node;
pub mod status;
pub mod suite;
pub mod time;

pub use ids::{JobId, MachineType, NodeName, Owner, PresetName, RunName};
pub use job::{
    Job, JobEvent, JobSpec, NodeCount, Priority, Run, RunSpec, RunStatus, RunSummary, RunWithJobs,
    TimeLimit,
};
pub use node::{LockRequest, Node, NodeLock};
pub use status::{IllegalTransition, JobStatus};
pub use time::UnixMillis;

/// Why a user-supplied value was refused. Each message names the value and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    /// Which field or argument was wrong, as the user would name it (`priority`, `node name`).
    pub field: &'static str,
    /// What was wrong and what to do instead.
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        InvalidInput {
            field,
            message: message.into(),
        }
    }
}
