//! cuttle-api as a library: [`App::prepare`] opens everything the daemon needs (database
//! with migrations, admin token, beanstalkd handle) and [`serve`] answers gRPC on a
//! listener until the shutdown token is cancelled; [`spawn`] does both and binds. `main.rs`
//! only parses flags and config and calls [`spawn`], as the tests do on `127.0.0.1:0`.
//!
//! This is the only process that opens the database. Handlers never block the runtime:
//! database work runs on the blocking pool, beanstalkd work on its connection thread.

pub mod aging;
pub mod archive;
pub mod auth;
pub mod autosuites;
pub mod builds;
pub mod enqueue;
pub mod errors;
pub mod events;
pub mod forecast;
pub mod health;
pub mod http;
pub mod metrics;
pub mod paddles;
pub mod page;
pub mod reaper;
pub mod reports;
pub mod service;
pub mod settings;
pub mod suite_cache;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::{Code, Response, Status};

use cuttle_core::UnixMillis;
use cuttle_core::auth::{Action, Caller, Denied};
use cuttle_db::{DbError, Store};
use cuttle_proto::v1::admin_service_server::AdminServiceServer;
use cuttle_proto::v1::auto_suite_service_server::AutoSuiteServiceServer;
use cuttle_proto::v1::dispatch_service_server::DispatchServiceServer;
use cuttle_proto::v1::health_service_server::HealthServiceServer;
use cuttle_proto::v1::node_service_server::NodeServiceServer;
use cuttle_proto::v1::preset_service_server::PresetServiceServer;
use cuttle_proto::v1::queue_service_server::QueueServiceServer;
use cuttle_proto::v1::run_service_server::RunServiceServer;
use cuttle_proto::v1::suite_service_server::SuiteServiceServer;
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
    auth: auth::Authenticator,
    enqueuer: enqueue::Enqueuer,
    started: Instant,
    outages: reaper::OutageClock,
    /// The listener's TLS, read and checked before any port is bound.
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// Where builds are checked (Shaman), when configured.
    builds: Option<Arc<dyn builds::BuildChecker>>,
    /// The build-status webhook's shared secret, when configured.
    webhook_secret: Option<Vec<u8>>,
    /// Where the HTTP listener was bound, once it is.
    http_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Hints for dispatchers (DispatchService/WatchTube).
    events: events::Events,
    /// Cancelled when the server begins to stop: long-lived streams end with it.
    stopping: CancellationToken,
    /// Start-time forecasts of the last second, by machine type.
    forecasts: forecast::Cache,
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
        let tls = settings.tls.as_ref().map(load_tls).transpose()?;
        let builds = match &settings.builds.shaman_url {
            Some(url) => {
                tracing::info!(shaman = %url, "suites check their build with Shaman");
                Some(Arc::new(builds::Shaman::new(url)?) as Arc<dyn builds::BuildChecker>)
            }
            None => None,
        };
        let webhook_secret = settings
            .builds
            .webhook_secret_file
            .as_deref()
            .map(http::load_secret)
            .transpose()?;
        let queue = QueueClient::new(&settings.beanstalk);
        let events = events::Events::default();
        let enqueuer = enqueue::Enqueuer::new(
            store.clone(),
            queue.clone(),
            settings.job_ttr,
            settings.policy.policy,
            events.clone(),
        );
        Ok(App {
            inner: Arc::new(Inner {
                settings,
                store,
                queue,
                auth: auth::Authenticator::new(admin),
                enqueuer,
                started: Instant::now(),
                outages: reaper::OutageClock::new(Instant::now()),
                tls,
                builds,
                webhook_secret,
                http_addr: std::sync::OnceLock::new(),
                events,
                stopping: CancellationToken::new(),
                forecasts: forecast::Cache::default(),
            }),
        })
    }

    /// The status page's base URL: `public_url`, else the bound HTTP listener's address;
    /// `None` without an HTTP listener.
    pub fn page_url(&self) -> Option<String> {
        match (&self.settings().web.public_url, self.inner.http_addr.get()) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(addr)) => Some(format!("http://{addr}")),
            (None, None) => None,
        }
    }

    /// The forecasts of the last second.
    pub fn forecasts(&self) -> &forecast::Cache {
        &self.inner.forecasts
    }

    /// Cancelled when the server begins to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// The tube events dispatchers watch.
    pub fn events(&self) -> &events::Events {
        &self.inner.events
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Where builds are checked, when Shaman is configured.
    pub fn builds(&self) -> Option<Arc<dyn builds::BuildChecker>> {
        self.inner.builds.clone()
    }

    /// The webhook's shared secret, when configured.
    pub fn webhook_secret(&self) -> Option<&[u8]> {
        self.inner.webhook_secret.as_deref()
    }

    pub fn queue(&self) -> &QueueClient {
        &self.inner.queue
    }

    pub fn authenticator(&self) -> &auth::Authenticator {
        &self.inner.auth
    }

    /// Who sent the request: anonymous without a token; UNAUTHENTICATED for a malformed,
    /// unknown or revoked token (even for reads: a bad token is a mistake to report).
    pub async fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        let Some(digest) = auth::presented_digest(metadata)? else {
            return Ok(Caller::Anonymous);
        };
        let now = Instant::now();
        if let Some(caller) = self.inner.auth.known(&digest, now) {
            return Ok(caller);
        }
        let digest_hex = auth::hex(&digest);
        let generation = self.inner.auth.generation();
        let record = self.db(move |store| store.find_token(&digest_hex)).await?;
        let Some(record) = record else {
            return Err(Status::unauthenticated(
                "the token is not known to cuttle-api or was revoked; ask a lab admin for a new one (`cuttle admin token create`)",
            ));
        };
        let caller = Caller::User {
            user: record.user,
            role: record.role,
        };
        self.inner
            .auth
            .remember(digest, caller.clone(), now, generation);
        Ok(caller)
    }

    /// Resolves the caller and checks it may do `action`: UNAUTHENTICATED without a
    /// needed token, PERMISSION_DENIED for the wrong caller, each saying what to do.
    pub async fn authorize(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        action: Action<'_>,
    ) -> Result<Caller, Status> {
        let caller = self.caller(metadata).await?;
        self.check(&caller, action)?;
        Ok(caller)
    }

    /// Checks an already resolved caller.
    pub fn check(&self, caller: &Caller, action: Action<'_>) -> Result<(), Status> {
        cuttle_core::auth::authorize(caller, &action, self.inner.settings.anonymous_reads).map_err(
            |denied| match denied {
                Denied::NoToken => Status::unauthenticated(denied.to_string()),
                Denied::Forbidden { .. } => Status::permission_denied(denied.to_string()),
            },
        )
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

    /// When cuttle-api last could not reach its database, or started, or saw the wall
    /// clock jump: the reaper judges silence only after a whole grace of good health.
    pub fn outages(&self) -> &reaper::OutageClock {
        &self.inner.outages
    }

    /// Runs blocking database work on the blocking pool and maps its error to a status.
    /// A failure that is the database's (unreachable, or a query that broke) is noted on
    /// the outage clock: supervisors' heartbeats may have failed the same way.
    pub async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.inner.store.clone();
        let troubles_before = store.connection_troubles();
        let result = tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(errors::join)?
            .map_err(errors::db);
        // Only the database's own outages count: a connection that could not be had, or
        // was slow to come, or broke under the query. A slow query or a refused request
        // is no outage.
        let unreachable = matches!(&result, Err(status) if status.code() == Code::Unavailable);
        if unreachable || self.inner.store.connection_troubles() != troubles_before {
            self.inner
                .outages
                .note(Instant::now(), "the database was unreachable");
        }
        result
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

/// Reads and checks the TLS certificate and key, so a bad file stops the start before
/// the port is bound.
fn load_tls(tls: &settings::TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .with_context(|| format!("cannot read the TLS {what} {}", path.display()))
    };
    let identity = tonic::transport::Identity::from_pem(
        read(&tls.cert, "certificate (tls_cert_file)")?,
        read(&tls.key, "key (tls_key_file)")?,
    );
    let config = tonic::transport::ServerTlsConfig::new().identity(identity);
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .with_context(|| {
            format!(
                "invalid TLS certificate {} or key {}: they must be PEM and match",
                tls.cert.display(),
                tls.key.display()
            )
        })?;
    tracing::info!(cert = %tls.cert.display(), "gRPC will be served over TLS");
    Ok(config)
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
    let elapsed = started.elapsed().as_secs_f64();
    let elapsed_ms = elapsed * 1000.0;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    metrics::rpc(method, code, elapsed);
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
/// Largest ScheduleSuite answer: a dry run of many jobs carries each merged config.
pub const MAX_SUITE_ANSWER_BYTES: usize = 256 << 20;

/// Serves gRPC on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish. Also runs the enqueue retry loop and the reaper.
pub async fn serve(
    app: App,
    listener: TcpListener,
    http_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    tracing::info!(%addr, beanstalk = %app.settings().beanstalk, version = env!("CARGO_PKG_VERSION"), "cuttle-api serving gRPC");
    let retry = tokio::spawn(enqueue::retry_loop(app.clone(), shutdown.clone()));
    let stopping = app.stopping();
    let linked = shutdown.clone();
    tokio::spawn(async move {
        linked.cancelled().await;
        stopping.cancel();
    });
    let reaper = tokio::spawn(reaper::reap_loop(app.clone(), shutdown.clone()));
    // One SuiteApi (one suite cache) for ScheduleSuite and for firing AutoSuites.
    let suites = service::suites::SuiteApi::new(app.clone());
    let autosuites = autosuites::AutoSuites::new(app.clone(), suites.clone());
    let firing = tokio::spawn(autosuites.clone().run(shutdown.clone()));
    let http = http_listener.map(|listener| {
        tokio::spawn(http::serve(
            listener,
            app.clone(),
            autosuites,
            shutdown.clone(),
        ))
    });
    // Without TCP_NODELAY a small response (HEADERS, DATA and trailers in separate
    // writes) waits for the client's delayed ACK: 40 ms per call. tonic sets it only on
    // listeners it binds itself.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // The standard plumbing, so grpcurl and grpc-health-probe work without the protos and
    // without a token: grpc.health.v1 follows the database, and server reflection
    // describes package cuttle.v1.
    let (health_reporter, standard_health) = tonic_health::server::health_reporter();
    let health = tokio::spawn(health::report_loop(
        app.clone(),
        health_reporter,
        shutdown.clone(),
    ));
    // Both reflection versions: older grpcurl and grpc_cli ask v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cuttle_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot describe the gRPC services for reflection")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cuttle_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("cannot describe the gRPC services for reflection")?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &app.inner.tls {
        builder = builder
            .tls_config(tls.clone())
            .context("invalid TLS certificate or key (tls_cert_file, tls_key_file)")?;
    }
    let result = builder
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
        .add_service(AdminServiceServer::new(service::admin::AdminApi::new(
            app.clone(),
        )))
        .add_service(PresetServiceServer::new(service::presets::PresetApi::new(
            app.clone(),
        )))
        .add_service(
            SuiteServiceServer::new(suites).max_encoding_message_size(MAX_SUITE_ANSWER_BYTES),
        )
        .add_service(AutoSuiteServiceServer::new(
            service::autosuites::AutoSuiteApi::new(app.clone()),
        ))
        .add_service(standard_health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await
        .context("gRPC server failed");
    shutdown.cancel();
    let _ = retry.await;
    let _ = reaper.await;
    let _ = firing.await;
    let _ = health.await;
    if let Some(http) = http {
        match http.await {
            Ok(Err(error)) => tracing::warn!("{error:#}"),
            Err(error) => tracing::warn!(%error, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
    }
    tracing::info!("cuttle-api stopped");
    result
}

/// A cuttle-api serving in the background of this process; dropping it cancels its
/// shutdown token.
#[derive(Debug)]
pub struct RunningApi {
    pub addr: std::net::SocketAddr,
    /// Where HTTP (the webhook, /healthz) is served, when `http_listen` is set.
    pub http_addr: Option<std::net::SocketAddr>,
    pub app: App,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningApi {
    /// The URL clients dial: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the server to stop (as SIGTERM does): no new requests, in-flight ones finish.
    pub fn stop(&self) {
        self.shutdown.cancel();
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
    let http_listener = match app.settings().builds.http_listen {
        Some(http) => Some(TcpListener::bind(http).await.with_context(|| {
            format!("cannot serve HTTP on {http}; is something else listening there? pick another --http-listen")
        })?),
        None => None,
    };
    let http_addr = http_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    if let Some(bound) = http_addr {
        let _ = app.inner.http_addr.set(bound);
    }
    let task = tokio::spawn(serve(
        app.clone(),
        listener,
        http_listener,
        shutdown.clone(),
    ));
    Ok(RunningApi {
        addr,
        http_addr,
        app,
        shutdown,
        task: Some(task),
    })
}
