//! Reading a suite's directory tree into a [`Matrix`], with teuthology's conventions.
//!
//! - a file is a fragment if its name ends in `.yaml`; other files are ignored;
//! - a name starting with `.` is ignored (`.qa` symlinks are followed only when a
//!   fragment or facet links through them), and so is a directory whose name ends in
//!   `.disable` (teuthology's spelling; `foo.disabled` is *not* skipped by teuthology,
//!   and so not here);
//! - a directory holding `+` concatenates everything below it, one holding `$` (or named
//!   `…$`) picks one entry at random per job, one holding `%` convolves its entries
//!   (a number in `%` asks for a nested subset), and any other directory offers its
//!   entries as alternatives.
//!
//! Where teuthology crashes (a missing path, a dangling link, a directory with nothing
//! to pick from, a symlink loop it would follow forever), this stops with an error that
//! names the path.

use std::path::{Path, PathBuf};

use crate::matrix::{Count, Matrix, MatrixError};
use crate::pyrandom::PyRandom;

/// What a path is, following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    /// Neither exists nor resolves (a dangling symlink is `Missing`).
    Missing,
    /// Something else (a socket, a device).
    Other,
    /// A symlink whose chain of links never ends.
    LinkLoop,
}

/// The file system a suite is read from. [`crate::disk::Disk`] reads the real one.
pub trait Tree {
    fn kind(&self, path: &Path) -> Result<Kind, std::io::Error>;
    /// The names in a directory, in any order.
    fn list(&self, path: &Path) -> Result<Vec<String>, std::io::Error>;
    fn read(&self, path: &Path) -> Result<String, std::io::Error>;
    /// A path with every symlink resolved, to recognise a directory seen before.
    fn resolve(&self, path: &Path) -> Result<PathBuf, std::io::Error>;
    /// Whether the path itself is a symlink.
    fn is_link(&self, path: &Path) -> bool;
}

/// Why a suite tree cannot be expanded.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path} does not exist; check the suite name and --suite-dir")]
    Missing { path: PathBuf },
    #[error("{path} is a symlink to nothing; fix or remove the link")]
    Dangling { path: PathBuf },
    #[error("{path} is part of a symlink loop (it leads back to {target}); fix the link")]
    Loop { path: PathBuf, target: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} has a name that is not UTF-8; rename it")]
    NotUtf8 { path: PathBuf },
    #[error("{path} has no YAML fragment to pick from{why}; add one or remove the directory")]
    Empty { path: PathBuf, why: &'static str },
    #[error("{path} must hold a positive whole number of subset parts or nothing, not {text:?}")]
    BadDivisions { path: PathBuf, text: String },
    #[error("{path}: {source}")]
    Matrix { path: PathBuf, source: MatrixError },
    #[error("the suite is nested more than {0} directories deep; is there a symlink loop?")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 64;

/// How the tree is walked: `--subset`'s part count (0 for none) and `--no-nested-subset`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions {
    pub min_cyclicity: Count,
    pub no_nested_subset: bool,
}

/// Builds the matrix of the suite at `root`. Nested subsets with no part given draw it
/// from `random` while the tree is read, as teuthology does.
pub fn build(
    tree: &dyn Tree,
    root: &Path,
    options: WalkOptions,
    random: &mut PyRandom,
) -> Result<Option<Matrix>, TreeError> {
    let mut walker = Walker {
        tree,
        random,
        no_nested_subset: options.no_nested_subset,
        stack: Vec::new(),
    };
    walker.walk(root, options.min_cyclicity, String::new())
}

struct Walker<'t> {
    tree: &'t dyn Tree,
    random: &'t mut PyRandom,
    no_nested_subset: bool,
    /// The resolved directories being walked, to catch a link back into one of them.
    stack: Vec<PathBuf>,
}

/// Repeats a matrix until it can be cut into `min_cyclicity` good parts. Like
/// teuthology, this asks for the cyclicity even when no cut is wanted, so a part with
/// no job is an error here where teuthology divides by zero.
fn cycled(matrix: Matrix, min_cyclicity: Count) -> Result<Matrix, MatrixError> {
    let cyclicity = matrix.cyclicity()?;
    if cyclicity >= min_cyclicity {
        return Ok(matrix);
    }
    if cyclicity == 0 {
        return Err(MatrixError::NoJobs {
            item: matrix.item().to_owned(),
        });
    }
    Ok(Matrix::Cycle {
        times: min_cyclicity.div_ceil(cyclicity),
        inner: Box::new(matrix),
    })
}

impl Walker<'_> {
    fn walk(
        &mut self,
        path: &Path,
        min_cyclicity: Count,
        item: String,
    ) -> Result<Option<Matrix>, TreeError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            return Ok(None);
        }
        let io = |source| TreeError::Io {
            path: path.to_owned(),
            source,
        };
        match self.tree.kind(path).map_err(io)? {
            Kind::Missing if self.tree.is_link(path) => Err(TreeError::Dangling {
                path: path.to_owned(),
            }),
            Kind::Missing => Err(TreeError::Missing {
                path: path.to_owned(),
            }),
            Kind::Other => Ok(None),
            Kind::LinkLoop => Err(TreeError::Loop {
                path: path.to_owned(),
                target: path.to_owned(),
            }),
            Kind::File => Ok(name.ends_with(".yaml").then_some(Matrix::Base { item })),
            Kind::Directory if path.to_string_lossy().ends_with(".disable") => Ok(None),
            Kind::Directory => {
                let resolved = self.tree.resolve(path).map_err(io)?;
                if let Some(target) = self.stack.iter().find(|seen| **seen == resolved) {
                    return Err(TreeError::Loop {
                        path: path.to_owned(),
                        target: target.clone(),
                    });
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(TreeError::TooDeep(MAX_DEPTH));
                }
                self.stack.push(resolved);
                let built = self.directory(path, &name, min_cyclicity, item);
                self.stack.pop();
                built
            }
        }
    }

    fn directory(
        &mut self,
        path: &Path,
        name: &str,
        min_cyclicity: Count,
        item: String,
    ) -> Result<Option<Matrix>, TreeError> {
        let mut names = self.tree.list(path).map_err(|source| TreeError::Io {
            path: path.to_owned(),
            source,
        })?;
        if names.is_empty() {
            return Ok(None);
        }
        names.sort();
        let has = |magic: &str| names.iter().any(|n| n == magic);
        let matrix_error = |source| TreeError::Matrix {
            path: path.to_owned(),
            source,
        };
        if has("+") {
            let parts = self.children(path, &names, &["+"], min_cyclicity)?;
            return Ok(Some(Matrix::Concat { item, parts }));
        }
        if name.ends_with('$') || has("$") {
            let choices = self.children(path, &names, &["$", "%"], min_cyclicity)?;
            if choices.is_empty() {
                return Err(TreeError::Empty {
                    path: path.to_owned(),
                    why: " (a `$` directory)",
                });
            }
            return Ok(Some(Matrix::PickRandom { item, choices }));
        }
        if has("%") {
            let divisions = self.divisions(path)?;
            let facets = self.children(path, &names, &["%"], 0)?;
            if facets.is_empty() {
                return Err(TreeError::Empty {
                    path: path.to_owned(),
                    why: " (a `%` directory)",
                });
            }
            let mut matrix = Matrix::product(item, facets).map_err(matrix_error)?;
            let wanted = min_cyclicity.saturating_mul(divisions);
            matrix = cycled(matrix, wanted).map_err(matrix_error)?;
            if divisions > 1 {
                let which = self.random.randint(0, divisions - 1);
                matrix = Matrix::Subset {
                    inner: Box::new(matrix),
                    divisions,
                    which,
                };
            }
            return Ok(Some(matrix));
        }
        let parts = self.children(path, &names, &[], min_cyclicity)?;
        if parts.is_empty() {
            return Err(TreeError::Empty {
                path: path.to_owned(),
                why: "",
            });
        }
        let parts = parts
            .into_iter()
            .map(|part| cycled(part, min_cyclicity))
            .collect::<Result<Vec<_>, _>>()
            .map_err(matrix_error)?;
        Matrix::sum(item, parts).map(Some).map_err(matrix_error)
    }

    /// The matrices of a directory's entries, skipping `magic` names and ignored files.
    /// A subdirectory that yields nothing (empty) is an error here, unlike teuthology
    /// which skips a truly empty one and crashes on one holding only non-YAML files.
    fn children(
        &mut self,
        path: &Path,
        names: &[String],
        magic: &[&str],
        min_cyclicity: Count,
    ) -> Result<Vec<Matrix>, TreeError> {
        let mut built = Vec::new();
        for name in names.iter().filter(|n| !magic.contains(&n.as_str())) {
            let child = path.join(name);
            match self.walk(&child, min_cyclicity, name.clone())? {
                Some(matrix) => built.push(matrix),
                None => {
                    let kind = self.tree.kind(&child).map_err(|source| TreeError::Io {
                        path: child.clone(),
                        source,
                    })?;
                    let ignored_dir = name.starts_with('.') || name.ends_with(".disable");
                    if kind == Kind::Directory && !ignored_dir {
                        return Err(TreeError::Empty {
                            path: child,
                            why: " (an empty directory)",
                        });
                    }
                }
            }
        }
        Ok(built)
    }

    fn divisions(&self, path: &Path) -> Result<Count, TreeError> {
        let file = path.join("%");
        let text = self.tree.read(&file).map_err(|source| TreeError::Io {
            path: file.clone(),
            source,
        })?;
        let trimmed = text.trim();
        if self.no_nested_subset || trimmed.is_empty() {
            return Ok(1);
        }
        match trimmed.replace('_', "").parse::<Count>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(TreeError::BadDivisions { path: file, text }),
        }
    }
}
