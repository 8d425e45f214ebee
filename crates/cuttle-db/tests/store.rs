//! The storage layer against real databases: every test runs once on a fresh SQLite file
//! and once on a fresh PostgreSQL database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cuttle_core::{
    InvalidInput, JobId, JobSpec, JobStatus, LockRequest, MachineType, NodeCount, NodeName, Owner,
    Priority, RunName, RunSpec, RunStatus, UnixMillis,
};
use cuttle_db::{
    DatabaseTarget, DbError, LockError, NewNode, NodeChanges, NodeFilter, RunFilter, Store,
};
use cuttle_testkit::{PostgresDatabase, SqliteFile};

/// Keeps the database alive as long as the store that uses it.
enum Keep {
    Sqlite(#[allow(dead_code, reason = "held for its Drop")] SqliteFile),
    Postgres(#[allow(dead_code, reason = "held for its Drop")] PostgresDatabase),
}

fn sqlite_store() -> (Store, Keep) {
    let file = SqliteFile::create();
    let store = Store::open(DatabaseTarget::parse(&file.url()).unwrap(), 8).unwrap();
    (store, Keep::Sqlite(file))
}

fn postgres_store() -> (Store, Keep) {
    let db = PostgresDatabase::create();
    let store = Store::open(DatabaseTarget::parse(db.url()).unwrap(), 16).unwrap();
    (store, Keep::Postgres(db))
}

/// Defines `NAME::sqlite` and `NAME::postgres` tests running the same body.
macro_rules! on_both_backends {
    ($(fn $name:ident($store:ident: &Store) $body:block)*) => {$(
        mod $name {
            use super::*;
            fn body($store: &Store) $body
            #[test]
            fn sqlite() {
                let (store, _keep) = sqlite_store();
                body(&store);
            }
            #[test]
            fn postgres() {
                let (store, _keep) = postgres_store();
                body(&store);
            }
        }
    )*};
}

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// The supervisor grace unlocks are judged with.
const GRACE_MS: i64 = 60_000;

fn smithi() -> MachineType {
    MachineType::parse("smithi").unwrap()
}

fn person(name: &str, is_admin: bool) -> cuttle_core::node::Unlocker {
    cuttle_core::node::Unlocker::Person {
        owner: owner(name),
        is_admin,
    }
}

fn owner(name: &str) -> Owner {
    Owner::parse(name).unwrap()
}

fn add_nodes(store: &Store, machine_type: &str, count: usize) -> Vec<NodeName> {
    (1..=count)
        .map(|i| {
            let name = NodeName::parse(&format!("{machine_type}{i:03}")).unwrap();
            store
                .add_node(
                    &NewNode {
                        name: name.clone(),
                        machine_type: MachineType::parse(machine_type).unwrap(),
                        description: String::new(),
                        os_type: "ubuntu".into(),
                        os_version: "22.04".into(),
                        ssh_key: String::new(),
                    },
                    T0,
                )
                .unwrap();
            name
        })
        .collect()
}

fn lock_request(count: u32, who: &str) -> LockRequest {
    LockRequest {
        machine_type: smithi(),
        count: NodeCount::new(count.into()).unwrap(),
        owner: owner(who),
        job_id: None,
    }
}

/// Locks as `request` asks and returns the locked nodes' names.
fn locked_names(store: &Store, request: &LockRequest) -> Vec<NodeName> {
    store
        .lock_nodes(request, T0)
        .unwrap()
        .into_iter()
        .map(|node| node.name)
        .collect()
}

fn job_spec() -> JobSpec {
    JobSpec {
        description: "rados/basic".into(),
        machine_type: smithi(),
        priority: Priority::new(100).unwrap(),
        n_nodes: NodeCount::new(2).unwrap(),
        time_limit: None,
        os_type: "ubuntu".into(),
        os_version: "22.04".into(),
    }
}

fn run_spec(name: &str, who: &str) -> RunSpec {
    RunSpec {
        name: RunName::parse(name).unwrap(),
        owner: owner(who),
        branch: "main".into(),
        sha1: "abc123".into(),
        suite: "rados".into(),
    }
}

fn create_run(store: &Store, name: &str, who: &str, n_jobs: usize) -> Vec<JobId> {
    let jobs = vec![job_spec(); n_jobs];
    let created = store
        .create_run(&run_spec(name, who), &jobs, T0, |id, _| {
            Ok(format!("job_id: '{id}'\n"))
        })
        .unwrap();
    created.jobs.iter().map(|job| job.id).collect()
}

fn free_count(store: &Store) -> usize {
    store
        .list_nodes(&NodeFilter {
            locked: Some(false),
            ..NodeFilter::default()
        })
        .unwrap()
        .len()
}

on_both_backends! {
    fn nodes_are_added_listed_and_filtered(store: &Store) {
        add_nodes(store, "smithi", 3);
        add_nodes(store, "mira", 2);
        assert_eq!(store.list_nodes(&NodeFilter::default()).unwrap().len(), 5);
        let smithis = store
            .list_nodes(&NodeFilter { machine_type: Some(smithi()), ..NodeFilter::default() })
            .unwrap();
        let names: Vec<&str> = smithis.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["smithi001", "smithi002", "smithi003"]);
        let error = add_nodes_again(store);
        assert!(matches!(error, DbError::AlreadyExists { what: "node", .. }), "{error}");
    }

    fn locking_takes_exactly_n_or_nothing(store: &Store) {
        add_nodes(store, "smithi", 5);
        let got = store.lock_nodes(&lock_request(3, "alice"), T0).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|n| n.lock.as_ref().unwrap().owner == owner("alice")));
        // 2 free, 3 asked: nothing locked, and the error says how many were free.
        let error = store.lock_nodes(&lock_request(3, "bob"), T0).unwrap_err();
        assert!(
            matches!(error, DbError::Lock(LockError::NotEnoughFree { free: 2, requested: 3, total: 5, .. })),
            "{error}"
        );
        assert_eq!(free_count(store), 2);
        let error = store.lock_nodes(&lock_request(6, "bob"), T0).unwrap_err();
        assert!(matches!(error, DbError::Lock(LockError::NeverFits { total: 5, .. })), "{error}");
        let mut other = lock_request(1, "bob");
        other.machine_type = MachineType::parse("mira").unwrap();
        let error = store.lock_nodes(&other, T0).unwrap_err();
        assert!(error.to_string().contains("cuttle node add"), "{error}");
    }

    fn updates_write_only_the_fields_given(store: &Store) {
        let names = add_nodes(store, "smithi", 1);
        store.mark_node(&names[0], false, Some("disk failing"), T0).unwrap();
        let os_only = cuttle_db::NodeChanges {
            os_version: Some("24.04".into()),
            ..Default::default()
        };
        let node = store.update_node(&names[0], &os_only, T0).unwrap();
        assert_eq!(node.os_version, "24.04");
        assert_eq!(node.description, "disk failing", "untouched fields stay");
        assert_eq!((node.os_type.as_str(), node.machine_type.as_str()), ("ubuntu", "smithi"));
        let move_it = cuttle_db::NodeChanges {
            machine_type: Some(MachineType::parse("mira").unwrap()),
            ..Default::default()
        };
        let moved = store.update_node(&names[0], &move_it, T0).unwrap();
        assert_eq!(moved.machine_type.as_str(), "mira");
        let ghost = NodeName::parse("ghost01").unwrap();
        for changes in [os_only, move_it] {
            let error = store.update_node(&ghost, &changes, T0).unwrap_err();
            assert!(matches!(error, DbError::NotFound { .. }), "{error}");
        }
    }

    fn down_nodes_are_never_handed_out(store: &Store) {
        let names = add_nodes(store, "smithi", 2);
        store.mark_node(&names[0], false, Some("disk failing"), T0).unwrap();
        let error = store.lock_nodes(&lock_request(2, "alice"), T0).unwrap_err();
        assert!(matches!(error, DbError::Lock(LockError::NotEnoughFree { down: 1, .. })), "{error}");
        let got = store.lock_nodes(&lock_request(1, "alice"), T0).unwrap();
        assert_eq!(got[0].name, names[1]);
        let node = store.get_node(&names[0]).unwrap();
        assert!(!node.up);
        assert_eq!(node.description, "disk failing");
    }

    fn named_locks_are_all_or_nothing(store: &Store) {
        let names = add_nodes(store, "smithi", 3);
        store.lock_named_nodes(&names[..1], &owner("alice"), None, T0).unwrap();
        let error = store
            .lock_named_nodes(&names, &owner("bob"), None, T0)
            .unwrap_err();
        assert!(error.to_string().contains("smithi001 (held by alice)"), "{error}");
        assert_eq!(free_count(store), 2, "the failed request must not keep smithi002/003");
        let ghost = NodeName::parse("ghost01").unwrap();
        let error = store
            .lock_named_nodes(&[names[1].clone(), ghost], &owner("bob"), None, T0)
            .unwrap_err();
        assert!(matches!(error, DbError::Lock(LockError::UnknownNodes { .. })), "{error}");
        assert_eq!(free_count(store), 2);
    }

    fn only_the_holder_or_an_admin_unlocks_and_unlock_is_idempotent(store: &Store) {
        let names = add_nodes(store, "smithi", 2);
        store.lock_named_nodes(&names, &owner("alice"), None, T0).unwrap();
        let error = store.unlock_nodes(&names, &person("bob", false), GRACE_MS, T0).unwrap_err();
        assert!(error.to_string().contains("locked by alice, not by bob"), "{error}");
        assert_eq!(free_count(store), 0, "a refused unlock unlocks nothing");
        let move_it = cuttle_db::NodeChanges {
            machine_type: Some(MachineType::parse("mira").unwrap()),
            ..Default::default()
        };
        let error = store.update_node(&names[0], &move_it, T0).unwrap_err();
        assert!(matches!(error, DbError::NodeLocked { .. }), "{error}");
        let outcome = store.unlock_nodes(&names[..1], &person("alice", false), GRACE_MS, T0).unwrap();
        assert_eq!(outcome.unlocked, names[..1]);
        let again = store.unlock_nodes(&names[..1], &person("alice", false), GRACE_MS, T0).unwrap();
        assert_eq!(again.already_unlocked, names[..1]);
        let admin = store.unlock_nodes(&names[1..], &person("root", true), GRACE_MS, T0).unwrap();
        assert_eq!(admin.unlocked, names[1..]);
        let ghost = NodeName::parse("ghost01").unwrap();
        let error = store.unlock_nodes(&[ghost], &person("alice", false), GRACE_MS, T0).unwrap_err();
        assert!(matches!(error, DbError::NotFound { .. }), "{error}");
    }

    fn locks_for_a_job_name_the_job(store: &Store) {
        add_nodes(store, "smithi", 2);
        let job_ids = create_run(store, "run-a", "alice", 1);
        let mut request = lock_request(2, "alice");
        request.job_id = Some(job_ids[0]);
        store.lock_nodes(&request, T0).unwrap();
        assert_eq!(
            store.nodes_locked_for_jobs(&job_ids).unwrap()[&job_ids[0]].len(),
            2
        );
        request.job_id = Some(JobId(999_999));
        let error = store.lock_nodes(&request, T0).unwrap_err();
        assert!(matches!(error, DbError::Lock(LockError::UnknownJob { .. })), "{error}");
    }

    fn a_jobs_nodes_are_freed_only_by_its_release_after_it_ended(store: &Store) {
        add_nodes(store, "smithi", 3);
        let job_ids = create_run(store, "run-a", "alice", 1);
        let mut request = lock_request(2, "alice");
        request.job_id = Some(job_ids[0]);
        let names = locked_names(store, &request);
        // A retried lock (a lost reply) gets the same nodes, not a second set.
        let again = locked_names(store, &request);
        assert_eq!(again, names);
        assert_eq!(free_count(store), 1);
        request.count = NodeCount::new(1).unwrap();
        let error = store.lock_nodes(&request, T0).unwrap_err();
        assert!(matches!(error, DbError::Lock(LockError::JobHoldsOthers { .. })), "{error}");
        // While the job lives nobody unlocks its nodes: not its owner, not an admin, not
        // its own release (it reports first), not another job's release.
        for unlocker in [
            person("alice", false),
            person("root", true),
            cuttle_core::node::Unlocker::JobRelease { job_id: job_ids[0] },
            cuttle_core::node::Unlocker::JobRelease { job_id: JobId(job_ids[0].0 + 1) },
        ] {
            let error = store.unlock_nodes(&names, &unlocker, GRACE_MS, T0).unwrap_err();
            assert!(matches!(error, DbError::UnlockRefused { .. }), "{error}");
        }
        assert_eq!(free_count(store), 1);
        store
            .kill(&RunName::parse("run-a").unwrap(), None, "test", T0)
            .unwrap();
        let release = cuttle_core::node::Unlocker::JobRelease { job_id: job_ids[0] };
        let outcome = store.unlock_nodes(&names, &release, GRACE_MS, T0).unwrap();
        assert_eq!(outcome.unlocked, names);
        let report = store.audit_locks().unwrap();
        assert!(report.clean(), "{:?}", report.violations);
        assert_eq!((report.events, report.held_now), (4, 0));
        let history = store.lock_history(Some(&names[0]), 10).unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].by, format!("release of job {}", job_ids[0]));
    }

    fn a_nodes_ssh_key_is_kept_changed_and_cleared(store: &Store) {
        add_nodes(store, "smithi", 1);
        let name = NodeName::parse("smithi001").unwrap();
        assert_eq!(store.get_node(&name).unwrap().ssh_key, "");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let set = NodeChanges { ssh_key: Some(key.into()), ..NodeChanges::default() };
        assert_eq!(store.update_node(&name, &set, T0).unwrap().ssh_key, key);
        // Other changes leave it alone; an empty one clears it.
        let other = NodeChanges { description: Some("rack 3".into()), ..NodeChanges::default() };
        assert_eq!(store.update_node(&name, &other, T0).unwrap().ssh_key, key);
        let clear = NodeChanges { ssh_key: Some(String::new()), ..NodeChanges::default() };
        assert_eq!(store.update_node(&name, &clear, T0).unwrap().ssh_key, "");
    }

    fn the_planner_counts_only_the_nodes_an_ended_job_still_holds(store: &Store) {
        add_nodes(store, "smithi", 4);
        let job_ids = create_run(store, "run-p", "alice", 1);
        let mut request = lock_request(2, "alice");
        request.job_id = Some(job_ids[0]);
        let names = locked_names(store, &request);
        store.update_job_status(job_ids[0], JobStatus::Running, None, T0).unwrap();
        let data = store.plan_data(&smithi(), &[]).unwrap();
        assert_eq!((data.free_nodes, data.running.len()), (2, 1));
        assert!(data.releasing_nodes.is_empty(), "{:?}", data.releasing_nodes);
        store.kill(&RunName::parse("run-p").unwrap(), None, "test", T0).unwrap();
        // Its release gives one node back, then the other: at no point may free nodes
        // plus what the job still holds exceed the four that exist.
        let release = cuttle_core::node::Unlocker::JobRelease { job_id: job_ids[0] };
        store.unlock_nodes(&names[..1], &release, GRACE_MS, T0).unwrap();
        let data = store.plan_data(&smithi(), &[]).unwrap();
        assert_eq!(data.free_nodes, 3);
        assert_eq!(data.running.len(), 1);
        assert_eq!(data.releasing_nodes.get(&job_ids[0]), Some(&1));
        store.unlock_nodes(&names[1..], &release, GRACE_MS, T0).unwrap();
        let data = store.plan_data(&smithi(), &[]).unwrap();
        assert_eq!((data.free_nodes, data.running.len()), (4, 0));
    }

    fn nobody_unlocks_an_ended_jobs_node_while_its_release_runs(store: &Store) {
        add_nodes(store, "smithi", 1);
        let job_ids = create_run(store, "run-r", "alice", 1);
        let mut request = lock_request(1, "alice");
        request.job_id = Some(job_ids[0]);
        let names = locked_names(store, &request);
        store.update_job_status(job_ids[0], JobStatus::Running, None, T0).unwrap();
        store.kill(&RunName::parse("run-r").unwrap(), None, "test", T0).unwrap();
        // Its supervisor heartbeats while it nukes and unlocks.
        store.heartbeat(job_ids[0], UnixMillis(T0.0 + 1_000)).unwrap();
        let soon = UnixMillis(T0.0 + 2_000);
        let error = store
            .unlock_nodes(&names, &person("root", true), GRACE_MS, soon)
            .unwrap_err();
        assert!(error.to_string().contains("is being given back by the release"), "{error}");
        // Silent for the grace: the release is stuck, and an admin may clear the lock.
        let later = UnixMillis(T0.0 + 1_000 + GRACE_MS + 1);
        let outcome = store
            .unlock_nodes(&names, &person("root", true), GRACE_MS, later)
            .unwrap();
        assert_eq!(outcome.unlocked, names);
        let report = store.audit_locks().unwrap();
        assert!(report.clean(), "{:?}", report.violations);
    }

    fn concurrent_lockers_never_share_a_node(store: &Store) {
        add_nodes(store, "smithi", 20);
        // Who holds each node according to the lock calls' answers. A node handed to one
        // locker while another still holds it shows up as an occupied entry.
        let holders: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let threads: Vec<_> = (0..12)
            .map(|worker| {
                let store = store.clone();
                let holders = holders.clone();
                let violations = violations.clone();
                std::thread::spawn(move || {
                    let mut granted = 0;
                    for round in 0..25u32 {
                        let count = 1 + (worker as u32 * 7 + round * 3) % 6;
                        let who = format!("worker{worker}");
                        match store.lock_nodes(&lock_request(count, &who), T0) {
                            Ok(nodes) => {
                                granted += 1;
                                if nodes.len() != count as usize {
                                    violations.lock().unwrap().push(format!("asked {count}, got {}", nodes.len()));
                                }
                                let names: Vec<NodeName> = nodes.iter().map(|n| n.name.clone()).collect();
                                {
                                    let mut map = holders.lock().unwrap();
                                    for name in &names {
                                        if let Some(other) = map.insert(name.to_string(), worker) {
                                            violations.lock().unwrap().push(format!("{name} held by {other} and {worker}"));
                                        }
                                    }
                                }
                                std::thread::yield_now();
                                {
                                    let mut map = holders.lock().unwrap();
                                    for name in &names {
                                        map.remove(name.as_str());
                                    }
                                }
                                store.unlock_nodes(&names, &person(&who, false), GRACE_MS, T0).unwrap();
                            }
                            Err(DbError::Lock(LockError::NotEnoughFree { .. })) => {}
                            Err(other) => violations.lock().unwrap().push(format!("unexpected error: {other}")),
                        }
                    }
                    granted
                })
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
        assert!(granted > 0, "no locker ever got nodes");
        assert_eq!(free_count(store), 20, "every node must be free at the end");
        let report = store.audit_locks().unwrap();
        assert!(report.clean(), "{:?}", report.violations);
        assert!(report.events >= granted * 2, "{} events for {granted} locks", report.events);
    }

    fn a_refused_render_writes_nothing(store: &Store) {
        let jobs = vec![job_spec(); 3];
        let mut calls = 0;
        let error = store
            .create_run(&run_spec("run-big", "alice"), &jobs, T0, |_, _| {
                calls += 1;
                if calls == 3 {
                    Err(InvalidInput::new("job body", "too big"))
                } else {
                    Ok("ok".into())
                }
            })
            .unwrap_err();
        assert!(matches!(error, DbError::Invalid(_)), "{error}");
        assert!(store.list_runs(&RunFilter::default()).unwrap().is_empty());
        let error = store.get_run(&RunName::parse("run-big").unwrap()).unwrap_err();
        assert!(matches!(error, DbError::NotFound { .. }), "{error}");
    }

    fn runs_are_created_shown_and_unique(store: &Store) {
        let ids = create_run(store, "run-a", "alice", 3);
        assert_eq!(ids.len(), 3);
        let (summary, jobs) = store.get_run(&RunName::parse("run-a").unwrap()).unwrap();
        assert_eq!(summary.status, RunStatus::Queued);
        assert_eq!(summary.counts, vec![(JobStatus::Queued, 3)]);
        assert!(jobs.iter().all(|job| job.status == JobStatus::Queued));
        assert_eq!(jobs[0].config_yaml, format!("job_id: '{}'\n", ids[0]));
        assert_eq!(jobs[0].run_name.as_str(), "run-a");
        let error = store
            .create_run(&run_spec("run-a", "bob"), &[job_spec()], T0, |_, _| Ok(String::new()))
            .unwrap_err();
        assert!(matches!(error, DbError::AlreadyExists { what: "run", .. }), "{error}");
        store.set_beanstalk_ids(&[(ids[0], 77)]).unwrap();
        let (job, _) = store.get_job(ids[0]).unwrap();
        assert_eq!(job.beanstalk_id, Some(77));
        let pending = store.jobs_awaiting_enqueue(10).unwrap();
        assert_eq!(pending.iter().map(|j| j.id).collect::<Vec<_>>(), ids[1..]);
    }

    fn runs_are_filtered(store: &Store) {
        create_run(store, "run-a", "alice", 1);
        let b = create_run(store, "run-b", "bob", 2);
        store.update_job_status(b[0], JobStatus::Running, None, T0).unwrap();
        let by_owner = store
            .list_runs(&RunFilter { owner: Some(owner("bob")), ..RunFilter::default() })
            .unwrap();
        assert_eq!(by_owner.len(), 1);
        assert_eq!(by_owner[0].run.spec.name.as_str(), "run-b");
        let running = store
            .list_runs(&RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() })
            .unwrap();
        assert_eq!(running.len(), 1);
        let all = store.list_runs(&RunFilter::default()).unwrap();
        assert_eq!(all[0].run.spec.name.as_str(), "run-b", "newest first");
        let mira = store
            .list_runs(&RunFilter { machine_type: Some(MachineType::parse("mira").unwrap()), ..RunFilter::default() })
            .unwrap();
        assert!(mira.is_empty());
        let limited = store.list_runs(&RunFilter { limit: 1, ..RunFilter::default() }).unwrap();
        assert_eq!(limited.len(), 1);
    }

    fn status_changes_follow_the_state_machine_and_are_timelined(store: &Store) {
        let ids = create_run(store, "run-a", "alice", 1);
        let id = ids[0];
        let error = store.heartbeat(id, T0).unwrap_err();
        assert!(matches!(error, DbError::NotRunning { status: JobStatus::Queued, .. }), "{error}");
        store.update_job_status(id, JobStatus::Waiting, None, T0).unwrap();
        store.update_job_status(id, JobStatus::Running, None, T0).unwrap();
        assert_eq!(store.heartbeat(id, UnixMillis(T0.0 + 5)).unwrap(), JobStatus::Running);
        let error = store.update_job_status(id, JobStatus::Dead, None, T0).unwrap_err();
        assert!(error.to_string().contains("needs a reason"), "{error}");
        let job = store.update_job_status(id, JobStatus::Dead, Some("timed out"), T0).unwrap();
        assert_eq!(job.reason.as_deref(), Some("timed out"));
        let error = store.update_job_status(id, JobStatus::Pass, None, T0).unwrap_err();
        assert!(error.to_string().contains("already ended"), "{error}");
        let (job, events) = store.get_job(id).unwrap();
        assert_eq!(job.heartbeat_at, Some(UnixMillis(T0.0 + 5)));
        let path: Vec<JobStatus> = events.iter().map(|e| e.to).collect();
        assert_eq!(path, [JobStatus::Queued, JobStatus::Waiting, JobStatus::Running, JobStatus::Dead]);
        let error = store.get_job(JobId(424_242)).unwrap_err();
        assert!(matches!(error, DbError::NotFound { what: "job", .. }), "{error}");
    }

    fn presets_are_saved_per_owner_edited_listed_and_deleted(store: &Store) {
        use cuttle_core::suite::RawSuiteArgs;
        use cuttle_core::PresetName;
        let alice = Owner::parse("alice").unwrap();
        let bob = Owner::parse("bob").unwrap();
        let name = PresetName::parse("rados-nightly").unwrap();
        let args = RawSuiteArgs { suite: "rados".into(), priority: Some(100), filter_in: vec!["bluestore".into()], ..RawSuiteArgs::default() };
        let saved = store.save_preset(&alice, &name, &args, false, T0).unwrap();
        assert_eq!(saved.args, args);
        // Names are per owner: bob may use the same one; alice may not twice.
        store.save_preset(&bob, &name, &RawSuiteArgs { suite: "fs".into(), ..RawSuiteArgs::default() }, false, T0).unwrap();
        let error = store.save_preset(&alice, &name, &args, false, T0).unwrap_err();
        assert!(matches!(error, DbError::AlreadyExists { .. }), "{error}");
        let edited = RawSuiteArgs { priority: Some(200), ..args.clone() };
        let after = store.save_preset(&alice, &name, &edited, true, UnixMillis(T0.0 + 5)).unwrap();
        assert_eq!((after.args.priority, after.created_at, after.updated_at), (Some(200), T0, UnixMillis(T0.0 + 5)));
        let missing = PresetName::parse("nope").unwrap();
        assert!(matches!(store.save_preset(&alice, &missing, &args, true, T0).unwrap_err(), DbError::NotFound { .. }));
        assert_eq!(store.get_preset(&bob, &name).unwrap().args.suite, "fs");
        assert_eq!(store.list_presets(Some(&alice)).unwrap().len(), 1);
        assert_eq!(store.list_presets(None).unwrap().len(), 2);
        store.delete_preset(&alice, &name).unwrap();
        assert!(matches!(store.delete_preset(&alice, &name).unwrap_err(), DbError::NotFound { .. }));
        assert!(matches!(store.get_preset(&alice, &name).unwrap_err(), DbError::NotFound { .. }));
        assert_eq!(store.list_presets(None).unwrap().len(), 1);
    }

    fn an_autosuite_fires_exactly_once_and_keeps_its_timeline(store: &Store) {
        use cuttle_core::autosuite::{AutoSuiteState, WantedBuild};
        use cuttle_core::suite::RawSuiteArgs;
        let alice = Owner::parse("alice").unwrap();
        let build = WantedBuild { branch: "wip-x".into(), distro: "ubuntu".into(), ..WantedBuild::default() };
        let args = RawSuiteArgs { suite: "rados".into(), ..RawSuiteArgs::default() };
        let dev = cuttle_core::auth::Role::Developer;
        let first = store.add_autosuite(&alice, dev, &build, &args, T0).unwrap();
        let other = store.add_autosuite(&alice, dev, &WantedBuild { branch: "wip-y".into(), ..build.clone() }, &args, T0).unwrap();
        assert_eq!((first.state, first.args.suite.as_str()), (AutoSuiteState::WaitingForBuild, "rados"));
        assert_eq!(store.waiting_autosuites(Some("wip-x")).unwrap().len(), 1);
        // A webhook, a repeat of it and a poll race: one claim wins.
        let wins: usize = (0..6)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.claim_autosuite(first.id, "build ready", "alice-1", "", T0).unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
        // A firing that failed gives the claim back; the next one schedules it.
        assert!(store.autosuite_unclaimed(first.id, "beanstalkd was down", T0).unwrap());
        // While it waits its owner may change it; not once it fired.
        let edited = RawSuiteArgs { suite: "rados/thrash".into(), ..args.clone() };
        let changed = store.edit_autosuite(first.id, &build, &edited, "alice", T0).unwrap();
        assert_eq!(changed.args.suite, "rados/thrash");
        let sha1 = "a".repeat(40);
        assert!(store.claim_autosuite(first.id, "poll: build ready", "alice-autosuite-1", &sha1, T0).unwrap());
        let (firing, _) = store.get_autosuite(first.id).unwrap();
        assert_eq!((firing.run_name.as_deref(), firing.args.ceph_sha1.as_str()), (Some("alice-autosuite-1"), sha1.as_str()));
        assert!(matches!(store.edit_autosuite(first.id, &build, &args, "alice", T0), Err(DbError::AutoSuiteNotWaiting { .. })));
        assert!(matches!(store.delete_autosuite(first.id), Err(DbError::AutoSuiteNotWaiting { .. })));
        assert!(store.autosuite_scheduled(first.id, "alice-autosuite-1", T0).unwrap());
        assert!(!store.autosuite_scheduled(first.id, "again", T0).unwrap(), "scheduled once");
        assert!(!store.claim_autosuite(first.id, "late webhook", "x", "", T0).unwrap());
        let (done, events) = store.get_autosuite(first.id).unwrap();
        assert_eq!(done.run_name.as_deref(), Some("alice-autosuite-1"));
        let path: Vec<AutoSuiteState> = events.iter().map(|e| e.to).collect();
        use AutoSuiteState::*;
        assert_eq!(path, [WaitingForBuild, Scheduling, WaitingForBuild, WaitingForBuild, Scheduling, Scheduled]);
        // A failed build ends the other one, with its URL; it never fires.
        assert!(store.end_autosuite(other.id, BuildFailed, "build failed", Some("https://jenkins/9"), T0).unwrap());
        assert!(!store.claim_autosuite(other.id, "webhook", "x", "", T0).unwrap());
        let (failed, _) = store.get_autosuite(other.id).unwrap();
        assert_eq!((failed.state, failed.build_url.as_deref()), (BuildFailed, Some("https://jenkins/9")));
        assert!(store.waiting_autosuites(None).unwrap().is_empty());
        assert!(store.scheduling_autosuites().unwrap().is_empty());
        assert_eq!(store.list_autosuites(Some(&alice)).unwrap().len(), 2);
        // A firing that cannot succeed ends it; an ended one may be deleted.
        let third = store.add_autosuite(&alice, dev, &build, &args, T0).unwrap();
        assert!(store.claim_autosuite(third.id, "webhook", "alice-3", "", T0).unwrap());
        assert!(store.autosuite_failed(third.id, "no job left after filters", T0).unwrap());
        assert_eq!(store.get_autosuite(third.id).unwrap().0.state, Failed);
        store.delete_autosuite(third.id).unwrap();
        assert!(matches!(store.get_autosuite(third.id), Err(DbError::NotFound { .. })));
    }

    fn concurrent_terminal_updates_end_a_job_exactly_once(store: &Store) {
        let ids = create_run(store, "run-a", "alice", 1);
        store.update_job_status(ids[0], JobStatus::Running, None, T0).unwrap();
        let outcomes: Vec<(JobStatus, bool)> = [JobStatus::Pass, JobStatus::Fail, JobStatus::Killed, JobStatus::Pass]
            .into_iter()
            .map(|to| {
                let store = store.clone();
                let id = ids[0];
                std::thread::spawn(move || (to, store.update_job_status(id, to, None, T0).is_ok()))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let (job, events) = store.get_job(ids[0]).unwrap();
        assert_eq!(events.iter().filter(|e| e.to.is_terminal()).count(), 1);
        // Only reports of the status that won are answered OK (a repeated report is
        // idempotent); every other one is refused.
        for (to, ok) in &outcomes {
            assert_eq!(*ok, *to == job.status, "{outcomes:?} ended {}", job.status);
        }
    }
}

fn add_nodes_again(store: &Store) -> DbError {
    store
        .add_node(
            &NewNode {
                name: NodeName::parse("smithi001").unwrap(),
                machine_type: smithi(),
                description: String::new(),
                os_type: String::new(),
                os_version: String::new(),
                ssh_key: String::new(),
            },
            T0,
        )
        .unwrap_err()
}

#[test]
fn a_file_that_is_not_a_database_is_refused_clearly() {
    let file = SqliteFile::create();
    std::fs::write(
        file.path(),
        b"this is a text file, not an SQLite database\n".repeat(100),
    )
    .unwrap();
    let error = Store::open(DatabaseTarget::parse(&file.url()).unwrap(), 2).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("is not an SQLite database"), "{message}");
    assert!(message.contains("--db"), "{message}");
}

#[test]
fn a_missing_directory_is_named() {
    let error = Store::open(
        DatabaseTarget::Sqlite("/nonexistent/dir/cuttle.db".into()),
        2,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("/nonexistent/dir does not exist"),
        "{error}"
    );
}

#[test]
fn an_unreachable_postgres_is_named_without_its_password() {
    let port = cuttle_testkit::free_port();
    let url = format!("postgres://cuttle:hunter2@127.0.0.1:{port}/cuttle");
    let error = Store::open(DatabaseTarget::parse(&url).unwrap(), 2).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("cannot open database postgres://cuttle:***@127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn migrations_apply_twice_without_harm() {
    let file = SqliteFile::create();
    let target = DatabaseTarget::parse(&file.url()).unwrap();
    Store::open(target.clone(), 1).unwrap();
    Store::open(target, 1).unwrap();
}

fn lease(holder: &str) -> cuttle_db::LeaseRequest {
    cuttle_db::LeaseRequest {
        machine_type: smithi(),
        holder: holder.into(),
        host: "scheduler".into(),
        pid: 42,
        ttl_ms: 1_000,
    }
}

fn holds(tube: &cuttle_core::dispatch::Tube, holder: &str, now: UnixMillis) -> bool {
    tube.live_lease(now)
        .is_some_and(|lease| lease.holder == holder)
}

/// Claims `job_id` as dispatcher `d1`, holding a long lease.
fn claim(store: &Store, job_id: JobId, beanstalk_id: u64, now: UnixMillis) {
    let request = cuttle_db::LeaseRequest {
        ttl_ms: 1_000_000_000,
        ..lease("d1")
    };
    store.acquire_lease(&request, now).unwrap();
    store.set_beanstalk_ids(&[(job_id, beanstalk_id)]).unwrap();
    let (claim, _) = store
        .claim_job(job_id, &smithi(), beanstalk_id, "d1", None, now)
        .unwrap();
    assert_eq!(claim, cuttle_core::dispatch::Claim::Start);
}

/// Claims `job_id` as dispatcher `d1` (holding a long lease), locks its nodes and records
/// its dispatch at `now`; returns its nodes.
fn start_job(store: &Store, job_id: JobId, beanstalk_id: u64, now: UnixMillis) -> Vec<NodeName> {
    claim(store, job_id, beanstalk_id, now);
    let request = LockRequest {
        job_id: Some(job_id),
        ..lock_request(2, "alice")
    };
    let names = locked_names(store, &request);
    let supervisor = cuttle_core::dispatch::SupervisorRef {
        host: "h".into(),
        pid: 7,
    };
    store
        .record_dispatch(job_id, "d1", &supervisor, now)
        .unwrap();
    names
}

on_both_backends! {
    fn one_of_many_racing_dispatchers_gets_the_lease(store: &Store) {
        let store = Arc::new(store.clone());
        let winners = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let store = Arc::clone(&store);
                let winners = Arc::clone(&winners);
                std::thread::spawn(move || {
                    let holder = format!("d{i}");
                    let tube = store.acquire_lease(&lease(&holder), T0).unwrap();
                    if holds(&tube, &holder, T0) {
                        winners.lock().unwrap().push(holder);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let winners = winners.lock().unwrap().clone();
        assert_eq!(winners.len(), 1, "{winners:?}");
        let winner = &winners[0];
        // Renewing keeps it; others wait until it expires, then one takes it.
        assert!(holds(&store.acquire_lease(&lease(winner), UnixMillis(T0.0 + 500)).unwrap(), winner, UnixMillis(T0.0 + 500)));
        let other = if winner == "d0" { "d1" } else { "d0" };
        assert!(!holds(&store.acquire_lease(&lease(other), UnixMillis(T0.0 + 1_400)).unwrap(), other, UnixMillis(T0.0 + 1_400)));
        let later = UnixMillis(T0.0 + 1_500);
        assert!(holds(&store.acquire_lease(&lease(other), later).unwrap(), other, later));
        // Giving it up frees it at once.
        store.release_lease(&smithi(), other, later).unwrap();
        assert!(holds(&store.acquire_lease(&lease(winner), later).unwrap(), winner, later));
    }

    fn the_planner_reads_the_recent_runtimes_of_every_description_at_once(store: &Store) {
        add_nodes(store, "smithi", 4);
        // Past runs, one after another: 25 of "long" (only the last 20 count), two of
        // "short" that passed or failed and one that died (a death says nothing about
        // how long the job takes), none of "new".
        let mut past: Vec<(&str, JobStatus, i64)> =
            (0..25).map(|i| ("long", JobStatus::Pass, 1_000 * (i + 1))).collect();
        past.extend([
            ("short", JobStatus::Pass, 300),
            ("short", JobStatus::Dead, 99_000),
            ("short", JobStatus::Fail, 200),
            ("running", JobStatus::Pass, 50),
        ]);
        let specs: Vec<JobSpec> = past
            .iter()
            .map(|(description, _, _)| JobSpec { description: (*description).into(), ..job_spec() })
            .collect();
        let created = store
            .create_run(&run_spec("history", "alice"), &specs, T0, |id, _| Ok(format!("job_id: '{id}'\n")))
            .unwrap();
        let mut now = T0.0;
        for (i, (job, (_, status, runtime))) in created.jobs.iter().zip(&past).enumerate() {
            now += 1_000;
            let names = start_job(store, job.id, 100 + i as u64, UnixMillis(now));
            now += runtime;
            let reason = (*status == JobStatus::Dead).then_some("hit max job timeout");
            store.update_job_status(job.id, *status, reason, UnixMillis(now)).unwrap();
            let release = cuttle_core::node::Unlocker::JobRelease { job_id: job.id };
            store.unlock_nodes(&names, &release, GRACE_MS, UnixMillis(now)).unwrap();
        }
        // Now a window of one job per description, and a running one.
        let specs: Vec<JobSpec> = ["long", "short", "new", "running"]
            .iter()
            .map(|description| JobSpec { description: (*description).into(), ..job_spec() })
            .collect();
        let created = store
            .create_run(&run_spec("window", "alice"), &specs, T0, |id, _| Ok(format!("job_id: '{id}'\n")))
            .unwrap();
        let ids: Vec<JobId> = created.jobs.iter().map(|job| job.id).collect();
        now += 1_000;
        start_job(store, ids[3], 200, UnixMillis(now));
        for (i, job_id) in ids[..3].iter().enumerate() {
            store.set_beanstalk_ids(&[(*job_id, 300 + i as u64)]).unwrap();
            store.claim_job(*job_id, &smithi(), 300 + i as u64, "d1", None, UnixMillis(now)).unwrap();
        }
        let data = store.plan_data(&smithi(), &ids[..3]).unwrap();
        assert_eq!((data.window.len(), data.running.len()), (3, 1));
        let expected: HashMap<String, Vec<i64>> = [
            ("long".to_owned(), (6..=25).rev().map(|i| 1_000 * i).collect()),
            ("short".to_owned(), vec![200, 300]),
            ("running".to_owned(), vec![50]),
        ]
        .into_iter()
        .collect();
        assert_eq!(data.history, expected);
        // The forecast's snapshot reads the same history.
        assert_eq!(store.queue_plan_data(&smithi(), 10).unwrap().history, expected);
    }

    fn a_batch_locks_and_records_each_claimed_job_on_its_own(store: &Store) {
        add_nodes(store, "smithi", 5);
        // Two-node jobs: a and b claimed, c claimed then killed, d never claimed, e
        // claimed but there are not nodes enough left for it.
        let ids = create_run(store, "batch", "alice", 5);
        let (a, b, c, d, e) = (ids[0], ids[1], ids[2], ids[3], ids[4]);
        for (i, job_id) in [a, b, c, e].into_iter().enumerate() {
            claim(store, job_id, 10 + i as u64, T0);
        }
        store.kill(&RunName::parse("batch").unwrap(), Some(c), "test", T0).unwrap();
        let answers = store.lock_nodes_of_claimed_jobs("d1", &[a, c, d, b, e], T0).unwrap();
        let names = |i: usize| -> Vec<String> {
            answers[i].as_ref().unwrap().iter().map(|node| node.name.to_string()).collect()
        };
        assert_eq!(names(0), ["smithi001", "smithi002"]);
        assert!(matches!(answers[1], Err(DbError::NotClaimed { .. })), "{:?}", answers[1]);
        assert!(matches!(answers[2], Err(DbError::NotClaimed { .. })), "{:?}", answers[2]);
        assert_eq!(names(3), ["smithi003", "smithi004"]);
        assert!(
            matches!(answers[4], Err(DbError::Lock(LockError::NotEnoughFree { .. }))),
            "{:?}",
            answers[4]
        );
        // e's partial lock was rolled back to its savepoint: one node is still free.
        assert_eq!(free_count(store), 1);
        // Asking again gives a and b the same nodes (a lost reply is retried safely).
        let again = store.lock_nodes_of_claimed_jobs("d1", &[a, b], T0).unwrap();
        assert_eq!(again[0].as_ref().unwrap().len(), 2);
        assert_eq!(free_count(store), 1);
        // Another dispatcher locks nothing for jobs it did not claim.
        let other = store.lock_nodes_of_claimed_jobs("d2", &[e], T0).unwrap();
        assert!(matches!(other[0], Err(DbError::NotClaimed { .. })), "{:?}", other[0]);
        let supervisor = cuttle_core::dispatch::SupervisorRef { host: "h".into(), pid: 7 };
        let started: Vec<(JobId, String, cuttle_core::dispatch::SupervisorRef)> = [a, e, b]
            .into_iter()
            .map(|job_id| (job_id, "d1".to_owned(), supervisor.clone()))
            .collect();
        let recorded = store.record_dispatches(&started, UnixMillis(T0.0 + 5)).unwrap();
        assert!(recorded[0].is_ok() && recorded[2].is_ok(), "{recorded:?}");
        let refused = recorded[1].as_ref().unwrap_err().to_string();
        assert!(refused.contains("holds 0 of the job's 2 nodes"), "{refused}");
        for (job_id, status) in [(a, JobStatus::Running), (b, JobStatus::Running), (e, JobStatus::Waiting)] {
            let (job, _) = store.get_job(job_id).unwrap();
            assert_eq!(job.status, status, "job {job_id}");
        }
        assert_eq!(store.get_job(a).unwrap().0.started_at, Some(UnixMillis(T0.0 + 5)));
        assert!(store.audit_locks().unwrap().clean());
    }

    fn an_expired_job_ends_dead_with_its_reason_instead_of_starting(store: &Store) {
        add_nodes(store, "smithi", 2);
        let jobs = create_run(store, "stale", "alice", 1);
        store.set_beanstalk_ids(&[(jobs[0], 10)]).unwrap();
        store.acquire_lease(&lease("d1"), T0).unwrap();
        let why = "expired: its expire time 2026-11-01_00:00:00 passed before it could start";
        let (claim, job) = store.claim_job(jobs[0], &smithi(), 10, "d1", Some(why.into()), T0).unwrap();
        assert_eq!(claim, cuttle_core::dispatch::Claim::Expired { reason: why.into() });
        assert_eq!((job.status, job.reason.as_deref()), (JobStatus::Dead, Some(why)));
        assert_eq!(free_count(store), 2, "an expired job takes no node");
    }

    fn a_claimed_job_runs_once_and_a_lost_dispatchers_claim_is_undone(store: &Store) {
        add_nodes(store, "smithi", 4);
        let jobs = create_run(store, "claims", "alice", 2);
        store.set_beanstalk_ids(&[(jobs[0], 10), (jobs[1], 11)]).unwrap();
        // Only the lease holder may claim.
        let error = store.claim_job(jobs[0], &smithi(), 10, "d1", None, T0).unwrap_err();
        assert!(matches!(error, DbError::NotLeaseHolder { .. }), "{error}");
        store.acquire_lease(&lease("d1"), T0).unwrap();
        let (claim, job) = store.claim_job(jobs[0], &smithi(), 10, "d1", None, T0).unwrap();
        assert_eq!(claim, cuttle_core::dispatch::Claim::Start);
        assert_eq!(job.status, JobStatus::Waiting);
        // A stale copy of the same job is discarded.
        let (claim, _) = store.claim_job(jobs[0], &smithi(), 99, "d1", None, T0).unwrap();
        assert!(matches!(claim, cuttle_core::dispatch::Claim::Discard { .. }), "{claim:?}");
        let mut request = lock_request(2, "alice");
        request.job_id = Some(jobs[0]);
        store.lock_nodes(&request, T0).unwrap();
        let supervisor = cuttle_core::dispatch::SupervisorRef { host: "h".into(), pid: 7 };
        store.record_dispatch(jobs[0], "d1", &supervisor, T0).unwrap();
        let (running, _) = store.get_job(jobs[0]).unwrap();
        assert_eq!(running.status, JobStatus::Running);
        assert_eq!(running.supervisor, Some(supervisor.clone()));
        // Recording twice, or by another dispatcher, is refused.
        assert!(matches!(store.record_dispatch(jobs[0], "d1", &supervisor, T0), Err(DbError::NotClaimed { .. })));
        // The second job is claimed and given nodes, then its dispatcher dies.
        let (claim, _) = store.claim_job(jobs[1], &smithi(), 11, "d1", None, T0).unwrap();
        assert_eq!(claim, cuttle_core::dispatch::Claim::Start);
        request.job_id = Some(jobs[1]);
        store.lock_nodes(&request, T0).unwrap();
        assert_eq!(free_count(store), 0);
        let after = UnixMillis(T0.0 + 1_001);
        let report = store.reap(60_000, after).unwrap();
        assert_eq!(report.requeued, vec![jobs[1]]);
        assert_eq!(report.freed_nodes.len(), 2);
        assert!(report.supervisor_lost.is_empty(), "a beating supervisor is not lost");
        assert_eq!(store.get_job(jobs[1]).unwrap().0.status, JobStatus::Queued);
        assert_eq!(free_count(store), 2);
        // A silent supervisor is lost after the grace; its nodes wait for a release.
        let late = UnixMillis(T0.0 + 61_000);
        let report = store.reap(60_000, late).unwrap();
        assert_eq!(report.supervisor_lost.len(), 1);
        assert_eq!(store.get_job(jobs[0]).unwrap().0.status, JobStatus::Dead);
        // Only the tube's dispatcher runs releases: d1's lease has lapsed, d2 took it.
        assert!(matches!(
            store.claim_releases(&smithi(), "d1", 60_000, 10, late),
            Err(DbError::NotLeaseHolder { .. })
        ));
        store.acquire_lease(&lease("d2"), late).unwrap();
        let pending = store.claim_releases(&smithi(), "d2", 60_000, 10, late).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].nodes.len(), 2);
        // Claimed: nobody else gets it for another grace.
        assert!(store.claim_releases(&smithi(), "d2", 60_000, 10, late).unwrap().is_empty());
    }

    fn kill_ends_every_living_job_once_and_no_node_is_locked_for_it_after(store: &Store) {
        add_nodes(store, "smithi", 2);
        let jobs = create_run(store, "doomed", "alice", 3);
        let killed = store.kill(&RunName::parse("doomed").unwrap(), None, "killed by alice", T0).unwrap();
        assert_eq!(killed.len(), 3);
        assert!(killed.iter().all(|k| k.was == JobStatus::Queued && k.job.status == JobStatus::Killed));
        assert!(store.kill(&RunName::parse("doomed").unwrap(), None, "again", T0).unwrap().is_empty());
        let mut request = lock_request(1, "alice");
        request.job_id = Some(jobs[0]);
        let error = store.lock_nodes(&request, T0).unwrap_err();
        assert!(matches!(error, DbError::Lock(LockError::JobEnded { .. })), "{error}");
        let error = store
            .set_priority(jobs[1], Priority::new(5).unwrap(), "alice", T0)
            .unwrap_err();
        assert!(error.to_string().contains("only a queued or waiting job"), "{error}");
    }

    fn a_teuthology_body_is_adopted_once(store: &Store) {
        let run = run_spec("teuthology-run", "scheduled_bob");
        let body = "name: teuthology-run\nmachine_type: smithi\n";
        let first = store.adopt_job(&run, &job_spec(), body, 5, T0).unwrap();
        let again = store.adopt_job(&run, &job_spec(), body, 5, T0).unwrap();
        assert_eq!(first.id, again.id);
        let other = store.adopt_job(&run, &job_spec(), body, 6, T0).unwrap();
        assert_ne!(first.id, other.id);
        assert_eq!(first.beanstalk_id, Some(5));
        assert_eq!(store.get_run(&run.name).unwrap().1.len(), 2);
    }

    fn the_queue_lists_in_beanstalkd_order_and_pauses(store: &Store) {
        let jobs = create_run(store, "q", "alice", 3);
        store.set_beanstalk_ids(&[(jobs[0], 1), (jobs[1], 2), (jobs[2], 3)]).unwrap();
        let listed: Vec<JobId> = store.list_queue(&smithi(), 10).unwrap().iter().map(|j| j.id).collect();
        assert_eq!(listed, jobs);
        let tube = store.set_paused(&smithi(), true, &owner("op"), T0).unwrap();
        assert!(tube.paused);
        assert_eq!(tube.paused_by.as_deref(), Some("op"));
        assert!(!store.set_paused(&smithi(), false, &owner("op"), T0).unwrap().paused);
        assert_eq!(store.list_tubes().unwrap().len(), 1);
    }
}
