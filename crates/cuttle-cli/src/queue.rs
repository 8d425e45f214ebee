//! `cuttle queue ...`: what each machine type's queue holds and who serves it (list,
//! tubes), and pausing or resuming it, through QueueService.
//!
//! The order of the listed jobs is the API's (dispatch order) and is never re-sorted here;
//! the only clock read is for the AGE column, and rendering takes `now` as an argument so
//! it can be tested with fixed instants.

use std::collections::BTreeMap;

use cuttle_core::{InvalidInput, MachineType};
use cuttle_proto::convert::status_name;
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{QueueCommand, QueueListArgs, QueuePauseArgs, QueueReprioritizeArgs};
use crate::error::Failure;
use crate::output::{
    JobJson, TubeJson, fields, jobs_json, or_dash, print, print_json, table, truncated, yes_no,
};
use crate::schedule::owner_or_user;
use crate::time::{format_age, format_unix_millis, now_unix_millis};

/// How many jobs the API lists when `--limit` is absent (ListQueueRequest's 0).
const API_DEFAULT_LIMIT: u32 = 1000;

/// Widest DESCRIPTION cell: teuthology descriptions (facet paths) run to hundreds of
/// characters, and the table must stay one line per job.
const DESCRIPTION_WIDTH: usize = 60;

/// Runs one `cuttle queue` subcommand.
pub async fn run(context: &Context, command: QueueCommand) -> Result<(), Failure> {
    match command {
        QueueCommand::List(args) => list(context, args).await,
        QueueCommand::Pause(args) => set_paused(context, args, true).await,
        QueueCommand::Resume(args) => set_paused(context, args, false).await,
        QueueCommand::Tubes => tubes(context).await,
        QueueCommand::Reprioritize(args) => reprioritize(context, args).await,
    }
}

fn list_request(args: &QueueListArgs) -> Result<v1::ListQueueRequest, InvalidInput> {
    Ok(v1::ListQueueRequest {
        machine_type: MachineType::parse(&args.machine_type)?.into(),
        // 0 asks for the API's default.
        limit: args.limit.unwrap_or(0),
    })
}

/// The tube's pause state in words.
fn pause_state(tube: &v1::Tube) -> String {
    if !tube.paused {
        return "dispatching".to_owned();
    }
    let by = if tube.paused_by.is_empty() {
        "someone"
    } else {
        &tube.paused_by
    };
    let since = tube
        .paused_at_ms
        .map(|at| format!(" since {}", format_unix_millis(at)))
        .unwrap_or_default();
    format!("paused by {by}{since}: no new jobs will be dispatched; running jobs continue")
}

/// The dispatcher holding the tube's lease, or `no active dispatcher`.
fn dispatcher_state(tube: &v1::Tube) -> String {
    if tube.lease_holder.is_empty() {
        return "no active dispatcher".to_owned();
    }
    let mut text = tube.lease_holder.clone();
    if !tube.lease_host.is_empty() {
        text.push_str(&format!(" on {} (pid {})", tube.lease_host, tube.lease_pid));
    }
    if let Some(expires) = tube.lease_expires_at_ms {
        text.push_str(&format!(", lease until {}", format_unix_millis(expires)));
    }
    text
}

/// beanstalkd's own counts for the tube, as `ready=3 reserved=1 buried=0`.
fn beanstalk_counts(stats: &std::collections::HashMap<String, String>) -> String {
    let counts: Vec<String> = [
        ("ready", "current-jobs-ready"),
        ("reserved", "current-jobs-reserved"),
        ("buried", "current-jobs-buried"),
    ]
    .iter()
    .filter_map(|(label, key)| stats.get(*key).map(|n| format!("{label}={n}")))
    .collect();
    if counts.is_empty() {
        // The API leaves the map empty when beanstalkd is down, and beanstalkd knows no
        // tube nothing was ever put on.
        "no counts (beanstalkd unreachable, or nothing was ever put on this tube)".to_owned()
    } else {
        counts.join(" ")
    }
}

/// Waiting jobs as the `cuttle queue list` table, in the order given (dispatch order).
pub fn queue_table(jobs: &[v1::Job], now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .enumerate()
        .map(|(index, job)| {
            vec![
                (index + 1).to_string(),
                job.id.to_string(),
                job.run_name.clone(),
                status_name(job.status),
                job.priority.to_string(),
                job.n_nodes.to_string(),
                format_age(job.created_at_ms, now_ms),
                starts(job, now_ms),
                truncated(&job.description, DESCRIPTION_WIDTH),
            ]
        })
        .collect();
    table(
        &[
            "#",
            "job",
            "run",
            "status",
            "priority",
            "nodes",
            "age",
            "starts",
            "description",
        ],
        &rows,
    )
}

/// When a waiting job is expected to start, from `now_ms`: `now`, `in 5m12s`, or `?` when
/// nothing visible lets it start (its `waiting_for` says why).
pub fn starts(job: &v1::Job, now_ms: i64) -> String {
    match job.estimated_start_ms {
        Some(at) if at <= now_ms => "now".to_owned(),
        Some(at) => format!("in {}", format_age(now_ms, at)),
        None => "?".to_owned(),
    }
}

/// The whole `cuttle queue list` text: the tube's state, then its waiting jobs. `limit` is
/// the most jobs that were asked for, to say when the list may be cut short.
pub fn queue_text(
    answer: &v1::ListQueueResponse,
    machine_type: &str,
    limit: u32,
    now_ms: i64,
) -> String {
    let tube = answer.tube.clone().unwrap_or_default();
    let jobs = &answer.jobs;
    let waiting = if jobs.len() as u64 >= u64::from(limit) {
        format!("{} (the first {limit}; see more with --limit)", jobs.len())
    } else {
        jobs.len().to_string()
    };
    let header = fields(&[
        ("queue", machine_type.to_owned()),
        ("state", pause_state(&tube)),
        ("dispatcher", dispatcher_state(&tube)),
        ("beanstalkd", beanstalk_counts(&answer.beanstalk_stats)),
        ("waiting", waiting),
    ]);
    if jobs.is_empty() {
        format!("{header}\nno jobs waiting on {machine_type}\n")
    } else {
        // Why each job waits, under the table (the estimates assume the running jobs end
        // as estimated and nothing more urgent arrives).
        let notes: String = jobs
            .iter()
            .filter(|job| !job.waiting_for.is_empty())
            .map(|job| format!("job {} waits: {}\n", job.id, job.waiting_for))
            .collect();
        format!("{header}\n{}{notes}", queue_table(jobs, now_ms))
    }
}

/// What `cuttle queue list --json` prints; beanstalkd's counts with sorted keys so the
/// output is stable.
#[derive(Debug, Serialize)]
struct QueueJson<'a> {
    tube: Option<TubeJson<'a>>,
    jobs: Vec<JobJson<'a>>,
    beanstalk_stats: BTreeMap<&'a str, &'a str>,
}

async fn list(context: &Context, args: QueueListArgs) -> Result<(), Failure> {
    let request = list_request(&args)?;
    let machine_type = request.machine_type.clone();
    let limit = args.limit.unwrap_or(API_DEFAULT_LIMIT);
    let api = context.connect().await?;
    let answer = api
        .queue()
        .list_queue(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&QueueJson {
            tube: answer.tube.as_ref().map(TubeJson::from),
            jobs: jobs_json(&answer.jobs),
            beanstalk_stats: answer
                .beanstalk_stats
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect(),
        })
    } else {
        print(&queue_text(
            &answer,
            &machine_type,
            limit,
            now_unix_millis(),
        ))
    }
}

/// The line `cuttle queue pause` / `resume` prints, from the tube as the API left it.
pub fn paused_line(tube: &v1::Tube) -> String {
    if tube.paused {
        format!(
            "queue {} paused by {}: no new jobs will be dispatched; running jobs continue",
            tube.machine_type, tube.paused_by
        )
    } else {
        format!("queue {} resumed", tube.machine_type)
    }
}

fn paused_request(
    args: &QueuePauseArgs,
    paused: bool,
    user: Option<&str>,
) -> Result<v1::SetQueuePausedRequest, InvalidInput> {
    Ok(v1::SetQueuePausedRequest {
        machine_type: MachineType::parse(&args.machine_type)?.into(),
        paused,
        owner: owner_or_user(args.owner.as_deref(), user)?,
    })
}

async fn set_paused(context: &Context, args: QueuePauseArgs, paused: bool) -> Result<(), Failure> {
    let user = std::env::var("USER").ok();
    let request = paused_request(&args, paused, user.as_deref())?;
    let api = context.connect().await?;
    let tube = api
        .queue()
        .set_queue_paused(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&TubeJson::from(&tube))
    } else {
        print(&paused_line(&tube))
    }
}

fn reprioritize_request(
    args: &QueueReprioritizeArgs,
    user: Option<&str>,
) -> Result<v1::ReprioritizeRequest, InvalidInput> {
    if args.job_id <= 0 {
        return Err(InvalidInput::new(
            "job id",
            format!("{} is not a job id; job ids are positive", args.job_id),
        ));
    }
    Ok(v1::ReprioritizeRequest {
        job_id: args.job_id,
        priority: cuttle_core::Priority::new(args.priority)?.get(),
        owner: owner_or_user(args.owner.as_deref(), user)?,
    })
}

async fn reprioritize(context: &Context, args: QueueReprioritizeArgs) -> Result<(), Failure> {
    let user = std::env::var("USER").ok();
    let request = reprioritize_request(&args, user.as_deref())?;
    let api = context.connect().await?;
    let job = api
        .queue()
        .reprioritize(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&JobJson::from(&job))
    } else {
        let copy = job
            .beanstalk_id
            .map(|id| format!(", beanstalkd copy {id}"))
            .unwrap_or_default();
        print(&format!(
            "job {} of run {} now has priority {} ({}{copy})",
            job.id,
            job.run_name,
            job.priority,
            status_name(job.status)
        ))
    }
}

/// Tubes as the `cuttle queue tubes` table.
pub fn tubes_table(tubes: &[v1::Tube]) -> String {
    let rows: Vec<Vec<String>> = tubes
        .iter()
        .map(|tube| {
            vec![
                tube.machine_type.clone(),
                yes_no(tube.paused),
                tube.paused_by.clone(),
                tube.lease_holder.clone(),
                tube.lease_host.clone(),
                // A pid of 0 means no live lease.
                or_dash((tube.lease_pid != 0).then_some(tube.lease_pid)),
                or_dash(tube.lease_expires_at_ms.map(format_unix_millis)),
            ]
        })
        .collect();
    table(
        &[
            "tube",
            "paused",
            "paused by",
            "dispatcher",
            "host",
            "pid",
            "lease until",
        ],
        &rows,
    )
}

async fn tubes(context: &Context) -> Result<(), Failure> {
    let api = context.connect().await?;
    let tubes = api
        .queue()
        .list_tubes(v1::ListTubesRequest {})
        .await
        .map_err(|status| api.failure(status))?
        .into_inner()
        .tubes;
    if context.json {
        print_json(&tubes.iter().map(TubeJson::from).collect::<Vec<_>>())
    } else {
        print(&tubes_table(&tubes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// 2026-11-23T10:00:00Z.
    const NOW_MS: i64 = 1_795_428_000_000;

    fn queue_command(args: &[&str]) -> QueueCommand {
        let cli = Cli::try_parse_from(["cuttle", "queue"].into_iter().chain(args.iter().copied()))
            .unwrap();
        match cli.command {
            Command::Queue(command) => command,
            other => panic!("not queue: {other:?}"),
        }
    }

    fn waiting_job(id: i64, priority: u32, ago_ms: i64, description: &str) -> v1::Job {
        v1::Job {
            id,
            run_name: "alice-run".into(),
            status: v1::JobStatus::Queued as i32,
            priority,
            n_nodes: 2,
            created_at_ms: NOW_MS - ago_ms,
            description: description.into(),
            ..Default::default()
        }
    }

    fn served_tube() -> v1::Tube {
        v1::Tube {
            machine_type: "smithi".into(),
            lease_holder: "dispatcher-7f3a".into(),
            lease_host: "teuthology01".into(),
            lease_pid: 4242,
            lease_expires_at_ms: Some(NOW_MS + 30_000),
            ..Default::default()
        }
    }

    #[test]
    fn the_table_keeps_dispatch_order_and_shows_ages() {
        let jobs = [
            v1::Job {
                estimated_start_ms: Some(NOW_MS + 90_000),
                ..waiting_job(12, 10, 312_000, "rados/basic")
            },
            waiting_job(3, 1000, 7_380_000, ""),
        ];
        let text = queue_table(&jobs, NOW_MS);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "#",
                "JOB",
                "RUN",
                "STATUS",
                "PRIORITY",
                "NODES",
                "AGE",
                "STARTS",
                "DESCRIPTION"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "1",
                "12",
                "alice-run",
                "queued",
                "10",
                "2",
                "5m12s",
                "in",
                "1m30s",
                "rados/basic"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "2",
                "3",
                "alice-run",
                "queued",
                "1000",
                "2",
                "2h03m",
                "?",
                "-"
            ]
        );
    }

    #[test]
    fn long_descriptions_are_cut() {
        let long =
            "rados/thrash/{clusters/fixed-2 msgr-failures/few objectstore/bluestore}".repeat(3);
        let text = queue_table(&[waiting_job(1, 1, 0, &long)], NOW_MS);
        let row = text.lines().nth(1).unwrap();
        assert!(row.ends_with('…'), "{row}");
        assert!(row.chars().count() < long.chars().count(), "{row}");
    }

    #[test]
    fn the_header_says_who_dispatches_and_what_beanstalkd_holds() {
        let answer = v1::ListQueueResponse {
            tube: Some(served_tube()),
            jobs: vec![waiting_job(1, 1, 0, "")],
            beanstalk_stats: [
                ("current-jobs-ready", "1"),
                ("current-jobs-reserved", "0"),
                ("current-jobs-buried", "2"),
                ("name", "smithi"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        };
        let text = queue_text(&answer, "smithi", 1000, NOW_MS);
        assert!(text.contains("queue:       smithi\n"), "{text}");
        assert!(text.contains("state:       dispatching\n"), "{text}");
        assert!(
            text.contains(
                "dispatcher:  dispatcher-7f3a on teuthology01 (pid 4242), lease until \
                 2026-11-23T10:00:30Z\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("beanstalkd:  ready=1 reserved=0 buried=2\n"),
            "{text}"
        );
        assert!(text.contains("waiting:     1\n"), "{text}");
        assert!(text.contains("\n\n#  JOB  RUN"), "{text}");
    }

    #[test]
    fn an_empty_paused_queue_says_so() {
        let answer = v1::ListQueueResponse {
            tube: Some(v1::Tube {
                machine_type: "mira".into(),
                paused: true,
                paused_by: "alice".into(),
                paused_at_ms: Some(NOW_MS),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = queue_text(&answer, "mira", 1000, NOW_MS);
        assert!(
            text.contains(
                "state:       paused by alice since 2026-11-23T10:00:00Z: no new jobs will be \
                 dispatched; running jobs continue\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("dispatcher:  no active dispatcher\n"),
            "{text}"
        );
        assert!(text.contains("beanstalkd:  no counts"), "{text}");
        assert!(text.ends_with("\nno jobs waiting on mira\n"), "{text}");
        assert!(!text.contains("PRIORITY"), "{text}");
    }

    #[test]
    fn a_full_page_points_at_limit() {
        let answer = v1::ListQueueResponse {
            tube: Some(served_tube()),
            jobs: vec![waiting_job(1, 1, 0, ""), waiting_job(2, 1, 0, "")],
            ..Default::default()
        };
        assert!(
            queue_text(&answer, "smithi", 2, NOW_MS)
                .contains("waiting:     2 (the first 2; see more with --limit)")
        );
        assert!(queue_text(&answer, "smithi", 3, NOW_MS).contains("waiting:     2\n"));
    }

    #[test]
    fn pause_and_resume_lines() {
        let mut tube = v1::Tube {
            machine_type: "smithi".into(),
            paused: true,
            paused_by: "alice".into(),
            ..Default::default()
        };
        assert_eq!(
            paused_line(&tube),
            "queue smithi paused by alice: no new jobs will be dispatched; running jobs continue"
        );
        tube.paused = false;
        tube.paused_by.clear();
        assert_eq!(paused_line(&tube), "queue smithi resumed");
    }

    #[test]
    fn requests_are_validated_and_the_owner_defaults_to_user() {
        let QueueCommand::List(args) = queue_command(&["list", "smithi", "--limit", "5"]) else {
            panic!()
        };
        let request = list_request(&args).unwrap();
        assert_eq!(
            (request.machine_type.as_str(), request.limit),
            ("smithi", 5)
        );
        let QueueCommand::List(args) = queue_command(&["list", "smithi/1"]) else {
            panic!()
        };
        assert_eq!(list_request(&args).unwrap_err().field, "machine type");

        let QueueCommand::Pause(args) = queue_command(&["pause", "smithi"]) else {
            panic!()
        };
        let request = paused_request(&args, true, Some("carol")).unwrap();
        assert!(request.paused);
        assert_eq!(request.owner, "carol");
        let QueueCommand::Resume(args) = queue_command(&["resume", "smithi", "--owner", "bob"])
        else {
            panic!()
        };
        let request = paused_request(&args, false, Some("carol")).unwrap();
        assert!(!request.paused);
        assert_eq!(request.owner, "bob");
    }

    #[test]
    fn tubes_table_shows_pause_and_lease() {
        let idle = v1::Tube {
            machine_type: "mira".into(),
            paused: true,
            paused_by: "alice".into(),
            ..Default::default()
        };
        let text = tubes_table(&[served_tube(), idle]);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[1],
            [
                "smithi",
                "no",
                "-",
                "dispatcher-7f3a",
                "teuthology01",
                "4242",
                "2026-11-23T10:00:30Z"
            ]
        );
        assert_eq!(lines[2], ["mira", "yes", "alice", "-", "-", "-", "-"]);
    }

    #[test]
    fn reprioritize_requests_are_checked_before_the_call() {
        let args = |job_id: i64, priority: i64| QueueReprioritizeArgs {
            job_id,
            priority,
            owner: None,
        };
        let request = reprioritize_request(&args(7, 10), Some("carol")).unwrap();
        assert_eq!(
            (request.job_id, request.priority, request.owner.as_str()),
            (7, 10, "carol")
        );
        let error = reprioritize_request(&args(7, 70_000), None).unwrap_err();
        assert!(error.to_string().contains("priority"), "{error}");
        let error = reprioritize_request(&args(0, 10), None).unwrap_err();
        assert!(error.to_string().contains("job id"), "{error}");
    }
}
