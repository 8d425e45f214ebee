//! `cuttle queue ...`: what each machine type's queue holds and who serves it (list,
//! tubes, buried), pausing or resuming it, and kicking or deleting its buried jobs,
//! through QueueService. beanstalkd is never dialled from here: cuttle-api decides what a
//! buried copy is and whether it may be kicked.
//!
//! The order of the listed jobs is the API's (dispatch order) and is never re-sorted here;
//! the only clock read is for the AGE column, and rendering takes `now` as an argument so
//! it can be tested with fixed instants.

use std::collections::BTreeMap;

use cuttle_core::{InvalidInput, JobId, MachineType};
use cuttle_proto::convert::status_name;
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::{
    QueueBuriedArgs, QueueCommand, QueueDeleteBuriedArgs, QueueKickArgs, QueueListArgs,
    QueuePauseArgs, QueueReprioritizeArgs,
};
use crate::error::Failure;
use crate::output::{
    JobJson, Paint, TubeJson, fields, jobs_json, or_dash, painted_table, print, print_json, table,
    truncated, yes_no,
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
        QueueCommand::Buried(args) => buried(context, args).await,
        QueueCommand::Kick(args) => kick(context, args).await,
        QueueCommand::DeleteBuried(args) => delete_buried(context, args).await,
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

/// Waiting jobs as the `cuttle queue list` table, in the order given (dispatch order),
/// statuses painted by `paint`.
pub fn queue_table(jobs: &[v1::Job], now_ms: i64, paint: Paint) -> String {
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
    painted_table(
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
        paint,
        &[3],
    )
}

/// When a waiting job is expected to start, from `now_ms`: `now`, `in 5m12s`, `<3d00h`
/// when that is only the latest (jobs ahead have no runtime history), or `?` when nothing
/// visible lets it start (its `waiting_for` says why).
pub fn starts(job: &v1::Job, now_ms: i64) -> String {
    match job.estimated_start_ms {
        Some(at) if at <= now_ms => "now".to_owned(),
        Some(at) if job.estimated_start_is_latest => format!("<{}", format_age(now_ms, at)),
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
    paint: Paint,
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
        format!("{header}\n{}{notes}", queue_table(jobs, now_ms, paint))
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
            context.paint,
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

/// A buried beanstalkd job as JSON: the proto's fields, its job as [`JobJson`].
#[derive(Debug, Serialize)]
pub struct BuriedJobJson<'a> {
    pub beanstalk_id: u64,
    pub priority: u32,
    pub age_s: u64,
    pub buries: u32,
    pub job: Option<JobJson<'a>>,
    pub reason: &'a str,
    pub body_first_line: &'a str,
    /// Empty when `cuttle queue kick` would put it back to ready.
    pub kick_refused: &'a str,
}

impl<'a> From<&'a v1::BuriedJob> for BuriedJobJson<'a> {
    fn from(buried: &'a v1::BuriedJob) -> Self {
        BuriedJobJson {
            beanstalk_id: buried.beanstalk_id,
            priority: buried.priority,
            age_s: buried.age_s,
            buries: buried.buries,
            job: buried.job.as_ref().map(JobJson::from),
            reason: &buried.reason,
            body_first_line: &buried.body_first_line,
            kick_refused: &buried.kick_refused,
        }
    }
}

fn buried_json(list: &[v1::BuriedJob]) -> Vec<BuriedJobJson<'_>> {
    list.iter().map(BuriedJobJson::from).collect()
}

/// What `cuttle queue buried --json` prints.
#[derive(Debug, Serialize)]
struct BuriedListJson<'a> {
    machine_type: &'a str,
    buried_total: u64,
    jobs: Vec<BuriedJobJson<'a>>,
}

/// Widest REASON cell of the buried table; the whole reason is in --json.
const REASON_WIDTH: usize = 70;

/// Buried jobs as the `cuttle queue buried` table: for a body with no cuttle record the
/// JOB/RUN/STATUS cells are `-` and its first line follows the reason.
pub fn buried_table(list: &[v1::BuriedJob], paint: Paint) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|buried| {
            let (job, run, status) = match &buried.job {
                Some(job) => (
                    job.id.to_string(),
                    job.run_name.clone(),
                    status_name(job.status),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            let reason = if buried.job.is_none() && !buried.body_first_line.is_empty() {
                format!("{} (body: {})", buried.reason, buried.body_first_line)
            } else {
                buried.reason.clone()
            };
            vec![
                buried.beanstalk_id.to_string(),
                format_age(
                    0,
                    i64::try_from(buried.age_s).unwrap_or(i64::MAX / 1000) * 1000,
                ),
                job,
                run,
                status,
                if buried.kick_refused.is_empty() {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                },
                truncated(&reason, REASON_WIDTH),
            ]
        })
        .collect();
    painted_table(
        &[
            "beanstalk_id",
            "age",
            "job",
            "run",
            "status",
            "kick",
            "reason",
        ],
        &rows,
        paint,
        &[4],
    )
}

/// The whole `cuttle queue buried` text: the table, then why some may not be kicked, and
/// what to do when beanstalkd counts more than could be listed.
pub fn buried_text(answer: &v1::ListBuriedResponse, machine_type: &str, paint: Paint) -> String {
    if answer.jobs.is_empty() && answer.buried_total == 0 {
        return format!("no buried jobs on {machine_type}\n");
    }
    let mut text = format!(
        "{} buried on {machine_type} (beanstalkd's count), {} listed\n",
        answer.buried_total,
        answer.jobs.len()
    );
    if !answer.jobs.is_empty() {
        text.push('\n');
        text.push_str(&buried_table(&answer.jobs, paint));
    }
    for buried in answer.jobs.iter().filter(|b| !b.kick_refused.is_empty()) {
        text.push_str(&format!(
            "{} is not kicked: {}\n",
            buried.beanstalk_id, buried.kick_refused
        ));
    }
    let unlisted = answer.buried_total.saturating_sub(answer.jobs.len() as u64);
    if unlisted > 0 {
        text.push_str(&format!(
            "{unlisted} more buried on {machine_type} cannot be listed: beanstalkd shows only a tube's first buried job, and cuttle has no record of these bodies (or they are older than the newest 1000 it checks); kick or delete the first to see the next (cuttle queue kick {machine_type} --all)\n"
        ));
    }
    text
}

fn buried_request(args: &QueueBuriedArgs) -> Result<v1::ListBuriedRequest, InvalidInput> {
    Ok(v1::ListBuriedRequest {
        machine_type: MachineType::parse(&args.machine_type)?.into(),
        limit: args.limit.unwrap_or(0),
    })
}

async fn buried(context: &Context, args: QueueBuriedArgs) -> Result<(), Failure> {
    let request = buried_request(&args)?;
    let machine_type = request.machine_type.clone();
    let api = context.connect().await?;
    let answer = api
        .queue()
        .list_buried(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&BuriedListJson {
            machine_type: &machine_type,
            buried_total: answer.buried_total,
            jobs: buried_json(&answer.jobs),
        })
    } else {
        print(&buried_text(&answer, &machine_type, context.paint))
    }
}

/// The beanstalkd id and job id a kick or delete names (0 for the one not given).
fn buried_target(
    beanstalk_id: Option<u64>,
    job_id: Option<&str>,
) -> Result<(u64, i64), InvalidInput> {
    if beanstalk_id == Some(0) {
        return Err(InvalidInput::new(
            "beanstalk id",
            "0 is not a beanstalkd id; they start at 1 (see cuttle queue buried TYPE)",
        ));
    }
    let job_id = job_id.map(JobId::parse).transpose()?.map_or(0, |id| id.0);
    Ok((beanstalk_id.unwrap_or(0), job_id))
}

fn kick_request(args: &QueueKickArgs) -> Result<v1::KickBuriedRequest, InvalidInput> {
    let (beanstalk_id, job_id) = buried_target(args.beanstalk_id, args.job_id.as_deref())?;
    Ok(v1::KickBuriedRequest {
        machine_type: MachineType::parse(&args.machine_type)?.into(),
        beanstalk_id,
        job_id,
        all: args.all,
    })
}

/// One buried job in words: `beanstalkd job 12 (job 42 of run r)`.
fn buried_words(buried: &v1::BuriedJob) -> String {
    match &buried.job {
        Some(job) => format!(
            "beanstalkd job {} (job {} of run {})",
            buried.beanstalk_id, job.id, job.run_name
        ),
        None => format!("beanstalkd job {}", buried.beanstalk_id),
    }
}

/// What `cuttle queue kick` prints: a line per kicked job, then the ones left and why.
pub fn kick_text(answer: &v1::KickBuriedResponse, machine_type: &str) -> String {
    let mut text = String::new();
    for buried in &answer.kicked {
        text.push_str(&format!("kicked {} back to ready\n", buried_words(buried)));
    }
    for buried in &answer.refused {
        text.push_str(&format!(
            "left {} buried: {}\n",
            buried_words(buried),
            buried.kick_refused
        ));
    }
    if answer.unseen > 0 {
        text.push_str(&format!(
            "{} more buried on {machine_type} could not be seen (behind one left buried); delete that one to reach them\n",
            answer.unseen
        ));
    }
    if text.is_empty() {
        text = format!("nothing to kick: no buried jobs on {machine_type}\n");
    }
    text
}

/// What `cuttle queue kick --json` prints.
#[derive(Debug, Serialize)]
struct KickJson<'a> {
    kicked: Vec<BuriedJobJson<'a>>,
    refused: Vec<BuriedJobJson<'a>>,
    unseen: u64,
}

async fn kick(context: &Context, args: QueueKickArgs) -> Result<(), Failure> {
    let request = kick_request(&args)?;
    let machine_type = request.machine_type.clone();
    let api = context.connect().await?;
    let answer = api
        .queue()
        .kick_buried(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&KickJson {
            kicked: buried_json(&answer.kicked),
            refused: buried_json(&answer.refused),
            unseen: answer.unseen,
        })
    } else {
        print(&kick_text(&answer, &machine_type))
    }
}

fn delete_buried_request(
    args: &QueueDeleteBuriedArgs,
) -> Result<v1::DeleteBuriedRequest, InvalidInput> {
    let (beanstalk_id, job_id) = buried_target(args.beanstalk_id, args.job_id.as_deref())?;
    Ok(v1::DeleteBuriedRequest {
        machine_type: MachineType::parse(&args.machine_type)?.into(),
        beanstalk_id,
        job_id,
    })
}

async fn delete_buried(context: &Context, args: QueueDeleteBuriedArgs) -> Result<(), Failure> {
    let request = delete_buried_request(&args)?;
    let api = context.connect().await?;
    let deleted = api
        .queue()
        .delete_buried(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&BuriedJobJson::from(&deleted))
    } else {
        let requeued = match &deleted.job {
            Some(job)
                if cuttle_proto::convert::status_from_proto(job.status)
                    .is_some_and(|status| !status.is_terminal()) =>
            {
                format!(
                    "; job {} is put on its tube {} again",
                    job.id, job.machine_type
                )
            }
            _ => String::new(),
        };
        print(&format!("deleted {}{requeued}", buried_words(&deleted)))
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
        let text = queue_table(&jobs, NOW_MS, Paint::OFF);
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
    fn an_estimate_that_is_only_the_latest_says_so() {
        let job = |at: Option<i64>, latest: bool| v1::Job {
            estimated_start_ms: at,
            estimated_start_is_latest: latest,
            ..Default::default()
        };
        assert_eq!(
            starts(&job(Some(NOW_MS + 90_000), false), NOW_MS),
            "in 1m30s"
        );
        assert_eq!(starts(&job(Some(NOW_MS + 90_000), true), NOW_MS), "<1m30s");
        assert_eq!(starts(&job(Some(NOW_MS - 1), true), NOW_MS), "now");
        assert_eq!(starts(&job(None, false), NOW_MS), "?");
    }

    #[test]
    fn long_descriptions_are_cut() {
        let long =
            "rados/thrash/{clusters/fixed-2 msgr-failures/few objectstore/bluestore}".repeat(3);
        let text = queue_table(&[waiting_job(1, 1, 0, &long)], NOW_MS, Paint::OFF);
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
        let text = queue_text(&answer, "smithi", 1000, NOW_MS, Paint::OFF);
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
        let text = queue_text(&answer, "mira", 1000, NOW_MS, Paint::OFF);
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
            queue_text(&answer, "smithi", 2, NOW_MS, Paint::OFF)
                .contains("waiting:     2 (the first 2; see more with --limit)")
        );
        assert!(queue_text(&answer, "smithi", 3, NOW_MS, Paint::OFF).contains("waiting:     2\n"));
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
