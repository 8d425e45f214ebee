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
    /// Address to serve HTTP on: the build-status webhook (POST /webhook/build-status)
    /// and /healthz [default: none, no HTTP listener].
    #[arg(long, env = "CUTTLE_HTTP_LISTEN", value_name = "HOST:PORT")]
    pub http_listen: Option<SocketAddr>,
    /// Shaman's base URL (such as https://shaman.ceph.com): suites check their build
    /// there first, and AutoSuites are polled there [default: none, builds unchecked].
    #[arg(long, env = "CUTTLE_SHAMAN_URL", value_name = "URL")]
    pub shaman_url: Option<String>,
    /// File holding the webhook's shared HMAC secret; without it the webhook answers
    /// 503 [default: none].
    #[arg(long, env = "CUTTLE_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds between polls of Shaman for the builds AutoSuites wait on (webhooks get
    /// lost) [default: 300].
    #[arg(long, env = "CUTTLE_SHAMAN_POLL_S", value_name = "SECONDS")]
    pub shaman_poll_s: Option<u64>,
    /// A directory holding job archives as RUN/JOB/ (a dispatcher host's archive_dir, or
    /// its mount here); the status page serves logs from these. Repeat for several hosts;
    /// CUTTLE_ARCHIVE_ROOTS takes a comma-separated list [default: none, no logs served].
    #[arg(
        long = "archive-root",
        env = "CUTTLE_ARCHIVE_ROOTS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub archive_roots: Vec<PathBuf>,
    /// The status page's address as people reach it, such as http://teuthology:8080; links
    /// printed by `cuttle job show` start with it [default: http://<http-listen>].
    #[arg(long, env = "CUTTLE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
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
    /// How many reserved jobs a dispatcher plans over at once (default 1000).
    pub window: Option<u32>,
    /// Among jobs submitted together with the same priority (a suite), those with a
    /// priority below this start their smaller jobs first, the others their biggest
    /// first (default 1000, teuthology's default priority).
    pub fewer_nodes_first_below: Option<u32>,
    /// PEM certificate (chain) cuttle-api serves TLS with; with `tls_key_file`. Without
    /// both, gRPC is plain (keep `listen` on loopback then). Clients dial `https://HOST`
    /// with the CA that signed it.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Whether callers without a token may read (list and show runs, jobs, nodes,
    /// queues, health, the lock history); default true. Writes always need a token.
    pub anonymous_reads: Option<bool>,
    /// Consecutive failed prepares (reimages) after which a node is marked down
    /// (default 3).
    pub max_prepare_strikes: Option<u32>,
    /// How many times a job goes back to the queue after a failed prepare before it ends
    /// dead (default 3).
    pub max_prepare_retries: Option<u32>,
    /// The git repository suites are read from when a ScheduleSuite names neither
    /// `suite_dir` nor `suite_repo` (a URL or a path on this host; default: none).
    pub suite_repo: Option<String>,
    /// A git repository of teuthology whose branches pin each run's teuthology commit
    /// (`git ls-remote`); default: none, and runs record the branch with the commit
    /// the request gives, if any.
    pub teuthology_repo: Option<String>,
    /// A suite run of more jobs than this is refused unless an admin lifts it with
    /// --job-threshold (teuthology's default, 500).
    pub suite_job_threshold: Option<u32>,
    /// A suite whose matrix holds more jobs than this, before filters, is refused before
    /// it is expanded (default 1000000).
    pub max_suite_matrix: Option<u64>,
    /// The command a suite run's results e-mail is piped to, as a whole message with
    /// To:, From: and Subject: headers, run with `sh -c` (e.g. "/usr/sbin/sendmail -t");
    /// default: none, and the report is only logged.
    pub mail_command: Option<String>,
    /// The From: address of results e-mails (default "cuttle@localhost").
    pub mail_from: Option<String>,
    /// Directories a ScheduleSuite's `suite_dir` must lie under (after symlinks are
    /// resolved); default: none, and any directory cuttle-api can read is accepted.
    pub suite_dir_roots: Option<Vec<PathBuf>>,
    /// Address to serve HTTP on (the build-status webhook and /healthz).
    pub http_listen: Option<SocketAddr>,
    /// Shaman's base URL; suites check their build there.
    pub shaman_url: Option<String>,
    /// File holding the webhook's shared HMAC secret.
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds between polls of Shaman for waiting AutoSuites (default 300).
    pub shaman_poll_s: Option<u64>,
    /// Hours an AutoSuite may wait for its build before it expires (default 168).
    pub autosuite_max_age_h: Option<u64>,
    /// Directories holding job archives as RUN/JOB/ (the dispatchers' archive_dir, or
    /// their mounts); the status page serves logs from the first that has a job.
    pub archive_roots: Option<Vec<PathBuf>>,
    /// The status page's address as people reach it (default http://<http_listen>).
    pub public_url: Option<String>,
    /// A queued job whose `timestamp` (when its suite was scheduled) is older than this
    /// many seconds is not started but ends dead as expired (teuthology's max_job_age;
    /// default 1209600, two weeks).
    pub max_job_age_s: Option<u64>,
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
    pub strikes: cuttle_core::dispatch::StrikePolicy,
    pub anonymous_reads: bool,
    /// TLS for the gRPC listener: the certificate and key files.
    pub tls: Option<TlsFiles>,
    pub suites: SuiteSettings,
    pub builds: BuildSettings,
    /// teuthology's max_job_age, in seconds.
    pub max_job_age_s: i64,
    pub web: WebSettings,
}

/// The status page and the archives it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSettings {
    /// Where job archives are found, as RUN/JOB/ under each.
    pub archive_roots: Vec<PathBuf>,
    /// The page's base URL, without a trailing slash.
    pub public_url: Option<String>,
}

/// The HTTP listener, Shaman, the webhook and AutoSuites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSettings {
    pub http_listen: Option<SocketAddr>,
    /// Shaman's base URL, without a trailing slash.
    pub shaman_url: Option<String>,
    pub webhook_secret_file: Option<PathBuf>,
    pub shaman_poll: Duration,
    pub autosuite_max_age: Duration,
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings {
            http_listen: None,
            shaman_url: None,
            webhook_secret_file: None,
            shaman_poll: Duration::from_secs(300),
            autosuite_max_age: Duration::from_secs(168 * 3600),
        }
    }
}

/// Where suites come from and how big they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteSettings {
    pub suite_repo: Option<String>,
    pub teuthology_repo: Option<String>,
    pub job_threshold: u64,
    pub max_matrix: u64,
    pub mail_command: Option<String>,
    pub mail_from: String,
    /// When not empty, `suite_dir` must resolve under one of these.
    pub dir_roots: Vec<PathBuf>,
}

impl Default for SuiteSettings {
    fn default() -> Self {
        SuiteSettings {
            suite_repo: None,
            teuthology_repo: None,
            job_threshold: 500,
            max_matrix: 1_000_000,
            mail_command: None,
            mail_from: "cuttle@localhost".into(),
            dir_roots: Vec::new(),
        }
    }
}

/// The files cuttle-api serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    /// The supervisor grace in milliseconds, as the database's times are kept.
    pub fn supervisor_grace_ms(&self) -> i64 {
        i64::try_from(self.supervisor_grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// A cuttle-api for a lab on this machine: a free loopback port, text logs, the admin
    /// token in `data_dir`, quick enqueue retries and the defaults elsewhere. Tests and
    /// benchmarks start here and change what they need.
    pub fn local(db: DatabaseTarget, beanstalk: String, data_dir: PathBuf) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().expect("a loopback address"),
            db,
            beanstalk,
            admin_token_file: data_dir.join("admin.token"),
            data_dir,
            log_format: LogFormat::Text,
            max_db_connections: 8,
            job_ttr: Duration::from_secs(300),
            enqueue_retry: Duration::from_secs(5),
            supervisor_grace: Duration::from_secs(60),
            reap_interval: Duration::from_secs(5),
            policy: PolicySettings::default(),
            strikes: cuttle_core::dispatch::StrikePolicy::default(),
            anonymous_reads: true,
            tls: None,
            suites: SuiteSettings::default(),
            builds: BuildSettings::default(),
            max_job_age_s: cuttle_core::expiry::DEFAULT_MAX_JOB_AGE_S,
            web: WebSettings::default(),
        }
    }

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
            (1..=10_000).contains(&window),
            "invalid window {window}: use 1 to 10000 jobs"
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
        let strike_defaults = cuttle_core::dispatch::StrikePolicy::default();
        let strikes = cuttle_core::dispatch::StrikePolicy {
            max_prepare_strikes: file
                .max_prepare_strikes
                .unwrap_or(strike_defaults.max_prepare_strikes),
            max_prepare_retries: file
                .max_prepare_retries
                .unwrap_or(strike_defaults.max_prepare_retries),
        };
        anyhow::ensure!(
            (1..=100).contains(&strikes.max_prepare_strikes),
            "invalid max_prepare_strikes {}: use 1 to 100",
            strikes.max_prepare_strikes
        );
        anyhow::ensure!(
            strikes.max_prepare_retries <= 100,
            "invalid max_prepare_retries {}: use 0 to 100",
            strikes.max_prepare_retries
        );
        let suite_defaults = SuiteSettings::default();
        let suites = SuiteSettings {
            suite_repo: file.suite_repo.clone().filter(|r| !r.trim().is_empty()),
            teuthology_repo: file
                .teuthology_repo
                .clone()
                .filter(|r| !r.trim().is_empty()),
            job_threshold: file
                .suite_job_threshold
                .map_or(suite_defaults.job_threshold, u64::from),
            max_matrix: file.max_suite_matrix.unwrap_or(suite_defaults.max_matrix),
            mail_command: file.mail_command.clone().filter(|c| !c.trim().is_empty()),
            mail_from: file.mail_from.clone().unwrap_or(suite_defaults.mail_from),
            dir_roots: file.suite_dir_roots.clone().unwrap_or_default(),
        };
        for root in &suites.dir_roots {
            anyhow::ensure!(
                root.is_absolute(),
                "invalid suite_dir_roots entry {}: give absolute paths",
                root.display()
            );
        }
        anyhow::ensure!(
            (1..=100_000_000).contains(&suites.max_matrix),
            "invalid max_suite_matrix {}: use 1 to 100000000",
            suites.max_matrix
        );
        let build_defaults = BuildSettings::default();
        let shaman_poll_s = cli
            .shaman_poll_s
            .or(file.shaman_poll_s)
            .unwrap_or(build_defaults.shaman_poll.as_secs());
        anyhow::ensure!(
            (1..=86_400).contains(&shaman_poll_s),
            "invalid shaman_poll_s {shaman_poll_s}: use 1 to 86400 seconds"
        );
        let max_age_h = file
            .autosuite_max_age_h
            .unwrap_or(build_defaults.autosuite_max_age.as_secs() / 3600);
        anyhow::ensure!(
            (1..=24 * 365).contains(&max_age_h),
            "invalid autosuite_max_age_h {max_age_h}: use 1 to 8760 hours"
        );
        let shaman_url = match cli.shaman_url.or(file.shaman_url.clone()) {
            Some(url) if !url.trim().is_empty() => Some(check_shaman_url(url.trim())?),
            _ => None,
        };
        let builds = BuildSettings {
            http_listen: cli.http_listen.or(file.http_listen),
            shaman_url,
            webhook_secret_file: cli.webhook_secret_file.or(file.webhook_secret_file.clone()),
            shaman_poll: Duration::from_secs(shaman_poll_s),
            autosuite_max_age: Duration::from_secs(max_age_h * 3600),
        };
        let max_job_age_s = file
            .max_job_age_s
            .map_or(cuttle_core::expiry::DEFAULT_MAX_JOB_AGE_S, |s| {
                i64::try_from(s).unwrap_or(i64::MAX)
            });
        anyhow::ensure!(
            (3600..=365 * 86_400).contains(&max_job_age_s),
            "invalid max_job_age_s {max_job_age_s}: use 3600 to 31536000 seconds"
        );
        let archive_roots = if cli.archive_roots.is_empty() {
            file.archive_roots.clone().unwrap_or_default()
        } else {
            cli.archive_roots
        };
        for root in &archive_roots {
            anyhow::ensure!(
                root.is_absolute(),
                "invalid archive_roots entry {}: give absolute paths (the dispatchers' archive_dir)",
                root.display()
            );
        }
        let public_url = match cli.public_url.or(file.public_url.clone()) {
            Some(url) if !url.trim().is_empty() => {
                let url = url.trim().trim_end_matches('/').to_owned();
                let parsed = url::Url::parse(&url).map_err(|e| {
                    anyhow::anyhow!("invalid --public-url {url:?}: {e}; use a URL such as http://teuthology:8080")
                })?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "http" | "https"),
                    "invalid --public-url {url:?}: use an http or https URL such as http://teuthology:8080"
                );
                Some(url)
            }
            _ => None,
        };
        let web = WebSettings {
            archive_roots,
            public_url,
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
            strikes,
            anonymous_reads: file.anonymous_reads.unwrap_or(true),
            tls: match (file.tls_cert_file, file.tls_key_file) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => anyhow::bail!(
                    "tls_cert_file and tls_key_file go together: give both to serve TLS, or neither"
                ),
            },
            suites,
            builds,
            max_job_age_s,
            web,
        })
    }
}

/// Checks `--shaman-url` is an http(s) URL and drops a trailing slash.
fn check_shaman_url(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).map_err(|e| {
        anyhow::anyhow!(
            "invalid --shaman-url {url:?}: {e}; use a URL such as https://shaman.ceph.com"
        )
    })?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some(),
        "invalid --shaman-url {url:?}: use an http or https URL such as https://shaman.ceph.com"
    );
    Ok(url.trim_end_matches('/').to_owned())
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
