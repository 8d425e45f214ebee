//! The dispatcher's loop: hold (or wait for) the tube's lease and, while it is held,
//! reserve jobs into the window, have cuttle-api claim them, plan, and start what the
//! policy says. Generic over cuttle-api ([`Api`]), beanstalkd ([`Queue`]), supervisors
//! ([`Launcher`]) and the wall clock ([`Clock`]); its monotonic time is tokio's, which
//! tests pause and advance.
//!
//! **Invariant:** a beanstalkd job is deleted only after cuttle-api has recorded its
//! dispatch (or said the copy is stale or its job ended). If this process dies at any
//! point, beanstalkd hands the reservation out again (the connection closed) and
//! cuttle-api's claim and reaper sort out what was half done.

use std::sync::Arc;
use std::time::Duration;

use cuttle_core::dispatch::Claimed;
use cuttle_core::{Job, JobId, MachineType};
use cuttle_policy::{Decision, PolicyConfig, StartReason, plan};
use cuttle_queue::{QueueError, Reserved};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiError};
use crate::launch::{Launcher, Supervisor};
use crate::lease::LeaseKeeper;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::settings::CrashPoint;
use crate::window::{Held, Window, touch_interval};

/// How long one reserve waits for a job before the loop checks its lease and pause.
pub const RESERVE_WAIT: Duration = Duration::from_secs(1);

/// How long an idle dispatcher waits before planning again when no tube event wakes it:
/// events (nodes freed or up, jobs queued) wake it at once; this round catches what no
/// event reports (a running job outliving its estimate, a lost event).
pub const IDLE_REPLAN: Duration = Duration::from_secs(1);

/// The wall clock, in Unix milliseconds, for the policy (aging, estimates).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// Why the active loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Shutdown,
    LeaseLost,
    QueueEmpty,
}

/// What the loop needs to know that is not the parts it talks to.
#[derive(Debug, Clone)]
pub struct Config {
    pub tube: MachineType,
    pub holder: String,
    pub lease_ttl: Duration,
    pub release_interval: Duration,
    /// The time limit of a job that sets none (the lab's `max_job_time`), in ms.
    pub default_time_limit_ms: i64,
    pub exit_on_empty_queue: bool,
    /// The test-only fault switch.
    pub crash_at: Option<CrashPoint>,
}

/// One dispatcher.
#[derive(Debug)]
pub struct Dispatcher<A, Q, L, C> {
    config: Config,
    api: A,
    queue: Q,
    launcher: L,
    clock: C,
    lease: LeaseKeeper,
    paused: bool,
    last_release_scan: Option<Instant>,
    dispatched: u64,
    /// The policy cuttle-api sent with the lease.
    policy: PolicyConfig,
    window: Window,
    metrics: Metrics,
    /// When the last planning round ended, and how many nodes it left free while jobs
    /// still waited: the idle node-seconds counted at the next round.
    last_round: Option<(Instant, u32)>,
}

impl<A: Api, Q: Queue, L: Launcher, C: Clock> Dispatcher<A, Q, L, C> {
    pub fn new(
        config: Config,
        api: A,
        queue: Q,
        launcher: L,
        clock: C,
        metrics: Metrics,
    ) -> Dispatcher<A, Q, L, C> {
        Dispatcher {
            lease: LeaseKeeper::new(config.lease_ttl),
            config,
            api,
            queue,
            launcher,
            clock,
            paused: false,
            last_release_scan: None,
            dispatched: 0,
            policy: PolicyConfig::default(),
            window: Window::new(cuttle_policy::DEFAULT_WINDOW),
            metrics,
            last_round: None,
        }
    }

    /// How many jobs this dispatcher has started.
    pub fn dispatched(&self) -> u64 {
        self.dispatched
    }

    fn tube(&self) -> &str {
        self.config.tube.as_str()
    }

    /// Runs until `shutdown` (or, with `exit_on_empty_queue`, an empty tube): waits for
    /// the lease, dispatches while it holds it, stands by again when it is lost.
    pub async fn run(&mut self, shutdown: &CancellationToken) {
        loop {
            if !self.wait_for_lease(shutdown).await {
                break;
            }
            match self.dispatch_while_leased(shutdown).await {
                Stop::LeaseLost => continue,
                Stop::Shutdown | Stop::QueueEmpty => {
                    self.release_lease().await;
                    break;
                }
            }
        }
    }

    /// Takes or renews the lease; true if this process holds it now.
    async fn acquire_lease(&mut self) -> Result<bool, ApiError> {
        let answer = self.api.acquire_lease(self.lease.ttl()).await?;
        if let Some((policy, window)) = answer.policy {
            self.policy = policy;
            self.window.set_capacity(window);
        }
        if answer.paused != self.paused && answer.granted {
            if answer.paused {
                tracing::info!(tube = self.tube(), "queue paused: no new dispatches");
            } else {
                tracing::info!(tube = self.tube(), "queue resumed");
            }
        }
        self.paused = answer.paused;
        self.metrics.paused.set(i64::from(answer.paused));
        if answer.granted {
            self.lease.confirm(Instant::now());
        } else {
            self.lease.lose();
        }
        self.metrics.lease_held.set(i64::from(answer.granted));
        Ok(answer.granted)
    }

    /// Renews the lease when it is due. False once it is lost (taken, or not confirmed
    /// within its time-to-live).
    async fn keep_lease(&mut self) -> bool {
        if !self.lease.is_held() {
            return false;
        }
        if !self.lease.due(Instant::now()) {
            return true;
        }
        match self.acquire_lease().await {
            Ok(granted) => granted,
            Err(error) => {
                tracing::warn!(detail = error.message(), "cannot renew the lease");
                self.lease.survives_failed_renewal(Instant::now())
            }
        }
    }

    /// Says the lease is gone (taken, or not renewed in time): the dispatch loop stops and
    /// the dispatcher stands by.
    fn lease_lost(&self) -> Stop {
        self.metrics.lease_held.set(0);
        tracing::warn!(tube = self.tube(), "lease lost: standing by");
        Stop::LeaseLost
    }

    /// Waits as a standby until the lease is ours. False on shutdown.
    async fn wait_for_lease(&mut self, shutdown: &CancellationToken) -> bool {
        let mut announced = false;
        loop {
            match self.acquire_lease().await {
                Ok(true) => {
                    tracing::info!(tube = self.tube(), holder = %self.config.holder, "lease acquired: dispatching");
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
                Err(ApiError::Denied(detail)) => {
                    tracing::error!(
                        detail,
                        "cuttle-api refuses this dispatcher's token; give it a service token (token_file or CUTTLE_TOKEN); retrying"
                    );
                }
                Err(error) => {
                    tracing::warn!(
                        detail = error.message(),
                        "cannot reach cuttle-api for the lease; retrying"
                    );
                }
            }
            let pause = (self.lease.ttl() / 4).max(Duration::from_millis(250));
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Dispatches while the lease is held: fill the window, plan, start what the policy
    /// says, repeat. Whatever ends the loop hands the window back first.
    pub async fn dispatch_while_leased(&mut self, shutdown: &CancellationToken) -> Stop {
        let wake = Arc::new(tokio::sync::Notify::new());
        let watching = shutdown.child_token();
        let watcher = tokio::spawn(self.api.watch(wake.clone(), watching.clone()));
        let stop = loop {
            if shutdown.is_cancelled() {
                break Stop::Shutdown;
            }
            if !self.keep_lease().await {
                break self.lease_lost();
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
                Err(Stop::LeaseLost) => break self.lease_lost(),
                Err(stop) => break stop,
            };
            // The window's reservations were touched by the fill, before each claim.
            if self.window.is_empty() {
                if self.config.exit_on_empty_queue
                    && self.queue.is_empty(self.tube()).await == Some(true)
                {
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
    ///
    /// The lease is renewed and the window's reservations touched here too, when due: a
    /// fill claims one job at a time, and a window's worth of claims (1000 by default) can
    /// take longer than the lease lives and than a copy's time-to-run. Renewed only between
    /// fills, the lease expired mid-fill, the next claim was refused, the window went back,
    /// and the dispatcher lost and retook the tube for ever without starting a job;
    /// touched only between fills, the first reservations lapsed mid-fill, came back ready
    /// and were reserved again, and the fill never ended.
    async fn fill_window(&mut self) -> Result<usize, Stop> {
        let mut added = 0;
        loop {
            if !self.keep_lease().await {
                return Err(Stop::LeaseLost);
            }
            self.touch_window().await;
            if self.window.is_full() && !self.make_room().await {
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
            if self.claim(reserved).await? {
                added += 1;
            }
        }
    }

    /// Releases the window's least urgent job if beanstalkd has a more urgent one ready.
    async fn make_room(&mut self) -> bool {
        let Ok(Some(ready_priority)) = self.queue.ready_priority(self.tube()).await else {
            return false;
        };
        let now = self.clock.now_ms();
        match self.window.make_room_for(ready_priority, now, &self.policy) {
            Some(held) => {
                self.give_back(held, "made room for a more urgent job", Duration::ZERO)
                    .await;
                true
            }
            None => false,
        }
    }

    /// Claims a reserved copy; `Ok(true)` if it joined the window.
    async fn claim(&mut self, reserved: Reserved) -> Result<bool, Stop> {
        let beanstalk_id = reserved.id;
        let claimed = match self.api.claim(beanstalk_id, &reserved.body).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(
                    beanstalk_id,
                    detail = error.message(),
                    "cannot claim a reserved job; handing it back"
                );
                self.hand_back(beanstalk_id, None, Duration::from_secs(1))
                    .await;
                if matches!(error, ApiError::Refused(_)) {
                    // We no longer hold the lease.
                    return Err(Stop::LeaseLost);
                }
                return Ok(false);
            }
        };
        match claimed {
            Claimed::Discard { job_id, reason } => {
                tracing::info!(beanstalk_id, job_id = job_id.map(|id| id.0), %reason, "discarding a copy");
                if let Err(error) = self.queue.delete(beanstalk_id).await {
                    tracing::warn!(beanstalk_id, %error, "cannot delete a discarded copy");
                }
                Ok(false)
            }
            Claimed::Bury {
                job_id,
                priority,
                reason,
            } => {
                tracing::warn!(beanstalk_id, job_id = job_id.map(|id| id.0), %reason, "burying a job that can never run");
                if let Err(error) = self.queue.bury(beanstalk_id, priority).await {
                    tracing::warn!(beanstalk_id, %error, "cannot bury");
                }
                Ok(false)
            }
            Claimed::Start(job) => {
                let stats = self.queue.copy_stats(beanstalk_id).await.ok().flatten();
                let queue_priority = stats.map_or(job.spec.priority.get(), |copy| copy.priority);
                let touch_every = touch_interval(stats.and_then(|copy| copy.time_to_run));
                let held = Held::new(
                    beanstalk_id,
                    reserved.body,
                    *job,
                    queue_priority,
                    touch_every,
                    Instant::now(),
                );
                // The window never holds one job twice: the older copy goes back to
                // beanstalkd if our connection still holds it (a later claim discards it;
                // beanstalkd refuses to release an id this connection does not hold).
                // The same copy reserved again is not an older one (`Window::add`).
                if let Some(older) = self.window.add(held) {
                    tracing::info!(
                        job_id = %older.job.id,
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
                self.crash_if(CrashPoint::AfterClaim);
                Ok(true)
            }
        }
    }

    /// Keeps the window's reservations alive.
    async fn touch_window(&mut self) {
        for beanstalk_id in self.window.due_for_touch(Instant::now()) {
            match self.queue.touch(beanstalk_id).await {
                Ok(()) => {}
                // beanstalkd is away: the rest would wait out the same deadline.
                Err(error @ QueueError::Unreachable { .. }) => {
                    tracing::warn!(%error, "cannot touch the window's reservations");
                    break;
                }
                Err(error) => {
                    tracing::warn!(beanstalk_id, %error, "cannot touch a reservation");
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
        let default_limit = self.config.default_time_limit_ms;
        let state = match self.api.plan_state(&self.window.ids(), default_limit).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(
                    detail = error.message(),
                    "cannot get the plan state; retrying"
                );
                return 0;
            }
        };
        // Jobs no longer waiting (killed, reaped) leave the window; their copies go back
        // to beanstalkd, where the next claim discards or restarts them.
        for held in self.window.sync(&state) {
            self.hand_back(held.beanstalk_id, Some(held.queue_priority), Duration::ZERO)
                .await;
        }
        let now = self.clock.now_ms();
        for held in self.window.take_aged(now, &self.policy) {
            self.give_back(held, "aged: released with its new priority", Duration::ZERO)
                .await;
        }
        let snapshot = self.window.snapshot(&state, now, default_limit);
        let mut starts = Vec::new();
        for decision in plan(&snapshot, &self.policy) {
            match decision {
                Decision::Start { job, reason } => starts.push((job, reason)),
                Decision::Reserve {
                    job,
                    estimated_start,
                } => {
                    tracing::debug!(job_id = job, estimated_start, "head job waits for nodes");
                }
                Decision::Bury { job, reason } => {
                    if let Some(held) = self.window.remove(job) {
                        self.bury_held(held, &reason).await;
                    }
                }
            }
        }
        let (started, took) = self.start_all(&starts).await;
        let free = state
            .free_nodes
            .saturating_sub(self.policy.held_back_nodes)
            .saturating_sub(took);
        // Nodes left free while jobs still wait count as idle until the next round.
        let idle = if self.window.is_empty() { 0 } else { free };
        self.last_round = Some((Instant::now(), idle));
        self.metrics
            .window_jobs
            .set(i64::try_from(self.window.len()).unwrap_or(i64::MAX));
        started
    }

    /// Locks the nodes of the window jobs the policy starts this round and starts each
    /// that got them, batched: one lock call and one record call for the round, each
    /// one database transaction, with every job answered on its own. Per job the order
    /// stays lock, spawn, record, go, delete. A job whose nodes were taken meanwhile stays
    /// in the window; one that ended leaves it. Returns how many jobs got their nodes and
    /// how many nodes they took.
    async fn start_all(&mut self, starts: &[(u64, StartReason)]) -> (usize, u32) {
        let began = Instant::now();
        let (picked, jobs): (Vec<(u64, &StartReason)>, Vec<Job>) = starts
            .iter()
            .filter_map(|(key, reason)| {
                self.window
                    .get(*key)
                    .map(|held| ((*key, reason), held.job.clone()))
            })
            .unzip();
        if jobs.is_empty() {
            return (0, 0);
        }
        let answers = match self
            .api
            .lock_nodes_batch(&jobs.iter().collect::<Vec<_>>())
            .await
        {
            Ok(answers) => answers,
            Err(error) => {
                tracing::warn!(detail = error.message(), "cannot lock nodes; next round");
                return (0, 0);
            }
        };
        let mut locked = Vec::new();
        for ((job_id, reason), answer) in picked.into_iter().zip(answers) {
            match answer {
                Ok(nodes) => {
                    let Some(held) = self.window.remove(job_id) else {
                        continue;
                    };
                    if let StartReason::Backfill { head, .. } = reason {
                        tracing::info!(job_id, head, "backfilling ahead of the waiting head job");
                    }
                    self.metrics
                        .lock_wait
                        .observe(held.reserved_at.elapsed().as_secs_f64());
                    locked.push((held, nodes));
                }
                Err(ApiError::Refused(detail)) => {
                    // It ended (killed) or can never fit any more: the next claim says
                    // which. A second later, so a job cuttle-api would both claim and
                    // refuse to lock cannot spin through reserve, claim and lock.
                    if let Some(held) = self.window.remove(job_id) {
                        self.give_back(held, &detail, Duration::from_secs(1)).await;
                    }
                }
                Err(error) => {
                    tracing::debug!(
                        job_id,
                        detail = error.message(),
                        "nodes not free after all; next round"
                    );
                }
            }
        }
        if locked.is_empty() {
            return (0, 0);
        }
        self.crash_if(CrashPoint::AfterLock);
        let took = locked
            .iter()
            .map(|(held, _)| held.job.spec.n_nodes.get())
            .sum();
        let count = locked.len();
        self.start(locked, began).await;
        (count, took)
    }

    /// A job the policy says can never run here: dead with the reason, copy buried.
    async fn bury_held(&mut self, held: Held, reason: &str) {
        self.metrics.buried.inc();
        tracing::warn!(job_id = %held.job.id, reason, "burying a job that can never run");
        if let Err(error) = self
            .api
            .mark_dead(held.job.id, &format!("buried by its dispatcher: {reason}"))
            .await
        {
            tracing::warn!(job_id = %held.job.id, detail = error.message(), "cannot mark the job dead");
        }
        if let Err(error) = self
            .queue
            .bury(held.beanstalk_id, held.queue_priority)
            .await
        {
            tracing::warn!(beanstalk_id = held.beanstalk_id, %error, "cannot bury");
        }
    }

    /// Hands a window job back: `queued` again in cuttle-api, its copy released with its
    /// effective priority, ready again after `delay`.
    async fn give_back(&mut self, held: Held, reason: &str, delay: Duration) {
        self.requeue(held.job.id, reason).await;
        let priority = held.effective_priority(self.clock.now_ms(), &self.policy);
        self.hand_back(held.beanstalk_id, Some(priority), delay)
            .await;
    }

    async fn hand_back_window(&mut self, reason: &str) {
        // Nothing waits here any more: no idle nodes to count.
        self.last_round = None;
        self.metrics.window_jobs.set(0);
        for held in self.window.drain() {
            self.give_back(held, reason, Duration::ZERO).await;
        }
    }

    async fn requeue(&mut self, job: JobId, reason: &str) {
        self.metrics.requeued.inc();
        if let Err(error) = self.api.requeue(job, reason).await {
            tracing::warn!(job_id = %job, detail = error.message(), "cannot hand the job back to cuttle-api");
        }
    }

    /// Puts a reserved copy back to ready (with its priority when known).
    async fn hand_back(&self, beanstalk_id: u64, priority: Option<u32>, delay: Duration) {
        let priority = match priority {
            Some(priority) => priority,
            None => self
                .queue
                .copy_stats(beanstalk_id)
                .await
                .ok()
                .flatten()
                .map_or(1000, |copy| copy.priority),
        };
        if let Err(error) = self.queue.release(beanstalk_id, priority, delay).await {
            tracing::warn!(beanstalk_id, %error, "cannot release the reservation; it returns when its time-to-run ends");
        }
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

    /// The test-only fault switch: dies on the spot, with no clean-up at all (no lease
    /// given back, no reservation released), at the configured step.
    fn crash_if(&self, point: CrashPoint) {
        if self.config.crash_at == Some(point) {
            tracing::error!(?point, "CUTTLE_TEST_CRASH_AT: dying here on purpose");
            std::process::abort();
        }
    }

    /// Starts each locked job's supervisor, records their dispatches in one call, lets
    /// every recorded one's supervisor go, then deletes their beanstalkd copies; in that
    /// order for every job. A job whose supervisor cannot start, or whose dispatch
    /// is not recorded, goes back to the queue and its supervisor never hears go.
    async fn start(&mut self, locked: Vec<(Held, Vec<String>)>, began: Instant) {
        let mut spawned = Vec::with_capacity(locked.len());
        for (held, nodes) in locked {
            match self.launcher.spawn(&held.job, false) {
                Ok(child) => spawned.push((held, nodes, child)),
                Err(error) => {
                    tracing::error!(job_id = %held.job.id, "{error:#}");
                    self.requeue(
                        held.job.id,
                        &format!("cannot start its supervisor: {error:#}"),
                    )
                    .await;
                    // Later, so a broken install does not spin through the queue.
                    self.hand_back(
                        held.beanstalk_id,
                        Some(held.queue_priority),
                        Duration::from_secs(30),
                    )
                    .await;
                }
            }
        }
        if spawned.is_empty() {
            return;
        }
        self.crash_if(CrashPoint::AfterSpawn);
        let started: Vec<(JobId, u32)> = spawned
            .iter()
            .map(|(held, _, child)| (held.job.id, child.pid()))
            .collect();
        let answers = match self.api.record_dispatches(&started).await {
            Ok(answers) => answers,
            // Nothing was recorded: every job of the batch is handled as unrecorded.
            Err(error) => vec![Err(error); started.len()],
        };
        // Every recorded supervisor hears go before any copy is deleted: a delete costs
        // two beanstalkd round trips, and the round's last job should not wait for all of
        // the others' before it may run.
        let mut recorded = Vec::with_capacity(spawned.len());
        let mut unrecorded = Vec::new();
        for ((held, nodes, mut child), answer) in spawned.into_iter().zip(answers) {
            let pid = child.pid();
            match answer {
                Ok(()) => {
                    self.metrics.started.inc();
                    self.crash_if(CrashPoint::AfterRecord);
                    child.go().await;
                    recorded.push((held, nodes, pid));
                }
                // End-of-file without "go": the supervisor finds it was not recorded and
                // exits without touching anything.
                Err(error) => unrecorded.push((held, error)),
            }
            self.reap_when_done(child);
        }
        for (held, nodes, pid) in recorded {
            self.crash_if(CrashPoint::BeforeDelete);
            self.delete_own_copy(held.beanstalk_id, &held.body).await;
            self.dispatched += 1;
            self.metrics
                .dispatch_seconds
                .observe(began.elapsed().as_secs_f64());
            let job = &held.job;
            tracing::info!(job_id = %job.id, run = %job.run_name, nodes = %nodes.join(","), pid, "job dispatched");
        }
        for (held, error) in unrecorded {
            tracing::warn!(
                job_id = %held.job.id,
                detail = error.message(),
                "cannot record the dispatch; handing the job back"
            );
            self.requeue(held.job.id, "its dispatch could not be recorded")
                .await;
            self.hand_back(held.beanstalk_id, Some(held.queue_priority), Duration::ZERO)
                .await;
        }
    }

    /// Lets a supervisor go its way, counted alive until it exits.
    fn reap_when_done(&self, child: L::Child) {
        let alive = self.metrics.supervisors_alive.clone();
        alive.inc();
        child.detach(Box::new(move || {
            alive.dec();
        }));
    }

    /// Every `release_interval`: ended jobs whose supervisor vanished before giving their
    /// nodes back get a release supervisor (nuke, then unlock or mark down).
    async fn release_orphans(&mut self) {
        if self
            .last_release_scan
            .is_some_and(|at| at.elapsed() < self.config.release_interval)
        {
            return;
        }
        self.last_release_scan = Some(Instant::now());
        let releases = match self.api.claim_releases(16).await {
            Ok(releases) => releases,
            Err(error) => {
                tracing::warn!(detail = error.message(), "cannot look for nodes to release");
                return;
            }
        };
        for release in releases {
            match self.launcher.spawn(&release.job, true) {
                Ok(child) => {
                    tracing::info!(job_id = %release.job.id, nodes = %release.nodes.join(","), "releasing the nodes of an ended job");
                    self.metrics.releases.inc();
                    self.reap_when_done(child);
                }
                Err(error) => tracing::error!(job_id = %release.job.id, "{error:#}"),
            }
        }
    }

    async fn release_lease(&mut self) {
        self.metrics.lease_held.set(0);
        if let Err(error) = self.api.release_lease().await {
            tracing::warn!(
                detail = error.message(),
                "cannot give the lease up; it expires on its own"
            );
        }
    }
}
