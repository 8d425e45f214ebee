//! cuttle-api's cached clones of suite repositories, and the git lookups that pin a run
//! to commits.
//!
//! Each repository gets a bare mirror under `DATA_DIR/suite-cache/<hash of its URL>/`,
//! fetched on every request that names it, and one checkout per commit next to it,
//! made once and reused (a commit never changes). Requests for the same repository are
//! serialised by a lock; git runs as a child process with prompts off, so a repository
//! that asks for credentials fails instead of hanging.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A git failure, with what was asked and what git said.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git ({0}); install git on cuttle-api's host")]
    Spawn(std::io::Error),
    #[error("git {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("{repo} has no branch {branch}; check --suite-branch / -c (or push the branch)")]
    NoBranch { repo: String, branch: String },
    #[error("{repo} has no commit {sha1}; check --suite-sha1")]
    NoCommit { repo: String, sha1: String },
    #[error("cannot prepare the suite cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn git(args: &[&str], what: &str) -> Result<String, GitError> {
    let output = Command::new("git")
        .args([
            "-c",
            "http.lowSpeedLimit=1000",
            "-c",
            "http.lowSpeedTime=30",
        ])
        // No transport that runs commands (ext::), whatever the host's git config says.
        .args(["-c", "protocol.ext.allow=never"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .output()
        .map_err(GitError::Spawn)?;
    if !output.status.success() {
        return Err(GitError::Failed {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A suite repository checked out at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub dir: PathBuf,
    pub sha1: String,
}

/// The cache of suite repositories under `root`.
#[derive(Debug, Clone)]
pub struct SuiteCache {
    root: PathBuf,
}

impl SuiteCache {
    pub fn new(root: PathBuf) -> SuiteCache {
        SuiteCache { root }
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        let digest = Sha256::digest(repo.as_bytes());
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        self.root.join(name)
    }

    /// Fetches `repo` (cloning it the first time) and checks out `sha1`, or the tip of
    /// `branch` when no commit is given. Blocking: call it off the async workers.
    pub fn checkout(
        &self,
        repo: &str,
        branch: &str,
        sha1: Option<&str>,
    ) -> Result<Checkout, GitError> {
        let base = self.repo_dir(repo);
        let cache = |source| GitError::Cache {
            path: base.clone(),
            source,
        };
        std::fs::create_dir_all(&base).map_err(cache)?;
        let mirror = base.join("mirror.git");
        let mirror_text = mirror.to_string_lossy().into_owned();
        if mirror.join("HEAD").exists() {
            git(
                &["--git-dir", &mirror_text, "remote", "update", "--prune"],
                &format!("fetch of {repo}"),
            )?;
        } else {
            let partial = base.join("mirror.partial");
            let _ = std::fs::remove_dir_all(&partial);
            git(
                &[
                    "clone",
                    "--mirror",
                    "--quiet",
                    "--",
                    repo,
                    &partial.to_string_lossy(),
                ],
                &format!("clone of {repo}"),
            )?;
            std::fs::rename(&partial, &mirror).map_err(cache)?;
        }
        let sha1 = match sha1 {
            Some(sha1) => git(
                &[
                    "--git-dir",
                    &mirror_text,
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{sha1}^{{commit}}"),
                ],
                "rev-parse",
            )
            .map_err(|_| GitError::NoCommit {
                repo: repo.to_owned(),
                sha1: sha1.to_owned(),
            })?,
            None => git(
                &[
                    "--git-dir",
                    &mirror_text,
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{branch}^{{commit}}"),
                ],
                "rev-parse",
            )
            .map_err(|_| GitError::NoBranch {
                repo: repo.to_owned(),
                branch: branch.to_owned(),
            })?,
        };
        let dir = base.join("trees").join(&sha1);
        if !dir.exists() {
            let partial = base.join("trees").join(format!("{sha1}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            std::fs::create_dir_all(base.join("trees")).map_err(cache)?;
            let partial_text = partial.to_string_lossy().into_owned();
            git(
                &[
                    "clone",
                    "--quiet",
                    "--shared",
                    "--no-checkout",
                    &mirror_text,
                    &partial_text,
                ],
                "local clone",
            )?;
            git(
                &[
                    "-C",
                    &partial_text,
                    "checkout",
                    "--quiet",
                    "--detach",
                    &sha1,
                ],
                &format!("checkout of {sha1}"),
            )?;
            std::fs::rename(&partial, &dir).map_err(cache)?;
        }
        Ok(Checkout { dir, sha1 })
    }
}

/// The commit at the tip of `branch` in `repo` (`git ls-remote`). Blocking.
pub fn branch_tip(repo: &str, branch: &str) -> Result<String, GitError> {
    let out = git(
        &[
            "ls-remote",
            "--heads",
            "--",
            repo,
            &format!("refs/heads/{branch}"),
        ],
        &format!("ls-remote of {repo}"),
    )?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| GitError::NoBranch {
            repo: repo.to_owned(),
            branch: branch.to_owned(),
        })
}

/// The commit a plain directory is checked out at, when it is a git checkout.
pub fn dir_head(dir: &Path) -> Option<String> {
    git(
        &[
            "-C",
            &dir.to_string_lossy(),
            "rev-parse",
            "--verify",
            "--quiet",
            "HEAD",
        ],
        "rev-parse",
    )
    .ok()
}
