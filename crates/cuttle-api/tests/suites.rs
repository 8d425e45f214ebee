//! ScheduleSuite end to end: the real server, a real beanstalkd and a real database,
//! scheduling the Ceph-shaped test tree of cuttle-suite (tests/data/ceph).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use beanstalkc::Beanstalkc;
use tonic::Code;

use cuttle_api::Settings;
use cuttle_db::Store;
use cuttle_labkit::{Lab, LabBuilder};
use cuttle_proto::bearer::{Authed, Bearer};
use cuttle_proto::v1::auto_suite_service_client::AutoSuiteServiceClient;
use cuttle_proto::v1::suite_service_client::SuiteServiceClient;
use cuttle_proto::v1::{
    AddAutoSuiteRequest, DeleteAutoSuiteRequest, EditAutoSuiteRequest, GetAutoSuiteRequest,
    ListAutoSuitesRequest, ListRunsRequest,
};
use cuttle_proto::v1::{
    GetRunRequest, JobStatus, ScheduleSuiteResponse, SuiteArgs, UpdateJobStatusRequest,
};
use cuttle_testkit::shaman::{Build as ShamanBuild, Shaman};

fn tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cuttle-suite/tests/data/ceph")
}

/// A copy of the test tree to change.
fn copy_of_tree() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(tree().join("qa"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(copied.success(), "cp -a of the test tree failed");
    copy
}

async fn start(postgres: bool, threshold: u64) -> Lab {
    start_with(postgres, move |settings| {
        settings.suites.job_threshold = threshold
    })
    .await
}

/// The lab of these tests: three smithi nodes, put retries every second and a reaper
/// pass every 200 ms (which reports ended suite runs), then `adjust`.
async fn start_with(postgres: bool, adjust: impl FnOnce(&mut Settings) + Send + 'static) -> Lab {
    LabBuilder::new()
        .postgres(postgres)
        .nodes("smithi", 3)
        .settings(|settings| {
            settings.enqueue_retry = Duration::from_secs(1);
            settings.reap_interval = Duration::from_millis(200);
        })
        .settings(adjust)
        .start()
        .await
}

async fn suites(lab: &Lab, as_who: Bearer) -> SuiteServiceClient<Authed> {
    SuiteServiceClient::with_interceptor(lab.channel().await, as_who)
}

/// beanstalkd's count of ready jobs on the smithi tube.
fn ready_on_tube(lab: &Lab) -> u64 {
    let mut beanstalk = Beanstalkc::new()
        .host("127.0.0.1")
        .port(lab.beanstalkd.port())
        .connect()
        .unwrap();
    match beanstalk.stats_tube("smithi") {
        Ok(stats) => stats["current-jobs-ready"].parse().unwrap(),
        Err(_) => 0,
    }
}

/// The lab's database, opened beside cuttle-api.
fn store(lab: &Lab) -> Store {
    Store::open(lab.settings.db.clone(), 2).unwrap()
}

fn singleton(dir: &Path) -> SuiteArgs {
    SuiteArgs {
        suite: "rados/singleton".into(),
        suite_dir: dir.to_string_lossy().into_owned(),
        machine_type: "smithi".into(),
        seed: Some(7),
        owner: "alice".into(),
        ..SuiteArgs::default()
    }
}

async fn a_suite_is_queued_whole_with_its_pins(postgres: bool) {
    let lab = start(postgres, 500).await;
    let alice = lab.token("alice", "developer").await;
    let dry = suites(&lab, alice.clone())
        .await
        .schedule_suite(SuiteArgs {
            dry_run: true,
            ..singleton(&tree())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        dry.jobs.len(),
        54,
        "the recorded teuthology list has 54 jobs"
    );
    assert!(dry.run_name.is_empty() && dry.queued.is_empty());
    assert_eq!(ready_on_tube(&lab), 0, "a dry run queues nothing");
    let done = suites(&lab, alice)
        .await
        .schedule_suite(singleton(&tree()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.queued.len(), 54);
    let descriptions: Vec<&str> = done.jobs.iter().map(|j| j.description.as_str()).collect();
    let dry_descriptions: Vec<&str> = dry.jobs.iter().map(|j| j.description.as_str()).collect();
    assert_eq!(
        descriptions, dry_descriptions,
        "the same seed gives the same jobs"
    );
    let queued: Vec<&str> = done.queued.iter().map(|j| j.description.as_str()).collect();
    assert_eq!(queued, descriptions, "jobs are queued in matrix order");
    // Everything reached beanstalkd (puts are retried until they do).
    let mut ready = 0;
    for _ in 0..50 {
        ready = ready_on_tube(&lab);
        if ready == 54 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 54);
    let run = cuttle_core::RunName::parse(&done.run_name).unwrap();
    let pins = store(&lab)
        .suite_pins(&run)
        .unwrap()
        .expect("a suite run records its pins");
    assert_eq!(pins.seed, 7);
    assert_eq!(pins.teuthology_branch, "main");
    // Every job carries the run's refs in its config.
    for job in &done.queued {
        let config: serde_yaml::Value = serde_yaml::from_str(&job.config_yaml).unwrap();
        assert_eq!(config["suite"].as_str(), Some("rados:singleton"));
        assert_eq!(config["teuthology_branch"].as_str(), Some("main"));
        assert_eq!(config["seed"].as_u64(), Some(7));
        assert_eq!(config["owner"].as_str(), Some("alice"));
    }
}

#[tokio::test]
async fn a_suite_is_queued_whole_with_its_pins_sqlite() {
    a_suite_is_queued_whole_with_its_pins(false).await;
}

#[tokio::test]
async fn a_suite_is_queued_whole_with_its_pins_postgres() {
    a_suite_is_queued_whole_with_its_pins(true).await;
}

#[tokio::test]
async fn a_rerun_schedules_exactly_the_failed_and_dead_jobs() {
    let lab = start(false, 500).await;
    let done = suites(&lab, lab.admin())
        .await
        .schedule_suite(singleton(&tree()))
        .await
        .unwrap()
        .into_inner();
    let mut runs = lab.runs().await;
    let mut expected = Vec::new();
    for (i, job) in done.queued.iter().enumerate().take(12) {
        let to = match i % 4 {
            0 => JobStatus::Pass,
            1 => JobStatus::Fail,
            2 => JobStatus::Dead,
            _ => JobStatus::Killed,
        };
        if to != JobStatus::Killed {
            runs.update_job_status(UpdateJobStatusRequest {
                job_id: job.id,
                status: JobStatus::Running as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        runs.update_job_status(UpdateJobStatusRequest {
            job_id: job.id,
            status: to as i32,
            reason: if to == JobStatus::Pass || to == JobStatus::Fail {
                String::new()
            } else {
                "test".into()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        if matches!(to, JobStatus::Fail | JobStatus::Dead) {
            expected.push((job.description.clone(), job.config_yaml.clone()));
        }
    }
    let rerun = suites(&lab, lab.admin())
        .await
        .schedule_suite(SuiteArgs {
            rerun: done.run_name.clone(),
            owner: "alice".into(),
            ..SuiteArgs::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rerun.queued.len(), expected.len());
    assert_ne!(rerun.run_name, done.run_name);
    let detail = lab
        .runs()
        .await
        .get_run(GetRunRequest {
            name: rerun.run_name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<&str> = detail.jobs.iter().map(|j| j.description.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(got, want, "exactly the fail and dead jobs, in their order");
    for (job, (_, old_config)) in detail.jobs.iter().zip(&expected) {
        let new: serde_yaml::Value = serde_yaml::from_str(&job.config_yaml).unwrap();
        let mut old: serde_yaml::Value = serde_yaml::from_str(old_config).unwrap();
        // Only cuttle's own keys differ: the job id and the run name.
        for key in ["job_id", "cuttle_job_id", "name"] {
            old[key] = new[key].clone();
        }
        assert_eq!(new, old, "a rerun job keeps its config");
    }
    let pins = store(&lab)
        .suite_pins(&cuttle_core::RunName::parse(&rerun.run_name).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(pins.rerun_of.as_deref(), Some(done.run_name.as_str()));
    // Only killed statuses asked: the killed jobs.
    let killed = suites(&lab, lab.admin())
        .await
        .schedule_suite(SuiteArgs {
            rerun: done.run_name.clone(),
            rerun_statuses: vec!["killed".into()],
            dry_run: true,
            ..SuiteArgs::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(killed.jobs.len(), 3);
}

/// A copy of the test tree whose one fragment makes a job body too big for beanstalkd.
fn tree_with_a_huge_fragment() -> tempfile::TempDir {
    let copy = copy_of_tree();
    let big = "x".repeat(70_000);
    std::fs::write(
        copy.path()
            .join("qa/suites/rados/singleton/msgr-failures/many.yaml"),
        format!("overrides:\n  padding: {big}\n"),
    )
    .unwrap();
    copy
}

#[tokio::test]
async fn a_failure_half_way_leaves_no_run_and_nothing_queued() {
    let lab = start(false, 500).await;
    let copy = tree_with_a_huge_fragment();
    let error = suites(&lab, lab.admin())
        .await
        .schedule_suite(singleton(copy.path()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("over the"), "{}", error.message());
    assert_eq!(ready_on_tube(&lab), 0);
    let runs = store(&lab)
        .list_runs(&cuttle_db::RunFilter::default())
        .unwrap();
    assert!(runs.is_empty(), "the transaction wrote nothing: {runs:?}");
}

#[tokio::test]
async fn guard_rails_need_the_admin_role_to_pass() {
    let lab = start(false, 20).await;
    let alice = lab.token("alice", "developer").await;
    // 54 jobs over a threshold of 20.
    let error = suites(&lab, alice.clone())
        .await
        .schedule_suite(singleton(&tree()))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("job threshold of 20"),
        "{}",
        error.message()
    );
    let error = suites(&lab, alice.clone())
        .await
        .schedule_suite(SuiteArgs {
            job_threshold: Some(0),
            ..singleton(&tree())
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    // An urgent priority for a big run.
    let error = suites(&lab, alice.clone())
        .await
        .schedule_suite(SuiteArgs {
            priority: Some(40),
            limit: 5,
            ..singleton(&tree())
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("--force-priority"),
        "{}",
        error.message()
    );
    let error = suites(&lab, alice)
        .await
        .schedule_suite(SuiteArgs {
            priority: Some(40),
            limit: 5,
            force_priority: true,
            ..singleton(&tree())
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    // An admin passes both.
    let done = suites(&lab, lab.admin())
        .await
        .schedule_suite(SuiteArgs {
            priority: Some(40),
            force_priority: true,
            job_threshold: Some(0),
            ..singleton(&tree())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.queued.len(), 54);
}

#[tokio::test]
async fn bad_suites_are_refused_with_the_file_named_and_nothing_queued() {
    let lab = start(false, 500).await;
    let mut suites = suites(&lab, lab.admin()).await;
    let missing = suites
        .schedule_suite(SuiteArgs {
            suite: "rados/nope".into(),
            ..singleton(&tree())
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(
        missing.message().contains("rados/nope does not exist"),
        "{}",
        missing.message()
    );
    let subset = suites
        .schedule_suite(SuiteArgs {
            subset: "5/3".into(),
            ..singleton(&tree())
        })
        .await
        .unwrap_err();
    assert!(
        subset.message().contains("0/3 to 2/3"),
        "{}",
        subset.message()
    );
    let copy = copy_of_tree();
    std::fs::write(
        copy.path()
            .join("qa/suites/rados/singleton/msgr/async.yaml"),
        "overrides:\n  ceph: [unclosed\n",
    )
    .unwrap();
    let malformed = suites
        .schedule_suite(singleton(copy.path()))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("msgr/async.yaml") && malformed.message().contains("line 2"),
        "{}",
        malformed.message()
    );
    assert_eq!(ready_on_tube(&lab), 0);
    assert!(
        store(&lab)
            .list_runs(&cuttle_db::RunFilter::default())
            .unwrap()
            .is_empty()
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@t", "-c", "user.name=t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_git_suite_repository_is_cached_fetched_and_pinned() {
    let lab = start(false, 500).await;
    let repo = copy_of_tree();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "suites"]);
    let first = git(repo.path(), &["rev-parse", "HEAD"]);
    let args = SuiteArgs {
        suite_repo: repo.path().to_string_lossy().into_owned(),
        suite_dir: String::new(),
        suite_branch: "main".into(),
        dry_run: true,
        ..singleton(&tree())
    };
    let mut suites = suites(&lab, lab.admin()).await;
    let answer = suites
        .schedule_suite(args.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.suite_sha1, first);
    assert_eq!(answer.jobs.len(), 54);
    // The branch moves: the next request fetches it and pins the new commit.
    std::fs::write(
        repo.path()
            .join("qa/suites/rados/singleton/msgr-failures/rare.yaml"),
        "overrides: {}\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "one more facet"]);
    let second = git(repo.path(), &["rev-parse", "HEAD"]);
    let answer = suites
        .schedule_suite(args.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.suite_sha1, second);
    assert_eq!(answer.jobs.len(), 72, "3 x 4 x 2 x 3 x 1 x 3 choices");
    // An older commit is still there to pin.
    let answer = suites
        .schedule_suite(SuiteArgs {
            suite_sha1: first.clone(),
            ..args.clone()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.suite_sha1.as_str(), answer.jobs.len()),
        (first.as_str(), 54)
    );
    let error = suites
        .schedule_suite(SuiteArgs {
            suite_branch: "nope".into(),
            ..args
        })
        .await
        .unwrap_err();
    assert!(
        error.message().contains("no branch nope"),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn an_ended_suite_run_is_reported_once_and_mailed() {
    let mailbox = tempfile::tempdir().unwrap();
    let command = format!("cat >> {}/mail", mailbox.path().display());
    let lab = start_with(false, |settings| {
        settings.suites.mail_command = Some(command)
    })
    .await;
    let done = suites(&lab, lab.admin())
        .await
        .schedule_suite(SuiteArgs {
            email: "dev@example.com".into(),
            limit: 3,
            ..singleton(&tree())
        })
        .await
        .unwrap()
        .into_inner();
    let mut runs = lab.runs().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !mailbox.path().join("mail").exists(),
        "no report while jobs are queued"
    );
    for (job, to) in done
        .queued
        .iter()
        .zip([JobStatus::Pass, JobStatus::Fail, JobStatus::Dead])
    {
        runs.update_job_status(UpdateJobStatusRequest {
            job_id: job.id,
            status: JobStatus::Running as i32,
            ..Default::default()
        })
        .await
        .unwrap();
        runs.update_job_status(UpdateJobStatusRequest {
            job_id: job.id,
            status: to as i32,
            reason: if to == JobStatus::Dead {
                "hit max job timeout".into()
            } else {
                String::new()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut mail = String::new();
    for _ in 0..50 {
        mail = std::fs::read_to_string(mailbox.path().join("mail")).unwrap_or_default();
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        mail.starts_with("From: cuttle@localhost\nTo: dev@example.com\nSubject: "),
        "{mail}"
    );
    assert!(
        mail.contains(&format!(
            "{}: 1 passed, 1 failed, 1 dead, 0 killed",
            done.run_name
        )),
        "{mail}"
    );
    assert!(mail.contains("hit max job timeout"), "{mail}");
    // Once only, however many passes run.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = std::fs::read_to_string(mailbox.path().join("mail")).unwrap();
    assert_eq!(again.matches("Subject: ").count(), 1, "{again}");
}

#[tokio::test]
async fn suite_dirs_outside_the_labs_roots_are_refused() {
    let allowed = copy_of_tree();
    let root = allowed.path().to_owned();
    let lab = start_with(false, |settings| settings.suites.dir_roots = vec![root]).await;
    let mut suites = suites(&lab, lab.admin()).await;
    let outside = suites
        .schedule_suite(SuiteArgs {
            dry_run: true,
            ..singleton(&tree())
        })
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::PermissionDenied);
    assert!(
        outside.message().contains("suite_dir_roots"),
        "{}",
        outside.message()
    );
    let inside = suites
        .schedule_suite(SuiteArgs {
            dry_run: true,
            ..singleton(allowed.path())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inside.jobs.len(), 54);
}

#[tokio::test]
async fn presets_are_their_owners_and_schedule_with_overrides() {
    use cuttle_proto::v1::preset_service_client::PresetServiceClient;
    use cuttle_proto::v1::{
        DeletePresetRequest, GetPresetRequest, ListPresetsRequest, SavePresetRequest,
    };
    let lab = start(false, 500).await;
    let (alice, bob) = (
        lab.token("alice", "developer").await,
        lab.token("bob", "developer").await,
    );
    let channel = lab.channel().await;
    let presets = |who: Bearer| {
        let channel = channel.clone();
        async move { PresetServiceClient::with_interceptor(channel, who) }
    };
    let saved_args = SuiteArgs {
        filter_in: vec!["peer".into()],
        dry_run: true,
        run_name: "not-kept".into(),
        ..singleton(&tree())
    };
    let saved = presets(alice.clone())
        .await
        .save_preset(SavePresetRequest {
            owner: String::new(),
            name: "peers".into(),
            args: Some(saved_args.clone()),
            replace: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(saved.owner, "alice");
    let kept = saved.args.unwrap();
    assert!(
        !kept.dry_run && kept.run_name.is_empty(),
        "one-off choices are not kept"
    );
    // bob neither sees nor changes alice's preset; his own list is empty.
    let mut as_bob = presets(bob.clone()).await;
    for code in [
        as_bob
            .get_preset(GetPresetRequest {
                owner: "alice".into(),
                name: "peers".into(),
            })
            .await
            .unwrap_err()
            .code(),
        as_bob
            .delete_preset(DeletePresetRequest {
                owner: "alice".into(),
                name: "peers".into(),
            })
            .await
            .unwrap_err()
            .code(),
        as_bob
            .save_preset(SavePresetRequest {
                owner: "alice".into(),
                name: "peers".into(),
                args: Some(saved_args.clone()),
                replace: true,
            })
            .await
            .unwrap_err()
            .code(),
        as_bob
            .list_presets(ListPresetsRequest { owner: "*".into() })
            .await
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, Code::PermissionDenied);
    }
    assert!(
        as_bob
            .list_presets(ListPresetsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .presets
            .is_empty()
    );
    let bobs = suites(&lab, bob)
        .await
        .schedule_suite(SuiteArgs {
            preset: "peers".into(),
            owner: "alice".into(),
            ..SuiteArgs::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bobs.code(), Code::PermissionDenied);
    // An admin sees everyone's.
    let all = presets(lab.admin())
        .await
        .list_presets(ListPresetsRequest { owner: "*".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.presets.len(), 1);
    // alice schedules from it, laying --limit 3 over it.
    let done = suites(&lab, alice.clone())
        .await
        .schedule_suite(SuiteArgs {
            preset: "peers".into(),
            limit: 3,
            ..SuiteArgs::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.queued.len(), 3);
    assert!(
        done.jobs.iter().all(|j| j.description.contains("peer")),
        "the preset's filter applies"
    );
    assert_eq!(done.seed, 7, "the preset's seed applies");
    let missing = suites(&lab, alice.clone())
        .await
        .schedule_suite(SuiteArgs {
            preset: "nope".into(),
            ..SuiteArgs::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    presets(alice)
        .await
        .delete_preset(DeletePresetRequest {
            owner: String::new(),
            name: "peers".into(),
        })
        .await
        .unwrap();
}

// --- Build-aware scheduling: Shaman, AutoSuites, the build-status webhook.

const SECRET: &str = "a-test-secret-of-32-characters!!";
const SHA1: &str = "5d4e3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d";

/// A lab whose cuttle-api asks the Shaman double, takes signed webhooks and polls only
/// every `poll`.
async fn build_lab(shaman: &Shaman, poll: Duration) -> Lab {
    let url = shaman.url();
    let secret_dir = tempfile::tempdir().unwrap().keep();
    let secret_file = secret_dir.join("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    start_with(false, move |settings| {
        settings.builds.shaman_url = Some(url);
        settings.builds.webhook_secret_file = Some(secret_file);
        settings.builds.http_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.builds.shaman_poll = poll;
    })
    .await
}

/// The suite of these tests, on branch `wip-x` (teuthology's default distro, CentOS 9).
fn on_branch(dir: &Path, branch: &str) -> SuiteArgs {
    SuiteArgs {
        ceph_branch: branch.into(),
        filter_in: vec!["peer".into()],
        ..singleton(dir)
    }
}

/// `cuttle suite ... --wait-for-build` on `branch` as `who`: the whole answer.
async fn schedule_waiting(
    lab: &Lab,
    who: &Bearer,
    branch: &str,
) -> Result<ScheduleSuiteResponse, tonic::Status> {
    suites(lab, who.clone())
        .await
        .schedule_suite(SuiteArgs {
            wait_for_build: true,
            ..on_branch(&tree(), branch)
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The id of the AutoSuite `--wait-for-build` on `branch` keeps.
async fn kept_waiting(lab: &Lab, who: &Bearer, branch: &str) -> i64 {
    let answer = schedule_waiting(lab, who, branch).await.unwrap();
    let kept = answer.autosuite.expect("kept as an AutoSuite");
    assert_eq!(kept.state, "waiting_for_build");
    kept.id
}

/// POSTs `body` to the webhook signed with `secret` at `timestamp`; the status and body.
async fn post_webhook(lab: &Lab, body: &[u8], signed: Option<(&str, i64)>) -> (u16, String) {
    let url = format!("http://{}/webhook/build-status", lab.api.http_addr.unwrap());
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some((secret, timestamp)) = signed {
        let ts = timestamp.to_string();
        request = request.header("X-Cuttle-Timestamp", &ts).header(
            "X-Cuttle-Signature",
            cuttle_core::build::sign(secret.as_bytes(), &ts, body),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn completed(branch: &str, sha1: &str) -> String {
    format!(
        r#"{{"url": "https://jenkins.ceph.com/job/ceph-dev-build/77/", "ref": "{branch}", "status": "completed", "distro": "centos", "distro_version": "9", "flavor": "default", "sha1": "{sha1}"}}"#
    )
}

async fn autosuites(lab: &Lab, who: Bearer) -> AutoSuiteServiceClient<Authed> {
    AutoSuiteServiceClient::with_interceptor(lab.channel().await, who)
}

async fn autosuite(lab: &Lab, id: i64) -> cuttle_proto::v1::AutoSuite {
    autosuites(lab, lab.admin())
        .await
        .get_auto_suite(GetAutoSuiteRequest { id })
        .await
        .unwrap()
        .into_inner()
}

/// alice's runs, by name.
async fn runs_of(lab: &Lab, owner: &str) -> Vec<cuttle_proto::v1::Run> {
    lab.runs()
        .await
        .list_runs(ListRunsRequest {
            owner: Some(owner.into()),
            ..ListRunsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs
}

async fn wait_for_state(lab: &Lab, id: i64, state: &str) -> cuttle_proto::v1::AutoSuite {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = autosuite(lab, id).await;
        if found.state == state {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "autosuite {id} is still {} ({}), not {state}",
            found.state,
            found.reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_suite_waits_for_its_build_and_fires_exactly_once() {
    let shaman = Shaman::start();
    shaman.add(ShamanBuild::centos("wip-x", SHA1, "building"));
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let alice = lab.token("alice", "developer").await;
    // Not ready: refused, saying where it stands and how to wait.
    let refused = suites(&lab, alice.clone())
        .await
        .schedule_suite(on_branch(&tree(), "wip-x"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("building") && refused.message().contains("--wait-for-build"),
        "{}",
        refused.message()
    );
    let kept = schedule_waiting(&lab, &alice, "wip-x").await.unwrap();
    let waiting = kept.autosuite.expect("kept as an AutoSuite");
    assert_eq!(
        (waiting.state.as_str(), waiting.branch.as_str()),
        ("waiting_for_build", "wip-x")
    );
    assert!(kept.run_name.is_empty() && kept.queued.is_empty());
    assert_eq!(ready_on_tube(&lab), 0, "nothing expanded or queued yet");
    // The build completes: Shaman lists it ready, and Jenkins calls the webhook.
    shaman.set_status("wip-x", SHA1, "ready");
    let body = completed("wip-x", SHA1);
    let (status, answer) = post_webhook(&lab, body.as_bytes(), Some((SECRET, unix_now()))).await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (answer["matched"].as_u64(), answer["fired"].as_u64()),
        (Some(1), Some(1))
    );
    let fired = autosuite(&lab, waiting.id).await;
    assert_eq!(fired.state, "scheduled", "{}", fired.reason);
    // The run carries the build's sha1.
    let run = lab
        .runs()
        .await
        .get_run(GetRunRequest {
            name: fired.run.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.run.as_ref().unwrap().sha1, SHA1);
    let jobs = run.jobs.len() as u64;
    assert!(jobs > 0);
    assert!(run.jobs.iter().all(|job| job.config_yaml.contains(SHA1)));
    // The same webhook again, and a poll racing another copy of it: nothing more.
    let again = post_webhook(&lab, body.as_bytes(), Some((SECRET, unix_now())));
    let poll = async {
        let engine = cuttle_api::autosuites::AutoSuites::new(
            lab.api.app.clone(),
            cuttle_api::service::suites::SuiteApi::new(lab.api.app.clone()),
        );
        engine.tick().await.unwrap();
    };
    let ((status, answer), ()) = tokio::join!(again, poll);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""fired":0"#), "{answer}");
    assert_eq!(
        runs_of(&lab, "alice").await.len(),
        1,
        "one run, whatever races"
    );
    assert_eq!(ready_on_tube(&lab), jobs);
    let timeline: Vec<String> = autosuite(&lab, waiting.id)
        .await
        .timeline
        .iter()
        .map(|e| e.to.clone())
        .collect();
    assert_eq!(timeline, ["waiting_for_build", "scheduling", "scheduled"]);
    // A ready build schedules at once, with its sha1.
    let other = "0123456789012345678901234567890123456789";
    shaman.add(ShamanBuild::centos("wip-ready", other, "ready"));
    let now = suites(&lab, alice)
        .await
        .schedule_suite(on_branch(&tree(), "wip-ready"))
        .await
        .unwrap()
        .into_inner();
    assert!(now.autosuite.is_none() && !now.run_name.is_empty());
    assert!(now.queued.iter().all(|job| job.config_yaml.contains(other)));
}

#[tokio::test]
async fn the_poll_fires_a_suite_whose_webhook_was_lost() {
    let shaman = Shaman::start();
    shaman.add(ShamanBuild::centos("wip-lost", SHA1, "queued"));
    let lab = build_lab(&shaman, Duration::from_secs(1)).await;
    let alice = lab.token("alice", "developer").await;
    let kept = kept_waiting(&lab, &alice, "wip-lost").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(autosuite(&lab, kept).await.state, "waiting_for_build");
    // Slow, but inside the timeout: still an answer.
    shaman.set_delay(Some(Duration::from_millis(1500)));
    shaman.set_status("wip-lost", SHA1, "ready");
    let fired = wait_for_state(&lab, kept, "scheduled").await;
    let timeline: Vec<&str> = fired.timeline.iter().map(|e| e.reason.as_str()).collect();
    assert!(
        timeline.iter().any(|r| r.contains("Shaman poll")),
        "{timeline:?}"
    );
    assert_eq!(runs_of(&lab, "alice").await.len(), 1);
}

#[tokio::test]
async fn a_failed_build_ends_its_autosuites_with_its_url() {
    let shaman = Shaman::start();
    shaman.add(ShamanBuild::centos("wip-f", SHA1, "building"));
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let alice = lab.token("alice", "developer").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(kept_waiting(&lab, &alice, "wip-f").await);
    }
    let body = completed("wip-f", SHA1).replace("completed", "failed");
    let (status, answer) = post_webhook(&lab, body.as_bytes(), Some((SECRET, unix_now()))).await;
    assert_eq!(status, 200, "{answer}");
    for id in ids {
        let ended = autosuite(&lab, id).await;
        assert_eq!(ended.state, "build_failed");
        assert_eq!(
            ended.build_url,
            "https://jenkins.ceph.com/job/ceph-dev-build/77/"
        );
    }
    assert!(runs_of(&lab, "alice").await.is_empty());
    assert_eq!(ready_on_tube(&lab), 0);
    // Shaman knowing it failed refuses a new request, even one that would wait.
    shaman.set_status("wip-f", SHA1, "failed");
    let refused = schedule_waiting(&lab, &alice, "wip-f").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("jenkins.ceph.com"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn a_restart_mid_firing_neither_loses_nor_doubles_the_run() {
    let shaman = Shaman::start();
    shaman.add(ShamanBuild::centos("wip-r", SHA1, "building"));
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let alice = lab.token("alice", "developer").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(kept_waiting(&lab, &alice, "wip-r").await);
    }
    // A firing claimed the first and its cuttle-api died before the run existed; the
    // second's died after making the run but before recording it.
    lab.api.stop();
    let store = store(&lab);
    let now = cuttle_core::UnixMillis(unix_now() * 1000);
    assert!(
        store
            .claim_autosuite(ids[0], "webhook", "alice-fired-first", SHA1, now)
            .unwrap()
    );
    let lab = lab.restart().await;
    let first = wait_for_state(&lab, ids[0], "scheduled").await;
    assert_eq!(first.run, "alice-fired-first");
    assert_eq!(runs_of(&lab, "alice").await.len(), 1);
    lab.api.stop();
    assert!(
        store
            .claim_autosuite(ids[1], "webhook", "alice-fired-first", SHA1, now)
            .unwrap()
    );
    let lab = lab.restart().await;
    let second = wait_for_state(&lab, ids[1], "scheduled").await;
    assert!(
        second
            .timeline
            .last()
            .unwrap()
            .reason
            .contains("alice-fired-first"),
        "{:?}",
        second.timeline
    );
    assert_eq!(
        runs_of(&lab, "alice").await.len(),
        1,
        "the run was made once"
    );
    // A webhook after all that fires nothing.
    let body = completed("wip-r", SHA1);
    let (status, answer) = post_webhook(&lab, body.as_bytes(), Some((SECRET, unix_now()))).await;
    assert_eq!(
        (status, answer.contains(r#""matched":0"#)),
        (200, true),
        "{answer}"
    );
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_change_nothing() {
    let shaman = Shaman::start();
    shaman.add(ShamanBuild::centos("wip-b", SHA1, "building"));
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let alice = lab.token("alice", "developer").await;
    let kept = kept_waiting(&lab, &alice, "wip-b").await;
    let good = completed("wip-b", SHA1);
    let now = unix_now();
    let huge = format!(
        r#"{{"url": "{}", "ref": "wip-b", "status": "completed"}}"#,
        "x".repeat(5 << 20)
    );
    type Case<'a> = (&'a str, Vec<u8>, Option<(&'a str, i64)>, u16);
    let cases: Vec<Case> = vec![
        ("unsigned", good.clone().into_bytes(), None, 401),
        (
            "wrong secret",
            good.clone().into_bytes(),
            Some(("not-the-secret-at-all", now)),
            401,
        ),
        (
            "replayed",
            good.clone().into_bytes(),
            Some((SECRET, now - 600)),
            401,
        ),
        (
            "from the future",
            good.clone().into_bytes(),
            Some((SECRET, now + 600)),
            401,
        ),
        (
            "invalid JSON",
            b"{\"ref\": ".to_vec(),
            Some((SECRET, now)),
            400,
        ),
        (
            "unknown field",
            good.replace("\"url\"", "\"uri\"").into_bytes(),
            Some((SECRET, now)),
            400,
        ),
        (
            "unknown status",
            good.replace("completed", "started").into_bytes(),
            Some((SECRET, now)),
            422,
        ),
        ("5 MB", huge.into_bytes(), Some((SECRET, now)), 413),
    ];
    for (what, body, signed, expected) in cases {
        let (status, answer) = post_webhook(&lab, &body, signed).await;
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer.contains("nothing was changed"), "{what}: {answer}");
    }
    // A body signed for another timestamp than its header says.
    let ts = now.to_string();
    let forged = reqwest::Client::new()
        .post(format!(
            "http://{}/webhook/build-status",
            lab.api.http_addr.unwrap()
        ))
        .header("X-Cuttle-Timestamp", (now + 1).to_string())
        .header(
            "X-Cuttle-Signature",
            cuttle_core::build::sign(SECRET.as_bytes(), &ts, good.as_bytes()),
        )
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(autosuite(&lab, kept).await.state, "waiting_for_build");
    assert!(runs_of(&lab, "alice").await.is_empty());
    assert_eq!(ready_on_tube(&lab), 0);
}

#[tokio::test]
async fn shaman_down_or_unknown_refuses_or_keeps_the_request() {
    let shaman = Shaman::start();
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let alice = lab.token("alice", "developer").await;
    let unknown = suites(&lab, alice.clone())
        .await
        .schedule_suite(on_branch(&tree(), "wip-never-pushed"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    assert!(
        unknown.message().contains("knows no build"),
        "{}",
        unknown.message()
    );
    shaman.set_down(true);
    let down = suites(&lab, alice.clone())
        .await
        .schedule_suite(on_branch(&tree(), "wip-x"))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
    assert!(down.message().contains(&shaman.url()), "{}", down.message());
    // Waiting needs no answer now: the poll asks later.
    kept_waiting(&lab, &alice, "wip-x").await;
    assert!(shaman.searches() >= 3);
}

#[tokio::test]
async fn autosuites_are_their_owners_and_an_admins() {
    let shaman = Shaman::start();
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let (alice, bob) = (
        lab.token("alice", "developer").await,
        lab.token("bob", "developer").await,
    );
    let added = autosuites(&lab, alice.clone())
        .await
        .add_auto_suite(AddAutoSuiteRequest {
            args: Some(on_branch(&tree(), "wip-o")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.owner.as_str(), added.timeline.len()), ("alice", 1));
    let id = added.id;
    let mut as_bob = autosuites(&lab, bob).await;
    let codes = [
        as_bob
            .get_auto_suite(GetAutoSuiteRequest { id })
            .await
            .unwrap_err()
            .code(),
        as_bob
            .edit_auto_suite(EditAutoSuiteRequest {
                id,
                args: Some(SuiteArgs {
                    priority: Some(10),
                    ..SuiteArgs::default()
                }),
            })
            .await
            .unwrap_err()
            .code(),
        as_bob
            .delete_auto_suite(DeleteAutoSuiteRequest { id })
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::PermissionDenied; 3]);
    let listed = as_bob
        .list_auto_suites(ListAutoSuitesRequest {
            owner: "alice".into(),
            all: false,
        })
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::PermissionDenied);
    assert!(
        as_bob
            .list_auto_suites(ListAutoSuitesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .autosuites
            .is_empty()
    );
    // Its owner edits it; an admin sees, edits and deletes anyone's.
    let edited = autosuites(&lab, alice)
        .await
        .edit_auto_suite(EditAutoSuiteRequest {
            id,
            args: Some(SuiteArgs {
                ceph_branch: "wip-o2".into(),
                ..SuiteArgs::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (edited.branch.as_str(), edited.args.unwrap().filter_in),
        ("wip-o2", vec!["peer".to_owned()])
    );
    let mut as_admin = autosuites(&lab, lab.admin()).await;
    let all = as_admin
        .list_auto_suites(ListAutoSuitesRequest {
            owner: String::new(),
            all: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.autosuites.len(), 1);
    as_admin
        .edit_auto_suite(EditAutoSuiteRequest {
            id,
            args: Some(SuiteArgs {
                priority: Some(50),
                ..SuiteArgs::default()
            }),
        })
        .await
        .unwrap();
    as_admin
        .delete_auto_suite(DeleteAutoSuiteRequest { id })
        .await
        .unwrap();
    let gone = as_admin
        .get_auto_suite(GetAutoSuiteRequest { id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn an_autosuite_from_a_preset_expires_when_its_build_never_comes() {
    use cuttle_proto::v1::SavePresetRequest;
    use cuttle_proto::v1::preset_service_client::PresetServiceClient;
    let shaman = Shaman::start();
    let url = shaman.url();
    let lab = start_with(false, move |settings| {
        settings.builds.shaman_url = Some(url);
        settings.builds.shaman_poll = Duration::from_millis(200);
        settings.builds.autosuite_max_age = Duration::from_secs(2);
    })
    .await;
    let alice = lab.token("alice", "developer").await;
    PresetServiceClient::with_interceptor(lab.channel().await, alice.clone())
        .save_preset(SavePresetRequest {
            owner: String::new(),
            name: "peers".into(),
            args: Some(on_branch(&tree(), "main")),
            replace: false,
        })
        .await
        .unwrap();
    // The preset gives the suite; the request, the branch and the distro.
    let added = autosuites(&lab, alice)
        .await
        .add_auto_suite(AddAutoSuiteRequest {
            args: Some(SuiteArgs {
                preset: "peers".into(),
                ceph_branch: "wip-never".into(),
                distro: "ubuntu".into(),
                ..SuiteArgs::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let args = added.args.clone().unwrap();
    assert_eq!(
        (
            args.suite.as_str(),
            args.filter_in.clone(),
            added.branch.as_str(),
            added.distro.as_str()
        ),
        (
            "rados/singleton",
            vec!["peer".to_owned()],
            "wip-never",
            "ubuntu"
        )
    );
    // Shaman keeps saying it knows no such build, until the AutoSuite is too old.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(autosuite(&lab, added.id).await.state, "waiting_for_build");
    assert!(shaman.searches() >= 2, "the poll asks Shaman");
    let expired = wait_for_state(&lab, added.id, "expired").await;
    assert!(
        expired.reason.contains("autosuite_max_age_h"),
        "{}",
        expired.reason
    );
    assert!(runs_of(&lab, "alice").await.is_empty());
}

/// teuthology's own `teuthology-lock --list` and `--brief` read cuttle's nodes through the
/// paddles API on cuttle-api's HTTP listener; with anonymous reads closed, only a token
/// (basic auth's password, from the lock_server URL) gets them.
// teuthology-lock runs as a blocking child process: the server needs a thread of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teuthology_lock_lists_cuttles_nodes_through_the_paddles_api() {
    use cuttle_proto::v1::node_service_client::NodeServiceClient;
    use cuttle_proto::v1::{LockNamedNodesRequest, UpdateNodeRequest};
    let Some(venv) = cuttle_testkit::teuthology::find_venv(None) else {
        assert!(
            std::env::var_os("CUTTLE_NO_TEUTHOLOGY").is_some(),
            "teuthology 1.3.0 is not installed; run scripts/test.sh (it installs it) or set CUTTLE_NO_TEUTHOLOGY=1 to skip"
        );
        return;
    };
    let lab = start_with(false, |settings| {
        settings.builds.http_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.anonymous_reads = false;
    })
    .await;
    let alice = lab.token("alice", "developer").await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let mut nodes = NodeServiceClient::with_interceptor(lab.channel().await, lab.admin());
    nodes
        .update_node(UpdateNodeRequest {
            name: "smithi002".into(),
            ssh_key: Some(format!("smithi002 {key}")),
            ..Default::default()
        })
        .await
        .unwrap();
    NodeServiceClient::with_interceptor(lab.channel().await, alice.clone())
        .lock_named_nodes(LockNamedNodesRequest {
            names: vec!["smithi002".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let http = lab.api.http_addr.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let teuthology_lock = |lock_server: String, args: &[&str]| {
        let config = scratch.path().join("teuthology.yaml");
        std::fs::write(
            &config,
            format!(
                "lock_server: {lock_server}\nresults_server: ''\nqueue_host: ''\nlab_domain: ''\n"
            ),
        )
        .unwrap();
        let t = std::time::Instant::now();
        let o = Command::new(venv.join("bin/teuthology-lock"))
            .args(args)
            .env("TEUTHOLOGY_CONFIG", &config)
            .env("HOME", scratch.path())
            .output()
            .unwrap();
        eprintln!(
            "TIMING {args:?} {:?} {}",
            t.elapsed(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        o
    };
    let token = std::fs::read_to_string(lab.data_dir().join("admin.token")).unwrap();
    let with_token = format!("http://teuthology:{}@{http}/paddles", token.trim());
    let listed = teuthology_lock(
        with_token.clone(),
        &["--list", "--all", "--machine-type", "smithi"],
    );
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{stdout}");
    let locked = nodes.iter().find(|n| n["name"] == "smithi002").unwrap();
    assert_eq!(
        (locked["locked"].as_bool(), locked["locked_by"].as_str()),
        (Some(true), Some("alice"))
    );
    assert_eq!(locked["ssh_pub_key"], key);
    let brief = teuthology_lock(with_token, &["--brief", "--owner", "alice"]);
    let stdout = String::from_utf8_lossy(&brief.stdout);
    assert!(
        stdout.contains("smithi002") && stdout.contains("locked") && stdout.contains("alice"),
        "{stdout}"
    );
    assert!(!stdout.contains("smithi001"), "only alice's: {stdout}");
    // Reads are closed here: without the token teuthology-lock gets nothing.
    let refused = reqwest::get(format!("http://{http}/paddles/nodes/"))
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    // Locking through it is locking in cuttle, with cuttle's roles: alice locks as
    // herself with her token; bob may not unlock alice's node nor lock for her.
    let as_user = |secret: &str| format!("http://x:{secret}@{http}/paddles");
    let (alice_secret, bob_secret) = (
        lab.token_secret("alice", "developer").await,
        lab.token_secret("bob", "developer").await,
    );
    let held = || {
        store(&lab)
            .list_nodes(&cuttle_db::NodeFilter::default())
            .unwrap()
            .into_iter()
            .filter(|n| n.lock.as_ref().is_some_and(|l| l.owner.as_str() == "alice"))
            .map(|n| n.name.to_string())
            .collect::<Vec<_>>()
    };
    let many = [
        "--lock-many",
        "1",
        "--machine-type",
        "smithi",
        "--owner",
        "alice",
    ];
    let locked = teuthology_lock(as_user(&alice_secret), &many);
    assert!(
        locked.status.success(),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    assert_eq!(held().len(), 2, "smithi002 and the one --lock-many took");
    // teuthology-lock --unlock first tries to stop the node over ssh (25 s on these
    // nodes, which are not real), so bob's attempt is teuthology's own request, sent here.
    let bobs = reqwest::Client::new()
        .put(format!("http://{http}/paddles/nodes/smithi002/lock/"))
        .basic_auth("bob", Some(&bob_secret))
        .body(
            r#"{"name": "smithi002", "locked": false, "locked_by": "alice", "description": null}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status().as_u16(), 403);
    assert!(
        held().contains(&"smithi002".to_owned()),
        "bob unlocked alice's node"
    );
    let unlock = ["--unlock", "smithi002", "--owner", "alice"];
    teuthology_lock(as_user(&bob_secret), &many);
    assert_eq!(held().len(), 2, "bob locked a node for alice");
    let unlocked = teuthology_lock(as_user(&alice_secret), &unlock);
    assert!(
        unlocked.status.success(),
        "{}",
        String::from_utf8_lossy(&unlocked.stderr)
    );
    assert_eq!(held().len(), 1);
    // Runs and jobs read as paddles shows them; reports are for services only.
    let created = lab
        .runs()
        .await
        .create_run(cuttle_proto::v1::CreateRunRequest {
            name: "alice-paddles".into(),
            owner: "alice".into(),
            jobs: vec![cuttle_proto::v1::JobSpec {
                machine_type: "smithi".into(),
                config_yaml: "runtime: 0\n".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let job_id = created.jobs[0].id;
    let run: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{http}/paddles/runs/alice-paddles/"))
        .basic_auth("alice", Some(&alice_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (run["user"].as_str(), run["jobs"][0]["status"].as_str()),
        (Some("alice"), Some("queued")),
        "{run}"
    );
    let report = reqwest::Client::new()
        .put(format!(
            "http://{http}/paddles/runs/alice-paddles/jobs/{job_id}/"
        ))
        .basic_auth("alice", Some(&alice_secret))
        .body(r#"{"status": "pass", "success": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        report.status().as_u16(),
        403,
        "a developer may not report a job's result"
    );
    let runs: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{http}/paddles/runs/"))
        .basic_auth("alice", Some(&alice_secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs[0]["name"], "alice-paddles", "{runs}");
    assert_eq!(runs[0]["results"]["queued"], 1, "{runs}");
    // teuthology-lock --update takes a node down (an admin's token, as cuttle's rules
    // want for MarkNode).
    let token = std::fs::read_to_string(lab.data_dir().join("admin.token")).unwrap();
    let updated = teuthology_lock(
        format!("http://teuthology:{}@{http}/paddles", token.trim()),
        &[
            "--update",
            "--status",
            "down",
            "--desc",
            "broken psu",
            "smithi003",
        ],
    );
    assert!(
        updated.status.success(),
        "{}",
        String::from_utf8_lossy(&updated.stderr)
    );
    let node = store(&lab)
        .get_node(&cuttle_core::NodeName::parse("smithi003").unwrap())
        .unwrap();
    assert_eq!((node.up, node.description.as_str()), (false, "broken psu"));
}

/// `GET /metrics` counts the lab as it is (live jobs, nodes, AutoSuites) and what
/// happened (RPCs by method and outcome, webhook answers), in Prometheus' text format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_lab_and_the_calls() {
    use cuttle_proto::v1::node_service_client::NodeServiceClient;
    use cuttle_proto::v1::{LockNamedNodesRequest, MarkNodeRequest};
    let shaman = Shaman::start();
    shaman.add(ShamanBuild::centos("wip-m", SHA1, "building"));
    shaman.add(ShamanBuild::centos("main", SHA1, "ready"));
    let lab = build_lab(&shaman, Duration::from_secs(3600)).await;
    let alice = lab.token("alice", "developer").await;
    let queued = suites(&lab, alice.clone())
        .await
        .schedule_suite(singleton(&tree()))
        .await
        .unwrap()
        .into_inner()
        .queued
        .len();
    kept_waiting(&lab, &alice, "wip-m").await;
    NodeServiceClient::with_interceptor(lab.channel().await, alice)
        .lock_named_nodes(LockNamedNodesRequest {
            names: vec!["smithi001".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    NodeServiceClient::with_interceptor(lab.channel().await, lab.admin())
        .mark_node(MarkNodeRequest {
            name: "smithi003".into(),
            up: false,
            reason: "broken psu".into(),
            job_id: None,
        })
        .await
        .unwrap();
    // A tube is known once a dispatcher or an operator used it.
    cuttle_proto::v1::queue_service_client::QueueServiceClient::with_interceptor(
        lab.channel().await,
        lab.admin(),
    )
    .set_queue_paused(cuttle_proto::v1::SetQueuePausedRequest {
        machine_type: "smithi".into(),
        paused: true,
        owner: "operator".into(),
    })
    .await
    .unwrap();
    let (status, _) = post_webhook(&lab, b"{}", None).await;
    assert_eq!(status, 401);
    let http = lab.api.http_addr.unwrap();
    let response = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    for line in [
        format!("cuttle_jobs{{machine_type=\"smithi\",status=\"queued\"}} {queued}"),
        "cuttle_nodes{machine_type=\"smithi\",state=\"locked\"} 1".to_owned(),
        "cuttle_nodes{machine_type=\"smithi\",state=\"free\"} 1".to_owned(),
        "cuttle_nodes{machine_type=\"smithi\",state=\"down\"} 1".to_owned(),
        "cuttle_autosuites{state=\"waiting_for_build\"} 1".to_owned(),
        // Paused, and no dispatcher holds its lease here.
        "cuttle_tube_lease_held{machine_type=\"smithi\"} 0".to_owned(),
        "cuttle_tube_paused{machine_type=\"smithi\"} 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let count = |prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count(
            "cuttle_rpc_duration_seconds_count{method=\"SuiteService/ScheduleSuite\",code=\"Ok\"}"
        ) >= 2,
        "{text}"
    );
    assert!(
        count("cuttle_webhook_requests_total{status=\"401\"}") >= 1,
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
}
