//! `cuttle-bench`: measures cuttle against real services on this machine, always beside a
//! baseline measured in the same run, and reports the ratio. Machines here are small and
//! shared, so rounds alternate between baseline and cuttle and medians are reported.
//!
//! `schedule`: jobs per second scheduled end to end through cuttle-api (gRPC, validation,
//! one database transaction per run, body rendering, beanstalkd puts, id recording),
//! against the raw rate of putting the same bodies on beanstalkd with beanstalkc over one
//! connection — the ceiling any scheduler built on beanstalkd can reach.
//!
//! `dispatch`: zero-length jobs per second from put to terminal state, end to end through
//! the real daemons (cuttle-api, cuttle-dispatcher, one cuttle-supervisor and one local
//! runner process per job) and beanstalkd, against the raw put → reserve → delete rate of
//! the same bodies over one beanstalkc connection. Job timelines say where the time goes.

mod load;
mod suite;

use std::time::{Duration, Instant};

use anyhow::Context;
use beanstalkc::Beanstalkc;
use clap::{Parser, Subcommand};
use cuttle_proto::bearer::Authed;
use cuttle_proto::v1::admin_service_client::AdminServiceClient;

use cuttle_labkit::{Lab, LabBuilder};
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{CreateRunRequest, JobSpec};

/// Benchmarks of cuttle against a private beanstalkd and a real database, each reported
/// as a ratio to a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "cuttle-bench", version)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Scheduling throughput: CreateRun end to end vs raw beanstalkd puts.
    Schedule(ScheduleArgs),
    /// Dispatch throughput: zero-length jobs from put to terminal state through the real
    /// daemons vs raw beanstalkd put/reserve/delete. Needs cuttle-dispatcher,
    /// cuttle-supervisor and cuttle-local-runner built next to this binary
    /// (cargo build --release -p cuttle-bench -p cuttle-dispatcher -p cuttle-supervisor).
    Dispatch(DispatchArgs),
    /// Load: concurrent clients (each with its own developer token) scheduling, listing,
    /// locking and unlocking while a dispatcher runs the jobs; requests/s and p50/p99 per
    /// call beside WhoAmI, a trivial call, measured in the same run. Fails if any call
    /// errs. Needs the same binaries as `dispatch`.
    Load(load::LoadArgs),
    /// Suites: expansion of a 10,000-job suite (in process, as `cuttle suite --dry-run`,
    /// and teuthology-suite --dry-run on the same tree when its venv is found), and a
    /// 500-job suite expanded and queued through cuttle-api beside raw beanstalkd puts.
    Suite(suite::SuiteBenchArgs),
}

#[derive(Debug, clap::Args)]
struct DispatchArgs {
    /// Jobs per round, scheduled as one run.
    #[arg(long, default_value_t = 300)]
    jobs: usize,
    /// Simulated nodes (each job takes one; this bounds how many run at once).
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Rounds; baseline and cuttle alternate, and the median of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Database for cuttle-api: a postgres:// URL to an empty database, or omitted for a
    /// fresh SQLite file.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Also drain queues of these depths (comma-separated, such as 100,1000,10000) and
    /// report the cost per job at each: flat means the dispatcher does not slow down as
    /// the queue grows.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    depths: Vec<usize>,
    /// How long each job runs, in seconds (0: zero-length jobs, for throughput; 0.5 on a
    /// few nodes shows how fast a freed node gets its next job).
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    runtime: f64,
}

#[derive(Debug, clap::Args)]
struct ScheduleArgs {
    /// Jobs per run (teuthology-suite refuses more than 500 by default).
    #[arg(long, default_value_t = 500)]
    run_size: usize,
    /// Runs per round.
    #[arg(long, default_value_t = 4)]
    runs: usize,
    /// Rounds; baseline and cuttle alternate, and the median of each is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Database for cuttle-api: a postgres:// URL to an empty database, or omitted for a
    /// fresh SQLite file.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

/// A representative teuthology job config: roles, tasks and overrides of a typical size.
fn job_config() -> String {
    let mut yaml = String::from(
        "roles:\n- [mon.a, mgr.x, osd.0, osd.1, osd.2]\n- [mon.b, osd.3, osd.4, osd.5, client.0]\n\
         tasks:\n- install: null\n- ceph: null\n- workunit:\n    clients:\n      client.0: [rados/test.sh]\n\
         overrides:\n  ceph:\n    conf:\n      osd:\n        debug osd: 20\n    log-ignorelist:\n",
    );
    for i in 0..40 {
        yaml.push_str(&format!("    - \\(OSD_SLOW_PING_TIME_{i}\\)\n"));
    }
    yaml
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Puts `bodies` on a tube over one blocking connection; returns jobs per second.
fn baseline_round(port: u16, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut conn = Beanstalkc::new().host("127.0.0.1").port(port).connect()?;
    conn.use_tube("bench-baseline")?;
    let started = Instant::now();
    for body in bodies {
        conn.put(body, 1000, Duration::ZERO, Duration::from_secs(300))?;
    }
    Ok(bodies.len() as f64 / started.elapsed().as_secs_f64())
}

/// Schedules `runs` runs of `run_size` jobs through the API; returns jobs per second and
/// the median latency of one CreateRun.
async fn cuttle_round(
    client: &mut RunServiceClient<Authed>,
    round: usize,
    args: &ScheduleArgs,
    config: &str,
) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    for run in 0..args.runs {
        let request = CreateRunRequest {
            name: format!("bench-{round}-{run}"),
            owner: "bench".into(),
            jobs: vec![
                JobSpec {
                    machine_type: "smithi".into(),
                    config_yaml: config.to_owned(),
                    ..Default::default()
                };
                args.run_size
            ],
            ..Default::default()
        };
        let call = Instant::now();
        let created = client.create_run(request).await?.into_inner();
        latencies.push(call.elapsed().as_secs_f64());
        anyhow::ensure!(
            created.jobs.iter().all(|job| job.beanstalk_id.is_some()),
            "a job of run {} was not put on beanstalkd",
            created.run_name
        );
    }
    let jobs = (args.runs * args.run_size) as f64;
    Ok((jobs / started.elapsed().as_secs_f64(), median(latencies)))
}

/// beanstalkd, a database (SQLite in a temp dir unless `db` names one) and cuttle-api in
/// this process, with `nodes` nodes of machine type `smithi`: what both benchmarks run on.
struct BenchLab {
    kit: Lab,
    backend: &'static str,
    /// A channel whose calls carry the bootstrap admin token.
    channel: Authed,
    /// A service token for the dispatcher.
    service_token: String,
}

impl BenchLab {
    async fn start(db: Option<&str>, job_ttr: Duration, nodes: usize) -> anyhow::Result<BenchLab> {
        let kit = LabBuilder::new()
            .database_url(db)
            .nodes("smithi", nodes)
            .settings(move |settings| settings.job_ttr = job_ttr)
            .try_start()
            .await?;
        let backend = kit.settings.db.backend().as_str();
        let channel = kit.admin_channel().await;
        let service_token = kit.token_secret("bench-dispatcher", "service").await;
        Ok(BenchLab {
            kit,
            backend,
            channel,
            service_token,
        })
    }

    /// Starts the real cuttle-dispatcher (with its supervisors and the local runner, all
    /// found next to this binary) on the lab's tube, with a service token.
    fn start_dispatcher(&self) -> anyhow::Result<std::process::Child> {
        let bin_dir = cuttle_runtime::lab::bin_dir();
        for binary in [
            "cuttle-dispatcher",
            "cuttle-supervisor",
            "cuttle-local-runner",
        ] {
            anyhow::ensure!(
                bin_dir.join(binary).exists(),
                "{} is missing; build it next to cuttle-bench: cargo build --release -p cuttle-bench -p cuttle-dispatcher -p cuttle-supervisor",
                bin_dir.join(binary).display()
            );
        }
        let config = self.kit.data_dir().join("dispatcher.toml");
        std::fs::write(
            &config,
            format!(
                "[lab]\narchive_dir = {:?}\nrunner_command = {:?}\n",
                self.kit.data_dir().join("archive"),
                cuttle_runtime::lab::LOCAL_RUNNER
            ),
        )?;
        let log = std::fs::File::create(self.kit.data_dir().join("dispatcher.log"))?;
        std::process::Command::new(bin_dir.join("cuttle-dispatcher"))
            .args(["--machine-type", "smithi", "--api", &self.kit.url()])
            .arg("--beanstalk")
            .arg(self.kit.beanstalkd.addr().to_string())
            .arg("--config")
            .arg(&config)
            .env("CUTTLE_LOG", "warn")
            .env("CUTTLE_TOKEN", &self.service_token)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start cuttle-dispatcher")
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.kit.stop().await
    }
}

async fn schedule(args: ScheduleArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.run_size > 0 && args.runs > 0 && args.rounds > 0,
        "--run-size, --runs and --rounds must be at least 1"
    );
    let lab = BenchLab::start(args.db.as_deref(), Duration::from_secs(300), 2).await?;
    let (beanstalkd, backend) = (&lab.kit.beanstalkd, lab.backend);
    let channel = lab.channel.clone();
    let mut runs = RunServiceClient::new(channel)
        .max_encoding_message_size(cuttle_api::MAX_REQUEST_BYTES)
        .max_decoding_message_size(usize::MAX);
    let config = job_config();

    // The baseline puts bodies exactly as cuttle renders them: take them from a warm-up run.
    let warm_up = runs
        .create_run(CreateRunRequest {
            name: "bench-warm-up".into(),
            owner: "bench".into(),
            jobs: vec![
                JobSpec {
                    machine_type: "smithi".into(),
                    config_yaml: config.clone(),
                    ..Default::default()
                };
                args.run_size
            ],
            ..Default::default()
        })
        .await?
        .into_inner();
    let body_bytes = warm_up.jobs[0].config_yaml.len();
    let bodies: Vec<Vec<u8>> = std::iter::repeat_with(|| {
        warm_up
            .jobs
            .iter()
            .map(|job| job.config_yaml.clone().into_bytes())
    })
    .flatten()
    .take(args.runs * args.run_size)
    .collect();

    let port = beanstalkd.port();
    let (mut baseline, mut cuttle, mut latency) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let round_bodies = bodies.clone();
        baseline
            .push(tokio::task::spawn_blocking(move || baseline_round(port, &round_bodies)).await??);
        let (rate, run_latency) = cuttle_round(&mut runs, round, &args, &config).await?;
        cuttle.push(rate);
        latency.push(run_latency);
    }
    let (baseline, cuttle, latency) = (median(baseline), median(cuttle), median(latency));
    let ratio = cuttle / baseline;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "schedule",
                "database": backend,
                "jobs_per_round": args.runs * args.run_size,
                "run_size": args.run_size,
                "rounds": args.rounds,
                "body_bytes": body_bytes,
                "baseline_jobs_per_s": baseline,
                "cuttle_jobs_per_s": cuttle,
                "ratio": ratio,
                "create_run_latency_s": latency,
            })
        );
    } else {
        println!(
            "schedule: {} rounds of {} runs x {} jobs, bodies of {body_bytes} bytes, database {backend}",
            args.rounds, args.runs, args.run_size
        );
        println!("  baseline  beanstalkc put, 1 connection      {baseline:>10.0} jobs/s");
        println!("  cuttle    CreateRun end to end (gRPC..put)  {cuttle:>10.0} jobs/s");
        println!("  ratio     cuttle / baseline                  {ratio:>10.3}");
        println!(
            "  latency   one {}-job CreateRun (median)     {:>10.1} ms",
            args.run_size,
            latency * 1000.0
        );
    }
    lab.stop().await
}

/// Puts, reserves and deletes each body serially over one connection: the ceiling of any
/// dispatcher built on beanstalkd. Returns jobs per second.
fn dispatch_baseline_round(port: u16, bodies: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut conn = Beanstalkc::new().host("127.0.0.1").port(port).connect()?;
    conn.use_tube("bench-dispatch-baseline")?;
    conn.watch("bench-dispatch-baseline")?;
    conn.ignore("default")?;
    let started = Instant::now();
    for body in bodies {
        conn.put(body, 1000, Duration::ZERO, Duration::from_secs(300))?;
        let id = conn.reserve()?.id();
        conn.delete(id)?;
    }
    Ok(bodies.len() as f64 / started.elapsed().as_secs_f64())
}

/// The `p`-th percentile (0–100) of `values`, nearest rank; 0 when empty.
fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Node freed → next job started on it: for each node, the time from an unlock to the
/// lock right after it, over the lock history's entries (any order), in milliseconds.
fn node_gaps(events: &[cuttle_proto::v1::LockEvent]) -> Vec<f64> {
    let mut by_node: std::collections::BTreeMap<&str, Vec<&cuttle_proto::v1::LockEvent>> =
        std::collections::BTreeMap::new();
    for event in events {
        by_node.entry(event.node.as_str()).or_default().push(event);
    }
    let mut gaps = Vec::new();
    for events in by_node.values_mut() {
        events.sort_by_key(|event| event.id);
        for pair in events.windows(2) {
            if pair[0].action == "unlock" && pair[1].action == "lock" {
                gaps.push((pair[1].at_ms - pair[0].at_ms) as f64);
            }
        }
    }
    gaps
}

/// Where one round's time went, as medians over its jobs, in milliseconds.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    /// Scheduled → reserved and claimed by the dispatcher (queueing behind other jobs).
    queued_ms: f64,
    /// Claimed → recorded as running (node lock, supervisor spawn, record).
    dispatch_ms: f64,
    /// Running → ended (supervisor start, runner process, result report).
    run_ms: f64,
    /// A node freed → the next job locking it, while the round's jobs waited: p50, p99.
    node_gap_p50_ms: f64,
    node_gap_p99_ms: f64,
}

fn phases(details: &[cuttle_proto::v1::JobDetail]) -> Phases {
    use cuttle_proto::v1::JobStatus as S;
    let mut queued = Vec::new();
    let mut dispatch = Vec::new();
    let mut run = Vec::new();
    for detail in details {
        let at = |status: S| {
            detail
                .events
                .iter()
                .find(|event| event.to == status as i32)
                .map(|event| event.at_ms as f64)
        };
        let ended = detail
            .events
            .iter()
            .rev()
            .find(|event| event.to >= S::Pass as i32)
            .map(|event| event.at_ms as f64);
        if let (Some(q), Some(w), Some(r), Some(e)) =
            (at(S::Queued), at(S::Waiting), at(S::Running), ended)
        {
            queued.push(w - q);
            dispatch.push(r - w);
            run.push(e - r);
        }
    }
    if queued.is_empty() {
        return Phases::default();
    }
    Phases {
        queued_ms: median(queued),
        dispatch_ms: median(dispatch),
        run_ms: median(run),
        ..Phases::default()
    }
}

/// One cuttle round: schedules `jobs` zero-length jobs and waits until all have ended.
/// Returns jobs per second from the CreateRun call to the last terminal state.
async fn dispatch_round(
    runs: &mut RunServiceClient<Authed>,
    admin: &mut AdminServiceClient<Authed>,
    round: usize,
    jobs: usize,
    runtime: f64,
) -> anyhow::Result<(f64, Phases)> {
    let name = format!("dispatch-{round}");
    let started = Instant::now();
    let history_before = admin
        .lock_history(cuttle_proto::v1::LockHistoryRequest {
            node: String::new(),
            limit: 1,
        })
        .await?
        .into_inner()
        .events
        .last()
        .map_or(0, |event| event.id);
    runs.create_run(CreateRunRequest {
        name: name.clone(),
        owner: "bench".into(),
        jobs: vec![
            JobSpec {
                machine_type: "smithi".into(),
                config_yaml: format!("runtime: {runtime}\nstatus: pass\n"),
                ..Default::default()
            };
            jobs
        ],
        ..Default::default()
    })
    .await?;
    let deadline = started + Duration::from_secs(600);
    // Polled through the run's summary (counts by status, one grouped query), not GetRun:
    // listing thousands of jobs, with their start estimates, every few milliseconds would
    // cost cuttle-api more than dispatching them, and grow with the queue.
    loop {
        let newest = runs
            .list_runs(cuttle_proto::v1::ListRunsRequest {
                owner: Some("bench".into()),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_inner()
            .runs
            .into_iter()
            .find(|run| run.name == name);
        let ended: u32 = newest.map_or(0, |run| {
            ["pass", "fail", "dead", "killed"]
                .iter()
                .filter_map(|status| run.job_counts.get(*status))
                .sum()
        });
        if ended as usize == jobs {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ended} of {jobs} jobs ended within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let detail = runs
        .get_run(cuttle_proto::v1::GetRunRequest { name: name.clone() })
        .await?
        .into_inner();
    let failed: Vec<i64> = detail
        .jobs
        .iter()
        .filter(|job| job.status != cuttle_proto::v1::JobStatus::Pass as i32)
        .map(|job| job.id)
        .collect();
    anyhow::ensure!(failed.is_empty(), "jobs did not pass: {failed:?}");
    let mut details = Vec::with_capacity(jobs);
    for job in &detail.jobs {
        details.push(
            runs.get_job(cuttle_proto::v1::GetJobRequest { job_id: job.id })
                .await?
                .into_inner(),
        );
    }
    // Every lock and unlock of the round (each job locks and unlocks its node once).
    let history = admin
        .lock_history(cuttle_proto::v1::LockHistoryRequest {
            node: String::new(),
            limit: u32::try_from(jobs * 2 + 100)
                .unwrap_or(100_000)
                .min(100_000),
        })
        .await?
        .into_inner()
        .events;
    let round_events: Vec<_> = history
        .into_iter()
        .filter(|event| event.id > history_before)
        .collect();
    let gaps = node_gaps(&round_events);
    Ok((
        jobs as f64 / elapsed.as_secs_f64(),
        Phases {
            node_gap_p50_ms: percentile(gaps.clone(), 50.0),
            node_gap_p99_ms: percentile(gaps, 99.0),
            ..phases(&details)
        },
    ))
}

async fn dispatch(args: DispatchArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.jobs > 0 && args.nodes > 0 && args.rounds > 0,
        "--jobs, --nodes and --rounds must be at least 1"
    );
    let lab = BenchLab::start(args.db.as_deref(), Duration::from_secs(60), args.nodes).await?;
    let mut dispatcher = lab.start_dispatcher()?;
    let (beanstalkd, backend) = (&lab.kit.beanstalkd, lab.backend);
    let channel = lab.channel.clone();
    let mut runs = RunServiceClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
    let mut admin = AdminServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    // One warm-up job: the dispatcher takes its lease, the binaries are in the page cache.
    dispatch_round(&mut runs, &mut admin, 0, 1, 0.0).await?;

    let body = b"job_id: '1'\nruntime: 0\nstatus: pass\nmachine_type: smithi\n".to_vec();
    let bodies = vec![body; args.jobs];
    let port = beanstalkd.port();
    let (mut baseline, mut cuttle, mut all_phases) = (Vec::new(), Vec::new(), Vec::new());
    let mut depth_rates: Vec<(usize, f64)> = Vec::new();
    let result: anyhow::Result<()> = async {
        for round in 1..=args.rounds {
            let round_bodies = bodies.clone();
            baseline.push(
                tokio::task::spawn_blocking(move || dispatch_baseline_round(port, &round_bodies))
                    .await??,
            );
            let (rate, phases) =
                dispatch_round(&mut runs, &mut admin, round, args.jobs, args.runtime).await?;
            cuttle.push(rate);
            all_phases.push(phases);
        }
        for (i, &depth) in args.depths.iter().enumerate() {
            let (rate, _) =
                dispatch_round(&mut runs, &mut admin, args.rounds + 1 + i, depth, 0.0).await?;
            depth_rates.push((depth, rate));
        }
        Ok(())
    }
    .await;
    let _ = dispatcher.kill();
    let _ = dispatcher.wait();
    result?;
    let (baseline, cuttle) = (median(baseline), median(cuttle));
    let phases = Phases {
        queued_ms: median(all_phases.iter().map(|p| p.queued_ms).collect()),
        dispatch_ms: median(all_phases.iter().map(|p| p.dispatch_ms).collect()),
        run_ms: median(all_phases.iter().map(|p| p.run_ms).collect()),
        node_gap_p50_ms: median(all_phases.iter().map(|p| p.node_gap_p50_ms).collect()),
        node_gap_p99_ms: median(all_phases.iter().map(|p| p.node_gap_p99_ms).collect()),
    };
    let ratio = cuttle / baseline;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "dispatch",
                "database": backend,
                "jobs_per_round": args.jobs,
                "job_runtime_s": args.runtime,
                "nodes": args.nodes,
                "rounds": args.rounds,
                "baseline_jobs_per_s": baseline,
                "cuttle_jobs_per_s": cuttle,
                "ratio": ratio,
                "median_queued_ms": phases.queued_ms,
                "median_dispatch_ms": phases.dispatch_ms,
                "median_run_ms": phases.run_ms,
                "node_freed_to_next_start_p50_ms": phases.node_gap_p50_ms,
                "node_freed_to_next_start_p99_ms": phases.node_gap_p99_ms,
                "depths": depth_rates
                    .iter()
                    .map(|(depth, rate)| serde_json::json!({
                        "waiting_jobs": depth,
                        "jobs_per_s": rate,
                        "ms_per_job": 1000.0 / rate,
                    }))
                    .collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "dispatch: {} rounds of {} jobs of {} s on {} nodes, database {backend}",
            args.rounds, args.jobs, args.runtime, args.nodes
        );
        println!("  baseline  beanstalkc put+reserve+delete, 1 conn  {baseline:>10.0} jobs/s");
        println!("  cuttle    put → terminal through the daemons     {cuttle:>10.1} jobs/s");
        println!("  ratio     cuttle / baseline                       {ratio:>10.4}");
        println!("  where one job's time goes (medians):");
        println!(
            "    queued → claimed by the dispatcher              {:>8.1} ms",
            phases.queued_ms
        );
        println!(
            "    claimed → running (lock, spawn, record)         {:>8.1} ms",
            phases.dispatch_ms
        );
        println!(
            "    running → ended (supervisor, runner, report)    {:>8.1} ms",
            phases.run_ms
        );
        println!(
            "  a node freed → the next job on it (medians of rounds): p50 {:.1} ms, p99 {:.1} ms",
            phases.node_gap_p50_ms, phases.node_gap_p99_ms
        );
        for (depth, rate) in &depth_rates {
            println!(
                "  draining {depth:>6} waiting jobs: {rate:>8.1} jobs/s, {:>6.2} ms per job",
                1000.0 / rate
            );
        }
    }
    lab.stop().await
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.bench {
            Bench::Schedule(args) => schedule(args, cli.json).await,
            Bench::Dispatch(args) => dispatch(args, cli.json).await,
            Bench::Load(args) => load::run(args, cli.json).await,
            Bench::Suite(args) => suite::run(args, cli.json).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_gaps_pair_each_unlock_with_the_next_lock_of_its_node() {
        let event = |id: i64, node: &str, action: &str, at_ms: i64| cuttle_proto::v1::LockEvent {
            id,
            node: node.into(),
            action: action.into(),
            at_ms,
            ..Default::default()
        };
        let events = [
            event(1, "a", "lock", 0),
            event(2, "b", "lock", 1),
            event(3, "a", "unlock", 10),
            event(5, "a", "lock", 14),
            event(4, "b", "unlock", 12),
            event(6, "b", "lock", 20),
            event(7, "a", "unlock", 30),
        ];
        let mut gaps = node_gaps(&events);
        gaps.sort_by(f64::total_cmp);
        assert_eq!(gaps, [4.0, 8.0]);
        assert_eq!(percentile(vec![3.0, 1.0, 2.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(vec![3.0, 1.0, 2.0, 4.0], 99.0), 4.0);
        assert_eq!(percentile(Vec::new(), 99.0), 0.0);
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
