//! The operator guide's backup and restore, run as written, on both databases: a backup
//! taken while cuttle-api serves, the database lost, the backup restored, and cuttle-api
//! started on it finds the run it had.

use std::process::Command;
use std::time::Duration;

use cuttle_db::DatabaseTarget;
use cuttle_labkit::{Lab, LabBuilder};
use cuttle_proto::v1::{CreateRunRequest, GetRunRequest, JobSpec};
use cuttle_testkit::PostgresDatabase;

async fn start(postgres: bool) -> Lab {
    LabBuilder::new()
        .postgres(postgres)
        .settings(|settings| settings.enqueue_retry = Duration::from_secs(1))
        .start()
        .await
}

async fn schedule(lab: &Lab) {
    lab.add_node("smithi001", "smithi").await;
    let spec = JobSpec {
        machine_type: "smithi".into(),
        config_yaml: "runtime: 1\n".into(),
        description: "backup/me".into(),
        ..Default::default()
    };
    lab.runs()
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

async fn assert_restored(lab: &Lab) {
    let run = lab
        .runs()
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
    let lab = start(false).await;
    schedule(&lab).await;
    let database = lab.sqlite_path().unwrap().to_owned();
    // While cuttle-api serves (WAL mode: copying the file alone is not a backup).
    let backup = lab.data_dir().join("backup.db");
    run(Command::new("sqlite3")
        .arg(&database)
        .arg(format!(".backup {}", backup.display())));
    let lab = lab
        .restart_with(|_| {
            // The database is lost, with its -wal and -shm.
            for suffix in ["", "-wal", "-shm"] {
                let file = format!("{}{suffix}", database.display());
                let _ = std::fs::remove_file(file);
            }
            std::fs::copy(&backup, &database).unwrap();
        })
        .await;
    assert_restored(&lab).await;
}

#[tokio::test]
async fn a_postgres_dump_restores_into_a_new_database() {
    let lab = start(true).await;
    schedule(&lab).await;
    let DatabaseTarget::Postgres(old) = lab.settings.db.clone() else {
        panic!("the lab runs on PostgreSQL");
    };
    let dump = lab.data_dir().join("cuttle.dump");
    run(Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&old));
    let new = PostgresDatabase::create();
    let lab = lab
        .restart_with(|settings| {
            run(Command::new("pg_restore")
                .args(["--no-owner", "--dbname", new.url()])
                .arg(&dump));
            settings.db = DatabaseTarget::parse(new.url()).unwrap();
        })
        .await;
    assert_restored(&lab).await;
}
