//! The rules of dispatching, as pure decisions: what a dispatcher does with a job it has
//! reserved, who holds a tube's lease, what the reaper does with a job whose supervisor or
//! dispatcher went quiet, and how a job's nodes are given back.
//!
//! cuttle-api applies these inside its database transactions and the daemons act on the
//! answers; none of them decides anything here on its own. Nothing here reads the clock:
//! every rule takes `now`.

use serde::{Deserialize, Serialize};

use crate::{Job, JobStatus, MachineType, UnixMillis};

/// A supervisor process: where it runs, so an operator can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorRef {
    pub host: String,
    pub pid: u32,
}

/// What a dispatcher must do with a job it has reserved from beanstalkd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Lock its nodes and start it; the job is now `waiting`, claimed by this dispatcher.
    Start,
    /// Delete this beanstalkd copy: the job has ended, already runs, or this copy is stale.
    Discard { reason: String },
    /// Bury this copy: the job can never run here. When `dead` is true the job is also
    /// marked `dead` with the reason, so it still ends in exactly one terminal state.
    Bury { reason: String, dead: bool },
    /// The job expired before it could start (see [`crate::expiry`]): it ends `dead` with
    /// the reason, and this copy is deleted.
    Expired { reason: String },
}

/// Decides what happens to beanstalkd job `beanstalk_id`, reserved from `tube`, which names
/// cuttle job `job`. `nodes_of_type` is how many nodes (up or down) the tube's machine type
/// has. The caller holds the tube's lease, so a `waiting` job claimed by anyone else is a
/// leftover of a dispatcher that lost the lease and is taken over.
pub fn decide_claim(
    job: &Job,
    tube: &MachineType,
    beanstalk_id: u64,
    nodes_of_type: u32,
    expired: Option<String>,
) -> Claim {
    if job.status.is_terminal() {
        return Claim::Discard {
            reason: format!("job {} has already ended ({})", job.id, job.status),
        };
    }
    match job.status {
        JobStatus::Running => {
            return Claim::Discard {
                reason: format!("job {} is already running", job.id),
            };
        }
        JobStatus::WaitingForBuild => {
            return Claim::Discard {
                reason: format!(
                    "job {} waits for its build; cuttle-api puts it on the tube when the build is ready",
                    job.id
                ),
            };
        }
        _ => {}
    }
    if let Some(live) = job.beanstalk_id
        && live != beanstalk_id
    {
        return Claim::Discard {
            reason: format!(
                "stale copy of job {}: its live beanstalkd copy is {live}",
                job.id
            ),
        };
    }
    if &job.spec.machine_type != tube {
        return Claim::Bury {
            reason: format!(
                "job {} is for machine type {} but was put on tube {tube}",
                job.id, job.spec.machine_type
            ),
            dead: false,
        };
    }
    let needed = job.spec.n_nodes.get();
    if needed > nodes_of_type {
        return Claim::Bury {
            reason: format!(
                "job {} needs {needed} nodes but machine type {tube} has {nodes_of_type}; add nodes and schedule it again",
                job.id
            ),
            dead: true,
        };
    }
    if let Some(reason) = expired {
        return Claim::Expired { reason };
    }
    Claim::Start
}

/// A tube's lease as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_at: UnixMillis,
}

impl Lease {
    pub fn is_live(&self, now: UnixMillis) -> bool {
        self.expires_at > now
    }
}

/// Who holds a tube's lease, with where it runs, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// A tube (one per machine type): whether it is paused and who dispatches from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tube {
    pub machine_type: MachineType,
    /// A paused tube gets no new dispatches; running jobs are not touched.
    pub paused: bool,
    pub paused_by: Option<String>,
    pub paused_at: Option<UnixMillis>,
    /// The lease as last written; check [`LeaseInfo::expires_at`] against now for liveness.
    pub lease: Option<LeaseInfo>,
}

impl Tube {
    /// The live lease, if any.
    pub fn live_lease(&self, now: UnixMillis) -> Option<&LeaseInfo> {
        self.lease.as_ref().filter(|lease| lease.expires_at > now)
    }

    pub fn lease_rule(&self) -> Option<Lease> {
        self.lease.as_ref().map(|lease| Lease {
            holder: lease.holder.clone(),
            expires_at: lease.expires_at,
        })
    }
}

/// Whether `holder` may take or renew the lease: it is free, expired, or already theirs.
/// There is never more than one live holder, so a standby waits until the active
/// dispatcher stops renewing.
pub fn may_take_lease(current: Option<&Lease>, holder: &str, now: UnixMillis) -> bool {
    match current {
        None => true,
        Some(lease) => lease.holder == holder || !lease.is_live(now),
    }
}

/// What the reaper does with one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reap {
    /// Leave it alone.
    Keep,
    /// A running job whose supervisor stopped heartbeating: mark it `dead` with the reason.
    /// Its nodes are released by the cleanup that follows every ended job.
    SupervisorLost { reason: String },
    /// A `waiting` job whose dispatcher lost its lease before recording the dispatch: give
    /// its nodes back and return it to `queued`; its beanstalkd copy comes back to ready on
    /// its own (connection closed or TTR expired).
    DispatcherLost { reason: String },
}

/// The reaper's rule for one job. `grace_ms` is how long a supervisor may go without a
/// heartbeat; `tube_lease` is the lease of the job's tube, if any.
pub fn decide_reap(job: &Job, tube_lease: Option<&Lease>, grace_ms: i64, now: UnixMillis) -> Reap {
    match job.status {
        JobStatus::Running => {
            let last = job.heartbeat_at.unwrap_or(job.updated_at);
            let silent_ms = now.0 - last.0;
            if silent_ms <= grace_ms {
                return Reap::Keep;
            }
            let whom = job
                .supervisor
                .as_ref()
                .map(|s| format!(" (pid {} on {})", s.pid, s.host))
                .unwrap_or_default();
            Reap::SupervisorLost {
                reason: format!(
                    "supervisor lost: no heartbeat from its supervisor{whom} for {} s",
                    silent_ms / 1000
                ),
            }
        }
        JobStatus::Waiting => {
            let claimed_by = job.dispatcher.as_deref().unwrap_or("");
            let alive =
                tube_lease.is_some_and(|lease| lease.holder == claimed_by && lease.is_live(now));
            if alive {
                Reap::Keep
            } else {
                Reap::DispatcherLost {
                    reason: format!(
                        "dispatcher {claimed_by} lost its lease before starting the job; back in the queue"
                    ),
                }
            }
        }
        _ => Reap::Keep,
    }
}

/// How a job's nodes are given back once it ends: straight back after a pass, cleaned
/// (nuked) first after anything else, because a failed or interrupted job may have left
/// them in any state.
pub fn needs_nuke(final_status: JobStatus) -> bool {
    final_status != JobStatus::Pass
}

/// How failed prepares (reimages) are charged: to the nodes, as strikes, and not to the
/// job, which goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrikePolicy {
    /// Consecutive failed prepares after which a node is marked down.
    pub max_prepare_strikes: u32,
    /// How many times one job goes back to the queue after a failed prepare before it
    /// ends dead (a job whose prepare fails on every node is the job's problem).
    pub max_prepare_retries: u32,
}

impl Default for StrikePolicy {
    fn default() -> Self {
        StrikePolicy {
            max_prepare_strikes: 3,
            max_prepare_retries: 3,
        }
    }
}

/// What becomes of a job whose prepare failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPrepareFailure {
    /// Back to the queue, nodes freed; `retry` counts from 1.
    Requeue { retry: u32, reason: String },
    /// It ends dead with the reason; its supervisor nukes and releases its nodes.
    Dead { reason: String },
}

/// Decides a failed prepare's outcome for a job that has been requeued `retries_so_far`
/// times for this already. `failure` says which nodes and why.
pub fn after_prepare_failure(
    retries_so_far: u32,
    failure: &str,
    policy: &StrikePolicy,
) -> AfterPrepareFailure {
    if retries_so_far < policy.max_prepare_retries {
        let retry = retries_so_far + 1;
        AfterPrepareFailure::Requeue {
            retry,
            reason: format!(
                "prepare (reimage) failed: {failure}; back in the queue (retry {retry} of {})",
                policy.max_prepare_retries
            ),
        }
    } else {
        AfterPrepareFailure::Dead {
            reason: format!(
                "prepare (reimage) failed {} times in a row, the last: {failure}",
                retries_so_far + 1
            ),
        }
    }
}

/// Whether a node with `strikes` consecutive failed prepares (this one included) is
/// taken out of service, and the down reason.
pub fn strike_out(strikes: u32, failure: &str, policy: &StrikePolicy) -> Option<String> {
    (strikes >= policy.max_prepare_strikes)
        .then(|| format!("prepare (reimage) failed {strikes} times in a row; the last: {failure}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_prepare_requeues_a_bounded_number_of_times() {
        let policy = StrikePolicy::default();
        for done in 0..3 {
            let outcome = after_prepare_failure(done, "n1: exit 1", &policy);
            assert!(
                matches!(&outcome, AfterPrepareFailure::Requeue { retry, reason } if *retry == done + 1 && reason.contains("n1: exit 1")),
                "{outcome:?}"
            );
        }
        let AfterPrepareFailure::Dead { reason } = after_prepare_failure(3, "n1: exit 1", &policy)
        else {
            panic!("the fourth failure ends the job");
        };
        assert!(reason.contains("4 times"), "{reason}");
    }

    #[test]
    fn the_third_consecutive_strike_takes_a_node_down() {
        let policy = StrikePolicy::default();
        assert_eq!(strike_out(2, "boom", &policy), None);
        assert!(
            strike_out(3, "boom", &policy)
                .unwrap()
                .contains("3 times in a row; the last: boom")
        );
    }
    use crate::{JobId, JobSpec, NodeCount, Owner, Priority, RunName};

    fn job(status: JobStatus) -> Job {
        Job {
            id: JobId(7),
            run_name: RunName::parse("run").unwrap(),
            owner: Owner::parse("alice").unwrap(),
            spec: JobSpec {
                description: "d".into(),
                machine_type: MachineType::parse("smithi").unwrap(),
                priority: Priority::default(),
                n_nodes: NodeCount::new(2).unwrap(),
                time_limit: None,
                os_type: String::new(),
                os_version: String::new(),
            },
            status,
            reason: None,
            beanstalk_id: Some(40),
            config_yaml: String::new(),
            created_at: UnixMillis(0),
            updated_at: UnixMillis(1_000),
            heartbeat_at: None,
            dispatcher: None,
            supervisor: None,
            started_at: None,
        }
    }

    fn smithi() -> MachineType {
        MachineType::parse("smithi").unwrap()
    }

    #[test]
    fn a_queued_job_on_its_tube_starts() {
        assert_eq!(
            decide_claim(&job(JobStatus::Queued), &smithi(), 40, 10, None),
            Claim::Start
        );
    }

    #[test]
    fn ended_running_and_stale_copies_are_discarded() {
        for status in [JobStatus::Pass, JobStatus::Killed, JobStatus::Running] {
            assert!(matches!(
                decide_claim(&job(status), &smithi(), 40, 10, None),
                Claim::Discard { .. }
            ));
        }
        let Claim::Discard { reason } =
            decide_claim(&job(JobStatus::Queued), &smithi(), 39, 10, None)
        else {
            panic!("a copy that is not the live one must be discarded");
        };
        assert!(reason.contains("stale copy"), "{reason}");
    }

    #[test]
    fn a_job_too_big_for_its_machine_type_is_buried_dead() {
        // An expired job ends instead of starting; one that cannot start anyway is
        // handled as before.
        assert_eq!(
            decide_claim(
                &job(JobStatus::Queued),
                &smithi(),
                40,
                10,
                Some("expired: x".into())
            ),
            Claim::Expired {
                reason: "expired: x".into()
            }
        );
        let Claim::Bury { reason, dead } =
            decide_claim(&job(JobStatus::Queued), &smithi(), 40, 1, None)
        else {
            panic!("must bury");
        };
        assert!(dead);
        assert!(
            reason.contains("needs 2 nodes") && reason.contains("has 1"),
            "{reason}"
        );
    }

    #[test]
    fn a_job_on_the_wrong_tube_is_buried_but_not_killed() {
        let other = MachineType::parse("mira").unwrap();
        assert!(matches!(
            decide_claim(&job(JobStatus::Queued), &other, 40, 10, None),
            Claim::Bury { dead: false, .. }
        ));
    }

    #[test]
    fn a_lease_is_taken_only_when_free_expired_or_ours() {
        let lease = Lease {
            holder: "a".into(),
            expires_at: UnixMillis(100),
        };
        assert!(may_take_lease(None, "b", UnixMillis(50)));
        assert!(!may_take_lease(Some(&lease), "b", UnixMillis(50)));
        assert!(may_take_lease(Some(&lease), "a", UnixMillis(50)));
        assert!(may_take_lease(Some(&lease), "b", UnixMillis(100)));
    }

    #[test]
    fn a_silent_supervisor_is_lost_only_after_the_grace() {
        let mut running = job(JobStatus::Running);
        running.heartbeat_at = Some(UnixMillis(10_000));
        assert_eq!(
            decide_reap(&running, None, 5_000, UnixMillis(15_000)),
            Reap::Keep
        );
        let Reap::SupervisorLost { reason } =
            decide_reap(&running, None, 5_000, UnixMillis(15_001))
        else {
            panic!("past the grace the supervisor is lost");
        };
        assert!(reason.starts_with("supervisor lost"), "{reason}");
    }

    #[test]
    fn a_waiting_job_is_requeued_when_its_dispatcher_lost_the_lease() {
        let mut waiting = job(JobStatus::Waiting);
        waiting.dispatcher = Some("d1".into());
        let live = Lease {
            holder: "d1".into(),
            expires_at: UnixMillis(2_000),
        };
        assert_eq!(
            decide_reap(&waiting, Some(&live), 0, UnixMillis(1_000)),
            Reap::Keep
        );
        assert!(matches!(
            decide_reap(&waiting, Some(&live), 0, UnixMillis(2_000)),
            Reap::DispatcherLost { .. }
        ));
        let taken = Lease {
            holder: "d2".into(),
            expires_at: UnixMillis(9_000),
        };
        assert!(matches!(
            decide_reap(&waiting, Some(&taken), 0, UnixMillis(1_000)),
            Reap::DispatcherLost { .. }
        ));
    }

    #[test]
    fn only_a_pass_skips_the_nuke() {
        assert!(!needs_nuke(JobStatus::Pass));
        for status in [JobStatus::Fail, JobStatus::Dead, JobStatus::Killed] {
            assert!(needs_nuke(status));
        }
    }
}

/// A job as a dispatcher's policy plans it, from cuttle-api's plan state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanJob {
    pub job_id: crate::JobId,
    /// Its base priority, before aging.
    pub priority: u32,
    /// The nodes it needs (a releasing job: the nodes it still holds).
    pub n_nodes: u32,
    pub submitted_at: UnixMillis,
    /// How long it runs at most as far as cuttle knows: its time limit, narrowed by the
    /// runtimes of recent jobs with the same description.
    pub estimate_ms: i64,
    /// Its time limit, or the lab's default.
    pub time_limit_ms: i64,
    /// When it started (running jobs only).
    pub started_at: Option<UnixMillis>,
    /// It has ended but its nodes are not given back yet.
    pub ended: bool,
}

/// The lab and the jobs, for one planning round of one machine type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanState {
    /// Every node of the machine type, up or down.
    pub total_nodes: u32,
    /// Nodes up and not locked.
    pub free_nodes: u32,
    /// Jobs holding nodes now: running, or ended and releasing.
    pub running: Vec<PlanJob>,
    /// The asked-for window jobs still waiting and claimed by the asker.
    pub jobs: Vec<PlanJob>,
}

/// cuttle-api's answer to a dispatcher's claim of a reserved copy, as the dispatcher acts
/// on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The job is `waiting`, claimed by the asker: plan it.
    Start(Box<Job>),
    /// Delete the copy.
    Discard {
        job_id: Option<crate::JobId>,
        reason: String,
    },
    /// Bury the copy (at the job's priority, when there is a job).
    Bury {
        job_id: Option<crate::JobId>,
        priority: u32,
        reason: String,
    },
}

/// A job with the names of the nodes locked for it: what a supervisor works on, and what
/// a dispatcher is handed for an ended job whose nodes were never given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOnNodes {
    pub job: Job,
    pub nodes: Vec<String>,
}
