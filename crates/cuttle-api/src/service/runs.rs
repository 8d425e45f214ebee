//! RunService: scheduling runs, showing runs and jobs, status changes and heartbeats.
//!
//! Scheduling validates every job and renders every body before anything is written; the
//! run and its jobs are then recorded in one transaction and put on beanstalkd (see
//! `enqueue` for what happens when a put fails).

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use cuttle_core::{
    InvalidInput, Job, JobId, JobSpec, MachineType, NodeCount, Owner, Priority, RunName, RunSpec,
    RunStatus, TimeLimit,
};
use cuttle_db::RunFilter;
use cuttle_proto::convert::{
    event_to_proto, job_to_proto, run_to_proto, status_from_proto, status_to_proto,
};
use cuttle_proto::v1::run_service_server::RunService;
use cuttle_proto::v1::{
    self, CreateRunRequest, CreateRunResponse, GetJobRequest, GetRunRequest, HeartbeatRequest,
    HeartbeatResponse, JobDetail, KillRequest, KillResponse, ListRunsRequest, ListRunsResponse,
    RunDetail, UpdateJobStatusRequest,
};
use cuttle_queue::JobConfig;
use cuttle_queue::codec::{RenderInput, render};

use super::{job_id, optional, required, text};
use crate::{App, errors, now, observe};

/// Most jobs one CreateRun may carry; teuthology-suite refuses more than 500 by default.
pub const MAX_JOBS_PER_RUN: usize = 10_000;

#[derive(Debug)]
pub struct RunApi {
    app: App,
}

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
    async fn jobs_with_nodes(&self, jobs: Vec<Job>) -> Result<Vec<v1::Job>, Status> {
        self.app.jobs_with_nodes(jobs).await
    }

    async fn job_with_nodes(&self, job: Job) -> Result<v1::Job, Status> {
        let mut shown = self.jobs_with_nodes(vec![job]).await?;
        Ok(shown.pop().expect("one job in, one job out"))
    }

    async fn create_run_inner(
        &self,
        request: CreateRunRequest,
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
        // Parse each distinct config once and refer to it by index: a suite of N copies
        // sends the same text N times.
        let mut distinct: Vec<JobConfig> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut config_of: Vec<usize> = Vec::with_capacity(total);
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
                store.create_run(&run_for_db, &specs, now(), |job_id, job| {
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
        observe(
            "RunService/CreateRun",
            self.create_run_inner(request.into_inner()),
        )
        .await
    }

    async fn get_run(
        &self,
        request: Request<GetRunRequest>,
    ) -> Result<Response<RunDetail>, Status> {
        observe("RunService/GetRun", async {
            let name = required(
                &request.get_ref().name,
                "run name",
                "give the run's name",
                RunName::parse,
            )?;
            let (summary, jobs) = self.app.db(move |store| store.get_run(&name)).await?;
            let shown = self.jobs_with_nodes(jobs).await?;
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
            let id = job_id(request.get_ref().job_id)?;
            let (job, events) = self.app.db(move |store| store.get_job(id)).await?;
            Ok(JobDetail {
                job: Some(self.job_with_nodes(job).await?),
                events: events.iter().map(event_to_proto).collect(),
            })
        })
        .await
    }

    async fn update_job_status(
        &self,
        request: Request<UpdateJobStatusRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        observe("RunService/UpdateJobStatus", async {
            let request = request.into_inner();
            let id = job_id(request.job_id)?;
            let to = status_from_proto(request.status).ok_or_else(|| {
                errors::invalid(InvalidInput::new(
                    "status",
                    format!("{} is not a job status this server knows", request.status),
                ))
            })?;
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
            let id = job_id(request.get_ref().job_id)?;
            let status = self.app.db(move |store| store.heartbeat(id, now())).await?;
            Ok(HeartbeatResponse {
                status: status_to_proto(status) as i32,
            })
        })
        .await
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillResponse>, Status> {
        observe("RunService/Kill", async {
            let is_admin = self.app.admin().is_admin(request.metadata());
            let request = request.into_inner();
            let run = required(
                &request.run_name,
                "run name",
                "name the run to kill",
                RunName::parse,
            )?;
            let by = required(
                &request.owner,
                "owner",
                "say who kills the run (--owner or $USER)",
                Owner::parse,
            )?;
            let only = request.job_id.map(job_id).transpose()?;
            let lookup = run.clone();
            let (summary, _) = self.app.db(move |store| store.get_run(&lookup)).await?;
            if summary.run.spec.owner != by && !is_admin {
                return Err(Status::permission_denied(format!(
                    "run {run} belongs to {}, not {by}; only its owner or an admin (--token) can kill it",
                    summary.run.spec.owner
                )));
            }
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
