//! The dispatcher host's cache of checkouts, one per commit: every job of a run runs the
//! suite (qa) commit and the teuthology commit recorded on the run when it was scheduled,
//! even when the branches move while it runs. A checkout is built once (clone, check out
//! the commit, run the lab's bootstrap command for teuthology) in a temporary directory
//! and renamed into place, so jobs racing for the same commit never see half of one; the
//! loser of a race throws its copy away. Each use touches a marker; checkouts unused for
//! longer than the lab's age are pruned.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

/// Which repository a checkout is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Suite,
    Teuthology,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Suite => "suite",
            Kind::Teuthology => "teuthology",
        }
    }
}

/// The marker whose modification time says when a checkout was last used.
const USED: &str = ".cuttle-used";

/// Checkouts under one root directory.
#[derive(Debug, Clone)]
pub struct Checkouts {
    root: PathBuf,
    timeout: Duration,
}

/// A full commit id, or why not.
fn check_sha1(sha1: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        sha1.len() == 40 && sha1.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sha1:?} is not a full commit id (40 hex digits)"
    );
    Ok(())
}

impl Checkouts {
    pub fn new(root: PathBuf, timeout: Duration) -> Checkouts {
        Checkouts { root, timeout }
    }

    /// The checkout of `repo` at `sha1`, built if missing; `bootstrap` (argv, run in the
    /// checkout) completes a new one.
    pub async fn get(
        &self,
        kind: Kind,
        repo: &str,
        sha1: &str,
        bootstrap: Option<&[String]>,
    ) -> anyhow::Result<PathBuf> {
        check_sha1(sha1)?;
        anyhow::ensure!(
            !repo.starts_with('-') && !repo.contains("::"),
            "{repo:?} is not a repository URL or path"
        );
        let sha1 = sha1.to_ascii_lowercase();
        let parent = self.root.join(kind.dir());
        let done = parent.join(&sha1);
        if !done.join(USED).exists() {
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            let building = parent.join(format!(".building-{sha1}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&building);
            let built = self.build(repo, &sha1, &building, bootstrap).await;
            if let Err(error) = built {
                let _ = std::fs::remove_dir_all(&building);
                return Err(error);
            }
            std::fs::write(building.join(USED), b"")?;
            if std::fs::rename(&building, &done).is_err() {
                // Another job built it first: theirs is as good.
                let _ = std::fs::remove_dir_all(&building);
                anyhow::ensure!(
                    done.join(USED).exists(),
                    "cannot move the checkout of {sha1} into {}",
                    done.display()
                );
            }
        }
        // Marks it used now, for pruning.
        std::fs::write(done.join(USED), b"")
            .with_context(|| format!("cannot mark {} used", done.display()))?;
        Ok(done)
    }

    async fn build(
        &self,
        repo: &str,
        sha1: &str,
        dir: &Path,
        bootstrap: Option<&[String]>,
    ) -> anyhow::Result<()> {
        let dir_text = dir.display().to_string();
        self.git(
            &["clone", "--quiet", "--no-checkout", "--", repo, &dir_text],
            None,
        )
        .await
        .with_context(|| format!("cannot clone {repo}"))?;
        if self
            .git(&["checkout", "--quiet", "--detach", sha1, "--"], Some(dir))
            .await
            .is_err()
        {
            // Not on any branch the clone brought: ask for the commit itself.
            self.git(&["fetch", "--quiet", "origin", sha1], Some(dir))
                .await
                .with_context(|| format!("{repo} has no commit {sha1}"))?;
            self.git(&["checkout", "--quiet", "--detach", sha1, "--"], Some(dir))
                .await?;
        }
        if let Some(argv) = bootstrap {
            let (program, args) = argv
                .split_first()
                .context("the bootstrap command is empty")?;
            let run = tokio::process::Command::new(program)
                .args(args)
                .current_dir(dir)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(self.timeout, run)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the bootstrap command did not finish in {} s",
                        self.timeout.as_secs()
                    )
                })?
                .with_context(|| format!("cannot run the bootstrap command {program}"))?;
            anyhow::ensure!(
                output.status.success(),
                "the bootstrap command {} in the checkout of {sha1}: {}",
                crate::process::describe_exit(output.status),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    async fn git(&self, args: &[&str], dir: Option<&Path>) -> anyhow::Result<()> {
        let mut command = tokio::process::Command::new("git");
        // No helper protocols: a repository URL is never a command.
        command.args([
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "advice.detachedHead=false",
        ]);
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        command
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, command.output())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "git {} did not finish in {} s",
                    args[0],
                    self.timeout.as_secs()
                )
            })?
            .context("cannot run git; install it on the dispatcher's host")?;
        anyhow::ensure!(
            output.status.success(),
            "git {}: {}",
            args[0],
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }

    /// Removes checkouts unused for longer than `max_age`; returns how many.
    pub fn prune(&self, max_age: Duration) -> usize {
        let now = SystemTime::now();
        let mut pruned = 0;
        for kind in [Kind::Suite, Kind::Teuthology] {
            let Ok(entries) = std::fs::read_dir(self.root.join(kind.dir())) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let used = std::fs::metadata(path.join(USED)).and_then(|m| m.modified());
                let stale = match used {
                    Ok(at) => now.duration_since(at).is_ok_and(|age| age > max_age),
                    // A build that died half-way, older than the limit.
                    Err(_) => entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > max_age)),
                };
                if stale && std::fs::remove_dir_all(&path).is_ok() {
                    pruned += 1;
                }
            }
        }
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkouts_unused_past_the_age_are_pruned() {
        let root = tempfile::tempdir().unwrap();
        let checkouts = Checkouts::new(root.path().to_owned(), Duration::from_secs(5));
        let old = root.path().join("suite").join("a".repeat(40));
        let fresh = root.path().join("teuthology").join("b".repeat(40));
        for dir in [&old, &fresh] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(USED), b"").unwrap();
        }
        let long_ago = SystemTime::now() - Duration::from_secs(20 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(old.join(USED))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        assert_eq!(checkouts.prune(Duration::from_secs(14 * 86_400)), 1);
        assert!(!old.exists() && fresh.exists());
    }

    #[tokio::test]
    async fn a_commit_that_is_not_a_full_id_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let checkouts = Checkouts::new(root.path().to_owned(), Duration::from_secs(5));
        let error = checkouts
            .get(Kind::Suite, "/repo", "main", None)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not a full commit id"),
            "{error}"
        );
        let error = checkouts
            .get(Kind::Suite, "--upload-pack=evil", &"a".repeat(40), None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not a repository"), "{error}");
    }
}
