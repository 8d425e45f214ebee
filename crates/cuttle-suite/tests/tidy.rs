//! Keeps cuttle-suite pure: expansion never reads the clock, the environment, the
//! network or other processes, so the same tree and options give the same jobs; files
//! are read only in `disk.rs`, behind the `Tree` trait.

use std::path::PathBuf;

const FORBIDDEN: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "std::env",
    "std::net",
    "std::process",
    "std::thread",
    "tokio",
    "rand::",
];

#[test]
fn source_reads_no_clock_environment_or_network_and_files_only_in_disk() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let is_disk = path.file_name().is_some_and(|n| n == "disk.rs");
        for (number, line) in text.lines().enumerate() {
            let mut banned: Vec<&str> = FORBIDDEN.to_vec();
            if !is_disk {
                banned.push("std::fs");
            }
            for word in banned {
                if line.contains(word) {
                    offences.push(format!("{}:{}: {word}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(files >= 8, "expected cuttle-suite's modules, found {files}");
    assert!(
        offences.is_empty(),
        "cuttle-suite must stay pure:\n{}",
        offences.join("\n")
    );
}
