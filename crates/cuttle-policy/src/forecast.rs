//! Start-time estimates: when each waiting job will start if the running jobs end as
//! estimated and nothing else is queued meanwhile, as Slurm's `squeue --start` tells.
//!
//! The forecast replays [`plan`] itself forward in time: plan at `now`, start what it
//! starts, jump to the next instant a running (or just started) job is expected to end,
//! give its nodes back, plan again. So an estimate is exactly what the dispatcher will do
//! when the lab behaves as estimated: aging, backfill, bookings and burials included.
//! Estimates move when the lab does not (a job ends early or late, a node goes down, a
//! more urgent job arrives), which is why each comes with why the job waits.

use std::collections::HashMap;

use crate::{Decision, PolicyConfig, QueuedJob, RunningJob, Snapshot, plan};

/// Why a waiting job has not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// It fits now: the dispatcher starts it on its next round.
    StartsNow,
    /// It is first in order and waits for running jobs to give nodes back.
    NodesBusy,
    /// It needs more nodes than are up: it waits for down nodes to come back.
    NodesDown { needed: u32, up: u32 },
    /// Job `ahead` is before it in dispatch order and waits too (the head of the line).
    Behind { ahead: u64 },
    /// It can never run on this machine type (it is buried on the next round).
    NeverFits,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::StartsNow => write!(f, "starts on the next round"),
            Wait::NodesBusy => write!(f, "nodes busy"),
            Wait::NodesDown { needed, up } => {
                write!(f, "nodes down (needs {needed}, {up} up)")
            }
            Wait::Behind { ahead } => write!(f, "behind job {ahead}"),
            Wait::NeverFits => write!(f, "never fits this machine type"),
        }
    }
}

/// One waiting job's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forecast {
    pub job: u64,
    /// Its place in dispatch order now (0: next).
    pub position: usize,
    /// When it is expected to start (Unix milliseconds); `None` when nothing the lab can
    /// see now lets it start (nodes down or held by people, or past the horizon).
    pub start: Option<i64>,
    /// `start` is only an upper bound: a job it waits for has no runtime history, so it
    /// was timed at its time limit, and jobs usually end well before theirs.
    pub at_latest: bool,
    pub wait: Wait,
}

/// At most this many planning rounds are replayed: every round starts a job or ends one,
/// so a queue of a few thousand jobs is forecast whole well within it.
const MAX_ROUNDS: usize = 20_000;

/// What a running job is expected to do, from what the lab records: it ends at its start
/// plus its estimate; once past that, at its time limit (never before `now`); an ended
/// job whose nodes are still being given back frees them `now`.
pub fn running_job(
    id: u64,
    n_nodes: u32,
    started_at: Option<i64>,
    estimate_ms: i64,
    time_limit_ms: i64,
    ended: bool,
    now: i64,
) -> RunningJob {
    let started = started_at.unwrap_or(now);
    let expected = started.saturating_add(estimate_ms);
    let ends_by = if ended {
        now
    } else if expected > now {
        expected
    } else {
        started.saturating_add(time_limit_ms).max(now)
    };
    RunningJob {
        id,
        n_nodes,
        ends_by,
        past_estimate: !ended && expected <= now,
    }
}

/// How long jobs will most likely take, where it differs from what the policy plans with
/// (its estimates must not be short, so they are padded; a forecast should be close).
/// Jobs missing here have no history: they take what the snapshot says (their time
/// limit), and every start timed after one of them ends is only an upper bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Likely {
    /// A queued job's likely runtime (ms), by job id.
    pub runtime_ms: HashMap<u64, i64>,
    /// A running job's likely end (Unix ms), by job id.
    pub ends_at: HashMap<u64, i64>,
}

/// Forecasts every queued job of `snapshot`, in dispatch order. `up_nodes` is how many
/// nodes of the machine type are up (locked or not): a job needing more waits for down
/// nodes, whatever else happens. The policy decides with the snapshot's estimates, as the
/// dispatcher will; jobs end at their `likely` times, as the lab will, and the dispatcher
/// sees their nodes come back then.
pub fn forecast(
    snapshot: &Snapshot,
    config: &PolicyConfig,
    up_nodes: u32,
    likely: &Likely,
) -> Vec<Forecast> {
    let order: Vec<QueuedJob> = crate::ordered(&snapshot.queued, snapshot.now, config)
        .into_iter()
        .cloned()
        .collect();
    let mut starts: HashMap<u64, i64> = HashMap::new();
    let mut buried: std::collections::HashSet<u64> = std::collections::HashSet::new();
    // The queue in dispatch order, kept in order as jobs leave it: `plan` sorts it every
    // round, and sorting sorted input is one comparison per job.
    let mut lab = Snapshot {
        queued: order.clone(),
        ..snapshot.clone()
    };
    let trust = !snapshot.running.iter().any(|job| job.past_estimate);
    // Jobs whose end is a guess (no history), and whether a guessed end has passed.
    let mut guessed: std::collections::HashSet<u64> = snapshot
        .running
        .iter()
        .map(|job| job.id)
        .filter(|id| !likely.ends_at.contains_key(id))
        .collect();
    let mut uncertain = false;
    let mut at_latest: std::collections::HashSet<u64> = std::collections::HashSet::new();
    // When each running job really ends (the policy keeps planning with `ends_by`).
    let mut ends: HashMap<u64, i64> = snapshot
        .running
        .iter()
        .map(|job| {
            let at = likely.ends_at.get(&job.id).copied().unwrap_or(job.ends_by);
            (job.id, at.max(snapshot.now))
        })
        .collect();
    for round in 0..MAX_ROUNDS {
        if round > 0 {
            // The next instant a job gives its nodes back; nothing else changes the plan.
            let Some(next) = lab.running.iter().map(|job| ends[&job.id]).min() else {
                break;
            };
            lab.now = next.max(lab.now);
            let now = lab.now;
            let freed: u32 = lab
                .running
                .iter()
                .filter(|job| ends[&job.id] <= now)
                .map(|job| job.n_nodes)
                .sum();
            uncertain |= lab
                .running
                .iter()
                .any(|job| ends[&job.id] <= now && guessed.contains(&job.id));
            lab.running.retain(|job| ends[&job.id] > now);
            lab.free_nodes += freed;
            // A job still running past what the policy expected: as the dispatcher does,
            // expect it at its time limit now and stop trusting estimates.
            for job in &mut lab.running {
                if job.ends_by <= now && !job.past_estimate {
                    job.past_estimate = true;
                    job.ends_by = ends[&job.id];
                }
            }
        }
        let mut changed = false;
        for decision in plan(&lab, config) {
            match decision {
                Decision::Start { job, .. } => {
                    let Some(index) = lab.queued.iter().position(|q| q.id == job) else {
                        continue;
                    };
                    let queued = lab.queued.remove(index);
                    let trust = trust && !lab.running.iter().any(|job| job.past_estimate);
                    let took = if trust {
                        queued.estimate_ms.min(queued.time_limit_ms)
                    } else {
                        queued.time_limit_ms
                    };
                    let runs = match likely.runtime_ms.get(&job) {
                        Some(&runs) => runs,
                        None => {
                            guessed.insert(job);
                            took
                        }
                    }
                    .min(queued.time_limit_ms);
                    starts.insert(job, lab.now);
                    if uncertain {
                        at_latest.insert(job);
                    }
                    lab.free_nodes = lab.free_nodes.saturating_sub(queued.n_nodes);
                    // A zero-length job still holds its nodes for an instant.
                    ends.insert(job, lab.now.saturating_add(runs.max(1)));
                    lab.running.push(RunningJob {
                        id: job,
                        n_nodes: queued.n_nodes,
                        ends_by: lab.now.saturating_add(took.max(1)),
                        past_estimate: false,
                    });
                    changed = true;
                }
                Decision::Bury { job, .. } => {
                    lab.queued.retain(|q| q.id != job);
                    buried.insert(job);
                    changed = true;
                }
                Decision::Reserve { .. } => {}
            }
        }
        if lab.queued.is_empty() || (!changed && lab.running.is_empty()) {
            break;
        }
    }
    let head = order
        .iter()
        .find(|job| starts.get(&job.id) != Some(&snapshot.now) && !buried.contains(&job.id))
        .map(|job| job.id);
    order
        .iter()
        .enumerate()
        .map(|(position, job)| {
            let start = starts.get(&job.id).copied();
            let wait = if buried.contains(&job.id) {
                Wait::NeverFits
            } else if job.n_nodes > up_nodes {
                Wait::NodesDown {
                    needed: job.n_nodes,
                    up: up_nodes,
                }
            } else if start == Some(snapshot.now) {
                Wait::StartsNow
            } else if head == Some(job.id) {
                Wait::NodesBusy
            } else {
                match head {
                    Some(ahead) => Wait::Behind { ahead },
                    None => Wait::NodesBusy,
                }
            };
            Forecast {
                job: job.id,
                position,
                start: start.filter(|_| !matches!(wait, Wait::NodesDown { .. })),
                at_latest: at_latest.contains(&job.id),
                wait,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn queued(id: u64, n_nodes: u32, submitted_at: i64, estimate_ms: i64) -> QueuedJob {
        QueuedJob {
            id,
            priority: 100,
            n_nodes,
            submitted_at,
            estimate_ms,
            time_limit_ms: estimate_ms,
        }
    }

    fn running(id: u64, n_nodes: u32, ends_by: i64) -> RunningJob {
        RunningJob {
            id,
            n_nodes,
            ends_by,
            past_estimate: false,
        }
    }

    fn by_job(forecasts: &[Forecast]) -> HashMap<u64, (Option<i64>, Wait)> {
        forecasts
            .iter()
            .map(|f| (f.job, (f.start, f.wait.clone())))
            .collect()
    }

    #[test]
    fn jobs_start_as_the_running_ones_end_in_dispatch_order() {
        // 4 nodes: a 3-node job runs until minute 10, one node is free.
        let snapshot = Snapshot {
            now: 0,
            total_nodes: 4,
            free_nodes: 1,
            // An hour apart: the 5-minute jobs do not pass the 20-minute one on their
            // limits (shortest_first_below_the_top) while they are that much younger.
            queued: vec![
                queued(1, 2, -180 * MIN, 20 * MIN), // the head: waits for the 3-node job
                queued(2, 4, -120 * MIN, 5 * MIN),  // after job 1 ends
                queued(3, 1, -60 * MIN, 5 * MIN),   // backfills into the free node now
            ],
            running: vec![running(9, 3, 10 * MIN)],
        };
        let forecasts = forecast(
            &snapshot,
            &crate::PolicyConfig::default(),
            4,
            &Likely::default(),
        );
        let got = by_job(&forecasts);
        assert_eq!(got[&1], (Some(10 * MIN), Wait::NodesBusy));
        assert_eq!(got[&3], (Some(0), Wait::StartsNow));
        assert_eq!(got[&2], (Some(30 * MIN), Wait::Behind { ahead: 1 }));
        let positions: Vec<u64> = forecasts.iter().map(|f| f.job).collect();
        assert_eq!(positions, [1, 2, 3], "dispatch order");
    }

    #[test]
    fn jobs_end_at_their_likely_times_while_the_policy_plans_with_its_estimates() {
        // The running job is estimated to 10 min but likely ends at 4; job 1 likely runs
        // 3 min (estimated 20), so job 2 follows it at 7 min.
        let snapshot = Snapshot {
            now: 0,
            total_nodes: 2,
            free_nodes: 0,
            queued: vec![queued(1, 2, -2, 20 * MIN), queued(2, 2, -1, 20 * MIN)],
            running: vec![running(9, 2, 10 * MIN)],
        };
        let likely = Likely {
            runtime_ms: [(1, 3 * MIN), (2, 3 * MIN)].into_iter().collect(),
            ends_at: [(9, 4 * MIN)].into_iter().collect(),
        };
        let forecasts = forecast(&snapshot, &crate::PolicyConfig::default(), 2, &likely);
        assert!(
            forecasts.iter().all(|f| !f.at_latest),
            "all timed by history"
        );
        let got = by_job(&forecasts);
        assert_eq!(got[&1].0, Some(4 * MIN));
        assert_eq!(got[&2].0, Some(7 * MIN));
        // Without history the same starts are timed by the time limits: upper bounds.
        let unknown = forecast(
            &snapshot,
            &crate::PolicyConfig::default(),
            2,
            &Likely::default(),
        );
        assert!(unknown.iter().all(|f| f.at_latest), "{unknown:?}");
        // A job that outlives what the policy expected is then expected at its likely end.
        let late = Likely {
            ends_at: [(9, 15 * MIN)].into_iter().collect(),
            ..Likely::default()
        };
        let got = by_job(&forecast(
            &snapshot,
            &crate::PolicyConfig::default(),
            2,
            &late,
        ));
        assert_eq!(got[&1].0, Some(15 * MIN));
    }

    #[test]
    fn down_nodes_and_impossible_jobs_say_so_and_give_no_time() {
        let snapshot = Snapshot {
            now: 0,
            total_nodes: 4,
            free_nodes: 2,
            queued: vec![queued(1, 3, -2, MIN), queued(2, 9, -1, MIN)],
            running: vec![],
        };
        let got = by_job(&forecast(
            &snapshot,
            &crate::PolicyConfig::default(),
            2,
            &Likely::default(),
        ));
        assert_eq!(got[&1], (None, Wait::NodesDown { needed: 3, up: 2 }));
        assert_eq!(got[&2], (None, Wait::NeverFits));
    }

    #[test]
    fn a_running_job_past_its_estimate_is_expected_at_its_time_limit() {
        let past = running_job(1, 2, Some(0), 10 * MIN, 60 * MIN, false, 20 * MIN);
        assert_eq!(past.ends_by, 60 * MIN);
        assert!(past.past_estimate);
        let on_time = running_job(1, 2, Some(0), 10 * MIN, 60 * MIN, false, 5 * MIN);
        assert_eq!((on_time.ends_by, on_time.past_estimate), (10 * MIN, false));
        let ended = running_job(1, 2, Some(0), 10 * MIN, 60 * MIN, true, 70 * MIN);
        assert_eq!((ended.ends_by, ended.past_estimate), (70 * MIN, false));
    }

    #[test]
    fn a_long_queue_is_forecast_whole() {
        // 500 one-node jobs of one minute on 10 nodes: 50 waves.
        let snapshot = Snapshot {
            now: 0,
            total_nodes: 10,
            free_nodes: 10,
            queued: (0..500).map(|i| queued(i, 1, -1, MIN)).collect(),
            running: vec![],
        };
        let forecasts = forecast(
            &snapshot,
            &crate::PolicyConfig::default(),
            10,
            &Likely::default(),
        );
        let last = forecasts.iter().filter_map(|f| f.start).max();
        assert_eq!(last, Some(49 * MIN));
        assert!(forecasts.iter().all(|f| f.start.is_some()));
    }
}
