//! Real local services for cuttle's tests, each torn down on `Drop`: a `beanstalkd` on a
//! free loopback port, a fresh PostgreSQL database, a temporary SQLite file.
//!
//! For tests and `cuttle-bench` only: no daemon, and not the `cuttle` CLI, may depend on
//! it. It never touches the process environment of the test that uses it; the PostgreSQL
//! server is found at `CUTTLE_TEST_POSTGRES` (read, never written) or at 127.0.0.1:5432.

pub mod chaos;
pub mod shaman;
pub mod teuthology;

pub use chaos::ChaosProxy;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use rand::Rng;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound socket")
        .port()
}

/// Waits until something accepts TCP connections on `addr`, or panics after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing is listening on {addr} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private beanstalkd, killed when dropped.
#[derive(Debug)]
pub struct Beanstalkd {
    child: Child,
    addr: SocketAddr,
    /// The extra arguments it was started with (a binlog directory, a size limit).
    extra: Vec<String>,
}

impl Beanstalkd {
    /// Starts `beanstalkd` on a free loopback port with its default job size limit.
    pub fn start() -> Beanstalkd {
        Beanstalkd::start_with_args(&[])
    }

    /// Starts `beanstalkd` with extra arguments (for example `["-z", "1000"]`).
    pub fn start_with_args(extra: &[&str]) -> Beanstalkd {
        // Another process may grab the port between our probe and beanstalkd's bind; retry.
        for _ in 0..5 {
            if let Some(server) = Beanstalkd::try_start(free_port(), extra) {
                return server;
            }
        }
        panic!("beanstalkd did not start listening on any of 5 free ports");
    }

    /// Starts `beanstalkd` on `port`, for tests that need it to appear where a daemon
    /// already expects it.
    pub fn start_on(port: u16) -> Beanstalkd {
        Beanstalkd::try_start(port, &[])
            .unwrap_or_else(|| panic!("beanstalkd did not start listening on port {port}"))
    }

    /// Starts `beanstalkd` on `port`; `None` if it exits first (the port was taken).
    fn try_start(port: u16, extra: &[&str]) -> Option<Beanstalkd> {
        let child = Command::new("beanstalkd")
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start beanstalkd ({e}); install it with `apt-get install beanstalkd` (bash .ci/run does)")
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Beanstalkd {
            child,
            addr,
            extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Something answers, but it may be another test's server that took the
                // port between our probe and this bind: ours then exits at once with a
                // bind error. Only a child still alive a moment later is the listener.
                std::thread::sleep(Duration::from_millis(50));
                return match server.child.try_wait() {
                    Ok(None) => Some(server),
                    _ => None,
                };
            }
            if let Ok(Some(_)) = server.child.try_wait() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Kills the server (SIGKILL) and starts a new one on the same port, without a
    /// binlog: every job the old one held is gone, as after a crash of a beanstalkd run
    /// without `-b`.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// Kills the server (SIGKILL) and starts it again on the same port with the same
    /// arguments: started with a binlog (`-b DIR`), it comes back with its jobs, and the
    /// ones that were reserved are ready again.
    pub fn restart_keeping_binlog(&mut self) {
        let extra = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.restart_with(&extra);
    }

    fn restart_with(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(server) = Beanstalkd::try_start(port, extra) {
                *self = server;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "beanstalkd did not start again on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its port and accepts connections, but answers
    /// nothing, like a hung beanstalkd. [`Beanstalkd::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} beanstalkd failed");
    }
}

impl Drop for Beanstalkd {
    fn drop(&mut self) {
        // A paused server still dies of SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PostgreSQL server tests use: `CUTTLE_TEST_POSTGRES` or the local default.
pub fn postgres_admin_url() -> String {
    std::env::var("CUTTLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test on the PostgreSQL server, dropped afterwards.
#[derive(Debug)]
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    /// Creates a uniquely named, empty database.
    pub fn create() -> PostgresDatabase {
        let admin_url = postgres_admin_url();
        let name = format!(
            "cuttle_test_{}_{:08x}",
            std::process::id(),
            rand::rng().random::<u32>()
        );
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin_url} ({e}); start it or set CUTTLE_TEST_POSTGRES (bash .ci/run starts one)")
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("a PostgreSQL URL ends in /database");
        let url = format!("{base}/{name}");
        PostgresDatabase {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A temporary directory holding an SQLite database path (the file itself is created by
/// whoever opens it), removed when dropped.
#[derive(Debug)]
pub struct SqliteFile {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFile {
    pub fn create() -> SqliteFile {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("cuttle.db");
        SqliteFile { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `--db` URL for this file.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, made with the
/// `openssl` command in `dir`: what a TLS test serves and trusts.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA certificate (PEM) clients trust.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

impl TestCertificates {
    pub fn create(dir: &Path) -> TestCertificates {
        let run = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run openssl ({e}); install it with `apt-get install openssl`")
                });
            assert!(
                output.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write server.ext");
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=cuttle test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestCertificates {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}
