//! cuttle-supervisor as a library: [`supervise`] runs one job from its dispatcher's go to
//! its nodes given back; [`release_only`] gives back the nodes of a job that ended while
//! its supervisor was gone. `main.rs` parses flags and calls one of them.
//!
//! **Invariant:** a supervisor never leaves its job's nodes behind. Whatever ends the job
//! (exit, time-out, kill, SIGTERM, a failed prepare), it reports the result (unless the
//! job has already ended) and then unlocks each node, or marks it down when its nuke
//! fails. If the supervisor itself dies, cuttle-api's reaper marks the job dead and the
//! tube's dispatcher starts a release-only supervisor.
//!
//! It never decides a status transition itself beyond asking cuttle-api for one; the core
//! state machine there refuses anything illegal (a job killed meanwhile stays killed).

pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use cuttle_core::JobStatus;
use cuttle_core::dispatch::needs_nuke;
use cuttle_proto::convert::{status_from_proto, status_to_proto};
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{
    self, GetJobRequest, HeartbeatRequest, MarkNodeRequest, UnlockNodesRequest,
    UpdateJobStatusRequest,
};
use cuttle_runtime::lab::{LabConfig, Template};

use process::{CommandOutcome, run_command};

/// How long a supervisor waits for its dispatcher's go before checking the record itself;
/// longer than the dispatcher's own deadline for recording the dispatch (30 s).
const HANDSHAKE_WAIT: Duration = Duration::from_secs(120);

/// The API clients a supervisor uses.
#[derive(Debug, Clone)]
pub struct Api {
    runs: RunServiceClient<Channel>,
    nodes: NodeServiceClient<Channel>,
}

impl Api {
    pub fn connect(url: &str) -> anyhow::Result<Api> {
        let channel = Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("invalid --api {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        Ok(Api {
            runs: RunServiceClient::new(channel.clone()),
            nodes: NodeServiceClient::new(channel),
        })
    }

    /// The job with its nodes, retried for a while: the supervisor is useless without it.
    async fn job(&self, job_id: i64) -> anyhow::Result<v1::Job> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.runs.clone().get_job(GetJobRequest { job_id }).await {
                Ok(detail) => {
                    return detail
                        .into_inner()
                        .job
                        .context("cuttle-api answered without the job");
                }
                Err(status)
                    if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
                {
                    tracing::warn!(
                        detail = status.message(),
                        "cannot reach cuttle-api; retrying"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(status) => anyhow::bail!("cannot fetch job {job_id}: {}", status.message()),
            }
        }
    }
}

fn status_of(job: &v1::Job) -> Option<JobStatus> {
    status_from_proto(job.status)
}

/// The values command templates are filled with.
fn template_values(job: &v1::Job, archive: &Path) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("job_id", job.id.to_string()),
        ("run", job.run_name.clone()),
        ("owner", job.owner.clone()),
        ("machine_type", job.machine_type.clone()),
        ("description", job.description.clone()),
        ("nodes", job.nodes.join(",")),
        ("os_type", job.os_type.clone()),
        ("os_version", job.os_version.clone()),
        ("archive", archive.display().to_string()),
        (
            "job_config",
            archive.join("config.yaml").display().to_string(),
        ),
        (
            "bin_dir",
            cuttle_runtime::lab::bin_dir().display().to_string(),
        ),
    ])
}

fn render(template: &str, values: &BTreeMap<&'static str, String>) -> anyhow::Result<Vec<String>> {
    Template::parse(template)
        .map(|t| t.render(values))
        .map_err(|e| anyhow::anyhow!("bad command template {template:?}: {e}"))
}

/// Beats every `interval` until `stop` is cancelled, publishing the job's status as
/// cuttle-api sees it.
fn start_heartbeat(
    api: Api,
    job_id: i64,
    interval: Duration,
    stop: CancellationToken,
) -> watch::Receiver<Option<JobStatus>> {
    let (publish, statuses) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            match api
                .runs
                .clone()
                .heartbeat(HeartbeatRequest { job_id })
                .await
            {
                Ok(answer) => {
                    let _ = publish.send(status_from_proto(answer.into_inner().status));
                }
                Err(status) => {
                    tracing::warn!(job_id, detail = status.message(), "heartbeat failed");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    });
    statuses
}

/// How the job ended, as the supervisor will report it (`None`: it had already ended,
/// killed or declared dead by someone else).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    report: Option<(JobStatus, String)>,
}

/// Runs job `job_id` for the dispatcher that started this process. `go` is the
/// dispatcher's pipe: a line, or its end, means the dispatch was recorded or not; the
/// record decides. `terminated` is cancelled on SIGTERM/SIGINT.
pub async fn supervise(
    api: Api,
    lab: LabConfig,
    job_id: i64,
    terminated: CancellationToken,
) -> anyhow::Result<()> {
    wait_for_go().await;
    let job = api.job(job_id).await?;
    let ours =
        status_of(&job) == Some(JobStatus::Running) && job.supervisor_pid == std::process::id();
    if !ours {
        tracing::warn!(
            job_id,
            status = cuttle_proto::convert::status_name(job.status),
            recorded_pid = job.supervisor_pid,
            "this process is not the job's recorded supervisor (its dispatch was not recorded); exiting without touching it"
        );
        return Ok(());
    }
    let archive = lab.job_archive(&job.run_name, job.id);
    std::fs::create_dir_all(&archive)
        .with_context(|| format!("cannot create the job archive {}", archive.display()))?;
    std::fs::write(archive.join("config.yaml"), &job.config_yaml)
        .with_context(|| format!("cannot write {}/config.yaml", archive.display()))?;
    tracing::info!(job_id, run = %job.run_name, nodes = %job.nodes.join(","), archive = %archive.display(), "supervising");

    let beat_stop = CancellationToken::new();
    let statuses = start_heartbeat(
        api.clone(),
        job_id,
        Duration::from_millis(lab.heartbeat_interval_ms),
        beat_stop.clone(),
    );
    let verdict = run_job(&lab, &job, &archive, statuses, &terminated).await;
    if let Some((status, reason)) = &verdict.report {
        report(&api, job_id, *status, reason).await;
    }
    let result = release(&api, &lab, job_id, &archive).await;
    beat_stop.cancel();
    result
}

/// Reads the dispatcher's go line (or end-of-file), waiting at most [`HANDSHAKE_WAIT`].
async fn wait_for_go() {
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let _ = tokio::time::timeout(HANDSHAKE_WAIT, stdin.read_line(&mut line)).await;
}

/// Prepare, then the runner under the time limit; what ended it.
async fn run_job(
    lab: &LabConfig,
    job: &v1::Job,
    archive: &Path,
    mut statuses: watch::Receiver<Option<JobStatus>>,
    terminated: &CancellationToken,
) -> Verdict {
    let values = template_values(job, archive);
    let command_timeout = Duration::from_secs(lab.command_timeout_s);
    let kill_grace = Duration::from_millis(lab.kill_grace_ms);
    if let Some(prepare) = &lab.prepare_command {
        let outcome = match render(prepare, &values) {
            Ok(argv) => {
                run_command(
                    &argv,
                    &archive.join("prepare.log"),
                    command_timeout,
                    kill_grace,
                )
                .await
            }
            Err(error) => CommandOutcome::CannotStart(format!("{error:#}")),
        };
        if !outcome.succeeded() {
            return Verdict {
                report: Some((
                    JobStatus::Dead,
                    format!("prepare (reimage) failed: {outcome}"),
                )),
            };
        }
        tracing::info!(job_id = job.id, "nodes prepared");
    }
    // The job's own `timeout` when it has one, else the lab's max_job_time.
    let limit_s = job.time_limit_s.map_or(lab.max_job_time_s, u64::from);
    let limit = Duration::from_secs(limit_s);
    let argv = match render(&lab.runner_command, &values) {
        Ok(argv) => argv,
        Err(error) => {
            return Verdict {
                report: Some((JobStatus::Dead, format!("{error:#}"))),
            };
        }
    };
    let mut runner = match process::spawn_in_group(&argv, &archive.join("runner.log")) {
        Ok(runner) => runner,
        Err(error) => {
            return Verdict {
                report: Some((
                    JobStatus::Dead,
                    format!("cannot start the runner: {error:#}"),
                )),
            };
        }
    };
    tracing::info!(job_id = job.id, pid = runner.id(), limit_s, runner = %argv.join(" "), "runner started");
    // Names the runner for `--release` in case this supervisor dies before ending it.
    let record = archive.join(process::RUNNER_RECORD);
    if let Some(pid) = runner.id() {
        process::record_runner(&record, pid);
    }
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let stopped_because = loop {
        tokio::select! {
            exit = runner.wait() => {
                let _ = std::fs::remove_file(&record);
                return Verdict { report: Some(match exit {
                    Ok(status) if status.success() => (JobStatus::Pass, String::new()),
                    Ok(status) => (JobStatus::Fail, format!("runner {}", process::describe_exit(status))),
                    Err(error) => (JobStatus::Dead, format!("lost the runner: {error}")),
                })};
            }
            _ = &mut deadline => break Some((JobStatus::Dead, format!("timed out: ran past its time limit of {limit_s} s, so its runner was ended"))),
            _ = terminated.cancelled() => break Some((JobStatus::Dead, "its supervisor was stopped (SIGTERM/SIGINT), so its runner was ended".to_owned())),
            changed = statuses.changed() => {
                if changed.is_err() {
                    continue;
                }
                let status = *statuses.borrow();
                if let Some(status) = status && status != JobStatus::Running {
                    tracing::warn!(job_id = job.id, %status, "the job ended elsewhere (killed or reaped); stopping the runner");
                    break None;
                }
            }
        }
    };
    // Archive first, then end the runner: logs are worth more than a few seconds.
    if let Some(collect) = &lab.collect_logs_command {
        let outcome = match render(collect, &values) {
            Ok(argv) => {
                run_command(
                    &argv,
                    &archive.join("collect-logs.log"),
                    command_timeout,
                    kill_grace,
                )
                .await
            }
            Err(error) => CommandOutcome::CannotStart(format!("{error:#}")),
        };
        if outcome.succeeded() {
            tracing::info!(job_id = job.id, "logs collected");
        } else {
            tracing::warn!(job_id = job.id, %outcome, "collecting logs failed");
        }
    }
    process::end_group(&mut runner, kill_grace).await;
    let _ = std::fs::remove_file(&record);
    tracing::info!(job_id = job.id, "runner ended");
    Verdict {
        report: stopped_because,
    }
}

/// Reports the final status, retrying while cuttle-api is unreachable. A refusal (the
/// job was killed or reaped meanwhile) is final.
async fn report(api: &Api, job_id: i64, status: JobStatus, reason: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let sent = api
            .runs
            .clone()
            .update_job_status(UpdateJobStatusRequest {
                job_id,
                status: status_to_proto(status) as i32,
                reason: reason.to_owned(),
            })
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(job_id, %status, reason, "job ended");
                return;
            }
            Err(error) if error.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tracing::warn!(
                    job_id,
                    detail = error.message(),
                    "cannot report the result yet; retrying"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                tracing::warn!(job_id, %status, detail = error.message(), "result not recorded");
                return;
            }
        }
    }
}

/// Gives the job's nodes back: straight unlock after a pass; otherwise nuke each node
/// first (when the lab has a nuke command) and mark a node whose nuke fails down.
async fn release(api: &Api, lab: &LabConfig, job_id: i64, archive: &Path) -> anyhow::Result<()> {
    let job = api.job(job_id).await?;
    if job.nodes.is_empty() {
        tracing::info!(job_id, "no nodes left to release");
        return Ok(());
    }
    let status = status_of(&job).unwrap_or(JobStatus::Dead);
    let values = template_values(&job, archive);
    let timeout = Duration::from_secs(lab.command_timeout_s);
    let kill_grace = Duration::from_millis(lab.kill_grace_ms);
    let nuke = lab.nuke_command.as_ref().filter(|_| needs_nuke(status));
    for node in &job.nodes {
        if let Some(nuke) = nuke {
            let mut node_values = values.clone();
            node_values.insert("node", node.clone());
            let outcome = match render(nuke, &node_values) {
                Ok(argv) => {
                    run_command(
                        &argv,
                        &archive.join(format!("nuke-{node}.log")),
                        timeout,
                        kill_grace,
                    )
                    .await
                }
                Err(error) => CommandOutcome::CannotStart(format!("{error:#}")),
            };
            if !outcome.succeeded() {
                let reason = format!(
                    "nuke failed after job {job_id} ({status}): {outcome}; see {}",
                    archive.display()
                );
                tracing::warn!(job_id, node, %reason, "marking the node down");
                let marked = api
                    .nodes
                    .clone()
                    .mark_node(MarkNodeRequest {
                        name: node.clone(),
                        up: false,
                        reason,
                    })
                    .await;
                if let Err(error) = marked {
                    // Leave it locked: a node that may be dirty is never handed out.
                    tracing::error!(
                        job_id,
                        node,
                        detail = error.message(),
                        "cannot mark the node down; leaving it locked"
                    );
                    continue;
                }
            }
        }
        let unlocked = api
            .nodes
            .clone()
            .unlock_nodes(UnlockNodesRequest {
                names: vec![node.clone()],
                owner: job.owner.clone(),
            })
            .await;
        match unlocked {
            Ok(_) => tracing::info!(job_id, node, "node released"),
            Err(error) => tracing::error!(
                job_id,
                node,
                detail = error.message(),
                "cannot unlock the node"
            ),
        }
    }
    Ok(())
}

/// Gives back the nodes of a job that ended while no supervisor was looking after it
/// (its supervisor died, or it was killed while lost). The job's archive gets the nuke
/// logs.
pub async fn release_only(api: Api, lab: LabConfig, job_id: i64) -> anyhow::Result<()> {
    let job = api.job(job_id).await?;
    if !status_of(&job).is_some_and(JobStatus::is_terminal) {
        anyhow::bail!(
            "job {job_id} is {}, not ended; --release only gives back the nodes of an ended job (kill it first with `cuttle kill RUN --job {job_id}`)",
            cuttle_proto::convert::status_name(job.status)
        );
    }
    let archive: PathBuf = lab.job_archive(&job.run_name, job.id);
    std::fs::create_dir_all(&archive)
        .with_context(|| format!("cannot create the job archive {}", archive.display()))?;
    tracing::info!(job_id, status = cuttle_proto::convert::status_name(job.status), nodes = %job.nodes.join(","), "releasing the nodes of an ended job");
    // A supervisor that died left its runner running on the nodes: end it first (on this
    // host; a runner on another host is left to the nuke).
    let record = archive.join(process::RUNNER_RECORD);
    if let Some(pid) =
        process::end_recorded_runner(&record, Duration::from_millis(lab.kill_grace_ms)).await
    {
        tracing::warn!(
            job_id,
            pid,
            "ended the runner its lost supervisor left running"
        );
    }
    let beat_stop = CancellationToken::new();
    let _statuses = start_heartbeat(
        api.clone(),
        job_id,
        Duration::from_millis(lab.heartbeat_interval_ms),
        beat_stop.clone(),
    );
    let result = release(&api, &lab, job_id, &archive).await;
    beat_stop.cancel();
    result
}
