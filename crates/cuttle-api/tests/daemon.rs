//! The `cuttle-api` binary as operators run it: flags and `CUTTLE_*` variables with no
//! config file, SQLite or PostgreSQL by URL, JSON logs, SIGTERM, and a clear exit on a
//! database it cannot use. Each test runs the real process against a real beanstalkd.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cuttle_proto::bearer::Bearer;
use cuttle_proto::v1::admin_service_client::AdminServiceClient;
use cuttle_proto::v1::health_service_client::HealthServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{CreateTokenRequest, GetHealthRequest, GetRunRequest, WhoAmIRequest};
use cuttle_testkit::{Beanstalkd, PostgresDatabase, SqliteFile, free_port, wait_for_port};

/// A started `cuttle-api` and the port it serves on.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    /// Starts the binary with `args` and `envs` (only on the child; the test's own
    /// environment is untouched) and waits for its port.
    fn start(args: &[String], envs: &[(&str, String)], port: u16) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle-api"));
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for name in [
            "CUTTLE_CONFIG",
            "CUTTLE_LISTEN",
            "CUTTLE_DB",
            "CUTTLE_BEANSTALK",
            "CUTTLE_DATA_DIR",
            "CUTTLE_LOG_FORMAT",
        ] {
            command.env_remove(name);
        }
        command.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
        let child = command.spawn().unwrap();
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
        Daemon { child, port }
    }

    async fn health(&self) -> cuttle_proto::v1::GetHealthResponse {
        let mut client = HealthServiceClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap();
        client
            .get_health(GetHealthRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    /// Sends SIGTERM and returns the exit status and everything logged.
    fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "cuttle-api did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status, log)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_from_flags_alone_logs_json_and_stops_on_sigterm() {
    let beanstalkd = Beanstalkd::start();
    let data = SqliteFile::create();
    let port = free_port();
    let args = [
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--db".to_owned(),
        data.url(),
        "--beanstalk".to_owned(),
        beanstalkd.addr().to_string(),
        "--data-dir".to_owned(),
        data.dir().display().to_string(),
        "--log-format".to_owned(),
        "json".to_owned(),
    ];
    let daemon = Daemon::start(&args, &[], port);
    let health = daemon.health().await;
    assert!(health.database_ok && health.beanstalk_ok, "{health:?}");
    assert_eq!(health.database_backend, "sqlite");
    let mut runs = RunServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let refused = runs
        .get_run(GetRunRequest {
            name: "no-such-run".into(),
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::NotFound);
    assert!(data.path().exists(), "the SQLite file was created");
    assert!(
        data.dir().join("admin.token").exists(),
        "the admin token was generated"
    );
    // Tokens at work: a new one created with the bootstrap token, used, a bad one
    // refused. Neither secret may reach the log.
    let admin = std::fs::read_to_string(data.dir().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let created =
        AdminServiceClient::with_interceptor(channel.clone(), Bearer::new(Some(&admin)).unwrap())
            .create_token(CreateTokenRequest {
                user: "alice".into(),
                role: "developer".into(),
            })
            .await
            .unwrap()
            .into_inner();
    let me = AdminServiceClient::with_interceptor(
        channel.clone(),
        Bearer::new(Some(&created.secret)).unwrap(),
    )
    .who_am_i(WhoAmIRequest {})
    .await
    .unwrap()
    .into_inner();
    assert_eq!(me.user, "alice");
    let wrong = format!("{}x", created.secret);
    let refused = AdminServiceClient::with_interceptor(channel, Bearer::new(Some(&wrong)).unwrap())
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let (status, log) = daemon.terminate();
    for secret in [&admin, &created.secret, &wrong] {
        assert!(
            !log.contains(secret.as_str()),
            "a token reached the log:\n{log}"
        );
    }
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["method"] == "HealthService/GetHealth" && l["outcome"] == "ok"),
        "no request line in:\n{log}"
    );
    assert!(lines.iter().any(|l| l["signal"] == "SIGTERM"), "{log}");
    // A refused request says why in `detail`; `message` stays the event's own text, and
    // no line carries a key twice (JSON readers would keep only one).
    let refused = lines
        .iter()
        .find(|l| l["method"] == "RunService/GetRun")
        .unwrap_or_else(|| panic!("no GetRun line in:\n{log}"));
    assert_eq!(refused["outcome"], "NotFound");
    assert!(
        refused["detail"].as_str().unwrap().contains("no-such-run"),
        "{refused}"
    );
    for line in log.lines() {
        assert!(
            line.matches("\"message\":").count() <= 1,
            "duplicate key in {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_postgres_by_url_from_cuttle_variables() {
    let beanstalkd = Beanstalkd::start();
    let postgres = PostgresDatabase::create();
    let data = SqliteFile::create();
    let port = free_port();
    let envs = [
        ("CUTTLE_LISTEN", format!("127.0.0.1:{port}")),
        ("CUTTLE_DB", postgres.url().to_owned()),
        ("CUTTLE_BEANSTALK", beanstalkd.addr().to_string()),
        ("CUTTLE_DATA_DIR", data.dir().display().to_string()),
    ];
    let daemon = Daemon::start(&[], &envs, port);
    let health = daemon.health().await;
    assert!(health.database_ok && health.beanstalk_ok, "{health:?}");
    assert_eq!(health.database_backend, "postgres");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    // The default text format, written to a pipe as under systemd, has no colour codes.
    assert!(log.contains("cuttle-api serving gRPC"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a non-terminal log:\n{log}"
    );
}

#[test]
fn a_file_that_is_not_a_database_stops_startup_with_one_clear_message() {
    let data = SqliteFile::create();
    std::fs::write(data.path(), "not a database, just text\n".repeat(200)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle-api"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--db", &data.url()])
        .args(["--data-dir", &data.dir().display().to_string()])
        .env_remove("CUTTLE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cuttle-api: cannot open database"),
        "{stderr}"
    );
    assert!(last.contains("is not an SQLite database"), "{stderr}");
}
