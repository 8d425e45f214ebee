//! Asking Shaman whether a build is ready: the HTTP half of cuttle-core's `build` module.
//! [`BuildChecker`] is the seam; [`Shaman`] is the real one (tests run it against a
//! Shaman double that is a real HTTP server).

use std::time::Duration;

use cuttle_core::build::{BuildQuery, BuildState, classify};

/// How long one question to Shaman may take.
pub const SHAMAN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a build's state is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot ask Shaman at {url} about {what}: {detail}")]
pub struct BuildCheckError {
    pub url: String,
    pub what: String,
    pub detail: String,
}

/// Answers "where does this build stand?".
#[tonic::async_trait]
pub trait BuildChecker: Send + Sync + std::fmt::Debug {
    async fn check(&self, query: &BuildQuery) -> Result<BuildState, BuildCheckError>;
}

/// Shaman's search API.
#[derive(Debug, Clone)]
pub struct Shaman {
    base: String,
    client: reqwest::Client,
}

impl Shaman {
    /// A client for Shaman at `base` (such as `https://shaman.ceph.com`).
    pub fn new(base: &str) -> anyhow::Result<Shaman> {
        let client = reqwest::Client::builder()
            .timeout(SHAMAN_TIMEOUT)
            .user_agent(concat!("cuttle-api/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Shaman {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    async fn search(
        &self,
        query: &BuildQuery,
        ready_only: bool,
    ) -> Result<serde_json::Value, BuildCheckError> {
        let url = format!("{}/api/search/", self.base);
        let error = |detail: String| BuildCheckError {
            url: url.clone(),
            what: query.describe(),
            detail,
        };
        let response = self
            .client
            .get(&url)
            .query(&query.search_params(ready_only))
            .header("content-type", "application/json")
            .send()
            .await
            .map_err(|e| error(without_url(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error(format!("it answered HTTP {status}")));
        }
        let body = response.bytes().await.map_err(|e| error(without_url(&e)))?;
        serde_json::from_slice(&body).map_err(|e| error(format!("its answer is not JSON ({e})")))
    }
}

/// reqwest's message without the URL (the caller names it once).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}

#[tonic::async_trait]
impl BuildChecker for Shaman {
    async fn check(&self, query: &BuildQuery) -> Result<BuildState, BuildCheckError> {
        // teuthology's own question first; only when nothing is ready, the same one
        // without `status=ready`, to tell building from failed from unknown.
        let ready = self.search(query, true).await?;
        let nothing_ready = ready.as_array().is_some_and(Vec::is_empty);
        let all = if nothing_ready {
            Some(self.search(query, false).await?)
        } else {
            None
        };
        classify(&ready, all.as_ref()).map_err(|detail| BuildCheckError {
            url: self.base.clone(),
            what: query.describe(),
            detail,
        })
    }
}
