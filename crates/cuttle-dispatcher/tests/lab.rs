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

use cuttle_core::JobStatus;
use cuttle_labkit::LabBuilder;
use cuttle_proto::bearer::{Authed, Bearer};
use cuttle_proto::convert::status_from_proto;
use cuttle_proto::v1;
use cuttle_proto::v1::admin_service_client::AdminServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_queue::QueueClient;
use cuttle_testkit::Beanstalkd;
use tonic::transport::Channel;

const TUBE: &str = "smithi";

/// Lab knobs a test may change.
#[derive(Clone)]
struct LabOptions {
    nodes: usize,
    postgres: bool,
    /// Reach PostgreSQL through a proxy the test can cut (`Lab::database_proxy`).
    postgres_through_proxy: bool,
    /// Serve gRPC over TLS (a test CA's certificate); every client verifies it.
    tls: bool,
    /// Run beanstalkd with a binlog (`-b`), so a restart keeps its jobs.
    beanstalk_binlog: bool,
    nuke_command: Option<String>,
    prepare_command: Option<String>,
    policy: cuttle_api::settings::PolicySettings,
    /// Run jobs under this real teuthology instead of the local runner.
    teuthology: Option<TeuthologySetup>,
    /// cuttle-api's `job_ttr`: the time-to-run of every copy it puts.
    job_ttr: Duration,
    /// The dispatchers' `lease_ttl_ms`.
    lease_ttl: Duration,
}

/// A teuthology install for the lab's jobs.
#[derive(Debug, Clone)]
struct TeuthologySetup {
    bin: PathBuf,
    config: PathBuf,
    /// Where teuthology's config says Shaman is.
    shaman_host: String,
    /// Extra `[lab]` lines (the checkouts runs are pinned to).
    lab_lines: String,
    /// Extra lines of teuthology's own config.
    config_lines: String,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            nodes: 4,
            postgres: false,
            postgres_through_proxy: false,
            tls: false,
            beanstalk_binlog: false,
            nuke_command: None,
            prepare_command: None,
            policy: Default::default(),
            teuthology: None,
            job_ttr: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(2),
        }
    }
}

struct Lab {
    /// The lab's own files: dispatcher config and logs, archives, beanstalkd's binlog,
    /// teuthology's archive.
    dir: tempfile::TempDir,
    /// cuttle-api (in this process, served by `runtime`), beanstalkd and the database.
    kit: cuttle_labkit::Lab,
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
        let mut builder = LabBuilder::new().postgres(options.postgres);
        if options.postgres_through_proxy {
            builder = builder.postgres_through_proxy();
        }
        if options.tls {
            builder = builder.tls();
        }
        if options.beanstalk_binlog {
            let binlog = dir.path().join("binlog");
            std::fs::create_dir_all(&binlog).unwrap();
            builder = builder.beanstalkd(Beanstalkd::start_with_args(&[
                "-b",
                binlog.to_str().unwrap(),
            ]));
        }
        let archive = dir.path().join("archive");
        let policy = options.policy;
        let job_ttr = options.job_ttr;
        let builder = builder.settings(move |settings| {
            settings.job_ttr = job_ttr;
            settings.enqueue_retry = Duration::from_secs(1);
            settings.supervisor_grace = Duration::from_secs(2);
            settings.reap_interval = Duration::from_secs(1);
            settings.policy = policy;
            // teuthology reads the nodes through the paddles API on the HTTP listener,
            // which also serves the status page and the archives.
            settings.builds.http_listen = Some("127.0.0.1:0".parse().unwrap());
            settings.web.archive_roots = vec![archive];
        });
        let kit = runtime.block_on(builder.start());

        let config = dir.path().join("dispatcher.toml");
        // teuthology gets time to tear a job down after SIGINT; the local runner needs none.
        let kill_grace_ms = if options.teuthology.is_some() {
            20_000
        } else {
            500
        };
        let mut text = format!(
            "lease_ttl_ms = {}\nrelease_interval_ms = 500\n[lab]\narchive_dir = {:?}\nheartbeat_interval_ms = 300\nkill_grace_ms = {kill_grace_ms}\ncommand_timeout_s = 10\n",
            options.lease_ttl.as_millis(),
            dir.path().join("archive")
        );
        match &options.teuthology {
            // Jobs run under the real teuthology (the dispatcher's default runner).
            Some(teuthology) => text.push_str(&format!(
                "teuthology_bin = {:?}\nteuthology_config = {:?}\n{}",
                teuthology.bin, teuthology.config, teuthology.lab_lines
            )),
            // A local lab simulates its jobs.
            None => text.push_str(&format!(
                "runner_command = {:?}\n",
                cuttle_runtime::lab::LOCAL_RUNNER
            )),
        }
        if let Some(nuke) = &options.nuke_command {
            text.push_str(&format!("nuke_command = {nuke:?}\n"));
        }
        if let Some(prepare) = &options.prepare_command {
            text.push_str(&format!("prepare_command = {prepare:?}\n"));
        }
        std::fs::write(&config, text).unwrap();
        let lab = Lab {
            dir,
            kit,
            config,
            dispatchers: Vec::new(),
            runtime,
        };
        for i in 1..=options.nodes {
            lab.runtime
                .block_on(lab.kit.add_node(&format!("n{i:02}"), TUBE));
        }
        if let Some(teuthology) = &options.teuthology {
            // teuthology reports to cuttle-api's paddles API with a service token.
            let reports = lab.token("teuthology-reports", "service");
            let http = lab.kit.api.http_addr.unwrap();
            std::fs::write(
                &teuthology.config,
                format!(
                    "lock_server: http://{http}/paddles\nresults_server: http://teuthology:{reports}@{http}/paddles\nqueue_host: ''\nlab_domain: ''\nshaman_host: {}\narchive_base: {:?}\n{}",
                    teuthology.shaman_host,
                    lab.dir.path().join("teuthology-archive"),
                    teuthology.config_lines,
                ),
            )
            .unwrap();
        }
        lab
    }

    /// The URL clients dial: `https://localhost:PORT` when the lab serves TLS.
    fn api_url(&self) -> String {
        self.kit.url()
    }

    fn channel(&self) -> Channel {
        self.runtime.block_on(self.kit.channel())
    }

    /// The tests act as the lab's admin unless they say otherwise.
    fn admin(&self) -> Bearer {
        self.kit.admin()
    }

    fn runs(&self) -> RunServiceClient<Authed> {
        self.runtime.block_on(self.kit.runs())
    }

    fn nodes(&self) -> NodeServiceClient<Authed> {
        self.runtime.block_on(self.kit.nodes())
    }

    fn queues(&self) -> QueueServiceClient<Authed> {
        self.runtime.block_on(self.kit.queues())
    }

    /// A new token's secret for `user` with `role`, made by the admin.
    fn token(&self, user: &str, role: &str) -> String {
        self.runtime.block_on(self.kit.token_secret(user, role))
    }

    /// Records `key` as the ssh host key of every node.
    fn give_host_keys(&self, key: &str) {
        let mut nodes = self.nodes();
        let listed = self
            .runtime
            .block_on(nodes.list_nodes(v1::ListNodesRequest::default()))
            .unwrap()
            .into_inner()
            .nodes;
        for node in listed {
            self.runtime
                .block_on(nodes.update_node(v1::UpdateNodeRequest {
                    name: node.name,
                    ssh_key: Some(key.into()),
                    ..Default::default()
                }))
                .unwrap();
        }
    }

    fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Starts a real dispatcher for the tube; its log goes to `dispatcher-N.log`.
    fn dispatcher(&mut self, exit_on_empty: bool) -> usize {
        self.dispatcher_with(exit_on_empty, &[])
    }

    /// Like [`Lab::dispatcher`], with extra environment (a fault switch).
    fn dispatcher_with(&mut self, exit_on_empty: bool, env: &[(&str, &str)]) -> usize {
        let index = self.dispatchers.len();
        let log =
            std::fs::File::create(self.dir.path().join(format!("dispatcher-{index}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cuttle-dispatcher"));
        command
            .args(["--machine-type", TUBE, "--api", &self.api_url()])
            .arg("--beanstalk")
            .arg(self.kit.beanstalkd.addr().to_string())
            .arg("--config")
            .arg(&self.config)
            .env_remove("CUTTLE_TLS_CA_FILE")
            // Dispatchers run as a service, with a token of their own.
            .env(
                "CUTTLE_TOKEN",
                self.token(&format!("dispatcher-{index}"), "service"),
            )
            .env_remove("CUTTLE_LAB_JSON")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if exit_on_empty {
            command.arg("--exit-on-empty-queue");
        }
        if let Some(certs) = &self.kit.tls {
            command.arg("--tls-ca-file").arg(&certs.ca);
        }
        command.env_remove("CUTTLE_TEST_CRASH_AT");
        command.envs(env.iter().copied());
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
        let queue = QueueClient::new(&self.kit.beanstalkd.addr().to_string());
        self.runtime.block_on(queue.stats_tube(TUBE)).unwrap()
    }

    /// A counter of beanstalkd's `stats` (`cmd-touch`, `job-timeouts`, ...).
    fn beanstalkd_count(&self, key: &str) -> u64 {
        let queue = QueueClient::new(&self.kit.beanstalkd.addr().to_string());
        let stats = self.runtime.block_on(queue.stats()).unwrap();
        stats[key].parse().unwrap()
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

    /// Stops cuttle-api (as SIGTERM would) and starts it again on the same port and
    /// database, as a restart of the service does, with the dispatchers still connected.
    fn restart_api(&mut self) {
        self.runtime.block_on(self.kit.restart_under_clients());
    }

    /// Waits (up to 30 s) until the first job of `run` runs, and returns it.
    fn first_job_running(&self, run: &str) -> v1::Job {
        self.wait_for("the job to run", Duration::from_secs(30), |lab| {
            status(&lab.run_jobs(run)[0]) == JobStatus::Running
        });
        self.run_jobs(run).remove(0)
    }

    /// The lock history audit (invariant 1 over all time) must be clean.
    fn assert_audit_clean(&self) {
        let channel = self.channel();
        let report = self
            .runtime
            .block_on(AdminServiceClient::new(channel).audit_locks(v1::AuditLocksRequest {}))
            .unwrap()
            .into_inner();
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(report.events > 0, "the history recorded nothing");
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
        kill_supervisors_of(&self.api_url());
    }
}

/// Kills the supervisors started with `--api api_url`, each with its process group (the
/// runner and what that started). A supervisor outlives its dispatcher by design and
/// keeps calling a vanished cuttle-api for minutes (it must not lose its job to an API
/// restart), so without this every test that ends mid-job leaves one behind.
fn kill_supervisors_of(api_url: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
        let supervisor = args
            .first()
            .is_some_and(|program| program.ends_with(b"cuttle-supervisor"));
        let ours = args
            .windows(2)
            .any(|pair| pair[0] == b"--api" && pair[1] == api_url.as_bytes());
        if supervisor && ours {
            // Its process group has its pid: the dispatcher starts it as a group leader.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// Whether `pid` is a live process (a zombie, exited but not yet reaped, is not).
fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat[stat.rfind(')').map_or(0, |at| at + 1)..]
            .trim_start()
            .starts_with('Z')
    })
}

/// How many times job `job_id`'s timeline reaches a terminal status (exactly once, for
/// every job that ended).
fn times_ended(lab: &Lab, job_id: i64) -> usize {
    lab.job(job_id)
        .events
        .iter()
        .filter(|event| status_from_proto(event.to).is_some_and(JobStatus::is_terminal))
        .count()
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

/// Over TLS: cuttle-api serves a test CA's certificate, and the dispatcher, its
/// supervisors and the test's own clients all verify it; a plain connection gets nothing.
#[test]
fn a_run_over_tls_ends_as_its_configs_ask() {
    let lab_options = LabOptions {
        tls: true,
        ..LabOptions::default()
    };
    a_run_ends_as_its_configs_ask(lab_options);
}

#[test]
fn plain_grpc_gets_nothing_from_a_tls_listener() {
    let lab = Lab::start(LabOptions {
        tls: true,
        ..LabOptions::default()
    });
    let plain = format!("http://127.0.0.1:{}", lab.kit.api.addr.port());
    let answered = lab.runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(plain)
            .unwrap()
            .connect()
            .await;
        match channel {
            Ok(channel) => RunServiceClient::new(channel)
                .list_runs(v1::ListRunsRequest::default())
                .await
                .is_ok(),
            Err(_) => false,
        }
    });
    assert!(
        !answered,
        "a plain client must not be answered by a TLS listener"
    );
    // The test's own clients (TLS) are.
    assert_eq!(lab.all_nodes().len(), 4);
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
        let ends = times_ended(&lab, job.id);
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
    lab.assert_audit_clean();
}

/// The harness itself: a test that ends mid-job leaves no supervisor (nor its runner)
/// behind to keep calling a cuttle-api that is gone.
#[test]
fn a_dropped_lab_leaves_no_supervisor_behind() {
    let mut lab = Lab::start(LabOptions {
        nodes: 1,
        ..LabOptions::default()
    });
    lab.schedule("left", "runtime: 600\nstatus: pass\n", 1, 1, None);
    lab.dispatcher(false);
    let job = lab.first_job_running("left");
    assert!(process_running(job.supervisor_pid));
    drop(lab);
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_running(job.supervisor_pid) {
        assert!(
            Instant::now() < deadline,
            "supervisor {} outlived its lab by 10 s",
            job.supervisor_pid
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job waiting for nodes longer than its time-to-run keeps its reservation, touched
/// three times per time-to-run (not every 3 s): beanstalkd never takes it back.
#[test]
fn a_waiting_job_keeps_its_reservation_on_few_touches() {
    let mut lab = Lab::start(LabOptions {
        nodes: 1,
        job_ttr: Duration::from_secs(15),
        ..LabOptions::default()
    });
    lab.schedule("blocker", "runtime: 25\nstatus: pass\n", 1, 1, None);
    lab.dispatcher(false);
    lab.first_job_running("blocker");
    let touches_before = lab.beanstalkd_count("cmd-touch");
    lab.schedule("waiter", "runtime: 0.2\nstatus: pass\n", 1, 1, None);
    let scheduled = Instant::now();
    lab.wait_for("the waiter to pass", Duration::from_secs(60), |lab| {
        status(&lab.run_jobs("waiter")[0]) == JobStatus::Pass
    });
    let waited = scheduled.elapsed();
    let touches = lab.beanstalkd_count("cmd-touch") - touches_before;
    assert!(
        waited > Duration::from_secs(18),
        "the waiter waited only {waited:?}: no longer than its time-to-run"
    );
    assert_eq!(
        lab.beanstalkd_count("job-timeouts"),
        0,
        "a reservation lapsed"
    );
    // Every 5 s (a third of 15 s), give or take one; every 3 s is 8 over 25 s.
    let at_most = waited.as_secs() / 5 + 1;
    assert!(
        (2..=at_most).contains(&touches),
        "{touches} touches in {waited:?}, expected 2 to {at_most}"
    );
}

/// A window fill claims one job at a time, and a full window's worth of claims takes
/// longer than a short lease lives and than a short time-to-run: the lease must be renewed
/// and the reservations touched during the fill. Renewed only between fills, the lease
/// expired mid-fill, the next claim was refused, the window went back, and the dispatcher
/// lost and retook the tube for ever without starting a job (seen on a loaded machine with
/// the 2 s lease of these tests); touched only between fills, the first reservations
/// lapsed, were reserved again, and the fill did not end (seen with the 10 s time-to-run
/// while a release build ran beside the test).
#[test]
fn a_window_fill_longer_than_the_lease_and_the_time_to_run_starts_jobs() {
    let mut lab = Lab::start(LabOptions {
        lease_ttl: Duration::from_secs(1),
        job_ttr: Duration::from_secs(3),
        ..LabOptions::default()
    });
    lab.schedule("many", "runtime: 30\nstatus: pass\n", 1000, 1, None);
    lab.dispatcher(false);
    lab.wait_for("a job to run", Duration::from_secs(60), |lab| {
        lab.run_jobs("many")
            .iter()
            .any(|job| status(job) == JobStatus::Running)
    });
    // The whole queue joined the window. (Without the renewal no job ever runs: each fill
    // ends in a refused claim and gives the window back. Whether a renewal may still lapse
    // now and then on a loaded machine is not asserted: progress is the promise.)
    lab.wait_for("the window to fill", Duration::from_secs(60), |lab| {
        lab.beanstalkd_count("current-jobs-ready") == 0
    });
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
    let job = lab.first_job_running("lost");
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
    let alive = process_running;
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
    let queue = QueueClient::new(&lab.kit.beanstalkd.addr().to_string());
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
    // The review's poison pill: 54 KB that a YAML library expanding aliases turns into
    // 120 million nodes (it grew cuttle-api past 1.8 GB and killed it).
    let alias_bomb = format!(
        "name: bomb\nmachine_type: smithi\na: &a [{}]\nb: [{}]\n",
        vec!["1"; 15_000].join(","),
        vec!["*a"; 8_000].join(",")
    );
    lab.schedule("good-before", "runtime: 0\n", 3, 1, None);
    for body in [
        alias_bomb.as_str(),
        "name: '..'\nmachine_type: smithi\n",
        "{not: [yaml",
        "just some words",
        "tasks: []\n",
        "cuttle_job_id: '999999'\njob_id: '999999'\nname: gone\nmachine_type: smithi\n",
        "job_id: '424242'\nname: ghost-run\nmachine_type: smithi\n",
        // teuthology's multi tube: several machine types.
        "name: multi-run\nmachine_type: smithi,mira\nruntime: 0\n",
        // Past its expire time (teuthology-suite --expire) before it could start.
        "name: stale-run\nowner: scheduled_teuthology@teuthology\nmachine_type: smithi\nexpire: 2020-01-01_00:00:00\nruntime: 0\n",
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
    assert_eq!(lab.tube_stats()["current-jobs-buried"], "8");
    // The expired job ended dead, saying so, and its copy is gone (not buried).
    lab.wait_for("the expired job", Duration::from_secs(30), |lab| {
        lab.all_ended("stale-run")
    });
    let stale = lab.run_jobs("stale-run").remove(0);
    assert_eq!(status(&stale), JobStatus::Dead);
    assert!(
        stale
            .reason
            .starts_with("expired: its expire time 2020-01-01_00:00:00"),
        "{}",
        stale.reason
    );
    let log = lab.dispatcher_log(index);
    for reason in [
        "alias bomb",
        "names a directory",
        "not valid YAML",
        "YAML mapping",
        "no name and machine_type",
        "cuttle-api does not know",
        "several machine types",
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
    lab.assert_audit_clean();
}

/// A running job's nodes are bound to it: neither its owner nor an admin can unlock them
/// by hand (the review's reproduction gave the node to a second job this way), and no
/// node is ever in two jobs at once.
#[test]
fn nobody_unlocks_a_running_jobs_node() {
    let mut lab = Lab::start(LabOptions {
        nodes: 3,
        ..LabOptions::default()
    });
    lab.schedule("held", "runtime: 4\n", 1, 2, None);
    lab.dispatcher(false);
    let job = lab.first_job_running("held");
    // The job's owner, then the admin.
    let alice = Bearer::new(Some(&lab.token("alice", "developer"))).unwrap();
    for who in [alice, lab.admin()] {
        let request = v1::UnlockNodesRequest {
            names: job.nodes.clone(),
            owner: "alice".into(),
            job_id: None,
        };
        let refused = lab
            .runtime
            .block_on(NodeServiceClient::with_interceptor(lab.channel(), who).unlock_nodes(request))
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("cuttle kill held --job"),
            "{}",
            refused.message()
        );
    }
    // Nor can the job's own release before the job has ended.
    let refused = lab
        .runtime
        .block_on(lab.nodes().unlock_nodes(v1::UnlockNodesRequest {
            names: job.nodes.clone(),
            owner: String::new(),
            job_id: Some(job.id),
        }))
        .unwrap_err();
    assert!(
        refused.message().contains("has not ended"),
        "{}",
        refused.message()
    );
    lab.schedule("next", "runtime: 0\n", 1, 2, None);
    lab.wait_for("both runs", Duration::from_secs(30), |lab| {
        lab.all_ended("held") && lab.all_ended("next")
    });
    assert_eq!(status(&lab.run_jobs("held")[0]), JobStatus::Pass);
    assert_eq!(status(&lab.run_jobs("next")[0]), JobStatus::Pass);
    lab.wait_for("every node back", Duration::from_secs(10), |lab| {
        lab.locked_nodes().is_empty()
    });
    lab.assert_audit_clean();
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

/// The review's outage: PostgreSQL unreachable for longer than the supervisor grace
/// while jobs run. Silence during cuttle-api's own outage is nobody's death: every job
/// passes, none is reaped, and no node is held twice.
#[test]
fn a_database_outage_longer_than_the_grace_kills_no_job() {
    let mut lab = Lab::start(LabOptions {
        postgres: true,
        postgres_through_proxy: true,
        ..LabOptions::default()
    });
    lab.schedule("steady", "runtime: 6\nstatus: pass\n", 4, 1, None);
    lab.dispatcher(false);
    lab.wait_for("four jobs to run", Duration::from_secs(30), |lab| {
        count(&lab.run_jobs("steady"), JobStatus::Running) == 4
    });
    let proxy = lab.kit.database_proxy.as_ref().unwrap();
    proxy.cut();
    // Twice the grace (2 s) with no database at all.
    std::thread::sleep(Duration::from_secs(4));
    proxy.restore();
    lab.wait_for("the run to end", Duration::from_secs(60), |lab| {
        lab.all_ended("steady")
    });
    let jobs = lab.run_jobs("steady");
    assert_eq!(
        count(&jobs, JobStatus::Pass),
        4,
        "{:?}",
        jobs.iter().map(|job| &job.reason).collect::<Vec<_>>()
    );
    lab.wait_for("every node back", Duration::from_secs(15), |lab| {
        lab.locked_nodes().is_empty()
    });
    lab.assert_audit_clean();
}

/// A node whose prepare (reimage) always fails: before, picked first by name, it killed 8
/// of 12 one-node jobs. Now each failure is the node's strike and the job goes back to
/// the queue; after 3 strikes the node is down, and every job passes on the others.
#[test]
fn a_node_that_fails_to_prepare_strikes_out_and_kills_no_job() {
    let mut lab = Lab::start(LabOptions {
        prepare_command: Some("sh -c 'test {node} != n01'".into()),
        ..LabOptions::default()
    });
    lab.schedule("twelve", "runtime: 0.2\n", 12, 1, None);
    lab.dispatcher(false);
    lab.wait_for("the run to end", Duration::from_secs(90), |lab| {
        lab.all_ended("twelve")
    });
    let jobs = lab.run_jobs("twelve");
    assert_eq!(
        count(&jobs, JobStatus::Pass),
        12,
        "{:?}",
        jobs.iter().map(|job| &job.reason).collect::<Vec<_>>()
    );
    let n01 = lab
        .all_nodes()
        .into_iter()
        .find(|node| node.name == "n01")
        .unwrap();
    assert!(!n01.up, "n01 failed every prepare, so it must be down");
    assert!(
        n01.description.contains("failed 3 times in a row"),
        "{}",
        n01.description
    );
    // The three requeues are in their jobs' timelines, each with its reason.
    let requeues: usize = jobs
        .iter()
        .map(|job| {
            lab.job(job.id)
                .events
                .iter()
                .filter(|event| event.reason.contains("back in the queue (retry"))
                .count()
        })
        .sum();
    assert_eq!(requeues, 3);
    for node in lab.all_nodes().iter().filter(|node| node.name != "n01") {
        assert!(node.up, "{} prepared fine and must stay up", node.name);
    }
    lab.wait_for("every node back", Duration::from_secs(10), |lab| {
        lab.locked_nodes().is_empty()
    });
    lab.assert_audit_clean();
}

fn mark(lab: &Lab, node: &str, up: bool) {
    lab.runtime
        .block_on(lab.nodes().mark_node(v1::MarkNodeRequest {
            name: node.into(),
            up,
            reason: if up {
                String::new()
            } else {
                "test: down".into()
            },
            job_id: None,
        }))
        .unwrap();
}

/// Down nodes make jobs wait, not die: with 3 of 4 nodes down, 2-node jobs wait (the queue
/// listing says why) while a 1-node job runs; once the nodes come back, every job passes.
#[test]
fn jobs_wait_for_down_nodes_instead_of_dying() {
    let mut lab = Lab::start(LabOptions::default());
    for node in ["n02", "n03", "n04"] {
        mark(&lab, node, false);
    }
    lab.schedule("big", "runtime: 0\n", 10, 2, None);
    lab.schedule("small", "runtime: 0\n", 1, 1, None);
    lab.dispatcher(false);
    lab.wait_for("the 1-node job", Duration::from_secs(30), |lab| {
        lab.all_ended("small")
    });
    std::thread::sleep(Duration::from_secs(2));
    let big = lab.run_jobs("big");
    assert!(
        big.iter().all(|job| !status(job).is_terminal()),
        "no 2-node job may end while nodes are only down: {:?}",
        big.iter()
            .map(|job| (&job.reason, job.status))
            .collect::<Vec<_>>()
    );
    let queue = lab
        .runtime
        .block_on(lab.queues().list_queue(v1::ListQueueRequest {
            machine_type: TUBE.into(),
            limit: 0,
        }))
        .unwrap()
        .into_inner();
    assert_eq!(queue.jobs.len(), 10);
    assert!(
        queue
            .jobs
            .iter()
            .all(|job| job.waiting_for.contains("needs 2, 1 of 4 are up (3 down)")),
        "{:?}",
        queue
            .jobs
            .iter()
            .map(|job| &job.waiting_for)
            .collect::<Vec<_>>()
    );
    for node in ["n02", "n03", "n04"] {
        mark(&lab, node, true);
    }
    lab.wait_for("the 2-node jobs", Duration::from_secs(60), |lab| {
        lab.all_ended("big")
    });
    assert_eq!(count(&lab.run_jobs("big"), JobStatus::Pass), 10);
}

/// Start-time estimates (`cuttle run show`, `cuttle queue list`) against what then
/// happens: on 2 nodes, 6 one-node jobs of a description whose history says 2 s start in
/// three waves, and each waiting job's estimate is checked against its real start.
#[test]
fn estimated_starts_match_what_happens() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        ..LabOptions::default()
    });
    let submit = |lab: &Lab, name: &str, jobs: usize| {
        let job = v1::JobSpec {
            machine_type: TUBE.into(),
            n_nodes: Some(1),
            time_limit_s: Some(60),
            config_yaml: "runtime: 2\nstatus: pass\n".into(),
            description: "estimates/2s".into(),
            ..Default::default()
        };
        lab.runtime
            .block_on(lab.runs().create_run(v1::CreateRunRequest {
                name: name.into(),
                owner: "alice".into(),
                jobs: vec![job; jobs],
                ..Default::default()
            }))
            .unwrap();
    };
    // The history: three runs of the description (the estimator trusts three).
    submit(&lab, "estimates-history", 4);
    lab.dispatcher(false);
    lab.wait_for("the history", Duration::from_secs(60), |lab| {
        lab.all_ended("estimates-history")
    });
    submit(&lab, "estimates", 6);
    let shown = lab
        .runtime
        .block_on(lab.runs().get_run(v1::GetRunRequest {
            name: "estimates".into(),
        }))
        .unwrap()
        .into_inner();
    let estimates: Vec<(i64, i64, String)> = shown
        .jobs
        .iter()
        .filter(|job| matches!(status(job), JobStatus::Queued | JobStatus::Waiting))
        .map(|job| {
            let at = job
                .estimated_start_ms
                .unwrap_or_else(|| panic!("job {} has no estimate: {:?}", job.id, job.waiting_for));
            // The history times every job: a time, not an upper bound.
            assert!(!job.estimated_start_is_latest, "job {}", job.id);
            (job.id, at, job.waiting_for.clone())
        })
        .collect();
    assert!(
        estimates.len() >= 4,
        "most jobs should still wait right after scheduling: {estimates:?}"
    );
    assert!(
        estimates
            .iter()
            .any(|(_, _, why)| why.starts_with("behind job") || why == "nodes busy"),
        "{estimates:?}"
    );
    lab.wait_for("the estimated jobs", Duration::from_secs(60), |lab| {
        lab.all_ended("estimates")
    });
    let asked_at = shown
        .jobs
        .iter()
        .map(|job| job.created_at_ms)
        .max()
        .unwrap_or(0);
    let mut report = Vec::new();
    let mut problems = Vec::new();
    for (id, estimated, why) in &estimates {
        let job = lab.job(*id).job.unwrap();
        let started = job.started_at_ms.expect("every job ran");
        let error = started - estimated;
        report.push(format!(
            "job {id}: estimated +{:.1} s, started +{:.1} s, error {:+.1} s ({why})",
            (estimated - asked_at) as f64 / 1000.0,
            (started - asked_at) as f64 / 1000.0,
            error as f64 / 1000.0
        ));
        // Node turnaround (release, the next dispatch) is not in the runtime history: a
        // few hundred ms a wave. Three waves of 2 s jobs stay within 3 s.
        if error.abs() > 3_000 {
            problems.push(*id);
        }
    }
    eprintln!("start estimates:\n  {}", report.join("\n  "));
    assert!(
        problems.is_empty(),
        "estimates off by over 3 s: {problems:?}\n{}",
        report.join("\n")
    );
}

/// Runs Debian's chromium headless on `url` with `args` (`--dump-dom`, `--screenshot=...`)
/// and returns what it printed; a missing chromium fails with the install line.
fn chromium(args: &[&str], url: &str) -> String {
    let bin = std::env::var("CUTTLE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&bin).exists(),
        "no chromium at {bin}: `apt-get install chromium` (scripts/test.sh does), or set CUTTLE_CHROMIUM"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1600,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).ok();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish with {url} in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The status page, live, in a real browser: a run with jobs that passed, failed, died
/// (past its time limit), one running and one waiting for its nodes. Chromium renders the
/// run's page; its DOM has every state with its reason and an estimated start for the
/// waiting job, the screenshot shows the state colours, and the log links open.
#[test]
fn the_status_page_shows_a_live_run_in_headless_chromium() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        ..LabOptions::default()
    });
    let spec =
        |description: &str, config: &str, n_nodes: u32, priority: u32, limit: u32| v1::JobSpec {
            machine_type: TUBE.into(),
            n_nodes: Some(n_nodes),
            priority: Some(priority),
            time_limit_s: Some(limit),
            config_yaml: config.into(),
            description: description.into(),
            ..Default::default()
        };
    lab.runtime
        .block_on(lab.runs().create_run(v1::CreateRunRequest {
            name: "page-demo".into(),
            owner: "alice".into(),
            jobs: vec![
                spec("quick/pass", "runtime: 0\nstatus: pass\n", 1, 10, 120),
                spec("quick/fail", "runtime: 0\nstatus: fail\n", 1, 10, 120),
                // Ends dead at its 1 s time limit.
                spec("too/slow", "runtime: 30\n", 1, 10, 1),
                spec("long/running", "runtime: 60\nstatus: pass\n", 2, 500, 120),
                spec("after/the-long-one <b>", "runtime: 0\n", 2, 600, 120),
            ],
            ..Default::default()
        }))
        .unwrap();
    lab.dispatcher(false);
    lab.wait_for("jobs in every state", Duration::from_secs(60), |lab| {
        let jobs = lab.run_jobs("page-demo");
        [
            JobStatus::Pass,
            JobStatus::Fail,
            JobStatus::Dead,
            JobStatus::Running,
        ]
        .iter()
        .all(|wanted| jobs.iter().any(|job| status(job) == *wanted))
    });
    let http = lab.kit.api.http_addr.unwrap();
    let url = format!("http://{http}/runs/page-demo");
    let dom = chromium(&["--dump-dom"], &url);
    for wanted in [
        "Run page-demo",
        "quick/pass",
        ">pass<",
        ">fail<",
        ">dead<",
        ">running<",
        "hit max job timeout",
        "after/the-long-one &lt;b&gt;",
        "nodes busy",
    ] {
        assert!(dom.contains(wanted), "the page lacks {wanted:?}:\n{dom}");
    }
    assert!(
        !dom.contains("<b>\""),
        "a description reached the page unescaped"
    );
    // The waiting job has an estimated start, and it is only the latest: the job it waits
    // for has no runtime history, so it was timed at its time limit.
    let waiting_row = dom
        .split("<tr>")
        .find(|row| row.contains("after/the-long-one"))
        .unwrap();
    assert!(
        waiting_row.contains(">within "),
        "no upper bound in {waiting_row}"
    );
    // The screenshot: the states' colours are on it (dead is a solid #800 box).
    let shot = lab.dir.path().join("page.png");
    chromium(&[&format!("--screenshot={}", shot.display())], &url);
    // CUTTLE_SCREENSHOT_DIR keeps it, to look at.
    if let Ok(keep) = std::env::var("CUTTLE_SCREENSHOT_DIR") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&shot, Path::new(&keep).join("status-page-run.png")).unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((frame.width, frame.height), (1600, 900));
    let channels = frame.color_type.samples();
    let rgb: Vec<(u8, u8, u8)> = pixels[..frame.buffer_size()]
        .chunks(channels)
        .map(|p| (p[0], p[1], p[2]))
        .collect();
    let count = |f: &dyn Fn(&(u8, u8, u8)) -> bool| rgb.iter().filter(|p| f(p)).count();
    let dead_box = count(&|&(r, g, b)| r == 0x88 && g == 0 && b == 0);
    let green = count(&|&(r, g, b)| g > 90 && r < 60 && b < 60);
    let red = count(&|&(r, g, b)| r > 150 && g < 50 && b < 50);
    let blue = count(&|&(r, g, b)| b > 130 && r < 40 && g < 120 && g > 40);
    assert!(
        dead_box > 50 && green > 20 && red > 20 && blue > 20,
        "the screenshot {} lacks the state colours: dead {dead_box}, pass {green}, fail {red}, running {blue}",
        shot.display()
    );
    // The log links open: the passed job's archive lists its logs, which are served.
    let passed = lab
        .run_jobs("page-demo")
        .into_iter()
        .find(|job| status(job) == JobStatus::Pass)
        .unwrap();
    let archive = format!("http://{http}/archive/page-demo/{}/", passed.id);
    assert!(
        dom.contains(&format!("href=\"/archive/page-demo/{}/\"", passed.id)),
        "no log link for job {}",
        passed.id
    );
    let listing = chromium(&["--dump-dom"], &archive);
    for file in ["config.yaml", "runner.log", "supervisor.log"] {
        assert!(listing.contains(file), "{file} not listed:\n{listing}");
    }
    let get = |url: String| {
        lab.runtime.block_on(async {
            let response = reqwest::get(&url).await.unwrap();
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, kind, response.text().await.unwrap())
        })
    };
    let (code, kind, log) = get(format!("{archive}runner.log"));
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(log.contains("cuttle-local-runner"), "{log}");
    // Nothing outside a job's archive: traversal and bad names are refused.
    for bad in [
        format!(
            "http://{http}/archive/page-demo/{}/..%2F..%2Fdispatcher.toml",
            passed.id
        ),
        format!("http://{http}/archive/..%2F..%2F/{}/config.yaml", passed.id),
        format!("http://{http}/archive/page-demo/{}/.hidden", passed.id),
    ] {
        let (code, _, body) = get(bad.clone());
        assert!(code == 400 || code == 404, "{bad}: {code} {body}");
        assert!(!body.contains("lease_ttl_ms"), "{bad} leaked the config");
    }
    // `cuttle job show` gives the same link.
    let detail = lab.job(passed.id);
    assert_eq!(detail.archive_url, archive);
    // The queue page shows the waiting job with its estimate.
    let queue = chromium(&["--dump-dom"], &format!("http://{http}/queues/{TUBE}"));
    assert!(queue.contains("after/the-long-one"), "{queue}");
    // The front page counts the queue as /metrics does: one job waiting, while the long
    // job holds both nodes (none free, none down).
    let (code, _, home) = get(format!("http://{http}/"));
    assert_eq!(code, 200);
    let row = home
        .split("<tr>")
        .find(|row| row.contains(&format!("/queues/{TUBE}")))
        .unwrap_or_else(|| panic!("no queue row: {home}"));
    assert!(
        row.contains(
            "<td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">2</td><td class=\"num\">0</td>"
        ),
        "{row}"
    );
}

/// A metric's value in a Prometheus scrape (the first series whose name and labels start
/// with `series`), or `None`.
fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `/metrics` of the dispatcher and of cuttle-api during a run, against what the CLI's
/// calls say at the same moment: jobs started and running, supervisors alive, the lease,
/// the window, how long a 2-node job waited for its nodes and how long one node stayed
/// idle meanwhile, and the reaper's counts.
#[test]
fn metrics_during_a_run_match_the_lab() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        ..LabOptions::default()
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    // A 1-node job of 3 s first, then a 2-node job that waits for it with one node idle.
    lab.schedule_at(
        "metrics-first",
        "runtime: 3\nstatus: pass\n",
        1,
        1,
        Some(60),
        10,
    );
    lab.schedule_at(
        "metrics-pair",
        "runtime: 1\nstatus: pass\n",
        1,
        2,
        Some(60),
        20,
    );
    lab.dispatcher_with(false, &[("CUTTLE_METRICS_LISTEN", listen.as_str())]);
    let scrape = |url: String| {
        lab.runtime.block_on(async {
            match reqwest::get(&url).await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        })
    };
    let dispatcher_url = format!("http://{listen}/metrics");
    let api_url = format!("http://{}/metrics", lab.kit.api.http_addr.unwrap());
    // While the first job runs and the pair waits: one supervisor alive, the lease held,
    // one job in the window, and cuttle-api counts one running and one waiting job, as the
    // run listing does.
    lab.wait_for("the first job running", Duration::from_secs(30), |lab| {
        status(&lab.run_jobs("metrics-first")[0]) == JobStatus::Running
            && status(&lab.run_jobs("metrics-pair")[0]) == JobStatus::Waiting
    });
    let during = scrape(dispatcher_url.clone());
    let api = scrape(api_url.clone());
    let m = "{machine_type=\"smithi\"}";
    assert_eq!(
        metric(&during, &format!("cuttle_dispatcher_lease_held{m}")),
        Some(1.0),
        "{during}"
    );
    assert_eq!(
        metric(&during, &format!("cuttle_dispatcher_supervisors_alive{m}")),
        Some(1.0),
        "{during}"
    );
    assert_eq!(
        metric(&during, &format!("cuttle_dispatcher_window_jobs{m}")),
        Some(1.0),
        "{during}"
    );
    assert_eq!(
        metric(&during, &format!("cuttle_dispatcher_jobs_started_total{m}")),
        Some(1.0),
        "{during}"
    );
    let running = [lab.run_jobs("metrics-first"), lab.run_jobs("metrics-pair")]
        .concat()
        .iter()
        .filter(|job| status(job) == JobStatus::Running)
        .count();
    assert_eq!(
        metric(
            &api,
            "cuttle_jobs{machine_type=\"smithi\",status=\"running\"}"
        ),
        Some(running as f64),
        "{api}"
    );
    assert_eq!(
        metric(
            &api,
            "cuttle_nodes{machine_type=\"smithi\",state=\"locked\"}"
        ),
        Some(1.0),
        "{api}"
    );
    lab.wait_for("both runs", Duration::from_secs(60), |lab| {
        lab.all_ended("metrics-first") && lab.all_ended("metrics-pair")
    });
    lab.wait_for("the supervisors to exit", Duration::from_secs(30), |_| {
        metric(
            &scrape(dispatcher_url.clone()),
            &format!("cuttle_dispatcher_supervisors_alive{m}"),
        ) == Some(0.0)
    });
    let after = scrape(dispatcher_url.clone());
    assert_eq!(
        metric(&after, &format!("cuttle_dispatcher_jobs_started_total{m}")),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            &format!("cuttle_dispatcher_lock_wait_seconds_count{m}")
        ),
        Some(2.0),
        "{after}"
    );
    // The pair waited about 3 s for the first job's node; one node idled meanwhile.
    let waited = metric(
        &after,
        &format!("cuttle_dispatcher_lock_wait_seconds_sum{m}"),
    )
    .unwrap();
    let idle = metric(
        &after,
        &format!("cuttle_dispatcher_idle_node_seconds_total{m}"),
    )
    .unwrap();
    assert!(
        (2.0..30.0).contains(&waited),
        "lock wait {waited} s:\n{after}"
    );
    assert!(
        (1.5..30.0).contains(&idle),
        "idle {idle} node-seconds:\n{after}"
    );
    assert!(
        metric(
            &after,
            &format!("cuttle_dispatcher_dispatch_seconds_count{m}")
        ) == Some(2.0),
        "{after}"
    );
    // cuttle-api: nothing running any more, and the reaper's passes are counted.
    let api = scrape(api_url);
    assert_eq!(
        metric(
            &api,
            "cuttle_jobs{machine_type=\"smithi\",status=\"running\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{api}"
    );
    // The counts are the process's (other labs of this test binary add to them): the
    // reaper's series are there once it made a pass.
    for action in ["dead_supervisor_lost", "requeued_lease_lost", "nodes_freed"] {
        assert!(
            metric(
                &api,
                &format!("cuttle_reaper_actions_total{{action=\"{action}\"}}")
            )
            .is_some(),
            "{action}: {api}"
        );
    }
}

/// scripts/prune-archives.sh on a real lab's archive: runs older than --days whose jobs
/// all ended (and a directory of a run cuttle never knew) go, a run whose jobs have not
/// ended and a recent run stay, and --dry-run removes nothing.
#[test]
fn old_archives_of_ended_runs_are_pruned_and_live_ones_kept() {
    let mut lab = Lab::start(LabOptions {
        nodes: 2,
        ..LabOptions::default()
    });
    lab.schedule("prune-ended", "runtime: 0\n", 2, 1, Some(60));
    lab.schedule("prune-recent", "runtime: 0\n", 1, 1, Some(60));
    lab.dispatcher(false);
    lab.wait_for("the runs to end", Duration::from_secs(60), |lab| {
        lab.all_ended("prune-ended") && lab.all_ended("prune-recent")
    });
    // The live run: its job queued again (paused here) with the archive of an earlier try,
    // as after a dispatcher's death. A running job would do, but it writes to its archive
    // while the test ages it, and the script then keeps it as recent, not as live.
    pause(&lab, true);
    lab.wait_for(
        "the dispatcher to see the pause",
        Duration::from_secs(30),
        |lab| lab.dispatcher_log(0).contains("queue paused"),
    );
    lab.schedule("prune-live", "runtime: 0\n", 1, 1, Some(60));
    let archive = lab.archive();
    std::fs::create_dir_all(archive.join("prune-live/1")).unwrap();
    std::fs::write(archive.join("prune-live/1/teuthology.log"), "first try\n").unwrap();
    std::fs::create_dir_all(archive.join("prune-orphan/1")).unwrap();
    std::fs::write(archive.join("prune-orphan/1/teuthology.log"), "old\n").unwrap();
    for run in ["prune-ended", "prune-live", "prune-orphan"] {
        let aged = Command::new("sh")
            .arg("-c")
            .arg("find \"$1\" -exec touch -d '100 days ago' {} +")
            .arg("sh")
            .arg(archive.join(run))
            .status()
            .unwrap();
        assert!(aged.success());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/prune-archives.sh");
    let cuttle = Path::new(env!("CARGO_BIN_EXE_cuttle-dispatcher")).with_file_name("cuttle");
    let prune = |args: &[&str]| {
        let output = Command::new(&script)
            .args(args)
            .arg(&archive)
            .env("CUTTLE_BIN", &cuttle)
            .env("CUTTLE_API", lab.api_url())
            .env_remove("CUTTLE_TOKEN")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{text}");
        text
    };
    let dry = prune(&["--days", "30", "--dry-run"]);
    assert!(dry.contains("would remove 2 runs"), "{dry}");
    for run in ["prune-ended", "prune-live", "prune-recent", "prune-orphan"] {
        assert!(
            archive.join(run).exists(),
            "--dry-run removed {run}:\n{dry}"
        );
    }
    let done = prune(&["--days", "30"]);
    assert!(
        done.contains("keeping prune-live: it has jobs that have not ended"),
        "{done}"
    );
    assert!(done.contains("removed 2 runs"), "{done}");
    assert!(!archive.join("prune-ended").exists(), "{done}");
    assert!(!archive.join("prune-orphan").exists(), "{done}");
    assert!(archive.join("prune-live").exists(), "{done}");
    assert!(archive.join("prune-recent").exists(), "{done}");
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
    let queue = QueueClient::new(&lab.kit.beanstalkd.addr().to_string());
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
    // Someone else's token may not, whatever owner it names.
    let mallory = Bearer::new(Some(&lab.token("mallory", "developer"))).unwrap();
    let refused = lab
        .runtime
        .block_on(
            QueueServiceClient::with_interceptor(lab.channel(), mallory).reprioritize(
                v1::ReprioritizeRequest {
                    job_id: job.id,
                    priority: 5,
                    owner: "alice".into(),
                },
            ),
        )
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
        "a job that would delay the head waits for it\n{}",
        lab.dispatcher_log(0)
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
            got,
            expected,
            "at simulated t={at} ms the simulator starts {group:?}; the real order was {real_order:?} (simulated: {by_instant:?})\ndispatcher log:\n{}",
            lab.dispatcher_log(0)
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
    let port = lab.kit.beanstalkd.addr().port();
    drop(std::mem::replace(
        &mut lab.kit.beanstalkd,
        Beanstalkd::start(),
    ));
    lab.kit.beanstalkd = Beanstalkd::start_on(port);
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

/// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to a process; false if it is gone.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Sends `sig` to the supervisor of a running job of `runs` and returns that job,
/// trying again when the job ended first (jobs here last a fraction of a second).
///
/// Only a supervisor that has opened its job's archive (written `config.yaml`) is
/// signalled: the fault is "a supervisor lost while its job runs". One stopped in the
/// instant between its dispatch and its first step finds its job already reaped when it
/// resumes and exits without writing anything, which is right, but is another fault.
fn signal_a_running_supervisor(lab: &Lab, runs: &[&str], sig: &str, not: &[i64]) -> v1::Job {
    let deadline = Instant::now() + Duration::from_secs(60);
    // A supervisor that already exited may linger as a zombie, which takes signals.
    let alive = process_running;
    let archived = |job: &v1::Job| {
        lab.archive()
            .join(&job.run_name)
            .join(job.id.to_string())
            .join("config.yaml")
            .exists()
    };
    loop {
        let running = runs.iter().flat_map(|run| lab.run_jobs(run)).find(|job| {
            status(job) == JobStatus::Running
                && job.supervisor_pid > 0
                && !not.contains(&job.id)
                && archived(job)
                && alive(job.supervisor_pid)
        });
        if let Some(job) = running
            && signal(job.supervisor_pid, sig)
        {
            // A stopped supervisor cannot report any more: if its job still runs now, it
            // runs until the reaper ends it. If it reported in between, let it go on.
            if sig != "-STOP" || status(&lab.job(job.id).job.unwrap()) == JobStatus::Running {
                return job;
            }
            signal(job.supervisor_pid, "-CONT");
        }
        assert!(
            Instant::now() < deadline,
            "no supervisor could be signalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fault suite: a few hundred short jobs while each part of the lab fails in turn, for
/// real. `kill -9` of the dispatcher (twice, at different moments of its loop), `kill -9`
/// of a supervisor, SIGSTOP of a supervisor past the grace (SIGCONT after its nodes moved
/// on), a restart of cuttle-api, restarts of beanstalkd with and without its binlog, the database
/// unreachable for twice the grace (PostgreSQL), a node whose prepare always fails, and a
/// job no lab can fit. Then: every job ended exactly once; only the two supervisors that
/// were lost are `dead`, each with its reason; the job that can never fit is buried with
/// its reason; no node is held by an ended job; the lock-history audit is clean; every job
/// that ran has its logs in the archive.
///
/// `CUTTLE_FAULT_JOBS` sets the number of jobs (default 120; scripts/fault-suite.sh runs
/// 600 on both backends).
fn fault_suite(postgres: bool) {
    let total: usize = std::env::var("CUTTLE_FAULT_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(120)
        .max(40);
    let started = Instant::now();
    let mut lab = Lab::start(LabOptions {
        nodes: 6,
        postgres,
        postgres_through_proxy: postgres,
        // n06's reimage always fails: it must strike out, and kill no job.
        prepare_command: Some("sh -c 'test {node} != n06'".into()),
        beanstalk_binlog: true,
        ..LabOptions::default()
    });
    let runs = ["faults-small", "faults-pairs"];
    lab.schedule(
        runs[0],
        "runtime: 0.2\nstatus: pass\n",
        total / 2,
        1,
        Some(60),
    );
    lab.schedule(
        runs[1],
        "runtime: 0.4\nstatus: pass\n",
        total - total / 2,
        2,
        Some(60),
    );
    // A job no lab can fit, put by teuthology's tools straight onto the tube.
    let queue = QueueClient::new(&lab.kit.beanstalkd.addr().to_string());
    let huge = "name: faults-huge\nowner: scheduled_teuthology@teuthology\nmachine_type: smithi\nroles: [[a], [b], [c], [d], [e], [f], [g]]\n";
    lab.runtime
        .block_on(queue.put(TUBE, huge.as_bytes().to_vec(), 100, Duration::from_secs(30)))
        .unwrap();
    let ended = |lab: &Lab| -> usize {
        runs.iter()
            .flat_map(|run| lab.run_jobs(run))
            .filter(|job| status(job).is_terminal())
            .count()
    };
    let mut faults: Vec<String> = Vec::new();
    let first = lab.dispatcher(false);

    // 1. kill -9 the dispatcher early, while it fills its window and starts jobs.
    lab.wait_for("the first jobs", Duration::from_secs(60), |lab| {
        ended(lab) >= 3
    });
    Lab::kill_9(lab.dispatchers[first].id());
    let _ = lab.dispatchers[first].wait();
    faults.push(format!("kill -9 dispatcher after {} jobs", ended(&lab)));
    let second = lab.dispatcher(false);

    // 2. kill -9 a supervisor while its job runs.
    let victim = signal_a_running_supervisor(&lab, &runs, "-KILL", &[]);
    faults.push(format!("kill -9 supervisor of job {}", victim.id));

    // 3. SIGSTOP a supervisor past the grace; SIGCONT it once its job was reaped.
    let frozen = signal_a_running_supervisor(&lab, &runs, "-STOP", &[victim.id]);
    lab.wait_for(
        "the frozen supervisor's job to be reaped",
        Duration::from_secs(30),
        |lab| status(&lab.job(frozen.id).job.unwrap()) == JobStatus::Dead,
    );
    signal(frozen.supervisor_pid, "-CONT");
    faults.push(format!(
        "SIGSTOP supervisor of job {} past the grace",
        frozen.id
    ));

    // 4. Restart cuttle-api.
    lab.restart_api();
    faults.push("restart cuttle-api".into());

    // 5. Restart beanstalkd with its binlog (its reservations come back as ready jobs),
    // then without it (every copy it held is gone).
    lab.wait_for("a fifth of the jobs", Duration::from_secs(60), |lab| {
        ended(lab) >= total / 5
    });
    lab.kit.beanstalkd.restart_keeping_binlog();
    faults.push(format!(
        "restart beanstalkd with its binlog after {} jobs",
        ended(&lab)
    ));
    lab.wait_for("more jobs", Duration::from_secs(60), |lab| {
        ended(lab) >= total / 3
    });
    lab.kit.beanstalkd.restart();
    faults.push(format!(
        "restart beanstalkd without binlog after {} jobs",
        ended(&lab)
    ));

    // 6. The database unreachable for twice the grace (PostgreSQL, through the proxy).
    if let Some(proxy) = &lab.kit.database_proxy {
        proxy.cut();
        std::thread::sleep(Duration::from_secs(4));
        proxy.restore();
        faults.push("database unreachable for 4 s (grace 2 s)".into());
    }

    // 7. kill -9 the dispatcher again, later in the run.
    lab.wait_for("half the jobs", Duration::from_secs(120), |lab| {
        ended(lab) >= total / 2
    });
    Lab::kill_9(lab.dispatchers[second].id());
    let _ = lab.dispatchers[second].wait();
    faults.push(format!("kill -9 dispatcher after {} jobs", ended(&lab)));
    lab.dispatcher(false);

    lab.wait_for("every job to end", Duration::from_secs(600), |lab| {
        runs.iter().all(|run| lab.all_ended(run))
    });
    let jobs: Vec<v1::Job> = runs.iter().flat_map(|run| lab.run_jobs(run)).collect();
    assert_eq!(jobs.len(), total);
    let mut problems = Vec::new();
    let mut requeues = 0;
    for job in &jobs {
        let detail = lab.job(job.id);
        let ends = times_ended(&lab, job.id);
        if ends != 1 {
            problems.push(format!("job {} ended {ends} times", job.id));
        }
        requeues += detail
            .events
            .iter()
            .filter(|event| event.reason.contains("back in the queue (retry"))
            .count();
        match status(job) {
            JobStatus::Pass => {}
            JobStatus::Dead if job.id == victim.id || job.id == frozen.id => {
                if !job.reason.contains("supervisor lost") {
                    problems.push(format!(
                        "job {} dead without its reason: {:?}",
                        job.id, job.reason
                    ));
                }
            }
            other => {
                let log = lab
                    .archive()
                    .join(&job.run_name)
                    .join(job.id.to_string())
                    .join("supervisor.log");
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                problems.push(format!(
                    "job {} ended {other}: {:?}\n  supervisor.log (last lines, newest first):\n    {}",
                    job.id,
                    job.reason,
                    tail.join("\n    ")
                ));
            }
        }
        if job.supervisor_pid > 0 {
            let dir = lab.archive().join(&job.run_name).join(job.id.to_string());
            for file in ["config.yaml", "supervisor.log"] {
                if !dir.join(file).exists() {
                    problems.push(format!("job {}: no {file} in {}", job.id, dir.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nfaults: {faults:?}",
        problems.join("\n")
    );
    // The job no lab can fit: buried, dead with the reason.
    lab.wait_for("the huge job's burial", Duration::from_secs(30), |lab| {
        lab.all_ended("faults-huge")
    });
    let buried = lab.run_jobs("faults-huge").remove(0);
    assert_eq!(status(&buried), JobStatus::Dead);
    assert!(buried.reason.contains("needs 7 nodes"), "{}", buried.reason);
    // n06 struck out; every node is back; no node was ever held twice.
    let n06 = lab
        .all_nodes()
        .into_iter()
        .find(|n| n.name == "n06")
        .unwrap();
    assert!(
        !n06.up && n06.description.contains("prepare (reimage) failed"),
        "{n06:?}"
    );
    lab.wait_for("every node back", Duration::from_secs(30), |lab| {
        lab.locked_nodes().is_empty()
    });
    lab.assert_audit_clean();
    let passed = count(&jobs, JobStatus::Pass);
    eprintln!(
        "fault suite ({}): {total} jobs, {passed} pass, {} dead (the 2 lost supervisors), {requeues} requeued after a failed prepare, {} faults, {:.1} s: {faults:?}",
        if postgres { "postgres" } else { "sqlite" },
        total - passed,
        faults.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn fault_suite_sqlite() {
    fault_suite(false);
}

#[test]
fn fault_suite_postgres() {
    fault_suite(true);
}

/// An archive that cannot be written (here the run's directory is taken by a file, as a
/// full or read-only disk would refuse it): the job does not run blind, it ends dead with
/// the reason, and its nodes still go back.
#[test]
fn an_unwritable_archive_ends_the_job_with_the_reason_and_frees_its_nodes() {
    let mut lab = Lab::start(LabOptions::default());
    std::fs::create_dir_all(lab.archive()).unwrap();
    std::fs::write(lab.archive().join("blocked"), "not a directory").unwrap();
    lab.schedule("blocked", "runtime: 0\n", 2, 2, None);
    lab.dispatcher(false);
    lab.wait_for("the run to end", Duration::from_secs(30), |lab| {
        lab.all_ended("blocked")
    });
    for job in lab.run_jobs("blocked") {
        assert_eq!(status(&job), JobStatus::Dead);
        assert!(
            job.reason.contains("cannot create the job archive"),
            "{}",
            job.reason
        );
    }
    lab.wait_for("every node back", Duration::from_secs(15), |lab| {
        lab.locked_nodes().is_empty()
    });
    lab.assert_audit_clean();
}

/// `kill -9` of a supervisor in the middle of its prepare (reimage): the prepare would go
/// on reimaging nodes that are about to go to the next job. The release supervisor ends
/// it before it gives the nodes back.
#[test]
fn a_dead_supervisors_prepare_is_ended_before_its_nodes_go_back() {
    let mut lab = Lab::start(LabOptions {
        nodes: 1,
        prepare_command: Some("sh -c 'echo $$ > {archive}/prepare.started; exec sleep 60'".into()),
        ..LabOptions::default()
    });
    lab.schedule("stuck", "runtime: 0\n", 1, 1, None);
    lab.dispatcher(false);
    let job = lab.run_jobs("stuck").remove(0);
    let started = lab
        .archive()
        .join("stuck")
        .join(job.id.to_string())
        .join("prepare.started");
    lab.wait_for("the prepare to start", Duration::from_secs(30), |_| {
        started.exists()
    });
    let job = lab.run_jobs("stuck").remove(0);
    Lab::kill_9(job.supervisor_pid);
    let prepare: u32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    lab.wait_for(
        "the job to be reaped and its node released",
        Duration::from_secs(30),
        |lab| lab.all_ended("stuck") && lab.locked_nodes().is_empty(),
    );
    // Gone, or a zombie waiting for whoever adopted it to reap it.
    let running = process_running;
    assert!(
        !running(prepare),
        "the dead supervisor's prepare (pid {prepare}) still runs"
    );
    lab.assert_audit_clean();
}

/// `kill -9` of the dispatcher at each step of a dispatch, made exact by the dispatcher's
/// test-only fault switch (CUTTLE_TEST_CRASH_AT): after the claim, after the lock, after
/// the supervisor is spawned, after the dispatch is recorded, and before the beanstalkd
/// copy is deleted. Each time a new dispatcher takes over and every job passes exactly
/// once, no node stays locked, the tube ends empty and the lock audit is clean.
#[test]
fn a_dispatcher_dying_at_each_step_of_a_dispatch_loses_nothing() {
    for step in [
        "after-claim",
        "after-lock",
        "after-spawn",
        "after-record",
        "before-delete",
    ] {
        let mut lab = Lab::start(LabOptions {
            nodes: 2,
            ..LabOptions::default()
        });
        lab.schedule(step, "runtime: 0.2\n", 4, 1, None);
        let doomed = lab.dispatcher_with(false, &[("CUTTLE_TEST_CRASH_AT", step)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(status) = lab.dispatchers[doomed].try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{step}: the dispatcher never reached it"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!exit.success(), "{step}: the dispatcher must have died");
        assert!(
            lab.dispatcher_log(doomed).contains("dying here on purpose"),
            "{step}: {}",
            lab.dispatcher_log(doomed)
        );
        lab.dispatcher(false);
        lab.wait_for(
            &format!("{step}: every job"),
            Duration::from_secs(60),
            |lab| lab.all_ended(step),
        );
        let jobs = lab.run_jobs(step);
        assert_eq!(
            count(&jobs, JobStatus::Pass),
            4,
            "{step}: {:?}",
            jobs.iter()
                .map(|job| (&job.reason, job.status))
                .collect::<Vec<_>>()
        );
        for job in &jobs {
            let ends = times_ended(&lab, job.id);
            assert_eq!(ends, 1, "{step}: job {} ended {ends} times", job.id);
        }
        lab.wait_for(
            &format!("{step}: every node back"),
            Duration::from_secs(15),
            |lab| lab.locked_nodes().is_empty(),
        );
        lab.wait_for(
            &format!("{step}: the tube to empty"),
            Duration::from_secs(30),
            |lab| {
                let stats = lab.tube_stats();
                stats["current-jobs-ready"] == "0"
                    && stats["current-jobs-reserved"] == "0"
                    && stats["current-jobs-buried"] == "0"
            },
        );
        lab.assert_audit_clean();
    }
}

/// `kill -9` of a supervisor while it releases (here: in the middle of the nuke after a
/// failed job). Its release is handed out again once it has been silent for the grace:
/// the release supervisor ends the half-done nuke, nukes again and unlocks, and no node
/// was ever held twice.
#[test]
fn a_supervisor_killed_while_releasing_is_replaced_and_the_nodes_come_back() {
    let mut lab = Lab::start(LabOptions {
        nodes: 1,
        // The first nuke hangs (and says who it is); any later one is quick.
        nuke_command: Some(
            "sh -c 'if [ -e {archive}/nuke.once ]; then exit 0; fi; touch {archive}/nuke.once; echo $$ > {archive}/nuke.started; exec sleep 60'"
                .into(),
        ),
        ..LabOptions::default()
    });
    lab.schedule("failing", "runtime: 0\nstatus: fail\n", 1, 1, None);
    lab.dispatcher(false);
    let job = lab.run_jobs("failing").remove(0);
    let archive = lab.archive().join("failing").join(job.id.to_string());
    let started = archive.join("nuke.started");
    lab.wait_for("the nuke to start", Duration::from_secs(30), |_| {
        std::fs::read_to_string(&started).is_ok_and(|pid| !pid.trim().is_empty())
    });
    let job = lab.run_jobs("failing").remove(0);
    assert_eq!(status(&job), JobStatus::Fail);
    Lab::kill_9(job.supervisor_pid);
    let nuke: u32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    lab.wait_for("the node to come back", Duration::from_secs(30), |lab| {
        lab.locked_nodes().is_empty()
    });
    let running = process_running;
    assert!(
        !running(nuke),
        "the lost supervisor's nuke (pid {nuke}) still runs"
    );
    assert_eq!(status(&lab.run_jobs("failing")[0]), JobStatus::Fail);
    let node = lab.all_nodes().remove(0);
    assert!(node.up, "the second nuke passed: {node:?}");
    let log = std::fs::read_to_string(archive.join("supervisor.log")).unwrap();
    assert!(
        log.contains("ended the lab command its lost supervisor left running"),
        "{log}"
    );
    lab.assert_audit_clean();
}

/// A teuthology install (the real 1.3.0 from PyPI, in scripts/test.sh's venv) set up to
/// run jobs here: its config (written by `Lab::start`) names cuttle-api's paddles API as
/// the lock server and no results server, and a `qa` directory holds the suite's tasks.
/// `None` (the test skips) only when CUTTLE_NO_TEUTHOLOGY is set.
fn offline_teuthology(dir: &Path) -> Option<TeuthologySetup> {
    let Some(venv) = cuttle_testkit::teuthology::find_venv(None) else {
        if std::env::var_os("CUTTLE_NO_TEUTHOLOGY").is_some() {
            eprintln!("skipped: CUTTLE_NO_TEUTHOLOGY is set");
            return None;
        }
        panic!(
            "teuthology 1.3.0 is not installed; run scripts/test.sh (it installs it into ~/.cache/cuttle-teuthology-venv) or set CUTTLE_NO_TEUTHOLOGY=1 to skip"
        );
    };
    let tasks = dir.join("qa/tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::write(tasks.join("__init__.py"), "").unwrap();
    std::fs::write(
        tasks.join("cuttle_fail.py"),
        "def task(ctx, config):\n    raise RuntimeError((config or {}).get('message', 'failed on purpose'))\n",
    )
    .unwrap();
    // Written by Lab::start, which knows cuttle-api's HTTP address (the lock server).
    Some(TeuthologySetup {
        bin: venv.join("bin/teuthology"),
        config: dir.join("teuthology.yaml"),
        shaman_host: tarpit(),
        lab_lines: String::new(),
        config_lines: String::new(),
    })
}

/// Runs git in `dir`; its output, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=cuttle",
            "-c",
            "user.email=cuttle@localhost",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A git repository with `files` committed on `main`; the commit's id.
fn commit(dir: &Path, files: &[(&str, &str)]) -> String {
    if !dir.join(".git").exists() {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "--quiet", "--initial-branch", "main"]);
    }
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "step"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Every job of a run runs the suite and teuthology commits the run pinned, from the
/// dispatcher host's checkouts, even though both branches move before the jobs start;
/// the run's jobs share one checkout per commit (built once, raced for by two jobs).
#[test]
fn a_run_runs_the_commits_it_pinned_while_the_branches_move() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(mut teuthology) = offline_teuthology(scratch.path()) else {
        return;
    };
    let suite_repo = scratch.path().join("ceph-ci");
    let suite_a = commit(
        &suite_repo,
        &[("qa/tasks/__init__.py", ""), ("qa/commit.txt", "A")],
    );
    let teuthology_repo = scratch.path().join("teuthology");
    let teuthology_a = commit(&teuthology_repo, &[("version", "A")]);
    let checkouts = scratch.path().join("checkouts");
    // The lab's bootstrap: what teuthology's ./bootstrap leaves, a virtualenv with its
    // executable (here, the installed one's).
    let bootstrap = format!(
        "sh -c 'mkdir -p virtualenv/bin && ln -s {} virtualenv/bin/teuthology'",
        teuthology.bin.display()
    );
    teuthology.lab_lines = format!(
        "checkout_dir = {checkouts:?}\nteuthology_repo = {:?}\nteuthology_bootstrap_command = {bootstrap:?}\n",
        teuthology_repo.display().to_string()
    );
    let mut lab = Lab::start(LabOptions {
        teuthology: Some(teuthology),
        ..LabOptions::default()
    });
    lab.give_host_keys(NODE_HOST_KEY);
    lab.dispatcher(false);
    pause(&lab, true);
    let config = format!(
        "ceph_cm_ansible: false\nsuite_repo: {:?}\nsuite_relpath: qa\nsuite_sha1: {suite_a}\nteuthology_branch: main\nteuthology_sha1: {teuthology_a}\ntasks:\n- print: pinned\n",
        suite_repo.display().to_string()
    );
    lab.schedule("pinned", &config, 2, 1, Some(120));
    // Both branches move on while the run waits.
    let suite_b = commit(&suite_repo, &[("qa/commit.txt", "B")]);
    let teuthology_b = commit(&teuthology_repo, &[("version", "B")]);
    assert!(suite_b != suite_a && teuthology_b != teuthology_a);
    pause(&lab, false);
    lab.wait_for("the pinned run to end", Duration::from_secs(120), |lab| {
        lab.all_ended("pinned")
    });
    let suite_dir = checkouts.join("suite").join(&suite_a);
    let teuthology_dir = checkouts.join("teuthology").join(&teuthology_a);
    assert_eq!(
        std::fs::read_to_string(suite_dir.join("qa/commit.txt")).unwrap(),
        "A"
    );
    assert_eq!(
        std::fs::read_to_string(teuthology_dir.join("version")).unwrap(),
        "A"
    );
    for job in lab.run_jobs("pinned") {
        let dir = lab.archive().join("pinned").join(job.id.to_string());
        let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
        let expected = format!("suite_path: {}", suite_dir.join("qa").display());
        assert!(
            config.contains(&expected),
            "{expected} missing from\n{config}"
        );
        let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap();
        let bin = teuthology_dir.join("virtualenv/bin/teuthology");
        assert!(
            log.contains(&bin.display().to_string()),
            "not run with {}:\n{log}",
            bin.display()
        );
        // teuthology itself ran (and failed to reach these nodes, which are not real).
        assert!(dir.join("teuthology.log").exists(), "{}", job.reason);
    }
    // One checkout per commit, none of the moved branches'.
    let listed = |kind: &str| -> Vec<String> {
        std::fs::read_dir(checkouts.join(kind))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(listed("suite"), [suite_a]);
    assert_eq!(listed("teuthology"), [teuthology_a]);
}

/// A well-formed ssh host key for nodes that are not real.
const NODE_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// A TCP port that accepts connections and never answers: a Shaman that hangs.
fn tarpit() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr.to_string()
}

/// Jobs run under the real teuthology through the real daemons, as teuthology's own
/// supervisor runs them: a job on nodes without ssh host keys ends dead saying how to set
/// them; with keys, teuthology gets its targets, reads the nodes from cuttle-api's
/// paddles API, fails to reach them (these nodes are not real) and its own failure reason
/// becomes the job's; a job that hangs (its package check waits on a Shaman that never
/// answers) runs past its limit, is interrupted, and ends dead "hit max job timeout" with
/// teuthology's summary and log in the archive.
#[test]
fn teuthology_runs_jobs_as_its_own_supervisor_does() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(teuthology) = offline_teuthology(scratch.path()) else {
        return;
    };
    let qa = scratch.path().join("qa");
    let job = |extra: &str| {
        format!(
            "ceph_cm_ansible: false\nsuite_path: {qa:?}\n{extra}tasks:\n- print: cuttle ran this\n"
        )
    };
    let mut lab = Lab::start(LabOptions {
        teuthology: Some(teuthology),
        ..LabOptions::default()
    });
    lab.dispatcher(false);
    let ended = |lab: &Lab, run: &str| {
        lab.wait_for(&format!("{run} to end"), Duration::from_secs(90), |lab| {
            lab.all_ended(run)
        });
        lab.run_jobs(run).remove(0)
    };
    let archive =
        |lab: &Lab, run: &str, job: &v1::Job| lab.archive().join(run).join(job.id.to_string());
    // cuttle gives every job roles (one per node), so teuthology needs targets.
    lab.schedule("teuth-nokey", &job(""), 1, 1, Some(120));
    let keyless = ended(&lab, "teuth-nokey");
    assert_eq!(status(&keyless), JobStatus::Dead);
    assert!(
        keyless.reason.contains("has no ssh host key"),
        "{}",
        keyless.reason
    );
    let key = NODE_HOST_KEY;
    lab.give_host_keys(key);
    lab.schedule("teuth-fail", &job(""), 1, 1, Some(120));
    let failed = ended(&lab, "teuth-fail");
    assert_eq!(status(&failed), JobStatus::Fail, "{}", failed.reason);
    let dir = archive(&lab, "teuth-fail", &failed);
    let summary = std::fs::read_to_string(dir.join("summary.yaml")).unwrap();
    assert!(
        !failed.reason.is_empty() && !failed.reason.starts_with("runner "),
        "{}",
        failed.reason
    );
    assert!(summary.contains("failure_reason"), "{summary}");
    // The config teuthology ran is the one its supervisor would have written.
    let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    // The job ends (its report) before its release gives the nodes back.
    lab.wait_for(
        "the failed job's nodes to be given back",
        Duration::from_secs(30),
        |lab| lab.run_jobs("teuth-fail")[0].nodes.is_empty(),
    );
    for expected in [
        "archive_path:".to_owned(),
        format!("job_id: '{}'", failed.id),
        "verbose:".to_owned(),
        "targets:".to_owned(),
        "ubuntu@n0".to_owned(),
        key.to_owned(),
    ] {
        assert!(
            config.contains(&expected),
            "{expected} missing from\n{config}"
        );
    }
    let log = std::fs::read_to_string(dir.join("teuthology.log")).unwrap();
    assert!(log.contains("teuthology"), "{log}");
    // teuthology's own reports (results_server: cuttle-api's paddles API) are in the
    // job's timeline; its status is the supervisor's, from the same summary.
    let events = lab
        .runtime
        .block_on(lab.runs().get_job(v1::GetJobRequest { job_id: failed.id }))
        .unwrap()
        .into_inner()
        .events;
    let reports: Vec<&str> = events
        .iter()
        .map(|e| e.reason.as_str())
        .filter(|r| r.starts_with("teuthology reported"))
        .collect();
    assert!(
        reports
            .iter()
            .any(|r| r.starts_with("teuthology reported running")),
        "{reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.starts_with("teuthology reported fail") && r.contains(&failed.reason)),
        "{reports:?}"
    );
    // A job that hangs: its package check asks a Shaman that never answers.
    lab.schedule(
        "teuth-slow",
        &job("os_type: ubuntu\nos_version: '22.04'\nsha1: 0123456789abcdef0123456789abcdef01234567\n"),
        1,
        1,
        // Well past teuthology's start-up even on a loaded machine: the hang is what
        // the limit must end, not the start.
        Some(12),
    );
    let slow = ended(&lab, "teuth-slow");
    assert_eq!(status(&slow), JobStatus::Dead);
    assert!(
        slow.reason.starts_with("hit max job timeout"),
        "{}",
        slow.reason
    );
    let dir = archive(&lab, "teuth-slow", &slow);
    let summary = std::fs::read_to_string(dir.join("summary.yaml"))
        .expect("teuthology, interrupted, wrote its summary");
    assert!(summary.contains("success: false"), "{summary}");
    assert!(dir.join("teuthology.log").exists());
    lab.wait_for("the nodes to be unlocked", Duration::from_secs(30), |lab| {
        lab.locked_nodes().is_empty()
    });
}

/// An sshd of the test's own on 127.0.0.1:22 (teuthology connects to port 22 only), with
/// a host key and one authorized client key of its own; stopped when dropped.
struct Sshd {
    pid: u32,
    host_key: String,
    client_key: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Sshd {
        let keygen = |name: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .status()
                .expect("ssh-keygen (openssh-client) is installed by scripts/test.sh");
            assert!(status.success());
        };
        keygen("host_key");
        keygen("client_key");
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:22\nHostKey {0}/host_key\nAuthorizedKeysFile {0}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile {0}/sshd.pid\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let status = Command::new("/usr/sbin/sshd")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .status()
            .expect("sshd (openssh-server) is installed by scripts/test.sh");
        assert!(
            status.success(),
            "sshd did not start (is 127.0.0.1:22 taken?): {}",
            std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(dir.join("sshd.pid"))
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "sshd wrote no pid file");
            std::thread::sleep(Duration::from_millis(50));
        };
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        Sshd {
            pid,
            host_key,
            client_key: dir.join("client_key"),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// A job passes under the real teuthology on a real node: cuttle locks it, writes the
/// target (root@127.0.0.1 with the node's recorded host key), teuthology reads the node
/// from cuttle-api's paddles API, connects over ssh and runs the job's command there.
#[test]
fn a_teuthology_job_passes_on_a_real_node_over_ssh() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(mut teuthology) = offline_teuthology(scratch.path()) else {
        return;
    };
    if std::env::var_os("CUTTLE_NO_SSHD").is_some() {
        eprintln!("skipped: CUTTLE_NO_SSHD is set");
        return;
    }
    let ssh_dir = scratch.path().join("ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let sshd = Sshd::start(&ssh_dir);
    teuthology.lab_lines = "ssh_user = \"root\"\n".to_owned();
    teuthology.config_lines = format!("ssh_key: {}\n", sshd.client_key.display());
    let qa = scratch.path().join("qa");
    let mut lab = Lab::start(LabOptions {
        teuthology: Some(teuthology),
        ..LabOptions::default()
    });
    // The one real node; the simulated ones are out of service.
    let mut nodes = lab.nodes();
    lab.runtime
        .block_on(nodes.add_node(v1::AddNodeRequest {
            name: "127.0.0.1".into(),
            machine_type: TUBE.into(),
            ssh_key: sshd.host_key.clone(),
            ..Default::default()
        }))
        .unwrap();
    for node in ["n01", "n02", "n03", "n04"] {
        lab.runtime
            .block_on(nodes.mark_node(v1::MarkNodeRequest {
                name: node.into(),
                up: false,
                reason: "simulated: this test runs on the real node".into(),
                job_id: None,
            }))
            .unwrap();
    }
    lab.dispatcher(false);
    lab.schedule(
        "teuth-real",
        &format!("ceph_cm_ansible: false\nsuite_path: {qa:?}\ntasks:\n- exec:\n    client.0:\n    - echo cuttle-was-here\n"),
        1,
        1,
        Some(300),
    );
    lab.wait_for("the real job to end", Duration::from_secs(240), |lab| {
        lab.all_ended("teuth-real")
    });
    let job = lab.run_jobs("teuth-real").remove(0);
    let dir = lab.archive().join("teuth-real").join(job.id.to_string());
    let log = std::fs::read_to_string(dir.join("teuthology.log")).unwrap_or_default();
    assert_eq!(status(&job), JobStatus::Pass, "{}\n{log}", job.reason);
    assert!(log.contains("cuttle-was-here"), "{log}");
    let summary = std::fs::read_to_string(dir.join("summary.yaml")).unwrap();
    assert!(summary.contains("success: true"), "{summary}");
}
