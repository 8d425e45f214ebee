//! The standard workload, `workloads/sepia-week.csv`, run through every strategy, and the
//! goals cuttle's policy is held to on it. The simulation runs once per test binary (it
//! takes seconds in debug) and each goal is its own test, so a failure names the goal.
//! A goal that the current policy misses is `#[ignore]`d with the reason, never
//! loosened: run `cargo test -p cuttle-sim -- --ignored` to see it fail.

use std::sync::OnceLock;

use cuttle_policy::PolicyConfig;
use cuttle_sim::generate::{self, GenerateConfig};
use cuttle_sim::goals::Goal;
use cuttle_sim::metrics::Summary;
use cuttle_sim::{Comparison, compare, workload};

/// The seed and shape the file was generated with (its header says the same).
const STANDARD: GenerateConfig = GenerateConfig {
    seed: 1,
    days: 7,
    nodes: 200,
    load: generate::DEFAULT_LOAD,
};

fn standard_text() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../workloads/sepia-week.csv"
    );
    std::fs::read_to_string(path).expect("workloads/sepia-week.csv is readable")
}

fn comparison() -> &'static Comparison {
    static COMPARISON: OnceLock<Comparison> = OnceLock::new();
    COMPARISON.get_or_init(|| {
        let workload = workload::parse(&standard_text()).expect("the standard workload parses");
        let nodes = workload.default_nodes.expect("it names its lab size");
        compare(&workload, nodes, 8, PolicyConfig::default())
    })
}

fn row(strategy: &str) -> &'static Summary {
    comparison().row(strategy)
}

/// Fails the test with the goal's numbers if it does not hold.
fn goal(goal: Goal) {
    if let Err(why) = comparison().check(goal) {
        panic!("{goal:?}: {why}");
    }
}

#[test]
fn the_file_is_what_the_generator_makes_for_its_seed() {
    let file = workload::parse(&standard_text()).unwrap();
    let generated = generate::generate(STANDARD);
    assert_eq!(file.default_nodes, Some(STANDARD.nodes));
    assert_eq!(file.jobs.len(), generated.jobs.len());
    for (a, b) in file.jobs.iter().zip(&generated.jobs) {
        assert_eq!(
            (
                a.submit_ms,
                a.priority,
                a.n_nodes,
                a.runtime_ms,
                a.time_limit_ms,
                &a.description
            ),
            (
                b.submit_ms,
                b.priority,
                b.n_nodes,
                b.runtime_ms,
                b.time_limit_ms,
                &b.description
            ),
            "line {}",
            a.line
        );
    }
}

#[test]
fn every_strategy_runs_every_job_and_cuttle_keeps_its_wait_bound() {
    for summary in &comparison().summaries {
        assert_eq!(summary.never_started, 0, "{}", summary.strategy);
        assert_eq!(
            summary.buried, 0,
            "{}: nothing is too big",
            summary.strategy
        );
    }
    goal(Goal::WaitBound);
    assert!(row("head-of-line").wait_bound_s.is_none());
}

#[test]
fn cuttle_reaches_95_percent_of_the_greedy_upper_bound() {
    goal(Goal::NearGreedy);
}

/// Utilization counts the lab while jobs wait (see `metrics::utilization`); divided by the
/// makespan instead, cuttle loses this (0.967 against 0.969) to whichever long runs
/// happen to start last as the queue drains (docs/simulator.md, Finding 1).
#[test]
fn cuttle_utilization_beats_head_of_line() {
    goal(Goal::Utilization);
}

#[test]
fn cuttle_biggest_jobs_wait_less_than_under_legacy_workers() {
    goal(Goal::BiggestJobs);
}

/// Held since aging went from 10 points an hour to 5 (now 3; at 10, cuttle 21513 s against
/// head-of-line's 9165 s: day-old priority-100 suites ranked with fresh urgent work).
#[test]
fn cuttle_urgent_p95_wait_is_no_worse_than_head_of_line() {
    goal(Goal::UrgentP95);
}

#[test]
fn the_stated_bound_is_within_three_times_the_longest_wait() {
    // A bound of weeks against waits of days constrains nothing (issue 16).
    let cuttle = row("cuttle");
    let bound = cuttle.wait_bound_s.expect("cuttle states a bound");
    assert!(
        bound <= 3.0 * cuttle.max_wait_s,
        "bound {bound} s, longest wait {} s",
        cuttle.max_wait_s
    );
}
