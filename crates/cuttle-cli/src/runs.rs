//! `cuttle run list`, `cuttle run show` and `cuttle job show`: read-only views of runs and
//! jobs through RunService.
//!
//! Filters and names are validated with cuttle-core before the call; these commands never
//! change anything on the server.

use cuttle_core::{InvalidInput, JobId, MachineType, Owner, RunName, RunStatus};
use cuttle_proto::convert::status_name;
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{JobCommand, JobShowArgs, RunCommand, RunListArgs, RunShowArgs};
use crate::error::Failure;
use crate::nodes::{checked, checked_text};
use crate::output::{
    JobEventJson, JobJson, RunJson, counts_summary, fields, jobs_json, or_dash, print, print_json,
    table,
};
use crate::time::{format_unix_millis, now_unix_millis};

/// Runs one `cuttle run` subcommand.
pub async fn run(context: &Context, command: RunCommand) -> Result<(), Failure> {
    match command {
        RunCommand::List(args) => list(context, args).await,
        RunCommand::Show(args) => show(context, args).await,
    }
}

/// Runs one `cuttle job` subcommand.
pub async fn job(context: &Context, command: JobCommand) -> Result<(), Failure> {
    match command {
        JobCommand::Show(args) => show_job(context, args).await,
    }
}

fn list_request(args: &RunListArgs) -> Result<v1::ListRunsRequest, InvalidInput> {
    Ok(v1::ListRunsRequest {
        owner: checked(args.owner.as_deref(), Owner::parse)?,
        status: checked(args.status.as_deref(), RunStatus::parse)?,
        machine_type: checked(args.machine_type.as_deref(), MachineType::parse)?,
        branch: checked_text("branch", args.branch.as_deref())?,
        // 0 asks for the API's default.
        limit: args.limit.unwrap_or(0),
    })
}

/// Total jobs of a run.
fn total_jobs(run: &v1::Run) -> u32 {
    run.job_counts.values().sum()
}

/// Runs as the `cuttle run list` table.
pub fn runs_table(runs: &[v1::Run]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            vec![
                run.name.clone(),
                run.owner.clone(),
                run.status.clone(),
                total_jobs(run).to_string(),
                counts_summary(&run.job_counts),
                format_unix_millis(run.created_at_ms),
            ]
        })
        .collect();
    table(
        &["name", "owner", "status", "jobs", "counts", "created"],
        &rows,
    )
}

async fn list(context: &Context, args: RunListArgs) -> Result<(), Failure> {
    let request = list_request(&args)?;
    let api = context.connect().await?;
    let runs = api
        .runs()
        .list_runs(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner()
        .runs;
    if context.json {
        print_json(&runs.iter().map(RunJson::from).collect::<Vec<_>>())
    } else {
        print(&runs_table(&runs))
    }
}

/// What `cuttle run show --json` prints.
#[derive(Debug, Serialize)]
struct RunDetailJson<'a> {
    run: Option<RunJson<'a>>,
    jobs: Vec<JobJson<'a>>,
}

/// A run's header lines and its jobs table.
pub fn run_detail_text(detail: &v1::RunDetail, now_ms: i64) -> String {
    let run = detail.run.clone().unwrap_or_default();
    let header = fields(&[
        ("run", run.name.clone()),
        ("owner", run.owner.clone()),
        ("status", run.status.clone()),
        ("branch", run.branch.clone()),
        ("sha1", run.sha1.clone()),
        ("suite", run.suite.clone()),
        ("machine_type", run.machine_type.clone()),
        ("created", format_unix_millis(run.created_at_ms)),
        (
            "jobs",
            format!("{} ({})", total_jobs(&run), counts_summary(&run.job_counts)),
        ),
    ]);
    let rows: Vec<Vec<String>> = detail
        .jobs
        .iter()
        .map(|job| {
            vec![
                job.id.to_string(),
                status_name(job.status),
                job.priority.to_string(),
                job.n_nodes.to_string(),
                or_dash(job.beanstalk_id),
                if job.waiting_for.is_empty() && job.estimated_start_ms.is_none() {
                    "-".to_owned()
                } else {
                    crate::queue::starts(job, now_ms)
                },
                job.description.clone(),
                if job.reason.is_empty() {
                    job.waiting_for.clone()
                } else {
                    job.reason.clone()
                },
            ]
        })
        .collect();
    let jobs = table(
        &[
            "id",
            "status",
            "priority",
            "nodes",
            "beanstalk_id",
            "starts",
            "description",
            "reason",
        ],
        &rows,
    );
    format!("{header}\n{jobs}")
}

async fn show(context: &Context, args: RunShowArgs) -> Result<(), Failure> {
    let request = v1::GetRunRequest {
        name: RunName::parse(&args.name)?.into(),
    };
    let api = context.connect().await?;
    let detail = api
        .runs()
        .get_run(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&RunDetailJson {
            run: detail.run.as_ref().map(RunJson::from),
            jobs: jobs_json(&detail.jobs),
        })
    } else {
        print(&run_detail_text(&detail, now_unix_millis()))
    }
}

/// What `cuttle job show --json` prints.
#[derive(Debug, Serialize)]
struct JobDetailJson<'a> {
    job: Option<JobJson<'a>>,
    events: Vec<JobEventJson<'a>>,
    /// Where the job's logs are served; empty when not served.
    archive_url: &'a str,
}

/// The supervisor that runs or ran a job as `pid@host`, or `-` before it started.
fn supervisor_text(job: &v1::Job) -> String {
    match (job.supervisor_pid, job.supervisor_host.as_str()) {
        (0, "") => "-".to_owned(),
        (0, host) => format!("?@{host}"),
        (pid, "") => format!("{pid}@?"),
        (pid, host) => format!("{pid}@{host}"),
    }
}

/// A job's fields and its timeline.
pub fn job_detail_text(detail: &v1::JobDetail) -> String {
    let job = detail.job.clone().unwrap_or_default();
    let header = fields(&[
        ("id", job.id.to_string()),
        ("run", job.run_name.clone()),
        ("owner", job.owner.clone()),
        ("status", status_name(job.status)),
        ("reason", job.reason.clone()),
        ("description", job.description.clone()),
        ("machine_type", job.machine_type.clone()),
        ("priority", job.priority.to_string()),
        ("n_nodes", job.n_nodes.to_string()),
        (
            "time_limit",
            job.time_limit_s
                .map_or_else(|| "lab default".to_owned(), |s| format!("{s} s")),
        ),
        ("os", format!("{} {}", job.os_type, job.os_version)),
        ("beanstalk_id", or_dash(job.beanstalk_id)),
        (
            "nodes",
            or_dash((!job.nodes.is_empty()).then(|| job.nodes.join(" "))),
        ),
        (
            "dispatcher",
            or_dash((!job.dispatcher.is_empty()).then_some(&job.dispatcher)),
        ),
        ("supervisor", supervisor_text(&job)),
        (
            "started",
            or_dash(job.started_at_ms.map(format_unix_millis)),
        ),
        (
            "heartbeat",
            or_dash(job.heartbeat_at_ms.map(format_unix_millis)),
        ),
        ("created", format_unix_millis(job.created_at_ms)),
        ("updated", format_unix_millis(job.updated_at_ms)),
        (
            "logs",
            or_dash((!detail.archive_url.is_empty()).then_some(&detail.archive_url)),
        ),
    ]);
    let rows: Vec<Vec<String>> = detail
        .events
        .iter()
        .map(|event| {
            let from = event.from.map_or_else(|| "(new)".to_owned(), status_name);
            vec![
                format_unix_millis(event.at_ms),
                format!("{from} → {}", status_name(event.to)),
                event.reason.clone(),
            ]
        })
        .collect();
    let timeline = table(&["time", "change", "reason"], &rows);
    format!("{header}\ntimeline:\n{timeline}")
}

async fn show_job(context: &Context, args: JobShowArgs) -> Result<(), Failure> {
    let request = v1::GetJobRequest {
        job_id: JobId::parse(&args.job_id)?.0,
    };
    let api = context.connect().await?;
    let detail = api
        .runs()
        .get_job(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&JobDetailJson {
            job: detail.job.as_ref().map(JobJson::from),
            events: detail.events.iter().map(JobEventJson::from).collect(),
            archive_url: &detail.archive_url,
        })
    } else {
        print(&job_detail_text(&detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_run() -> v1::Run {
        v1::Run {
            name: "alice-run".into(),
            owner: "alice".into(),
            status: "running".into(),
            created_at_ms: 1_795_428_000_000,
            job_counts: [("queued".to_owned(), 2), ("running".to_owned(), 1)]
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn run_table_shows_totals_and_utc_times() {
        let text = runs_table(&[sample_run()]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].contains(" 3 "), "{text}");
        assert!(lines[1].contains("queued=2 running=1"), "{text}");
        assert!(lines[1].ends_with("2026-11-23T10:00:00Z"), "{text}");
    }

    #[test]
    fn run_detail_lists_jobs_with_statuses_by_name() {
        let detail = v1::RunDetail {
            run: Some(sample_run()),
            jobs: vec![
                v1::Job {
                    id: 9,
                    status: v1::JobStatus::Dead as i32,
                    priority: 1000,
                    n_nodes: 2,
                    reason: "no nodes".into(),
                    ..Default::default()
                },
                v1::Job {
                    id: 10,
                    status: v1::JobStatus::Queued as i32,
                    priority: 1000,
                    n_nodes: 1,
                    waiting_for: "behind job 9, first in line".into(),
                    estimated_start_ms: Some(125_000),
                    ..Default::default()
                },
            ],
        };
        let text = run_detail_text(&detail, 5_000);
        assert!(text.starts_with("run:"), "{text}");
        let words = |line: &str| line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.lines().any(|line| words(line)
                == "ID STATUS PRIORITY NODES BEANSTALK_ID STARTS DESCRIPTION REASON"),
            "{text}"
        );
        assert!(
            text.contains(
                "9   dead    1000      2      -             -         -            no nodes"
            ),
            "{text}"
        );
        assert!(text.contains("in 2m00s"), "{text}");
        assert!(text.contains("behind job 9, first in line"), "{text}");
    }

    #[test]
    fn job_timeline_shows_changes() {
        let detail = v1::JobDetail {
            job: Some(v1::Job {
                id: 9,
                ..Default::default()
            }),
            events: vec![
                v1::JobEvent {
                    at_ms: 0,
                    from: None,
                    to: v1::JobStatus::Queued as i32,
                    reason: String::new(),
                },
                v1::JobEvent {
                    at_ms: 1000,
                    from: Some(v1::JobStatus::Queued as i32),
                    to: v1::JobStatus::Killed as i32,
                    reason: "by alice".into(),
                },
            ],
            archive_url: String::new(),
        };
        let text = job_detail_text(&detail);
        assert!(text.contains("(new) → queued"), "{text}");
        assert!(text.contains("queued → killed  by alice"), "{text}");
        assert!(text.contains("\nsupervisor:    -\n"), "{text}");
        assert!(text.contains("\ndispatcher:    -\n"), "{text}");
        assert!(text.contains("\nstarted:       -\n"), "{text}");
        assert!(text.contains("\nlogs:          -\n"), "{text}");
    }

    #[test]
    fn job_detail_shows_who_dispatched_and_supervises_it() {
        let detail = v1::JobDetail {
            job: Some(v1::Job {
                id: 9,
                status: v1::JobStatus::Running as i32,
                reason: "started by dispatcher-1".into(),
                nodes: vec!["smithi001".into(), "smithi002".into()],
                dispatcher: "dispatcher-1".into(),
                supervisor_host: "teuthology01".into(),
                supervisor_pid: 4242,
                started_at_ms: Some(1_795_428_000_000),
                ..Default::default()
            }),
            events: vec![],
            archive_url: "http://teuthology:7180/archive/r/9/".into(),
        };
        let text = job_detail_text(&detail);
        for line in [
            "status:        running",
            "reason:        started by dispatcher-1",
            "nodes:         smithi001 smithi002",
            "dispatcher:    dispatcher-1",
            "supervisor:    4242@teuthology01",
            "started:       2026-11-23T10:00:00Z",
            "logs:          http://teuthology:7180/archive/r/9/",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn supervisor_is_pid_at_host() {
        let mut job = v1::Job::default();
        assert_eq!(supervisor_text(&job), "-");
        job.supervisor_host = "h".into();
        assert_eq!(supervisor_text(&job), "?@h");
        job.supervisor_pid = 7;
        assert_eq!(supervisor_text(&job), "7@h");
    }

    #[test]
    fn bad_status_filters_are_refused_before_the_call() {
        let args = RunListArgs {
            owner: None,
            status: Some("done".into()),
            machine_type: None,
            branch: None,
            limit: None,
        };
        assert_eq!(list_request(&args).unwrap_err().field, "run status");
    }
}
