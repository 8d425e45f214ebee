//! The human-readable report: one table with a row per strategy and the greedy yardstick
//! and the proven utilization bound under it, plus the loud warnings (a cuttle job beyond its stated wait bound, a
//! strategy that left jobs unstarted). It formats numbers computed elsewhere and must
//! never compute a metric of its own, so the table and `--json` always agree.

use std::fmt::Write as _;
use std::io::{self, Write};

use cuttle_policy::PolicyConfig;

use crate::Comparison;
use crate::metrics::stated_bound;
use crate::strategies::CUTTLE;
use crate::workload::Workload;

/// Most violating jobs listed one by one; the count always covers all of them.
const LISTED_VIOLATIONS: usize = 20;

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// Writes the table.
pub fn table(workload: &Workload, comparison: &Comparison, out: &mut dyn Write) -> io::Result<()> {
    let widest = comparison
        .summaries
        .iter()
        .filter_map(|s| s.widest_nodes)
        .max();
    let widest_header = widest.map_or_else(
        || "max_wait_widest_s".to_owned(),
        |n| format!("max_wait_{n}node_s"),
    );
    let nodes = comparison.summaries.first().map_or(0, |s| s.nodes);
    writeln!(
        out,
        "{} jobs on {nodes} nodes; times in seconds; waits of all started jobs (nearest-rank percentiles); utilization = busy share of the lab while jobs were queued",
        workload.jobs.len()
    )?;
    writeln!(
        out,
        "{:<19} {:>10} {:>9} {:>9} {:>9} {:>10} {:>12} {:>18} {:>11} {:>13} {:>13} {:>12} {:>6} {:>10}",
        "strategy",
        "mean_wait",
        "p50_wait",
        "p95_wait",
        "p99_wait",
        "max_wait",
        "urgent_p95",
        widest_header,
        "utilization",
        "util_makespan",
        "idle_queued_s",
        "wait_bound",
        "buried",
        "violations"
    )?;
    for s in &comparison.summaries {
        let widest_wait = s
            .biggest_jobs_max_wait()
            .filter(|(n, _)| Some(*n) == widest)
            .map(|(_, w)| w);
        writeln!(
            out,
            "{:<19} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>12} {:>18} {:>11.4} {:>13.4} {:>13.0} {:>12} {:>6} {:>10}",
            s.strategy,
            s.mean_wait_s,
            s.p50_wait_s,
            s.p95_wait_s,
            s.p99_wait_s,
            s.max_wait_s,
            cell(s.urgent_p95()),
            cell(widest_wait),
            s.utilization,
            s.utilization_over_makespan,
            s.idle_while_queued_node_s,
            cell(s.wait_bound_s),
            s.buried,
            s.bound_violations
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        )?;
    }
    if let Some(first) = comparison.summaries.first() {
        writeln!(
            out,
            "yardstick: greedy (priority-blind FIFO first-fit) utilization {:.4}, not a bound; \
             proven bound on util_makespan for any strategy: {:.4}",
            first.greedy_utilization, first.utilization_over_makespan_bound
        )?;
    }
    Ok(())
}

/// Writes a WARNING line for each cuttle job that waited past its bound (the first few,
/// then a count) and for every strategy that left jobs neither started nor buried.
pub fn warnings(
    workload: &Workload,
    comparison: &Comparison,
    err: &mut dyn Write,
) -> io::Result<()> {
    let violations = &comparison.bound.violations;
    for &(id, wait, bound) in violations.iter().take(LISTED_VIOLATIONS) {
        let job = &workload.jobs[id];
        writeln!(
            err,
            "WARNING: {CUTTLE}: job {id} (line {}, priority {}, {} nodes) waited {:.0} s, MORE than the policy's stated wait bound of {:.0} s",
            job.line,
            job.priority,
            job.n_nodes,
            wait as f64 / 1000.0,
            bound as f64 / 1000.0
        )?;
    }
    if !violations.is_empty() {
        writeln!(
            err,
            "WARNING: {CUTTLE}: {} job(s) waited longer than the wait bound cuttle_policy::wait_bound states",
            violations.len()
        )?;
    }
    for s in &comparison.summaries {
        if s.never_started > 0 {
            writeln!(
                err,
                "WARNING: {}: {} job(s) were never started nor buried",
                s.strategy, s.never_started
            )?;
        }
    }
    Ok(())
}

/// Seconds with the millisecond kept, without trailing zeros: `12`, `12.5`, `0.001`.
fn seconds_text(ms: i64) -> String {
    let text = format!("{}.{:03}", ms / 1000, (ms % 1000).abs());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if ms < 0 && !text.starts_with('-') {
        format!("-{text}")
    } else {
        text.to_owned()
    }
}

/// `--starts FILE`: one CSV line per job, in submit order, with what each strategy did
/// with it, so a single job's fate can be followed and a replay written elsewhere can be
/// checked job by job, not only on the summary figures. Columns: `job` (submit order),
/// `line` (of the workload file; 0 for generated jobs), `submit_s`, `priority`, `nodes`,
/// `runtime_s`, `time_limit_s`, then `wait_s` under each strategy in report order (empty
/// if it never started), then `cuttle_bound_s`, the wait bound cuttle's policy (`config`)
/// states for the job ([`stated_bound`], as the bound check counts it; empty without
/// aging).
pub fn starts_csv(workload: &Workload, comparison: &Comparison, config: &PolicyConfig) -> String {
    let mut text = String::from("job,line,submit_s,priority,nodes,runtime_s,time_limit_s");
    for outcome in &comparison.outcomes {
        let _ = write!(text, ",{}_wait_s", outcome.strategy);
    }
    text.push_str(",cuttle_bound_s\n");
    let cuttle = comparison
        .outcomes
        .iter()
        .find(|outcome| outcome.strategy == CUTTLE);
    let max_time_limit_ms = workload.max_time_limit_ms();
    for job in &workload.jobs {
        let _ = write!(
            text,
            "{},{},{},{},{},{},{}",
            job.id,
            job.line,
            seconds_text(job.submit_ms),
            job.priority,
            job.n_nodes,
            seconds_text(job.runtime_ms),
            seconds_text(job.time_limit_ms)
        );
        for outcome in &comparison.outcomes {
            text.push(',');
            if let Some(start) = outcome.start_ms[job.id] {
                text.push_str(&seconds_text(start - job.submit_ms));
            }
        }
        text.push(',');
        if let Some(bound) =
            cuttle.and_then(|outcome| stated_bound(job, outcome, max_time_limit_ms, config))
        {
            text.push_str(&seconds_text(bound));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Outcome;
    use crate::metrics::BoundCheck;
    use crate::workload::parse;

    #[test]
    fn a_job_beyond_its_bound_gets_a_loud_warning_line() {
        let workload = parse("0,50,2,60,3600\n").unwrap();
        let outcome = Outcome {
            strategy: "greedy",
            nodes: 2,
            start_ms: vec![Some(0)],
            buried: vec![false],
            ahead: vec![None],
            timeline: vec![],
        };
        let mut comparison = Comparison {
            summaries: vec![],
            outcomes: vec![],
            greedy: outcome,
            bound: BoundCheck {
                max_bound_ms: Some(4_000),
                violations: vec![],
            },
        };
        let mut err = Vec::new();
        warnings(&workload, &comparison, &mut err).unwrap();
        assert!(err.is_empty());
        comparison.bound.violations.push((0, 5_000, 4_000));
        warnings(&workload, &comparison, &mut err).unwrap();
        let text = String::from_utf8(err).unwrap();
        assert!(
            text.contains("WARNING: cuttle: job 0 (line 1, priority 50, 2 nodes) waited 5 s, MORE than the policy's stated wait bound of 4 s"),
            "{text}"
        );
        assert!(text.contains("1 job(s) waited longer"), "{text}");
    }
}
