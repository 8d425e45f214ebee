//! The cuttle-supervisor binary: parse flags, start logging, supervise one job (or only
//! release an ended job's nodes). All the work is in the library.

use std::process::ExitCode;

use clap::Parser;

use cuttle_runtime::lab::LabConfig;
use cuttle_runtime::telemetry::LogFormat;

/// cuttle-supervisor: runs one job. Started by cuttle-dispatcher, one per job.
///
/// Waits for its dispatcher to record the dispatch, then prepares (reimages) the job's
/// locked nodes, runs the job's runner under the job's time limit with its output in
/// <archive_dir>/<run>/<job_id>/ (runner.log; this process's own log is supervisor.log),
/// and heartbeats to cuttle-api. On time-out or kill it collects logs first, then ends
/// the runner's whole process group (SIGTERM, grace, SIGKILL). It reports pass, fail or
/// dead with the reason, then gives the nodes back: unlocked after a pass; otherwise
/// nuked first, and marked down if the nuke fails.
///
/// The lab's commands come from the dispatcher as JSON in CUTTLE_LAB_JSON (the [lab]
/// table of deploy/cuttle-dispatcher.toml); without it, the defaults (local runner).
#[derive(Debug, Parser)]
#[command(name = "cuttle-supervisor", version)]
struct Cli {
    /// The job to run.
    #[arg(long, value_name = "ID")]
    job_id: i64,
    /// URL of cuttle-api.
    #[arg(
        long,
        env = "CUTTLE_API",
        default_value = "http://127.0.0.1:7171",
        value_name = "URL"
    )]
    api: String,
    /// The lab's settings as JSON (the dispatcher passes its resolved [lab] table).
    #[arg(
        long,
        env = "CUTTLE_LAB_JSON",
        hide_env_values = true,
        value_name = "JSON"
    )]
    lab_json: Option<String>,
    /// Only give back the nodes of a job that has ended (its supervisor died, or it was
    /// killed while none was running): nuke, then unlock or mark down.
    #[arg(long)]
    release: bool,
    /// Log format: text (default) or json.
    #[arg(long, env = "CUTTLE_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// The CA certificate that signed cuttle-api's TLS certificate (the dispatcher passes
    /// its own in CUTTLE_TLS_CA_FILE).
    #[arg(long, env = "CUTTLE_TLS_CA_FILE", value_name = "FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
    /// The service token (the dispatcher passes its own in CUTTLE_TOKEN).
    #[arg(long, env = "CUTTLE_TOKEN", hide_env_values = true, hide = true)]
    token: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: a supervisor waits on one job, and a second worker thread per job
    // costs more to start than it ever saves.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cuttle-supervisor: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("cuttle-supervisor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    cuttle_runtime::telemetry::init(
        cli.log_format.unwrap_or_default(),
        std::env::var("CUTTLE_LOG").ok().as_deref(),
    );
    let lab: LabConfig = match &cli.lab_json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("invalid CUTTLE_LAB_JSON / --lab-json: {e}"))?,
        None => LabConfig::default(),
    };
    lab.validate()?;
    let token = cli
        .token
        .as_deref()
        .and_then(cuttle_proto::bearer::Token::new);
    let ca_pem = match cli
        .tls_ca_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read tls_ca_file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let api = cuttle_supervisor::Api::connect(&cli.api, token.as_ref(), ca_pem.as_deref())?;
    if cli.release {
        return cuttle_supervisor::release_only(api, lab, cli.job_id).await;
    }
    let terminated = cuttle_runtime::shutdown::on_signal()?;
    cuttle_supervisor::supervise(api, lab, cli.job_id, terminated).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
