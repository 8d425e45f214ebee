//! How close cuttle's start-time estimates come to what then happens. A sample of jobs
//! (every k-th submitted) is given the estimate cuttle-api would show right after it was
//! scheduled (`cuttle_policy::forecast` over the whole queue, at its submit instant,
//! before that instant's decisions); the run then goes on under the same policy, and each
//! estimate is compared with the job's real start. Estimates go wrong where the lab does
//! not behave as estimated: runtimes differ from their description's history (or a job
//! has none and is estimated at its time limit), and more urgent work arrives later.

use std::collections::HashMap;

use cuttle_policy::PolicyConfig;

use crate::engine::{Action, Strategy, simulate};
use crate::strategies::Cuttle;
use crate::workload::{Job, Workload};

/// Estimates made and what happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    /// Jobs in the workload.
    pub jobs: usize,
    /// Jobs given an estimate at submit.
    pub sampled: usize,
    /// Sampled jobs whose estimate was "unknown" (nothing visible let them start).
    pub unknown: usize,
    /// For each sampled job that got a time and started: actual start − estimate, seconds.
    pub errors_s: Vec<f64>,
    /// The same jobs' real waits, seconds.
    pub waits_s: Vec<f64>,
}

/// The `p`-th percentile (0–100) of `values`, nearest rank; 0 when empty.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Accuracy {
    /// Absolute errors, seconds.
    pub fn abs_errors_s(&self) -> Vec<f64> {
        self.errors_s.iter().map(|e| e.abs()).collect()
    }

    /// The share of estimates within `seconds` of the real start, or within `share` of
    /// the real wait, whichever is larger.
    pub fn within(&self, seconds: f64, share: f64) -> f64 {
        if self.errors_s.is_empty() {
            return 0.0;
        }
        let close = self
            .errors_s
            .iter()
            .zip(&self.waits_s)
            .filter(|(error, wait)| error.abs() <= seconds.max(share * **wait))
            .count();
        close as f64 / self.errors_s.len() as f64
    }

    /// The report `cuttle-sim --estimates` prints.
    pub fn report(&self) -> String {
        let abs = self.abs_errors_s();
        let late: Vec<f64> = self.errors_s.clone();
        format!(
            "start-time estimates (cuttle, made at submit over the whole queue): {} of {} jobs sampled, {} with a time, {} unknown\n\
             |actual - estimated| in seconds: p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}\n\
             actual - estimated (negative: started early): p10 {:.0}  p50 {:.0}  p90 {:.0}\n\
             real wait of those jobs in seconds: p50 {:.0}  p90 {:.0}\n\
             within 5 min or 10% of the wait: {:.1}%; within 1 h or 25%: {:.1}%\n",
            self.sampled,
            self.jobs,
            self.errors_s.len(),
            self.unknown,
            percentile(&abs, 50.0),
            percentile(&abs, 90.0),
            percentile(&abs, 99.0),
            percentile(&abs, 100.0),
            percentile(&late, 10.0),
            percentile(&late, 50.0),
            percentile(&late, 90.0),
            percentile(&self.waits_s, 50.0),
            percentile(&self.waits_s, 90.0),
            100.0 * self.within(300.0, 0.10),
            100.0 * self.within(3600.0, 0.25),
        )
    }
}

/// The cuttle strategy, asking for a forecast at the instants sampled jobs arrive.
struct Forecasting<'a> {
    inner: Cuttle<'a>,
    every: usize,
    pending: Vec<usize>,
    /// Per job: `None` not sampled; `Some(None)` estimated unknown; `Some(Some(t))`.
    estimates: Vec<Option<Option<i64>>>,
}

impl Strategy for Forecasting<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn submit(&mut self, job: &Job) {
        self.inner.submit(job);
        if job.id.is_multiple_of(self.every) {
            self.pending.push(job.id);
        }
    }

    fn finish(&mut self, job: &Job, now_ms: i64) {
        self.inner.finish(job, now_ms);
    }

    fn decide(&mut self, now_ms: i64, free_nodes: u32, actions: &mut Vec<Action>) {
        if !self.pending.is_empty() {
            let forecasts: HashMap<u64, Option<i64>> = self
                .inner
                .forecast(now_ms, free_nodes)
                .into_iter()
                .map(|f| (f.job, f.start))
                .collect();
            for id in self.pending.drain(..) {
                self.estimates[id] = Some(forecasts.get(&(id as u64)).copied().flatten());
            }
        }
        self.inner.decide(now_ms, free_nodes, actions);
    }

    fn tick_interval_ms(&self) -> Option<i64> {
        self.inner.tick_interval_ms()
    }

    fn watch_ms(&self, job: &Job, start_ms: i64) -> Option<i64> {
        self.inner.watch_ms(job, start_ms)
    }

    fn checkpoint_ms(&self, job: &Job) -> Option<i64> {
        self.inner.checkpoint_ms(job)
    }
}

/// Replays `workload` under cuttle's policy (planning over `window` jobs as the
/// dispatcher does) and measures the estimates of about `samples` jobs.
pub fn measure(
    workload: &Workload,
    nodes: u32,
    config: PolicyConfig,
    window: usize,
    samples: usize,
) -> Accuracy {
    let jobs = &workload.jobs;
    let every = (jobs.len() / samples.max(1)).max(1);
    let mut strategy = Forecasting {
        inner: Cuttle::new(jobs, nodes, config).with_window(window),
        every,
        pending: Vec::new(),
        estimates: vec![None; jobs.len()],
    };
    let outcome = simulate(workload, nodes, &mut strategy);
    let mut accuracy = Accuracy {
        jobs: jobs.len(),
        ..Accuracy::default()
    };
    for job in jobs {
        let Some(estimate) = strategy.estimates[job.id] else {
            continue;
        };
        accuracy.sampled += 1;
        match (estimate, outcome.start_ms[job.id]) {
            (Some(estimated), Some(started)) => {
                accuracy
                    .errors_s
                    .push((started - estimated) as f64 / 1000.0);
                accuracy
                    .waits_s
                    .push((started - job.submit_ms) as f64 / 1000.0);
            }
            (None, _) => accuracy.unknown += 1,
            // Estimated but never started: buried (the estimate said unknown then too).
            (Some(_), None) => accuracy.unknown += 1,
        }
    }
    accuracy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: usize, submit_s: i64, n_nodes: u32, runtime_s: i64, description: &str) -> Job {
        Job {
            id,
            line: 0,
            submit_ms: submit_s * 1000,
            priority: 1000,
            n_nodes,
            runtime_ms: runtime_s * 1000,
            time_limit_ms: 3_600_000,
            description: Some(description.into()),
        }
    }

    #[test]
    fn estimates_are_exact_when_runtimes_match_their_history() {
        // On 2 nodes, three runs of "y" take 600 s; with no history yet the third is
        // estimated at its time limit (3600 s) and starts 3000 s early. Those three teach
        // the estimator that "y" likely takes 600 s (the median), and the eight later jobs
        // of "y" run exactly that: every estimate made at their submit is exact, four
        // waves deep, although the policy plans with 720 s (600 s + 20 %).
        let mut jobs: Vec<Job> = (0..3).map(|i| job(i, 0, 1, 600, "y")).collect();
        jobs.extend((3..11).map(|i| job(i, 100_000, 1, 600, "y")));
        let workload = Workload {
            jobs,
            default_nodes: Some(2),
        };
        let accuracy = measure(&workload, 2, PolicyConfig::default(), usize::MAX, 11);
        assert_eq!((accuracy.sampled, accuracy.unknown), (11, 0));
        assert_eq!(accuracy.errors_s[..3], [0.0, 0.0, -3000.0]);
        assert!(
            accuracy.errors_s[3..].iter().all(|e| *e == 0.0),
            "{:?}",
            accuracy.errors_s
        );
        assert_eq!(
            accuracy.waits_s[3..],
            [0.0, 0.0, 600.0, 600.0, 1200.0, 1200.0, 1800.0, 1800.0]
        );
        let report = accuracy.report();
        assert!(report.contains("11 of 11 jobs sampled"), "{report}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&values, 50.0), 3.0);
        assert_eq!(percentile(&values, 100.0), 5.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&[], 90.0), 0.0);
    }
}
