//! `cuttle-bench suite`: suite expansion and suite scheduling, each beside a baseline
//! measured in the same run.
//!
//! 1. Expansion of a generated Ceph-shaped suite of `--matrix` jobs (four `%` facets,
//!    a `+` cluster and a `$` distro choice, real-looking fragments): cuttle-suite in
//!    this process, and `cuttle suite --dry-run --json` and teuthology-suite 1.3.0's
//!    `--dry-run` as processes on the same tree (wall time and peak memory from
//!    /usr/bin/time). teuthology runs when its venv is found.
//! 2. Expand-and-queue of a `--queue-jobs` suite through cuttle-api's ScheduleSuite into
//!    beanstalkd, beside raw beanstalkd puts of the same job bodies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use cuttle_proto::v1::SuiteArgs;
use cuttle_proto::v1::suite_service_client::SuiteServiceClient;
use cuttle_suite::plan::{Pins, Stamp, request};
use cuttle_suite::{Disk, Expansion};

use cuttle_testkit::teuthology::{OfflineTeuthology, find_venv};

use crate::{BenchLab, baseline_round, median};

#[derive(Debug, clap::Args)]
pub struct SuiteBenchArgs {
    /// Jobs in the suite whose expansion is timed (a product of four facets; rounded to
    /// a product of four whole numbers).
    #[arg(long, default_value_t = 10_000)]
    matrix: u64,
    /// Jobs in the suite that is expanded and queued end to end.
    #[arg(long, default_value_t = 500)]
    queue_jobs: u64,
    /// Rounds of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The venv holding teuthology 1.3.0 (skipped when absent).
    #[arg(long, value_name = "DIR")]
    teuthology_venv: Option<PathBuf>,
    /// Database for cuttle-api: a postgres:// URL to an empty database, or omitted for a
    /// fresh SQLite file.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

/// Four facet sizes whose product is `jobs` (or the nearest below it).
fn facet_sizes(jobs: u64) -> [u64; 4] {
    let side = (jobs as f64).powf(0.25).floor().max(1.0) as u64;
    let mut sizes = [side; 4];
    // Grow the facets one by one while the product stays within `jobs`.
    let mut i = 0;
    while sizes.iter().product::<u64>() * (sizes[i] + 1) / sizes[i] <= jobs {
        sizes[i] += 1;
        i = (i + 1) % 4;
    }
    sizes
}

/// Writes a Ceph-shaped suite `bench` with the given facet sizes under `root/qa/suites`.
fn write_suite(root: &Path, sizes: [u64; 4]) -> anyhow::Result<()> {
    let suite = root.join("qa/suites/bench");
    let write = |path: PathBuf, text: String| -> anyhow::Result<()> {
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(suite.join("%"), String::new())?;
    let names = ["objectstore", "msgr-failures", "thrashers", "workloads"];
    for (facet, size) in names.iter().zip(sizes) {
        for i in 0..size {
            write(
                suite.join(facet).join(format!("{facet}-{i}.yaml")),
                format!(
                    "overrides:\n  ceph:\n    conf:\n      osd:\n        {facet} option {i}: {i}\n    log-ignorelist:\n    - \\({facet}_{i}\\)\ntasks:\n- exec:\n    client.0:\n    - echo {facet} {i}\n"
                ),
            )?;
        }
    }
    write(suite.join("clusters/+"), String::new())?;
    write(
        suite.join("clusters/fixed-2.yaml"),
        "roles:\n- [mon.a, mgr.x, osd.0, osd.1, osd.2, client.0]\n- [mon.b, osd.3, osd.4, osd.5, client.1]\n".into(),
    )?;
    write(
        suite.join("clusters/openstack.yaml"),
        "openstack:\n- volumes: {count: 3, size: 30}\n".into(),
    )?;
    write(suite.join("distro/$"), String::new())?;
    for (name, os, version) in [
        ("centos", "centos", "9.stream"),
        ("ubuntu", "ubuntu", "22.04"),
        ("rhel", "rhel", "9.3"),
    ] {
        write(
            suite.join("distro").join(format!("{name}.yaml")),
            format!("os_type: {os}\nos_version: \"{version}\"\n"),
        )?;
    }
    write(
        suite.join("tasks.yaml"),
        "tasks:\n- install: null\n- ceph: null\n".into(),
    )?;
    Ok(())
}

/// Expands the suite in this process; returns (seconds, jobs).
fn expand_here(root: &Path) -> anyhow::Result<(f64, u64)> {
    let args = cuttle_core::suite::RawSuiteArgs {
        suite: "bench".into(),
        machine_type: "smithi".into(),
        kernel: "none".into(),
        seed: Some(7),
        ..Default::default()
    }
    .validate()?;
    let stamp = Stamp {
        run_name: "bench".into(),
        owner: "bench".into(),
        timestamp: "2026-11-29_00:00:00".into(),
        seed: 7,
        machine_type: "smithi".into(),
    };
    let started = Instant::now();
    let expansion = Expansion::plan(
        &Disk,
        request(&args, root.to_owned(), &Pins::default(), &stamp),
    )?;
    let mut jobs = 0;
    for job in expansion {
        std::hint::black_box(job?);
        jobs += 1;
    }
    Ok((started.elapsed().as_secs_f64(), jobs))
}

/// Runs a command under /usr/bin/time; returns (seconds, peak MiB) and checks it worked.
fn timed(command: Command, what: &str) -> anyhow::Result<(f64, f64)> {
    let report = tempfile_path(what);
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%e %M", "-o"])
        .arg(&report)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            timed.env(key, value);
        }
    }
    let output = timed
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {what} under /usr/bin/time (apt-get install time)"))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&report)?;
    let _ = std::fs::remove_file(&report);
    let mut fields = text.split_whitespace();
    let seconds: f64 = fields.next().context("no time")?.parse()?;
    let kib: f64 = fields.next().context("no memory")?.parse()?;
    Ok((seconds, kib / 1024.0))
}

fn tempfile_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "cuttle-bench-{}-{}.time",
        what.replace(' ', "-"),
        std::process::id()
    ))
}

pub async fn run(args: SuiteBenchArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rounds > 0 && args.matrix > 0 && args.queue_jobs > 0,
        "--rounds, --matrix and --queue-jobs must be at least 1"
    );
    let scratch = tempfile::tempdir()?;
    let big = scratch.path().join("big");
    let sizes = facet_sizes(args.matrix);
    write_suite(&big, sizes)?;
    let matrix: u64 = sizes.iter().product();

    // 1. Expansion.
    let mut here = Vec::new();
    for _ in 0..args.rounds {
        let (seconds, jobs) = expand_here(&big)?;
        anyhow::ensure!(jobs == matrix, "expanded {jobs} jobs, expected {matrix}");
        here.push(seconds);
    }
    let cuttle_bin = cuttle_runtime::lab::bin_dir().join("cuttle");
    let mut cli = Vec::new();
    if cuttle_bin.exists() {
        for _ in 0..args.rounds {
            let mut command = Command::new(&cuttle_bin);
            command
                .args([
                    "--json",
                    "suite",
                    "--dry-run",
                    "-s",
                    "bench",
                    "--seed",
                    "7",
                    "-m",
                    "smithi",
                    "-k",
                    "none",
                    "--suite-dir",
                ])
                .arg(&big);
            cli.push(timed(command, "cuttle suite")?);
        }
    }
    let mut teuthology = Vec::new();
    if let Some(venv) = find_venv(args.teuthology_venv.clone()) {
        let offline = OfflineTeuthology::new(venv);
        for _ in 0..args.rounds {
            teuthology.push(timed(
                offline.suite_dry_run(&big, "bench", 7),
                "teuthology-suite",
            )?);
        }
    }

    // 2. Expand and queue through cuttle-api, beside raw puts of the same bodies.
    let small = scratch.path().join("small");
    let small_sizes = facet_sizes(args.queue_jobs);
    write_suite(&small, small_sizes)?;
    let queue_jobs: u64 = small_sizes.iter().product();
    let lab = BenchLab::start(args.db.as_deref(), Duration::from_secs(300), 2).await?;
    let mut suites =
        SuiteServiceClient::new(lab.channel.clone()).max_decoding_message_size(usize::MAX);
    let port = lab.kit.beanstalkd.port();
    let (mut queued, mut baseline) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let started = Instant::now();
        let answer = suites
            .schedule_suite(SuiteArgs {
                suite: "bench".into(),
                suite_dir: small.to_string_lossy().into_owned(),
                machine_type: "smithi".into(),
                seed: Some(7),
                owner: "bench".into(),
                run_name: format!("bench-suite-{round}"),
                kernel: "none".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            answer.queued.len() as u64 == queue_jobs,
            "queued {} of {queue_jobs}",
            answer.queued.len()
        );
        anyhow::ensure!(
            answer.queued.iter().all(|j| j.beanstalk_id.is_some()),
            "a job was not put on beanstalkd"
        );
        queued.push(seconds);
        let bodies: Vec<Vec<u8>> = answer
            .queued
            .iter()
            .map(|j| j.config_yaml.clone().into_bytes())
            .collect();
        let rate = tokio::task::spawn_blocking(move || baseline_round(port, &bodies)).await??;
        baseline.push(queue_jobs as f64 / rate);
    }
    let backend = lab.backend;
    lab.stop().await?;

    let here = median(here);
    let cli_time = (!cli.is_empty()).then(|| median(cli.iter().map(|c| c.0).collect()));
    let cli_mib = (!cli.is_empty()).then(|| median(cli.iter().map(|c| c.1).collect()));
    let teuthology_time =
        (!teuthology.is_empty()).then(|| median(teuthology.iter().map(|c| c.0).collect()));
    let teuthology_mib =
        (!teuthology.is_empty()).then(|| median(teuthology.iter().map(|c| c.1).collect()));
    let (queued, baseline) = (median(queued), median(baseline));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "suite",
                "database": backend,
                "matrix_jobs": matrix,
                "expand_in_process_s": here,
                "cuttle_cli_s": cli_time,
                "cuttle_cli_peak_mib": cli_mib,
                "teuthology_s": teuthology_time,
                "teuthology_peak_mib": teuthology_mib,
                "speedup_vs_teuthology": teuthology_time.map(|t| t / here),
                "cli_speedup_vs_teuthology": teuthology_time.zip(cli_time).map(|(t, c)| t / c),
                "queue_jobs": queue_jobs,
                "expand_and_queue_s": queued,
                "raw_puts_s": baseline,
                "queue_vs_raw_puts": queued / baseline,
            })
        );
    } else {
        println!(
            "suite expansion of {matrix} jobs (facets {sizes:?}, median of {} rounds):",
            args.rounds
        );
        println!("  cuttle-suite in process:          {:>8.3} s", here);
        if let (Some(t), Some(m)) = (cli_time, cli_mib) {
            println!("  cuttle suite --dry-run --json:    {t:>8.3} s  {m:>7.1} MiB peak");
        }
        match (teuthology_time, teuthology_mib) {
            (Some(t), Some(m)) => {
                println!(
                    "  teuthology-suite --dry-run:       {t:>8.3} s  {m:>7.1} MiB peak (baseline)"
                );
                println!(
                    "  cuttle is {:.0}x faster in process{}",
                    t / here,
                    cli_time
                        .map(|c| format!(", {:.0}x as a command", t / c))
                        .unwrap_or_default()
                );
            }
            _ => println!(
                "  teuthology-suite: no venv with teuthology found; pass --teuthology-venv"
            ),
        }
        println!("suite of {queue_jobs} jobs expanded and queued through cuttle-api ({backend}):");
        println!("  ScheduleSuite end to end:         {queued:>8.3} s");
        println!("  raw beanstalkd puts of the bodies:{baseline:>8.3} s (baseline)");
        println!("  ratio: {:.1}x the raw puts", queued / baseline);
    }
    Ok(())
}
