//! The Parallel Workloads Archive's Standard Workload Format (SWF), read into a
//! [`Workload`]: real traces nobody here generated, replayed in the same model as the
//! lab's own workloads. Parsing is strict and every error names the line and the field;
//! the caller adds the file name. Nothing here simulates or decides anything.
//!
//! SWF (<https://www.cs.huji.ac.il/labs/parallel/workload/swf.html>) is one job a line,
//! 18 whitespace-separated numbers, `-1` for unknown; header lines start with `;`. What
//! is taken, and the rules for what SWF does not say:
//!
//! - **submit** (field 2) is the submit time; **run time** (field 4) the runtime. A job
//!   whose run time is unknown (`-1`) never ran on the machine and is skipped.
//! - **nodes**: the allocated processors (field 5), else the requested ones (field 8); one
//!   processor is one node (the archive's SP2-style traces have `MaxNodes = MaxProcs`).
//!   A job with neither is skipped. The lab size defaults to the header's `MaxProcs`,
//!   else `MaxNodes`.
//! - **time limit**: the requested time (field 9), what EASY backfill plans with and
//!   what ended a job on those machines. Without one, the run time rounded up to the
//!   next whole hour ([`NO_REQUEST_ROUNDING_S`]): a limit a person would have set, so
//!   both cuttle and EASY plan with the slack a real limit has.
//! - **priority**: SWF has none. Every job with a job number divisible by
//!   [`URGENT_EVERY`] is urgent (priority 50), the rest teuthology's default (1000): a
//!   tenth of the jobs, spread evenly over the trace and over users and sizes, like the
//!   tenth of urgent suites in the generated weeks.
//! - **description** (what cuttle's estimator learns runtimes by): `user U, N nodes,
//!   limit T s` from fields 12, 5 and 9: a user resubmitting the same-sized job with the
//!   same limit is, more often than not, running the same thing again.

use crate::workload::{Job, ParseError, Workload};

/// The SWF fields, 1-based as the format numbers them: `SWF_FIELDS[i]` is field `i + 1`.
pub const SWF_FIELDS: [&str; 18] = [
    "job_number",
    "submit_time",
    "wait_time",
    "run_time",
    "allocated_processors",
    "average_cpu_time",
    "used_memory",
    "requested_processors",
    "requested_time",
    "requested_memory",
    "status",
    "user_id",
    "group_id",
    "executable",
    "queue",
    "partition",
    "preceding_job",
    "think_time",
];

/// One job in this many (by job number) is urgent.
pub const URGENT_EVERY: u64 = 10;
/// The priority of urgent jobs (the generated weeks' urgent suites have 50).
pub const URGENT_PRIORITY: u32 = 50;
/// The priority of all other jobs: teuthology's default.
pub const NORMAL_PRIORITY: u32 = 1000;
/// A job without a requested time gets its run time rounded up to a multiple of this.
pub const NO_REQUEST_ROUNDING_S: i64 = 3600;

/// What reading a trace skipped, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skipped {
    /// Jobs with an unknown run time (they never ran).
    pub no_runtime: usize,
    /// Jobs with neither allocated nor requested processors.
    pub no_processors: usize,
}

fn error(line: usize, field: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        field: SWF_FIELDS[field],
        message: message.into(),
    }
}

/// A header line's value for `key` (`; MaxProcs: 100` → `Some("100")`).
fn header_value<'a>(comment: &'a str, key: &str) -> Option<&'a str> {
    let (name, value) = comment.split_once(':')?;
    (name.trim() == key).then_some(value.trim())
}

/// Parses an SWF trace's text; also says what it skipped.
pub fn parse(text: &str) -> Result<(Workload, Skipped), ParseError> {
    let mut jobs = Vec::new();
    let mut skipped = Skipped::default();
    let (mut max_procs, mut max_nodes) = (None, None);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let data = raw.trim();
        if let Some(comment) = data.strip_prefix(';') {
            for (key, slot) in [("MaxProcs", &mut max_procs), ("MaxNodes", &mut max_nodes)] {
                if let Some(value) = header_value(comment, key) {
                    // Some traces say `-1` or leave it empty: no lab size then.
                    *slot = value.parse::<u32>().ok().filter(|n| *n > 0);
                }
            }
            continue;
        }
        if data.is_empty() {
            continue;
        }
        let fields: Vec<&str> = data.split_whitespace().collect();
        if fields.len() < SWF_FIELDS.len() {
            return Err(error(
                line,
                fields.len(),
                format!(
                    "missing: an SWF job line has {} whitespace-separated fields, this one has {}",
                    SWF_FIELDS.len(),
                    fields.len()
                ),
            ));
        }
        if fields.len() > SWF_FIELDS.len() {
            return Err(ParseError {
                line,
                field: "think_time",
                message: format!(
                    "an SWF job line has {} fields, this one has {}",
                    SWF_FIELDS.len(),
                    fields.len()
                ),
            });
        }
        // Every field is a whole number, -1 meaning unknown; some converters write
        // decimals (`-1.00`, `3600.5`), so accept those and round.
        let mut numbers = [0i64; 18];
        for (i, text) in fields.iter().enumerate() {
            let value: f64 = text
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| error(line, i, format!("`{text}` is not a number")))?;
            if !(-1.0..=1e12).contains(&value) {
                return Err(error(
                    line,
                    i,
                    format!("`{text}` is out of range (-1 for unknown, else 0 to 10^12)"),
                ));
            }
            numbers[i] = value.round() as i64;
        }
        let [
            job_number,
            submit_s,
            _wait,
            run_s,
            allocated,
            _cpu,
            _memory,
            requested,
            requested_s,
            _requested_memory,
            _status,
            user,
            ..,
        ] = numbers;
        if submit_s < 0 {
            return Err(error(line, 1, "the submit time is unknown (-1)"));
        }
        if run_s < 0 {
            skipped.no_runtime += 1;
            continue;
        }
        let processors = if allocated > 0 { allocated } else { requested };
        if processors <= 0 {
            skipped.no_processors += 1;
            continue;
        }
        let n_nodes = u32::try_from(processors).map_err(|_| {
            error(
                line,
                if allocated > 0 { 4 } else { 7 },
                format!("{processors} processors is more than any lab"),
            )
        })?;
        let limit_s = if requested_s > 0 {
            requested_s
        } else {
            // At least one rounding step, so a 0-second run still gets a limit.
            (run_s / NO_REQUEST_ROUNDING_S + 1) * NO_REQUEST_ROUNDING_S
        };
        let priority = if u64::try_from(job_number).is_ok_and(|n| n % URGENT_EVERY == 0) {
            URGENT_PRIORITY
        } else {
            NORMAL_PRIORITY
        };
        jobs.push(Job {
            id: 0,
            line,
            submit_ms: submit_s * 1000,
            priority,
            n_nodes,
            runtime_ms: run_s * 1000,
            time_limit_ms: limit_s * 1000,
            description: Some(format!("user {user}, {n_nodes} nodes, limit {limit_s} s")),
        });
    }
    let workload = Workload::new(jobs, max_procs.or(max_nodes));
    Ok((workload, skipped))
}

/// Whether `path` names an SWF trace (by its extension, `.swf`).
pub fn is_swf(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("swf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "\
; Version: 2.2
; Computer: a test machine
; MaxNodes: 10
; MaxProcs: 12
";

    #[test]
    fn reads_the_fields_the_header_and_the_rules() {
        let text = format!(
            "{HEADER}\
    1   100  5  3600  4  -1 -1  4  7200 -1 1 7 1 -1 -1 -1 -1 -1
   10    50  0    30 -1  -1 -1  2    -1 -1 1 8 1 -1 -1 -1 -1 -1
   11   200  0    -1  2  -1 -1  2  3600 -1 5 7 1 -1 -1 -1 -1 -1
   12   300  0    10 -1  -1 -1 -1  3600 -1 5 7 1 -1 -1 -1 -1 -1
   20   400  0  7200.0 1 -1 -1  1    -1 -1 1 9 1 -1 -1 -1 -1 -1
"
        );
        let (workload, skipped) = parse(&text).unwrap();
        assert_eq!(workload.default_nodes, Some(12), "MaxProcs wins");
        assert_eq!(
            skipped,
            Skipped {
                no_runtime: 1,
                no_processors: 1
            }
        );
        assert_eq!(workload.jobs.len(), 3);
        // In submit order: job 10 (50 s), job 1 (100 s), job 20 (400 s).
        let [urgent, normal, rounded] = &workload.jobs[..] else {
            panic!("{:?}", workload.jobs)
        };
        assert_eq!((urgent.line, urgent.priority), (6, URGENT_PRIORITY));
        assert_eq!(
            urgent.n_nodes, 2,
            "requested processors when none allocated"
        );
        assert_eq!(urgent.time_limit_ms, 3_600_000, "30 s rounds up to an hour");
        assert_eq!((normal.line, normal.priority), (5, NORMAL_PRIORITY));
        assert_eq!(
            (normal.submit_ms, normal.runtime_ms, normal.time_limit_ms),
            (100_000, 3_600_000, 7_200_000)
        );
        assert_eq!(normal.n_nodes, 4);
        assert_eq!(
            normal.description.as_deref(),
            Some("user 7, 4 nodes, limit 7200 s")
        );
        assert_eq!(rounded.priority, URGENT_PRIORITY);
        assert_eq!(
            rounded.time_limit_ms, 10_800_000,
            "a whole 2 h run gets 3 h"
        );
    }

    #[test]
    fn without_a_size_header_there_is_no_default_lab() {
        let (workload, _) = parse("1 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1\n").unwrap();
        assert_eq!(workload.default_nodes, None);
        let (workload, _) = parse("; MaxNodes: 64\n; MaxProcs: -1\n").unwrap();
        assert_eq!(workload.default_nodes, Some(64));
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let good = "1 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1";
        let cases = [
            (
                "1 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1".to_owned(),
                1,
                "think_time",
            ),
            ("1 0 0 10".to_owned(), 1, "allocated_processors"),
            (
                format!("; c\n{good}\n1 x 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1"),
                3,
                "submit_time",
            ),
            (
                "1 0 0 ten 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1".to_owned(),
                1,
                "run_time",
            ),
            (
                "1 0 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1 9".to_owned(),
                1,
                "think_time",
            ),
            (
                "1 -1 0 10 1 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1".to_owned(),
                1,
                "submit_time",
            ),
            (
                "1 0 0 10 1 -1 -1 1 -5 -1 1 1 1 -1 -1 -1 -1 -1".to_owned(),
                1,
                "requested_time",
            ),
            (
                "1 0 0 10 99999999999 -1 -1 1 60 -1 1 1 1 -1 -1 -1 -1 -1".to_owned(),
                1,
                "allocated_processors",
            ),
            (
                "1 0 0 10 1 -1 -1 1 NaN -1 1 1 1 -1 -1 -1 -1 -1".to_owned(),
                1,
                "requested_time",
            ),
        ];
        for (text, line, field) in cases {
            let error = parse(&text).unwrap_err();
            assert_eq!(
                (error.line, error.field),
                (line, field),
                "{text:?}: {error}"
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("line {line}: field `{field}`")),
                "{error}"
            );
        }
    }

    #[test]
    fn swf_files_are_known_by_their_extension() {
        assert!(is_swf(std::path::Path::new("traces/KTH-SP2.swf")));
        assert!(is_swf(std::path::Path::new("A.SWF")));
        assert!(!is_swf(std::path::Path::new("sepia-week.csv")));
        assert!(!is_swf(std::path::Path::new("x.swf.gz")));
    }
}
