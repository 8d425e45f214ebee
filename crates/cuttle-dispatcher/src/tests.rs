//! The dispatcher's decisions, in process: the real loop ([`Dispatcher`]) against an
//! in-memory lab that answers as cuttle-api and beanstalkd do, a launcher that starts no
//! process, and tokio's paused clock (every sleep returns at once, in order). The lab
//! tests drive the same loop through the real binaries; these pin each rule down so a
//! broken one fails here, with its name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cuttle_core::dispatch::{Claimed, JobOnNodes, PlanJob, PlanState};
use cuttle_core::{
    Job, JobId, JobSpec, JobStatus, MachineType, NodeCount, Owner, Priority, RunName, UnixMillis,
};
use cuttle_policy::PolicyConfig;
use cuttle_queue::{QueueError, Reserved};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiError, LeaseAnswer};
use crate::dispatcher::{Clock, Config, Dispatcher};
use crate::launch::{Launcher, Supervisor};
use crate::metrics::Metrics;
use crate::queue::{CopyStats, Queue};

/// The wall clock at the start of every test, and how long every job's limit is.
const EPOCH_MS: i64 = 1_800_000_000_000;
const LIMIT_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyState {
    Ready,
    Reserved,
    Buried,
}

#[derive(Debug, Clone)]
struct Copy {
    body: Vec<u8>,
    priority: u32,
    /// beanstalkd's time-to-run of the copy.
    time_to_run: Duration,
    state: CopyState,
    /// When a released copy becomes ready again.
    ready_at: Instant,
}

/// One job as cuttle-api holds it.
#[derive(Debug, Clone)]
struct LabJob {
    job: Job,
    estimate_ms: i64,
    /// The beanstalkd copy cuttle-api last put (older copies are stale).
    copy: u64,
}

/// cuttle-api and beanstalkd in memory, shared by the fake parts and the test.
#[derive(Debug)]
struct State {
    total_nodes: u32,
    free_nodes: u32,
    jobs: BTreeMap<i64, LabJob>,
    copies: BTreeMap<u64, Copy>,
    next_copy: u64,
    policy: PolicyConfig,
    window: usize,
    granted: bool,
    paused: bool,
    api_down: bool,
    /// The whole record call fails.
    fail_record: bool,
    /// These jobs' records are refused, the others' recorded.
    refuse_record: HashSet<i64>,
    /// Nodes someone else locks just before the next lock call.
    taken_before_lock: u32,
    fail_spawn: bool,
    refuse_lock: HashSet<i64>,
    /// A copy whose id beanstalkd (restarted) now gives to another body.
    reused_ids: HashSet<u64>,
    next_pid: u32,
    touches: HashMap<u64, u32>,
    /// The time-to-run beanstalkd gives the copies put from now on (cuttle-api's
    /// shortest `job_ttr` unless a test says otherwise).
    time_to_run: Duration,
    /// Reserves so far: a broken rule that spins (reserve, hand back, reserve) fails the
    /// test here instead of hanging it, since a busy loop never lets the paused clock move.
    reserves: u32,
    released_with_delay: Vec<(u64, Duration)>,
    /// Every call that changes something, in order: "record 3", "delete 7", ...
    log: Vec<String>,
}

#[derive(Debug, Clone)]
struct Lab(Arc<Mutex<State>>);

impl Lab {
    fn new(nodes: u32) -> Lab {
        Lab(Arc::new(Mutex::new(State {
            total_nodes: nodes,
            free_nodes: nodes,
            jobs: BTreeMap::new(),
            copies: BTreeMap::new(),
            next_copy: 1,
            policy: PolicyConfig {
                aging: None,
                ..PolicyConfig::default()
            },
            window: 16,
            granted: true,
            paused: false,
            api_down: false,
            fail_record: false,
            refuse_record: HashSet::new(),
            taken_before_lock: 0,
            fail_spawn: false,
            refuse_lock: HashSet::new(),
            reused_ids: HashSet::new(),
            next_pid: 100,
            touches: HashMap::new(),
            time_to_run: Duration::from_secs(10),
            reserves: 0,
            released_with_delay: Vec::new(),
            log: Vec::new(),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    /// Schedules job `id` (`n` nodes, `priority`, estimate) and puts its copy.
    fn schedule(&self, id: i64, priority: u32, n: u32, estimate_ms: i64) -> u64 {
        let mut state = self.state();
        let job = Job {
            id: JobId(id),
            run_name: RunName::parse("unit-run").unwrap(),
            owner: Owner::parse("tester").unwrap(),
            spec: JobSpec {
                description: format!("job {id}"),
                machine_type: MachineType::parse("smithi").unwrap(),
                priority: Priority::new(priority.into()).unwrap(),
                n_nodes: NodeCount::new(n.into()).unwrap(),
                time_limit: None,
                os_type: String::new(),
                os_version: String::new(),
            },
            status: JobStatus::Queued,
            reason: None,
            beanstalk_id: None,
            config_yaml: String::new(),
            created_at: UnixMillis(EPOCH_MS + id),
            updated_at: UnixMillis(EPOCH_MS),
            heartbeat_at: None,
            dispatcher: None,
            supervisor: None,
            started_at: None,
        };
        let copy = state.put(id, priority);
        state.jobs.insert(
            id,
            LabJob {
                job,
                estimate_ms,
                copy,
            },
        );
        copy
    }

    fn status(&self, id: i64) -> JobStatus {
        self.state().jobs[&id].job.status
    }

    fn copy_state(&self, copy: u64) -> Option<CopyState> {
        self.state().copies.get(&copy).map(|c| c.state)
    }

    fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    fn logged(&self, entry: &str) -> bool {
        self.state().log.iter().any(|line| line == entry)
    }
}

impl State {
    fn put(&mut self, job: i64, priority: u32) -> u64 {
        let id = self.next_copy;
        self.next_copy += 1;
        self.copies.insert(
            id,
            Copy {
                body: format!("job {job}").into_bytes(),
                priority,
                time_to_run: self.time_to_run,
                state: CopyState::Ready,
                ready_at: Instant::now(),
            },
        );
        id
    }

    fn down(&self) -> Result<(), ApiError> {
        if self.api_down {
            Err(ApiError::Failed("cuttle-api is down".into()))
        } else {
            Ok(())
        }
    }

    fn plan_job(&self, job: &LabJob) -> PlanJob {
        PlanJob {
            job_id: job.job.id,
            priority: job.job.spec.priority.get(),
            n_nodes: job.job.spec.n_nodes.get(),
            submitted_at: job.job.created_at,
            estimate_ms: job.estimate_ms,
            time_limit_ms: job.estimate_ms.max(LIMIT_MS),
            started_at: job.job.started_at,
            ended: false,
        }
    }
}

#[derive(Debug)]
struct FakeApi(Lab);

impl Api for FakeApi {
    async fn acquire_lease(&mut self, _ttl: Duration) -> Result<LeaseAnswer, ApiError> {
        let state = self.0.state();
        state.down()?;
        Ok(LeaseAnswer {
            granted: state.granted,
            paused: state.paused,
            policy: Some((state.policy, state.window)),
        })
    }

    async fn release_lease(&mut self) -> Result<(), ApiError> {
        self.0.state().down()
    }

    async fn claim(&mut self, beanstalk_id: u64, body: &[u8]) -> Result<Claimed, ApiError> {
        let mut state = self.0.state();
        state.down()?;
        if !state.granted {
            return Err(ApiError::Refused("the lease is not yours".into()));
        }
        let id: Option<i64> = std::str::from_utf8(body)
            .ok()
            .and_then(|text| text.strip_prefix("job "))
            .and_then(|n| n.parse().ok());
        let Some(lab_job) = id.and_then(|id| state.jobs.get_mut(&id)) else {
            return Ok(Claimed::Bury {
                job_id: None,
                priority: 0,
                reason: "body names no job cuttle-api knows".into(),
            });
        };
        let job_id = Some(lab_job.job.id);
        if lab_job.job.status.is_terminal() || lab_job.job.status == JobStatus::Running {
            return Ok(Claimed::Discard {
                job_id,
                reason: "ended or running".into(),
            });
        }
        if lab_job.copy != beanstalk_id {
            return Ok(Claimed::Discard {
                job_id,
                reason: "a stale copy".into(),
            });
        }
        lab_job.job.status = JobStatus::Waiting;
        Ok(Claimed::Start(Box::new(lab_job.job.clone())))
    }

    async fn plan_state(&mut self, jobs: &[JobId], _default: i64) -> Result<PlanState, ApiError> {
        let state = self.0.state();
        state.down()?;
        Ok(PlanState {
            total_nodes: state.total_nodes,
            free_nodes: state.free_nodes,
            running: state
                .jobs
                .values()
                .filter(|job| job.job.status == JobStatus::Running)
                .map(|job| state.plan_job(job))
                .collect(),
            jobs: jobs
                .iter()
                .filter_map(|id| state.jobs.get(&id.0))
                .filter(|job| job.job.status == JobStatus::Waiting)
                .map(|job| state.plan_job(job))
                .collect(),
        })
    }

    async fn lock_nodes_batch(
        &mut self,
        jobs: &[&Job],
    ) -> Result<Vec<Result<Vec<String>, ApiError>>, ApiError> {
        let mut state = self.0.state();
        state.down()?;
        let ids: Vec<i64> = jobs.iter().map(|job| job.id.0).collect();
        state.log.push(format!("lock call {ids:?}"));
        // Someone else takes nodes between the plan and the lock.
        state.free_nodes = state.free_nodes.saturating_sub(state.taken_before_lock);
        state.taken_before_lock = 0;
        Ok(jobs
            .iter()
            .map(|job| {
                if state.refuse_lock.contains(&job.id.0) {
                    return Err(ApiError::Refused(format!("job {} was killed", job.id)));
                }
                let n = job.spec.n_nodes.get();
                if state.free_nodes < n {
                    return Err(ApiError::Failed("not enough free nodes".into()));
                }
                state.free_nodes -= n;
                state.log.push(format!("lock {}", job.id));
                Ok((0..n).map(|i| format!("node{i}")).collect())
            })
            .collect())
    }

    async fn record_dispatches(
        &mut self,
        started: &[(JobId, u32)],
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        let mut state = self.0.state();
        state.down()?;
        if state.fail_record {
            return Err(ApiError::Failed("the database is locked".into()));
        }
        let ids: Vec<i64> = started.iter().map(|(job, _)| job.0).collect();
        state.log.push(format!("record call {ids:?}"));
        Ok(started
            .iter()
            .map(|(job, pid)| {
                if state.refuse_record.contains(&job.0) {
                    return Err(ApiError::Refused(format!("job {job} is not claimed")));
                }
                let entry = state.jobs.get_mut(&job.0).unwrap();
                entry.job.status = JobStatus::Running;
                entry.job.started_at = Some(UnixMillis(EPOCH_MS));
                state.log.push(format!("record {job} pid {pid}"));
                Ok(())
            })
            .collect())
    }

    async fn requeue(&mut self, job: JobId, _reason: &str) -> Result<(), ApiError> {
        let mut state = self.0.state();
        state.down()?;
        let entry = state.jobs.get_mut(&job.0).unwrap();
        if entry.job.status == JobStatus::Waiting {
            entry.job.status = JobStatus::Queued;
        }
        state.log.push(format!("requeue {job}"));
        Ok(())
    }

    async fn mark_dead(&mut self, job: JobId, _reason: &str) -> Result<(), ApiError> {
        let mut state = self.0.state();
        state.down()?;
        state.jobs.get_mut(&job.0).unwrap().job.status = JobStatus::Dead;
        state.log.push(format!("dead {job}"));
        Ok(())
    }

    async fn claim_releases(&mut self, _limit: u32) -> Result<Vec<JobOnNodes>, ApiError> {
        self.0.state().down()?;
        Ok(Vec::new())
    }

    // Not an `async fn`: the future must not borrow `self` (it outlives the call).
    #[allow(clippy::manual_async_fn)]
    fn watch(
        &self,
        _wake: Arc<tokio::sync::Notify>,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // No events: every round waits out the idle replan, which the paused clock
        // skips, so these tests see the timer's behaviour (the lab tests see events).
        async move { stop.cancelled().await }
    }
}

#[derive(Debug)]
struct FakeQueue(Lab);

impl FakeQueue {
    fn reserved(&self, id: u64) -> Result<(), QueueError> {
        match self.0.state().copies.get(&id) {
            Some(copy) if copy.state == CopyState::Reserved => Ok(()),
            _ => Err(QueueError::Refused {
                addr: "fake".into(),
                command: "release",
                detail: "NOT_FOUND".into(),
            }),
        }
    }
}

impl Queue for FakeQueue {
    async fn reserve(&self, _tube: &str, wait: Duration) -> Result<Option<Reserved>, QueueError> {
        let found = {
            let mut state = self.0.state();
            state.reserves += 1;
            assert!(
                state.reserves < 10_000,
                "the dispatcher spins: {} reserves; last calls {:#?}",
                state.reserves,
                &state.log[state.log.len().saturating_sub(6)..]
            );
            let now = Instant::now();
            let next = state
                .copies
                .iter()
                .filter(|(_, copy)| copy.state == CopyState::Ready && copy.ready_at <= now)
                .min_by_key(|(id, copy)| (copy.priority, **id))
                .map(|(id, _)| *id);
            next.map(|id| {
                let copy = state.copies.get_mut(&id).unwrap();
                copy.state = CopyState::Reserved;
                Reserved {
                    id,
                    body: copy.body.clone(),
                }
            })
        };
        if found.is_none() && !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(found)
    }

    async fn ready_priority(&self, _tube: &str) -> Result<Option<u32>, QueueError> {
        let now = Instant::now();
        Ok(self
            .0
            .state()
            .copies
            .values()
            .filter(|copy| copy.state == CopyState::Ready && copy.ready_at <= now)
            .map(|copy| copy.priority)
            .min())
    }

    async fn copy_stats(&self, id: u64) -> Result<Option<CopyStats>, QueueError> {
        Ok(self.0.state().copies.get(&id).map(|copy| CopyStats {
            priority: copy.priority,
            time_to_run: Some(copy.time_to_run),
        }))
    }

    async fn peek(&self, id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        let state = self.0.state();
        if state.reused_ids.contains(&id) {
            return Ok(Some(b"someone else's job".to_vec()));
        }
        Ok(state.copies.get(&id).map(|copy| copy.body.clone()))
    }

    async fn touch(&self, id: u64) -> Result<(), QueueError> {
        self.reserved(id)?;
        *self.0.state().touches.entry(id).or_default() += 1;
        Ok(())
    }

    async fn release(&self, id: u64, priority: u32, delay: Duration) -> Result<(), QueueError> {
        self.reserved(id)?;
        let mut state = self.0.state();
        let copy = state.copies.get_mut(&id).unwrap();
        copy.state = CopyState::Ready;
        copy.priority = priority;
        copy.ready_at = Instant::now() + delay;
        state.log.push(format!("release copy {id}"));
        if !delay.is_zero() {
            state.released_with_delay.push((id, delay));
        }
        Ok(())
    }

    async fn bury(&self, id: u64, priority: u32) -> Result<(), QueueError> {
        self.reserved(id)?;
        let mut state = self.0.state();
        let copy = state.copies.get_mut(&id).unwrap();
        copy.state = CopyState::Buried;
        copy.priority = priority;
        state.log.push(format!("bury copy {id}"));
        Ok(())
    }

    async fn delete(&self, id: u64) -> Result<(), QueueError> {
        let mut state = self.0.state();
        state.copies.remove(&id);
        state.log.push(format!("delete copy {id}"));
        Ok(())
    }

    async fn is_empty(&self, _tube: &str) -> Option<bool> {
        Some(
            !self
                .0
                .state()
                .copies
                .values()
                .any(|copy| copy.state == CopyState::Ready),
        )
    }
}

#[derive(Debug)]
struct FakeLauncher(Lab);

#[derive(Debug)]
struct FakeSupervisor {
    lab: Lab,
    job: JobId,
    pid: u32,
}

impl Supervisor for FakeSupervisor {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn go(&mut self) {
        self.lab.state().log.push(format!("go {}", self.job));
    }

    fn detach(self, on_exit: Box<dyn FnOnce() + Send>) {
        self.lab.state().log.push(format!("detach {}", self.job));
        on_exit();
    }
}

impl Launcher for FakeLauncher {
    type Child = FakeSupervisor;

    fn spawn(&self, job: &Job, release: bool) -> anyhow::Result<FakeSupervisor> {
        let mut state = self.0.state();
        anyhow::ensure!(!state.fail_spawn, "cannot start cuttle-supervisor");
        state.next_pid += 1;
        let pid = state.next_pid;
        let kind = if release { "release" } else { "spawn" };
        state.log.push(format!("{kind} {}", job.id));
        Ok(FakeSupervisor {
            lab: self.0.clone(),
            job: job.id,
            pid,
        })
    }
}

/// The wall clock, moving with tokio's (paused) clock.
#[derive(Debug)]
struct TestClock(Instant);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        EPOCH_MS + i64::try_from(self.0.elapsed().as_millis()).unwrap()
    }
}

type TestDispatcher = Dispatcher<FakeApi, FakeQueue, FakeLauncher, TestClock>;

fn dispatcher(lab: &Lab) -> TestDispatcher {
    Dispatcher::new(
        Config {
            tube: MachineType::parse("smithi").unwrap(),
            holder: "unit:1:0".into(),
            lease_ttl: Duration::from_secs(30),
            release_interval: Duration::from_secs(10),
            default_time_limit_ms: LIMIT_MS,
            exit_on_empty_queue: false,
            crash_at: None,
        },
        FakeApi(lab.clone()),
        FakeQueue(lab.clone()),
        FakeLauncher(lab.clone()),
        TestClock(Instant::now()),
        Metrics::new("smithi"),
    )
}

/// Runs the dispatcher for `time` of paused-clock time, then shuts it down (which hands
/// its window back).
async fn run_for(dispatcher: &mut TestDispatcher, time: Duration) {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(time).await;
        stop.cancel();
    });
    dispatcher.run(&shutdown).await;
    timer.await.unwrap();
}

/// Where `entry` is in the log; panics with the log if absent.
fn position(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|line| line == entry)
        .unwrap_or_else(|| panic!("{entry:?} not in {log:#?}"))
}

#[tokio::test(start_paused = true)]
async fn the_most_urgent_job_gets_the_free_node() {
    let lab = Lab::new(1);
    lab.schedule(1, 100, 1, 60_000);
    let urgent = lab.schedule(2, 50, 1, 60_000);
    let late = lab.schedule(3, 200, 1, 60_000);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(5)).await;
    assert_eq!(lab.status(2), JobStatus::Running);
    assert_eq!(lab.copy_state(urgent), None, "its copy is deleted");
    // The others waited in the window and went back when the dispatcher stopped.
    assert_eq!(lab.status(1), JobStatus::Queued);
    assert_eq!(lab.status(3), JobStatus::Queued);
    assert_eq!(lab.copy_state(late), Some(CopyState::Ready));
    assert_eq!(d.dispatched(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_copy_is_deleted_only_after_its_dispatch_is_recorded() {
    let lab = Lab::new(1);
    let copy = lab.schedule(1, 100, 1, 60_000);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(3)).await;
    let log = lab.log();
    let lock = position(&log, "lock 1");
    let spawn = position(&log, "spawn 1");
    let record = position(&log, "record 1 pid 101");
    let go = position(&log, "go 1");
    let delete = position(&log, &format!("delete copy {copy}"));
    assert!(
        lock < spawn && spawn < record && record < go && go < delete,
        "{log:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unrecorded_dispatch_keeps_its_copy_and_never_says_go() {
    let lab = Lab::new(1);
    let copy = lab.schedule(1, 100, 1, 60_000);
    lab.state().fail_record = true;
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(3)).await;
    assert!(!lab.logged("go 1"), "{:#?}", lab.log());
    assert!(lab.logged("detach 1"));
    assert!(lab.logged("requeue 1"));
    assert!(!lab.logged(&format!("delete copy {copy}")));
    assert_eq!(lab.copy_state(copy), Some(CopyState::Ready));
    assert_eq!(d.dispatched(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_that_cannot_start_sends_its_job_back_for_later() {
    let lab = Lab::new(1);
    let copy = lab.schedule(1, 100, 1, 60_000);
    lab.state().fail_spawn = true;
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(3)).await;
    assert_eq!(lab.status(1), JobStatus::Queued);
    assert_eq!(
        lab.state().released_with_delay,
        vec![(copy, Duration::from_secs(30))],
        "a broken install must not spin through the queue"
    );
    assert!(!lab.logged(&format!("delete copy {copy}")));
}

#[tokio::test(start_paused = true)]
async fn a_full_window_makes_room_for_a_more_urgent_job() {
    let lab = Lab::new(1);
    // The one node is busy: nothing starts, the window fills.
    lab.state().free_nodes = 0;
    lab.state().window = 2;
    lab.schedule(1, 500, 1, 60_000);
    lab.schedule(2, 600, 1, 60_000);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(2)).await;
    assert_eq!(lab.status(1), JobStatus::Queued, "handed back at shutdown");
    // Now an urgent job arrives while the window is full.
    lab.schedule(3, 10, 1, 60_000);
    lab.state().log.clear();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let lab_watch = lab.clone();
    let watcher = tokio::spawn(async move {
        // Stop once the urgent job joined the window.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if lab_watch.status(3) == JobStatus::Waiting {
                break;
            }
        }
        let waiting: Vec<i64> = lab_watch
            .state()
            .jobs
            .values()
            .filter(|job| job.job.status == JobStatus::Waiting)
            .map(|job| job.job.id.0)
            .collect();
        stop.cancel();
        waiting
    });
    d.run(&shutdown).await;
    let waiting = watcher.await.unwrap();
    assert_eq!(waiting, vec![1, 3], "the least urgent (2) made room");
}

#[tokio::test(start_paused = true)]
async fn a_job_killed_while_waiting_leaves_the_window() {
    let lab = Lab::new(1);
    lab.state().free_nodes = 0;
    let copy = lab.schedule(1, 100, 1, 60_000);
    let lab_kill = lab.clone();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lab_kill.state().jobs.get_mut(&1).unwrap().job.status = JobStatus::Killed;
    });
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(6)).await;
    killer.await.unwrap();
    let log = lab.log();
    // It went back to beanstalkd (where the next claim discards it), not to the queue.
    assert!(lab.logged(&format!("release copy {copy}")), "{log:#?}");
    assert!(!lab.logged("requeue 1"), "{log:#?}");
    assert!(lab.copy_state(copy).is_none(), "re-reserved and discarded");
}

#[tokio::test(start_paused = true)]
async fn a_job_larger_than_the_lab_ends_dead_and_its_copy_is_buried() {
    let lab = Lab::new(3);
    let copy = lab.schedule(1, 100, 5, 60_000);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(3)).await;
    assert_eq!(lab.status(1), JobStatus::Dead);
    assert_eq!(lab.copy_state(copy), Some(CopyState::Buried));
    assert!(!lab.logged("spawn 1"));
}

#[tokio::test(start_paused = true)]
async fn dispatching_stops_once_the_lease_cannot_be_renewed_in_time() {
    let lab = Lab::new(1);
    lab.state().free_nodes = 0;
    let copy = lab.schedule(1, 100, 1, 60_000);
    let lab_down = lab.clone();
    let began = Instant::now();
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lab_down.state().api_down = true;
    });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let lab_watch = lab.clone();
    let watcher = tokio::spawn(async move {
        // Until the dispatcher hands its window back.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if lab_watch.copy_state(copy) == Some(CopyState::Ready) {
                stop.cancel();
                return began.elapsed();
            }
        }
    });
    let mut d = dispatcher(&lab);
    d.run(&shutdown).await;
    outage.await.unwrap();
    let held_for = watcher.await.unwrap();
    // Confirmed at 0 s; renewals fail from 10 s on; given up at 27 s (90 % of 30 s).
    assert!(
        held_for >= Duration::from_secs(27) && held_for < Duration::from_secs(29),
        "{held_for:?}"
    );
    // The window went back to beanstalkd even though cuttle-api could not be told.
    assert_eq!(lab.copy_state(copy), Some(CopyState::Ready));
}

#[tokio::test(start_paused = true)]
async fn a_paused_queue_starts_nothing_and_holds_nothing() {
    let lab = Lab::new(2);
    let copy = lab.schedule(1, 100, 1, 60_000);
    lab.state().paused = true;
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(5)).await;
    assert_eq!(lab.status(1), JobStatus::Queued);
    assert_eq!(lab.copy_state(copy), Some(CopyState::Ready));
    assert!(!lab.logged("lock 1"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_lock_gives_the_job_back() {
    let lab = Lab::new(2);
    let copy = lab.schedule(1, 100, 1, 60_000);
    lab.state().refuse_lock.insert(1);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_millis(1500)).await;
    assert!(lab.logged("requeue 1"), "{:#?}", lab.log());
    assert!(lab.logged(&format!("release copy {copy}")));
    assert!(!lab.logged("spawn 1"));
}

#[tokio::test(start_paused = true)]
async fn waiting_reservations_are_kept_alive() {
    let lab = Lab::new(1);
    lab.state().free_nodes = 0;
    let copy = lab.schedule(1, 100, 1, 60_000);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(20)).await;
    let touches = lab.state().touches.get(&copy).copied().unwrap_or(0);
    // A third of its time-to-run (10 s) apart: 6 over 20 s.
    assert!((5..=7).contains(&touches), "{touches} touches");
}

#[tokio::test(start_paused = true)]
async fn a_long_time_to_run_is_touched_rarely() {
    let lab = Lab::new(1);
    lab.state().free_nodes = 0;
    lab.state().time_to_run = Duration::from_secs(300);
    let copy = lab.schedule(1, 100, 1, 60_000);
    let touches = move |lab: &Lab| lab.state().touches.get(&copy).copied().unwrap_or(0);
    let at_90_s = tokio::spawn({
        let lab = lab.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(90)).await;
            touches(&lab)
        }
    });
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(320)).await;
    // Every 100 s, not every 3 s (30 by 90 s).
    assert_eq!(at_90_s.await.unwrap(), 0);
    assert_eq!(touches(&lab), 3, "at 100, 200 and 300 s");
}

#[tokio::test(start_paused = true)]
async fn backfill_never_delays_the_head_job() {
    let lab = Lab::new(4);
    // Two nodes busy for an hour.
    lab.schedule(1, 100, 2, LIMIT_MS);
    {
        let mut state = lab.state();
        state.free_nodes = 2;
        let running = state.jobs.get_mut(&1).unwrap();
        running.job.status = JobStatus::Running;
        running.job.started_at = Some(UnixMillis(EPOCH_MS));
        state.copies.clear();
    }
    // The head needs all four: it waits for the running job. A 2-node job that would
    // still run when the head's nodes free must not start; a short one may.
    lab.schedule(2, 10, 4, 60_000);
    lab.schedule(3, 20, 2, 2 * LIMIT_MS);
    lab.schedule(4, 30, 2, 60_000);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(3)).await;
    assert!(!lab.logged("spawn 2"), "{:#?}", lab.log());
    assert!(
        !lab.logged("spawn 3"),
        "a long backfill would delay the head"
    );
    assert!(
        lab.logged("spawn 4"),
        "a short backfill fits before the head"
    );
}

#[tokio::test(start_paused = true)]
async fn discards_stale_copies_and_buries_bodies_nobody_knows() {
    let lab = Lab::new(1);
    let ended = lab.schedule(1, 100, 1, 60_000);
    lab.state().jobs.get_mut(&1).unwrap().job.status = JobStatus::Pass;
    let unknown = lab.state().put(99, 100);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(2)).await;
    assert_eq!(lab.copy_state(ended), None);
    assert!(lab.logged(&format!("delete copy {ended}")));
    assert_eq!(lab.copy_state(unknown), Some(CopyState::Buried));
}

#[tokio::test(start_paused = true)]
async fn a_copy_whose_id_beanstalkd_gave_to_another_job_is_left_alone() {
    let lab = Lab::new(1);
    let copy = lab.schedule(1, 100, 1, 60_000);
    lab.state().reused_ids.insert(copy);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(2)).await;
    assert_eq!(lab.status(1), JobStatus::Running);
    assert!(
        !lab.logged(&format!("delete copy {copy}")),
        "{:#?}",
        lab.log()
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_copy_of_a_held_job_replaces_the_first() {
    let lab = Lab::new(1);
    lab.state().free_nodes = 0;
    let first = lab.schedule(1, 100, 1, 60_000);
    let lab_put = lab.clone();
    let put_again = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // cuttle-api put the job again (beanstalkd lost the first copy, it thought).
        let mut state = lab_put.state();
        let second = state.put(1, 100);
        state.jobs.get_mut(&1).unwrap().copy = second;
        second
    });
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(4)).await;
    let second = put_again.await.unwrap();
    let log = lab.log();
    // The first went back and, claimed again, was discarded as stale.
    assert!(lab.logged(&format!("release copy {first}")), "{log:#?}");
    assert_eq!(lab.copy_state(first), None, "{log:#?}");
    assert_eq!(lab.copy_state(second), Some(CopyState::Ready));
}

/// beanstalkd restarted from its binlog: the window's reservations are ready again under
/// the same ids, and the dispatcher reserves one of them a second time. That is the copy the
/// window holds, not a second one: handing "the older" back released the reservation just
/// made, it was reserved again at once, and the fill spun (the fault suite; before the lease
/// was renewed during fills, its lapsing broke the spin).
#[tokio::test(start_paused = true)]
async fn a_held_copy_reserved_again_after_a_beanstalkd_restart_stays_held() {
    let lab = Lab::new(1);
    lab.state().free_nodes = 0;
    let copy = lab.schedule(1, 100, 1, 60_000);
    let lab_restart = lab.clone();
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lab_restart.state().copies.get_mut(&copy).unwrap().state = CopyState::Ready;
    });
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(4)).await;
    restart.await.unwrap();
    // Reserved again once, kept, not released and reserved over and over (the fake queue
    // panics at 10,000 reserves).
    let reserves = lab.state().reserves;
    assert!(reserves < 50, "{reserves} reserves: {:#?}", lab.log());
    lab.state().free_nodes = 1;
    run_for(&mut d, Duration::from_secs(2)).await;
    assert_eq!(lab.status(1), JobStatus::Running, "{:#?}", lab.log());
}

/// The per-job order every start keeps, batched or not: lock, spawn, record, go, delete.
fn assert_started_in_order(log: &[String], job: i64, copy: u64) {
    let lock = position(log, &format!("lock {job}"));
    let spawn = position(log, &format!("spawn {job}"));
    let record = log
        .iter()
        .position(|line| line.starts_with(&format!("record {job} pid ")))
        .unwrap_or_else(|| panic!("job {job} not recorded: {log:#?}"));
    let go = position(log, &format!("go {job}"));
    let delete = position(log, &format!("delete copy {copy}"));
    assert!(
        lock < spawn && spawn < record && record < go && go < delete,
        "job {job}: {log:#?}"
    );
}

/// How many calls of `kind` ("lock call", "record call") the log shows.
fn calls(log: &[String], kind: &str) -> Vec<String> {
    log.iter()
        .filter(|line| line.starts_with(kind))
        .cloned()
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_round_that_starts_several_jobs_locks_and_records_them_in_one_call_each() {
    let lab = Lab::new(3);
    let copies: Vec<u64> = (1..=3).map(|id| lab.schedule(id, 100, 1, 60_000)).collect();
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_secs(3)).await;
    let log = lab.log();
    assert_eq!(
        calls(&log, "lock call"),
        ["lock call [1, 2, 3]"],
        "{log:#?}"
    );
    assert_eq!(
        calls(&log, "record call"),
        ["record call [1, 2, 3]"],
        "{log:#?}"
    );
    for (job, copy) in (1..=3).zip(copies) {
        assert_eq!(lab.status(job), JobStatus::Running);
        assert_started_in_order(&log, job, copy);
    }
    assert_eq!(d.dispatched(), 3);
}

#[tokio::test(start_paused = true)]
async fn one_refused_lock_in_a_batch_leaves_the_others_started() {
    let lab = Lab::new(3);
    let copies: Vec<u64> = (1..=3).map(|id| lab.schedule(id, 100, 1, 60_000)).collect();
    lab.state().refuse_lock.insert(2);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_millis(500)).await;
    let log = lab.log();
    assert_eq!(
        calls(&log, "lock call")[0],
        "lock call [1, 2, 3]",
        "{log:#?}"
    );
    for (job, copy) in [(1, copies[0]), (3, copies[2])] {
        assert_eq!(lab.status(job), JobStatus::Running, "{log:#?}");
        assert_started_in_order(&log, job, copy);
    }
    // The refused one went back to the queue, a second later, and never started.
    assert!(!lab.logged("spawn 2"), "{log:#?}");
    assert!(lab.logged("requeue 2"), "{log:#?}");
    assert_eq!(
        lab.state().released_with_delay,
        vec![(copies[1], Duration::from_secs(1))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_job_whose_nodes_were_taken_waits_while_the_others_start() {
    let lab = Lab::new(3);
    let copies: Vec<u64> = (1..=3)
        .map(|id| lab.schedule(id, 100 * id as u32, 1, 60_000))
        .collect();
    // The plan sees three free nodes; by the lock, someone took one.
    lab.state().taken_before_lock = 1;
    let lab_look = lab.clone();
    let look = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        lab_look.status(3)
    });
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_millis(500)).await;
    let log = lab.log();
    assert_started_in_order(&log, 1, copies[0]);
    assert_started_in_order(&log, 2, copies[1]);
    // The least urgent job got no nodes: it stays in the window (until the shutdown hands
    // the window back), not given back with a delay as a refused one is.
    assert_eq!(look.await.unwrap(), JobStatus::Waiting, "{log:#?}");
    assert!(!lab.logged("spawn 3"), "{log:#?}");
    assert!(lab.state().released_with_delay.is_empty(), "{log:#?}");
}

#[tokio::test(start_paused = true)]
async fn an_unrecorded_dispatch_in_a_batch_never_says_go_while_the_others_do() {
    let lab = Lab::new(3);
    let copies: Vec<u64> = (1..=3).map(|id| lab.schedule(id, 100, 1, 60_000)).collect();
    lab.state().refuse_record.insert(2);
    let mut d = dispatcher(&lab);
    run_for(&mut d, Duration::from_millis(500)).await;
    let log = lab.log();
    assert_eq!(
        calls(&log, "record call")[0],
        "record call [1, 2, 3]",
        "{log:#?}"
    );
    for (job, copy) in [(1, copies[0]), (3, copies[2])] {
        assert_eq!(lab.status(job), JobStatus::Running, "{log:#?}");
        assert_started_in_order(&log, job, copy);
    }
    // Its supervisor was spawned but hears end-of-file, not go; its copy stays.
    assert!(lab.logged("spawn 2"), "{log:#?}");
    assert!(!lab.logged("go 2"), "{log:#?}");
    assert!(lab.logged("detach 2"), "{log:#?}");
    assert!(lab.logged("requeue 2"), "{log:#?}");
    assert!(
        !lab.logged(&format!("delete copy {}", copies[1])),
        "{log:#?}"
    );
    assert_eq!(lab.copy_state(copies[1]), Some(CopyState::Ready));
    assert_eq!(d.dispatched(), 2);
}
