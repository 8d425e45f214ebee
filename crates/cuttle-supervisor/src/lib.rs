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

pub mod checkouts;
pub mod process;
pub mod teuthology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use cuttle_proto::bearer::{Authed, Bearer, Token};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use cuttle_core::dispatch::{JobOnNodes, needs_nuke};
use cuttle_core::{Job, JobStatus};
use cuttle_proto::convert::{status_from_proto, status_to_proto};
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{
    self, GetJobRequest, HeartbeatRequest, MarkNodeRequest, ReportPrepareRequest,
    UnlockNodesRequest, UpdateJobStatusRequest,
};
use cuttle_runtime::lab::{LabConfig, Template};

use process::{CommandOutcome, run_command};

/// How long a supervisor waits for its dispatcher's go before checking the record itself;
/// longer than the dispatcher's own deadline for recording the dispatch (30 s).
const HANDSHAKE_WAIT: Duration = Duration::from_secs(120);

/// After its dispatcher's pipe ends without a go, how long a supervisor keeps checking a
/// job that still waits: the dispatcher may have died with its record of this dispatch
/// on the way (its own deadline for recording is 30 s).
const RECORD_IN_FLIGHT: Duration = Duration::from_secs(30);

/// How long a supervisor keeps asking for its job through an outage before it gives up.
const FETCH_PATIENCE: Duration = Duration::from_secs(600);

/// The API clients a supervisor uses.
#[derive(Debug, Clone)]
pub struct Api {
    runs: RunServiceClient<Authed>,
    nodes: NodeServiceClient<Authed>,
    /// This supervisor as its dispatch recorded it (pid, host), named in its reports.
    pid: u32,
    host: String,
}

impl Api {
    /// Clients of cuttle-api at `url`, sending `token` (the dispatcher's service token)
    /// on every call.
    pub fn connect(url: &str, token: Option<&Token>, ca_pem: Option<&[u8]>) -> anyhow::Result<Api> {
        let channel = cuttle_proto::endpoint::endpoint(url, ca_pem)
            .with_context(|| format!("invalid --api {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        let bearer = Bearer::for_token(token).context("invalid CUTTLE_TOKEN")?;
        Ok(Api {
            runs: RunServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            nodes: NodeServiceClient::with_interceptor(channel, bearer),
            pid: std::process::id(),
            host: cuttle_runtime::host_name(),
        })
    }

    /// The recorded ssh host keys of a machine type's nodes, by node name (empty when a
    /// node has none).
    async fn host_keys(&self, machine_type: &str) -> Result<BTreeMap<String, String>, String> {
        let listed = self
            .nodes
            .clone()
            .list_nodes(v1::ListNodesRequest {
                machine_type: Some(machine_type.to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|status| {
                format!(
                    "cannot read the nodes' ssh host keys from cuttle-api: {}",
                    status.message()
                )
            })?;
        Ok(listed
            .into_inner()
            .nodes
            .into_iter()
            .map(|node| (node.name, node.ssh_key))
            .collect())
    }

    /// The job with its nodes, retried with backoff through an outage of cuttle-api or
    /// its database (up to [`FETCH_PATIENCE`]): the supervisor is useless without it, and
    /// giving up would leave a running job to be reaped.
    async fn job(&self, job_id: i64) -> anyhow::Result<JobOnNodes> {
        let deadline = Instant::now() + FETCH_PATIENCE;
        let mut attempt = 0;
        loop {
            match self.runs.clone().get_job(GetJobRequest { job_id }).await {
                Ok(detail) => {
                    let job = detail
                        .into_inner()
                        .job
                        .context("cuttle-api answered without the job")?;
                    return read_job(&job);
                }
                Err(status) if transient(status.code()) && Instant::now() < deadline => {
                    tracing::warn!(
                        code = ?status.code(),
                        detail = status.message(),
                        "cannot fetch the job from cuttle-api; retrying"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(status) => anyhow::bail!("cannot fetch job {job_id}: {}", status.message()),
            }
        }
    }
}

/// A job from cuttle-api, in core types; an answer this version cannot read is an error
/// that says so.
fn read_job(job: &v1::Job) -> anyhow::Result<JobOnNodes> {
    cuttle_proto::convert::job_on_nodes_from_proto(job).map_err(|error| {
        anyhow::anyhow!(
            "cuttle-api sent job {} in a form this supervisor cannot read ({error}); run the same cuttle version on both",
            job.id
        )
    })
}

/// The pid of the supervisor cuttle-api recorded for the job, if any.
fn recorded_pid(job: &JobOnNodes) -> Option<u32> {
    job.job.supervisor.as_ref().map(|supervisor| supervisor.pid)
}

/// The values command templates are filled with.
fn template_values(assigned: &JobOnNodes, archive: &Path) -> BTreeMap<&'static str, String> {
    let job = &assigned.job;
    BTreeMap::from([
        ("job_id", job.id.to_string()),
        ("run", job.run_name.to_string()),
        ("owner", job.owner.to_string()),
        ("machine_type", job.spec.machine_type.to_string()),
        ("description", job.spec.description.clone()),
        ("nodes", assigned.nodes.join(",")),
        ("os_type", job.spec.os_type.clone()),
        ("os_version", job.spec.os_version.clone()),
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
        let mut failures: u32 = 0;
        loop {
            match api
                .runs
                .clone()
                .heartbeat(HeartbeatRequest {
                    job_id,
                    supervisor_pid: Some(api.pid),
                    supervisor_host: Some(api.host.clone()),
                })
                .await
            {
                Ok(answer) => {
                    failures = 0;
                    let _ = publish.send(status_from_proto(answer.into_inner().status));
                }
                Err(status) => {
                    tracing::warn!(job_id, detail = status.message(), "heartbeat failed");
                    failures += 1;
                }
            }
            // A failed beat is retried sooner (never later than the interval): the
            // API may be back any moment and the grace is counting.
            let wait = if failures > 0 {
                backoff(failures.saturating_sub(1)).min(interval)
            } else {
                interval
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
    statuses
}

/// How the job ended, as the supervisor will report it (`None`: it had already ended,
/// killed or declared dead by someone else).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Verdict {
    report: Option<(JobStatus, String)>,
    /// The prepare failed: why, and on which nodes (empty: all of them). cuttle-api
    /// decides whether the job goes back to the queue or ends dead.
    prepare_failed: Option<(String, Vec<String>)>,
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
    let mut job = api.job(job_id).await?;
    // The job still waits: either its dispatcher never recorded this dispatch, or it
    // died with the record on its way, which cuttle-api may still commit. Judging now
    // would leave such a record naming a process that already left (the job then dies
    // as "supervisor lost"), so wait for the first of: the record, the job leaving
    // `waiting` another way (requeued, taken over, killed), or RECORD_IN_FLIGHT.
    let patience = Instant::now() + RECORD_IN_FLIGHT;
    while job.job.status == JobStatus::Waiting && Instant::now() < patience {
        tokio::select! {
            _ = terminated.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        job = api.job(job_id).await?;
    }
    let ours =
        job.job.status == JobStatus::Running && recorded_pid(&job) == Some(std::process::id());
    if !ours {
        tracing::warn!(
            job_id,
            status = %job.job.status,
            recorded_pid = recorded_pid(&job),
            "this process is not the job's recorded supervisor (its dispatch was not recorded); exiting without touching it"
        );
        return Ok(());
    }
    if let Some(root) = lab.checkout_dir.clone() {
        let max_age = Duration::from_secs(lab.checkout_max_age_days * 86_400);
        let pruned = tokio::task::spawn_blocking(move || {
            checkouts::Checkouts::new(root, Duration::ZERO).prune(max_age)
        })
        .await
        .unwrap_or(0);
        if pruned > 0 {
            tracing::info!(
                pruned,
                "removed checkouts unused for {} days",
                lab.checkout_max_age_days
            );
        }
    }
    let beat_stop = CancellationToken::new();
    let statuses = start_heartbeat(
        api.clone(),
        job_id,
        Duration::from_millis(lab.heartbeat_interval_ms),
        beat_stop.clone(),
    );
    // A job whose archive cannot be written (a full disk, a bad run name) does not run:
    // its logs would be lost. It ends dead with the reason and its nodes still go back.
    let (archive, verdict) = match open_archive(&lab, &job.job) {
        Ok(archive) => {
            tracing::info!(job_id, run = %job.job.run_name, nodes = %job.nodes.join(","), archive = %archive.display(), "supervising");
            let verdict = run_job(&api, &lab, &job, &archive, statuses, &terminated).await;
            (archive, verdict)
        }
        Err(error) => {
            tracing::error!(job_id, error = %format!("{error:#}"), "cannot write the job archive; the job ends dead");
            let verdict = Verdict {
                report: Some((JobStatus::Dead, format!("{error:#}"))),
                ..Verdict::default()
            };
            // Nothing can be written under /dev/null, so the release's commands run with
            // their output discarded (see process::spawn_in_group).
            (PathBuf::from("/dev/null"), verdict)
        }
    };
    if let Some((reason, failed_nodes)) = &verdict.prepare_failed {
        tracing::warn!(job_id, reason, nodes = %failed_nodes.join(","), "prepare failed");
        match report_prepare(&api, job_id, reason, failed_nodes).await {
            Some(true) => {
                // cuttle-api freed the nodes with the job's return to the queue: nothing
                // is left here to release.
                tracing::info!(job_id, "the job is back in the queue; its nodes were freed");
                beat_stop.cancel();
                return Ok(());
            }
            // Ended dead by cuttle-api; the release below nukes the nodes.
            Some(false) => {}
            // Refused (the job was killed meanwhile, or an older cuttle-api): end it
            // ourselves so the release may proceed.
            None => {
                report(
                    &api,
                    job_id,
                    JobStatus::Dead,
                    &format!("prepare (reimage) failed: {reason}"),
                )
                .await;
            }
        }
    }
    // The report's answer is the ended job with its nodes: the release needs no second
    // fetch unless the report did not land.
    let reported = match &verdict.report {
        Some((status, reason)) => report(&api, job_id, *status, reason).await,
        None => None,
    };
    let result = release(&api, &lab, job_id, &archive, reported).await;
    beat_stop.cancel();
    result
}

/// Creates the job's archive directory and writes its config there.
fn open_archive(lab: &LabConfig, job: &Job) -> anyhow::Result<PathBuf> {
    let archive = lab.job_archive(job.run_name.as_str(), job.id.0)?;
    std::fs::create_dir_all(&archive)
        .with_context(|| format!("cannot create the job archive {}", archive.display()))?;
    std::fs::write(archive.join("config.yaml"), &job.config_yaml)
        .with_context(|| format!("cannot write {}/config.yaml", archive.display()))?;
    Ok(archive)
}

/// Reads the dispatcher's go line (or end-of-file), waiting at most [`HANDSHAKE_WAIT`].
async fn wait_for_go() {
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let _ = tokio::time::timeout(HANDSHAKE_WAIT, stdin.read_line(&mut line)).await;
}

/// Prepare, then the runner under the time limit; what ended it.
async fn run_job(
    api: &Api,
    lab: &LabConfig,
    job: &JobOnNodes,
    archive: &Path,
    mut statuses: watch::Receiver<Option<JobStatus>>,
    terminated: &CancellationToken,
) -> Verdict {
    let values = template_values(job, archive);
    let command_timeout = Duration::from_secs(lab.command_timeout_s);
    let kill_grace = Duration::from_millis(lab.kill_grace_ms);
    if let Some(prepare) = &lab.prepare_command {
        if let Some(failure) = prepare_nodes(prepare, job, archive, &values, lab).await {
            return Verdict {
                prepare_failed: Some(failure),
                ..Verdict::default()
            };
        }
        tracing::info!(job_id = job.job.id.0, "nodes prepared");
        report_prepare_ok(api, job.job.id.0).await;
    }
    // The job's own `timeout` when it has one, else the lab's max_job_time.
    let limit_s = job
        .job
        .spec
        .time_limit
        .map_or(lab.max_job_time_s, |limit| u64::from(limit.seconds()));
    let limit = Duration::from_secs(limit_s);
    let dead = |reason: String| Verdict {
        report: Some((JobStatus::Dead, reason)),
        ..Verdict::default()
    };
    let teuthology = lab.runner_command.is_none();
    let argv = match &lab.runner_command {
        Some(command) => match render(command, &values) {
            Ok(argv) => argv,
            Err(error) => return dead(format!("{error:#}")),
        },
        None => match teuthology_argv(api, lab, job, archive, &values).await {
            Ok(argv) => argv,
            Err(reason) => return dead(reason),
        },
    };
    let env: Vec<(&str, &std::ffi::OsStr)> = match (&lab.teuthology_config, teuthology) {
        (Some(config), true) => vec![("TEUTHOLOGY_CONFIG", config.as_os_str())],
        _ => Vec::new(),
    };
    let mut runner = match process::spawn_in_group_with(&argv, &archive.join("runner.log"), &env) {
        Ok(runner) => runner,
        Err(error) => return dead(format!("cannot start the runner: {error:#}")),
    };
    tracing::info!(job_id = job.job.id.0, pid = runner.id(), limit_s, runner = %argv.join(" "), "runner started");
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
                let summary = read_summary(archive);
                return Verdict { prepare_failed: None, report: Some(match exit {
                    Ok(status) => exit_verdict(status, summary),
                    Err(error) => (JobStatus::Dead, format!("lost the runner: {error}")),
                })};
            }
            _ = &mut deadline => break Some((JobStatus::Dead, format!("hit max job timeout: ran past its time limit of {limit_s} s, so its runner was ended"))),
            _ = terminated.cancelled() => break Some((JobStatus::Dead, "its supervisor was stopped (SIGTERM/SIGINT), so its runner was ended".to_owned())),
            changed = statuses.changed() => {
                if changed.is_err() {
                    continue;
                }
                let status = *statuses.borrow();
                if let Some(status) = status && status != JobStatus::Running {
                    tracing::warn!(job_id = job.job.id.0, %status, "the job ended elsewhere (killed or reaped); stopping the runner");
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
            tracing::info!(job_id = job.job.id.0, "logs collected");
        } else {
            tracing::warn!(job_id = job.job.id.0, %outcome, "collecting logs failed");
        }
    }
    if teuthology {
        // teuthology tears the job down and writes its summary on SIGINT, not on TERM.
        process::interrupt_group(&mut runner, kill_grace).await;
    } else {
        process::end_group(&mut runner, kill_grace).await;
    }
    let _ = std::fs::remove_file(&record);
    tracing::info!(job_id = job.job.id.0, "runner ended");
    Verdict {
        report: stopped_because,
        ..Verdict::default()
    }
}

/// What a runner's exit means, with what its `summary.yaml` says (teuthology's, or the
/// local runner's): a pass needs exit 0 and no summary saying otherwise; a failure's
/// reason is the summary's `failure_reason` when it has one.
fn exit_verdict(
    status: std::process::ExitStatus,
    summary: Option<teuthology::Summary>,
) -> (JobStatus, String) {
    let summary = summary.unwrap_or_default();
    let described = process::describe_exit(status);
    match (status.success(), summary.success, summary.failure_reason) {
        (true, Some(false), reason) => (
            JobStatus::Fail,
            reason.unwrap_or_else(|| "its summary.yaml says success: false".to_owned()),
        ),
        (true, _, _) => (JobStatus::Pass, String::new()),
        (false, _, Some(reason)) => (JobStatus::Fail, reason),
        (false, _, None) => (JobStatus::Fail, format!("runner {described}")),
    }
}

fn read_summary(archive: &Path) -> Option<teuthology::Summary> {
    let text = std::fs::read_to_string(archive.join("summary.yaml")).ok()?;
    teuthology::summary(&text)
}

/// Writes the job config teuthology runs (`<archive>/config.yaml`) and returns its
/// command line; `Err` is the reason the job cannot run.
async fn teuthology_argv(
    api: &Api,
    lab: &LabConfig,
    job: &JobOnNodes,
    archive: &Path,
    values: &BTreeMap<&'static str, String>,
) -> Result<Vec<String>, String> {
    let facts = teuthology::JobFacts {
        job_id: job.job.id.0,
        run: job.job.run_name.as_str(),
        owner: job.job.owner.as_str(),
        description: &job.job.spec.description,
        machine_type: job.job.spec.machine_type.as_str(),
        os_type: &job.job.spec.os_type,
        os_version: &job.job.spec.os_version,
    };
    let targets = if teuthology::wants_targets(&job.job.config_yaml)? {
        let keys = api.host_keys(job.job.spec.machine_type.as_str()).await?;
        Some(targets(lab, job, &keys, values).await?)
    } else {
        None
    };
    let (suite_path, teuthology_bin) = pinned_checkouts(lab, job, values).await?;
    let config = teuthology::job_config(
        &job.job.config_yaml,
        &facts,
        archive,
        targets.as_ref(),
        suite_path.as_deref(),
    )?;
    let path = archive.join("config.yaml");
    std::fs::write(&path, config).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(teuthology::argv(
        &teuthology_bin,
        &job.job.config_yaml,
        &facts,
        archive,
        &path,
    ))
}

/// The suite path and teuthology executable of the commits the job's run pinned, from
/// this host's checkouts (when the lab keeps them): every job of a run runs the same
/// commits however the branches move.
async fn pinned_checkouts(
    lab: &LabConfig,
    job: &JobOnNodes,
    values: &BTreeMap<&'static str, String>,
) -> Result<(Option<PathBuf>, PathBuf), String> {
    let Some(root) = &lab.checkout_dir else {
        return Ok((None, lab.teuthology_bin.clone()));
    };
    let checkouts =
        checkouts::Checkouts::new(root.clone(), Duration::from_secs(lab.command_timeout_s));
    let pins = teuthology::pins(&job.job.config_yaml)?;
    let suite_path = match (&pins.suite_repo, &pins.suite_sha1, pins.has_suite_path) {
        (Some(repo), Some(sha1), false) => {
            let dir = checkouts
                .get(checkouts::Kind::Suite, repo, sha1, None)
                .await
                .map_err(|e| {
                    format!("cannot check out the run's suite commit {sha1} of {repo}: {e:#}")
                })?;
            Some(dir.join(&pins.suite_relpath))
        }
        _ => None,
    };
    let teuthology_bin = match (&lab.teuthology_repo, &pins.teuthology_sha1) {
        (Some(repo), Some(sha1)) => {
            let bootstrap = lab
                .teuthology_bootstrap_command
                .as_deref()
                .map(|template| render(template, values))
                .transpose()
                .map_err(|e| format!("{e:#}"))?;
            let dir = checkouts
                .get(
                    checkouts::Kind::Teuthology,
                    repo,
                    sha1,
                    bootstrap.as_deref(),
                )
                .await
                .map_err(|e| {
                    format!("cannot check out the run's teuthology commit {sha1} of {repo}: {e:#}")
                })?;
            dir.join(&lab.teuthology_bin_in_checkout)
        }
        _ => lab.teuthology_bin.clone(),
    };
    Ok((suite_path, teuthology_bin))
}

/// `ssh_user@node` -> host key for each of the job's nodes: the node record's key, else
/// what the lab's keyscan command finds.
async fn targets(
    lab: &LabConfig,
    job: &JobOnNodes,
    keys: &BTreeMap<String, String>,
    values: &BTreeMap<&'static str, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut targets = BTreeMap::new();
    for node in &job.nodes {
        let recorded = keys
            .get(node)
            .map(|key| key.trim().to_owned())
            .filter(|key| !key.is_empty());
        let key = match (recorded, &lab.keyscan_command) {
            (Some(key), _) => key,
            (None, Some(keyscan)) => keyscan_host_key(keyscan, node, values, lab).await?,
            (None, None) => {
                return Err(format!(
                    "node {node} has no ssh host key, and teuthology needs one for a job with roles: set it with `cuttle node update {node} --ssh-key \"$(ssh-keyscan -t ed25519 {node} | cut -d' ' -f2-)\"`, or set lab.keyscan_command"
                ));
            }
        };
        targets.insert(format!("{}@{node}", lab.ssh_user), key);
    }
    Ok(targets)
}

async fn keyscan_host_key(
    template: &str,
    node: &str,
    values: &BTreeMap<&'static str, String>,
    lab: &LabConfig,
) -> Result<String, String> {
    let mut values = values.clone();
    values.insert("node", node.to_owned());
    let argv = render(template, &values).map_err(|e| format!("{e:#}"))?;
    let (program, args) = argv.split_first().ok_or("lab.keyscan_command is empty")?;
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(lab.command_timeout_s), run)
        .await
        .map_err(|_| {
            format!(
                "lab.keyscan_command for node {node} did not finish in {} s",
                lab.command_timeout_s
            )
        })?
        .map_err(|e| format!("cannot run lab.keyscan_command for node {node}: {e}"))?;
    teuthology::host_key_from_keyscan(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        format!(
            "lab.keyscan_command found no ssh host key for node {node} ({}); is the node up? Set one with `cuttle node update {node} --ssh-key KEY`",
            process::describe_exit(output.status)
        )
    })
}

/// Runs the lab's prepare command: once per node when it names `{node}` (so a failure
/// is charged to that node), else once for all of them. `None` when every run succeeded;
/// otherwise why, and which nodes failed (empty: all).
async fn prepare_nodes(
    prepare: &str,
    job: &JobOnNodes,
    archive: &Path,
    values: &BTreeMap<&'static str, String>,
    lab: &LabConfig,
) -> Option<(String, Vec<String>)> {
    let command_timeout = Duration::from_secs(lab.command_timeout_s);
    let kill_grace = Duration::from_millis(lab.kill_grace_ms);
    let per_node = Template::parse(prepare).is_ok_and(|template| template.uses("node"));
    let targets: Vec<Option<&String>> = if per_node {
        job.nodes.iter().map(Some).collect()
    } else {
        vec![None]
    };
    let mut failures = Vec::new();
    let mut failed_nodes = Vec::new();
    for node in targets {
        let mut node_values = values.clone();
        let log = match node {
            Some(node) => {
                node_values.insert("node", node.clone());
                archive.join(format!("prepare-{node}.log"))
            }
            None => archive.join("prepare.log"),
        };
        let outcome = match render(prepare, &node_values) {
            Ok(argv) => run_command(&argv, &log, command_timeout, kill_grace).await,
            Err(error) => CommandOutcome::CannotStart(format!("{error:#}")),
        };
        if !outcome.succeeded() {
            match node {
                Some(node) => {
                    failures.push(format!("{node}: {outcome}"));
                    failed_nodes.push(node.clone());
                }
                None => failures.push(outcome.to_string()),
            }
        }
    }
    if failures.is_empty() {
        return None;
    }
    Some((
        format!("{}; see {}", failures.join("; "), archive.display()),
        failed_nodes,
    ))
}

/// Tells cuttle-api the nodes were prepared, which clears their strikes. Best effort: a
/// lost report only leaves old strikes standing a little longer.
async fn report_prepare_ok(api: &Api, job_id: i64) {
    let sent = api
        .runs
        .clone()
        .report_prepare(ReportPrepareRequest {
            job_id,
            ok: true,
            supervisor_pid: Some(api.pid),
            supervisor_host: Some(api.host.clone()),
            ..ReportPrepareRequest::default()
        })
        .await;
    if let Err(error) = sent {
        tracing::warn!(
            job_id,
            detail = error.message(),
            "cannot clear the nodes' strikes"
        );
    }
}

/// Reports a failed prepare, retrying transient failures until it lands. `Some(true)`
/// when cuttle-api put the job back in the queue (its nodes are freed), `Some(false)`
/// when it ended the job dead (the nodes are released as usual), `None` when the report
/// was refused.
async fn report_prepare(
    api: &Api,
    job_id: i64,
    reason: &str,
    failed_nodes: &[String],
) -> Option<bool> {
    let mut attempt = 0;
    loop {
        let sent = api
            .runs
            .clone()
            .report_prepare(ReportPrepareRequest {
                job_id,
                ok: false,
                reason: reason.to_owned(),
                failed_nodes: failed_nodes.to_vec(),
                supervisor_pid: Some(api.pid),
                supervisor_host: Some(api.host.clone()),
            })
            .await;
        match sent {
            Ok(answer) => {
                let answer = answer.into_inner();
                for node in &answer.marked_down {
                    tracing::warn!(job_id, node, "the node struck out and was marked down");
                }
                return Some(answer.requeued);
            }
            Err(error) if transient(error.code()) => {
                tracing::warn!(
                    job_id,
                    detail = error.message(),
                    attempt,
                    "cannot report the prepare yet; retrying"
                );
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                tracing::warn!(job_id, detail = error.message(), "prepare report refused");
                return None;
            }
        }
    }
}

/// Whether a failed call is worth repeating: the API or its database was unreachable,
/// slow or broken for a moment. A refusal (the job was killed or reaped meanwhile, bad
/// input) is final.
fn transient(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable | DeadlineExceeded | Internal | Unknown | Aborted | ResourceExhausted
    )
}

/// The wait before retry number `attempt` (from 0): doubling from 250 ms to 10 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(10))
}

/// Reports the final status, retrying with backoff until it lands: the heartbeat keeps
/// the job alive meanwhile, and a repeated report is answered as the first (the API
/// makes it idempotent). Only a refusal (the job was killed or reaped meanwhile) ends it.
async fn report(api: &Api, job_id: i64, status: JobStatus, reason: &str) -> Option<JobOnNodes> {
    let mut attempt = 0;
    loop {
        let sent = api
            .runs
            .clone()
            .update_job_status(UpdateJobStatusRequest {
                job_id,
                status: status_to_proto(status) as i32,
                reason: reason.to_owned(),
                supervisor_pid: Some(api.pid),
                supervisor_host: Some(api.host.clone()),
            })
            .await;
        match sent {
            Ok(job) => {
                tracing::info!(job_id, %status, reason, "job ended");
                // An answer this version cannot read is fetched again by the release.
                return read_job(&job.into_inner()).ok();
            }
            Err(error) if transient(error.code()) => {
                tracing::warn!(
                    job_id,
                    code = ?error.code(),
                    detail = error.message(),
                    attempt,
                    "cannot report the result yet; retrying"
                );
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                tracing::warn!(job_id, %status, detail = error.message(), "result not recorded");
                return None;
            }
        }
    }
}

/// Gives the job's nodes back: straight unlock after a pass; otherwise nuke each node
/// first (when the lab has a nuke command) and mark a node whose nuke fails down. `known`
/// is the job as cuttle-api just answered with it, if it did; else it is fetched.
async fn release(
    api: &Api,
    lab: &LabConfig,
    job_id: i64,
    archive: &Path,
    known: Option<JobOnNodes>,
) -> anyhow::Result<()> {
    let job = match known {
        Some(job) => job,
        None => api.job(job_id).await?,
    };
    if job.nodes.is_empty() {
        tracing::info!(job_id, "no nodes left to release");
        return Ok(());
    }
    // Only an ended job's nodes are released here. A job that runs again (requeued and
    // started elsewhere after our report was lost) has a new supervisor on these nodes.
    if !job.job.status.is_terminal() {
        tracing::warn!(
            job_id,
            status = %job.job.status,
            "the job has not ended (it is no longer ours); leaving its nodes alone"
        );
        return Ok(());
    }
    let status = job.job.status;
    let values = template_values(&job, archive);
    let timeout = Duration::from_secs(lab.command_timeout_s);
    let kill_grace = Duration::from_millis(lab.kill_grace_ms);
    let Some(nuke) = lab.nuke_command.as_ref().filter(|_| needs_nuke(status)) else {
        // Nothing to clean first: every node goes back in one call.
        let unlocked = api
            .nodes
            .clone()
            .unlock_nodes(UnlockNodesRequest {
                names: job.nodes.clone(),
                owner: job.job.owner.to_string(),
                job_id: Some(job_id),
            })
            .await;
        match unlocked {
            Ok(_) => tracing::info!(job_id, nodes = %job.nodes.join(","), "nodes released"),
            Err(error) => tracing::error!(
                job_id,
                nodes = %job.nodes.join(","),
                detail = error.message(),
                "cannot unlock the nodes"
            ),
        }
        return Ok(());
    };
    for node in &job.nodes {
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
                    job_id: Some(job_id),
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
        let unlocked = api
            .nodes
            .clone()
            .unlock_nodes(UnlockNodesRequest {
                names: vec![node.clone()],
                owner: job.job.owner.to_string(),
                job_id: Some(job_id),
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
    if !job.job.status.is_terminal() {
        anyhow::bail!(
            "job {job_id} is {}, not ended; --release only gives back the nodes of an ended job (kill it first with `cuttle kill RUN --job {job_id}`)",
            job.job.status
        );
    }
    // The nodes go back even when the archive cannot be written: a lost nuke log costs
    // less than a node stranded.
    let archive: PathBuf = match lab
        .job_archive(job.job.run_name.as_str(), job.job.id.0)
        .and_then(|archive| {
            std::fs::create_dir_all(&archive)
                .with_context(|| format!("cannot create the job archive {}", archive.display()))?;
            Ok(archive)
        }) {
        Ok(archive) => archive,
        Err(error) => {
            tracing::error!(job_id, error = %format!("{error:#}"), "releasing without an archive");
            PathBuf::from("/dev/null")
        }
    };
    tracing::info!(job_id, status = %job.job.status, nodes = %job.nodes.join(","), "releasing the nodes of an ended job");
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
    // And a prepare, log collection or nuke it was in the middle of.
    let command = archive.join(process::COMMAND_RECORD);
    if let Some(pid) =
        process::end_recorded_runner(&command, Duration::from_millis(lab.kill_grace_ms)).await
    {
        tracing::warn!(
            job_id,
            pid,
            "ended the lab command its lost supervisor left running"
        );
    }
    let beat_stop = CancellationToken::new();
    let _statuses = start_heartbeat(
        api.clone(),
        job_id,
        Duration::from_millis(lab.heartbeat_interval_ms),
        beat_stop.clone(),
    );
    let result = release(&api, &lab, job_id, &archive, Some(job)).await;
    beat_stop.cancel();
    result
}
