//! AutoSuites at work: keeping a suite request until its build is ready, and firing it
//! exactly once when the webhook reports the build or the Shaman poll finds it (see
//! cuttle-core's `autosuite` module for the state machine and its claim).
//!
//! Firing: claim (waiting_for_build -> scheduling, one winner, with the run's name and
//! the build's sha1 fixed), then schedule the suite under that name through the same
//! path as ScheduleSuite, then record `scheduled`. Each poll tick first finishes the
//! AutoSuites left `scheduling` (a cuttle-api that died mid-firing, or a firing that met
//! an outage): `scheduled` when their run exists, else they are scheduled now. Run names
//! are unique, so the run is made once whatever happens in between.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use cuttle_core::Owner;
use cuttle_core::auth::{Action, Caller};
use cuttle_core::autosuite::{AutoSuite, AutoSuiteState, BuildReport, WantedBuild};
use cuttle_core::build::{BuildQuery, BuildState, check_branch, report_matches};
use cuttle_core::suite::{RawSuiteArgs, SuiteArgs, default_run_name};

use crate::builds::BuildChecker;
use crate::service::suites::{SuiteApi, teuthology_timestamp};
use crate::{App, errors, now};

/// Most AutoSuites one owner may have waiting at once.
pub const MAX_WAITING_PER_OWNER: usize = 100;

/// What a build report did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReportOutcome {
    /// Waiting AutoSuites the report is about.
    pub matched: usize,
    /// Of those, how many this report fired (a repeated report fires none).
    pub fired: usize,
    /// Of those, how many it ended `build_failed`.
    pub build_failed: usize,
}

/// The wanted build of validated suite arguments.
pub fn wanted_build(args: &SuiteArgs) -> WantedBuild {
    WantedBuild {
        branch: args.ceph_branch.clone(),
        sha1: args.ceph_sha1.clone(),
        distro: args.distro.clone().unwrap_or_default(),
        distro_version: args.distro_version.clone().unwrap_or_default(),
        flavor: args.flavor.clone(),
    }
}

/// Shaman's question for an AutoSuite.
fn query_of(autosuite: &AutoSuite) -> BuildQuery {
    let arch = (!autosuite.args.arch.trim().is_empty()).then_some(autosuite.args.arch.as_str());
    BuildQuery::for_build(&autosuite.build, arch)
}

/// Keeps `raw` (a preset already laid under it) as an AutoSuite of `caller`'s, after
/// checking everything that can be checked before its build exists.
pub async fn add(app: &App, caller: &Caller, mut raw: RawSuiteArgs) -> Result<AutoSuite, Status> {
    let Caller::User { user, role } = caller else {
        return Err(Status::unauthenticated(
            "an AutoSuite belongs to someone: send your token (--token, CUTTLE_TOKEN or ~/.config/cuttle/token)",
        ));
    };
    let args = raw.clone().validate().map_err(errors::invalid)?;
    let invalid = |field: &'static str, message: &str| {
        errors::invalid(cuttle_core::InvalidInput::new(field, message))
    };
    if args.dry_run {
        return Err(invalid(
            "dry run",
            "an AutoSuite schedules when its build is ready; drop --dry-run",
        ));
    }
    if args.rerun.is_some() {
        return Err(invalid(
            "rerun",
            "a rerun needs no build; schedule it with `cuttle suite --rerun RUN`",
        ));
    }
    if args.machine_type.is_none() {
        return Err(invalid(
            "machine type",
            "say which machine type the jobs run on (-m smithi)",
        ));
    }
    if args.source.is_none() && app.settings().suites.suite_repo.is_none() {
        return Err(invalid(
            "suite source",
            "give --suite-dir or --suite-repo, or set suite_repo in cuttle-api's config",
        ));
    }
    check_branch(&args.ceph_branch).map_err(errors::invalid)?;
    let owner = args.owner.clone().unwrap_or_else(|| user.clone());
    app.check(caller, Action::Schedule { owner: &owner })?;
    raw.owner = owner.to_string();
    let build = wanted_build(&args);
    let role = *role;
    let counted = owner.clone();
    let waiting = app
        .db(move |store| store.list_autosuites(Some(&counted)))
        .await?
        .into_iter()
        .filter(|a| a.state == AutoSuiteState::WaitingForBuild)
        .count();
    if waiting >= MAX_WAITING_PER_OWNER {
        return Err(Status::resource_exhausted(format!(
            "{owner} already has {waiting} AutoSuites waiting, the most one may have; delete some (`cuttle autosuite list`, `cuttle autosuite delete ID`)"
        )));
    }
    let added = app
        .db(move |store| store.add_autosuite(&owner, role, &build, &raw, now()))
        .await?;
    tracing::info!(
        autosuite = added.id,
        owner = %added.owner,
        branch = %added.build.branch,
        "AutoSuite waits for its build"
    );
    Ok(added)
}

/// Fires AutoSuites: on build reports, on each poll of Shaman, and on restart.
#[derive(Debug, Clone)]
pub struct AutoSuites {
    app: App,
    suites: SuiteApi,
    builds: Option<Arc<dyn BuildChecker>>,
    /// AutoSuites this process is scheduling right now: a tick leaves them to the firing
    /// that claimed them (the database would refuse the second run anyway; this saves
    /// the second expansion).
    in_flight: Arc<Mutex<HashSet<i64>>>,
}

impl AutoSuites {
    pub fn new(app: App, suites: SuiteApi) -> AutoSuites {
        AutoSuites {
            builds: app.builds(),
            app,
            suites,
            in_flight: Arc::default(),
        }
    }

    /// A build ended (the webhook): fire or fail the AutoSuites waiting for it.
    pub async fn on_report(&self, report: BuildReport) -> Result<ReportOutcome, Status> {
        let branch = report.branch.clone();
        let waiting = self
            .app
            .db(move |store| store.waiting_autosuites(Some(&branch)))
            .await?;
        let mut outcome = ReportOutcome::default();
        for autosuite in waiting {
            let query = query_of(&autosuite);
            if !report_matches(&query, &report) {
                continue;
            }
            outcome.matched += 1;
            if report.ready {
                let mut sha1 = report.sha1.clone();
                if sha1.is_empty() {
                    // A report without its commit: Shaman knows which one is ready.
                    if let Some(BuildState::Ready { sha1: found, .. }) = self.ask(&query).await {
                        sha1 = found;
                    }
                }
                let why = format!("build-status webhook: build completed ({})", report.url);
                if self.fire(&autosuite, &sha1, &why).await? {
                    outcome.fired += 1;
                }
            } else {
                let why = format!("build-status webhook: build failed ({})", report.url);
                if self.build_failed(&autosuite, &why, &report.url).await? {
                    outcome.build_failed += 1;
                }
            }
        }
        Ok(outcome)
    }

    async fn ask(&self, query: &BuildQuery) -> Option<BuildState> {
        let builds = self.builds.as_ref()?;
        match builds.check(query).await {
            Ok(state) => Some(state),
            Err(error) => {
                tracing::warn!(%error, "cannot check a build");
                None
            }
        }
    }

    async fn build_failed(
        &self,
        autosuite: &AutoSuite,
        why: &str,
        url: &str,
    ) -> Result<bool, Status> {
        let (id, why_owned, url_owned) = (autosuite.id, why.to_owned(), url.to_owned());
        let ended = self
            .app
            .db(move |store| {
                store.end_autosuite(
                    id,
                    AutoSuiteState::BuildFailed,
                    &why_owned,
                    Some(&url_owned),
                    now(),
                )
            })
            .await?;
        if ended {
            tracing::info!(autosuite = id, url, "AutoSuite's build failed");
        }
        Ok(ended)
    }

    /// Claims and schedules one AutoSuite; false when another firing had claimed it.
    async fn fire(&self, autosuite: &AutoSuite, sha1: &str, why: &str) -> Result<bool, Status> {
        let run_name = match run_name_of(autosuite) {
            Ok(name) => name,
            Err(reason) => {
                // Cannot even be named: claim it to end it, so it never fires.
                let (id, why) = (autosuite.id, why.to_owned());
                let claimed = self
                    .app
                    .db(move |store| store.claim_autosuite(id, &why, "", "", now()))
                    .await?;
                if claimed {
                    let id = autosuite.id;
                    self.app
                        .db(move |store| store.autosuite_failed(id, &reason, now()))
                        .await?;
                }
                return Ok(false);
            }
        };
        let (id, why_owned, sha1_owned, name) = (
            autosuite.id,
            why.to_owned(),
            sha1.to_owned(),
            run_name.clone(),
        );
        let claimed = self
            .app
            .db(move |store| store.claim_autosuite(id, &why_owned, &name, &sha1_owned, now()))
            .await?;
        if !claimed {
            return Ok(false);
        }
        tracing::info!(autosuite = id, run = %run_name, sha1, why, "AutoSuite fires");
        self.finish(id).await?;
        Ok(true)
    }

    /// Schedules a claimed AutoSuite's run, or finds it made; leaves it `scheduling` on
    /// an outage (the next tick tries again).
    async fn finish(&self, id: i64) -> Result<(), Status> {
        if !self.in_flight.lock().expect("in-flight set").insert(id) {
            return Ok(());
        }
        let finished = self.finish_claimed(id).await;
        self.in_flight.lock().expect("in-flight set").remove(&id);
        finished
    }

    async fn finish_claimed(&self, id: i64) -> Result<(), Status> {
        let (autosuite, _) = self.app.db(move |store| store.get_autosuite(id)).await?;
        if autosuite.state != AutoSuiteState::Scheduling {
            return Ok(());
        }
        let run = autosuite.run_name.clone().unwrap_or_default();
        let mut raw = autosuite.args.clone();
        raw.run_name = run.clone();
        raw.owner = autosuite.owner.to_string();
        let outcome = match raw.validate() {
            Ok(args) => {
                let caller = Caller::User {
                    user: autosuite.owner.clone(),
                    role: autosuite.role,
                };
                self.suites.schedule(caller, args).await.map(|_| ())
            }
            Err(error) => Err(errors::invalid(error)),
        };
        let record = match outcome {
            Ok(()) => Ok(format!("scheduled run {run}")),
            // Made by a firing whose cuttle-api died before it could say so.
            Err(status) if status.code() == Code::AlreadyExists => {
                Ok(format!("run {run} was already made"))
            }
            Err(status) if transient(status.code()) => {
                tracing::warn!(
                    autosuite = id,
                    detail = status.message(),
                    "cannot schedule an AutoSuite yet; the next tick tries again"
                );
                return Ok(());
            }
            Err(status) => Err(status.message().to_owned()),
        };
        match record {
            Ok(note) => {
                let name = run.clone();
                self.app
                    .db(move |store| store.autosuite_scheduled(id, &name, now()))
                    .await?;
                tracing::info!(autosuite = id, run = %run, "AutoSuite scheduled: {note}");
            }
            Err(reason) => {
                let why = format!("cannot schedule: {reason}");
                tracing::warn!(autosuite = id, reason = %why, "AutoSuite failed");
                self.app
                    .db(move |store| store.autosuite_failed(id, &why, now()))
                    .await?;
            }
        }
        Ok(())
    }

    /// One tick: finish interrupted firings, expire the too old, poll Shaman.
    pub async fn tick(&self) -> Result<(), Status> {
        for autosuite in self.app.db(|store| store.scheduling_autosuites()).await? {
            self.finish(autosuite.id).await?;
        }
        let waiting = self.app.db(|store| store.waiting_autosuites(None)).await?;
        let max_age = self.app.settings().builds.autosuite_max_age;
        let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let mut by_query: BTreeMap<String, (BuildQuery, Vec<AutoSuite>)> = BTreeMap::new();
        for autosuite in waiting {
            if now().0 - autosuite.created_at.0 > max_age_ms {
                let id = autosuite.id;
                let age = match max_age.as_secs() {
                    s if s >= 3600 => format!("{} h", s / 3600),
                    _ => format!("{} ms", max_age.as_millis()),
                };
                let why = format!(
                    "waited longer than this lab's autosuite_max_age_h ({age}) for its build"
                );
                self.app
                    .db(move |store| {
                        store.end_autosuite(id, AutoSuiteState::Expired, &why, None, now())
                    })
                    .await?;
                continue;
            }
            let query = query_of(&autosuite);
            let key = format!("{:?}", query.search_params(false));
            by_query
                .entry(key)
                .or_insert_with(|| (query, Vec::new()))
                .1
                .push(autosuite);
        }
        if self.builds.is_none() {
            return Ok(());
        }
        // One question per distinct build, however many AutoSuites wait on it.
        for (query, autosuites) in by_query.into_values() {
            match self.ask(&query).await {
                Some(BuildState::Ready { sha1, .. }) => {
                    for autosuite in &autosuites {
                        self.fire(autosuite, &sha1, "Shaman poll: build ready")
                            .await?;
                    }
                }
                Some(BuildState::Failed { url }) => {
                    for autosuite in &autosuites {
                        let why = format!("Shaman poll: build failed ({url})");
                        self.build_failed(autosuite, &why, &url).await?;
                    }
                }
                Some(BuildState::Building { .. } | BuildState::Unknown) | None => {}
            }
        }
        Ok(())
    }

    /// Ticks at once (a restart finishes what it left) and then every poll interval
    /// until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = self.app.settings().builds.shaman_poll;
        loop {
            if let Err(status) = self.tick().await {
                tracing::warn!(detail = status.message(), "AutoSuite tick failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Errors that pass: an outage, not a request that can never succeed.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Internal | Code::Aborted | Code::DeadlineExceeded | Code::Unknown
    )
}

/// The run an AutoSuite makes when it fires: the name its request gives, else
/// teuthology's name with the firing's time.
fn run_name_of(autosuite: &AutoSuite) -> Result<String, String> {
    let args = autosuite
        .args
        .clone()
        .validate()
        .map_err(|e| format!("its request is no longer valid: {e}"))?;
    if let Some(name) = &args.run_name {
        return Ok(name.to_string());
    }
    let machine_type = args
        .machine_type
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let owner: &Owner = &autosuite.owner;
    Ok(default_run_name(
        owner.as_str(),
        &teuthology_timestamp(now()),
        &args,
        &machine_type,
    ))
}
