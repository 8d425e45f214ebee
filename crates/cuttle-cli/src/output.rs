//! Everything `cuttle` prints on stdout: aligned tables, `key: value` blocks, and the JSON
//! shapes of the API's messages.
//!
//! The JSON field names are the proto field names (snake_case) and statuses are their
//! names (`"queued"`), never enum numbers: scripts depend on them, so renaming a field here
//! is a breaking change. This module formats; it never calls the API.
//!
//! Colour is only ever added by [`Paint`], around a status word, after the text was made
//! one line: text from the server never reaches the terminal with its own escapes, and
//! JSON is never coloured.

use std::collections::BTreeMap;
use std::io::Write;

use cuttle_core::JobStatus;
use cuttle_proto::convert::status_name;
use cuttle_proto::v1;
use serde::Serialize;

use crate::cli::ColorChoice;
use crate::error::{Failure, one_line};
use crate::time::format_unix_millis;

/// Whether stdout gets ANSI colours: decided once per command from `--color`, NO_COLOR
/// and whether stdout is a terminal, then handed to whatever renders statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paint {
    enabled: bool,
}

impl Paint {
    /// No colour: pipes, files, NO_COLOR, `--color never`, and the tests.
    pub const OFF: Paint = Paint { enabled: false };
    /// Colour.
    pub const ON: Paint = Paint { enabled: true };

    /// `--color`'s rule: `always` and `never` say it all; `auto` colours only a terminal,
    /// and only when NO_COLOR is unset or empty (no-color.org: a flag given on the command
    /// line wins over NO_COLOR).
    pub fn resolve(choice: ColorChoice, no_color: Option<&str>, stdout_is_terminal: bool) -> Paint {
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout_is_terminal && no_color.is_none_or(str::is_empty),
        };
        Paint { enabled }
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    /// `text` in the colour of the job or run status it names (pass green, fail red, dead
    /// bold red, killed magenta, running blue, waiting ones yellow); other text, or any
    /// text when colour is off, unchanged.
    pub fn status(self, text: &str) -> String {
        match status_style(text) {
            Some(style) if self.enabled => format!("\x1b[{style}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }

    /// A run's counts as `queued=2 running=1`, each pair in its status's colour.
    pub fn counts(self, counts: &std::collections::HashMap<String, u32>) -> String {
        counts_summary(counts)
            .split(' ')
            .map(|pair| match pair.split_once('=') {
                Some((name, n)) => format!("{}={n}", self.status(name)),
                None => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The SGR parameters of a status's colour.
fn status_style(status: &str) -> Option<&'static str> {
    match status {
        "pass" => Some("32"),
        "fail" => Some("31"),
        "dead" => Some("1;31"),
        "killed" => Some("35"),
        "running" => Some("34"),
        "queued" | "waiting" | "waiting_for_build" => Some("33"),
        _ => None,
    }
}

/// Writes `text` to stdout, adding a final newline if it lacks one. A closed pipe
/// (`cuttle run list | head`) is not an error.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                stdout.write_all(b"\n")
            }
        })
        .and_then(|()| stdout.flush());
    match result {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Output(error)),
        _ => Ok(()),
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| Failure::Output(std::io::Error::other(error)))?;
    print(&text)
}

/// A table: a header row in capitals, then one row per item, every column left-aligned
/// and padded to its widest cell, two spaces between columns. Empty cells show as `-` and
/// line breaks inside a cell become spaces, so each row stays one line for `grep`/`awk`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    painted_table(headers, rows, Paint::OFF, &[])
}

/// [`table`] with the cells of `status_columns` (by index) painted as statuses. The
/// colour goes around the cell, never into the padding, so columns stay aligned.
pub fn painted_table(
    headers: &[&str],
    rows: &[Vec<String>],
    paint: Paint,
    status_columns: &[usize],
) -> String {
    let clean = |cell: &str| {
        let cell = one_line(cell);
        if cell.is_empty() {
            "-".to_owned()
        } else {
            cell
        }
    };
    let header_row: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| clean(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header_row.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (column, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(column) {
                Some(widest) => *widest = (*widest).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for (index, row) in std::iter::once(&header_row).chain(body.iter()).enumerate() {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let shown = if index > 0 && status_columns.contains(&column) {
                paint.status(cell)
            } else {
                cell.clone()
            };
            line.push_str(&shown);
            // No padding after the last cell: trailing spaces only confuse diffs.
            if column + 1 < row.len() {
                let padding = widths[column] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', padding + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values aligned, one field per line.
pub fn fields(pairs: &[(&str, String)]) -> String {
    painted_fields(pairs, Paint::OFF, &[])
}

/// [`fields`] with the values of `status_keys` painted as statuses.
pub fn painted_fields(pairs: &[(&str, String)], paint: Paint, status_keys: &[&str]) -> String {
    // The widest key plus its colon.
    let width = pairs
        .iter()
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = one_line(value);
        let value = if status_keys.contains(key) {
            paint.status(&value)
        } else {
            value
        };
        let line = format!("{:<width$}  {value}", format!("{key}:"));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// An optional number, or `-`.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

/// A run's job counts as `queued=2 running=1`, statuses in life order, unknown names last.
pub fn counts_summary(counts: &std::collections::HashMap<String, u32>) -> String {
    let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
    let mut parts: Vec<String> = known
        .iter()
        .filter_map(|name| counts.get(*name).map(|n| format!("{name}={n}")))
        .collect();
    let mut unknown: Vec<(&String, &u32)> = counts
        .iter()
        .filter(|(name, _)| !known.contains(&name.as_str()))
        .collect();
    unknown.sort();
    parts.extend(unknown.into_iter().map(|(name, n)| format!("{name}={n}")));
    parts.join(" ")
}

/// A node as JSON.
#[derive(Debug, Serialize)]
pub struct NodeJson<'a> {
    pub name: &'a str,
    pub machine_type: &'a str,
    pub up: bool,
    pub locked: bool,
    pub locked_by: &'a str,
    pub locked_job_id: Option<i64>,
    pub locked_since_ms: Option<i64>,
    pub description: &'a str,
    pub os_type: &'a str,
    pub os_version: &'a str,
    /// Its ssh host key; empty when not known.
    pub ssh_key: &'a str,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl<'a> From<&'a v1::Node> for NodeJson<'a> {
    fn from(node: &'a v1::Node) -> Self {
        NodeJson {
            name: &node.name,
            machine_type: &node.machine_type,
            up: node.up,
            locked: node.locked,
            locked_by: &node.locked_by,
            locked_job_id: node.locked_job_id,
            locked_since_ms: node.locked_since_ms,
            description: &node.description,
            os_type: &node.os_type,
            os_version: &node.os_version,
            ssh_key: &node.ssh_key,
            created_at_ms: node.created_at_ms,
            updated_at_ms: node.updated_at_ms,
        }
    }
}

/// Nodes as a JSON array.
pub fn nodes_json(nodes: &[v1::Node]) -> Vec<NodeJson<'_>> {
    nodes.iter().map(NodeJson::from).collect()
}

/// A job as JSON.
#[derive(Debug, Serialize)]
pub struct JobJson<'a> {
    pub id: i64,
    pub run_name: &'a str,
    pub owner: &'a str,
    pub description: &'a str,
    pub machine_type: &'a str,
    pub priority: u32,
    pub n_nodes: u32,
    pub time_limit_s: Option<u32>,
    pub os_type: &'a str,
    pub os_version: &'a str,
    pub status: String,
    pub reason: &'a str,
    pub beanstalk_id: Option<u64>,
    pub config_yaml: &'a str,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub heartbeat_at_ms: Option<i64>,
    pub nodes: &'a [String],
    pub dispatcher: &'a str,
    pub supervisor_host: &'a str,
    pub supervisor_pid: u32,
    pub started_at_ms: Option<i64>,
    /// Why a waiting job has not started (queue listings and `run show`); empty otherwise.
    pub waiting_for: &'a str,
    /// When a waiting job is expected to start (Unix milliseconds), if known.
    pub estimated_start_ms: Option<i64>,
    /// The estimate is only the latest it should start (jobs ahead have no history).
    pub estimated_start_is_latest: bool,
}

impl<'a> From<&'a v1::Job> for JobJson<'a> {
    fn from(job: &'a v1::Job) -> Self {
        JobJson {
            id: job.id,
            run_name: &job.run_name,
            owner: &job.owner,
            description: &job.description,
            machine_type: &job.machine_type,
            priority: job.priority,
            n_nodes: job.n_nodes,
            time_limit_s: job.time_limit_s,
            os_type: &job.os_type,
            os_version: &job.os_version,
            status: status_name(job.status),
            reason: &job.reason,
            beanstalk_id: job.beanstalk_id,
            config_yaml: &job.config_yaml,
            created_at_ms: job.created_at_ms,
            updated_at_ms: job.updated_at_ms,
            heartbeat_at_ms: job.heartbeat_at_ms,
            nodes: &job.nodes,
            dispatcher: &job.dispatcher,
            supervisor_host: &job.supervisor_host,
            supervisor_pid: job.supervisor_pid,
            started_at_ms: job.started_at_ms,
            waiting_for: &job.waiting_for,
            estimated_start_ms: job.estimated_start_ms,
            estimated_start_is_latest: job.estimated_start_is_latest,
        }
    }
}

/// Jobs as a JSON array.
pub fn jobs_json(jobs: &[v1::Job]) -> Vec<JobJson<'_>> {
    jobs.iter().map(JobJson::from).collect()
}

/// One status change of a job as JSON; `from` is null for the job's creation.
#[derive(Debug, Serialize)]
pub struct JobEventJson<'a> {
    pub at_ms: i64,
    pub from: Option<String>,
    pub to: String,
    pub reason: &'a str,
}

impl<'a> From<&'a v1::JobEvent> for JobEventJson<'a> {
    fn from(event: &'a v1::JobEvent) -> Self {
        JobEventJson {
            at_ms: event.at_ms,
            from: event.from.map(status_name),
            to: status_name(event.to),
            reason: &event.reason,
        }
    }
}

/// A tube (one machine type's queue) as JSON.
#[derive(Debug, Serialize)]
pub struct TubeJson<'a> {
    pub machine_type: &'a str,
    pub paused: bool,
    pub paused_by: &'a str,
    pub paused_at_ms: Option<i64>,
    pub lease_holder: &'a str,
    pub lease_host: &'a str,
    pub lease_pid: u32,
    pub lease_expires_at_ms: Option<i64>,
}

impl<'a> From<&'a v1::Tube> for TubeJson<'a> {
    fn from(tube: &'a v1::Tube) -> Self {
        TubeJson {
            machine_type: &tube.machine_type,
            paused: tube.paused,
            paused_by: &tube.paused_by,
            paused_at_ms: tube.paused_at_ms,
            lease_holder: &tube.lease_holder,
            lease_host: &tube.lease_host,
            lease_pid: tube.lease_pid,
            lease_expires_at_ms: tube.lease_expires_at_ms,
        }
    }
}

/// `text` cut to at most `max` characters, ending in `…` when something was cut, so a
/// long teuthology description does not push a table row off the screen.
pub fn truncated(text: &str, max: usize) -> String {
    let text = one_line(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A run summary as JSON; `job_counts` keys are sorted so the output is stable.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub branch: &'a str,
    pub sha1: &'a str,
    pub suite: &'a str,
    pub machine_type: &'a str,
    pub created_at_ms: i64,
    pub status: &'a str,
    pub job_counts: BTreeMap<&'a str, u32>,
}

impl<'a> From<&'a v1::Run> for RunJson<'a> {
    fn from(run: &'a v1::Run) -> Self {
        RunJson {
            name: &run.name,
            owner: &run.owner,
            branch: &run.branch,
            sha1: &run.sha1,
            suite: &run.suite,
            machine_type: &run.machine_type,
            created_at_ms: run.created_at_ms,
            status: &run.status,
            job_counts: run
                .job_counts
                .iter()
                .map(|(name, n)| (name.as_str(), *n))
                .collect(),
        }
    }
}

/// cuttle-api's health as JSON.
#[derive(Debug, Serialize)]
pub struct HealthJson<'a> {
    pub version: &'a str,
    pub database_backend: &'a str,
    pub database_ok: bool,
    pub beanstalk_address: &'a str,
    pub beanstalk_ok: bool,
    pub detail: &'a str,
    pub uptime_s: u64,
}

impl<'a> From<&'a v1::GetHealthResponse> for HealthJson<'a> {
    fn from(health: &'a v1::GetHealthResponse) -> Self {
        HealthJson {
            version: &health.version,
            database_backend: &health.database_backend,
            database_ok: health.database_ok,
            beanstalk_address: &health.beanstalk_address,
            beanstalk_ok: health.beanstalk_ok,
            detail: &health.detail,
            uptime_s: health.uptime_s,
        }
    }
}

/// A node as `key: value` lines.
pub fn node_fields(node: &v1::Node) -> String {
    fields(&[
        ("name", node.name.clone()),
        ("machine_type", node.machine_type.clone()),
        ("up", yes_no(node.up)),
        ("locked", yes_no(node.locked)),
        ("locked_by", node.locked_by.clone()),
        ("locked_job_id", or_dash(node.locked_job_id)),
        (
            "locked_since",
            or_dash(node.locked_since_ms.map(format_unix_millis)),
        ),
        ("description", node.description.clone()),
        ("os_type", node.os_type.clone()),
        ("os_version", node.os_version.clone()),
        (
            "ssh_key",
            or_dash(Some(node.ssh_key.clone()).filter(|k| !k.is_empty())),
        ),
        ("created", format_unix_millis(node.created_at_ms)),
        ("updated", format_unix_millis(node.updated_at_ms)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_to_the_widest_cell_and_has_no_trailing_spaces() {
        let text = table(
            &["name", "up", "description"],
            &[
                vec!["smithi001".into(), "yes".into(), "rack 1".into()],
                vec!["s2".into(), "no".into(), String::new()],
            ],
        );
        assert_eq!(
            text,
            "NAME       UP   DESCRIPTION\n\
             smithi001  yes  rack 1\n\
             s2         no   -\n"
        );
    }

    #[test]
    fn table_keeps_each_row_on_one_line() {
        let text = table(&["a", "b"], &[vec!["x\ny".into(), "z".into()]]);
        assert_eq!(text, "A    B\nx y  z\n");
    }

    #[test]
    fn table_with_no_rows_is_just_the_header() {
        assert_eq!(table(&["name", "type"], &[]), "NAME  TYPE\n");
    }

    #[test]
    fn table_widths_count_characters_not_bytes() {
        let text = table(&["from", "x"], &[vec!["é→ü".into(), "1".into()]]);
        assert_eq!(text, "FROM  X\né→ü   1\n");
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[("run", "r".into()), ("status", "queued".into())]),
            "run:     r\nstatus:  queued\n"
        );
    }

    #[test]
    fn counts_are_in_life_order() {
        let counts = [("pass", 3), ("queued", 2), ("zzz", 1), ("running", 1)]
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        assert_eq!(counts_summary(&counts), "queued=2 running=1 pass=3 zzz=1");
    }

    #[test]
    fn job_json_names_statuses_and_keeps_proto_field_names() {
        let job = v1::Job {
            id: 7,
            status: v1::JobStatus::Queued as i32,
            nodes: vec!["smithi001".into()],
            ..Default::default()
        };
        let value = serde_json::to_value(JobJson::from(&job)).unwrap();
        assert_eq!(value["status"], "queued");
        assert_eq!(value["id"], 7);
        assert_eq!(value["n_nodes"], 0);
        assert!(value["time_limit_s"].is_null());
        assert_eq!(value["nodes"][0], "smithi001");
        assert_eq!(value["dispatcher"], "");
        assert_eq!(value["supervisor_pid"], 0);
        assert!(value["started_at_ms"].is_null());
    }

    #[test]
    fn job_json_carries_who_dispatched_and_supervises_it() {
        let job = v1::Job {
            dispatcher: "dispatcher-1".into(),
            supervisor_host: "teuthology01".into(),
            supervisor_pid: 4242,
            started_at_ms: Some(1_795_428_000_000),
            ..Default::default()
        };
        let value = serde_json::to_value(JobJson::from(&job)).unwrap();
        assert_eq!(value["dispatcher"], "dispatcher-1");
        assert_eq!(value["supervisor_host"], "teuthology01");
        assert_eq!(value["supervisor_pid"], 4242);
        assert_eq!(value["started_at_ms"], 1_795_428_000_000_i64);
    }

    #[test]
    fn tube_json_keeps_proto_field_names() {
        let tube = v1::Tube {
            machine_type: "smithi".into(),
            paused: true,
            paused_by: "alice".into(),
            paused_at_ms: Some(5),
            ..Default::default()
        };
        let value = serde_json::to_value(TubeJson::from(&tube)).unwrap();
        assert_eq!(value["machine_type"], "smithi");
        assert_eq!(value["paused"], true);
        assert_eq!(value["paused_by"], "alice");
        assert_eq!(value["paused_at_ms"], 5);
        assert_eq!(value["lease_holder"], "");
        assert!(value["lease_expires_at_ms"].is_null());
    }

    #[test]
    fn color_is_auto_on_a_terminal_without_no_color_and_flags_win() {
        use ColorChoice::*;
        assert!(Paint::resolve(Auto, None, true).enabled());
        assert!(
            Paint::resolve(Auto, Some(""), true).enabled(),
            "empty NO_COLOR is unset"
        );
        assert!(
            !Paint::resolve(Auto, None, false).enabled(),
            "a pipe gets no colour"
        );
        assert!(!Paint::resolve(Auto, Some("1"), true).enabled(), "NO_COLOR");
        assert!(Paint::resolve(Always, Some("1"), false).enabled());
        assert!(!Paint::resolve(Never, None, true).enabled());
    }

    #[test]
    fn statuses_get_their_colours_and_nothing_else_does() {
        assert_eq!(Paint::ON.status("pass"), "\x1b[32mpass\x1b[0m");
        assert_eq!(Paint::ON.status("fail"), "\x1b[31mfail\x1b[0m");
        assert_eq!(Paint::ON.status("dead"), "\x1b[1;31mdead\x1b[0m");
        assert_eq!(Paint::ON.status("running"), "\x1b[34mrunning\x1b[0m");
        for waiting in ["queued", "waiting", "waiting_for_build"] {
            assert_eq!(
                Paint::ON.status(waiting),
                format!("\x1b[33m{waiting}\x1b[0m")
            );
        }
        assert_eq!(Paint::ON.status("smithi001"), "smithi001");
        assert_eq!(Paint::OFF.status("pass"), "pass");
        let counts = [("pass", 3), ("fail", 1)]
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        assert_eq!(
            Paint::ON.counts(&counts),
            "\x1b[32mpass\x1b[0m=3 \x1b[31mfail\x1b[0m=1"
        );
    }

    #[test]
    fn painted_tables_stay_aligned_and_paint_only_status_cells() {
        let rows = vec![
            vec!["1".to_owned(), "pass".to_owned(), "pass".to_owned()],
            vec!["22".to_owned(), "running".to_owned(), "x".to_owned()],
        ];
        let plain = table(&["id", "status", "note"], &rows);
        let painted = painted_table(&["id", "status", "note"], &rows, Paint::ON, &[1]);
        assert_eq!(
            painted,
            "ID  STATUS   NOTE\n\
             1   \x1b[32mpass\x1b[0m     pass\n\
             22  \x1b[34mrunning\x1b[0m  x\n"
        );
        let stripped = painted
            .replace("\x1b[32m", "")
            .replace("\x1b[34m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
        // Off, it is the plain table; and a server's own escapes never get through.
        assert_eq!(
            painted_table(&["id", "status", "note"], &rows, Paint::OFF, &[1]),
            plain
        );
        let sneaky = table(&["a"], &[vec!["\x1b[31mred".to_owned()]]);
        assert!(!sneaky.contains('\x1b'), "{sneaky:?}");
    }

    #[test]
    fn painted_fields_paint_only_the_named_values() {
        let text = painted_fields(
            &[("status", "dead".into()), ("reason", "dead".into())],
            Paint::ON,
            &["status"],
        );
        assert_eq!(text, "status:  \x1b[1;31mdead\x1b[0m\nreason:  dead\n");
    }

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncated("rados/basic", 11), "rados/basic");
        assert_eq!(truncated("rados/basic", 6), "rados…");
        assert_eq!(truncated("é→ü→é", 3), "é→…");
        assert_eq!(truncated("a\nb", 5), "a b");
        assert_eq!(truncated("", 5), "");
    }
}
