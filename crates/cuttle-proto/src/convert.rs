//! Conversions between the generated `cuttle.v1` messages and cuttle-core types. Each
//! direction is written once, here, and nowhere else.

use cuttle_core::dispatch::{Claimed, JobOnNodes, PlanJob, PlanState, Tube};
use cuttle_core::{InvalidInput, Job, JobEvent, JobId, JobStatus, Node, RunSummary, UnixMillis};
use cuttle_policy::PolicyConfig;

use crate::v1;

/// The wire enum for a core status.
pub fn status_to_proto(status: JobStatus) -> v1::JobStatus {
    match status {
        JobStatus::WaitingForBuild => v1::JobStatus::WaitingForBuild,
        JobStatus::Queued => v1::JobStatus::Queued,
        JobStatus::Waiting => v1::JobStatus::Waiting,
        JobStatus::Running => v1::JobStatus::Running,
        JobStatus::Pass => v1::JobStatus::Pass,
        JobStatus::Fail => v1::JobStatus::Fail,
        JobStatus::Dead => v1::JobStatus::Dead,
        JobStatus::Killed => v1::JobStatus::Killed,
    }
}

/// The core status for a wire enum value; `None` for `UNSPECIFIED` or an unknown number
/// (a newer client), which callers refuse with a message.
pub fn status_from_proto(value: i32) -> Option<JobStatus> {
    match v1::JobStatus::try_from(value).ok()? {
        v1::JobStatus::Unspecified => None,
        v1::JobStatus::WaitingForBuild => Some(JobStatus::WaitingForBuild),
        v1::JobStatus::Queued => Some(JobStatus::Queued),
        v1::JobStatus::Waiting => Some(JobStatus::Waiting),
        v1::JobStatus::Running => Some(JobStatus::Running),
        v1::JobStatus::Pass => Some(JobStatus::Pass),
        v1::JobStatus::Fail => Some(JobStatus::Fail),
        v1::JobStatus::Dead => Some(JobStatus::Dead),
        v1::JobStatus::Killed => Some(JobStatus::Killed),
    }
}

/// The display name of a wire status value (`queued`), or `unknown(N)`.
pub fn status_name(value: i32) -> String {
    status_from_proto(value)
        .map(|status| status.as_str().to_owned())
        .unwrap_or_else(|| format!("unknown({value})"))
}

pub fn node_to_proto(node: &Node) -> v1::Node {
    v1::Node {
        name: node.name.to_string(),
        machine_type: node.machine_type.to_string(),
        up: node.up,
        locked: node.lock.is_some(),
        locked_by: node
            .lock
            .as_ref()
            .map(|lock| lock.owner.to_string())
            .unwrap_or_default(),
        locked_job_id: node
            .lock
            .as_ref()
            .and_then(|lock| lock.job_id)
            .map(|id| id.0),
        locked_since_ms: node.lock.as_ref().map(|lock| lock.since.0),
        description: node.description.clone(),
        os_type: node.os_type.clone(),
        os_version: node.os_version.clone(),
        created_at_ms: node.created_at.0,
        updated_at_ms: node.updated_at.0,
        ssh_key: node.ssh_key.clone(),
    }
}

/// A job on the wire, with the names of the nodes currently locked for it.
pub fn job_to_proto(job: &Job, nodes: Vec<String>) -> v1::Job {
    v1::Job {
        id: job.id.0,
        run_name: job.run_name.to_string(),
        owner: job.owner.to_string(),
        description: job.spec.description.clone(),
        machine_type: job.spec.machine_type.to_string(),
        priority: job.spec.priority.get(),
        n_nodes: job.spec.n_nodes.get(),
        time_limit_s: job.spec.time_limit.map(|limit| limit.seconds()),
        os_type: job.spec.os_type.clone(),
        os_version: job.spec.os_version.clone(),
        status: status_to_proto(job.status) as i32,
        reason: job.reason.clone().unwrap_or_default(),
        beanstalk_id: job.beanstalk_id,
        config_yaml: job.config_yaml.clone(),
        created_at_ms: job.created_at.0,
        updated_at_ms: job.updated_at.0,
        heartbeat_at_ms: job.heartbeat_at.map(|at| at.0),
        nodes,
        dispatcher: job.dispatcher.clone().unwrap_or_default(),
        supervisor_host: job
            .supervisor
            .as_ref()
            .map(|s| s.host.clone())
            .unwrap_or_default(),
        supervisor_pid: job.supervisor.as_ref().map_or(0, |s| s.pid),
        started_at_ms: job.started_at.map(|at| at.0),
        waiting_for: String::new(),
        estimated_start_ms: None,
        estimated_start_is_latest: false,
    }
}

/// A run summary on the wire; `job_counts` is keyed by status name.
pub fn run_to_proto(summary: &RunSummary) -> v1::Run {
    let run = &summary.run;
    v1::Run {
        name: run.spec.name.to_string(),
        owner: run.spec.owner.to_string(),
        branch: run.spec.branch.clone(),
        sha1: run.spec.sha1.clone(),
        suite: run.spec.suite.clone(),
        machine_type: summary.machine_type.to_string(),
        created_at_ms: run.created_at.0,
        status: summary.status.as_str().to_owned(),
        job_counts: summary
            .counts
            .iter()
            .map(|(status, n)| (status.as_str().to_owned(), *n))
            .collect(),
    }
}

/// A tube on the wire; the lease fields are filled only while the lease is live at `now`.
pub fn tube_to_proto(tube: &Tube, now: UnixMillis) -> v1::Tube {
    let lease = tube.live_lease(now);
    v1::Tube {
        machine_type: tube.machine_type.to_string(),
        paused: tube.paused,
        paused_by: tube.paused_by.clone().unwrap_or_default(),
        paused_at_ms: tube.paused_at.map(|at| at.0),
        lease_holder: lease.map(|l| l.holder.clone()).unwrap_or_default(),
        lease_host: lease.map(|l| l.host.clone()).unwrap_or_default(),
        lease_pid: lease.map_or(0, |l| l.pid),
        lease_expires_at_ms: lease.map(|l| l.expires_at.0),
    }
}

pub fn event_to_proto(event: &JobEvent) -> v1::JobEvent {
    v1::JobEvent {
        at_ms: event.at.0,
        from: event.from.map(|status| status_to_proto(status) as i32),
        to: status_to_proto(event.to) as i32,
        reason: event.reason.clone().unwrap_or_default(),
    }
}

/// One lock history entry on the wire.
pub fn lock_event_to_proto(event: &cuttle_core::audit::LockEvent) -> v1::LockEvent {
    v1::LockEvent {
        id: event.id,
        node: event.node.clone(),
        action: event.action.as_str().to_owned(),
        holder: event.holder.owner.clone(),
        job_id: event.holder.job_id.map(|id| id.0),
        by: event.by.clone(),
        at_ms: event.at.0,
    }
}

/// A token's record on the wire (never its secret).
pub fn token_to_proto(token: &cuttle_core::auth::TokenRecord) -> v1::Token {
    v1::Token {
        id: token.id,
        user: token.user.to_string(),
        role: token.role.as_str().to_owned(),
        prefix: token.prefix.clone(),
        created_at_ms: token.created_at.0,
        created_by: token.created_by.clone(),
        revoked_at_ms: token.revoked_at.map(|at| at.0),
    }
}

/// Builds `$to` from `$from` field by field: the wire's SuiteArgs and cuttle-core's
/// RawSuiteArgs have the same fields (the wire's `preset` is read by the handler first),
/// listed once here for both directions.
macro_rules! suite_args {
    ($from:expr => $to:path { $($extra:ident: $value:expr),* }) => {{
        let from = $from;
        $to {
            suite: from.suite,
            suite_dir: from.suite_dir,
            suite_repo: from.suite_repo,
            suite_branch: from.suite_branch,
            suite_sha1: from.suite_sha1,
            suite_relpath: from.suite_relpath,
            ceph_branch: from.ceph_branch,
            ceph_sha1: from.ceph_sha1,
            ceph_repo: from.ceph_repo,
            kernel: from.kernel,
            flavor: from.flavor,
            machine_type: from.machine_type,
            distro: from.distro,
            distro_version: from.distro_version,
            priority: from.priority,
            subset: from.subset,
            seed: from.seed,
            limit: from.limit,
            num: from.num,
            filter_in: from.filter_in,
            filter_out: from.filter_out,
            filter_all: from.filter_all,
            filter_fragments: from.filter_fragments,
            email: from.email,
            timeout: from.timeout,
            owner: from.owner,
            dry_run: from.dry_run,
            rerun: from.rerun,
            rerun_statuses: from.rerun_statuses,
            force_priority: from.force_priority,
            job_threshold: from.job_threshold,
            teuthology_branch: from.teuthology_branch,
            teuthology_sha1: from.teuthology_sha1,
            no_nested_subset: from.no_nested_subset,
            run_name: from.run_name,
            arch: from.arch,
            $($extra: $value,)*
        }
    }};
}

/// A ScheduleSuite request as cuttle-core's raw suite arguments (validated there).
pub fn suite_args_from_proto(args: v1::SuiteArgs) -> cuttle_core::suite::RawSuiteArgs {
    suite_args!(args => cuttle_core::suite::RawSuiteArgs {})
}

/// Raw suite arguments (a saved preset's) on the wire.
pub fn suite_args_to_proto(args: cuttle_core::suite::RawSuiteArgs) -> v1::SuiteArgs {
    suite_args!(args => v1::SuiteArgs { preset: String::new(), wait_for_build: false })
}

/// An AutoSuite on the wire, with its timeline when given.
pub fn autosuite_to_proto(
    autosuite: cuttle_core::autosuite::AutoSuite,
    timeline: Vec<cuttle_core::autosuite::AutoSuiteEvent>,
) -> v1::AutoSuite {
    v1::AutoSuite {
        id: autosuite.id,
        owner: autosuite.owner.to_string(),
        state: autosuite.state.to_string(),
        branch: autosuite.build.branch,
        sha1: autosuite.build.sha1,
        distro: autosuite.build.distro,
        distro_version: autosuite.build.distro_version,
        flavor: autosuite.build.flavor,
        args: Some(suite_args_to_proto(autosuite.args)),
        run: autosuite.run_name.unwrap_or_default(),
        reason: autosuite.reason.unwrap_or_default(),
        build_url: autosuite.build_url.unwrap_or_default(),
        created_at_ms: autosuite.created_at.0,
        updated_at_ms: autosuite.updated_at.0,
        timeline: timeline
            .into_iter()
            .map(|event| v1::AutoSuiteEvent {
                at_ms: event.at.0,
                from: event.from.map(|s| s.to_string()).unwrap_or_default(),
                to: event.to.to_string(),
                reason: event.reason.unwrap_or_default(),
            })
            .collect(),
    }
}

/// A preset on the wire.
pub fn preset_to_proto(preset: cuttle_core::suite::Preset) -> v1::Preset {
    v1::Preset {
        owner: preset.owner.to_string(),
        name: preset.name.to_string(),
        args: Some(suite_args_to_proto(preset.args)),
        created_at_ms: preset.created_at.0,
        updated_at_ms: preset.updated_at.0,
    }
}

/// The wire form of one expanded suite job.
pub fn suite_job_to_proto(
    index: u64,
    description: String,
    fragments: Vec<String>,
    config_json: String,
) -> v1::SuiteJob {
    v1::SuiteJob {
        description,
        fragments,
        config_json,
        index,
    }
}

/// A job from the wire, validated into the core type (its locked nodes are
/// `job.nodes`). The error names the field cuttle-api sent wrong, which only a
/// mismatched cuttle-api version would.
pub fn job_from_proto(job: &v1::Job) -> Result<Job, InvalidInput> {
    use cuttle_core::{MachineType, NodeCount, Owner, Priority, RunName, TimeLimit};
    let millis = |at: Option<i64>| at.map(UnixMillis);
    Ok(Job {
        id: JobId(job.id),
        run_name: RunName::parse(&job.run_name)?,
        owner: Owner::parse(&job.owner)?,
        spec: cuttle_core::JobSpec {
            description: job.description.clone(),
            machine_type: MachineType::parse(&job.machine_type)?,
            priority: Priority::new(job.priority.into())?,
            n_nodes: NodeCount::new(job.n_nodes.into())?,
            time_limit: job
                .time_limit_s
                .map(|seconds| TimeLimit::from_seconds(seconds.into()))
                .transpose()?,
            os_type: job.os_type.clone(),
            os_version: job.os_version.clone(),
        },
        status: status_from_proto(job.status).ok_or_else(|| {
            InvalidInput::new(
                "job status",
                format!("{} is not a status this version knows", job.status),
            )
        })?,
        reason: (!job.reason.is_empty()).then(|| job.reason.clone()),
        beanstalk_id: job.beanstalk_id,
        config_yaml: job.config_yaml.clone(),
        created_at: UnixMillis(job.created_at_ms),
        updated_at: UnixMillis(job.updated_at_ms),
        heartbeat_at: millis(job.heartbeat_at_ms),
        dispatcher: (!job.dispatcher.is_empty()).then(|| job.dispatcher.clone()),
        supervisor: (!job.supervisor_host.is_empty() || job.supervisor_pid != 0).then(|| {
            cuttle_core::dispatch::SupervisorRef {
                host: job.supervisor_host.clone(),
                pid: job.supervisor_pid,
            }
        }),
        started_at: millis(job.started_at_ms),
    })
}

/// A job from the wire with the nodes locked for it.
pub fn job_on_nodes_from_proto(job: &v1::Job) -> Result<JobOnNodes, InvalidInput> {
    Ok(JobOnNodes {
        job: job_from_proto(job)?,
        nodes: job.nodes.clone(),
    })
}

/// The scheduling policy on the wire, with the dispatchers' window size.
pub fn policy_to_proto(policy: &PolicyConfig, window: u32) -> v1::Policy {
    let aging = policy.aging;
    v1::Policy {
        aging: aging.is_some(),
        aging_interval_ms: aging.map_or(0, |a| a.interval_ms),
        aging_step: aging.map_or(0, |a| a.step),
        aging_floor: aging.map_or(0, |a| a.floor),
        backfill: policy.backfill,
        held_back_nodes: policy.held_back_nodes,
        window,
        fewer_nodes_first_below: Some(policy.fewer_nodes_first_below),
    }
}

/// The scheduling policy and window size from the wire. An absent
/// `fewer_nodes_first_below` is an older cuttle-api, which orders every suite fewer
/// nodes first: following it keeps its queue list true.
pub fn policy_from_proto(policy: &v1::Policy) -> (PolicyConfig, usize) {
    let config = PolicyConfig {
        aging: policy.aging.then_some(cuttle_policy::Aging {
            interval_ms: policy.aging_interval_ms.max(1),
            step: policy.aging_step,
            floor: policy.aging_floor,
        }),
        backfill: policy.backfill,
        held_back_nodes: policy.held_back_nodes,
        fewer_nodes_first_below: policy.fewer_nodes_first_below.unwrap_or(u32::MAX),
    };
    let window = usize::try_from(policy.window.max(1)).unwrap_or(cuttle_policy::DEFAULT_WINDOW);
    (config, window)
}

fn plan_job_to_proto(job: &PlanJob) -> v1::PlanJob {
    v1::PlanJob {
        job_id: job.job_id.0,
        priority: job.priority,
        n_nodes: job.n_nodes,
        submitted_at_ms: job.submitted_at.0,
        estimate_ms: job.estimate_ms,
        time_limit_ms: job.time_limit_ms,
        started_at_ms: job.started_at.map(|at| at.0),
        ended: job.ended,
    }
}

fn plan_job_from_proto(job: &v1::PlanJob) -> PlanJob {
    PlanJob {
        job_id: JobId(job.job_id),
        priority: job.priority,
        n_nodes: job.n_nodes,
        submitted_at: UnixMillis(job.submitted_at_ms),
        estimate_ms: job.estimate_ms,
        time_limit_ms: job.time_limit_ms,
        started_at: job.started_at_ms.map(UnixMillis),
        ended: job.ended,
    }
}

/// A planning round's state on the wire.
pub fn plan_state_to_proto(state: &PlanState) -> v1::PlanState {
    v1::PlanState {
        total_nodes: state.total_nodes,
        free_nodes: state.free_nodes,
        running: state.running.iter().map(plan_job_to_proto).collect(),
        jobs: state.jobs.iter().map(plan_job_to_proto).collect(),
    }
}

/// A planning round's state from the wire.
pub fn plan_state_from_proto(state: &v1::PlanState) -> PlanState {
    PlanState {
        total_nodes: state.total_nodes,
        free_nodes: state.free_nodes,
        running: state.running.iter().map(plan_job_from_proto).collect(),
        jobs: state.jobs.iter().map(plan_job_from_proto).collect(),
    }
}

/// A claim's answer from the wire. A START without a job, or with one this version
/// cannot read, is an error: the caller hands the copy back rather than guess.
pub fn claimed_from_proto(answer: &v1::ClaimJobResponse) -> Result<Claimed, InvalidInput> {
    let job_id = answer.job.as_ref().map(|job| JobId(job.id));
    match v1::ClaimAction::try_from(answer.action).unwrap_or(v1::ClaimAction::Unspecified) {
        v1::ClaimAction::Start => {
            let job = answer.job.as_ref().ok_or_else(|| {
                InvalidInput::new("claim", "cuttle-api said start but sent no job")
            })?;
            Ok(Claimed::Start(Box::new(job_from_proto(job)?)))
        }
        v1::ClaimAction::Discard => Ok(Claimed::Discard {
            job_id,
            reason: answer.reason.clone(),
        }),
        // An unknown action is never acted on as a start: the copy is kept out of the
        // way, where an operator sees it.
        v1::ClaimAction::Bury | v1::ClaimAction::Unspecified => Ok(Claimed::Bury {
            job_id,
            priority: answer.job.as_ref().map_or(0, |job| job.priority),
            reason: answer.reason.clone(),
        }),
    }
}

/// Ended jobs whose nodes need releasing, from the wire; entries this version cannot
/// read are left out with their errors.
pub fn releases_from_proto(
    releases: &[v1::PendingRelease],
) -> (Vec<JobOnNodes>, Vec<InvalidInput>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for release in releases {
        let Some(job) = &release.job else { continue };
        match job_from_proto(job) {
            Ok(job) => good.push(JobOnNodes {
                job,
                nodes: release.nodes.clone(),
            }),
            Err(error) => bad.push(error),
        }
    }
    (good, bad)
}

/// One job's refusal in a batch answer: the code and message the single call's status
/// would have had.
pub fn job_error_to_proto(status: &tonic::Status) -> v1::JobError {
    v1::JobError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

/// One job's refusal in a batch answer, back into the status the single call would have
/// returned, so a caller handles both the same way.
pub fn job_error_from_proto(error: &v1::JobError) -> tonic::Status {
    tonic::Status::new(tonic::Code::from_i32(error.code), error.message.clone())
}

/// One job's answer to LockNodesBatch on the wire: its nodes, or why it got none.
pub fn locked_job_to_proto(
    job_id: JobId,
    answer: Result<Vec<Node>, tonic::Status>,
) -> v1::LockedJob {
    match answer {
        Ok(nodes) => v1::LockedJob {
            job_id: job_id.0,
            nodes: nodes
                .into_iter()
                .map(|node| node.name.to_string())
                .collect(),
            error: None,
        },
        Err(status) => v1::LockedJob {
            job_id: job_id.0,
            nodes: Vec::new(),
            error: Some(job_error_to_proto(&status)),
        },
    }
}

/// One job's answer to RecordDispatches on the wire.
pub fn recorded_dispatch_to_proto(
    job_id: JobId,
    answer: Result<(), tonic::Status>,
) -> v1::RecordedDispatch {
    v1::RecordedDispatch {
        job_id: job_id.0,
        error: answer.err().as_ref().map(job_error_to_proto),
    }
}

/// The answers of a batch call for `job_ids`, in that order, matched by job id: the
/// answer for a job the batch left out is an error, never a success.
fn batch_answers<T, A>(
    job_ids: &[JobId],
    answers: &[A],
    job_of: impl Fn(&A) -> i64,
    read: impl Fn(&A) -> Result<T, tonic::Status>,
) -> Vec<Result<T, tonic::Status>> {
    let by_job: std::collections::HashMap<i64, &A> = answers
        .iter()
        .map(|answer| (job_of(answer), answer))
        .collect();
    job_ids
        .iter()
        .map(|job_id| match by_job.get(&job_id.0) {
            Some(answer) => read(answer),
            None => Err(tonic::Status::internal(format!(
                "cuttle-api did not answer for job {job_id}"
            ))),
        })
        .collect()
}

/// LockNodesBatch's answer for `job_ids`, in that order: the names of the nodes locked
/// for each job, or the status its single LockNodes would have failed with.
pub fn locked_jobs_from_proto(
    job_ids: &[JobId],
    answer: &v1::LockNodesBatchResponse,
) -> Vec<Result<Vec<String>, tonic::Status>> {
    batch_answers(
        job_ids,
        &answer.jobs,
        |locked| locked.job_id,
        |locked| match &locked.error {
            Some(error) => Err(job_error_from_proto(error)),
            None => Ok(locked.nodes.clone()),
        },
    )
}

/// RecordDispatches' answer for `job_ids`, in that order: recorded, or the status its
/// single RecordDispatch would have failed with.
pub fn recorded_dispatches_from_proto(
    job_ids: &[JobId],
    answer: &v1::RecordDispatchesResponse,
) -> Vec<Result<(), tonic::Status>> {
    batch_answers(
        job_ids,
        &answer.jobs,
        |recorded| recorded.job_id,
        |recorded| match &recorded.error {
            Some(error) => Err(job_error_from_proto(error)),
            None => Ok(()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_unspecified_is_refused() {
        for status in JobStatus::ALL {
            assert_eq!(
                status_from_proto(status_to_proto(status) as i32),
                Some(status)
            );
            assert_eq!(status_name(status_to_proto(status) as i32), status.as_str());
        }
        assert_eq!(status_from_proto(0), None);
        assert_eq!(status_from_proto(99), None);
        assert_eq!(status_name(99), "unknown(99)");
    }

    fn job() -> Job {
        use cuttle_core::{MachineType, NodeCount, Owner, Priority, RunName, TimeLimit};
        Job {
            id: JobId(42),
            run_name: RunName::parse("alice-2026-11-30_10:00:00-rados-main").unwrap(),
            owner: Owner::parse("alice").unwrap(),
            spec: cuttle_core::JobSpec {
                description: "rados/thrash/{a b}".into(),
                machine_type: MachineType::parse("smithi").unwrap(),
                priority: Priority::new(70).unwrap(),
                n_nodes: NodeCount::new(3).unwrap(),
                time_limit: Some(TimeLimit::from_seconds(7200).unwrap()),
                os_type: "ubuntu".into(),
                os_version: "22.04".into(),
            },
            status: JobStatus::Running,
            reason: Some("a note".into()),
            beanstalk_id: Some(7),
            config_yaml: "roles: [[mon.a]]\n".into(),
            created_at: UnixMillis(1),
            updated_at: UnixMillis(2),
            heartbeat_at: Some(UnixMillis(3)),
            dispatcher: Some("host:1:abc".into()),
            supervisor: Some(cuttle_core::dispatch::SupervisorRef {
                host: "host".into(),
                pid: 99,
            }),
            started_at: Some(UnixMillis(4)),
        }
    }

    #[test]
    fn a_job_comes_back_from_the_wire_as_it_went() {
        let nodes = vec!["smithi001".to_owned(), "smithi002".to_owned()];
        let wire = job_to_proto(&job(), nodes.clone());
        assert_eq!(job_from_proto(&wire).unwrap(), job());
        let on_nodes = job_on_nodes_from_proto(&wire).unwrap();
        assert_eq!((on_nodes.job, on_nodes.nodes), (job(), nodes));
        // What the wire leaves empty is absent, not empty.
        let bare = Job {
            reason: None,
            dispatcher: None,
            supervisor: None,
            ..job()
        };
        assert_eq!(job_from_proto(&job_to_proto(&bare, vec![])).unwrap(), bare);
    }

    #[test]
    fn a_job_this_version_cannot_read_is_refused_with_the_field() {
        let mut wire = job_to_proto(&job(), vec![]);
        wire.status = 99;
        assert!(
            job_from_proto(&wire)
                .unwrap_err()
                .to_string()
                .contains("status")
        );
        let mut wire = job_to_proto(&job(), vec![]);
        wire.run_name = "../etc".into();
        assert!(job_from_proto(&wire).is_err());
    }

    #[test]
    fn the_policy_and_the_plan_state_round_trip() {
        let policy = PolicyConfig::default();
        assert_eq!(
            policy_from_proto(&policy_to_proto(&policy, 64)),
            (policy, 64)
        );
        let plan_job = PlanJob {
            job_id: JobId(5),
            priority: 100,
            n_nodes: 2,
            submitted_at: UnixMillis(10),
            estimate_ms: 60_000,
            time_limit_ms: 120_000,
            started_at: Some(UnixMillis(20)),
            ended: true,
        };
        let state = PlanState {
            total_nodes: 9,
            free_nodes: 3,
            running: vec![plan_job.clone()],
            jobs: vec![PlanJob {
                started_at: None,
                ended: false,
                ..plan_job
            }],
        };
        assert_eq!(plan_state_from_proto(&plan_state_to_proto(&state)), state);
        // An older cuttle-api sends no suite rule: every suite fewer nodes first.
        let older = v1::Policy {
            fewer_nodes_first_below: None,
            ..policy_to_proto(&policy, 64)
        };
        assert_eq!(
            policy_from_proto(&older).0.fewer_nodes_first_below,
            u32::MAX
        );
    }

    #[test]
    fn a_batch_answer_keeps_each_jobs_error_and_never_invents_a_success() {
        let answer = v1::LockNodesBatchResponse {
            jobs: vec![
                locked_job_to_proto(
                    JobId(2),
                    Err(tonic::Status::failed_precondition("job 2 was killed")),
                ),
                v1::LockedJob {
                    job_id: 1,
                    nodes: vec!["smithi001".into()],
                    error: None,
                },
            ],
        };
        let read = locked_jobs_from_proto(&[JobId(1), JobId(2), JobId(3)], &answer);
        assert_eq!(read[0].as_ref().unwrap(), &vec!["smithi001".to_owned()]);
        let refused = read[1].as_ref().unwrap_err();
        assert_eq!(
            (refused.code(), refused.message()),
            (tonic::Code::FailedPrecondition, "job 2 was killed")
        );
        assert_eq!(read[2].as_ref().unwrap_err().code(), tonic::Code::Internal);
        let recorded = v1::RecordDispatchesResponse {
            jobs: vec![recorded_dispatch_to_proto(JobId(1), Ok(()))],
        };
        let read = recorded_dispatches_from_proto(&[JobId(1), JobId(4)], &recorded);
        assert!(read[0].is_ok());
        assert!(read[1].is_err(), "a dispatch left out is not recorded");
    }
}
