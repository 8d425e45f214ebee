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

pub mod settings;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::{
    self, AcquireLeaseRequest, ClaimAction, ClaimJobRequest, ClaimReleasesRequest,
    LockNodesRequest, RecordDispatchRequest, ReleaseLeaseRequest, RequeueJobRequest,
};
use cuttle_queue::{QueueClient, Reserved};

pub use settings::{Cli, FileConfig, Settings};

/// How long one reserve waits for a job before the loop checks its lease and pause.
const RESERVE_WAIT: Duration = Duration::from_secs(1);
/// How often a reservation waiting for nodes is touched (beanstalkd TTRs are >= 10 s).
const TOUCH_EVERY: Duration = Duration::from_secs(3);

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
    dispatch: DispatchServiceClient<Channel>,
    nodes: NodeServiceClient<Channel>,
    queue: QueueClient,
    /// When the lease was last confirmed, and whether the tube is paused.
    lease_confirmed: Option<Instant>,
    paused: bool,
    last_release_scan: Option<Instant>,
    dispatched: u64,
}

/// This host's name, for the records an operator reads.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Dispatcher {
    pub fn new(settings: Settings) -> anyhow::Result<Dispatcher> {
        let channel = Endpoint::from_shared(settings.api.clone())
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
        Ok(Dispatcher {
            queue: QueueClient::new(&settings.beanstalk),
            settings,
            holder,
            host,
            lab_json,
            dispatch: DispatchServiceClient::new(channel.clone()),
            nodes: NodeServiceClient::new(channel),
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
        let paused = response.tube.as_ref().is_some_and(|tube| tube.paused);
        if paused != self.paused && response.granted {
            if paused {
                tracing::info!(tube = self.tube(), "queue paused: no new dispatches");
            } else {
                tracing::info!(tube = self.tube(), "queue resumed");
            }
        }
        self.paused = paused;
        if response.granted {
            self.lease_confirmed = Some(Instant::now());
        } else {
            self.lease_confirmed = None;
        }
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

    /// Dispatches while the lease is held.
    async fn dispatch_while_leased(&mut self, shutdown: &CancellationToken) -> Stop {
        loop {
            if shutdown.is_cancelled() {
                return Stop::Shutdown;
            }
            if !self.keep_lease().await {
                tracing::warn!(tube = self.tube(), "lease lost: standing by");
                return Stop::LeaseLost;
            }
            self.release_orphans().await;
            if self.paused {
                tokio::select! {
                    _ = shutdown.cancelled() => return Stop::Shutdown,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let reserved = tokio::select! {
                _ = shutdown.cancelled() => return Stop::Shutdown,
                reserved = self.queue.reserve(self.settings.machine_type.as_str(), RESERVE_WAIT) => reserved,
            };
            match reserved {
                Ok(Some(job)) => {
                    if let Some(stop) = self.handle(job, shutdown).await {
                        return stop;
                    }
                }
                Ok(None) => {
                    if self.settings.exit_on_empty_queue && self.tube_is_empty().await {
                        tracing::info!(
                            tube = self.tube(),
                            dispatched = self.dispatched,
                            "queue empty: exiting (--exit-on-empty-queue)"
                        );
                        return Stop::QueueEmpty;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reserve from beanstalkd; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Stop::Shutdown,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
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

    /// One reserved job, from claim to delete. `Some` stops the loop.
    async fn handle(&mut self, reserved: Reserved, shutdown: &CancellationToken) -> Option<Stop> {
        let beanstalk_id = reserved.id;
        let claim = self
            .dispatch
            .claim_job(ClaimJobRequest {
                machine_type: self.tube().to_owned(),
                holder: self.holder.clone(),
                beanstalk_id,
                body: String::from_utf8_lossy(&reserved.body).into_owned(),
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
                    return Some(Stop::LeaseLost);
                }
                return None;
            }
        };
        let job = claim.job.clone();
        let job_id = job.as_ref().map_or(0, |job| job.id);
        match ClaimAction::try_from(claim.action).unwrap_or(ClaimAction::Unspecified) {
            ClaimAction::Discard => {
                tracing::info!(beanstalk_id, job_id, reason = %claim.reason, "discarding a copy");
                if let Err(error) = self.queue.delete(beanstalk_id).await {
                    tracing::warn!(beanstalk_id, %error, "cannot delete a discarded copy");
                }
                None
            }
            ClaimAction::Bury | ClaimAction::Unspecified => {
                tracing::warn!(beanstalk_id, job_id, reason = %claim.reason, "burying a job that can never run");
                let priority = job.as_ref().map_or(0, |job| job.priority);
                if let Err(error) = self.queue.bury(beanstalk_id, priority).await {
                    tracing::warn!(beanstalk_id, %error, "cannot bury");
                }
                None
            }
            ClaimAction::Start => {
                let Some(job) = job else {
                    // A START without the job is an API bug; never sit on the reservation.
                    tracing::error!(
                        beanstalk_id,
                        "cuttle-api said start but sent no job; handing the copy back"
                    );
                    self.hand_back(beanstalk_id, None, Duration::from_secs(5))
                        .await;
                    return None;
                };
                let nodes = if claim.nodes.is_empty() {
                    match self.wait_for_nodes(&job, beanstalk_id, shutdown).await {
                        Ok(nodes) => nodes,
                        Err(stop) => return stop,
                    }
                } else {
                    claim.nodes
                };
                self.start(&job, beanstalk_id, &nodes).await;
                None
            }
        }
    }

    /// Asks for the job's nodes until it gets them all, touching the reservation so
    /// beanstalkd keeps it ours. `Err` when the job was handed back instead (with the
    /// loop's stop reason, if the loop must stop).
    async fn wait_for_nodes(
        &mut self,
        job: &v1::Job,
        beanstalk_id: u64,
        shutdown: &CancellationToken,
    ) -> Result<Vec<String>, Option<Stop>> {
        let mut backoff = Duration::from_millis(50);
        let mut touched = Instant::now();
        let mut logged = false;
        loop {
            let locked = self
                .nodes
                .lock_nodes(LockNodesRequest {
                    machine_type: job.machine_type.clone(),
                    count: job.n_nodes,
                    owner: job.owner.clone(),
                    job_id: Some(job.id),
                })
                .await;
            match locked {
                Ok(response) => {
                    return Ok(response
                        .into_inner()
                        .nodes
                        .into_iter()
                        .map(|node| node.name)
                        .collect());
                }
                Err(status) if status.code() == Code::ResourceExhausted => {
                    if !logged {
                        tracing::info!(job_id = job.id, n_nodes = job.n_nodes, "waiting for nodes");
                        logged = true;
                    }
                }
                Err(status) if status.code() == Code::FailedPrecondition => {
                    // The job ended meanwhile (killed), or its machine type shrank below
                    // what it needs. Hand the copy back: the next claim discards or buries
                    // it with the reason.
                    tracing::warn!(
                        job_id = job.id,
                        detail = status.message(),
                        "job can no longer start; handing it back"
                    );
                    self.requeue(job.id, status.message()).await;
                    self.hand_back(beanstalk_id, Some(job.priority), Duration::ZERO)
                        .await;
                    return Err(None);
                }
                Err(status) => {
                    tracing::warn!(
                        job_id = job.id,
                        detail = status.message(),
                        "cannot lock nodes; retrying"
                    );
                    backoff = Duration::from_secs(1);
                }
            }
            let stop = if shutdown.is_cancelled() {
                Some(Stop::Shutdown)
            } else if !self.keep_lease().await {
                Some(Stop::LeaseLost)
            } else {
                None
            };
            // A pause stops new dispatches, and this one has not started: hand it back.
            if stop.is_some() || self.paused {
                self.requeue(job.id, "handed back by its dispatcher before it started")
                    .await;
                self.hand_back(beanstalk_id, Some(job.priority), Duration::ZERO)
                    .await;
                return Err(stop);
            }
            // The nodes this job waits for may be held by an ended job whose supervisor
            // died: releasing those is what lets this one start.
            self.release_orphans().await;
            if touched.elapsed() >= TOUCH_EVERY {
                if let Err(error) = self.queue.touch(beanstalk_id).await {
                    tracing::warn!(beanstalk_id, %error, "cannot touch the reservation");
                }
                touched = Instant::now();
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn requeue(&mut self, job_id: i64, reason: &str) {
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

    /// Starts the supervisor, records the dispatch, lets the supervisor go, deletes the
    /// beanstalkd copy; in that order.
    async fn start(&mut self, job: &v1::Job, beanstalk_id: u64, nodes: &[String]) {
        let mut child = match self.spawn_supervisor(job, false) {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(job_id = job.id, "{error:#}");
                self.requeue(job.id, &format!("cannot start its supervisor: {error:#}"))
                    .await;
                // Later, so a broken install does not spin through the queue.
                self.hand_back(beanstalk_id, Some(job.priority), Duration::from_secs(30))
                    .await;
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
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
        match recorded {
            Ok(_) => {
                if let Some(stdin) = stdin.as_mut() {
                    // If this fails the supervisor sees end-of-file and checks the record
                    // itself, which now says it runs.
                    let _ = stdin.write_all(b"go\n").await;
                }
                drop(stdin);
                if let Err(error) = self.queue.delete(beanstalk_id).await {
                    tracing::warn!(beanstalk_id, %error, "dispatched, but cannot delete the beanstalkd copy; the next claim discards it");
                }
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
        // Reap the supervisor when it exits, so it never lingers as a zombie of ours.
        tokio::spawn(async move {
            let _ = child.wait().await;
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
        let archive = self.settings.lab.job_archive(&job.run_name, job.id);
        std::fs::create_dir_all(&archive)
            .with_context(|| format!("cannot create the job archive {}", archive.display()))?;
        let log_path = archive.join("supervisor.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
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
                Ok(mut child) => {
                    tracing::info!(job_id = job.id, nodes = %release.nodes.join(","), "releasing the nodes of an ended job");
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                Err(error) => tracing::error!(job_id = job.id, "{error:#}"),
            }
        }
    }

    async fn release_lease(&mut self) {
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

/// Runs the dispatcher until `shutdown` is cancelled (or, with `--exit-on-empty-queue`,
/// the tube is empty). Returns how many jobs it dispatched.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<u64> {
    let mut dispatcher = Dispatcher::new(settings)?;
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
