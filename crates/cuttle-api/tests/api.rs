//! cuttle-api end to end: the real gRPC server, a real beanstalkd on a free port, and a
//! real database (a fresh SQLite file, or a fresh PostgreSQL database).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beanstalkc::Beanstalkc;
use tonic::Code;

use cuttle_labkit::{Lab, LabBuilder};
use cuttle_proto::v1::health_service_client::HealthServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::{
    AddNodeRequest, CreateRunRequest, GetHealthRequest, GetJobRequest, GetRunRequest, JobSpec,
    JobStatus, ListNodesRequest, ListRunsRequest, LockNodesRequest, UnlockNodesRequest,
    UpdateJobStatusRequest,
};
use cuttle_testkit::Beanstalkd;

enum Db {
    Sqlite,
    Postgres,
}

/// The lab of these tests: retries of failed puts every second, so a test that brings
/// beanstalkd back sees its jobs soon.
fn lab(db: Db) -> LabBuilder {
    LabBuilder::new()
        .postgres(matches!(db, Db::Postgres))
        .settings(|settings| settings.enqueue_retry = Duration::from_secs(1))
}

async fn start(db: Db) -> Lab {
    lab(db).start().await
}

/// A direct beanstalkd connection for inspecting what cuttle put there.
fn beanstalk(lab: &Lab) -> Beanstalkc {
    Beanstalkc::new()
        .host("127.0.0.1")
        .port(lab.beanstalkd.port())
        .connect()
        .unwrap()
}

fn jobs(count: usize, spec: JobSpec) -> Vec<JobSpec> {
    vec![spec; count]
}

fn smithi_job(priority: u32, n_nodes: u32) -> JobSpec {
    JobSpec {
        machine_type: "smithi".into(),
        priority: Some(priority),
        n_nodes: Some(n_nodes),
        description: "rados/basic".into(),
        ..Default::default()
    }
}

fn run_request(name: &str, jobs: Vec<JobSpec>) -> CreateRunRequest {
    CreateRunRequest {
        name: name.into(),
        owner: "alice".into(),
        branch: "main".into(),
        jobs,
        ..Default::default()
    }
}

async fn scheduling_puts_teuthology_bodies_with_their_priorities(db: Db) {
    let lab = start(db).await;
    lab.add_nodes("smithi", 20).await;
    let mut runs = lab.runs().await;
    let created = runs
        .create_run(run_request("alice-run-1", jobs(50, smithi_job(75, 2))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.run_name, "alice-run-1");
    assert_eq!(created.jobs.len(), 50);
    let mut beanstalk = beanstalk(&lab);
    let tube = beanstalk.stats_tube("smithi").unwrap();
    assert_eq!(tube["current-jobs-ready"], "50");
    for job in &created.jobs {
        let id = job.beanstalk_id.expect("every job was put");
        let stats = beanstalk.stats_job(id).unwrap();
        assert_eq!(stats["pri"], "75");
        assert_eq!(stats["tube"], "smithi");
        let body = beanstalk.peek(id).unwrap().body().to_vec();
        let body: serde_yaml::Value = serde_yaml::from_slice(&body).unwrap();
        assert_eq!(
            body["job_id"],
            serde_yaml::Value::String(job.id.to_string())
        );
        assert_eq!(
            body["name"],
            serde_yaml::Value::String("alice-run-1".into())
        );
        assert_eq!(
            body["machine_type"],
            serde_yaml::Value::String("smithi".into())
        );
        assert_eq!(body["priority"], serde_yaml::Value::from(75));
        assert_eq!(body["roles"].as_sequence().unwrap().len(), 2);
    }
    let shown = runs
        .get_run(GetRunRequest {
            name: "alice-run-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.run.unwrap().status, "queued");
    assert!(
        shown
            .jobs
            .iter()
            .all(|j| j.status == JobStatus::Queued as i32 && j.beanstalk_id.is_some())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_puts_teuthology_bodies_with_their_priorities_sqlite() {
    scheduling_puts_teuthology_bodies_with_their_priorities(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_puts_teuthology_bodies_with_their_priorities_postgres() {
    scheduling_puts_teuthology_bodies_with_their_priorities(Db::Postgres).await;
}

/// beanstalkd hands out jobs of one priority first put, first out: a run's jobs are put
/// in the order the policy wants inside a suite, so a dispatcher's window sees them so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_is_put_in_the_policys_order_biggest_first_unless_urgent() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 5).await;
    let mut runs = lab.runs().await;
    let sizes = [1, 5, 2, 3, 1];
    for (priority, expected) in [(1000, [5, 3, 2, 1, 1]), (50, [1, 1, 2, 3, 5])] {
        let request = run_request(
            &format!("suite-{priority}"),
            sizes.iter().map(|&n| smithi_job(priority, n)).collect(),
        );
        let created = runs.create_run(request).await.unwrap().into_inner();
        // Creation order is the request's order; the put order is the policy's.
        let created_sizes: Vec<u32> = created.jobs.iter().map(|j| j.n_nodes).collect();
        assert_eq!(created_sizes, sizes);
        let mut by_put: Vec<(u64, u32, i64)> = created
            .jobs
            .iter()
            .map(|j| (j.beanstalk_id.unwrap(), j.n_nodes, j.id))
            .collect();
        by_put.sort_unstable();
        let sizes_put: Vec<u32> = by_put.iter().map(|&(_, n, _)| n).collect();
        assert_eq!(sizes_put, expected, "priority {priority}");
        // Equal sizes keep their creation order.
        let ones: Vec<i64> = by_put.iter().filter(|j| j.1 == 1).map(|j| j.2).collect();
        assert!(ones[0] < ones[1], "priority {priority}: {by_put:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_config_file_is_kept_and_its_keys_fill_the_gaps() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 3).await;
    let config = "name: teuth-run\nowner: scheduled_bob@teuthology\nmachine_type: smithi\npriority: 50\n\
                  roles:\n- [mon.a, osd.0]\n- [client.0]\ntasks:\n- install:\n- ceph:\nunknown_key: {nested: 1}\n";
    let mut runs = lab.runs().await;
    let created = runs
        .create_run(CreateRunRequest {
            jobs: jobs(
                2,
                JobSpec {
                    config_yaml: config.into(),
                    ..Default::default()
                },
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.run_name, "teuth-run");
    let job = &created.jobs[0];
    assert_eq!(
        (job.priority, job.n_nodes, job.owner.as_str()),
        (50, 2, "scheduled_bob@teuthology")
    );
    let body: serde_yaml::Value = serde_yaml::from_str(&job.config_yaml).unwrap();
    assert_eq!(body["unknown_key"]["nested"], serde_yaml::Value::from(1));
    assert_eq!(body["tasks"].as_sequence().unwrap().len(), 2);
}

/// Asserts the call failed with `code` and a message containing `needle`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("the call should have been refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "{:?} does not contain {needle:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_writes_nothing() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 20).await;
    let mut runs = lab.runs().await;
    let with_config = |yaml: &str| {
        run_request(
            "bad",
            vec![JobSpec {
                config_yaml: yaml.into(),
                ..smithi_job(100, 1)
            }],
        )
    };
    assert_refused(
        runs.create_run(with_config("roles: [unclosed\n")).await,
        Code::InvalidArgument,
        "not valid YAML",
    );
    assert_refused(
        runs.create_run(with_config("- a\n- list\n")).await,
        Code::InvalidArgument,
        "YAML mapping",
    );
    assert_refused(
        runs.create_run(with_config("timeout: soon\n")).await,
        Code::InvalidArgument,
        "\"timeout\" must be a whole number",
    );
    let big = format!("overrides:\n  blob: '{}'\n", "x".repeat(70 * 1024));
    assert_refused(
        runs.create_run(with_config(&big)).await,
        Code::InvalidArgument,
        "over the 65535-byte limit",
    );
    assert_refused(
        runs.create_run(run_request("bad", jobs(1, smithi_job(70_000, 1))))
            .await,
        Code::InvalidArgument,
        "priority",
    );
    assert_refused(
        runs.create_run(run_request("bad", jobs(1, smithi_job(100, 0))))
            .await,
        Code::InvalidArgument,
        "node count",
    );
    assert_refused(
        runs.create_run(run_request("bad", jobs(1, smithi_job(100, 21))))
            .await,
        Code::FailedPrecondition,
        "has only 20",
    );
    let mira = JobSpec {
        machine_type: "mira".into(),
        ..smithi_job(100, 1)
    };
    assert_refused(
        runs.create_run(run_request("bad", vec![mira])).await,
        Code::NotFound,
        "mira has no nodes",
    );
    assert_refused(
        runs.create_run(run_request("bad", vec![])).await,
        Code::InvalidArgument,
        "at least one job",
    );
    assert_refused(
        runs.create_run(run_request("bad name", jobs(1, smithi_job(1, 1))))
            .await,
        Code::InvalidArgument,
        "run name",
    );
    // Nothing of the above was written or queued.
    let listed = runs
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty(), "{listed:?}");
    assert!(
        beanstalk(&lab).stats_tube("smithi").is_err(),
        "no tube means no job was put"
    );

    let mut nodes = lab.nodes().await;
    let lock = |count: u32, owner: &str| LockNodesRequest {
        machine_type: "smithi".into(),
        count,
        owner: owner.into(),
        job_id: None,
        dispatcher: None,
    };
    assert_refused(
        nodes.lock_nodes(lock(0, "alice")).await,
        Code::InvalidArgument,
        "at least 1 node",
    );
    assert_refused(
        nodes.lock_nodes(lock(21, "alice")).await,
        Code::FailedPrecondition,
        "only 20 nodes",
    );
    let held = nodes
        .lock_nodes(lock(2, "alice"))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = held.nodes.iter().map(|n| n.name.clone()).collect();
    let unlock = |owner: &str| UnlockNodesRequest {
        names: names.clone(),
        owner: owner.into(),
        job_id: None,
    };
    // bob's own token does not unlock alice's nodes, whatever owner he claims.
    let mut as_bob = NodeServiceClient::with_interceptor(
        lab.channel().await,
        lab.token("bob", "developer").await,
    );
    assert_refused(
        as_bob.unlock_nodes(unlock("bob")).await,
        Code::PermissionDenied,
        "locked by alice, not by bob",
    );
    assert_refused(
        as_bob.unlock_nodes(unlock("alice")).await,
        Code::PermissionDenied,
        "bob (developer) may not lock or unlock nodes as alice",
    );
    // An admin unlocks anyone's hand lock.
    let unlocked = nodes
        .unlock_nodes(unlock("bob"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlocked.unlocked, names);

    // The daemon is still serving, and healthy.
    let health = HealthServiceClient::new(lab.channel().await)
        .get_health(GetHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(health.database_ok && health.beanstalk_ok, "{health:?}");
    assert_eq!(health.database_backend, "sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_beanstalkd_refuses_scheduling_and_writes_nothing() {
    let beanstalkd = Beanstalkd::start();
    let nowhere = format!("127.0.0.1:{}", cuttle_testkit::free_port());
    let lab = lab(Db::Sqlite)
        .beanstalk_address(nowhere)
        .beanstalkd(beanstalkd)
        .start()
        .await;
    lab.add_nodes("smithi", 2).await;
    let mut runs = lab.runs().await;
    assert_refused(
        runs.create_run(run_request("r", jobs(1, smithi_job(100, 1))))
            .await,
        Code::Unavailable,
        "cannot reach beanstalkd",
    );
    let listed = runs
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.runs.is_empty());
    let health = HealthServiceClient::new(lab.channel().await)
        .get_health(GetHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(health.database_ok && !health.beanstalk_ok, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_changes_go_through_the_state_machine() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 1).await;
    let mut runs = lab.runs().await;
    let created = runs
        .create_run(run_request("r", jobs(1, smithi_job(100, 1))))
        .await
        .unwrap()
        .into_inner();
    let id = created.jobs[0].id;
    let set = |status: JobStatus, reason: &str| UpdateJobStatusRequest {
        job_id: id,
        status: status as i32,
        reason: reason.into(),
        ..Default::default()
    };
    assert_refused(
        runs.update_job_status(set(JobStatus::Pass, "")).await,
        Code::FailedPrecondition,
        "cannot go from queued to pass",
    );
    assert_refused(
        runs.update_job_status(set(JobStatus::Unspecified, ""))
            .await,
        Code::InvalidArgument,
        "status",
    );
    runs.update_job_status(set(JobStatus::Running, ""))
        .await
        .unwrap();
    // The nodes locked for a job show on the job, in GetJob and GetRun alike.
    lab.nodes()
        .await
        .lock_nodes(LockNodesRequest {
            machine_type: "smithi".into(),
            count: 1,
            owner: "alice".into(),
            job_id: Some(id),
            dispatcher: None,
        })
        .await
        .unwrap();
    let detail = runs
        .get_job(GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.job.unwrap().nodes, ["smithi001"]);
    let shown = runs
        .get_run(GetRunRequest { name: "r".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.jobs[0].nodes, ["smithi001"]);
    runs.update_job_status(set(JobStatus::Dead, "timed out after 600s"))
        .await
        .unwrap();
    let detail = runs
        .get_job(GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.job.unwrap().reason, "timed out after 600s");
    assert_eq!(detail.events.len(), 3);
    assert_refused(
        runs.get_job(GetJobRequest { job_id: 999 }).await,
        Code::NotFound,
        "999",
    );
}

/// 200 lock requests at once for random counts over 20 nodes: every request gets exactly
/// its count or nothing, and no node is ever held by two requests.
async fn concurrent_lock_requests_never_share_a_node(db: Db) {
    let lab = start(db).await;
    lab.add_nodes("smithi", 20).await;
    let channel = lab.channel().await;
    let holders: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut tasks = Vec::new();
    for request in 0..200usize {
        let mut nodes = NodeServiceClient::with_interceptor(channel.clone(), lab.admin());
        let holders = holders.clone();
        // Deterministic spread of counts 1..=8 without a seeded RNG dependency.
        let count = 1 + (request * 37 % 8) as u32;
        tasks.push(tokio::spawn(async move {
            let owner = format!("locker{request}");
            let result = nodes
                .lock_nodes(LockNodesRequest {
                    machine_type: "smithi".into(),
                    count,
                    owner: owner.clone(),
                    job_id: None,
                    dispatcher: None,
                })
                .await;
            let mut problems = Vec::new();
            let got = match result {
                Ok(response) => response.into_inner().nodes,
                Err(status) => {
                    if status.code() != Code::ResourceExhausted {
                        problems.push(format!("request {request}: unexpected {status:?}"));
                    }
                    return (false, problems);
                }
            };
            if got.len() != count as usize {
                problems.push(format!(
                    "request {request} asked {count}, got {}",
                    got.len()
                ));
            }
            let names: Vec<String> = got.iter().map(|n| n.name.clone()).collect();
            for name in &names {
                if let Some(other) = holders.lock().unwrap().insert(name.clone(), request) {
                    problems.push(format!("{name} held by requests {other} and {request}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            for name in &names {
                holders.lock().unwrap().remove(name);
            }
            if let Err(status) = nodes
                .unlock_nodes(UnlockNodesRequest {
                    names,
                    owner,
                    job_id: None,
                })
                .await
            {
                problems.push(format!("request {request}: unlock failed: {status:?}"));
            }
            (true, problems)
        }));
    }
    let mut granted = 0;
    let mut problems = Vec::new();
    for task in tasks {
        let (ok, mut found) = task.await.unwrap();
        granted += usize::from(ok);
        problems.append(&mut found);
    }
    assert_eq!(problems, Vec::<String>::new());
    assert!(granted >= 3, "only {granted} of 200 requests got nodes");
    let mut nodes = lab.nodes().await;
    let left = nodes
        .list_nodes(ListNodesRequest {
            locked: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        left.nodes.is_empty(),
        "nodes still locked: {:?}",
        left.nodes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lock_requests_never_share_a_node_sqlite() {
    concurrent_lock_requests_never_share_a_node(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lock_requests_never_share_a_node_postgres() {
    concurrent_lock_requests_never_share_a_node(Db::Postgres).await;
}

/// A suite whose job configs add up to more than tonic's 4 MiB default still schedules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_suite_request_is_accepted() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 1).await;
    let config = format!("overrides:\n  blob: '{}'\n", "x".repeat(40 * 1024));
    let spec = JobSpec {
        config_yaml: config,
        ..smithi_job(100, 1)
    };
    let mut runs = lab
        .runs()
        .await
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let created = runs
        .create_run(run_request("big-suite", jobs(150, spec)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.jobs.len(), 150);
}

/// Jobs of one run may carry different configs; each job keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_keeps_its_own_config() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 3).await;
    let one = "roles:\n- [mon.a]\nmarker: one\n";
    let two = "roles:\n- [mon.a]\n- [client.0]\nmarker: two\n";
    let spec = |yaml: &str| JobSpec {
        machine_type: "smithi".into(),
        config_yaml: yaml.into(),
        ..Default::default()
    };
    let mut runs = lab.runs().await;
    let created = runs
        .create_run(run_request("mixed", vec![spec(one), spec(two), spec(one)]))
        .await
        .unwrap()
        .into_inner();
    let seen: Vec<(u32, bool)> = created
        .jobs
        .iter()
        .map(|job| (job.n_nodes, job.config_yaml.contains("marker: two")))
        .collect();
    assert_eq!(seen, [(1, false), (2, true), (1, false)]);
}

/// Jobs recorded while beanstalkd is down (as a put that fails after commit leaves them)
/// are put by the retry loop once beanstalkd is back, with their priority and recorded ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_recorded_while_beanstalkd_is_down_are_put_when_it_returns() {
    let port = cuttle_testkit::free_port();
    let unused = Beanstalkd::start();
    let lab = lab(Db::Sqlite)
        .beanstalk_address(format!("127.0.0.1:{port}"))
        .beanstalkd(unused)
        .start()
        .await;
    let store = lab.api.app.store().clone();
    let created = tokio::task::spawn_blocking(move || {
        let run = cuttle_core::RunSpec {
            name: cuttle_core::RunName::parse("blink").unwrap(),
            owner: cuttle_core::Owner::parse("alice").unwrap(),
            branch: String::new(),
            sha1: String::new(),
            suite: String::new(),
        };
        let job = cuttle_core::JobSpec {
            description: String::new(),
            machine_type: cuttle_core::MachineType::parse("smithi").unwrap(),
            priority: cuttle_core::Priority::new(42).unwrap(),
            n_nodes: cuttle_core::NodeCount::new(1).unwrap(),
            time_limit: None,
            os_type: String::new(),
            os_version: String::new(),
        };
        store.create_run(&run, &vec![job; 3], cuttle_api::now(), |id, _| {
            Ok(format!("job_id: '{id}'\n"))
        })
    })
    .await
    .unwrap()
    .unwrap();
    // Give the retry loop (every second in these tests) a few failed rounds first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut runs = lab.runs().await;
    let shown = runs
        .get_run(GetRunRequest {
            name: "blink".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        shown.jobs.iter().all(|j| j.beanstalk_id.is_none()),
        "nothing can be put yet"
    );

    let _beanstalkd = Beanstalkd::start_on(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let shown = loop {
        let shown = runs
            .get_run(GetRunRequest {
                name: "blink".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if shown.jobs.iter().all(|j| j.beanstalk_id.is_some()) {
            break shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs were not put within 15 s: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut beanstalk = Beanstalkc::new()
        .host("127.0.0.1")
        .port(port)
        .connect()
        .unwrap();
    assert_eq!(
        beanstalk.stats_tube("smithi").unwrap()["current-jobs-ready"],
        "3"
    );
    for (job, made) in shown.jobs.iter().zip(&created.jobs) {
        let id = job.beanstalk_id.unwrap();
        assert_eq!(beanstalk.stats_job(id).unwrap()["pri"], "42");
        let body = beanstalk.peek(id).unwrap().body().to_vec();
        assert_eq!(String::from_utf8(body).unwrap(), made.config_yaml);
    }
}

/// beanstalkd restarted without its binlog loses every job it held: queued jobs whose
/// copies are gone are put again, with their new ids recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_lost_by_a_beanstalkd_restart_are_put_again() {
    let port = cuttle_testkit::free_port();
    let first = Beanstalkd::start_on(port);
    let unused = Beanstalkd::start();
    let lab = lab(Db::Sqlite)
        .beanstalk_address(format!("127.0.0.1:{port}"))
        .beanstalkd(unused)
        .start()
        .await;
    let mut runs = lab.runs().await;
    let ids = |shown: &cuttle_proto::v1::RunDetail| -> Vec<Option<u64>> {
        shown.jobs.iter().map(|j| j.beanstalk_id).collect()
    };
    let get = |runs: &mut cuttle_proto::v1::run_service_client::RunServiceClient<_>| {
        let mut runs = runs.clone();
        async move {
            runs.get_run(GetRunRequest {
                name: "lost".into(),
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    lab.add_nodes("smithi", 2).await;
    runs.create_run(CreateRunRequest {
        name: "lost".into(),
        owner: "alice".into(),
        jobs: vec![smithi_job(500, 1); 4],
        ..Default::default()
    })
    .await
    .unwrap();
    let before = ids(&get(&mut runs).await);
    assert!(before.iter().all(Option::is_some));
    // A new beanstalkd on the same port, empty: what a restart without -b leaves.
    drop(first);
    let _second = Beanstalkd::start_on(port);
    // Someone else's jobs take ids 1–4 again on the new beanstalkd: an id that answers is
    // not proof the copy is ours.
    {
        let mut other = Beanstalkc::new()
            .host("127.0.0.1")
            .port(port)
            .connect()
            .unwrap();
        other.use_tube("other").unwrap();
        for _ in 0..4 {
            other
                .put(
                    b"not a cuttle job",
                    1,
                    Duration::ZERO,
                    Duration::from_secs(60),
                )
                .unwrap();
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut beanstalk = Beanstalkc::new()
            .host("127.0.0.1")
            .port(port)
            .connect()
            .unwrap();
        let ready = beanstalk
            .stats_tube("smithi")
            .map(|stats| stats["current-jobs-ready"].clone())
            .unwrap_or_default();
        if ready == "4" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lost jobs were not put again within 20 s (ready: {ready:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each job's record names its new live copy.
    let shown = get(&mut runs).await;
    let mut beanstalk = Beanstalkc::new()
        .host("127.0.0.1")
        .port(port)
        .connect()
        .unwrap();
    for job in &shown.jobs {
        let id = job.beanstalk_id.expect("put again, so recorded again");
        let body = beanstalk.peek(id).unwrap().body().to_vec();
        assert_eq!(String::from_utf8(body).unwrap(), job.config_yaml);
    }
}

/// Hostile gRPC input: a 10 MB message, huge repeated fields, out-of-range numbers and
/// unknown enum values. Each is refused with a client error (never INTERNAL), and the
/// server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_grpc_input_gets_client_errors_and_the_server_survives() {
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 2).await;
    let mut nodes = lab.nodes().await;
    let mut runs = lab.runs().await;
    let client_error = |result: Result<(), tonic::Status>, what: &str| {
        let status = result.expect_err(what);
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
            ),
            "{what}: {status:?}"
        );
    };
    // 10 MB in one message, past the 4 MiB limit of every service but CreateRun's.
    client_error(
        nodes
            .add_node(AddNodeRequest {
                name: "big".into(),
                machine_type: "smithi".into(),
                description: "x".repeat(10 << 20),
                ..Default::default()
            })
            .await
            .map(drop),
        "a 10 MB AddNode",
    );
    // Huge repeated fields.
    client_error(
        nodes
            .unlock_nodes(UnlockNodesRequest {
                names: (0..100_000).map(|i| format!("n{i}")).collect(),
                owner: "alice".into(),
                job_id: None,
            })
            .await
            .map(drop),
        "an unlock of 100,000 names",
    );
    client_error(
        runs.create_run(run_request("huge", jobs(20_000, smithi_job(100, 1))))
            .await
            .map(drop),
        "a run of 20,000 jobs",
    );
    // Out-of-range numbers and unknown enum values.
    for (request, what) in [
        (smithi_job(70_000, 1), "priority 70000"),
        (smithi_job(100, 0), "0 nodes"),
        (
            JobSpec {
                time_limit_s: Some(u32::MAX),
                ..smithi_job(100, 1)
            },
            "a time limit of 136 years",
        ),
    ] {
        client_error(
            runs.create_run(run_request("bad", jobs(1, request)))
                .await
                .map(drop),
            what,
        );
    }
    client_error(
        nodes
            .lock_nodes(LockNodesRequest {
                machine_type: "smithi".into(),
                count: u32::MAX,
                owner: "alice".into(),
                job_id: Some(-5),
                dispatcher: None,
            })
            .await
            .map(drop),
        "a negative job id",
    );
    client_error(
        runs.update_job_status(UpdateJobStatusRequest {
            job_id: 1,
            status: 99,
            reason: String::new(),
            ..Default::default()
        })
        .await
        .map(drop),
        "job status 99",
    );
    client_error(
        runs.get_job(GetJobRequest { job_id: i64::MIN })
            .await
            .map(drop),
        "job id i64::MIN",
    );
    // Still serving, and healthy.
    let health = HealthServiceClient::new(lab.channel().await)
        .get_health(GetHealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(health.database_ok && health.beanstalk_ok, "{health:?}");
}

/// A supervisor the job no longer has (stopped past the grace, say, while the job was
/// started again elsewhere) cannot heartbeat it, end it or requeue it: reports that name
/// their supervisor must name the one the dispatch recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_recorded_supervisor_speaks_for_a_running_job() {
    use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;
    use cuttle_proto::v1::{
        AcquireLeaseRequest, ClaimJobRequest, HeartbeatRequest, RecordDispatchRequest,
        ReportPrepareRequest,
    };
    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 1).await;
    let mut runs = lab.runs().await;
    let job = runs
        .create_run(run_request("r", jobs(1, smithi_job(100, 1))))
        .await
        .unwrap()
        .into_inner()
        .jobs
        .remove(0);
    let mut dispatch = DispatchServiceClient::with_interceptor(lab.channel().await, lab.admin());
    let holder = "dispatcher-a".to_owned();
    dispatch
        .acquire_lease(AcquireLeaseRequest {
            machine_type: "smithi".into(),
            holder: holder.clone(),
            host: "host-a".into(),
            pid: 1,
            ttl_ms: 60_000,
        })
        .await
        .unwrap();
    dispatch
        .claim_job(ClaimJobRequest {
            machine_type: "smithi".into(),
            holder: holder.clone(),
            beanstalk_id: job.beanstalk_id.unwrap(),
            body: job.config_yaml.clone(),
            defer_lock: false,
        })
        .await
        .unwrap();
    dispatch
        .record_dispatch(RecordDispatchRequest {
            job_id: job.id,
            holder,
            supervisor_pid: 4242,
            supervisor_host: "host-a".into(),
        })
        .await
        .unwrap();
    let beat = |pid: u32, host: &str| HeartbeatRequest {
        job_id: job.id,
        supervisor_pid: Some(pid),
        supervisor_host: Some(host.into()),
    };
    assert_refused(
        runs.heartbeat(beat(9999, "host-a")).await,
        Code::FailedPrecondition,
        "supervised by pid 4242 on host-a, not by pid 9999 on host-a",
    );
    assert_refused(
        runs.heartbeat(beat(4242, "host-b")).await,
        Code::FailedPrecondition,
        "not by pid 4242 on host-b",
    );
    runs.heartbeat(beat(4242, "host-a")).await.unwrap();
    let report = |pid: u32| UpdateJobStatusRequest {
        job_id: job.id,
        status: JobStatus::Pass as i32,
        reason: String::new(),
        supervisor_pid: Some(pid),
        supervisor_host: Some("host-a".into()),
    };
    assert_refused(
        runs.update_job_status(report(9999)).await,
        Code::FailedPrecondition,
        "cannot speak for it",
    );
    assert_refused(
        runs.report_prepare(ReportPrepareRequest {
            job_id: job.id,
            ok: false,
            reason: "stale".into(),
            failed_nodes: Vec::new(),
            supervisor_pid: Some(9999),
            supervisor_host: Some("host-a".into()),
        })
        .await,
        Code::FailedPrecondition,
        "cannot speak for it",
    );
    let ended = runs
        .update_job_status(report(4242))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ended.status, JobStatus::Pass as i32);
}

/// grpc.health.v1 and server reflection answer without a token, as grpc-health-probe and
/// grpcurl call them: the server and each cuttle service are SERVING, an unknown service
/// is NOT_FOUND, and reflection lists cuttle's services and gives the file declaring one.
#[tokio::test]
async fn standard_health_and_reflection_answer_without_a_token() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let lab = start(Db::Sqlite).await;
    let mut health = HealthClient::new(lab.channel().await);
    for service in ["", "cuttle.v1.RunService", "cuttle.v1.QueueService"] {
        // The first report is written as the server starts; wait for it.
        let mut status = None;
        for _ in 0..50 {
            match health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
            {
                Ok(answer) => {
                    status = Some(answer.into_inner().status);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert_eq!(status, Some(ServingStatus::Serving as i32), "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "cuttle.v1.NoSuchService".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut reflection = ServerReflectionClient::new(lab.channel().await);
    let ask = |request: MessageRequest| {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }])
    };
    let mut answers = reflection
        .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(listed)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "cuttle.v1.RunService",
        "cuttle.v1.QueueService",
        "cuttle.v1.AdminService",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} not in {names:?}"
        );
    }
    let mut answers = reflection
        .server_reflection_info(ask(MessageRequest::FileContainingSymbol(
            "cuttle.v1.RunService".into(),
        )))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no file for cuttle.v1.RunService");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let file = String::from_utf8_lossy(&files.file_descriptor_proto[0]).into_owned();
    assert!(file.contains("cuttle/v1/runs.proto"), "{file}");
}

/// DispatchService/WatchTube tells a tube's watcher, at once, what may let its jobs start:
/// jobs put on it and nodes of its machine type given back, and nothing about other
/// machine types. Only a service (or an admin) may watch.
#[tokio::test]
async fn a_tube_watcher_hears_jobs_queued_and_nodes_freed_of_its_tube_only() {
    use cuttle_proto::v1::WatchTubeRequest;
    use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;

    let lab = start(Db::Sqlite).await;
    lab.add_nodes("smithi", 2).await;
    lab.add_nodes("mira", 1).await;
    let developer = lab.token("alice", "developer").await;
    let refused = DispatchServiceClient::with_interceptor(lab.channel().await, developer)
        .watch_tube(WatchTubeRequest {
            machine_type: "smithi".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let service = lab.token("dispatcher-smithi", "service").await;
    let mut events = DispatchServiceClient::with_interceptor(lab.channel().await, service)
        .watch_tube(WatchTubeRequest {
            machine_type: "smithi".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap()
    };
    let mut runs = lab.runs().await;
    for (machine_type, count) in [("mira", 1), ("smithi", 2)] {
        runs.create_run(CreateRunRequest {
            name: format!("watched-{machine_type}"),
            owner: "alice".into(),
            jobs: jobs(
                count,
                JobSpec {
                    machine_type: machine_type.into(),
                    config_yaml: "runtime: 0\n".into(),
                    ..Default::default()
                },
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let queued = next().await;
    assert_eq!((queued.kind.as_str(), queued.count), ("jobs_queued", 2));
    // mira's node freed: not smithi's business. smithi's: the next event.
    let mut nodes = lab.nodes().await;
    for machine_type in ["mira", "smithi"] {
        let locked = nodes
            .lock_nodes(LockNodesRequest {
                machine_type: machine_type.into(),
                count: 1,
                owner: "admin".into(),
                job_id: None,
                dispatcher: None,
            })
            .await
            .unwrap()
            .into_inner();
        nodes
            .unlock_nodes(UnlockNodesRequest {
                names: locked.nodes.iter().map(|n| n.name.clone()).collect(),
                owner: "admin".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let freed = next().await;
    assert_eq!((freed.kind.as_str(), freed.count), ("nodes_freed", 1));
}

/// A batch call may name at most `MAX_BATCH_JOBS` jobs (a dispatcher sends more as
/// several calls); each job named is answered on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lock_answers_each_job_and_refuses_an_oversized_batch() {
    use cuttle_proto::v1::LockNodesBatchRequest;
    use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;
    let lab = start(Db::Sqlite).await;
    let mut dispatch = DispatchServiceClient::with_interceptor(lab.channel().await, lab.admin());
    let too_many = (1..=i64::try_from(cuttle_proto::MAX_BATCH_JOBS).unwrap() + 1).collect();
    assert_refused(
        dispatch
            .lock_nodes_batch(LockNodesBatchRequest {
                holder: "d".into(),
                job_ids: too_many,
            })
            .await,
        Code::InvalidArgument,
        "send at most 1000 per call",
    );
    let answer = dispatch
        .lock_nodes_batch(LockNodesBatchRequest {
            holder: "d".into(),
            job_ids: vec![41, 42],
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<i64> = answer.jobs.iter().map(|job| job.job_id).collect();
    assert_eq!(ids, [41, 42]);
    for job in &answer.jobs {
        let error = job.error.as_ref().expect("an unknown job gets no nodes");
        assert_eq!(error.code, Code::NotFound as i32, "{error:?}");
        assert!(job.nodes.is_empty());
    }
}
