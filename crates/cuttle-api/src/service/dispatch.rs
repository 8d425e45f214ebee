//! DispatchService (what cuttle-dispatcher asks of the API) and QueueService (what
//! operators see and steer).
//!
//! The dispatcher stays thin: it sends the body it reserved and gets back an action. Body
//! classification (cuttle's, teuthology's, garbage) and every state change happen here,
//! in the database, through `cuttle_core::dispatch`'s rules.

use tonic::{Request, Response, Status};

use cuttle_core::auth::Action;
use cuttle_core::dispatch::{Claim, SupervisorRef};
use cuttle_core::{InvalidInput, JobId, LockRequest, MachineType, Owner, Priority};
use cuttle_db::LeaseRequest;
use cuttle_proto::convert::tube_to_proto;
use cuttle_proto::v1::dispatch_service_server::DispatchService;
use cuttle_proto::v1::queue_service_server::QueueService;
use cuttle_proto::v1::{
    self, AcquireLeaseRequest, AcquireLeaseResponse, ClaimAction, ClaimJobRequest,
    ClaimJobResponse, ClaimReleasesRequest, ClaimReleasesResponse, ListQueueRequest,
    ListQueueResponse, ListTubesRequest, ListTubesResponse, PlanState, PlanStateRequest,
    RecordDispatchRequest, ReleaseLeaseRequest, ReleaseLeaseResponse, ReprioritizeRequest,
    RequeueJobRequest, SetQueuePausedRequest,
};
use cuttle_queue::{Body, read_body};

use super::{job_id, required, text};
use crate::{App, errors, now, observe};

fn machine_type(text: &str) -> Result<MachineType, Status> {
    required(
        text,
        "machine type",
        "name the tube's machine type, such as smithi",
        MachineType::parse,
    )
}

fn holder(text: &str) -> Result<String, Status> {
    let holder = super::text("holder", text)?;
    if holder.is_empty() {
        return Err(errors::invalid(InvalidInput::new(
            "holder",
            "is missing; a dispatcher names itself with a per-process id",
        )));
    }
    Ok(holder)
}

/// The `job_id` of a body, if it has a numeric one.
fn legacy_job_id(body: &str) -> Option<cuttle_core::JobId> {
    let config = cuttle_queue::JobConfig::parse(body).ok()?;
    let id = config.integer("job_id").ok()??;
    (id > 0).then_some(cuttle_core::JobId(id))
}

#[derive(Debug)]
pub struct DispatchApi {
    app: App,
}

impl DispatchApi {
    pub fn new(app: App) -> DispatchApi {
        DispatchApi { app }
    }

    fn bury(reason: String) -> ClaimJobResponse {
        ClaimJobResponse {
            action: ClaimAction::Bury as i32,
            reason,
            job: None,
            nodes: Vec::new(),
        }
    }
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    async fn acquire_lease(
        &self,
        request: Request<AcquireLeaseRequest>,
    ) -> Result<Response<AcquireLeaseResponse>, Status> {
        observe("DispatchService/AcquireLease", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            if !(1_000..=600_000).contains(&request.ttl_ms) {
                return Err(errors::invalid(InvalidInput::new(
                    "ttl_ms",
                    format!("{} ms is out of range; use 1000 to 600000", request.ttl_ms),
                )));
            }
            let lease = LeaseRequest {
                machine_type: machine_type(&request.machine_type)?,
                holder: holder(&request.holder)?,
                host: text("host", &request.host)?,
                pid: request.pid,
                ttl_ms: request.ttl_ms.into(),
            };
            let at = now();
            let wanted = lease.clone();
            let tube = self
                .app
                .db(move |store| store.acquire_lease(&wanted, at))
                .await?;
            let granted = tube
                .live_lease(at)
                .is_some_and(|live| live.holder == lease.holder);
            let settings = self.app.settings().policy;
            let aging = settings.policy.aging;
            Ok(AcquireLeaseResponse {
                granted,
                tube: Some(tube_to_proto(&tube, at)),
                policy: Some(v1::Policy {
                    aging: aging.is_some(),
                    aging_interval_ms: aging.map_or(0, |a| a.interval_ms),
                    aging_step: aging.map_or(0, |a| a.step),
                    aging_floor: aging.map_or(0, |a| a.floor),
                    backfill: settings.policy.backfill,
                    held_back_nodes: settings.policy.held_back_nodes,
                    window: settings.window,
                    fewer_nodes_first_below: Some(settings.policy.fewer_nodes_first_below),
                }),
            })
        })
        .await
    }

    async fn release_lease(
        &self,
        request: Request<ReleaseLeaseRequest>,
    ) -> Result<Response<ReleaseLeaseResponse>, Status> {
        observe("DispatchService/ReleaseLease", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            let holder = holder(&request.holder)?;
            self.app
                .db(move |store| store.release_lease(&tube, &holder, now()))
                .await?;
            Ok(ReleaseLeaseResponse {})
        })
        .await
    }

    async fn claim_job(
        &self,
        request: Request<ClaimJobRequest>,
    ) -> Result<Response<ClaimJobResponse>, Status> {
        observe("DispatchService/ClaimJob", async {
            self.app.authorize(request.metadata(), Action::Service).await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            let holder = holder(&request.holder)?;
            let beanstalk_id = request.beanstalk_id;
            // Reading a body parses YAML (under the budget): off the async workers.
            let body = request.body.clone();
            let max_job_age_s = self.app.settings().max_job_age_s;
            let (classified, legacy_id, expired) = tokio::task::spawn_blocking(move || {
                let classified = read_body(body.as_bytes());
                let legacy_id = match &classified {
                    Ok(Body::Teuthology { .. }) => legacy_job_id(&body),
                    _ => None,
                };
                // teuthology's dispatcher rules: past `expire`, or `timestamp` older
                // than the lab's max_job_age, a job is not started.
                let expired = cuttle_queue::codec::JobConfig::parse(&body).ok().and_then(|config| {
                    let text = |key| config.string(key).ok().flatten();
                    cuttle_core::expiry::expired(
                        text("expire").as_deref(),
                        text("timestamp").as_deref(),
                        max_job_age_s,
                        now(),
                    )
                });
                (classified, legacy_id, expired)
            })
            .await
            .map_err(errors::join)?;
            let job_id = match classified {
                Err(reason) => {
                    tracing::warn!(tube = %tube, beanstalk_id, %reason, "burying a bad body");
                    return Ok(Self::bury(reason));
                }
                Ok(Body::Cuttle(job_id)) => job_id,
                Ok(Body::Teuthology { run, job }) => match legacy_id {
                    // teuthology-schedule puts its bodies without a job_id (its dispatcher
                    // uses the beanstalkd id), so a job_id here names a cuttle job: one
                    // put before bodies carried cuttle_job_id, recognised by its recorded
                    // body, or one cuttle-api does not know.
                    Some(job_id) => {
                        let known = self.app.db(move |store| store.get_job(job_id)).await;
                        match known {
                            Ok((known, _)) if known.config_yaml == request.body => job_id,
                            _ => {
                                return Ok(Self::bury(format!(
                                    "body names job {job_id}, which cuttle-api does not know"
                                )));
                            }
                        }
                    }
                    None => {
                        let body = request.body.clone();
                        let adopted = self
                            .app
                            .db(move |store| {
                                store.adopt_job(&run, &job, &body, beanstalk_id, now())
                            })
                            .await?;
                        tracing::info!(job_id = %adopted.id, run = %adopted.run_name, beanstalk_id, "adopted a teuthology-scheduled job");
                        adopted.id
                    }
                },
            };
            let claimed = self
                .app
                .db(move |store| store.claim_job(job_id, &tube, beanstalk_id, &holder, expired, now()))
                .await;
            let (claim, job) = match claimed {
                Ok(claimed) => claimed,
                Err(status) if status.code() == tonic::Code::NotFound => {
                    return Ok(Self::bury(format!(
                        "body names cuttle job {job_id}, which cuttle-api does not know"
                    )));
                }
                Err(status) => return Err(status),
            };
            // Saves the dispatcher a round trip: most jobs find their nodes free. Any lock
            // failure just means "not yet"; the dispatcher retries with LockNodes.
            let mut nodes = Vec::new();
            if claim == Claim::Start && !request.defer_lock {
                let request = LockRequest {
                    machine_type: job.spec.machine_type.clone(),
                    count: job.spec.n_nodes,
                    owner: job.owner.clone(),
                    job_id: Some(job.id),
                };
                if let Ok(locked) = self
                    .app
                    .db(move |store| store.lock_nodes(&request, now()))
                    .await
                {
                    nodes = locked.iter().map(|node| node.name.to_string()).collect();
                }
            }
            let (action, reason) = match claim {
                Claim::Start => (ClaimAction::Start, String::new()),
                Claim::Discard { reason } => (ClaimAction::Discard, reason),
                // Ended dead with the reason; its copy goes.
                Claim::Expired { reason } => (ClaimAction::Discard, reason),
                Claim::Bury { reason, .. } => (ClaimAction::Bury, reason),
            };
            let mut shown = self.app.jobs_with_nodes(vec![job]).await?;
            Ok(ClaimJobResponse {
                action: action as i32,
                reason,
                job: shown.pop(),
                nodes,
            })
        })
        .await
    }

    async fn record_dispatch(
        &self,
        request: Request<RecordDispatchRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        observe("DispatchService/RecordDispatch", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            let id = job_id(request.job_id)?;
            let holder = holder(&request.holder)?;
            let supervisor = SupervisorRef {
                host: text("supervisor host", &request.supervisor_host)?,
                pid: request.supervisor_pid,
            };
            let job = self
                .app
                .db(move |store| store.record_dispatch(id, &holder, &supervisor, now()))
                .await?;
            tracing::info!(job_id = %id, "job dispatched");
            let mut shown = self.app.jobs_with_nodes(vec![job]).await?;
            Ok(shown.pop().expect("one job in, one job out"))
        })
        .await
    }

    async fn requeue_job(
        &self,
        request: Request<RequeueJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        observe("DispatchService/RequeueJob", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            let id = job_id(request.job_id)?;
            let holder = holder(&request.holder)?;
            let reason = text("reason", &request.reason)?;
            let reason = if reason.is_empty() {
                format!("handed back by dispatcher {holder}")
            } else {
                reason
            };
            let job = self
                .app
                .db(move |store| store.requeue_job(id, &holder, &reason, now()))
                .await?;
            let mut shown = self.app.jobs_with_nodes(vec![job]).await?;
            Ok(shown.pop().expect("one job in, one job out"))
        })
        .await
    }

    async fn get_plan_state(
        &self,
        request: Request<PlanStateRequest>,
    ) -> Result<Response<PlanState>, Status> {
        observe("DispatchService/GetPlanState", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            let default_limit = request.default_time_limit_ms.max(1);
            // A window holds at most 1000 jobs; more would only strain the database.
            if request.job_ids.len() > 1000 {
                return Err(errors::invalid(InvalidInput::new(
                    "job ids",
                    format!(
                        "{} jobs in one plan request is too many; at most 1000",
                        request.job_ids.len()
                    ),
                )));
            }
            let ids: Vec<JobId> = request
                .job_ids
                .iter()
                .map(|id| job_id(*id))
                .collect::<Result<_, _>>()?;
            let data = self
                .app
                .db(move |store| store.plan_data(&tube, &ids))
                .await?;
            let estimator = crate::forecast::estimator(&data.history);
            let plan_job = |job: &cuttle_core::Job| {
                let limit = crate::forecast::time_limit_ms(job, default_limit);
                v1::PlanJob {
                    job_id: job.id.0,
                    priority: job.spec.priority.get(),
                    n_nodes: job.spec.n_nodes.get(),
                    submitted_at_ms: job.created_at.0,
                    estimate_ms: estimator.estimate(&job.spec.description, limit),
                    time_limit_ms: limit,
                    started_at_ms: job.started_at.map(|at| at.0),
                    ended: job.status.is_terminal(),
                }
            };
            Ok(PlanState {
                total_nodes: data.total_nodes,
                free_nodes: data.free_nodes,
                running: data
                    .running
                    .iter()
                    .map(|job| match data.releasing_nodes.get(&job.id) {
                        // Only what it still holds comes back; the rest is free already.
                        Some(&held) => v1::PlanJob {
                            n_nodes: held,
                            ..plan_job(job)
                        },
                        None => plan_job(job),
                    })
                    .collect(),
                jobs: data.window.iter().map(plan_job).collect(),
            })
        })
        .await
    }

    async fn claim_releases(
        &self,
        request: Request<ClaimReleasesRequest>,
    ) -> Result<Response<ClaimReleasesResponse>, Status> {
        observe("DispatchService/ClaimReleases", async {
            self.app.authorize(request.metadata(), Action::Service).await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            let holder = holder(&request.holder)?;
            let limit = if request.limit == 0 { 16 } else { request.limit.min(1000) };
            let grace = self.app.settings().supervisor_grace;
            let grace_ms = self.app.settings().supervisor_grace_ms();
            // As for the reaper: after an outage of ours, a quiet supervisor may still be
            // releasing; hand nothing out until it had a whole grace to beat again.
            if self.app.outages().healthy_for(std::time::Instant::now()).0 < grace {
                return Ok(ClaimReleasesResponse {
                    releases: Vec::new(),
                });
            }
            let at = now();
            let pending = self
                .app
                .db(move |store| store.claim_releases(&tube, &holder, grace_ms, limit.into(), at))
                .await?;
            let mut releases = Vec::with_capacity(pending.len());
            for release in pending {
                tracing::info!(job_id = %release.job.id, nodes = ?release.nodes, "nodes of an ended job to release");
                let mut shown = self.app.jobs_with_nodes(vec![release.job]).await?;
                releases.push(v1::PendingRelease {
                    job: shown.pop(),
                    nodes: release.nodes.iter().map(ToString::to_string).collect(),
                });
            }
            Ok(ClaimReleasesResponse { releases })
        })
        .await
    }
}

#[derive(Debug)]
pub struct QueueApi {
    app: App,
}

impl QueueApi {
    pub fn new(app: App) -> QueueApi {
        QueueApi { app }
    }
}

#[tonic::async_trait]
impl QueueService for QueueApi {
    async fn list_queue(
        &self,
        request: Request<ListQueueRequest>,
    ) -> Result<Response<ListQueueResponse>, Status> {
        observe("QueueService/ListQueue", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            let limit = if request.limit == 0 {
                1000
            } else {
                request.limit.min(100_000)
            };
            let at = now();
            let lookup = tube.clone();
            let (state, mut jobs) = self
                .app
                .db(move |store| {
                    Ok((
                        store.get_tube(&lookup, at)?,
                        store.list_queue(&lookup, limit.into())?,
                    ))
                })
                .await?;
            // The policy's order (aged priority, then older, then within a suite), which
            // is the order dispatchers start them in when nodes allow.
            let policy = self.app.settings().policy.policy;
            jobs.sort_by(|a, b| {
                cuttle_policy::compare(
                    &crate::aging::as_policy(a),
                    &crate::aging::as_policy(b),
                    at.0,
                    &policy,
                )
            });
            // beanstalkd's own view is a bonus: the queue is listed without it.
            let beanstalk_stats = self
                .app
                .queue()
                .stats_tube(tube.as_str())
                .await
                .unwrap_or_default()
                .into_iter()
                .collect();
            let estimates = crate::forecast::of_machine_type(&self.app, tube.clone()).await?;
            let mut shown = self.app.jobs_with_nodes(jobs).await?;
            crate::forecast::annotate(&mut shown, &estimates);
            Ok(ListQueueResponse {
                tube: Some(tube_to_proto(&state, at)),
                jobs: shown,
                beanstalk_stats,
            })
        })
        .await
    }

    async fn set_queue_paused(
        &self,
        request: Request<SetQueuePausedRequest>,
    ) -> Result<Response<v1::Tube>, Status> {
        observe("QueueService/SetQueuePaused", async {
            let caller = self
                .app
                .authorize(request.metadata(), Action::AdministerLab)
                .await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            // Recorded as who paused it: the token's user, or the name an admin gives.
            let by = match (request.owner.trim(), caller.user()) {
                ("", Some(user)) => user.clone(),
                (given, _) => required(
                    given,
                    "owner",
                    "say who pauses the queue (--owner or $USER)",
                    Owner::parse,
                )?,
            };
            let paused = request.paused;
            let at = now();
            let state = self
                .app
                .db(move |store| store.set_paused(&tube, paused, &by, at))
                .await?;
            tracing::info!(tube = %state.machine_type, paused, "queue pause changed");
            Ok(tube_to_proto(&state, at))
        })
        .await
    }

    async fn reprioritize(
        &self,
        request: Request<ReprioritizeRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        observe("QueueService/Reprioritize", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let id = job_id(request.job_id)?;
            let priority = Priority::new(request.priority.into()).map_err(errors::invalid)?;
            let (current, _) = self.app.db(move |store| store.get_job(id)).await?;
            // The job's recorded owner decides, never a name the caller gives.
            self.app.check(
                &caller,
                Action::ActOnRun {
                    owner: &current.owner,
                },
            )?;
            let by = crate::auth::acting_as(&caller, &request.owner)
                .unwrap_or_else(|| current.owner.to_string());
            let who = by.clone();
            let job = self
                .app
                .db(move |store| store.set_priority(id, priority, &who, now()))
                .await?;
            tracing::info!(job_id = %id, job_priority = priority.get(), by = %by, "job re-prioritized");
            // Queued on beanstalkd: replace its copy so every client sees the new order. A
            // waiting job's copy is released with its new priority by its dispatcher.
            if job.status == cuttle_core::JobStatus::Queued {
                crate::aging::requeue_copy(&self.app, &job, priority.get()).await;
            }
            let (job, _) = self.app.db(move |store| store.get_job(id)).await?;
            let mut shown = self.app.jobs_with_nodes(vec![job]).await?;
            Ok(shown.pop().expect("one job in, one job out"))
        })
        .await
    }

    async fn list_tubes(
        &self,
        request: Request<ListTubesRequest>,
    ) -> Result<Response<ListTubesResponse>, Status> {
        observe("QueueService/ListTubes", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let at = now();
            let tubes = self.app.db(|store| store.list_tubes()).await?;
            Ok(ListTubesResponse {
                tubes: tubes.iter().map(|tube| tube_to_proto(tube, at)).collect(),
            })
        })
        .await
    }
}
