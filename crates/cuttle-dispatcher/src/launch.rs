//! Starting supervisors, as a trait ([`Launcher`]) the real process launcher
//! ([`ProcessLauncher`]) implements, so the dispatcher's handshake with its supervisors
//! (start, record, then "go") is unit-tested too.

use std::future::Future;
use std::process::Stdio;

use anyhow::Context;
use cuttle_core::Job;
use tokio::io::AsyncWriteExt;

use crate::settings::Settings;

/// A started supervisor, waiting on its standard input for the word to go.
pub trait Supervisor: Send + 'static {
    fn pid(&self) -> u32;
    /// Tells it to go: its dispatch is recorded.
    fn go(&mut self) -> impl Future<Output = ()> + Send;
    /// Lets it go its way: closes its standard input (without "go" it finds its dispatch
    /// unrecorded and exits touching nothing) and reaps it in the background, calling
    /// `on_exit` once it has exited.
    fn detach(self, on_exit: Box<dyn FnOnce() + Send>);
}

/// Starts supervisors.
pub trait Launcher: Send + Sync {
    type Child: Supervisor;
    /// Starts a supervisor for `job`. `release` starts one that only gives an ended job's
    /// nodes back (it needs no "go").
    fn spawn(&self, job: &Job, release: bool) -> anyhow::Result<Self::Child>;
}

/// `cuttle-supervisor` processes.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    settings: Settings,
    lab_json: String,
}

impl ProcessLauncher {
    pub fn new(settings: Settings) -> anyhow::Result<ProcessLauncher> {
        let lab_json = serde_json::to_string(&settings.lab).context("cannot encode [lab]")?;
        Ok(ProcessLauncher { settings, lab_json })
    }
}

/// A running `cuttle-supervisor`.
#[derive(Debug)]
pub struct Process {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Supervisor for Process {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn go(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // If this fails the supervisor sees end-of-file and checks the record itself,
            // which now says it runs.
            let _ = stdin.write_all(b"go\n").await;
        }
    }

    fn detach(mut self, on_exit: Box<dyn FnOnce() + Send>) {
        drop(self.stdin.take());
        tokio::spawn(async move {
            let _ = self.child.wait().await;
            on_exit();
        });
    }
}

impl Launcher for ProcessLauncher {
    type Child = Process;

    /// Starts `cuttle-supervisor` for a job in its own process group, so signals meant for
    /// this dispatcher (a terminal's Ctrl-C, a restart) never reach it. Its output goes to
    /// `supervisor.log` in the job's archive.
    fn spawn(&self, job: &Job, release: bool) -> anyhow::Result<Process> {
        let settings = &self.settings;
        // A supervisor starts even when its log cannot be written (a full archive disk):
        // it is the one that ends such a job with the reason and gives its nodes back.
        let log = settings
            .lab
            .job_archive(job.run_name.as_str(), job.id.0)
            .and_then(|archive| {
                std::fs::create_dir_all(&archive).with_context(|| {
                    format!("cannot create the job archive {}", archive.display())
                })?;
                let log_path = archive.join("supervisor.log");
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .with_context(|| format!("cannot open {}", log_path.display()))
            });
        let log = match log {
            Ok(log) => log,
            Err(error) => {
                tracing::error!(job_id = %job.id, error = %format!("{error:#}"), "the supervisor's log is discarded");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .context("cannot open /dev/null")?
            }
        };
        let mut command = tokio::process::Command::new(&settings.supervisor_bin);
        command
            .arg("--job-id")
            .arg(job.id.to_string())
            .arg("--api")
            .arg(&settings.api)
            .env("CUTTLE_LAB_JSON", &self.lab_json)
            .env(
                "CUTTLE_LOG_FORMAT",
                match settings.log_format {
                    cuttle_runtime::telemetry::LogFormat::Json => "json",
                    cuttle_runtime::telemetry::LogFormat::Text => "text",
                },
            )
            .stdin(if release {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(log.try_clone().context("cannot share the supervisor log")?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        // The supervisor acts with the dispatcher's service token and CA; the environment
        // (unlike a command line) is private to the process and root. Unset, not empty,
        // when there is none: an empty value is no value to the supervisor.
        command
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_TLS_CA_FILE");
        if let Some(token) = &settings.token {
            command.env("CUTTLE_TOKEN", token.expose());
        }
        if let Some(ca) = &settings.tls_ca_file {
            command.env("CUTTLE_TLS_CA_FILE", ca);
        }
        if release {
            command.arg("--release");
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start {}; set supervisor_bin in the config file",
                settings.supervisor_bin.display()
            )
        })?;
        let stdin = child.stdin.take();
        Ok(Process { child, stdin })
    }
}
