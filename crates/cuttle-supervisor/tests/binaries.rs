//! The shipped binaries as processes: the local runner does what a job config asks, and
//! the supervisor explains itself and refuses bad lab settings with one line.
//! (Its whole job life is tested with a real lab in cuttle-dispatcher's tests/lab.rs;
//! having tests here also makes `cargo test --workspace` build these binaries.)

use std::process::Command;

fn runner(config: &str) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cuttle-local-runner"))
        .arg("--job-config")
        .arg(&path)
        .arg("--archive")
        .arg(dir.path())
        .output()
        .unwrap();
    (output, dir)
}

#[test]
fn the_local_runner_ends_as_the_config_asks() {
    let (output, dir) = runner("runtime: 0.2\nstatus: pass\n");
    assert!(output.status.success());
    let summary = std::fs::read_to_string(dir.path().join("summary.yaml")).unwrap();
    assert!(summary.contains("success: true"), "{summary}");

    let (output, dir) = runner("status: fail\nroles: [[client.0]]\n");
    assert_eq!(output.status.code(), Some(1));
    let summary = std::fs::read_to_string(dir.path().join("summary.yaml")).unwrap();
    assert!(summary.contains("success: false"), "{summary}");

    let (output, _dir) = runner("status: sideways\n");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pass or fail"), "{stderr}");
}

#[test]
fn the_supervisor_refuses_bad_lab_settings_in_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_cuttle-supervisor"))
        .args(["--job-id", "1", "--api", "http://127.0.0.1:9"])
        .env(
            "CUTTLE_LAB_JSON",
            "{\"runner_command\": \"run {nonsense}\"}",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lab.runner_command") && stderr.contains("{nonsense}"),
        "{stderr}"
    );

    let help = Command::new(env!("CARGO_BIN_EXE_cuttle-supervisor"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("time limit") && text.contains("--release"),
        "{text}"
    );
}
