//! Dispatching in the database: tube leases and pauses, claiming a reserved job, recording
//! its dispatch, the reaper, kills, adoption of teuthology-scheduled bodies, and finding
//! ended jobs whose nodes still need giving back.
//!
//! The decisions come from `cuttle_core::dispatch`; this module applies them inside write
//! transactions, each UPDATE conditional on the state that was checked, so a reaper pass
//! and a dispatcher (or two API handlers) racing on the same job can not both act on it.

use diesel::prelude::*;

use cuttle_core::dispatch::{
    Claim, LeaseInfo, Reap, SupervisorRef, Tube, decide_claim, decide_reap, may_take_lease,
};
use cuttle_core::{
    Job, JobId, JobSpec, JobStatus, MachineType, NodeName, Owner, RunName, RunSpec, UnixMillis,
};

use crate::jobs::{JobRow, JobTx, JobWithRun, into_job};
use crate::schema::{jobs, nodes, runs, tubes};
use crate::{DbConnection, DbError, Store, snapshot_tx, with_conn, write_tx};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = tubes)]
struct TubeRow {
    machine_type: String,
    paused: bool,
    paused_by: Option<String>,
    paused_at: Option<i64>,
    lease_holder: Option<String>,
    lease_host: Option<String>,
    lease_pid: Option<i64>,
    lease_acquired_at: Option<i64>,
    lease_expires_at: Option<i64>,
}

impl TubeRow {
    fn into_tube(self) -> Result<Tube, DbError> {
        let machine_type = MachineType::parse(&self.machine_type)
            .map_err(|e| DbError::Corrupt(format!("tube {}: {e}", self.machine_type)))?;
        let lease = match (self.lease_holder, self.lease_expires_at) {
            (Some(holder), Some(expires_at)) => Some(LeaseInfo {
                holder,
                host: self.lease_host.unwrap_or_default(),
                pid: self
                    .lease_pid
                    .and_then(|pid| u32::try_from(pid).ok())
                    .unwrap_or(0),
                acquired_at: UnixMillis(self.lease_acquired_at.unwrap_or(0)),
                expires_at: UnixMillis(expires_at),
            }),
            _ => None,
        };
        Ok(Tube {
            machine_type,
            paused: self.paused,
            paused_by: self.paused_by,
            paused_at: self.paused_at.map(UnixMillis),
            lease,
        })
    }
}

/// The dispatcher asking for a tube's lease.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub machine_type: MachineType,
    /// Unique per dispatcher process (a restart is a new holder).
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub ttl_ms: i64,
}

/// What a reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Running jobs marked `dead` because their supervisor went quiet, with the reason.
    pub supervisor_lost: Vec<(JobId, String)>,
    /// `waiting` jobs returned to `queued` because their dispatcher lost its lease.
    pub requeued: Vec<JobId>,
    /// Nodes unlocked because they were held for a job that is back in the queue.
    pub freed_nodes: Vec<NodeName>,
}

/// A job that has ended with nodes still locked for it, claimed for release.
#[derive(Debug, Clone)]
pub struct PendingRelease {
    pub job: Job,
    pub nodes: Vec<NodeName>,
}

/// A job row's columns in `JobRow`'s order, with an empty config in place of the job's
/// body: a planning round reads hundreds of jobs many times a second and needs none of
/// their bodies.
macro_rules! plan_columns {
    () => {
        (
            jobs::id,
            jobs::description,
            jobs::machine_type,
            jobs::priority,
            jobs::n_nodes,
            jobs::time_limit_s,
            jobs::os_type,
            jobs::os_version,
            jobs::status,
            jobs::reason,
            jobs::beanstalk_id,
            diesel::dsl::sql::<diesel::sql_types::Text>("''"),
            jobs::created_at,
            jobs::updated_at,
            jobs::heartbeat_at,
            jobs::dispatcher,
            jobs::supervisor_pid,
            jobs::supervisor_host,
            jobs::started_at,
        )
    };
}

/// What one planning round needs from the database. Its jobs come without their config
/// (`config_yaml` is empty).
#[derive(Debug, Clone, Default)]
pub struct PlanData {
    /// Every node of the machine type, up or down: the inventory.
    pub total_nodes: u32,
    /// Nodes up and not locked.
    pub free_nodes: u32,
    /// Jobs holding nodes of the machine type: running, or ended and releasing them.
    pub running: Vec<Job>,
    /// For each ended job in `running`: how many nodes it still holds (fewer than it
    /// asked for once some are back).
    pub releasing_nodes: std::collections::HashMap<JobId, u32>,
    /// The requested jobs that are still `waiting` (for a forecast: the queue).
    pub window: Vec<Job>,
    /// Recent runtimes (ms) of ended jobs, by description, newest first.
    pub history: std::collections::HashMap<String, Vec<i64>>,
}

/// Which waiting jobs a [`PlanData`] holds.
#[derive(Debug, Clone, Copy)]
enum PlanWindow<'a> {
    /// These, if still `waiting` (a dispatcher's window).
    Jobs(&'a [JobId]),
    /// Up to `limit` queued or waiting jobs, most urgent base priority first.
    Queue { limit: i64 },
}

/// The runtime history the estimates are narrowed by.
pub(crate) trait HistoryTx {
    /// The runtimes (ms) of the last 20 passed or failed runs of each of these
    /// descriptions (the policy's `Estimator` looks at as many), newest first;
    /// descriptions without one are absent.
    fn recent_runtimes(
        &mut self,
        descriptions: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<i64>>, DbError> {
        if descriptions.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        Ok(newest_first(self.load_runtimes(descriptions)?))
    }

    /// The rows of [`HistoryTx::recent_runtimes`] in no order: the one per-backend part.
    fn load_runtimes(&mut self, descriptions: &[&str]) -> Result<Vec<RuntimeRow>, DbError>;
}

/// One row of [`HistoryTx::recent_runtimes`].
#[derive(QueryableByName)]
pub(crate) struct RuntimeRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    description: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    runtime_ms: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    updated_at: i64,
}

// One statement for all of a round's descriptions, its text fixed (so the prepared
// statement is cached) and the descriptions one bound value. For each description it
// walks the `(description, updated_at)` index backwards and stops after 20 rows, as the
// query it replaces, run once per description, did; a window function would read each
// description's whole history. Measured on a loaded 2-core machine (256 descriptions of
// 100 runs each, the whole read in its transaction): SQLite 5.0 ms against 5.5 ms for a
// query per description and 9 to 11 ms for a UNION ALL of those queries (its long text
// is parsed again every time); PostgreSQL 5.9 ms against 11 to 31 ms and 53 ms.

/// SQLite: the descriptions as a JSON array, one row each from `json_each`.
const RECENT_RUNTIMES_SQLITE: &str = "SELECT j.description, \
       j.updated_at - j.started_at AS runtime_ms, j.updated_at \
     FROM json_each(?) AS d JOIN jobs AS j ON j.id IN ( \
       SELECT h.id FROM jobs AS h \
       WHERE h.description = d.value AND h.status IN ('pass', 'fail') \
         AND h.started_at IS NOT NULL \
       ORDER BY h.updated_at DESC LIMIT 20)";

/// PostgreSQL: the descriptions as a text array, each joined laterally to its runs.
const RECENT_RUNTIMES_POSTGRES: &str = "SELECT d.description, h.runtime_ms, h.updated_at \
     FROM unnest($1::text[]) AS d(description) CROSS JOIN LATERAL ( \
       SELECT updated_at - started_at AS runtime_ms, updated_at FROM jobs \
       WHERE jobs.description = d.description AND status IN ('pass', 'fail') \
         AND started_at IS NOT NULL \
       ORDER BY updated_at DESC LIMIT 20) AS h";

impl HistoryTx for diesel::sqlite::SqliteConnection {
    fn load_runtimes(&mut self, descriptions: &[&str]) -> Result<Vec<RuntimeRow>, DbError> {
        let list = serde_json::to_string(descriptions)
            .map_err(|e| DbError::Corrupt(format!("descriptions as JSON: {e}")))?;
        Ok(diesel::sql_query(RECENT_RUNTIMES_SQLITE)
            .bind::<diesel::sql_types::Text, _>(list)
            .load(self)?)
    }
}

impl HistoryTx for diesel::pg::PgConnection {
    fn load_runtimes(&mut self, descriptions: &[&str]) -> Result<Vec<RuntimeRow>, DbError> {
        Ok(diesel::sql_query(RECENT_RUNTIMES_POSTGRES)
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(descriptions)
            .load(self)?)
    }
}

/// Each description's runtimes, newest first: a join promises no order, so the rows are
/// sorted again (stably, so rows that tie keep the order they came in).
fn newest_first(mut rows: Vec<RuntimeRow>) -> std::collections::HashMap<String, Vec<i64>> {
    rows.sort_by(|a, b| {
        a.description
            .cmp(&b.description)
            .then(b.updated_at.cmp(&a.updated_at))
    });
    let mut history: std::collections::HashMap<String, Vec<i64>> = std::collections::HashMap::new();
    for row in rows {
        history
            .entry(row.description)
            .or_default()
            .push(row.runtime_ms);
    }
    history
}

/// A job a kill ended, with the status it had.
#[derive(Debug, Clone)]
pub struct Killed {
    pub job: Job,
    pub was: JobStatus,
}

/// Queries shared by the dispatch operations, written once for both backends.
pub(crate) trait DispatchTx {
    fn load_tube(&mut self, machine_type: &MachineType, now: UnixMillis) -> Result<Tube, DbError>;
    fn free_nodes_of_job(
        &mut self,
        job_id: JobId,
        now: UnixMillis,
    ) -> Result<Vec<NodeName>, DbError>;
    fn load_claimed(&mut self, job_id: JobId, holder: &str) -> Result<Job, DbError>;
    /// [`Store::record_dispatch`] inside the caller's write transaction.
    fn record_started(
        &mut self,
        job_id: JobId,
        holder: &str,
        supervisor: &SupervisorRef,
        now: UnixMillis,
    ) -> Result<(), DbError>;
    fn move_job(
        &mut self,
        job: &Job,
        to: JobStatus,
        reason: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError>;
}

crate::impl_for_both_backends! { DispatchTx {
    /// The tube's row, created (unpaused, no lease) on first use.
    fn load_tube(&mut self, machine_type: &MachineType, now: UnixMillis) -> Result<Tube, DbError> {
        diesel::insert_into(tubes::table)
            .values((tubes::machine_type.eq(machine_type.as_str()), tubes::updated_at.eq(now.0)))
            .on_conflict_do_nothing()
            .execute(self)?;
        tubes::table
            .find(machine_type.as_str())
            .select(TubeRow::as_select())
            .first(self)?
            .into_tube()
    }

    fn free_nodes_of_job(&mut self, job_id: JobId, now: UnixMillis) -> Result<Vec<NodeName>, DbError> {
        // Who holds each node, read before the update (RETURNING gives the new, empty
        // holder): the history names the lock it removes.
        let holders: std::collections::HashMap<String, String> = nodes::table
            .filter(nodes::locked_job_id.eq(job_id.0))
            .select((nodes::name, nodes::locked_by))
            .load::<(String, Option<String>)>(self)?
            .into_iter()
            .map(|(name, holder)| (name, holder.unwrap_or_default()))
            .collect();
        let freed: Vec<String> = diesel::update(nodes::table.filter(nodes::locked_job_id.eq(job_id.0)))
            .set((
                nodes::locked_by.eq(None::<String>),
                nodes::locked_job_id.eq(None::<i64>),
                nodes::locked_since.eq(None::<i64>),
                nodes::updated_at.eq(now.0),
            ))
            .returning(nodes::name)
            .get_results(self)?;
        let changed: Vec<crate::lock_history::Changed> = freed
            .iter()
            .map(|name| crate::lock_history::Changed {
                name: name.clone(),
                holder: holders.get(name).cloned().unwrap_or_default(),
                job_id: Some(job_id.0),
            })
            .collect();
        crate::lock_history::LockHistoryTx::record_lock_events(
            self,
            cuttle_core::audit::LockAction::Unlock,
            &changed,
            &format!("job {job_id} back in the queue"),
            now,
        )?;
        node_names(&freed)
    }

    fn record_started(
        &mut self,
        job_id: JobId,
        holder: &str,
        supervisor: &SupervisorRef,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        let job = self.load_claimed(job_id, holder)?;
        let held: Vec<String> = nodes::table
            .filter(nodes::locked_job_id.eq(job_id.0))
            .select(nodes::name)
            .order(nodes::name)
            .load(self)?;
        if held.len() != job.spec.n_nodes.get() as usize {
            return Err(DbError::NotClaimed {
                job_id,
                status: job.status,
                holder: format!(
                    "{holder} (it holds {} of the job's {} nodes)",
                    held.len(),
                    job.spec.n_nodes.get()
                ),
            });
        }
        let reason = format!(
            "started by supervisor pid {} on {} with {}",
            supervisor.pid,
            supervisor.host,
            held.join(", ")
        );
        if !self.move_job(&job, JobStatus::Running, &reason, now)? {
            return Err(DbError::Conflict { job_id });
        }
        diesel::update(jobs::table.filter(jobs::id.eq(job_id.0)))
            .set((
                jobs::supervisor_pid.eq(i64::from(supervisor.pid)),
                jobs::supervisor_host.eq(&supervisor.host),
                jobs::started_at.eq(now.0),
                jobs::heartbeat_at.eq(now.0),
            ))
            .execute(self)?;
        Ok(())
    }

    /// The job, if it is `waiting` and claimed by `holder`; the one check behind every
    /// step a dispatcher takes on a job it claimed.
    fn load_claimed(&mut self, job_id: JobId, holder: &str) -> Result<Job, DbError> {
        let job = self.load_job(job_id)?;
        if job.status != JobStatus::Waiting || job.dispatcher.as_deref() != Some(holder) {
            return Err(DbError::NotClaimed {
                job_id,
                status: job.status,
                holder: holder.to_owned(),
            });
        }
        Ok(job)
    }

    /// Moves `job` (as just loaded) to `to` through the state machine, conditional on its
    /// status not having changed since; returns whether it moved.
    fn move_job(
        &mut self,
        job: &Job,
        to: JobStatus,
        reason: &str,
        now: UnixMillis,
    ) -> Result<bool, DbError> {
        job.status
            .transition(to, Some(reason))
            .map_err(|source| DbError::IllegalTransition { job_id: job.id, source })?;
        let changed = diesel::update(
            jobs::table
                .filter(jobs::id.eq(job.id.0))
                .filter(jobs::status.eq(job.status.as_str())),
        )
        .set((
            jobs::status.eq(to.as_str()),
            // The job's reason says why it ended; routine steps (reserved, started,
            // requeued) are in its timeline only.
            jobs::reason.eq(if matches!(to, JobStatus::Dead | JobStatus::Killed) {
                Some(reason)
            } else {
                job.reason.as_deref()
            }),
            jobs::updated_at.eq(now.0),
        ))
        .execute(self)?;
        if changed == 1 {
            self.record_event(job.id, now, Some(job.status), to, Some(reason))?;
        }
        Ok(changed == 1)
    }
}}

/// Node names as stored, checked.
fn node_names(names: &[String]) -> Result<Vec<NodeName>, DbError> {
    names
        .iter()
        .map(|name| NodeName::parse(name).map_err(|e| DbError::Corrupt(e.to_string())))
        .collect()
}

/// The statuses of jobs that have ended, as stored (the state machine's terminal ones).
fn ended() -> Vec<&'static str> {
    JobStatus::ALL
        .into_iter()
        .filter(|status| status.is_terminal())
        .map(JobStatus::as_str)
        .collect()
}

/// Refuses `holder` unless it holds `tube`'s live lease.
fn check_lease_holder(tube: &Tube, holder: &str, now: UnixMillis) -> Result<(), DbError> {
    if tube
        .live_lease(now)
        .is_some_and(|lease| lease.holder == holder)
    {
        return Ok(());
    }
    Err(DbError::NotLeaseHolder {
        machine_type: tube.machine_type.clone(),
        holder: holder.to_owned(),
        current: tube
            .live_lease(now)
            .map(|lease| format!("{} (pid {} on {})", lease.holder, lease.pid, lease.host)),
    })
}

impl Store {
    /// Takes or renews a tube's lease for `request.holder` if it is free, expired or
    /// already theirs; returns the tube as it now stands (check the lease's holder to see
    /// whether it was granted).
    pub fn acquire_lease(&self, request: &LeaseRequest, now: UnixMillis) -> Result<Tube, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let tube = c.load_tube(&request.machine_type, now)?;
            let current = tube.lease_rule();
            if may_take_lease(current.as_ref(), &request.holder, now) {
                let renewing = current.is_some_and(|lease| lease.holder == request.holder);
                let acquired_at = if renewing {
                    tube.lease.as_ref().map_or(now, |lease| lease.acquired_at)
                } else {
                    now
                };
                // Conditional on the lease still being takeable: on PostgreSQL a racing
                // standby re-checks this after the first one's row lock is released.
                diesel::update(
                    tubes::table.find(request.machine_type.as_str()).filter(
                        tubes::lease_holder
                            .is_null()
                            .or(tubes::lease_holder.eq(&request.holder))
                            .or(tubes::lease_expires_at.le(now.0)),
                    ),
                )
                .set((
                    tubes::lease_holder.eq(&request.holder),
                    tubes::lease_host.eq(&request.host),
                    tubes::lease_pid.eq(i64::from(request.pid)),
                    tubes::lease_acquired_at.eq(acquired_at.0),
                    tubes::lease_expires_at.eq(now.0 + request.ttl_ms),
                    tubes::updated_at.eq(now.0),
                ))
                .execute(c)?;
            }
            c.load_tube(&request.machine_type, now)
        })
    }

    /// Gives the lease up at once (a clean dispatcher shutdown), so a standby need not wait
    /// for it to expire. Does nothing if `holder` does not hold it.
    pub fn release_lease(
        &self,
        machine_type: &MachineType,
        holder: &str,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            diesel::update(
                tubes::table
                    .find(machine_type.as_str())
                    .filter(tubes::lease_holder.eq(holder)),
            )
            .set((
                tubes::lease_expires_at.eq(now.0),
                tubes::updated_at.eq(now.0),
            ))
            .execute(c)
        })?;
        Ok(())
    }

    /// The tube's state, read only: a machine type no dispatcher or pause has used yet
    /// is shown unpaused and without a lease, and nothing is written for it.
    pub fn get_tube(&self, machine_type: &MachineType, _now: UnixMillis) -> Result<Tube, DbError> {
        let mut conn = self.conn()?;
        let row: Option<TubeRow> = with_conn!(&mut *conn, |c| tubes::table
            .find(machine_type.as_str())
            .select(TubeRow::as_select())
            .first(c)
            .optional())?;
        match row {
            Some(row) => row.into_tube(),
            None => Ok(Tube {
                machine_type: machine_type.clone(),
                paused: false,
                paused_by: None,
                paused_at: None,
                lease: None,
            }),
        }
    }

    /// Every tube that has ever been used, by machine type.
    pub fn list_tubes(&self) -> Result<Vec<Tube>, DbError> {
        let mut conn = self.conn()?;
        let rows: Vec<TubeRow> = with_conn!(&mut *conn, |c| tubes::table
            .select(TubeRow::as_select())
            .order(tubes::machine_type)
            .load(c))?;
        rows.into_iter().map(TubeRow::into_tube).collect()
    }

    /// Pauses or resumes a tube; a paused tube gets no new dispatches.
    pub fn set_paused(
        &self,
        machine_type: &MachineType,
        paused: bool,
        by: &Owner,
        now: UnixMillis,
    ) -> Result<Tube, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            c.load_tube(machine_type, now)?;
            diesel::update(tubes::table.find(machine_type.as_str()))
                .set((
                    tubes::paused.eq(paused),
                    tubes::paused_by.eq(paused.then(|| by.as_str())),
                    tubes::paused_at.eq(paused.then_some(now.0)),
                    tubes::updated_at.eq(now.0),
                ))
                .execute(c)?;
            c.load_tube(machine_type, now)
        })
    }

    /// Decides, for the dispatcher holding `tube`'s lease, what to do with beanstalkd job
    /// `beanstalk_id` that names `job_id`, and applies it: a job to start becomes `waiting`
    /// (claimed by `holder`; nodes a previous claimant locked for it are freed), a job that
    /// can never run, or `expired` (why its body says it is too old to start), becomes
    /// `dead`. Refused if `holder` does not hold the lease.
    pub fn claim_job(
        &self,
        job_id: JobId,
        tube: &MachineType,
        beanstalk_id: u64,
        holder: &str,
        expired: Option<String>,
        now: UnixMillis,
    ) -> Result<(Claim, Job), DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let tube_row = c.load_tube(tube, now)?;
            check_lease_holder(&tube_row, holder, now)?;
            let job = c.load_job(job_id)?;
            let total: i64 = nodes::table
                .filter(nodes::machine_type.eq(tube.as_str()))
                .count()
                .get_result(c)?;
            let claim = decide_claim(
                &job,
                tube,
                beanstalk_id,
                u32::try_from(total).unwrap_or(u32::MAX),
                expired,
            );
            match &claim {
                Claim::Start => {
                    if job.status == JobStatus::Waiting {
                        // A leftover of a dispatcher that lost the lease: nothing ran on
                        // these nodes, so they go straight back.
                        c.free_nodes_of_job(job.id, now)?;
                    } else {
                        let reason = format!("reserved by dispatcher {holder}");
                        if !c.move_job(&job, JobStatus::Waiting, &reason, now)? {
                            return Err(DbError::Conflict { job_id });
                        }
                    }
                    diesel::update(jobs::table.filter(jobs::id.eq(job.id.0)))
                        .set((
                            jobs::dispatcher.eq(holder),
                            jobs::beanstalk_id.eq(beanstalk_id as i64),
                        ))
                        .execute(c)?;
                }
                Claim::Bury { reason, dead: true } | Claim::Expired { reason } => {
                    if !c.move_job(&job, JobStatus::Dead, reason, now)? {
                        return Err(DbError::Conflict { job_id });
                    }
                }
                Claim::Bury { dead: false, .. } | Claim::Discard { .. } => {}
            }
            Ok((claim, c.load_job(job_id)?))
        })
    }

    /// Records that `holder` started a supervisor for its claimed job: `waiting` →
    /// `running`, with the supervisor's pid and host. Refused unless the job is `waiting`,
    /// claimed by `holder`, and holds exactly its nodes.
    pub fn record_dispatch(
        &self,
        job_id: JobId,
        holder: &str,
        supervisor: &SupervisorRef,
        now: UnixMillis,
    ) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| c.record_started(job_id, holder, supervisor, now))
    }

    /// [`Store::record_dispatch`] for each (job, holder, supervisor), one answer per
    /// entry, in order: one write transaction for all and a savepoint per job, so one
    /// refused record changes nothing for the others.
    pub fn record_dispatches(
        &self,
        started: &[(JobId, String, SupervisorRef)],
        now: UnixMillis,
    ) -> Result<Vec<Result<(), DbError>>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            Ok(started
                .iter()
                .map(|(job_id, holder, supervisor)| {
                    c.transaction(|c| c.record_started(*job_id, holder, supervisor, now))
                })
                .collect())
        })
    }

    /// A dispatcher hands back a job it claimed but will not start (shutdown, a failed
    /// spawn): its nodes are freed and it returns to `queued`.
    pub fn requeue_job(
        &self,
        job_id: JobId,
        holder: &str,
        reason: &str,
        now: UnixMillis,
    ) -> Result<Job, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let job = c.load_claimed(job_id, holder)?;
            c.free_nodes_of_job(job_id, now)?;
            if !c.move_job(&job, JobStatus::Queued, reason, now)? {
                return Err(DbError::Conflict { job_id });
            }
            c.load_job(job_id)
        })
    }

    /// One reaper pass: running jobs whose supervisor has been silent for over `grace_ms`
    /// become `dead`; `waiting` jobs whose dispatcher lost its lease go back to `queued`
    /// with their nodes freed; nodes locked for a job that is back in the queue are freed.
    pub fn reap(&self, grace_ms: i64, now: UnixMillis) -> Result<ReapReport, DbError> {
        Ok(self.reap_with(grace_ms, || Some(now))?.unwrap_or_default())
    }

    /// Like [`Store::reap`], reading the clock only inside the write transaction, once
    /// the connection and the write lock are in hand: a pass that waited out a database
    /// outage judges silence as of now, and `clock` may still call the pass off (`None`,
    /// when cuttle-api was not healthy for a whole grace by then).
    pub fn reap_with(
        &self,
        grace_ms: i64,
        clock: impl FnOnce() -> Option<UnixMillis>,
    ) -> Result<Option<ReapReport>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let Some(now) = clock() else {
                return Ok(None);
            };
            let mut report = ReapReport::default();
            let rows: Vec<JobWithRun> = jobs::table
                .inner_join(runs::table)
                .filter(
                    jobs::status.eq_any([JobStatus::Running.as_str(), JobStatus::Waiting.as_str()]),
                )
                .select((JobRow::as_select(), runs::name, runs::owner))
                .load(c)?;
            let tube_rows: Vec<TubeRow> = tubes::table.select(TubeRow::as_select()).load(c)?;
            let tubes_now = tube_rows
                .into_iter()
                .map(TubeRow::into_tube)
                .collect::<Result<Vec<_>, _>>()?;
            for row in rows {
                let job = into_job(row)?;
                let lease = tubes_now
                    .iter()
                    .find(|tube| tube.machine_type == job.spec.machine_type)
                    .and_then(Tube::lease_rule);
                match decide_reap(&job, lease.as_ref(), grace_ms, now) {
                    Reap::Keep => {}
                    Reap::SupervisorLost { reason } => {
                        if c.move_job(&job, JobStatus::Dead, &reason, now)? {
                            report.supervisor_lost.push((job.id, reason));
                        }
                    }
                    Reap::DispatcherLost { reason } => {
                        if c.move_job(&job, JobStatus::Queued, &reason, now)? {
                            report.freed_nodes.extend(c.free_nodes_of_job(job.id, now)?);
                            report.requeued.push(job.id);
                        }
                    }
                }
            }
            // Locks left on nodes for jobs that are back in the queue (or never left it).
            let stray: Vec<i64> = nodes::table
                .inner_join(jobs::table.on(jobs::id.nullable().eq(nodes::locked_job_id)))
                .filter(jobs::status.eq_any([
                    JobStatus::Queued.as_str(),
                    JobStatus::WaitingForBuild.as_str(),
                ]))
                .select(jobs::id)
                .distinct()
                .load(c)?;
            for job_id in stray {
                report
                    .freed_nodes
                    .extend(c.free_nodes_of_job(JobId(job_id), now)?);
            }
            Ok(Some(report))
        })
    }

    /// Ended jobs of `machine_type` that still hold nodes and whose supervisor has not
    /// heartbeaten for `grace_ms` (it died, or the job was killed while it was lost), at
    /// most `limit`. Each returned job's heartbeat is set to `now`, which claims its release
    /// for the caller for another `grace_ms`. Refused if `holder` does not hold the
    /// tube's lease: only the tube's dispatcher runs its releases.
    pub fn claim_releases(
        &self,
        machine_type: &MachineType,
        holder: &str,
        grace_ms: i64,
        limit: i64,
        now: UnixMillis,
    ) -> Result<Vec<PendingRelease>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let tube_row = c.load_tube(machine_type, now)?;
            check_lease_holder(&tube_row, holder, now)?;
            let cutoff = now.0 - grace_ms;
            let job_ids: Vec<i64> = nodes::table
                .inner_join(jobs::table.on(jobs::id.nullable().eq(nodes::locked_job_id)))
                .filter(nodes::machine_type.eq(machine_type.as_str()))
                .filter(jobs::status.eq_any(ended()))
                .filter(
                    jobs::heartbeat_at
                        .is_null()
                        .or(jobs::heartbeat_at.lt(cutoff)),
                )
                .select(jobs::id)
                .distinct()
                .limit(limit)
                .load(c)?;
            let mut pending = Vec::new();
            for job_id in job_ids {
                diesel::update(jobs::table.filter(jobs::id.eq(job_id)))
                    .set(jobs::heartbeat_at.eq(now.0))
                    .execute(c)?;
                let names: Vec<String> = nodes::table
                    .filter(nodes::locked_job_id.eq(job_id))
                    .select(nodes::name)
                    .order(nodes::name)
                    .load(c)?;
                let nodes = node_names(&names)?;
                pending.push(PendingRelease {
                    job: c.load_job(JobId(job_id))?,
                    nodes,
                });
            }
            Ok(pending)
        })
    }

    /// Kills every job of `run` that has not ended (or just `job_id` of it): each becomes
    /// `killed` with the reason. Returns what was killed and the status it had, so the
    /// caller can delete queued copies from beanstalkd; running supervisors learn it from
    /// their next heartbeat.
    pub fn kill(
        &self,
        run: &RunName,
        job_id: Option<JobId>,
        reason: &str,
        now: UnixMillis,
    ) -> Result<Vec<Killed>, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let run_id: Option<i64> = runs::table
                .filter(runs::name.eq(run.as_str()))
                .select(runs::id)
                .first(c)
                .optional()?;
            let run_id = run_id.ok_or_else(|| DbError::NotFound {
                what: "run",
                name: run.to_string(),
            })?;
            let mut targets = c.load_run_jobs(run_id)?;
            if let Some(job_id) = job_id {
                targets.retain(|job| job.id == job_id);
                if targets.is_empty() {
                    return Err(DbError::NotFound {
                        what: "job",
                        name: format!("{job_id} in run {run}"),
                    });
                }
            }
            let mut killed = Vec::new();
            for job in targets.into_iter().filter(|job| !job.status.is_terminal()) {
                if c.move_job(&job, JobStatus::Killed, reason, now)? {
                    let was = job.status;
                    killed.push(Killed {
                        job: c.load_job(job.id)?,
                        was,
                    });
                }
            }
            Ok(killed)
        })
    }

    /// Jobs waiting on `machine_type`'s tube (`queued`, and `waiting` ones a dispatcher
    /// holds), in the order the dispatcher takes them: beanstalkd's, which is priority,
    /// then the order they were put (job ids are put in order).
    pub fn list_queue(&self, machine_type: &MachineType, limit: i64) -> Result<Vec<Job>, DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let rows: Vec<JobWithRun> = jobs::table
                .inner_join(runs::table)
                .filter(jobs::machine_type.eq(machine_type.as_str()))
                .filter(
                    jobs::status.eq_any([JobStatus::Queued.as_str(), JobStatus::Waiting.as_str()]),
                )
                .select((JobRow::as_select(), runs::name, runs::owner))
                .order((jobs::priority, jobs::beanstalk_id, jobs::id))
                .limit(limit)
                .load(c)?;
            rows.into_iter().map(into_job).collect()
        })
    }

    /// Records a job that teuthology's own tools put on a tube (its body has no cuttle job
    /// id), creating its run if the run is new. Adopting the same beanstalkd copy twice
    /// returns the job recorded the first time.
    pub fn adopt_job(
        &self,
        run: &RunSpec,
        spec: &JobSpec,
        body: &str,
        beanstalk_id: u64,
        now: UnixMillis,
    ) -> Result<Job, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let existing: Option<i64> = runs::table
                .filter(runs::name.eq(run.name.as_str()))
                .select(runs::id)
                .first(c)
                .optional()?;
            let run_id = match existing {
                Some(run_id) => run_id,
                None => diesel::insert_into(runs::table)
                    .values((
                        runs::name.eq(run.name.as_str()),
                        runs::owner.eq(run.owner.as_str()),
                        runs::branch.eq(&run.branch),
                        runs::sha1.eq(&run.sha1),
                        runs::suite.eq(&run.suite),
                        runs::machine_type.eq(spec.machine_type.as_str()),
                        runs::created_at.eq(now.0),
                    ))
                    .returning(runs::id)
                    .get_result(c)?,
            };
            let beanstalk_id = i64::try_from(beanstalk_id).map_err(|_| {
                DbError::Corrupt(format!("beanstalkd id {beanstalk_id} does not fit"))
            })?;
            let already: Option<i64> = jobs::table
                .filter(jobs::run_id.eq(run_id))
                .filter(jobs::beanstalk_id.eq(beanstalk_id))
                .filter(jobs::config_yaml.eq(body))
                .select(jobs::id)
                .first(c)
                .optional()?;
            if let Some(job_id) = already {
                return c.load_job(JobId(job_id));
            }
            let job_id: i64 = diesel::insert_into(jobs::table)
                .values((
                    jobs::run_id.eq(run_id),
                    jobs::description.eq(&spec.description),
                    jobs::machine_type.eq(spec.machine_type.as_str()),
                    jobs::priority.eq(i32::try_from(spec.priority.get()).unwrap_or(i32::MAX)),
                    jobs::n_nodes.eq(i32::try_from(spec.n_nodes.get()).unwrap_or(i32::MAX)),
                    jobs::time_limit_s.eq(spec
                        .time_limit
                        .map(|t| i32::try_from(t.seconds()).unwrap_or(i32::MAX))),
                    jobs::os_type.eq(&spec.os_type),
                    jobs::os_version.eq(&spec.os_version),
                    jobs::status.eq(JobStatus::Queued.as_str()),
                    jobs::beanstalk_id.eq(beanstalk_id),
                    jobs::config_yaml.eq(body),
                    jobs::created_at.eq(now.0),
                    jobs::updated_at.eq(now.0),
                ))
                .returning(jobs::id)
                .get_result(c)?;
            c.record_event(
                JobId(job_id),
                now,
                None,
                JobStatus::Queued,
                Some("adopted from a body teuthology put on the tube"),
            )?;
            c.load_job(JobId(job_id))
        })
    }

    /// The lab and the jobs for one planning round of `machine_type`'s dispatcher.
    pub fn plan_data(
        &self,
        machine_type: &MachineType,
        window: &[JobId],
    ) -> Result<PlanData, DbError> {
        self.plan_data_of(machine_type, PlanWindow::Jobs(window))
    }

    /// The lab and up to `limit` of its waiting jobs (queued or held by a dispatcher, in
    /// `window`): what a forecast of start times plans over.
    pub fn queue_plan_data(
        &self,
        machine_type: &MachineType,
        limit: i64,
    ) -> Result<PlanData, DbError> {
        self.plan_data_of(machine_type, PlanWindow::Queue { limit })
    }

    /// One consistent snapshot: the free count, the running jobs and the nodes still held
    /// by ended jobs are read together, so a node given back while they are read is
    /// counted once, never zero times (the planner would see a lab short of a node).
    fn plan_data_of(
        &self,
        machine_type: &MachineType,
        window: PlanWindow<'_>,
    ) -> Result<PlanData, DbError> {
        let ids: Vec<i64> = match window {
            PlanWindow::Jobs(ids) => ids.iter().map(|id| id.0).collect(),
            PlanWindow::Queue { .. } => Vec::new(),
        };
        let mut conn = self.conn()?;
        snapshot_tx!(&mut *conn, |c| {
            let of_type = nodes::table.filter(nodes::machine_type.eq(machine_type.as_str()));
            // The whole inventory, down nodes included: a job that fits it waits for
            // nodes to come up; only one larger than the inventory can never run.
            let total: i64 = of_type.count().get_result(c)?;
            let free: i64 = of_type
                .filter(nodes::up.eq(true))
                .filter(nodes::locked_by.is_null())
                .count()
                .get_result(c)?;
            let load =
                |c: &mut _, status: JobStatus, only: Option<&[i64]>| -> Result<Vec<Job>, DbError> {
                    let mut query = jobs::table
                        .inner_join(runs::table)
                        .filter(jobs::machine_type.eq(machine_type.as_str()))
                        .filter(jobs::status.eq(status.as_str()))
                        .select((plan_columns!(), runs::name, runs::owner))
                        .into_boxed();
                    if let Some(only) = only {
                        query = query.filter(jobs::id.eq_any(only));
                    }
                    let rows: Vec<JobWithRun> = query.load(c)?;
                    rows.into_iter().map(into_job).collect()
                };
            let mut running = load(c, JobStatus::Running, None)?;
            // Ended jobs whose nodes are still being given back hold nodes too: leaving
            // them out would make those nodes look like they never free up.
            // Count what each still holds: nodes come back one by one, and a node already
            // given back is in `free`, so counting it again as the job's would show the
            // planner nodes that do not exist.
            let releasing: Vec<i64> = nodes::table
                .inner_join(jobs::table.on(jobs::id.nullable().eq(nodes::locked_job_id)))
                .filter(nodes::machine_type.eq(machine_type.as_str()))
                .filter(jobs::status.eq_any(ended()))
                .select(jobs::id)
                .load(c)?;
            let mut releasing_nodes = std::collections::HashMap::new();
            for job_id in releasing {
                *releasing_nodes.entry(JobId(job_id)).or_insert(0u32) += 1;
            }
            let mut releasing_ids: Vec<JobId> = releasing_nodes.keys().copied().collect();
            releasing_ids.sort_unstable();
            if !releasing_ids.is_empty() {
                let ids: Vec<i64> = releasing_ids.iter().map(|id| id.0).collect();
                let rows: Vec<JobWithRun> = jobs::table
                    .inner_join(runs::table)
                    .filter(jobs::id.eq_any(ids))
                    .select((plan_columns!(), runs::name, runs::owner))
                    .order(jobs::id)
                    .load(c)?;
                for row in rows {
                    running.push(into_job(row)?);
                }
            }
            let window = match window {
                PlanWindow::Jobs(_) => load(c, JobStatus::Waiting, Some(&ids))?,
                PlanWindow::Queue { limit } => {
                    let rows: Vec<JobWithRun> = jobs::table
                        .inner_join(runs::table)
                        .filter(jobs::machine_type.eq(machine_type.as_str()))
                        .filter(
                            jobs::status
                                .eq_any([JobStatus::Queued.as_str(), JobStatus::Waiting.as_str()]),
                        )
                        .select((plan_columns!(), runs::name, runs::owner))
                        .order((jobs::priority, jobs::id))
                        .limit(limit)
                        .load(c)?;
                    rows.into_iter()
                        .map(into_job)
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            let mut descriptions: Vec<&str> = running
                .iter()
                .chain(&window)
                .map(|job| job.spec.description.as_str())
                .collect();
            descriptions.sort_unstable();
            descriptions.dedup();
            let history = c.recent_runtimes(&descriptions)?;
            Ok(PlanData {
                total_nodes: u32::try_from(total).unwrap_or(u32::MAX),
                free_nodes: u32::try_from(free).unwrap_or(u32::MAX),
                running,
                releasing_nodes,
                window,
                history,
            })
        })
    }

    /// Sets a queued or waiting job's priority (its base priority; aging still counts from
    /// when it was scheduled) and notes it in the job's timeline.
    pub fn set_priority(
        &self,
        job_id: JobId,
        priority: cuttle_core::Priority,
        by: &str,
        now: UnixMillis,
    ) -> Result<Job, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let job = c.load_job(job_id)?;
            if !matches!(job.status, JobStatus::Queued | JobStatus::Waiting) {
                return Err(DbError::NotWaiting {
                    job_id,
                    status: job.status,
                });
            }
            let value = i32::try_from(priority.get()).unwrap_or(i32::MAX);
            diesel::update(jobs::table.filter(jobs::id.eq(job_id.0)))
                .set((
                    jobs::priority.eq(value),
                    jobs::queue_priority.eq(None::<i32>),
                    jobs::updated_at.eq(now.0),
                ))
                .execute(c)?;
            let note = format!(
                "priority {} -> {} by {by}",
                job.spec.priority.get(),
                priority.get()
            );
            c.record_event(job_id, now, Some(job.status), job.status, Some(&note))?;
            c.load_job(job_id)
        })
    }

    /// Records that a queued job's live beanstalkd copy is now `new_id` with `priority`
    /// (a re-put after aging or re-prioritizing), if its live copy is still `old_id`.
    /// Returns whether it changed; if not, the caller's new copy is stale.
    pub fn replace_beanstalk_copy(
        &self,
        job_id: JobId,
        old_id: u64,
        new_id: u64,
        priority: u32,
    ) -> Result<bool, DbError> {
        let to_i64 = |id: u64| {
            i64::try_from(id)
                .map_err(|_| DbError::Corrupt(format!("beanstalkd id {id} does not fit")))
        };
        let (old_id, new_id) = (to_i64(old_id)?, to_i64(new_id)?);
        let mut conn = self.conn()?;
        let changed = with_conn!(&mut *conn, |c| diesel::update(
            jobs::table
                .filter(jobs::id.eq(job_id.0))
                .filter(jobs::status.eq(JobStatus::Queued.as_str()))
                .filter(jobs::beanstalk_id.eq(old_id)),
        )
        .set((
            jobs::beanstalk_id.eq(new_id),
            jobs::queue_priority.eq(i32::try_from(priority).unwrap_or(i32::MAX)),
        ))
        .execute(c))?;
        Ok(changed == 1)
    }

    /// Queued jobs on beanstalkd, with the priority of their live copy, oldest first: what
    /// the aging pass looks at.
    pub fn queued_copies(&self, limit: i64) -> Result<Vec<(Job, u32)>, DbError> {
        let mut conn = self.conn()?;
        with_conn!(&mut *conn, |c| {
            let rows: Vec<(JobRow, String, String, Option<i32>)> = jobs::table
                .inner_join(runs::table)
                .filter(jobs::status.eq(JobStatus::Queued.as_str()))
                .filter(jobs::beanstalk_id.is_not_null())
                .select((
                    JobRow::as_select(),
                    runs::name,
                    runs::owner,
                    jobs::queue_priority,
                ))
                .order(jobs::id)
                .limit(limit)
                .load(c)?;
            rows.into_iter()
                .map(|(row, run, owner, queue_priority)| {
                    let job = into_job((row, run, owner))?;
                    let live = queue_priority
                        .and_then(|p| u32::try_from(p).ok())
                        .unwrap_or(job.spec.priority.get());
                    Ok((job, live))
                })
                .collect()
        })
    }
}
