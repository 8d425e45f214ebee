//! Start-time estimates for waiting jobs (`cuttle queue list`, `cuttle run show`, the
//! status page): the policy's own [`cuttle_policy::forecast`] over the machine type's
//! queue, its running jobs and the runtime history, as the dispatcher would plan them.
//!
//! The dispatcher plans over the jobs it holds (its window); the forecast plans over the
//! whole queue (up to [`QUEUE_LIMIT`] jobs) with the same policy, the same estimates and
//! the same lab, so the two agree whenever the window holds the head of the queue. Jobs
//! are timed with their likely runtimes (the median of their description's history), not
//! the padded estimates the policy must plan with.

use std::collections::HashMap;

use tonic::Status;

use cuttle_core::{Job, JobId, JobStatus, MachineType, UnixMillis};
use cuttle_db::PlanData;
use cuttle_policy::{QueuedJob, Snapshot, Wait};

use crate::App;

/// At most this many waiting jobs are forecast per machine type (most urgent base
/// priority first); jobs past it are shown without an estimate.
pub const QUEUE_LIMIT: i64 = 2000;

/// The time limit of a job that sets none: the dispatcher's default `max_job_time_s`.
pub fn default_time_limit_ms() -> i64 {
    let seconds = cuttle_runtime::lab::LabConfig::default().max_job_time_s;
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// A waiting job's estimate, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Its place in dispatch order (0: next).
    pub position: usize,
    /// When it should start; `None` when nothing visible now lets it.
    pub start: Option<UnixMillis>,
    /// `start` is an upper bound: a job ahead has no runtime history and was timed at its
    /// time limit.
    pub at_latest: bool,
    /// Why it waits, in words.
    pub why: String,
}

/// The runtime history as the policy's estimator keeps it.
pub fn estimator(history: &HashMap<String, Vec<i64>>) -> cuttle_policy::Estimator {
    let mut estimator = cuttle_policy::Estimator::new();
    for (description, runtimes) in history {
        // Oldest first, so the estimator's window keeps the newest.
        for runtime in runtimes.iter().rev() {
            estimator.record(description, *runtime);
        }
    }
    estimator
}

/// A job's time limit in milliseconds, or `default_ms` when it sets none.
pub fn time_limit_ms(job: &Job, default_ms: i64) -> i64 {
    job.spec
        .time_limit
        .map_or(default_ms, |limit| i64::from(limit.seconds()) * 1000)
}

/// How long a machine type's forecast is reused: listing a queue many times a second
/// (a page reloading, a script polling) costs one forecast, and estimates a second old
/// are as good as new ones.
pub const REUSE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The forecasts made in the last [`REUSE_FOR`], by machine type.
#[derive(Debug, Default)]
pub struct Cache {
    made: std::sync::Mutex<HashMap<MachineType, (std::time::Instant, Estimates)>>,
}

/// Estimates by job id, shared between the callers of one forecast.
pub type Estimates = std::sync::Arc<HashMap<JobId, Estimate>>;

impl Cache {
    fn get(&self, machine_type: &MachineType) -> Option<Estimates> {
        let made = self.made.lock().expect("forecast cache lock");
        made.get(machine_type)
            .filter(|(at, _)| at.elapsed() < REUSE_FOR)
            .map(|(_, estimates)| estimates.clone())
    }

    fn put(&self, machine_type: MachineType, estimates: Estimates) {
        let mut made = self.made.lock().expect("forecast cache lock");
        made.retain(|_, (at, _)| at.elapsed() < REUSE_FOR);
        made.insert(machine_type, (std::time::Instant::now(), estimates));
    }
}

/// Estimates for every waiting job of `machine_type` the forecast covers, by job id.
pub async fn of_machine_type(app: &App, machine_type: MachineType) -> Result<Estimates, Status> {
    if let Some(estimates) = app.forecasts().get(&machine_type) {
        return Ok(estimates);
    }
    let estimates = std::sync::Arc::new(forecast_now(app, machine_type.clone()).await?);
    app.forecasts().put(machine_type, estimates.clone());
    Ok(estimates)
}

async fn forecast_now(
    app: &App,
    machine_type: MachineType,
) -> Result<HashMap<JobId, Estimate>, Status> {
    let at = crate::now();
    let (data, tube, (_total, up)) = app
        .db(move |store| {
            Ok((
                store.queue_plan_data(&machine_type, QUEUE_LIMIT)?,
                store.get_tube(&machine_type, at)?,
                store.node_counts(&machine_type)?,
            ))
        })
        .await?;
    let policy = app.settings().policy.policy;
    Ok(estimate(
        &data,
        up,
        tube.paused,
        &policy,
        at,
        default_time_limit_ms(),
    ))
}

/// Estimates for many machine types at once (those of `jobs` that wait).
pub async fn of_jobs(app: &App, jobs: &[Job]) -> Result<HashMap<JobId, Estimate>, Status> {
    let mut types: Vec<MachineType> = jobs
        .iter()
        .filter(|job| matches!(job.status, JobStatus::Queued | JobStatus::Waiting))
        .map(|job| job.spec.machine_type.clone())
        .collect();
    types.sort_unstable();
    types.dedup();
    let mut all = HashMap::new();
    for machine_type in types {
        let estimates = of_machine_type(app, machine_type).await?;
        all.extend(estimates.iter().map(|(id, e)| (*id, e.clone())));
    }
    Ok(all)
}

/// The forecast itself, pure: `up` nodes of the machine type are up; a `paused` queue
/// starts nothing until it is resumed.
pub fn estimate(
    data: &PlanData,
    up: u32,
    paused: bool,
    policy: &cuttle_policy::PolicyConfig,
    now: UnixMillis,
    default_limit_ms: i64,
) -> HashMap<JobId, Estimate> {
    let estimator = estimator(&data.history);
    let queued: Vec<QueuedJob> = data
        .window
        .iter()
        .map(|job| {
            let limit = time_limit_ms(job, default_limit_ms);
            crate::aging::as_policy(job)
                .timed(estimator.estimate(&job.spec.description, limit), limit)
        })
        .collect();
    let running = data
        .running
        .iter()
        .map(|job| {
            let limit = time_limit_ms(job, default_limit_ms);
            let held = data
                .releasing_nodes
                .get(&job.id)
                .copied()
                .unwrap_or(job.spec.n_nodes.get());
            cuttle_policy::running_job(
                u64::try_from(job.id.0).unwrap_or(0),
                held,
                job.started_at.map(|at| at.0),
                estimator.estimate(&job.spec.description, limit),
                limit,
                job.status.is_terminal(),
                now.0,
            )
        })
        .collect();
    let snapshot = Snapshot {
        now: now.0,
        total_nodes: data.total_nodes,
        free_nodes: data.free_nodes,
        queued,
        running,
    };
    let likely_of =
        |job: &Job| estimator.likely(&job.spec.description, time_limit_ms(job, default_limit_ms));
    let likely = cuttle_policy::Likely {
        runtime_ms: data
            .window
            .iter()
            .filter_map(|job| Some((u64::try_from(job.id.0).unwrap_or(0), likely_of(job)?)))
            .collect(),
        // An ended job's nodes come back now; a running one's when its history says.
        ends_at: data
            .running
            .iter()
            .filter_map(|job| {
                let at = if job.status.is_terminal() {
                    now.0
                } else {
                    job.started_at?.0 + likely_of(job)?
                };
                Some((u64::try_from(job.id.0).unwrap_or(0), at))
            })
            .collect(),
    };
    let usable = up.saturating_sub(policy.held_back_nodes);
    let n_nodes: HashMap<u64, u32> = snapshot
        .queued
        .iter()
        .map(|job| (job.id, job.n_nodes))
        .collect();
    cuttle_policy::forecast(&snapshot, policy, usable, &likely)
        .into_iter()
        .map(|forecast| {
            let id = JobId(i64::try_from(forecast.job).unwrap_or(i64::MAX));
            let n_nodes = n_nodes.get(&forecast.job).copied().unwrap_or(0);
            let why = match &forecast.wait {
                _ if paused => "queue paused (`cuttle queue resume` starts it again)".to_owned(),
                Wait::NodesDown { .. } | Wait::NeverFits => cuttle_core::node::waiting_for_nodes(
                    n_nodes,
                    data.total_nodes,
                    up,
                    policy.held_back_nodes,
                )
                .unwrap_or_else(|| forecast.wait.to_string()),
                Wait::Behind { ahead } => format!("behind job {ahead}, first in line"),
                other => other.to_string(),
            };
            let start = if paused { None } else { forecast.start };
            (
                id,
                Estimate {
                    position: forecast.position,
                    start: start.map(UnixMillis),
                    at_latest: forecast.at_latest,
                    why,
                },
            )
        })
        .collect()
}

/// Fills `estimated_start_ms` and `waiting_for` of the shown jobs that wait.
pub fn annotate(shown: &mut [cuttle_proto::v1::Job], estimates: &HashMap<JobId, Estimate>) {
    for job in shown {
        if let Some(estimate) = estimates.get(&JobId(job.id)) {
            job.estimated_start_ms = estimate.start.map(|at| at.0);
            job.estimated_start_is_latest = estimate.at_latest && estimate.start.is_some();
            job.waiting_for.clone_from(&estimate.why);
        }
    }
}
