//! Expanding a suite into its jobs, one at a time, in teuthology's order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_yaml::Value;

use crate::config::BaseConfig;
use crate::matrix::{Count, Matrix, join};
use crate::merge::{ShapeMismatch, apply_key_paths, deep_merge, get, key_paths, merge_ref};
use crate::pyrandom::PyRandom;
use crate::script::{JobScope, Sandbox, ScriptError};
use crate::tree::{Tree, TreeError, WalkOptions, build};

/// teuthology-suite's job filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// `--filter`: keep a job whose description holds at least one of these.
    pub filter_in: Vec<String>,
    /// `--filter-out`: drop a job whose description holds any of these.
    pub filter_out: Vec<String>,
    /// `--filter-all`: keep a job whose description holds every one of these.
    pub filter_all: Vec<String>,
    /// `--filter-fragments`: also match the filters, as Lua patterns, against the
    /// job's fragment paths.
    pub filter_fragments: bool,
}

/// What to expand and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// The directory holding `suites/` (a ceph checkout's `qa/`).
    pub qa_dir: PathBuf,
    /// The suite, `rados/singleton` or `rados:singleton`.
    pub suite: String,
    /// `--subset WHICH/OF`.
    pub subset: Option<(Count, Count)>,
    pub no_nested_subset: bool,
    pub seed: u64,
    pub filters: Filters,
    /// `--limit`: stop after this many jobs (0: no limit).
    pub limit: Count,
    /// `--arch`, for fragments' `exclude_arch`.
    pub arch: Option<String>,
    /// The config every job starts from.
    pub base: BaseConfig,
}

/// One job of the suite.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteJob {
    /// Its place in the suite's matrix (its subset part's), from 0.
    pub index: Count,
    /// teuthology's description: `rados:singleton/{all/peer msgr-failures/few ...}`.
    pub description: String,
    /// Its fragments, relative to `suites/`, in merge order.
    pub fragments: Vec<String>,
    /// The merged job config.
    pub config: Value,
}

/// Counts of what happened to the matrix's jobs so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Jobs in the matrix (or the subset part), before filters.
    pub generated: Count,
    /// Jobs looked at so far.
    pub seen: Count,
    /// Dropped by `--filter`, `--filter-out`, `--filter-all` or `-d`/`-D`.
    pub filtered: Count,
    /// Rejected by a postmerge script.
    pub rejected: Count,
    /// Skipped for `exclude_arch` or `exclude_os_type`.
    pub excluded: Count,
    /// Jobs given out.
    pub emitted: Count,
}

/// Why a suite cannot be expanded.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("suite name {0:?} is not a path under suites/ (use names like rados/singleton)")]
    BadName(String),
    #[error("--subset {which}/{of}: the part must be below the number of parts (0/{of} to {}/{of})", of.saturating_sub(1))]
    BadSubset { which: Count, of: Count },
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("suite {suite} has no YAML fragments under {path}")]
    NoJobs { suite: String, path: PathBuf },
    #[error("{path}: {message}")]
    Fragment { path: String, message: String },
    #[error("{description}: merging {path}: {source}")]
    Merge {
        description: String,
        path: String,
        source: ShapeMismatch,
    },
    #[error(transparent)]
    Script(#[from] ScriptError),
}

struct Fragment {
    value: Value,
    premerge: Option<String>,
}

/// A suite being expanded: an iterator of its jobs, in matrix order.
pub struct Expansion<'t> {
    tree: &'t dyn Tree,
    matrix: Matrix,
    random: PyRandom,
    sandbox: Option<Sandbox>,
    suite_root: String,
    suite_name: String,
    request: Request,
    base: Rc<Value>,
    /// Where teuthology's `update_key` forces the base's `sha1` and `suite_sha1`.
    pinned_keys: Vec<(Vec<Value>, Value)>,
    fragments: HashMap<String, Rc<Fragment>>,
    next: Count,
    tally: Tally,
    failed: bool,
}

impl std::fmt::Debug for Expansion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expansion")
            .field("suite", &self.suite_name)
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

/// The suite name in teuthology's form (`rados:singleton`) and its path below `suites/`.
pub fn suite_name(suite: &str) -> Result<(String, PathBuf), SuiteError> {
    let slashed = suite.replace(':', "/");
    let trimmed = slashed.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    let bad = trimmed.is_empty()
        || trimmed.starts_with('/')
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.starts_with('.'));
    if bad {
        return Err(SuiteError::BadName(suite.to_owned()));
    }
    Ok((parts.join(":"), parts.iter().collect()))
}

impl<'t> Expansion<'t> {
    /// Reads the suite's tree and sizes its matrix; no job is built yet.
    pub fn plan(tree: &'t dyn Tree, request: Request) -> Result<Self, SuiteError> {
        let (suite_name, relative) = suite_name(&request.suite)?;
        if let Some((which, of)) = request.subset
            && (of == 0 || which >= of)
        {
            return Err(SuiteError::BadSubset { which, of });
        }
        let root = request.qa_dir.join("suites").join(&relative);
        let mut random = PyRandom::new(request.seed);
        let divisions = request.subset.map_or(1, |(_, of)| of);
        let options = WalkOptions {
            min_cyclicity: if divisions > 1 { divisions } else { 0 },
            no_nested_subset: request.no_nested_subset,
        };
        let matrix =
            build(tree, &root, options, &mut random)?.ok_or_else(|| SuiteError::NoJobs {
                suite: suite_name.clone(),
                path: root.clone(),
            })?;
        let matrix = match request.subset {
            Some((which, of)) if of > 1 => Matrix::Subset {
                inner: Box::new(matrix),
                divisions: of,
                which,
            },
            _ => matrix,
        };
        let generated = matrix.size();
        let mut base = request.base.to_value();
        deep_merge(
            &mut base,
            serde_yaml::from_str("teuthology: {fragments_dropped: [], meta: {}, postmerge: []}")
                .expect("the template is YAML"),
        )
        .expect("the template merges into a mapping");
        Ok(Self {
            tree,
            matrix,
            random,
            sandbox: None,
            suite_root: root.to_string_lossy().into_owned(),
            suite_name,
            request,
            pinned_keys: {
                let mapping = base.as_mapping().expect("the base config is a mapping");
                let mut keys = key_paths("sha1", mapping);
                keys.extend(key_paths("suite_sha1", mapping));
                keys
            },
            base: Rc::new(base),
            fragments: HashMap::new(),
            next: 0,
            tally: Tally {
                generated,
                ..Tally::default()
            },
            failed: false,
        })
    }

    /// The suite's name as descriptions start with it.
    pub fn suite_name(&self) -> &str {
        &self.suite_name
    }

    /// What happened to the jobs so far (`generated` is known from the start).
    pub fn tally(&self) -> Tally {
        self.tally
    }

    fn sandbox(&mut self) -> Result<&Sandbox, SuiteError> {
        lazy_sandbox(&mut self.sandbox, self.request.seed)
    }

    fn fragment(&mut self, path: &str) -> Result<Rc<Fragment>, SuiteError> {
        if let Some(fragment) = self.fragments.get(path) {
            return Ok(fragment.clone());
        }
        let fail = |message: String| SuiteError::Fragment {
            path: path.to_owned(),
            message,
        };
        let text = self
            .tree
            .read(Path::new(path))
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        cuttle_yaml::check(&text).map_err(|e| fail(format!("it {e}")))?;
        let mut value: Value = crate::yaml::parse(&text).map_err(|e| match e.location() {
            Some(at) => fail(format!(
                "line {}, column {}: not valid YAML: {e}",
                at.line(),
                at.column()
            )),
            None => fail(format!("not valid YAML: {e}")),
        })?;
        if !matches!(value, Value::Mapping(_) | Value::Null) {
            return Err(fail(
                "a fragment must be a YAML mapping (key: value lines)".into(),
            ));
        }
        let mut premerge = None;
        if let Some(Value::Mapping(teuthology)) = value.get_mut("teuthology")
            && let Some(script) = teuthology.remove("premerge")
        {
            match script {
                Value::String(s) => premerge = Some(s).filter(|s| !s.is_empty()),
                Value::Null => {}
                _ => {
                    return Err(fail(
                        "teuthology.premerge must be a string (a Lua script)".into(),
                    ));
                }
            }
        }
        let fragment = Rc::new(Fragment { value, premerge });
        self.fragments.insert(path.to_owned(), fragment.clone());
        Ok(fragment)
    }

    fn passes_filters(
        &mut self,
        description: &str,
        base_paths: &[String],
    ) -> Result<bool, SuiteError> {
        let Expansion {
            request, sandbox, ..
        } = self;
        let filters = &request.filters;
        let mut matches = |filter: &str| -> Result<bool, SuiteError> {
            if description.contains(filter) {
                return Ok(true);
            }
            if filters.filter_fragments {
                for path in base_paths {
                    if lazy_sandbox(sandbox, request.seed)?.pattern_finds(path, filter)? {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        };
        for filter in &filters.filter_all {
            if !matches(filter)? {
                return Ok(false);
            }
        }
        if !filters.filter_in.is_empty() {
            let mut found = false;
            for filter in &filters.filter_in {
                if matches(filter)? {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(false);
            }
        }
        for filter in &filters.filter_out {
            if matches(filter)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next job, or `None` when the matrix (or `--limit`) is done.
    pub fn next_job(&mut self) -> Result<Option<SuiteJob>, SuiteError> {
        while self.next < self.tally.generated {
            if self.request.limit > 0 && self.tally.emitted >= self.request.limit {
                return Ok(None);
            }
            let index = self.next;
            self.next += 1;
            self.tally.seen += 1;
            let (description, paths) = {
                let pick = self
                    .matrix
                    .index(index, &mut self.random)
                    .map_err(|source| {
                        SuiteError::Tree(TreeError::Matrix {
                            path: PathBuf::from(&self.suite_root),
                            source,
                        })
                    })?;
                let description = join(&self.suite_name, &pick.description().replace(".yaml", ""));
                let paths: Vec<String> = pick
                    .paths()
                    .into_iter()
                    .map(|names| {
                        names
                            .iter()
                            .fold(self.suite_root.clone(), |left, name| join(&left, name))
                    })
                    .collect();
                (description, paths)
            };
            let base_paths: Vec<String> = paths
                .iter()
                .map(|p| strip_fragment_path(p).to_owned())
                .collect();
            if !self.passes_filters(&description, &base_paths)? {
                self.tally.filtered += 1;
                continue;
            }
            match self.merge(index, description, paths, base_paths)? {
                Merged::Job(job) => {
                    self.tally.emitted += 1;
                    return Ok(Some(job));
                }
                Merged::Filtered => self.tally.filtered += 1,
                Merged::Rejected => self.tally.rejected += 1,
                Merged::Excluded => self.tally.excluded += 1,
            }
        }
        Ok(None)
    }

    fn merge(
        &mut self,
        index: Count,
        description: String,
        paths: Vec<String>,
        base_paths: Vec<String>,
    ) -> Result<Merged, SuiteError> {
        let mut yaml = Value::clone(&self.base);
        let base_config = Rc::clone(&self.base);
        for path in &paths {
            let fragment = self.fragment(path)?;
            if fragment.value.is_null() {
                continue;
            }
            let Some(script) = &fragment.premerge else {
                // No script: merge straight from the cached fragment, copying only what
                // the job takes from it.
                merge_ref(&mut yaml, &fragment.value).map_err(|source| SuiteError::Merge {
                    description: description.clone(),
                    path: strip_fragment_path(path).to_owned(),
                    source,
                })?;
                continue;
            };
            let mut value = fragment.value.clone();
            {
                self.sandbox()?;
                let scope = self.scope(&description, &base_paths, &paths, &base_config, false);
                let name = strip_fragment_path(path).to_owned();
                let sandbox = self.sandbox.as_ref().expect("made above");
                let keep = sandbox.premerge(script, &name, &scope, &mut yaml, &mut value)?;
                if !keep {
                    if let Some(Value::Sequence(dropped)) = yaml
                        .get_mut("teuthology")
                        .and_then(|t| t.get_mut("fragments_dropped"))
                    {
                        dropped.push(Value::from(path.as_str()));
                    }
                    continue;
                }
            }
            deep_merge(&mut yaml, value).map_err(|source| SuiteError::Merge {
                description: description.clone(),
                path: strip_fragment_path(path).to_owned(),
                source,
            })?;
        }
        if !self.os_matches(&yaml) {
            return Ok(Merged::Filtered);
        }
        let postmerge = match get(&yaml, &["teuthology", "postmerge"]) {
            None | Some(Value::Null) => String::new(),
            Some(Value::Sequence(scripts)) => {
                let mut joined = Vec::with_capacity(scripts.len());
                for script in scripts {
                    match script {
                        Value::String(s) => joined.push(s.as_str()),
                        _ => {
                            return Err(SuiteError::Fragment {
                                path: description.clone(),
                                message:
                                    "teuthology.postmerge must be a list of strings (Lua scripts)"
                                        .into(),
                            });
                        }
                    }
                }
                joined.join("\n")
            }
            Some(_) => {
                return Err(SuiteError::Fragment {
                    path: description.clone(),
                    message: "teuthology.postmerge must be a list of strings (Lua scripts)".into(),
                });
            }
        };
        if !postmerge.trim().is_empty() {
            self.sandbox()?;
            let scope = self.scope(&description, &base_paths, &paths, &base_config, true);
            let sandbox = self.sandbox.as_ref().expect("made above");
            let keep = sandbox.postmerge(&postmerge, &scope, &mut yaml)?;
            if !keep {
                return Ok(Merged::Rejected);
            }
        }
        let base = base_config
            .as_mapping()
            .expect("the base config is a mapping");
        let os_type = yaml
            .get("os_type")
            .filter(|v| !is_falsy(v))
            .or_else(|| base.get("os_type"))
            .cloned();
        if let Some(excluded) = yaml.get("exclude_arch").filter(|v| !is_falsy(v))
            && self
                .request
                .arch
                .as_deref()
                .is_some_and(|arch| excluded.as_str() == Some(arch))
        {
            return Ok(Merged::Excluded);
        }
        if let Some(excluded) = yaml.get("exclude_os_type").filter(|v| !is_falsy(v))
            && Some(excluded) == os_type.as_ref()
        {
            return Ok(Merged::Excluded);
        }
        let mapping = yaml
            .as_mapping_mut()
            .expect("the merged config is a mapping");
        apply_key_paths(mapping, &self.pinned_keys);
        let flavor = install_flavor(&yaml);
        yaml.as_mapping_mut()
            .expect("a mapping")
            .insert(Value::from("flavor"), Value::from(flavor));
        Ok(Merged::Job(SuiteJob {
            index,
            description,
            fragments: base_paths,
            config: yaml,
        }))
    }

    fn scope<'a>(
        &'a self,
        description: &'a str,
        base_paths: &'a [String],
        paths: &'a [String],
        base_config: &'a Value,
        postmerge: bool,
    ) -> JobScope<'a> {
        let base = &self.request.base;
        JobScope {
            description,
            base_frag_paths: base_paths,
            frag_paths: paths,
            suite_name: &self.suite_name,
            filter_in: &self.request.filters.filter_in,
            filter_out: &self.request.filters.filter_out,
            filter_all: &self.request.filters.filter_all,
            filter_fragments: self.request.filters.filter_fragments,
            seed: self.request.seed,
            base_config,
            os_type: base.os_type.as_deref().filter(|_| postmerge),
            os_version: base.os_version.as_deref().filter(|_| postmerge),
        }
    }

    /// `-d`/`-D`: a job whose merged config names another distribution or version is
    /// dropped (teuthology's built-in postmerge check, `.stream` suffixes ignored).
    fn os_matches(&self, yaml: &Value) -> bool {
        let base = &self.request.base;
        if let (Some(wanted), Some(have)) = (
            base.os_type.as_deref(),
            yaml.get("os_type").and_then(scalar_text),
        ) && wanted != have
        {
            return false;
        }
        if let (Some(wanted), Some(have)) = (
            base.os_version.as_deref(),
            yaml.get("os_version").and_then(scalar_text),
        ) && strip_stream(wanted) != strip_stream(&have)
        {
            return false;
        }
        true
    }
}

/// The expansion's Lua state, made on first use and seeded as teuthology seeds it.
fn lazy_sandbox(sandbox: &mut Option<Sandbox>, seed: u64) -> Result<&Sandbox, SuiteError> {
    if sandbox.is_none() {
        let made = Sandbox::new()?;
        made.seed_random(seed)?;
        *sandbox = Some(made);
    }
    Ok(sandbox.as_ref().expect("just made"))
}

enum Merged {
    Job(SuiteJob),
    Filtered,
    Rejected,
    Excluded,
}

impl Iterator for Expansion<'_> {
    type Item = Result<SuiteJob, SuiteError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_job() {
            Ok(job) => job.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// teuthology's `strip_fragment_path`: the path after the first `/suites/`.
pub fn strip_fragment_path(path: &str) -> &str {
    match path.find("/suites/") {
        Some(at) if at > 0 => &path[at + "/suites/".len()..],
        _ => path,
    }
}

fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m.is_empty(),
        Value::Tagged(_) => false,
    }
}

/// A scalar as Lua's `tostring` would give it (numbers as Lua prints them).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Lua's `string.gsub(version, ".stream", "")`: any one character followed by
/// `stream` is removed.
fn strip_stream(version: &str) -> String {
    let chars: Vec<char> = version.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if i + 7 <= chars.len() && chars[i + 1..i + 7].iter().collect::<String>() == "stream" {
            i += 7;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The packages flavor the job's first `install` task will want (teuthology's
/// `get_install_task_flavor`).
fn install_flavor(config: &Value) -> String {
    let project = config
        .get("project")
        .and_then(Value::as_str)
        .unwrap_or("ceph");
    let mut install = Value::Mapping(Default::default());
    if let Some(Value::Sequence(tasks)) = config.get("tasks") {
        for task in tasks {
            if let Value::Mapping(task) = task
                && let Some((name, value)) = task.iter().next()
                && name.as_str() == Some("install")
            {
                if !value.is_null() {
                    install = value.clone();
                }
                break;
            }
        }
    }
    let overrides = get(config, &["overrides", "install"]).cloned();
    let project_overrides = overrides.as_ref().and_then(|o| o.get(project)).cloned();
    if let Some(o) = overrides {
        let _ = deep_merge(&mut install, o);
    }
    if let Some(o) = project_overrides {
        let _ = deep_merge(&mut install, o);
    }
    let truthy = |key: &str| install.get(key).is_some_and(|v| !is_falsy(v));
    if truthy("path") {
        "local".into()
    } else if truthy("valgrind") {
        "notcmalloc".into()
    } else if truthy("coverage") {
        "gcov".into()
    } else {
        install
            .get("flavor")
            .and_then(scalar_text)
            .unwrap_or_else(|| "default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_suffixes_go_as_lua_strips_them() {
        assert_eq!(strip_stream("8.stream"), "8");
        assert_eq!(strip_stream("22.04"), "22.04");
        assert_eq!(strip_stream("9stream"), "");
    }

    #[test]
    fn suite_names_take_teuthology_form() {
        assert_eq!(suite_name("rados/singleton").unwrap().0, "rados:singleton");
        assert_eq!(
            suite_name("rados:singleton/").unwrap().1,
            PathBuf::from("rados/singleton")
        );
        for bad in ["", "/etc", "rados/../..", "rados//x", ".qa"] {
            assert!(suite_name(bad).is_err(), "{bad}");
        }
    }
}
