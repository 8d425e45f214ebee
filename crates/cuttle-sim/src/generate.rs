//! The workload generator: a Sepia-style lab week drawn from a seed. The shape is an
//! estimate of what the Sepia lab sees, not a trace: a few hundred `smithi` nodes,
//! teuthology suites of hundreds of 1–3-node jobs running tens of minutes to hours, a few
//! 5-node jobs, priorities mostly the default 1000 with some urgent runs. It must stay a
//! pure function of its parameters (same seed, same jobs, on every machine), so it draws
//! only from [`crate::rng`].
//!
//! - Suites arrive through the days, more in weekday working hours (UTC) than at night
//!   and at weekends. Day 0 is a Monday.
//! - A suite is 50–400 jobs of one family (`rados/thrash`, `rbd/qemu`, …); job `i` runs the
//!   family's test `i % tests`, so descriptions repeat and the estimator learns them.
//! - A test (a description) always needs the same number of nodes (1: 35 %, 2: 45 %,
//!   3: 17 %, 5: 3 %), has a typical runtime (log-normal around 40 minutes times the
//!   family's factor, 5 minutes to 6 hours) and a time limit of 3–6× that, rounded up to
//!   the hour, at most 12 hours; each run takes its test's typical time ±15 %, and 1 % of
//!   runs hang until the time limit ends them.
//! - Suite priority: 70 % 1000, 10 % urgent 50, 8 % 100, 7 % 500, 5 % low 2000.
//! - Suites are added until the offered work (node-time) is `load` ([`DEFAULT_LOAD`])
//!   times what the lab can run in the period, so the load is the same for every seed
//!   and lab size: over capacity in weekday working hours, under at night and at
//!   weekends.

use crate::rng::{SplitMix64, fnv1a};
use crate::workload::{Job, Workload};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Arrivals are drawn per slot of this length.
const SLOT_MS: i64 = 10 * MINUTE_MS;

/// Offered work (node-time) over the period divided by what the lab can run in it.
pub const DEFAULT_LOAD: f64 = 1.0;

/// A suite family: its name, how many distinct tests it has, and how long its tests run
/// relative to the 40-minute median.
struct Family {
    name: &'static str,
    tests: u64,
    runtime_factor: f64,
}

const FAMILIES: [Family; 12] = [
    Family {
        name: "rados/thrash",
        tests: 40,
        runtime_factor: 1.0,
    },
    Family {
        name: "rados/verify",
        tests: 20,
        runtime_factor: 0.8,
    },
    Family {
        name: "rados/cephadm",
        tests: 30,
        runtime_factor: 0.9,
    },
    Family {
        name: "rbd/qemu",
        tests: 25,
        runtime_factor: 1.4,
    },
    Family {
        name: "rbd/mirror",
        tests: 20,
        runtime_factor: 1.1,
    },
    Family {
        name: "fs/snaps",
        tests: 30,
        runtime_factor: 1.2,
    },
    Family {
        name: "fs/workload",
        tests: 40,
        runtime_factor: 1.5,
    },
    Family {
        name: "rgw/multisite",
        tests: 15,
        runtime_factor: 1.3,
    },
    Family {
        name: "krbd/fsx",
        tests: 15,
        runtime_factor: 0.7,
    },
    Family {
        name: "upgrade/reef-x",
        tests: 10,
        runtime_factor: 2.5,
    },
    Family {
        name: "powercycle/osd",
        tests: 10,
        runtime_factor: 1.0,
    },
    Family {
        name: "smoke/basic",
        tests: 20,
        runtime_factor: 0.5,
    },
];

/// Node counts of tests and their weights.
const NODE_COUNTS: [(u32, f64); 4] = [(1, 0.35), (2, 0.45), (3, 0.17), (5, 0.03)];
/// Suite priorities and their weights.
const PRIORITIES: [(u32, f64); 5] = [
    (1000, 0.70),
    (50, 0.10),
    (100, 0.08),
    (500, 0.07),
    (2000, 0.05),
];
const MEDIAN_RUNTIME_MS: f64 = 40.0 * 60_000.0;
const RUNTIME_SIGMA: f64 = 0.6;
const MIN_RUNTIME_MS: f64 = 5.0 * 60_000.0;
const MAX_RUNTIME_MS: f64 = 6.0 * 3_600_000.0;
const MAX_TIME_LIMIT_MS: i64 = 12 * HOUR_MS;
const SUITE_JOBS: (u64, u64) = (50, 400);
const HANG_CHANCE: f64 = 0.01;
const RUNTIME_JITTER: f64 = 0.15;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateConfig {
    pub seed: u64,
    pub days: u32,
    pub nodes: u32,
    /// Mean offered work / lab capacity over the period ([`DEFAULT_LOAD`]).
    pub load: f64,
}

/// A test's fixed traits, derived from its description (and the seed) alone.
struct Test {
    n_nodes: u32,
    typical_runtime_ms: f64,
    time_limit_ms: i64,
}

fn test_traits(description: &str, runtime_factor: f64, seed: u64) -> Test {
    // Its own stream, so a test looks the same in every suite that runs it.
    let mut rng = SplitMix64::new(fnv1a(description) ^ seed.wrapping_mul(0x9E37_79B9));
    let weights: Vec<f64> = NODE_COUNTS.iter().map(|(_, w)| *w).collect();
    let n_nodes = NODE_COUNTS[rng.weighted(&weights)].0;
    let typical_runtime_ms = (rng.log_normal(MEDIAN_RUNTIME_MS, RUNTIME_SIGMA) * runtime_factor)
        .clamp(MIN_RUNTIME_MS, MAX_RUNTIME_MS);
    // Suites set generous timeouts: 3–6× the usual runtime, in whole hours.
    let limit = typical_runtime_ms * rng.uniform(3.0, 6.0);
    let hours = (limit / HOUR_MS as f64).ceil() as i64;
    let time_limit_ms = (hours * HOUR_MS).clamp(HOUR_MS, MAX_TIME_LIMIT_MS);
    Test {
        n_nodes,
        typical_runtime_ms,
        time_limit_ms,
    }
}

/// How likely a suite is submitted at `t`, relative to other times.
fn arrival_weight(t: i64) -> f64 {
    let day = (t / DAY_MS) % 7;
    let hour = (t % DAY_MS) / HOUR_MS;
    let weekday = day < 5;
    match (weekday, hour) {
        // Developers scheduling runs during the (mostly European and American) work day.
        (true, 7..=19) => 1.6,
        // Weekday nights: cron'd nightlies and the other side of the world.
        (true, _) => 0.6,
        (false, _) => 0.35,
    }
}

/// Generates a workload.
pub fn generate(config: GenerateConfig) -> Workload {
    let mut rng = SplitMix64::new(config.seed);
    let period_ms = i64::from(config.days.max(1)) * DAY_MS;
    let target_work = config.load.max(0.0) * f64::from(config.nodes) * period_ms as f64;
    let slot_weights: Vec<f64> = (0..period_ms / SLOT_MS)
        .map(|slot| arrival_weight(slot * SLOT_MS))
        .collect();
    let family_weights: Vec<f64> = FAMILIES.iter().map(|_| 1.0).collect();
    let priority_weights: Vec<f64> = PRIORITIES.iter().map(|(_, w)| *w).collect();

    // Suites are drawn until their work reaches the target, rather than counted from a
    // rate: a Poisson count of 50–400-job suites made one seed's week 25 % lighter than
    // another's, and the load is the knob that matters most. Each suite's arrival is
    // drawn from the weekly rhythm.
    let mut jobs = Vec::new();
    let mut work = 0.0;
    let mut suites = 0;
    while work < target_work || suites == 0 {
        let slot = rng.weighted(&slot_weights) as i64;
        let offset_s = rng.range_inclusive(0, (SLOT_MS / 1000 - 1) as u64) as i64;
        let submit_ms = slot * SLOT_MS + offset_s * 1000;
        let family = &FAMILIES[rng.weighted(&family_weights)];
        let priority = PRIORITIES[rng.weighted(&priority_weights)].0;
        let n_jobs = rng.range_inclusive(SUITE_JOBS.0, SUITE_JOBS.1);
        let mut suite = Vec::new();
        let mut suite_work = 0.0;
        for i in 0..n_jobs {
            let description = format!("{}-{}", family.name, i % family.tests);
            let test = test_traits(&description, family.runtime_factor, config.seed);
            let runtime_ms = if rng.chance(HANG_CHANCE) {
                // A hung run: only its time limit ends it.
                test.time_limit_ms + 10 * MINUTE_MS
            } else {
                let jitter = rng.uniform(1.0 - RUNTIME_JITTER, 1.0 + RUNTIME_JITTER);
                ((test.typical_runtime_ms * jitter / 1000.0).round() as i64 * 1000).max(1000)
            };
            suite_work += f64::from(test.n_nodes) * runtime_ms.min(test.time_limit_ms) as f64;
            suite.push(Job {
                id: 0,
                line: 0,
                submit_ms,
                priority,
                n_nodes: test.n_nodes,
                runtime_ms,
                time_limit_ms: test.time_limit_ms,
                description: Some(description),
            });
        }
        // Stop short of a suite that would overshoot the target by more than the gap it
        // fills (but always keep one suite, even for a lab too small for any).
        if suites > 0 && work + suite_work - target_work > target_work - work {
            break;
        }
        work += suite_work;
        suites += 1;
        jobs.extend(suite);
    }
    Workload::new(jobs, Some(config.nodes))
}

/// The comment lines a generated workload file starts with: how to make it again and what
/// its shape rests on.
pub fn describe(config: GenerateConfig) -> Vec<String> {
    let mut lines = vec![
        "cuttle-sim workload: a Sepia-style lab period, GENERATED. It is not a trace of any lab:"
            .to_owned(),
        "its shape is an estimate from what is publicly known about the Sepia lab and teuthology."
            .to_owned(),
        format!(
            "Made with: cuttle-sim --generate --seed {} --days {} --nodes {} --load {} --write-workload FILE",
            config.seed, config.days, config.nodes, config.load
        ),
    ];
    lines.extend(
        [
            "Where the shape comes from: Sepia has a few hundred smithi nodes; teuthology suites are",
            "hundreds of jobs of 1-3 nodes (here 35% 1, 45% 2, 17% 3 nodes) plus a few 5-node jobs (3%),",
            "running tens of minutes to hours (here log-normal around 40 min, at most 6 h); suites set",
            "long timeouts (here 3-6x the runtime rounded up to the hour, at most 12 h); some runs hang",
            "until the timeout (here 1%); priorities are mostly the default 1000 with some urgent runs",
            "(here per suite: 70% 1000, 10% 50, 8% 100, 7% 500, 5% 2000). Suites arrive more in weekday",
            "working hours (UTC) than at night or at weekends; day 0 is a Monday; suites are added until",
            "the offered node-time is --load times what the lab can run in the period.",
            "Columns: submit_s,priority,nodes,runtime_s,time_limit_s,description (see docs/simulator.md).",
        ]
        .map(str::to_owned),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> GenerateConfig {
        GenerateConfig {
            seed,
            days: 3,
            nodes: 50,
            load: DEFAULT_LOAD,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_workload_and_another_seed_another() {
        let a = generate(config(1));
        let b = generate(config(1));
        let c = generate(config(2));
        assert!(!a.jobs.is_empty());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_shape_is_the_documented_one() {
        let workload = generate(GenerateConfig {
            seed: 5,
            days: 7,
            nodes: 200,
            load: DEFAULT_LOAD,
        });
        let jobs = &workload.jobs;
        assert_eq!(workload.default_nodes, Some(200));
        assert!(jobs.len() > 5_000, "{} jobs", jobs.len());
        let share = |f: &dyn Fn(&Job) -> bool| {
            jobs.iter().filter(|j| f(j)).count() as f64 / jobs.len() as f64
        };
        let one = share(&|j| j.n_nodes == 1);
        let two = share(&|j| j.n_nodes == 2);
        let five = share(&|j| j.n_nodes == 5);
        assert!((0.2..0.5).contains(&one), "1-node share {one}");
        assert!((0.3..0.6).contains(&two), "2-node share {two}");
        assert!((0.005..0.08).contains(&five), "5-node share {five}");
        assert!(jobs.iter().all(|j| [1, 2, 3, 5].contains(&j.n_nodes)));
        assert!(jobs.iter().all(|j| j.time_limit_ms <= MAX_TIME_LIMIT_MS
            && j.time_limit_ms % HOUR_MS == 0
            && j.time_limit_ms >= HOUR_MS));
        let normal = share(&|j| j.priority == 1000);
        let urgent = share(&|j| j.priority == 50);
        assert!(
            normal > 0.5 && urgent > 0.02,
            "normal {normal} urgent {urgent}"
        );
        let hung = share(&|j| j.runtime_ms > j.time_limit_ms);
        assert!((0.003..0.03).contains(&hung), "hung share {hung}");
        let mut runtimes: Vec<i64> = jobs.iter().map(Job::ran_ms).collect();
        runtimes.sort_unstable();
        let median_min = runtimes[runtimes.len() / 2] / MINUTE_MS;
        assert!(
            (20..90).contains(&median_min),
            "median runtime {median_min} min"
        );
        // Descriptions repeat, so the estimator has history to learn from.
        let mut descriptions: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.description.as_deref())
            .collect();
        descriptions.sort_unstable();
        descriptions.dedup();
        assert!(descriptions.len() * 10 < jobs.len());
        // More work is submitted on weekdays than at the weekend.
        let on_day = |d: i64| jobs.iter().filter(|j| j.submit_ms / DAY_MS == d).count();
        assert!(
            on_day(2) > on_day(6),
            "Wednesday {} Sunday {}",
            on_day(2),
            on_day(6)
        );
        // The offered work is the lab's capacity over the week, give or take a suite.
        assert!((offered_load(&workload, 200, 7) - 1.0).abs() < 0.02);
    }

    fn offered_load(workload: &Workload, nodes: u32, days: u32) -> f64 {
        let work: f64 = workload
            .jobs
            .iter()
            .map(|j| f64::from(j.n_nodes) * j.ran_ms() as f64)
            .sum();
        work / (f64::from(nodes) * f64::from(days) * DAY_MS as f64)
    }

    #[test]
    fn the_load_knob_sets_the_offered_work_for_every_seed() {
        for seed in 1..=4 {
            for load in [0.5, 1.0, 1.3] {
                let workload = generate(GenerateConfig {
                    seed,
                    days: 7,
                    nodes: 100,
                    load,
                });
                let offered = offered_load(&workload, 100, 7);
                assert!(
                    (offered - load).abs() < 0.05 * load,
                    "seed {seed}: asked {load}, got {offered}"
                );
            }
        }
    }

    #[test]
    fn a_test_keeps_its_traits_across_suites() {
        let workload = generate(config(3));
        let mut seen: std::collections::HashMap<&str, (u32, i64)> = Default::default();
        for job in &workload.jobs {
            let traits = (job.n_nodes, job.time_limit_ms);
            let first = *seen
                .entry(job.description.as_deref().unwrap())
                .or_insert(traits);
            assert_eq!(first, traits, "{:?}", job.description);
        }
    }

    #[test]
    fn a_tiny_lab_still_gets_a_suite() {
        let workload = generate(GenerateConfig {
            seed: 1,
            days: 1,
            nodes: 1,
            load: DEFAULT_LOAD,
        });
        assert!(workload.jobs.len() >= 50);
    }
}
