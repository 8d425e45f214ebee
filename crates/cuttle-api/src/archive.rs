//! Job archives over HTTP: `GET /archive/RUN/JOB/` lists a job's archive directory and
//! `GET /archive/RUN/JOB/PATH` serves one of its files, so a log is a link, not a path on
//! the dispatcher's host.
//!
//! The archives live where each dispatcher host writes them (its `[lab] archive_dir`);
//! cuttle-api reads them from `archive_roots` (those directories, or their mounts on the
//! API host), trying each in turn for `RUN/JOB`. Nothing outside a job's directory is
//! ever served: the run name must be a valid run name, the job a job id, every path part
//! a plain name (no `..`, no `.`, nothing hidden), and the file, once symlinks are
//! resolved, must still lie inside the job's directory.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::page::{Html, esc, page};

/// The URL of a job's archive under the page's `base` URL.
pub fn job_url(base: &str, run: &str, job_id: i64) -> String {
    format!("{base}/archive/{}/{job_id}/", crate::page::url_part(run))
}

/// Why a path is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid run name or job id, or a path part that is not a plain name.
    BadPath(String),
    /// No archive root holds it.
    NotFound(String),
}

impl Refused {
    fn status(&self) -> StatusCode {
        match self {
            Refused::BadPath(_) => StatusCode::BAD_REQUEST,
            Refused::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    fn message(&self) -> &str {
        match self {
            Refused::BadPath(why) | Refused::NotFound(why) => why,
        }
    }
}

/// The parts of a file path inside a job's archive, each a plain visible name.
pub fn checked_parts(path: &str) -> Result<Vec<String>, Refused> {
    let mut parts = Vec::new();
    for part in path.split('/').filter(|part| !part.is_empty()) {
        let plain = matches!(
            Path::new(part).components().collect::<Vec<_>>().as_slice(),
            [Component::Normal(_)]
        );
        if !plain || part.starts_with('.') || part.contains('\\') || part.contains('\0') {
            return Err(Refused::BadPath(format!(
                "{part:?} is not a file name inside a job's archive; links go to files under /archive/RUN/JOB/"
            )));
        }
        parts.push(part.to_owned());
    }
    Ok(parts)
}

/// The job's archive directory under the first root that has it.
pub fn job_dir(roots: &[PathBuf], run: &str, job: &str) -> Result<PathBuf, Refused> {
    let run =
        cuttle_core::RunName::parse(run).map_err(|error| Refused::BadPath(format!("{error}")))?;
    let job_id: i64 = job
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Refused::BadPath(format!("{job:?} is not a job id")))?;
    checked_parts(run.as_str())?;
    if roots.is_empty() {
        return Err(Refused::NotFound(
            "this cuttle-api serves no archives: set archive_roots in its config to the dispatchers' archive_dir (or their mounts)".into(),
        ));
    }
    roots
        .iter()
        .map(|root| root.join(run.as_str()).join(job_id.to_string()))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| {
            Refused::NotFound(format!(
                "no archive for job {job_id} of run {run} under {} (archive_roots); a job that never started has none",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The file or directory `parts` names inside `dir`, with symlinks resolved, refused if
/// it leaves `dir`.
pub fn resolve(dir: &Path, parts: &[String]) -> Result<PathBuf, Refused> {
    let base = dir
        .canonicalize()
        .map_err(|e| Refused::NotFound(format!("cannot open {}: {e}", dir.display())))?;
    let mut wanted = base.clone();
    for part in parts {
        wanted.push(part);
    }
    let real = wanted.canonicalize().map_err(|_| {
        Refused::NotFound(format!("no file {} in this job's archive", parts.join("/")))
    })?;
    if !real.starts_with(&base) {
        return Err(Refused::BadPath(format!(
            "{} leads outside the job's archive",
            parts.join("/")
        )));
    }
    Ok(real)
}

/// The content type a file is served with. Nothing is served as HTML: a log or config
/// must never run in the page's origin.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "json" => "application/json",
        "gz" => "application/gzip",
        "png" => "image/png",
        "svg" | "html" | "htm" | "js" => "text/plain; charset=utf-8",
        _ => {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tar") || name.ends_with(".bz2") || name.ends_with(".xz") {
                "application/octet-stream"
            } else {
                "text/plain; charset=utf-8"
            }
        }
    }
}

fn refusal(refused: &Refused) -> Response {
    let body = page(
        "archive",
        &format!("<p class=\"error\">{}</p>", esc(refused.message())),
    );
    (refused.status(), body).into_response()
}

/// `GET /archive/RUN/JOB/`: the job's archive directory.
pub async fn serve_root(
    State(app): State<App>,
    UrlPath((run, job)): UrlPath<(String, String)>,
) -> Response {
    match serve_inner(&app, &run, &job, "").await {
        Ok(response) => response,
        Err(refused) => refusal(&refused),
    }
}

/// `GET /archive/RUN/JOB/PATH`: a file (or directory) of it.
pub async fn serve_file(
    State(app): State<App>,
    UrlPath((run, job, path)): UrlPath<(String, String, String)>,
) -> Response {
    match serve_inner(&app, &run, &job, &path).await {
        Ok(response) => response,
        Err(refused) => refusal(&refused),
    }
}

async fn serve_inner(app: &App, run: &str, job: &str, path: &str) -> Result<Response, Refused> {
    let roots = app.settings().web.archive_roots.clone();
    let dir = job_dir(&roots, run, job)?;
    let parts = checked_parts(path)?;
    let target = resolve(&dir, &parts)?;
    if target.is_dir() {
        return Ok(listing(run, job, &parts, &target).into_response());
    }
    let file = tokio::fs::File::open(&target)
        .await
        .map_err(|e| Refused::NotFound(format!("cannot open {}: {e}", parts.join("/"))))?;
    let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&target).to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A directory of a job's archive as a page of links.
fn listing(run: &str, job: &str, parts: &[String], dir: &Path) -> Html {
    let mut entries: Vec<(String, bool, u64)> = std::fs::read_dir(dir)
        .map(|read| {
            read.filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().to_str()?.to_owned();
                    if name.starts_with('.') {
                        return None;
                    }
                    let meta = entry.metadata().ok()?;
                    Some((name, meta.is_dir(), meta.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let here = if parts.is_empty() {
        String::new()
    } else {
        format!("{}/", parts.join("/"))
    };
    let rows: String = entries
        .iter()
        .map(|(name, is_dir, size)| {
            let slash = if *is_dir { "/" } else { "" };
            format!(
                "<tr><td><a href=\"/archive/{}/{}/{}{}{}\">{}{}</a></td><td class=\"num\">{}</td></tr>",
                esc(run),
                esc(job),
                esc(&here),
                esc(name),
                slash,
                esc(name),
                slash,
                if *is_dir { String::new() } else { size.to_string() }
            )
        })
        .collect();
    page(
        &format!("archive of job {job}"),
        &format!(
            "<h1>Archive of job <a href=\"/jobs/{job}\">{job}</a> ({run}) /{here}</h1>\
             <table><tr><th>file</th><th>bytes</th></tr>{rows}</table>",
            job = esc(job),
            run = esc(run),
            here = esc(&here),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        assert_eq!(
            checked_parts("remote/smithi001/log.gz").unwrap(),
            ["remote", "smithi001", "log.gz"]
        );
        for bad in [
            "../x",
            "a/../../etc/passwd",
            "./x",
            ".ssh/id",
            "a\\b",
            "..",
            "x/..",
        ] {
            assert!(checked_parts(bad).is_err(), "{bad}");
        }
        assert!(checked_parts("").unwrap().is_empty());
    }

    #[test]
    fn a_symlink_out_of_the_job_is_refused_and_missing_files_say_so() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "no").unwrap();
        let job = root.path().join("run-a/7");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join("teuthology.log"), "hello").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), job.join("leak")).unwrap();
        let roots = vec![PathBuf::from("/nonexistent"), root.path().to_path_buf()];
        let dir = job_dir(&roots, "run-a", "7").unwrap();
        assert_eq!(dir, job);
        let log = resolve(&dir, &checked_parts("teuthology.log").unwrap()).unwrap();
        assert!(log.ends_with("teuthology.log"));
        assert!(matches!(
            resolve(&dir, &checked_parts("leak").unwrap()),
            Err(Refused::BadPath(_))
        ));
        assert!(matches!(
            resolve(&dir, &checked_parts("nope.log").unwrap()),
            Err(Refused::NotFound(_))
        ));
        assert!(matches!(
            job_dir(&roots, "..", "7"),
            Err(Refused::BadPath(_))
        ));
        assert!(matches!(
            job_dir(&roots, "run-a", "-1"),
            Err(Refused::BadPath(_))
        ));
        assert!(matches!(
            job_dir(&roots, "run-a", "8"),
            Err(Refused::NotFound(_))
        ));
        assert!(matches!(
            job_dir(&[], "run-a", "7"),
            Err(Refused::NotFound(_))
        ));
    }

    #[test]
    fn nothing_is_served_as_html() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("teuthology.log")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.log.gz")), "application/gzip");
    }
}
