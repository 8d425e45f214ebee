//! cuttle-dispatcher's settings: flags (each also a `CUTTLE_*` variable) over the TOML
//! config file over defaults, validated before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

use cuttle_core::MachineType;
use cuttle_runtime::lab::LabConfig;
use cuttle_runtime::telemetry::LogFormat;

pub const DEFAULT_API: &str = "http://127.0.0.1:7171";
pub const DEFAULT_BEANSTALK: &str = "127.0.0.1:11300";

/// cuttle-dispatcher: starts the jobs of one machine type.
///
/// Watches the beanstalkd tube named after --machine-type. For each job it reserves it asks
/// cuttle-api whether the job may start (bad bodies and jobs that can never fit are buried
/// with the reason), locks the job's nodes through cuttle-api (all or nothing, waiting
/// while keeping the reservation alive), starts a cuttle-supervisor for it in its own
/// process group, records the dispatch, and only then deletes the beanstalkd job. It does
/// not wait for jobs: supervisors outlive a dispatcher restart.
///
/// One dispatcher per machine type is active at a time: a second one started for the
/// same tube waits as a standby and takes over within a lease time-to-live of the active
/// one's death. `cuttle queue pause T` stops new dispatches without touching running
/// jobs.
///
/// The lab's commands (prepare, runner, collect logs, nuke) and the archive directory are
/// in the config file's [lab] table (see deploy/cuttle-dispatcher.toml); with no file the
/// local runner simulates each job, so a bare start works on a local lab. Logging level:
/// CUTTLE_LOG (default info).
#[derive(Debug, Parser)]
#[command(name = "cuttle-dispatcher", version)]
pub struct Cli {
    /// The machine type (and beanstalkd tube) to dispatch, e.g. smithi.
    #[arg(long, env = "CUTTLE_MACHINE_TYPE", value_name = "TYPE")]
    pub machine_type: String,
    /// URL of cuttle-api [default: http://127.0.0.1:7171].
    #[arg(long, env = "CUTTLE_API", value_name = "URL")]
    pub api: Option<String>,
    /// beanstalkd address [default: 127.0.0.1:11300].
    #[arg(long, env = "CUTTLE_BEANSTALK", value_name = "HOST:PORT")]
    pub beanstalk: Option<String>,
    /// TOML config file (see deploy/cuttle-dispatcher.toml for every key).
    #[arg(long, env = "CUTTLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Exit once the tube has no ready job left (for batch use and tests), instead of
    /// waiting for more. Running jobs are not waited for.
    #[arg(long)]
    pub exit_on_empty_queue: bool,
    /// The job archive root; overrides [lab] archive_dir.
    #[arg(long, env = "CUTTLE_ARCHIVE_DIR", value_name = "DIR")]
    pub archive_dir: Option<PathBuf>,
    /// Log format: text (default) or json.
    #[arg(long, env = "CUTTLE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The config file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// URL of cuttle-api.
    pub api: Option<String>,
    /// beanstalkd address.
    pub beanstalk: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// The cuttle-supervisor binary [default: next to this binary].
    pub supervisor_bin: Option<PathBuf>,
    /// How long the tube's lease lasts unless renewed, in milliseconds (default 10000). A
    /// standby takes over at most this long after the active dispatcher dies.
    pub lease_ttl_ms: Option<u64>,
    /// How often ended jobs whose supervisor vanished are looked for, to release their
    /// nodes, in milliseconds (default 5000).
    pub release_interval_ms: Option<u64>,
    /// The lab's node operations and archive.
    #[serde(default)]
    pub lab: Option<LabConfig>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub machine_type: MachineType,
    pub api: String,
    pub beanstalk: String,
    pub log_format: LogFormat,
    pub exit_on_empty_queue: bool,
    pub supervisor_bin: PathBuf,
    pub lease_ttl: Duration,
    pub release_interval: Duration,
    pub lab: LabConfig,
}

impl Settings {
    /// Merges flags over the file over defaults. `cwd` anchors a relative archive
    /// directory, so supervisors find it whatever their working directory.
    pub fn resolve(cli: Cli, file: FileConfig, cwd: PathBuf) -> anyhow::Result<Settings> {
        let machine_type = MachineType::parse(&cli.machine_type)
            .map_err(|e| anyhow::anyhow!("invalid --machine-type: {e}"))?;
        let api = cli
            .api
            .or(file.api)
            .unwrap_or_else(|| DEFAULT_API.to_owned());
        anyhow::ensure!(
            api.starts_with("http://") || api.starts_with("https://"),
            "invalid --api {api:?}: use a URL such as {DEFAULT_API}"
        );
        let beanstalk = cli
            .beanstalk
            .or(file.beanstalk)
            .unwrap_or_else(|| DEFAULT_BEANSTALK.to_owned());
        anyhow::ensure!(
            beanstalk
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
            "invalid --beanstalk {beanstalk:?}: use HOST:PORT, such as {DEFAULT_BEANSTALK}"
        );
        let mut lab = file.lab.unwrap_or_default();
        if let Some(dir) = cli.archive_dir {
            lab.archive_dir = dir;
        }
        if lab.archive_dir.is_relative() {
            lab.archive_dir = cwd.join(&lab.archive_dir);
        }
        lab.validate().context("invalid [lab] settings")?;
        let lease_ttl_ms = file.lease_ttl_ms.unwrap_or(10_000);
        anyhow::ensure!(
            (1_000..=600_000).contains(&lease_ttl_ms),
            "invalid lease_ttl_ms {lease_ttl_ms}: use 1000 to 600000"
        );
        let release_interval_ms = file.release_interval_ms.unwrap_or(5_000);
        anyhow::ensure!(
            (100..=600_000).contains(&release_interval_ms),
            "invalid release_interval_ms {release_interval_ms}: use 100 to 600000"
        );
        let supervisor_bin = file
            .supervisor_bin
            .unwrap_or_else(|| cuttle_runtime::lab::bin_dir().join("cuttle-supervisor"));
        Ok(Settings {
            machine_type,
            api,
            beanstalk,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            exit_on_empty_queue: cli.exit_on_empty_queue,
            supervisor_bin,
            lease_ttl: Duration::from_millis(lease_ttl_ms),
            release_interval: Duration::from_millis(release_interval_ms),
            lab,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(["cuttle-dispatcher"].iter().chain(args.iter()).copied()).unwrap()
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_bare_start_needs_only_the_machine_type() {
        let settings = Settings::resolve(
            cli(&["--machine-type", "smithi"]),
            FileConfig::default(),
            "/srv".into(),
        )
        .unwrap();
        assert_eq!(settings.api, DEFAULT_API);
        assert_eq!(settings.beanstalk, DEFAULT_BEANSTALK);
        assert_eq!(
            settings.lab.archive_dir,
            PathBuf::from("/srv/cuttle-archive")
        );
        assert!(settings.lab.runner_command.contains("cuttle-local-runner"));
    }

    #[test]
    fn bad_values_are_named() {
        for (args, expected) in [
            (&["--machine-type", "no/slash"][..], "--machine-type"),
            (
                &["--machine-type", "smithi", "--api", "127.0.0.1:7171"][..],
                "--api",
            ),
            (
                &["--machine-type", "smithi", "--beanstalk", "localhost"][..],
                "--beanstalk",
            ),
        ] {
            let error =
                Settings::resolve(cli(args), FileConfig::default(), "/".into()).unwrap_err();
            assert!(
                format!("{error:#}").contains(expected),
                "{args:?}: {error:#}"
            );
        }
        let file: FileConfig =
            cuttle_runtime::config::parse("[lab]\nnuke_command = \"nuke {host}\"\n").unwrap();
        let error =
            Settings::resolve(cli(&["--machine-type", "smithi"]), file, "/".into()).unwrap_err();
        assert!(
            format!("{error:#}").contains("lab.nuke_command"),
            "{error:#}"
        );
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../deploy/cuttle-dispatcher.toml");
        let file: FileConfig = cuttle_runtime::config::parse(text).unwrap();
        Settings::resolve(cli(&["--machine-type", "smithi"]), file, "/".into()).unwrap();
    }
}
