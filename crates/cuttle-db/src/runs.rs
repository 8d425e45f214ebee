//! The `runs` table, and creating a run with all its jobs in one transaction.

use diesel::prelude::*;

use cuttle_core::suite::SuitePins;
use cuttle_core::{
    InvalidInput, Job, JobId, JobSpec, JobStatus, MachineType, Owner, Run, RunName, RunSpec,
    RunStatus, RunSummary, RunWithJobs, UnixMillis,
};

use crate::jobs::{JobTx, parse_status};
use crate::schema::{jobs, run_suites, runs};
use crate::{DbConnection, DbError, Store, with_conn, write_tx};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = runs)]
struct RunRow {
    id: i64,
    name: String,
    owner: String,
    branch: String,
    sha1: String,
    suite: String,
    machine_type: String,
    created_at: i64,
}

impl RunRow {
    fn into_run(self) -> Result<(i64, Run, MachineType), DbError> {
        let corrupt = |e: InvalidInput| DbError::Corrupt(format!("run {}: {e}", self.name));
        let run = Run {
            spec: RunSpec {
                name: RunName::parse(&self.name).map_err(corrupt)?,
                owner: Owner::parse(&self.owner).map_err(corrupt)?,
                branch: self.branch,
                sha1: self.sha1,
                suite: self.suite,
            },
            created_at: UnixMillis(self.created_at),
        };
        let machine_type = MachineType::parse(&self.machine_type).map_err(corrupt)?;
        Ok((self.id, run, machine_type))
    }
}

/// A run's pins as stored in `run_suites`.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = run_suites)]
struct PinsRow {
    suite_repo: String,
    suite_branch: String,
    suite_sha1: String,
    teuthology_branch: String,
    teuthology_sha1: String,
    seed: i64,
    subset: Option<String>,
    email: Option<String>,
    results_timeout_s: Option<i64>,
    rerun_of: Option<String>,
}

impl PinsRow {
    fn into_pins(self) -> SuitePins {
        SuitePins {
            suite_repo: self.suite_repo,
            suite_branch: self.suite_branch,
            suite_sha1: self.suite_sha1,
            teuthology_branch: self.teuthology_branch,
            teuthology_sha1: self.teuthology_sha1,
            seed: u64::try_from(self.seed).unwrap_or_default(),
            subset: self.subset,
            email: self.email,
            results_timeout_s: self.results_timeout_s.and_then(|s| u64::try_from(s).ok()),
            rerun_of: self.rerun_of,
        }
    }
}

/// A job to create in a new run.
pub type NewJob = JobSpec;

/// Which runs to list; every `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub owner: Option<Owner>,
    pub status: Option<RunStatus>,
    pub machine_type: Option<MachineType>,
    pub branch: Option<String>,
    /// At most this many runs, newest first.
    pub limit: u32,
}

/// Queries shared by the run operations, written once for both backends.
trait RunTx {
    fn status_counts(&mut self, run_ids: &[i64]) -> Result<Vec<(i64, JobStatus, u32)>, DbError>;
}

crate::impl_for_both_backends! { RunTx {
    fn status_counts(&mut self, run_ids: &[i64]) -> Result<Vec<(i64, JobStatus, u32)>, DbError> {
        let rows: Vec<(i64, String, i64)> = jobs::table
            .filter(jobs::run_id.eq_any(run_ids))
            .group_by((jobs::run_id, jobs::status))
            .select((jobs::run_id, jobs::status, diesel::dsl::count_star()))
            .load(self)?;
        rows.into_iter()
            .map(|(run_id, status, n)| {
                let status = parse_status(&status).map_err(DbError::Corrupt)?;
                Ok((run_id, status, u32::try_from(n).unwrap_or(u32::MAX)))
            })
            .collect()
    }
}}

impl Store {
    /// Creates a run and its jobs (status `queued`) in one transaction. `render` is called
    /// with each job's new id to produce the job body stored with it; if it refuses any job
    /// (say, the body is too big for beanstalkd), nothing at all is written.
    pub fn create_run(
        &self,
        spec: &RunSpec,
        jobs_to_create: &[NewJob],
        now: UnixMillis,
        render: impl FnMut(JobId, &JobSpec) -> Result<String, InvalidInput>,
    ) -> Result<RunWithJobs, DbError> {
        self.create_pinned_run(spec, None, jobs_to_create, now, render)
    }

    /// [`Store::create_run`] for a run scheduled from a suite: its pins are recorded in
    /// the same transaction as the run and its jobs.
    pub fn create_pinned_run(
        &self,
        spec: &RunSpec,
        pins: Option<&SuitePins>,
        jobs_to_create: &[NewJob],
        now: UnixMillis,
        mut render: impl FnMut(JobId, &JobSpec) -> Result<String, InvalidInput>,
    ) -> Result<RunWithJobs, DbError> {
        let first = jobs_to_create
            .first()
            .ok_or_else(|| InvalidInput::new("jobs", "a run needs at least one job"))?;
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let run_id: i64 = diesel::insert_into(runs::table)
                .values((
                    runs::name.eq(spec.name.as_str()),
                    runs::owner.eq(spec.owner.as_str()),
                    runs::branch.eq(&spec.branch),
                    runs::sha1.eq(&spec.sha1),
                    runs::suite.eq(&spec.suite),
                    runs::machine_type.eq(first.machine_type.as_str()),
                    runs::created_at.eq(now.0),
                ))
                .returning(runs::id)
                .get_result(c)
                .map_err(|e| match e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => DbError::AlreadyExists {
                        what: "run",
                        name: spec.name.to_string(),
                        hint: "; pick another --name",
                    },
                    other => DbError::Query(other),
                })?;
            if let Some(pins) = pins {
                diesel::insert_into(run_suites::table)
                    .values((
                        run_suites::run_id.eq(run_id),
                        run_suites::suite_repo.eq(&pins.suite_repo),
                        run_suites::suite_branch.eq(&pins.suite_branch),
                        run_suites::suite_sha1.eq(&pins.suite_sha1),
                        run_suites::teuthology_branch.eq(&pins.teuthology_branch),
                        run_suites::teuthology_sha1.eq(&pins.teuthology_sha1),
                        run_suites::seed.eq(i64::try_from(pins.seed).unwrap_or(i64::MAX)),
                        run_suites::subset.eq(pins.subset.as_deref()),
                        run_suites::email.eq(pins.email.as_deref()),
                        run_suites::results_timeout_s.eq(pins
                            .results_timeout_s
                            .map(|s| i64::try_from(s).unwrap_or(i64::MAX))),
                        run_suites::rerun_of.eq(pins.rerun_of.as_deref()),
                    ))
                    .execute(c)?;
            }
            for job in jobs_to_create {
                let job_id: i64 = diesel::insert_into(jobs::table)
                    .values((
                        jobs::run_id.eq(run_id),
                        jobs::description.eq(&job.description),
                        jobs::machine_type.eq(job.machine_type.as_str()),
                        jobs::priority.eq(i32::try_from(job.priority.get()).unwrap_or(i32::MAX)),
                        jobs::n_nodes.eq(i32::try_from(job.n_nodes.get()).unwrap_or(i32::MAX)),
                        jobs::time_limit_s.eq(job
                            .time_limit
                            .map(|t| i32::try_from(t.seconds()).unwrap_or(i32::MAX))),
                        jobs::os_type.eq(&job.os_type),
                        jobs::os_version.eq(&job.os_version),
                        jobs::status.eq(JobStatus::Queued.as_str()),
                        jobs::config_yaml.eq(""),
                        jobs::created_at.eq(now.0),
                        jobs::updated_at.eq(now.0),
                    ))
                    .returning(jobs::id)
                    .get_result(c)?;
                let body = render(JobId(job_id), job)?;
                diesel::update(jobs::table.filter(jobs::id.eq(job_id)))
                    .set(jobs::config_yaml.eq(body))
                    .execute(c)?;
                c.record_event(
                    JobId(job_id),
                    now,
                    None,
                    JobStatus::Queued,
                    Some("scheduled"),
                )?;
            }
            let jobs = c.load_run_jobs(run_id)?;
            Ok(RunWithJobs {
                run: Run {
                    spec: spec.clone(),
                    created_at: now,
                },
                jobs,
            })
        })
    }

    /// What a run scheduled from a suite is pinned to; `None` for a hand-made run.
    pub fn suite_pins(&self, name: &RunName) -> Result<Option<SuitePins>, DbError> {
        let mut conn = self.conn()?;
        let row: Option<PinsRow> = with_conn!(&mut *conn, |c| {
            run_suites::table
                .inner_join(runs::table)
                .filter(runs::name.eq(name.as_str()))
                .select(PinsRow::as_select())
                .first(c)
                .optional()
        })?;
        Ok(row.map(PinsRow::into_pins))
    }

    /// Suite runs whose report is not written yet: name, pins, when created, and how many
    /// of their jobs have not ended. Two queries, however many runs.
    pub fn unreported_suite_runs(
        &self,
    ) -> Result<Vec<(RunName, SuitePins, UnixMillis, u32)>, DbError> {
        let mut conn = self.conn()?;
        let (rows, counts) = with_conn!(&mut *conn, |c| {
            let rows: Vec<(i64, String, i64, PinsRow)> = run_suites::table
                .inner_join(runs::table)
                .filter(run_suites::summary_at.is_null())
                .select((runs::id, runs::name, runs::created_at, PinsRow::as_select()))
                .load(c)?;
            let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
            c.status_counts(&ids).map(|counts| (rows, counts))
        })?;
        let mut found = Vec::with_capacity(rows.len());
        for (run_id, name, created_at, pins) in rows {
            let name =
                RunName::parse(&name).map_err(|e| DbError::Corrupt(format!("run {name}: {e}")))?;
            let living = counts
                .iter()
                .filter(|(id, status, _)| *id == run_id && !status.is_terminal())
                .map(|(_, _, n)| n)
                .sum();
            found.push((name, pins.into_pins(), UnixMillis(created_at), living));
        }
        Ok(found)
    }

    /// Claims the writing of a suite run's report: true for exactly one caller.
    pub fn claim_run_report(&self, name: &RunName, now: UnixMillis) -> Result<bool, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let run_id: Option<i64> = runs::table
                .filter(runs::name.eq(name.as_str()))
                .select(runs::id)
                .first(c)
                .optional()?;
            let Some(run_id) = run_id else {
                return Ok(false);
            };
            let changed = diesel::update(
                run_suites::table
                    .filter(run_suites::run_id.eq(run_id))
                    .filter(run_suites::summary_at.is_null()),
            )
            .set(run_suites::summary_at.eq(now.0))
            .execute(c)?;
            Ok(changed == 1)
        })
    }

    /// A run's summary and all its jobs, ordered by id.
    pub fn get_run(&self, name: &RunName) -> Result<(RunSummary, Vec<Job>), DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let row: RunRow = runs::table
                .filter(runs::name.eq(name.as_str()))
                .select(RunRow::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| DbError::NotFound {
                    what: "run",
                    name: name.to_string(),
                })?;
            let (run_id, run, machine_type) = row.into_run()?;
            let jobs = c.load_run_jobs(run_id)?;
            let counts = c
                .status_counts(&[run_id])?
                .into_iter()
                .map(|(_, status, n)| (status, n))
                .collect();
            Ok((RunSummary::new(run, machine_type, counts), jobs))
        })
    }

    /// Runs matching the filter, newest first. The status filter is applied to the derived
    /// status, so runs are read in pages until enough match.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, DbError> {
        const PAGE: i64 = 500;
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as usize;
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let mut found = Vec::new();
            let mut before_id = i64::MAX;
            loop {
                let mut query = runs::table
                    .select(RunRow::as_select())
                    .filter(runs::id.lt(before_id))
                    .order(runs::id.desc())
                    .limit(PAGE)
                    .into_boxed();
                if let Some(owner) = &filter.owner {
                    query = query.filter(runs::owner.eq(owner.as_str()));
                }
                if let Some(branch) = &filter.branch {
                    query = query.filter(runs::branch.eq(branch.as_str()));
                }
                if let Some(machine_type) = &filter.machine_type {
                    query = query.filter(
                        runs::id.eq_any(
                            jobs::table
                                .filter(jobs::machine_type.eq(machine_type.as_str()))
                                .select(jobs::run_id),
                        ),
                    );
                }
                let rows: Vec<RunRow> = query.load(c)?;
                let page_len = rows.len();
                let Some(last) = rows.last() else { break };
                before_id = last.id;
                let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
                let counts = c.status_counts(&ids)?;
                for row in rows {
                    let (run_id, run, machine_type) = row.into_run()?;
                    let run_counts: Vec<(JobStatus, u32)> = counts
                        .iter()
                        .filter(|(id, _, _)| *id == run_id)
                        .map(|(_, status, n)| (*status, *n))
                        .collect();
                    let summary = RunSummary::new(run, machine_type, run_counts);
                    if filter.status.is_none_or(|wanted| wanted == summary.status) {
                        found.push(summary);
                        if found.len() == limit {
                            return Ok(found);
                        }
                    }
                }
                if (page_len as i64) < PAGE {
                    break;
                }
            }
            Ok(found)
        })
    }
}
