//! `cuttle-bench`: measures cuttle against real services on this machine, always beside a
//! baseline measured in the same run, and reports the ratio. Machines here are small and
//! shared, so rounds alternate between baseline and cuttle and medians are reported.
//!
//! `schedule`: jobs per second scheduled end to end through cuttle-api (gRPC, validation,
//! one database transaction per run, body rendering, beanstalkd puts, id recording),
//! against the raw rate of putting the same bodies on beanstalkd with beanstalkc over one
//! connection — the ceiling any scheduler built on beanstalkd can reach.

use std::time::{Duration, Instant};

use anyhow::Context;
use beanstalkc::Beanstalkc;
use clap::{Parser, Subcommand};
use tonic::transport::Channel;

use cuttle_api::{CancellationToken, Settings};
use cuttle_db::DatabaseTarget;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{AddNodeRequest, CreateRunRequest, JobSpec};
use cuttle_runtime::telemetry::LogFormat;
use cuttle_testkit::{Beanstalkd, SqliteFile};

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
    client: &mut RunServiceClient<Channel>,
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

async fn schedule(args: ScheduleArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.run_size > 0 && args.runs > 0 && args.rounds > 0,
        "--run-size, --runs and --rounds must be at least 1"
    );
    let beanstalkd = Beanstalkd::start();
    let data = SqliteFile::create();
    let db = match &args.db {
        Some(url) => DatabaseTarget::parse(url)?,
        None => DatabaseTarget::parse(&data.url())?,
    };
    let backend = db.backend().as_str();
    let settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        db,
        beanstalk: beanstalkd.addr().to_string(),
        data_dir: data.dir().to_owned(),
        log_format: LogFormat::Text,
        admin_token_file: data.dir().join("admin.token"),
        max_db_connections: 8,
        job_ttr: Duration::from_secs(300),
        enqueue_retry: Duration::from_secs(5),
        supervisor_grace: Duration::from_secs(60),
        reap_interval: Duration::from_secs(5),
    };
    let shutdown = CancellationToken::new();
    let api = cuttle_api::spawn(settings, shutdown.clone()).await?;
    let channel = Channel::from_shared(api.url())?.connect().await?;
    let mut nodes = NodeServiceClient::new(channel.clone());
    for i in 1..=2 {
        nodes
            .add_node(AddNodeRequest {
                name: format!("smithi{i:03}"),
                machine_type: "smithi".into(),
                ..Default::default()
            })
            .await
            .context("adding bench nodes")?;
    }
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
    shutdown.cancel();
    api.wait().await
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.bench {
            Bench::Schedule(args) => schedule(args, cli.json).await,
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
    fn median_takes_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
