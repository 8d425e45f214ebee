//! Goals 1–4 of docs/simulator.md on generated workloads the policy was not tuned on
//! (`scripts/sim-goals.py --unseen` runs 32 of them; these are four of those, of four
//! shapes). Goal 5, urgent p95 no worse than head-of-line, is not asserted: it misses on
//! 4 of the 27 with urgent work, by up to 20 minutes, as docs/simulator.md says.

use cuttle_policy::PolicyConfig;
use cuttle_sim::compare;
use cuttle_sim::generate::{self, GenerateConfig};
use cuttle_sim::metrics::Summary;

fn check(seed: u64, nodes: u32, days: u32) {
    let workload = generate::generate(GenerateConfig {
        seed,
        days,
        nodes,
        load: generate::DEFAULT_LOAD,
    });
    let comparison = compare(&workload, nodes, 8, PolicyConfig::default());
    let row = |name: &str| -> &Summary {
        comparison
            .summaries
            .iter()
            .find(|s| s.strategy == name)
            .unwrap()
    };
    let (cuttle, hol, legacy) = (row("cuttle"), row("head-of-line"), row("legacy-workers"));
    let shape = format!("seed {seed}, {nodes} nodes, {days} days");
    assert!(
        cuttle.utilization > hol.utilization,
        "{shape}: utilization cuttle {} vs head-of-line {}",
        cuttle.utilization,
        hol.utilization
    );
    let (n, biggest) = cuttle.biggest_jobs_max_wait().unwrap();
    let (_, biggest_legacy) = legacy.biggest_jobs_max_wait().unwrap();
    assert!(
        biggest < biggest_legacy,
        "{shape}: {n}-node jobs waited up to {biggest} s under cuttle, {biggest_legacy} s under legacy-workers"
    );
    assert_eq!(cuttle.bound_violations, Some(0), "{shape}");
    assert!(cuttle.max_wait_s <= cuttle.wait_bound_s.unwrap(), "{shape}");
    assert!(
        cuttle.utilization >= 0.95 * cuttle.upper_bound_utilization,
        "{shape}: utilization cuttle {} vs greedy {}",
        cuttle.utilization,
        cuttle.upper_bound_utilization
    );
}

#[test]
fn a_small_lab_for_two_days() {
    check(5, 30, 2);
}

#[test]
fn fifty_nodes_for_a_week() {
    check(8, 50, 7);
}

#[test]
fn a_hundred_nodes_for_five_days() {
    check(10, 100, 5);
}

#[test]
fn a_full_lab_for_a_week() {
    check(7, 200, 7);
}
