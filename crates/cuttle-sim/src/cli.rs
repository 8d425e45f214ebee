//! The command line: what `cuttle-sim` accepts, its `--help` (which documents the workload
//! file format, since scripts write those files), and the glue from arguments to a
//! comparison and its output. An external checker calls this interface: flag names, the
//! strategy names and the `--json` fields are a contract, change them only on purpose.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Parser};
use cuttle_policy::PolicyConfig;

use crate::generate::{self, GenerateConfig};
use crate::swf;
use crate::workload::{self, Workload};
use crate::{compare_with_window, plot, report};

/// The lab size when neither `--nodes` nor the workload file says one.
pub const DEFAULT_NODES: u32 = 200;
/// Generated days when `--days` is not given: a week.
pub const DEFAULT_DAYS: u32 = 7;

const AFTER_HELP: &str = "\
STRATEGIES (all run on the same workload and lab):
  legacy-workers      teuthology before 2020: --workers competing workers per tube, each
                      reserving the next job (priority, then FIFO) and retrying an
                      all-or-nothing lock of its nodes; small jobs overtake big ones
  head-of-line        teuthology's dispatcher now: strict priority/FIFO order, the head
                      waits for nodes and nobody passes it, no aging
  cuttle              cuttle_policy::plan with the default config: aging; the head,
                      urgent jobs and one day-old job book slots, the rest are
                      backfilled least node-time for their wait first; estimates
                      learnt from finished runs by description
  cuttle-no-backfill  the same without backfill
  easy                textbook EASY backfill (Slurm's default): priority then FCFS, one
                      reservation for the head, backfill by time limits what does not
                      delay it; no aging, no history
  The utilization of a priority-blind greedy packer (FIFO first-fit) is reported as
  greedy_utilization on every row: a yardstick, not a bound. The proven upper bound is
  utilization_over_makespan_bound (on utilization_over_makespan, for any strategy).

SWF TRACES (--workload FILE.swf):
  The Parallel Workloads Archive's Standard Workload Format is read directly: submit
  time, run time, processors (allocated, else requested; one processor = one node),
  requested time as the time limit (missing: the run time rounded up to the next hour),
  user. Lab size: the header's MaxProcs, else MaxNodes. Jobs without a run time or
  processors are skipped. SWF has no priorities: every job whose job number is a
  multiple of 10 is urgent (50), the rest 1000. cuttle's estimator learns by
  `user U, N nodes, limit T s`. Gunzip .swf.gz first (scripts/fetch-traces.sh does).

WORKLOAD FILE FORMAT:
  Plain text, one job per line, comma-separated:
      submit_s,priority,nodes,runtime_s,time_limit_s[,description]
    submit_s      when the job is submitted, in seconds (any origin; decimals allowed)
    priority      beanstalkd priority, lower is sooner (teuthology's default is 1000);
                  classes: urgent < 100, high 100-999, normal 1000, low > 1000
    nodes         how many nodes it locks, at least 1; a job needing more nodes than
                  the lab has is buried (never runs) under every strategy
    runtime_s     how long it runs; a run longer than its time limit is ended at the limit
    time_limit_s  its timeout, more than 0
    description   optional, the rest of the line (may contain commas): the test it runs;
                  cuttle's estimator learns runtimes per description
  `#` starts a comment. A `# nodes: K` comment sets the lab size used when --nodes is
  not given (else 200). Blank lines are ignored. A header line starting with `submit_s`
  is allowed. Errors name the line and the field.
  Example:
      # nodes: 200
      submit_s,priority,nodes,runtime_s,time_limit_s,description
      0,1000,2,2400,10800,rados/thrash-3
      60,50,1,900,3600,smoke/basic-1

OUTPUT:
  A table, one row per strategy; with --json a list of objects with strategy,
  mean_wait_s, p50_wait_s, p95_wait_s, p99_wait_s, max_wait_s, urgent_p95_wait_s,
  widest_nodes and widest_max_wait_s (the jobs with the most nodes), utilization,
  greedy_utilization, utilization_over_makespan, utilization_over_makespan_bound,
  makespan_s, wait_bound_s (cuttle only, else null), bound_violations, buried,
  idle_while_queued_node_s and wait_s.all / wait_s.by_priority / wait_s.by_nodes
  ({count, mean, p50, p95, p99, max}). All times are in seconds.
  utilization is the busy share of the lab while at least one job was queued: busy
  node-seconds / (nodes x seconds with work waiting). Only then can a scheduler waste a
  node; the drain after the last start is left to makespan_s and
  utilization_over_makespan (busy node-seconds / (nodes x makespan)).
  A cuttle job that waited longer than the bound the policy states for it is reported
  on stderr with a WARNING line.";

/// Replays a workload on a virtual lab under teuthology's strategies and cuttle's policy,
/// side by side.
#[derive(Debug, Parser)]
#[command(name = "cuttle-sim", version, after_help = AFTER_HELP)]
#[command(group(ArgGroup::new("source").required(true).args(["workload", "generate"])))]
pub struct Cli {
    /// Replay the workload in FILE (format below).
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,

    /// Generate a Sepia-style workload instead (needs --seed).
    #[arg(long, requires = "seed")]
    pub generate: bool,

    /// Seed of the generator: the same seed gives the same workload.
    #[arg(long, value_name = "N", requires = "generate")]
    pub seed: Option<u64>,

    /// Days to generate [default: 7].
    #[arg(long, value_name = "D", requires = "generate",
          value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: Option<u32>,

    /// Mean offered work / lab capacity of the generated period [default: 1].
    #[arg(long, value_name = "F", requires = "generate", value_parser = parse_load)]
    pub load: Option<f64>,

    /// Nodes in the lab (one machine type) [default: the file's `# nodes: K`, else 200].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub nodes: Option<u32>,

    /// Competing workers per tube for legacy-workers.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub workers: u32,

    /// Aging interval of both cuttle strategies, in seconds [default: the policy's].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..))]
    pub aging_interval_s: Option<u32>,

    /// Priority points a waiting job gains per aging interval in both cuttle strategies
    /// [default: the policy's]. The defaults (`PolicyConfig::default()`) are what `cuttle`
    /// means; these two are for tuning.
    #[arg(long, value_name = "P")]
    pub aging_step: Option<u32>,

    /// Suites (jobs submitted together with the same priority) with a priority below P
    /// start their smaller jobs first, the others their biggest first, in both cuttle
    /// strategies [default: the policy's, 1000]. 4294967295: fewer nodes first for all.
    #[arg(long, value_name = "P")]
    pub fewer_nodes_first_below: Option<u32>,

    /// How many queued jobs the cuttle strategies plan over, in order: the dispatcher's
    /// look-ahead window (cuttle-api's `window`) [default: 1000]. 0: the whole queue.
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,

    /// Print a JSON list with one object per strategy instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Also measure cuttle's start-time estimates on about N jobs (every k-th submitted):
    /// the estimate cuttle-api would show right after scheduling, against the real start.
    /// The report follows the table (on stderr with --json). Each estimate replays the
    /// whole queue, so a few hundred take a minute on a saturated week.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub estimates: Option<u32>,

    /// Also write an SVG of queue length and utilization over time to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Also write one CSV line per job to FILE: its submit time, priority, nodes, run time
    /// and limit, its wait under each strategy (empty if it never started) and the wait
    /// bound cuttle states for it. For following one job, or checking another replay job
    /// by job.
    #[arg(long, value_name = "FILE")]
    pub starts: Option<PathBuf>,

    /// Write the workload (generated or read) to FILE in the workload format and exit
    /// without simulating: how workloads/sepia-week.csv was made.
    #[arg(long, value_name = "FILE")]
    pub write_workload: Option<PathBuf>,
}

fn parse_load(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(load) if load.is_finite() && load > 0.0 && load <= 100.0 => Ok(load),
        _ => Err(format!(
            "`{text}` is not a load between 0 (excluded) and 100"
        )),
    }
}

/// The policy config both cuttle strategies start from: the dispatcher's default, with
/// the aging knobs the command line overrides.
pub fn policy_config(cli: &Cli) -> PolicyConfig {
    let mut config = PolicyConfig::default();
    if let Some(aging) = config.aging.as_mut() {
        if let Some(interval_s) = cli.aging_interval_s {
            aging.interval_ms = i64::from(interval_s) * 1000;
        }
        if let Some(step) = cli.aging_step {
            aging.step = step;
        }
    }
    if let Some(below) = cli.fewer_nodes_first_below {
        config.fewer_nodes_first_below = below;
    }
    config
}

/// The workload and the lab size the arguments ask for, and the comment lines describing
/// where the workload came from.
fn load(cli: &Cli) -> Result<(Workload, u32, Vec<String>)> {
    if let Some(path) = &cli.workload {
        if path.to_string_lossy().ends_with(".gz") {
            bail!(
                "{} is compressed: gunzip it first (scripts/fetch-traces.sh does)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read workload {}", path.display()))?;
        let mut comments = vec![format!("Read from {}.", path.display())];
        let workload = if swf::is_swf(path) {
            let (workload, skipped) =
                swf::parse(&text).with_context(|| format!("bad SWF trace {}", path.display()))?;
            comments.push(format!(
                "Standard Workload Format: {} jobs taken, {} without a run time and {} without processors skipped; \
                 priorities by job number (every {}th urgent), limits from requested times (crates/cuttle-sim/src/swf.rs).",
                workload.jobs.len(),
                skipped.no_runtime,
                skipped.no_processors,
                swf::URGENT_EVERY
            ));
            workload
        } else {
            workload::parse(&text)
                .with_context(|| format!("bad workload file {}", path.display()))?
        };
        let nodes = cli
            .nodes
            .or(workload.default_nodes)
            .unwrap_or(DEFAULT_NODES);
        return Ok((workload, nodes, comments));
    }
    let Some(seed) = cli.seed else {
        bail!("--generate needs --seed");
    };
    let config = GenerateConfig {
        seed,
        days: cli.days.unwrap_or(DEFAULT_DAYS),
        nodes: cli.nodes.unwrap_or(DEFAULT_NODES),
        load: cli.load.unwrap_or(generate::DEFAULT_LOAD),
    };
    Ok((
        generate::generate(config),
        config.nodes,
        generate::describe(config),
    ))
}

/// Runs the command: output on `out`, warnings on `err`.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let (mut workload, nodes, comments) = load(cli)?;
    if let Some(path) = &cli.write_workload {
        workload.default_nodes = Some(nodes);
        let made_with = format!("--write-workload {}", path.display());
        let comments: Vec<String> = comments
            .iter()
            .map(|c| c.replace("--write-workload FILE", &made_with))
            .collect();
        std::fs::write(path, workload.to_file(&comments))
            .with_context(|| format!("failed to write workload {}", path.display()))?;
        writeln!(
            err,
            "wrote {} jobs for a {nodes}-node lab to {}",
            workload.jobs.len(),
            path.display()
        )?;
        return Ok(());
    }
    let window = match cli.window {
        None => cuttle_policy::DEFAULT_WINDOW,
        Some(0) => usize::MAX,
        Some(n) => n,
    };
    let comparison = compare_with_window(
        &workload,
        nodes,
        cli.workers as usize,
        policy_config(cli),
        window,
    );
    report::warnings(&workload, &comparison, err)?;
    if cli.json {
        serde_json::to_writer_pretty(&mut *out, &comparison.summaries)
            .context("failed to write the JSON report")?;
        writeln!(out)?;
    } else {
        report::table(&workload, &comparison, out)?;
    }
    if let Some(samples) = cli.estimates {
        let accuracy = crate::estimates::measure(
            &workload,
            nodes,
            policy_config(cli),
            window,
            samples as usize,
        );
        let sink: &mut dyn Write = if cli.json { err } else { out };
        write!(sink, "\n{}", accuracy.report())?;
    }
    if let Some(path) = &cli.starts {
        let csv = report::starts_csv(&workload, &comparison, &policy_config(cli));
        std::fs::write(path, csv)
            .with_context(|| format!("failed to write the per-job waits {}", path.display()))?;
    }
    if let Some(path) = &cli.plot {
        let mut outcomes: Vec<&crate::engine::Outcome> = comparison.outcomes.iter().collect();
        outcomes.push(&comparison.greedy);
        std::fs::write(path, plot::svg(&outcomes))
            .with_context(|| format!("failed to write plot {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cuttle-sim").chain(args.iter().copied()))
    }

    #[test]
    fn a_source_is_required_and_exclusive() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--generate"]).is_err(), "--generate needs --seed");
        assert!(parse(&["--seed", "1"]).is_err(), "--seed needs --generate");
        assert!(parse(&["--workload", "w.csv", "--generate", "--seed", "1"]).is_err());
        assert!(parse(&["--workload", "w.csv", "--days", "3"]).is_err());
        assert!(parse(&["--workload", "w.csv", "--nodes", "0"]).is_err());
        assert!(
            parse(&["--workload", "w.csv", "--load", "2"]).is_err(),
            "--load needs --generate"
        );
        assert!(parse(&["--generate", "--seed", "1", "--load", "-1"]).is_err());
        let cli = parse(&[
            "--workload",
            "w.csv",
            "--aging-interval-s",
            "60",
            "--aging-step",
            "7",
            "--fewer-nodes-first-below",
            "4294967295",
        ])
        .unwrap();
        let config = policy_config(&cli);
        let aging = config.aging.unwrap();
        assert_eq!((aging.interval_ms, aging.step), (60_000, 7));
        assert_eq!(config.fewer_nodes_first_below, u32::MAX);
        let default = parse(&["--workload", "w.csv"]).unwrap();
        assert_eq!(policy_config(&default), PolicyConfig::default());
        assert_eq!(default.window, None);
        let whole = parse(&["--workload", "w.csv", "--window", "0"]).unwrap();
        assert_eq!(whole.window, Some(0));
        let cli = parse(&[
            "--generate",
            "--seed",
            "4",
            "--nodes",
            "50",
            "--days",
            "3",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            (cli.seed, cli.nodes, cli.days, cli.json),
            (Some(4), Some(50), Some(3), true)
        );
        assert_eq!(cli.workers, 8);
    }

    #[test]
    fn help_documents_the_workload_format_and_the_strategies() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "submit_s,priority,nodes,runtime_s,time_limit_s[,description]",
            "# nodes: K",
            "legacy-workers",
            "head-of-line",
            "cuttle-no-backfill",
            "easy",
            "greedy_utilization",
            "utilization_over_makespan_bound",
            "requested time",
        ] {
            assert!(help.contains(needle), "--help lacks {needle:?}");
        }
    }

    #[test]
    fn the_lab_size_comes_from_the_flag_then_the_file_then_the_default() {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = dir.join("with.csv");
        let without = dir.join("without.csv");
        std::fs::write(&with, "# nodes: 12\n0,1000,1,60,3600\n").unwrap();
        std::fs::write(&without, "0,1000,1,60,3600\n").unwrap();
        let nodes = |args: &[&str]| load(&parse(args).unwrap()).unwrap().1;
        assert_eq!(nodes(&["--workload", with.to_str().unwrap()]), 12);
        assert_eq!(
            nodes(&["--workload", with.to_str().unwrap(), "--nodes", "3"]),
            3
        );
        assert_eq!(
            nodes(&["--workload", without.to_str().unwrap()]),
            DEFAULT_NODES
        );
        assert_eq!(
            nodes(&["--generate", "--seed", "1", "--days", "1"]),
            DEFAULT_NODES
        );
        std::fs::write(&without, "0,1000,1,60,3600\nbad line\n").unwrap();
        let error = load(&parse(&["--workload", without.to_str().unwrap()]).unwrap()).unwrap_err();
        assert!(
            format!("{error:#}").contains("line 2: field `priority`"),
            "{error:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_output_has_the_contracted_fields_for_every_strategy() {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("w.csv");
        std::fs::write(
            &file,
            "# nodes: 4\n0,1000,3,600,3600\n10,50,1,60,3600\n20,1000,4,60,3600\n30,2000,2,60,3600\n",
        )
        .unwrap();
        let plot = dir.join("plot.svg");
        let cli = parse(&[
            "--workload",
            file.to_str().unwrap(),
            "--json",
            "--plot",
            plot.to_str().unwrap(),
        ])
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run(&cli, &mut out, &mut err).unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let rows = rows.as_array().unwrap();
        let names: Vec<&str> = rows
            .iter()
            .map(|r| r["strategy"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "legacy-workers",
                "head-of-line",
                "cuttle",
                "cuttle-no-backfill",
                "easy"
            ]
        );
        for row in rows {
            for field in [
                "utilization",
                "greedy_utilization",
                "utilization_over_makespan",
                "utilization_over_makespan_bound",
                "makespan_s",
                "max_wait_s",
                "mean_wait_s",
                "p50_wait_s",
                "p95_wait_s",
                "p99_wait_s",
                "urgent_p95_wait_s",
                "widest_max_wait_s",
            ] {
                assert!(row[field].is_number(), "{field} in {row}");
            }
            assert!(row["wait_s"]["by_priority"]["urgent"]["p95"].is_number());
            assert!(row["wait_s"]["by_nodes"]["4"]["max"].is_number());
            assert!(row["wait_s"]["all"]["p99"].is_number());
            assert_eq!(row["widest_nodes"], 4);
            let is_cuttle = row["strategy"] == "cuttle";
            assert_eq!(row["wait_bound_s"].is_number(), is_cuttle, "{row}");
        }
        assert!(String::from_utf8(err).unwrap().is_empty());
        assert!(
            std::fs::read_to_string(&plot)
                .unwrap()
                .contains("<polyline")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn starts_lists_every_job_with_its_wait_under_each_strategy() {
        let dir = std::env::temp_dir().join(format!("cuttle-sim-starts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("w.csv");
        // 2 nodes: the 2-node job waits for the first to end at 600 s under every
        // strategy; the urgent 1-node job submitted at 10 s goes before it and fits
        // beside the first at once; the last never fits and is buried.
        std::fs::write(
            &file,
            "# nodes: 2\n0,1000,1,600,3600\n5.5,1000,2,60,3600\n10,50,1,60,3600\n20,1000,3,60,3600\n",
        )
        .unwrap();
        let starts = dir.join("starts.csv");
        let cli = parse(&[
            "--workload",
            file.to_str().unwrap(),
            "--starts",
            starts.to_str().unwrap(),
        ])
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run(&cli, &mut out, &mut err).unwrap();
        let text = std::fs::read_to_string(&starts).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "job,line,submit_s,priority,nodes,runtime_s,time_limit_s,legacy-workers_wait_s,\
             head-of-line_wait_s,cuttle_wait_s,cuttle-no-backfill_wait_s,easy_wait_s,cuttle_bound_s"
        );
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[1].starts_with("0,2,0,1000,1,600,3600,0,0,0,0,0,"),
            "{text}"
        );
        let waits: Vec<&str> = lines[2].split(',').collect();
        assert_eq!(&waits[..7], ["1", "3", "5.5", "1000", "2", "60", "3600"]);
        assert!(waits[7..12].iter().all(|wait| *wait == "594.5"), "{text}");
        assert!(
            lines[3].starts_with("2,4,10,50,1,60,3600,0,0,0,0,0,"),
            "{text}"
        );
        // The buried job has no wait anywhere, and a bound (aging is on).
        let buried: Vec<&str> = lines[4].split(',').collect();
        assert!(buried[7..12].iter().all(|wait| wait.is_empty()), "{text}");
        assert!(buried[12].parse::<f64>().unwrap() > 0.0, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
