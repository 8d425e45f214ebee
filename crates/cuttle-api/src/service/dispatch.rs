//! DispatchService (what cuttle-dispatcher asks of the API) and QueueService (what
//! operators see and steer).
//!
//! The dispatcher stays thin: it sends the body it reserved and gets back an action. Body
//! classification (cuttle's, teuthology's, garbage) and every state change happen here,
//! in the database, through `cuttle_core::dispatch`'s rules.
//!
//! Buried jobs (ListBuried, KickBuried, DeleteBuried) are looked at here too, because
//! beanstalkd alone cannot list them: `peek-buried` shows only a tube's first. The copies
//! of cuttle jobs are found in the database (jobs that died before they started and still
//! name a copy) and each is confirmed on beanstalkd; a body with no record is seen only
//! when it is the tube's first. A kick never revives an ended job (terminal is final):
//! its copy would only be discarded, so the kick is refused with what to do instead.

use tonic::{Request, Response, Status};

use cuttle_core::auth::Action;
use cuttle_core::dispatch::{Claim, SupervisorRef};
use cuttle_core::{InvalidInput, JobId, LockRequest, MachineType, Owner, Priority};
use cuttle_db::LeaseRequest;
use cuttle_proto::convert::{locked_job_to_proto, recorded_dispatch_to_proto, tube_to_proto};
use cuttle_proto::v1::dispatch_service_server::DispatchService;
use cuttle_proto::v1::queue_service_server::QueueService;
use cuttle_proto::v1::{
    self, AcquireLeaseRequest, AcquireLeaseResponse, BuriedJob, ClaimAction, ClaimJobRequest,
    ClaimJobResponse, ClaimReleasesRequest, ClaimReleasesResponse, DeleteBuriedRequest,
    KickBuriedRequest, KickBuriedResponse, ListBuriedRequest, ListBuriedResponse, ListQueueRequest,
    ListQueueResponse, ListTubesRequest, ListTubesResponse, LockNodesBatchRequest,
    LockNodesBatchResponse, PlanState, PlanStateRequest, RecordDispatchRequest,
    RecordDispatchResponse, RecordDispatchesRequest, RecordDispatchesResponse, ReleaseLeaseRequest,
    ReleaseLeaseResponse, ReprioritizeRequest, RequeueJobRequest, SetQueuePausedRequest,
};
use cuttle_queue::{Body, JobConfig, QueueError, read_body_with_config};

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

/// What a dispatcher says it started: the job, the dispatcher holding it and the
/// supervisor running it. RecordDispatch and each entry of RecordDispatches.
fn dispatch(request: &RecordDispatchRequest) -> Result<(JobId, String, SupervisorRef), Status> {
    Ok((
        job_id(request.job_id)?,
        holder(&request.holder)?,
        SupervisorRef {
            host: text("supervisor host", &request.supervisor_host)?,
            pid: request.supervisor_pid,
        },
    ))
}

/// Refuses a batch call naming more jobs than the protos allow.
fn batch_size(len: usize) -> Result<(), Status> {
    let limit = cuttle_proto::MAX_BATCH_JOBS;
    if len > limit {
        return Err(errors::invalid(InvalidInput::new(
            "batch",
            format!("names {len} jobs; send at most {limit} per call"),
        )));
    }
    Ok(())
}

/// The `job_id` of a body, if it has a numeric one.
fn legacy_job_id(config: &JobConfig) -> Option<cuttle_core::JobId> {
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
            Ok(AcquireLeaseResponse {
                granted,
                tube: Some(tube_to_proto(&tube, at)),
                policy: Some(cuttle_proto::convert::policy_to_proto(
                    &settings.policy,
                    settings.window,
                )),
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
                // One parse serves the classification, the legacy id and the expiry.
                let (classified, config) = read_body_with_config(body.as_bytes());
                let legacy_id = match (&classified, &config) {
                    (Ok(Body::Teuthology { .. }), Some(config)) => legacy_job_id(config),
                    _ => None,
                };
                // teuthology's dispatcher rules: past `expire`, or `timestamp` older
                // than the lab's max_job_age, a job is not started.
                let expired = config.as_ref().and_then(|config| {
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
            let started = claim == Claim::Start;
            let (action, reason) = match claim {
                Claim::Start => (ClaimAction::Start, String::new()),
                Claim::Discard { reason } => (ClaimAction::Discard, reason),
                // Ended dead with the reason; its copy goes.
                Claim::Expired { reason } => (ClaimAction::Discard, reason),
                Claim::Bury { reason, .. } => (ClaimAction::Bury, reason),
            };
            // A started job holds exactly the nodes locked above (a takeover freed what
            // the job held before): no second query for them, on the busiest call.
            let shown = if started {
                Some(cuttle_proto::convert::job_to_proto(&job, nodes.clone()))
            } else {
                self.app.jobs_with_nodes(vec![job]).await?.pop()
            };
            Ok(ClaimJobResponse {
                action: action as i32,
                reason,
                job: shown,
                nodes,
            })
        })
        .await
    }

    async fn record_dispatch(
        &self,
        request: Request<RecordDispatchRequest>,
    ) -> Result<Response<RecordDispatchResponse>, Status> {
        observe("DispatchService/RecordDispatch", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let (id, holder, supervisor) = dispatch(request.get_ref())?;
            self.app
                .db(move |store| store.record_dispatch(id, &holder, &supervisor, now()))
                .await?;
            tracing::info!(job_id = %id, "job dispatched");
            Ok(RecordDispatchResponse {})
        })
        .await
    }

    async fn lock_nodes_batch(
        &self,
        request: Request<LockNodesBatchRequest>,
    ) -> Result<Response<LockNodesBatchResponse>, Status> {
        observe("DispatchService/LockNodesBatch", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            let holder = holder(&request.holder)?;
            batch_size(request.job_ids.len())?;
            let ids = request
                .job_ids
                .iter()
                .map(|id| job_id(*id))
                .collect::<Result<Vec<_>, _>>()?;
            let answers = {
                let ids = ids.clone();
                self.app
                    .db(move |store| store.lock_nodes_of_claimed_jobs(&holder, &ids, now()))
                    .await?
            };
            let jobs = ids
                .into_iter()
                .zip(answers)
                .map(|(id, answer)| locked_job_to_proto(id, answer.map_err(errors::db)))
                .collect();
            Ok(LockNodesBatchResponse { jobs })
        })
        .await
    }

    async fn record_dispatches(
        &self,
        request: Request<RecordDispatchesRequest>,
    ) -> Result<Response<RecordDispatchesResponse>, Status> {
        observe("DispatchService/RecordDispatches", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let request = request.into_inner();
            batch_size(request.dispatches.len())?;
            let started = request
                .dispatches
                .iter()
                .map(dispatch)
                .collect::<Result<Vec<_>, Status>>()?;
            let ids: Vec<JobId> = started.iter().map(|(id, _, _)| *id).collect();
            let answers = self
                .app
                .db(move |store| store.record_dispatches(&started, now()))
                .await?;
            let jobs = ids
                .into_iter()
                .zip(answers)
                .map(|(id, answer)| {
                    if answer.is_ok() {
                        tracing::info!(job_id = %id, "job dispatched");
                    }
                    recorded_dispatch_to_proto(id, answer.map_err(errors::db))
                })
                .collect();
            Ok(RecordDispatchesResponse { jobs })
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
            // Its nodes, if it had locked any, are free again.
            self.app.events().send(
                Some(job.spec.machine_type.clone()),
                crate::events::Kind::NodesFreed,
                0,
            );
            let mut shown = self.app.jobs_with_nodes(vec![job]).await?;
            Ok(shown.pop().expect("one job in, one job out"))
        })
        .await
    }

    type WatchTubeStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<v1::TubeEvent, Status>> + Send + 'static>,
    >;

    async fn watch_tube(
        &self,
        request: Request<v1::WatchTubeRequest>,
    ) -> Result<Response<Self::WatchTubeStream>, Status> {
        observe("DispatchService/WatchTube", async {
            self.app
                .authorize(request.metadata(), Action::Service)
                .await?;
            let tube = machine_type(&request.get_ref().machine_type)?;
            let mut events = self.app.events().subscribe();
            let stopping = self.app.stopping();
            let (sender, receiver) = tokio::sync::mpsc::channel(64);
            // Ends with cuttle-api's shutdown (a stream never ending would hold it up) or
            // when the watcher goes away.
            tokio::spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    let event = tokio::select! {
                        _ = stopping.cancelled() => break,
                        _ = sender.closed() => break,
                        event = events.recv() => event,
                    };
                    let sent = match event {
                        Ok(event) if event.concerns(&tube) => v1::TubeEvent {
                            kind: event.kind.as_str().to_owned(),
                            count: event.count,
                        },
                        Ok(_) => continue,
                        Err(RecvError::Lagged(missed)) => v1::TubeEvent {
                            kind: "lagged".to_owned(),
                            count: u32::try_from(missed).unwrap_or(u32::MAX),
                        },
                        Err(RecvError::Closed) => break,
                    };
                    if sender.send(Ok(sent)).await.is_err() {
                        break;
                    }
                }
            });
            let stream: Self::WatchTubeStream =
                Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver));
            Ok(stream)
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
                cuttle_core::dispatch::PlanJob {
                    job_id: job.id,
                    priority: job.spec.priority.get(),
                    n_nodes: job.spec.n_nodes.get(),
                    submitted_at: job.created_at,
                    estimate_ms: estimator.estimate(&job.spec.description, limit),
                    time_limit_ms: limit,
                    started_at: job.started_at,
                    ended: job.status.is_terminal(),
                }
            };
            let state = cuttle_core::dispatch::PlanState {
                total_nodes: data.total_nodes,
                free_nodes: data.free_nodes,
                running: data
                    .running
                    .iter()
                    .map(|job| match data.releasing_nodes.get(&job.id) {
                        // Only what it still holds comes back; the rest is free already.
                        Some(&held) => cuttle_core::dispatch::PlanJob {
                            n_nodes: held,
                            ..plan_job(job)
                        },
                        None => plan_job(job),
                    })
                    .collect(),
                jobs: data.window.iter().map(plan_job).collect(),
            };
            Ok(cuttle_proto::convert::plan_state_to_proto(&state))
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

/// How many recorded jobs ListBuried and KickBuried look for on beanstalkd at most: the
/// newest that died before they started. Older buried copies still count in
/// `buried_total`, and the first of a tube is always shown.
const MAX_BURIED_CANDIDATES: i64 = 1000;

/// A beanstalkd failure of the buried-job calls. They change cuttle's records only after
/// beanstalkd has done its part, so nothing else needs saying.
fn beanstalk(error: QueueError) -> Status {
    let message = error.to_string();
    match error {
        QueueError::Unreachable { .. } | QueueError::Stopped { .. } => Status::unavailable(message),
        QueueError::Refused { .. } => Status::internal(message),
    }
}

/// A buried copy as beanstalkd holds it, with what cuttle knows of it.
#[derive(Debug)]
struct Buried {
    beanstalk_id: u64,
    priority: u32,
    age_s: u64,
    buries: u32,
    body: Vec<u8>,
    /// The cuttle job the body names, when cuttle has a record of it.
    job: Option<cuttle_core::Job>,
    reason: String,
    /// Empty when a kick would put it back to ready.
    kick_refused: String,
}

/// The first non-blank line of a body, cut to 200 characters, for listings.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    line.chars().take(200).collect()
}

/// Why the buried copy `beanstalk_id` of `job`, on `tube`, is not kicked; empty when it
/// may be. Kicking is only useful when a dispatcher could start the job from that copy.
fn kick_refusal(job: &cuttle_core::Job, tube: &MachineType, beanstalk_id: u64) -> String {
    if job.status.is_terminal() {
        // Terminal is final (cuttle_core::status): the copy would only be discarded.
        return format!(
            "job {} of run {} has ended ({}) and an ended job never runs again, so a kicked copy would only be discarded by its dispatcher; schedule the job again (cuttle suite --rerun {} --rerun-statuses {}) and delete this copy (cuttle queue delete-buried {tube} --beanstalk-id {beanstalk_id})",
            job.id, job.run_name, job.status, job.run_name, job.status
        );
    }
    if &job.spec.machine_type != tube {
        return format!(
            "job {} is for machine type {}, not {tube}, so a kicked copy would be buried again; delete this copy (cuttle queue delete-buried {tube} --beanstalk-id {beanstalk_id}) and cuttle-api puts the job on tube {} again",
            job.id, job.spec.machine_type, job.spec.machine_type
        );
    }
    if job.beanstalk_id != Some(beanstalk_id) {
        let live = job
            .beanstalk_id
            .map(|id| format!(" (its live copy is {id})"))
            .unwrap_or_default();
        return format!(
            "this is a stale copy of job {}{live}, so a kicked copy would only be discarded; delete it (cuttle queue delete-buried {tube} --beanstalk-id {beanstalk_id})",
            job.id
        );
    }
    String::new()
}

/// Why a recorded job's copy lies buried: its recorded reason, else the rule that buries it.
fn recorded_reason(job: &cuttle_core::Job, tube: &MachineType) -> String {
    if &job.spec.machine_type != tube {
        return format!(
            "job {} is for machine type {} but was put on tube {tube}",
            job.id, job.spec.machine_type
        );
    }
    match &job.reason {
        Some(reason) if !reason.trim().is_empty() => reason.clone(),
        _ => "buried by its dispatcher (no reason recorded; see the dispatcher's log)".to_owned(),
    }
}

impl QueueApi {
    pub fn new(app: App) -> QueueApi {
        QueueApi { app }
    }

    /// The caller, if it may kick or delete buried jobs (admins only), with a refusal
    /// that says so in those words rather than the generic lab-administration one.
    async fn admin(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        what: &str,
    ) -> Result<cuttle_core::auth::Caller, Status> {
        let caller = self.app.caller(metadata).await?;
        match self.app.check(&caller, Action::AdministerLab) {
            Ok(()) => Ok(caller),
            Err(status) if status.code() == tonic::Code::PermissionDenied => {
                Err(Status::permission_denied(format!(
                    "{caller} may not {what}: buried jobs are handled by lab admins; use the admin token (--token or CUTTLE_TOKEN) or ask a lab admin"
                )))
            }
            Err(status) => Err(status),
        }
    }

    /// The recorded jobs whose copies may lie buried on `tube`, by beanstalkd id.
    async fn candidates(
        &self,
        tube: &MachineType,
    ) -> Result<std::collections::HashMap<u64, cuttle_core::Job>, Status> {
        let lookup = tube.clone();
        let jobs = self
            .app
            .db(move |store| store.buried_candidates(&lookup, MAX_BURIED_CANDIDATES))
            .await?;
        let mut known = std::collections::HashMap::new();
        for job in jobs {
            if let Some(id) = job.beanstalk_id {
                // Newest first: a reused id keeps its newest job; an older one is still
                // found through its body.
                known.entry(id).or_insert(job);
            }
        }
        Ok(known)
    }

    /// The cuttle job a buried body names (when cuttle knows it), or why the body is
    /// refused, as ClaimJob decides it.
    async fn classify(&self, body: &[u8]) -> Result<(Option<cuttle_core::Job>, String), Status> {
        let bytes = body.to_vec();
        // Parsing YAML (under the budget) stays off the async workers, as in ClaimJob.
        let (classified, legacy_id) = tokio::task::spawn_blocking(move || {
            let (classified, config) = read_body_with_config(&bytes);
            let legacy_id = match (&classified, &config) {
                (Ok(Body::Teuthology { .. }), Some(config)) => legacy_job_id(config),
                _ => None,
            };
            (classified, legacy_id)
        })
        .await
        .map_err(errors::join)?;
        let (job_id, must_match) = match classified {
            Err(reason) => return Ok((None, reason)),
            Ok(Body::Cuttle(job_id)) => (job_id, false),
            Ok(Body::Teuthology { run, .. }) => match legacy_id {
                Some(job_id) => (job_id, true),
                None => {
                    return Ok((
                        None,
                        format!(
                            "a teuthology body of run {} that cuttle-api has no record of as buried (see the dispatcher's log)",
                            run.name
                        ),
                    ));
                }
            },
        };
        match self.app.db(move |store| store.get_job(job_id)).await {
            // A teuthology job_id names a cuttle job only with the body it was put with.
            Ok((job, _)) if !must_match || job.config_yaml.as_bytes() == body => {
                Ok((Some(job), String::new()))
            }
            Ok(_) => Ok((
                None,
                format!("body names job {job_id}, which cuttle-api does not know"),
            )),
            Err(status) if status.code() == tonic::Code::NotFound => Ok((
                None,
                format!("body names cuttle job {job_id}, which cuttle-api does not know"),
            )),
            Err(status) => Err(status),
        }
    }

    /// beanstalkd job `beanstalk_id` if it lies buried on `tube`, with its cuttle job
    /// (`known`, else what its body names) and why; `None` otherwise.
    async fn inspect(
        &self,
        tube: &MachineType,
        beanstalk_id: u64,
        known: &std::collections::HashMap<u64, cuttle_core::Job>,
    ) -> Result<Option<Buried>, Status> {
        let stats = match self.app.queue().stats_job(beanstalk_id).await {
            Ok(stats) => stats,
            // NOT_FOUND: deleted, or never there.
            Err(QueueError::Refused { .. }) => return Ok(None),
            Err(error) => return Err(beanstalk(error)),
        };
        let field = |key: &str| stats.get(key).map(String::as_str);
        if field("tube") != Some(tube.as_str()) || field("state") != Some("buried") {
            return Ok(None);
        }
        let Some(body) = self
            .app
            .queue()
            .peek(beanstalk_id)
            .await
            .map_err(beanstalk)?
        else {
            return Ok(None);
        };
        let number = |key: &str| field(key).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        // A recorded job owns the copy only if the copy holds its body: ids are reused
        // after a beanstalkd restart without its binlog.
        let recorded = known
            .get(&beanstalk_id)
            .filter(|job| job.config_yaml.as_bytes() == body.as_slice())
            .cloned();
        let (job, refused_body) = match recorded {
            Some(job) => (Some(job), String::new()),
            None => self.classify(&body).await?,
        };
        let (reason, kick_refused) = match &job {
            Some(job) => (
                recorded_reason(job, tube),
                kick_refusal(job, tube, beanstalk_id),
            ),
            // No record: a kick hands the body to ClaimJob again, which may take it now
            // (or bury it again, if nothing changed).
            None => (refused_body, String::new()),
        };
        Ok(Some(Buried {
            beanstalk_id,
            priority: u32::try_from(number("pri")).unwrap_or(u32::MAX),
            age_s: number("age"),
            buries: u32::try_from(number("buries")).unwrap_or(u32::MAX),
            body,
            job,
            reason,
            kick_refused,
        }))
    }

    /// beanstalkd's count of buried jobs on `tube`; 0 for a tube beanstalkd does not know.
    async fn buried_total(&self, tube: &MachineType) -> Result<u64, Status> {
        match self.app.queue().stats_tube(tube.as_str()).await {
            Ok(stats) => Ok(stats
                .get("current-jobs-buried")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)),
            // NOT_FOUND: nothing was ever put on it.
            Err(QueueError::Refused { .. }) => Ok(0),
            Err(error) => Err(beanstalk(error)),
        }
    }

    /// Every buried job of `tube` that can be seen, oldest beanstalkd id first, and
    /// beanstalkd's count of them.
    async fn find_buried(&self, tube: &MachineType) -> Result<(Vec<Buried>, u64), Status> {
        let total = self.buried_total(tube).await?;
        if total == 0 {
            return Ok((Vec::new(), 0));
        }
        let known = self.candidates(tube).await?;
        let mut ids: Vec<u64> = known.keys().copied().collect();
        ids.sort_unstable();
        let mut found = Vec::new();
        for id in ids {
            // Everything buried is found: the rest are deleted copies.
            if found.len() as u64 >= total {
                break;
            }
            if let Some(buried) = self.inspect(tube, id, &known).await? {
                found.push(buried);
            }
        }
        if (found.len() as u64) < total
            && let Some((head, _)) = self
                .app
                .queue()
                .peek_buried(tube.as_str())
                .await
                .map_err(beanstalk)?
            && !found.iter().any(|buried| buried.beanstalk_id == head)
            && let Some(buried) = self.inspect(tube, head, &known).await?
        {
            found.push(buried);
        }
        found.sort_by_key(|buried| buried.beanstalk_id);
        Ok((found, total))
    }

    /// The buried copy a kick or delete names: `beanstalk_id`, or job `job_id`'s copy.
    /// NOT_FOUND, saying where to look, when it is not buried on `tube`.
    async fn target(
        &self,
        tube: &MachineType,
        beanstalk_id: u64,
        job_id: i64,
    ) -> Result<Buried, Status> {
        let mut known = self.candidates(tube).await?;
        let beanstalk_id = if job_id != 0 {
            let id = super::job_id(job_id)?;
            let (job, _) = self.app.db(move |store| store.get_job(id)).await?;
            let Some(copy) = job.beanstalk_id else {
                return Err(Status::failed_precondition(format!(
                    "job {id} has no beanstalkd copy (it was never put, or its copy was lost); see its timeline with cuttle job show {id}"
                )));
            };
            known.insert(copy, job);
            copy
        } else {
            beanstalk_id
        };
        self.inspect(tube, beanstalk_id, &known)
            .await?
            .ok_or_else(|| {
                let whose = if job_id != 0 {
                    format!("job {job_id}'s beanstalkd copy {beanstalk_id}")
                } else {
                    format!("beanstalkd job {beanstalk_id}")
                };
                Status::not_found(format!(
                    "{whose} is not buried on tube {tube} (it is ready, reserved, deleted or on another tube); list the buried jobs with cuttle queue buried {tube}"
                ))
            })
    }

    /// Writes `note` in the timeline of the job a buried copy belongs to, if any. The
    /// beanstalkd change is already done, so a failure here is only logged.
    async fn note(&self, buried: &Buried, note: String) {
        let Some(job) = &buried.job else {
            return;
        };
        let id = job.id;
        if let Err(status) = self
            .app
            .db(move |store| store.note_job(id, &note, now()))
            .await
        {
            tracing::warn!(job_id = %id, detail = status.message(), "cannot note a buried copy's change");
        }
    }

    /// Kicks one buried copy the caller may kick (its refusal was checked).
    async fn kick(&self, buried: &Buried, by: &str) -> Result<(), Status> {
        let kicked = self
            .app
            .queue()
            .kick_job(buried.beanstalk_id)
            .await
            .map_err(beanstalk)?;
        if !kicked {
            return Err(Status::not_found(format!(
                "beanstalkd job {} is no longer buried (kicked or deleted meanwhile)",
                buried.beanstalk_id
            )));
        }
        tracing::info!(beanstalk_id = buried.beanstalk_id, by, "buried job kicked");
        self.note(
            buried,
            format!(
                "buried beanstalkd copy {} kicked back to ready by {by}",
                buried.beanstalk_id
            ),
        )
        .await;
        Ok(())
    }

    /// Buried copies on the wire, their jobs with their nodes, in one database call.
    async fn to_proto(&self, list: Vec<Buried>) -> Result<Vec<BuriedJob>, Status> {
        let jobs: Vec<cuttle_core::Job> = list.iter().filter_map(|b| b.job.clone()).collect();
        let mut shown: std::collections::HashMap<i64, v1::Job> = self
            .app
            .jobs_with_nodes(jobs)
            .await?
            .into_iter()
            .map(|job| (job.id, job))
            .collect();
        Ok(list
            .into_iter()
            .map(|buried| BuriedJob {
                beanstalk_id: buried.beanstalk_id,
                priority: buried.priority,
                age_s: buried.age_s,
                buries: buried.buries,
                job: buried.job.as_ref().and_then(|job| shown.remove(&job.id.0)),
                reason: buried.reason,
                body_first_line: first_line(&buried.body),
                kick_refused: buried.kick_refused,
            })
            .collect())
    }
}

/// Exactly one of a beanstalkd id, a job id (and, for kicks, `all`), or the refusal.
fn one_target(beanstalk_id: u64, job_id: i64, all: Option<bool>) -> Result<(), Status> {
    let given =
        usize::from(beanstalk_id != 0) + usize::from(job_id != 0) + usize::from(all == Some(true));
    if given == 1 {
        return Ok(());
    }
    let choices = if all.is_some() {
        "a beanstalkd id, a job id, or all"
    } else {
        "a beanstalkd id or a job id"
    };
    Err(errors::invalid(InvalidInput::new(
        "buried job",
        format!("name exactly one of {choices} (see cuttle queue buried TYPE)"),
    )))
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

    async fn list_buried(
        &self,
        request: Request<ListBuriedRequest>,
    ) -> Result<Response<ListBuriedResponse>, Status> {
        observe("QueueService/ListBuried", async {
            self.app.authorize(request.metadata(), Action::Read).await?;
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            let limit = match request.limit {
                0 => 100,
                limit => limit.min(1000),
            } as usize;
            let (mut found, buried_total) = self.find_buried(&tube).await?;
            found.truncate(limit);
            Ok(ListBuriedResponse {
                jobs: self.to_proto(found).await?,
                buried_total,
            })
        })
        .await
    }

    async fn kick_buried(
        &self,
        request: Request<KickBuriedRequest>,
    ) -> Result<Response<KickBuriedResponse>, Status> {
        observe("QueueService/KickBuried", async {
            let caller = self.admin(request.metadata(), "kick buried jobs").await?;
            let by = caller.user().map(ToString::to_string).unwrap_or_default();
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            one_target(request.beanstalk_id, request.job_id, Some(request.all))?;
            if !request.all {
                let buried = self.target(&tube, request.beanstalk_id, request.job_id).await?;
                if !buried.kick_refused.is_empty() {
                    return Err(Status::failed_precondition(format!(
                        "not kicked: {}",
                        buried.kick_refused
                    )));
                }
                self.kick(&buried, &by).await?;
                return Ok(KickBuriedResponse {
                    kicked: self.to_proto(vec![buried]).await?,
                    refused: Vec::new(),
                    unseen: 0,
                });
            }
            // Job by job (kick-job), never beanstalkd's `kick N`: that would also kick
            // the copies of ended jobs, which a kick must leave alone.
            let (found, total) = self.find_buried(&tube).await?;
            let mut seen: std::collections::HashSet<u64> =
                found.iter().map(|buried| buried.beanstalk_id).collect();
            let (mut kicked, mut refused) = (Vec::new(), Vec::new());
            let mut pending = found;
            loop {
                for buried in pending.drain(..) {
                    if !buried.kick_refused.is_empty() {
                        refused.push(buried);
                        continue;
                    }
                    match self.kick(&buried, &by).await {
                        Ok(()) => kicked.push(buried),
                        // Kicked or deleted by someone else meanwhile: nothing to do.
                        Err(status) if status.code() == tonic::Code::NotFound => {}
                        Err(status) => return Err(status),
                    }
                }
                // Bodies with no record are seen one at a time, as the tube's first
                // buried job; stop at one already handled (refused, or kicked and buried
                // again by a dispatcher meanwhile).
                if (kicked.len() + refused.len()) as u64 >= total {
                    break;
                }
                let head = self
                    .app
                    .queue()
                    .peek_buried(tube.as_str())
                    .await
                    .map_err(beanstalk)?;
                let Some((head, _)) = head.filter(|(head, _)| seen.insert(*head)) else {
                    break;
                };
                match self.inspect(&tube, head, &std::collections::HashMap::new()).await? {
                    Some(buried) => pending.push(buried),
                    None => break,
                }
            }
            let unseen = total.saturating_sub((kicked.len() + refused.len()) as u64);
            tracing::info!(tube = %tube, kicked = kicked.len(), refused = refused.len(), unseen, "buried jobs kicked");
            Ok(KickBuriedResponse {
                kicked: self.to_proto(kicked).await?,
                refused: self.to_proto(refused).await?,
                unseen,
            })
        })
        .await
    }

    async fn delete_buried(
        &self,
        request: Request<DeleteBuriedRequest>,
    ) -> Result<Response<BuriedJob>, Status> {
        observe("QueueService/DeleteBuried", async {
            let caller = self.admin(request.metadata(), "delete buried jobs").await?;
            let by = caller.user().map(ToString::to_string).unwrap_or_default();
            let request = request.into_inner();
            let tube = machine_type(&request.machine_type)?;
            one_target(request.beanstalk_id, request.job_id, None)?;
            let buried = self
                .target(&tube, request.beanstalk_id, request.job_id)
                .await?;
            match self.app.queue().delete(buried.beanstalk_id).await {
                Ok(()) => {}
                Err(QueueError::Refused { .. }) => {
                    return Err(Status::not_found(format!(
                        "beanstalkd job {} is no longer buried (kicked or deleted meanwhile)",
                        buried.beanstalk_id
                    )));
                }
                Err(error) => return Err(beanstalk(error)),
            }
            tracing::info!(beanstalk_id = buried.beanstalk_id, by = %by, "buried job deleted");
            self.note(
                &buried,
                format!(
                    "buried beanstalkd copy {} deleted by {by}",
                    buried.beanstalk_id
                ),
            )
            .await;
            // A job still waiting to run loses its only copy: forgetting the id makes the
            // enqueue retry loop put a fresh one on its own machine type's tube.
            if let Some(job) = &buried.job
                && !job.status.is_terminal()
                && job.beanstalk_id == Some(buried.beanstalk_id)
            {
                crate::enqueue::forget_lost_copy(
                    &self.app,
                    job.id,
                    buried.beanstalk_id,
                    &job.config_yaml,
                )
                .await;
            }
            let mut shown = self.to_proto(vec![buried]).await?;
            Ok(shown.pop().expect("one buried job in, one out"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_core::{Job, JobSpec, JobStatus, NodeCount, RunName, UnixMillis};

    fn job(status: JobStatus, machine_type: &str, beanstalk_id: Option<u64>) -> Job {
        Job {
            id: JobId(7),
            run_name: RunName::parse("alice-run").unwrap(),
            owner: Owner::parse("alice").unwrap(),
            spec: JobSpec {
                description: String::new(),
                machine_type: MachineType::parse(machine_type).unwrap(),
                priority: Priority::default(),
                n_nodes: NodeCount::new(1).unwrap(),
                time_limit: None,
                os_type: String::new(),
                os_version: String::new(),
            },
            status,
            reason: None,
            beanstalk_id,
            config_yaml: String::new(),
            created_at: UnixMillis(0),
            updated_at: UnixMillis(0),
            heartbeat_at: None,
            dispatcher: None,
            supervisor: None,
            started_at: None,
        }
    }

    fn smithi() -> MachineType {
        MachineType::parse("smithi").unwrap()
    }

    #[test]
    fn only_a_waiting_jobs_live_copy_on_its_own_tube_is_kicked() {
        assert_eq!(
            kick_refusal(&job(JobStatus::Queued, "smithi", Some(12)), &smithi(), 12),
            ""
        );
        // Ended: never revived, rescheduled instead.
        let refusal = kick_refusal(&job(JobStatus::Dead, "smithi", Some(12)), &smithi(), 12);
        assert!(
            refusal.contains("job 7 of run alice-run has ended (dead)"),
            "{refusal}"
        );
        assert!(
            refusal.contains("cuttle suite --rerun alice-run --rerun-statuses dead"),
            "{refusal}"
        );
        assert!(
            refusal.contains("cuttle queue delete-buried smithi --beanstalk-id 12"),
            "{refusal}"
        );
        // On the wrong tube: it would be buried again; deleting it puts it right.
        let refusal = kick_refusal(&job(JobStatus::Queued, "mira", Some(12)), &smithi(), 12);
        assert!(
            refusal.contains("is for machine type mira, not smithi"),
            "{refusal}"
        );
        assert!(refusal.contains("on tube mira again"), "{refusal}");
        // A stale copy: the job's live copy is another.
        let refusal = kick_refusal(&job(JobStatus::Queued, "smithi", Some(13)), &smithi(), 12);
        assert!(
            refusal.contains("stale copy of job 7 (its live copy is 13)"),
            "{refusal}"
        );
    }

    #[test]
    fn a_recorded_copy_says_why_it_lies_buried() {
        let mut dead = job(JobStatus::Dead, "smithi", Some(12));
        dead.reason = Some("needs 5 nodes".into());
        assert_eq!(recorded_reason(&dead, &smithi()), "needs 5 nodes");
        dead.reason = None;
        assert!(recorded_reason(&dead, &smithi()).contains("dispatcher's log"));
        let elsewhere = job(JobStatus::Queued, "mira", Some(12));
        assert_eq!(
            recorded_reason(&elsewhere, &smithi()),
            "job 7 is for machine type mira but was put on tube smithi"
        );
    }

    #[test]
    fn a_body_is_shown_by_its_first_line_that_says_something() {
        assert_eq!(first_line(b"\n  \nname: r\nowner: o\n"), "name: r");
        assert_eq!(first_line(b""), "");
        assert_eq!(first_line(&[b'x'; 500]).len(), 200);
        assert_eq!(first_line(b"\xff\xfeab\n"), "\u{fffd}\u{fffd}ab");
    }

    #[test]
    fn a_kick_or_delete_names_exactly_one_target() {
        assert!(one_target(12, 0, Some(false)).is_ok());
        assert!(one_target(0, 7, None).is_ok());
        assert!(one_target(0, 0, Some(true)).is_ok());
        for (beanstalk_id, job_id, all) in [(0, 0, Some(false)), (12, 7, None), (12, 0, Some(true))]
        {
            let status = one_target(beanstalk_id, job_id, all).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(
                status.message().contains("exactly one"),
                "{}",
                status.message()
            );
        }
    }
}
