//! RunService: scheduling runs, showing runs and jobs, status changes and heartbeats.
//!
//! Scheduling validates every job and renders every body before anything is written; the
//! run and its jobs are then recorded in one transaction and put on beanstalkd (see
//! `enqueue` for what happens when a put fails).

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use cuttle_core::auth::{Action, Caller};
use cuttle_core::suite::SuitePins;
use cuttle_core::{
    InvalidInput, Job, JobId, JobSpec, JobStatus, MachineType, NodeCount, NodeName, Owner,
    Priority, RunName, RunSpec, RunStatus, TimeLimit,
};
use cuttle_db::RunFilter;
use cuttle_proto::convert::{
    event_to_proto, job_to_proto, run_to_proto, status_from_proto, status_to_proto,
};
use cuttle_proto::v1::run_service_server::RunService;
use cuttle_proto::v1::{
    self, CreateRunRequest, CreateRunResponse, GetJobRequest, GetRunRequest, HeartbeatRequest,
    HeartbeatResponse, JobDetail, KillRequest, KillResponse, ListRunsRequest, ListRunsResponse,
    ReportPrepareRequest, ReportPrepareResponse, RunDetail, UpdateJobStatusRequest,
};
use cuttle_queue::JobConfig;
use cuttle_queue::codec::{RenderInput, render};

use super::{job_id, optional, required, text};
use crate::{App, errors, now, observe};

/// Most jobs one CreateRun may carry; teuthology-suite refuses more than 500 by default.
pub const MAX_JOBS_PER_RUN: usize = 10_000;

#[derive(Debug, Clone)]
pub struct RunApi {
    app: App,
}

/// Parses each distinct job config of a CreateRun once (under the YAML budget) and
/// says which one each job uses: a suite of N copies sends the same text N times.
#[allow(
    clippy::type_complexity,
    reason = "a private tuple handed straight back"
)]
fn parse_configs(
    request: CreateRunRequest,
) -> Result<(CreateRunRequest, Vec<JobConfig>, Vec<usize>), Status> {
    let total = request.jobs.len();
    let mut distinct: Vec<JobConfig> = Vec::new();
    let mut config_of: Vec<usize> = Vec::with_capacity(total);
    {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (index, job) in request.jobs.iter().enumerate() {
            let slot = match seen.get(job.config_yaml.as_str()) {
                Some(&slot) => slot,
                None => {
                    let config = JobConfig::parse(&job.config_yaml)
                        .map_err(|e| in_job(index, total, errors::invalid(e)))?;
                    distinct.push(config);
                    seen.insert(&job.config_yaml, distinct.len() - 1);
                    distinct.len() - 1
                }
            };
            config_of.push(slot);
        }
    }
    Ok((request, distinct, config_of))
}

/// A report a supervisor sends about its job, naming itself.
trait SupervisorReport {
    fn job(&self) -> i64;
    /// The reporting supervisor's pid and host, when it names them.
    fn supervisor(&self) -> (Option<u32>, Option<&str>);
}

macro_rules! supervisor_report {
    ($($request:ty),*) => {$(
        impl SupervisorReport for $request {
            fn job(&self) -> i64 {
                self.job_id
            }
            fn supervisor(&self) -> (Option<u32>, Option<&str>) {
                (self.supervisor_pid, self.supervisor_host.as_deref())
            }
        }
    )*};
}

supervisor_report!(
    UpdateJobStatusRequest,
    HeartbeatRequest,
    ReportPrepareRequest
);

impl RunApi {
    pub fn new(app: App) -> RunApi {
        RunApi { app }
    }
}

/// Picks the request's value when given, else the config's.
fn or_config(given: &str, config: &JobConfig, key: &'static str) -> Result<String, Status> {
    if !given.trim().is_empty() {
        return Ok(given.trim().to_owned());
    }
    Ok(config
        .string(key)
        .map_err(errors::invalid)?
        .unwrap_or_default())
}

/// Where in the request a job is, for error messages: `job 3 of 50: …`.
fn in_job(index: usize, total: usize, status: Status) -> Status {
    if total == 1 {
        return status;
    }
    Status::new(
        status.code(),
        format!("job {} of {total}: {}", index + 1, status.message()),
    )
}

/// Validates one requested job against its config; returns the spec and the config.
fn job_spec(request: &v1::JobSpec, config: &JobConfig) -> Result<JobSpec, Status> {
    let invalid = errors::invalid;
    let machine_type = or_config(&request.machine_type, config, "machine_type")?;
    let machine_type = required(
        &machine_type,
        "machine type",
        "pass --machine-type or put machine_type: in the job config",
        MachineType::parse,
    )?;
    let priority = match request.priority {
        Some(priority) => Priority::new(priority.into()),
        None => match config.integer("priority").map_err(invalid)? {
            Some(priority) => Priority::new(priority),
            None => Ok(Priority::DEFAULT),
        },
    }
    .map_err(invalid)?;
    let roles = config.roles_count().map_err(invalid)?;
    let n_nodes = match (request.n_nodes, roles) {
        (Some(asked), Some(roles)) if asked as usize != roles => {
            return Err(invalid(InvalidInput::new(
                "node count",
                format!("{asked} nodes were asked for but the job config's roles list {roles} node(s); drop --nodes or fix roles"),
            )));
        }
        (Some(asked), _) => NodeCount::new(asked.into()),
        (None, Some(roles)) => NodeCount::new(i64::try_from(roles).unwrap_or(i64::MAX)),
        (None, None) => NodeCount::new(1),
    }
    .map_err(invalid)?;
    let time_limit = match request.time_limit_s {
        Some(seconds) => Some(TimeLimit::from_seconds(seconds.into())),
        None => config
            .integer("timeout")
            .map_err(invalid)?
            .map(TimeLimit::from_seconds),
    }
    .transpose()
    .map_err(invalid)?;
    let os_version = if request.os_version.trim().is_empty() {
        config
            .version_string("os_version")
            .map_err(invalid)?
            .unwrap_or_default()
    } else {
        request.os_version.trim().to_owned()
    };
    Ok(JobSpec {
        description: text(
            "description",
            &or_config(&request.description, config, "description")?,
        )?,
        machine_type,
        priority,
        n_nodes,
        time_limit,
        os_type: text("os type", &or_config(&request.os_type, config, "os_type")?)?,
        os_version: text("os version", &os_version)?,
    })
}

impl RunApi {
    /// When a report names its supervisor, the job must be running under exactly that
    /// supervisor (as its dispatch recorded), or have ended: a supervisor the job no
    /// longer has cannot end it, keep it alive, or requeue it. Reports that name none
    /// (people, tools) are not checked here.
    /// The door of a supervisor's reports (heartbeat, status, prepare): a service (or
    /// admin) caller, a valid job id, and, when the report names its supervisor, the
    /// job's own.
    async fn supervisor_report<T: SupervisorReport>(
        &self,
        request: &Request<T>,
    ) -> Result<JobId, Status> {
        self.app
            .authorize(request.metadata(), Action::Service)
            .await?;
        let body = request.get_ref();
        let id = job_id(body.job())?;
        let (pid, host) = body.supervisor();
        self.check_supervisor(id, pid, host).await?;
        Ok(id)
    }

    async fn check_supervisor(
        &self,
        id: JobId,
        pid: Option<u32>,
        host: Option<&str>,
    ) -> Result<(), Status> {
        let Some(pid) = pid else {
            return Ok(());
        };
        let host = host.unwrap_or_default().to_owned();
        let (job, _) = self.app.db(move |store| store.get_job(id)).await?;
        // An ended job takes its release's reports (and refuses status changes itself).
        if job.status.is_terminal() {
            return Ok(());
        }
        // Not running (requeued after a failed prepare, or waiting again): no supervisor
        // speaks for it until its next dispatch records one.
        if job.status != JobStatus::Running {
            return Err(Status::failed_precondition(format!(
                "job {id} is {}, no longer run by pid {pid} on {host}; that supervisor has nothing left to report",
                job.status
            )));
        }
        match &job.supervisor {
            Some(recorded) if recorded.pid == pid && recorded.host == host => Ok(()),
            recorded => Err(Status::failed_precondition(format!(
                "job {id} is supervised by {}, not by pid {pid} on {host}; a supervisor the job no longer has cannot speak for it",
                recorded.as_ref().map_or_else(
                    || "no supervisor".to_owned(),
                    |r| format!("pid {} on {}", r.pid, r.host)
                )
            ))),
        }
    }

    async fn jobs_with_nodes(&self, jobs: Vec<Job>) -> Result<Vec<v1::Job>, Status> {
        self.app.jobs_with_nodes(jobs).await
    }

    async fn job_with_nodes(&self, job: Job) -> Result<v1::Job, Status> {
        let mut shown = self.jobs_with_nodes(vec![job]).await?;
        Ok(shown.pop().expect("one job in, one job out"))
    }

    async fn create_run_inner(
        &self,
        caller: Caller,
        request: CreateRunRequest,
    ) -> Result<CreateRunResponse, Status> {
        self.create_pinned_run(caller, request, None).await
    }

    /// CreateRun, recording `pins` with the run in the same transaction when the run
    /// comes from a suite (ScheduleSuite shares every check and the enqueueing).
    pub(crate) async fn create_pinned_run(
        &self,
        caller: Caller,
        request: CreateRunRequest,
        pins: Option<SuitePins>,
    ) -> Result<CreateRunResponse, Status> {
        let total = request.jobs.len();
        if total == 0 {
            return Err(errors::invalid(InvalidInput::new(
                "jobs",
                "a run needs at least one job (--jobs N)",
            )));
        }
        if total > MAX_JOBS_PER_RUN {
            return Err(errors::invalid(InvalidInput::new(
                "jobs",
                format!("{total} jobs in one run is too many; at most {MAX_JOBS_PER_RUN}"),
            )));
        }
        // YAML parsing is CPU work bounded only by the budget: off the async workers.
        let (request, distinct, config_of) =
            tokio::task::spawn_blocking(move || parse_configs(request))
                .await
                .map_err(errors::join)??;
        let first = &distinct[config_of[0]];
        let spec = RunSpec {
            name: required(
                &or_config(&request.name, first, "name")?,
                "run name",
                "pass --name or put name: in the job config",
                RunName::parse,
            )?,
            owner: required(
                &or_config(&request.owner, first, "owner")?,
                "owner",
                "pass --owner or put owner: in the job config",
                Owner::parse,
            )?,
            branch: text("branch", &or_config(&request.branch, first, "branch")?)?,
            sha1: text("sha1", &or_config(&request.sha1, first, "sha1")?)?,
            suite: text("suite", &or_config(&request.suite, first, "suite")?)?,
        };
        // Scheduling is for oneself (a developer) or for anyone (an admin).
        self.app
            .check(&caller, Action::Schedule { owner: &spec.owner })?;
        let mut specs = Vec::with_capacity(total);
        for (index, (job, &slot)) in request.jobs.iter().zip(&config_of).enumerate() {
            specs.push(
                job_spec(job, &distinct[slot]).map_err(|status| in_job(index, total, status))?,
            );
        }
        // Every machine type must exist and be big enough to ever run its jobs.
        let mut largest: HashMap<MachineType, u32> = HashMap::new();
        for job in &specs {
            let entry = largest.entry(job.machine_type.clone()).or_default();
            *entry = (*entry).max(job.n_nodes.get());
        }
        for (machine_type, needed) in largest {
            let type_for_db = machine_type.clone();
            let total_nodes = self
                .app
                .db(move |store| store.count_nodes_of_type(&type_for_db))
                .await?;
            if total_nodes == 0 {
                return Err(Status::not_found(format!(
                    "machine type {machine_type} has no nodes, so its jobs could never run; add nodes with `cuttle node add NAME --machine-type {machine_type}` or pick another machine type; nothing was scheduled"
                )));
            }
            if needed > total_nodes {
                return Err(Status::failed_precondition(format!(
                    "a job needs {needed} nodes but machine type {machine_type} has only {total_nodes}, so it could never run; nothing was scheduled"
                )));
            }
        }
        // Ask beanstalkd first: if it is down, refuse before writing anything.
        let max_body = self
            .app
            .queue()
            .max_job_size()
            .await
            .map_err(errors::queue)?;
        let addr = self.app.queue().addr().to_owned();
        let enqueuer = self.app.enqueuer();
        let guard = enqueuer.lock().await;
        let run_for_db = spec.clone();
        let created = self
            .app
            .db(move |store| {
                let mut index = 0;
                store.create_pinned_run(&run_for_db, pins.as_ref(), &specs, now(), |job_id, job| {
                    let config = &distinct[config_of[index]];
                    index += 1;
                    let body = render(&RenderInput {
                        job_id,
                        run: &run_for_db,
                        job,
                        config,
                    });
                    if body.len() > max_body {
                        return Err(InvalidInput::new(
                            "job body",
                            format!(
                                "job {index} of {total} is {} bytes as YAML, over the {max_body}-byte limit of beanstalkd at {addr}; shrink its config (overrides, tasks) or raise beanstalkd's -z; nothing was scheduled",
                                body.len()
                            ),
                        ));
                    }
                    Ok(body)
                })
            })
            .await?;
        let outcome = enqueuer.put_all(&guard, &created.jobs).await;
        drop(guard);
        if let Some(failure) = &outcome.failure {
            tracing::warn!(
                run = %spec.name,
                put = outcome.ids.len(),
                pending = created.jobs.len() - outcome.ids.len(),
                %failure,
                "some jobs of a new run could not be put on beanstalkd yet; they stay queued and are retried"
            );
        }
        tracing::info!(run = %spec.name, owner = %spec.owner, jobs = created.jobs.len(), "scheduled run");
        let beanstalk_ids: HashMap<JobId, u64> = outcome.ids.into_iter().collect();
        let jobs = created
            .jobs
            .into_iter()
            .map(|mut job| {
                job.beanstalk_id = beanstalk_ids.get(&job.id).copied();
                job_to_proto(&job, Vec::new())
            })
            .collect();
        Ok(CreateRunResponse {
            run_name: spec.name.to_string(),
            jobs,
        })
    }
}

#[tonic::async_trait]
impl RunService for RunApi {
    async fn create_run(
        &self,
        request: Request<CreateRunRequest>,
    ) -> Result<Response<CreateRunResponse>, Status> {
        observe("RunService/CreateRun", async {
            // Anonymous callers are turned away before any parsing work (any write
            // refuses them); whose run it may be is checked once the owner is known.
            let caller = self.app.caller(request.metadata()).await?;
            if caller == Caller::Anonymous {
                self.app.check(&caller, Action::Service)?;
            }
            self.create_run_inner(caller, request.into_inner()).await
        })
        .await
    }

    async fn get_run(
        &self,
        request: Request<GetRunRequest>,
    ) -> Result<Response<RunDetail>, Status> {
        observe("RunService/GetRun", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let name = required(
                &request.get_ref().name,
                "run name",
                "give the run's name",
                RunName::parse,
            )?;
            let (summary, jobs) = self.app.db(move |store| store.get_run(&name)).await?;
            let estimates = crate::forecast::of_jobs(&self.app, &jobs).await?;
            let mut shown = self.jobs_with_nodes(jobs).await?;
            crate::forecast::annotate(&mut shown, &estimates);
            Ok(RunDetail {
                run: Some(run_to_proto(&summary)),
                jobs: shown,
            })
        })
        .await
    }

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        observe("RunService/ListRuns", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let request = request.into_inner();
            let filter = RunFilter {
                owner: optional(request.owner.as_deref(), Owner::parse)?,
                status: optional(request.status.as_deref(), RunStatus::parse)?,
                machine_type: optional(request.machine_type.as_deref(), MachineType::parse)?,
                branch: request.branch.filter(|b| !b.trim().is_empty()),
                limit: request.limit.min(10_000),
            };
            let runs = self.app.db(move |store| store.list_runs(&filter)).await?;
            Ok(ListRunsResponse {
                runs: runs.iter().map(run_to_proto).collect(),
            })
        })
        .await
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<JobDetail>, Status> {
        observe("RunService/GetJob", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let id = job_id(request.get_ref().job_id)?;
            let (job, events) = self.app.db(move |store| store.get_job(id)).await?;
            let archive_url = match self.app.page_url() {
                Some(base) if job.started_at.is_some() => {
                    crate::archive::job_url(&base, job.run_name.as_str(), job.id.0)
                }
                _ => String::new(),
            };
            Ok(JobDetail {
                job: Some(self.job_with_nodes(job).await?),
                events: events.iter().map(event_to_proto).collect(),
                archive_url,
            })
        })
        .await
    }

    async fn update_job_status(
        &self,
        request: Request<UpdateJobStatusRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        observe("RunService/UpdateJobStatus", async {
            let id = self.supervisor_report(&request).await?;
            let request = request.into_inner();
            let to = status_from_proto(request.status).ok_or_else(|| {
                errors::invalid(InvalidInput::new(
                    "status",
                    format!("{} is not a job status this server knows", request.status),
                ))
            })?;
            // Going back to the queue frees nodes and puts a new copy: only the dedicated
            // calls (RequeueJob, ReportPrepare) do that, never a bare status change.
            if matches!(
                to,
                JobStatus::Queued | JobStatus::Waiting | JobStatus::WaitingForBuild
            ) {
                return Err(errors::invalid(InvalidInput::new(
                    "status",
                    format!(
                        "{to} cannot be set directly; a job goes back to the queue through its dispatcher (RequeueJob) or a failed prepare (ReportPrepare)"
                    ),
                )));
            }
            let reason = Some(request.reason).filter(|r| !r.trim().is_empty());
            let job = self
                .app
                .db(move |store| store.update_job_status(id, to, reason.as_deref(), now()))
                .await?;
            tracing::info!(job_id = %id, status = %to, "job status changed");
            self.job_with_nodes(job).await
        })
        .await
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        observe("RunService/Heartbeat", async {
            let id = self.supervisor_report(&request).await?;
            // Stamped when it lands in the database, not when it arrived here.
            let status = self
                .app
                .db(move |store| store.heartbeat_with(id, now))
                .await?;
            Ok(HeartbeatResponse {
                status: status_to_proto(status) as i32,
            })
        })
        .await
    }

    async fn report_prepare(
        &self,
        request: Request<ReportPrepareRequest>,
    ) -> Result<Response<ReportPrepareResponse>, Status> {
        observe("RunService/ReportPrepare", async {
            let id = self.supervisor_report(&request).await?;
            let request = request.into_inner();
            if request.ok {
                self.app
                    .db(move |store| store.prepare_succeeded(id, now()))
                    .await?;
                let (job, _) = self.app.db(move |store| store.get_job(id)).await?;
                return Ok(ReportPrepareResponse {
                    job: Some(self.job_with_nodes(job).await?),
                    requeued: false,
                    marked_down: Vec::new(),
                });
            }
            let failed: Vec<NodeName> = request
                .failed_nodes
                .iter()
                .map(|name| NodeName::parse(name).map_err(errors::invalid))
                .collect::<Result<_, _>>()?;
            let reason = text("reason", &request.reason)?;
            let reason = if reason.is_empty() {
                "the prepare command failed".to_owned()
            } else {
                reason
            };
            let policy = self.app.settings().strikes;
            let outcome = self
                .app
                .db(move |store| store.prepare_failed(id, &failed, &reason, &policy, now()))
                .await?;
            for node in &outcome.marked_down {
                tracing::warn!(%node, job_id = %id, "node marked down: too many failed prepares");
            }
            if outcome.requeued {
                tracing::warn!(job_id = %id, "prepare failed; the job is back in the queue");
                // Its nodes were freed with it (those not marked down).
                self.app.events().send(
                    Some(outcome.job.spec.machine_type.clone()),
                    crate::events::Kind::NodesFreed,
                    0,
                );
                // Its copy left beanstalkd when it started: put a new one now rather
                // than at the enqueue loop's next turn.
                let enqueuer = self.app.enqueuer();
                let guard = enqueuer.lock().await;
                let put = enqueuer
                    .put_all(&guard, std::slice::from_ref(&outcome.job))
                    .await;
                if let Some(failure) = put.failure {
                    tracing::warn!(job_id = %id, %failure, "cannot put the requeued job yet; the enqueue loop retries");
                }
            } else {
                tracing::warn!(job_id = %id, reason = outcome.job.reason.as_deref().unwrap_or(""), "prepare failed too often; the job is dead");
            }
            let (job, _) = self.app.db(move |store| store.get_job(id)).await?;
            Ok(ReportPrepareResponse {
                job: Some(self.job_with_nodes(job).await?),
                requeued: outcome.requeued,
                marked_down: outcome.marked_down.iter().map(ToString::to_string).collect(),
            })
        })
        .await
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
        observe("RunService/Kill", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let run = required(
                &request.run_name,
                "run name",
                "name the run to kill",
                RunName::parse,
            )?;
            let only = request.job_id.map(job_id).transpose()?;
            let lookup = run.clone();
            let (summary, _) = self.app.db(move |store| store.get_run(&lookup)).await?;
            // The run's recorded owner decides, never a name the caller gives.
            self.app.check(
                &caller,
                Action::ActOnRun {
                    owner: &summary.run.spec.owner,
                },
            )?;
            let by = crate::auth::acting_as(&caller, &request.owner)
                .unwrap_or_else(|| request.owner.clone());
            let reason = format!("killed by {by}");
            let killed = self
                .app
                .db(move |store| store.kill(&run, only, &reason, now()))
                .await?;
            let mut dequeued = 0;
            let mut stopping = 0;
            for entry in &killed {
                match entry.was {
                    cuttle_core::JobStatus::Running => stopping += 1,
                    _ => {
                        // Its copy may be reserved by a dispatcher right now, which makes
                        // this delete fail; that dispatcher's claim sees `killed` and
                        // deletes the copy itself.
                        if let Some(id) = entry.job.beanstalk_id
                            && self.app.queue().delete(id).await.is_ok()
                        {
                            dequeued += 1;
                        }
                    }
                }
            }
            tracing::info!(killed = killed.len(), dequeued, stopping, "run killed");
            let jobs = killed.into_iter().map(|entry| entry.job).collect();
            Ok(KillResponse {
                killed: self.jobs_with_nodes(jobs).await?,
                dequeued,
                stopping,
            })
        })
        .await
    }
}
