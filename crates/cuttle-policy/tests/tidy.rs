//! Keeps cuttle-policy pure, as the dispatcher, cuttle-api and cuttle-sim rely on: no
//! dependency at all, and no clock, environment, file, network, process or thread access
//! in its source. `now` is always in the snapshot.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "std::env",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "std::io",
    "tokio",
    "rand",
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_policy_has_no_dependencies() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    let mut saw_section = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            saw_section |= in_dependencies;
            continue;
        }
        if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            found.push(line.to_owned());
        }
    }
    assert!(
        saw_section,
        "no [dependencies] section in cuttle-policy's Cargo.toml"
    );
    assert!(
        found.is_empty(),
        "cuttle-policy must stay pure and dependency-free; remove {found:?}"
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
fn the_policy_reads_no_clock_and_does_no_io() {
    let mut files = Vec::new();
    rust_files(&crate_dir().join("src"), &mut files);
    assert!(files.len() >= 3, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "cuttle-policy must stay pure:\n{}",
        found.join("\n")
    );
}
