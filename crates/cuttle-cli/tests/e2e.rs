//! The `cuttle` binary against the real cuttle-api (in this process, on a free port), a
//! real beanstalkd and a real SQLite database: the command-line contract end to end.

use std::process::{Command, Output};
use std::time::Duration;

use cuttle_api::{RunningApi, Settings};
use cuttle_db::DatabaseTarget;
use cuttle_runtime::telemetry::LogFormat;
use cuttle_testkit::{Beanstalkd, SqliteFile};
use serde_json::Value;

struct Lab {
    api: RunningApi,
    _beanstalkd: Beanstalkd,
    data: SqliteFile,
    /// Runs the server; dropped last so the server task outlives the test's commands.
    _runtime: tokio::runtime::Runtime,
}

impl Lab {
    fn start() -> Lab {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let beanstalkd = Beanstalkd::start();
        let data = SqliteFile::create();
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: DatabaseTarget::parse(&data.url()).unwrap(),
            beanstalk: beanstalkd.addr().to_string(),
            data_dir: data.dir().to_owned(),
            log_format: LogFormat::Text,
            admin_token_file: data.dir().join("admin.token"),
            max_db_connections: 4,
            job_ttr: Duration::from_secs(300),
            enqueue_retry: Duration::from_secs(5),
            supervisor_grace: Duration::from_secs(60),
            reap_interval: Duration::from_secs(5),
        };
        let api = runtime
            .block_on(cuttle_api::spawn(
                settings,
                cuttle_api::CancellationToken::new(),
            ))
            .unwrap();
        Lab {
            api,
            _beanstalkd: beanstalkd,
            data,
            _runtime: runtime,
        }
    }

    /// Runs `cuttle --api URL ARGS…` with a clean environment for the CUTTLE_ variables.
    fn cuttle(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .arg("--api")
            .arg(self.api.url())
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_API")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cuttle(args);
        assert!(
            out.status.success(),
            "cuttle {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        serde_json::from_str(&self.ok(&with_json)).unwrap()
    }

    /// Runs a command that must fail; returns (exit code, the one stderr line).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.cuttle(args);
        assert!(!out.status.success(), "cuttle {args:?} should have failed");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr:?}"
        );
        (out.status.code().unwrap(), stderr.trim_end().to_owned())
    }
}

#[test]
fn the_command_line_contract_end_to_end() {
    let lab = Lab::start();
    for i in 1..=20 {
        lab.ok(&[
            "node",
            "add",
            &format!("smithi{i:03}"),
            "--machine-type",
            "smithi",
        ]);
    }
    let nodes = lab.json(&["node", "list", "--machine-type", "smithi"]);
    assert_eq!(nodes.as_array().unwrap().len(), 20);

    // Lock prints exactly the locked names.
    let locked = lab.ok(&[
        "node",
        "lock",
        "--machine-type",
        "smithi",
        "--count",
        "3",
        "--owner",
        "alice",
    ]);
    let names: Vec<&str> = locked.lines().collect();
    assert_eq!(names.len(), 3, "{locked}");
    let (code, message) = lab.fails(&["node", "unlock", names[0], "--owner", "bob"]);
    assert_eq!(code, 1);
    assert!(message.contains("locked by alice"), "{message}");
    let mut unlock = vec!["node", "unlock"];
    unlock.extend(&names);
    unlock.extend(["--owner", "alice"]);
    lab.ok(&unlock);

    // Schedule 50 jobs from flags; the run shows them queued with beanstalkd ids.
    let run = lab.ok(&[
        "schedule",
        "--name",
        "alice-run",
        "--owner",
        "alice",
        "--machine-type",
        "smithi",
        "--priority",
        "75",
        "--nodes",
        "2",
        "--jobs",
        "50",
        "--time-limit",
        "600",
    ]);
    assert_eq!(run.trim(), "alice-run");
    let shown = lab.json(&["run", "show", "alice-run"]);
    let jobs = shown["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 50);
    for job in jobs {
        assert_eq!(job["status"], "queued");
        assert_eq!(job["priority"], 75);
        assert!(job["beanstalk_id"].is_u64(), "{job}");
    }
    let table = lab.ok(&["run", "show", "alice-run"]);
    assert!(table.contains("queued"), "{table}");
    let job_id = jobs[0]["id"].to_string();
    let job = lab.json(&["job", "show", &job_id]);
    assert_eq!(job["job"]["run_name"], "alice-run");
    assert_eq!(job["events"].as_array().unwrap().len(), 1);

    // Schedule from a teuthology job config file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("job.yaml");
    std::fs::write(
        &config,
        "owner: bob\nmachine_type: smithi\nroles:\n- [mon.a]\n- [client.0]\ncustom: kept\n",
    )
    .unwrap();
    let run = lab.ok(&[
        "schedule",
        config.to_str().unwrap(),
        "--name",
        "bob-run",
        "--jobs",
        "3",
    ]);
    assert_eq!(run.trim(), "bob-run");
    let bob = lab.json(&["run", "show", "bob-run"]);
    assert_eq!(bob["jobs"][0]["n_nodes"], 2);
    assert!(
        bob["jobs"][0]["config_yaml"]
            .as_str()
            .unwrap()
            .contains("custom: kept")
    );
    let runs = lab.json(&["run", "list", "--owner", "bob"]);
    assert_eq!(runs.as_array().unwrap().len(), 1);

    // Bad input: one clear line, exit 1, nothing written.
    std::fs::write(&config, "roles: [unclosed\n").unwrap();
    let (code, message) = lab.fails(&[
        "schedule",
        config.to_str().unwrap(),
        "--name",
        "x",
        "--owner",
        "o",
    ]);
    assert_eq!(code, 1);
    assert!(message.contains("not valid YAML"), "{message}");
    for (args, needle) in [
        (vec!["--priority", "-1"], "priority"),
        (vec!["--priority", "70000"], "priority"),
        (vec!["--nodes", "0"], "node count"),
        (vec!["--nodes", "21"], "has only 20"),
    ] {
        let mut full = vec![
            "schedule",
            "--name",
            "bad",
            "--owner",
            "o",
            "--machine-type",
            "smithi",
        ];
        full.extend(args);
        let (code, message) = lab.fails(&full);
        assert_eq!(code, 1, "{message}");
        assert!(message.contains(needle), "{message}");
    }
    assert!(
        lab.fails(&["run", "show", "bad"])
            .1
            .contains("does not exist")
    );

    // Admin token unlocks anyone's node.
    lab.ok(&["node", "lock", "smithi010", "--owner", "carol"]);
    let token = std::fs::read_to_string(lab.data.dir().join("admin.token")).unwrap();
    lab.ok(&[
        "--token",
        token.trim(),
        "node",
        "unlock",
        "smithi010",
        "--owner",
        "operator",
    ]);

    // Down nodes carry their reason.
    lab.ok(&[
        "node",
        "update",
        "smithi020",
        "--down",
        "--reason",
        "disk failing",
    ]);
    let down = lab.json(&["node", "list", "--down"]);
    assert_eq!(down[0]["description"], "disk failing");

    let health = lab.ok(&["health"]);
    assert!(health.contains("sqlite"), "{health}");
}
