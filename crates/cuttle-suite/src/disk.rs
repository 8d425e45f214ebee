//! The real file system behind [`Tree`]: the only module of this crate that touches it.

use std::path::{Path, PathBuf};

use crate::tree::{Kind, Tree};

/// Reads suites from disk, following symlinks as teuthology does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

/// Largest fragment read (Ceph's largest is a few KB); a bigger file is refused.
pub const MAX_FRAGMENT_BYTES: u64 = 1 << 20;

impl Tree for Disk {
    fn kind(&self, path: &Path) -> Result<Kind, std::io::Error> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => Ok(Kind::File),
            Ok(meta) if meta.is_dir() => Ok(Kind::Directory),
            Ok(_) => Ok(Kind::Other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Kind::Missing),
            // ELOOP: a chain of links that never ends.
            Err(e) if e.raw_os_error() == Some(40) => Ok(Kind::LinkLoop),
            Err(e) => Err(e),
        }
    }

    fn list(&self, path: &Path) -> Result<Vec<String>, std::io::Error> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let name = entry?.file_name();
            match name.into_string() {
                Ok(name) => names.push(name),
                Err(raw) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is not a UTF-8 name; rename it",
                            path.join(raw).display()
                        ),
                    ));
                }
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> Result<String, std::io::Error> {
        let meta = std::fs::metadata(path)?;
        if meta.len() > MAX_FRAGMENT_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} bytes is more than a fragment may hold ({MAX_FRAGMENT_BYTES})",
                    meta.len()
                ),
            ));
        }
        std::fs::read_to_string(path)
    }

    fn resolve(&self, path: &Path) -> Result<PathBuf, std::io::Error> {
        std::fs::canonicalize(path)
    }

    fn is_link(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    }
}

/// The teuthology branch a suite checkout asks for in `qa/.teuthology_branch`, if any.
pub fn teuthology_branch_file(repo_dir: &std::path::Path, suite_relpath: &str) -> Option<String> {
    let text =
        std::fs::read_to_string(repo_dir.join(suite_relpath).join(".teuthology_branch")).ok()?;
    let branch = text.trim();
    (!branch.is_empty()).then(|| branch.to_owned())
}
