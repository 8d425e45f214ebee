//! `cuttle schedule`: turns flags and an optional job file into one CreateRun call.
//!
//! The job file is read as text and sent verbatim as every job's `config_yaml`; the CLI
//! must never parse YAML — cuttle-api owns that, so the CLI and the server can never
//! disagree about a job file. Flags fill the typed fields, and anything left empty falls
//! back, on the server, to the file's keys.

use std::io::Read;
use std::path::Path;

use cuttle_core::{InvalidInput, MachineType, NodeCount, Owner, Priority, RunName, TimeLimit};
use cuttle_proto::v1;
use serde::Serialize;

use crate::Context;
use crate::cli::ScheduleArgs;
use crate::error::Failure;
use crate::nodes::{checked, checked_text};
use crate::output::{JobJson, jobs_json, print, print_json};
use crate::time::{UtcDateTime, now_unix_seconds};

/// Largest job file accepted; beanstalkd would refuse a bigger job body anyway.
pub const MAX_JOB_FILE_BYTES: u64 = 1024 * 1024;

/// Most jobs one `cuttle schedule` may create.
pub const MAX_JOBS: i64 = 10_000;

/// Owner of an ad-hoc run when neither `--owner` nor `$USER` says.
const FALLBACK_OWNER: &str = "cuttle";

/// What `cuttle schedule` knows besides its flags: the job file's text, the time and the
/// user, passed in so the request can be built (and tested) without IO.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInputs {
    /// The job file's text, if a file was given.
    pub config_yaml: Option<String>,
    /// Now, in seconds since the Unix epoch, for the generated run name.
    pub now_unix_seconds: i64,
    /// `$USER`, if set.
    pub user: Option<String>,
}

/// Reads a job file (or stdin for `-`), refusing anything over 1 MiB or not UTF-8, with a
/// message that names the path.
pub fn read_job_file(path: &Path) -> Result<String, Failure> {
    let shown = path.display();
    let mut bytes = Vec::new();
    // Read one byte past the limit rather than trusting metadata: stdin and pipes have none.
    let limit = MAX_JOB_FILE_BYTES + 1;
    let result = if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|error| Failure::Invalid(format!("cannot read job file {shown}: {error}")))?;
    if bytes.len() as u64 > MAX_JOB_FILE_BYTES {
        return Err(Failure::Invalid(format!(
            "job file {shown} is larger than 1 MiB ({MAX_JOB_FILE_BYTES} bytes); trim it"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Failure::Invalid(format!("job file {shown} is not UTF-8 text")))
}

/// Who is acting: `--owner` when given, else `$USER`, else `cuttle`, validated as an owner.
/// Shared by every command that records who did something (schedule, kill, queue pause).
pub(crate) fn owner_or_user(
    flag: Option<&str>,
    user: Option<&str>,
) -> Result<String, InvalidInput> {
    let owner = flag.unwrap_or_else(|| {
        user.filter(|user| !user.is_empty())
            .unwrap_or(FALLBACK_OWNER)
    });
    Owner::parse(owner).map(String::from).map_err(|error| {
        let hint = if flag.is_none() {
            " (taken from $USER); set one with --owner"
        } else {
            ""
        };
        InvalidInput::new(error.field, format!("{}{hint}", error.message))
    })
}

/// Who a node lock or a suite is for when `--owner` is absent: `$USER` (teuthology's
/// default), unless the token is a developer's (or a service's), which may only act as its
/// own user: then empty, and cuttle-api takes the token's user. An API too old to say
/// who the token is gets empty too, as before `$USER` was the default.
pub(crate) async fn default_owner(
    api: &crate::client::Api,
    env_user: Option<&str>,
) -> Result<String, Failure> {
    let me = api.admin().who_am_i(v1::WhoAmIRequest {}).await;
    match me {
        Ok(me) if me.get_ref().role == "admin" || me.get_ref().user.is_empty() => {
            Ok(owner_or_user_or_token(None, env_user)?)
        }
        Ok(_) => Ok(String::new()),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(String::new()),
        Err(status) => Err(api.failure(status)),
    }
}

/// Who a request is for where cuttle-api falls back to the token's user: `--owner` when
/// given, else `$USER`, else empty (the token's user), validated as an owner.
pub(crate) fn owner_or_user_or_token(
    flag: Option<&str>,
    user: Option<&str>,
) -> Result<String, InvalidInput> {
    match (flag, user.filter(|user| !user.is_empty())) {
        (None, None) => Ok(String::new()),
        (flag, user) => owner_or_user(flag, user),
    }
}

/// One part of a generated run name: teuthology turns the `/` of `rados/basic` into `:`;
/// any other character a run name cannot hold becomes `_`.
fn name_part(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '/' => ':',
            c if c.is_ascii_alphanumeric() || "-_.:+@".contains(c) => c,
            _ => '_',
        })
        .collect()
}

/// teuthology's run name: `{owner}-{YYYY-MM-DD_HH:MM:SS}-{suite}-{branch}-{machine_type}`,
/// with `adhoc` for no suite and `none` for no branch, stamped in UTC.
pub fn default_run_name(
    owner: &str,
    now_unix_seconds: i64,
    suite: Option<&str>,
    branch: Option<&str>,
    machine_type: &str,
) -> Result<String, InvalidInput> {
    let stamp = UtcDateTime::from_unix_seconds(now_unix_seconds).teuthology_stamp();
    let nonempty = |text: Option<&str>, default: &'static str| {
        text.filter(|text| !text.is_empty())
            .map_or_else(|| default.to_owned(), name_part)
    };
    let name = format!(
        "{}-{stamp}-{}-{}-{}",
        name_part(owner),
        nonempty(suite, "adhoc"),
        nonempty(branch, "none"),
        name_part(machine_type)
    );
    RunName::parse(&name).map(String::from).map_err(|error| {
        InvalidInput::new(
            "run name",
            format!("{}; choose one with --name", error.message),
        )
    })
}

/// Builds the CreateRun request, validating every flag with cuttle-core first.
pub fn build_request(
    args: &ScheduleArgs,
    inputs: &ScheduleInputs,
) -> Result<v1::CreateRunRequest, InvalidInput> {
    if !(1..=MAX_JOBS).contains(&args.jobs) {
        return Err(InvalidInput::new(
            "jobs",
            format!(
                "{} is out of range; create 1 to {MAX_JOBS} jobs per run",
                args.jobs
            ),
        ));
    }
    let with_file = inputs.config_yaml.is_some();
    let machine_type = checked(args.machine_type.as_deref(), MachineType::parse)?;
    if !with_file && machine_type.is_none() {
        return Err(InvalidInput::new(
            "machine type",
            "--machine-type is required when no job file is given",
        ));
    }
    let branch = checked_text("branch", args.branch.as_deref())?;
    let sha1 = checked_text("sha1", args.sha1.as_deref())?;
    let suite = checked_text("suite", args.suite.as_deref())?;
    // With a job file that names an owner (or a run), an absent flag stays empty so the
    // file's value wins; a file without one gets the same defaults as no file.
    let file_key = |key: &str| {
        inputs
            .config_yaml
            .as_deref()
            .and_then(|yaml| top_level_value(yaml, key))
    };
    let owner = match (args.owner.as_deref(), file_key("owner")) {
        (None, Some(_)) => None,
        (flag, _) => Some(owner_or_user(flag, inputs.user.as_deref())?),
    };
    let file_machine_type = file_key("machine_type");
    let name = match (&args.name, file_key("name"), &owner) {
        (Some(name), _, _) => Some(RunName::parse(name)?.into()),
        (None, None, Some(owner)) => match machine_type.as_deref().or(file_machine_type.as_deref())
        {
            Some(machine_type) => Some(default_run_name(
                owner,
                inputs.now_unix_seconds,
                suite.as_deref(),
                branch.as_deref(),
                machine_type,
            )?),
            None => None,
        },
        _ => None,
    };
    let job = v1::JobSpec {
        description: checked_text("description", args.description.as_deref())?.unwrap_or_default(),
        machine_type: machine_type.unwrap_or_default(),
        priority: args
            .priority
            .map(Priority::new)
            .transpose()?
            .map(Priority::get),
        n_nodes: args
            .nodes
            .map(NodeCount::new)
            .transpose()?
            .map(NodeCount::get),
        time_limit_s: args
            .time_limit
            .map(TimeLimit::from_seconds)
            .transpose()?
            .map(TimeLimit::seconds),
        os_type: checked_text("os type", args.os_type.as_deref())?.unwrap_or_default(),
        os_version: checked_text("os version", args.os_version.as_deref())?.unwrap_or_default(),
        config_yaml: inputs.config_yaml.clone().unwrap_or_default(),
    };
    Ok(v1::CreateRunRequest {
        name: name.unwrap_or_default(),
        owner: owner.unwrap_or_default(),
        branch: branch.unwrap_or_default(),
        sha1: sha1.unwrap_or_default(),
        suite: suite.unwrap_or_default(),
        // `jobs` is in 1..=MAX_JOBS, checked above.
        jobs: vec![job; args.jobs as usize],
    })
}

/// The value of a top-level `key:` line of a block-style YAML mapping (quotes removed),
/// enough to know whether a job file names its owner, run or machine type. cuttle-api
/// parses the file properly.
fn top_level_value(yaml: &str, key: &str) -> Option<String> {
    yaml.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let value = value.split(" #").next().unwrap_or("").trim();
        let value = value.trim_matches(|c| c == '\'' || c == '"');
        (!value.is_empty() && value != "null" && value != "~").then(|| value.to_owned())
    })
}

/// What `cuttle schedule --json` prints.
#[derive(Debug, Serialize)]
struct CreatedJson<'a> {
    run_name: &'a str,
    jobs: Vec<JobJson<'a>>,
}

/// Runs `cuttle schedule`.
pub async fn run(context: &Context, args: ScheduleArgs) -> Result<(), Failure> {
    let config_yaml = args.file.as_deref().map(read_job_file).transpose()?;
    let inputs = ScheduleInputs {
        config_yaml,
        now_unix_seconds: now_unix_seconds(),
        user: std::env::var("USER").ok(),
    };
    let request = build_request(&args, &inputs)?;
    let api = context.connect().await?;
    let created = api
        .runs()
        .create_run(request)
        .await
        .map_err(|status| api.failure(status))?
        .into_inner();
    if context.json {
        print_json(&CreatedJson {
            run_name: &created.run_name,
            jobs: jobs_json(&created.jobs),
        })
    } else {
        print(&created.run_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// 2026-11-23T10:00:00Z.
    const NOW: i64 = 1_795_428_000;

    fn schedule_args(args: &[&str]) -> ScheduleArgs {
        let cli = Cli::try_parse_from(
            ["cuttle", "schedule"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        match cli.command {
            Command::Schedule(args) => args,
            other => panic!("not schedule: {other:?}"),
        }
    }

    fn inputs(config_yaml: Option<&str>, user: Option<&str>) -> ScheduleInputs {
        ScheduleInputs {
            config_yaml: config_yaml.map(str::to_owned),
            now_unix_seconds: NOW,
            user: user.map(str::to_owned),
        }
    }

    #[test]
    fn run_names_follow_teuthology() {
        assert_eq!(
            default_run_name("alice", NOW, Some("rados/basic"), Some("main"), "smithi").unwrap(),
            "alice-2026-11-23_10:00:00-rados:basic-main-smithi"
        );
        assert_eq!(
            default_run_name("alice", NOW, None, Some(""), "smithi").unwrap(),
            "alice-2026-11-23_10:00:00-adhoc-none-smithi"
        );
        assert_eq!(
            default_run_name("bob", 0, Some("a b"), None, "mira").unwrap(),
            "bob-1970-01-01_00:00:00-a_b-none-mira"
        );
        let long_suite = "x".repeat(300);
        let error = default_run_name("a", NOW, Some(&long_suite), None, "m").unwrap_err();
        assert!(error.to_string().contains("--name"), "{error}");
    }

    #[test]
    fn flags_fill_every_job() {
        let args = schedule_args(&[
            "--name",
            "r",
            "--owner",
            "o",
            "--machine-type",
            "smithi",
            "--priority",
            "50",
            "--nodes",
            "2",
            "--jobs",
            "50",
            "--time-limit",
            "600",
        ]);
        let request = build_request(&args, &inputs(None, Some("ignored"))).unwrap();
        assert_eq!(request.name, "r");
        assert_eq!(request.owner, "o");
        assert_eq!(request.jobs.len(), 50);
        let job = &request.jobs[0];
        assert_eq!(job.machine_type, "smithi");
        assert_eq!(job.priority, Some(50));
        assert_eq!(job.n_nodes, Some(2));
        assert_eq!(job.time_limit_s, Some(600));
        assert_eq!(job.config_yaml, "");
    }

    #[test]
    fn without_a_file_owner_and_name_are_generated() {
        let args = schedule_args(&["--machine-type", "smithi", "--suite", "rados"]);
        let request = build_request(&args, &inputs(None, Some("carol"))).unwrap();
        assert_eq!(request.owner, "carol");
        assert_eq!(request.name, "carol-2026-11-23_10:00:00-rados-none-smithi");
        assert_eq!(request.jobs.len(), 1);
        assert_eq!(request.jobs[0].priority, None);

        let request = build_request(&args, &inputs(None, None)).unwrap();
        assert_eq!(request.owner, "cuttle");
    }

    #[test]
    fn the_acting_owner_comes_from_the_flag_then_user() {
        assert_eq!(owner_or_user(Some("bob"), Some("carol")).unwrap(), "bob");
        assert_eq!(owner_or_user(None, Some("carol")).unwrap(), "carol");
        assert_eq!(owner_or_user(None, Some("")).unwrap(), "cuttle");
        assert_eq!(owner_or_user(None, None).unwrap(), "cuttle");
        // Where cuttle-api knows the token's user, no $USER leaves it to the API.
        assert_eq!(owner_or_user_or_token(None, None).unwrap(), "");
        assert_eq!(owner_or_user_or_token(None, Some("")).unwrap(), "");
        assert_eq!(
            owner_or_user_or_token(None, Some("carol")).unwrap(),
            "carol"
        );
        assert_eq!(
            owner_or_user_or_token(Some("bob"), Some("carol")).unwrap(),
            "bob"
        );
        let error = owner_or_user_or_token(None, Some("bad user")).unwrap_err();
        assert!(error.to_string().contains("$USER"), "{error}");
        let error = owner_or_user(None, Some("bad user")).unwrap_err();
        assert!(error.to_string().contains("$USER"), "{error}");
        let error = owner_or_user(Some("bad user"), None).unwrap_err();
        assert!(!error.to_string().contains("$USER"), "{error}");
    }

    #[test]
    fn with_a_file_the_yaml_is_passed_verbatim_and_absent_flags_stay_empty() {
        let yaml = "owner: dave\nroles:\n- [mon.a]\n- [osd.0]\n";
        let args = schedule_args(&["job.yaml", "--jobs", "3"]);
        let request = build_request(&args, &inputs(Some(yaml), Some("carol"))).unwrap();
        assert_eq!(request.name, "");
        assert_eq!(request.owner, "");
        assert_eq!(request.jobs.len(), 3);
        for job in &request.jobs {
            assert_eq!(job.config_yaml, yaml);
            assert_eq!(job.machine_type, "");
            assert_eq!(job.n_nodes, None);
        }
    }

    #[test]
    fn a_file_without_owner_or_name_gets_the_same_defaults_as_no_file() {
        let yaml = "runtime: 5\nstatus: fail\n";
        let args = schedule_args(&["job.yaml", "--machine-type", "smithi", "--jobs", "50"]);
        let request = build_request(&args, &inputs(Some(yaml), Some("carol"))).unwrap();
        assert_eq!(request.owner, "carol");
        assert_eq!(request.name, "carol-2026-11-23_10:00:00-adhoc-none-smithi");
        assert_eq!(request.jobs.len(), 50);
        // The file's own machine type names the run when no flag does.
        let yaml = "machine_type: 'mira'  # the small ones\nname:\n";
        let args = schedule_args(&["job.yaml"]);
        let request = build_request(&args, &inputs(Some(yaml), Some("carol"))).unwrap();
        assert_eq!(request.name, "carol-2026-11-23_10:00:00-adhoc-none-mira");
    }

    #[test]
    fn without_a_file_machine_type_is_required() {
        let args = schedule_args(&["--owner", "o"]);
        let error = build_request(&args, &inputs(None, None)).unwrap_err();
        assert!(error.to_string().contains("--machine-type"), "{error}");
    }

    #[test]
    fn numbers_are_validated_by_the_core() {
        for (flag, value, field) in [
            ("--priority", "-1", "priority"),
            ("--nodes", "0", "node count"),
            ("--time-limit", "0", "time limit"),
            ("--jobs", "0", "jobs"),
            ("--jobs", "10001", "jobs"),
        ] {
            let args = schedule_args(&["--machine-type", "smithi", flag, value]);
            let error = build_request(&args, &inputs(None, None)).unwrap_err();
            assert_eq!(error.field, field, "{flag} {value}: {error}");
        }
    }

    #[test]
    fn job_files_are_read_verbatim_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.yaml");
        std::fs::write(&path, "tasks:\n- ceph:\n").unwrap();
        assert_eq!(read_job_file(&path).unwrap(), "tasks:\n- ceph:\n");

        std::fs::write(&path, vec![b'#'; MAX_JOB_FILE_BYTES as usize + 1]).unwrap();
        let error = read_job_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("1 MiB") && error.contains("job.yaml"),
            "{error}"
        );

        let missing = dir.path().join("missing.yaml");
        let error = read_job_file(&missing).unwrap_err().to_string();
        assert!(error.contains("missing.yaml"), "{error}");
    }
}
