//! The `cuttle` binary against the real cuttle-api (in this process, on a free port), a
//! real beanstalkd and a real SQLite database: the command-line contract end to end.
//!
//! No dispatcher runs here, so scheduled jobs stay queued until a test kills them.

use std::process::{Command, Output};

use cuttle_api::{RunningApi, Settings};
use cuttle_db::DatabaseTarget;
use cuttle_proto::v1;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_queue::QueueClient;
use cuttle_testkit::{Beanstalkd, SqliteFile};
use serde_json::Value;

struct Lab {
    api: RunningApi,
    beanstalkd: Beanstalkd,
    data: SqliteFile,
    /// `$HOME` of every `cuttle` run: no token file unless a test writes one.
    home: tempfile::TempDir,
    /// Developer tokens made so far, by user.
    tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
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
            max_db_connections: 4,
            ..Settings::local(
                DatabaseTarget::parse(&data.url()).unwrap(),
                beanstalkd.addr().to_string(),
                data.dir().to_owned(),
            )
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
            .arg(self.api.url())
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_API")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", self.home.path());
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
        let admin = cuttle_proto::bearer::Bearer::new(Some(&self.admin_token())).unwrap();
        self.runtime.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(self.api.url())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = RunServiceClient::with_interceptor(channel, admin);
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let beanstalkd = Beanstalkd::start();
    let data = SqliteFile::create();
    let certs = cuttle_testkit::TestCertificates::create(data.dir());
    let settings = Settings {
        tls: Some(cuttle_api::settings::TlsFiles {
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        }),
        ..Settings::local(
            DatabaseTarget::parse(&data.url()).unwrap(),
            beanstalkd.addr().to_string(),
            data.dir().to_owned(),
        )
    };
    let api = runtime
        .block_on(cuttle_api::spawn(
            settings,
            cuttle_api::CancellationToken::new(),
        ))
        .unwrap();
    let url = format!("https://localhost:{}", api.addr.port());
    let cuttle = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cuttle"))
            .args(["--api", &url])
            .args(args)
            .env_remove("CUTTLE_TOKEN")
            .env_remove("CUTTLE_TLS_CA_FILE")
            .env("HOME", data.dir())
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
