//! The status page: what a lab operator opens pulpito for, live, read-only, served by
//! cuttle-api's HTTP listener as plain server-rendered HTML (no script, no CDN; it
//! reloads itself every 15 seconds).
//!
//! - `/`: each queue (state, dispatcher, waiting, running, nodes free/locked/down) and the
//!   newest runs.
//! - `/runs?owner=&status=&machine_type=&branch=&limit=`: runs, filtered.
//! - `/runs/RUN`: a run's jobs with state, reason, duration, estimated start of the
//!   waiting ones, and links to their logs (`/archive/RUN/JOB/`, see `archive.rs`).
//! - `/jobs/JOB`: one job, its timeline and its logs.
//! - `/queues/TYPE`: a queue in dispatch order with estimated starts and why each waits.
//! - `/nodes?machine_type=`: nodes and who holds them.
//!
//! Reads follow `anonymous_reads`; with it off, a browser sends the token as basic
//! auth's password. Every value from the database is escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use cuttle_core::{
    Job, JobId, MachineType, Node, Owner, RunName, RunStatus, RunSummary, UnixMillis,
};
use cuttle_db::gauges::NodeState;
use cuttle_db::{NodeFilter, RunFilter};

use crate::App;
use crate::forecast::Estimate;

/// An HTML document.
pub type Html = ([(header::HeaderName, &'static str); 2], String);

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a URL path segment or query value (everything but unreserved
/// characters), so it needs no further escaping in an attribute.
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.num{text-align:right}\
nav a{margin-right:1em}.error{color:#a00}\
.pass{color:#070;font-weight:bold}.fail{color:#b00;font-weight:bold}\
.dead{color:#fff;background:#800;padding:0 .3em}.killed{color:#666;font-weight:bold}\
.running{color:#05a;font-weight:bold}.waiting,.queued{color:#a60}\
.waiting_for_build{color:#888}.down{color:#b00}form input{margin-right:.5em}";

/// A whole page: the header, navigation and `body`.
pub fn page(title: &str, body: &str) -> Html {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"15\">\
         <title>{title} · cuttle</title><style>{STYLE}</style></head><body>\
         <nav><a href=\"/\">cuttle</a><a href=\"/runs\">runs</a><a href=\"/nodes\">nodes</a></nav>\
         {body}</body></html>",
        title = esc(title)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
}

/// The page routes (and the archive's), behind the read check.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/runs", get(runs))
        .route("/runs/{name}", get(run))
        .route("/jobs/{id}", get(job))
        .route("/queues/{machine_type}", get(queue))
        .route("/nodes", get(nodes))
        .route("/archive/{run}/{job}", get(crate::archive::serve_root))
        .route("/archive/{run}/{job}/", get(crate::archive::serve_root))
        .route(
            "/archive/{run}/{job}/{*path}",
            get(crate::archive::serve_file),
        )
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            readers_only,
        ))
        .with_state(app)
}

/// Refuses callers who may not read (with `anonymous_reads` off and no token).
async fn readers_only(
    State(app): State<App>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match crate::paddles::read_allowed(&app, &headers).await {
        Ok(()) => next.run(request).await,
        Err((status, message)) => {
            let mut response = (
                status,
                page(
                    "not allowed",
                    &format!("<p class=\"error\">{}</p>", esc(&message)),
                ),
            )
                .into_response();
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(
                        "Basic realm=\"cuttle (password: your token)\"",
                    ),
                );
            }
            response
        }
    }
}

/// A page that could not be made: the database, or a bad name.
fn failed(status: tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        code,
        page(
            "error",
            &format!("<p class=\"error\">{}</p>", esc(status.message())),
        ),
    )
        .into_response()
}

fn bad_input(error: impl std::fmt::Display) -> Response {
    failed(tonic::Status::invalid_argument(error.to_string()))
}

/// `2026-11-30 10:00:00` (UTC).
fn when(at: UnixMillis) -> String {
    let date = cuttle_core::time::UtcDateTime::from_unix_seconds(at.0.div_euclid(1000));
    date.rfc3339().replace('T', " ").replace('Z', "")
}

/// `42s`, `5m12s`, `2h03m`, `1d02h`.
fn span(ms: i64) -> String {
    cuttle_core::time::format_span(ms)
}

fn status_cell(status: &str) -> String {
    format!("<span class=\"{0}\">{0}</span>", esc(status))
}

/// How long a job ran (or has been running).
fn duration(job: &Job, now: UnixMillis) -> String {
    match job.started_at {
        Some(started) if job.status.is_terminal() => span(job.updated_at.0 - started.0),
        Some(started) => span(now.0 - started.0),
        None => String::new(),
    }
}

/// When a waiting job should start, from now.
fn starts(estimate: Option<&Estimate>, now: UnixMillis) -> String {
    match estimate.and_then(|e| e.start) {
        Some(at) if at.0 <= now.0 => "now".into(),
        Some(at) if estimate.is_some_and(|e| e.at_latest) => {
            format!("within {} (by {})", span(at.0 - now.0), when(at))
        }
        Some(at) => format!("in {} ({})", span(at.0 - now.0), when(at)),
        None if estimate.is_some() => "?".into(),
        None => String::new(),
    }
}

fn counts_text(summary: &RunSummary) -> String {
    summary
        .counts
        .iter()
        .map(|(status, n)| format!("{}={n}", status.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn runs_table(runs: &[RunSummary]) -> String {
    let mut html = String::from(
        "<table><tr><th>run</th><th>owner</th><th>status</th><th>machine type</th>\
         <th>branch</th><th>suite</th><th>jobs</th><th>created</th></tr>",
    );
    for summary in runs {
        let run = &summary.run.spec;
        let _ = write!(
            html,
            "<tr><td><a href=\"/runs/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            url_part(run.name.as_str()),
            esc(run.name.as_str()),
            esc(run.owner.as_str()),
            status_cell(summary.status.as_str()),
            esc(summary.machine_type.as_str()),
            esc(&run.branch),
            esc(&run.suite),
            esc(&counts_text(summary)),
            when(summary.run.created_at),
        );
    }
    html.push_str("</table>");
    html
}

async fn home(State(app): State<App>) -> Response {
    let at = crate::now();
    let loaded = app
        .db(move |store| {
            // The same grouped counts /metrics serves, so the two always agree.
            let gauges = store.gauges()?;
            let mut types: Vec<String> = store
                .list_tubes()?
                .iter()
                .map(|tube| tube.machine_type.to_string())
                .chain(gauges.nodes.keys().map(|(t, _)| t.clone()))
                .chain(gauges.live_jobs.keys().map(|(t, _)| t.clone()))
                .collect();
            types.sort();
            types.dedup();
            let mut queues = Vec::new();
            for name in types {
                let Ok(machine_type) = MachineType::parse(&name) else {
                    continue;
                };
                let jobs = |status: &str| {
                    gauges
                        .live_jobs
                        .get(&(name.clone(), status))
                        .copied()
                        .unwrap_or(0)
                };
                let nodes = |state: NodeState| {
                    gauges
                        .nodes
                        .get(&(name.clone(), state))
                        .copied()
                        .unwrap_or(0)
                };
                let counts = [
                    jobs("queued") + jobs("waiting"),
                    nodes(NodeState::Free),
                    nodes(NodeState::Locked),
                    nodes(NodeState::Down),
                ];
                queues.push((store.get_tube(&machine_type, at)?, counts));
            }
            let runs = store.list_runs(&RunFilter {
                limit: 20,
                ..RunFilter::default()
            })?;
            Ok((queues, runs))
        })
        .await;
    let (queues, runs) = match loaded {
        Ok(loaded) => loaded,
        Err(status) => return failed(status),
    };
    let mut html = String::from(
        "<h1>cuttle lab</h1><h2>Queues</h2><table><tr><th>machine type</th><th>state</th>\
         <th>dispatcher</th><th>waiting</th><th>nodes free</th><th>locked</th><th>down</th></tr>",
    );
    for (tube, [waiting, free, locked, down]) in &queues {
        let state = if tube.paused {
            format!("paused by {}", tube.paused_by.as_deref().unwrap_or("?"))
        } else {
            "dispatching".into()
        };
        let dispatcher = tube
            .live_lease(at)
            .map(|lease| lease.holder.clone())
            .unwrap_or_else(|| "none".into());
        let _ = write!(
            html,
            "<tr><td><a href=\"/queues/{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{waiting}</td>\
             <td class=\"num\">{free}</td><td class=\"num\">{locked}</td><td class=\"num{}\">{down}</td></tr>",
            url_part(tube.machine_type.as_str()),
            esc(tube.machine_type.as_str()),
            esc(&state),
            esc(&dispatcher),
            if *down > 0 { " down" } else { "" },
        );
    }
    html.push_str("</table><h2>Newest runs</h2>");
    html.push_str(&runs_table(&runs));
    page("lab", &html).into_response()
}

/// The run filters of `/runs`.
#[derive(Debug, Default, Deserialize)]
struct RunsQuery {
    owner: Option<String>,
    status: Option<String>,
    machine_type: Option<String>,
    branch: Option<String>,
    limit: Option<u32>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

async fn runs(State(app): State<App>, Query(query): Query<RunsQuery>) -> Response {
    let owner = match given(&query.owner).map(Owner::parse).transpose() {
        Ok(owner) => owner,
        Err(error) => return bad_input(error),
    };
    let status = match given(&query.status).map(RunStatus::parse).transpose() {
        Ok(status) => status,
        Err(error) => return bad_input(error),
    };
    let machine_type = match given(&query.machine_type)
        .map(MachineType::parse)
        .transpose()
    {
        Ok(machine_type) => machine_type,
        Err(error) => return bad_input(error),
    };
    let filter = RunFilter {
        owner,
        status,
        machine_type,
        branch: given(&query.branch).map(str::to_owned),
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let limit = filter.limit;
    let runs = match app.db(move |store| store.list_runs(&filter)).await {
        Ok(runs) => runs,
        Err(status) => return failed(status),
    };
    let field = |name: &str, value: &Option<String>| {
        format!(
            "<label>{name} <input name=\"{name}\" value=\"{}\" size=\"12\"></label>",
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let html = format!(
        "<h1>Runs</h1><form method=\"get\" action=\"/runs\">{}{}{}{}\
         <label>limit <input name=\"limit\" value=\"{limit}\" size=\"4\"></label>\
         <input type=\"submit\" value=\"filter\"></form><p>{} runs, newest first</p>{}",
        field("owner", &query.owner),
        field("status", &query.status),
        field("machine_type", &query.machine_type),
        field("branch", &query.branch),
        runs.len(),
        runs_table(&runs),
    );
    page("runs", &html).into_response()
}

/// The link to a job's logs (a job that never started has none).
fn logs_link(job: &Job) -> String {
    if job.started_at.is_none() {
        return String::new();
    }
    format!(
        "<a href=\"{}\">logs</a>",
        crate::archive::job_url("", job.run_name.as_str(), job.id.0)
    )
}

fn jobs_table(jobs: &[Job], estimates: &HashMap<JobId, Estimate>, now: UnixMillis) -> String {
    let mut html = String::from(
        "<table><tr><th>job</th><th>status</th><th>description</th><th>nodes</th>\
         <th>started</th><th>duration</th><th>starts</th><th>reason</th><th>logs</th></tr>",
    );
    for job in jobs {
        let estimate = estimates.get(&job.id);
        let reason = match (&job.reason, estimate) {
            (Some(reason), _) if !reason.is_empty() => reason.clone(),
            (_, Some(estimate)) => estimate.why.clone(),
            _ => String::new(),
        };
        let _ = write!(
            html,
            "<tr><td><a href=\"/jobs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            status_cell(job.status.as_str()),
            esc(&job.spec.description),
            job.spec.n_nodes.get(),
            job.started_at.map(when).unwrap_or_default(),
            duration(job, now),
            esc(&starts(estimate, now)),
            esc(&reason),
            logs_link(job),
            id = job.id.0,
        );
    }
    html.push_str("</table>");
    html
}

async fn run(State(app): State<App>, Path(name): Path<String>) -> Response {
    let name = match RunName::parse(&name) {
        Ok(name) => name,
        Err(error) => return bad_input(error),
    };
    let (summary, jobs) = match app.db(move |store| store.get_run(&name)).await {
        Ok(found) => found,
        Err(status) => return failed(status),
    };
    let estimates = crate::forecast::of_jobs(&app, &jobs)
        .await
        .unwrap_or_default();
    let now = crate::now();
    let spec = &summary.run.spec;
    let html = format!(
        "<h1>Run {}</h1><p>owner <b>{}</b> · status {} · machine type <a href=\"/queues/{}\">{}</a> · \
         branch {} · sha1 {} · suite {} · created {} · jobs {}</p>{}",
        esc(spec.name.as_str()),
        esc(spec.owner.as_str()),
        status_cell(summary.status.as_str()),
        url_part(summary.machine_type.as_str()),
        esc(summary.machine_type.as_str()),
        esc(&spec.branch),
        esc(&spec.sha1),
        esc(&spec.suite),
        when(summary.run.created_at),
        esc(&counts_text(&summary)),
        jobs_table(&jobs, &estimates, now),
    );
    page(spec.name.as_str(), &html).into_response()
}

async fn job(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0).map(JobId) else {
        return bad_input(format!("{id:?} is not a job id"));
    };
    let loaded = app
        .db(move |store| Ok((store.get_job(id)?, store.nodes_locked_for_jobs(&[id])?)))
        .await;
    let ((job, events), mut held) = match loaded {
        Ok(loaded) => loaded,
        Err(status) => return failed(status),
    };
    let estimates = crate::forecast::of_jobs(&app, std::slice::from_ref(&job))
        .await
        .unwrap_or_default();
    let now = crate::now();
    let nodes: Vec<String> = held
        .remove(&job.id)
        .unwrap_or_default()
        .iter()
        .map(|n| esc(n.as_str()))
        .collect();
    let mut timeline = String::from("<table><tr><th>at</th><th>status</th><th>why</th></tr>");
    for event in &events {
        let _ = write!(
            timeline,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(event.at),
            status_cell(event.to.as_str()),
            esc(event.reason.as_deref().unwrap_or("")),
        );
    }
    timeline.push_str("</table>");
    let html = format!(
        "<h1>Job {id} of <a href=\"/runs/{}\">{}</a></h1>{}<h2>Timeline</h2>{timeline}\
         <p>nodes held now: {}</p>",
        url_part(job.run_name.as_str()),
        esc(job.run_name.as_str()),
        jobs_table(std::slice::from_ref(&job), &estimates, now),
        if nodes.is_empty() {
            "none".into()
        } else {
            nodes.join(", ")
        },
        id = job.id.0,
    );
    page(&format!("job {}", job.id.0), &html).into_response()
}

async fn queue(State(app): State<App>, Path(machine_type): Path<String>) -> Response {
    let machine_type = match MachineType::parse(&machine_type) {
        Ok(machine_type) => machine_type,
        Err(error) => return bad_input(error),
    };
    let at = crate::now();
    let lookup = machine_type.clone();
    let loaded = app
        .db(move |store| {
            Ok((
                store.get_tube(&lookup, at)?,
                store.list_queue(&lookup, 1000)?,
            ))
        })
        .await;
    let (tube, mut jobs) = match loaded {
        Ok(loaded) => loaded,
        Err(status) => return failed(status),
    };
    let estimates = crate::forecast::of_machine_type(&app, machine_type.clone())
        .await
        .unwrap_or_default();
    // Dispatch order: the forecast's positions (jobs past its horizon last, by id).
    jobs.sort_by_key(|job| {
        (
            estimates.get(&job.id).map_or(usize::MAX, |e| e.position),
            job.id,
        )
    });
    let mut rows = String::from(
        "<table><tr><th>#</th><th>job</th><th>run</th><th>owner</th><th>status</th><th>priority</th>\
         <th>nodes</th><th>waited</th><th>starts</th><th>why</th><th>description</th></tr>",
    );
    for (index, job) in jobs.iter().enumerate() {
        let estimate = estimates.get(&job.id);
        let _ = write!(
            rows,
            "<tr><td class=\"num\">{}</td><td><a href=\"/jobs/{id}\">{id}</a></td><td><a href=\"/runs/{}\">{}</a></td>\
             <td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            index + 1,
            url_part(job.run_name.as_str()),
            esc(job.run_name.as_str()),
            esc(job.owner.as_str()),
            status_cell(job.status.as_str()),
            job.spec.priority.get(),
            job.spec.n_nodes.get(),
            span(at.0 - job.created_at.0),
            esc(&starts(estimate, at)),
            esc(estimate.map(|e| e.why.as_str()).unwrap_or("")),
            esc(&job.spec.description),
            id = job.id.0,
        );
    }
    rows.push_str("</table>");
    let state = if tube.paused {
        format!(
            "paused by {}: no new jobs start",
            tube.paused_by.as_deref().unwrap_or("?")
        )
    } else {
        "dispatching".into()
    };
    let html = format!(
        "<h1>Queue {}</h1><p>{} · dispatcher {} · {} waiting · <a href=\"/nodes?machine_type={}\">nodes</a></p>{rows}",
        esc(machine_type.as_str()),
        esc(&state),
        esc(&tube
            .live_lease(at)
            .map(|lease| lease.holder.clone())
            .unwrap_or_else(|| "none".into())),
        jobs.len(),
        url_part(machine_type.as_str()),
    );
    page(&format!("queue {machine_type}"), &html).into_response()
}

/// The node filter of `/nodes`.
#[derive(Debug, Default, Deserialize)]
struct NodesQuery {
    machine_type: Option<String>,
}

async fn nodes(State(app): State<App>, Query(query): Query<NodesQuery>) -> Response {
    let machine_type = match given(&query.machine_type)
        .map(MachineType::parse)
        .transpose()
    {
        Ok(machine_type) => machine_type,
        Err(error) => return bad_input(error),
    };
    let filter = NodeFilter {
        machine_type,
        ..NodeFilter::default()
    };
    let nodes: Vec<Node> = match app.db(move |store| store.list_nodes(&filter)).await {
        Ok(nodes) => nodes,
        Err(status) => return failed(status),
    };
    let now = crate::now();
    let mut html = String::from(
        "<h1>Nodes</h1><table><tr><th>node</th><th>machine type</th><th>up</th><th>locked by</th>\
         <th>job</th><th>since</th><th>description</th></tr>",
    );
    for node in &nodes {
        let (owner, job, since) = match &node.lock {
            Some(lock) => (
                esc(lock.owner.as_str()),
                lock.job_id
                    .map(|id| format!("<a href=\"/jobs/{0}\">{0}</a>", id.0))
                    .unwrap_or_else(|| "(by hand)".into()),
                format!("{} ago", span(now.0 - lock.since.0)),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{owner}</td><td>{job}</td><td>{since}</td><td>{}</td></tr>",
            esc(node.name.as_str()),
            esc(node.machine_type.as_str()),
            if node.up {
                "up"
            } else {
                "<span class=\"down\">down</span>"
            },
            esc(&node.description),
        );
    }
    html.push_str("</table>");
    page("nodes", &html).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_data_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url_part("a b/c:\"<"), "a%20b%2Fc%3A%22%3C");
    }

    #[test]
    fn spans_read_like_the_cli() {
        assert_eq!(span(42_000), "42s");
        assert_eq!(span(312_000), "5m12s");
        assert_eq!(span(7_380_000), "2h03m");
        assert_eq!(span(93_600_000), "1d02h");
    }
}
