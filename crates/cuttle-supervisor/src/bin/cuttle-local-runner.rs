//! cuttle-local-runner: the job runner of a local lab. It simulates the job its config
//! describes instead of testing anything: it runs for `runtime` seconds, writing a log
//! line every second, then writes `summary.yaml` into the archive and exits 0 for
//! `status: pass` or 1 for `status: fail`. The quick start and the tests schedule jobs
//! with those two keys and know what must happen.
//!
//! It must stay dependency-light and never talk to cuttle-api: it stands where
//! `teuthology` stands in a real lab.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_yaml::Value;

/// Simulates a teuthology job from its config, for local labs and tests.
///
/// Reads two keys of the job config: `runtime` (seconds to run, default 0; fractions
/// allowed) and `status` (`pass` or `fail`, default pass); a config with neither is a
/// real job, which it refuses (exit 2) rather than pass unrun. Writes progress to stdout (the
/// supervisor archives it as runner.log) and `summary.yaml` (success, status, runtime)
/// into --archive. Exit status: 0 for pass, 1 for fail, 2 for a config it cannot read.
#[derive(Debug, Parser)]
#[command(name = "cuttle-local-runner", version)]
struct Cli {
    /// The job config (teuthology job YAML) to simulate.
    #[arg(long, value_name = "FILE")]
    job_config: PathBuf,
    /// The job's archive directory, where summary.yaml is written.
    #[arg(long, value_name = "DIR")]
    archive: PathBuf,
}

/// What the config asks for.
#[derive(Debug, PartialEq)]
struct Plan {
    runtime: Duration,
    pass: bool,
}

fn plan(text: &str) -> Result<Plan, String> {
    let config: Value =
        serde_yaml::from_str(text).map_err(|e| format!("the job config is not YAML: {e}"))?;
    if config.get("runtime").is_none() && config.get("status").is_none() {
        // A real job (one teuthology put on the tube, say) is not passed unrun.
        return Err(
            "the job config says nothing about how to simulate it (neither runtime nor status): cuttle-local-runner only simulates jobs and refuses to pass a real one unrun; run real jobs with teuthology (the dispatcher's default, without runner_command)".into(),
        );
    }
    let runtime = match config.get("runtime") {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(-1.0),
        Some(Value::String(s)) => s.trim().parse::<f64>().unwrap_or(-1.0),
        Some(_) => -1.0,
    };
    if !(0.0..=30.0 * 24.0 * 3600.0).contains(&runtime) {
        return Err("runtime must be a number of seconds from 0 to 2592000".into());
    }
    let pass = match config.get("status").and_then(Value::as_str) {
        None | Some("pass") => true,
        Some("fail") => false,
        Some(other) => return Err(format!("status {other:?} must be pass or fail")),
    };
    Ok(Plan {
        runtime: Duration::from_secs_f64(runtime),
        pass,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = match std::fs::read_to_string(&cli.job_config)
        .map_err(|e| format!("cannot read {}: {e}", cli.job_config.display()))
        .and_then(|text| plan(&text))
    {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("cuttle-local-runner: {error}");
            // The supervisor takes a summary's failure_reason as the job's reason.
            let summary = format!(
                "success: false\nstatus: fail\nfailure_reason: {}\n",
                serde_yaml::to_string(&format!("cuttle-local-runner: {error}"))
                    .unwrap_or_default()
                    .trim_end()
            );
            let _ = std::fs::write(cli.archive.join("summary.yaml"), summary);
            return ExitCode::from(2);
        }
    };
    let status = if plan.pass { "pass" } else { "fail" };
    println!(
        "cuttle-local-runner: simulating a job that runs {:.1} s and ends {status}",
        plan.runtime.as_secs_f64()
    );
    let started = Instant::now();
    while started.elapsed() < plan.runtime {
        let left = plan.runtime.saturating_sub(started.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(1)));
        println!(
            "cuttle-local-runner: {:.1} s of {:.1} s",
            started.elapsed().as_secs_f64(),
            plan.runtime.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
    }
    let summary = format!(
        "success: {}\nstatus: {status}\nruntime: {:.3}\n{}",
        plan.pass,
        plan.runtime.as_secs_f64(),
        if plan.pass {
            ""
        } else {
            "failure_reason: 'simulated failure (status: fail)'\n"
        }
    );
    if let Err(error) = std::fs::write(cli.archive.join("summary.yaml"), summary) {
        eprintln!("cuttle-local-runner: cannot write summary.yaml: {error}");
    }
    println!("cuttle-local-runner: done, {status}");
    if plan.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runtime_and_status() {
        assert_eq!(
            plan("runtime: 2.5\nstatus: fail\ntasks: []\n").unwrap(),
            Plan {
                runtime: Duration::from_millis(2500),
                pass: false
            }
        );
        assert_eq!(
            plan("description: x\nruntime: 0\n").unwrap(),
            Plan {
                runtime: Duration::ZERO,
                pass: true
            }
        );
        // A config with neither key is a real job: refused, never passed.
        assert!(
            plan("description: x\ntasks: [{install: null}]\n")
                .unwrap_err()
                .contains("says nothing about how to simulate")
        );
        assert!(plan("runtime: soon\n").unwrap_err().contains("runtime"));
        assert!(
            plan("status: maybe\n")
                .unwrap_err()
                .contains("pass or fail")
        );
    }
}
