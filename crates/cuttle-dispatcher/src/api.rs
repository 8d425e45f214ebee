//! What the dispatcher asks of cuttle-api, as a trait ([`Api`]) over core types, and its
//! one real implementation over gRPC ([`GrpcApi`]). The dispatcher's loop only ever
//! talks to the trait, so its decisions run in unit tests against an in-memory lab.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cuttle_core::dispatch::{Claimed, JobOnNodes, PlanState};
use cuttle_core::{Job, JobId};
use cuttle_policy::PolicyConfig;
use cuttle_proto::bearer::Authed;
use cuttle_proto::convert;
use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{
    self, AcquireLeaseRequest, ClaimJobRequest, ClaimReleasesRequest, LockNodesBatchRequest,
    LockNodesRequest, PlanStateRequest, RecordDispatchRequest, RecordDispatchesRequest,
    ReleaseLeaseRequest, RequeueJobRequest, UpdateJobStatusRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

/// Why a call failed, in the terms the dispatcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// cuttle-api refused on the state of things: the lease is not ours, the job ended or
    /// can never fit. Retrying the same call will not help.
    Refused(String),
    /// cuttle-api refuses this dispatcher's token.
    Denied(String),
    /// Anything else (unreachable, overloaded, a bug): worth retrying later.
    Failed(String),
}

impl ApiError {
    pub fn message(&self) -> &str {
        match self {
            ApiError::Refused(message) | ApiError::Denied(message) | ApiError::Failed(message) => {
                message
            }
        }
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> ApiError {
        let message = status.message().to_owned();
        match status.code() {
            Code::FailedPrecondition => ApiError::Refused(message),
            Code::Unauthenticated | Code::PermissionDenied => ApiError::Denied(message),
            _ => ApiError::Failed(message),
        }
    }
}

/// cuttle-api's answer to a lease request.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseAnswer {
    pub granted: bool,
    pub paused: bool,
    /// The policy and window size to plan with, when cuttle-api sent them.
    pub policy: Option<(PolicyConfig, usize)>,
}

/// What the dispatcher needs from cuttle-api. Every call is for this dispatcher's tube
/// and lease holder, which the implementation knows.
pub trait Api: Send {
    /// Takes or renews the tube's lease for `ttl`.
    fn acquire_lease(
        &mut self,
        ttl: Duration,
    ) -> impl Future<Output = Result<LeaseAnswer, ApiError>> + Send;
    /// Gives the lease up.
    fn release_lease(&mut self) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// What to do with a reserved copy.
    fn claim(
        &mut self,
        beanstalk_id: u64,
        body: &[u8],
    ) -> impl Future<Output = Result<Claimed, ApiError>> + Send;
    /// The lab and the window's jobs, for a planning round.
    fn plan_state(
        &mut self,
        jobs: &[JobId],
        default_time_limit_ms: i64,
    ) -> impl Future<Output = Result<PlanState, ApiError>> + Send;
    /// Locks the nodes of these claimed jobs in one call, each all or nothing and on its
    /// own: one answer per job, in order, with the locked nodes' names. A job's
    /// `Refused`: it ended or can never fit any more; its `Failed`: not enough free now.
    /// `Err` for the whole call: nothing was locked (or cuttle-api could not be reached).
    fn lock_nodes_batch(
        &mut self,
        jobs: &[&Job],
    ) -> impl Future<Output = Result<Vec<Result<Vec<String>, ApiError>>, ApiError>> + Send;
    /// Records, in one call, that each (job, supervisor pid) runs: one answer per job, in
    /// order. Only a job answered `Ok` may be told to go.
    fn record_dispatches(
        &mut self,
        started: &[(JobId, u32)],
    ) -> impl Future<Output = Result<Vec<Result<(), ApiError>>, ApiError>> + Send;
    /// Hands a claimed job back to `queued`.
    fn requeue(
        &mut self,
        job: JobId,
        reason: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Ends a job the policy says can never run `dead`.
    fn mark_dead(
        &mut self,
        job: JobId,
        reason: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Ended jobs whose nodes were never given back, claimed for release supervisors.
    fn claim_releases(
        &mut self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<JobOnNodes>, ApiError>> + Send;
    /// Wakes `wake` on every event of the tube (nodes freed or up, jobs queued) until
    /// `stop`; returns at once if this cuttle-api reports no events.
    fn watch(
        &self,
        wake: Arc<tokio::sync::Notify>,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// The real cuttle-api, over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcApi {
    tube: String,
    holder: String,
    host: String,
    dispatch: DispatchServiceClient<Authed>,
    nodes: NodeServiceClient<Authed>,
    runs: RunServiceClient<Authed>,
}

impl GrpcApi {
    pub fn new(
        channel: tonic::transport::Channel,
        bearer: cuttle_proto::bearer::Bearer,
        tube: &str,
        holder: &str,
        host: &str,
    ) -> GrpcApi {
        GrpcApi {
            tube: tube.to_owned(),
            holder: holder.to_owned(),
            host: host.to_owned(),
            dispatch: DispatchServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            runs: RunServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            nodes: NodeServiceClient::with_interceptor(channel, bearer),
        }
    }
}

impl GrpcApi {
    /// One job's lock, as an older cuttle-api without LockNodesBatch takes it.
    async fn lock_nodes(&mut self, job: &Job) -> Result<Vec<String>, ApiError> {
        let locked = self
            .nodes
            .lock_nodes(LockNodesRequest {
                machine_type: job.spec.machine_type.to_string(),
                count: job.spec.n_nodes.get(),
                owner: job.owner.to_string(),
                job_id: Some(job.id.0),
                dispatcher: Some(self.holder.clone()),
            })
            .await?
            .into_inner();
        Ok(locked.nodes.into_iter().map(|node| node.name).collect())
    }

    /// One LockNodesBatch call (at most [`cuttle_proto::MAX_BATCH_JOBS`] jobs); one
    /// LockNodes per job against a cuttle-api without it.
    async fn lock_nodes_chunk(
        &mut self,
        jobs: &[&Job],
    ) -> Result<Vec<Result<Vec<String>, ApiError>>, ApiError> {
        let ids: Vec<JobId> = jobs.iter().map(|job| job.id).collect();
        let answer = self
            .dispatch
            .lock_nodes_batch(LockNodesBatchRequest {
                holder: self.holder.clone(),
                job_ids: ids.iter().map(|id| id.0).collect(),
            })
            .await;
        match answer {
            Ok(answer) => Ok(per_job(convert::locked_jobs_from_proto(
                &ids,
                &answer.into_inner(),
            ))),
            Err(status) if status.code() == Code::Unimplemented => {
                let mut answers = Vec::with_capacity(jobs.len());
                for job in jobs {
                    answers.push(self.lock_nodes(job).await);
                }
                Ok(answers)
            }
            Err(status) => Err(status.into()),
        }
    }

    /// One RecordDispatches call (at most [`cuttle_proto::MAX_BATCH_JOBS`] jobs); one
    /// RecordDispatch per job against a cuttle-api without it.
    async fn record_dispatches_chunk(
        &mut self,
        started: &[(JobId, u32)],
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        let ids: Vec<JobId> = started.iter().map(|(id, _)| *id).collect();
        let answer = self
            .dispatch
            .record_dispatches(RecordDispatchesRequest {
                dispatches: started
                    .iter()
                    .map(|(job, pid)| self.record_request(*job, *pid))
                    .collect(),
            })
            .await;
        match answer {
            Ok(answer) => Ok(per_job(convert::recorded_dispatches_from_proto(
                &ids,
                &answer.into_inner(),
            ))),
            Err(status) if status.code() == Code::Unimplemented => {
                let mut answers = Vec::with_capacity(started.len());
                for (job, pid) in started {
                    let request = self.record_request(*job, *pid);
                    answers.push(
                        self.dispatch
                            .record_dispatch(request)
                            .await
                            .map(drop)
                            .map_err(ApiError::from),
                    );
                }
                Ok(answers)
            }
            Err(status) => Err(status.into()),
        }
    }

    fn record_request(&self, job: JobId, pid: u32) -> RecordDispatchRequest {
        RecordDispatchRequest {
            job_id: job.0,
            holder: self.holder.clone(),
            supervisor_pid: pid,
            supervisor_host: self.host.clone(),
        }
    }
}

/// A call split into chunks whose chunk failed as a whole, after `answers` came for the
/// chunks before it. Those keep their answers: their jobs were locked or recorded, and
/// treating a recorded job as unrecorded would requeue a running job and leave its
/// supervisor without a go. Every job from the failed chunk on is answered with its
/// error, and no later chunk is sent (cuttle-api just failed). Only when no chunk went
/// through is it the whole call's `Err`: then nothing was done.
fn rest_failed<T>(
    mut answers: Vec<Result<T, ApiError>>,
    total: usize,
    error: ApiError,
) -> Result<Vec<Result<T, ApiError>>, ApiError> {
    if answers.is_empty() {
        return Err(error);
    }
    answers.resize_with(total, || Err(error.clone()));
    Ok(answers)
}

/// A batch's per-job statuses in the dispatcher's terms.
fn per_job<T>(answers: Vec<Result<T, Status>>) -> Vec<Result<T, ApiError>> {
    answers
        .into_iter()
        .map(|answer| answer.map_err(ApiError::from))
        .collect()
}

/// A wire answer this version cannot read: a mismatched cuttle-api.
fn unreadable(error: &cuttle_core::InvalidInput) -> ApiError {
    ApiError::Failed(format!(
        "cuttle-api sent what this dispatcher cannot read ({error}); run the same cuttle version on both"
    ))
}

impl Api for GrpcApi {
    async fn acquire_lease(&mut self, ttl: Duration) -> Result<LeaseAnswer, ApiError> {
        let response = self
            .dispatch
            .acquire_lease(AcquireLeaseRequest {
                machine_type: self.tube.clone(),
                holder: self.holder.clone(),
                host: self.host.clone(),
                pid: std::process::id(),
                ttl_ms: u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX),
            })
            .await?
            .into_inner();
        Ok(LeaseAnswer {
            granted: response.granted,
            paused: response.tube.as_ref().is_some_and(|tube| tube.paused),
            policy: response.policy.as_ref().map(convert::policy_from_proto),
        })
    }

    async fn release_lease(&mut self) -> Result<(), ApiError> {
        self.dispatch
            .release_lease(ReleaseLeaseRequest {
                machine_type: self.tube.clone(),
                holder: self.holder.clone(),
            })
            .await?;
        Ok(())
    }

    async fn claim(&mut self, beanstalk_id: u64, body: &[u8]) -> Result<Claimed, ApiError> {
        let answer = self
            .dispatch
            .claim_job(ClaimJobRequest {
                machine_type: self.tube.clone(),
                holder: self.holder.clone(),
                beanstalk_id,
                body: String::from_utf8_lossy(body).into_owned(),
                defer_lock: true,
            })
            .await?
            .into_inner();
        convert::claimed_from_proto(&answer).map_err(|error| unreadable(&error))
    }

    async fn plan_state(
        &mut self,
        jobs: &[JobId],
        default_time_limit_ms: i64,
    ) -> Result<PlanState, ApiError> {
        let state = self
            .dispatch
            .get_plan_state(PlanStateRequest {
                machine_type: self.tube.clone(),
                job_ids: jobs.iter().map(|id| id.0).collect(),
                default_time_limit_ms,
            })
            .await?
            .into_inner();
        Ok(convert::plan_state_from_proto(&state))
    }

    async fn lock_nodes_batch(
        &mut self,
        jobs: &[&Job],
    ) -> Result<Vec<Result<Vec<String>, ApiError>>, ApiError> {
        let mut answers = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(cuttle_proto::MAX_BATCH_JOBS) {
            match self.lock_nodes_chunk(chunk).await {
                Ok(chunk_answers) => answers.extend(chunk_answers),
                Err(error) => return rest_failed(answers, jobs.len(), error),
            }
        }
        Ok(answers)
    }

    async fn record_dispatches(
        &mut self,
        started: &[(JobId, u32)],
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        let mut answers = Vec::with_capacity(started.len());
        for chunk in started.chunks(cuttle_proto::MAX_BATCH_JOBS) {
            match self.record_dispatches_chunk(chunk).await {
                Ok(chunk_answers) => answers.extend(chunk_answers),
                Err(error) => return rest_failed(answers, started.len(), error),
            }
        }
        Ok(answers)
    }

    async fn requeue(&mut self, job: JobId, reason: &str) -> Result<(), ApiError> {
        self.dispatch
            .requeue_job(RequeueJobRequest {
                job_id: job.0,
                holder: self.holder.clone(),
                reason: reason.to_owned(),
            })
            .await?;
        Ok(())
    }

    async fn mark_dead(&mut self, job: JobId, reason: &str) -> Result<(), ApiError> {
        self.runs
            .update_job_status(UpdateJobStatusRequest {
                job_id: job.0,
                status: v1::JobStatus::Dead as i32,
                reason: reason.to_owned(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    async fn claim_releases(&mut self, limit: u32) -> Result<Vec<JobOnNodes>, ApiError> {
        let response = self
            .dispatch
            .claim_releases(ClaimReleasesRequest {
                machine_type: self.tube.clone(),
                holder: self.holder.clone(),
                limit,
            })
            .await?
            .into_inner();
        let (releases, unreadable_ones) = convert::releases_from_proto(&response.releases);
        for error in unreadable_ones {
            tracing::error!(%error, "cuttle-api sent a release this dispatcher cannot read");
        }
        Ok(releases)
    }

    fn watch(
        &self,
        wake: Arc<tokio::sync::Notify>,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        watch_tube(self.dispatch.clone(), self.tube.clone(), wake, stop)
    }
}

/// Watches the tube's events on cuttle-api (DispatchService/WatchTube) until `stop`, and
/// wakes the planning loop on each; reconnects after a second when the stream ends, and
/// wakes the loop then too, since events may have been missed meanwhile. An older
/// cuttle-api without the call leaves the loop to its timer.
async fn watch_tube(
    mut client: DispatchServiceClient<Authed>,
    tube: String,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = client.watch_tube(v1::WatchTubeRequest { machine_type: tube.clone() }) => opened,
        };
        match opened {
            Ok(response) => {
                let mut events = response.into_inner();
                wake.notify_one();
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = events.message() => next,
                    };
                    match next {
                        Ok(Some(event)) => {
                            tracing::trace!(kind = %event.kind, count = event.count, "tube event");
                            wake.notify_one();
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!(
                    "cuttle-api streams no tube events (an older version): planning on the timer alone"
                );
                return;
            }
            Err(status) => {
                tracing::debug!(
                    detail = status.message(),
                    "cannot watch the tube's events; retrying"
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_later_chunk_keeps_the_answers_of_the_chunks_before_it() {
        let lost = ApiError::Failed("cuttle-api went away".into());
        // Two chunks of two went through (one job refused), the third failed as a whole:
        // the recorded jobs stay recorded, the rest carry the chunk's error.
        let before: Vec<Result<(), ApiError>> = vec![
            Ok(()),
            Ok(()),
            Err(ApiError::Refused("ended".into())),
            Ok(()),
        ];
        let answers = rest_failed(before.clone(), 7, lost.clone()).unwrap();
        assert_eq!(answers.len(), 7);
        assert_eq!(answers[..4], before[..]);
        assert!(
            answers[4..]
                .iter()
                .all(|answer| *answer == Err(lost.clone()))
        );
        // The first chunk failed: nothing was done, so the whole call failed.
        assert_eq!(rest_failed::<()>(Vec::new(), 3, lost.clone()), Err(lost));
    }
}
