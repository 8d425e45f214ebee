//! Every failure a request can meet, mapped to a gRPC status in one exhaustive match per
//! error type, with the human message the user sees.

use tonic::{Code, Status};

use cuttle_core::InvalidInput;
use cuttle_db::{DbError, LockError};
use cuttle_queue::QueueError;

pub fn invalid(error: InvalidInput) -> Status {
    Status::invalid_argument(error.to_string())
}

pub fn db(error: DbError) -> Status {
    let message = error.to_string();
    let code = match &error {
        DbError::NotFound { .. } => Code::NotFound,
        DbError::AlreadyExists { .. } => Code::AlreadyExists,
        DbError::Invalid(_) => Code::InvalidArgument,
        DbError::IllegalTransition { .. }
        | DbError::NotRunning { .. }
        | DbError::NotLeaseHolder { .. }
        | DbError::NotClaimed { .. }
        | DbError::NotWaiting { .. }
        | DbError::AutoSuiteNotWaiting { .. }
        | DbError::NodeLocked { .. } => Code::FailedPrecondition,
        DbError::Conflict { .. } => Code::Aborted,
        DbError::UnlockRefused { .. } => Code::PermissionDenied,
        DbError::Lock(lock) => match lock {
            LockError::UnknownMachineType { .. }
            | LockError::UnknownNodes { .. }
            | LockError::UnknownJob { .. } => Code::NotFound,
            LockError::NeverFits { .. }
            | LockError::Unavailable { .. }
            | LockError::JobEnded { .. }
            | LockError::JobHoldsOthers { .. } => Code::FailedPrecondition,
            LockError::NotEnoughFree { .. } => Code::ResourceExhausted,
        },
        DbError::Pool(_) | DbError::Connect { .. } => Code::Unavailable,
        // The connection broke under the query: the server went away.
        DbError::Query(_) if error.connection_lost() => Code::Unavailable,
        DbError::BadUrl { .. }
        | DbError::Migrate { .. }
        | DbError::Corrupt(_)
        | DbError::Query(_) => Code::Internal,
    };
    if matches!(code, Code::Internal | Code::Unavailable) {
        tracing::error!(error = %message, "database failure");
    }
    Status::new(code, message)
}

pub fn queue(error: QueueError) -> Status {
    let message = format!("{error}; nothing was scheduled");
    match error {
        QueueError::Unreachable { .. } | QueueError::Stopped { .. } => Status::unavailable(message),
        QueueError::Refused { .. } => Status::internal(message),
    }
}

/// A blocking task that panicked or was cancelled: a bug, reported as such.
pub fn join(error: tokio::task::JoinError) -> Status {
    tracing::error!(%error, "request task failed");
    Status::internal(format!("internal error: {error}"))
}
