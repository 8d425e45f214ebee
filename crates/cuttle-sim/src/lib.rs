//! `cuttle-sim`: a discrete-event simulator that replays a workload on a virtual lab of
//! identical nodes and runs, side by side on the same workload, teuthology's two ways of
//! choosing jobs (competing workers, head-of-line dispatcher) and cuttle's policy (the
//! very `cuttle_policy::plan` the dispatcher calls), with a greedy packer as yardstick.
//! It is how the policy is tuned; it never talks to a real lab, reads no clock and uses no
//! randomness but its own seeded generator, so a run is reproducible.
//!
//! Layout: [`workload`] (file format) and [`generate`] (Sepia-style weeks) make the jobs;
//! [`engine`] runs one [`strategies`] entry over them; [`metrics`] counts; [`report`] and
//! [`plot`] show; [`goals`] are the policy's targets; [`estimates`] measures the start-time
//! estimates; [`cli`] is the command line.

pub mod cli;
pub mod easy;
pub mod engine;
pub mod estimates;
pub mod generate;
pub mod goals;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod rng;
pub mod strategies;
pub mod swf;
pub mod workload;

use cuttle_policy::PolicyConfig;

use crate::easy::Easy;
use crate::engine::{Outcome, simulate};
use crate::metrics::{BoundCheck, Summary, check_bound, summarize, utilization};
use crate::strategies::{Cuttle, Greedy, HeadOfLine, LegacyWorkers};
use crate::workload::Workload;

/// Every strategy run on one workload.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// One row per strategy, in report order: legacy-workers, head-of-line, cuttle,
    /// cuttle-no-backfill, easy.
    pub summaries: Vec<Summary>,
    /// What happened under each, in the same order.
    pub outcomes: Vec<Outcome>,
    /// The greedy packer's run (the yardstick; not a bound).
    pub greedy: Outcome,
    /// cuttle's waits against the bound its policy states.
    pub bound: BoundCheck,
}

/// Runs every strategy on `workload` in a lab of `nodes` nodes, `workers` legacy workers;
/// `cuttle` runs with `config` (`PolicyConfig::default()` unless tuning) and
/// `cuttle-no-backfill` with the same but `backfill: false`, both over the dispatcher's
/// default look-ahead window.
pub fn compare(
    workload: &Workload,
    nodes: u32,
    workers: usize,
    config: PolicyConfig,
) -> Comparison {
    compare_with_window(
        workload,
        nodes,
        workers,
        config,
        cuttle_policy::DEFAULT_WINDOW,
    )
}

/// [`compare`] with the cuttle strategies planning over `window` queued jobs.
pub fn compare_with_window(
    workload: &Workload,
    nodes: u32,
    workers: usize,
    config: PolicyConfig,
    window: usize,
) -> Comparison {
    let jobs = &workload.jobs;
    let cuttle_config = PolicyConfig {
        backfill: true,
        ..config
    };
    let no_backfill_config = PolicyConfig {
        backfill: false,
        ..config
    };
    // The runs share nothing but the read-only workload: run them on all cores.
    let (legacy, head_of_line, cuttle, no_backfill, easy, greedy) = std::thread::scope(|scope| {
        let legacy = scope.spawn(|| {
            simulate(
                workload,
                nodes,
                &mut LegacyWorkers::new(jobs, nodes, workers),
            )
        });
        let head_of_line =
            scope.spawn(|| simulate(workload, nodes, &mut HeadOfLine::new(jobs, nodes)));
        let cuttle = scope.spawn(|| {
            simulate(
                workload,
                nodes,
                &mut Cuttle::new(jobs, nodes, cuttle_config).with_window(window),
            )
        });
        let no_backfill = scope.spawn(|| {
            simulate(
                workload,
                nodes,
                &mut Cuttle::new(jobs, nodes, no_backfill_config).with_window(window),
            )
        });
        let easy = scope.spawn(|| simulate(workload, nodes, &mut Easy::new(jobs, nodes)));
        let greedy = simulate(workload, nodes, &mut Greedy::new(nodes));
        let join = |handle: std::thread::ScopedJoinHandle<'_, Outcome>| {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        (
            join(legacy),
            join(head_of_line),
            join(cuttle),
            join(no_backfill),
            join(easy),
            greedy,
        )
    });
    let greedy_utilization = utilization(&greedy);
    let bound = check_bound(workload, &cuttle, &cuttle_config);
    let outcomes = vec![legacy, head_of_line, cuttle, no_backfill, easy];
    let summaries = outcomes
        .iter()
        .map(|outcome| {
            let checked = (outcome.strategy == strategies::CUTTLE).then_some(&bound);
            summarize(workload, outcome, greedy_utilization, checked)
        })
        .collect();
    Comparison {
        summaries,
        outcomes,
        greedy,
        bound,
    }
}
