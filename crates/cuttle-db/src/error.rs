//! The storage layer's failures. Each variant carries what a person needs to act on it;
//! cuttle-api maps them to gRPC status codes in one exhaustive match.

use cuttle_core::node::UnlockRefused;
use cuttle_core::{IllegalTransition, InvalidInput, JobId, JobStatus, MachineType};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot open database {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("cannot bring database {target} up to date: {detail}")]
    Migrate { target: String, detail: String },
    #[error("{what} {name:?} does not exist")]
    NotFound { what: &'static str, name: String },
    #[error("{what} {name:?} already exists{hint}")]
    AlreadyExists {
        what: &'static str,
        name: String,
        hint: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("job {job_id}: {source}")]
    IllegalTransition {
        job_id: JobId,
        source: IllegalTransition,
    },
    #[error("job {job_id} is {status}, not running; heartbeats are only for running jobs")]
    NotRunning { job_id: JobId, status: JobStatus },
    #[error("node {node} is locked by {holder}; unlock it before {action}")]
    NodeLocked {
        node: String,
        holder: String,
        action: String,
    },
    #[error(
        "dispatcher {holder} does not hold the lease of tube {machine_type}{}; only the active dispatcher may claim jobs",
        current.as_ref().map(|c| format!(" (held by {c})")).unwrap_or_default()
    )]
    NotLeaseHolder {
        machine_type: MachineType,
        holder: String,
        current: Option<String>,
    },
    #[error(
        "job {job_id} is {status} and not claimed by dispatcher {holder}; it may have been reaped or killed"
    )]
    NotClaimed {
        job_id: JobId,
        status: JobStatus,
        holder: String,
    },
    #[error("job {job_id} is {status}; only a queued or waiting job can be re-prioritized")]
    NotWaiting { job_id: JobId, status: JobStatus },
    #[error("job {job_id} changed while it was being updated; try again")]
    Conflict { job_id: JobId },
    #[error("autosuite {id} is {state}; only one still waiting for its build can be {action}")]
    AutoSuiteNotWaiting {
        id: i64,
        state: cuttle_core::autosuite::AutoSuiteState,
        action: &'static str,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{}", refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    UnlockRefused { refused: Vec<UnlockRefused> },
    #[error("database row is corrupt: {0}")]
    Corrupt(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
}

impl DbError {
    /// The connection broke under a query (the server went away or cut it): an outage,
    /// not a mistake in the query.
    pub fn connection_lost(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection
                    | diesel::result::DatabaseErrorKind::UnableToSendCommand,
                _,
            ))
        )
    }
}

/// Why a lock request locked nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error(
        "machine type {machine_type} has no nodes; add some with `cuttle node add NAME --machine-type {machine_type}`"
    )]
    UnknownMachineType { machine_type: MachineType },
    #[error(
        "machine type {machine_type} has only {total} nodes, so a request for {requested} can never be met; ask for at most {total}"
    )]
    NeverFits {
        machine_type: MachineType,
        requested: u32,
        total: u32,
    },
    #[error(
        "only {free} of the {total} nodes of machine type {machine_type} are free now ({down} down), {requested} were asked for; nothing was locked, try again later"
    )]
    NotEnoughFree {
        machine_type: MachineType,
        requested: u32,
        free: u32,
        down: u32,
        total: u32,
    },
    #[error("no such node: {}; nothing was locked", names.join(", "))]
    UnknownNodes { names: Vec<String> },
    #[error("{}; nothing was locked", describe_unavailable(locked, down))]
    Unavailable {
        /// `(node, holder)` pairs of nodes someone else holds.
        locked: Vec<(String, String)>,
        /// Nodes that are down.
        down: Vec<String>,
    },
    #[error("job {job_id} does not exist; nodes can only be locked for a known job")]
    UnknownJob { job_id: JobId },
    #[error("job {job_id} has already ended ({status}); nodes are not locked for an ended job")]
    JobEnded { job_id: JobId, status: JobStatus },
    #[error(
        "job {job_id} already holds {}, not the {requested} node(s) asked for; a job's nodes are locked once (release them first)",
        held.join(", ")
    )]
    JobHoldsOthers {
        job_id: JobId,
        requested: u32,
        held: Vec<String>,
    },
}

fn describe_unavailable(locked: &[(String, String)], down: &[String]) -> String {
    let mut parts = Vec::new();
    if !locked.is_empty() {
        let held: Vec<String> = locked
            .iter()
            .map(|(node, holder)| format!("{node} (held by {holder})"))
            .collect();
        parts.push(format!("already locked: {}", held.join(", ")));
    }
    if !down.is_empty() {
        parts.push(format!("down: {}", down.join(", ")));
    }
    parts.join("; ")
}
