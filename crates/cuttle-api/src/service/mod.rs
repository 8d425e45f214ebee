//! The gRPC services, one module per service in `proto/cuttle/v1`. Handlers validate their
//! input into cuttle-core types first, then call the store or the queue.

pub mod admin;
pub mod autosuites;
pub mod dispatch;
pub mod health;
pub mod nodes;
pub mod presets;
pub mod runs;
pub mod suites;

use cuttle_core::{InvalidInput, JobId};
use tonic::Status;

use crate::errors;

/// Parses a required text field with a core parser, naming the field when it is empty.
pub(crate) fn required<T>(
    text: &str,
    field: &'static str,
    hint: &str,
    parse: fn(&str) -> Result<T, InvalidInput>,
) -> Result<T, Status> {
    if text.trim().is_empty() {
        return Err(errors::invalid(InvalidInput::new(
            field,
            format!("is missing; {hint}"),
        )));
    }
    parse(text.trim()).map_err(errors::invalid)
}

/// Parses an optional filter value: empty or absent means no filter.
pub(crate) fn optional<T>(
    text: Option<&str>,
    parse: fn(&str) -> Result<T, InvalidInput>,
) -> Result<Option<T>, Status> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => parse(text).map(Some).map_err(errors::invalid),
    }
}

/// A job id from the wire; job ids are positive.
pub(crate) fn job_id(id: i64) -> Result<JobId, Status> {
    if id <= 0 {
        return Err(errors::invalid(InvalidInput::new(
            "job id",
            format!("{id} is not a job id; job ids are positive"),
        )));
    }
    Ok(JobId(id))
}

/// Checks a free-text field's length.
pub(crate) fn text(field: &'static str, value: &str) -> Result<String, Status> {
    cuttle_core::job::check_text(field, value).map_err(errors::invalid)
}
