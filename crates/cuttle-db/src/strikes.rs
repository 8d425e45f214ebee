//! Prepare (reimage) outcomes: a failed prepare is charged to the nodes as strikes, not
//! to the job, which goes back to the queue; a node that strikes out is marked down.
//! The rules are `cuttle_core::dispatch::{after_prepare_failure, strike_out}`; this
//! module applies them in one transaction.

use diesel::prelude::*;

use cuttle_core::dispatch::{AfterPrepareFailure, StrikePolicy, after_prepare_failure, strike_out};
use cuttle_core::{Job, JobId, JobStatus, NodeName, UnixMillis};

use crate::dispatch::DispatchTx;
use crate::jobs::JobTx;
use crate::schema::{jobs, nodes};
use crate::{DbConnection, DbError, Store, write_tx};

/// What a failed prepare did.
#[derive(Debug, Clone)]
pub struct PrepareFailed {
    /// The job as it is now: `queued` again, or `dead`.
    pub job: Job,
    /// Whether it went back to the queue (its nodes were freed).
    pub requeued: bool,
    /// Nodes that struck out and were marked down.
    pub marked_down: Vec<NodeName>,
}

impl Store {
    /// Records a failed prepare of running job `job_id`: each of `failed` (the job's nodes
    /// whose prepare failed; all of them when empty) gets a strike and is marked down at
    /// the policy's maximum; the job goes back to the queue with its nodes freed, or ends
    /// dead once it has been requeued for this as often as the policy allows.
    pub fn prepare_failed(
        &self,
        job_id: JobId,
        failed: &[NodeName],
        failure: &str,
        policy: &StrikePolicy,
        now: UnixMillis,
    ) -> Result<PrepareFailed, DbError> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        write_tx!(conn, |c| {
            let job = c.load_job(job_id)?;
            if job.status != JobStatus::Running {
                return Err(DbError::NotRunning {
                    job_id,
                    status: job.status,
                });
            }
            let held: Vec<String> = nodes::table
                .filter(nodes::locked_job_id.eq(job_id.0))
                .select(nodes::name)
                .load(c)?;
            // Only the job's own nodes take strikes.
            let struck: Vec<String> = if failed.is_empty() {
                held
            } else {
                failed
                    .iter()
                    .map(ToString::to_string)
                    .filter(|name| held.contains(name))
                    .collect()
            };
            diesel::update(nodes::table.filter(nodes::name.eq_any(&struck)))
                .set((
                    nodes::prepare_strikes.eq(nodes::prepare_strikes + 1),
                    nodes::updated_at.eq(now.0),
                ))
                .execute(c)?;
            let strikes: Vec<(String, i32)> = nodes::table
                .filter(nodes::name.eq_any(&struck))
                .select((nodes::name, nodes::prepare_strikes))
                .load(c)?;
            let mut marked_down = Vec::new();
            for (name, count) in strikes {
                let count = u32::try_from(count).unwrap_or(0);
                if let Some(reason) = strike_out(count, failure, policy) {
                    diesel::update(nodes::table.filter(nodes::name.eq(&name)))
                        .set((nodes::up.eq(false), nodes::description.eq(&reason)))
                        .execute(c)?;
                    marked_down
                        .push(NodeName::parse(&name).map_err(|e| DbError::Corrupt(e.to_string()))?);
                }
            }
            let retries: i32 = jobs::table
                .filter(jobs::id.eq(job_id.0))
                .select(jobs::prepare_retries)
                .first(c)?;
            let outcome =
                after_prepare_failure(u32::try_from(retries).unwrap_or(0), failure, policy);
            let requeued = match &outcome {
                AfterPrepareFailure::Requeue { reason, .. } => {
                    if !c.move_job(&job, JobStatus::Queued, reason, now)? {
                        return Err(DbError::Conflict { job_id });
                    }
                    c.free_nodes_of_job(job_id, now)?;
                    // No copy is on the tube any more: the enqueue loop puts a new one.
                    diesel::update(jobs::table.filter(jobs::id.eq(job_id.0)))
                        .set((
                            jobs::prepare_retries.eq(jobs::prepare_retries + 1),
                            jobs::beanstalk_id.eq(None::<i64>),
                            jobs::queue_priority.eq(None::<i32>),
                            jobs::dispatcher.eq(None::<String>),
                            // The supervisor that failed is no longer the job's.
                            jobs::supervisor_pid.eq(None::<i64>),
                            jobs::supervisor_host.eq(None::<String>),
                            jobs::started_at.eq(None::<i64>),
                        ))
                        .execute(c)?;
                    true
                }
                AfterPrepareFailure::Dead { reason } => {
                    if !c.move_job(&job, JobStatus::Dead, reason, now)? {
                        return Err(DbError::Conflict { job_id });
                    }
                    false
                }
            };
            Ok(PrepareFailed {
                job: c.load_job(job_id)?,
                requeued,
                marked_down,
            })
        })
    }

    /// A successful prepare clears the strikes of the job's nodes: strikes count
    /// consecutive failures only.
    pub fn prepare_succeeded(&self, job_id: JobId, now: UnixMillis) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        crate::with_conn!(&mut *conn, |c| diesel::update(
            nodes::table
                .filter(nodes::locked_job_id.eq(job_id.0))
                .filter(nodes::prepare_strikes.gt(0))
        )
        .set((nodes::prepare_strikes.eq(0), nodes::updated_at.eq(now.0)))
        .execute(c))?;
        Ok(())
    }
}
