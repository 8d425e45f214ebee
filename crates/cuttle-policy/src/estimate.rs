//! Runtime estimates: a job's time limit, narrowed by the history of jobs with the same
//! description. A time limit is set for the worst case (teuthology's default is days);
//! the same test usually takes about as long as it did before, and a tighter estimate
//! lets backfill use nodes a pessimistic one would leave idle.
//!
//! The estimate is the longest runtime seen among the last [`WINDOW`] runs of the
//! description, plus [`MARGIN_PERCENT`], never above the time limit, and only once
//! [`MIN_SAMPLES`] runs have been seen. A run that overshoots its estimate is still ended
//! at its time limit, which is what the wait bound is built on.

use std::collections::{HashMap, VecDeque};

/// Runs of a description remembered.
pub const WINDOW: usize = 20;
/// Runs needed before the history is trusted.
pub const MIN_SAMPLES: usize = 3;
/// Head room over the longest run seen.
pub const MARGIN_PERCENT: i64 = 20;

/// Remembers how long jobs of each description ran.
#[derive(Debug, Clone, Default)]
pub struct Estimator {
    runs: HashMap<String, VecDeque<i64>>,
}

impl Estimator {
    pub fn new() -> Estimator {
        Estimator::default()
    }

    /// Records a finished run of `description` that took `runtime_ms`.
    pub fn record(&mut self, description: &str, runtime_ms: i64) {
        let runs = self.runs.entry(description.to_owned()).or_default();
        if runs.len() == WINDOW {
            runs.pop_front();
        }
        runs.push_back(runtime_ms.max(0));
    }

    /// The estimate for a job of `description` with this time limit.
    pub fn estimate(&self, description: &str, time_limit_ms: i64) -> i64 {
        match self.runs.get(description) {
            Some(runs) if runs.len() >= MIN_SAMPLES => {
                let longest = runs.iter().copied().max().unwrap_or(time_limit_ms);
                let padded = longest
                    .saturating_add(longest * MARGIN_PERCENT / 100)
                    .max(1);
                padded.min(time_limit_ms)
            }
            _ => time_limit_ms,
        }
    }

    /// How long a job of `description` will most likely run: the median of its last runs
    /// (one is enough), never above the time limit; `None` without history. The policy
    /// plans with [`Estimator::estimate`], which must not be short; start-time forecasts
    /// time the lab with this one, which should be close.
    pub fn likely(&self, description: &str, time_limit_ms: i64) -> Option<i64> {
        let runs = self.runs.get(description).filter(|runs| !runs.is_empty())?;
        let mut sorted: Vec<i64> = runs.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[(sorted.len() - 1) / 2].min(time_limit_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_likely_runtime_is_the_median_of_the_history() {
        let mut estimator = Estimator::new();
        assert_eq!(estimator.likely("rados/basic", 10_000), None);
        estimator.record("rados/basic", 4_000);
        assert_eq!(estimator.likely("rados/basic", 10_000), Some(4_000));
        estimator.record("rados/basic", 1_000);
        estimator.record("rados/basic", 9_000);
        assert_eq!(estimator.likely("rados/basic", 10_000), Some(4_000));
        assert_eq!(estimator.likely("rados/basic", 3_000), Some(3_000));
    }

    #[test]
    fn history_narrows_the_time_limit_once_there_is_enough() {
        let mut estimator = Estimator::new();
        assert_eq!(estimator.estimate("rados/basic", 10_000), 10_000);
        estimator.record("rados/basic", 1_000);
        estimator.record("rados/basic", 2_000);
        assert_eq!(
            estimator.estimate("rados/basic", 10_000),
            10_000,
            "two runs are not enough"
        );
        estimator.record("rados/basic", 1_500);
        assert_eq!(estimator.estimate("rados/basic", 10_000), 2_400);
        assert_eq!(
            estimator.estimate("rados/basic", 2_000),
            2_000,
            "never above the limit"
        );
        assert_eq!(estimator.estimate("rbd/basic", 10_000), 10_000);
    }

    #[test]
    fn only_recent_runs_count() {
        let mut estimator = Estimator::new();
        estimator.record("d", 9_000);
        for _ in 0..WINDOW {
            estimator.record("d", 1_000);
        }
        assert_eq!(estimator.estimate("d", 10_000), 1_200);
    }
}
