//! One lab for cuttle's tests and `cuttle-bench`: a private beanstalkd, a fresh database
//! (a temporary SQLite file or a new PostgreSQL database) and cuttle-api serving in this
//! process on a free loopback port, with the bootstrap admin's clients and helpers to make
//! tokens and add nodes. Everything is torn down on `Drop`.
//!
//! It is the harness of the api, CLI and dispatcher tests and of cuttle-bench, so each
//! starts cuttle-api the same way: [`LabBuilder`] begins at `Settings::local` and each user
//! changes only what its tests are about. It lives beside `cuttle-testkit` rather than in
//! it because it links cuttle-api: the tests of the crates under cuttle-api (db, queue,
//! suite) use testkit and must not have to build the daemon. Never a dependency of a
//! daemon or of the `cuttle` CLI.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use cuttle_api::{CancellationToken, RunningApi, Settings};
use cuttle_db::DatabaseTarget;
use cuttle_proto::bearer::{Authed, Bearer};
use cuttle_proto::v1;
use cuttle_proto::v1::admin_service_client::AdminServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_testkit::{Beanstalkd, ChaosProxy, PostgresDatabase, SqliteFile, TestCertificates};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A change to the settings cuttle-api starts with.
type SettingsChange = Box<dyn FnOnce(&mut Settings) + Send>;

/// Which database the lab's cuttle-api opens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DatabaseChoice {
    /// A new SQLite file in the data directory.
    Sqlite,
    /// A new database on the test PostgreSQL server, dropped with the lab.
    Postgres,
    /// A new PostgreSQL database reached through a [`ChaosProxy`] the test can cut.
    PostgresThroughProxy,
    /// A database someone else made (cuttle-bench's `--db`); the lab never drops it.
    Url(String),
}

/// How to start a [`Lab`]: SQLite, a beanstalkd of its own and `Settings::local` unless
/// told otherwise.
pub struct LabBuilder {
    database: DatabaseChoice,
    tls: bool,
    beanstalkd: Option<Beanstalkd>,
    beanstalk_address: Option<String>,
    nodes: Vec<(String, usize)>,
    settings: Vec<SettingsChange>,
}

impl std::fmt::Debug for LabBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabBuilder")
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("beanstalkd", &self.beanstalkd)
            .field("beanstalk_address", &self.beanstalk_address)
            .field("nodes", &self.nodes)
            .field("settings", &format_args!("{} changes", self.settings.len()))
            .finish()
    }
}

impl Default for LabBuilder {
    fn default() -> Self {
        LabBuilder::new()
    }
}

impl LabBuilder {
    pub fn new() -> LabBuilder {
        LabBuilder {
            database: DatabaseChoice::Sqlite,
            tls: false,
            beanstalkd: None,
            beanstalk_address: None,
            nodes: Vec::new(),
            settings: Vec::new(),
        }
    }

    /// A fresh PostgreSQL database instead of an SQLite file.
    pub fn postgres(mut self, postgres: bool) -> LabBuilder {
        self.database = if postgres {
            DatabaseChoice::Postgres
        } else {
            DatabaseChoice::Sqlite
        };
        self
    }

    /// A fresh PostgreSQL database that cuttle-api reaches through a TCP proxy
    /// ([`Lab::database_proxy`]), so a test can cut the database off and restore it.
    pub fn postgres_through_proxy(mut self) -> LabBuilder {
        self.database = DatabaseChoice::PostgresThroughProxy;
        self
    }

    /// The database at `url` (an existing, empty one), or a fresh SQLite file for `None`.
    pub fn database_url(mut self, url: Option<&str>) -> LabBuilder {
        self.database = match url {
            Some(url) => DatabaseChoice::Url(url.to_owned()),
            None => DatabaseChoice::Sqlite,
        };
        self
    }

    /// Serves gRPC over TLS with a test CA's certificate; [`Lab::url`] and
    /// [`Lab::channel`] then speak https and trust that CA.
    pub fn tls(mut self) -> LabBuilder {
        self.tls = true;
        self
    }

    /// This beanstalkd instead of a plain one (one with a binlog, say).
    pub fn beanstalkd(mut self, beanstalkd: Beanstalkd) -> LabBuilder {
        self.beanstalkd = Some(beanstalkd);
        self
    }

    /// The beanstalkd address cuttle-api dials, when it must not be the lab's own server
    /// (nothing listening there, or a server the test starts and kills itself).
    pub fn beanstalk_address(mut self, address: impl Into<String>) -> LabBuilder {
        self.beanstalk_address = Some(address.into());
        self
    }

    /// Adds `n_nodes` nodes of `machine_type` once the lab runs, named as
    /// [`Lab::add_nodes`] names them.
    pub fn nodes(mut self, machine_type: &str, n_nodes: usize) -> LabBuilder {
        self.nodes.push((machine_type.to_owned(), n_nodes));
        self
    }

    /// Changes the settings cuttle-api starts with (after the lab has filled in its
    /// database, beanstalkd, data directory and TLS files); changes apply in order.
    pub fn settings(mut self, change: impl FnOnce(&mut Settings) + Send + 'static) -> LabBuilder {
        self.settings.push(Box::new(change));
        self
    }

    /// Starts the lab, panicking if anything fails: what tests want.
    pub async fn start(self) -> Lab {
        self.try_start()
            .await
            .unwrap_or_else(|error| panic!("the lab did not start: {error:#}"))
    }

    /// Starts the lab: its services, then cuttle-api, then the nodes asked for.
    pub async fn try_start(self) -> anyhow::Result<Lab> {
        let data = SqliteFile::create();
        let beanstalkd = self.beanstalkd.unwrap_or_else(Beanstalkd::start);
        let beanstalk = self
            .beanstalk_address
            .unwrap_or_else(|| beanstalkd.addr().to_string());
        let (postgres, database_proxy, db_url) = match self.database {
            DatabaseChoice::Sqlite => (None, None, data.url()),
            DatabaseChoice::Postgres => {
                let database = PostgresDatabase::create();
                let url = database.url().to_owned();
                (Some(database), None, url)
            }
            DatabaseChoice::PostgresThroughProxy => {
                let database = PostgresDatabase::create();
                let proxy = ChaosProxy::start(postgres_server(database.url())?);
                let url = proxy.url_for(database.url());
                (Some(database), Some(proxy), url)
            }
            DatabaseChoice::Url(url) => (None, None, url),
        };
        let db = DatabaseTarget::parse(&db_url).context("the lab's database URL")?;
        let tls = self.tls.then(|| TestCertificates::create(data.dir()));
        let mut settings = Settings::local(db, beanstalk, data.dir().to_owned());
        settings.tls = tls.as_ref().map(|certs| cuttle_api::settings::TlsFiles {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        });
        for change in self.settings {
            change(&mut settings);
        }
        let api = cuttle_api::spawn(settings.clone(), CancellationToken::new())
            .await
            .context("starting cuttle-api")?;
        let lab = Lab {
            // A restart comes back on the same port, where clients and dispatchers
            // already point.
            settings: Settings {
                listen: api.addr,
                ..settings
            },
            api,
            beanstalkd,
            database_proxy,
            tls,
            _postgres: postgres,
            data,
        };
        for (machine_type, n_nodes) in &self.nodes {
            lab.add_nodes(machine_type, *n_nodes).await;
        }
        Ok(lab)
    }
}

/// The server a `postgres://user@host:port/name` URL points at.
fn postgres_server(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let host_port = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .with_context(|| format!("no host in the PostgreSQL URL {url}"))?;
    std::net::ToSocketAddrs::to_socket_addrs(host_port)?
        .next()
        .with_context(|| format!("{host_port} resolves to no address"))
}

/// A running lab: cuttle-api in this process, its beanstalkd and its database. Tests
/// act as the lab's admin (the bootstrap token cuttle-api wrote) unless they say
/// otherwise.
#[derive(Debug)]
pub struct Lab {
    pub api: RunningApi,
    /// What cuttle-api was started with (`listen` being the port it got), to start it
    /// again; a test may change it first (a restored database, say).
    pub settings: Settings,
    pub beanstalkd: Beanstalkd,
    /// The proxy in front of PostgreSQL, with [`LabBuilder::postgres_through_proxy`].
    pub database_proxy: Option<ChaosProxy>,
    /// The test CA and the server's certificate, with [`LabBuilder::tls`].
    pub tls: Option<TestCertificates>,
    _postgres: Option<PostgresDatabase>,
    /// The data directory (admin token, SQLite file); dropped last.
    data: SqliteFile,
}

impl Lab {
    /// cuttle-api's data directory: the admin token, the SQLite database, TLS files.
    pub fn data_dir(&self) -> &Path {
        self.data.dir()
    }

    /// The SQLite database's path; `None` when the lab runs on another database.
    pub fn sqlite_path(&self) -> Option<&Path> {
        matches!(self.settings.db.backend(), cuttle_db::Backend::Sqlite).then(|| self.data.path())
    }

    /// The URL clients dial: `https://localhost:PORT` when the lab serves TLS (the name
    /// its certificate carries), `http://127.0.0.1:PORT` otherwise.
    pub fn url(&self) -> String {
        match &self.tls {
            Some(_) => format!("https://localhost:{}", self.api.addr.port()),
            None => self.api.url(),
        }
    }

    /// A new connection to cuttle-api, trusting the lab's CA when it serves TLS.
    pub async fn channel(&self) -> Channel {
        let ca = self
            .tls
            .as_ref()
            .map(|certs| std::fs::read(&certs.ca).expect("read the lab's CA certificate"));
        cuttle_proto::endpoint::endpoint(&self.url(), ca.as_deref())
            .expect("the lab's URL is a valid endpoint")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to cuttle-api at {}: {e}", self.url()))
    }

    /// The bootstrap admin token cuttle-api wrote on its first start.
    pub fn admin_token(&self) -> String {
        let path = self.data_dir().join("admin.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// The admin token's interceptor.
    pub fn admin(&self) -> Bearer {
        Bearer::new(Some(&self.admin_token())).expect("the admin token is a valid bearer")
    }

    /// A new connection whose calls carry the admin token.
    pub async fn admin_channel(&self) -> Authed {
        InterceptedService::new(self.channel().await, self.admin())
    }

    pub async fn nodes(&self) -> NodeServiceClient<Authed> {
        NodeServiceClient::new(self.admin_channel().await)
    }

    pub async fn runs(&self) -> RunServiceClient<Authed> {
        RunServiceClient::new(self.admin_channel().await)
    }

    pub async fn queues(&self) -> QueueServiceClient<Authed> {
        QueueServiceClient::new(self.admin_channel().await)
    }

    pub async fn admin_service(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::new(self.admin_channel().await)
    }

    /// The secret of a new token for `user` with `role`, made by the admin.
    pub async fn token_secret(&self, user: &str, role: &str) -> String {
        self.admin_service()
            .await
            .create_token(v1::CreateTokenRequest {
                user: user.into(),
                role: role.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("cannot make a {role} token for {user}: {status}"))
            .into_inner()
            .secret
    }

    /// A new token's interceptor for `user` with `role`, made by the admin.
    pub async fn token(&self, user: &str, role: &str) -> Bearer {
        Bearer::new(Some(&self.token_secret(user, role).await)).expect("a new token is valid")
    }

    /// Adds node `name` of `machine_type`.
    pub async fn add_node(&self, name: &str, machine_type: &str) {
        self.nodes()
            .await
            .add_node(v1::AddNodeRequest {
                name: name.into(),
                machine_type: machine_type.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("cannot add node {name}: {status}"));
    }

    /// Adds `n_nodes` nodes of `machine_type`, named as the lab names them: `smithi001`,
    /// `smithi002`, …
    pub async fn add_nodes(&self, machine_type: &str, n_nodes: usize) {
        for i in 1..=n_nodes {
            self.add_node(&format!("{machine_type}{i:03}"), machine_type)
                .await;
        }
    }

    /// Stops cuttle-api (as SIGTERM does), waits until it has finished its in-flight
    /// calls and background tasks, and starts it again with [`Lab::settings`]: the same
    /// port, database and data directory.
    pub async fn restart(self) -> Lab {
        self.restart_with(|_| {}).await
    }

    /// Like [`Lab::restart`], calling `change` while cuttle-api is down: it may change
    /// the settings or what is on disk (a database restored from a backup).
    pub async fn restart_with(self, change: impl FnOnce(&mut Settings)) -> Lab {
        let Lab {
            api,
            mut settings,
            beanstalkd,
            database_proxy,
            tls,
            _postgres,
            data,
        } = self;
        api.stop();
        api.wait()
            .await
            .unwrap_or_else(|error| panic!("cuttle-api failed while stopping: {error:#}"));
        change(&mut settings);
        let api = spawn_again(&settings).await;
        Lab {
            api,
            settings,
            beanstalkd,
            database_proxy,
            tls,
            _postgres,
            data,
        }
    }

    /// Like [`Lab::restart`], without waiting for the old server's calls and streams
    /// (a dispatcher's WatchTube never ends by itself) to finish first: the new one
    /// starts as soon as the old one has let go of the port, as when systemd restarts
    /// the service under live clients.
    pub async fn restart_under_clients(&mut self) {
        self.api.stop();
        let fresh = spawn_again(&self.settings).await;
        drop(std::mem::replace(&mut self.api, fresh));
    }

    /// Stops cuttle-api and waits until it has stopped, handing back its error if it
    /// failed; the lab's services go with it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.api.stop();
        self.api.wait().await
    }
}

/// Starts cuttle-api with `settings`, retrying for a while as the old server may still
/// hold the port.
async fn spawn_again(settings: &Settings) -> RunningApi {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cuttle_api::spawn(settings.clone(), CancellationToken::new()).await {
            Ok(api) => return api,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!(
                "cuttle-api did not start again on {}: {error:#}",
                settings.listen
            ),
        }
    }
}
