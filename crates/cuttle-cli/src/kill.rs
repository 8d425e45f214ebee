//! `cuttle kill`: kills a run's living jobs, or one job, through RunService.Kill, and says
//! in one line what that did (how many left the queue, how many supervisors are stopping).
//!
//! Ownership is decided by cuttle-api (the owner, or anyone with the admin token); this
//! command only names who acts, validates the names first, and never retries a refusal.

use cuttle_core::{InvalidInput, JobId, RunName};
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::KillArgs;
use crate::error::Failure;
use crate::output::{JobJson, jobs_json, print, print_json};
use crate::schedule::owner_or_user;

/// Builds the Kill request; `user` is `$USER`, the owner when `--owner` is absent.
fn kill_request(args: &KillArgs, user: Option<&str>) -> Result<v1::KillRequest, InvalidInput> {
    Ok(v1::KillRequest {
        run_name: RunName::parse(args.run_name())?.into(),
        job_id: args
            .job_id
            .as_deref()
            .map(JobId::parse)
            .transpose()?
            .map(|id| id.0),
        owner: owner_or_user(args.owner.as_deref(), user)?,
    })
}

/// `1 job` or `3 jobs`.
fn jobs_noun(n: usize) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs")
    }
}

/// The one-line summary of a kill: what was killed, and where each killed job went.
pub fn kill_summary(run_name: &str, job_id: Option<i64>, answer: &v1::KillResponse) -> String {
    let killed = answer.killed.len();
    if killed == 0 {
        let what = match job_id {
            Some(id) => format!("job {id} had already ended"),
            None => "every job had already ended".to_owned(),
        };
        return format!("killed 0 jobs of run {run_name}: nothing was left alive, {what}");
    }
    let mut parts = vec![format!("{} dequeued", answer.dequeued)];
    if answer.stopping > 0 {
        parts.push(format!(
            "{} stopping: their supervisors archive logs and release nodes",
            answer.stopping
        ));
    }
    // Jobs neither dequeued nor running were waiting for a build, or held by a dispatcher
    // (its claim sees `killed` and deletes the beanstalkd copy itself).
    let elsewhere = killed.saturating_sub(answer.dequeued as usize + answer.stopping as usize);
    if elsewhere > 0 {
        parts.push(format!(
            "{elsewhere} not on the queue or held by a dispatcher, which drops them"
        ));
    }
    format!(
        "killed {} of run {run_name} ({})",
        jobs_noun(killed),
        parts.join(", ")
    )
}

/// What `cuttle kill --json` prints.
#[derive(Debug, Serialize)]
struct KillJson<'a> {
    killed: Vec<JobJson<'a>>,
    dequeued: u32,
    stopping: u32,
}

/// Runs `cuttle kill`.
pub async fn run(context: &Context, args: KillArgs) -> Result<(), Failure> {
    let user = std::env::var("USER").ok();
    let request = kill_request(&args, user.as_deref())?;
    let (run_name, job_id) = (request.run_name.clone(), request.job_id);
    let api = context.connect().await?;
    let answer = api
        .runs()
        .kill(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&KillJson {
            killed: jobs_json(&answer.killed),
            dequeued: answer.dequeued,
            stopping: answer.stopping,
        })
    } else {
        print(&kill_summary(&run_name, job_id, &answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn kill_args(args: &[&str]) -> KillArgs {
        let cli = Cli::try_parse_from(["cuttle", "kill"].into_iter().chain(args.iter().copied()))
            .unwrap();
        match cli.command {
            Command::Kill(args) => args,
            other => panic!("not kill: {other:?}"),
        }
    }

    fn killed(n: usize) -> Vec<v1::Job> {
        (1..=n as i64)
            .map(|id| v1::Job {
                id,
                status: v1::JobStatus::Killed as i32,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn the_request_names_the_run_the_job_and_who_kills() {
        let args = kill_args(&["alice-run", "--job", "42", "--owner", "bob"]);
        let request = kill_request(&args, Some("carol")).unwrap();
        assert_eq!(request.run_name, "alice-run");
        assert_eq!(request.job_id, Some(42));
        assert_eq!(request.owner, "bob");

        let args = kill_args(&["alice-run"]);
        let request = kill_request(&args, Some("carol")).unwrap();
        assert_eq!(request.job_id, None);
        assert_eq!(request.owner, "carol", "--owner defaults to $USER");
    }

    #[test]
    fn teuthology_kills_short_flags_name_the_run_and_the_job() {
        let args = kill_args(&["-r", "alice-run", "-j", "42"]);
        let request = kill_request(&args, Some("carol")).unwrap();
        assert_eq!(request.run_name, "alice-run");
        assert_eq!(request.job_id, Some(42));
        // The run is named once: RUN or -r, never both, never neither.
        for args in [&["-r", "a", "b"][..], &["-j", "42"][..]] {
            let parsed =
                Cli::try_parse_from(["cuttle", "kill"].into_iter().chain(args.iter().copied()));
            assert!(parsed.is_err(), "{args:?}");
        }
    }

    #[test]
    fn bad_names_are_refused_before_the_call() {
        let error = kill_request(&kill_args(&["bad run"]), None).unwrap_err();
        assert_eq!(error.field, "run name");
        let error = kill_request(&kill_args(&["r", "--job", "x"]), None).unwrap_err();
        assert_eq!(error.field, "job id");
        let error = kill_request(&kill_args(&["r"]), Some("a b")).unwrap_err();
        assert_eq!(error.field, "owner");
    }

    #[test]
    fn the_summary_says_where_the_killed_jobs_went() {
        let answer = v1::KillResponse {
            killed: killed(12),
            dequeued: 10,
            stopping: 2,
        };
        assert_eq!(
            kill_summary("r", None, &answer),
            "killed 12 jobs of run r (10 dequeued, 2 stopping: their supervisors archive \
             logs and release nodes)"
        );
        let answer = v1::KillResponse {
            killed: killed(1),
            dequeued: 1,
            stopping: 0,
        };
        assert_eq!(
            kill_summary("r", Some(1), &answer),
            "killed 1 job of run r (1 dequeued)"
        );
        let answer = v1::KillResponse {
            killed: killed(3),
            dequeued: 1,
            stopping: 0,
        };
        let text = kill_summary("r", None, &answer);
        assert!(
            text.starts_with("killed 3 jobs of run r (1 dequeued, 2 not on"),
            "{text}"
        );
    }

    #[test]
    fn killing_what_already_ended_says_so() {
        let answer = v1::KillResponse::default();
        let text = kill_summary("r", None, &answer);
        assert!(text.starts_with("killed 0 jobs of run r"), "{text}");
        assert!(text.contains("already ended"), "{text}");
        let text = kill_summary("r", Some(7), &answer);
        assert!(text.contains("job 7 had already ended"), "{text}");
    }
}
