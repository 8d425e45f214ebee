//! Expansion on trees written by the tests: bad input is refused with the file named,
//! fragment scripts run sandboxed, and generated trees expand deterministically into
//! subsets that cover every fragment.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cuttle_suite::{BaseConfig, Disk, Expansion, Filters, Request, SuiteJob};
use proptest::prelude::*;

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn request(qa: &Path, suite: &str, seed: u64, subset: Option<(u64, u64)>) -> Request {
    Request {
        qa_dir: qa.to_owned(),
        suite: suite.into(),
        subset,
        no_nested_subset: false,
        seed,
        filters: Filters::default(),
        limit: 0,
        arch: None,
        base: BaseConfig {
            suite: suite.replace('/', ":"),
            machine_type: "smithi".into(),
            ..BaseConfig::default()
        },
    }
}

fn expand(request: Request) -> Result<Vec<SuiteJob>, String> {
    let expansion = Expansion::plan(&Disk, request).map_err(|e| e.to_string())?;
    expansion
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn descriptions(jobs: &[SuiteJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.description.as_str()).collect()
}

/// A small `%` suite: two facets of two fragments each.
fn basic(qa: &Path) {
    write(qa, "suites/s/%", "");
    write(
        qa,
        "suites/s/a/one.yaml",
        "tasks:\n- exec: {client.0: [echo one]}\n",
    );
    write(
        qa,
        "suites/s/a/two.yaml",
        "tasks:\n- exec: {client.0: [echo two]}\n",
    );
    write(
        qa,
        "suites/s/b/x.yaml",
        "overrides: {ceph: {conf: {global: {x: 1}}}}\n",
    );
    write(
        qa,
        "suites/s/b/y.yaml",
        "overrides: {ceph: {conf: {global: {y: 2}}}}\n",
    );
}

#[test]
fn the_basic_product_expands_in_teuthologys_order() {
    let dir = tempfile::tempdir().unwrap();
    basic(dir.path());
    let jobs = expand(request(dir.path(), "s", 1, None)).unwrap();
    assert_eq!(
        descriptions(&jobs),
        [
            "s/{a/one b/x}",
            "s/{a/two b/y}",
            "s/{a/two b/x}",
            "s/{a/one b/y}"
        ]
    );
    // Fragments merge in path order: tasks append, mappings merge.
    assert_eq!(jobs[0].fragments, ["s/a/one.yaml", "s/b/x.yaml"]);
    assert_eq!(
        jobs[0].config["tasks"][0]["exec"]["client.0"][0].as_str(),
        Some("echo one")
    );
    assert_eq!(
        jobs[0].config["overrides"]["ceph"]["conf"]["global"]["x"].as_i64(),
        Some(1)
    );
}

#[test]
fn bad_trees_are_refused_with_the_path_named() {
    let dir = tempfile::tempdir().unwrap();
    let qa = dir.path();
    let error = expand(request(qa, "nope", 1, None)).unwrap_err();
    assert!(error.contains("suites/nope does not exist"), "{error}");

    basic(qa);
    std::fs::create_dir_all(qa.join("suites/s/c")).unwrap();
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(error.contains("suites/s/c has no YAML fragment"), "{error}");
    write(qa, "suites/s/c/README", "notes only\n");
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(error.contains("suites/s/c has no YAML fragment"), "{error}");
    std::fs::remove_dir_all(qa.join("suites/s/c")).unwrap();

    std::os::unix::fs::symlink("..", qa.join("suites/s/a/back")).unwrap();
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("suites/s/a/back") && error.contains("symlink loop"),
        "{error}"
    );
    std::fs::remove_file(qa.join("suites/s/a/back")).unwrap();
    std::os::unix::fs::symlink("self", qa.join("suites/s/a/self")).unwrap();
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("suites/s/a/self") && error.contains("symlink loop"),
        "{error}"
    );
    std::fs::remove_file(qa.join("suites/s/a/self")).unwrap();
    std::os::unix::fs::symlink("gone.yaml", qa.join("suites/s/a/dangling.yaml")).unwrap();
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("dangling.yaml is a symlink to nothing"),
        "{error}"
    );
    std::fs::remove_file(qa.join("suites/s/a/dangling.yaml")).unwrap();

    write(qa, "suites/s/b/y.yaml", "overrides:\n  ceph: {conf: [\n");
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("suites/s/b/y.yaml") && error.contains("line 3"),
        "{error}"
    );
    write(qa, "suites/s/b/y.yaml", "- a list\n- is not a fragment\n");
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("suites/s/b/y.yaml") && error.contains("mapping"),
        "{error}"
    );
    write(qa, "suites/s/b/y.yaml", "tasks: {not: a list}\n");
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("cannot merge a mapping into the list at `tasks`"),
        "{error}"
    );
    write(
        qa,
        "suites/s/b/y.yaml",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    );
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("suites/s/b/y.yaml")
            && (error.contains("alias bomb") || error.contains("repetition limit")),
        "{error}"
    );
    write(qa, "suites/s/b/y.yaml", "y: 2\n");

    write(qa, "suites/s/%", "zero\n");
    let error = expand(request(qa, "s", 1, None)).unwrap_err();
    assert!(
        error.contains("suites/s/%") && error.contains("whole number"),
        "{error}"
    );
    write(qa, "suites/s/%", "");
    let error = Expansion::plan(&Disk, request(qa, "s", 1, Some((5, 3))))
        .unwrap_err()
        .to_string();
    assert!(error.contains("0/3 to 2/3"), "{error}");
    let error = Expansion::plan(&Disk, request(qa, "../etc", 1, None))
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not a path under suites/"), "{error}");
}

fn with_script(qa: &Path, script_yaml: &str) -> Result<Vec<SuiteJob>, String> {
    basic(qa);
    write(qa, "suites/s/b/x.yaml", script_yaml);
    expand(request(qa, "s", 1, None))
}

#[test]
fn scripts_that_loop_allocate_or_reach_out_are_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let error = with_script(
        dir.path(),
        "teuthology:\n  premerge: |\n    while true do end\n",
    )
    .unwrap_err();
    assert!(
        error.contains("premerge script of s/b/x.yaml") && error.contains("loop forever"),
        "{error}"
    );
    let error = with_script(
        dir.path(),
        "teuthology:\n  postmerge:\n  - os.execute('touch /tmp/cuttle-owned')\n",
    )
    .unwrap_err();
    assert!(
        error.contains("postmerge script of s/{a/one b/x}") && error.contains("'os'"),
        "{error}"
    );
    assert!(!Path::new("/tmp/cuttle-owned").exists());
    for escape in [
        "io.open('/etc/passwd')",
        "require('os')",
        "load('return 1')()",
        "debug.getinfo(1)",
        "dofile('/etc/passwd')",
    ] {
        let yaml = format!("teuthology:\n  postmerge:\n  - {escape}\n");
        let error = with_script(dir.path(), &yaml).unwrap_err();
        assert!(error.contains("postmerge script"), "{escape}: {error}");
    }
    let error = with_script(
        dir.path(),
        "teuthology:\n  postmerge:\n  - |\n    local t = {}\n    for i = 1, 1e9 do t[i] = string.rep('x', 1000) end\n",
    )
    .unwrap_err();
    assert!(
        error.contains("postmerge script")
            && (error.contains("memory") || error.contains("instructions")),
        "{error}"
    );
    let error = with_script(
        dir.path(),
        "teuthology:\n  postmerge:\n  - string.find = nil\n",
    )
    .unwrap_err();
    assert!(error.contains("string is read-only"), "{error}");
    let error = with_script(dir.path(), "teuthology:\n  postmerge:\n  - 'if then'\n").unwrap_err();
    assert!(
        error.contains("postmerge script") && error.contains("near"),
        "{error}"
    );
}

#[test]
fn premerge_drops_a_fragment_and_postmerge_a_job_or_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    // Dropped for jobs with a/two: premerge sees the config merged so far.
    let jobs = with_script(
        dir.path(),
        "teuthology:\n  premerge: |\n    if yaml.tasks[1].exec['client.0'][1] == 'echo two' then reject() end\nx: 1\n",
    )
    .unwrap();
    let x: Vec<(String, Option<i64>)> = jobs
        .iter()
        .map(|j| (j.description.clone(), j.config["x"].as_i64()))
        .collect();
    assert_eq!(
        x,
        [
            ("s/{a/one b/x}".to_owned(), Some(1)),
            ("s/{a/two b/y}".to_owned(), None),
            ("s/{a/two b/x}".to_owned(), None),
            ("s/{a/one b/y}".to_owned(), None)
        ]
    );
    assert_eq!(
        jobs[2].config["teuthology"]["fragments_dropped"]
            .as_sequence()
            .unwrap()
            .len(),
        1
    );
    // Rejected jobs are gone; the rest gain tasks written by the script.
    let jobs = with_script(
        dir.path(),
        "teuthology:\n  postmerge:\n  - if description:find('two', 1, true) then reject() end\n  - |\n    local extra = py_list()\n    for i = 1, 2 do\n      local task = py_dict()\n      task.exec = py_dict()\n      task.exec['mon.a'] = py_list()\n      py_attrgetter(task.exec['mon.a']).append('echo '..i)\n      py_attrgetter(extra).append(task)\n    end\n    deep_merge(yaml.tasks, extra)\n",
    )
    .unwrap();
    // The script is b/x's: jobs with b/y keep their one task and are never rejected.
    assert_eq!(
        descriptions(&jobs),
        ["s/{a/one b/x}", "s/{a/two b/y}", "s/{a/one b/y}"]
    );
    let tasks = jobs[0].config["tasks"].as_sequence().unwrap();
    assert_eq!(tasks.len(), 3);
    assert_eq!(tasks[2]["exec"]["mon.a"][0].as_str(), Some("echo 2"));
    assert_eq!(jobs[1].config["tasks"].as_sequence().unwrap().len(), 1);
}

#[test]
fn the_fs_upgrade_scripts_of_the_test_tree_do_what_their_comments_say() {
    let qa = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ceph/qa");
    let jobs = expand(request(&qa, "fs/upgrade", 1, None)).unwrap();
    assert!(!jobs.is_empty());
    for job in &jobs {
        let fail_fs = job.description.contains("fail_fs/yes");
        assert!(
            !(fail_fs && job.description.contains("v16.2.4")),
            "{}",
            job.description
        );
        let staggered = job
            .fragments
            .iter()
            .any(|f| f.ends_with("2-staggered-mgr.yaml"));
        assert!(staggered, "every job lists the fragment");
        let dropped = job.config["teuthology"]["fragments_dropped"]
            .as_sequence()
            .unwrap();
        assert_eq!(dropped.is_empty(), fail_fs, "{}", job.description);
        let tasks = job.config["tasks"].as_sequence().unwrap();
        assert_eq!(
            tasks.last().unwrap()["exec"]["mon.a"][0].as_str(),
            Some("echo verify 2")
        );
    }
}

#[derive(Debug, Clone)]
enum Node {
    File,
    Dir { kind: u8, children: Vec<Node> },
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = Just(Node::File);
    leaf.prop_recursive(3, 40, 4, |inner| {
        (0u8..3, prop::collection::vec(inner, 1..4))
            .prop_map(|(kind, children)| Node::Dir { kind, children })
    })
}

/// Writes a generated tree: kind 0 is a `%` product, 1 a plain directory, 2 a `+`
/// concatenation. (No `$`: its draws differ between a whole and its parts by design.)
fn materialise(root: &Path, node: &Node, name: &str, counter: &mut u32) {
    match node {
        Node::File => {
            *counter += 1;
            write(root, &format!("{name}.yaml"), &format!("f{counter}: 1\n"));
        }
        Node::Dir { kind, children } => {
            std::fs::create_dir_all(root.join(name)).unwrap();
            match kind {
                0 => write(root, &format!("{name}/%"), ""),
                2 => write(root, &format!("{name}/+"), ""),
                _ => {}
            }
            for (i, child) in children.iter().enumerate() {
                materialise(root, child, &format!("{name}/n{i}"), counter);
            }
        }
    }
}

fn fragment_set(jobs: &[SuiteJob]) -> BTreeSet<String> {
    jobs.iter()
        .flat_map(|j| j.fragments.iter().cloned())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_trees_expand_deterministically_into_covering_subsets(children in prop::collection::vec(node(), 1..4), parts in 2u64..5, seed in 0u64..10_000) {
        let dir = tempfile::tempdir().unwrap();
        let top = Node::Dir { kind: 0, children };
        let mut counter = 0;
        materialise(&dir.path().join("suites"), &top, "g", &mut counter);
        let size = Expansion::plan(&Disk, request(dir.path(), "g", seed, None)).unwrap().tally().generated;
        prop_assume!(size <= 2_000, "a matrix of {} jobs is too slow for a debug build", size);
        let whole = expand(request(dir.path(), "g", seed, None)).unwrap();
        let again = expand(request(dir.path(), "g", seed, None)).unwrap();
        prop_assert_eq!(&whole, &again, "the same tree and options give the same list");
        let all: BTreeSet<&str> = whole.iter().map(|j| j.description.as_str()).collect();
        let every_fragment = fragment_set(&whole);
        for which in 0..parts {
            let part = expand(request(dir.path(), "g", seed, Some((which, parts)))).unwrap();
            for job in &part {
                prop_assert!(all.contains(job.description.as_str()), "{} is not a job of the whole suite", job.description);
            }
            prop_assert_eq!(fragment_set(&part), every_fragment.clone(), "part {}/{} misses a fragment", which, parts);
        }
    }
}

#[test]
fn a_fragment_with_a_repeated_key_reads_as_teuthology_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    basic(dir.path());
    // PyYAML keeps the later value; teuthology schedules such fragments.
    write(
        dir.path(),
        "suites/s/b/x.yaml",
        "overrides: {x: 1}\noverrides: {x: 2}\n",
    );
    let jobs = expand(request(dir.path(), "s", 1, None)).unwrap();
    assert_eq!(jobs[0].description, "s/{a/one b/x}");
    assert_eq!(jobs[0].config["overrides"]["x"].as_i64(), Some(2));
}
