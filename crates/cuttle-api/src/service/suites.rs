//! SuiteService: expands a suite with cuttle-suite and schedules it through the same
//! path as CreateRun, or reruns the jobs of an earlier run.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use cuttle_core::auth::{Action, Caller, Role};
use cuttle_core::build::{BuildQuery, BuildState};
use cuttle_core::suite::{
    RawSuiteArgs, SuiteArgs, SuitePins, SuiteSource, check_priority, default_run_name,
};
use cuttle_core::{InvalidInput, Owner};
use cuttle_proto::convert::{autosuite_to_proto, suite_args_from_proto, suite_job_to_proto};
use cuttle_proto::v1::suite_service_server::SuiteService;
use cuttle_proto::v1::{self, CreateRunRequest, ScheduleSuiteResponse};
use cuttle_suite::plan::{Pins, Stamp, request, to_json};
use cuttle_suite::{Disk, Expansion, SuiteJob, Tally};

use super::runs::{MAX_JOBS_PER_RUN, RunApi};
use crate::suite_cache::{self, SuiteCache};
use crate::{App, errors, observe};

/// Most jobs a dry run answers with (each with its merged config).
pub const MAX_DRY_RUN_JOBS: u64 = 20_000;

#[derive(Debug, Clone)]
pub struct SuiteApi {
    app: App,
    runs: RunApi,
    cache: SuiteCache,
    /// One fetch of the suite cache at a time.
    fetching: Arc<Mutex<()>>,
}

impl SuiteApi {
    pub fn new(app: App) -> SuiteApi {
        let cache = SuiteCache::new(app.settings().data_dir.join("suite-cache"));
        SuiteApi {
            runs: RunApi::new(app.clone()),
            app,
            cache,
            fetching: Arc::new(Mutex::new(())),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Status {
    errors::invalid(InvalidInput::new(field, message))
}

fn is_admin(caller: &Caller) -> bool {
    caller.role() == Some(Role::Admin)
}

/// teuthology's timestamp of `now`, `2026-11-29_20:32:38` (UTC).
pub(crate) fn teuthology_timestamp(now: cuttle_core::UnixMillis) -> String {
    cuttle_core::time::UtcDateTime::from_unix_seconds(now.0.div_euclid(1000)).teuthology_stamp()
}

/// Where a suite's build stands, for ScheduleSuite.
enum Build {
    /// Packages exist; schedule with this sha1.
    Ready { sha1: String },
    /// Not ready, and the caller asked to wait: keep an AutoSuite.
    Wait(String),
    /// No Shaman configured: schedule as asked.
    Unchecked,
}

/// What the blocking expansion hands back.
struct Expanded {
    jobs: Vec<SuiteJob>,
    tally: Tally,
    suite_name: String,
}

impl SuiteApi {
    /// Schedules validated arguments for `caller` (no build check: see
    /// [`SuiteApi::check_build`]).
    pub(crate) async fn schedule(
        &self,
        caller: Caller,
        args: SuiteArgs,
    ) -> Result<ScheduleSuiteResponse, Status> {
        let owner = match (&args.owner, &caller) {
            (Some(owner), _) => owner.clone(),
            (None, Caller::User { user, .. }) => user.clone(),
            (None, Caller::Anonymous) => {
                return Err(invalid(
                    "owner",
                    "say whose run it is (--owner) or send a token",
                ));
            }
        };
        if !args.dry_run {
            self.app
                .check(&caller, Action::Schedule { owner: &owner })?;
        }
        let machine_type = args.machine_type.clone().ok_or_else(|| {
            invalid(
                "machine type",
                "say which machine type the jobs run on (-m smithi)",
            )
        })?;
        let settings = self.app.settings().suites.clone();
        let threshold = args.job_threshold.unwrap_or(settings.job_threshold);
        let lifts_threshold = threshold == 0 || threshold > settings.job_threshold;
        if !args.dry_run && (args.force_priority || lifts_threshold) && !is_admin(&caller) {
            return Err(Status::permission_denied(format!(
                "{} needs the admin role; ask a lab admin, or schedule fewer jobs (--subset, --filter, --limit) at a priority the floor allows",
                if args.force_priority {
                    "--force-priority"
                } else {
                    "raising --job-threshold above the lab's"
                }
            )));
        }
        // Where the suite comes from, pinned to a commit.
        let source = match args.source.clone() {
            Some(source) => source,
            None => match &settings.suite_repo {
                Some(repo) => SuiteSource::Git {
                    repo: repo.clone(),
                    branch: args.ceph_branch.clone(),
                    sha1: None,
                },
                None => {
                    return Err(invalid(
                        "suite source",
                        "give --suite-dir (a checkout on cuttle-api's host) or --suite-repo, or set suite_repo in cuttle-api's config",
                    ));
                }
            },
        };
        let cache = self.cache.clone();
        let roots = settings.dir_roots.clone();
        // A plain directory runs its workunits from the ceph branch, as teuthology-suite
        // picks the suite branch when none is given.
        let dir_branch = args.ceph_branch.clone();
        let guard = self.fetching.clone().lock_owned().await;
        let (repo_dir, pins_base) = tokio::task::spawn_blocking(move || {
            let _held = guard;
            match source {
                SuiteSource::Dir(dir) => {
                    let path = PathBuf::from(&dir);
                    if !roots.is_empty() {
                        let resolved = std::fs::canonicalize(&path).unwrap_or_default();
                        let inside = roots.iter().any(|root| {
                            std::fs::canonicalize(root).is_ok_and(|root| resolved.starts_with(root))
                        });
                        if !inside {
                            let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
                            return Err(Status::permission_denied(format!(
                                "suite dir {dir} is not under this lab's suite_dir_roots ({}); put the checkout there or use --suite-repo",
                                allowed.join(", ")
                            )));
                        }
                    }
                    if !path.is_dir() {
                        return Err(invalid(
                            "suite dir",
                            format!("{dir} is not a directory on cuttle-api's host; give the checkout that holds qa/suites"),
                        ));
                    }
                    let sha1 = suite_cache::dir_head(&path).unwrap_or_default();
                    Ok((path, (dir, dir_branch, sha1)))
                }
                SuiteSource::Git { repo, branch, sha1 } => {
                    let checkout = cache
                        .checkout(&repo, &branch, sha1.as_deref())
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                    Ok((checkout.dir, (repo, branch, checkout.sha1)))
                }
            }
        })
        .await
        .map_err(errors::join)??;
        let teuthology_branch = args
            .teuthology_branch
            .clone()
            .or_else(|| cuttle_suite::disk::teuthology_branch_file(&repo_dir, &args.suite_relpath))
            .unwrap_or_else(|| "main".into());
        let teuthology_sha1 = match (&args.teuthology_sha1, &settings.teuthology_repo) {
            (Some(sha1), _) => sha1.clone(),
            (None, Some(repo)) => {
                let (repo, branch) = (repo.clone(), teuthology_branch.clone());
                tokio::task::spawn_blocking(move || suite_cache::branch_tip(&repo, &branch))
                    .await
                    .map_err(errors::join)?
                    .map_err(|e| Status::unavailable(e.to_string()))?
            }
            (None, None) => String::new(),
        };
        let now = crate::now();
        let seed = args
            .seed
            .unwrap_or_else(|| (now.0.unsigned_abs() / 7) % 10_000);
        let timestamp = teuthology_timestamp(now);
        let run_name = match &args.run_name {
            Some(name) => name.to_string(),
            None => default_run_name(owner.as_str(), &timestamp, &args, machine_type.as_str()),
        };
        let pins = Pins {
            suite_repo: pins_base.0,
            suite_branch: pins_base.1,
            suite_sha1: pins_base.2,
            teuthology_branch,
            teuthology_sha1,
        };
        let stamp = Stamp {
            run_name: run_name.clone(),
            owner: owner.to_string(),
            timestamp,
            seed,
            machine_type: machine_type.to_string(),
        };
        let expand_request = request(&args, repo_dir, &pins, &stamp);
        let max_jobs = if args.dry_run {
            MAX_DRY_RUN_JOBS
        } else {
            (MAX_JOBS_PER_RUN as u64) / args.num.max(1)
        };
        let cap = if args.dry_run || threshold == 0 {
            max_jobs
        } else {
            threshold.min(max_jobs)
        };
        let max_matrix = settings.max_matrix;
        let dry_run = args.dry_run;
        let expanded = tokio::task::spawn_blocking(move || -> Result<Expanded, Status> {
            let mut expansion = Expansion::plan(&Disk, expand_request).map_err(|e| invalid("suite", e.to_string()))?;
            let generated = expansion.tally().generated;
            if generated > max_matrix {
                return Err(Status::failed_precondition(format!(
                    "suite {} has {generated} jobs before filters, over this lab's max_suite_matrix of {max_matrix}; schedule a part of it (-s with a sub-suite, or --subset)",
                    expansion.suite_name()
                )));
            }
            let mut jobs = Vec::new();
            while let Some(job) = expansion.next_job().map_err(|e| invalid("suite", e.to_string()))? {
                jobs.push(job);
                if jobs.len() as u64 > cap {
                    let why = if dry_run || threshold == 0 || cap < threshold {
                        format!("more than {cap} jobs is more than one run may hold")
                    } else {
                        format!("more than the job threshold of {threshold} jobs (an admin may pass --job-threshold N, or 0 for none)")
                    };
                    return Err(Status::failed_precondition(format!(
                        "suite {} expands to {why}; narrow it with --subset, --filter or --limit; nothing was scheduled",
                        expansion.suite_name()
                    )));
                }
            }
            Ok(Expanded { jobs, tally: expansion.tally(), suite_name: expansion.suite_name().to_owned() })
        })
        .await
        .map_err(errors::join)??;
        if !dry_run && !args.force_priority {
            check_priority(args.priority, expanded.jobs.len() as u64)
                .map_err(Status::failed_precondition)?;
        }
        let mut response = ScheduleSuiteResponse {
            run_name: String::new(),
            generated: expanded.tally.generated,
            filtered: expanded.tally.filtered,
            rejected: expanded.tally.rejected,
            excluded: expanded.tally.excluded,
            jobs: Vec::new(),
            queued: Vec::new(),
            seed,
            suite_sha1: pins.suite_sha1.clone(),
            teuthology_branch: pins.teuthology_branch.clone(),
            teuthology_sha1: pins.teuthology_sha1.clone(),
            suite: expanded.suite_name.clone(),
            autosuite: None,
        };
        if !dry_run && expanded.jobs.is_empty() {
            return Err(Status::failed_precondition(format!(
                "suite {} has no job left after filters ({} generated, {} filtered out, {} rejected by scripts, {} excluded); nothing was scheduled",
                expanded.suite_name,
                expanded.tally.generated,
                expanded.tally.filtered,
                expanded.tally.rejected,
                expanded.tally.excluded
            )));
        }
        let mut specs = Vec::with_capacity(expanded.jobs.len() * args.num as usize);
        for job in &expanded.jobs {
            let config_json = serde_json::to_string(&to_json(&job.config)).unwrap_or_default();
            response.jobs.push(suite_job_to_proto(
                job.index,
                job.description.clone(),
                job.fragments.clone(),
                config_json,
            ));
            if dry_run {
                continue;
            }
            let config_yaml = serde_yaml::to_string(&job.config)
                .map_err(|e| invalid("job config", format!("{}: {e}", job.description)))?;
            let text_of = |key: &str| match job.config.get(key) {
                Some(serde_yaml::Value::String(s)) => s.clone(),
                Some(serde_yaml::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            for _ in 0..args.num {
                specs.push(v1::JobSpec {
                    description: job.description.clone(),
                    machine_type: machine_type.to_string(),
                    priority: Some(args.priority.get()),
                    n_nodes: None,
                    time_limit_s: None,
                    os_type: text_of("os_type"),
                    os_version: text_of("os_version"),
                    config_yaml: config_yaml.clone(),
                });
            }
        }
        if dry_run {
            return Ok(response);
        }
        let created = self
            .runs
            .create_pinned_run(
                caller,
                CreateRunRequest {
                    name: run_name,
                    owner: owner.to_string(),
                    branch: args.ceph_branch.clone(),
                    sha1: args.ceph_sha1.clone(),
                    suite: expanded.suite_name.clone(),
                    jobs: specs,
                },
                Some(SuitePins {
                    suite_repo: pins.suite_repo,
                    suite_branch: pins.suite_branch,
                    suite_sha1: pins.suite_sha1,
                    teuthology_branch: pins.teuthology_branch,
                    teuthology_sha1: pins.teuthology_sha1,
                    seed,
                    subset: args.subset.map(|s| s.to_string()),
                    email: args.email.clone(),
                    results_timeout_s: args.timeout_s,
                    rerun_of: None,
                }),
            )
            .await?;
        response.run_name = created.run_name;
        response.queued = created.jobs;
        Ok(response)
    }

    /// Asks Shaman (when configured) whether the build the suite needs is ready. Not
    /// ready: FAILED_PRECONDITION saying where it stands, unless `wait` (then
    /// [`Build::Wait`]). A failed build is refused even with `wait`: its AutoSuite
    /// could only fail.
    async fn check_build(&self, args: &SuiteArgs, wait: bool) -> Result<Build, Status> {
        let Some(builds) = self.app.builds() else {
            return Ok(Build::Unchecked);
        };
        let wanted = crate::autosuites::wanted_build(args);
        let query = BuildQuery::for_build(&wanted, args.arch.as_deref());
        let what = query.describe();
        let hint = "pass --wait-for-build to schedule it as soon as it is";
        match builds.check(&query).await {
            Ok(BuildState::Ready { sha1, .. }) => Ok(Build::Ready { sha1 }),
            Ok(BuildState::Failed { url }) => Err(Status::failed_precondition(format!(
                "the build of {what} failed ({url}); push a fix and schedule again, nothing was scheduled"
            ))),
            Ok(BuildState::Building { status }) if !wait => Err(Status::failed_precondition(
                format!("the build of {what} is not ready yet (Shaman says {status}); {hint}"),
            )),
            Ok(BuildState::Unknown) if !wait => Err(Status::failed_precondition(format!(
                "Shaman knows no build of {what}; push the branch to ceph-ci, or {hint}"
            ))),
            Ok(state) => Ok(Build::Wait(format!("{state:?}"))),
            // Shaman down: a waiting request is kept, the poll checks later.
            Err(error) if wait => Ok(Build::Wait(error.to_string())),
            Err(error) => Err(Status::unavailable(format!(
                "{error}; try again, or {hint} (the poll checks later)"
            ))),
        }
    }

    /// `--rerun RUN`: the jobs of RUN that ended in one of the statuses, with their
    /// descriptions and configs, as a new run.
    async fn rerun(
        &self,
        caller: Caller,
        args: SuiteArgs,
    ) -> Result<ScheduleSuiteResponse, Status> {
        let old_name = args.rerun.clone().expect("a rerun names its run");
        let name_for_db = old_name.clone();
        let ((summary, jobs), old_pins) = self
            .app
            .db(move |store| {
                Ok((
                    store.get_run(&name_for_db)?,
                    store.suite_pins(&name_for_db)?,
                ))
            })
            .await?;
        let owner: Owner = match (&args.owner, &caller) {
            (Some(owner), _) => owner.clone(),
            (None, Caller::User { user, .. }) => user.clone(),
            (None, Caller::Anonymous) => summary.run.spec.owner.clone(),
        };
        if !args.dry_run {
            self.app
                .check(&caller, Action::Schedule { owner: &owner })?;
        }
        let picked: Vec<&cuttle_core::Job> = jobs
            .iter()
            .filter(|j| args.rerun_statuses.contains(&j.status))
            .collect();
        let statuses: Vec<&str> = args.rerun_statuses.iter().map(|s| s.as_str()).collect();
        if picked.is_empty() {
            return Err(Status::failed_precondition(format!(
                "run {old_name} has no job that ended {}; nothing to rerun (pick other statuses with --rerun-statuses)",
                statuses.join(" or ")
            )));
        }
        if args.force_priority && !is_admin(&caller) && !args.dry_run {
            return Err(Status::permission_denied(
                "--force-priority needs the admin role",
            ));
        }
        let now = crate::now();
        let timestamp = teuthology_timestamp(now);
        let run_name = match &args.run_name {
            Some(name) => name.to_string(),
            None => format!("{owner}-{timestamp}-rerun-{old_name}").replace('/', ":"),
        };
        let mut response = ScheduleSuiteResponse {
            seed: old_pins.as_ref().map_or(0, |p| p.seed),
            suite_sha1: old_pins
                .as_ref()
                .map(|p| p.suite_sha1.clone())
                .unwrap_or_default(),
            teuthology_branch: old_pins
                .as_ref()
                .map(|p| p.teuthology_branch.clone())
                .unwrap_or_default(),
            teuthology_sha1: old_pins
                .as_ref()
                .map(|p| p.teuthology_sha1.clone())
                .unwrap_or_default(),
            suite: summary.run.spec.suite.clone(),
            generated: jobs.len() as u64,
            filtered: (jobs.len() - picked.len()) as u64,
            ..ScheduleSuiteResponse::default()
        };
        let mut specs = Vec::new();
        for (index, job) in picked.iter().enumerate() {
            let config_json = serde_yaml::from_str::<serde_yaml::Value>(&job.config_yaml)
                .map(|v| serde_json::to_string(&to_json(&v)).unwrap_or_default())
                .unwrap_or_default();
            response.jobs.push(suite_job_to_proto(
                index as u64,
                job.spec.description.clone(),
                Vec::new(),
                config_json,
            ));
            for _ in 0..args.num {
                specs.push(v1::JobSpec {
                    description: job.spec.description.clone(),
                    machine_type: job.spec.machine_type.to_string(),
                    priority: Some(args.priority.get()),
                    n_nodes: Some(job.spec.n_nodes.get()),
                    time_limit_s: job.spec.time_limit.map(|t| t.seconds()),
                    os_type: job.spec.os_type.clone(),
                    os_version: job.spec.os_version.clone(),
                    config_yaml: job.config_yaml.clone(),
                });
            }
        }
        if !args.force_priority && !args.dry_run {
            check_priority(args.priority, picked.len() as u64)
                .map_err(Status::failed_precondition)?;
        }
        if args.dry_run {
            return Ok(response);
        }
        let pins = old_pins.map(|p| SuitePins {
            rerun_of: Some(old_name.to_string()),
            ..p
        });
        let created = self
            .runs
            .create_pinned_run(
                caller,
                CreateRunRequest {
                    name: run_name,
                    owner: owner.to_string(),
                    branch: summary.run.spec.branch.clone(),
                    sha1: summary.run.spec.sha1.clone(),
                    suite: summary.run.spec.suite.clone(),
                    jobs: specs,
                },
                pins,
            )
            .await?;
        response.run_name = created.run_name;
        response.queued = created.jobs;
        Ok(response)
    }
}

/// A request's arguments with the preset it names laid under them. The preset is the
/// owner's: the request's owner, else the caller's own.
pub(crate) async fn with_preset(
    app: &App,
    caller: &Caller,
    request: v1::SuiteArgs,
) -> Result<RawSuiteArgs, Status> {
    let preset = request.preset.trim().to_owned();
    let raw = suite_args_from_proto(request);
    if preset.is_empty() {
        return Ok(raw);
    }
    let owner = super::presets::preset_owner(caller, &raw.owner)?;
    let name = super::required(
        &preset,
        "preset name",
        "name the preset",
        cuttle_core::PresetName::parse,
    )?;
    let saved = app.db(move |store| store.get_preset(&owner, &name)).await?;
    Ok(raw.over(&saved.args))
}

#[tonic::async_trait]
impl SuiteService for SuiteApi {
    async fn schedule_suite(
        &self,
        request: Request<v1::SuiteArgs>,
    ) -> Result<Response<ScheduleSuiteResponse>, Status> {
        observe("SuiteService/ScheduleSuite", async {
            let caller = self.app.caller(request.metadata()).await?;
            let request = request.into_inner();
            let wait_for_build = request.wait_for_build;
            let raw = with_preset(&self.app, &caller, request).await?;
            let mut args = raw.clone().validate().map_err(errors::invalid)?;
            if args.dry_run {
                self.app.check(&caller, Action::Read)?;
            } else if caller == Caller::Anonymous {
                // Any write refuses an anonymous caller, before any expansion work.
                self.app.check(&caller, Action::Service)?;
            }
            if args.rerun.is_some() {
                return self.rerun(caller, args).await;
            }
            if !args.dry_run {
                // Whose run it would be is checked before Shaman is asked anything.
                if let (Some(owner), Caller::User { .. }) = (&args.owner, &caller) {
                    self.app.check(&caller, Action::Schedule { owner })?;
                }
                match self.check_build(&args, wait_for_build).await? {
                    Build::Ready { sha1 } => {
                        if args.ceph_sha1.is_empty() {
                            args.ceph_sha1 = sha1;
                        }
                    }
                    Build::Wait(why) => {
                        let autosuite = crate::autosuites::add(&self.app, &caller, raw).await?;
                        tracing::info!(autosuite = autosuite.id, why, "suite kept as an AutoSuite");
                        return Ok(ScheduleSuiteResponse {
                            autosuite: Some(autosuite_to_proto(autosuite, Vec::new())),
                            ..ScheduleSuiteResponse::default()
                        });
                    }
                    Build::Unchecked => {}
                }
            }
            self.schedule(caller, args).await
        })
        .await
    }
}
