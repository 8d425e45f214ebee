//! The real teuthology-suite 1.3.0, run offline: a throwaway local "teuthology
//! repository" and a config with no lock or results server, so `--dry-run` needs no
//! network. scripts/test.sh installs teuthology into a cached venv.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where teuthology is installed: `CUTTLE_TEUTHOLOGY_VENV`, else
/// `~/.cache/cuttle-teuthology-venv`; `None` when teuthology-suite is not there.
pub fn find_venv(given: Option<PathBuf>) -> Option<PathBuf> {
    let venv = given
        .or_else(|| std::env::var_os("CUTTLE_TEUTHOLOGY_VENV").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cuttle-teuthology-venv"))
        })?;
    venv.join("bin/teuthology-suite").exists().then_some(venv)
}

/// The teuthology-suite options that keep a dry run offline: fixed ceph and suite refs
/// with no lookup, no kernel lookup, and an architecture so no lock server is asked.
pub const OFFLINE_ARGS: [&str; 18] = [
    "-c",
    "main",
    "-m",
    "smithi",
    "-k",
    "none",
    "-S",
    "0123456789abcdef0123456789abcdef01234567",
    "--suite-branch",
    "main",
    "--suite-sha1",
    "abc",
    "--validate-sha1",
    "false",
    "--arch",
    "x86_64",
    "--job-threshold",
    "0",
];

/// A teuthology that runs `teuthology-suite --dry-run` offline.
#[derive(Debug)]
pub struct OfflineTeuthology {
    venv: PathBuf,
    config: PathBuf,
    _scratch: tempfile::TempDir,
}

impl OfflineTeuthology {
    pub fn new(venv: PathBuf) -> OfflineTeuthology {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        let repo = scratch.path().join("teuthology");
        std::fs::create_dir_all(&repo).expect("the teuthology repository directory");
        for args in [
            &["init", "-q", "-b", "main"][..],
            &[
                "-c",
                "user.email=t@t",
                "-c",
                "user.name=t",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "t",
            ],
        ] {
            let status = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .status()
                .expect("git runs");
            assert!(status.success(), "git {args:?} failed");
        }
        let config = scratch.path().join("teuthology.yaml");
        std::fs::write(
            &config,
            format!(
                "lock_server: ''\nresults_server: ''\nteuthology_path: {}\nsuite_verify_ceph_hash: false\n",
                repo.display()
            ),
        )
        .expect("the teuthology config");
        OfflineTeuthology {
            venv,
            config,
            _scratch: scratch,
        }
    }

    /// `teuthology-suite --dry-run -v` of `suite` in the checkout `suite_dir` with
    /// `seed`, and the fixed refs and options that keep it offline; add options to it.
    pub fn suite_dry_run(&self, suite_dir: &Path, suite: &str, seed: u64) -> Command {
        let mut command = Command::new(self.venv.join("bin/teuthology-suite"));
        command
            .args(["--dry-run", "-v", "-s", suite, "--seed", &seed.to_string()])
            .args(OFFLINE_ARGS)
            .arg("--suite-dir")
            .arg(suite_dir)
            .env("TEUTHOLOGY_CONFIG", &self.config);
        command
    }
}
