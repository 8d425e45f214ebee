//! A suite scheduling request, validated: what `cuttle suite` and the ScheduleSuite RPC
//! ask for, with teuthology-suite's defaults and guard rails.

use crate::{InvalidInput, JobStatus, MachineType, Owner, Priority, RunName};

/// Where the suite's YAML comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuiteSource {
    /// A directory holding the suite repository, used as it is.
    Dir(String),
    /// A git repository: cuttle-api's cached clone of it, at `sha1` or `branch`'s tip.
    Git {
        repo: String,
        branch: String,
        sha1: Option<String>,
    },
}

/// teuthology-suite's `--subset WHICH/OF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subset {
    pub which: u64,
    pub of: u64,
}

impl Subset {
    pub fn parse(text: &str) -> Result<Subset, InvalidInput> {
        let bad = |why: &str| {
            InvalidInput::new(
                "subset",
                format!("{text:?} {why}; write WHICH/OF with 0 <= WHICH < OF, e.g. 0/32"),
            )
        };
        let (which, of) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("is not WHICH/OF"))?;
        let which: u64 = which
            .trim()
            .parse()
            .map_err(|_| bad("has no whole number before the /"))?;
        let of: u64 = of
            .trim()
            .parse()
            .map_err(|_| bad("has no whole number after the /"))?;
        if of == 0 {
            return Err(bad("asks for zero parts"));
        }
        if which >= of {
            return Err(InvalidInput::new(
                "subset",
                format!(
                    "{which}/{of}: the part must be below the number of parts (0/{of} to {}/{of})",
                    of - 1
                ),
            ));
        }
        Ok(Subset { which, of })
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.which, self.of)
    }
}

/// The kernel stanza (`-k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The distribution's kernel (teuthology's default).
    Distro,
    /// No kernel stanza.
    None,
}

/// A validated suite request. Refs left unresolved (`None`) are filled by cuttle-api.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteArgs {
    /// The suite's path below `suites/`, `/`-separated; empty only for a rerun.
    pub suite: String,
    pub source: Option<SuiteSource>,
    pub suite_relpath: String,
    pub ceph_branch: String,
    pub ceph_sha1: String,
    pub ceph_repo: String,
    pub kernel: Kernel,
    pub flavor: String,
    pub machine_type: Option<MachineType>,
    pub distro: Option<String>,
    pub distro_version: Option<String>,
    pub priority: Priority,
    pub subset: Option<Subset>,
    pub seed: Option<u64>,
    pub limit: u64,
    pub num: u64,
    pub filter_in: Vec<String>,
    pub filter_out: Vec<String>,
    pub filter_all: Vec<String>,
    pub filter_fragments: bool,
    pub email: Option<String>,
    pub timeout_s: Option<u64>,
    pub owner: Option<Owner>,
    pub dry_run: bool,
    pub rerun: Option<RunName>,
    pub rerun_statuses: Vec<JobStatus>,
    pub force_priority: bool,
    pub job_threshold: Option<u64>,
    pub teuthology_branch: Option<String>,
    pub teuthology_sha1: Option<String>,
    pub no_nested_subset: bool,
    pub run_name: Option<RunName>,
    pub arch: Option<String>,
}

/// Most copies of each job (`--num`).
pub const MAX_NUM: u64 = 100;

/// The raw request, as the wire or the command line gives it. Empty text, `None`, zero
/// and `false` mean "not given" (validation applies the defaults), which is what lets a
/// request be laid over a saved preset ([`RawSuiteArgs::over`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RawSuiteArgs {
    pub suite: String,
    pub suite_dir: String,
    pub suite_repo: String,
    pub suite_branch: String,
    pub suite_sha1: String,
    pub suite_relpath: String,
    pub ceph_branch: String,
    pub ceph_sha1: String,
    pub ceph_repo: String,
    pub kernel: String,
    pub flavor: String,
    pub machine_type: String,
    pub distro: String,
    pub distro_version: String,
    pub priority: Option<u32>,
    pub subset: String,
    pub seed: Option<u64>,
    pub limit: u32,
    pub num: u32,
    pub filter_in: Vec<String>,
    pub filter_out: Vec<String>,
    pub filter_all: Vec<String>,
    pub filter_fragments: bool,
    pub email: String,
    pub timeout: Option<u32>,
    pub owner: String,
    pub dry_run: bool,
    pub rerun: String,
    pub rerun_statuses: Vec<String>,
    pub force_priority: bool,
    pub job_threshold: Option<u32>,
    pub teuthology_branch: String,
    pub teuthology_sha1: String,
    pub no_nested_subset: bool,
    pub run_name: String,
    pub arch: String,
}

fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Comma-separated lists as teuthology splits them (`--filter a,b`), empty items dropped.
pub fn split_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn plain_ref(field: &'static str, text: &str) -> Result<String, InvalidInput> {
    let text = text.trim();
    let bad = text.is_empty()
        || text.starts_with('-')
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '~' || c == '^' || c == ':')
        || text.contains("..");
    if bad {
        return Err(InvalidInput::new(
            field,
            format!("{text:?} is not a git branch or commit name"),
        ));
    }
    Ok(text.to_owned())
}

impl RawSuiteArgs {
    /// This request laid over `base` (a preset): every field this one gives wins, every
    /// field it leaves out comes from `base`. Flags only turn on (`--dry-run` in a preset
    /// cannot be turned off by the request, nor can the request turn it on for good).
    pub fn over(self, base: &RawSuiteArgs) -> RawSuiteArgs {
        fn text(given: String, base: &str) -> String {
            if given.trim().is_empty() {
                base.to_owned()
            } else {
                given
            }
        }
        fn list(given: Vec<String>, base: &[String]) -> Vec<String> {
            if given.is_empty() {
                base.to_vec()
            } else {
                given
            }
        }
        fn number(given: u32, base: u32) -> u32 {
            if given == 0 { base } else { given }
        }
        RawSuiteArgs {
            suite: text(self.suite, &base.suite),
            suite_dir: text(self.suite_dir, &base.suite_dir),
            suite_repo: text(self.suite_repo, &base.suite_repo),
            suite_branch: text(self.suite_branch, &base.suite_branch),
            suite_sha1: text(self.suite_sha1, &base.suite_sha1),
            suite_relpath: text(self.suite_relpath, &base.suite_relpath),
            ceph_branch: text(self.ceph_branch, &base.ceph_branch),
            ceph_sha1: text(self.ceph_sha1, &base.ceph_sha1),
            ceph_repo: text(self.ceph_repo, &base.ceph_repo),
            kernel: text(self.kernel, &base.kernel),
            flavor: text(self.flavor, &base.flavor),
            machine_type: text(self.machine_type, &base.machine_type),
            distro: text(self.distro, &base.distro),
            distro_version: text(self.distro_version, &base.distro_version),
            priority: self.priority.or(base.priority),
            subset: text(self.subset, &base.subset),
            seed: self.seed.or(base.seed),
            limit: number(self.limit, base.limit),
            num: number(self.num, base.num),
            filter_in: list(self.filter_in, &base.filter_in),
            filter_out: list(self.filter_out, &base.filter_out),
            filter_all: list(self.filter_all, &base.filter_all),
            filter_fragments: self.filter_fragments || base.filter_fragments,
            email: text(self.email, &base.email),
            timeout: self.timeout.or(base.timeout),
            owner: text(self.owner, &base.owner),
            dry_run: self.dry_run,
            rerun: self.rerun,
            rerun_statuses: list(self.rerun_statuses, &base.rerun_statuses),
            force_priority: self.force_priority,
            job_threshold: self.job_threshold.or(base.job_threshold),
            teuthology_branch: text(self.teuthology_branch, &base.teuthology_branch),
            teuthology_sha1: text(self.teuthology_sha1, &base.teuthology_sha1),
            no_nested_subset: self.no_nested_subset || base.no_nested_subset,
            run_name: self.run_name,
            arch: text(self.arch, &base.arch),
        }
    }

    /// Checks every field and applies teuthology-suite's defaults.
    pub fn validate(self) -> Result<SuiteArgs, InvalidInput> {
        let rerun = given(&self.rerun).map(|r| RunName::parse(&r)).transpose()?;
        let suite = self
            .suite
            .trim()
            .replace(':', "/")
            .trim_end_matches('/')
            .to_owned();
        if suite.is_empty() && rerun.is_none() {
            return Err(InvalidInput::new(
                "suite",
                "name the suite to schedule (-s rados/singleton) or a run to rerun (--rerun RUN)",
            ));
        }
        let parts_ok = suite.is_empty()
            || (!suite.starts_with('/')
                && suite
                    .split('/')
                    .all(|p| !p.is_empty() && !p.starts_with('.')));
        if !parts_ok {
            return Err(InvalidInput::new(
                "suite",
                format!(
                    "{:?} is not a suite path below qa/suites (use names like rados/singleton)",
                    self.suite
                ),
            ));
        }
        let machine_type = match given(&self.machine_type) {
            Some(text) if text.contains(',') => {
                return Err(InvalidInput::new(
                    "machine type",
                    format!(
                        "{text:?} lists several machine types; cuttle schedules a suite on one (-m smithi); schedule one run per type"
                    ),
                ));
            }
            Some(text) => Some(MachineType::parse(&text)?),
            None => None,
        };
        if machine_type.is_none() && rerun.is_none() && !self.dry_run {
            return Err(InvalidInput::new(
                "machine type",
                "say which machine type the jobs run on (-m smithi)",
            ));
        }
        let ceph_branch = plain_ref(
            "ceph branch",
            given(&self.ceph_branch).as_deref().unwrap_or("main"),
        )?;
        let ceph_sha1 = given(&self.ceph_sha1)
            .map(|s| plain_ref("ceph sha1", &s))
            .transpose()?
            .unwrap_or_default();
        let source = if let Some(dir) = given(&self.suite_dir) {
            Some(SuiteSource::Dir(dir))
        } else if let Some(repo) = given(&self.suite_repo) {
            if repo.starts_with('-') || repo.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(InvalidInput::new(
                    "suite repo",
                    format!("{repo:?} is not a git URL or path"),
                ));
            }
            let branch = match given(&self.suite_branch) {
                Some(branch) => plain_ref("suite branch", &branch)?,
                None => ceph_branch.clone(),
            };
            let sha1 = given(&self.suite_sha1)
                .map(|s| plain_ref("suite sha1", &s))
                .transpose()?;
            Some(SuiteSource::Git { repo, branch, sha1 })
        } else {
            None
        };
        let suite_relpath = given(&self.suite_relpath).unwrap_or_else(|| "qa".into());
        if suite_relpath.starts_with('/') || suite_relpath.split('/').any(|p| p == "..") {
            return Err(InvalidInput::new(
                "suite relpath",
                format!("{suite_relpath:?} must be a path inside the suite repository"),
            ));
        }
        let kernel = match given(&self.kernel)
            .as_deref()
            .map(str::to_lowercase)
            .as_deref()
        {
            None | Some("distro") => Kernel::Distro,
            Some("none") => Kernel::None,
            Some(other) => {
                return Err(InvalidInput::new(
                    "kernel",
                    format!(
                        "kernel branch {other:?} needs a kernel build lookup, which cuttle does not do yet; use -k distro (the default) or -k none"
                    ),
                ));
            }
        };
        let priority = Priority::new(i64::from(self.priority.unwrap_or(Priority::DEFAULT.get())))?;
        let subset = given(&self.subset).map(|s| Subset::parse(&s)).transpose()?;
        let num = if self.num == 0 {
            1
        } else {
            u64::from(self.num)
        };
        if num > MAX_NUM {
            return Err(InvalidInput::new(
                "num",
                format!("{num} copies of each job is too many; at most {MAX_NUM}"),
            ));
        }
        let owner = given(&self.owner).map(|o| Owner::parse(&o)).transpose()?;
        let statuses = split_list(&self.rerun_statuses);
        let rerun_statuses = if statuses.is_empty() {
            vec![JobStatus::Fail, JobStatus::Dead]
        } else {
            statuses
                .iter()
                .map(|s| {
                    s.parse::<JobStatus>().map_err(|_| {
                        InvalidInput::new(
                            "rerun statuses",
                            format!("{s:?} is not a job status; use pass, fail, dead, killed, queued, waiting or running"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let email = given(&self.email);
        if let Some(email) = &email
            && email.split(',').any(|a| !a.trim().contains('@'))
        {
            return Err(InvalidInput::new(
                "email",
                format!("{email:?} is not a comma-separated list of addresses"),
            ));
        }
        let run_name = given(&self.run_name)
            .map(|n| RunName::parse(&n))
            .transpose()?;
        Ok(SuiteArgs {
            suite,
            source,
            suite_relpath,
            ceph_branch,
            ceph_sha1,
            ceph_repo: given(&self.ceph_repo)
                .unwrap_or_else(|| "https://github.com/ceph/ceph-ci.git".into()),
            kernel,
            flavor: given(&self.flavor).unwrap_or_else(|| "default".into()),
            machine_type,
            distro: given(&self.distro).map(|d| d.to_lowercase()),
            distro_version: given(&self.distro_version).map(|d| d.to_lowercase()),
            priority,
            subset,
            seed: self.seed,
            limit: u64::from(self.limit),
            num,
            filter_in: split_list(&self.filter_in),
            filter_out: split_list(&self.filter_out),
            filter_all: split_list(&self.filter_all),
            filter_fragments: self.filter_fragments,
            email,
            timeout_s: self.timeout.map(u64::from),
            owner,
            dry_run: self.dry_run,
            rerun,
            rerun_statuses,
            force_priority: self.force_priority,
            job_threshold: self.job_threshold.map(u64::from),
            teuthology_branch: given(&self.teuthology_branch)
                .map(|b| plain_ref("teuthology branch", &b))
                .transpose()?,
            teuthology_sha1: given(&self.teuthology_sha1)
                .map(|s| plain_ref("teuthology sha1", &s))
                .transpose()?,
            no_nested_subset: self.no_nested_subset,
            run_name,
            arch: given(&self.arch),
        })
    }
}

/// teuthology-suite's priority floor: urgent priorities are for small runs. `Err` says
/// why and how to pass it.
pub fn check_priority(priority: Priority, jobs: u64) -> Result<(), String> {
    let p = priority.get();
    let refused = p < 50 || (p < 75 && jobs > 25) || (p < 150 && jobs > 100);
    if !refused {
        return Ok(());
    }
    Err(format!(
        "{jobs} jobs at priority {p} is refused: below 50 is for the sky falling, 50-74 for at most \
         25 jobs, 75-149 for at most 100 jobs, 150-199 for features and fixes, 200-1000 for large \
         runs over a week; pick a higher number (-p) or, as an admin, pass --force-priority"
    ))
}

/// The run name teuthology-suite makes: `OWNER-TIMESTAMP-SUITE-BRANCH-KERNEL-FLAVOR-TYPE`
/// with `/` turned into `:`.
pub fn default_run_name(
    owner: &str,
    timestamp: &str,
    args: &SuiteArgs,
    machine_type: &str,
) -> String {
    let kernel = match args.kernel {
        Kernel::Distro => "distro",
        Kernel::None => "none",
    };
    [
        owner,
        timestamp,
        &args.suite,
        &args.ceph_branch,
        kernel,
        &args.flavor,
        machine_type,
    ]
    .join("-")
    .replace('/', ":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_checked() {
        assert_eq!(Subset::parse("1/32").unwrap(), Subset { which: 1, of: 32 });
        for bad in ["5/3", "3/3", "1/0", "a/2", "1", "-1/3"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Subset::parse("5/3")
                .unwrap_err()
                .message
                .contains("0/3 to 2/3")
        );
    }

    #[test]
    fn the_priority_floor_is_teuthologys() {
        let p = |n| Priority::new(n).unwrap();
        assert!(check_priority(p(49), 1).is_err());
        assert!(check_priority(p(50), 25).is_ok());
        assert!(check_priority(p(74), 26).is_err());
        assert!(check_priority(p(149), 101).is_err());
        assert!(check_priority(p(150), 10_000).is_ok());
    }

    #[test]
    fn a_suite_repo_cannot_smuggle_a_git_option() {
        for repo in ["--upload-pack=touch /tmp/x", "-u x", "a b"] {
            let raw = RawSuiteArgs {
                suite: "rados".into(),
                suite_repo: repo.into(),
                dry_run: true,
                ..Default::default()
            };
            assert!(raw.validate().is_err(), "{repo}");
        }
    }

    #[test]
    fn a_list_of_machine_types_is_refused() {
        let raw = RawSuiteArgs {
            suite: "rados".into(),
            machine_type: "smithi,mira".into(),
            ..Default::default()
        };
        assert!(raw.validate().unwrap_err().message.contains("one"));
    }
}

/// A saved suite request, per owner: `cuttle suite --preset NAME` lays its own flags over
/// it. What a request decides for itself each time (dry run, rerun, run name, passing the
/// guard rails) is never saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub owner: Owner,
    pub name: crate::PresetName,
    pub args: RawSuiteArgs,
    pub created_at: crate::UnixMillis,
    pub updated_at: crate::UnixMillis,
}

impl RawSuiteArgs {
    /// The part of a request a preset keeps, checked: it must validate on its own (as a
    /// dry run, so a preset may leave the machine type to the request).
    pub fn for_preset(mut self) -> Result<RawSuiteArgs, InvalidInput> {
        self.dry_run = false;
        self.rerun.clear();
        self.run_name.clear();
        self.force_priority = false;
        let mut probe = self.clone();
        probe.dry_run = true;
        if probe.suite.trim().is_empty() {
            return Err(InvalidInput::new(
                "suite",
                "a preset names its suite (-s rados/singleton)",
            ));
        }
        probe.validate()?;
        Ok(self)
    }
}

/// What a run scheduled from a suite is pinned to: every job of it carries the same suite
/// and teuthology commits, recorded when it was scheduled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuitePins {
    pub suite_repo: String,
    pub suite_branch: String,
    pub suite_sha1: String,
    pub teuthology_branch: String,
    pub teuthology_sha1: String,
    pub seed: u64,
    pub subset: Option<String>,
    pub email: Option<String>,
    pub results_timeout_s: Option<u64>,
    /// The run this one reran, for `--rerun`.
    pub rerun_of: Option<String>,
}

/// The results of a suite run, written when it ends (or its results timeout passes):
/// what teuthology's `last_in_suite` job e-mails, without spending a node on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub subject: String,
    pub body: String,
}

/// One job as the report lists it.
#[derive(Debug, Clone, Copy)]
pub struct ReportedJob<'a> {
    pub id: i64,
    pub status: JobStatus,
    pub description: &'a str,
    pub reason: Option<&'a str>,
}

/// The report of run `run`: counts per status in the subject, then every job that did
/// not pass (dead and failed first), then the pins a rerun would need.
pub fn run_report(
    run: &str,
    pins: &SuitePins,
    jobs: &[ReportedJob<'_>],
    timed_out: bool,
) -> RunReport {
    let count = |status: JobStatus| jobs.iter().filter(|j| j.status == status).count();
    let living = jobs.iter().filter(|j| !j.status.is_terminal()).count();
    let mut subject = format!(
        "{run}: {} passed, {} failed, {} dead, {} killed",
        count(JobStatus::Pass),
        count(JobStatus::Fail),
        count(JobStatus::Dead),
        count(JobStatus::Killed)
    );
    if timed_out && living > 0 {
        subject.push_str(&format!(
            ", {living} still running or queued (results timeout)"
        ));
    }
    let mut body = format!("Run {run}: {} jobs.\n\n", jobs.len());
    let mut not_passed: Vec<&ReportedJob<'_>> = jobs
        .iter()
        .filter(|j| j.status != JobStatus::Pass)
        .collect();
    not_passed.sort_by_key(|j| {
        let rank = match j.status {
            JobStatus::Dead => 0,
            JobStatus::Fail => 1,
            JobStatus::Killed => 2,
            _ => 3,
        };
        (rank, j.id)
    });
    for job in &not_passed {
        body.push_str(&format!(
            "{} job {} {}\n",
            job.status.as_str(),
            job.id,
            job.description
        ));
        if let Some(reason) = job.reason.filter(|r| !r.is_empty()) {
            body.push_str(&format!("    {reason}\n"));
        }
    }
    if not_passed.is_empty() {
        body.push_str("Every job passed.\n");
    }
    body.push_str(&format!(
        "\nsuite {} @ {} ({}), teuthology {} @ {}, seed {}{}\n",
        pins.suite_repo,
        pins.suite_sha1,
        pins.suite_branch,
        pins.teuthology_branch,
        pins.teuthology_sha1,
        pins.seed,
        pins.subset
            .as_deref()
            .map(|s| format!(", subset {s}"))
            .unwrap_or_default()
    ));
    if count(JobStatus::Fail) + count(JobStatus::Dead) > 0 {
        body.push_str(&format!(
            "Rerun what failed or died: cuttle suite --rerun {run}\n"
        ));
    }
    RunReport { subject, body }
}

#[cfg(test)]
mod preset_tests {
    use super::*;

    #[test]
    fn a_request_over_a_preset_keeps_what_it_leaves_out() {
        let preset = RawSuiteArgs {
            suite: "rados/singleton".into(),
            machine_type: "smithi".into(),
            priority: Some(100),
            filter_in: vec!["bluestore".into()],
            subset: "1/32".into(),
            ..RawSuiteArgs::default()
        }
        .for_preset()
        .unwrap();
        let request = RawSuiteArgs {
            subset: "2/32".into(),
            seed: Some(7),
            ..RawSuiteArgs::default()
        };
        let merged = request.over(&preset).validate().unwrap();
        assert_eq!(merged.suite, "rados/singleton");
        assert_eq!(merged.priority.get(), 100);
        assert_eq!(merged.filter_in, ["bluestore"]);
        assert_eq!(merged.subset, Some(Subset { which: 2, of: 32 }));
        assert_eq!(merged.seed, Some(7));
    }

    #[test]
    fn a_preset_keeps_no_one_off_choices_and_must_be_valid() {
        let kept = RawSuiteArgs {
            suite: "rados".into(),
            dry_run: true,
            force_priority: true,
            run_name: "x".into(),
            ..RawSuiteArgs::default()
        }
        .for_preset()
        .unwrap();
        assert!(!kept.dry_run && !kept.force_priority && kept.run_name.is_empty());
        assert!(RawSuiteArgs::default().for_preset().is_err());
        assert!(
            RawSuiteArgs {
                suite: "rados".into(),
                subset: "5/3".into(),
                ..RawSuiteArgs::default()
            }
            .for_preset()
            .is_err()
        );
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn the_report_counts_and_lists_what_did_not_pass() {
        let jobs = [
            ReportedJob {
                id: 1,
                status: JobStatus::Pass,
                description: "a",
                reason: None,
            },
            ReportedJob {
                id: 2,
                status: JobStatus::Fail,
                description: "b",
                reason: Some("Command failed"),
            },
            ReportedJob {
                id: 3,
                status: JobStatus::Dead,
                description: "c",
                reason: Some("hit max job timeout"),
            },
            ReportedJob {
                id: 4,
                status: JobStatus::Queued,
                description: "d",
                reason: None,
            },
        ];
        let report = run_report("r", &SuitePins::default(), &jobs, true);
        assert_eq!(
            report.subject,
            "r: 1 passed, 1 failed, 1 dead, 0 killed, 1 still running or queued (results timeout)"
        );
        let dead = report.body.find("dead job 3 c").unwrap();
        let failed = report.body.find("fail job 2 b").unwrap();
        assert!(dead < failed, "{}", report.body);
        assert!(report.body.contains("    hit max job timeout"));
        assert!(report.body.contains("cuttle suite --rerun r"));
        assert!(!report.body.contains("job 1 a"));
    }
}
