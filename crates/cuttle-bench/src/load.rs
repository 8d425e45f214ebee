//! `cuttle-bench load`: many clients at once against cuttle-api while a real dispatcher
//! runs the jobs they schedule. Each client has its own developer token (so every call
//! goes through authentication and the rule table) and loops over a mix of calls until
//! the time is up: schedule a one-job run, list runs, list the queue, lock a node by hand
//! and unlock it. Beside them, WhoAmI (authenticated, no database) is timed the same way
//! as the baseline: the cost of a gRPC round trip on this machine in the same run.
//!
//! Errors are counted, and any error fails the benchmark. A lock that finds no free node
//! (RESOURCE_EXHAUSTED: the dispatcher's jobs hold them) is an answer, not an error, and
//! is counted apart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use cuttle_proto::bearer::Bearer;
use cuttle_proto::v1;
use cuttle_proto::v1::admin_service_client::AdminServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;

use crate::BenchLab;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Concurrent clients, each with its own token and connection.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long the load runs, in seconds (bounded: at most 600).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Simulated nodes the dispatcher runs the scheduled jobs on.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Database for cuttle-api: a postgres:// URL to an empty database, or omitted for a
    /// fresh SQLite file.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

/// The calls a client makes, in turn.
const MIX: [&str; 6] = [
    "WhoAmI (baseline)",
    "CreateRun (1 job)",
    "ListRuns",
    "ListQueue",
    "LockNodes (by hand)",
    "UnlockNodes",
];

/// What one client saw: latencies per call, errors, and locks that found no free node.
#[derive(Debug, Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: Vec<String>,
    busy: usize,
}

async fn client(
    lab_url: String,
    token: String,
    index: usize,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let channel = tonic::transport::Endpoint::from_shared(lab_url)?
        .connect()
        .await?;
    let bearer = Bearer::new(Some(&token)).context("the client's token")?;
    let authed = InterceptedService::new(channel, bearer);
    let mut runs = RunServiceClient::new(authed.clone());
    let mut nodes = NodeServiceClient::new(authed.clone());
    let mut queue = QueueServiceClient::new(authed.clone());
    let mut admin = AdminServiceClient::new(authed);
    let mut tally = Tally::default();
    let mut round = 0usize;
    while Instant::now() < deadline {
        round += 1;
        for call in MIX {
            let started = Instant::now();
            let result: Result<(), tonic::Status> = match call {
                "WhoAmI (baseline)" => admin.who_am_i(v1::WhoAmIRequest {}).await.map(drop),
                "CreateRun (1 job)" => runs
                    .create_run(v1::CreateRunRequest {
                        name: format!("load-{index}-{round}"),
                        owner: format!("client{index}"),
                        jobs: vec![v1::JobSpec {
                            machine_type: "smithi".into(),
                            config_yaml: "runtime: 0\nstatus: pass\n".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListRuns" => runs
                    .list_runs(v1::ListRunsRequest {
                        limit: 50,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                "ListQueue" => queue
                    .list_queue(v1::ListQueueRequest {
                        machine_type: "smithi".into(),
                        limit: 50,
                    })
                    .await
                    .map(drop),
                "LockNodes (by hand)" => match nodes
                    .lock_nodes(v1::LockNodesRequest {
                        machine_type: "smithi".into(),
                        count: 1,
                        ..Default::default()
                    })
                    .await
                {
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        tally.busy += 1;
                        Ok(())
                    }
                    other => other.map(drop),
                },
                // Unlocks what this client locked by hand (nothing, after a busy lock);
                // the nodes its jobs hold are theirs, bound to them until they end.
                _ => {
                    let held = nodes
                        .list_nodes(v1::ListNodesRequest {
                            locked_by: Some(format!("client{index}")),
                            ..Default::default()
                        })
                        .await
                        .map(|answer| {
                            let mut held = answer.into_inner().nodes;
                            held.retain(|node| node.locked_job_id.is_none());
                            held
                        });
                    match held {
                        Ok(held) if held.is_empty() => Ok(()),
                        Ok(held) => nodes
                            .unlock_nodes(v1::UnlockNodesRequest {
                                names: held.into_iter().map(|node| node.name).collect(),
                                ..Default::default()
                            })
                            .await
                            .map(drop),
                        Err(status) => Err(status),
                    }
                }
            };
            let took = started.elapsed();
            match result {
                Ok(()) => tally.latencies.entry(call).or_default().push(took),
                Err(status) => {
                    tally
                        .errors
                        .push(format!("{call}: {:?} {}", status.code(), status.message()))
                }
            }
        }
    }
    Ok(tally)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank].as_secs_f64() * 1000.0
}

pub async fn run(args: LoadArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0 && args.nodes > 0 && (1..=600).contains(&args.seconds),
        "--clients and --nodes must be at least 1, --seconds 1 to 600"
    );
    let lab = BenchLab::start(args.db.as_deref(), Duration::from_secs(60), args.nodes).await?;
    let mut dispatcher = lab.start_dispatcher()?;
    let mut admin = AdminServiceClient::new(lab.channel.clone());
    let mut tokens = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let created = admin
            .create_token(v1::CreateTokenRequest {
                user: format!("client{index}"),
                role: "developer".into(),
            })
            .await
            .context("creating a client token")?
            .into_inner();
        tokens.push(created.secret);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| tokio::spawn(client(lab.kit.url(), token, index, deadline)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await.context("a client task panicked")??;
        for (call, mut latencies) in tally.latencies {
            all.latencies
                .entry(call)
                .or_default()
                .append(&mut latencies);
        }
        all.errors.extend(tally.errors);
        all.busy += tally.busy;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = dispatcher.kill();
    let _ = dispatcher.wait();
    let backend = lab.backend;
    lab.stop().await?;

    let mut rows = Vec::new();
    for call in MIX {
        let mut latencies = all.latencies.remove(call).unwrap_or_default();
        latencies.sort();
        rows.push((
            call,
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        ));
    }
    let baseline_p50 = rows[0].2.max(f64::EPSILON);
    if json {
        let calls: Vec<serde_json::Value> = rows
            .iter()
            .map(|(call, rate, p50, p99)| {
                serde_json::json!({
                    "call": call, "requests_per_s": rate, "p50_ms": p50, "p99_ms": p99,
                    "p50_vs_baseline": p50 / baseline_p50,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "bench": "load", "database": backend, "clients": args.clients,
                "seconds": elapsed, "errors": all.errors.len(), "busy_locks": all.busy,
                "calls": calls,
            })
        );
    } else {
        println!(
            "load: {} clients for {elapsed:.1} s against cuttle-api ({backend}) with a dispatcher running the jobs",
            args.clients
        );
        println!(
            "  {:<22} {:>10} {:>9} {:>9} {:>14}",
            "call", "req/s", "p50 ms", "p99 ms", "p50/baseline"
        );
        for (call, rate, p50, p99) in &rows {
            println!(
                "  {call:<22} {rate:>10.1} {p50:>9.2} {p99:>9.2} {:>14.1}",
                p50 / baseline_p50
            );
        }
        let total: f64 = rows.iter().map(|(_, rate, _, _)| rate).sum();
        println!("  all calls together    {total:>10.1} req/s");
        println!(
            "  errors: {}; locks that found no free node: {}",
            all.errors.len(),
            all.busy
        );
    }
    if let Some(first) = all.errors.first() {
        anyhow::bail!("{} calls failed; the first: {first}", all.errors.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), 51.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
