//! Workloads: the jobs a simulation replays, read from and written to the plain-text file
//! format documented in `docs/simulator.md` and `cuttle-sim --help`. Parsing is strict and
//! every error names the line and the field, because these files are written by hand and
//! by scripts; nothing here simulates or decides anything.
//!
//! Format: one job per line, `submit_s,priority,nodes,runtime_s,time_limit_s[,description]`;
//! `#` starts a comment; a `# nodes: K` comment sets the default lab size; blank lines are
//! ignored; a header line whose first field is `submit_s` is skipped.

use std::fmt;

/// The file's column names, in order; also the header line we write.
pub const FIELDS: [&str; 6] = [
    "submit_s",
    "priority",
    "nodes",
    "runtime_s",
    "time_limit_s",
    "description",
];

/// One job of a workload. Times are milliseconds (the policy's unit); the file says seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Position in submit order (ties keep file order); used as the job id everywhere, so
    /// id order is FIFO order.
    pub id: usize,
    /// The line of the file it came from (0 for generated jobs), for messages.
    pub line: usize,
    pub submit_ms: i64,
    /// beanstalkd priority: lower is sooner, teuthology's default is 1000.
    pub priority: u32,
    pub n_nodes: u32,
    /// How long it would run if nothing stopped it.
    pub runtime_ms: i64,
    /// It is ended at this limit (teuthology's job timeout).
    pub time_limit_ms: i64,
    /// The test it runs; history of a description narrows its estimate. `None` means no
    /// history is kept for it (its estimate stays its time limit).
    pub description: Option<String>,
}

impl Job {
    /// How long it holds its nodes: its runtime, cut at its time limit.
    pub fn ran_ms(&self) -> i64 {
        self.runtime_ms.min(self.time_limit_ms)
    }
}

/// The jobs, in submit order, and the lab size the file suggests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    pub jobs: Vec<Job>,
    /// From a `# nodes: K` comment, if the file has one.
    pub default_nodes: Option<u32>,
}

/// A malformed workload line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    /// The column at fault (one of [`FIELDS`], or `nodes` for a `# nodes:` comment).
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: field `{}`: {}",
            self.line, self.field, self.message
        )
    }
}

impl std::error::Error for ParseError {}

fn error(line: usize, field: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        field,
        message: message.into(),
    }
}

/// Seconds as written in a file (an integer or a decimal) to milliseconds.
fn parse_seconds(
    text: &str,
    line: usize,
    field: &'static str,
    allow_zero: bool,
) -> Result<i64, ParseError> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| error(line, field, format!("`{text}` is not a number of seconds")))?;
    // A year is far beyond any lab job and keeps the millisecond arithmetic far from
    // overflow.
    if !(0.0..=31_536_000.0).contains(&seconds) {
        return Err(error(
            line,
            field,
            format!("`{text}` must be between 0 and 31536000 seconds"),
        ));
    }
    let ms = (seconds * 1000.0).round() as i64;
    if ms == 0 && !allow_zero {
        return Err(error(line, field, "must be more than 0 seconds"));
    }
    Ok(ms)
}

fn parse_u32(text: &str, line: usize, field: &'static str) -> Result<u32, ParseError> {
    text.parse().map_err(|_| {
        error(
            line,
            field,
            format!("`{text}` is not a whole number from 0 to {}", u32::MAX),
        )
    })
}

/// Reads a `# nodes: K` comment; `None` for any other comment.
fn nodes_comment(comment: &str, line: usize) -> Result<Option<u32>, ParseError> {
    let Some(value) = comment.trim().strip_prefix("nodes:") else {
        return Ok(None);
    };
    let value = value.trim();
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(error(
            line,
            "nodes",
            format!("`# nodes: {value}` must name a lab size of at least 1 node"),
        )),
    }
}

/// Parses a workload file's text.
pub fn parse(text: &str) -> Result<Workload, ParseError> {
    let mut jobs = Vec::new();
    let mut default_nodes: Option<(u32, usize)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let (data, comment) = match raw.split_once('#') {
            Some((data, comment)) => (data, Some(comment)),
            None => (raw, None),
        };
        if let Some(comment) = comment
            && let Some(nodes) = nodes_comment(comment, line)?
        {
            if let Some((earlier, earlier_line)) = default_nodes
                && earlier != nodes
            {
                return Err(error(
                    line,
                    "nodes",
                    format!(
                        "`# nodes: {nodes}` contradicts `# nodes: {earlier}` on line {earlier_line}"
                    ),
                ));
            }
            default_nodes = Some((nodes, line));
        }
        let data = data.trim();
        if data.is_empty() {
            continue;
        }
        // The description is everything after the fifth comma, so it may hold commas.
        let fields: Vec<&str> = data.splitn(6, ',').map(str::trim).collect();
        if fields[0] == FIELDS[0] {
            continue; // the header line
        }
        if fields.len() < 5 {
            return Err(error(
                line,
                FIELDS[fields.len()],
                format!(
                    "missing: a job line has 5 or 6 comma-separated fields ({}), this one has {}",
                    FIELDS.join(","),
                    fields.len()
                ),
            ));
        }
        let submit_ms = parse_seconds(fields[0], line, "submit_s", true)?;
        let priority = parse_u32(fields[1], line, "priority")?;
        let n_nodes = parse_u32(fields[2], line, "nodes")?;
        if n_nodes == 0 {
            return Err(error(line, "nodes", "a job needs at least 1 node"));
        }
        let runtime_ms = parse_seconds(fields[3], line, "runtime_s", true)?;
        let time_limit_ms = parse_seconds(fields[4], line, "time_limit_s", false)?;
        let description = fields
            .get(5)
            .filter(|d| !d.is_empty())
            .map(|d| (*d).to_owned());
        jobs.push(Job {
            id: 0,
            line,
            submit_ms,
            priority,
            n_nodes,
            runtime_ms,
            time_limit_ms,
            description,
        });
    }
    Ok(Workload::new(jobs, default_nodes.map(|(n, _)| n)))
}

impl Workload {
    /// Puts the jobs in submit order (stable, so equal submit times keep their order) and
    /// numbers them.
    pub fn new(mut jobs: Vec<Job>, default_nodes: Option<u32>) -> Workload {
        jobs.sort_by_key(|job| job.submit_ms);
        for (id, job) in jobs.iter_mut().enumerate() {
            job.id = id;
        }
        Workload {
            jobs,
            default_nodes,
        }
    }

    /// The largest time limit of any job (what the policy's wait bound is stated with).
    pub fn max_time_limit_ms(&self) -> i64 {
        self.jobs.iter().map(|j| j.time_limit_ms).max().unwrap_or(0)
    }

    /// The file text for these jobs: `comments` (each line gets `# `), the `# nodes:` line
    /// if known, the header, then one line per job.
    pub fn to_file(&self, comments: &[String]) -> String {
        let mut out = String::new();
        for comment in comments {
            out.push_str("# ");
            out.push_str(comment);
            out.push('\n');
        }
        if let Some(nodes) = self.default_nodes {
            out.push_str(&format!("# nodes: {nodes}\n"));
        }
        out.push_str(&FIELDS.join(","));
        out.push('\n');
        for job in &self.jobs {
            out.push_str(&format!(
                "{},{},{},{},{}",
                seconds_text(job.submit_ms),
                job.priority,
                job.n_nodes,
                seconds_text(job.runtime_ms),
                seconds_text(job.time_limit_ms)
            ));
            if let Some(description) = &job.description {
                out.push(',');
                // A `#` would start a comment when the file is read back.
                out.push_str(&description.replace('#', "_"));
            }
            out.push('\n');
        }
        out
    }
}

/// Milliseconds as the shortest exact seconds text.
fn seconds_text(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jobs_comments_header_and_the_lab_size() {
        let text = "\
# a hand-written workload
# nodes: 12

submit_s,priority,nodes,runtime_s,time_limit_s,description
10,1000,2,600,3600,rados/thrash-1
0, 50 ,1, 30.5 ,60   # urgent, no description
20,2000,5,100,200,fs/snaps, with a comma
";
        let workload = parse(text).unwrap();
        assert_eq!(workload.default_nodes, Some(12));
        assert_eq!(workload.jobs.len(), 3);
        // Sorted by submit time and renumbered; lines kept.
        let first = &workload.jobs[0];
        assert_eq!((first.id, first.line, first.submit_ms), (0, 6, 0));
        assert_eq!((first.priority, first.n_nodes), (50, 1));
        assert_eq!((first.runtime_ms, first.time_limit_ms), (30_500, 60_000));
        assert_eq!(first.description, None);
        assert_eq!(workload.jobs[1].line, 5);
        assert_eq!(
            workload.jobs[1].description.as_deref(),
            Some("rados/thrash-1")
        );
        assert_eq!(
            workload.jobs[2].description.as_deref(),
            Some("fs/snaps, with a comma")
        );
        assert_eq!(workload.max_time_limit_ms(), 3_600_000);
    }

    #[test]
    fn a_file_without_a_nodes_comment_has_no_default_and_empty_is_fine() {
        let workload = parse("1,1000,1,10,20\n").unwrap();
        assert_eq!(workload.default_nodes, None);
        assert_eq!(parse("").unwrap().jobs.len(), 0);
    }

    fn error_of(text: &str) -> ParseError {
        parse(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let cases = [
            ("1,1000,1,10,20\nx,1000,1,10,20\n", 2, "submit_s"),
            ("\n\n-5,1000,1,10,20\n", 3, "submit_s"),
            ("1,high,1,10,20\n", 1, "priority"),
            ("1,-1,1,10,20\n", 1, "priority"),
            ("# c\n1,1000,0,10,20\n", 2, "nodes"),
            ("1,1000,two,10,20\n", 1, "nodes"),
            ("1,1000,1,ten,20\n", 1, "runtime_s"),
            ("1,1000,1,10,0\n", 1, "time_limit_s"),
            ("1,1000,1,10,inf\n", 1, "time_limit_s"),
            ("1,1000,1\n", 1, "runtime_s"),
            ("1,1000,1,10\n", 1, "time_limit_s"),
            ("# nodes: lots\n", 1, "nodes"),
            ("# nodes: 0\n", 1, "nodes"),
            ("# nodes: 4\n# nodes: 5\n", 2, "nodes"),
        ];
        for (text, line, field) in cases {
            let error = error_of(text);
            assert_eq!(
                (error.line, error.field),
                (line, field),
                "{text:?}: {error}"
            );
            let shown = error.to_string();
            assert!(
                shown.starts_with(&format!("line {line}: field `{field}`")),
                "{shown}"
            );
        }
    }

    #[test]
    fn writing_then_reading_gives_the_same_workload() {
        let workload =
            parse("# nodes: 7\n0,1000,1,1.25,3600,a\n5,50,3,7200,10800\n5,50,3,7200,10800,b#c\n")
                .unwrap();
        let text = workload.to_file(&["made by a test".to_owned()]);
        assert!(text.starts_with("# made by a test\n# nodes: 7\nsubmit_s,"));
        let again = parse(&text).unwrap();
        assert_eq!(again.jobs.len(), 3);
        assert_eq!(again.default_nodes, Some(7));
        for (a, b) in workload.jobs.iter().zip(&again.jobs) {
            assert_eq!(
                (
                    a.submit_ms,
                    a.priority,
                    a.n_nodes,
                    a.runtime_ms,
                    a.time_limit_ms
                ),
                (
                    b.submit_ms,
                    b.priority,
                    b.n_nodes,
                    b.runtime_ms,
                    b.time_limit_ms
                )
            );
            assert_eq!(a.description, b.description);
        }
    }

    #[test]
    fn a_run_past_its_limit_is_cut_at_the_limit() {
        let workload = parse("0,1000,1,500,100\n0,1000,1,50,100\n").unwrap();
        assert_eq!(workload.jobs[0].ran_ms(), 100_000);
        assert_eq!(workload.jobs[1].ran_ms(), 50_000);
    }
}
