//! The part of paddles' HTTP API teuthology reads nodes through, served under `/paddles`
//! on cuttle-api's HTTP listener, from the same store and under the same read rule as
//! gRPC: a teuthology config with `lock_server: http://HOST:PORT/paddles` finds cuttle's
//! nodes there (teuthology asks for each target's record while it sets a job up, and
//! `teuthology-lock --list` lists them).
//!
//! Built: `GET /paddles/nodes/` (paddles' filters `machine_type` (with `|` for several),
//! `os_type`, `os_version`, `locked`, `up`, `locked_by`, `count`) and
//! `GET /paddles/nodes/NAME/`, in paddles' JSON; and what `teuthology-lock` locks with:
//! `PUT /paddles/nodes/NAME/lock/`, `POST /paddles/nodes/lock_many/` and
//! `POST /paddles/nodes/unlock_many/`; and `PUT /paddles/nodes/NAME/` (teuthology-lock
//! --update: `up`, `description`, `os_type`, `os_version`, `ssh_pub_key`). Those go through NodeService's own handlers, so a
//! lock here is a lock there: the same atomic store calls, the same roles (a developer
//! locks and unlocks as themselves, an admin as anyone), the same job-bound locks no
//! hand may free. And the runs and jobs teuthology's `results_server` talks to:
//! `GET /paddles/runs/RUN/`, `GET /paddles/runs/RUN/jobs/[ID/]`, and the reports
//! teuthology pushes while it runs a job (`POST /paddles/runs/RUN/jobs/`,
//! `PUT /paddles/runs/RUN/jobs/ID/`, service or admin tokens only). A report is added
//! to the job's timeline ("teuthology reported fail: REASON"); the job's status stays
//! its supervisor's to decide, from the same summary, so a report racing a time limit
//! cannot turn a `dead` into a `fail`.
//!
//! A token travels as HTTP basic auth's password (teuthology's clients send what the
//! URL's `user:password@` gives) or as `Authorization: Bearer TOKEN`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use cuttle_proto::v1::node_service_server::NodeService;
use cuttle_proto::v1::{
    LockNamedNodesRequest, LockNodesRequest, MarkNodeRequest, UnlockNodesRequest, UpdateNodeRequest,
};
use serde_json::{Value, json};
use tonic::metadata::{MetadataMap, MetadataValue};

use cuttle_core::auth::Action;
use cuttle_core::node::Node;
use cuttle_core::{NodeName, UnixMillis};
use cuttle_db::NodeFilter;

use crate::App;

/// The `/paddles` routes. paddles' clients write some paths with a trailing slash and
/// some without; each is served both ways.
pub fn router(app: App) -> Router {
    let routes: [(&str, MethodRouter<App>); 9] = [
        ("/paddles/nodes/", get(list_nodes)),
        ("/paddles/nodes/{name}/", get(get_node).put(update_node)),
        ("/paddles/nodes/{name}/lock/", put(lock_one)),
        ("/paddles/nodes/lock_many/", post(lock_many)),
        ("/paddles/nodes/unlock_many/", post(unlock_many)),
        ("/paddles/runs/", get(list_runs)),
        ("/paddles/runs/{run}/", get(get_run)),
        (
            "/paddles/runs/{run}/jobs/",
            get(get_run_jobs).post(report_job),
        ),
        (
            "/paddles/runs/{run}/jobs/{id}/",
            get(get_job).put(report_job_at),
        ),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router
                .route(path, methods.clone())
                .route(path.trim_end_matches('/'), methods)
        })
        .with_state(app)
}

/// A refused request, answered as paddles answers errors: `{"message": ...}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn from_status(status: &tonic::Status) -> Refusal {
    let code = match status.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        // paddles' "not enough nodes" is 503 too.
        tonic::Code::Unavailable
        | tonic::Code::FailedPrecondition
        | tonic::Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, status.message())
}

/// The caller's token from basic auth's password or a bearer header, as gRPC metadata.
fn metadata(headers: &HeaderMap) -> Result<MetadataMap, Refusal> {
    let mut metadata = MetadataMap::new();
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Ok(metadata);
    };
    let token = if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = decode_base64(basic.trim()).ok_or_else(|| {
            error(
                StatusCode::UNAUTHORIZED,
                "the basic auth header is not base64",
            )
        })?;
        let text = String::from_utf8(decoded).map_err(|_| {
            error(
                StatusCode::UNAUTHORIZED,
                "the basic auth header is not UTF-8",
            )
        })?;
        text.split_once(':')
            .map(|(_, password)| password.to_owned())
            .unwrap_or_default()
    } else if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.trim().to_owned()
    } else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "send the token as basic auth's password (http://USER:TOKEN@HOST/paddles) or as Bearer TOKEN",
        ));
    };
    if !token.is_empty() {
        let header = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            error(
                StatusCode::UNAUTHORIZED,
                "the token holds characters a header cannot",
            )
        })?;
        metadata.insert("authorization", header);
    }
    Ok(metadata)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Checks the caller may read, for the status page and the archives: the HTTP status
/// and the reason when not.
pub(crate) async fn read_allowed(
    app: &App,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, String)> {
    may_read(app, headers)
        .await
        .map_err(|refusal| (refusal.status, refusal.message))
}

/// Checks the caller may read (anonymous reads follow `anonymous_reads`).
async fn may_read(app: &App, headers: &HeaderMap) -> Result<(), Refusal> {
    let metadata = metadata(headers)?;
    app.authorize(&metadata, Action::Read)
        .await
        .map(|_| ())
        .map_err(|status| from_status(&status))
}

/// paddles' time format, `2026-11-29 10:00:00.000000` (UTC).
fn paddles_time(at: UnixMillis) -> String {
    let date = cuttle_core::time::UtcDateTime::from_unix_seconds(at.0.div_euclid(1000));
    let stamp = date.rfc3339().replace('T', " ").replace('Z', "");
    format!("{stamp}.{:06}", at.0.rem_euclid(1000) * 1000)
}

/// A node as paddles shows it.
fn node_json(node: &Node) -> Value {
    json!({
        "name": node.name.as_str(),
        "description": node.description,
        "up": node.up,
        "machine_type": node.machine_type.as_str(),
        "is_vm": false,
        "vm_host": null,
        "os_type": node.os_type,
        "os_version": node.os_version,
        "arch": null,
        "locked": node.lock.is_some(),
        "locked_since": node.lock.as_ref().map(|lock| paddles_time(lock.since)),
        "locked_by": node.lock.as_ref().map(|lock| lock.owner.to_string()),
        "mac_address": null,
        "ssh_pub_key": (!node.ssh_key.is_empty()).then_some(node.ssh_key.as_str()),
    })
}

fn boolean(params: &HashMap<String, String>, key: &str) -> Result<Option<bool>, Refusal> {
    match params.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" || v == "1" => Ok(Some(true)),
        Some(v) if v == "false" || v == "0" => Ok(Some(false)),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("{key}={other} is not true or false"),
        )),
    }
}

async fn list_nodes(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    may_read(&app, &headers).await?;
    let locked = boolean(&params, "locked")?;
    let up = boolean(&params, "up")?;
    let count = match params.get("count").map(|c| c.parse::<usize>()) {
        None => None,
        Some(Ok(count)) => Some(count),
        Some(Err(_)) => return Err(error(StatusCode::BAD_REQUEST, "count is not a number")),
    };
    let machine_types: Vec<String> = params
        .get("machine_type")
        .map(|types| types.split('|').map(str::to_owned).collect())
        .unwrap_or_default();
    let filter = NodeFilter {
        locked,
        up,
        ..NodeFilter::default()
    };
    let nodes = app
        .db(move |store| store.list_nodes(&filter))
        .await
        .map_err(|status| from_status(&status))?;
    let text = |key: &str| params.get(key).filter(|v| !v.is_empty());
    let listed: Vec<Value> = nodes
        .iter()
        .filter(|node| {
            machine_types.is_empty()
                || machine_types
                    .iter()
                    .any(|t| t == node.machine_type.as_str())
        })
        .filter(|node| text("os_type").is_none_or(|v| *v == node.os_type))
        .filter(|node| text("os_version").is_none_or(|v| *v == node.os_version))
        .filter(|node| {
            text("locked_by").is_none_or(|by| {
                node.lock
                    .as_ref()
                    .is_some_and(|lock| lock.owner.as_str() == by)
            })
        })
        .take(count.unwrap_or(usize::MAX))
        .map(node_json)
        .collect();
    Ok((StatusCode::OK, axum::Json(Value::Array(listed))).into_response())
}

async fn get_node(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    may_read(&app, &headers).await?;
    let name = NodeName::parse(&name).map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            format!("node {name:?} does not exist"),
        )
    })?;
    let node = app
        .db(move |store| store.get_node(&name))
        .await
        .map_err(|status| from_status(&status))?;
    Ok((StatusCode::OK, axum::Json(node_json(&node))).into_response())
}

/// A JSON body's fields, as paddles reads them.
fn body(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "the body is not a JSON object",
        )),
    }
}

fn text_field(map: &serde_json::Map<String, Value>, key: &str) -> Result<String, Refusal> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("{key} is required")))
}

/// A NodeService call made with the HTTP caller's token.
fn request<T>(headers: &HeaderMap, message: T) -> Result<tonic::Request<T>, Refusal> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata(headers)?;
    Ok(request)
}

async fn node_jsons(app: &App, names: Vec<String>) -> Result<Vec<Value>, Refusal> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name =
            NodeName::parse(&name).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        let node = app
            .db(move |store| store.get_node(&name))
            .await
            .map_err(|status| from_status(&status))?;
        out.push(node_json(&node));
    }
    Ok(out)
}

/// `PUT /nodes/NAME/lock/` with `{"locked": true|false, "locked_by": OWNER}`.
async fn lock_one(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let map = body(&bytes)?;
    let owner = text_field(&map, "locked_by")?;
    let locked = map.get("locked").and_then(Value::as_bool).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "locked (true or false) is required",
        )
    })?;
    let api = crate::service::nodes::NodeApi::new(app.clone());
    let outcome = if locked {
        api.lock_named_nodes(request(
            &headers,
            LockNamedNodesRequest {
                names: vec![name.clone()],
                owner,
                ..Default::default()
            },
        )?)
        .await
        .map(drop)
        .map_err(|status| from_status(&status))
    } else {
        unlock(&app, &headers, vec![name.clone()], owner)
            .await
            .map(drop)
    };
    outcome?;
    let node = node_jsons(&app, vec![name]).await?.remove(0);
    Ok((StatusCode::OK, axum::Json(node)).into_response())
}

/// `POST /nodes/lock_many/` with `{"locked_by", "count", "machine_type"}`: exactly
/// `count` free nodes, or none (503, as paddles answers).
async fn lock_many(
    State(app): State<App>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let map = body(&bytes)?;
    let owner = text_field(&map, "locked_by")?;
    let machine_type = text_field(&map, "machine_type")?;
    let count = map
        .get("count")
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "count (a number of nodes) is required",
            )
        })?;
    let api = crate::service::nodes::NodeApi::new(app.clone());
    let locked = api
        .lock_nodes(request(
            &headers,
            LockNodesRequest {
                machine_type,
                count,
                owner,
                ..Default::default()
            },
        )?)
        .await
        .map_err(|status| from_status(&status))?
        .into_inner();
    let names = locked.nodes.into_iter().map(|node| node.name).collect();
    Ok((StatusCode::OK, axum::Json(node_jsons(&app, names).await?)).into_response())
}

/// Unlocks `names` for `owner` through NodeService's handler, as the HTTP caller.
async fn unlock(
    app: &App,
    headers: &HeaderMap,
    names: Vec<String>,
    owner: String,
) -> Result<cuttle_proto::v1::UnlockNodesResponse, Refusal> {
    crate::service::nodes::NodeApi::new(app.clone())
        .unlock_nodes(request(
            headers,
            UnlockNodesRequest {
                names,
                owner,
                ..Default::default()
            },
        )?)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| from_status(&status))
}

/// `POST /nodes/unlock_many/` with `{"locked_by", "names"}`.
async fn unlock_many(
    State(app): State<App>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let map = body(&bytes)?;
    let owner = text_field(&map, "locked_by")?;
    let names: Vec<String> = map
        .get("names")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "names (a list) is required"))?;
    let unlocked = unlock(&app, &headers, names, owner).await?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "unlocked": unlocked.unlocked })),
    )
        .into_response())
}

/// `PUT /nodes/NAME/` with the fields to change: `description`, `os_type`,
/// `os_version`, `ssh_pub_key` through UpdateNode, `up` through MarkNode (a node taken
/// down keeps the description as its reason). Other keys are ignored, as paddles does
/// with keys it does not update.
async fn update_node(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let map = body(&bytes)?;
    let text = |key: &str| -> Option<String> {
        map.get(key)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    };
    let api = crate::service::nodes::NodeApi::new(app.clone());
    let changes = UpdateNodeRequest {
        name: name.clone(),
        description: text("description"),
        os_type: text("os_type"),
        os_version: text("os_version"),
        ssh_key: text("ssh_pub_key"),
        ..Default::default()
    };
    let changes_fields = changes.description.is_some()
        || changes.os_type.is_some()
        || changes.os_version.is_some()
        || changes.ssh_key.is_some();
    if changes_fields {
        api.update_node(request(&headers, changes)?)
            .await
            .map_err(|status| from_status(&status))?;
    }
    if let Some(up) = map.get("up").and_then(Value::as_bool) {
        let reason = text("description")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "marked down through the paddles API".to_owned());
        api.mark_node(request(
            &headers,
            MarkNodeRequest {
                name: name.clone(),
                up,
                reason: if up { String::new() } else { reason },
                job_id: None,
            },
        )?)
        .await
        .map_err(|status| from_status(&status))?;
    }
    let node = node_jsons(&app, vec![name]).await?.remove(0);
    Ok((StatusCode::OK, axum::Json(node)).into_response())
}

/// `GET /runs/`: the newest runs (`count`, default 100, at most 1000), as paddles
/// lists them.
async fn list_runs(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    may_read(&app, &headers).await?;
    let count = match params.get("count").map(|c| c.parse::<u32>()) {
        None => 100,
        Some(Ok(count)) => count.clamp(1, 1000),
        Some(Err(_)) => return Err(error(StatusCode::BAD_REQUEST, "count is not a number")),
    };
    let filter = cuttle_db::RunFilter {
        limit: count,
        ..cuttle_db::RunFilter::default()
    };
    let runs = app
        .db(move |store| store.list_runs(&filter))
        .await
        .map_err(|status| from_status(&status))?;
    let listed: Vec<Value> = runs.iter().map(|summary| run_json(summary, None)).collect();
    Ok((StatusCode::OK, axum::Json(Value::Array(listed))).into_response())
}

/// A run as paddles shows it, with its jobs when given.
fn run_json(summary: &cuttle_core::job::RunSummary, jobs: Option<&[cuttle_core::Job]>) -> Value {
    let spec = &summary.run.spec;
    let count = |statuses: &[cuttle_core::JobStatus]| -> u32 {
        summary
            .counts
            .iter()
            .filter(|(status, _)| statuses.contains(status))
            .map(|(_, n)| n)
            .sum()
    };
    use cuttle_core::JobStatus as S;
    let mut run = json!({
        "name": spec.name.as_str(),
        "user": spec.owner.as_str(),
        "branch": spec.branch,
        "sha1": spec.sha1,
        "suite": spec.suite,
        "machine_type": summary.machine_type.as_str(),
        "status": summary.status.as_str(),
        "posted": paddles_time(summary.run.created_at),
        "results": {
            "queued": count(&[S::Queued, S::WaitingForBuild]),
            "waiting": count(&[S::Waiting]),
            "running": count(&[S::Running]),
            "pass": count(&[S::Pass]),
            "fail": count(&[S::Fail]),
            "dead": count(&[S::Dead, S::Killed]),
        },
    });
    if let Some(jobs) = jobs {
        run["jobs"] = Value::Array(jobs.iter().map(job_json).collect());
    }
    run
}

/// A job as paddles shows it (statuses in teuthology's words: `killed` shows as `dead`).
fn job_json(job: &cuttle_core::Job) -> Value {
    let status = match job.status {
        cuttle_core::JobStatus::Killed => "dead",
        cuttle_core::JobStatus::WaitingForBuild => "queued",
        other => other.as_str(),
    };
    json!({
        "job_id": job.id.0.to_string(),
        "name": job.run_name.as_str(),
        "owner": job.owner.as_str(),
        "description": job.spec.description,
        "machine_type": job.spec.machine_type.as_str(),
        "os_type": job.spec.os_type,
        "os_version": job.spec.os_version,
        "status": status,
        "cuttle_status": job.status.as_str(),
        "success": match job.status {
            cuttle_core::JobStatus::Pass => Some(true),
            s if s.is_terminal() => Some(false),
            _ => None,
        },
        "failure_reason": job.reason,
        "posted": paddles_time(job.created_at),
        "updated": paddles_time(job.updated_at),
        "started": job.started_at.map(paddles_time),
    })
}

async fn load_run(
    app: &App,
    run: &str,
) -> Result<(cuttle_core::job::RunSummary, Vec<cuttle_core::Job>), Refusal> {
    let name = cuttle_core::RunName::parse(run)
        .map_err(|_| error(StatusCode::NOT_FOUND, format!("no run {run:?}")))?;
    app.db(move |store| store.get_run(&name))
        .await
        .map_err(|status| from_status(&status))
}

async fn get_run(
    State(app): State<App>,
    headers: HeaderMap,
    Path(run): Path<String>,
) -> Result<Response, Refusal> {
    may_read(&app, &headers).await?;
    let (summary, jobs) = load_run(&app, &run).await?;
    let body = run_json(&summary, Some(&jobs));
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

async fn get_run_jobs(
    State(app): State<App>,
    headers: HeaderMap,
    Path(run): Path<String>,
) -> Result<Response, Refusal> {
    may_read(&app, &headers).await?;
    let (_, jobs) = load_run(&app, &run).await?;
    let jobs: Vec<Value> = jobs.iter().map(job_json).collect();
    Ok((StatusCode::OK, axum::Json(Value::Array(jobs))).into_response())
}

async fn get_job(
    State(app): State<App>,
    headers: HeaderMap,
    Path((run, id)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    may_read(&app, &headers).await?;
    let (_, jobs) = load_run(&app, &run).await?;
    let job = jobs
        .iter()
        .find(|job| job.id.0.to_string() == id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("run {run} has no job {id}")))?;
    Ok((StatusCode::OK, axum::Json(job_json(job))).into_response())
}

/// `POST /runs/RUN/jobs/` with the job's info (its `job_id` inside).
async fn report_job(
    State(app): State<App>,
    headers: HeaderMap,
    Path(run): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let map = body(&bytes)?;
    let id = match map.get("job_id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err(error(StatusCode::BAD_REQUEST, "job_id is required")),
    };
    record_report(&app, &headers, &run, &id, &map).await
}

/// `PUT /runs/RUN/jobs/ID/` with the job's info.
async fn report_job_at(
    State(app): State<App>,
    headers: HeaderMap,
    Path((run, id)): Path<(String, String)>,
    bytes: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let map = body(&bytes)?;
    record_report(&app, &headers, &run, &id, &map).await
}

/// Notes what teuthology reported in the job's timeline.
async fn record_report(
    app: &App,
    headers: &HeaderMap,
    run: &str,
    id: &str,
    report: &serde_json::Map<String, Value>,
) -> Result<Response, Refusal> {
    let metadata = metadata(headers)?;
    app.authorize(&metadata, Action::Service)
        .await
        .map_err(|status| from_status(&status))?;
    let (_, jobs) = load_run(app, run).await?;
    let job = jobs
        .iter()
        .find(|job| job.id.0.to_string() == id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("run {run} has no job {id}")))?;
    let status = report
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| match report.get("success").and_then(Value::as_bool) {
            Some(true) => Some("pass".into()),
            Some(false) => Some("fail".into()),
            None => None,
        })
        .unwrap_or_else(|| "an update".into());
    let mut note = format!("teuthology reported {status}");
    if let Some(reason) = report.get("failure_reason").and_then(Value::as_str)
        && !reason.is_empty()
    {
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(1000)
            .collect();
        note.push_str(&format!(": {reason}"));
    }
    let job_id = job.id;
    let job = app
        .db(move |store| store.note_job(job_id, &note, crate::now()))
        .await
        .map_err(|status| from_status(&status))?;
    Ok((StatusCode::OK, axum::Json(job_json(&job))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_gives_the_token() {
        // "teuthology:s3cret" in base64.
        assert_eq!(
            decode_base64("dGV1dGhvbG9neTpzM2NyZXQ=").unwrap(),
            b"teuthology:s3cret"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "Basic dGV1dGhvbG9neTpzM2NyZXQ=".parse().unwrap(),
        );
        let metadata = metadata(&headers).unwrap();
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer s3cret");
        assert!(decode_base64("***").is_none());
    }
}
