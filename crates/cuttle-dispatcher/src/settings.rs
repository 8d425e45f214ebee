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
/// in the config file's [lab] table (see deploy/cuttle-dispatcher.toml). Jobs run under
/// teuthology, as teuthology's own supervisor runs them, unless the lab names a
/// runner_command (a local lab: --runner-command with cuttle-local-runner, which
/// simulates jobs). Logging level: CUTTLE_LOG (default info).
/// A step of a dispatch at which the fault tests make the dispatcher die.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// cuttle-api has marked the job `waiting` for this dispatcher.
    AfterClaim,
    /// The job's nodes are locked.
    AfterLock,
    /// Its supervisor is started, the dispatch not yet recorded.
    AfterSpawn,
    /// The dispatch is recorded, the supervisor not yet told to go.
    AfterRecord,
    /// The supervisor was told to go; the beanstalkd copy is not deleted yet.
    BeforeDelete,
}

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
    /// The teuthology executable jobs run under; overrides [lab] teuthology_bin
    /// [default: teuthology, on PATH].
    #[arg(long, env = "CUTTLE_TEUTHOLOGY_BIN", value_name = "PATH")]
    pub teuthology_bin: Option<PathBuf>,
    /// The teuthology config file, given to teuthology as TEUTHOLOGY_CONFIG; overrides
    /// [lab] teuthology_config [default: teuthology's own, ~/.teuthology.yaml].
    #[arg(long, env = "CUTTLE_TEUTHOLOGY_CONFIG", value_name = "FILE")]
    pub teuthology_config: Option<PathBuf>,
    /// Run jobs with this command template instead of teuthology; overrides [lab]
    /// runner_command. A local lab simulates jobs with
    /// '{bin_dir}/cuttle-local-runner --job-config {job_config} --archive {archive}'.
    #[arg(long, env = "CUTTLE_RUNNER_COMMAND", value_name = "TEMPLATE")]
    pub runner_command: Option<String>,
    /// Log format: text (default) or json.
    #[arg(long, env = "CUTTLE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (one port per dispatcher:
    /// several machine types on one host need several) [default: none].
    #[arg(long, env = "CUTTLE_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// File holding this dispatcher's service token (first line); cuttle-api refuses a
    /// dispatcher without one. An admin creates it with `cuttle admin token create --user
    /// dispatcher-TYPE --role service`. CUTTLE_TOKEN, when set, is used instead.
    #[arg(long, env = "CUTTLE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed cuttle-api's TLS certificate; needed when
    /// --api is an https:// URL. Passed on to supervisors.
    #[arg(long, env = "CUTTLE_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Test-only fault switch: die on the spot (as `kill -9` would) at this step of the
    /// first dispatch that reaches it: after-claim, after-lock, after-spawn, after-record
    /// or before-delete. The fault tests prove nothing is lost at any of them.
    #[arg(long, env = "CUTTLE_TEST_CRASH_AT", hide = true, value_name = "STEP")]
    pub test_crash_at: Option<CrashPoint>,
    /// The service token itself (prefer --token-file: the environment is private, a
    /// command line is not).
    #[arg(long, env = "CUTTLE_TOKEN", hide_env_values = true, hide = true)]
    pub token: Option<String>,
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
    /// Where to serve Prometheus metrics (`/metrics`); default none.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The cuttle-supervisor binary [default: next to this binary].
    pub supervisor_bin: Option<PathBuf>,
    /// How long the tube's lease lasts unless renewed, in milliseconds (default 10000). A
    /// standby takes over at most this long after the active dispatcher dies.
    pub lease_ttl_ms: Option<u64>,
    /// How often ended jobs whose supervisor vanished are looked for, to release their
    /// nodes, in milliseconds (default 5000).
    pub release_interval_ms: Option<u64>,
    /// File holding the dispatcher's service token (see --token-file).
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) of cuttle-api's TLS certificate, for an https:// `api`.
    pub tls_ca_file: Option<PathBuf>,
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
    /// The test-only fault switch (see the flag); `None` in every real deployment.
    pub crash_at: Option<CrashPoint>,
    pub supervisor_bin: PathBuf,
    pub lease_ttl: Duration,
    pub release_interval: Duration,
    pub lab: LabConfig,
    /// The service token sent on every call and handed to supervisors; never logged.
    pub token: Option<cuttle_proto::bearer::Token>,
    /// The CA file for an https:// `api`, checked readable; handed to supervisors.
    pub tls_ca_file: Option<PathBuf>,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
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
        let tls_ca_file = cli.tls_ca_file.or(file.tls_ca_file).map(|path| {
            if path.is_relative() {
                cwd.join(path)
            } else {
                path
            }
        });
        let ca_pem = match &tls_ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read tls_ca_file {}", path.display()))?,
            ),
            None => None,
        };
        cuttle_proto::endpoint::endpoint(&api, ca_pem.as_deref())
            .map_err(|e| anyhow::anyhow!("invalid --api: {e}"))?;
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
        if let Some(bin) = cli.teuthology_bin {
            lab.teuthology_bin = bin;
        }
        if let Some(config) = cli.teuthology_config {
            lab.teuthology_config = Some(config);
        }
        if let Some(runner) = cli.runner_command {
            lab.runner_command = Some(runner).filter(|r| !r.trim().is_empty());
        }
        // A supervisor may run in another directory: teuthology's paths are made whole
        // here, as the archive's is.
        if let Some(config) = &lab.teuthology_config
            && config.is_relative()
        {
            lab.teuthology_config = Some(cwd.join(config));
        }
        if let Some(dir) = &lab.checkout_dir
            && dir.is_relative()
        {
            lab.checkout_dir = Some(cwd.join(dir));
        }
        if lab.teuthology_bin.components().count() > 1 && lab.teuthology_bin.is_relative() {
            lab.teuthology_bin = cwd.join(&lab.teuthology_bin);
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
        let token = match (
            cli.token
                .as_deref()
                .and_then(cuttle_proto::bearer::Token::new),
            cli.token_file.or(file.token_file),
        ) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => {
                let path = if path.is_relative() {
                    cwd.join(path)
                } else {
                    path
                };
                let text = cuttle_proto::bearer::read_token_file(&path)?
                    .with_context(|| format!("token file {} does not exist; create it with the secret of `cuttle admin token create --role service`", path.display()))?;
                Some(cuttle_proto::bearer::Token::new(&text).context("the token file is empty")?)
            }
            (None, None) => None,
        };
        if let Some(token) = &token {
            cuttle_proto::bearer::Bearer::for_token(Some(token))
                .context("invalid token (CUTTLE_TOKEN or the token file)")?;
        }
        Ok(Settings {
            token,
            tls_ca_file,
            machine_type,
            api,
            beanstalk,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            metrics_listen: cli.metrics_listen.or(file.metrics_listen),
            exit_on_empty_queue: cli.exit_on_empty_queue,
            crash_at: cli.test_crash_at,
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
        // Jobs run under teuthology unless the lab says otherwise.
        assert_eq!(settings.lab.runner_command, None);
        assert_eq!(settings.lab.teuthology_bin, PathBuf::from("teuthology"));
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
