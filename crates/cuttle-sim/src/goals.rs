//! The five goals cuttle's policy is held to (docs/simulator.md), each a check of one
//! [`Comparison`]: the standard-workload and generated-workload tests call these, so a
//! goal is written once.

use crate::Comparison;
use crate::metrics::Summary;

/// One of the goals, numbered as docs/simulator.md numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// 1: cuttle's utilization above head-of-line's.
    Utilization,
    /// 2: cuttle's biggest jobs wait less, at most, than under legacy-workers.
    BiggestJobs,
    /// 3: no cuttle job waited past its stated bound.
    WaitBound,
    /// 4: cuttle's utilization at least 95 % of the greedy packer's.
    NearGreedy,
    /// 5: cuttle's urgent p95 wait no worse than head-of-line's.
    UrgentP95,
}

impl Comparison {
    /// The row of `strategy`.
    ///
    /// # Panics
    /// If there is none: every comparison has all four strategies.
    pub fn row(&self, strategy: &str) -> &Summary {
        self.summaries
            .iter()
            .find(|s| s.strategy == strategy)
            .unwrap_or_else(|| panic!("no row for {strategy}"))
    }

    /// Whether `goal` holds; if not, what the numbers were.
    pub fn check(&self, goal: Goal) -> Result<(), String> {
        let cuttle = self.row("cuttle");
        let hol = self.row("head-of-line");
        let holds = |ok: bool, why: String| if ok { Ok(()) } else { Err(why) };
        match goal {
            Goal::Utilization => holds(
                cuttle.utilization > hol.utilization,
                format!(
                    "utilization: cuttle {} vs head-of-line {} (node-s idle while jobs waited: {} vs {})",
                    cuttle.utilization,
                    hol.utilization,
                    cuttle.idle_while_queued_node_s,
                    hol.idle_while_queued_node_s
                ),
            ),
            Goal::BiggestJobs => {
                let legacy = self.row("legacy-workers");
                let (Some((n, ours)), Some((n_legacy, theirs))) = (
                    cuttle.biggest_jobs_max_wait(),
                    legacy.biggest_jobs_max_wait(),
                ) else {
                    return Err("no job started".to_owned());
                };
                holds(
                    n == n_legacy && ours < theirs,
                    format!(
                        "{n}-node jobs: cuttle max wait {ours} s; {n_legacy}-node jobs: legacy-workers {theirs} s"
                    ),
                )
            }
            Goal::WaitBound => {
                let Some(bound) = cuttle.wait_bound_s else {
                    return Err("cuttle states no bound".to_owned());
                };
                holds(
                    cuttle.bound_violations == Some(0) && cuttle.max_wait_s <= bound,
                    format!(
                        "cuttle max wait {} s, bound {bound} s, {:?} jobs past their own bound",
                        cuttle.max_wait_s, cuttle.bound_violations
                    ),
                )
            }
            Goal::NearGreedy => holds(
                cuttle.utilization >= 0.95 * cuttle.greedy_utilization,
                format!(
                    "utilization: cuttle {} vs greedy {}",
                    cuttle.utilization, cuttle.greedy_utilization
                ),
            ),
            Goal::UrgentP95 => {
                let (Some(ours), Some(theirs)) = (cuttle.urgent_p95(), hol.urgent_p95()) else {
                    return Err("no urgent job ran".to_owned());
                };
                holds(
                    ours <= theirs,
                    format!("urgent p95 wait: cuttle {ours} s, head-of-line {theirs} s"),
                )
            }
        }
    }
}
