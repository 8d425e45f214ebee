//! Suite expansion: a Ceph qa suite's directory tree into its jobs, as
//! `teuthology-suite` expands it.
//!
//! The same tree and options give the same jobs, in the same order, with the same
//! descriptions as teuthology 1.3.0: the matrix ([`matrix`]) indexes jobs as
//! teuthology's does, `$` choices and nested subsets draw from a copy of Python's
//! Mersenne Twister ([`pyrandom`]) seeded with `--seed`, fragments deep-merge as
//! teuthology merges them ([`merge`]) and fragment scripts run in a Lua sandbox
//! ([`script`]). Unlike teuthology, nothing is built per job up front: [`Expansion`]
//! sizes the matrix first (so a suite over a cap is refused before any work) and hands
//! out jobs one at a time.
//!
//! IO is behind [`tree::Tree`]; [`disk::Disk`] is the only module that reads files.

pub mod config;
pub mod disk;
pub mod expand;
pub mod matrix;
pub mod merge;
pub mod plan;
pub mod pyrandom;
pub mod script;
pub mod tree;
pub mod yaml;

pub use config::BaseConfig;
pub use disk::Disk;
pub use expand::{
    Expansion, Filters, Request, SuiteError, SuiteJob, Tally, strip_fragment_path, suite_name,
};
pub use matrix::Count;
