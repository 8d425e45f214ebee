//! cuttle's storage: the only crate that knows SQL. cuttle-api is its only user, so it is
//! the only process that opens the database.
//!
//! One code path serves both backends: [`DbConnection`] is SQLite or PostgreSQL, and the
//! [`with_conn!`]/[`write_tx!`] macros expand each query once per backend so every query is
//! type-checked against both. Everything here is blocking; async callers use
//! `spawn_blocking`. Nothing here may read the clock: callers pass `now`.
//!
//! The node-locking invariant (a node is held by at most one holder) is kept by
//! [`nodes`]: every lock is one conditional UPDATE inside a write transaction, never a read
//! followed by a write.

pub mod autosuites;
pub mod connection;
pub mod dispatch;
pub mod error;
pub mod gauges;
pub mod jobs;
pub mod lock_history;
pub mod nodes;
pub mod presets;
pub mod runs;
pub mod schema;
pub mod strikes;
pub mod tokens;

pub use connection::{Backend, DatabaseTarget, DbConnection, Store};
pub use dispatch::{Killed, LeaseRequest, PendingRelease, PlanData, ReapReport};
pub use error::{DbError, LockError};
pub use nodes::{NewNode, NodeChanges, NodeFilter, UnlockOutcome};
pub use runs::{NewJob, RunFilter};
pub use strikes::PrepareFailed;
