//! cuttle expands the test qa tree (tests/data/ceph) exactly as teuthology-suite 1.3.0
//! did: the same jobs, in the same order, with the same descriptions, for each case of
//! tests/data/cases.txt. The expected lists were recorded from the real teuthology by
//! tests/data/record.sh.

use std::path::PathBuf;

use cuttle_core::suite::RawSuiteArgs;
use cuttle_suite::plan::{Pins, Stamp, request};
use cuttle_suite::{Disk, Expansion};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// teuthology-suite's flags, as the cases use them.
fn parse(args: &str) -> RawSuiteArgs {
    let mut raw = RawSuiteArgs {
        machine_type: "smithi".into(),
        kernel: "none".into(),
        ..RawSuiteArgs::default()
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let value = words
            .get(i + 1)
            .map(|v| (*v).to_owned())
            .unwrap_or_default();
        let mut takes_value = true;
        match words[i] {
            "-s" | "--suite" => raw.suite = value,
            "--seed" => raw.seed = Some(value.parse().unwrap()),
            "--subset" => raw.subset = value,
            "--filter" => raw.filter_in.push(value),
            "--filter-out" => raw.filter_out.push(value),
            "--filter-all" => raw.filter_all.push(value),
            "--filter-fragments" => raw.filter_fragments = value == "true",
            "--limit" | "-l" => raw.limit = value.parse().unwrap(),
            "-d" => raw.distro = value,
            "-D" => raw.distro_version = value,
            "--no-nested-subset" => {
                raw.no_nested_subset = true;
                takes_value = false;
            }
            other => panic!("the parity test does not know {other}"),
        }
        i += if takes_value { 2 } else { 1 };
    }
    raw
}

fn expand(args: &str) -> Vec<String> {
    let args = parse(args).validate().unwrap();
    let stamp = Stamp {
        run_name: "parity".into(),
        owner: "tester".into(),
        timestamp: "2026-11-29_00:00:00".into(),
        seed: args.seed.unwrap(),
        machine_type: "smithi".into(),
    };
    let request = request(&args, data().join("ceph"), &Pins::default(), &stamp);
    Expansion::plan(&Disk, request)
        .unwrap()
        .map(|job| job.unwrap().description)
        .collect()
}

#[test]
fn every_recorded_case_matches_teuthology() {
    let cases = std::fs::read_to_string(data().join("cases.txt")).unwrap();
    let mut checked = 0;
    for line in cases
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (name, args) = line.split_once('|').unwrap();
        let recorded =
            std::fs::read_to_string(data().join("teuthology").join(format!("{name}.txt"))).unwrap();
        let expected: Vec<&str> = recorded.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(!expected.is_empty(), "{name}: nothing recorded");
        // teuthology 1.3.0 drops some jobs for a filter nobody gave (record.sh finds them
        // in its log); cuttle keeps them, and is otherwise the same list.
        let wrongly: Vec<&str> = recorded
            .lines()
            .filter_map(|l| l.strip_prefix("# wrongly dropped by teuthology: "))
            .collect();
        let ours = expand(args);
        for job in &wrongly {
            assert!(
                ours.iter().any(|o| o == job),
                "{name}: cuttle drops {job} too"
            );
        }
        let kept: Vec<&str> = ours
            .iter()
            .map(String::as_str)
            .filter(|o| !wrongly.contains(o))
            .collect();
        if kept != expected {
            let at = kept
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(kept.len().min(expected.len()));
            panic!(
                "case {name} ({args}) differs from teuthology-suite: {} jobs against {}; first difference at {at}:\n  cuttle:     {:?}\n  teuthology: {:?}",
                kept.len(),
                expected.len(),
                kept.get(at),
                expected.get(at)
            );
        }
        // The same tree and options give the same list on every run.
        assert_eq!(expand(args), ours, "case {name} is not deterministic");
        checked += 1;
    }
    assert!(checked >= 11, "only {checked} cases checked");
}
