//! The human-readable report: one table with a row per strategy and the greedy upper
//! bound under it, plus the loud warnings (a cuttle job beyond its stated wait bound, a
//! strategy that left jobs unstarted). It formats numbers computed elsewhere and must
//! never compute a metric of its own, so the table and `--json` always agree.

use std::io::{self, Write};

use crate::Comparison;
use crate::strategies::CUTTLE;
use crate::workload::Workload;

/// Most violating jobs listed one by one; the count always covers all of them.
const LISTED_VIOLATIONS: usize = 20;

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// Writes the table.
pub fn table(workload: &Workload, comparison: &Comparison, out: &mut dyn Write) -> io::Result<()> {
    let biggest = comparison
        .summaries
        .iter()
        .filter_map(|s| s.biggest_jobs_max_wait().map(|(n, _)| n))
        .max();
    let biggest_header = biggest.map_or_else(
        || "max_wait_biggest_s".to_owned(),
        |n| format!("max_wait_{n}node_s"),
    );
    let nodes = comparison.summaries.first().map_or(0, |s| s.nodes);
    writeln!(
        out,
        "{} jobs on {nodes} nodes; times in seconds; utilization = busy share of the lab while jobs were queued; idle_queued_s = node-seconds idle then",
        workload.jobs.len()
    )?;
    writeln!(
        out,
        "{:<19} {:>11} {:>15} {:>11} {:>13} {:>10} {:>13} {:>18} {:>14} {:>6} {:>16}",
        "strategy",
        "utilization",
        "util_makespan",
        "makespan_s",
        "idle_queued_s",
        "max_wait_s",
        "urgent_p95_s",
        biggest_header,
        "wait_bound_s",
        "buried",
        "bound_violations"
    )?;
    for s in &comparison.summaries {
        let biggest_wait = s
            .biggest_jobs_max_wait()
            .filter(|(n, _)| Some(*n) == biggest)
            .map(|(_, w)| w);
        writeln!(
            out,
            "{:<19} {:>11.4} {:>15.3} {:>11.0} {:>13.0} {:>10.0} {:>13} {:>18} {:>14} {:>6} {:>16}",
            s.strategy,
            s.utilization,
            s.utilization_over_makespan,
            s.makespan_s,
            s.idle_while_queued_node_s,
            s.max_wait_s,
            cell(s.urgent_p95()),
            cell(biggest_wait),
            cell(s.wait_bound_s),
            s.buried,
            s.bound_violations
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        )?;
    }
    if let Some(first) = comparison.summaries.first() {
        writeln!(
            out,
            "upper bound (greedy, priority-blind FIFO first-fit): utilization {:.4}",
            first.upper_bound_utilization
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
