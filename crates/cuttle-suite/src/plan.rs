//! From a validated suite request (cuttle-core's [`SuiteArgs`]) to an expansion
//! [`Request`], and the JSON form of a job for `--dry-run --json` and the API.

use std::path::PathBuf;

use cuttle_core::suite::{Kernel, SuiteArgs};
use serde_yaml::Value;

use crate::config::BaseConfig;
use crate::expand::{Filters, Request};
use crate::merge::key_text;

/// The refs a run is pinned to, resolved before expanding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pub suite_repo: String,
    pub suite_branch: String,
    pub suite_sha1: String,
    pub teuthology_branch: String,
    pub teuthology_sha1: String,
}

/// Who and when: the parts of the base config that are not in the request.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub run_name: String,
    pub owner: String,
    /// teuthology's timestamp format, `2026-11-29_20:32:38`.
    pub timestamp: String,
    pub seed: u64,
    pub machine_type: String,
}

/// The expansion request for `args`, reading the suite from `repo_dir` (the suite
/// repository's checkout; `suites/` is under its `suite_relpath`).
pub fn request(args: &SuiteArgs, repo_dir: PathBuf, pins: &Pins, stamp: &Stamp) -> Request {
    let qa_dir = repo_dir.join(&args.suite_relpath);
    let base = BaseConfig {
        suite: args.suite.replace('/', ":"),
        ceph_branch: args.ceph_branch.clone(),
        ceph_sha1: args.ceph_sha1.clone(),
        ceph_repo: args.ceph_repo.clone(),
        suite_repo: pins.suite_repo.clone(),
        suite_relpath: args.suite_relpath.clone(),
        suite_branch: pins.suite_branch.clone(),
        suite_sha1: pins.suite_sha1.clone(),
        teuthology_branch: pins.teuthology_branch.clone(),
        teuthology_sha1: pins.teuthology_sha1.clone(),
        machine_type: stamp.machine_type.clone(),
        flavor: args.flavor.clone(),
        os_type: args.distro.clone(),
        os_version: args.distro_version.clone(),
        kernel_distro: args.kernel == Kernel::Distro,
        name: stamp.run_name.clone(),
        owner: stamp.owner.clone(),
        timestamp: stamp.timestamp.clone(),
        priority: i64::from(args.priority.get()),
        seed: stamp.seed,
        subset: args.subset.map(|s| (s.which, s.of)),
        email: args.email.clone(),
    };
    Request {
        qa_dir,
        suite: args.suite.clone(),
        subset: args.subset.map(|s| (s.which, s.of)),
        no_nested_subset: args.no_nested_subset,
        seed: stamp.seed,
        filters: Filters {
            filter_in: args.filter_in.clone(),
            filter_out: args.filter_out.clone(),
            filter_all: args.filter_all.clone(),
            filter_fragments: args.filter_fragments,
        },
        limit: args.limit,
        arch: args.arch.clone(),
        base,
    }
}

/// A YAML value as JSON: mapping keys become strings, tags are dropped.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Mapping(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (key_text(k), to_json(v))).collect())
        }
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}
