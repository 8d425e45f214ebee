//! Textbook EASY backfill (Lifka 1995; Mu'alem and Feitelson 2001), the scheduler the
//! HPC world runs by default (Slurm's `sched/backfill` with its defaults comes close):
//! the yardstick cuttle's policy has to beat on real traces. It must stay textbook: no
//! aging, no history, nothing of cuttle's, or the comparison says nothing.
//!
//! - **Order:** priority (lower first), then first submitted first. Never changes.
//! - **In order:** jobs start from the front while they fit.
//! - **One reservation:** the first job that does not fit (the head) gets the *shadow
//!   time*, the earliest time enough running jobs will have ended by their time limits
//!   (users' requested times), and the *extra nodes*, those free then beyond its need.
//! - **Backfill:** a later job starts now if it fits in the free nodes and either ends,
//!   by its time limit, before the shadow time, or uses only extra nodes. So the head
//!   never starts later than its shadow time because of a backfilled job; jobs behind
//!   the head have no reservation and may be delayed.

use std::collections::{BTreeSet, HashMap};

use cuttle_policy::RunningJob;

use crate::engine::{Action, Strategy};
use crate::workload::Job;

/// The strategy's name in reports.
pub const EASY: &str = "easy";

/// A job holding nodes, as EASY sees it: until its start plus its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub n_nodes: u32,
    pub ends_by: i64,
}

/// A waiting job, as EASY sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub id: usize,
    pub n_nodes: u32,
    pub time_limit_ms: i64,
}

/// What one EASY pass decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pass {
    /// Jobs started from the front of the queue, in order.
    pub in_order: Vec<usize>,
    /// The head that did not fit and its shadow time, if one waits.
    pub reservation: Option<(usize, i64)>,
    /// Jobs behind the head started by backfill, in queue order.
    pub backfilled: Vec<usize>,
}

/// The earliest time `needed` nodes are free, given `free` now and when the held nodes
/// come back, and how many beyond `needed` are free then. `None` if they never are. The
/// arithmetic is `cuttle_policy::shadow`'s: only the ends EASY believes (time limits)
/// differ.
pub fn shadow(needed: u32, free: u32, held: &[Held], now: i64) -> Option<(i64, u32)> {
    let running: Vec<RunningJob> = held
        .iter()
        .map(|h| RunningJob {
            id: 0,
            n_nodes: h.n_nodes,
            ends_by: h.ends_by,
            past_estimate: false,
        })
        .collect();
    cuttle_policy::shadow(needed, free, &running, now)
}

/// One EASY pass over `queue` (already in order) at `now`, with `free` nodes free and the
/// running jobs `held`.
pub fn pass(now: i64, mut free: u32, held: &[Held], queue: &[Waiting]) -> Pass {
    let mut result = Pass::default();
    let mut held = held.to_vec();
    let mut rest = queue.iter();
    let head = loop {
        let Some(job) = rest.next() else {
            return result;
        };
        if job.n_nodes > free {
            break job;
        }
        free -= job.n_nodes;
        held.push(Held {
            n_nodes: job.n_nodes,
            ends_by: now.saturating_add(job.time_limit_ms),
        });
        result.in_order.push(job.id);
    };
    let Some((shadow_at, mut extra)) = shadow(head.n_nodes, free, &held, now) else {
        // The running jobs can never free enough (the head is bigger than the lab):
        // nothing to protect.
        return result;
    };
    result.reservation = Some((head.id, shadow_at));
    for job in rest {
        if free == 0 {
            break;
        }
        if job.n_nodes > free {
            continue;
        }
        if now.saturating_add(job.time_limit_ms) <= shadow_at {
            free -= job.n_nodes;
            result.backfilled.push(job.id);
        } else if job.n_nodes <= extra {
            free -= job.n_nodes;
            extra -= job.n_nodes;
            result.backfilled.push(job.id);
        }
    }
    result
}

/// EASY backfill as a simulation strategy.
#[derive(Debug)]
pub struct Easy<'a> {
    jobs: &'a [Job],
    nodes: u32,
    /// (priority, id): ids are in submit order, so this is priority, then FCFS.
    queue: BTreeSet<(u32, usize)>,
    running: HashMap<usize, Held>,
    too_big: Vec<usize>,
}

impl<'a> Easy<'a> {
    pub fn new(jobs: &'a [Job], nodes: u32) -> Easy<'a> {
        Easy {
            jobs,
            nodes,
            queue: BTreeSet::new(),
            running: HashMap::new(),
            too_big: Vec::new(),
        }
    }
}

impl Strategy for Easy<'_> {
    fn name(&self) -> &'static str {
        EASY
    }

    fn submit(&mut self, job: &Job) {
        if job.n_nodes > self.nodes {
            self.too_big.push(job.id);
        } else {
            self.queue.insert((job.priority, job.id));
        }
    }

    fn finish(&mut self, job: &Job, _now_ms: i64) {
        self.running.remove(&job.id);
    }

    fn decide(&mut self, now_ms: i64, free_nodes: u32, actions: &mut Vec<Action>) {
        actions.extend(self.too_big.drain(..).map(Action::Bury));
        if self.queue.is_empty() {
            return;
        }
        let queue: Vec<Waiting> = self
            .queue
            .iter()
            .map(|&(_, id)| Waiting {
                id,
                n_nodes: self.jobs[id].n_nodes,
                time_limit_ms: self.jobs[id].time_limit_ms,
            })
            .collect();
        let held: Vec<Held> = self.running.values().copied().collect();
        let decided = pass(now_ms, free_nodes, &held, &queue);
        for id in decided.in_order.into_iter().chain(decided.backfilled) {
            let job = &self.jobs[id];
            self.queue.remove(&(job.priority, id));
            self.running.insert(
                id,
                Held {
                    n_nodes: job.n_nodes,
                    ends_by: now_ms.saturating_add(job.time_limit_ms),
                },
            );
            actions.push(Action::Start(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Easy, Held, Waiting, pass, shadow};
    use crate::engine::simulate;
    use crate::rng::SplitMix64;
    use crate::workload::parse;

    fn waiting(id: usize, n_nodes: u32, time_limit_ms: i64) -> Waiting {
        Waiting {
            id,
            n_nodes,
            time_limit_ms,
        }
    }

    #[test]
    fn the_head_reserves_and_short_or_extra_node_jobs_backfill() {
        // 4 nodes: 3 held until 100, 1 free. Head needs 4 (shadow 100, no extra node).
        let held = [Held {
            n_nodes: 3,
            ends_by: 100,
        }];
        let queue = [
            waiting(1, 4, 50),
            waiting(2, 1, 200), // would outlive the shadow on the head's node
            waiting(3, 1, 100), // ends at the shadow: fits
            waiting(4, 1, 10),  // no node left
        ];
        let decided = pass(0, 1, &held, &queue);
        assert_eq!(decided.in_order, Vec::<usize>::new());
        assert_eq!(decided.reservation, Some((1, 100)));
        assert_eq!(decided.backfilled, [3]);
        // Head needs 3: one extra node at the shadow, which the long job may take.
        let queue = [waiting(1, 3, 50), waiting(2, 1, 200)];
        assert_eq!(pass(0, 1, &held, &queue).backfilled, [2]);
    }

    #[test]
    fn order_is_priority_then_first_submitted_without_aging() {
        // 1 node, busy 0-100 s. Queued: normal (line 2), urgent (line 3), normal (line 4).
        let workload =
            parse("0,1000,1,100,100\n1,1000,1,10,10\n2,50,1,10,10\n3,1000,1,10,10\n").unwrap();
        let outcome = simulate(&workload, 1, &mut Easy::new(&workload.jobs, 1));
        let starts: Vec<i64> = outcome.start_ms.iter().map(|s| s.unwrap() / 1000).collect();
        assert_eq!(starts, [0, 110, 100, 120]);
    }

    /// Random cases from a seeded generator: property tests without a dependency
    /// (the simulator's own SplitMix64; a failing case is reproduced by its index).
    const CASES: u64 = 5_000;

    fn random_case(rng: &mut SplitMix64) -> (Vec<Held>, u32, Vec<Waiting>) {
        let held = (0..rng.range_inclusive(0, 7))
            .map(|_| Held {
                n_nodes: rng.range_inclusive(1, 4) as u32,
                ends_by: rng.range_inclusive(1, 100) as i64,
            })
            .collect();
        let free = rng.range_inclusive(0, 6) as u32;
        let queue = (0..rng.range_inclusive(0, 11) as usize)
            .map(|id| {
                waiting(
                    id,
                    rng.range_inclusive(1, 6) as u32,
                    rng.range_inclusive(1, 120) as i64,
                )
            })
            .collect();
        (held, free, queue)
    }

    #[test]
    fn a_pass_never_overbooks_keeps_order_and_never_delays_the_head() {
        let mut rng = SplitMix64::new(16);
        for case in 0..CASES {
            let (held, free, queue) = random_case(&mut rng);
            let now = 0;
            let total = free + held.iter().map(|h| h.n_nodes).sum::<u32>();
            let queue: Vec<Waiting> = queue.into_iter().filter(|w| w.n_nodes <= total).collect();
            let decided = pass(now, free, &held, &queue);
            let job = |id: usize| *queue.iter().find(|w| w.id == id).unwrap();
            let started: Vec<usize> = decided
                .in_order
                .iter()
                .chain(&decided.backfilled)
                .copied()
                .collect();
            // Never more nodes than are free.
            let used: u32 = started.iter().map(|&id| job(id).n_nodes).sum();
            assert!(used <= free, "case {case}: {used} nodes of {free}");
            // In order: exactly the longest prefix that fits, one after another (FCFS by
            // priority when nothing is backfilled).
            let mut left = free;
            let prefix: Vec<usize> = queue
                .iter()
                .take_while(|w| {
                    let fits = w.n_nodes <= left;
                    if fits {
                        left -= w.n_nodes;
                    }
                    fits
                })
                .map(|w| w.id)
                .collect();
            assert_eq!(decided.in_order, prefix, "case {case}");
            let Some((head, shadow_at)) = decided.reservation else {
                // No head waits: everything started in order, nothing backfilled.
                assert_eq!(prefix.len(), queue.len(), "case {case}");
                assert!(decided.backfilled.is_empty(), "case {case}");
                continue;
            };
            assert_eq!(head, queue[prefix.len()].id, "case {case}");
            // Backfilled jobs come from behind the head.
            let behind = &queue[prefix.len() + 1..];
            assert!(
                decided
                    .backfilled
                    .iter()
                    .all(|id| behind.iter().any(|w| w.id == *id)),
                "case {case}"
            );
            // The head's reservation is never delayed by what started: with every
            // started job holding its nodes for its whole limit, the head can still
            // start by its shadow time.
            let mut after = held.clone();
            after.extend(started.iter().map(|&id| Held {
                n_nodes: job(id).n_nodes,
                ends_by: now + job(id).time_limit_ms,
            }));
            let (start, _) = shadow(job(head).n_nodes, free - used, &after, now).unwrap();
            assert!(
                start <= shadow_at,
                "case {case}: head delayed from {shadow_at} to {start}"
            );
        }
    }

    #[test]
    fn a_simulation_runs_every_job_that_fits_and_never_overbooks() {
        // The engine panics on overbooking; here every job that fits must run.
        let mut rng = SplitMix64::new(61);
        for _ in 0..200 {
            let text: String = (0..rng.range_inclusive(1, 40))
                .map(|_| {
                    let priority = if rng.chance(0.2) { 50 } else { 1000 };
                    format!(
                        "{},{priority},{},{},{}\n",
                        rng.range_inclusive(0, 200),
                        rng.range_inclusive(1, 5),
                        rng.range_inclusive(1, 100),
                        rng.range_inclusive(1, 150)
                    )
                })
                .collect();
            let workload = parse(&text).unwrap();
            let outcome = simulate(&workload, 4, &mut Easy::new(&workload.jobs, 4));
            for job in &workload.jobs {
                assert_eq!(
                    outcome.start_ms[job.id].is_some(),
                    job.n_nodes <= 4,
                    "{text}"
                );
                assert_eq!(outcome.buried[job.id], job.n_nodes > 4, "{text}");
            }
        }
    }
}
