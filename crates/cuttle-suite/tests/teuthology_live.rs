//! cuttle against the real teuthology-suite 1.3.0, live, on trees generated here: for
//! each tree, seed, subset and filter, `teuthology-suite --dry-run` and cuttle must list
//! the same jobs in the same order. teuthology runs from the venv scripts/test.sh
//! installs (CUTTLE_TEUTHOLOGY_VENV, default ~/.cache/cuttle-teuthology-venv); without
//! it the test fails, unless CUTTLE_NO_TEUTHOLOGY=1 says to skip it.
//!
//! teuthology 1.3.0 sometimes drops a job for a filter nobody gave (its Lua state is
//! corrupted between jobs); such drops are recognised from its log (a drop whose job
//! passes the filters actually given) and must be jobs cuttle keeps. A tree teuthology
//! crashes on is skipped, and counted so the test cannot pass on crashes alone.

use std::path::Path;

use cuttle_testkit::teuthology::{OfflineTeuthology, find_venv};

use cuttle_suite::{BaseConfig, Disk, Expansion, Filters, Request};

/// A small deterministic generator (64-bit LCG), so every run builds the same trees.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A Ceph-shaped tree: `%` at the top, facets that are plain directories, `+`, `$`,
/// nested `%` (sometimes with a number), `.qa` symlinks and stray README files.
fn generate(dir: &Path, depth: u32, top: bool, rng: &mut Lcg, counter: &mut u32) {
    std::fs::create_dir_all(dir).unwrap();
    // Facets of a product are mostly plain directories of alternatives.
    let kind = if top {
        0
    } else {
        [1, 2, 3, 4, 4, 4, 5][rng.below(7) as usize]
    };
    match kind {
        0 | 1 => {
            let number = if !top && rng.below(12) == 0 { "2" } else { "" };
            write(&dir.join("%"), number);
        }
        2 => write(&dir.join("+"), ""),
        3 => write(&dir.join("$"), ""),
        _ => {}
    }
    let children = if top {
        3 + rng.below(2)
    } else {
        1 + rng.below(4)
    };
    for i in 0..children {
        let name = format!(
            "{}{}",
            ["a", "b", "c", "d", "e", "x"][rng.below(6) as usize],
            i
        );
        let subdir = depth < 3 && (top || rng.below(if kind <= 1 { 10 } else { 4 }) < 3);
        if subdir {
            generate(&dir.join(&name), depth + 1, false, rng, counter);
        } else {
            *counter += 1;
            write(
                &dir.join(format!("{name}.yaml")),
                &format!("overrides:\n  f{counter}: {i}\n"),
            );
        }
    }
    if rng.below(4) == 0 {
        write(&dir.join("README"), "notes\n");
    }
    if rng.below(4) == 0 {
        std::os::unix::fs::symlink("..", dir.join(".qa")).unwrap();
    }
}

struct Teuthology(OfflineTeuthology);

impl Teuthology {
    /// The jobs teuthology schedules, and those it dropped wrongly; `None` if it crashed.
    fn run(
        &self,
        root: &Path,
        seed: u64,
        subset: Option<(u64, u64)>,
        filter: Option<&str>,
    ) -> Option<(Vec<String>, Vec<String>)> {
        let mut command = self.0.suite_dry_run(root, "gen", seed);
        if let Some((which, of)) = subset {
            command.args(["--subset", &format!("{which}/{of}")]);
        }
        if let Some(filter) = filter {
            command.args(["--filter", filter]);
        }
        let output = command.output().unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || log.contains("Traceback") {
            return None;
        }
        let mut jobs = Vec::new();
        let mut wrongly = Vec::new();
        let mut dropping = false;
        let filters: Vec<&str> = filter.map(|f| f.split(',').collect()).unwrap_or_default();
        for line in log.lines() {
            if let Some((_, job)) = line.split_once("INFO:teuthology.suite.run:Scheduling ") {
                jobs.push(job.to_owned());
            } else if line.contains("dropping job due to") {
                dropping = true;
            } else if let Some((_, rest)) = line.split_once("skipping config ") {
                let job = rest.trim_end_matches(" due to postmerge filter");
                let passes = filters.is_empty() || filters.iter().any(|f| job.contains(f));
                if dropping && passes {
                    wrongly.push(job.to_owned());
                }
                dropping = false;
            }
        }
        Some((jobs, wrongly))
    }
}

fn cuttle(
    root: &Path,
    seed: u64,
    subset: Option<(u64, u64)>,
    filter: Option<&str>,
) -> Result<Vec<String>, String> {
    let request = Request {
        qa_dir: root.join("qa"),
        suite: "gen".into(),
        subset,
        no_nested_subset: false,
        seed,
        filters: Filters {
            filter_in: filter
                .map(|f| f.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            ..Filters::default()
        },
        limit: 0,
        arch: None,
        base: BaseConfig {
            suite: "gen".into(),
            machine_type: "smithi".into(),
            ..BaseConfig::default()
        },
    };
    let expansion = Expansion::plan(&Disk, request).map_err(|e| e.to_string())?;
    expansion
        .map(|job| job.map(|j| j.description).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn cuttle_lists_what_the_real_teuthology_suite_lists() {
    let Some(venv) = find_venv(None) else {
        if std::env::var_os("CUTTLE_NO_TEUTHOLOGY").is_some() {
            eprintln!("skipped: CUTTLE_NO_TEUTHOLOGY is set");
            return;
        }
        panic!(
            "teuthology 1.3.0 is not installed; run scripts/test.sh (it installs it into ~/.cache/cuttle-teuthology-venv) or set CUTTLE_NO_TEUTHOLOGY=1 to skip"
        );
    };
    let teuthology = Teuthology(OfflineTeuthology::new(venv));
    let mut rng = Lcg(20261129);
    let (mut compared, mut crashed, mut jobs_seen) = (0, 0, 0);
    for case in 0..12u64 {
        let tree = tempfile::tempdir().unwrap();
        let mut counter = 0;
        generate(
            &tree.path().join("qa/suites/gen"),
            0,
            true,
            &mut rng,
            &mut counter,
        );
        let seed = rng.below(10_000);
        let subset = match case % 3 {
            0 => None,
            1 => Some((rng.below(2), 2)),
            _ => Some((rng.below(3), 3)),
        };
        let filter = (case % 4 == 3).then_some("a,x1");
        let Some((theirs, wrongly)) = teuthology.run(tree.path(), seed, subset, filter) else {
            crashed += 1;
            continue;
        };
        let ours = cuttle(tree.path(), seed, subset, filter).unwrap_or_else(|e| {
            panic!("case {case}: teuthology expanded the tree but cuttle refused it: {e}")
        });
        for job in &wrongly {
            assert!(
                ours.contains(job),
                "case {case}: teuthology dropped {job}, and cuttle has no such job"
            );
        }
        let kept: Vec<&String> = ours.iter().filter(|j| !wrongly.contains(j)).collect();
        let theirs_ref: Vec<&String> = theirs.iter().collect();
        assert_eq!(
            kept,
            theirs_ref,
            "case {case} (seed {seed}, subset {subset:?}, filter {filter:?}) differs; tree kept at {:?}",
            tree.keep()
        );
        compared += 1;
        jobs_seen += theirs.len();
    }
    eprintln!(
        "{compared} trees compared with teuthology-suite ({jobs_seen} jobs), {crashed} crashed teuthology"
    );
    assert!(
        compared >= 8,
        "only {compared} of 12 trees compared ({crashed} crashed teuthology)"
    );
    assert!(
        jobs_seen > 200,
        "the trees were too small to mean anything ({jobs_seen} jobs)"
    );
}
