//! The strategies compared: how teuthology chose jobs before 2020 (competing workers), how
//! it chooses now (a strict head-of-line dispatcher), cuttle's policy with and without
//! backfill, and a priority-blind greedy packer whose utilization is the yardstick. Each
//! one only keeps its queue and answers [`Strategy::decide`]; the cuttle ones must call
//! `cuttle_policy::plan` as the dispatcher does and never second-guess it, or the
//! simulator would be measuring something the dispatcher does not do.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use cuttle_policy::{
    Decision, Estimator, PolicyConfig, QueuedJob, RunningJob, Snapshot, compare, plan, time_to_top,
};

use crate::engine::{Action, Strategy};
use crate::workload::Job;

/// The strategy names, as reports and `--json` show them, in report order.
pub const LEGACY_WORKERS: &str = "legacy-workers";
pub const HEAD_OF_LINE: &str = "head-of-line";
pub const CUTTLE: &str = "cuttle";
pub const CUTTLE_NO_BACKFILL: &str = "cuttle-no-backfill";
pub const GREEDY: &str = "greedy";

/// beanstalkd's order: priority, then first put first; job ids are in submit order.
type TubeKey = (u32, usize);

fn tube_key(job: &Job) -> TubeKey {
    (job.priority, job.id)
}

/// teuthology before 2020: `workers` competing worker processes on one tube. A worker
/// reserves the next job in beanstalkd order and retries an all-or-nothing lock of its
/// nodes until it gets them; only once its job started does it reserve another. When
/// nodes free, the held jobs that fit start in the order they were reserved, so a worker
/// holding a 5-node job watches the others' 1-node jobs take every node that frees.
#[derive(Debug)]
pub struct LegacyWorkers<'a> {
    jobs: &'a [Job],
    nodes: u32,
    workers: usize,
    tube: BTreeSet<TubeKey>,
    /// Jobs reserved by a worker and not started, in reservation order.
    held: VecDeque<usize>,
}

impl<'a> LegacyWorkers<'a> {
    pub fn new(jobs: &'a [Job], nodes: u32, workers: usize) -> LegacyWorkers<'a> {
        LegacyWorkers {
            jobs,
            nodes,
            workers: workers.max(1),
            tube: BTreeSet::new(),
            held: VecDeque::new(),
        }
    }
}

impl Strategy for LegacyWorkers<'_> {
    fn name(&self) -> &'static str {
        LEGACY_WORKERS
    }

    fn submit(&mut self, job: &Job) {
        self.tube.insert(tube_key(job));
    }

    fn finish(&mut self, _job: &Job, _now_ms: i64) {}

    fn decide(&mut self, _now_ms: i64, mut free: u32, actions: &mut Vec<Action>) {
        loop {
            // Idle workers reserve the next jobs. A job no lab can hold is skipped (in the
            // real lab it would keep its worker forever, which says nothing about order).
            while self.held.len() < self.workers {
                let Some((_, id)) = self.tube.pop_first() else {
                    break;
                };
                if self.jobs[id].n_nodes > self.nodes {
                    actions.push(Action::Bury(id));
                } else {
                    self.held.push_back(id);
                }
            }
            // Every worker retries its lock, in reservation order.
            let mut started = false;
            self.held.retain(|&id| {
                let n_nodes = self.jobs[id].n_nodes;
                if n_nodes <= free {
                    free -= n_nodes;
                    actions.push(Action::Start(id));
                    started = true;
                    false
                } else {
                    true
                }
            });
            // A worker whose job started reserves again, and that job may fit too.
            if !started {
                break;
            }
        }
    }
}

/// teuthology's dispatcher since 2020: jobs strictly in beanstalkd order; the head waits
/// until enough nodes are free and nothing passes it; no aging.
#[derive(Debug)]
pub struct HeadOfLine<'a> {
    jobs: &'a [Job],
    nodes: u32,
    tube: BTreeSet<TubeKey>,
}

impl<'a> HeadOfLine<'a> {
    pub fn new(jobs: &'a [Job], nodes: u32) -> HeadOfLine<'a> {
        HeadOfLine {
            jobs,
            nodes,
            tube: BTreeSet::new(),
        }
    }
}

impl Strategy for HeadOfLine<'_> {
    fn name(&self) -> &'static str {
        HEAD_OF_LINE
    }

    fn submit(&mut self, job: &Job) {
        self.tube.insert(tube_key(job));
    }

    fn finish(&mut self, _job: &Job, _now_ms: i64) {}

    fn decide(&mut self, _now_ms: i64, mut free: u32, actions: &mut Vec<Action>) {
        while let Some(&(_, id)) = self.tube.first() {
            let n_nodes = self.jobs[id].n_nodes;
            if n_nodes > self.nodes {
                // Skipped rather than blocking the tube forever.
                actions.push(Action::Bury(id));
            } else if n_nodes <= free {
                free -= n_nodes;
                actions.push(Action::Start(id));
            } else {
                break;
            }
            self.tube.pop_first();
        }
    }
}

/// The yardstick: priority-blind FIFO first-fit. Whenever nodes free, the oldest queued
/// job that fits starts, again and again. It idles a node only when no queued job fits,
/// so its utilization is what packing alone can reach on this workload.
#[derive(Debug)]
pub struct Greedy {
    nodes: u32,
    /// Queued jobs by node count, each in FIFO order: the oldest job that fits is the
    /// oldest front among the buckets that fit, found without scanning the whole queue.
    buckets: BTreeMap<u32, VecDeque<usize>>,
    too_big: Vec<usize>,
}

impl Greedy {
    pub fn new(nodes: u32) -> Greedy {
        Greedy {
            nodes,
            buckets: BTreeMap::new(),
            too_big: Vec::new(),
        }
    }
}

impl Strategy for Greedy {
    fn name(&self) -> &'static str {
        GREEDY
    }

    fn submit(&mut self, job: &Job) {
        if job.n_nodes > self.nodes {
            self.too_big.push(job.id);
        } else {
            self.buckets
                .entry(job.n_nodes)
                .or_default()
                .push_back(job.id);
        }
    }

    fn finish(&mut self, _job: &Job, _now_ms: i64) {}

    fn decide(&mut self, _now_ms: i64, mut free: u32, actions: &mut Vec<Action>) {
        actions.extend(self.too_big.drain(..).map(Action::Bury));
        loop {
            let oldest = self
                .buckets
                .range(..=free)
                .filter_map(|(n, queue)| queue.front().map(|id| (*id, *n)))
                .min();
            let Some((id, n_nodes)) = oldest else {
                break;
            };
            if let Some(queue) = self.buckets.get_mut(&n_nodes) {
                queue.pop_front();
            }
            free -= n_nodes;
            actions.push(Action::Start(id));
        }
    }
}

/// cuttle's policy, exactly as the dispatcher applies it: a snapshot of the lab goes to
/// `cuttle_policy::plan`, and its Start and Bury decisions are carried out. Estimates come
/// from an [`Estimator`] fed with the runtimes of finished jobs by description.
#[derive(Debug)]
pub struct Cuttle<'a> {
    jobs: &'a [Job],
    nodes: u32,
    config: PolicyConfig,
    estimator: Estimator,
    queue: Vec<usize>,
    /// Running jobs: (start, the estimate it started with).
    running: HashMap<usize, (i64, i64)>,
    /// Each job's description as an index into `history_version`.
    description_of: Vec<Option<usize>>,
    /// Bumped whenever a run of the description is recorded.
    history_version: Vec<u64>,
    /// Each job's last estimate and the history version it was made from. The estimator
    /// is asked again only when that history changed: asking for every queued job at
    /// every instant dominated the run time, and the answer cannot differ.
    estimates: Vec<Option<(u64, i64)>>,
    /// How many queued jobs, in order, `plan` sees: the dispatcher's look-ahead window.
    window: usize,
    name: &'static str,
}

impl<'a> Cuttle<'a> {
    pub fn new(jobs: &'a [Job], nodes: u32, config: PolicyConfig) -> Cuttle<'a> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let description_of = jobs
            .iter()
            .map(|job| {
                let next = index.len();
                job.description
                    .as_deref()
                    .map(|d| *index.entry(d).or_insert(next))
            })
            .collect();
        Cuttle {
            jobs,
            nodes,
            config,
            estimator: Estimator::new(),
            queue: Vec::new(),
            running: HashMap::new(),
            description_of,
            history_version: vec![0; index.len()],
            estimates: vec![None; jobs.len()],
            window: cuttle_policy::DEFAULT_WINDOW,
            name: if config.backfill {
                CUTTLE
            } else {
                CUTTLE_NO_BACKFILL
            },
        }
    }

    /// Plans over the first `window` queued jobs in order, as a dispatcher with that
    /// look-ahead window does (`usize::MAX`: the whole queue).
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// `Estimator::estimate(description, time_limit)`, or the time limit for a job
    /// without a description.
    fn estimate_ms(&mut self, id: usize) -> i64 {
        let job = &self.jobs[id];
        let (Some(description), Some(d)) = (&job.description, self.description_of[id]) else {
            return job.time_limit_ms;
        };
        let version = self.history_version[d];
        match self.estimates[id] {
            Some((made_from, estimate)) if made_from == version => estimate,
            _ => {
                let estimate = self.estimator.estimate(description, job.time_limit_ms);
                self.estimates[id] = Some((version, estimate));
                estimate
            }
        }
    }

    /// What the dispatcher would gather at `now_ms`.
    pub fn snapshot(&mut self, now_ms: i64, free_nodes: u32) -> Snapshot {
        // The dispatcher holds at most `window` jobs, the most urgent ones: beanstalkd's
        // order is the policy's up to the put order of jobs whose aged priority ties.
        let seen = self.queue.len().min(self.window);
        let mut queued = Vec::with_capacity(seen);
        for i in 0..seen {
            let id = self.queue[i];
            let job = &self.jobs[id];
            let estimate_ms = self.estimate_ms(id);
            queued.push(
                QueuedJob::new(id as u64, job.priority, job.n_nodes, job.submit_ms)
                    .timed(estimate_ms, job.time_limit_ms),
            );
        }
        let running = self
            .running
            .iter()
            .map(|(&id, &(start, estimate))| {
                let job = &self.jobs[id];
                // As the dispatcher does: once a job has outlived its estimate, all that
                // is known is that its time limit ends it (and the policy stops trusting
                // estimates while it runs).
                let mut ends_by = start + estimate;
                let past_estimate = ends_by <= now_ms;
                if past_estimate {
                    ends_by = start + job.time_limit_ms;
                }
                RunningJob {
                    id: id as u64,
                    n_nodes: job.n_nodes,
                    ends_by: ends_by.max(now_ms),
                    past_estimate,
                }
            })
            .collect();
        Snapshot {
            now: now_ms,
            total_nodes: self.nodes,
            free_nodes,
            queued,
            running,
        }
    }
}

impl Cuttle<'_> {
    /// The start-time estimates a user would be shown at `now_ms`, before this instant's
    /// decisions: `cuttle_policy::forecast` over the whole queue, as cuttle-api makes them.
    pub fn forecast(&mut self, now_ms: i64, free_nodes: u32) -> Vec<cuttle_policy::Forecast> {
        let window = std::mem::replace(&mut self.window, usize::MAX);
        let snapshot = self.snapshot(now_ms, free_nodes);
        self.window = window;
        let likely_of = |job: &Job| {
            job.description
                .as_deref()
                .and_then(|description| self.estimator.likely(description, job.time_limit_ms))
        };
        let likely = cuttle_policy::Likely {
            runtime_ms: snapshot
                .queued
                .iter()
                .filter_map(|q| Some((q.id, likely_of(&self.jobs[q.id as usize])?)))
                .collect(),
            ends_at: self
                .running
                .iter()
                .filter_map(|(&id, &(start, _))| {
                    Some((id as u64, start + likely_of(&self.jobs[id])?))
                })
                .collect(),
        };
        cuttle_policy::forecast(&snapshot, &self.config, self.nodes, &likely)
    }
}

impl Strategy for Cuttle<'_> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn submit(&mut self, job: &Job) {
        // Keep the queue in dispatch order: `snapshot` hands `plan` the first `window`
        // jobs of it, as the dispatcher holds the most urgent ones; and the sort inside
        // `plan` then meets sorted input (one comparison per job instead of n log n, once
        // most of the simulation's time). The order between two queued jobs never changes
        // with time, so inserting in order at submit keeps it exact.
        let now = job.submit_ms;
        let key = |j: &Job| QueuedJob::new(j.id as u64, j.priority, j.n_nodes, j.submit_ms);
        let new = key(job);
        let at = self.queue.partition_point(|&id| {
            compare(&key(&self.jobs[id]), &new, now, &self.config) == Ordering::Less
        });
        self.queue.insert(at, job.id);
    }

    fn finish(&mut self, job: &Job, now_ms: i64) {
        if let Some((start, _)) = self.running.remove(&job.id)
            && let (Some(description), Some(d)) = (&job.description, self.description_of[job.id])
        {
            self.estimator.record(description, now_ms - start);
            self.history_version[d] += 1;
        }
    }

    fn decide(&mut self, now_ms: i64, free_nodes: u32, actions: &mut Vec<Action>) {
        if self.queue.is_empty() {
            return;
        }
        let snapshot = self.snapshot(now_ms, free_nodes);
        let before = actions.len();
        for decision in plan(&snapshot, &self.config) {
            match decision {
                Decision::Start { job, .. } => {
                    let id = job as usize;
                    let estimate = self.estimate_ms(id);
                    self.running.insert(id, (now_ms, estimate));
                    actions.push(Action::Start(id));
                }
                Decision::Bury { job, .. } => actions.push(Action::Bury(job as usize)),
                // The reservation is implicit: the head simply is not passed.
                Decision::Reserve { .. } => {}
            }
        }
        if actions.len() > before {
            let mut acted: Vec<usize> = actions[before..]
                .iter()
                .map(|(Action::Start(id) | Action::Bury(id))| *id)
                .collect();
            acted.sort_unstable();
            self.queue.retain(|id| acted.binary_search(id).is_err());
        }
    }

    fn tick_interval_ms(&self) -> Option<i64> {
        self.config.aging.map(|aging| aging.interval_ms)
    }

    /// Outliving its estimate changes the snapshot (its end moves to its time limit, and
    /// the policy stops trusting estimates): the dispatcher notices within seconds, so the
    /// simulation re-plans at that moment too.
    fn watch_ms(&self, job: &Job, _start_ms: i64) -> Option<i64> {
        let &(start, estimate) = self.running.get(&job.id)?;
        (estimate < job.time_limit_ms).then_some(start + estimate)
    }

    /// `cuttle_policy::wait_bound` is stated from the moment aging brings a job to the
    /// top, counting the jobs queued then.
    fn checkpoint_ms(&self, job: &Job) -> Option<i64> {
        let aging = self.config.aging?;
        job.submit_ms.checked_add(time_to_top(job.priority, aging))
    }

    /// The jobs before it in the dispatch order: at its checkpoint its key is 0 and the
    /// order of two queued jobs never changes, so only these can start before it (jobs
    /// behind it, submitted earlier or not, stay behind; the bound's argument).
    fn ahead_in_order(&self, job: &Job) -> Option<usize> {
        self.queue.iter().position(|&id| id == job.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Outcome, simulate};
    use crate::workload::{Workload, parse};

    const MIN: i64 = 60_000;

    fn run(text: &str, nodes: u32, strategy: &str) -> (Workload, Outcome) {
        let workload = parse(text).unwrap();
        let jobs = &workload.jobs;
        let outcome = match strategy {
            LEGACY_WORKERS => simulate(&workload, nodes, &mut LegacyWorkers::new(jobs, nodes, 8)),
            HEAD_OF_LINE => simulate(&workload, nodes, &mut HeadOfLine::new(jobs, nodes)),
            GREEDY => simulate(&workload, nodes, &mut Greedy::new(nodes)),
            CUTTLE => simulate(
                &workload,
                nodes,
                &mut Cuttle::new(jobs, nodes, PolicyConfig::default()),
            ),
            _ => simulate(
                &workload,
                nodes,
                &mut Cuttle::new(
                    jobs,
                    nodes,
                    PolicyConfig {
                        backfill: false,
                        ..PolicyConfig::default()
                    },
                ),
            ),
        };
        (workload, outcome)
    }

    /// Start minute of the job from line `line`.
    fn start_min(workload: &Workload, outcome: &Outcome, line: usize) -> Option<i64> {
        let job = workload.jobs.iter().find(|j| j.line == line).unwrap();
        outcome.start_ms[job.id].map(|ms| ms / MIN)
    }

    /// Four 1-node jobs hold all 4 nodes, ending a minute apart; a 4-node job arrives,
    /// then, for 15 hours, a 1-node 4-minute job every minute: exactly what the 4 nodes can
    /// run, so a backlog of small jobs never drains while the stream lasts.
    fn starvation_workload() -> String {
        let mut text = String::from("# nodes: 4\n");
        for i in 0..4 {
            // Ends at minute 10 + i.
            text.push_str(&format!("0,1000,1,{},100000\n", (10 + i) * 60));
        }
        // Line 6: the big job.
        text.push_str("60,1000,4,600,100000\n");
        for m in 2..900 {
            text.push_str(&format!("{},1000,1,240,100000\n", m * 60));
        }
        text
    }

    #[test]
    fn legacy_workers_starve_a_big_job_behind_a_stream_of_small_ones() {
        let text = starvation_workload();
        let (workload, legacy) = run(&text, 4, LEGACY_WORKERS);
        let legacy_start = start_min(&workload, &legacy, 6).unwrap();
        // Every node that frees goes to a worker's 1-node job: only when the stream stops
        // (minute 900) does the big job find 4 free nodes.
        assert!(
            legacy_start >= 899,
            "legacy started the big job at {legacy_start}"
        );
        // cuttle puts the older big job first: it becomes the head, the nodes are
        // reserved for it, and it starts when the first 4 jobs have ended.
        let (workload, cuttle) = run(&text, 4, CUTTLE);
        assert_eq!(start_min(&workload, &cuttle, 6), Some(13));
        // So does strict head-of-line, which never passes it.
        let (workload, hol) = run(&text, 4, HEAD_OF_LINE);
        assert_eq!(start_min(&workload, &hol, 6), Some(13));
        // Greedy, priority-blind first-fit, starves it like the workers do.
        let (workload, greedy) = run(&text, 4, GREEDY);
        assert!(start_min(&workload, &greedy, 6).unwrap() >= 899);
    }

    #[test]
    fn legacy_workers_start_held_jobs_in_reservation_order() {
        // 3 nodes, busy until minute 10. Reserved in order: 2-node (line 3), 1-node (line 4),
        // 1-node (line 5). At minute 10 all 3 nodes free: the 2-node job first, then one
        // 1-node job; the other waits.
        let text = "# nodes: 3\n0,1000,3,600,3600\n1,1000,2,600,3600\n2,1000,1,600,3600\n3,1000,1,600,3600\n";
        let (workload, legacy) = run(text, 3, LEGACY_WORKERS);
        assert_eq!(start_min(&workload, &legacy, 3), Some(10));
        assert_eq!(start_min(&workload, &legacy, 4), Some(10));
        assert_eq!(start_min(&workload, &legacy, 5), Some(20));
    }

    #[test]
    fn with_one_worker_legacy_is_fifo_and_a_worker_reserves_only_after_its_job_started() {
        // One worker: it holds the 2-node job (line 3) while a node is free; the 1-node job
        // behind it (line 4) cannot pass, because no other worker reserves it.
        let text = "0,1000,2,600,3600\n1,1000,2,600,3600\n2,1000,1,60,3600\n";
        let workload = parse(text).unwrap();
        let outcome = simulate(&workload, 3, &mut LegacyWorkers::new(&workload.jobs, 3, 1));
        assert_eq!(start_min(&workload, &outcome, 2), Some(10));
        assert_eq!(start_min(&workload, &outcome, 3), Some(10));
        // With 8 workers the 1-node job takes the free node at once.
        let outcome = simulate(&workload, 3, &mut LegacyWorkers::new(&workload.jobs, 3, 8));
        assert_eq!(start_min(&workload, &outcome, 3), Some(0));
    }

    #[test]
    fn head_of_line_leaves_nodes_idle_and_cuttle_backfills_without_delaying_the_head() {
        // 4 nodes. A 3-node job runs 0–60 min. Then a 4-node head job (prio 1000) and a
        // 1-node 30-minute job (prio 2000) queue. Head-of-line leaves the free node idle;
        // cuttle backfills the short job (it ends before the head can start), and the
        // head still starts at minute 60. Three earlier runs teach the estimator that the
        // short test takes 30 minutes although its limit says 10 hours.
        let mut text = String::from("# nodes: 4\n");
        for _ in 0..3 {
            text.push_str("0,1000,1,1800,36000,short\n");
        }
        text.push_str("1800,1000,3,3600,3600,three\n"); // line 5
        text.push_str("1860,1000,4,600,3600,head\n"); // line 6
        text.push_str("1920,2000,1,1800,36000,short\n"); // line 7
        let (workload, hol) = run(&text, 4, HEAD_OF_LINE);
        assert_eq!(start_min(&workload, &hol, 5), Some(30));
        assert_eq!(start_min(&workload, &hol, 6), Some(90));
        assert_eq!(start_min(&workload, &hol, 7), Some(100));
        let (workload, cuttle) = run(&text, 4, CUTTLE);
        assert_eq!(start_min(&workload, &cuttle, 6), Some(90), "head delayed");
        assert_eq!(start_min(&workload, &cuttle, 7), Some(32), "not backfilled");
        let (workload, strict) = run(&text, 4, CUTTLE_NO_BACKFILL);
        assert_eq!(start_min(&workload, &strict, 6), Some(90));
        assert_eq!(start_min(&workload, &strict, 7), Some(100));
    }

    #[test]
    fn cuttle_does_not_backfill_a_job_whose_estimate_would_delay_the_head() {
        // As above, but the short test has no history: its estimate is its 10-hour limit,
        // which ends after the head's start, and there is no spare node at that time.
        let text =
            "# nodes: 4\n0,1000,3,3600,3600\n60,1000,4,600,3600\n120,2000,1,1800,36000,new\n";
        let (workload, cuttle) = run(text, 4, CUTTLE);
        assert_eq!(start_min(&workload, &cuttle, 3), Some(60));
        assert_eq!(start_min(&workload, &cuttle, 4), Some(70));
    }

    #[test]
    fn greedy_starts_the_oldest_job_that_fits() {
        // 3 nodes: a 2-node job runs; queued, in FIFO order: a 2-node job, then two 1-node
        // jobs. Greedy starts the first 1-node job on the free node, priority ignored.
        let text = "0,1000,2,600,3600\n1,50,2,600,3600\n2,2000,1,60,3600\n3,1000,1,60,3600\n";
        let (workload, greedy) = run(text, 3, GREEDY);
        assert_eq!(start_min(&workload, &greedy, 3), Some(0));
        assert_eq!(start_min(&workload, &greedy, 4), Some(1));
        assert_eq!(start_min(&workload, &greedy, 2), Some(10));
    }

    #[test]
    fn every_strategy_buries_a_job_bigger_than_the_lab_and_runs_the_rest() {
        let text = "0,1000,5,60,3600\n0,1000,1,60,3600\n10,50,9,60,3600\n20,1000,2,60,3600\n";
        for strategy in [
            LEGACY_WORKERS,
            HEAD_OF_LINE,
            GREEDY,
            CUTTLE,
            CUTTLE_NO_BACKFILL,
        ] {
            let (workload, outcome) = run(text, 4, strategy);
            for job in &workload.jobs {
                let too_big = job.n_nodes > 4;
                assert_eq!(
                    outcome.buried[job.id], too_big,
                    "{strategy} line {}",
                    job.line
                );
                assert_eq!(outcome.start_ms[job.id].is_some(), !too_big, "{strategy}");
            }
        }
    }

    #[test]
    fn a_running_job_outliving_its_estimate_makes_cuttle_plan_again() {
        // 2 nodes. Three 1-hour runs of test `a` teach the estimator 1.2 h. At 2 h, A (a run
        // of `a`, line 5) starts and hangs until its 10-hour limit (12 h). The head H
        // (line 6, 2 nodes, priority 0) reserves the lab from A's estimated end, 3.2 h. B
        // (line 7, priority 1000, 1 node, no history: estimated at its 5-hour limit) would
        // still run then, so it may not backfill. Once A is past its estimate, all that is
        // known is its limit: H's estimated start moves to 12 h and B fits before it. No
        // job ends or arrives at 3.2 h; the simulation re-plans because A outlived its
        // estimate, as the dispatcher would within seconds.
        let text = "\
0,0,1,3600,36000,a
0,0,1,3600,36000,a
0,0,1,3600,36000,a
7200,0,1,40000,36000,a
7201,0,2,600,36000
7202,1000,1,600,18000
";
        let (workload, cuttle) = run(text, 2, CUTTLE);
        assert_eq!(start_min(&workload, &cuttle, 4), Some(120));
        assert_eq!(
            start_min(&workload, &cuttle, 6),
            Some(192),
            "B not backfilled when A outlived its estimate"
        );
        assert_eq!(start_min(&workload, &cuttle, 5), Some(720), "H delayed");
        // Without backfill B waits for H, which waits for A.
        let (workload, strict) = run(text, 2, CUTTLE_NO_BACKFILL);
        assert_eq!(start_min(&workload, &strict, 5), Some(720));
        assert_eq!(start_min(&workload, &strict, 6), Some(730));
    }
}
