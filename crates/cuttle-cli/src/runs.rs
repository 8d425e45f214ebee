//! `cuttle run list`, `cuttle run show`, `cuttle run wait` and `cuttle job show`:
//! read-only views of runs and jobs through RunService.
//!
//! Filters and names are validated with cuttle-core before the call; these commands never
//! change anything on the server. `run wait` only polls GetRun; its exit status is the
//! run's result, so scripts can chain on it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use cuttle_core::{InvalidInput, JobId, MachineType, Owner, RunName, RunStatus};
use cuttle_proto::convert::status_name;
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{JobCommand, JobShowArgs, RunCommand, RunListArgs, RunShowArgs, RunWaitArgs};
use crate::error::Failure;
use crate::nodes::{checked, checked_text};
use crate::output::{
    JobEventJson, JobJson, Paint, RunJson, counts_summary, jobs_json, or_dash, painted_fields,
    painted_table, print, print_json, table,
};
use crate::time::{format_unix_millis, now_unix_millis};

/// Runs one `cuttle run` subcommand.
pub async fn run(context: &Context, command: RunCommand) -> Result<(), Failure> {
    match command {
        RunCommand::List(args) => list(context, args).await,
        RunCommand::Show(args) => show(context, args).await,
        RunCommand::Wait(args) => wait(context, args).await,
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

/// Runs as the `cuttle run list` table, statuses painted by `paint`.
pub fn runs_table(runs: &[v1::Run], paint: Paint) -> String {
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
    painted_table(
        &["name", "owner", "status", "jobs", "counts", "created"],
        &rows,
        paint,
        &[2],
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
        print(&runs_table(&runs, context.paint))
    }
}

/// What `cuttle run show --json` prints.
#[derive(Debug, Serialize)]
struct RunDetailJson<'a> {
    run: Option<RunJson<'a>>,
    jobs: Vec<JobJson<'a>>,
}

/// A run's header lines and its jobs table, statuses painted by `paint`.
pub fn run_detail_text(detail: &v1::RunDetail, now_ms: i64, paint: Paint) -> String {
    let run = detail.run.clone().unwrap_or_default();
    let header = painted_fields(
        &[
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
        ],
        paint,
        &["status"],
    );
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
    let jobs = painted_table(
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
        paint,
        &[1],
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
        print(&run_detail_text(&detail, now_unix_millis(), context.paint))
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

/// A job's fields and its timeline, its status painted by `paint`.
pub fn job_detail_text(detail: &v1::JobDetail, paint: Paint) -> String {
    let job = detail.job.clone().unwrap_or_default();
    let header = painted_fields(
        &[
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
        ],
        paint,
        &["status"],
    );
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
        print(&job_detail_text(&detail, context.paint))
    }
}

/// How long a plain (non-terminal) progress line may be held back when the counts did not
/// change: a log still shows the wait is alive.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// The job statuses that have ended, in the order the progress line names them.
const ENDED: [&str; 4] = ["pass", "fail", "dead", "killed"];

/// Whether a run has ended: its derived status is a result (every job ended).
fn has_ended(run: &v1::Run) -> bool {
    ENDED.contains(&run.status.as_str())
}

/// `12/40 ended: pass=10 fail=1 dead=1; 3 running, 25 waiting`, the ended statuses
/// painted by `paint`. Waiting counts every job not started yet (queued, waiting for a
/// dispatcher's nodes, or for its build).
pub fn progress_line(run: &v1::Run, paint: Paint) -> String {
    let count = |name: &str| run.job_counts.get(name).copied().unwrap_or(0);
    let ended: u32 = ENDED.iter().map(|name| count(name)).sum();
    let outcomes: Vec<String> = ENDED
        .iter()
        .filter(|name| count(name) > 0)
        .map(|name| format!("{}={}", paint.status(name), count(name)))
        .collect();
    let outcomes = if outcomes.is_empty() {
        String::new()
    } else {
        format!(": {}", outcomes.join(" "))
    };
    let waiting = count("queued") + count("waiting") + count("waiting_for_build");
    format!(
        "{ended}/{} ended{outcomes}; {} running, {waiting} waiting",
        total_jobs(run),
        count("running")
    )
}

/// How `cuttle run wait` shows its progress: on a terminal one line rewritten in place,
/// elsewhere a plain line when the counts change (at most one per look at the run) or
/// when [`PLAIN_PROGRESS_EVERY`] passed without one; nothing with --json.
#[derive(Debug)]
pub struct ProgressView {
    mode: ProgressMode,
    /// The last line written and when.
    last: Option<(String, Instant)>,
}

/// Where `cuttle run wait`'s progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A terminal: one line, rewritten.
    Terminal,
    /// A pipe or a file: plain lines.
    Plain,
    /// --json: no progress at all.
    Silent,
}

impl ProgressView {
    pub fn new(mode: ProgressMode) -> ProgressView {
        ProgressView { mode, last: None }
    }

    /// What to write for `line` at `now`, if anything.
    pub fn update(&mut self, line: &str, now: Instant) -> Option<String> {
        let due = match (&self.last, self.mode) {
            (_, ProgressMode::Silent) => false,
            (None, _) => true,
            (Some((last, _)), ProgressMode::Terminal) => last != line,
            (Some((last, at)), ProgressMode::Plain) => {
                last != line || now.duration_since(*at) >= PLAIN_PROGRESS_EVERY
            }
        };
        if !due {
            return None;
        }
        self.last = Some((line.to_owned(), now));
        Some(match self.mode {
            // Back to the line's start, the old line erased, the new one without a newline.
            ProgressMode::Terminal => format!("\r\x1b[K{line}"),
            _ => format!("{line}\n"),
        })
    }

    /// What ends the progress: the newline a rewritten line still lacks.
    pub fn finish(&self) -> &'static str {
        match (self.mode, &self.last) {
            (ProgressMode::Terminal, Some(_)) => "\n",
            _ => "",
        }
    }
}

/// Writes progress text to stdout at once. A closed pipe only stops the progress.
fn write_progress(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// The result of an ended run as text: its status and counts, then the jobs that did not
/// pass with their reasons.
pub fn result_text(detail: &v1::RunDetail, paint: Paint) -> String {
    let run = detail.run.clone().unwrap_or_default();
    let mut text = format!(
        "run {} ended {}: {} jobs, {}\n",
        run.name,
        paint.status(&run.status),
        total_jobs(&run),
        paint.counts(&run.job_counts)
    );
    let rows: Vec<Vec<String>> = detail
        .jobs
        .iter()
        .filter(|job| status_name(job.status) != "pass")
        .map(|job| {
            vec![
                job.id.to_string(),
                status_name(job.status),
                job.description.clone(),
                job.reason.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push_str("jobs that did not pass:\n");
        text.push_str(&painted_table(
            &["id", "status", "description", "reason"],
            &rows,
            paint,
            &[1],
        ));
    }
    text
}

async fn wait(context: &Context, args: RunWaitArgs) -> Result<(), Failure> {
    let name: String = RunName::parse(&args.name)?.into();
    let api = context.connect().await?;
    let started = Instant::now();
    let deadline = args
        .timeout
        .map(|seconds| started + Duration::from_secs(seconds));
    let interval = Duration::from_secs(args.interval);
    let mode = if context.json {
        ProgressMode::Silent
    } else if std::io::stdout().is_terminal() {
        ProgressMode::Terminal
    } else {
        ProgressMode::Plain
    };
    let mut view = ProgressView::new(mode);
    let mut last: Option<v1::RunDetail> = None;
    let mut unreachable_said = false;
    loop {
        let request = v1::GetRunRequest { name: name.clone() };
        match api.runs().get_run(request).await {
            Ok(answer) => {
                let detail = answer.into_inner();
                let run = detail.run.clone().unwrap_or_default();
                if let Some(text) = view.update(&progress_line(&run, context.paint), Instant::now())
                {
                    write_progress(&text);
                }
                if unreachable_said {
                    eprintln!("cuttle: cuttle-api answers again");
                    unreachable_said = false;
                }
                if has_ended(&run) {
                    write_progress(view.finish());
                    return finish_wait(context, &detail);
                }
                last = Some(detail);
            }
            Err(status) => match api.failure(status) {
                // cuttle-api restarting is no reason to stop a wait of hours: ask again.
                Failure::Unreachable { url, detail } => {
                    if !unreachable_said {
                        write_progress(view.finish());
                        eprintln!(
                            "cuttle: cuttle-api at {url} does not answer ({detail}); asking again every {} s",
                            args.interval
                        );
                        unreachable_said = true;
                    }
                }
                other => {
                    write_progress(view.finish());
                    return Err(other);
                }
            },
        }
        let now = Instant::now();
        let pause = match deadline {
            Some(deadline) if now >= deadline => {
                write_progress(view.finish());
                let run = last.as_ref().and_then(|detail| detail.run.clone());
                if context.json
                    && let Some(detail) = &last
                {
                    print_json(&RunDetailJson {
                        run: detail.run.as_ref().map(RunJson::from),
                        jobs: jobs_json(&detail.jobs),
                    })?;
                }
                return Err(Failure::WaitTimedOut {
                    run: name,
                    seconds: args.timeout.unwrap_or_default(),
                    progress: run.map_or_else(
                        || "cuttle-api did not answer".to_owned(),
                        |run| progress_line(&run, Paint::OFF),
                    ),
                });
            }
            Some(deadline) => interval.min(deadline - now),
            None => interval,
        };
        tokio::time::sleep(pause).await;
    }
}

/// Prints an ended run's result; the exit status says whether every job passed.
fn finish_wait(context: &Context, detail: &v1::RunDetail) -> Result<(), Failure> {
    let run = detail.run.clone().unwrap_or_default();
    if context.json {
        print_json(&RunDetailJson {
            run: detail.run.as_ref().map(RunJson::from),
            jobs: jobs_json(&detail.jobs),
        })?;
    } else {
        print(&result_text(detail, context.paint))?;
    }
    if run.status == "pass" {
        Ok(())
    } else {
        Err(Failure::RunNotPassed {
            run: run.name.clone(),
            status: run.status.clone(),
            counts: counts_summary(&run.job_counts),
        })
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
        let text = runs_table(&[sample_run()], Paint::OFF);
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
        let text = run_detail_text(&detail, 5_000, Paint::OFF);
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
        let text = job_detail_text(&detail, Paint::OFF);
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
        let text = job_detail_text(&detail, Paint::OFF);
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

    fn run_with(status: &str, counts: &[(&str, u32)]) -> v1::Run {
        v1::Run {
            name: "r".into(),
            status: status.into(),
            job_counts: counts
                .iter()
                .map(|(name, n)| ((*name).to_owned(), *n))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_progress_line_counts_ended_running_and_waiting_jobs() {
        let run = run_with(
            "running",
            &[
                ("pass", 10),
                ("fail", 1),
                ("dead", 1),
                ("running", 3),
                ("queued", 20),
                ("waiting", 4),
                ("waiting_for_build", 1),
            ],
        );
        assert_eq!(
            progress_line(&run, Paint::OFF),
            "12/40 ended: pass=10 fail=1 dead=1; 3 running, 25 waiting"
        );
        assert_eq!(
            progress_line(&run_with("queued", &[("queued", 2)]), Paint::OFF),
            "0/2 ended; 0 running, 2 waiting"
        );
        let painted = progress_line(&run, Paint::ON);
        assert!(painted.contains("\x1b[32mpass\x1b[0m=10"), "{painted:?}");
        assert!(painted.contains("\x1b[1;31mdead\x1b[0m=1"), "{painted:?}");
        assert!(has_ended(&run_with("fail", &[("fail", 1)])));
        assert!(!has_ended(&run_with("running", &[("running", 1)])));
    }

    #[test]
    fn a_terminal_gets_one_rewritten_line_and_a_pipe_plain_lines() {
        let start = Instant::now();
        let mut view = ProgressView::new(ProgressMode::Terminal);
        assert_eq!(
            view.update("0/2 ended", start).unwrap(),
            "\r\x1b[K0/2 ended"
        );
        assert_eq!(view.update("0/2 ended", start), None, "unchanged: nothing");
        assert_eq!(
            view.update("1/2 ended", start).unwrap(),
            "\r\x1b[K1/2 ended"
        );
        assert_eq!(view.finish(), "\n");

        let mut view = ProgressView::new(ProgressMode::Plain);
        assert_eq!(view.update("0/2 ended", start).unwrap(), "0/2 ended\n");
        assert_eq!(
            view.update("0/2 ended", start + Duration::from_secs(10)),
            None
        );
        assert_eq!(
            view.update("0/2 ended", start + Duration::from_secs(60))
                .unwrap(),
            "0/2 ended\n",
            "a minute without change: the line again"
        );
        assert_eq!(
            view.update("1/2 ended", start + Duration::from_secs(61))
                .unwrap(),
            "1/2 ended\n"
        );
        assert_eq!(view.finish(), "");

        let mut view = ProgressView::new(ProgressMode::Silent);
        assert_eq!(view.update("0/2 ended", start), None);
        assert_eq!(view.finish(), "");
    }

    #[test]
    fn the_result_lists_the_jobs_that_did_not_pass() {
        let detail = v1::RunDetail {
            run: Some(run_with("dead", &[("pass", 1), ("dead", 1)])),
            jobs: vec![
                v1::Job {
                    id: 1,
                    status: v1::JobStatus::Pass as i32,
                    ..Default::default()
                },
                v1::Job {
                    id: 2,
                    status: v1::JobStatus::Dead as i32,
                    description: "rados/basic".into(),
                    reason: "timed out".into(),
                    ..Default::default()
                },
            ],
        };
        let text = result_text(&detail, Paint::OFF);
        assert!(
            text.starts_with("run r ended dead: 2 jobs, pass=1 dead=1\n"),
            "{text}"
        );
        assert!(
            text.contains("2   dead    rados/basic  timed out"),
            "{text}"
        );
        assert!(!text.contains("\n1 "), "passed jobs are not listed: {text}");
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
