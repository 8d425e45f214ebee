//! A lab's node operations: the commands that reimage, run, collect logs from and nuke
//! nodes, with their limits. Labs differ (FOG, MAAS, cloud, containers, a laptop), so
//! every command is a template the operator writes in the dispatcher's config file.
//!
//! The dispatcher reads this from its `[lab]` table and hands it, resolved, to each
//! supervisor it starts (as JSON in `CUTTLE_LAB_JSON`), so a supervisor runs with exactly
//! the settings of the dispatcher that started it even if the file changes later.
//!
//! A template is split into words first (single and double quotes group words) and the
//! placeholders are filled in each word afterwards, so a value can never become extra
//! arguments or shell syntax. Write `sh -c '…'` yourself when you want a shell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The placeholders a command template may use.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("job_id", "the cuttle job id"),
    ("run", "the run name"),
    ("owner", "the run's owner"),
    ("machine_type", "the machine type"),
    ("description", "the job description"),
    ("nodes", "the job's node names, comma separated"),
    ("node", "one node's name (nuke_command runs once per node)"),
    ("os_type", "the job's os type, e.g. ubuntu"),
    ("os_version", "the job's os version, e.g. 22.04"),
    (
        "archive",
        "the job's archive directory, <archive_dir>/<run>/<job_id>",
    ),
    (
        "job_config",
        "the job's config YAML, written to <archive>/config.yaml",
    ),
    ("bin_dir", "the directory holding the cuttle binaries"),
];

/// The `[lab]` table of the dispatcher's config file. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabConfig {
    /// Root of the job archive: each job's logs go to `<archive_dir>/<run>/<job_id>/`.
    pub archive_dir: PathBuf,
    /// Reimages the job's nodes before it runs; none by default (the local lab's nodes
    /// need no reimage). A real lab: its FOG or MAAS tool on `{nodes}` with `{os_type}`
    /// and `{os_version}`. With `{node}` it runs once per node, so a failure is charged to
    /// the node that failed (a strike) rather than to all of the job's nodes.
    pub prepare_command: Option<String>,
    /// Runs the job with a command of the lab's own; its exit status decides pass (0) or
    /// fail, and a `failure_reason` in `{archive}/summary.yaml` becomes the job's reason.
    /// Default: none, and jobs run under teuthology as teuthology's own supervisor runs
    /// them (`teuthology_bin`). A local lab sets the simulating runner,
    /// [`LOCAL_RUNNER`].
    pub runner_command: Option<String>,
    /// The teuthology executable jobs run under when there is no `runner_command`
    /// (default `teuthology`, found on PATH).
    pub teuthology_bin: PathBuf,
    /// The teuthology config file teuthology runs with (given to it as
    /// TEUTHOLOGY_CONFIG); default none, teuthology's own default (~/.teuthology.yaml).
    pub teuthology_config: Option<PathBuf>,
    /// The user teuthology logs in to the nodes as: a job's `targets` are
    /// `<ssh_user>@<node>` (default `ubuntu`, teuthology's).
    pub ssh_user: String,
    /// Fetches a node's ssh host key when its record has none, such as
    /// `ssh-keyscan -t ed25519 {node}`: the first line of its output that is
    /// `HOST KEYTYPE KEY` gives `KEYTYPE KEY`. Default: none, and a job with roles on a
    /// node without a key ends dead, saying how to set it.
    pub keyscan_command: Option<String>,
    /// Where this host keeps checkouts of the suite (qa) and teuthology commits runs are
    /// pinned to, one per commit, shared by a run's jobs. Default: none, and teuthology
    /// finds (or clones) the suite itself, as a job's `suite_path` says.
    pub checkout_dir: Option<PathBuf>,
    /// The teuthology repository whose commit a run pinned (`teuthology_sha1`) is checked
    /// out and run from; default none, and every job runs `teuthology_bin`.
    pub teuthology_repo: Option<String>,
    /// Run once in each new teuthology checkout, such as `./bootstrap` (teuthology's own
    /// script, which builds its virtualenv); default none.
    pub teuthology_bootstrap_command: Option<String>,
    /// The teuthology executable inside a bootstrapped checkout (default
    /// `virtualenv/bin/teuthology`, where teuthology's bootstrap puts it).
    pub teuthology_bin_in_checkout: PathBuf,
    /// Checkouts unused for this many days are removed (default 14).
    pub checkout_max_age_days: u64,
    /// Copies logs off the nodes into `{archive}` when a job runs out of time or is
    /// killed, before the runner is ended; none by default.
    pub collect_logs_command: Option<String>,
    /// Cleans one node (`{node}`) after a job that did not pass; none by default, in which
    /// case nodes are unlocked directly. A node whose nuke fails is marked down with the
    /// reason, never silently handed out again.
    pub nuke_command: Option<String>,
    /// A job's time limit when its config sets no `timeout`, in seconds (teuthology's
    /// `max_job_time`; default 3 days).
    pub max_job_time_s: u64,
    /// How long prepare, collect-logs and nuke commands may take each, in seconds.
    pub command_timeout_s: u64,
    /// How often a supervisor heartbeats to cuttle-api, in milliseconds. Keep it well
    /// under cuttle-api's `supervisor_grace_s`.
    pub heartbeat_interval_ms: u64,
    /// After SIGTERM, how long the runner's process group gets before SIGKILL, in
    /// milliseconds.
    pub kill_grace_ms: u64,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            archive_dir: PathBuf::from("cuttle-archive"),
            prepare_command: None,
            runner_command: None,
            teuthology_bin: PathBuf::from("teuthology"),
            teuthology_config: None,
            ssh_user: "ubuntu".to_owned(),
            keyscan_command: None,
            checkout_dir: None,
            teuthology_repo: None,
            teuthology_bootstrap_command: None,
            teuthology_bin_in_checkout: PathBuf::from("virtualenv/bin/teuthology"),
            checkout_max_age_days: 14,
            collect_logs_command: None,
            nuke_command: None,
            max_job_time_s: 3 * 24 * 3600,
            command_timeout_s: 1800,
            heartbeat_interval_ms: 5_000,
            kill_grace_ms: 30_000,
        }
    }
}

/// The local runner shipped with cuttle, which simulates jobs (see
/// `cuttle-local-runner --help`): a local lab's `runner_command`.
pub const LOCAL_RUNNER: &str =
    "{bin_dir}/cuttle-local-runner --job-config {job_config} --archive {archive}";

impl LabConfig {
    /// Checks every template parses and the limits are sane; the error names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, template) in self.templates() {
            Template::parse(template).map_err(|e| anyhow::anyhow!("lab.{key}: {e}"))?;
        }
        anyhow::ensure!(
            (1..=30 * 24 * 3600).contains(&self.max_job_time_s),
            "lab.max_job_time_s {}: use 1 to 2592000 seconds",
            self.max_job_time_s
        );
        anyhow::ensure!(
            (1..=86_400).contains(&self.command_timeout_s),
            "lab.command_timeout_s {}: use 1 to 86400 seconds",
            self.command_timeout_s
        );
        anyhow::ensure!(
            (100..=600_000).contains(&self.heartbeat_interval_ms),
            "lab.heartbeat_interval_ms {}: use 100 to 600000",
            self.heartbeat_interval_ms
        );
        anyhow::ensure!(
            !self.ssh_user.is_empty()
                && self
                    .ssh_user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "lab.ssh_user {:?}: use a user name (letters, digits, . _ -)",
            self.ssh_user
        );
        anyhow::ensure!(
            (1..=3650).contains(&self.checkout_max_age_days),
            "lab.checkout_max_age_days {}: use 1 to 3650",
            self.checkout_max_age_days
        );
        anyhow::ensure!(
            self.teuthology_bin_in_checkout.is_relative(),
            "lab.teuthology_bin_in_checkout {}: give a path inside the checkout",
            self.teuthology_bin_in_checkout.display()
        );
        anyhow::ensure!(
            self.kill_grace_ms <= 600_000,
            "lab.kill_grace_ms {}: use at most 600000",
            self.kill_grace_ms
        );
        Ok(())
    }

    /// Checks the runner can start on this host: teuthology's executable exists (on PATH
    /// when it is a bare name) and its config file is readable. A command runner is the
    /// lab's to check.
    pub fn check_runner(&self) -> anyhow::Result<()> {
        if self.runner_command.is_some() {
            return Ok(());
        }
        let bin = &self.teuthology_bin;
        let found = if bin.components().count() > 1 {
            bin.is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(bin).is_file()))
        };
        anyhow::ensure!(
            found,
            "teuthology not found at {} (lab.teuthology_bin, --teuthology-bin): jobs run under teuthology unless the lab sets a runner_command; install teuthology (e.g. `python3 -m venv /opt/teuthology && /opt/teuthology/bin/pip install teuthology`) and point --teuthology-bin at it, or for a local lab pass --runner-command '{LOCAL_RUNNER}'",
            bin.display()
        );
        if let Some(config) = &self.teuthology_config {
            std::fs::metadata(config).with_context(|| {
                format!(
                    "cannot read the teuthology config {} (lab.teuthology_config, --teuthology-config)",
                    config.display()
                )
            })?;
        }
        Ok(())
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut all = Vec::new();
        for (key, template) in [
            ("runner_command", &self.runner_command),
            ("keyscan_command", &self.keyscan_command),
            (
                "teuthology_bootstrap_command",
                &self.teuthology_bootstrap_command,
            ),
            ("prepare_command", &self.prepare_command),
            ("collect_logs_command", &self.collect_logs_command),
            ("nuke_command", &self.nuke_command),
        ] {
            if let Some(template) = template {
                all.push((key, template.as_str()));
            }
        }
        all
    }

    /// A job's archive directory.
    ///
    /// The run name is checked again here (cuttle-core's rules: never `.` or `..`, never a
    /// `/`), whoever it came from, and the result must lie inside the archive root: a job's
    /// files are never written anywhere else.
    pub fn job_archive(&self, run: &str, job_id: i64) -> anyhow::Result<PathBuf> {
        let run = cuttle_core::RunName::parse(run)
            .map_err(|e| anyhow::anyhow!("refusing to archive job {job_id}: {e}"))?;
        anyhow::ensure!(job_id > 0, "refusing to archive job {job_id}: not a job id");
        let path = self.archive_dir.join(run.as_str()).join(job_id.to_string());
        let escapes = path
            .strip_prefix(&self.archive_dir)
            .map(|rest| {
                rest.components()
                    .any(|part| !matches!(part, std::path::Component::Normal(_)))
            })
            .unwrap_or(true);
        anyhow::ensure!(
            !escapes,
            "refusing to archive job {job_id}: {} is outside the archive root {}",
            path.display(),
            self.archive_dir.display()
        );
        Ok(path)
    }
}

/// A parsed command template: words, each with placeholders to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<String>,
}

impl Template {
    /// Splits `text` into words. Quotes group words and are removed; there are no escapes.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut quote: Option<char> = None;
        for c in text.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => word.push(c),
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                None if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                None => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!("unclosed {q} quote in {text:?}"));
        }
        if in_word {
            words.push(word);
        }
        if words.is_empty() {
            return Err("the command is empty".into());
        }
        for word in &words {
            for name in placeholders_in(word)? {
                if !PLACEHOLDERS.iter().any(|(known, _)| *known == name) {
                    let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown placeholder {{{name}}}; use one of {{{}}}",
                        known.join("}, {")
                    ));
                }
            }
        }
        Ok(Template { words })
    }

    /// Whether placeholder `name` appears anywhere in the template.
    pub fn uses(&self, name: &str) -> bool {
        self.words
            .iter()
            .any(|word| placeholders_in(word).is_ok_and(|names| names.contains(&name)))
    }

    /// The program and its arguments with every placeholder filled from `values`; a
    /// placeholder without a value becomes empty.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> Vec<String> {
        self.words
            .iter()
            .map(|word| {
                let mut out = String::new();
                let mut rest = word.as_str();
                while let Some(start) = rest.find('{') {
                    out.push_str(&rest[..start]);
                    let after = &rest[start + 1..];
                    match after.find('}') {
                        Some(end) => {
                            let name = &after[..end];
                            out.push_str(values.get(name).map(String::as_str).unwrap_or(""));
                            rest = &after[end + 1..];
                        }
                        None => {
                            out.push_str(&rest[start..]);
                            rest = "";
                        }
                    }
                }
                out.push_str(rest);
                out
            })
            .filter(|word| !word.is_empty())
            .collect()
    }
}

/// The `{name}` placeholders in one word.
fn placeholders_in(word: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {word:?}"))?;
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// The directory holding the running binary, where its sibling cuttle binaries live.
pub fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_archive_stays_inside_the_archive_root() {
        let lab = LabConfig {
            archive_dir: PathBuf::from("/srv/archive"),
            ..LabConfig::default()
        };
        assert_eq!(
            lab.job_archive("alice-run", 7).unwrap(),
            PathBuf::from("/srv/archive/alice-run/7")
        );
        for run in ["..", ".", "../etc", "a/b", ""] {
            let error = lab.job_archive(run, 7).unwrap_err();
            assert!(
                error.to_string().contains("refusing to archive job 7"),
                "{error}"
            );
        }
        assert!(lab.job_archive("alice-run", 0).is_err());
    }

    fn values() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("nodes", "n1,n2".to_owned()),
            ("archive", "/a/r/1".to_owned()),
            ("run", "my run; rm -rf /".to_owned()),
        ])
    }

    #[test]
    fn words_are_split_before_values_are_filled() {
        let template =
            Template::parse("reimage --nodes {nodes} --log {archive}/reimage.log --name {run}")
                .unwrap();
        assert_eq!(
            template.render(&values()),
            [
                "reimage",
                "--nodes",
                "n1,n2",
                "--log",
                "/a/r/1/reimage.log",
                "--name",
                "my run; rm -rf /"
            ]
        );
    }

    #[test]
    fn quotes_group_words() {
        let template = Template::parse("sh -c 'echo {nodes} > \"{archive}/x\"'").unwrap();
        assert_eq!(
            template.render(&values()),
            ["sh", "-c", "echo n1,n2 > \"/a/r/1/x\""]
        );
    }

    #[test]
    fn bad_templates_are_named() {
        assert!(Template::parse("  ").unwrap_err().contains("empty"));
        assert!(
            Template::parse("echo 'open")
                .unwrap_err()
                .contains("unclosed")
        );
        let error = Template::parse("nuke {hostname}").unwrap_err();
        assert!(
            error.contains("{hostname}") && error.contains("{node}"),
            "{error}"
        );
    }

    #[test]
    fn the_defaults_validate_and_bad_limits_are_named() {
        LabConfig::default().validate().unwrap();
        let lab = LabConfig {
            heartbeat_interval_ms: 5,
            ..LabConfig::default()
        };
        assert!(
            lab.validate()
                .unwrap_err()
                .to_string()
                .contains("heartbeat_interval_ms")
        );
        let lab = LabConfig {
            nuke_command: Some("nuke {nod}".into()),
            ..LabConfig::default()
        };
        assert!(
            lab.validate()
                .unwrap_err()
                .to_string()
                .contains("lab.nuke_command")
        );
    }
}
