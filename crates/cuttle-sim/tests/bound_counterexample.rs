//! `workloads/bound-counterexample.csv`: a hand-made workload on which a policy that keeps
//! trusting runtime estimates after a backfilled job outlived its estimate breaks the wait
//! bound it states (the file's comments walk through the chain). It found that bug in the
//! policy of commit c8b19a4 (the head waited 151199 s, its bound is 72000 s); this test
//! keeps it found. Never make it pass by changing the workload or the check.

use cuttle_policy::PolicyConfig;
use cuttle_sim::{compare, workload};

#[test]
fn cuttle_keeps_its_stated_wait_bound_when_backfilled_jobs_outlive_their_estimates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../workloads/bound-counterexample.csv"
    );
    let workload = workload::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let comparison = compare(&workload, 2, 8, PolicyConfig::default());
    let violations = &comparison.bound.violations;
    assert!(
        violations.is_empty(),
        "(job, wait ms, bound ms) beyond the bound: {violations:?}"
    );
    // The scenario really is the chain: the head waits for at least one hung
    // backfilled run, or the workload no longer tests anything.
    let head = workload
        .jobs
        .iter()
        .find(|j| j.description.as_deref() == Some("head"))
        .unwrap();
    let cuttle = &comparison.outcomes[2];
    let wait = cuttle.start_ms[head.id].unwrap() - head.submit_ms;
    assert!(wait > 36_000_000, "the head waited only {wait} ms");
}
