//! The operator guide's backup and restore, run as written, on both databases: a backup
//! taken while cuttle-api serves, the database lost, the backup restored, and cuttle-api
//! started on it finds the run it had.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cuttle_api::{RunningApi, Settings};
use cuttle_db::DatabaseTarget;
use cuttle_proto::bearer::Bearer;
use cuttle_proto::v1::node_service_client::NodeServiceClient;
use cuttle_proto::v1::run_service_client::RunServiceClient;
use cuttle_proto::v1::{AddNodeRequest, CreateRunRequest, GetRunRequest, JobSpec};
use cuttle_testkit::{Beanstalkd, PostgresDatabase, SqliteFile};
use tonic::transport::Channel;

async fn start(db: &str, data_dir: &Path, beanstalkd: &Beanstalkd) -> RunningApi {
    let settings = Settings {
        enqueue_retry: Duration::from_secs(1),
        ..Settings::local(
            DatabaseTarget::parse(db).unwrap(),
            beanstalkd.addr().to_string(),
            data_dir.to_owned(),
        )
    };
    cuttle_api::spawn(settings, cuttle_api::CancellationToken::new())
        .await
        .unwrap()
}

async fn admin(api: &RunningApi, data_dir: &Path) -> (Channel, Bearer) {
    let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    let channel = Channel::from_shared(api.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, Bearer::new(Some(token.trim())).unwrap())
}

async fn runs(api: &RunningApi, data_dir: &Path) -> RunServiceClient<cuttle_proto::bearer::Authed> {
    let (channel, bearer) = admin(api, data_dir).await;
    RunServiceClient::with_interceptor(channel, bearer)
}

async fn schedule(api: &RunningApi, data_dir: &Path) {
    let (channel, bearer) = admin(api, data_dir).await;
    NodeServiceClient::with_interceptor(channel, bearer)
        .add_node(AddNodeRequest {
            name: "smithi001".into(),
            machine_type: "smithi".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let spec = JobSpec {
        machine_type: "smithi".into(),
        config_yaml: "runtime: 1\n".into(),
        description: "backup/me".into(),
        ..Default::default()
    };
    runs(api, data_dir)
        .await
        .create_run(CreateRunRequest {
            name: "before-the-backup".into(),
            owner: "alice".into(),
            jobs: vec![spec; 3],
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn assert_restored(api: &RunningApi, data_dir: &Path) {
    let run = runs(api, data_dir)
        .await
        .get_run(GetRunRequest {
            name: "before-the-backup".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(run.jobs.len(), 3);
    assert!(run.jobs.iter().all(|job| job.description == "backup/me"));
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn an_sqlite_backup_taken_while_serving_restores() {
    let beanstalkd = Beanstalkd::start();
    let data = SqliteFile::create();
    let api = start(&data.url(), data.dir(), &beanstalkd).await;
    schedule(&api, data.dir()).await;
    // While cuttle-api serves (WAL mode: copying the file alone is not a backup).
    let backup = data.dir().join("backup.db");
    run(Command::new("sqlite3")
        .arg(data.path())
        .arg(format!(".backup {}", backup.display())));
    api.stop();
    api.wait().await.unwrap();
    // The database is lost, with its -wal and -shm.
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", data.path().display());
        let _ = std::fs::remove_file(file);
    }
    std::fs::copy(&backup, data.path()).unwrap();
    let api = start(&data.url(), data.dir(), &beanstalkd).await;
    assert_restored(&api, data.dir()).await;
}

#[tokio::test]
async fn a_postgres_dump_restores_into_a_new_database() {
    let beanstalkd = Beanstalkd::start();
    let data = tempfile::tempdir().unwrap();
    let old = PostgresDatabase::create();
    let api = start(old.url(), data.path(), &beanstalkd).await;
    schedule(&api, data.path()).await;
    let dump = data.path().join("cuttle.dump");
    run(Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(old.url()));
    api.stop();
    api.wait().await.unwrap();
    let new = PostgresDatabase::create();
    run(Command::new("pg_restore")
        .args(["--no-owner", "--dbname", new.url()])
        .arg(&dump));
    let api = start(new.url(), data.path(), &beanstalkd).await;
    assert_restored(&api, data.path()).await;
}
