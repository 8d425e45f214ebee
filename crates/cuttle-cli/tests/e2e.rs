//! The `cuttle` binary against the real cuttle-api (in this process, on a free port), a
//! real beanstalkd and a real SQLite database: the command-line contract end to end.
//!
//! No dispatcher runs here, so scheduled jobs stay queued until a test kills them.

use std::process::{Command, Output};

use cuttle_labkit::LabBuilder;
use cuttle_proto::v1;
use cuttle_queue::QueueClient;
use serde_json::Value;

struct Lab {
    /// cuttle-api over SQLite and its beanstalkd, served by `runtime`.
    kit: cuttle_labkit::Lab,
    /// `$HOME` of every `cuttle` run: no token file unless a test writes one.
    home: tempfile::TempDir,
    /// Developer tokens made so far, by user.
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Runs the server; dropped last so the server task outlives the test's commands.
    runtime: tokio::runtime::Runtime,
}

/// A runtime of its own for the lab's cuttle-api: the tests run `cuttle` as a blocking
/// process.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Lab {
    fn start() -> Lab {
        let runtime = runtime();
        let kit = runtime.block_on(
            LabBuilder::new()
                .settings(|settings| settings.max_db_connections = 4)
                .start(),
        );
        Lab {
            kit,
            home: tempfile::tempdir().unwrap(),
            tokens: Default::default(),
            runtime,
        }
    }

    /// Runs `cuttle --api URL ARGS…` as the lab's admin (the bootstrap admin token in
    /// CUTTLE_TOKEN), with a clean environment otherwise.
    fn cuttle(&self, args: &[&str]) -> Output {
        self.command(args)
            .env("CUTTLE_TOKEN", self.admin_token())
            .output()
            .unwrap()
    }

    /// Like [`Lab::cuttle`], run by developer `user`: `$USER` is `user` and the token is
    /// a developer token made for them.
    fn cuttle_as(&self, user: &str, args: &[&str]) -> Output {
        self.command(args)
            .env("USER", user)
            .env("CUTTLE_TOKEN", self.developer_token(user))
            .output()
            .unwrap()
    }

    /// A developer token for `user`, made by the admin once per user.
    fn developer_token(&self, user: &str) -> String {
        let mut tokens = self.tokens.lock().unwrap();
        if let Some(token) = tokens.get(user) {
            return token.clone();
        }
        let out = self.cuttle(&[
            "admin",
            "token",
            "create",
            "--user",
            user,
            "--role",
            "developer",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The secret is the last line.
        let secret = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned();
        tokens.insert(user.to_owned(), secret.clone());
        secret
    }

    /// `cuttle` with no token at all: no CUTTLE_TOKEN and a HOME without a token file.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle"));
        command
            .arg("--api")
            .arg(self.kit.url())
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_API")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", self.home.path());
        command
    }

    /// The admin token cuttle-api wrote at startup.
    fn admin_token(&self) -> String {
        self.kit.admin_token()
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
            self.kit.runs().await.create_run(request).await.unwrap();
        });
    }

    /// Moves job `job_id` to `status` through RunService.UpdateJobStatus with the admin
    /// token, as a supervisor (or, for dead, a dispatcher burying it) would.
    fn set_status(&self, job_id: i64, status: v1::JobStatus, reason: &str) {
        self.runtime.block_on(async {
            self.kit
                .runs()
                .await
                .update_job_status(v1::UpdateJobStatusRequest {
                    job_id,
                    status: status as i32,
                    reason: reason.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        });
    }

    /// A beanstalkd client of the lab's own, to play the dispatcher.
    fn beanstalk(&self) -> QueueClient {
        QueueClient::new(&self.kit.beanstalkd.addr().to_string())
    }

    /// Reserves the next ready job of `tube` and buries it, as a dispatcher does with a
    /// copy that can never run; returns its beanstalkd id.
    fn reserve_and_bury(&self, queue: &QueueClient, tube: &str) -> u64 {
        self.runtime.block_on(async {
            let reserved = queue
                .reserve(tube, std::time::Duration::from_secs(1))
                .await
                .unwrap()
                .expect("a ready job to bury");
            queue.bury(reserved.id, 1000).await.unwrap();
            reserved.id
        })
    }

    /// beanstalkd's own count of ready jobs on `tube`, asked of beanstalkd directly.
    fn ready_on(&self, tube: &str) -> String {
        let queue = QueueClient::new(&self.kit.beanstalkd.addr().to_string());
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
    let out = lab.cuttle_as("bob", &["node", "unlock", names[0]]);
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("locked by alice"), "{message}");
    // Without any token, nothing changes at all.
    let out = lab
        .command(&["node", "unlock", names[0], "--owner", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("needs a token"), "{message}");
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
    let token = std::fs::read_to_string(lab.kit.data_dir().join("admin.token")).unwrap();
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
        .take_while(|line| !line.starts_with("job "))
        .map(|line| line.split_whitespace().collect())
        .collect();
    let table_ids: Vec<i64> = rows.iter().map(|row| row[1].parse().unwrap()).collect();
    assert_eq!(table_ids, ids(&queue["jobs"]), "{text}");
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[0][4], "10");
    assert!(rows[0][6].ends_with('s'), "age: {text}");
    // Nodes are free: every job starts on the dispatcher's next round, and says so.
    assert_eq!(rows[0][7..], ["now", "priority", "10"]);
    assert!(
        text.contains("job 2 waits: starts on the next round"),
        "{text}"
    );

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

    // Pausing and resuming are an admin's: a developer is refused.
    let out = lab.cuttle_as("bob", &["queue", "resume", "smithi", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("bob (developer) may not"), "{message}");
    let out = lab.cuttle(&["queue", "resume", "smithi", "--json"]);
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

    let out = lab.cuttle_as("alice", &["--json", "kill", "doomed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let killed: Value = serde_json::from_slice(&out.stdout).unwrap();
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

    // Another developer's token may not, whatever owner it claims.
    let out = lab.cuttle_as("bob", &["kill", "alices", "--owner", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8(out.stderr).unwrap();
    assert!(
        message.starts_with("cuttle: permission denied"),
        "{message}"
    );
    assert!(
        message.contains("bob (developer) may not act on alice's runs"),
        "{message}"
    );
    let out = lab.cuttle_as("mallory", &["kill", "alices"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("mallory (developer) may not act on alice's"),
        "{stderr}"
    );
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

/// `cuttle` over TLS: with the lab's CA it talks to an https:// cuttle-api; without it, it
/// says what is missing.
#[test]
fn the_cli_speaks_tls_with_the_labs_ca() {
    let runtime = runtime();
    let lab = runtime.block_on(LabBuilder::new().tls().start());
    let certs = lab.tls.as_ref().unwrap();
    let url = lab.url();
    let cuttle = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["--api", &url])
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_TLS_CA_FILE")
            .env("HOME", lab.data_dir())
            .output()
            .unwrap()
    };
    let out = cuttle(&["--tls-ca-file", certs.ca.to_str().unwrap(), "health"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("database_ok:") && line.ends_with("true")),
        "{stdout}"
    );
    let out = cuttle(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-ca-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn suite_tree() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cuttle-suite/tests/data/ceph"
    )
    .to_owned()
}

#[test]
fn cuttle_suite_dry_runs_here_and_schedules_through_the_api() {
    let lab = Lab::start();
    let tree = suite_tree();
    // A dry run of a local tree needs no server: point --api at nothing.
    let dry = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args([
            "--api",
            "http://127.0.0.1:9",
            "--json",
            "suite",
            "--dry-run",
            "-s",
            "rados/singleton",
        ])
        .args([
            "--suite-dir",
            &tree,
            "--seed",
            "7",
            "-m",
            "smithi",
            "-k",
            "none",
        ])
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let jobs: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let recorded = std::fs::read_to_string(format!(
        "{}/../cuttle-suite/tests/data/teuthology/singleton-seed7.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let expected: Vec<&str> = recorded.lines().filter(|l| !l.starts_with('#')).collect();
    let got: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["description"].as_str().unwrap())
        .collect();
    assert_eq!(got, expected, "--dry-run --json lists teuthology's jobs");
    assert_eq!(jobs[0]["config"]["seed"], 7);
    assert_eq!(jobs[0]["config"]["machine_type"], "smithi");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("54 kept (seed 7)"));
    // A teuthology-suite command line, as people paste it, works as it is.
    let pasted = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args([
            "suite",
            "--dry-run",
            "-v",
            "-s",
            "rados/singleton",
            "--suite-dir",
            &tree,
        ])
        .args(cuttle_testkit::teuthology::OFFLINE_ARGS)
        .args(["--seed", "7", "-y", "--newest", "0"])
        .output()
        .unwrap();
    assert!(
        pasted.status.success(),
        "{}",
        String::from_utf8_lossy(&pasted.stderr)
    );
    let pasted_lines: Vec<String> = String::from_utf8_lossy(&pasted.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        pasted_lines, expected,
        "the same jobs as teuthology recorded"
    );
    // Bad input: a clear error, exit 1.
    let bad = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args([
            "suite",
            "--dry-run",
            "-s",
            "rados/singleton",
            "--suite-dir",
            &tree,
            "--subset",
            "5/3",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0/3 to 2/3"));
    let several = lab.cuttle(&[
        "suite",
        "-s",
        "rados/singleton",
        "--suite-dir",
        &tree,
        "-m",
        "smithi,mira",
    ]);
    assert_eq!(several.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&several.stderr).contains("one"),
        "{}",
        String::from_utf8_lossy(&several.stderr)
    );
    // For real: cuttle-api expands the same tree and queues every job.
    for i in 1..=2 {
        let out = lab.cuttle(&[
            "node",
            "add",
            &format!("smithi{i:03}"),
            "--machine-type",
            "smithi",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = lab.cuttle_as(
        "alice",
        &[
            "suite",
            "-s",
            "rados/singleton",
            "--suite-dir",
            &tree,
            "--seed",
            "7",
            "-m",
            "smithi",
            "--filter",
            "peer",
            "--name",
            "alice-peer",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let peers = expected.iter().filter(|d| d.contains("peer")).count();
    assert!(
        text.contains(&format!("scheduled run alice-peer: {peers} jobs queued")),
        "{text}"
    );
    let run = lab.cuttle(&["--json", "run", "show", "alice-peer"]);
    let run: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(run["jobs"].as_array().unwrap().len(), peers);
}

#[test]
fn presets_save_edit_and_schedule_from_the_command_line() {
    let lab = Lab::start();
    let tree = suite_tree();
    let out = lab.cuttle(&["node", "add", "smithi001", "--machine-type", "smithi"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let add = lab.cuttle_as(
        "alice",
        &[
            "preset",
            "add",
            "peers",
            "-s",
            "rados/singleton",
            "--suite-dir",
            &tree,
            "-m",
            "smithi",
            "--seed",
            "7",
            "--filter",
            "peer",
        ],
    );
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert!(String::from_utf8_lossy(&add.stdout).contains("suite: rados/singleton"));
    // Edit changes only the flags given.
    let edit = lab.cuttle_as("alice", &["--json", "preset", "edit", "peers", "-p", "300"]);
    assert!(
        edit.status.success(),
        "{}",
        String::from_utf8_lossy(&edit.stderr)
    );
    let edited: Value = serde_json::from_slice(&edit.stdout).unwrap();
    assert_eq!(edited["args"]["priority"], 300);
    assert_eq!(edited["args"]["filter_in"][0], "peer");
    // bob cannot see it.
    let bob = lab.cuttle_as(
        "bob",
        &["preset", "show", "peers", "--preset-owner", "alice"],
    );
    assert_eq!(bob.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bob.stderr).contains("may not see or change alice's presets"));
    // alice schedules from it; a flag given wins over the preset's.
    let run = lab.cuttle_as(
        "alice",
        &[
            "suite",
            "--preset",
            "peers",
            "--limit",
            "2",
            "--name",
            "alice-from-preset",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains("scheduled run alice-from-preset: 2 jobs queued")
    );
    let listed = lab.cuttle_as("alice", &["--json", "preset", "list"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let gone = lab.cuttle_as("alice", &["preset", "delete", "peers"]);
    assert!(gone.status.success());
    let again = lab.cuttle_as("alice", &["preset", "show", "peers"]);
    assert_eq!(again.status.code(), Some(1));
}

/// `cuttle node import` adds a paddles lab's nodes from paddles' JSON, keeping their
/// keys and down state, refusing bad entries by name, and can be run again.
#[test]
fn node_import_takes_a_paddles_labs_nodes() {
    let lab = Lab::start();
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let file = lab.home.path().join("paddles-nodes.json");
    std::fs::write(
        &file,
        format!(
            r#"[
  {{"name": "smithi001", "machine_type": "smithi", "up": true, "locked": true, "locked_by": "alice@laptop", "description": "/a/run/1", "os_type": "ubuntu", "os_version": "22.04", "ssh_pub_key": "{key}", "is_vm": false, "arch": "x86_64", "vm_host": null, "mac_address": null, "locked_since": "2026-11-29 10:00:00.000000"}},
  {{"name": "smithi002", "machine_type": "smithi", "up": false, "locked": false, "locked_by": null, "description": "bad disk", "os_type": null, "os_version": null, "ssh_pub_key": null}},
  {{"name": "mira001", "machine_type": "mira", "up": true, "locked": false, "locked_by": null, "description": null, "os_type": null, "os_version": null, "ssh_pub_key": null}},
  {{"name": "bad name!", "machine_type": "smithi"}}
]"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = lab.cuttle(&["node", "import", path, "--machine-type", "smithi"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad entry fails the import: {stdout}"
    );
    assert!(
        stdout.contains("added smithi001 (locked by alice@laptop in paddles; not imported)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("added smithi002 (down, as in paddles)"),
        "{stdout}"
    );
    assert!(stdout.contains("skipped bad name!"), "{stdout}");
    assert!(!stdout.contains("mira001"), "only smithi: {stdout}");
    let nodes = lab.json(&["node", "list"]);
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["ssh_key"], key);
    assert_eq!(nodes[0]["os_version"], "22.04");
    assert_eq!(nodes[0]["locked"], false);
    assert_eq!(
        (nodes[1]["up"].as_bool(), nodes[1]["description"].as_str()),
        (Some(false), Some("down in paddles"))
    );
    // Again, all types: the smithi nodes are left alone, mira001 joins.
    let again = lab.cuttle(&["node", "import", path]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("smithi001 is already in cuttle; left as it is"),
        "{stdout}"
    );
    assert!(stdout.contains("added mira001"), "{stdout}");
    assert!(
        stdout.contains("1 added, 2 already there, 1 failed"),
        "{stdout}"
    );
}

/// Runs `cuttle run wait` in the background, as the admin.
fn spawn_wait(lab: &Lab, args: &[&str]) -> std::process::Child {
    let mut full = vec!["run", "wait"];
    full.extend(args);
    lab.command(&full)
        .env("CUTTLE_TOKEN", lab.admin_token())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Schedules `jobs` one-node jobs as run `name` on smithi; returns their ids.
fn schedule_jobs(lab: &Lab, name: &str, jobs: usize) -> Vec<i64> {
    lab.ok(&[
        "schedule",
        "--name",
        name,
        "--owner",
        "alice",
        "-m",
        "smithi",
        "-p",
        "100",
        "--jobs",
        &jobs.to_string(),
    ]);
    ids(&lab.json(&["run", "show", name])["jobs"])
}

#[test]
fn run_wait_exits_with_the_runs_result() {
    use v1::JobStatus::{Dead, Pass, Running};
    let lab = Lab::start();
    lab.add_nodes("smithi", 2);

    // Every job passes while it waits: progress lines (plain, into a pipe), then the
    // result, exit 0.
    let passing = schedule_jobs(&lab, "passing", 2);
    let waiting = spawn_wait(&lab, &["passing", "--interval", "1", "--timeout", "120"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for id in &passing {
        lab.set_status(*id, Running, "");
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for id in &passing {
        lab.set_status(*id, Pass, "");
    }
    let out = waiting.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0/2 ended; 0 running, 2 waiting", "{stdout}");
    assert!(
        lines.contains(&"0/2 ended; 2 running, 0 waiting"),
        "{stdout}"
    );
    assert!(
        lines.contains(&"2/2 ended: pass=2; 0 running, 0 waiting"),
        "{stdout}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "run passing ended pass: 2 jobs, pass=2"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no colour into a pipe: {stdout:?}"
    );

    // A run that already ended answers at once; --json prints the run as `run show` does.
    let out = lab
        .command(&["run", "wait", "passing", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["run"]["status"], "pass");
    assert_eq!(shown["jobs"].as_array().unwrap().len(), 2);

    // A job dies: exit 1, the dead job listed with its reason, one line on stderr.
    let dying = schedule_jobs(&lab, "dying", 2);
    lab.set_status(dying[0], Running, "");
    lab.set_status(dying[0], Pass, "");
    lab.set_status(
        dying[1],
        Dead,
        "needs 3 nodes but machine type smithi has 2",
    );
    let out = lab.cuttle(&["run", "wait", "dying", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("run dying ended dead: 2 jobs, pass=1 dead=1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("needs 3 nodes but machine type smithi has 2"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("run dying ended dead (pass=1 dead=1)"),
        "{stderr}"
    );
    assert!(stderr.contains("cuttle run show dying"), "{stderr}");

    // Killed counts as not passed.
    schedule_jobs(&lab, "killed", 1);
    lab.ok(&["kill", "-r", "killed"]);
    let (code, message) = lab.fails(&["run", "wait", "killed"]);
    assert_eq!(code, 1);
    assert!(message.contains("ended killed"), "{message}");

    // Nothing moves: --timeout gives up with exit 2 and says the run goes on.
    schedule_jobs(&lab, "stuck", 1);
    let started = std::time::Instant::now();
    let (code, message) = lab.fails(&["run", "wait", "stuck", "--timeout", "2", "--interval", "1"]);
    assert_eq!(code, 2, "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        message.contains("run stuck has not ended after 2 s (0/1 ended; 0 running, 1 waiting)"),
        "{message}"
    );
    assert!(message.contains("--timeout"), "{message}");

    // An unknown run is the API's answer: exit 1, named.
    let (code, message) = lab.fails(&["run", "wait", "no-such-run"]);
    assert_eq!(code, 1);
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn statuses_are_coloured_only_when_asked_or_on_a_terminal() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 1);
    schedule_jobs(&lab, "colours", 1);
    // Into a pipe (as here) auto means no colour; always colours anyway, NO_COLOR or not.
    let plain = lab.ok(&["run", "show", "colours"]);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let out = lab
        .command(&["run", "show", "colours", "--color", "always"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let coloured = String::from_utf8(out.stdout).unwrap();
    assert!(coloured.contains("\x1b[33mqueued\x1b[0m"), "{coloured:?}");
    // Without the escapes it is the plain text, so columns stay aligned.
    assert_eq!(
        coloured.replace("\x1b[33m", "").replace("\x1b[0m", ""),
        plain
    );
    let never = lab.ok(&["run", "list", "--color", "never"]);
    assert!(!never.contains('\x1b'), "{never:?}");
    // JSON is never coloured.
    let json = lab.ok(&["run", "show", "colours", "--json", "--color", "always"]);
    assert!(!json.contains('\x1b'), "{json:?}");
}

#[test]
fn buried_jobs_are_listed_kicked_and_deleted_through_the_api() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 2);
    let queue = lab.beanstalk();
    let ttr = std::time::Duration::from_secs(60);
    // Play the dispatcher, burying in this order. A job whose copy was buried but whose
    // record still waits (its dispatcher could not mark it dead): the tube's first buried
    // job, the one beanstalkd's peek-buried shows.
    let live = schedule_jobs(&lab, "still-queued", 1)[0];
    let live_copy = lab.reserve_and_bury(&queue, "smithi");
    // A job that can never run: marked dead with the reason, its copy buried.
    let dead = schedule_jobs(&lab, "too-big", 1)[0];
    lab.set_status(
        dead,
        v1::JobStatus::Dead,
        "buried by its dispatcher: needs 5 nodes but machine type smithi has 2",
    );
    let dead_copy = lab.reserve_and_bury(&queue, "smithi");
    // Two bodies that are no jobs at all, which cuttle has no record of.
    let mut garbage = Vec::new();
    for body in ["hello: [\nnot yaml", "\n  just words\nmore words"] {
        lab.runtime
            .block_on(queue.put("smithi", body.as_bytes().to_vec(), 1, ttr))
            .unwrap();
        garbage.push(lab.reserve_and_bury(&queue, "smithi"));
    }

    // The first buried job and the recorded dead job's copy are listed; the bodies with no
    // record behind the first are counted, not seen.
    let listed = lab.json(&["queue", "buried", "smithi"]);
    assert_eq!(listed["buried_total"], 4, "{listed:#}");
    let jobs = listed["jobs"].as_array().unwrap();
    let listed_ids: Vec<u64> = jobs
        .iter()
        .map(|j| j["beanstalk_id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed_ids, [live_copy, dead_copy], "{listed:#}");
    assert_eq!(jobs[0]["job"]["id"], live);
    assert_eq!(jobs[0]["job"]["status"], "queued");
    assert_eq!(jobs[0]["kick_refused"], "");
    assert_eq!(jobs[1]["job"]["id"], dead);
    assert_eq!(jobs[1]["job"]["run_name"], "too-big");
    assert_eq!(jobs[1]["job"]["status"], "dead");
    assert_eq!(
        jobs[1]["reason"],
        "buried by its dispatcher: needs 5 nodes but machine type smithi has 2"
    );
    let refusal = jobs[1]["kick_refused"].as_str().unwrap();
    assert!(refusal.contains("has ended (dead)"), "{refusal}");
    let text = lab.ok(&["queue", "buried", "smithi"]);
    assert!(
        text.starts_with("4 buried on smithi (beanstalkd's count), 2 listed\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{dead_copy} is not kicked: job {dead} of run too-big has ended (dead)"
        )),
        "{text}"
    );
    assert!(
        text.contains("2 more buried on smithi cannot be listed"),
        "{text}"
    );

    // Only admins kick or delete: a developer is refused and told why.
    let out = lab.cuttle_as("alice", &["queue", "kick", "smithi", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("may not kick buried jobs"), "{message}");
    assert!(message.contains("admin token"), "{message}");

    // An ended job's copy is never kicked: the refusal says to schedule it again.
    let (code, message) = lab.fails(&["queue", "kick", "smithi", "-j", &dead.to_string()]);
    assert_eq!(code, 1);
    assert!(
        message.contains("failed precondition: not kicked: job"),
        "{message}"
    );
    assert!(
        message.contains("cuttle suite --rerun too-big --rerun-statuses dead"),
        "{message}"
    );
    // What is not buried there is named, with where to look.
    let (_, message) = lab.fails(&["queue", "kick", "smithi", "-b", "999999"]);
    assert!(
        message.contains("beanstalkd job 999999 is not buried on tube smithi"),
        "{message}"
    );
    assert!(message.contains("cuttle queue buried smithi"), "{message}");
    let out = lab.cuttle(&["queue", "kick", "smithi", "-b", "1", "--all"]);
    assert_eq!(out.status.code(), Some(2), "one target only (clap)");

    // The waiting job's copy is kicked by its job id, and its timeline says so.
    let out = lab.ok(&["queue", "kick", "smithi", "-j", &live.to_string()]);
    assert_eq!(
        out.trim(),
        format!("kicked beanstalkd job {live_copy} (job {live} of run still-queued) back to ready")
    );
    let timeline = lab.json(&["job", "show", &live.to_string()]);
    assert!(
        timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains(&format!(
                "buried beanstalkd copy {live_copy} kicked back to ready by admin"
            ))),
        "{timeline:#}"
    );

    // Now the refused copy is the first: --all leaves it and cannot see past it.
    let kicked = lab.json(&["queue", "kick", "smithi", "--all"]);
    assert_eq!(kicked["kicked"].as_array().unwrap().len(), 0, "{kicked:#}");
    assert_eq!(
        kicked["refused"][0]["beanstalk_id"], dead_copy,
        "{kicked:#}"
    );
    assert_eq!(kicked["unseen"], 2, "{kicked:#}");

    // Delete the ended job's copy: gone, noted on the job, which stays dead.
    let out = lab.ok(&["queue", "delete-buried", "smithi", "-j", &dead.to_string()]);
    assert_eq!(
        out.trim(),
        format!("deleted beanstalkd job {dead_copy} (job {dead} of run too-big)")
    );
    let job = lab.json(&["job", "show", &dead.to_string()]);
    assert_eq!(job["job"]["status"], "dead");
    assert!(
        job["events"].as_array().unwrap().iter().any(|e| e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("deleted by admin")),
        "{job:#}"
    );
    let (_, message) = lab.fails(&[
        "queue",
        "delete-buried",
        "smithi",
        "-b",
        &dead_copy.to_string(),
    ]);
    assert!(message.contains("not buried on tube smithi"), "{message}");

    // The first body with no record shows with why cuttle refuses it and its first line.
    let listed = lab.json(&["queue", "buried", "smithi"]);
    assert_eq!(listed["buried_total"], 2, "{listed:#}");
    assert_eq!(listed["jobs"][0]["beanstalk_id"], garbage[0], "{listed:#}");
    assert!(listed["jobs"][0]["job"].is_null());
    assert_eq!(listed["jobs"][0]["body_first_line"], "hello: [");
    assert!(
        listed["jobs"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("YAML"),
        "{listed:#}"
    );
    // --all kicks it and then the one behind it, one by one.
    let kicked = lab.json(&["queue", "kick", "smithi", "--all"]);
    let kicked_ids: Vec<u64> = kicked["kicked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["beanstalk_id"].as_u64().unwrap())
        .collect();
    assert_eq!(kicked_ids, garbage, "{kicked:#}");
    assert_eq!(kicked["kicked"][1]["body_first_line"], "  just words");
    assert_eq!(kicked["unseen"], 0);
    let stats = lab.runtime.block_on(queue.stats_tube("smithi")).unwrap();
    assert_eq!(stats["current-jobs-buried"], "0");
    assert_eq!(stats["current-jobs-ready"], "3");
    assert_eq!(
        lab.ok(&["queue", "buried", "smithi"]),
        "no buried jobs on smithi\n"
    );
}

#[test]
fn deleting_a_waiting_jobs_buried_copy_puts_it_on_its_tube_again() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 1);
    let queue = lab.beanstalk();
    let live = schedule_jobs(&lab, "requeued", 1)[0];
    let copy = lab.reserve_and_bury(&queue, "smithi");
    let out = lab.ok(&["queue", "delete-buried", "smithi", "-b", &copy.to_string()]);
    assert!(
        out.contains(&format!("job {live} is put on its tube smithi again")),
        "{out}"
    );
    // cuttle-api's enqueue retry loop (every 5 s in a local lab) puts a fresh copy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let job = lab.json(&["job", "show", &live.to_string()]);
        let id = job["job"]["beanstalk_id"].as_u64();
        if id.is_some_and(|id| id != copy) {
            assert_eq!(job["job"]["status"], "queued");
            assert_eq!(lab.ready_on("smithi"), "1");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never put again: {job:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn owners_default_to_user_and_a_developer_token_to_its_own_user() {
    let lab = Lab::start();
    lab.add_nodes("smithi", 3);
    // An admin acting without --owner locks in $USER's name, as teuthology-lock does.
    let out = lab
        .command(&["node", "lock", "smithi001"])
        .env("CUTTLE_TOKEN", lab.admin_token())
        .env("USER", "ops")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = lab.json(&["node", "list", "--owner", "ops"]);
    assert_eq!(node[0]["name"], "smithi001", "{node:#}");
    // A developer whose login differs from their token's user still acts as themselves:
    // $USER could only get them refused.
    let bob_token = lab.developer_token("bob");
    let out = lab
        .command(&["node", "lock", "-m", "smithi", "--count", "1"])
        .env("CUTTLE_TOKEN", &bob_token)
        .env("USER", "root")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let locked = String::from_utf8(out.stdout).unwrap();
    let node = lab.json(&["node", "list", "--owner", "bob"]);
    assert_eq!(node[0]["name"], locked.trim(), "{node:#}");
    let out = lab
        .command(&["node", "unlock", locked.trim()])
        .env("CUTTLE_TOKEN", &bob_token)
        .env("USER", "root")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Naming someone else is still refused for a developer, with the rule.
    let out = lab.cuttle_as("bob", &["node", "lock", "smithi003", "--owner", "carol"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bob (developer) may not"));
}
