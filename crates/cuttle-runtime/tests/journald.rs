//! Logging to journald end to end, without a journald: a child process (this test binary,
//! running [`journald_probe_child`]) starts logging with the real
//! `telemetry::init_daemon`, as the daemons do, inside a private mount namespace where
//! `/run/systemd/journal/socket` is a datagram socket owned by the test. tracing-journald
//! always sends there (the path cannot be configured), so the namespace is the only way
//! to catch what a daemon would send to the real journal. The test parses journald's
//! native protocol, turns the entries into `journalctl -o export` text and filters that
//! by `JOB_ID=` as an operator would.
//!
//! Needs root and `unshare` (util-linux), as in CI; without them the tests fail and say
//! why. Nothing here touches the host's journal or mounts: the namespace dies with the
//! child.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cuttle_runtime::telemetry::{self, LogFormat};

/// One journal entry: its fields in the order sent (a name may repeat).
type Entry = Vec<(String, Vec<u8>)>;

/// The events the probe logs, as the daemons log theirs: a span with the job's run and
/// id, fields on events, every level, a message of two lines.
#[test]
#[ignore = "the child process of the journald tests, which run it themselves"]
fn journald_probe_child() {
    telemetry::init_daemon(
        "cuttle-journald-probe",
        LogFormat::Text,
        std::env::var("CUTTLE_LOG").ok().as_deref(),
        &[("MACHINE_TYPE", "smithi")],
    );
    {
        let job = tracing::info_span!("job", run = "r1", job_id = 42);
        let _entered = job.enter();
        tracing::info!(nodes = "smithi001,smithi002", pid = 4242, "job dispatched");
        tracing::debug!("below the filter");
    }
    tracing::warn!(job_id = 43, run = "r1", "waiting for nodes");
    tracing::error!(job_id = %42, "runner failed:\nexit status 1");
    tracing::info!(node = "smithi001", "node released");
}

#[test]
fn events_reach_journald_with_priority_and_unprefixed_fields() {
    let journal = FakeJournal::new(true);
    let run = journal.run_probe(Stream::Matching, &[]);
    assert!(
        run.stderr.is_empty(),
        "logged to stderr as well: {}",
        run.stderr
    );

    let job_dispatched = run.entry("job dispatched");
    for (name, value) in [
        ("PRIORITY", "6"),
        ("SYSLOG_IDENTIFIER", "cuttle-journald-probe"),
        // From the span, unprefixed as event fields are.
        ("RUN", "r1"),
        ("JOB_ID", "42"),
        ("NODES", "smithi001,smithi002"),
        ("PID", "4242"),
        // Added to every entry by init_daemon.
        ("MACHINE_TYPE", "smithi"),
    ] {
        assert_eq!(
            field(job_dispatched, name),
            Some(value),
            "{name} in {}",
            show(std::slice::from_ref(job_dispatched))
        );
    }
    let waiting = run.entry("waiting for nodes");
    assert_eq!(field(waiting, "PRIORITY"), Some("4"));
    assert_eq!(field(waiting, "JOB_ID"), Some("43"));
    assert_eq!(field(waiting, "RUN"), Some("r1"));
    let failed = run.entry("runner failed:\nexit status 1");
    assert_eq!(field(failed, "PRIORITY"), Some("3"));
    assert_eq!(field(failed, "JOB_ID"), Some("42"));
    let released = run.entry("node released");
    assert_eq!(field(released, "NODE"), Some("smithi001"));
    assert_eq!(field(released, "PRIORITY"), Some("6"));
    assert_eq!(field(released, "JOB_ID"), None);
    assert_eq!(field(released, "MACHINE_TYPE"), Some("smithi"));
    assert!(
        run.messages().iter().all(|m| m != "below the filter"),
        "CUTTLE_LOG=info let a debug event through"
    );
    for entry in &run.entries {
        for (name, _) in entry {
            assert!(
                !name.is_empty()
                    && !name.starts_with('_')
                    && !name.starts_with("F_")
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{name:?} is prefixed or not a valid journal field name"
            );
        }
    }

    // As `journalctl -o export JOB_ID=42` would: exactly the two entries of job 42.
    let export = export_format(&run.entries);
    let selected: Vec<String> = select(&export, "JOB_ID", "42")
        .iter()
        .map(|entry| field(entry, "MESSAGE").unwrap().to_owned())
        .collect();
    assert_eq!(
        selected,
        ["job dispatched", "runner failed:\nexit status 1"]
    );
    assert_eq!(select(&export, "JOB_ID", "43").len(), 1);
    assert_eq!(
        select(&export, "SYSLOG_IDENTIFIER", "cuttle-journald-probe").len(),
        4
    );
}

#[test]
fn stderr_that_is_not_the_journal_stream_keeps_text_lines() {
    let journal = FakeJournal::new(true);
    // A supervisor: JOURNAL_STREAM inherited from the dispatcher, stderr a log file.
    for stream in [Stream::Other, Stream::Absent] {
        let run = journal.run_probe(stream, &[]);
        assert!(
            run.entries.is_empty(),
            "{stream:?}: sent to journald: {}",
            show(&run.entries)
        );
        assert!(
            run.stderr.contains("job dispatched") && run.stderr.contains("job_id=42"),
            "{stream:?}: no text line on stderr: {}",
            run.stderr
        );
    }
}

#[test]
fn cuttle_log_target_overrides_the_detection() {
    let journal = FakeJournal::new(true);
    let forced_stderr = journal.run_probe(Stream::Matching, &[("CUTTLE_LOG_TARGET", "stderr")]);
    assert!(
        forced_stderr.entries.is_empty(),
        "{}",
        show(&forced_stderr.entries)
    );
    assert!(
        forced_stderr.stderr.contains("job dispatched"),
        "{}",
        forced_stderr.stderr
    );

    let forced_journald = journal.run_probe(Stream::Absent, &[("CUTTLE_LOG_TARGET", "journald")]);
    assert!(
        forced_journald.stderr.is_empty(),
        "{}",
        forced_journald.stderr
    );
    assert_eq!(
        field(forced_journald.entry("job dispatched"), "JOB_ID"),
        Some("42")
    );
}

#[test]
fn no_journald_listening_falls_back_to_stderr_with_a_warning() {
    let journal = FakeJournal::new(false);
    let run = journal.run_probe(Stream::Matching, &[]);
    assert!(
        run.stderr.contains("cannot log to journald"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("job dispatched"), "{}", run.stderr);
}

/// Fields that journald or journalctl give a meaning of their own: an event field that
/// upper-cases to one of them would, with no prefix, give an entry two `PRIORITY`s or a
/// false `CODE_LINE`. Leading underscores are stripped by tracing-journald.
const JOURNAL_FIELDS: &[&str] = &[
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "CODE_FILE",
    "CODE_LINE",
    "CODE_FUNC",
    "ERRNO",
    "INVOCATION_ID",
    "USER_INVOCATION_ID",
    "SYSLOG_FACILITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_PID",
    "SYSLOG_TIMESTAMP",
    "SYSLOG_RAW",
    "DOCUMENTATION",
    "TID",
    "UNIT",
    "USER_UNIT",
    "OBJECT_PID",
    // Written by tracing-journald itself.
    "TARGET",
    "SPAN_NAME",
    "SPAN_TARGET",
    "SPAN_CODE_FILE",
    "SPAN_CODE_LINE",
];

/// Collisions known today, each to be removed by renaming the field in the code; the test
/// fails when one is gone so that this list does not go stale. (The last one, `priority`
/// in "job re-prioritized", is now `job_priority`.)
const KNOWN_COLLISIONS: &[(&str, &str)] = &[];

#[test]
fn no_logged_field_is_named_like_a_journal_field() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = BTreeSet::new();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    assert!(
        files.len() > 20,
        "found only {} source files under {}",
        files.len(),
        root.display()
    );
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let relative = path.strip_prefix(&root).unwrap().display().to_string();
        for name in logged_field_names(&source) {
            let journal_name = journal_name(&name);
            if JOURNAL_FIELDS.contains(&journal_name.as_str()) {
                found.insert((journal_name, relative.clone()));
            }
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN_COLLISIONS
        .iter()
        .map(|(name, file)| ((*name).to_owned(), (*file).to_owned()))
        .collect();
    assert_eq!(
        found, known,
        "a logged field collides with a journal field (rename it), or a known collision is gone (remove it from KNOWN_COLLISIONS)"
    );
}

/// The `.rs` files under each crate's `src/`.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|name| name != "target" && name != "tests")
            {
                rust_files(&path, files);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs")
            && path.components().any(|c| c.as_os_str() == "src")
        {
            files.push(path);
        }
    }
}

/// What tracing-journald makes of a field name: `.` to `_`, leading `_` dropped, only
/// ASCII letters, digits and `_`, upper-cased.
fn journal_name(name: &str) -> String {
    name.replace('.', "_")
        .trim_start_matches('_')
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The field names in the tracing macros of `source`: `name = value`, `%name`, `?name` and
/// a bare `name` among the top-level arguments of `info!(...)` and its kin. Good enough
/// for this code base's style; not a Rust parser.
fn logged_field_names(source: &str) -> Vec<String> {
    const MACROS: &[&str] = &[
        "info!(",
        "warn!(",
        "error!(",
        "debug!(",
        "trace!(",
        "event!(",
        "info_span!(",
        "debug_span!(",
        "warn_span!(",
        "error_span!(",
        "trace_span!(",
        "span!(",
    ];
    let bytes = source.as_bytes();
    let mut names = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(open) = MACROS
            .iter()
            .filter(|m| bytes[at..].starts_with(m.as_bytes()))
            .map(|m| at + m.len())
            .next()
            .filter(|_| {
                at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_')
            })
        else {
            at += 1;
            continue;
        };
        // The top-level arguments, with string literals blanked.
        let (mut depth, mut i, mut argument, mut arguments) = (1, open, String::new(), Vec::new());
        while i < bytes.len() && depth > 0 {
            let c = bytes[i];
            match c {
                b'"' => {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    argument.push_str("\"\"");
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    argument.push(c as char);
                }
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth > 0 {
                        argument.push(c as char);
                    }
                }
                b',' if depth == 1 => arguments.push(std::mem::take(&mut argument)),
                _ => argument.push(c as char),
            }
            i += 1;
        }
        arguments.push(argument);
        for argument in arguments {
            let argument = argument.trim();
            let name = match argument.split_once('=') {
                Some((name, rest)) if !rest.starts_with('=') => name.trim(),
                _ => argument.trim_start_matches(['%', '?']),
            };
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
            if is_name && !["target", "parent", "name", "level"].contains(&name) {
                names.push(name.to_owned());
            }
        }
        at = i;
    }
    names
}

#[test]
fn the_field_scanner_finds_named_shorthand_and_multi_line_fields() {
    let source = r#"
        tracing::info!(job_id = %id, priority = p.get(), "x, y = {z}", z = 1);
        warn!(
            %node,
            ?nodes,
            run,
            "done"
        );
        my_info!(ignored = 1);
    "#;
    assert_eq!(
        logged_field_names(source),
        ["job_id", "priority", "z", "node", "nodes", "run"]
    );
}

/// Whether the probe's stderr is the stream `JOURNAL_STREAM` names.
#[derive(Debug, Clone, Copy)]
enum Stream {
    /// As systemd sets it for a service whose stderr is the journal.
    Matching,
    /// Set, but for another file (a child whose stderr was redirected).
    Other,
    /// Not set (not under systemd).
    Absent,
}

/// A directory of the test's, mounted over `/run/systemd/journal` (or the nearest
/// existing parent) in the child's namespace, holding `socket`.
struct FakeJournal {
    dir: tempfile::TempDir,
    mount_point: PathBuf,
    socket: Option<UnixDatagram>,
}

/// What one probe sent to the journal and wrote to stderr.
struct ProbeRun {
    entries: Vec<Entry>,
    stderr: String,
}

impl ProbeRun {
    fn messages(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|entry| field(entry, "MESSAGE").map(str::to_owned))
            .collect()
    }

    fn entry(&self, message: &str) -> &Entry {
        let found: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|entry| field(entry, "MESSAGE") == Some(message))
            .collect();
        assert_eq!(found.len(), 1, "{message:?} in {:?}", self.messages());
        found[0]
    }
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

impl FakeJournal {
    /// `listening`: whether a socket is at the path (else journald looks absent).
    fn new(listening: bool) -> FakeJournal {
        let dir = tempfile::tempdir().unwrap();
        // Mount over the deepest directory that exists on this host: nothing is created
        // outside the test's directory, and the real journal (if any) is only hidden from
        // the child.
        let mount_point = ["/run/systemd/journal", "/run/systemd", "/run"]
            .into_iter()
            .map(PathBuf::from)
            .find(|path| path.is_dir())
            .expect("no /run on this host");
        let inside = Path::new(JOURNAL_SOCKET)
            .strip_prefix(&mount_point)
            .unwrap();
        let socket_path = dir.path().join(inside);
        std::fs::create_dir_all(socket_path.parent().unwrap()).unwrap();
        let socket = listening.then(|| {
            let socket = UnixDatagram::bind(&socket_path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            socket
        });
        FakeJournal {
            dir,
            mount_point,
            socket,
        }
    }

    /// Runs [`journald_probe_child`] in a new mount namespace with this journal mounted,
    /// stderr to a file, `JOURNAL_STREAM` as `stream` says and `envs` on top.
    fn run_probe(&self, stream: Stream, envs: &[(&str, &str)]) -> ProbeRun {
        let unshare = Command::new("unshare").arg("--version").output();
        assert!(
            unshare.is_ok_and(|out| out.status.success()),
            "these tests need unshare(1) from util-linux (apt-get install util-linux) and root"
        );
        let stderr_path = self.dir.path().join(format!("stderr-{}", rand_suffix()));
        let stderr = File::create(&stderr_path).unwrap();
        let metadata = stderr.metadata().unwrap();
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#)
            .arg("sh")
            .arg(self.dir.path())
            .arg(&self.mount_point)
            .arg(std::env::current_exe().unwrap())
            .args([
                "journald_probe_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for name in [
            "JOURNAL_STREAM",
            "CUTTLE_LOG_TARGET",
            "NOTIFY_SOCKET",
            "RUST_LOG",
        ] {
            command.env_remove(name);
        }
        command.env("CUTTLE_LOG", "info");
        match stream {
            Stream::Matching => {
                command.env(
                    "JOURNAL_STREAM",
                    format!("{}:{}", metadata.dev(), metadata.ino()),
                );
            }
            Stream::Other => {
                command.env(
                    "JOURNAL_STREAM",
                    format!("{}:{}", metadata.dev(), metadata.ino() + 1),
                );
            }
            Stream::Absent => {}
        }
        command.envs(envs.iter().copied());
        let mut child = command.spawn().expect("cannot run unshare");

        // Read while the child runs: a unix datagram queue holds only a few messages
        // (net.unix.max_dgram_qlen), and a full one blocks the sender.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut datagrams = Vec::new();
        let mut buffer = vec![0u8; 1 << 16];
        let status = loop {
            let exited = child.try_wait().unwrap();
            match &self.socket {
                Some(socket) => match socket.recv(&mut buffer) {
                    Ok(n) => {
                        datagrams.push(buffer[..n].to_vec());
                        continue;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => panic!("cannot receive from the test journal: {error}"),
                },
                None => std::thread::sleep(Duration::from_millis(20)),
            }
            // The queue was empty after the child had exited: everything is in.
            if let Some(status) = exited {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the probe did not finish within 60 s");
            }
        };
        let mut stderr = String::new();
        File::open(&stderr_path)
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status.success(),
            "the probe failed ({status}); if unshare or mount said 'Operation not permitted', \
             run the tests as root: {stderr}"
        );
        ProbeRun {
            // tracing-journald checks the socket with an empty datagram at start.
            entries: datagrams
                .iter()
                .filter(|d| !d.is_empty())
                .map(|d| parse_native(d))
                .collect(),
            stderr,
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A field's value as text, the first if the name repeats.
fn field<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, value)| std::str::from_utf8(value).unwrap())
}

/// One datagram of journald's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL): fields
/// as `NAME=value\n`, or, for any value, `NAME\n`, a little-endian u64 length, the bytes
/// and `\n`.
fn parse_native(datagram: &[u8]) -> Entry {
    match parse_fields(datagram, false) {
        Ok((fields, _)) => fields,
        Err(error) => panic!(
            "not the native protocol ({error}): {:?}",
            String::from_utf8_lossy(datagram)
        ),
    }
}

/// Fields in the native protocol, or in the export format (where an empty line ends an
/// entry) when `stop_at_empty_line`; stops at the end or at that line, and returns the
/// fields and how many bytes they took.
fn parse_fields(bytes: &[u8], stop_at_empty_line: bool) -> Result<(Entry, usize), String> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if stop_at_empty_line && bytes[at] == b'\n' {
            break;
        }
        let end = bytes[at..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'=')
            .map(|p| at + p)
            .ok_or("a field without = or newline")?;
        let name = std::str::from_utf8(&bytes[at..end]).map_err(|e| e.to_string())?;
        if bytes[end] == b'=' {
            let value_end = bytes[end..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| end + p)
                .ok_or("a NAME=value field without its newline")?;
            fields.push((name.to_owned(), bytes[end + 1..value_end].to_vec()));
            at = value_end + 1;
        } else {
            let length_bytes = bytes
                .get(end + 1..end + 9)
                .ok_or("a binary field without its length")?;
            let length = u64::from_le_bytes(length_bytes.try_into().unwrap()) as usize;
            let value = bytes
                .get(end + 9..end + 9 + length)
                .ok_or("a binary field shorter than its length")?;
            if bytes.get(end + 9 + length) != Some(&b'\n') {
                return Err(format!("binary field {name} not followed by a newline"));
            }
            fields.push((name.to_owned(), value.to_vec()));
            at = end + 9 + length + 1;
        }
    }
    Ok((fields, at))
}

/// Entries as `journalctl -o export` prints them (without the `__CURSOR` and timestamps
/// journald adds): text fields as `NAME=value`, a value with a newline or other control
/// byte in the binary form, an empty line after each entry.
fn export_format(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        for (name, value) in entry {
            out.extend_from_slice(name.as_bytes());
            let text = std::str::from_utf8(value).is_ok_and(|t| !t.chars().any(char::is_control));
            if text {
                out.push(b'=');
                out.extend_from_slice(value);
            } else {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
                out.extend_from_slice(value);
            }
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// Entries as text, for a failure message.
fn show(entries: &[Entry]) -> String {
    String::from_utf8_lossy(&export_format(entries)).into_owned()
}

/// The entries of an export stream that have `name=value`, as a journalctl match does.
fn select(export: &[u8], name: &str, value: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut rest = export;
    while !rest.is_empty() {
        let (entry, used) = parse_fields(rest, true).unwrap();
        assert_eq!(
            rest.get(used),
            Some(&b'\n'),
            "an export entry not ended by an empty line"
        );
        rest = &rest[used + 1..];
        if entry
            .iter()
            .any(|(n, v)| n == name && v == value.as_bytes())
        {
            entries.push(entry);
        }
    }
    entries
}
