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
    /// and `{os_version}`.
    pub prepare_command: Option<String>,
    /// Runs the job; its exit status decides pass (0) or fail. Default: the local runner
    /// shipped with cuttle, which simulates the job its config describes. teuthology's:
    /// `teuthology -v --owner {owner} --archive {archive} --name {run} -- {job_config}`.
    pub runner_command: String,
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
            runner_command: DEFAULT_RUNNER.to_owned(),
            collect_logs_command: None,
            nuke_command: None,
            max_job_time_s: 3 * 24 * 3600,
            command_timeout_s: 1800,
            heartbeat_interval_ms: 5_000,
            kill_grace_ms: 30_000,
        }
    }
}

/// The local runner shipped with cuttle (see `cuttle-local-runner --help`).
pub const DEFAULT_RUNNER: &str =
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
            self.kill_grace_ms <= 600_000,
            "lab.kill_grace_ms {}: use at most 600000",
            self.kill_grace_ms
        );
        Ok(())
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut all = vec![("runner_command", self.runner_command.as_str())];
        for (key, template) in [
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
    pub fn job_archive(&self, run: &str, job_id: i64) -> PathBuf {
        self.archive_dir.join(run).join(job_id.to_string())
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
