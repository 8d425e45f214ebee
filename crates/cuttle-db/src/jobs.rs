//! The `jobs` and `job_events` tables: a job's record, its status changes (through the
//! core state machine only), heartbeats, and its timeline.
//!
//! **Invariant:** a job's status only changes through [`JobStatus::transition`], and the
//! UPDATE is conditional on the status that was checked, so two concurrent updates can not
//! both move a job out of the same status (at most one terminal status, ever).

use diesel::prelude::*;

use cuttle_core::dispatch::SupervisorRef;
use cuttle_core::job::check_text;
use cuttle_core::{
    Job, JobEvent, JobId, JobSpec, JobStatus, MachineType, NodeCount, Owner, Priority, RunName,
    TimeLimit, UnixMillis,
};

use crate::schema::{job_events, jobs, runs};
use crate::{DbConnection, DbError, Store, with_conn, write_tx};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub(crate) struct JobRow {
    id: i64,
    description: String,
    machine_type: String,
    priority: i32,
    n_nodes: i32,
    time_limit_s: Option<i32>,
    os_type: String,
    os_version: String,
    status: String,
    reason: Option<String>,
    beanstalk_id: Option<i64>,
    config_yaml: String,
    created_at: i64,
    updated_at: i64,
    heartbeat_at: Option<i64>,
    dispatcher: Option<String>,
    supervisor_pid: Option<i64>,
    supervisor_host: Option<String>,
    started_at: Option<i64>,
}

/// A job row with the name and owner of its run.
pub(crate) type JobWithRun = (JobRow, String, String);

pub(crate) fn into_job((row, run_name, owner): JobWithRun) -> Result<Job, DbError> {
    let id = row.id;
    let corrupt = |e: String| DbError::Corrupt(format!("job {id}: {e}"));
    Ok(Job {
        id: JobId(row.id),
        run_name: RunName::parse(&run_name).map_err(|e| corrupt(e.to_string()))?,
        owner: Owner::parse(&owner).map_err(|e| corrupt(e.to_string()))?,
        spec: JobSpec {
            description: row.description,
            machine_type: MachineType::parse(&row.machine_type)
                .map_err(|e| corrupt(e.to_string()))?,
            priority: Priority::new(row.priority.into()).map_err(|e| corrupt(e.to_string()))?,
            n_nodes: NodeCount::new(row.n_nodes.into()).map_err(|e| corrupt(e.to_string()))?,
            time_limit: row
                .time_limit_s
                .map(|s| TimeLimit::from_seconds(s.into()))
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            os_type: row.os_type,
            os_version: row.os_version,
        },
        status: parse_status(&row.status).map_err(corrupt)?,
        reason: row.reason,
        beanstalk_id: row.beanstalk_id.and_then(|id| u64::try_from(id).ok()),
        config_yaml: row.config_yaml,
        created_at: UnixMillis(row.created_at),
        updated_at: UnixMillis(row.updated_at),
        heartbeat_at: row.heartbeat_at.map(UnixMillis),
        dispatcher: row.dispatcher,
        supervisor: match (row.supervisor_host, row.supervisor_pid) {
            (Some(host), Some(pid)) => Some(SupervisorRef {
                host,
                pid: u32::try_from(pid).map_err(|_| corrupt(format!("supervisor pid {pid}")))?,
            }),
            _ => None,
        },
        started_at: row.started_at.map(UnixMillis),
    })
}

pub(crate) fn parse_status(text: &str) -> Result<JobStatus, String> {
    text.parse::<JobStatus>().map_err(|e| e.to_string())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = job_events)]
struct EventRow {
    job_id: i64,
    at: i64,
    from_status: Option<String>,
    to_status: String,
    reason: Option<String>,
}

impl EventRow {
    fn into_event(self) -> Result<JobEvent, DbError> {
        let corrupt = |e: String| DbError::Corrupt(format!("event of job {}: {e}", self.job_id));
        Ok(JobEvent {
            job_id: JobId(self.job_id),
            at: UnixMillis(self.at),
            from: self
                .from_status
                .as_deref()
                .map(parse_status)
                .transpose()
                .map_err(corrupt)?,
            to: parse_status(&self.to_status).map_err(corrupt)?,
            reason: self.reason,
        })
    }
}

/// Queries shared by the job operations, written once for both backends.
pub(crate) trait JobTx {
    fn load_job(&mut self, job_id: JobId) -> Result<Job, DbError>;
    fn load_run_jobs(&mut self, run_id: i64) -> Result<Vec<Job>, DbError>;
    fn record_event(
        &mut self,
        job_id: JobId,
        at: UnixMillis,
        from: Option<JobStatus>,
        to: JobStatus,
        reason: Option<&str>,
    ) -> Result<(), DbError>;
}

crate::impl_for_both_backends! { JobTx {
    fn load_job(&mut self, job_id: JobId) -> Result<Job, DbError> {
        let row: Option<JobWithRun> = jobs::table
            .inner_join(runs::table)
            .filter(jobs::id.eq(job_id.0))
            .select((JobRow::as_select(), runs::name, runs::owner))
            .first(self)
            .optional()?;
        into_job(row.ok_or_else(|| DbError::NotFound { what: "job", name: job_id.to_string() })?)
    }

    fn load_run_jobs(&mut self, run_id: i64) -> Result<Vec<Job>, DbError> {
        let rows: Vec<JobWithRun> = jobs::table
            .inner_join(runs::table)
            .filter(jobs::run_id.eq(run_id))
            .select((JobRow::as_select(), runs::name, runs::owner))
            .order(jobs::id)
            .load(self)?;
        rows.into_iter().map(into_job).collect()
    }

    fn record_event(
        &mut self,
        job_id: JobId,
        at: UnixMillis,
        from: Option<JobStatus>,
        to: JobStatus,
        reason: Option<&str>,
    ) -> Result<(), DbError> {
        diesel::insert_into(job_events::table)
            .values((
                job_events::job_id.eq(job_id.0),
                job_events::at.eq(at.0),
                job_events::from_status.eq(from.map(JobStatus::as_str)),
                job_events::to_status.eq(to.as_str()),
                job_events::reason.eq(reason),
            ))
            .execute(self)?;
        Ok(())
    }
}}

impl Store {
    /// A job and its timeline, oldest event first.
    pub fn get_job(&self, job_id: JobId) -> Result<(Job, Vec<JobEvent>), DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let job = c.load_job(job_id)?;
            let events: Vec<EventRow> = job_events::table
                .filter(job_events::job_id.eq(job_id.0))
                .select(EventRow::as_select())
                .order((job_events::at, job_events::id))
                .load(c)?;
            let events = events
                .into_iter()
                .map(EventRow::into_event)
                .collect::<Result<_, _>>()?;
            Ok((job, events))
        })
    }

    /// Moves a job to `to` if the state machine allows it from the job's current status,
    /// and records the change in its timeline.
    pub fn update_job_status(
        &self,
        job_id: JobId,
        to: JobStatus,
        reason: Option<&str>,
        now: UnixMillis,
    ) -> Result<Job, DbError> {
        let reason = reason
            .map(|r| check_text("reason", r))
            .transpose()?
            .filter(|r| !r.is_empty());
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        let repeated = |current: &Job| {
            current.status == to
                && to.is_terminal()
                && reason
                    .as_deref()
                    .is_none_or(|r| current.reason.as_deref() == Some(r))
        };
        write_tx!(conn, |c| {
            let current = c.load_job(job_id)?;
            // A repeated final report (its first answer was lost) is answered as the first
            // one was: the job already ended so, and nothing changes.
            if repeated(&current) {
                return Ok(current);
            }
            current
                .status
                .transition(to, reason.as_deref())
                .map_err(|source| DbError::IllegalTransition { job_id, source })?;
            let changed = diesel::update(
                jobs::table
                    .filter(jobs::id.eq(job_id.0))
                    .filter(jobs::status.eq(current.status.as_str())),
            )
            .set((
                jobs::status.eq(to.as_str()),
                jobs::reason.eq(reason.as_deref().or(current.reason.as_deref())),
                jobs::updated_at.eq(now.0),
            ))
            .execute(c)?;
            if changed != 1 {
                // On PostgreSQL a concurrent report may have committed between the read
                // and the update. If it ended the job exactly as this one asks, this is
                // the repeated report and is answered as such; anything else conflicts.
                let now_current = c.load_job(job_id)?;
                if repeated(&now_current) {
                    return Ok(now_current);
                }
                return Err(DbError::Conflict { job_id });
            }
            c.record_event(job_id, now, Some(current.status), to, reason.as_deref())?;
            c.load_job(job_id)
        })
    }

    /// Adds `note` to a job's timeline without changing its status (an event from its
    /// status to the same), such as what teuthology reported about it.
    pub fn note_job(&self, job_id: JobId, note: &str, now: UnixMillis) -> Result<Job, DbError> {
        let note = check_text("note", note)?;
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let current = c.load_job(job_id)?;
            c.record_event(
                job_id,
                now,
                Some(current.status),
                current.status,
                Some(&note),
            )?;
            Ok(current)
        })
    }

    /// Records a supervisor heartbeat and returns the job's status. A running job takes
    /// one, and so does an ended one: its supervisor keeps beating while it archives and
    /// gives the nodes back, which keeps the release from being claimed twice.
    pub fn heartbeat(&self, job_id: JobId, now: UnixMillis) -> Result<JobStatus, DbError> {
        self.heartbeat_with(job_id, || now)
    }

    /// Like [`Store::heartbeat`], reading the clock only once a connection is in hand: a
    /// heartbeat that waited out a database outage is recorded as of when it landed,
    /// not as of when it was sent.
    pub fn heartbeat_with(
        &self,
        job_id: JobId,
        clock: impl FnOnce() -> UnixMillis,
    ) -> Result<JobStatus, DbError> {
        let alive = [
            JobStatus::Running.as_str(),
            JobStatus::Pass.as_str(),
            JobStatus::Fail.as_str(),
            JobStatus::Dead.as_str(),
            JobStatus::Killed.as_str(),
        ];
        let mut conn = self.conn()?;
        let now = clock();
        with_conn!(&mut *conn, |c| {
            diesel::update(
                jobs::table
                    .filter(jobs::id.eq(job_id.0))
                    .filter(jobs::status.eq_any(alive)),
            )
            .set(jobs::heartbeat_at.eq(now.0))
            .execute(c)?;
            let job = c.load_job(job_id)?;
            if alive.contains(&job.status.as_str()) {
                Ok(job.status)
            } else {
                Err(DbError::NotRunning {
                    job_id,
                    status: job.status,
                })
            }
        })
    }

    /// Records the beanstalkd ids of jobs just put on their tubes, in one transaction.
    pub fn set_beanstalk_ids(&self, ids: &[(JobId, u64)]) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            for (job_id, beanstalk_id) in ids {
                let beanstalk_id = i64::try_from(*beanstalk_id).map_err(|_| {
                    DbError::Corrupt(format!("beanstalkd id {beanstalk_id} does not fit"))
                })?;
                // Only the first recorded copy is live: a copy a dispatcher already claimed
                // (or an earlier put) keeps its id, and later copies are stale.
                diesel::update(
                    jobs::table
                        .filter(jobs::id.eq(job_id.0))
                        .filter(jobs::beanstalk_id.is_null()),
                )
                .set(jobs::beanstalk_id.eq(beanstalk_id))
                .execute(c)?;
            }
            Ok::<_, DbError>(())
        })
    }

    /// Queued jobs that are not on beanstalkd yet (their put failed or never happened),
    /// oldest first, at most `limit`.
    pub fn jobs_awaiting_enqueue(&self, limit: i64) -> Result<Vec<Job>, DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let rows: Vec<JobWithRun> = jobs::table
                .inner_join(runs::table)
                .filter(jobs::status.eq(JobStatus::Queued.as_str()))
                .filter(jobs::beanstalk_id.is_null())
                .select((JobRow::as_select(), runs::name, runs::owner))
                .order(jobs::id)
                .limit(limit)
                .load(c)?;
            rows.into_iter().map(into_job).collect()
        })
    }

    /// Jobs of `machine_type` whose beanstalkd copy may lie buried on its tube: they died
    /// before they started and still name a beanstalkd copy (a dispatcher buries the copy
    /// of a job that can never run and marks the job dead). Newest first, at most `limit`.
    /// Only candidates: the copies of expired or reaped jobs were deleted, and a beanstalkd
    /// restarted without its binlog reuses ids, so the caller confirms each on beanstalkd.
    pub fn buried_candidates(
        &self,
        machine_type: &MachineType,
        limit: i64,
    ) -> Result<Vec<Job>, DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let rows: Vec<JobWithRun> = jobs::table
                .inner_join(runs::table)
                .filter(jobs::machine_type.eq(machine_type.as_str()))
                .filter(jobs::status.eq(JobStatus::Dead.as_str()))
                .filter(jobs::started_at.is_null())
                .filter(jobs::beanstalk_id.is_not_null())
                .select((JobRow::as_select(), runs::name, runs::owner))
                .order(jobs::id.desc())
                .limit(limit)
                .load(c)?;
            rows.into_iter().map(into_job).collect()
        })
    }

    /// Jobs not started yet (queued, or waiting in a dispatcher's window) that have a
    /// beanstalkd id, with the body their copy was put with, by id after `after`, at most
    /// `limit`: the ones to check after beanstalkd lost its jobs (a restart without its
    /// binlog).
    pub fn unstarted_with_beanstalk_ids(
        &self,
        after: JobId,
        limit: i64,
    ) -> Result<Vec<(JobId, u64, String)>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<(i64, Option<i64>, String)> = with_conn!(&mut *conn, |c| jobs::table
            .filter(jobs::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Waiting.as_str()]))
            .filter(jobs::beanstalk_id.is_not_null())
            .filter(jobs::id.gt(after.0))
            .select((jobs::id, jobs::beanstalk_id, jobs::config_yaml))
            .order(jobs::id)
            .limit(limit)
            .load(c))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, beanstalk_id, body)| {
                Some((JobId(id), u64::try_from(beanstalk_id?).ok()?, body))
            })
            .collect())
    }

    /// Forgets a job's beanstalkd id when beanstalkd no longer has that copy, so the
    /// enqueue retry loop puts it again once it is queued (a waiting job keeps running
    /// from its dispatcher's window, or is put again when handed back). Conditional on the
    /// job still being queued or waiting with that id; returns whether it changed.
    pub fn forget_beanstalk_id(&self, job_id: JobId, beanstalk_id: u64) -> Result<bool, DbError> {
        let beanstalk_id = i64::try_from(beanstalk_id)
            .map_err(|_| DbError::Corrupt(format!("beanstalkd id {beanstalk_id} does not fit")))?;
        let mut conn = self.conn()?;
        let changed = with_conn!(&mut *conn, |c| diesel::update(
            jobs::table
                .filter(jobs::id.eq(job_id.0))
                .filter(
                    jobs::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Waiting.as_str()])
                )
                .filter(jobs::beanstalk_id.eq(beanstalk_id)),
        )
        .set(jobs::beanstalk_id.eq(None::<i64>))
        .execute(c))?;
        Ok(changed == 1)
    }
}
