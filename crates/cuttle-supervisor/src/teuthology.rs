//! Running a job under teuthology as teuthology's own supervisor does
//! (`teuthology/dispatcher/supervisor.py`): the job config gets `archive_path`, `job_id`,
//! `targets` (for a job with roles), `name`, `owner`, `description` and `verbose`, and
//! teuthology runs it with
//! `teuthology -v --owner O --archive ARCHIVE --name RUN --description D -- CONFIG`.
//! What it leaves in `summary.yaml` decides the job's reason.
//!
//! The functions here are pure (YAML in, YAML or arguments out); `lib.rs` does the IO.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::{Mapping, Value};

/// What the supervisor knows of a job, for its teuthology config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts<'a> {
    pub job_id: i64,
    pub run: &'a str,
    pub owner: &'a str,
    pub description: &'a str,
    pub machine_type: &'a str,
    pub os_type: &'a str,
    pub os_version: &'a str,
}

/// Whether a job config asks for machines: teuthology locks one per `roles` entry, and a
/// job without roles runs without targets.
pub fn wants_targets(config_yaml: &str) -> Result<bool, String> {
    let config = mapping(config_yaml)?;
    Ok(config
        .get("roles")
        .and_then(Value::as_sequence)
        .is_some_and(|roles| !roles.is_empty()))
}

fn mapping(config_yaml: &str) -> Result<Mapping, String> {
    match serde_yaml::from_str::<Value>(config_yaml) {
        Ok(Value::Mapping(map)) => Ok(map),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err("the job config is not a YAML mapping, so teuthology cannot run it".into()),
        Err(error) => Err(format!("the job config is not valid YAML: {error}")),
    }
}

/// What a run pinned, as its jobs' configs carry it (`cuttle suite` writes these).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pub suite_repo: Option<String>,
    pub suite_sha1: Option<String>,
    /// The qa directory inside the suite repository (default `qa`).
    pub suite_relpath: String,
    pub teuthology_sha1: Option<String>,
    /// The job names its suite checkout itself: nothing to pin.
    pub has_suite_path: bool,
}

/// The pins a job config carries.
pub fn pins(config_yaml: &str) -> Result<Pins, String> {
    let config = mapping(config_yaml)?;
    let text = |key: &str| {
        config
            .get(Value::String(key.to_owned()))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(Pins {
        suite_repo: text("suite_repo"),
        suite_sha1: text("suite_sha1"),
        suite_relpath: text("suite_relpath").unwrap_or_else(|| "qa".to_owned()),
        teuthology_sha1: text("teuthology_sha1"),
        has_suite_path: text("suite_path").is_some(),
    })
}

/// The config teuthology runs: the job's, with what teuthology's supervisor adds.
/// `targets` maps `user@node` to the node's ssh host key (only for a job with roles).
pub fn job_config(
    config_yaml: &str,
    facts: &JobFacts<'_>,
    archive: &Path,
    targets: Option<&BTreeMap<String, String>>,
    suite_path: Option<&Path>,
) -> Result<String, String> {
    let mut config = mapping(config_yaml)?;
    if let Some(path) = suite_path {
        config.insert(
            Value::String("suite_path".into()),
            Value::String(path.display().to_string()),
        );
    }
    let mut set = |key: &str, value: Value| {
        config.insert(Value::String(key.to_owned()), value);
    };
    // Always cuttle's: where the archive is, and which job this is.
    set("archive_path", Value::String(archive.display().to_string()));
    set("job_id", Value::String(facts.job_id.to_string()));
    if let Some(targets) = targets {
        let map: Mapping = targets
            .iter()
            .map(|(target, key)| (Value::String(target.clone()), Value::String(key.clone())))
            .collect();
        set("targets", Value::Mapping(map));
    }
    // The job's own where it has them; cuttle's record otherwise.
    let mut default = |key: &str, value: &str| {
        let key = Value::String(key.to_owned());
        let missing = config.get(&key).is_none_or(Value::is_null);
        if missing && !value.is_empty() {
            config.insert(key, Value::String(value.to_owned()));
        }
    };
    default("name", facts.run);
    default("owner", facts.owner);
    default("description", facts.description);
    default("machine_type", facts.machine_type);
    default("os_type", facts.os_type);
    default("os_version", facts.os_version);
    let verbose = Value::String("verbose".into());
    if config.get(&verbose).is_none_or(Value::is_null) {
        config.insert(verbose, Value::Bool(true));
    }
    serde_yaml::to_string(&Value::Mapping(config))
        .map_err(|e| format!("cannot write the job config: {e}"))
}

/// teuthology's command line for a job (`config` is the file `job_config` was written to).
pub fn argv(
    teuthology: &Path,
    config_yaml: &str,
    facts: &JobFacts<'_>,
    archive: &Path,
    config: &Path,
) -> Vec<String> {
    let config_map = mapping(config_yaml).unwrap_or_default();
    let text = |key: &str, fallback: &str| {
        config_map
            .get(Value::String(key.to_owned()))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback)
            .to_owned()
    };
    let mut argv = vec![teuthology.display().to_string(), "-v".to_owned()];
    argv.extend([
        "--owner".to_owned(),
        text("owner", facts.owner),
        "--archive".to_owned(),
        archive.display().to_string(),
        "--name".to_owned(),
        text("name", facts.run),
    ]);
    let description = text("description", facts.description);
    if !description.is_empty() {
        argv.extend(["--description".to_owned(), description]);
    }
    argv.extend(["--".to_owned(), config.display().to_string()]);
    argv
}

/// What `summary.yaml` says, when teuthology (or the local runner) wrote one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub success: Option<bool>,
    pub failure_reason: Option<String>,
}

/// Reads a `summary.yaml`'s text; `None` when it is not a mapping.
pub fn summary(text: &str) -> Option<Summary> {
    let Ok(Value::Mapping(map)) = serde_yaml::from_str::<Value>(text) else {
        return None;
    };
    let get = |key: &str| map.get(Value::String(key.to_owned()));
    Some(Summary {
        success: get("success").and_then(Value::as_bool),
        failure_reason: get("failure_reason")
            .and_then(|v| match v {
                Value::String(s) => Some(s.trim().to_owned()),
                Value::Null => None,
                other => serde_yaml::to_string(other)
                    .ok()
                    .map(|s| s.trim().to_owned()),
            })
            .filter(|s| !s.is_empty())
            // A reason is a line in a table, not a traceback.
            .map(|s| shorten(&s, 2000)),
    })
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `HOST KEYTYPE KEY` lines (ssh-keyscan's output) to `KEYTYPE KEY`, the first one.
pub fn host_key_from_keyscan(output: &str) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let (_host, kind, key) = (words.next()?, words.next()?, words.next()?);
            (kind.starts_with("ssh-") || kind.starts_with("ecdsa-"))
                .then(|| format!("{kind} {key}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> JobFacts<'static> {
        JobFacts {
            job_id: 42,
            run: "alice-2026-11-29_10:00:00-rados-main-distro-default-smithi",
            owner: "alice",
            description: "rados/singleton/{all/peer}",
            machine_type: "smithi",
            os_type: "ubuntu",
            os_version: "22.04",
        }
    }

    #[test]
    fn the_config_gets_what_teuthologys_supervisor_adds() {
        let config = "roles:\n- [mon.a, osd.0]\ntasks:\n- print: hi\nowner: scheduled_teuthology@teuthology\nweird: {x: 1}\n";
        assert!(wants_targets(config).unwrap());
        let targets =
            BTreeMap::from([("ubuntu@smithi001".to_owned(), "ssh-ed25519 AAAA".to_owned())]);
        let written = job_config(
            config,
            &facts(),
            Path::new("/a/run/42"),
            Some(&targets),
            Some(Path::new("/c/suite/abc/qa")),
        )
        .unwrap();
        let value: Value = serde_yaml::from_str(&written).unwrap();
        assert_eq!(value["archive_path"], "/a/run/42");
        assert_eq!(value["job_id"], "42");
        assert_eq!(value["targets"]["ubuntu@smithi001"], "ssh-ed25519 AAAA");
        assert_eq!(
            value["owner"], "scheduled_teuthology@teuthology",
            "the job's own owner stays"
        );
        assert_eq!(value["name"], facts().run);
        assert_eq!(value["description"], facts().description);
        assert_eq!(value["verbose"], true);
        assert_eq!(value["weird"]["x"], 1, "unknown keys survive");
        assert_eq!(value["suite_path"], "/c/suite/abc/qa");
        let argv = argv(
            Path::new("/venv/bin/teuthology"),
            config,
            &facts(),
            Path::new("/a/run/42"),
            Path::new("/a/run/42/config.yaml"),
        );
        assert_eq!(
            argv,
            [
                "/venv/bin/teuthology",
                "-v",
                "--owner",
                "scheduled_teuthology@teuthology",
                "--archive",
                "/a/run/42",
                "--name",
                facts().run,
                "--description",
                facts().description,
                "--",
                "/a/run/42/config.yaml"
            ]
        );
        assert!(!wants_targets("tasks:\n- print: hi\n").unwrap());
        assert!(!wants_targets("").unwrap());
        assert!(wants_targets("- a\n").is_err());
        assert!(job_config("[1, 2]", &facts(), Path::new("/a"), None, None).is_err());
        let pinned =
            pins("suite_repo: https://git/ceph.git\nsuite_sha1: abc\nteuthology_sha1: def\n")
                .unwrap();
        assert_eq!(
            (
                pinned.suite_repo.as_deref(),
                pinned.suite_sha1.as_deref(),
                pinned.suite_relpath.as_str(),
                pinned.teuthology_sha1.as_deref(),
                pinned.has_suite_path
            ),
            (
                Some("https://git/ceph.git"),
                Some("abc"),
                "qa",
                Some("def"),
                false
            )
        );
    }

    #[test]
    fn a_summary_gives_the_reason() {
        let failed = summary("success: false\nstatus: fail\nfailure_reason: 'Command failed on smithi001 with status 3: ls'\n").unwrap();
        assert_eq!(failed.success, Some(false));
        assert_eq!(
            failed.failure_reason.as_deref(),
            Some("Command failed on smithi001 with status 3: ls")
        );
        assert_eq!(
            summary("success: true\n").unwrap(),
            Summary {
                success: Some(true),
                failure_reason: None
            }
        );
        assert_eq!(summary("not: [a mapping").map(|_| ()), None);
        let long = format!("failure_reason: {}\n", "x".repeat(5000));
        assert!(
            summary(&long)
                .unwrap()
                .failure_reason
                .unwrap()
                .chars()
                .count()
                <= 2001
        );
    }

    #[test]
    fn keyscan_output_gives_the_host_key() {
        let out = "# smithi001:22 SSH-2.0-OpenSSH_9.2\nsmithi001 ssh-ed25519 AAAAC3Nza\n";
        assert_eq!(
            host_key_from_keyscan(out).as_deref(),
            Some("ssh-ed25519 AAAAC3Nza")
        );
        assert_eq!(host_key_from_keyscan("garbage\n"), None);
        assert_eq!(host_key_from_keyscan(""), None);
    }
}
