//! The `cuttle-api` binary as systemd sees it with `Type=notify` and `WatchdogSec=`:
//! `READY=1` only once its gRPC port accepts connections (migrations done), `WATCHDOG=1`
//! at half the watchdog timeout while it runs, `STOPPING=1` on SIGTERM. The real process,
//! with `NOTIFY_SOCKET` naming a datagram socket of the test.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cuttle_proto::v1::GetHealthRequest;
use cuttle_proto::v1::health_service_client::HealthServiceClient;
use cuttle_testkit::{Beanstalkd, SqliteFile, free_port};

/// A started cuttle-api, killed if the test ends before it exits.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next notification, or `None` after `timeout`.
fn next_state(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buffer = [0u8; 4096];
    match socket.recv(&mut buffer) {
        Ok(n) => Some(String::from_utf8_lossy(&buffer[..n]).into_owned()),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(error) => panic!("cannot receive a notification: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_grpc_accepts_then_watchdog_pings_and_stopping_on_sigterm() {
    let beanstalkd = Beanstalkd::start();
    let data = SqliteFile::create();
    let port = free_port();
    // An abstract socket, as systemd names them ("@..."): nothing to clean up.
    let name = format!("cuttle-api-notify-test-{}-{port}", std::process::id());
    let socket =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let log_path = data.dir().join("cuttle-api.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_cuttle-api"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--db", &data.url()])
            .args(["--beanstalk", &beanstalkd.addr().to_string()])
            .args(["--data-dir", &data.dir().display().to_string()])
            .env_remove("CUTTLE_CONFIG")
            .env_remove("CUTTLE_LOG_TARGET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_PID")
            .env("NOTIFY_SOCKET", format!("@{name}"))
            // 400 ms: a ping every 200 ms.
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let first = next_state(&socket, Duration::from_secs(30));
    assert_eq!(
        first.as_deref(),
        Some("READY=1"),
        "the first notification; log:\n{}",
        log()
    );
    // Right when READY=1 arrives, with no retry: the port must already take connections.
    let connected = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(
        connected.is_ok(),
        "READY=1 before the gRPC port accepts connections: {connected:?}; log:\n{}",
        log()
    );
    // Closed at once: a connection that never speaks HTTP/2 would hold up the drain.
    drop(connected);
    let health = HealthServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
        .get_health(GetHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(health.database_ok, "{health:?}");

    let started = Instant::now();
    for _ in 0..3 {
        let state = next_state(&socket, Duration::from_secs(2));
        assert_eq!(state.as_deref(), Some("WATCHDOG=1"), "log:\n{}", log());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "three pings took {:?} at a 200 ms interval",
        started.elapsed()
    );

    assert!(
        Command::new("kill")
            .args(["-TERM", &daemon.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut after_sigterm = Vec::new();
    while let Some(state) = next_state(&socket, Duration::from_secs(5)) {
        let stopping = state == "STOPPING=1";
        after_sigterm.push(state);
        if stopping {
            break;
        }
    }
    assert_eq!(
        after_sigterm.last().map(String::as_str),
        Some("STOPPING=1"),
        "after SIGTERM: {after_sigterm:?}; log:\n{}",
        log()
    );
    assert!(
        after_sigterm[..after_sigterm.len() - 1]
            .iter()
            .all(|state| state == "WATCHDOG=1"),
        "{after_sigterm:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within 10 s of SIGTERM; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status:?}; log:\n{}", log());
}

#[test]
fn a_notify_socket_nobody_listens_on_is_a_warning_not_a_failure() {
    // Without NOTIFY_SOCKET at all nothing is sent: every other daemon test starts the
    // binary that way.
    let beanstalkd = Beanstalkd::start();
    let data = SqliteFile::create();
    let port = free_port();
    let log_path = data.dir().join("cuttle-api.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_cuttle-api"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--db", &data.url()])
            .args(["--beanstalk", &beanstalkd.addr().to_string()])
            .args(["--data-dir", &data.dir().display().to_string()])
            .env_remove("CUTTLE_CONFIG")
            .env_remove("CUTTLE_LOG_TARGET")
            .env_remove("JOURNAL_STREAM")
            .env(
                "NOTIFY_SOCKET",
                data.dir().join("nobody-listens").display().to_string(),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    cuttle_testkit::wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("cannot notify systemd")
    {
        assert!(
            Instant::now() < deadline,
            "no warning about the notify socket:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.0.try_wait().unwrap().is_none(), "cuttle-api exited");
}
