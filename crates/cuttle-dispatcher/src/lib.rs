//! cuttle-dispatcher as a library: [`run`] holds (or waits for) its tube's lease and,
//! while it holds it, reserves jobs, has cuttle-api claim them, locks their nodes and
//! starts a supervisor for each. `main.rs` only parses settings and calls [`run`].
//!
//! The parts, by responsibility:
//! - [`dispatcher`]: the loop and its decisions, generic over the parts below;
//! - [`lease`]: when to renew the tube's lease and when it is lost;
//! - [`window`]: the claimed jobs waiting for nodes, and the policy's snapshot of them;
//! - [`api`], [`queue`], [`launch`]: cuttle-api, beanstalkd and supervisor processes,
//!   each a trait with its one real implementation, so the loop runs in unit tests
//!   against in-memory parts with tokio's paused clock.
//!
//! The dispatcher decides nothing about jobs itself: cuttle-api answers each reservation
//! with start, discard or bury, and the policy says which waiting job starts. It never
//! waits for a job to finish.

pub mod api;
pub mod dispatcher;
pub mod launch;
pub mod lease;
pub mod metrics;
pub mod queue;
pub mod settings;
pub mod window;

#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::Context;
use cuttle_proto::bearer::Bearer;
use tokio_util::sync::CancellationToken;

pub use dispatcher::{Clock, Dispatcher, SystemClock};
pub use settings::{Cli, CrashPoint, FileConfig, Settings};

pub use cuttle_runtime::host_name;

/// This process's lease holder id: host, pid and a random part, so a restart (same pid
/// reused or not) is a new holder.
fn holder_id(host: &str) -> String {
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Runs the dispatcher until `shutdown` is cancelled (or, with `--exit-on-empty-queue`,
/// the tube is empty). Returns how many jobs it dispatched.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<u64> {
    let ca_pem = settings
        .tls_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .with_context(|| format!("cannot read tls_ca_file {}", path.display()))
        })
        .transpose()?;
    let channel = cuttle_proto::endpoint::endpoint(&settings.api, ca_pem.as_deref())
        .with_context(|| format!("invalid --api {}", settings.api))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    let bearer = Bearer::for_token(settings.token.as_ref()).context("invalid token")?;
    if settings.token.is_none() {
        tracing::warn!(
            "no service token (token_file or CUTTLE_TOKEN): cuttle-api will refuse this dispatcher"
        );
    }
    let host = host_name();
    let holder = holder_id(&host);
    let tube = settings.machine_type.clone();
    let metrics = metrics::Metrics::new(tube.as_str());
    if let Some(addr) = settings.metrics_listen {
        metrics.serve(addr, shutdown.clone()).await?;
    }
    let config = dispatcher::Config {
        tube: tube.clone(),
        holder: holder.clone(),
        lease_ttl: settings.lease_ttl,
        release_interval: settings.release_interval,
        default_time_limit_ms: i64::try_from(settings.lab.max_job_time_s.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        exit_on_empty_queue: settings.exit_on_empty_queue,
        crash_at: settings.crash_at,
    };
    tracing::info!(
        tube = %tube,
        holder = %holder,
        api = %settings.api,
        beanstalk = %settings.beanstalk,
        archive = %settings.lab.archive_dir.display(),
        "cuttle-dispatcher starting"
    );
    let mut dispatcher = Dispatcher::new(
        config,
        api::GrpcApi::new(channel, bearer, tube.as_str(), &holder, &host),
        cuttle_queue::QueueClient::new(&settings.beanstalk),
        launch::ProcessLauncher::new(settings)?,
        SystemClock,
        metrics,
    );
    dispatcher.run(&shutdown).await;
    tracing::info!(
        dispatched = dispatcher.dispatched(),
        "cuttle-dispatcher stopped; running jobs continue under their supervisors"
    );
    Ok(dispatcher.dispatched())
}
