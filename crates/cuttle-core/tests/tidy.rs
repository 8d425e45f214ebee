//! Keeps cuttle-core pure: no dependency outside its allowlist, and no clock, environment,
//! file, network, process or thread access in its source. The policy, the state machine
//! and the simulator built on them rely on it: `now` is always passed in.

use std::path::{Path, PathBuf};

/// Each pure computation: serialization, JSON values, and the hashes the webhook's
/// signature is checked with. None of them does IO.
const ALLOWED_DEPENDENCIES: &[&str] = &["hmac", "serde", "serde_json", "sha2", "thiserror", "time"];

const FORBIDDEN: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "std::env",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "tokio",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn dependencies_stay_on_the_allowlist() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['.', '=', ' ']).next().unwrap_or_default();
            found.push(name.to_owned());
        }
    }
    assert!(
        !found.is_empty(),
        "no [dependencies] read from cuttle-core's Cargo.toml"
    );
    let extra: Vec<&String> = found
        .iter()
        .filter(|name| !ALLOWED_DEPENDENCIES.contains(&name.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "cuttle-core must stay pure; remove dependencies {extra:?}"
    );
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn source_reads_no_clock_environment_or_io() {
    let mut files = Vec::new();
    rust_files(&crate_dir().join("src"), &mut files);
    assert!(
        files.len() >= 5,
        "expected cuttle-core's modules, found {files:?}"
    );
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for forbidden in FORBIDDEN {
                if line.contains(forbidden) {
                    offences.push(format!("{}:{}: {forbidden}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "cuttle-core must not read the clock, the environment or do IO (pass values in):\n{}",
        offences.join("\n")
    );
}
