//! Whole-lab tests: a real beanstalkd, cuttle-api (in this process, on a free port) with a
//! real database, and the real cuttle-dispatcher, cuttle-supervisor and
//! cuttle-local-runner binaries as processes, on simulated nodes. Faults are real too:
//! `kill -9` of a dispatcher or a supervisor.
//!
//! The supervisor and local runner binaries are found next to the dispatcher binary, so
//! run these through `cargo test --workspace` (scripts/test.sh), which builds them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cuttle_api::{RunningApi, Settings};
use cuttle_core::JobStatus;
use cuttle_db::DatabaseTarget;
use cuttle_proto::convert::status_from_proto;
use cuttle_proto::v1;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_queue::QueueClient;
use cuttle_runtime::telemetry::LogFormat;
use cuttle_testkit::{Beanstalkd, PostgresDatabase, SqliteFile};
use tonic::transport::Channel;

const TUBE: &str = "smithi";

enum Database {
    Sqlite(SqliteFile),
    Postgres(PostgresDatabase),
}

impl Database {
    fn url(&self) -> String {
        match self {
            Database::Sqlite(file) => file.url(),
            Database::Postgres(db) => db.url().to_owned(),
        }
    }
}

/// Lab knobs a test may change.
#[derive(Clone)]
struct LabOptions {
    nodes: usize,
    postgres: bool,
    nuke_command: Option<String>,
    policy: cuttle_api::settings::PolicySettings,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            nodes: 4,
            postgres: false,
            nuke_command: None,
            policy: Default::default(),
        }
    }
}

struct Lab {
    dir: tempfile::TempDir,
    api: RunningApi,
    beanstalkd: Beanstalkd,
    _database: Database,
    config: PathBuf,
    dispatchers: Vec<Child>,
    runtime: tokio::runtime::Runtime,
}

impl Lab {
    fn start(options: LabOptions) -> Lab {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let beanstalkd = Beanstalkd::start();
        let database = if options.postgres {
            Database::Postgres(PostgresDatabase::create())
        } else {
            Database::Sqlite(SqliteFile::create())
        };
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: DatabaseTarget::parse(&database.url()).unwrap(),
            beanstalk: beanstalkd.addr().to_string(),
            data_dir: dir.path().to_owned(),
            log_format: LogFormat::Text,
            admin_token_file: dir.path().join("admin.token"),
            max_db_connections: 8,
            job_ttr: Duration::from_secs(10),
            enqueue_retry: Duration::from_secs(1),
            supervisor_grace: Duration::from_secs(2),
            reap_interval: Duration::from_secs(1),
            policy: options.policy,
        };
        let api = runtime
            .block_on(cuttle_api::spawn(
                settings,
                cuttle_api::CancellationToken::new(),
            ))
            .unwrap();
        let config = dir.path().join("dispatcher.toml");
        let mut text = format!(
            "lease_ttl_ms = 2000\nrelease_interval_ms = 500\n[lab]\narchive_dir = {:?}\nheartbeat_interval_ms = 300\nkill_grace_ms = 500\ncommand_timeout_s = 10\n",
            dir.path().join("archive")
        );
        if let Some(nuke) = &options.nuke_command {
            text.push_str(&format!("nuke_command = {nuke:?}\n"));
        }
        std::fs::write(&config, text).unwrap();
        let lab = Lab {
            dir,
            api,
            beanstalkd,
            _database: database,
            config,
            dispatchers: Vec::new(),
            runtime,
        };
        for i in 1..=options.nodes {
            lab.runtime
                .block_on(lab.nodes().add_node(v1::AddNodeRequest {
                    name: format!("n{i:02}"),
                    machine_type: TUBE.into(),
                    ..Default::default()
                }))
                .unwrap();
        }
        lab
    }

    fn channel(&self) -> Channel {
        let url = self.api.url();
        self.runtime.block_on(async move {
            tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap()
        })
    }

    fn runs(&self) -> RunServiceClient<Channel> {
        RunServiceClient::new(self.channel())
    }

    fn nodes(&self) -> NodeServiceClient<Channel> {
        NodeServiceClient::new(self.channel())
    }

    fn queues(&self) -> QueueServiceClient<Channel> {
        QueueServiceClient::new(self.channel())
    }

    fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Starts a real dispatcher for the tube; its log goes to `dispatcher-N.log`.
    fn dispatcher(&mut self, exit_on_empty: bool) -> usize {
        let index = self.dispatchers.len();
        let log =
            std::fs::File::create(self.dir.path().join(format!("dispatcher-{index}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle-dispatcher"));
        command
            .args(["--machine-type", TUBE, "--api", &self.api.url()])
            .arg("--beanstalk")
            .arg(self.beanstalkd.addr().to_string())
            .arg("--config")
            .arg(&self.config)
            .env_remove("CUTTLE_LAB_JSON")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if exit_on_empty {
            command.arg("--exit-on-empty-queue");
        }
        let supervisor =
            Path::new(env!("CARGO_BIN_EXE_cuttle-dispatcher")).with_file_name("cuttle-supervisor");
        assert!(
            supervisor.exists(),
            "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh), which builds it",
            supervisor.display()
        );
        self.dispatchers.push(command.spawn().unwrap());
        index
    }

    fn kill_9(pid: u32) {
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pid} failed");
    }

    fn dispatcher_log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("dispatcher-{index}.log")))
            .unwrap_or_default()
    }

    /// Schedules a run of `jobs` jobs with this job config.
    fn schedule(
        &self,
        name: &str,
        config_yaml: &str,
        jobs: usize,
        n_nodes: u32,
        time_limit_s: Option<u32>,
    ) {
        self.schedule_at(name, config_yaml, jobs, n_nodes, time_limit_s, 1000);
    }

    /// Like [`Lab::schedule`], at `priority`.
    fn schedule_at(
        &self,
        name: &str,
        config_yaml: &str,
        jobs: usize,
        n_nodes: u32,
        time_limit_s: Option<u32>,
        priority: u32,
    ) {
        let job = v1::JobSpec {
            machine_type: TUBE.into(),
            priority: Some(priority),
            n_nodes: Some(n_nodes),
            time_limit_s,
            config_yaml: config_yaml.into(),
            description: format!("{name} job"),
            ..Default::default()
        };
        self.runtime
            .block_on(self.runs().create_run(v1::CreateRunRequest {
                name: name.into(),
                owner: "alice".into(),
                jobs: vec![job; jobs],
                ..Default::default()
            }))
            .unwrap();
    }

    /// One run of jobs of the given sizes, submitted together (a suite).
    fn schedule_suite(&self, name: &str, priority: u32, sizes: &[u32], config_yaml: &str) {
        let jobs = sizes
            .iter()
            .map(|&n_nodes| v1::JobSpec {
                machine_type: TUBE.into(),
                priority: Some(priority),
                n_nodes: Some(n_nodes),
                time_limit_s: Some(60),
                config_yaml: config_yaml.into(),
                description: format!("{name} job of {n_nodes} nodes"),
                ..Default::default()
            })
            .collect();
        self.runtime
            .block_on(self.runs().create_run(v1::CreateRunRequest {
                name: name.into(),
                owner: "alice".into(),
                jobs,
                ..Default::default()
            }))
            .unwrap();
    }

    fn run_jobs(&self, name: &str) -> Vec<v1::Job> {
        self.runtime
            .block_on(self.runs().get_run(v1::GetRunRequest { name: name.into() }))
            .unwrap()
            .into_inner()
            .jobs
    }

    fn job(&self, job_id: i64) -> v1::JobDetail {
        self.runtime
            .block_on(self.runs().get_job(v1::GetJobRequest { job_id }))
            .unwrap()
            .into_inner()
    }

    fn locked_nodes(&self) -> Vec<v1::Node> {
        self.runtime
            .block_on(self.nodes().list_nodes(v1::ListNodesRequest {
                locked: Some(true),
                ..Default::default()
            }))
            .unwrap()
            .into_inner()
            .nodes
    }

    fn all_nodes(&self) -> Vec<v1::Node> {
        self.runtime
            .block_on(self.nodes().list_nodes(v1::ListNodesRequest::default()))
            .unwrap()
            .into_inner()
            .nodes
    }

    fn tube(&self) -> v1::Tube {
        self.runtime
            .block_on(self.queues().list_queue(v1::ListQueueRequest {
                machine_type: TUBE.into(),
                limit: 1,
            }))
            .unwrap()
            .into_inner()
            .tube
            .unwrap()
    }

    fn tube_stats(&self) -> HashMap<String, String> {
        let queue = QueueClient::new(&self.beanstalkd.addr().to_string());
        self.runtime.block_on(queue.stats_tube(TUBE)).unwrap()
    }

    /// Waits until `done` holds, failing with `what` and the dispatcher logs after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut(&Lab) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if Instant::now() > deadline {
                let logs: Vec<String> = (0..self.dispatchers.len())
                    .map(|i| format!("--- dispatcher {i}:\n{}", self.dispatcher_log(i)))
                    .collect();
                panic!(
                    "timed out after {limit:?} waiting for {what}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn all_ended(&self, run: &str) -> bool {
        self.run_jobs(run)
            .iter()
            .all(|job| status_from_proto(job.status).is_some_and(JobStatus::is_terminal))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.dispatchers {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn status(job: &v1::Job) -> JobStatus {
    status_from_proto(job.status).unwrap()
}

fn count(jobs: &[v1::Job], wanted: JobStatus) -> usize {
    jobs.iter().filter(|job| status(job) == wanted).count()
}

/// Every job ends as its config asks: pass, fail, or dead past its time limit with its
/// logs archived; every node comes back.
fn a_run_ends_as_its_configs_ask(options: LabOptions) {
    let mut lab = Lab::start(options);
    lab.schedule("passing", "runtime: 0.3\nstatus: pass\n", 3, 1, None);
    lab.schedule("failing", "runtime: 0.2\nstatus: fail\n", 2, 2, None);
    lab.schedule("too-slow", "runtime: 60\nstatus: pass\n", 1, 1, Some(1));
    lab.dispatcher(true);
    for run in ["passing", "failing", "too-slow"] {
        lab.wait_for(
            &format!("run {run} to end"),
            Duration::from_secs(60),
            |lab| lab.all_ended(run),
        );
    }
    assert_eq!(count(&lab.run_jobs("passing"), JobStatus::Pass), 3);
    assert_eq!(count(&lab.run_jobs("failing"), JobStatus::Fail), 2);
    let slow = lab.run_jobs("too-slow").remove(0);
    assert_eq!(status(&slow), JobStatus::Dead);
    assert!(slow.reason.contains("time limit of 1 s"), "{}", slow.reason);
    lab.wait_for(
        "every node to be unlocked",
        Duration::from_secs(10),
        |lab| lab.locked_nodes().is_empty(),
    );
    // Each job's archive holds its config, the runner's output and the supervisor's log.
    for run in ["passing", "failing", "too-slow"] {
        for job in lab.run_jobs(run) {
            let dir = lab.archive().join(run).join(job.id.to_string());
            for file in ["config.yaml", "runner.log", "supervisor.log"] {
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!text.is_empty(), "{} is empty", path.display());
            }
        }
    }
    let slow_log = std::fs::read_to_string(
        lab.archive()
            .join("too-slow")
            .join(slow.id.to_string())
            .join("runner.log"),
    )
    .unwrap();
    assert!(
        slow_log.contains("simulating a job that runs 60.0 s"),
        "{slow_log}"
    );
    // Its timeline shows the whole life, once.
    let detail = lab.job(slow.id);
    let changes: Vec<JobStatus> = detail
        .events
        .iter()
        .map(|event| status_from_proto(event.to).unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            JobStatus::Queued,
            JobStatus::Waiting,
            JobStatus::Running,
            JobStatus::Dead
        ]
    );
}

#[test]
fn a_run_ends_as_its_configs_ask_sqlite() {
    a_run_ends_as_its_configs_ask(LabOptions::default());
}

#[test]
fn a_run_ends_as_its_configs_ask_postgres() {
    a_run_ends_as_its_configs_ask(LabOptions {
        postgres: true,
        ..LabOptions::default()
    });
}

/// `kill -9` of the dispatcher in the middle of a 200-job run on 10 nodes: after a
/// restart every job ends exactly once and no node stays locked.
#[test]
fn killing_the_dispatcher_mid_run_loses_nothing() {
    let mut lab = Lab::start(LabOptions {
        nodes: 10,
        ..LabOptions::default()
    });
    lab.schedule("big", "runtime: 0\nstatus: pass\n", 200, 1, None);
    let first = lab.dispatcher(false);
    lab.wait_for("some jobs to finish", Duration::from_secs(60), |lab| {
        count(&lab.run_jobs("big"), JobStatus::Pass) >= 40
    });
    Lab::kill_9(lab.dispatchers[first].id());
    let _ = lab.dispatchers[first].wait();
    let done_at_kill = count(&lab.run_jobs("big"), JobStatus::Pass);
    assert!(
        done_at_kill < 200,
        "the run finished before the kill; make it longer"
    );
    lab.dispatcher(true);
    lab.wait_for("all 200 jobs to end", Duration::from_secs(120), |lab| {
        lab.all_ended("big")
    });
    let jobs = lab.run_jobs("big");
    assert_eq!(
        count(&jobs, JobStatus::Pass),
        200,
        "every job passes: {:?}",
        jobs.iter()
            .filter(|j| status(j) != JobStatus::Pass)
            .map(|j| (j.id, j.reason.clone()))
            .collect::<Vec<_>>()
    );
    for job in &jobs {
        let ends = lab
            .job(job.id)
            .events
            .iter()
            .filter(|event| status_from_proto(event.to).is_some_and(JobStatus::is_terminal))
            .count();
        assert_eq!(ends, 1, "job {} ended {ends} times", job.id);
    }
    lab.wait_for(
        "every node to be unlocked",
        Duration::from_secs(10),
        |lab| lab.locked_nodes().is_empty(),
    );
    let stats = lab.tube_stats();
    for key in [
        "current-jobs-ready",
        "current-jobs-reserved",
        "current-jobs-buried",
    ] {
        assert_eq!(stats[key], "0", "{key}: {stats:?}");
    }
}

/// `kill -9` of a supervisor: its job turns dead ("supervisor lost") within the heartbeat
/// grace, and its nodes come back.
#[test]
fn a_lost_supervisor_is_reaped_and_its_nodes_come_back() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        ..LabOptions::default()
    });
    lab.schedule("lost", "runtime: 60\nstatus: pass\n", 1, 2, None);
    lab.dispatcher(false);
    lab.wait_for("the job to run", Duration::from_secs(30), |lab| {
        status(&lab.run_jobs("lost")[0]) == JobStatus::Running
    });
    let job = lab.run_jobs("lost").remove(0);
    assert_eq!(job.nodes.len(), 2);
    assert!(job.supervisor_pid > 0);
    let record = lab
        .archive()
        .join("lost")
        .join(job.id.to_string())
        .join("runner.pid");
    // `running` is recorded before the supervisor starts the runner: wait for its record.
    lab.wait_for("the runner to be recorded", Duration::from_secs(10), |_| {
        record.exists()
    });
    let runner_pid: u32 = std::fs::read_to_string(&record)
        .expect("the supervisor names its runner")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat[stat.rfind(')').unwrap() + 1..]
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(runner_pid));
    Lab::kill_9(job.supervisor_pid);
    let killed_at = Instant::now();
    lab.wait_for("the job to be reaped", Duration::from_secs(15), |lab| {
        status(&lab.run_jobs("lost")[0]) == JobStatus::Dead
    });
    // Grace 2 s, reaper every 1 s, heartbeats every 0.3 s.
    assert!(
        killed_at.elapsed() < Duration::from_secs(8),
        "{:?}",
        killed_at.elapsed()
    );
    let job = lab.run_jobs("lost").remove(0);
    assert!(job.reason.starts_with("supervisor lost"), "{}", job.reason);
    lab.wait_for("its nodes to come back", Duration::from_secs(15), |lab| {
        lab.locked_nodes().is_empty()
    });
    // The release ended the runner the dead supervisor left running on those nodes.
    assert!(
        !alive(runner_pid),
        "runner {runner_pid} outlived the release"
    );
    assert!(!record.exists());
}

/// A standby dispatcher never dispatches while the active one lives, and takes over
/// within a few seconds of its death.
#[test]
fn a_standby_takes_over_only_when_the_active_dispatcher_dies() {
    let mut lab = Lab::start(LabOptions::default());
    let active = lab.dispatcher(false);
    lab.wait_for("a lease holder", Duration::from_secs(10), |lab| {
        !lab.tube().lease_holder.is_empty()
    });
    let first_holder = lab.tube().lease_holder;
    lab.dispatcher(false);
    lab.schedule("before", "runtime: 0\n", 20, 1, None);
    lab.wait_for("the first run", Duration::from_secs(60), |lab| {
        lab.all_ended("before")
    });
    for job in lab.run_jobs("before") {
        assert_eq!(status(&job), JobStatus::Pass);
        assert_eq!(
            job.dispatcher, first_holder,
            "the standby dispatched job {}",
            job.id
        );
    }
    assert_eq!(lab.tube().lease_holder, first_holder);

    Lab::kill_9(lab.dispatchers[active].id());
    let died = Instant::now();
    lab.wait_for("the standby to take over", Duration::from_secs(10), |lab| {
        let holder = lab.tube().lease_holder;
        !holder.is_empty() && holder != first_holder
    });
    // Lease time-to-live 2 s; the standby polls every half second.
    assert!(
        died.elapsed() < Duration::from_secs(5),
        "takeover took {:?}",
        died.elapsed()
    );
    let second_holder = lab.tube().lease_holder;
    lab.schedule("after", "runtime: 0\n", 10, 1, None);
    lab.wait_for("the second run", Duration::from_secs(60), |lab| {
        lab.all_ended("after")
    });
    for job in lab.run_jobs("after") {
        assert_eq!(status(&job), JobStatus::Pass);
        assert_eq!(job.dispatcher, second_holder);
    }
}

/// Garbage on the tube is buried with a reason; a body teuthology's own tools put is
/// adopted and run; the real jobs around them all run.
#[test]
fn garbage_is_buried_and_everything_else_runs() {
    let mut lab = Lab::start(LabOptions::default());
    let queue = QueueClient::new(&lab.beanstalkd.addr().to_string());
    let ttr = Duration::from_secs(10);
    let teuthology_body = "\
description: rados/basic
last_in_suite: false
machine_type: smithi
name: teuthology-2026-11-23_10:00:00-rados-main-distro-default-smithi
owner: scheduled_teuthology@teuthology
priority: 100
roles:
- [mon.a, osd.0]
runtime: 0.1
status: pass
tasks:
- install: null
tube: smithi
";
    lab.schedule("good-before", "runtime: 0\n", 3, 1, None);
    for body in [
        "{not: [yaml",
        "just some words",
        "tasks: []\n",
        "cuttle_job_id: '999999'\njob_id: '999999'\nname: gone\nmachine_type: smithi\n",
        "job_id: '424242'\nname: ghost-run\nmachine_type: smithi\n",
        teuthology_body,
    ] {
        lab.runtime
            .block_on(queue.put(TUBE, body.as_bytes().to_vec(), 500, ttr))
            .unwrap();
    }
    lab.schedule("good-after", "runtime: 0\n", 3, 1, None);
    let index = lab.dispatcher(true);
    lab.wait_for("the good runs", Duration::from_secs(60), |lab| {
        lab.all_ended("good-before") && lab.all_ended("good-after")
    });
    for run in ["good-before", "good-after"] {
        assert_eq!(count(&lab.run_jobs(run), JobStatus::Pass), 3);
    }
    let adopted_run = "teuthology-2026-11-23_10:00:00-rados-main-distro-default-smithi";
    lab.wait_for("the adopted job", Duration::from_secs(30), |lab| {
        lab.all_ended(adopted_run)
    });
    let adopted = lab.run_jobs(adopted_run);
    assert_eq!(adopted.len(), 1);
    assert_eq!(status(&adopted[0]), JobStatus::Pass);
    assert_eq!(adopted[0].owner, "scheduled_teuthology@teuthology");
    assert_eq!(adopted[0].priority, 100);
    // Unknown keys survive adoption.
    assert!(adopted[0].config_yaml.contains("install: null"));
    assert_eq!(lab.tube_stats()["current-jobs-buried"], "5");
    let log = lab.dispatcher_log(index);
    for reason in [
        "not valid YAML",
        "YAML mapping",
        "no name and machine_type",
        "cuttle-api does not know",
    ] {
        assert!(log.contains(reason), "no burial for {reason:?} in:\n{log}");
    }
}

/// Killing a run stops its running jobs (archiving their logs first) and its queued ones,
/// and every node comes back.
#[test]
fn kill_stops_running_jobs_and_gives_the_nodes_back() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        ..LabOptions::default()
    });
    lab.schedule("doomed", "runtime: 60\n", 4, 1, None);
    lab.dispatcher(false);
    lab.wait_for("two jobs to run", Duration::from_secs(30), |lab| {
        count(&lab.run_jobs("doomed"), JobStatus::Running) == 2
    });
    let killed = lab
        .runtime
        .block_on(lab.runs().kill(v1::KillRequest {
            run_name: "doomed".into(),
            owner: "alice".into(),
            job_id: None,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(killed.killed.len(), 4);
    assert_eq!(killed.stopping, 2);
    let started = Instant::now();
    lab.wait_for("the nodes to come back", Duration::from_secs(15), |lab| {
        lab.locked_nodes().is_empty()
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    let jobs = lab.run_jobs("doomed");
    assert_eq!(count(&jobs, JobStatus::Killed), 4);
    for job in jobs.iter().filter(|job| job.supervisor_pid > 0) {
        let log = std::fs::read_to_string(
            lab.archive()
                .join("doomed")
                .join(job.id.to_string())
                .join("supervisor.log"),
        )
        .unwrap();
        assert!(log.contains("runner ended"), "{log}");
    }
    lab.wait_for("the tube to empty", Duration::from_secs(15), |lab| {
        let stats = lab.tube_stats();
        stats["current-jobs-ready"] == "0" && stats["current-jobs-reserved"] == "0"
    });
}

/// A paused queue gets no new dispatches; resuming it lets them through.
#[test]
fn a_paused_queue_dispatches_nothing_until_resumed() {
    let mut lab = Lab::start(LabOptions::default());
    pause(&lab, true);
    lab.dispatcher(false);
    lab.schedule("held", "runtime: 0\n", 2, 1, None);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&lab.run_jobs("held"), JobStatus::Queued), 2);
    pause(&lab, false);
    lab.wait_for("the held jobs", Duration::from_secs(30), |lab| {
        lab.all_ended("held")
    });
    assert_eq!(count(&lab.run_jobs("held"), JobStatus::Pass), 2);
}

/// After a failed job, each node is nuked; a node whose nuke fails is marked down with
/// the reason and is not handed out again.
#[test]
fn a_node_whose_nuke_fails_is_marked_down() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        nuke_command: Some("sh -c 'test {node} != n01'".into()),
        ..LabOptions::default()
    });
    lab.schedule("broken", "runtime: 0\nstatus: fail\n", 1, 2, None);
    lab.dispatcher(true);
    lab.wait_for("the job to fail", Duration::from_secs(30), |lab| {
        lab.all_ended("broken")
    });
    lab.wait_for("the nodes to be released", Duration::from_secs(10), |lab| {
        lab.locked_nodes().is_empty()
    });
    let nodes = lab.all_nodes();
    let n01 = nodes.iter().find(|node| node.name == "n01").unwrap();
    let n02 = nodes.iter().find(|node| node.name == "n02").unwrap();
    assert!(!n01.up, "n01's nuke failed, so it must be down");
    assert!(
        n01.description.contains("nuke failed"),
        "{}",
        n01.description
    );
    assert!(n02.up, "n02 was nuked fine");
}

fn pause(lab: &Lab, paused: bool) {
    lab.runtime
        .block_on(lab.queues().set_queue_paused(v1::SetQueuePausedRequest {
            machine_type: TUBE.into(),
            paused,
            owner: "operator".into(),
        }))
        .unwrap();
}

fn beanstalk_priority(lab: &Lab, id: u64) -> Option<u32> {
    let queue = QueueClient::new(&lab.beanstalkd.addr().to_string());
    lab.runtime
        .block_on(queue.stats_job(id))
        .ok()
        .and_then(|stats| stats.get("pri").and_then(|p| p.parse().ok()))
}

/// `cuttle queue reprioritize` changes the job's priority on beanstalkd itself: its live
/// copy has the new priority and the old copy is gone.
#[test]
fn reprioritize_shows_in_beanstalkd() {
    let lab = Lab::start(LabOptions {
        policy: cuttle_api::settings::PolicySettings {
            policy: cuttle_policy::PolicyConfig {
                aging: None,
                ..Default::default()
            },
            window: 32,
        },
        ..LabOptions::default()
    });
    lab.schedule("later", "runtime: 0\n", 2, 1, None);
    let job = lab.run_jobs("later").remove(0);
    let old = job.beanstalk_id.unwrap();
    assert_eq!(beanstalk_priority(&lab, old), Some(1000));
    let changed = lab
        .runtime
        .block_on(lab.queues().reprioritize(v1::ReprioritizeRequest {
            job_id: job.id,
            priority: 10,
            owner: "alice".into(),
        }))
        .unwrap()
        .into_inner();
    assert_eq!(changed.priority, 10);
    let new = changed.beanstalk_id.unwrap();
    assert_ne!(new, old);
    assert_eq!(beanstalk_priority(&lab, new), Some(10));
    assert_eq!(
        beanstalk_priority(&lab, old),
        None,
        "the old copy is deleted"
    );
    // Someone else's job needs the admin token.
    let refused = lab
        .runtime
        .block_on(lab.queues().reprioritize(v1::ReprioritizeRequest {
            job_id: job.id,
            priority: 5,
            owner: "mallory".into(),
        }))
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let timeline = lab.job(job.id).events;
    assert!(
        timeline
            .iter()
            .any(|e| e.reason.contains("priority 1000 -> 10 by alice"))
    );
}

/// Aging lowers a waiting job's priority on beanstalkd as it waits.
#[test]
fn aging_shows_in_beanstalkd() {
    let lab = Lab::start(LabOptions {
        policy: cuttle_api::settings::PolicySettings {
            policy: cuttle_policy::PolicyConfig {
                aging: Some(cuttle_policy::Aging {
                    interval_ms: 1_000,
                    step: 100,
                    floor: 0,
                }),
                ..Default::default()
            },
            window: 32,
        },
        ..LabOptions::default()
    });
    pause(&lab, true);
    lab.schedule("aging", "runtime: 0\n", 1, 1, None);
    lab.wait_for(
        "the job to age on beanstalkd",
        Duration::from_secs(15),
        |lab| {
            let job = lab.run_jobs("aging").remove(0);
            job.beanstalk_id
                .and_then(|id| beanstalk_priority(lab, id))
                .is_some_and(|pri| pri <= 800)
        },
    );
}

/// The real dispatcher backfills: while a 4-node head job waits for a long job's nodes, a
/// short 1-node job starts ahead of it; a 1-node job that would still run when the head
/// could start does not.
#[test]
fn the_dispatcher_backfills_without_delaying_the_head() {
    let mut lab = Lab::start(LabOptions::default());
    lab.schedule_at("long", "runtime: 6\n", 1, 2, Some(8), 1000);
    lab.dispatcher(false);
    lab.wait_for("the long job to run", Duration::from_secs(30), |lab| {
        status(&lab.run_jobs("long")[0]) == JobStatus::Running
    });
    pause(&lab, true);
    lab.schedule_at("head", "runtime: 0.2\n", 1, 4, Some(60), 10);
    lab.schedule_at("short", "runtime: 0.2\n", 1, 1, Some(2), 2000);
    lab.schedule_at("too-long", "runtime: 0.2\n", 1, 1, Some(600), 2000);
    pause(&lab, false);
    for run in ["head", "short", "too-long"] {
        lab.wait_for(&format!("{run} to end"), Duration::from_secs(60), |lab| {
            lab.all_ended(run)
        });
    }
    let started = |run: &str| lab.run_jobs(run)[0].started_at_ms.unwrap();
    let long_started = lab.run_jobs("long")[0].started_at_ms.unwrap();
    assert!(
        started("short") < started("head"),
        "the short job was backfilled"
    );
    assert!(started("short") < long_started + 8_000);
    assert!(
        started("too-long") >= started("head"),
        "a job that would delay the head waits for it"
    );
}

/// A scaled-down workload (seconds instead of hours) run by the real daemons starts its
/// jobs in the order cuttle-sim's `cuttle` strategy predicts for the same input: the
/// dispatcher and the simulator call the same policy.
#[test]
fn the_real_dispatcher_starts_jobs_in_the_simulators_order() {
    // submit_s,priority,nodes,runtime_s,time_limit_s,description. All submitted at once;
    // priorities distinct, so submit-time jitter of the real run cannot change the order.
    let workload = "\
0,1000,2,2,4,a
0,500,3,1,3,b
0,900,1,1,2,c
0,2000,1,3,5,d
0,100,2,1,2,e
0,1500,1,1,9,f
";
    let parsed = cuttle_sim::workload::parse(workload).unwrap();
    let nodes = 3;
    let config = cuttle_policy::PolicyConfig::default();
    let predicted = cuttle_sim::engine::simulate(
        &parsed,
        nodes,
        &mut cuttle_sim::strategies::Cuttle::new(&parsed.jobs, nodes, config),
    );
    // Group the simulated starts by instant: within one instant the order is free.
    let mut by_instant: Vec<(i64, Vec<String>)> = Vec::new();
    for (job, start) in parsed.jobs.iter().zip(&predicted.start_ms) {
        let start = start.expect("every job of this workload starts");
        let name = job.description.clone().unwrap();
        match by_instant.iter_mut().find(|(at, _)| *at == start) {
            Some((_, names)) => names.push(name),
            None => by_instant.push((start, vec![name])),
        }
    }
    by_instant.sort_by_key(|(at, _)| *at);

    let mut lab = Lab::start(LabOptions {
        nodes: nodes as usize,
        ..LabOptions::default()
    });
    pause(&lab, true);
    for job in &parsed.jobs {
        let name = job.description.clone().unwrap();
        lab.schedule_at(
            &name,
            &format!("runtime: {}\n", job.runtime_ms as f64 / 1000.0),
            1,
            job.n_nodes,
            Some(u32::try_from(job.time_limit_ms / 1000).unwrap()),
            job.priority,
        );
    }
    lab.dispatcher(false);
    pause(&lab, false);
    let names: Vec<String> = parsed
        .jobs
        .iter()
        .map(|j| j.description.clone().unwrap())
        .collect();
    lab.wait_for("the workload to finish", Duration::from_secs(60), |lab| {
        names.iter().all(|name| lab.all_ended(name))
    });
    let mut real: Vec<(i64, String)> = names
        .iter()
        .map(|name| (lab.run_jobs(name)[0].started_at_ms.unwrap(), name.clone()))
        .collect();
    real.sort();
    let real_order: Vec<String> = real.into_iter().map(|(_, name)| name).collect();
    let mut position = 0;
    for (at, group) in &by_instant {
        let mut expected = group.clone();
        expected.sort();
        let mut got = real_order[position..position + group.len()].to_vec();
        got.sort();
        assert_eq!(
            got, expected,
            "at simulated t={at} ms the simulator starts {group:?}; the real order was {real_order:?} (simulated: {by_instant:?})"
        );
        position += group.len();
    }
}

/// Inside a suite the real daemons follow the policy's order: urgent work starts its
/// smaller jobs first, other work its biggest first (`suite_rank`).
#[test]
fn a_suite_starts_its_biggest_job_first_unless_it_is_urgent() {
    let mut lab = Lab::start(LabOptions {
        nodes: 3,
        ..LabOptions::default()
    });
    lab.dispatcher(false);
    for (run, priority) in [("urgent", 50), ("nightly", 1000)] {
        pause(&lab, true);
        lab.schedule_suite(run, priority, &[1, 3, 2], "runtime: 0.5\n");
        pause(&lab, false);
        lab.wait_for(&format!("{run} to end"), Duration::from_secs(60), |lab| {
            lab.all_ended(run)
        });
        let jobs = lab.run_jobs(run);
        let started = |n: u32| {
            jobs.iter()
                .find(|j| j.n_nodes == n)
                .and_then(|j| j.started_at_ms)
                .unwrap()
        };
        if priority < 1000 {
            // 1 + 2 nodes fill the lab at once; the 3-node job waits for them.
            assert!(started(3) > started(1).max(started(2)), "{run}: {jobs:#?}");
        } else {
            // The 3-node job takes the lab first; the others follow it.
            assert!(started(3) < started(1).min(started(2)), "{run}: {jobs:#?}");
        }
    }
}

/// A job waiting in a dispatcher's window when beanstalkd restarts without its binlog
/// (its copy is lost) still runs: from that dispatcher's window if it lives, or, if it
/// dies, because the reaper requeues the job, finds no copy and has it put again.
fn a_waiting_job_whose_copy_beanstalkd_lost_still_runs(dispatcher_dies: bool) {
    let mut lab = Lab::start(LabOptions {
        nodes: 1,
        ..LabOptions::default()
    });
    lab.schedule_at("blocker", "runtime: 3\n", 1, 1, None, 10);
    let first = lab.dispatcher(false);
    lab.wait_for("the blocker to run", Duration::from_secs(30), |lab| {
        status(&lab.run_jobs("blocker")[0]) == JobStatus::Running
    });
    lab.schedule_at("waiter", "runtime: 0.2\n", 1, 1, None, 1000);
    lab.wait_for(
        "the waiter to wait in the window",
        Duration::from_secs(30),
        |lab| status(&lab.run_jobs("waiter")[0]) == JobStatus::Waiting,
    );
    // An empty beanstalkd on the same port: what a restart without -b leaves.
    let port = lab.beanstalkd.addr().port();
    drop(std::mem::replace(&mut lab.beanstalkd, Beanstalkd::start()));
    lab.beanstalkd = Beanstalkd::start_on(port);
    if dispatcher_dies {
        Lab::kill_9(lab.dispatchers[first].id());
        let _ = lab.dispatchers[first].wait();
        lab.dispatcher(false);
    }
    lab.wait_for("both jobs to end", Duration::from_secs(60), |lab| {
        lab.all_ended("blocker") && lab.all_ended("waiter")
    });
    let waiter = &lab.run_jobs("waiter")[0];
    assert_eq!(status(waiter), JobStatus::Pass, "{waiter:#?}");
    // Run once: exactly one terminal event.
    let ends = lab
        .job(waiter.id)
        .events
        .iter()
        .filter(|event| status_from_proto(event.to).is_some_and(JobStatus::is_terminal))
        .count();
    assert_eq!(ends, 1);
}

#[test]
fn a_waiting_job_whose_copy_beanstalkd_lost_runs_from_the_window() {
    a_waiting_job_whose_copy_beanstalkd_lost_still_runs(false);
}

#[test]
fn a_waiting_job_whose_copy_beanstalkd_lost_runs_after_its_dispatcher_died() {
    a_waiting_job_whose_copy_beanstalkd_lost_still_runs(true);
}
