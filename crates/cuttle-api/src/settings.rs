//! cuttle-api's settings: command-line flags (each also a `CUTTLE_*` variable) over the
//! TOML config file over built-in defaults, validated before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

use cuttle_db::DatabaseTarget;
use cuttle_runtime::telemetry::LogFormat;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";
pub const DEFAULT_BEANSTALK: &str = "127.0.0.1:11300";

/// cuttle-api: the scheduler API of a cuttle test lab.
///
/// The only process that opens the database. Serves gRPC (package cuttle.v1) for nodes,
/// runs and jobs; puts scheduled jobs on beanstalkd, one tube per machine type. Works with
/// no config file at all: SQLite under the data directory, beanstalkd at 127.0.0.1:11300,
/// listening on 127.0.0.1:7171.
///
/// Every option can also be set in the config file (same name, with `_` for `-`) and as
/// an environment variable CUTTLE_<NAME>; a flag beats the variable, which beats the file.
/// Logging level: CUTTLE_LOG (default `info`, e.g. `cuttle_api=debug`).
#[derive(Debug, Parser)]
#[command(name = "cuttle-api", version)]
pub struct Cli {
    /// TOML config file (see deploy/cuttle-api.toml for every key).
    #[arg(long, env = "CUTTLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on [default: 127.0.0.1:7171].
    #[arg(long, env = "CUTTLE_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Database: sqlite:///path/to/cuttle.db or postgres://user@host/db
    /// [default: sqlite://<data-dir>/cuttle.db].
    #[arg(long, env = "CUTTLE_DB", value_name = "URL")]
    pub db: Option<String>,
    /// beanstalkd address [default: 127.0.0.1:11300].
    #[arg(long, env = "CUTTLE_BEANSTALK", value_name = "HOST:PORT")]
    pub beanstalk: Option<String>,
    /// Directory for the SQLite database and the admin token; created if missing
    /// [default: ~/.local/share/cuttle, or ./cuttle-data without HOME].
    #[arg(long, env = "CUTTLE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text (default) or json (one object per line).
    #[arg(long, env = "CUTTLE_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// File holding the admin token; generated (mode 0600) if missing
    /// [default: <data-dir>/admin.token].
    #[arg(long, env = "CUTTLE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// The config file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to serve gRPC on.
    pub listen: Option<SocketAddr>,
    /// Database URL.
    pub db: Option<String>,
    /// beanstalkd address.
    pub beanstalk: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Admin token file.
    pub admin_token_file: Option<PathBuf>,
    /// Most database connections open at once (default 8; SQLite has one writer anyway).
    pub max_db_connections: Option<u32>,
    /// beanstalkd time-to-run given to each job, in seconds (default 300): how long a
    /// dispatcher may hold a job reserved without touching it before beanstalkd hands it
    /// out again.
    pub job_ttr_s: Option<u32>,
    /// How often jobs whose put to beanstalkd failed are retried, in seconds (default 5).
    pub enqueue_retry_s: Option<u64>,
    /// How long a running job's supervisor may go without a heartbeat before the reaper
    /// marks the job dead ("supervisor lost") and its nodes are released, in seconds
    /// (default 60; supervisors beat every few seconds).
    pub supervisor_grace_s: Option<u64>,
    /// How often the reaper looks for lost supervisors and dispatchers, in seconds
    /// (default 5).
    pub reap_interval_s: Option<u64>,
    /// Whether waiting jobs age: gain `aging_step` priority points every
    /// `aging_interval_s` they wait, down to `aging_floor` (default true).
    pub aging: Option<bool>,
    /// Seconds per aging step (default 3600).
    pub aging_interval_s: Option<u64>,
    /// Priority points per aging step (default 3).
    pub aging_step: Option<u32>,
    /// The lowest priority aging shows on beanstalkd (default 0).
    pub aging_floor: Option<u32>,
    /// Whether dispatchers backfill: start a less urgent job ahead of a waiting one when
    /// it provably does not delay it (default true).
    pub backfill: Option<bool>,
    /// Nodes of each machine type dispatchers leave free for people (teuthology's
    /// reserve_machines; default 0).
    pub held_back_nodes: Option<u32>,
    /// How many reserved jobs a dispatcher plans over at once (default 256).
    pub window: Option<u32>,
    /// Among jobs submitted together with the same priority (a suite), those with a
    /// priority below this start their smaller jobs first, the others their biggest
    /// first (default 1000, teuthology's default priority).
    pub fewer_nodes_first_below: Option<u32>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub db: DatabaseTarget,
    pub beanstalk: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub admin_token_file: PathBuf,
    pub max_db_connections: u32,
    pub job_ttr: Duration,
    pub enqueue_retry: Duration,
    pub supervisor_grace: Duration,
    pub reap_interval: Duration,
    pub policy: PolicySettings,
}

/// The scheduling policy every dispatcher gets with its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicySettings {
    pub policy: cuttle_policy::PolicyConfig,
    pub window: u32,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            policy: cuttle_policy::PolicyConfig::default(),
            window: cuttle_policy::DEFAULT_WINDOW as u32,
        }
    }
}

impl Settings {
    /// Merges flags over the file over defaults. `home` is `$HOME`, passed in so tests
    /// never depend on (or change) the environment.
    pub fn resolve(cli: Cli, file: FileConfig, home: Option<PathBuf>) -> anyhow::Result<Settings> {
        let data_dir = cli
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| match home {
                Some(home) => home.join(".local/share/cuttle"),
                None => PathBuf::from("cuttle-data"),
            });
        let db_url = cli
            .db
            .or(file.db)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("cuttle.db").display()));
        let db = DatabaseTarget::parse(&db_url).context("invalid --db")?;
        let beanstalk = cli
            .beanstalk
            .or(file.beanstalk)
            .unwrap_or_else(|| DEFAULT_BEANSTALK.to_owned());
        check_beanstalk_address(&beanstalk)?;
        let job_ttr_s = file.job_ttr_s.unwrap_or(300);
        anyhow::ensure!(
            (10..=86_400).contains(&job_ttr_s),
            "invalid job_ttr_s {job_ttr_s}: use 10 to 86400 seconds"
        );
        let enqueue_retry_s = file.enqueue_retry_s.unwrap_or(5);
        anyhow::ensure!(
            (1..=3600).contains(&enqueue_retry_s),
            "invalid enqueue_retry_s {enqueue_retry_s}: use 1 to 3600 seconds"
        );
        let supervisor_grace_s = file.supervisor_grace_s.unwrap_or(60);
        anyhow::ensure!(
            (2..=86_400).contains(&supervisor_grace_s),
            "invalid supervisor_grace_s {supervisor_grace_s}: use 2 to 86400 seconds"
        );
        let reap_interval_s = file.reap_interval_s.unwrap_or(5);
        anyhow::ensure!(
            (1..=3600).contains(&reap_interval_s),
            "invalid reap_interval_s {reap_interval_s}: use 1 to 3600 seconds"
        );
        // The policy crate's defaults are the ones cuttle-sim tunes.
        let defaults = cuttle_policy::PolicyConfig::default();
        let default_aging = cuttle_policy::DEFAULT_AGING;
        let aging_interval_s = file
            .aging_interval_s
            .unwrap_or(u64::try_from(default_aging.interval_ms / 1000).unwrap_or(3600));
        anyhow::ensure!(
            (1..=7 * 86_400).contains(&aging_interval_s),
            "invalid aging_interval_s {aging_interval_s}: use 1 to 604800 seconds"
        );
        let window = file
            .window
            .unwrap_or(u32::try_from(cuttle_policy::DEFAULT_WINDOW).unwrap_or(u32::MAX));
        anyhow::ensure!(
            (1..=1000).contains(&window),
            "invalid window {window}: use 1 to 1000 jobs"
        );
        let policy = PolicySettings {
            policy: cuttle_policy::PolicyConfig {
                aging: file.aging.unwrap_or(true).then(|| cuttle_policy::Aging {
                    interval_ms: i64::try_from(aging_interval_s * 1000).unwrap_or(i64::MAX),
                    step: file.aging_step.unwrap_or(default_aging.step),
                    floor: file.aging_floor.unwrap_or(default_aging.floor),
                }),
                backfill: file.backfill.unwrap_or(defaults.backfill),
                held_back_nodes: file.held_back_nodes.unwrap_or(defaults.held_back_nodes),
                fewer_nodes_first_below: file
                    .fewer_nodes_first_below
                    .unwrap_or(defaults.fewer_nodes_first_below),
            },
            window,
        };
        let max_db_connections = file.max_db_connections.unwrap_or(8);
        anyhow::ensure!(
            (1..=256).contains(&max_db_connections),
            "invalid max_db_connections {max_db_connections}: use 1 to 256"
        );
        Ok(Settings {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default address parses")),
            db,
            beanstalk,
            admin_token_file: cli
                .admin_token_file
                .or(file.admin_token_file)
                .unwrap_or_else(|| data_dir.join("admin.token")),
            data_dir,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            max_db_connections,
            job_ttr: Duration::from_secs(job_ttr_s.into()),
            enqueue_retry: Duration::from_secs(enqueue_retry_s),
            supervisor_grace: Duration::from_secs(supervisor_grace_s),
            reap_interval: Duration::from_secs(reap_interval_s),
            policy,
        })
    }
}

/// Checks `--beanstalk` is `HOST:PORT` with an IPv4 address or a host name: the
/// beanstalkc client dials IPv4 only, so an IPv6 address could never connect.
fn check_beanstalk_address(address: &str) -> anyhow::Result<()> {
    let usage =
        || format!("invalid --beanstalk {address:?}: use HOST:PORT, such as 127.0.0.1:11300");
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!(usage()))?;
    anyhow::ensure!(!host.is_empty() && port.parse::<u16>().is_ok(), usage());
    anyhow::ensure!(
        !host.contains(':') && !host.starts_with('['),
        "invalid --beanstalk {address:?}: beanstalkd is reached over IPv4 only; use an IPv4 address or a host name with one, such as 127.0.0.1:11300"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cuttle-api").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_need_no_file() {
        let settings =
            Settings::resolve(cli(&[]), FileConfig::default(), Some("/home/alice".into())).unwrap();
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(settings.beanstalk, DEFAULT_BEANSTALK);
        assert_eq!(
            settings.data_dir,
            PathBuf::from("/home/alice/.local/share/cuttle")
        );
        assert_eq!(
            settings.db,
            DatabaseTarget::Sqlite("/home/alice/.local/share/cuttle/cuttle.db".into())
        );
        assert_eq!(
            settings.admin_token_file,
            PathBuf::from("/home/alice/.local/share/cuttle/admin.token")
        );
    }

    #[test]
    fn flags_beat_the_file() {
        let file: FileConfig = cuttle_runtime::config::parse(
            "listen = \"127.0.0.1:9000\"\nbeanstalk = \"10.0.0.1:11300\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let settings = Settings::resolve(cli(&["--listen", "127.0.0.1:9001"]), file, None).unwrap();
        assert_eq!(settings.listen.port(), 9001);
        assert_eq!(settings.beanstalk, "10.0.0.1:11300");
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.data_dir, PathBuf::from("cuttle-data"));
    }

    #[test]
    fn bad_values_are_named() {
        let error = Settings::resolve(cli(&["--db", "mysql://x"]), FileConfig::default(), None)
            .unwrap_err();
        assert!(format!("{error:#}").contains("--db"), "{error:#}");
        let error = Settings::resolve(
            cli(&["--beanstalk", "localhost"]),
            FileConfig::default(),
            None,
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("HOST:PORT"), "{error:#}");
        assert!(Cli::try_parse_from(["cuttle-api", "--listen", "nowhere"]).is_err());
        for ipv6 in ["[::1]:11300", "::1:11300"] {
            let error = Settings::resolve(cli(&["--beanstalk", ipv6]), FileConfig::default(), None)
                .unwrap_err();
            assert!(
                format!("{error:#}").contains("IPv4 only"),
                "{ipv6}: {error:#}"
            );
        }
        Settings::resolve(
            cli(&["--beanstalk", "queue.lab:11300"]),
            FileConfig::default(),
            None,
        )
        .unwrap();
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../deploy/cuttle-api.toml");
        let file: FileConfig = cuttle_runtime::config::parse(text).unwrap();
        Settings::resolve(cli(&[]), file, None).unwrap();
    }
}
