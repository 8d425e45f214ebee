//! The `cuttle` binary against the real cuttle-api (in this process, on a free port), a
//! real beanstalkd and a real SQLite database: the command-line contract end to end.
//!
//! No dispatcher runs here, so scheduled jobs stay queued until a test kills them.

use std::process::{Command, Output};
use std::time::Duration;

use cuttle_api::{RunningApi, Settings};
use cuttle_db::DatabaseTarget;
use cuttle_proto::v1;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_queue::QueueClient;
use cuttle_runtime::telemetry::LogFormat;
use cuttle_testkit::{Beanstalkd, SqliteFile};
use serde_json::Value;

struct Lab {
    api: RunningApi,
    beanstalkd: Beanstalkd,
    data: SqliteFile,
    /// Runs the server; dropped last so the server task outlives the test's commands.
    runtime: tokio::runtime::Runtime,
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
            policy: Default::default(),
        };
        let api = runtime
            .block_on(cuttle_api::spawn(
                settings,
                cuttle_api::CancellationToken::new(),
            ))
            .unwrap();
        Lab {
            api,
            beanstalkd,
            data,
            runtime,
        }
    }

    /// Runs `cuttle --api URL ARGS…` with a clean environment for the CUTTLE_ variables.
    fn cuttle(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Like [`Lab::cuttle`], run by `user` (`$USER`), which is who acts without `--owner`.
    fn cuttle_as(&self, user: &str, args: &[&str]) -> Output {
        self.command(args).env("USER", user).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle"));
        command
            .arg("--api")
            .arg(self.api.url())
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_API");
        command
    }

    /// The admin token cuttle-api wrote at startup.
    fn admin_token(&self) -> String {
        let token = std::fs::read_to_string(self.data.dir().join("admin.token")).unwrap();
        token.trim().to_owned()
    }

    /// Adds `count` nodes of `machine_type`, so runs on it can be scheduled.
    fn add_nodes(&self, machine_type: &str, count: usize) {
        for i in 1..=count {
            let name = format!("{machine_type}{i:03}");
            self.ok(&["node", "add", &name, "--machine-type", machine_type]);
        }
    }

    /// Creates a run straight through the API, one job per priority: `cuttle schedule`
    /// gives every job of a run the same priority.
    fn create_run_with_priorities(&self, name: &str, owner: &str, priorities: &[u32]) {
        let jobs = priorities
            .iter()
            .map(|priority| v1::JobSpec {
                description: format!("priority {priority}"),
                machine_type: "smithi".into(),
                priority: Some(*priority),
                n_nodes: Some(1),
                ..Default::default()
            })
            .collect();
        let request = v1::CreateRunRequest {
            name: name.into(),
            owner: owner.into(),
            jobs,
            ..Default::default()
        };
        self.runtime.block_on(async {
            let mut client = RunServiceClient::connect(self.api.url()).await.unwrap();
            client.create_run(request).await.unwrap();
        });
    }

    /// beanstalkd's own count of ready jobs on `tube`, asked of beanstalkd directly.
    fn ready_on(&self, tube: &str) -> String {
        let queue = QueueClient::new(&self.beanstalkd.addr().to_string());
        let stats = self.runtime.block_on(queue.stats_tube(tube)).unwrap();
        stats["current-jobs-ready"].clone()
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

/// The `id`s of a JSON array of jobs, in order.
fn ids(jobs: &Value) -> Vec<i64> {
    jobs.as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_i64().unwrap())
        .collect()
}

/// One field of every job of a JSON array, in order.
fn column<'a>(jobs: &'a Value, field: &str) -> Vec<&'a Value> {
    jobs.as_array()
        .unwrap()
        .iter()
        .map(|job| &job[field])
        .collect()
}

#[test]
fn queue_list_shows_waiting_jobs_in_dispatch_order() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 4);
    lab.create_run_with_priorities("mixed", "alice", &[500, 10, 100]);
    lab.ok(&[
        "schedule",
        "--name",
        "middle",
        "--owner",
        "bob",
        "--machine-type",
        "smithi",
        "--priority",
        "50",
    ]);

    let queue = lab.json(&["queue", "list", "smithi"]);
    assert_eq!(queue["tube"]["machine_type"], "smithi");
    assert_eq!(queue["tube"]["paused"], false);
    assert_eq!(queue["tube"]["lease_holder"], "");
    let priorities: Vec<u64> = column(&queue["jobs"], "priority")
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(priorities, [10, 50, 100, 500], "{queue:#}");
    let runs: Vec<&str> = column(&queue["jobs"], "run_name")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(runs, ["mixed", "middle", "mixed", "mixed"]);
    for status in column(&queue["jobs"], "status") {
        assert_eq!(status, "queued");
    }
    assert_eq!(queue["beanstalk_stats"]["current-jobs-ready"], "4");

    // The table lists the same jobs in the same order, numbered from 1.
    let text = lab.ok(&["queue", "list", "smithi"]);
    assert!(text.contains("no active dispatcher"), "{text}");
    assert!(text.contains("ready=4 reserved=0 buried=0"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|line| !line.starts_with("#  JOB"))
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    let table_ids: Vec<i64> = rows.iter().map(|row| row[1].parse().unwrap()).collect();
    assert_eq!(table_ids, ids(&queue["jobs"]), "{text}");
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[0][4], "10");
    assert!(rows[0][6].ends_with('s'), "age: {text}");
    assert_eq!(rows[0][7..], ["priority", "10"]);

    // --limit keeps the most urgent.
    let first_two = lab.json(&["queue", "list", "smithi", "--limit", "2"]);
    assert_eq!(ids(&first_two["jobs"]), ids(&queue["jobs"])[..2]);

    // A machine type nothing was scheduled on has an empty queue.
    let text = lab.ok(&["queue", "list", "mira"]);
    assert!(text.contains("no jobs waiting on mira"), "{text}");
    assert!(
        lab.json(&["queue", "list", "mira"])["jobs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn queue_pause_and_resume_show_in_the_listing() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 1);
    lab.ok(&[
        "schedule",
        "--name",
        "r",
        "--owner",
        "alice",
        "--machine-type",
        "smithi",
    ]);

    let said = lab.ok(&["queue", "pause", "smithi", "--owner", "alice"]);
    assert_eq!(
        said.trim(),
        "queue smithi paused by alice: no new jobs will be dispatched; running jobs continue"
    );
    let queue = lab.json(&["queue", "list", "smithi"]);
    assert_eq!(queue["tube"]["paused"], true);
    assert_eq!(queue["tube"]["paused_by"], "alice");
    assert!(queue["tube"]["paused_at_ms"].is_i64(), "{queue:#}");
    // Pausing stops dispatching, not scheduling: the job is still waiting.
    assert_eq!(queue["jobs"].as_array().unwrap().len(), 1);
    let text = lab.ok(&["queue", "list", "smithi"]);
    assert!(text.contains("paused by alice since"), "{text}");
    let tubes = lab.json(&["queue", "tubes"]);
    let smithi = tubes
        .as_array()
        .unwrap()
        .iter()
        .find(|tube| tube["machine_type"] == "smithi")
        .unwrap_or_else(|| panic!("no smithi in {tubes:#}"));
    assert_eq!(smithi["paused"], true);
    let table = lab.ok(&["queue", "tubes"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["smithi", "yes", "alice"])),
        "{table}"
    );

    // $USER acts when --owner is absent.
    let out = lab.cuttle_as("bob", &["queue", "resume", "smithi", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tube: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tube["paused"], false);
    let queue = lab.json(&["queue", "list", "smithi"]);
    assert_eq!(queue["tube"]["paused"], false);
    assert_eq!(queue["tube"]["paused_by"], "");
    assert_eq!(
        lab.ok(&["queue", "resume", "smithi"]).trim(),
        "queue smithi resumed"
    );
}

#[test]
fn kill_dequeues_every_queued_job() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 2);
    lab.create_run_with_priorities("doomed", "alice", &[300, 100, 200]);
    lab.ok(&[
        "schedule",
        "--name",
        "spared",
        "--owner",
        "alice",
        "--machine-type",
        "smithi",
    ]);
    assert_eq!(lab.ready_on("smithi"), "4");

    let killed = lab.json(&["kill", "doomed", "--owner", "alice"]);
    assert_eq!(killed["dequeued"], 3, "{killed:#}");
    assert_eq!(killed["stopping"], 0);
    assert_eq!(killed["killed"].as_array().unwrap().len(), 3);
    for job in killed["killed"].as_array().unwrap() {
        assert_eq!(job["status"], "killed");
        assert_eq!(job["run_name"], "doomed");
    }

    let run = lab.json(&["run", "show", "doomed"]);
    assert_eq!(run["run"]["status"], "killed");
    for status in column(&run["jobs"], "status") {
        assert_eq!(status, "killed");
    }
    // Only the other run's job is left, in the database and on beanstalkd.
    assert_eq!(lab.ready_on("smithi"), "1");
    let queue = lab.json(&["queue", "list", "smithi"]);
    assert_eq!(column(&queue["jobs"], "run_name"), [&Value::from("spared")]);

    // The job's timeline ends in the kill, and its JSON has the dispatch fields.
    let job_id = run["jobs"][0]["id"].to_string();
    let job = lab.json(&["job", "show", &job_id]);
    let events = job["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{job:#}");
    assert_eq!(events[1]["from"], "queued");
    assert_eq!(events[1]["to"], "killed");
    assert_eq!(events[1]["reason"], "killed by alice");
    for field in [
        "dispatcher",
        "supervisor_host",
        "supervisor_pid",
        "started_at_ms",
    ] {
        assert!(job["job"].get(field).is_some(), "no {field} in {job:#}");
    }
    let text = lab.ok(&["job", "show", &job_id]);
    assert!(text.contains("queued → killed  killed by alice"), "{text}");
    assert!(text.lines().any(|l| l == "supervisor:    -"), "{text}");

    // Killing it again kills nothing, says so, and succeeds.
    let again = lab.ok(&["kill", "doomed", "--owner", "alice"]);
    assert!(again.starts_with("killed 0 jobs of run doomed"), "{again}");
    assert!(again.contains("already ended"), "{again}");

    // One job of a run.
    let spared = lab.json(&["run", "show", "spared"]);
    let spared_id = spared["jobs"][0]["id"].to_string();
    let said = lab.ok(&["kill", "spared", "--job", &spared_id, "--owner", "alice"]);
    assert_eq!(said.trim(), "killed 1 job of run spared (1 dequeued)");
    assert_eq!(lab.ready_on("smithi"), "0");
    let text = lab.ok(&["queue", "list", "smithi"]);
    assert!(text.contains("no jobs waiting on smithi"), "{text}");

    let (code, message) = lab.fails(&["kill", "nope", "--owner", "alice"]);
    assert_eq!(code, 1);
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn only_the_owner_or_an_admin_can_kill() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 1);
    lab.ok(&[
        "schedule",
        "--name",
        "alices",
        "--owner",
        "alice",
        "--machine-type",
        "smithi",
        "--jobs",
        "2",
    ]);

    let (code, message) = lab.fails(&["kill", "alices", "--owner", "bob"]);
    assert_eq!(code, 1);
    assert!(
        message.starts_with("cuttle: permission denied"),
        "{message}"
    );
    assert!(message.contains("belongs to alice"), "{message}");
    // Without --owner, $USER is who kills.
    let out = lab.cuttle_as("mallory", &["kill", "alices"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("belongs to alice, not mallory"), "{stderr}");
    let run = lab.json(&["run", "show", "alices"]);
    for status in column(&run["jobs"], "status") {
        assert_eq!(status, "queued", "a refused kill changed nothing");
    }

    // The admin token overrides ownership.
    let token = lab.admin_token();
    let said = lab.ok(&["--token", &token, "kill", "alices", "--owner", "operator"]);
    assert_eq!(said.trim(), "killed 2 jobs of run alices (2 dequeued)");
    let run = lab.json(&["run", "show", "alices"]);
    assert_eq!(run["run"]["status"], "killed");
}

#[test]
fn reprioritize_moves_a_job_up_the_queue() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 2);
    lab.create_run_with_priorities("moving", "alice", &[300, 100, 200]);
    let before = lab.json(&["queue", "list", "smithi"]);
    let last = before["jobs"].as_array().unwrap().last().unwrap()["id"]
        .as_i64()
        .unwrap();
    let moved = lab.json(&[
        "queue",
        "reprioritize",
        &last.to_string(),
        "5",
        "--owner",
        "alice",
    ]);
    assert_eq!(moved["priority"], 5, "{moved:#}");
    let after = lab.json(&["queue", "list", "smithi"]);
    assert_eq!(after["jobs"][0]["id"], last, "{after:#}");
    // Someone else may not.
    let output = lab.cuttle_as(
        "mallory",
        &["queue", "reprioritize", &last.to_string(), "1"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("alice"));
}
