//! The discrete-event core: one virtual lab of identical nodes, a clock that jumps from
//! event to event (a job submitted, a job ended, an aging tick), and a [`Strategy`] asked
//! after every instant which queued jobs start. The engine owns the nodes and the clock;
//! a strategy owns only its queue, so every strategy is run by exactly the same rules and
//! cannot double-book a node (the engine refuses). Nothing here knows any policy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::workload::{Job, Workload};

/// What a strategy decided for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Lock its nodes and run it now.
    Start(usize),
    /// It never runs (e.g. it needs more nodes than the lab has).
    Bury(usize),
}

/// A way of choosing which queued jobs start.
pub trait Strategy {
    /// The name shown in reports.
    fn name(&self) -> &'static str;
    /// A job enters the queue.
    fn submit(&mut self, job: &Job);
    /// A job ended and gave its nodes back.
    fn finish(&mut self, job: &Job, now_ms: i64);
    /// Which queued jobs start (or are buried) at `now_ms`, with `free_nodes` free. The
    /// actions are applied in order; a strategy must drop the jobs it acts on from its
    /// queue.
    fn decide(&mut self, now_ms: i64, free_nodes: u32, actions: &mut Vec<Action>);
    /// Set when the strategy's decisions can change with time alone (aging, running jobs
    /// outliving their estimates): the engine then wakes it every interval while jobs
    /// wait, even if nothing else happens.
    fn tick_interval_ms(&self) -> Option<i64> {
        None
    }
    /// A moment, after `job` started at `start_ms`, at which the strategy wants to decide
    /// again if the job is still running then (cuttle: when it outlives its estimate,
    /// which changes what the policy assumes). `None`: no such moment.
    fn watch_ms(&self, _job: &Job, _start_ms: i64) -> Option<i64> {
        None
    }
    /// When to count the jobs queued ahead of `job`, for a wait bound stated from that
    /// moment on (cuttle: when aging brings the job to the top). `None`: never.
    fn checkpoint_ms(&self, _job: &Job) -> Option<i64> {
        None
    }
    /// At `job`'s checkpoint, how many queued jobs are ahead of it in the strategy's
    /// order, if the strategy knows (cuttle: its place in the dispatch order). `None`:
    /// the engine counts every other queued job that fits, a superset.
    fn ahead_in_order(&self, _job: &Job) -> Option<usize> {
        None
    }
}

/// The lab at one instant, after the strategy acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: i64,
    /// Jobs submitted and neither started nor buried.
    pub queued: u32,
    pub busy_nodes: u32,
}

/// What happened to every job under one strategy.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub strategy: &'static str,
    pub nodes: u32,
    /// When each job (by id) started; `None` if it never did.
    pub start_ms: Vec<Option<i64>>,
    pub buried: Vec<bool>,
    /// How many other jobs that fit the lab were queued (submitted, neither started nor
    /// buried) at each job's checkpoint ([`Strategy::checkpoint_ms`]), counting those
    /// submitted at that instant: the `ahead` of the policy's wait bound. `None` if the
    /// job started (or was buried) before its checkpoint, or has none.
    pub ahead: Vec<Option<usize>>,
    pub timeline: Vec<Sample>,
}

/// Event kinds, in the order they are handled within one instant: ends first, so nodes
/// freed at an instant are free for the jobs submitted at it. Submits come from the job
/// list, between ends and ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    End(usize),
    Tick,
    /// Wake the strategy if this job is still running (see [`Strategy::watch_ms`]).
    Watch(usize),
    /// Count the jobs queued ahead of this one (after the instant's submits, before the
    /// strategy acts). Only an observation: it does not wake the strategy.
    Checkpoint(usize),
}

/// Ticks in a row with an idle lab, nothing left to happen and nothing started, after
/// which a strategy is declared stuck: ten thousand hourly ticks are over a year.
const MAX_IDLE_TICKS: u32 = 10_000;

/// Replays `workload` on a lab of `nodes` nodes under `strategy`.
///
/// # Panics
/// If the strategy starts a job twice, starts a job that is not queued, or starts more
/// nodes' worth of jobs than are free: those are bugs in the strategy, and a simulation
/// that allowed them would report numbers no lab can reach.
pub fn simulate(workload: &Workload, nodes: u32, strategy: &mut dyn Strategy) -> Outcome {
    let jobs = &workload.jobs;
    let mut start_ms: Vec<Option<i64>> = vec![None; jobs.len()];
    let mut buried = vec![false; jobs.len()];
    let mut submitted = vec![false; jobs.len()];
    let mut ahead = vec![None; jobs.len()];
    let mut checkpoints = Vec::new();
    let mut timeline = Vec::new();
    let mut events: BinaryHeap<Reverse<(i64, Event)>> = BinaryHeap::new();
    let mut actions = Vec::new();
    let origin = jobs.first().map_or(0, |j| j.submit_ms);
    let fits = |job: &Job| job.n_nodes <= nodes;
    // Submits come from the (sorted) job list through a cursor rather than the heap.
    let mut next_submit = 0;
    let mut free = nodes;
    let mut queued: u32 = 0;
    let mut queued_fitting: usize = 0;
    let mut tick_pending = false;
    let mut idle_ticks = 0;

    loop {
        let next_event = events.peek().map(|Reverse((at, _))| *at);
        let next_job = jobs.get(next_submit).map(|j| j.submit_ms);
        let now = match (next_event, next_job) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        // Whether anything happened that the strategy must react to.
        let mut wake = false;
        while let Some(Reverse((at, event))) = events.peek().copied()
            && at == now
        {
            events.pop();
            match event {
                Event::End(id) => {
                    free += jobs[id].n_nodes;
                    strategy.finish(&jobs[id], now);
                    wake = true;
                }
                Event::Tick => {
                    tick_pending = false;
                    wake = true;
                }
                Event::Watch(id) => {
                    // Still running: it has not ended at or before this instant.
                    if start_ms[id].is_some_and(|start| start + jobs[id].ran_ms() > now) {
                        wake = true;
                    }
                }
                Event::Checkpoint(id) => checkpoints.push(id),
            }
        }
        while let Some(job) = jobs.get(next_submit)
            && job.submit_ms == now
        {
            submitted[job.id] = true;
            queued += 1;
            if fits(job) {
                queued_fitting += 1;
            }
            strategy.submit(job);
            if let Some(at) = strategy.checkpoint_ms(job) {
                if at <= now {
                    checkpoints.push(job.id);
                } else {
                    events.push(Reverse((at, Event::Checkpoint(job.id))));
                }
            }
            next_submit += 1;
            wake = true;
        }
        for id in checkpoints.drain(..) {
            if start_ms[id].is_none() && !buried[id] && fits(&jobs[id]) {
                // The others: the job itself is queued and fits (it has a checkpoint and
                // was not buried), so it is one of `queued_fitting`.
                ahead[id] = Some(
                    strategy
                        .ahead_in_order(&jobs[id])
                        .unwrap_or(queued_fitting.saturating_sub(1)),
                );
            }
        }
        if !wake {
            continue;
        }

        actions.clear();
        strategy.decide(now, free, &mut actions);
        for action in &actions {
            let (Action::Start(id) | Action::Bury(id)) = *action;
            let job = &jobs[id];
            assert!(
                submitted[id] && start_ms[id].is_none() && !buried[id],
                "{} acted on job {id}, which is not queued",
                strategy.name()
            );
            queued -= 1;
            if fits(job) {
                queued_fitting -= 1;
            }
            match *action {
                Action::Start(_) => {
                    assert!(
                        job.n_nodes <= free,
                        "{} started job {id} on {} nodes with {free} free",
                        strategy.name(),
                        job.n_nodes
                    );
                    free -= job.n_nodes;
                    start_ms[id] = Some(now);
                    events.push(Reverse((now + job.ran_ms(), Event::End(id))));
                    if let Some(at) = strategy.watch_ms(job, now)
                        && at > now
                        && at < now + job.ran_ms()
                    {
                        events.push(Reverse((at, Event::Watch(id))));
                    }
                }
                Action::Bury(_) => buried[id] = true,
            }
        }
        timeline.push(Sample {
            at_ms: now,
            queued,
            busy_nodes: nodes - free,
        });

        if let Some(interval) = strategy.tick_interval_ms().filter(|i| *i > 0)
            && queued > 0
            && !tick_pending
        {
            // With nothing left to happen but ticks, a strategy that starts nothing for
            // `MAX_IDLE_TICKS` ticks in a row is stuck: stop rather than spin forever (its
            // queued jobs are then reported as never started).
            let idle = events.is_empty() && next_submit == jobs.len() && free == nodes;
            idle_ticks = if idle && actions.is_empty() {
                idle_ticks + 1
            } else {
                0
            };
            if idle_ticks < MAX_IDLE_TICKS {
                let next_tick = origin + ((now - origin) / interval + 1) * interval;
                events.push(Reverse((next_tick, Event::Tick)));
                tick_pending = true;
            }
        }
    }

    Outcome {
        strategy: strategy.name(),
        nodes,
        start_ms,
        buried,
        ahead,
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::parse;

    /// Starts jobs first-fit in FIFO order; checkpoints every job 100 s after submit.
    #[derive(Debug, Default)]
    struct Fifo {
        queue: Vec<(usize, u32)>,
        too_big: Vec<usize>,
        nodes: u32,
    }

    impl Strategy for Fifo {
        fn name(&self) -> &'static str {
            "fifo"
        }
        fn submit(&mut self, job: &Job) {
            if job.n_nodes > self.nodes {
                self.too_big.push(job.id);
            } else {
                self.queue.push((job.id, job.n_nodes));
            }
        }
        fn finish(&mut self, _job: &Job, _now_ms: i64) {}
        fn decide(&mut self, _now_ms: i64, mut free: u32, actions: &mut Vec<Action>) {
            actions.extend(self.too_big.drain(..).map(Action::Bury));
            self.queue.retain(|&(id, n)| {
                if n <= free {
                    free -= n;
                    actions.push(Action::Start(id));
                    false
                } else {
                    true
                }
            });
        }
        fn checkpoint_ms(&self, job: &Job) -> Option<i64> {
            Some(job.submit_ms + 100_000)
        }
    }

    #[test]
    fn jobs_run_their_time_and_the_lab_is_sampled_after_each_instant() {
        // 2 nodes: job 0 (2 nodes) 0–50 s; job 1 queued at 10 s, runs 50–70 s; job 2 is
        // cut at its 5 s limit; job 3 needs 3 nodes and is buried.
        let workload =
            parse("0,1000,2,50,100\n10,1000,1,20,100\n10,1000,1,30,5\n20,1000,3,1,10\n").unwrap();
        let mut fifo = Fifo {
            nodes: 2,
            ..Fifo::default()
        };
        let outcome = simulate(&workload, 2, &mut fifo);
        assert_eq!(
            outcome.start_ms,
            vec![Some(0), Some(50_000), Some(50_000), None]
        );
        assert_eq!(outcome.buried, vec![false, false, false, true]);
        let at = |t: i64| *outcome.timeline.iter().find(|s| s.at_ms == t).unwrap();
        assert_eq!((at(10_000).queued, at(10_000).busy_nodes), (2, 2));
        assert_eq!((at(50_000).queued, at(50_000).busy_nodes), (0, 2));
        assert_eq!(at(55_000).busy_nodes, 1, "job 2 ended at its limit");
        assert_eq!(outcome.timeline.last().unwrap().at_ms, 70_000);
        // Checkpoints at submit + 100 s: all jobs had started by then.
        assert_eq!(outcome.ahead, vec![None; 4]);
    }

    #[test]
    fn the_checkpoint_counts_the_other_jobs_queued_then() {
        // 1 node held 0–500 s. Jobs 1 and 2 queue at 0 s; job 3 at 100 s (with job 1's
        // checkpoint) and job 4 at 150 s. At 100 s, job 1 sees jobs 2 and 3; at 200 s
        // job 3 sees jobs 1, 2 and 4. Checkpoints do not wake the strategy: no sample.
        let workload = parse(
            "0,1000,1,500,1000\n0,1000,1,10,1000\n0,1000,1,10,1000\n100,1000,1,10,1000\n150,1000,1,10,1000\n",
        )
        .unwrap();
        let mut fifo = Fifo {
            nodes: 1,
            ..Fifo::default()
        };
        let outcome = simulate(&workload, 1, &mut fifo);
        assert_eq!(
            outcome.ahead,
            vec![None, Some(2), Some(2), Some(3), Some(3)]
        );
        assert!(
            outcome
                .timeline
                .iter()
                .all(|s| s.at_ms != 200_000 && s.at_ms != 250_000)
        );
    }

    /// Starts a job only once it has waited 90 minutes: a decision that changes with time
    /// alone, like aging, which only the hourly tick can notice.
    #[derive(Debug, Default)]
    struct Patient {
        queue: Vec<(usize, i64)>,
    }

    impl Strategy for Patient {
        fn name(&self) -> &'static str {
            "patient"
        }
        fn submit(&mut self, job: &Job) {
            self.queue.push((job.id, job.submit_ms));
        }
        fn finish(&mut self, _job: &Job, _now_ms: i64) {}
        fn decide(&mut self, now_ms: i64, _free: u32, actions: &mut Vec<Action>) {
            self.queue.retain(|&(id, submitted)| {
                let ready = now_ms - submitted >= 90 * 60_000;
                if ready {
                    actions.push(Action::Start(id));
                }
                !ready
            });
        }
        fn tick_interval_ms(&self) -> Option<i64> {
            Some(3_600_000)
        }
    }

    #[test]
    fn ticks_wake_the_strategy_every_interval_while_jobs_wait() {
        // Ticks run on an hourly grid from the first submit (0 s): the job submitted at
        // 600 s is ready at 6000 s and starts at the 7200 s tick.
        let workload = parse("0,1000,1,10,100\n600,1000,1,10,100\n").unwrap();
        let outcome = simulate(&workload, 4, &mut Patient::default());
        assert_eq!(outcome.start_ms, vec![Some(7_200_000), Some(7_200_000)]);
        // Nothing is left queued, so the ticks stop and the run ends.
        assert_eq!(outcome.timeline.last().unwrap().at_ms, 7_210_000);
    }

    /// Never starts anything.
    #[derive(Debug, Default)]
    struct Stuck;

    impl Strategy for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        fn submit(&mut self, _job: &Job) {}
        fn finish(&mut self, _job: &Job, _now_ms: i64) {}
        fn decide(&mut self, _now_ms: i64, _free: u32, _actions: &mut Vec<Action>) {}
        fn tick_interval_ms(&self) -> Option<i64> {
            Some(1000)
        }
    }

    #[test]
    fn a_stuck_strategy_ends_the_run_instead_of_ticking_forever() {
        let workload = parse("0,1000,1,10,100\n").unwrap();
        let outcome = simulate(&workload, 4, &mut Stuck);
        assert_eq!(outcome.start_ms, vec![None]);
        let last = outcome.timeline.last().unwrap().at_ms;
        // The submit instant counts as the first idle one.
        assert_eq!(last, i64::from(MAX_IDLE_TICKS - 1) * 1000);
    }
}
