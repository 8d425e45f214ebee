//! The wait bound cuttle's policy states (`cuttle_policy::wait_bound`) against many
//! random workloads built to stress it: urgent and low work mixed, repeated descriptions
//! so estimates come from history, and runs that hang to their limit so estimates are
//! wrong. Any job past its bound fails the test with the seed that made it; never
//! loosen the check to make it pass.

use cuttle_policy::PolicyConfig;
use cuttle_sim::rng::SplitMix64;
use cuttle_sim::{compare, workload};

/// One random workload for a lab of `nodes`: jobs arriving in bursts (suites), so queues
/// build and heads wait.
fn random_workload(seed: u64, nodes: u64) -> String {
    let mut rng = SplitMix64::new(seed);
    let mut text = String::new();
    let mut at = 0;
    for _ in 0..rng.range_inclusive(5, 25) {
        at += rng.range_inclusive(0, 20_000);
        let priority =
            [20, 50, 100, 500, 1000, 1000, 1000, 2000, 5000][rng.range_inclusive(0, 8) as usize];
        for _ in 0..rng.range_inclusive(1, 12) {
            let test = rng.range_inclusive(0, 5);
            let limit = [600, 1800, 3600, 7200, 14400, 43200][test as usize];
            // Usually a fifth to a half of the limit; now and then hung to it.
            let runtime = if rng.chance(0.05) {
                limit
            } else {
                limit * rng.range_inclusive(20, 50) / 100
            };
            text.push_str(&format!(
                "{at},{priority},{},{runtime},{limit},test-{test}\n",
                rng.range_inclusive(1, nodes)
            ));
        }
    }
    text
}

#[test]
fn no_cuttle_job_ever_waits_past_its_stated_bound() {
    for seed in 0..60 {
        let nodes = 2 + seed % 7;
        let text = random_workload(seed, nodes);
        let workload = workload::parse(&text).unwrap();
        let comparison = compare(&workload, nodes as u32, 4, PolicyConfig::default());
        let violations = &comparison.bound.violations;
        assert!(
            violations.is_empty(),
            "seed {seed}, {nodes} nodes: (job, wait ms, bound ms) {violations:?}"
        );
    }
}
