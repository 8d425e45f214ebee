//! The look-ahead window: jobs reserved on our beanstalkd connection and claimed
//! (`waiting`), which the policy plans over. Pure: every rule takes the time it needs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cuttle_core::dispatch::PlanState;
use cuttle_core::{Job, JobId, Priority};
use cuttle_policy::{PolicyConfig, QueuedJob, Snapshot};
use tokio::time::Instant;

/// How often a reservation waiting for nodes is touched when its time-to-run is not
/// known (cuttle-api's shortest `job_ttr` is 10 s).
pub const TOUCH_EVERY: Duration = Duration::from_secs(3);

/// The shortest interval between two touches of one reservation.
pub const TOUCH_AT_MOST_EVERY: Duration = Duration::from_millis(500);

/// How often to touch a reservation whose copy has `time_to_run`: three times per
/// time-to-run, so a touch can be late by two thirds of it before beanstalkd takes the job
/// back; [`TOUCH_EVERY`] when it is unknown. Touching every reservation every 3 s cost a
/// full window of 1000 jobs 333 touches a second on the connection that also reserves;
/// at cuttle-api's default time-to-run (300 s) it is 10.
pub fn touch_interval(time_to_run: Option<Duration>) -> Duration {
    time_to_run.map_or(TOUCH_EVERY, |ttr| (ttr / 3).max(TOUCH_AT_MOST_EVERY))
}

/// A job in the window.
#[derive(Debug, Clone)]
pub struct Held {
    pub beanstalk_id: u64,
    /// The body it was reserved with: proof that an id still names this copy.
    pub body: Vec<u8>,
    pub job: Job,
    /// The priority its beanstalkd copy has.
    pub queue_priority: u32,
    pub touched: Instant,
    /// How often its reservation is touched ([`touch_interval`]).
    pub touch_every: Duration,
    /// When it was reserved into the window: its lock wait starts here.
    pub reserved_at: Instant,
}

impl Held {
    pub fn new(
        beanstalk_id: u64,
        body: Vec<u8>,
        job: Job,
        queue_priority: u32,
        touch_every: Duration,
        now: Instant,
    ) -> Held {
        Held {
            beanstalk_id,
            body,
            job,
            queue_priority,
            touched: now,
            touch_every,
            reserved_at: now,
        }
    }

    /// The policy's id for it.
    pub fn id(&self) -> u64 {
        policy_id(self.job.id)
    }

    /// The job as the policy orders it (untimed: ordering needs no estimate).
    pub fn queued(&self) -> QueuedJob {
        QueuedJob::new(
            self.id(),
            self.job.spec.priority.get(),
            self.job.spec.n_nodes.get(),
            self.job.created_at.0,
        )
    }

    /// Its priority now, aging included: what its copy should carry.
    pub fn effective_priority(&self, now_ms: i64, policy: &PolicyConfig) -> u32 {
        cuttle_policy::effective_priority(&self.queued(), now_ms, policy.aging)
    }
}

/// The policy's id of a job (job ids are positive).
pub fn policy_id(job: JobId) -> u64 {
    u64::try_from(job.0).unwrap_or(0)
}

/// The window: at most `capacity` jobs, never one job twice.
#[derive(Debug)]
pub struct Window {
    held: Vec<Held>,
    capacity: usize,
}

impl Window {
    pub fn new(capacity: usize) -> Window {
        Window {
            held: Vec::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.held.len() >= self.capacity
    }

    pub fn ids(&self) -> Vec<JobId> {
        self.held.iter().map(|held| held.job.id).collect()
    }

    pub fn get(&self, job: u64) -> Option<&Held> {
        self.held.iter().find(|held| held.id() == job)
    }

    /// Adds a claimed job. A second copy of a job already held (put again after
    /// beanstalkd lost the first) replaces it: the older one is returned, to go back. The
    /// held copy itself claimed again (beanstalkd restarted from its binlog, its
    /// reservations were ready again, and it was reserved anew) replaces its entry and
    /// nothing is returned: giving it back would release the reservation just made.
    pub fn add(&mut self, held: Held) -> Option<Held> {
        let older = self.remove(held.id());
        let copy = held.beanstalk_id;
        self.held.push(held);
        older.filter(|older| older.beanstalk_id != copy)
    }

    pub fn remove(&mut self, job: u64) -> Option<Held> {
        let index = self.held.iter().position(|held| held.id() == job)?;
        Some(self.held.swap_remove(index))
    }

    pub fn drain(&mut self) -> Vec<Held> {
        std::mem::take(&mut self.held)
    }

    /// Makes room for a ready job of `ready_priority` in a full window: removes and
    /// returns the window's least urgent job in the policy's order, if that one is less
    /// urgent than the ready job.
    pub fn make_room_for(
        &mut self,
        ready_priority: u32,
        now_ms: i64,
        policy: &PolicyConfig,
    ) -> Option<Held> {
        let queued: Vec<QueuedJob> = self.held.iter().map(Held::queued).collect();
        let worst = cuttle_policy::ordered(&queued, now_ms, policy).last()?.id;
        let worst_priority = self.get(worst)?.effective_priority(now_ms, policy);
        if ready_priority >= worst_priority {
            return None;
        }
        self.remove(worst)
    }

    /// The reservations due a touch at `now` (marked touched): their beanstalkd ids.
    pub fn due_for_touch(&mut self, now: Instant) -> Vec<u64> {
        self.held
            .iter_mut()
            .filter(|held| now.duration_since(held.touched) >= held.touch_every)
            .map(|held| {
                held.touched = now;
                held.beanstalk_id
            })
            .collect()
    }

    /// Brings the window in line with cuttle-api's plan state: jobs no longer waiting
    /// (killed, reaped) leave and are returned, to go back to beanstalkd; the others take
    /// cuttle-api's base priority (a re-prioritization).
    pub fn sync(&mut self, state: &PlanState) -> Vec<Held> {
        let fresh: HashMap<JobId, u32> = state
            .jobs
            .iter()
            .map(|job| (job.job_id, job.priority))
            .collect();
        let (kept, gone): (Vec<Held>, Vec<Held>) = self
            .drain()
            .into_iter()
            .partition(|held| fresh.contains_key(&held.job.id));
        self.held = kept;
        for held in &mut self.held {
            if let Some(priority) = fresh
                .get(&held.job.id)
                .and_then(|&p| Priority::new(p.into()).ok())
            {
                held.job.spec.priority = priority;
            }
        }
        gone
    }

    /// Jobs whose effective priority moved away from their copy's (aging), removed: each
    /// goes back to beanstalkd with its new priority and is reserved again in its place.
    pub fn take_aged(&mut self, now_ms: i64, policy: &PolicyConfig) -> Vec<Held> {
        if policy.aging.is_none() {
            return Vec::new();
        }
        let aged: HashSet<u64> = self
            .held
            .iter()
            .filter(|held| held.effective_priority(now_ms, policy) != held.queue_priority)
            .map(Held::id)
            .collect();
        aged.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The policy's snapshot: the lab from `state`, the window's jobs timed with
    /// cuttle-api's estimates (`default_limit_ms` for any it did not send).
    pub fn snapshot(&self, state: &PlanState, now_ms: i64, default_limit_ms: i64) -> Snapshot {
        let timed: HashMap<JobId, (i64, i64)> = state
            .jobs
            .iter()
            .map(|job| (job.job_id, (job.estimate_ms, job.time_limit_ms)))
            .collect();
        Snapshot {
            now: now_ms,
            total_nodes: state.total_nodes,
            free_nodes: state.free_nodes,
            queued: self
                .held
                .iter()
                .map(|held| {
                    let (estimate_ms, limit_ms) = timed
                        .get(&held.job.id)
                        .copied()
                        .unwrap_or((default_limit_ms, default_limit_ms));
                    held.queued().timed(estimate_ms, limit_ms)
                })
                .collect(),
            running: state
                .running
                .iter()
                .map(|job| {
                    cuttle_policy::running_job(
                        policy_id(job.job_id),
                        job.n_nodes,
                        job.started_at.map(|at| at.0),
                        job.estimate_ms,
                        job.time_limit_ms,
                        job.ended,
                        now_ms,
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_is_touched_three_times_per_time_to_run() {
        assert_eq!(
            touch_interval(Some(Duration::from_secs(300))),
            Duration::from_secs(100)
        );
        assert_eq!(
            touch_interval(Some(Duration::from_secs(10))),
            Duration::from_secs(10) / 3
        );
        // beanstalkd's shortest time-to-run is 1 s: touched every half second, no faster.
        assert_eq!(
            touch_interval(Some(Duration::from_secs(1))),
            TOUCH_AT_MOST_EVERY
        );
        assert_eq!(touch_interval(None), TOUCH_EVERY);
    }
}
