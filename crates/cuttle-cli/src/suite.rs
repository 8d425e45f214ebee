//! `cuttle suite`: teuthology-suite's command line over cuttle.
//!
//! A dry run of a local `--suite-dir` is expanded in this process with cuttle-suite (the
//! same code cuttle-api runs), so it needs no server; everything else is one
//! ScheduleSuite call.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use cuttle_core::suite::{SuiteArgs, SuiteSource};
use cuttle_proto::v1;
use cuttle_suite::plan::{Pins, Stamp, request, to_json};
use cuttle_suite::{Disk, Expansion, SuiteJob, Tally};
use serde::Serialize;

use crate::Context;
use crate::cli::SuiteCliArgs;
use crate::error::Failure;
use crate::output::{print, print_json};
use crate::time::{UtcDateTime, now_unix_seconds};

/// Suites larger than this print a progress line while they expand.
const PROGRESS_FROM: u64 = 2_000;

fn list(value: Option<String>) -> String {
    value.unwrap_or_default()
}

/// The wire request for the command line.
pub fn to_proto(args: SuiteCliArgs) -> Result<v1::SuiteArgs, Failure> {
    if args.newest.is_some_and(|n| n > 0) {
        return Err(Failure::Invalid(
            "newest: cuttle does not backtrack to older builds yet; drop --newest or pass a built sha1 with -S".into(),
        ));
    }
    if args.sleep_before_teardown.is_some_and(|s| s > 0) {
        return Err(Failure::Invalid(
            "sleep-before-teardown: not supported; hold the nodes with `cuttle node lock` after the job instead".into(),
        ));
    }
    let filter_fragments = match args
        .filter_fragments
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("true" | "yes" | "1" | "on") => true,
        None | Some("false" | "no" | "0" | "off") => false,
        Some(other) => {
            return Err(Failure::Invalid(format!(
                "filter-fragments: {other:?} is not true or false"
            )));
        }
    };
    Ok(v1::SuiteArgs {
        suite: list(args.suite),
        suite_dir: list(args.suite_dir),
        suite_repo: list(args.suite_repo),
        suite_branch: list(args.suite_branch),
        suite_sha1: list(args.suite_sha1),
        suite_relpath: list(args.suite_relpath),
        ceph_branch: list(args.ceph),
        ceph_sha1: list(args.sha1),
        ceph_repo: list(args.ceph_repo),
        kernel: list(args.kernel),
        flavor: list(args.flavor),
        machine_type: list(args.machine_type),
        distro: list(args.distro),
        distro_version: list(args.distro_version),
        priority: args.priority,
        subset: list(args.subset),
        seed: args.seed,
        limit: args.limit,
        num: args.num.unwrap_or(0),
        filter_in: args.filter,
        filter_out: args.filter_out,
        filter_all: args.filter_all,
        filter_fragments,
        email: list(args.email),
        timeout: args.timeout,
        owner: list(args.owner),
        dry_run: args.dry_run,
        rerun: list(args.rerun),
        rerun_statuses: args.rerun_statuses.into_iter().collect(),
        force_priority: args.force_priority,
        job_threshold: args.job_threshold,
        teuthology_branch: list(args.teuthology_branch),
        teuthology_sha1: list(args.teuthology_sha1),
        no_nested_subset: args.no_nested_subset,
        run_name: list(args.name),
        arch: list(args.arch),
        preset: list(args.preset),
        wait_for_build: args.wait_for_build,
    })
}

/// One job as `--dry-run --json` prints it.
#[derive(Debug, Serialize)]
pub struct JobOut {
    pub description: String,
    pub fragments: Vec<String>,
    pub config: serde_json::Value,
    pub index: u64,
    /// Copies queued of it (`--num`).
    pub num: u64,
}

fn job_out(job: SuiteJob, num: u64) -> JobOut {
    JobOut {
        config: to_json(&job.config),
        description: job.description,
        fragments: job.fragments,
        index: job.index,
        num,
    }
}

fn summary(tally: &Tally, suite: &str, seed: u64) -> String {
    format!(
        "suite {suite}: {} jobs generated, {} filtered out, {} rejected by scripts, {} excluded, {} kept (seed {seed})",
        tally.generated, tally.filtered, tally.rejected, tally.excluded, tally.emitted
    )
}

/// Expands a local suite directory here, for a dry run.
fn expand_locally(args: &SuiteArgs, dir: &str, json: bool) -> Result<(), Failure> {
    let seed = args
        .seed
        .unwrap_or_else(|| (now_unix_seconds().unsigned_abs() * 7919) % 10_000);
    let owner = args.owner.as_ref().map_or_else(
        || std::env::var("USER").unwrap_or_else(|_| "cuttle".into()),
        |o| o.to_string(),
    );
    let timestamp = UtcDateTime::from_unix_seconds(now_unix_seconds()).teuthology_stamp();
    let machine_type = args
        .machine_type
        .as_ref()
        .map_or_else(|| "smithi".to_owned(), |m| m.to_string());
    let repo_dir = PathBuf::from(dir);
    let teuthology_branch = args
        .teuthology_branch
        .clone()
        .or_else(|| cuttle_suite::disk::teuthology_branch_file(&repo_dir, &args.suite_relpath))
        .unwrap_or_else(|| "main".into());
    let pins = Pins {
        suite_repo: dir.to_owned(),
        suite_branch: "main".into(),
        suite_sha1: String::new(),
        teuthology_branch,
        teuthology_sha1: args.teuthology_sha1.clone().unwrap_or_default(),
    };
    let run_name = args.run_name.as_ref().map_or_else(
        || cuttle_core::suite::default_run_name(&owner, &timestamp, args, &machine_type),
        |n| n.to_string(),
    );
    let stamp = Stamp {
        run_name,
        owner,
        timestamp,
        seed,
        machine_type,
    };
    let mut expansion = Expansion::plan(&Disk, request(args, repo_dir, &pins, &stamp))
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    let generated = expansion.tally().generated;
    let show_progress = generated >= PROGRESS_FROM && std::io::stderr().is_terminal();
    // Jobs stream out one at a time (a JSON array written as it goes), so a suite of
    // any size needs the memory of one job.
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut first = true;
    if json {
        write!(stdout, "[").map_err(Failure::Output)?;
    }
    loop {
        let job = expansion
            .next_job()
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        let Some(job) = job else { break };
        if show_progress && expansion.tally().seen % 1000 == 0 {
            let tally = expansion.tally();
            eprint!(
                "\rexpanding {}: {}/{} looked at, {} kept",
                expansion.suite_name(),
                tally.seen,
                generated,
                tally.emitted
            );
        }
        if json {
            let text = serde_json::to_string_pretty(&job_out(job, args.num))
                .map_err(|e| Failure::Output(std::io::Error::other(e)))?;
            let indented = text.replace('\n', "\n  ");
            write!(stdout, "{}\n  {indented}", if first { "" } else { "," })
                .map_err(Failure::Output)?;
            first = false;
        } else {
            writeln!(stdout, "{}", job.description).map_err(Failure::Output)?;
        }
    }
    if json {
        writeln!(stdout, "{}]", if first { "" } else { "\n" }).map_err(Failure::Output)?;
    }
    stdout.flush().map_err(Failure::Output)?;
    drop(stdout);
    if show_progress {
        eprintln!();
    }
    eprintln!(
        "{}",
        summary(&expansion.tally(), expansion.suite_name(), seed)
    );
    Ok(())
}

/// `cuttle suite ...`
pub async fn run(context: &Context, args: SuiteCliArgs) -> Result<(), Failure> {
    let mut wire = to_proto(args)?;
    let dry_run = wire.dry_run;
    // With a preset the request is only complete on the server, laid over the preset;
    // without one it is checked here, before any call.
    if wire.preset.trim().is_empty() {
        let validated = cuttle_proto::convert::suite_args_from_proto(wire.clone())
            .validate()
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        if validated.dry_run
            && validated.rerun.is_none()
            && let Some(SuiteSource::Dir(dir)) = &validated.source
        {
            return expand_locally(&validated, dir, context.json);
        }
    }
    let api = context.connect().await?;
    // The run's owner defaults to $USER (a developer's token: its own user); with a
    // preset, to the preset's (cuttle-api lays the flags given over it, so an owner filled
    // in here would override it).
    if wire.preset.trim().is_empty() && wire.owner.is_empty() {
        let user = std::env::var("USER").ok();
        wire.owner = crate::schedule::default_owner(&api, user.as_deref()).await?;
    }
    let answer = api
        .suites()
        .schedule_suite(wire)
        .await
        .map_err(|s| api.failure(s))?
        .into_inner();
    if let Some(autosuite) = &answer.autosuite {
        // The build was not ready: kept, not scheduled.
        if context.json {
            return print_json(&crate::autosuite::to_json(autosuite));
        }
        return print(&format!(
            "the build of {} is not ready yet: kept as autosuite {}, which schedules the suite once it is (`cuttle autosuite show {}`)",
            autosuite.branch, autosuite.id, autosuite.id
        ));
    }
    if context.json {
        let jobs: Vec<serde_json::Value> = answer
            .jobs
            .iter()
            .map(|job| {
                serde_json::json!({
                    "description": job.description,
                    "fragments": job.fragments,
                    "config": serde_json::from_str::<serde_json::Value>(&job.config_json).unwrap_or(serde_json::Value::Null),
                    "index": job.index,
                })
            })
            .collect();
        if dry_run {
            return print_json(&jobs);
        }
        return print_json(&serde_json::json!({
            "run_name": answer.run_name,
            "suite": answer.suite,
            "generated": answer.generated,
            "filtered": answer.filtered,
            "rejected": answer.rejected,
            "excluded": answer.excluded,
            "queued": answer.queued.len(),
            "seed": answer.seed,
            "suite_sha1": answer.suite_sha1,
            "teuthology_branch": answer.teuthology_branch,
            "teuthology_sha1": answer.teuthology_sha1,
            "jobs": jobs,
        }));
    }
    let tally = Tally {
        generated: answer.generated,
        seen: answer.generated,
        filtered: answer.filtered,
        rejected: answer.rejected,
        excluded: answer.excluded,
        emitted: answer.jobs.len() as u64,
    };
    if dry_run {
        let lines: Vec<&str> = answer.jobs.iter().map(|j| j.description.as_str()).collect();
        if !lines.is_empty() {
            print(&lines.join("\n"))?;
        }
        eprintln!("{}", summary(&tally, &answer.suite, answer.seed));
        return Ok(());
    }
    let refs = format!(
        "suite {}{}, teuthology {}{}",
        answer.suite,
        if answer.suite_sha1.is_empty() {
            String::new()
        } else {
            format!(" @ {}", answer.suite_sha1)
        },
        answer.teuthology_branch,
        if answer.teuthology_sha1.is_empty() {
            String::new()
        } else {
            format!(" @ {}", answer.teuthology_sha1)
        },
    );
    print(&format!(
        "scheduled run {}: {} jobs queued ({} generated, {} filtered out, {} rejected by scripts, {} excluded; seed {}; {refs})",
        answer.run_name,
        answer.queued.len(),
        answer.generated,
        answer.filtered,
        answer.rejected,
        answer.excluded,
        answer.seed
    ))
}
