//! Who may call what, against the real server: every RPC of every service is called by an
//! anonymous caller, two developers (alice owns the run and the hand lock, bob does not),
//! a service token and an admin, and each call must be refused exactly when the rule
//! table says so: UNAUTHENTICATED without a needed token, PERMISSION_DENIED for the wrong
//! caller, and anything else (often a harmless NOT_FOUND or FAILED_PRECONDITION after the
//! check) for the right one.

use tonic::transport::Channel;
use tonic::{Code, Status};

use cuttle_labkit::LabBuilder;
use cuttle_proto::bearer::Bearer;
use cuttle_proto::v1;
use cuttle_proto::v1::admin_service_client::AdminServiceClient;
use cuttle_proto::v1::auto_suite_service_client::AutoSuiteServiceClient;
use cuttle_proto::v1::dispatch_service_client::DispatchServiceClient;
use cuttle_proto::v1::health_service_client::HealthServiceClient;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::preset_service_client::PresetServiceClient;
use cuttle_proto::v1::queue_service_client::QueueServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::suite_service_client::SuiteServiceClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Alice,
    Bob,
    Service,
    Admin,
}

const EVERYONE: [Who; 5] = [
    Who::Anonymous,
    Who::Alice,
    Who::Bob,
    Who::Service,
    Who::Admin,
];

struct Lab {
    /// cuttle-api over SQLite, with four smithi nodes.
    kit: cuttle_labkit::Lab,
    channel: Channel,
    alice: String,
    bob: String,
    service: String,
    job_id: i64,
    /// An AutoSuite of alice's.
    autosuite_id: i64,
}

impl Lab {
    async fn start(anonymous_reads: bool) -> Lab {
        let kit = LabBuilder::new()
            .nodes("smithi", 4)
            .settings(move |settings| {
                settings.max_db_connections = 4;
                settings.anonymous_reads = anonymous_reads;
            })
            .start()
            .await;
        let mut lab = Lab {
            channel: kit.channel().await,
            alice: kit.token_secret("alice", "developer").await,
            bob: kit.token_secret("bob", "developer").await,
            service: kit.token_secret("dispatcher-smithi", "service").await,
            kit,
            job_id: 0,
            autosuite_id: 0,
        };
        // alice's run, and alice's hand lock on smithi001.
        let created = RunServiceClient::with_interceptor(lab.channel.clone(), lab.as_(Who::Alice))
            .create_run(run_request("alice-run", "alice"))
            .await
            .unwrap()
            .into_inner();
        lab.job_id = created.jobs[0].id;
        lab.autosuite_id = lab.add_autosuite().await;
        NodeServiceClient::with_interceptor(lab.channel.clone(), lab.as_(Who::Alice))
            .lock_named_nodes(v1::LockNamedNodesRequest {
                names: vec!["smithi001".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        lab
    }

    fn as_(&self, who: Who) -> Bearer {
        let token = match who {
            Who::Anonymous => return Bearer::none(),
            Who::Alice => self.alice.clone(),
            Who::Bob => self.bob.clone(),
            Who::Service => self.service.clone(),
            Who::Admin => self.kit.admin_token(),
        };
        Bearer::new(Some(&token)).unwrap()
    }
}

fn run_request(name: &str, owner: &str) -> v1::CreateRunRequest {
    v1::CreateRunRequest {
        name: name.into(),
        owner: owner.into(),
        jobs: vec![v1::JobSpec {
            machine_type: "smithi".into(),
            n_nodes: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Every RPC cuttle-api serves, each with a request that does no lasting harm once the
/// caller is let through.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    AddNode,
    UpdateNode,
    MarkNodeUp,
    MarkNodeDown,
    ListNodes,
    LockNodesByHand,
    LockNodesForJob,
    LockNamedNodes,
    UnlockByHand,
    UnlockAsRelease,
    CreateRun,
    ScheduleSuite,
    SavePreset,
    GetPreset,
    ListPresets,
    DeletePreset,
    AddAutoSuite,
    GetAutoSuite,
    ListAutoSuites,
    EditAutoSuite,
    DeleteAutoSuite,
    GetRun,
    ListRuns,
    GetJob,
    UpdateJobStatus,
    Heartbeat,
    ReportPrepare,
    Kill,
    AcquireLease,
    ReleaseLease,
    ClaimJob,
    RecordDispatch,
    LockNodesBatch,
    RecordDispatches,
    RequeueJob,
    ClaimReleases,
    GetPlanState,
    ListQueue,
    SetQueuePaused,
    ListTubes,
    Reprioritize,
    GetHealth,
    AuditLocks,
    LockHistory,
    CreateToken,
    ListTokens,
    RevokeToken,
    WhoAmI,
    WatchTube,
    ListBuried,
    KickBuried,
    DeleteBuried,
}

/// A waiting suite request of alice's (its build is never checked: no Shaman here).
fn autosuite_args() -> v1::SuiteArgs {
    v1::SuiteArgs {
        suite: "rados/singleton".into(),
        suite_dir: concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cuttle-suite/tests/data/ceph"
        )
        .into(),
        machine_type: "smithi".into(),
        owner: "alice".into(),
        ceph_branch: "wip-auth".into(),
        ..Default::default()
    }
}

impl Lab {
    async fn add_autosuite(&self) -> i64 {
        AutoSuiteServiceClient::with_interceptor(self.channel.clone(), self.as_(Who::Alice))
            .add_auto_suite(v1::AddAutoSuiteRequest {
                args: Some(autosuite_args()),
            })
            .await
            .unwrap()
            .into_inner()
            .id
    }
}

/// A dispatch record of a job that does not exist.
fn unknown_dispatch(holder: String) -> v1::RecordDispatchRequest {
    v1::RecordDispatchRequest {
        job_id: 999_999,
        holder,
        supervisor_pid: 1,
        supervisor_host: "test".into(),
    }
}

/// Who the rule table lets through, per RPC.
fn allowed(rpc: Rpc) -> Vec<Who> {
    use Who::*;
    match rpc {
        Rpc::ListNodes
        | Rpc::GetRun
        | Rpc::ListRuns
        | Rpc::GetJob
        | Rpc::ListQueue
        | Rpc::ListTubes
        | Rpc::GetHealth
        | Rpc::AuditLocks
        | Rpc::LockHistory
        | Rpc::ListBuried
        | Rpc::WhoAmI => EVERYONE.to_vec(),
        Rpc::AddNode
        | Rpc::UpdateNode
        | Rpc::MarkNodeUp
        | Rpc::SetQueuePaused
        | Rpc::CreateToken
        | Rpc::ListTokens
        | Rpc::RevokeToken
        | Rpc::KickBuried
        | Rpc::DeleteBuried
        // A service token locks only for a job its dispatcher claimed; this one is not.
        | Rpc::LockNodesForJob => vec![Admin],
        Rpc::MarkNodeDown
        | Rpc::UnlockAsRelease
        | Rpc::UpdateJobStatus
        | Rpc::Heartbeat
        | Rpc::ReportPrepare
        | Rpc::AcquireLease
        | Rpc::ReleaseLease
        | Rpc::ClaimJob
        | Rpc::RecordDispatch
        | Rpc::LockNodesBatch
        | Rpc::RecordDispatches
        | Rpc::RequeueJob
        | Rpc::ClaimReleases
        | Rpc::GetPlanState
        | Rpc::WatchTube => vec![Service, Admin],
        // alice's own things.
        Rpc::LockNodesByHand
        | Rpc::LockNamedNodes
        | Rpc::UnlockByHand
        | Rpc::CreateRun
        | Rpc::ScheduleSuite
        | Rpc::SavePreset
        | Rpc::GetPreset
        | Rpc::ListPresets
        | Rpc::DeletePreset
        | Rpc::AddAutoSuite
        | Rpc::GetAutoSuite
        | Rpc::ListAutoSuites
        | Rpc::EditAutoSuite
        | Rpc::DeleteAutoSuite
        | Rpc::Kill
        | Rpc::Reprioritize => vec![Alice, Admin],
    }
}

async fn call(lab: &Lab, who: Who, rpc: Rpc, round: usize) -> Result<(), Status> {
    let bearer = lab.as_(who);
    let channel = lab.channel.clone();
    let mut nodes = NodeServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut runs = RunServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut dispatch = DispatchServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut queue = QueueServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut health = HealthServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut suites = SuiteServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut presets = PresetServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut autosuites = AutoSuiteServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut admin = AdminServiceClient::with_interceptor(channel, bearer);
    let job_id = lab.job_id;
    let holder = format!("holder-{round}");
    match rpc {
        Rpc::AddNode => nodes
            .add_node(v1::AddNodeRequest {
                name: format!("extra{round:03}"),
                machine_type: "mira".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::UpdateNode => nodes
            .update_node(v1::UpdateNodeRequest {
                name: "smithi004".into(),
                description: Some("rack 4".into()),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::MarkNodeUp => nodes
            .mark_node(v1::MarkNodeRequest {
                name: "smithi004".into(),
                up: true,
                reason: String::new(),
                job_id: None,
            })
            .await
            .map(drop),
        Rpc::MarkNodeDown => nodes
            .mark_node(v1::MarkNodeRequest {
                name: "smithi004".into(),
                up: false,
                reason: "auth test".into(),
                job_id: Some(job_id),
            })
            .await
            .map(drop),
        Rpc::ListNodes => nodes
            .list_nodes(v1::ListNodesRequest::default())
            .await
            .map(drop),
        // More nodes than the lab has: refused after the check, nothing locked.
        Rpc::LockNodesByHand => nodes
            .lock_nodes(v1::LockNodesRequest {
                machine_type: "smithi".into(),
                count: 100,
                owner: "alice".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::LockNodesForJob => nodes
            .lock_nodes(v1::LockNodesRequest {
                machine_type: "smithi".into(),
                count: 100,
                owner: "alice".into(),
                job_id: Some(job_id),
                dispatcher: Some(holder),
            })
            .await
            .map(drop),
        Rpc::LockNamedNodes => nodes
            .lock_named_nodes(v1::LockNamedNodesRequest {
                names: vec!["ghost".into()],
                owner: "alice".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        // smithi002 is free: an allowed unlock is a no-op.
        Rpc::UnlockByHand => nodes
            .unlock_nodes(v1::UnlockNodesRequest {
                names: vec!["smithi002".into()],
                owner: "alice".into(),
                job_id: None,
            })
            .await
            .map(drop),
        Rpc::UnlockAsRelease => nodes
            .unlock_nodes(v1::UnlockNodesRequest {
                names: vec!["smithi002".into()],
                owner: String::new(),
                job_id: Some(job_id),
            })
            .await
            .map(drop),
        Rpc::CreateRun => runs
            .create_run(run_request(&format!("alice-extra-{round}"), "alice"))
            .await
            .map(drop),
        Rpc::ScheduleSuite => suites
            .schedule_suite(v1::SuiteArgs {
                suite: "rados/singleton".into(),
                suite_dir: concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../cuttle-suite/tests/data/ceph"
                )
                .into(),
                machine_type: "smithi".into(),
                owner: "alice".into(),
                seed: Some(7),
                limit: 1,
                run_name: format!("alice-suite-{round}"),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::SavePreset => presets
            .save_preset(v1::SavePresetRequest {
                owner: "alice".into(),
                name: format!("p{round}"),
                args: Some(v1::SuiteArgs {
                    suite: "rados/singleton".into(),
                    ..Default::default()
                }),
                replace: false,
            })
            .await
            .map(drop),
        Rpc::GetPreset => presets
            .get_preset(v1::GetPresetRequest {
                owner: "alice".into(),
                name: "p0".into(),
            })
            .await
            .map(drop),
        Rpc::ListPresets => presets
            .list_presets(v1::ListPresetsRequest {
                owner: "alice".into(),
            })
            .await
            .map(drop),
        Rpc::DeletePreset => presets
            .delete_preset(v1::DeletePresetRequest {
                owner: "alice".into(),
                name: format!("gone{round}"),
            })
            .await
            .map(drop),
        Rpc::AddAutoSuite => autosuites
            .add_auto_suite(v1::AddAutoSuiteRequest {
                args: Some(autosuite_args()),
            })
            .await
            .map(drop),
        Rpc::GetAutoSuite => autosuites
            .get_auto_suite(v1::GetAutoSuiteRequest {
                id: lab.autosuite_id,
            })
            .await
            .map(drop),
        Rpc::ListAutoSuites => autosuites
            .list_auto_suites(v1::ListAutoSuitesRequest {
                owner: "alice".into(),
                all: false,
            })
            .await
            .map(drop),
        Rpc::EditAutoSuite => autosuites
            .edit_auto_suite(v1::EditAutoSuiteRequest {
                id: lab.autosuite_id,
                args: Some(v1::SuiteArgs {
                    priority: Some(200),
                    ..Default::default()
                }),
            })
            .await
            .map(drop),
        Rpc::DeleteAutoSuite => {
            // A fresh one of alice's each time: the attempt of one caller must not
            // decide the next one's.
            let id = lab.add_autosuite().await;
            autosuites
                .delete_auto_suite(v1::DeleteAutoSuiteRequest { id })
                .await
                .map(drop)
        }
        Rpc::GetRun => runs
            .get_run(v1::GetRunRequest {
                name: "alice-run".into(),
            })
            .await
            .map(drop),
        Rpc::ListRuns => runs
            .list_runs(v1::ListRunsRequest::default())
            .await
            .map(drop),
        Rpc::GetJob => runs.get_job(v1::GetJobRequest { job_id }).await.map(drop),
        // Queued to pass is illegal: refused by the state machine after the check.
        Rpc::UpdateJobStatus => runs
            .update_job_status(v1::UpdateJobStatusRequest {
                job_id,
                status: v1::JobStatus::Pass as i32,
                reason: String::new(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::Heartbeat => runs
            .heartbeat(v1::HeartbeatRequest {
                job_id,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ReportPrepare => runs
            .report_prepare(v1::ReportPrepareRequest {
                job_id,
                ok: false,
                reason: "auth test".into(),
                failed_nodes: Vec::new(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::Kill => runs
            .kill(v1::KillRequest {
                run_name: "alice-run".into(),
                owner: "alice".into(),
                job_id: Some(999_999),
            })
            .await
            .map(drop),
        Rpc::AcquireLease => dispatch
            .acquire_lease(v1::AcquireLeaseRequest {
                machine_type: "authtest".into(),
                holder,
                host: "test".into(),
                pid: 1,
                ttl_ms: 1000,
            })
            .await
            .map(drop),
        Rpc::ReleaseLease => dispatch
            .release_lease(v1::ReleaseLeaseRequest {
                machine_type: "authtest".into(),
                holder,
            })
            .await
            .map(drop),
        Rpc::ClaimJob => dispatch
            .claim_job(v1::ClaimJobRequest {
                machine_type: "authtest".into(),
                holder,
                beanstalk_id: 999_999,
                body: "not: [yaml".into(),
                defer_lock: true,
            })
            .await
            .map(drop),
        Rpc::RecordDispatch => dispatch
            .record_dispatch(unknown_dispatch(holder))
            .await
            .map(drop),
        // Each job of a batch is answered on its own (here: unknown), so the call itself
        // succeeds for whoever may make it.
        Rpc::LockNodesBatch => dispatch
            .lock_nodes_batch(v1::LockNodesBatchRequest {
                holder,
                job_ids: vec![999_999],
            })
            .await
            .map(drop),
        Rpc::RecordDispatches => dispatch
            .record_dispatches(v1::RecordDispatchesRequest {
                dispatches: vec![unknown_dispatch(holder)],
            })
            .await
            .map(drop),
        Rpc::RequeueJob => dispatch
            .requeue_job(v1::RequeueJobRequest {
                job_id: 999_999,
                holder,
                reason: String::new(),
            })
            .await
            .map(drop),
        Rpc::ClaimReleases => dispatch
            .claim_releases(v1::ClaimReleasesRequest {
                machine_type: "authtest".into(),
                holder,
                limit: 1,
            })
            .await
            .map(drop),
        Rpc::GetPlanState => dispatch
            .get_plan_state(v1::PlanStateRequest {
                machine_type: "smithi".into(),
                job_ids: Vec::new(),
                default_time_limit_ms: 1000,
            })
            .await
            .map(drop),
        Rpc::ListQueue => queue
            .list_queue(v1::ListQueueRequest {
                machine_type: "smithi".into(),
                limit: 10,
            })
            .await
            .map(drop),
        Rpc::SetQueuePaused => queue
            .set_queue_paused(v1::SetQueuePausedRequest {
                machine_type: "smithi".into(),
                paused: false,
                owner: String::new(),
            })
            .await
            .map(drop),
        Rpc::ListTubes => queue.list_tubes(v1::ListTubesRequest {}).await.map(drop),
        Rpc::Reprioritize => queue
            .reprioritize(v1::ReprioritizeRequest {
                job_id,
                priority: 500,
                owner: "alice".into(),
            })
            .await
            .map(drop),
        Rpc::GetHealth => health.get_health(v1::GetHealthRequest {}).await.map(drop),
        Rpc::AuditLocks => admin.audit_locks(v1::AuditLocksRequest {}).await.map(drop),
        Rpc::LockHistory => admin
            .lock_history(v1::LockHistoryRequest::default())
            .await
            .map(drop),
        Rpc::CreateToken => admin
            .create_token(v1::CreateTokenRequest {
                user: format!("extra{round}"),
                role: "developer".into(),
            })
            .await
            .map(drop),
        Rpc::ListTokens => admin.list_tokens(v1::ListTokensRequest {}).await.map(drop),
        Rpc::RevokeToken => admin
            .revoke_token(v1::RevokeTokenRequest { id: 999_999 })
            .await
            .map(drop),
        Rpc::WhoAmI => admin.who_am_i(v1::WhoAmIRequest {}).await.map(drop),
        Rpc::WatchTube => dispatch
            .watch_tube(v1::WatchTubeRequest {
                machine_type: "smithi".into(),
            })
            .await
            .map(drop),
        Rpc::ListBuried => queue
            .list_buried(v1::ListBuriedRequest {
                machine_type: "authtest".into(),
                limit: 1,
            })
            .await
            .map(drop),
        Rpc::KickBuried => queue
            .kick_buried(v1::KickBuriedRequest {
                machine_type: "authtest".into(),
                beanstalk_id: 999_999,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::DeleteBuried => queue
            .delete_buried(v1::DeleteBuriedRequest {
                machine_type: "authtest".into(),
                beanstalk_id: 999_999,
                ..Default::default()
            })
            .await
            .map(drop),
    }
}

const ALL_RPCS: [Rpc; 52] = [
    Rpc::AddNode,
    Rpc::UpdateNode,
    Rpc::MarkNodeUp,
    Rpc::MarkNodeDown,
    Rpc::ListNodes,
    Rpc::LockNodesByHand,
    Rpc::LockNodesForJob,
    Rpc::LockNamedNodes,
    Rpc::UnlockByHand,
    Rpc::UnlockAsRelease,
    Rpc::CreateRun,
    Rpc::ScheduleSuite,
    Rpc::SavePreset,
    Rpc::GetPreset,
    Rpc::ListPresets,
    Rpc::DeletePreset,
    Rpc::AddAutoSuite,
    Rpc::GetAutoSuite,
    Rpc::ListAutoSuites,
    Rpc::EditAutoSuite,
    Rpc::DeleteAutoSuite,
    Rpc::GetRun,
    Rpc::ListRuns,
    Rpc::GetJob,
    Rpc::UpdateJobStatus,
    Rpc::Heartbeat,
    Rpc::ReportPrepare,
    Rpc::Kill,
    Rpc::AcquireLease,
    Rpc::ReleaseLease,
    Rpc::ClaimJob,
    Rpc::RecordDispatch,
    Rpc::LockNodesBatch,
    Rpc::RecordDispatches,
    Rpc::RequeueJob,
    Rpc::ClaimReleases,
    Rpc::GetPlanState,
    Rpc::ListQueue,
    Rpc::SetQueuePaused,
    Rpc::ListTubes,
    Rpc::Reprioritize,
    Rpc::GetHealth,
    Rpc::AuditLocks,
    Rpc::LockHistory,
    Rpc::CreateToken,
    Rpc::ListTokens,
    Rpc::RevokeToken,
    Rpc::WhoAmI,
    Rpc::WatchTube,
    Rpc::ListBuried,
    Rpc::KickBuried,
    Rpc::DeleteBuried,
];

/// The matrix covers every RPC the protos declare: a new RPC fails here until its rule
/// is in the table. (Some RPCs appear more than once, called by different routes.)
#[test]
fn the_matrix_names_every_rpc() {
    let mut covered: Vec<String> = ALL_RPCS
        .iter()
        .map(|rpc| {
            let name = format!("{rpc:?}");
            match name.as_str() {
                "MarkNodeUp" | "MarkNodeDown" => "MarkNode".to_owned(),
                "LockNodesByHand" | "LockNodesForJob" => "LockNodes".to_owned(),
                "UnlockByHand" | "UnlockAsRelease" => "UnlockNodes".to_owned(),
                _ => name,
            }
        })
        .collect();
    covered.sort();
    covered.dedup();
    let declared: Vec<String> = cuttle_proto::apidoc::rpc_names()
        .into_iter()
        .map(|name| name.rsplit('/').next().unwrap_or("").to_owned())
        .collect();
    let missing: Vec<&String> = declared.iter().filter(|m| !covered.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "RPCs without a rule in the matrix: {missing:?}"
    );
}

fn refused(result: &Result<(), Status>) -> Option<Code> {
    match result {
        Err(status)
            if matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied
            ) =>
        {
            Some(status.code())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_exactly_the_callers_the_rules_refuse() {
    let lab = Lab::start(true).await;
    let mut problems = Vec::new();
    let mut round = 0;
    for rpc in ALL_RPCS {
        let allowed = allowed(rpc);
        for who in EVERYONE {
            round += 1;
            let result = call(&lab, who, rpc, round).await;
            let outcome = refused(&result);
            match (allowed.contains(&who), outcome) {
                (true, None) | (false, Some(_)) => {}
                (true, Some(_)) => {
                    problems.push(format!("{rpc:?} by {who:?} was refused: {result:?}"))
                }
                (false, None) => {
                    problems.push(format!("{rpc:?} by {who:?} was let through: {result:?}"))
                }
            }
            // Anonymous callers are told to bring a token; callers with one, that they
            // may not.
            if let (false, Some(code)) = (allowed.contains(&who), outcome) {
                let expected = if who == Who::Anonymous {
                    Code::Unauthenticated
                } else {
                    Code::PermissionDenied
                };
                if code != expected {
                    problems.push(format!(
                        "{rpc:?} by {who:?}: {code:?}, expected {expected:?}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A service marks down only a node of the job it names: without a job it may not.
    let refused = NodeServiceClient::with_interceptor(lab.channel.clone(), lab.as_(Who::Service))
        .mark_node(v1::MarkNodeRequest {
            name: "smithi003".into(),
            up: false,
            reason: "not mine".into(),
            job_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // alice's run and hand lock are untouched by everyone else's attempts.
    let run = RunServiceClient::new(lab.channel.clone())
        .get_run(v1::GetRunRequest {
            name: "alice-run".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.jobs[0].status, v1::JobStatus::Queued as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revoked_and_closed_read_tokens_are_refused() {
    let lab = Lab::start(false).await;
    // Reads closed: anonymous callers may not even list.
    let listed = NodeServiceClient::new(lab.channel.clone())
        .list_nodes(v1::ListNodesRequest::default())
        .await;
    assert_eq!(listed.unwrap_err().code(), Code::Unauthenticated);
    // A made-up token is refused even for a read, with what to do.
    let fake = Bearer::new(Some("cuttle_0000000000000000")).unwrap();
    let refused = NodeServiceClient::with_interceptor(lab.channel.clone(), fake)
        .list_nodes(v1::ListNodesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("ask a lab admin"),
        "{}",
        refused.message()
    );
    // A revoked token stops working at once (on this cuttle-api).
    let mut admin = AdminServiceClient::with_interceptor(lab.channel.clone(), lab.as_(Who::Admin));
    let tokens = admin
        .list_tokens(v1::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let bob = tokens.iter().find(|token| token.user == "bob").unwrap();
    assert!(!bob.prefix.is_empty() && lab.bob.starts_with(&bob.prefix));
    assert!(
        lab.bob.len() > bob.prefix.len() + 32,
        "the listing shows only the start of a token"
    );
    let whoami = AdminServiceClient::with_interceptor(lab.channel.clone(), lab.as_(Who::Bob))
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (whoami.user.as_str(), whoami.role.as_str()),
        ("bob", "developer")
    );
    admin
        .revoke_token(v1::RevokeTokenRequest { id: bob.id })
        .await
        .unwrap();
    let refused = AdminServiceClient::with_interceptor(lab.channel.clone(), lab.as_(Who::Bob))
        .who_am_i(v1::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // A header that is not `Bearer TOKEN` is named as such.
    let mut request = tonic::Request::new(v1::WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("authorization", "Basic abc".parse().unwrap());
    let refused = AdminServiceClient::new(lab.channel.clone())
        .who_am_i(request)
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("Bearer TOKEN"),
        "{}",
        refused.message()
    );
    drop(lab.kit);
}
