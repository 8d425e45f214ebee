//! cuttle-api as a library: [`App::prepare`] opens everything the daemon needs (database
//! with migrations, admin token, beanstalkd handle) and [`serve`] answers gRPC on a
//! listener until the shutdown token is cancelled; [`spawn`] does both and binds. `main.rs`
//! only parses flags and config and calls [`spawn`], as the tests do on `127.0.0.1:0`.
//!
//! This is the only process that opens the database. Handlers never block the runtime:
//! database work runs on the blocking pool, beanstalkd work on its connection thread.

pub mod aging;
pub mod auth;
pub mod enqueue;
pub mod errors;
pub mod reaper;
pub mod service;
pub mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::{Code, Response, Status};

use cuttle_core::UnixMillis;
use cuttle_db::{DbError, Store};
use cuttle_proto::v1::dispatch_service_server::DispatchServiceServer;
use cuttle_proto::v1::health_service_server::HealthServiceServer;
use cuttle_proto::v1::node_service_server::NodeServiceServer;
use cuttle_proto::v1::queue_service_server::QueueServiceServer;
use cuttle_proto::v1::run_service_server::RunServiceServer;
use cuttle_queue::QueueClient;

pub use settings::{Cli, FileConfig, Settings};
/// Re-exported so embedders and tests can stop a [`spawn`]ed server.
pub use tokio_util::sync::CancellationToken;

/// Everything a request handler may touch.
#[derive(Debug, Clone)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    store: Store,
    queue: QueueClient,
    admin: auth::AdminToken,
    enqueuer: enqueue::Enqueuer,
    started: Instant,
}

impl App {
    /// Opens the database (applying migrations), loads or creates the admin token, and
    /// prepares the beanstalkd handle. Fails with a message naming what could not be
    /// opened; binds nothing.
    pub fn prepare(settings: Settings) -> anyhow::Result<App> {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.data_dir.display()
            )
        })?;
        let store = Store::open(settings.db.clone(), settings.max_db_connections)?;
        tracing::info!(database = %settings.db, "database ready");
        let admin = auth::AdminToken::load_or_create(&settings.admin_token_file)?;
        let queue = QueueClient::new(&settings.beanstalk);
        let enqueuer = enqueue::Enqueuer::new(
            store.clone(),
            queue.clone(),
            settings.job_ttr,
            settings.policy.policy,
        );
        Ok(App {
            inner: Arc::new(Inner {
                settings,
                store,
                queue,
                admin,
                enqueuer,
                started: Instant::now(),
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn queue(&self) -> &QueueClient {
        &self.inner.queue
    }

    pub fn admin(&self) -> &auth::AdminToken {
        &self.inner.admin
    }

    pub fn enqueuer(&self) -> &enqueue::Enqueuer {
        &self.inner.enqueuer
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    /// Runs blocking database work on the blocking pool and maps its error to a status.
    pub async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(errors::join)?
            .map_err(errors::db)
    }
}

impl App {
    /// Jobs on the wire, each with the nodes locked for it, in one database call.
    pub async fn jobs_with_nodes(
        &self,
        jobs: Vec<cuttle_core::Job>,
    ) -> Result<Vec<cuttle_proto::v1::Job>, Status> {
        let ids: Vec<cuttle_core::JobId> = jobs.iter().map(|job| job.id).collect();
        let mut held = self
            .db(move |store| store.nodes_locked_for_jobs(&ids))
            .await?;
        Ok(jobs
            .iter()
            .map(|job| {
                let nodes = held.remove(&job.id).unwrap_or_default();
                cuttle_proto::convert::job_to_proto(
                    job,
                    nodes.iter().map(ToString::to_string).collect(),
                )
            })
            .collect())
    }
}

/// The wall clock, read here at the edge and passed into everything else.
pub fn now() -> UnixMillis {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    UnixMillis(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// Runs one request and logs one line for it: method, outcome, and time taken. Client
/// mistakes log at info; server-side failures at warn.
pub async fn observe<T>(
    method: &'static str,
    handler: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = handler.await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Calls every daemon makes every few seconds, and a dispatcher's "not enough nodes
    // free yet", would drown the log at info; they are at debug.
    let routine = matches!(
        method,
        "RunService/Heartbeat" | "DispatchService/AcquireLease" | "DispatchService/ClaimReleases"
    );
    match &result {
        Ok(_) if routine => tracing::debug!(method, outcome = "ok", elapsed_ms, "request"),
        Ok(_) => tracing::info!(method, outcome = "ok", elapsed_ms, "request"),
        Err(status) if status.code() == Code::ResourceExhausted => {
            tracing::debug!(
                method,
                outcome = "ResourceExhausted",
                detail = status.message(),
                elapsed_ms,
                "request"
            );
        }
        Err(status) => {
            let outcome = format!("{:?}", status.code());
            if matches!(
                status.code(),
                Code::Internal | Code::Unavailable | Code::Unknown
            ) {
                tracing::warn!(method, %outcome, detail = status.message(), elapsed_ms, "request");
            } else {
                tracing::info!(method, %outcome, detail = status.message(), elapsed_ms, "request");
            }
        }
    }
    result.map(Response::new)
}

/// Largest CreateRun request accepted: room for a large suite whose job configs are each
/// tens of kilobytes (tonic's default of 4 MiB is too small for that).
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Serves gRPC on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish. Also runs the enqueue retry loop and the reaper.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    tracing::info!(%addr, beanstalk = %app.settings().beanstalk, version = env!("CARGO_PKG_VERSION"), "cuttle-api serving gRPC");
    let retry = tokio::spawn(enqueue::retry_loop(app.clone(), shutdown.clone()));
    let reaper = tokio::spawn(reaper::reap_loop(app.clone(), shutdown.clone()));
    // Without TCP_NODELAY a small response (HEADERS, DATA and trailers in separate
    // writes) waits for the client's delayed ACK: 40 ms per call. tonic sets it only on
    // listeners it binds itself.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = tonic::transport::Server::builder()
        .add_service(NodeServiceServer::new(service::nodes::NodeApi::new(
            app.clone(),
        )))
        .add_service(
            RunServiceServer::new(service::runs::RunApi::new(app.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(HealthServiceServer::new(service::health::HealthApi::new(
            app.clone(),
        )))
        .add_service(DispatchServiceServer::new(
            service::dispatch::DispatchApi::new(app.clone()),
        ))
        .add_service(QueueServiceServer::new(service::dispatch::QueueApi::new(
            app.clone(),
        )))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await
        .context("gRPC server failed");
    shutdown.cancel();
    let _ = retry.await;
    let _ = reaper.await;
    tracing::info!("cuttle-api stopped");
    result
}

/// A cuttle-api serving in the background of this process; dropping it cancels its
/// shutdown token.
#[derive(Debug)]
pub struct RunningApi {
    pub addr: std::net::SocketAddr,
    pub app: App,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningApi {
    /// The URL clients dial: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (its shutdown token was cancelled) and in-flight
    /// requests are done.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(task) => task.await.context("server task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Prepares (database, migrations, admin token) and serves on `settings.listen` in the
/// background until `shutdown` is cancelled; returns once the port is bound. The daemon's
/// `main` and the tests (with port 0) both start the server through here.
pub async fn spawn(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<RunningApi> {
    let listen = settings.listen;
    let app = tokio::task::spawn_blocking(move || App::prepare(settings))
        .await
        .context("startup task failed")??;
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!(
            "cannot listen on {listen}; is another cuttle-api running there? pick another --listen"
        )
    })?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(serve(app.clone(), listener, shutdown.clone()));
    Ok(RunningApi {
        addr,
        app,
        shutdown,
        task: Some(task),
    })
}
