//! Why a `cuttle` command failed, and the exit code each reason maps to.
//!
//! Every failure renders as ONE line (main prefixes it with `cuttle: `), because scripts
//! grep stderr. Usage errors never reach this type: clap prints them and exits 2 itself.

use std::fmt;

use cuttle_core::InvalidInput;
use tonic::Code;

/// Exit code for an error answered by the API or refused input.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when `cuttle run wait --timeout` passed before the run ended (clap's usage
/// errors exit 2 too, but never reach a wait).
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit code when cuttle-api cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// Input refused before any call was made (bad name, out-of-range number, unreadable file).
    Invalid(String),
    /// cuttle-api answered with an error status.
    Api(tonic::Status),
    /// cuttle-api answered, but says it is not healthy (`cuttle health`).
    Unhealthy(String),
    /// The lock audit found violations (`cuttle admin audit`); they were printed.
    AuditFailed(usize),
    /// `cuttle run wait`: the run ended, but not every job passed.
    RunNotPassed {
        run: String,
        status: String,
        counts: String,
    },
    /// `cuttle run wait`: `--timeout` passed first; `progress` is where the run stood.
    WaitTimedOut {
        run: String,
        seconds: u64,
        progress: String,
    },
    /// cuttle-api could not be reached at `url`.
    Unreachable { url: String, detail: String },
    /// Writing the output failed.
    Output(std::io::Error),
    /// The async runtime could not start.
    Runtime(std::io::Error),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Unreachable { .. } => EXIT_UNREACHABLE,
            Failure::WaitTimedOut { .. } => EXIT_TIMEOUT,
            Failure::RunNotPassed { .. }
            | Failure::Invalid(_)
            | Failure::Api(_)
            | Failure::Unhealthy(_)
            | Failure::AuditFailed(_)
            | Failure::Output(_)
            | Failure::Runtime(_) => EXIT_FAILURE,
        }
    }

    /// Sorts an error status from a call: a status made up by the client's transport (it
    /// carries a source error; statuses sent by the server never do) means the API was not
    /// reached, anything else is the API's answer.
    pub fn from_status(status: tonic::Status, url: &str) -> Failure {
        let transport_failure = std::error::Error::source(&status).is_some()
            && matches!(status.code(), Code::Unavailable | Code::Unknown);
        if transport_failure {
            Failure::Unreachable {
                url: url.to_owned(),
                detail: status.message().to_owned(),
            }
        } else {
            Failure::Api(status)
        }
    }
}

impl From<InvalidInput> for Failure {
    fn from(error: InvalidInput) -> Failure {
        Failure::Invalid(error.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::Invalid(message) => message.clone(),
            Failure::Api(status) => {
                let message = status.message().trim();
                if message.is_empty() {
                    code_words(status.code()).to_owned()
                } else {
                    format!("{}: {message}", code_words(status.code()))
                }
            }
            Failure::Unhealthy(detail) => format!("cuttle-api is not healthy: {detail}"),
            Failure::AuditFailed(count) => format!(
                "the lock audit found {count} violation(s), listed above; see the operator guide's runbook on leaked and double-held locks"
            ),
            Failure::Unreachable { url, detail } => format!(
                "cannot reach cuttle-api at {url} ({detail}); start cuttle-api or point \
                 --api / CUTTLE_API at it"
            ),
            Failure::RunNotPassed {
                run,
                status,
                counts,
            } => format!(
                "run {run} ended {status} ({counts}): not every job passed; see why with cuttle run show {run}"
            ),
            Failure::WaitTimedOut {
                run,
                seconds,
                progress,
            } => format!(
                "run {run} has not ended after {seconds} s ({progress}); it goes on: wait again with cuttle run wait {run} (a longer --timeout), or stop it with cuttle kill {run}"
            ),
            Failure::Output(error) => format!("cannot write output: {error}"),
            Failure::Runtime(error) => format!("cannot start the async runtime: {error}"),
        };
        f.write_str(&one_line(&text))
    }
}

/// A gRPC code in lowercase words, as it prefixes the API's message.
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// `text` with every run of line breaks and other control characters turned into one space,
/// so a multi-line server message still prints as one line.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    let mut in_break = false;
    for c in text.trim().chars() {
        if c.is_control() {
            if !in_break {
                line.push(' ');
            }
            in_break = true;
        } else {
            line.push(c);
            in_break = false;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_prefixed_with_the_code_in_words() {
        let failure = Failure::Api(tonic::Status::not_found("run \"x\" does not exist"));
        assert_eq!(failure.to_string(), "not found: run \"x\" does not exist");
        assert_eq!(failure.exit_code(), 1);
    }

    #[test]
    fn server_statuses_are_api_answers_even_when_unavailable() {
        let status = tonic::Status::unavailable("beanstalkd cannot be reached");
        let failure = Failure::from_status(status, "http://127.0.0.1:1");
        assert_eq!(failure.exit_code(), 1);
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(one_line("a\nb\r\n\tc\n"), "a b c");
        let failure = Failure::Unreachable {
            url: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
        };
        let text = failure.to_string();
        assert!(!text.contains('\n'));
        assert!(text.contains("http://127.0.0.1:1"), "{text}");
        assert!(text.contains("CUTTLE_API"), "{text}");
        assert_eq!(failure.exit_code(), 3);
    }

    #[test]
    fn waits_exit_1_for_a_run_that_did_not_pass_and_2_on_timeout() {
        let failed = Failure::RunNotPassed {
            run: "r".into(),
            status: "fail".into(),
            counts: "pass=1 fail=1".into(),
        };
        assert_eq!(failed.exit_code(), 1);
        assert!(failed.to_string().contains("cuttle run show r"), "{failed}");
        let timed_out = Failure::WaitTimedOut {
            run: "r".into(),
            seconds: 5,
            progress: "0/2 ended; 0 running, 2 waiting".into(),
        };
        assert_eq!(timed_out.exit_code(), 2);
        let text = timed_out.to_string();
        assert!(
            text.contains("after 5 s") && text.contains("--timeout"),
            "{text}"
        );
    }

    #[test]
    fn invalid_input_keeps_the_cores_message() {
        let failure = Failure::from(cuttle_core::Priority::new(-1).unwrap_err());
        assert!(failure.to_string().starts_with("priority: -1"), "{failure}");
    }
}
