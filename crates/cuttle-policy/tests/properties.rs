//! The policy's promises, checked on random labs and queues:
//! - it never starts more nodes' worth of jobs than are free (no node double-booked);
//! - no job it starts delays the reserved head job's estimated start;
//! - with aging on, every job's wait stays within the bound the policy states
//!   (checked by a small discrete-event run of `plan` over a random workload);
//! - the dispatch order moves only jobs not yet at the top, within their class (urgent
//!   or not), among their own places, shortest limit first: no job at the top is ever
//!   passed.

use cuttle_policy::{
    Aging, BOOKING_AGE_MS, Decision, PolicyConfig, QueuedJob, RunningJob, Snapshot, URGENT_BELOW,
    aging_key, compare, ordered, plan, shadow, time_to_top, wait_bound,
};
use proptest::prelude::*;

fn queued() -> impl Strategy<Value = QueuedJob> {
    (
        0u64..1_000_000,
        0u32..3000,
        1u32..6,
        0i64..100_000,
        1i64..50_000,
        0i64..50_000,
    )
        .prop_map(
            |(id, priority, n_nodes, submitted_at, estimate_ms, slack)| QueuedJob {
                id,
                priority,
                n_nodes,
                submitted_at,
                estimate_ms,
                time_limit_ms: estimate_ms + slack,
            },
        )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        4u32..20,
        prop::collection::vec(queued(), 0..30),
        prop::collection::vec((1u32..5, 0i64..100_000), 0..10),
    )
        .prop_map(|(total, mut queue, running)| {
            // Unique ids; running jobs take what the lab has.
            for (i, job) in queue.iter_mut().enumerate() {
                job.id = i as u64;
            }
            let mut used = 0;
            let mut kept = Vec::new();
            for (i, (n, end)) in running.into_iter().enumerate() {
                if used + n <= total {
                    used += n;
                    kept.push(RunningJob {
                        id: 1000 + i as u64,
                        n_nodes: n,
                        ends_by: 100_000 + end,
                        past_estimate: i % 3 == 0,
                    });
                }
            }
            let running = kept;
            Snapshot {
                now: 100_000,
                total_nodes: total,
                free_nodes: total - used,
                queued: queue,
                running,
            }
        })
}

fn config() -> impl Strategy<Value = PolicyConfig> {
    (any::<bool>(), any::<bool>(), 0u32..3, any::<u32>()).prop_map(
        |(aging, backfill, held_back_nodes, fewer_nodes_first_below)| PolicyConfig {
            aging: aging.then_some(Aging {
                interval_ms: 10_000,
                step: 100,
                floor: 0,
            }),
            backfill,
            held_back_nodes,
            fewer_nodes_first_below,
        },
    )
}

proptest! {
    #[test]
    fn never_more_nodes_than_are_free(snapshot in snapshot(), config in config()) {
        let decisions = plan(&snapshot, &config);
        let started: u32 = decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Start { job, .. } => snapshot.queued.iter().find(|q| q.id == *job),
                _ => None,
            })
            .map(|job| job.n_nodes)
            .sum();
        let usable = snapshot.free_nodes.saturating_sub(config.held_back_nodes);
        prop_assert!(started <= usable, "started {started} nodes with {usable} usable");
        // Each job is decided at most once.
        let mut ids: Vec<u64> = decisions
            .iter()
            .map(|d| match d {
                Decision::Start { job, .. } | Decision::Reserve { job, .. } | Decision::Bury { job, .. } => *job,
            })
            .collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        prop_assert_eq!(before, ids.len());
    }

    #[test]
    fn no_start_delays_the_reserved_head(snapshot in snapshot(), config in config()) {
        let decisions = plan(&snapshot, &config);
        let Some((head, promised)) = decisions.iter().find_map(|d| match d {
            Decision::Reserve { job, estimated_start } => Some((*job, *estimated_start)),
            _ => None,
        }) else {
            return Ok(());
        };
        let head = snapshot.queued.iter().find(|q| q.id == head).unwrap();
        // The lab after this plan: everything it started runs for its estimate.
        let mut running = snapshot.running.clone();
        let mut free = snapshot.free_nodes.saturating_sub(config.held_back_nodes.min(snapshot.free_nodes));
        for decision in &decisions {
            if let Decision::Start { job, .. } = decision {
                let job = snapshot.queued.iter().find(|q| q.id == *job).unwrap();
                free -= job.n_nodes;
                // What plan itself assumed for it: the estimate, or the limit when an
                // overrun made estimates untrustworthy.
                let trusted = !snapshot.running.iter().any(|r| r.past_estimate);
                let took = if trusted { job.estimate_ms.min(job.time_limit_ms) } else { job.time_limit_ms };
                running.push(RunningJob { id: job.id, n_nodes: job.n_nodes, ends_by: snapshot.now + took, past_estimate: false });
            }
        }
        let (after, _) = shadow(head.n_nodes, free, &running, snapshot.now).unwrap();
        prop_assert!(after <= promised, "head {} promised {promised}, now {after}", head.id);
    }
}

/// A job of a random workload.
#[derive(Debug, Clone)]
struct Work {
    submit: i64,
    priority: u32,
    n_nodes: u32,
    runtime: i64,
    time_limit: i64,
    /// What history would say: often far below the real runtime.
    estimate: i64,
}

fn workload() -> impl Strategy<Value = (u32, Vec<Work>)> {
    (
        3u32..10,
        prop::collection::vec(
            (
                0i64..200_000,
                prop::sample::select(vec![0u32, 50, 500, 1000, 1000, 1000, 2000]),
                1u32..4,
                1i64..20_000,
                0i64..20_000,
                1i64..20_000,
            ),
            1..60,
        ),
    )
        .prop_map(|(nodes, jobs)| {
            let jobs = jobs
                .into_iter()
                .map(|(submit, priority, n, runtime, slack, estimate)| Work {
                    submit,
                    priority,
                    n_nodes: n.min(nodes),
                    runtime,
                    time_limit: runtime + slack,
                    estimate: estimate.min(runtime + slack),
                })
                .collect();
            (nodes, jobs)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn with_aging_every_wait_is_within_the_stated_bound(
        (nodes, jobs) in workload(),
        backfill in any::<bool>(),
        // Fast aging; and slower, so that urgent jobs stay below the top (25 s at
        // priority 50) long enough to be reordered by their limits.
        step in prop::sample::select(vec![100u32, 10]),
    ) {
        let aging = Aging { interval_ms: 5_000, step, floor: 0 };
        let config = PolicyConfig {
            aging: Some(aging),
            backfill,
            held_back_nodes: 0,
            fewer_nodes_first_below: cuttle_policy::TEUTHOLOGY_DEFAULT_PRIORITY,
        };
        let max_limit = jobs.iter().map(|j| j.time_limit).max().unwrap();
        let mut submitted = vec![false; jobs.len()];
        let mut started_at: Vec<Option<i64>> = vec![None; jobs.len()];
        let mut bounds: Vec<i64> = vec![0; jobs.len()];
        let mut running: Vec<(usize, i64)> = Vec::new(); // (job, real end)
        let mut now = 0;
        loop {
            // Submit what is due, recording how many were queued ahead of each.
            for (i, job) in jobs.iter().enumerate() {
                if !submitted[i] && job.submit <= now {
                    submitted[i] = true;
                }
            }
            // The bound is stated when a job reaches the top: counting the jobs queued then.
            for (i, job) in jobs.iter().enumerate() {
                let top = job.submit + time_to_top(job.priority, aging);
                if submitted[i] && bounds[i] == 0 && top <= now {
                    let ahead = (0..jobs.len())
                        .filter(|&k| submitted[k] && k != i && started_at[k].is_none())
                        .count();
                    bounds[i] = wait_bound(job.priority, ahead, max_limit, &config).unwrap();
                }
            }
            running.retain(|&(_, end)| end > now);
            let free = nodes - running.iter().map(|&(j, _)| jobs[j].n_nodes).sum::<u32>();
            let snapshot = Snapshot {
                now,
                total_nodes: nodes,
                free_nodes: free,
                queued: (0..jobs.len())
                    .filter(|&i| submitted[i] && started_at[i].is_none())
                    .map(|i| QueuedJob { id: i as u64, priority: jobs[i].priority, n_nodes: jobs[i].n_nodes, submitted_at: jobs[i].submit, estimate_ms: jobs[i].estimate, time_limit_ms: jobs[i].time_limit })
                    .collect(),
                running: running.iter().map(|&(j, _)| {
                    // As the dispatcher does: the estimate until it is outlived, then the limit.
                    let started = started_at[j].unwrap();
                    let past_estimate = now >= started + jobs[j].estimate;
                    RunningJob {
                        id: j as u64,
                        n_nodes: jobs[j].n_nodes,
                        ends_by: if past_estimate { started + jobs[j].time_limit } else { started + jobs[j].estimate },
                        past_estimate,
                    }
                }).collect(),
            };
            for decision in plan(&snapshot, &config) {
                if let Decision::Start { job, .. } = decision {
                    let j = job as usize;
                    started_at[j] = Some(now);
                    running.push((j, now + jobs[j].runtime.min(jobs[j].time_limit)));
                }
            }
            if started_at.iter().all(Option::is_some) {
                // Jobs that started before reaching the top waited less than that.
                for (i, job) in jobs.iter().enumerate() {
                    if bounds[i] == 0 {
                        bounds[i] = wait_bound(job.priority, 0, max_limit, &config).unwrap();
                    }
                }
                break;
            }
            // Next event: a submit, an end, or an aging step.
            let next_submit = jobs.iter().enumerate().filter(|(i, _)| !submitted[*i]).map(|(_, j)| j.submit).min();
            let next_end = running.iter().map(|&(_, end)| end).min();
            let next_age = now + 5_000 - now % 5_000;
            let next_top = jobs
                .iter()
                .enumerate()
                .filter(|(i, _)| bounds[*i] == 0)
                .map(|(_, j)| j.submit + time_to_top(j.priority, aging))
                .filter(|&top| top > now)
                .min();
            let next_overrun = running
                .iter()
                .map(|&(j, _)| started_at[j].unwrap() + jobs[j].estimate)
                .filter(|&at| at > now)
                .min();
            now = [next_submit, next_end, Some(next_age), next_top, next_overrun].into_iter().flatten().min().unwrap();
            prop_assert!(now < 100_000_000, "the simulation does not finish");
        }
        for (i, job) in jobs.iter().enumerate() {
            let wait = started_at[i].unwrap() - job.submit;
            prop_assert!(wait <= bounds[i], "job {i} waited {wait} ms, bound {}", bounds[i]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn the_order_moves_only_jobs_below_the_top_within_their_class(
        jobs in prop::collection::vec(
            (
                prop::sample::select(vec![0u32, 10, 50, 99, 100, 500, 1000, 2000]),
                0i64..200_000_000,
                1i64..100_000_000,
            ),
            0..40,
        ),
        interval_ms in 1_000i64..4_000_000,
        step in 0u32..5,
    ) {
        let now = 200_000_000;
        let queue: Vec<QueuedJob> = jobs
            .iter()
            .enumerate()
            .map(|(i, &(priority, submitted_at, limit))| {
                QueuedJob::new(i as u64, priority, 1, submitted_at).timed(limit, limit)
            })
            .collect();
        let config = PolicyConfig {
            aging: Some(Aging { interval_ms, step, floor: 0 }),
            ..PolicyConfig::default()
        };
        let mut base: Vec<&QueuedJob> = queue.iter().collect();
        base.sort_by(|a, b| compare(a, b, now, &config));
        let got = ordered(&queue, now, &config);
        let key = |job: &QueuedJob| aging_key(job, now, config.aging);
        let moves = |job: &QueuedJob| step > 0 && key(job) > 0;
        let urgent = |job: &QueuedJob| job.priority < URGENT_BELOW;
        let mut ids: Vec<u64> = got.iter().map(|job| job.id).collect();
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..queue.len() as u64).collect::<Vec<_>>());
        // The last finish key placed in each class: urgent, the rest.
        let mut previous: [Option<i128>; 2] = [None, None];
        for (slot, (was, is)) in base.iter().zip(&got).enumerate() {
            if moves(was) {
                // A job below the top takes the place of another of its class, in order of
                // key plus its limit's worth of aging (none after a day of waiting).
                prop_assert!(moves(is), "slot {} went to job {} at the top", slot, is.id);
                prop_assert_eq!(urgent(was), urgent(is), "slot {} changed class", slot);
                let shift = if now - is.submitted_at < BOOKING_AGE_MS { is.time_limit_ms } else { 0 };
                let finish = key(is) + i128::from(step) * i128::from(shift);
                let class = usize::from(!urgent(is));
                prop_assert!(previous[class].is_none_or(|p| p <= finish), "slot {} out of order", slot);
                previous[class] = Some(finish);
            } else {
                // Everything else, the jobs at the top first of all, keeps its place.
                prop_assert_eq!(was.id, is.id, "slot {} changed hands", slot);
            }
        }
    }
}
