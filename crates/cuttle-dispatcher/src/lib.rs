//! cuttle-dispatcher as a library: [`run`] holds (or waits for) its tube's lease and,
//! while it holds it, reserves jobs, has cuttle-api claim them, locks their nodes and
//! starts a supervisor for each. `main.rs` only parses settings and calls [`run`].
//!
//! **Invariant:** a beanstalkd job is deleted only after cuttle-api has recorded its
//! dispatch (or said the copy is stale or its job ended). If this process dies at any
//! point, beanstalkd hands the reservation out again (the connection closed) and
//! cuttle-api's claim and reaper sort out what was half done.
//!
//! The dispatcher decides nothing about jobs itself: cuttle-api answers each reservation
//! with start, discard or bury. It never waits for a job to finish.

pub mod metrics;
pub mod settings;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use cuttle_proto::bearer::{Authed, Bearer};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use cuttle_policy::{Aging, Decision, PolicyConfig, QueuedJob, Snapshot, StartReason, plan};
use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{
    self, AcquireLeaseRequest, ClaimAction, ClaimJobRequest, ClaimReleasesRequest,
    LockNodesRequest, PlanStateRequest, RecordDispatchRequest, ReleaseLeaseRequest,
    RequeueJobRequest, UpdateJobStatusRequest,
};
use cuttle_queue::{QueueClient, Reserved};

pub use settings::{Cli, CrashPoint, FileConfig, Settings};

/// How long one reserve waits for a job before the loop checks its lease and pause.
const RESERVE_WAIT: Duration = Duration::from_secs(1);
/// How often a reservation waiting for nodes is touched (beanstalkd TTRs are >= 10 s).
const TOUCH_EVERY: Duration = Duration::from_secs(3);

/// How long an idle dispatcher waits before planning again when no tube event wakes it:
/// events (nodes freed or up, jobs queued) wake it at once; this round catches what no
/// event reports (a running job outliving its estimate, a lost event).
const IDLE_REPLAN: Duration = Duration::from_secs(1);

/// Why the active loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    LeaseLost,
    QueueEmpty,
}

/// One dispatcher process.
#[derive(Debug)]
pub struct Dispatcher {
    settings: Settings,
    /// This process's lease holder id: host, pid and a random part, so a restart (same
    /// pid reused or not) is a new holder.
    holder: String,
    host: String,
    lab_json: String,
    dispatch: DispatchServiceClient<Authed>,
    nodes: NodeServiceClient<Authed>,
    queue: QueueClient,
    /// When the lease was last confirmed, and whether the tube is paused.
    lease_confirmed: Option<Instant>,
    paused: bool,
    last_release_scan: Option<Instant>,
    dispatched: u64,
    runs: RunServiceClient<Authed>,
    /// The policy and window size cuttle-api sent with the lease.
    policy: PolicyConfig,
    window_size: usize,
    /// Jobs reserved and claimed, waiting for the policy to start them.
    window: Vec<Held>,
    metrics: metrics::Metrics,
    /// When the last planning round ended, and how many nodes it left free while jobs
    /// still waited: the idle node-seconds counted at the next round.
    last_round: Option<(Instant, u32)>,
}

/// A job in the look-ahead window: reserved on our connection and claimed (`waiting`).
#[derive(Debug, Clone)]
struct Held {
    beanstalk_id: u64,
    /// The body it was reserved with: proof that an id still names this copy.
    body: Vec<u8>,
    job: v1::Job,
    /// The priority its beanstalkd copy has.
    queue_priority: u32,
    touched: Instant,
    /// When it was reserved into the window: its lock wait starts here.
    reserved_at: Instant,
}

/// The wall clock in Unix milliseconds, read here at the edge for the policy.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A window job as the policy orders it (its estimate is filled from the plan state).
fn queued_job(held: &Held) -> QueuedJob {
    QueuedJob::new(
        held.job.id as u64,
        held.job.priority,
        held.job.n_nodes,
        held.job.created_at_ms,
    )
}

pub use cuttle_runtime::host_name;

impl Dispatcher {
    pub fn new(settings: Settings) -> anyhow::Result<Dispatcher> {
        let ca_pem = settings
            .tls_ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .with_context(|| format!("cannot read tls_ca_file {}", path.display()))
            })
            .transpose()?;
        let channel = cuttle_proto::endpoint::endpoint(&settings.api, ca_pem.as_deref())
            .with_context(|| format!("invalid --api {}", settings.api))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        let host = host_name();
        let holder = format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let lab_json = serde_json::to_string(&settings.lab).context("cannot encode [lab]")?;
        let bearer = Bearer::for_token(settings.token.as_ref()).context("invalid token")?;
        if settings.token.is_none() {
            tracing::warn!(
                "no service token (token_file or CUTTLE_TOKEN): cuttle-api will refuse this dispatcher"
            );
        }
        Ok(Dispatcher {
            metrics: metrics::Metrics::new(settings.machine_type.as_str()),
            last_round: None,
            queue: QueueClient::new(&settings.beanstalk),
            settings,
            holder,
            host,
            lab_json,
            dispatch: DispatchServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            runs: RunServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            nodes: NodeServiceClient::with_interceptor(channel, bearer),
            policy: PolicyConfig::default(),
            window_size: cuttle_policy::DEFAULT_WINDOW,
            window: Vec::new(),
            lease_confirmed: None,
            paused: false,
            last_release_scan: None,
            dispatched: 0,
        })
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn tube(&self) -> &str {
        self.settings.machine_type.as_str()
    }

    /// Takes or renews the lease; true if this process holds it now.
    async fn acquire_lease(&mut self) -> Result<bool, Status> {
        let response = self
            .dispatch
            .acquire_lease(AcquireLeaseRequest {
                machine_type: self.tube().to_owned(),
                holder: self.holder.clone(),
                host: self.host.clone(),
                pid: std::process::id(),
                ttl_ms: u32::try_from(self.settings.lease_ttl.as_millis()).unwrap_or(u32::MAX),
            })
            .await?
            .into_inner();
        if let Some(policy) = &response.policy {
            self.policy = PolicyConfig {
                aging: policy.aging.then_some(Aging {
                    interval_ms: policy.aging_interval_ms.max(1),
                    step: policy.aging_step,
                    floor: policy.aging_floor,
                }),
                backfill: policy.backfill,
                held_back_nodes: policy.held_back_nodes,
                // Absent: an older cuttle-api, which orders every suite fewer nodes
                // first; follow it, so its queue list stays true.
                fewer_nodes_first_below: policy.fewer_nodes_first_below.unwrap_or(u32::MAX),
            };
            self.window_size =
                usize::try_from(policy.window.max(1)).unwrap_or(cuttle_policy::DEFAULT_WINDOW);
        }
        let paused = response.tube.as_ref().is_some_and(|tube| tube.paused);
        if paused != self.paused && response.granted {
            if paused {
                tracing::info!(tube = self.tube(), "queue paused: no new dispatches");
            } else {
                tracing::info!(tube = self.tube(), "queue resumed");
            }
        }
        self.paused = paused;
        self.metrics.paused.set(i64::from(paused));
        if response.granted {
            self.lease_confirmed = Some(Instant::now());
        } else {
            self.lease_confirmed = None;
        }
        self.metrics.lease_held.set(i64::from(response.granted));
        Ok(response.granted)
    }

    /// Renews the lease when a third of its time-to-live has passed. False once it is
    /// lost (taken, or not confirmed within its time-to-live).
    async fn keep_lease(&mut self) -> bool {
        let Some(confirmed) = self.lease_confirmed else {
            return false;
        };
        let ttl = self.settings.lease_ttl;
        if confirmed.elapsed() < ttl / 3 {
            return true;
        }
        match self.acquire_lease().await {
            Ok(granted) => granted,
            Err(status) => {
                tracing::warn!(detail = status.message(), "cannot renew the lease");
                // Another dispatcher may take the tube once our lease has expired.
                let still_valid = confirmed.elapsed() < ttl.mul_f64(0.9);
                if still_valid {
                    self.lease_confirmed = Some(confirmed);
                }
                still_valid
            }
        }
    }

    /// Waits as a standby until the lease is ours. False on shutdown.
    async fn wait_for_lease(&mut self, shutdown: &CancellationToken) -> bool {
        let mut announced = false;
        loop {
            match self.acquire_lease().await {
                Ok(true) => {
                    tracing::info!(tube = self.tube(), holder = %self.holder, "lease acquired: dispatching");
                    return true;
                }
                Ok(false) => {
                    if !announced {
                        tracing::info!(
                            tube = self.tube(),
                            "another dispatcher holds the lease: standing by"
                        );
                        announced = true;
                    }
                }
                Err(status)
                    if matches!(
                        status.code(),
                        Code::Unauthenticated | Code::PermissionDenied
                    ) =>
                {
                    tracing::error!(
                        detail = status.message(),
                        "cuttle-api refuses this dispatcher's token; give it a service token (token_file or CUTTLE_TOKEN); retrying"
                    );
                }
                Err(status) => {
                    tracing::warn!(detail = status.message(), api = %self.settings.api, "cannot reach cuttle-api for the lease; retrying");
                }
            }
            let pause = (self.settings.lease_ttl / 4).max(Duration::from_millis(250));
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Dispatches while the lease is held: fill the window, plan, start what the policy
    /// says, repeat. Whatever ends the loop hands the window back first.
    async fn dispatch_while_leased(&mut self, shutdown: &CancellationToken) -> Stop {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let watching = shutdown.child_token();
        let watcher = tokio::spawn(watch_tube(
            self.dispatch.clone(),
            self.tube().to_owned(),
            wake.clone(),
            watching.clone(),
        ));
        let stop = loop {
            if shutdown.is_cancelled() {
                break Stop::Shutdown;
            }
            if !self.keep_lease().await {
                self.metrics.lease_held.set(0);
                tracing::warn!(tube = self.tube(), "lease lost: standing by");
                break Stop::LeaseLost;
            }
            self.release_orphans().await;
            if self.paused {
                self.hand_back_window("its queue was paused").await;
                tokio::select! {
                    _ = shutdown.cancelled() => break Stop::Shutdown,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let added = tokio::select! {
                _ = shutdown.cancelled() => break Stop::Shutdown,
                added = self.fill_window() => added,
            };
            let added = match added {
                Ok(added) => added,
                Err(stop) => break stop,
            };
            self.touch_window().await;
            if self.window.is_empty() {
                if self.settings.exit_on_empty_queue && self.tube_is_empty().await {
                    tracing::info!(
                        tube = self.tube(),
                        dispatched = self.dispatched,
                        "queue empty: exiting (--exit-on-empty-queue)"
                    );
                    break Stop::QueueEmpty;
                }
                continue;
            }
            let started = self.plan_round().await;
            if started == 0 && added == 0 {
                // Nothing changes until a node frees, a node comes up or a job arrives:
                // cuttle-api says so at once (WatchTube).
                tokio::select! {
                    _ = shutdown.cancelled() => break Stop::Shutdown,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_REPLAN) => {}
                }
            }
        };
        watching.cancel();
        let _ = watcher.await;
        self.hand_back_window("handed back by its dispatcher").await;
        stop
    }

    /// Reserves and claims jobs until the window is full or nothing is ready. When the
    /// window is full but beanstalkd has a more urgent job ready, the least urgent job of
    /// the window makes room for it. Returns how many jobs joined.
    async fn fill_window(&mut self) -> Result<usize, Stop> {
        let mut added = 0;
        loop {
            if self.window.len() >= self.window_size && !self.make_room().await {
                return Ok(added);
            }
            let wait = if self.window.is_empty() && added == 0 {
                RESERVE_WAIT
            } else {
                Duration::ZERO
            };
            let reserved = match self.queue.reserve(self.tube(), wait).await {
                Ok(Some(job)) => job,
                Ok(None) => return Ok(added),
                Err(error) => {
                    tracing::warn!(%error, "cannot reserve from beanstalkd; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Ok(added);
                }
            };
            match self.claim(reserved).await {
                Ok(true) => added += 1,
                Ok(false) => {}
                Err(stop) => return Err(stop),
            }
        }
    }

    /// Releases the window's least urgent job if beanstalkd has a more urgent one ready.
    async fn make_room(&mut self) -> bool {
        let Ok(Some((_, ready_priority))) = self.queue.peek_ready_priority(self.tube()).await
        else {
            return false;
        };
        let now = now_ms();
        let queued: Vec<QueuedJob> = self.window.iter().map(queued_job).collect();
        let Some(worst) = cuttle_policy::ordered(&queued, now, &self.policy)
            .last()
            .map(|job| job.id)
        else {
            return false;
        };
        let index = self
            .window_index(worst)
            .expect("the worst job is in the window");
        let worst_priority =
            cuttle_policy::effective_priority(&queued[index], now, self.policy.aging);
        if ready_priority >= worst_priority {
            return false;
        }
        let held = self.window.swap_remove(index);
        self.give_back(held, "made room for a more urgent job")
            .await;
        true
    }

    /// Deletes a dispatched job's copy, if `beanstalk_id` still names it: beanstalkd lets
    /// anyone delete a ready job, and one restarted without its binlog hands the same ids
    /// to new jobs, so the id alone is not proof.
    async fn delete_own_copy(&self, beanstalk_id: u64, body: &[u8]) {
        match self.queue.peek(beanstalk_id).await {
            Ok(Some(found)) if found == body => {
                if let Err(error) = self.queue.delete(beanstalk_id).await {
                    tracing::warn!(beanstalk_id, %error, "dispatched, but cannot delete the beanstalkd copy; the next claim discards it");
                }
            }
            Ok(Some(_)) => {
                tracing::warn!(
                    beanstalk_id,
                    "dispatched; its beanstalkd id now names another job (beanstalkd restarted), which is left alone"
                );
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(beanstalk_id, %error, "dispatched, but cannot check the beanstalkd copy; the next claim discards it");
            }
        }
    }

    /// Claims a reserved copy; `Ok(true)` if it joined the window.
    async fn claim(&mut self, reserved: Reserved) -> Result<bool, Stop> {
        let beanstalk_id = reserved.id;
        let reserved_body = reserved.body.clone();
        let claim = self
            .dispatch
            .claim_job(ClaimJobRequest {
                machine_type: self.tube().to_owned(),
                holder: self.holder.clone(),
                beanstalk_id,
                body: String::from_utf8_lossy(&reserved.body).into_owned(),
                defer_lock: true,
            })
            .await;
        let claim = match claim {
            Ok(claim) => claim.into_inner(),
            Err(status) => {
                tracing::warn!(
                    beanstalk_id,
                    detail = status.message(),
                    "cannot claim a reserved job; handing it back"
                );
                self.hand_back(beanstalk_id, None, Duration::from_secs(1))
                    .await;
                if status.code() == Code::FailedPrecondition {
                    // We no longer hold the lease.
                    return Err(Stop::LeaseLost);
                }
                return Ok(false);
            }
        };
        let job_id = claim.job.as_ref().map_or(0, |job| job.id);
        match ClaimAction::try_from(claim.action).unwrap_or(ClaimAction::Unspecified) {
            ClaimAction::Discard => {
                tracing::info!(beanstalk_id, job_id, reason = %claim.reason, "discarding a copy");
                if let Err(error) = self.queue.delete(beanstalk_id).await {
                    tracing::warn!(beanstalk_id, %error, "cannot delete a discarded copy");
                }
                Ok(false)
            }
            ClaimAction::Bury | ClaimAction::Unspecified => {
                tracing::warn!(beanstalk_id, job_id, reason = %claim.reason, "burying a job that can never run");
                let priority = claim.job.as_ref().map_or(0, |job| job.priority);
                if let Err(error) = self.queue.bury(beanstalk_id, priority).await {
                    tracing::warn!(beanstalk_id, %error, "cannot bury");
                }
                Ok(false)
            }
            ClaimAction::Start => {
                let Some(job) = claim.job else {
                    // A START without the job is an API bug; never sit on the reservation.
                    tracing::error!(
                        beanstalk_id,
                        "cuttle-api said start but sent no job; handing the copy back"
                    );
                    self.hand_back(beanstalk_id, None, Duration::from_secs(5))
                        .await;
                    return Ok(false);
                };
                let queue_priority = self
                    .queue
                    .stats_job(beanstalk_id)
                    .await
                    .ok()
                    .and_then(|stats| stats.get("pri").and_then(|p| p.parse().ok()))
                    .unwrap_or(job.priority);
                // The window never holds one job twice: a second copy (put again after
                // beanstalkd lost the first) replaces the one held, which goes back to
                // beanstalkd if our connection still holds it (a later claim discards it;
                // beanstalkd refuses to release an id this connection does not hold).
                if let Some(index) = self.window_index(job.id as u64) {
                    let older = self.window.swap_remove(index);
                    tracing::info!(
                        job_id = job.id,
                        held = older.beanstalk_id,
                        newer = beanstalk_id,
                        "a second copy of a job in the window; keeping the newer"
                    );
                    self.hand_back(
                        older.beanstalk_id,
                        Some(older.queue_priority),
                        Duration::ZERO,
                    )
                    .await;
                }
                self.window.push(Held {
                    beanstalk_id,
                    body: reserved_body,
                    job,
                    queue_priority,
                    touched: Instant::now(),
                    reserved_at: Instant::now(),
                });
                self.crash_if(CrashPoint::AfterClaim);
                Ok(true)
            }
        }
    }

    /// Where the window holds the job the policy calls `job`.
    fn window_index(&self, job: u64) -> Option<usize> {
        self.window
            .iter()
            .position(|held| held.job.id as u64 == job)
    }

    /// Keeps the window's reservations alive.
    async fn touch_window(&mut self) {
        for held in &mut self.window {
            if held.touched.elapsed() >= TOUCH_EVERY {
                held.touched = Instant::now();
                match self.queue.touch(held.beanstalk_id).await {
                    Ok(()) => {}
                    // beanstalkd is away: the rest would wait out the same deadline.
                    Err(error @ cuttle_queue::QueueError::Unreachable { .. }) => {
                        tracing::warn!(%error, "cannot touch the window's reservations");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(beanstalk_id = held.beanstalk_id, %error, "cannot touch a reservation");
                    }
                }
            }
        }
    }

    /// One planning round over the window; returns how many jobs started.
    async fn plan_round(&mut self) -> usize {
        if let Some((at, idle)) = self.last_round.take() {
            self.metrics
                .idle_node_seconds
                .inc_by(f64::from(idle) * at.elapsed().as_secs_f64());
        }
        let ids: Vec<i64> = self.window.iter().map(|held| held.job.id).collect();
        let default_limit = i64::try_from(self.settings.lab.max_job_time_s.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let state = match self
            .dispatch
            .get_plan_state(PlanStateRequest {
                machine_type: self.tube().to_owned(),
                job_ids: ids,
                default_time_limit_ms: default_limit,
            })
            .await
        {
            Ok(state) => state.into_inner(),
            Err(status) => {
                tracing::warn!(
                    detail = status.message(),
                    "cannot get the plan state; retrying"
                );
                return 0;
            }
        };
        // Jobs no longer waiting (killed, reaped) leave the window; their copies go back
        // to beanstalkd, where the next claim discards or restarts them.
        let still: std::collections::HashSet<i64> =
            state.jobs.iter().map(|job| job.job_id).collect();
        let gone: Vec<Held> = self
            .window
            .iter()
            .filter(|held| !still.contains(&held.job.id))
            .cloned()
            .collect();
        self.window.retain(|held| still.contains(&held.job.id));
        for held in gone {
            self.hand_back(held.beanstalk_id, Some(held.queue_priority), Duration::ZERO)
                .await;
        }
        let now = now_ms();
        // Base priorities may have changed (re-prioritized): take cuttle-api's.
        for held in &mut self.window {
            if let Some(fresh) = state.jobs.iter().find(|job| job.job_id == held.job.id) {
                held.job.priority = fresh.priority;
            }
        }
        self.show_aging(now).await;
        let estimates: HashMap<i64, (i64, i64)> = state
            .jobs
            .iter()
            .map(|job| (job.job_id, (job.estimate_ms, job.time_limit_ms)))
            .collect();
        let snapshot = Snapshot {
            now,
            total_nodes: state.total_nodes,
            free_nodes: state.free_nodes,
            queued: self
                .window
                .iter()
                .map(|held| {
                    let (estimate_ms, time_limit_ms) = estimates
                        .get(&held.job.id)
                        .copied()
                        .unwrap_or((default_limit, default_limit));
                    queued_job(held).timed(estimate_ms, time_limit_ms)
                })
                .collect(),
            running: state
                .running
                .iter()
                .map(|job| {
                    cuttle_policy::running_job(
                        job.job_id as u64,
                        job.n_nodes,
                        job.started_at_ms,
                        job.estimate_ms,
                        job.time_limit_ms,
                        job.ended,
                        now,
                    )
                })
                .collect(),
        };
        let mut started = 0;
        let mut free = state.free_nodes.saturating_sub(self.policy.held_back_nodes);
        for decision in plan(&snapshot, &self.policy) {
            match decision {
                Decision::Start { job, reason } => {
                    let Some(index) = self.window_index(job) else {
                        continue;
                    };
                    let n_nodes = self.window[index].job.n_nodes;
                    if self.start_held(index, &reason).await {
                        started += 1;
                        free = free.saturating_sub(n_nodes);
                    }
                }
                Decision::Reserve {
                    job,
                    estimated_start,
                } => {
                    tracing::debug!(job_id = job, estimated_start, "head job waits for nodes");
                }
                Decision::Bury { job, reason } => {
                    let Some(index) = self.window_index(job) else {
                        continue;
                    };
                    let held = self.window.swap_remove(index);
                    self.bury_held(held, &reason).await;
                }
            }
        }
        // Nodes left free while jobs still wait count as idle until the next round.
        let idle = if self.window.is_empty() { 0 } else { free };
        self.last_round = Some((Instant::now(), idle));
        self.metrics
            .window_jobs
            .set(i64::try_from(self.window.len()).unwrap_or(i64::MAX));
        started
    }

    /// Locks the nodes of the window's job at `index` and starts it. False if the nodes
    /// were taken meanwhile (it stays in the window) or the job ended (it leaves).
    async fn start_held(&mut self, index: usize, reason: &StartReason) -> bool {
        let began = Instant::now();
        let job = self.window[index].job.clone();
        let locked = self
            .nodes
            .lock_nodes(LockNodesRequest {
                machine_type: job.machine_type.clone(),
                count: job.n_nodes,
                owner: job.owner.clone(),
                job_id: Some(job.id),
                dispatcher: Some(self.holder.clone()),
            })
            .await;
        let nodes: Vec<String> = match locked {
            Ok(response) => response
                .into_inner()
                .nodes
                .into_iter()
                .map(|node| node.name)
                .collect(),
            Err(status) if status.code() == Code::FailedPrecondition => {
                // It ended (killed) or can never fit any more: the next claim says which.
                let held = self.window.swap_remove(index);
                self.give_back(held, status.message()).await;
                return false;
            }
            Err(status) => {
                tracing::debug!(
                    job_id = job.id,
                    detail = status.message(),
                    "nodes not free after all; next round"
                );
                return false;
            }
        };
        self.crash_if(CrashPoint::AfterLock);
        let held = self.window.swap_remove(index);
        if let StartReason::Backfill { head, .. } = reason {
            tracing::info!(
                job_id = job.id,
                head,
                "backfilling ahead of the waiting head job"
            );
        }
        self.metrics
            .lock_wait
            .observe(held.reserved_at.elapsed().as_secs_f64());
        if self
            .start(&held.job, held.beanstalk_id, &held.body, &nodes)
            .await
        {
            self.metrics
                .dispatch_seconds
                .observe(began.elapsed().as_secs_f64());
        }
        true
    }

    /// A job the policy says can never run here: dead with the reason, copy buried.
    async fn bury_held(&mut self, held: Held, reason: &str) {
        self.metrics.buried.inc();
        tracing::warn!(
            job_id = held.job.id,
            reason,
            "burying a job that can never run"
        );
        let marked = self
            .runs
            .update_job_status(UpdateJobStatusRequest {
                job_id: held.job.id,
                status: v1::JobStatus::Dead as i32,
                reason: format!("buried by its dispatcher: {reason}"),
                ..Default::default()
            })
            .await;
        if let Err(status) = marked {
            tracing::warn!(
                job_id = held.job.id,
                detail = status.message(),
                "cannot mark the job dead"
            );
        }
        if let Err(error) = self
            .queue
            .bury(held.beanstalk_id, held.queue_priority)
            .await
        {
            tracing::warn!(beanstalk_id = held.beanstalk_id, %error, "cannot bury");
        }
    }

    /// Makes aging visible on beanstalkd: a window job whose effective priority moved
    /// is released with it (and reserved again in its new place).
    async fn show_aging(&mut self, now: i64) {
        if self.policy.aging.is_none() {
            return;
        }
        let mut aged = Vec::new();
        for (index, held) in self.window.iter().enumerate() {
            let effective =
                cuttle_policy::effective_priority(&queued_job(held), now, self.policy.aging);
            if effective != held.queue_priority {
                aged.push(index);
            }
        }
        for index in aged.into_iter().rev() {
            let held = self.window.swap_remove(index);
            self.give_back(held, "aged: released with its new priority")
                .await;
        }
    }

    /// Hands a window job back: `queued` again in cuttle-api, its copy released with its
    /// effective priority.
    async fn give_back(&mut self, held: Held, reason: &str) {
        self.requeue(held.job.id, reason).await;
        let priority =
            cuttle_policy::effective_priority(&queued_job(&held), now_ms(), self.policy.aging);
        self.hand_back(held.beanstalk_id, Some(priority), Duration::ZERO)
            .await;
    }

    async fn hand_back_window(&mut self, reason: &str) {
        // Nothing waits here any more: no idle nodes to count.
        self.last_round = None;
        self.metrics.window_jobs.set(0);
        for held in std::mem::take(&mut self.window) {
            self.give_back(held, reason).await;
        }
    }

    /// Whether the tube has nothing ready or delayed (a tube never used counts as empty).
    async fn tube_is_empty(&self) -> bool {
        match self.queue.stats_tube(self.tube()).await {
            Ok(stats) => ["current-jobs-ready", "current-jobs-delayed"]
                .iter()
                .all(|key| stats.get(*key).is_none_or(|n| n == "0")),
            Err(cuttle_queue::QueueError::Refused { .. }) => true,
            Err(_) => false,
        }
    }

    async fn requeue(&mut self, job_id: i64, reason: &str) {
        self.metrics.requeued.inc();
        let requeued = self
            .dispatch
            .requeue_job(RequeueJobRequest {
                job_id,
                holder: self.holder.clone(),
                reason: reason.to_owned(),
            })
            .await;
        if let Err(status) = requeued {
            tracing::warn!(
                job_id,
                detail = status.message(),
                "cannot hand the job back to cuttle-api"
            );
        }
    }

    /// Puts a reserved copy back to ready (with its priority when known).
    async fn hand_back(&self, beanstalk_id: u64, priority: Option<u32>, delay: Duration) {
        let priority = match priority {
            Some(priority) => priority,
            None => self
                .queue
                .stats_job(beanstalk_id)
                .await
                .ok()
                .and_then(|stats| stats.get("pri").and_then(|p| p.parse().ok()))
                .unwrap_or(1000),
        };
        if let Err(error) = self.queue.release(beanstalk_id, priority, delay).await {
            tracing::warn!(beanstalk_id, %error, "cannot release the reservation; it returns when its time-to-run ends");
        }
    }

    /// The test-only fault switch: dies on the spot, with no clean-up at all (no lease
    /// given back, no reservation released), at the configured step.
    fn crash_if(&self, point: CrashPoint) {
        if self.settings.crash_at == Some(point) {
            tracing::error!(?point, "CUTTLE_TEST_CRASH_AT: dying here on purpose");
            std::process::abort();
        }
    }

    /// Starts the supervisor, records the dispatch, lets the supervisor go, deletes the
    /// beanstalkd copy; in that order.
    /// Starts the job's supervisor and records the dispatch; true when it runs.
    async fn start(
        &mut self,
        job: &v1::Job,
        beanstalk_id: u64,
        body: &[u8],
        nodes: &[String],
    ) -> bool {
        let mut child = match self.spawn_supervisor(job, false) {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(job_id = job.id, "{error:#}");
                self.requeue(job.id, &format!("cannot start its supervisor: {error:#}"))
                    .await;
                // Later, so a broken install does not spin through the queue.
                self.hand_back(beanstalk_id, Some(job.priority), Duration::from_secs(30))
                    .await;
                return false;
            }
        };
        let pid = child.id().unwrap_or(0);
        self.crash_if(CrashPoint::AfterSpawn);
        let recorded = self
            .dispatch
            .record_dispatch(RecordDispatchRequest {
                job_id: job.id,
                holder: self.holder.clone(),
                supervisor_pid: pid,
                supervisor_host: self.host.clone(),
            })
            .await;
        let mut stdin = child.stdin.take();
        let started = recorded.is_ok();
        match recorded {
            Ok(_) => {
                self.metrics.started.inc();
                self.crash_if(CrashPoint::AfterRecord);
                if let Some(stdin) = stdin.as_mut() {
                    // If this fails the supervisor sees end-of-file and checks the record
                    // itself, which now says it runs.
                    let _ = stdin.write_all(b"go\n").await;
                }
                drop(stdin);
                self.crash_if(CrashPoint::BeforeDelete);
                self.delete_own_copy(beanstalk_id, body).await;
                self.dispatched += 1;
                tracing::info!(job_id = job.id, run = %job.run_name, nodes = %nodes.join(","), pid, "job dispatched");
            }
            Err(status) => {
                // End-of-file without "go": the supervisor finds it was not recorded and
                // exits without touching anything.
                drop(stdin);
                tracing::warn!(
                    job_id = job.id,
                    detail = status.message(),
                    "cannot record the dispatch; handing the job back"
                );
                self.requeue(job.id, "its dispatch could not be recorded")
                    .await;
                self.hand_back(beanstalk_id, Some(job.priority), Duration::ZERO)
                    .await;
            }
        }
        self.reap_when_done(child);
        started
    }

    /// Waits for a supervisor in the background, so it never lingers as a zombie of ours,
    /// and counts it alive until then.
    fn reap_when_done(&self, mut child: tokio::process::Child) {
        let alive = self.metrics.supervisors_alive.clone();
        alive.inc();
        tokio::spawn(async move {
            let _ = child.wait().await;
            alive.dec();
        });
    }

    /// Starts `cuttle-supervisor` for a job in its own process group, so signals meant for
    /// this dispatcher (a terminal's Ctrl-C, a restart) never reach it. Its output goes to
    /// `supervisor.log` in the job's archive. `release` starts one that only gives an
    /// ended job's nodes back.
    fn spawn_supervisor(
        &self,
        job: &v1::Job,
        release: bool,
    ) -> anyhow::Result<tokio::process::Child> {
        // A supervisor starts even when its log cannot be written (a full archive disk):
        // it is the one that ends such a job with the reason and gives its nodes back.
        let log = self
            .settings
            .lab
            .job_archive(&job.run_name, job.id)
            .and_then(|archive| {
                std::fs::create_dir_all(&archive).with_context(|| {
                    format!("cannot create the job archive {}", archive.display())
                })?;
                let log_path = archive.join("supervisor.log");
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .with_context(|| format!("cannot open {}", log_path.display()))
            });
        let log = match log {
            Ok(log) => log,
            Err(error) => {
                tracing::error!(job_id = job.id, error = %format!("{error:#}"), "the supervisor's log is discarded");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .context("cannot open /dev/null")?
            }
        };
        let mut command = tokio::process::Command::new(&self.settings.supervisor_bin);
        command
            .arg("--job-id")
            .arg(job.id.to_string())
            .arg("--api")
            .arg(&self.settings.api)
            .env("CUTTLE_LAB_JSON", &self.lab_json)
            .env(
                "CUTTLE_LOG_FORMAT",
                match self.settings.log_format {
                    cuttle_runtime::telemetry::LogFormat::Json => "json",
                    cuttle_runtime::telemetry::LogFormat::Text => "text",
                },
            )
            .stdin(if release {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(log.try_clone().context("cannot share the supervisor log")?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        // The supervisor acts with the dispatcher's service token and CA; the environment
        // (unlike a command line) is private to the process and root. Unset, not empty,
        // when there is none: an empty value is no value to the supervisor.
        command
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_TLS_CA_FILE");
        if let Some(token) = &self.settings.token {
            command.env("CUTTLE_TOKEN", token.expose());
        }
        if let Some(ca) = &self.settings.tls_ca_file {
            command.env("CUTTLE_TLS_CA_FILE", ca);
        }
        if release {
            command.arg("--release");
        }
        command.spawn().with_context(|| {
            format!(
                "cannot start {}; set supervisor_bin in the config file",
                self.settings.supervisor_bin.display()
            )
        })
    }

    /// Every `release_interval`: ended jobs whose supervisor vanished before giving their
    /// nodes back get a release supervisor (nuke, then unlock or mark down).
    async fn release_orphans(&mut self) {
        if self
            .last_release_scan
            .is_some_and(|at| at.elapsed() < self.settings.release_interval)
        {
            return;
        }
        self.last_release_scan = Some(Instant::now());
        let claimed = self
            .dispatch
            .claim_releases(ClaimReleasesRequest {
                machine_type: self.tube().to_owned(),
                holder: self.holder.clone(),
                limit: 16,
            })
            .await;
        let releases = match claimed {
            Ok(response) => response.into_inner().releases,
            Err(status) => {
                tracing::warn!(
                    detail = status.message(),
                    "cannot look for nodes to release"
                );
                return;
            }
        };
        for release in releases {
            let Some(job) = release.job else { continue };
            match self.spawn_supervisor(&job, true) {
                Ok(child) => {
                    tracing::info!(job_id = job.id, nodes = %release.nodes.join(","), "releasing the nodes of an ended job");
                    self.metrics.releases.inc();
                    self.reap_when_done(child);
                }
                Err(error) => tracing::error!(job_id = job.id, "{error:#}"),
            }
        }
    }

    async fn release_lease(&mut self) {
        self.metrics.lease_held.set(0);
        let released = self
            .dispatch
            .release_lease(ReleaseLeaseRequest {
                machine_type: self.tube().to_owned(),
                holder: self.holder.clone(),
            })
            .await;
        if let Err(status) = released {
            tracing::warn!(
                detail = status.message(),
                "cannot give the lease up; it expires on its own"
            );
        }
    }
}

/// Watches the tube's events on cuttle-api (DispatchService/WatchTube) until `stop`, and
/// wakes the planning loop on each; reconnects after a second when the stream ends, and
/// wakes the loop then too, since events may have been missed meanwhile. An older
/// cuttle-api without the call leaves the loop to its timer.
async fn watch_tube(
    mut client: DispatchServiceClient<Authed>,
    tube: String,
    wake: std::sync::Arc<tokio::sync::Notify>,
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

/// Runs the dispatcher until `shutdown` is cancelled (or, with `--exit-on-empty-queue`,
/// the tube is empty). Returns how many jobs it dispatched.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<u64> {
    let mut dispatcher = Dispatcher::new(settings)?;
    if let Some(addr) = dispatcher.settings.metrics_listen {
        dispatcher.metrics.serve(addr, shutdown.clone()).await?;
    }
    tracing::info!(
        tube = dispatcher.tube(),
        holder = %dispatcher.holder,
        api = %dispatcher.settings.api,
        beanstalk = %dispatcher.settings.beanstalk,
        archive = %dispatcher.settings.lab.archive_dir.display(),
        "cuttle-dispatcher starting"
    );
    loop {
        if !dispatcher.wait_for_lease(&shutdown).await {
            break;
        }
        match dispatcher.dispatch_while_leased(&shutdown).await {
            Stop::LeaseLost => continue,
            Stop::Shutdown | Stop::QueueEmpty => {
                dispatcher.release_lease().await;
                break;
            }
        }
    }
    tracing::info!(
        dispatched = dispatcher.dispatched,
        "cuttle-dispatcher stopped; running jobs continue under their supervisors"
    );
    Ok(dispatcher.dispatched)
}
