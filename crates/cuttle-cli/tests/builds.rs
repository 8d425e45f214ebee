//! Build-aware scheduling with the real binaries: `cuttle-api` started with its build
//! flags (`--http-listen --shaman-url --webhook-secret-file --shaman-poll-s`), a Shaman
//! double that is a real HTTP server, `cuttle suite --wait-for-build`, `cuttle autosuite
//! list --json`, and the webhook sent by `deploy/cuttle-build-status.sh` (what ceph-build
//! runs), across a restart of cuttle-api.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cuttle_testkit::shaman::{Build, Shaman};
use cuttle_testkit::{Beanstalkd, SqliteFile, free_port};
use serde_json::Value;

const SHA1: &str = "5d4e3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Api {
    child: Child,
    grpc: u16,
    http: u16,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Lab {
    api: Option<Api>,
    _beanstalkd: Beanstalkd,
    data: SqliteFile,
    shaman: Shaman,
    secret_file: PathBuf,
    home: tempfile::TempDir,
    beanstalk: String,
}

impl Lab {
    fn start() -> Lab {
        let beanstalkd = Beanstalkd::start();
        let data = SqliteFile::create();
        let secret_file = data.dir().join("webhook.secret");
        std::fs::write(&secret_file, "e2e-secret-0123456789abcdef0123\n").unwrap();
        let mut lab = Lab {
            api: None,
            beanstalk: beanstalkd.addr().to_string(),
            _beanstalkd: beanstalkd,
            data,
            shaman: Shaman::start(),
            secret_file,
            home: tempfile::tempdir().unwrap(),
        };
        lab.start_api();
        lab
    }

    /// Starts the real `cuttle-api` binary with its build flags and waits until it answers.
    fn start_api(&mut self) {
        let binary = Path::new(env!("CARGO_BIN_EXE_cuttle")).with_file_name("cuttle-api");
        assert!(
            binary.exists(),
            "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh), which builds it",
            binary.display()
        );
        let (grpc, http) = (free_port(), free_port());
        let log = std::fs::File::create(self.data.dir().join("api.log")).unwrap();
        let child = Command::new(binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--db")
            .arg(self.data.url())
            .arg("--data-dir")
            .arg(self.data.dir())
            .arg("--beanstalk")
            .arg(&self.beanstalk)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--shaman-url")
            .arg(self.shaman.url())
            .arg("--webhook-secret-file")
            .arg(&self.secret_file)
            .arg("--shaman-poll-s")
            .arg("1")
            .env_remove("CUTTLE_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.api = Some(Api { child, grpc, http });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.cuttle(&["health"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "cuttle-api did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops cuttle-api as systemd does (SIGTERM) and waits for it.
    fn stop_api(&mut self) {
        let api = self.api.take().unwrap();
        let pid = api.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let mut api = api;
        let status = api.child.wait().unwrap();
        assert!(
            status.success(),
            "cuttle-api exited {status}:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.dir().join("api.log")).unwrap_or_default()
    }

    fn api(&self) -> &Api {
        self.api.as_ref().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle"));
        command
            .arg("--api")
            .arg(format!("http://127.0.0.1:{}", self.api().grpc))
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_API")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", self.home.path());
        command
    }

    fn cuttle(&self, args: &[&str]) -> Output {
        let token =
            std::fs::read_to_string(self.data.dir().join("admin.token")).unwrap_or_default();
        self.command(args)
            .env("CUTTLE_TOKEN", token.trim())
            .output()
            .unwrap()
    }

    fn ok(&self, output: Output) -> String {
        assert!(
            output.status.success(),
            "exit {}:\n{}\n{}\n--- cuttle-api:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn alice(&self, token: &str, args: &[&str]) -> Output {
        self.command(args)
            .env("USER", "alice")
            .env("CUTTLE_TOKEN", token)
            .output()
            .unwrap()
    }

    fn autosuites(&self, token: &str) -> Vec<Value> {
        let out = self.ok(self.alice(token, &["--json", "autosuite", "list"]));
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Runs deploy/cuttle-build-status.sh, as ceph-build's submit_final_status would.
    fn notify(&self, branch: &str, status: &str) -> Output {
        Command::new(repo().join("deploy/cuttle-build-status.sh"))
            .arg(format!("http://127.0.0.1:{}", self.api().http))
            .arg(&self.secret_file)
            .arg(branch)
            .arg(status)
            .arg("https://jenkins.ceph.com/job/ceph-dev-new-build/4242/")
            .args(["centos", "9", "default", SHA1])
            .output()
            .unwrap()
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_suite_waits_for_its_build_across_a_restart_and_fires_once() {
    let mut lab = Lab::start();
    lab.shaman.add(Build::centos("wip-e2e", SHA1, "building"));
    lab.shaman.add(Build::centos("wip-poll", SHA1, "building"));
    for i in 1..=3 {
        lab.ok(lab.cuttle(&[
            "node",
            "add",
            &format!("smithi{i:03}"),
            "--machine-type",
            "smithi",
        ]));
    }
    let created = lab.ok(lab.cuttle(&[
        "admin",
        "token",
        "create",
        "--user",
        "alice",
        "--role",
        "developer",
    ]));
    let token = created.lines().last().unwrap().to_owned();
    let tree = repo().join("crates/cuttle-suite/tests/data/ceph");
    let tree = tree.to_str().unwrap();
    let suite = |branch: &str, extra: &[&str]| {
        let mut args = vec![
            "suite",
            "-s",
            "rados/singleton",
            "--suite-dir",
            tree,
            "-m",
            "smithi",
            "-c",
            branch,
            "--filter",
            "peer",
        ];
        args.extend_from_slice(extra);
        lab.alice(&token, &args)
    };
    // Without --wait-for-build a build that is not ready is refused, with the way out.
    let refused = suite("wip-e2e", &[]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--wait-for-build"), "{stderr}");
    let kept = lab.ok(suite("wip-e2e", &["--wait-for-build"]));
    assert!(kept.contains("kept as autosuite"), "{kept}");
    lab.ok(suite("wip-poll", &["--wait-for-build"]));
    let listed = lab.autosuites(&token);
    assert_eq!(listed.len(), 2);
    let e2e = listed.iter().find(|a| a["branch"] == "wip-e2e").unwrap();
    assert_eq!(e2e["state"], "waiting_for_build");
    assert!(e2e["run"].is_null());
    let id = e2e["id"].as_i64().unwrap();
    // A restart keeps it waiting.
    lab.stop_api();
    lab.start_api();
    let listed = lab.autosuites(&token);
    assert!(
        listed.iter().all(|a| a["state"] == "waiting_for_build"),
        "{listed:?}"
    );
    // Jenkins reports the build before Shaman lists it: the webhook alone fires it.
    let sent = lab.notify("wip-e2e", "completed");
    let answer = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{answer}\n{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(answer.contains(r#""fired":1"#), "{answer}");
    // Repeated: nothing more.
    let again = lab.notify("wip-e2e", "completed");
    assert!(String::from_utf8_lossy(&again.stdout).contains(r#""fired":0"#));
    let fired = lab.autosuites(&token);
    let e2e = fired.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(e2e["state"], "scheduled", "{e2e}");
    let run = e2e["run"].as_str().unwrap().to_owned();
    let shown: Value =
        serde_json::from_str(&lab.ok(lab.alice(&token, &["--json", "run", "show", &run]))).unwrap();
    assert_eq!(shown["run"]["sha1"], SHA1, "{shown}");
    // The other waits until the poll (every second here) finds its build ready.
    lab.shaman.set_status("wip-poll", SHA1, "ready");
    wait_until("the poll to fire wip-poll", || {
        lab.autosuites(&token)
            .iter()
            .any(|a| a["branch"] == "wip-poll" && a["state"] == "scheduled")
    });
    let runs: Value =
        serde_json::from_str(&lab.ok(lab.alice(&token, &["--json", "run", "list"]))).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        2,
        "one run per AutoSuite: {runs}"
    );
    // A bad signature is refused by the script's curl, and changes nothing.
    std::fs::write(&lab.secret_file, "not-the-secret-cuttle-api-holds\n").unwrap();
    let forged = lab.notify("wip-e2e", "failed");
    assert!(!forged.status.success());
    assert!(String::from_utf8_lossy(&forged.stdout).contains("does not match"));
    let show = lab.ok(lab.alice(&token, &["autosuite", "show", &id.to_string()]));
    assert!(show.contains("scheduled"), "{show}");
}
