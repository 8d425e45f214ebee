//! cuttle-api's HTTP listener (beside gRPC, on the same runtime): the build-status webhook
//! Jenkins calls when a build ends, a health check, Prometheus metrics (`/metrics`, see
//! `metrics.rs`), the paddles-compatible API under `/paddles` (see `paddles.rs`), and the
//! status page with the job archives (see `page.rs` and `archive.rs`).
//!
//! `POST /webhook/build-status` takes the JSON of ceph-build's `submit_final_status`
//! (`url`, `ref`, `status`, `distro`, `distro_version`, `flavor`, `sha1`), signed with
//! the shared secret: `X-Cuttle-Timestamp: UNIX_SECONDS` and `X-Cuttle-Signature:
//! sha256=HEX`, the HMAC-SHA256 of `UNIX_SECONDS.BODY`. Anything else is refused with a
//! 4xx, logged, and changes nothing.

use std::path::Path;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use cuttle_core::build::{
    MAX_WEBHOOK_BYTES, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookError, parse_webhook, verify,
};

use crate::App;
use crate::autosuites::AutoSuites;

/// Reads the webhook's shared secret: the file's content without surrounding whitespace.
pub fn load_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the webhook secret file {} (webhook_secret_file); create it with `openssl rand -hex 32 > FILE; chmod 600 FILE`",
            path.display()
        )
    })?;
    let secret = text.trim();
    anyhow::ensure!(
        secret.len() >= 16,
        "the webhook secret in {} is {} bytes; use at least 16 (`openssl rand -hex 32`)",
        path.display(),
        secret.len()
    );
    Ok(secret.as_bytes().to_vec())
}

#[derive(Debug, Clone)]
struct Web {
    app: App,
    autosuites: AutoSuites,
}

/// The HTTP routes.
pub fn router(app: App, autosuites: AutoSuites) -> Router {
    Router::new()
        .route("/webhook/build-status", post(build_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(serve_metrics))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
        .with_state(Web {
            app: app.clone(),
            autosuites,
        })
        .merge(crate::paddles::router(app.clone()))
        .merge(crate::page::router(app))
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    app: App,
    autosuites: AutoSuites,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, page = %format!("http://{addr}/"), "cuttle-api serving HTTP (status page, metrics, webhook, paddles)");
    axum::serve(listener, router(app, autosuites))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("HTTP server failed")
}

async fn healthz(State(web): State<Web>) -> Response {
    match web.app.db(|store| store.list_tubes().map(|_| ())).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(status) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database: {}\n", status.message()),
        )
            .into_response(),
    }
}

/// Prometheus' scrape: the lab counted now, and this process's counts.
async fn serve_metrics(State(web): State<Web>) -> Response {
    let counted = web
        .app
        .db(|store| Ok((store.gauges()?, store.list_tubes()?)))
        .await;
    match counted {
        Ok((gauges, tubes)) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            crate::metrics::render(&gauges, &tubes, crate::now()),
        )
            .into_response(),
        Err(status) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database: {}\n", status.message()),
        )
            .into_response(),
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    crate::metrics::webhook(status.as_u16());
    let body = serde_json::json!({ "error": message });
    (status, axum::Json(body)).into_response()
}

async fn build_status(
    State(web): State<Web>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            tracing::warn!(http_status = status.as_u16(), error = %rejection.body_text(), "refused a build-status webhook");
            return refuse(
                status,
                format!(
                    "{}; a build status is a JSON object of at most {MAX_WEBHOOK_BYTES} bytes; nothing was changed",
                    rejection.body_text()
                ),
            );
        }
    };
    let Some(secret) = web.app.webhook_secret() else {
        tracing::warn!("build-status webhook called, but no webhook_secret_file is configured");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this cuttle-api has no webhook secret (webhook_secret_file); nothing was changed"
                .into(),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now_s = crate::now().0.div_euclid(1000);
    let checked = verify(
        secret,
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now_s,
    )
    .and_then(|()| parse_webhook(&body));
    let report = match checked {
        Ok(report) => report,
        Err(error) => {
            let status =
                StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            // Never the body or the signature: only what was wrong.
            tracing::warn!(http_status = status.as_u16(), %error, bytes = body.len(), "refused a build-status webhook");
            return refuse(status, refusal(&error));
        }
    };
    tracing::info!(branch = %report.branch, sha1 = %report.sha1, ready = report.ready, url = %report.url, "build-status webhook");
    match web.autosuites.on_report(report).await {
        Ok(outcome) => {
            crate::metrics::webhook(200);
            (StatusCode::OK, axum::Json(outcome)).into_response()
        }
        Err(status) => {
            tracing::warn!(
                detail = status.message(),
                "cannot act on a build-status webhook"
            );
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}; send it again", status.message()),
            )
        }
    }
}

fn refusal(error: &WebhookError) -> String {
    format!("{error}; nothing was changed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_one_line_of_at_least_16_characters() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(load_secret(&file).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&file, "short\n").unwrap();
        let error = load_secret(&file).unwrap_err().to_string();
        assert!(error.contains("at least 16"), "{error}");
        let missing = load_secret(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("openssl rand"), "{missing}");
    }
}
