//! Turns what happened in a simulation into the numbers reported: utilization, makespan,
//! waits by priority class and by node count, and, for cuttle, the wait bound the policy
//! states and every job that exceeded it. Reports are in seconds; the simulation runs in
//! milliseconds. Nothing here may change an outcome: it only counts.

use std::collections::BTreeMap;

use cuttle_policy::{PolicyConfig, wait_bound};
use serde::Serialize;

use crate::engine::Outcome;
use crate::workload::{Job, Workload};

/// The priority classes reported, from beanstalkd priorities (lower is sooner).
pub fn priority_class(priority: u32) -> &'static str {
    match priority {
        0..=99 => "urgent",
        100..=999 => "high",
        1000 => "normal",
        _ => "low",
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`
/// percent of the values at or below it. No interpolation, so it is always a wait some
/// job really had. `None` for no values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Wait statistics of a group of jobs, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitStats {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl WaitStats {
    /// The statistics of these waits (milliseconds); `None` for none.
    pub fn of(mut waits: Vec<i64>) -> Option<WaitStats> {
        waits.sort_unstable();
        let total: i128 = waits.iter().map(|&w| i128::from(w)).sum();
        Some(WaitStats {
            count: waits.len(),
            mean: total as f64 / waits.len().max(1) as f64 / 1000.0,
            p50: seconds(percentile(&waits, 50.0)?),
            p95: seconds(percentile(&waits, 95.0)?),
            p99: seconds(percentile(&waits, 99.0)?),
            max: seconds(*waits.last()?),
        })
    }
}

/// Waits of all started jobs, and grouped two ways. Groups with no started job are
/// left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waits {
    /// Every started job; `None` if none started.
    pub all: Option<WaitStats>,
    /// `urgent` (< 100), `high` (100–999), `normal` (1000), `low` (> 1000).
    pub by_priority: BTreeMap<String, WaitStats>,
    /// Keyed by node count as a string ("1", "2", …).
    pub by_nodes: BTreeMap<String, WaitStats>,
}

/// The policy's stated wait bound checked against what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCheck {
    /// The largest bound of any started job.
    pub max_bound_ms: Option<i64>,
    /// Jobs that waited longer than their bound: (job id, wait, bound).
    pub violations: Vec<(usize, i64, i64)>,
}

/// For each started job, `wait_bound(priority, ahead, max time limit)` against its wait,
/// with `ahead` counted as the policy states it: the jobs before it in the order when aging
/// brought the job to the top (`submitted + time_to_top(priority)`), or 0 if it started
/// before.
pub fn check_bound(workload: &Workload, outcome: &Outcome, config: &PolicyConfig) -> BoundCheck {
    let max_time_limit_ms = workload.max_time_limit_ms();
    let mut max_bound_ms = None;
    let mut violations = Vec::new();
    for job in &workload.jobs {
        let Some(start) = outcome.start_ms[job.id] else {
            continue;
        };
        // `ahead` is counted when the job reached the top; a job that started before
        // then waited less than `time_to_top`, which the bound covers with 0 ahead. No
        // aging, no bound: nothing to check.
        let Some(bound) = stated_bound(job, outcome, max_time_limit_ms, config) else {
            continue;
        };
        max_bound_ms = max_bound_ms.max(Some(bound));
        let wait = start - job.submit_ms;
        if wait > bound {
            violations.push((job.id, wait, bound));
        }
    }
    BoundCheck {
        max_bound_ms,
        violations,
    }
}

/// The wait bound `config`'s policy states for `job` in a lab where no limit is longer
/// than `max_time_limit_ms`: `wait_bound` with `ahead` counted when aging brought the job
/// to the top under `outcome`, or 0 if it started before. `None` without aging.
pub fn stated_bound(
    job: &Job,
    outcome: &Outcome,
    max_time_limit_ms: i64,
    config: &PolicyConfig,
) -> Option<i64> {
    let ahead = outcome.ahead[job.id].unwrap_or(0);
    wait_bound(job.priority, ahead, max_time_limit_ms, config)
}

/// One strategy's row of the report (one object of `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub strategy: String,
    pub nodes: u32,
    pub jobs: usize,
    pub started: usize,
    /// Jobs the strategy decided never to run (bigger than the lab).
    pub buried: usize,
    /// Jobs neither started nor buried when the simulation ran out of events; always 0
    /// unless a strategy is stuck.
    pub never_started: usize,
    /// The share of the lab busy while work waited: busy node-seconds / (nodes × seconds
    /// with at least one job queued). See [`utilization`].
    pub utilization: f64,
    /// The greedy packer's `utilization` on the same workload and lab: a yardstick of
    /// what priority-blind packing reaches, not a bound (a strategy can beat it).
    pub greedy_utilization: f64,
    /// Busy node-seconds / (nodes × makespan): how the drain after the last start went as
    /// much as how the jobs were packed.
    pub utilization_over_makespan: f64,
    /// A proven upper bound on `utilization_over_makespan` for any strategy on this
    /// workload and lab. See [`makespan_lower_bound_ms`].
    pub utilization_over_makespan_bound: f64,
    /// Mean wait of all started jobs (also `wait_s.all.mean`).
    pub mean_wait_s: f64,
    /// Nearest-rank percentiles of all started jobs' waits (also in `wait_s.all`).
    pub p50_wait_s: f64,
    pub p95_wait_s: f64,
    pub p99_wait_s: f64,
    /// The urgent class's (priority < 100) p95 wait; `None` if no urgent job started.
    pub urgent_p95_wait_s: Option<f64>,
    /// The largest node count among started jobs, and the longest wait of those jobs:
    /// the ones a scheduler is most tempted to starve.
    pub widest_nodes: Option<u32>,
    pub widest_max_wait_s: Option<f64>,
    /// Last job end − first submit.
    pub makespan_s: f64,
    pub max_wait_s: f64,
    /// Node-seconds left idle while jobs were queued: the packing loss itself.
    pub idle_while_queued_node_s: f64,
    /// cuttle only: the largest wait bound the policy states for any of its jobs.
    pub wait_bound_s: Option<f64>,
    /// cuttle only: jobs that waited longer than their own bound (should be 0).
    pub bound_violations: Option<usize>,
    pub wait_s: Waits,
}

/// Busy node-milliseconds, and the makespan (last end − first submit) in milliseconds.
pub fn busy_and_makespan(workload: &Workload, outcome: &Outcome) -> (i64, i64) {
    let first_submit = workload.jobs.first().map_or(0, |j| j.submit_ms);
    let mut busy = 0i64;
    let mut last_end = first_submit;
    for job in &workload.jobs {
        if let Some(start) = outcome.start_ms[job.id] {
            busy += i64::from(job.n_nodes) * job.ran_ms();
            last_end = last_end.max(start + job.ran_ms());
        }
    }
    (busy, last_end - first_submit)
}

/// A lower bound on the makespan any strategy can reach on `workload` in a lab of
/// `nodes` nodes, in milliseconds: no job starts before it is submitted, so for every
/// submit instant `t` the jobs submitted at or after `t` (that fit the lab) need at least
/// their node-time / `nodes` after `t`, and each job at least its own run after its
/// submit. The largest of these, from the first submit.
pub fn makespan_lower_bound_ms(workload: &Workload, nodes: u32) -> i64 {
    let jobs: Vec<&Job> = workload
        .jobs
        .iter()
        .filter(|j| j.n_nodes <= nodes)
        .collect();
    let Some(first) = workload.jobs.first().map(|j| j.submit_ms) else {
        return 0;
    };
    let nodes = i128::from(nodes.max(1));
    let mut bound = 0i64;
    // Jobs are in submit order: walk back, summing the work submitted from each job on.
    let mut work_after: i128 = 0;
    for job in jobs.iter().rev() {
        work_after += i128::from(job.n_nodes) * i128::from(job.ran_ms());
        let drain = i64::try_from((work_after + nodes - 1) / nodes).unwrap_or(i64::MAX);
        bound = bound
            .max((job.submit_ms - first).saturating_add(drain))
            .max(job.submit_ms - first + job.ran_ms());
    }
    bound
}

/// The utilization over the makespan no strategy can exceed: the busy node-time (the
/// same under every strategy: every job that fits runs for its whole run) over
/// `nodes` × [`makespan_lower_bound_ms`]. At most 1.
pub fn utilization_over_makespan_bound(workload: &Workload, nodes: u32) -> f64 {
    let busy: i128 = workload
        .jobs
        .iter()
        .filter(|j| j.n_nodes <= nodes)
        .map(|j| i128::from(j.n_nodes) * i128::from(j.ran_ms()))
        .sum();
    let makespan = makespan_lower_bound_ms(workload, nodes);
    if makespan <= 0 {
        return 1.0;
    }
    (busy as f64 / (f64::from(nodes) * makespan as f64)).min(1.0)
}

/// Node-milliseconds (busy, idle) while at least one job was queued.
pub fn while_queued(outcome: &Outcome) -> (i64, i64) {
    outcome
        .timeline
        .windows(2)
        .filter(|pair| pair[0].queued > 0)
        .fold((0, 0), |(busy, idle), pair| {
            let span = pair[1].at_ms - pair[0].at_ms;
            (
                busy + i64::from(pair[0].busy_nodes) * span,
                idle + i64::from(outcome.nodes - pair[0].busy_nodes) * span,
            )
        })
}

/// Node-milliseconds idle while at least one job was queued.
pub fn idle_while_queued(outcome: &Outcome) -> i64 {
    while_queued(outcome).1
}

/// Utilization as reported: the lab's busy node-time over its capacity while work
/// waited, that is while at least one job was queued. Only then can a scheduler waste a
/// node: an idle node with nothing queued is idle for want of work, and once the last job
/// has started, the makespan is decided by which long runs happened to start last, not by
/// packing. 1.0 if no job ever waited.
pub fn utilization(outcome: &Outcome) -> f64 {
    let (busy, idle) = while_queued(outcome);
    if busy + idle <= 0 {
        return 1.0;
    }
    busy as f64 / (busy + idle) as f64
}

/// Busy node-time over the lab's node-time in the makespan.
pub fn utilization_over_makespan(workload: &Workload, outcome: &Outcome) -> f64 {
    let (busy, makespan) = busy_and_makespan(workload, outcome);
    if makespan <= 0 {
        return 0.0;
    }
    busy as f64 / (f64::from(outcome.nodes) * makespan as f64)
}

fn group_waits<K: Ord>(
    jobs: &[Job],
    outcome: &Outcome,
    key: impl Fn(&Job) -> K,
) -> BTreeMap<K, Vec<i64>> {
    let mut groups: BTreeMap<K, Vec<i64>> = BTreeMap::new();
    for job in jobs {
        if let Some(start) = outcome.start_ms[job.id] {
            groups
                .entry(key(job))
                .or_default()
                .push(start - job.submit_ms);
        }
    }
    groups
}

/// The report row for one outcome.
pub fn summarize(
    workload: &Workload,
    outcome: &Outcome,
    greedy_utilization: f64,
    bound: Option<&BoundCheck>,
) -> Summary {
    let jobs = &workload.jobs;
    let started = outcome.start_ms.iter().filter(|s| s.is_some()).count();
    let buried = outcome.buried.iter().filter(|b| **b).count();
    let (_, makespan) = busy_and_makespan(workload, outcome);
    let max_wait = jobs
        .iter()
        .filter_map(|j| outcome.start_ms[j.id].map(|s| s - j.submit_ms))
        .max()
        .unwrap_or(0);
    let by_priority: BTreeMap<String, WaitStats> =
        group_waits(jobs, outcome, |j| priority_class(j.priority))
            .into_iter()
            .filter_map(|(class, waits)| Some((class.to_owned(), WaitStats::of(waits)?)))
            .collect();
    let by_nodes: BTreeMap<String, WaitStats> = group_waits(jobs, outcome, |j| j.n_nodes)
        .into_iter()
        .filter_map(|(n, waits)| Some((n.to_string(), WaitStats::of(waits)?)))
        .collect();
    let all = WaitStats::of(
        jobs.iter()
            .filter_map(|j| outcome.start_ms[j.id].map(|s| s - j.submit_ms))
            .collect(),
    );
    let widest = by_nodes
        .iter()
        .filter_map(|(n, stats)| Some((n.parse::<u32>().ok()?, stats.max)))
        .max_by_key(|(n, _)| *n);
    let of_all = |stat: fn(&WaitStats) -> f64| all.as_ref().map_or(0.0, stat);
    Summary {
        strategy: outcome.strategy.to_owned(),
        nodes: outcome.nodes,
        jobs: jobs.len(),
        started,
        buried,
        never_started: jobs.len() - started - buried,
        utilization: utilization(outcome),
        greedy_utilization,
        utilization_over_makespan: utilization_over_makespan(workload, outcome),
        utilization_over_makespan_bound: utilization_over_makespan_bound(workload, outcome.nodes),
        mean_wait_s: of_all(|w| w.mean),
        p50_wait_s: of_all(|w| w.p50),
        p95_wait_s: of_all(|w| w.p95),
        p99_wait_s: of_all(|w| w.p99),
        urgent_p95_wait_s: by_priority.get("urgent").map(|s: &WaitStats| s.p95),
        widest_nodes: widest.map(|(n, _)| n),
        widest_max_wait_s: widest.map(|(_, w)| w),
        makespan_s: seconds(makespan),
        max_wait_s: seconds(max_wait),
        idle_while_queued_node_s: seconds(idle_while_queued(outcome)),
        wait_bound_s: bound.and_then(|b| b.max_bound_ms).map(seconds),
        bound_violations: bound.map(|b| b.violations.len()),
        wait_s: Waits {
            all,
            by_priority,
            by_nodes,
        },
    }
}

impl Summary {
    /// The largest node count among started jobs, and the largest wait of those jobs.
    pub fn biggest_jobs_max_wait(&self) -> Option<(u32, f64)> {
        Some((self.widest_nodes?, self.widest_max_wait_s?))
    }

    /// The urgent class's p95 wait, if any urgent job started.
    pub fn urgent_p95(&self) -> Option<f64> {
        self.urgent_p95_wait_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Outcome;
    use crate::workload::parse;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 95.0), Some(95));
        assert_eq!(percentile(&values, 100.0), Some(100));
        assert_eq!(percentile(&values, 0.0), Some(1));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        // 4 values: p50 is the 2nd, p95 the 4th.
        assert_eq!(percentile(&[1, 2, 3, 40], 50.0), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 40], 95.0), Some(40));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn priority_classes_have_the_documented_edges() {
        assert_eq!(priority_class(0), "urgent");
        assert_eq!(priority_class(99), "urgent");
        assert_eq!(priority_class(100), "high");
        assert_eq!(priority_class(999), "high");
        assert_eq!(priority_class(1000), "normal");
        assert_eq!(priority_class(1001), "low");
    }

    fn outcome(starts: Vec<Option<i64>>, nodes: u32) -> Outcome {
        let n = starts.len();
        Outcome {
            strategy: "test",
            nodes,
            buried: starts.iter().map(Option::is_none).collect(),
            start_ms: starts,
            ahead: vec![None; n],
            timeline: Vec::new(),
        }
    }

    #[test]
    fn utilization_makespan_and_waits() {
        // 4 nodes. Job 0: 2 nodes, 100 s, submitted 0, started 0. Job 1: 1 node, runtime
        // 300 s cut to its 200 s limit, submitted 10, started 100 (waited 90). Job 2: urgent,
        // 3 nodes, submitted 20, never started (buried).
        let workload = parse("0,1000,2,100,1000\n10,1000,1,300,200\n20,50,3,10,100\n").unwrap();
        let outcome = outcome(vec![Some(0), Some(100_000), None], 4);
        let summary = summarize(&workload, &outcome, 0.9, None);
        // Makespan: last end 300 s − first submit 0. Busy: 2×100 + 1×200 = 400 node-s.
        assert_eq!(summary.makespan_s, 300.0);
        assert!((summary.utilization_over_makespan - 400.0 / (4.0 * 300.0)).abs() < 1e-12);
        // No timeline: no job ever waited, so no node was wasted.
        assert_eq!(summary.utilization, 1.0);
        assert_eq!(summary.greedy_utilization, 0.9);
        // Waits 0 and 90 s: mean 45, nearest-rank p50 0, p95 and p99 90.
        assert_eq!(
            (
                summary.mean_wait_s,
                summary.p50_wait_s,
                summary.p95_wait_s,
                summary.p99_wait_s
            ),
            (45.0, 0.0, 90.0, 90.0)
        );
        assert_eq!(summary.wait_s.all.as_ref().map(|a| a.count), Some(2));
        assert_eq!(summary.urgent_p95_wait_s, None);
        // The work of the jobs that fit is 430 node-s (job 2 fits, although this outcome
        // never started it); job 1 cannot end before 10 + 200 s: the makespan is at
        // least 210 s, so no strategy beats 430 / (4 × 210).
        assert!((summary.utilization_over_makespan_bound - 430.0 / (4.0 * 210.0)).abs() < 1e-12);
        assert_eq!(summary.max_wait_s, 90.0);
        assert_eq!(
            (summary.started, summary.buried, summary.never_started),
            (2, 1, 0)
        );
        let normal = &summary.wait_s.by_priority["normal"];
        assert_eq!(
            (normal.count, normal.p50, normal.p95, normal.max),
            (2, 0.0, 90.0, 90.0)
        );
        assert!(!summary.wait_s.by_priority.contains_key("urgent"));
        assert_eq!(summary.wait_s.by_nodes["1"].max, 90.0);
        assert_eq!(summary.biggest_jobs_max_wait(), Some((2, 0.0)));
        assert_eq!(summary.urgent_p95(), None);
        assert_eq!(
            (summary.wait_bound_s, summary.bound_violations),
            (None, None)
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["wait_s"]["by_nodes"]["1"]["p95"], 90.0);
        assert!(json["wait_bound_s"].is_null());
    }

    #[test]
    fn idle_node_time_and_utilization_count_only_while_jobs_wait() {
        use crate::engine::Sample;
        let mut outcome = outcome(vec![], 4);
        let sample = |at_ms, queued, busy_nodes| Sample {
            at_ms,
            queued,
            busy_nodes,
        };
        // 0–10: 1 idle node, 2 queued; 10–30: 3 idle, 1 queued; 30–100: 4 idle, none queued.
        outcome.timeline = vec![
            sample(0, 2, 3),
            sample(10, 1, 1),
            sample(30, 0, 0),
            sample(100, 0, 0),
        ];
        assert_eq!(idle_while_queued(&outcome), 10 + 60);
        // Busy while queued: 3×10 + 1×20 = 50 node-ms of 4×30 = 120.
        assert_eq!(while_queued(&outcome), (50, 70));
        assert!((utilization(&outcome) - 50.0 / 120.0).abs() < 1e-12);
    }

    #[test]
    fn no_strategy_beats_the_makespan_utilization_bound() {
        // Random small workloads, every strategy: the bound is a bound.
        let mut rng = crate::rng::SplitMix64::new(7);
        for _ in 0..40 {
            let text: String = (0..rng.range_inclusive(1, 60))
                .map(|_| {
                    format!(
                        "{},{},{},{},{}\n",
                        rng.range_inclusive(0, 5000),
                        [50, 1000][rng.range_inclusive(0, 1) as usize],
                        rng.range_inclusive(1, 6),
                        rng.range_inclusive(0, 900),
                        rng.range_inclusive(1, 1200)
                    )
                })
                .collect();
            let workload = parse(&text).unwrap();
            let comparison = crate::compare(&workload, 5, 2, PolicyConfig::default());
            for row in &comparison.summaries {
                assert!(
                    row.utilization_over_makespan <= row.utilization_over_makespan_bound + 1e-12,
                    "{}: {} > {}\n{text}",
                    row.strategy,
                    row.utilization_over_makespan,
                    row.utilization_over_makespan_bound
                );
            }
        }
    }

    #[test]
    fn the_bound_check_finds_a_job_that_waited_too_long() {
        let ten_an_hour = PolicyConfig {
            aging: Some(cuttle_policy::Aging {
                interval_ms: 3_600_000,
                step: 10,
                floor: 0,
            }),
            ..PolicyConfig::default()
        };
        // Aging at 10 points an hour brings priority 50 to the top in 5 h; with
        // nothing ahead then the bound is 5 h + 2 × the largest limit (1000 s) = 20000 s.
        let workload = parse("0,50,1,10,1000\n0,50,1,10,1000\n").unwrap();
        let mut outcome = outcome(vec![Some(20_000_000), Some(20_001_000)], 1);
        outcome.ahead = vec![None, Some(0)];
        let check = check_bound(&workload, &outcome, &ten_an_hour);
        assert_eq!(check.max_bound_ms, Some(20_000_000));
        assert_eq!(check.violations, vec![(1, 20_001_000, 20_000_000)]);
        // With one job ahead at the top, the second job's bound is 2000 s larger.
        outcome.ahead = vec![None, Some(1)];
        let check = check_bound(&workload, &outcome, &ten_an_hour);
        assert_eq!(check.max_bound_ms, Some(22_000_000));
        assert!(check.violations.is_empty());
        let summary = summarize(&workload, &outcome, 1.0, Some(&check));
        assert_eq!(summary.wait_bound_s, Some(22000.0));
        assert_eq!(summary.bound_violations, Some(0));
        // No aging: no bound to check.
        let no_aging = PolicyConfig {
            aging: None,
            ..ten_an_hour
        };
        let check = check_bound(&workload, &outcome, &no_aging);
        assert_eq!((check.max_bound_ms, check.violations.len()), (None, 0));
        // Nor with aging by 0 points (`--aging-step 0`), which once reported 9.2e15 s.
        let zero_step = PolicyConfig {
            aging: Some(cuttle_policy::Aging {
                step: 0,
                ..cuttle_policy::DEFAULT_AGING
            }),
            ..ten_an_hour
        };
        let check = check_bound(&workload, &outcome, &zero_step);
        assert_eq!((check.max_bound_ms, check.violations.len()), (None, 0));
    }
}
