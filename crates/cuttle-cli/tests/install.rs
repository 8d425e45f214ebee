//! `scripts/install.sh` into a scratch root, with the binaries of this build: the layout
//! and modes a lab host gets, the `cuttle` user in the root's own `/etc/passwd`, a second
//! run that changes nothing, an operator's config that is never overwritten, and
//! `systemd-analyze verify` clean on the installed units.
//!
//! Needs root (the script sets owners) and systemd's tools (`systemd-sysusers`,
//! `systemd-tmpfiles`, `systemd-analyze`), as in CI; without them it fails and says why.
//! Nothing outside the scratch root is touched.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARIES: [&str; 5] = [
    "cuttle-api",
    "cuttle",
    "cuttle-dispatcher",
    "cuttle-supervisor",
    "cuttle-local-runner",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of this build's binaries (`target/debug` or `target/release`).
fn build_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_cuttle"))
        .parent()
        .unwrap()
        .to_owned();
    for bin in BINARIES {
        assert!(
            dir.join(bin).is_file(),
            "no {} yet: build the daemons first (cargo build -p cuttle-api -p cuttle-dispatcher -p cuttle-supervisor --bins)",
            dir.join(bin).display()
        );
    }
    dir
}

fn install(root: &Path, from: &Path) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--from")
        .arg(from)
        .output()
        .expect("cannot run bash");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "install.sh failed ({}):\n{text}",
        out.status
    );
    text
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Mode, uid, gid, size, modification time (seconds, nanoseconds) and a file's content.
type Stat = (u32, u32, u32, u64, i64, i64, Vec<u8>);

/// Every path under `root`, with its [`Stat`].
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Stat> {
    let mut all = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let content = if metadata.is_file() {
            std::fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
        all.insert(
            path.strip_prefix(root).unwrap().to_owned(),
            (
                metadata.mode(),
                metadata.uid(),
                metadata.gid(),
                metadata.size(),
                metadata.mtime(),
                metadata.mtime_nsec(),
                content,
            ),
        );
    }
    all
}

/// `name`'s uid and gid in the scratch root's `/etc/passwd`.
fn passwd_entry(root: &Path, name: &str) -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name)).then(|| {
            (
                fields[2].parse().unwrap(),
                fields[3].parse().unwrap(),
                fields[5].to_owned(),
            )
        })
    })
}

fn assert_mode(root: &Path, path: &str, mode: u32, uid: u32, gid: u32) {
    let metadata = std::fs::metadata(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|error| panic!("{path} was not installed: {error}"));
    assert_eq!(
        (metadata.mode() & 0o7777, metadata.uid(), metadata.gid()),
        (mode, uid, gid),
        "{path}: mode {:o}, owner {}:{}",
        metadata.mode() & 0o7777,
        metadata.uid(),
        metadata.gid()
    );
}

#[test]
fn install_script_lays_out_a_scratch_root_idempotently_with_verified_units() {
    let from = build_dir();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    let first = install(&root, &from);

    // The cuttle user and group, in the root's own files, with its home.
    let (uid, gid, home) = passwd_entry(&root, "cuttle")
        .unwrap_or_else(|| panic!("no cuttle user in the root's /etc/passwd:\n{first}"));
    assert_eq!(home, "/var/lib/cuttle");
    assert!(
        std::fs::read_to_string(root.join("etc/group"))
            .unwrap()
            .lines()
            .any(|line| line.starts_with(&format!("cuttle:x:{gid}:"))),
        "no cuttle group with gid {gid}"
    );

    for bin in BINARIES {
        let path = format!("/usr/local/bin/{bin}");
        assert_mode(&root, &path, 0o755, 0, 0);
        assert_eq!(
            std::fs::read(root.join(path.trim_start_matches('/'))).unwrap(),
            std::fs::read(from.join(bin)).unwrap(),
            "{bin} differs from the build's"
        );
    }
    for (installed, source) in [
        (
            "/etc/systemd/system/cuttle-api.service",
            "systemd/cuttle-api.service",
        ),
        (
            "/etc/systemd/system/cuttle-dispatcher@.service",
            "systemd/cuttle-dispatcher@.service",
        ),
        ("/usr/lib/sysusers.d/cuttle.conf", "systemd/cuttle.sysusers"),
        ("/usr/lib/tmpfiles.d/cuttle.conf", "systemd/cuttle.tmpfiles"),
    ] {
        assert_mode(&root, installed, 0o644, 0, 0);
        assert_eq!(
            std::fs::read_to_string(root.join(installed.trim_start_matches('/'))).unwrap(),
            std::fs::read_to_string(repo().join(source)).unwrap(),
            "{installed} is not {source} (the default prefix needs no rewriting)"
        );
    }
    assert_mode(&root, "/var/lib/cuttle", 0o750, uid, gid);
    assert_mode(&root, "/var/lib/cuttle/archive", 0o750, uid, gid);
    assert_mode(&root, "/var/lib/cuttle/.ssh", 0o700, uid, gid);
    assert_mode(&root, "/etc/cuttle", 0o750, 0, gid);
    for config in ["cuttle-api.toml", "cuttle-dispatcher.toml"] {
        assert_mode(&root, &format!("/etc/cuttle/{config}"), 0o640, 0, gid);
        assert_eq!(
            std::fs::read(root.join("etc/cuttle").join(config)).unwrap(),
            std::fs::read(repo().join("deploy").join(config)).unwrap()
        );
    }

    // Again: nothing changes, not even a modification time.
    let before = snapshot(&root);
    let second = install(&root, &from);
    let after = snapshot(&root);
    let changed: std::collections::BTreeSet<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .collect();
    assert!(
        changed.is_empty(),
        "the second run changed {changed:?}:\n{second}"
    );
    assert!(
        !second.lines().any(|line| line.starts_with("installed ")),
        "{second}"
    );

    // An operator's config survives, and the script says it kept it.
    let edited = root.join("etc/cuttle/cuttle-api.toml");
    std::fs::write(&edited, "# edited by the operator\n").unwrap();
    let third = install(&root, &from);
    assert_eq!(
        std::fs::read_to_string(&edited).unwrap(),
        "# edited by the operator\n"
    );
    assert!(
        third.contains(&format!("kept       {}", edited.display())),
        "{third}"
    );

    // systemd-analyze verify resolves the units' dependencies (sysinit.target, ...) and
    // checks ExecStart= binaries inside --root: give the root systemd's own units.
    let system_units = Path::new("/usr/lib/systemd/system");
    assert!(
        system_units.join("sysinit.target").exists(),
        "no systemd units on this host (apt-get install systemd)"
    );
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(system_units)
        .arg(root.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copied.success());
    let verify = || {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .args(["cuttle-api.service", "cuttle-dispatcher@smithi.service"])
            .output()
            .expect("systemd-analyze is missing (apt-get install systemd)")
    };
    let out = verify();
    let text = output_text(&out);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify is not clean ({}):\n{text}",
        out.status
    );
    // And it does look: without its binary, a unit fails verification.
    std::fs::remove_file(root.join("usr/local/bin/cuttle-api")).unwrap();
    let out = verify();
    assert!(
        !out.status.success() && output_text(&out).contains("cuttle-api"),
        "verify passed a unit whose ExecStart binary is missing:\n{}",
        output_text(&out)
    );
}

#[test]
fn install_script_explains_itself_and_refuses_a_missing_build() {
    let help = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--help")
        .output()
        .unwrap();
    let text = output_text(&help);
    assert!(help.status.success(), "{text}");
    for option in [
        "--root",
        "--prefix",
        "--from",
        "cuttle-local-runner",
        "sysusers",
    ] {
        assert!(
            text.contains(option),
            "--help does not mention {option}:\n{text}"
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .arg("--root")
        .arg(scratch.path().join("root"))
        .arg("--from")
        .arg(scratch.path().join("no-build"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("build first"),
        "{}",
        output_text(&out)
    );
    assert!(
        !scratch.path().join("root").exists(),
        "a failed install left files behind"
    );
}

#[test]
fn install_script_points_the_units_at_its_prefix() {
    // Stand-ins for the binaries: only the layout is under test here.
    let scratch = tempfile::tempdir().unwrap();
    let from = scratch.path().join("build");
    std::fs::create_dir(&from).unwrap();
    for bin in BINARIES {
        std::fs::write(from.join(bin), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            from.join(bin),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let root = scratch.path().join("root");
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args(["--prefix", "/opt/cuttle"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("--from={}", from.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert_mode(&root, "/opt/cuttle/bin/cuttle-local-runner", 0o755, 0, 0);
    let api = std::fs::read_to_string(root.join("etc/systemd/system/cuttle-api.service")).unwrap();
    assert!(
        api.contains(
            "\nExecStart=/opt/cuttle/bin/cuttle-api --config /etc/cuttle/cuttle-api.toml\n"
        ),
        "{api}"
    );
    let dispatcher =
        std::fs::read_to_string(root.join("etc/systemd/system/cuttle-dispatcher@.service"))
            .unwrap();
    assert!(
        dispatcher.contains("\nExecStart=/opt/cuttle/bin/cuttle-dispatcher "),
        "{dispatcher}"
    );
    assert!(!dispatcher.contains("/usr/local/bin"), "{dispatcher}");
}
