//! The job body: the YAML job config teuthology's `teuthology-schedule` puts on a tube,
//! so jobs move between teuthology's tools and cuttle's in both directions.
//!
//! Reading keeps every key it does not know (roles, tasks, overrides, anything newer than
//! this code) and gives them back unchanged when the body is written. Known keys are type
//! checked, with errors that name the key. Keys are written sorted, as PyYAML's
//! `safe_dump` writes them.

use serde_yaml::{Mapping, Value};

use cuttle_core::{InvalidInput, JobId, JobSpec, RunSpec};

/// Largest job config we read. beanstalkd's own limit (64 KiB by default) is checked
/// separately when the body is rendered; this only bounds parsing work.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// A parsed teuthology job config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobConfig {
    map: Mapping,
}

/// Keys cuttle writes itself when rendering a body; values a user gave for them are
/// read through the typed accessors, then replaced.
const OWNED_KEYS: &[&str] = &[
    "job_id",
    "cuttle_job_id",
    "name",
    "owner",
    "priority",
    "machine_type",
    "tube",
    "os_type",
    "os_version",
    "branch",
    "sha1",
    "suite",
    "description",
    "timeout",
];

impl JobConfig {
    /// Parses a job config. Empty text is an empty config.
    pub fn parse(text: &str) -> Result<JobConfig, InvalidInput> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(InvalidInput::new(
                "job config",
                format!(
                    "{} bytes is too large; at most {MAX_CONFIG_BYTES} bytes are read",
                    text.len()
                ),
            ));
        }
        if text.trim().is_empty() {
            return Ok(JobConfig::default());
        }
        // The budget first: nothing is built for a document that would expand past it.
        crate::budget::check(text).map_err(|e| InvalidInput::new("job config", e.to_string()))?;
        let value: Value = serde_yaml::from_str(text)
            .map_err(|e| InvalidInput::new("job config", format!("is not valid YAML: {e}")))?;
        match value {
            Value::Mapping(map) => {
                let config = JobConfig { map };
                config.check_types()?;
                Ok(config)
            }
            Value::Null => Ok(JobConfig::default()),
            other => Err(InvalidInput::new(
                "job config",
                format!(
                    "must be a YAML mapping (key: value lines), not {}",
                    kind_of(&other)
                ),
            )),
        }
    }

    /// Checks the known keys have the types teuthology gives them, so a mistake fails at
    /// scheduling time with the key's name, not hours later in a dispatcher.
    fn check_types(&self) -> Result<(), InvalidInput> {
        for key in [
            "name",
            "owner",
            "machine_type",
            "os_type",
            "branch",
            "sha1",
            "suite",
            "description",
        ] {
            self.string(key)?;
        }
        self.version_string("os_version")?;
        self.integer("priority")?;
        self.integer("timeout")?;
        self.roles_count()?;
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// A string-valued key; absent or null is `None`.
    pub fn string(&self, key: &'static str) -> Result<Option<String>, InvalidInput> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    /// A version such as `22.04` or `9`, which YAML reads as a number unless quoted.
    pub fn version_string(&self, key: &'static str) -> Result<Option<String>, InvalidInput> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(wrong_type(key, "a version string such as \"22.04\"", other)),
        }
    }

    /// An integer-valued key; teuthology sometimes writes numbers as strings, so a
    /// string of digits is accepted too.
    pub fn integer(&self, key: &'static str) -> Result<Option<i64>, InvalidInput> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a whole number", &Value::Number(number.clone()))),
            Some(Value::String(text)) => text
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| wrong_type(key, "a whole number", &Value::String(text.clone()))),
            Some(other) => Err(wrong_type(key, "a whole number", other)),
        }
    }

    /// The number of entries in `roles` (teuthology's node count), if roles are given.
    pub fn roles_count(&self) -> Result<Option<usize>, InvalidInput> {
        match self.get("roles") {
            None => Ok(None),
            Some(Value::Sequence(roles)) => {
                if let Some(bad) = roles.iter().find(|entry| !entry.is_sequence()) {
                    return Err(wrong_type(
                        "roles",
                        "a list of lists of role names, e.g. [[mon.a, osd.0], [client.0]]",
                        bad,
                    ));
                }
                Ok(Some(roles.len()))
            }
            Some(other) => Err(wrong_type(
                "roles",
                "a list of lists of role names, e.g. [[mon.a, osd.0], [client.0]]",
                other,
            )),
        }
    }
}

/// Everything a job body is rendered from.
#[derive(Debug)]
pub struct RenderInput<'a> {
    pub job_id: JobId,
    pub run: &'a RunSpec,
    pub job: &'a JobSpec,
    /// The user's config; its unknown keys are kept.
    pub config: &'a JobConfig,
}

/// Renders the body put on the tube: the user's config with cuttle's own keys set from
/// the validated job, keys sorted. When the config has no `roles`, one role group per
/// node is generated so teuthology locks the right number of nodes.
pub fn render(input: &RenderInput<'_>) -> String {
    let RenderInput {
        job_id,
        run,
        job,
        config,
    } = input;
    let mut map = config.map.clone();
    for key in OWNED_KEYS {
        map.remove(*key);
    }
    let mut set = |key: &str, value: Value| {
        map.insert(Value::String(key.to_owned()), value);
    };
    let text = |s: &str| Value::String(s.to_owned());
    // teuthology writes job_id as a string. `cuttle_job_id` marks the body as cuttle's:
    // a teuthology body may carry a job_id of its own (paddles' or beanstalkd's), which
    // must not be mistaken for a cuttle job.
    set("job_id", text(&job_id.to_string()));
    set("cuttle_job_id", text(&job_id.to_string()));
    set("name", text(run.name.as_str()));
    set("owner", text(run.owner.as_str()));
    set("priority", Value::from(job.priority.get()));
    set("machine_type", text(job.machine_type.as_str()));
    set("tube", text(job.machine_type.as_str()));
    set("description", text(&job.description));
    for (key, value) in [
        ("os_type", &job.os_type),
        ("os_version", &job.os_version),
        ("branch", &run.branch),
        ("sha1", &run.sha1),
        ("suite", &run.suite),
    ] {
        if !value.is_empty() {
            set(key, text(value));
        }
    }
    if let Some(limit) = job.time_limit {
        set("timeout", Value::from(limit.seconds()));
    }
    if config.get("roles").is_none() {
        let roles: Vec<Value> = (0..job.n_nodes.get())
            .map(|i| Value::Sequence(vec![text(&format!("client.{i}"))]))
            .collect();
        set("roles", Value::Sequence(roles));
    }
    // Keys teuthology's dispatcher reads unconditionally.
    for (key, default) in [
        ("verbose", false),
        ("first_in_suite", false),
        ("last_in_suite", false),
    ] {
        if config.get(key).is_none() {
            set(key, Value::Bool(default));
        }
    }
    let mut entries: Vec<(Value, Value)> = map.into_iter().collect();
    entries.sort_by_cached_key(|(key, _)| serde_yaml::to_string(key).unwrap_or_default());
    let sorted: Mapping = entries.into_iter().collect();
    serde_yaml::to_string(&Value::Mapping(sorted))
        .expect("a YAML mapping of YAML values always serializes")
}

/// What a reserved body is, as far as dispatching cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A body cuttle rendered: it names a cuttle job.
    Cuttle(JobId),
    /// A body teuthology's own `teuthology-schedule` put: no cuttle job id, its `name` is
    /// the run. cuttle-api adopts it as a job of that run.
    Teuthology {
        run: Box<RunSpec>,
        job: Box<JobSpec>,
    },
}

/// Classifies a body reserved from a tube. The error is the burial reason: not UTF-8,
/// not a YAML mapping, or neither cuttle's nor teuthology's shape.
pub fn read_body(bytes: &[u8]) -> Result<Body, String> {
    read_body_with_config(bytes).0
}

/// Like [`read_body`], also handing back the parsed config when the body is YAML at all,
/// so a caller that needs other keys (an expiry, a legacy job id) parses it only once.
pub fn read_body_with_config(bytes: &[u8]) -> (Result<Body, String>, Option<JobConfig>) {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return (Err(format!("body is not UTF-8 text ({e})")), None),
    };
    match JobConfig::parse(text) {
        Ok(config) => (classify(&config), Some(config)),
        Err(e) => (Err(e.message), None),
    }
}

/// What a parsed body is.
fn classify(config: &JobConfig) -> Result<Body, String> {
    if config.map.is_empty() {
        return Err("body is empty; expected a teuthology job config (a YAML mapping)".into());
    }
    if let Some(id) = config.integer("cuttle_job_id").map_err(|e| e.message)? {
        return Ok(Body::Cuttle(JobId(id)));
    }
    let missing: Vec<&str> = ["name", "machine_type"]
        .into_iter()
        .filter(|key| config.get(key).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "body is neither cuttle's (no cuttle_job_id) nor teuthology's (no {})",
            missing.join(" and ")
        ));
    }
    adopt(config).map_err(|e| format!("teuthology body refused: {e}"))
}

/// The run and job a teuthology body describes, with teuthology's defaults: one node per
/// `roles` entry, priority 1000 when absent (the body's own, otherwise), `scheduled_by`
/// or `teuthology` as owner when `owner` is missing.
fn adopt(config: &JobConfig) -> Result<Body, InvalidInput> {
    let name = config.string("name")?.unwrap_or_default();
    let owner = config
        .string("owner")?
        .unwrap_or_else(|| "teuthology".to_owned());
    let run = RunSpec {
        name: cuttle_core::RunName::parse(&name)?,
        owner: cuttle_core::Owner::parse(&owner)?,
        branch: config.string("branch")?.unwrap_or_default(),
        sha1: config.string("sha1")?.unwrap_or_default(),
        suite: config.string("suite")?.unwrap_or_default(),
    };
    let machine_type = config.string("machine_type")?.unwrap_or_default();
    if machine_type.contains([',', '|']) {
        // teuthology's `multi` tube: a job any of several types may run. cuttle locks a
        // job's nodes within one machine type, so it says so instead of guessing.
        return Err(InvalidInput::new(
            "machine_type",
            format!(
                "{machine_type:?} names several machine types; cuttle runs a job on one machine type, so schedule it once per type (teuthology-suite -m TYPE)"
            ),
        ));
    }
    let n_nodes = config.roles_count()?.unwrap_or(1);
    let job = JobSpec {
        description: config.string("description")?.unwrap_or_default(),
        machine_type: cuttle_core::MachineType::parse(&machine_type)?,
        priority: match config.integer("priority")? {
            Some(priority) => cuttle_core::Priority::new(priority)?,
            None => cuttle_core::Priority::default(),
        },
        n_nodes: cuttle_core::NodeCount::new(i64::try_from(n_nodes).unwrap_or(i64::MAX))?,
        time_limit: config
            .integer("timeout")?
            .map(cuttle_core::TimeLimit::from_seconds)
            .transpose()?,
        os_type: config.string("os_type")?.unwrap_or_default(),
        os_version: config.version_string("os_version")?.unwrap_or_default(),
    };
    Ok(Body::Teuthology {
        run: Box::new(run),
        job: Box::new(job),
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn wrong_type(key: &'static str, expected: &str, found: &Value) -> InvalidInput {
    InvalidInput::new(
        "job config",
        format!(
            "key {key:?} must be {expected}, but it is {}",
            kind_of(found)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuttle_core::{MachineType, NodeCount, Owner, Priority, RunName, TimeLimit};

    fn run() -> RunSpec {
        RunSpec {
            name: RunName::parse("alice-2026-11-23_10:00:00-rados-main-distro-default-smithi")
                .unwrap(),
            owner: Owner::parse("alice").unwrap(),
            branch: "main".into(),
            sha1: "0123abcd".into(),
            suite: "rados".into(),
        }
    }

    fn job(n_nodes: i64) -> JobSpec {
        JobSpec {
            description: "rados/basic/{clusters/fixed-2}".into(),
            machine_type: MachineType::parse("smithi").unwrap(),
            priority: Priority::new(75).unwrap(),
            n_nodes: NodeCount::new(n_nodes).unwrap(),
            time_limit: Some(TimeLimit::from_seconds(3600).unwrap()),
            os_type: "ubuntu".into(),
            os_version: "22.04".into(),
        }
    }

    /// A body in the shape teuthology-schedule writes (keys sorted, job_id absent).
    const TEUTHOLOGY_BODY: &str = "\
branch: main
description: rados/basic/{clusters/fixed-2 tasks/rados_api_tests}
email: null
first_in_suite: false
last_in_suite: false
machine_type: smithi
name: alice-2026-11-23_10:00:00-rados-main-distro-default-smithi
no_nested_subset: false
os_type: ubuntu
os_version: '22.04'
overrides:
  ceph:
    log-ignorelist:
    - \\(MDS_ALL_DOWN\\)
owner: scheduled_alice@teuthology
priority: 1000
roles:
- [mon.a, mgr.x, osd.0, osd.1]
- [client.0]
sha1: 0123abcd
suite: rados
tasks:
- install: null
- ceph: null
teuthology_branch: main
tube: smithi
verbose: false
";

    #[test]
    fn reads_a_teuthology_body() {
        let config = JobConfig::parse(TEUTHOLOGY_BODY).unwrap();
        assert_eq!(
            config.string("machine_type").unwrap().as_deref(),
            Some("smithi")
        );
        assert_eq!(config.integer("priority").unwrap(), Some(1000));
        assert_eq!(config.roles_count().unwrap(), Some(2));
        assert_eq!(
            config.version_string("os_version").unwrap().as_deref(),
            Some("22.04")
        );
    }

    #[test]
    fn rendering_keeps_unknown_keys_and_sets_our_own() {
        let config = JobConfig::parse(TEUTHOLOGY_BODY).unwrap();
        let body = render(&RenderInput {
            job_id: JobId(42),
            run: &run(),
            job: &job(2),
            config: &config,
        });
        let back: Value = serde_yaml::from_str(&body).unwrap();
        assert_eq!(back["job_id"], Value::String("42".into()));
        assert_eq!(back["priority"], Value::from(75));
        assert_eq!(back["owner"], Value::String("alice".into()));
        assert_eq!(back["timeout"], Value::from(3600));
        assert_eq!(back["tasks"][1]["ceph"], Value::Null);
        assert_eq!(back["teuthology_branch"], Value::String("main".into()));
        assert_eq!(
            back["roles"].as_sequence().unwrap().len(),
            2,
            "user roles kept"
        );
        let keys: Vec<String> = back
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "keys are written sorted, as teuthology does");
    }

    #[test]
    fn rendering_without_roles_generates_one_group_per_node() {
        let body = render(&RenderInput {
            job_id: JobId(7),
            run: &run(),
            job: &job(3),
            config: &JobConfig::default(),
        });
        let back: Value = serde_yaml::from_str(&body).unwrap();
        assert_eq!(back["roles"].as_sequence().unwrap().len(), 3);
        assert_eq!(back["verbose"], Value::Bool(false));
        assert_eq!(back["tube"], Value::String("smithi".into()));
    }

    #[test]
    fn bad_configs_are_refused_with_the_key_named() {
        let error = JobConfig::parse("priority: high\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"priority\" must be a whole number"),
            "{error}"
        );
        let error = JobConfig::parse("roles: 3\n").unwrap_err();
        assert!(error.to_string().contains("\"roles\""), "{error}");
        let error = JobConfig::parse("machine_type: [a, b]\n").unwrap_err();
        assert!(error.to_string().contains("must be a string"), "{error}");
        let error = JobConfig::parse("- just\n- a list\n").unwrap_err();
        assert!(
            error.to_string().contains("must be a YAML mapping"),
            "{error}"
        );
        let error = JobConfig::parse("key: [unclosed\n").unwrap_err();
        assert!(error.to_string().contains("not valid YAML"), "{error}");
        assert!(JobConfig::parse(&"x".repeat(MAX_CONFIG_BYTES + 1)).is_err());
    }

    #[test]
    fn numbers_written_as_strings_are_accepted() {
        let config = JobConfig::parse("priority: '50'\ntimeout: \"600\"\nos_version: 9\n").unwrap();
        assert_eq!(config.integer("priority").unwrap(), Some(50));
        assert_eq!(config.integer("timeout").unwrap(), Some(600));
        assert_eq!(
            config.version_string("os_version").unwrap().as_deref(),
            Some("9")
        );
    }

    #[test]
    fn a_teuthology_body_is_adopted_with_its_run_and_node_count() {
        let Body::Teuthology { run, job } = read_body(TEUTHOLOGY_BODY.as_bytes()).unwrap() else {
            panic!("a teuthology-schedule body must be read as teuthology's");
        };
        assert_eq!(
            run.name.as_str(),
            "alice-2026-11-23_10:00:00-rados-main-distro-default-smithi"
        );
        assert_eq!(run.owner.as_str(), "scheduled_alice@teuthology");
        assert_eq!(job.machine_type.as_str(), "smithi");
        assert_eq!(job.n_nodes.get(), 2);
        assert_eq!(job.priority.get(), 1000);
        // A teuthology job_id (paddles' or beanstalkd's) does not make it a cuttle body.
        let with_id = format!("job_id: '1234'\n{TEUTHOLOGY_BODY}");
        assert!(matches!(
            read_body(with_id.as_bytes()),
            Ok(Body::Teuthology { .. })
        ));
    }

    #[test]
    fn a_rendered_body_names_its_cuttle_job() {
        let config = JobConfig::parse(TEUTHOLOGY_BODY).unwrap();
        let body = render(&RenderInput {
            job_id: JobId(42),
            run: &run(),
            job: &job(2),
            config: &config,
        });
        assert_eq!(read_body(body.as_bytes()), Ok(Body::Cuttle(JobId(42))));
    }

    #[test]
    fn garbage_bodies_are_refused_with_a_reason() {
        for (body, expected) in [
            (&b"\xff\xfe"[..], "not UTF-8"),
            (b"just some words", "YAML mapping"),
            (b"- a\n- list", "YAML mapping"),
            (b"{unclosed: [", "not valid YAML"),
            (b"", "empty"),
            (b"tasks: []\n", "no name and machine_type"),
            (b"name: r\n", "no machine_type"),
            (
                b"name: r\nmachine_type: smithi,mira\n",
                "several machine types",
            ),
            (
                b"name: r\nmachine_type: smithi\npriority: high\n",
                "whole number",
            ),
        ] {
            let reason = read_body(body).expect_err("garbage must be refused");
            assert!(reason.contains(expected), "{body:?}: {reason}");
        }
    }
}
