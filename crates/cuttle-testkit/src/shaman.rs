//! A Shaman double: a real HTTP server on a loopback port that answers
//! `GET /api/search/` as Shaman does (filters `status`, `project`, `flavor`, `distros`,
//! `ref`, `sha1`; the newest build first), from builds the test sets. It can also be
//! slow (answer after a delay) or down (answer 503, or refuse connections once
//! stopped). It counts the searches it answered.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One repo (a build of one ref for one distro), as Shaman lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub branch: String,
    pub sha1: String,
    /// `ubuntu`, `centos`, ...
    pub distro: String,
    /// As Shaman stores it: `22.04`, `9`, ...
    pub distro_version: String,
    pub arch: String,
    pub flavor: String,
    /// `requested`, `queued`, `building`, `ready` or `failed`.
    pub status: String,
    /// The Jenkins build it came from.
    pub build_url: String,
}

impl Build {
    /// A build of `branch` at `sha1` for CentOS 9 x86_64, default flavor (teuthology's
    /// default question), in `status`.
    pub fn centos(branch: &str, sha1: &str, status: &str) -> Build {
        Build {
            branch: branch.into(),
            sha1: sha1.into(),
            distro: "centos".into(),
            distro_version: "9".into(),
            arch: "x86_64".into(),
            flavor: "default".into(),
            status: status.into(),
            build_url: format!("https://jenkins.ceph.com/job/ceph-dev-build/{}", sha1.len()),
        }
    }

    fn json(&self, modified: usize) -> String {
        format!(
            r#"{{"ref": {}, "sha1": {}, "distro": {}, "distro_version": {}, "archs": [{}], "flavor": {}, "status": {}, "project": "ceph", "url": {}, "chacra_url": {}, "modified": "2026-11-29 00:00:{:02}.000000", "extra": {{"build_url": {}, "package_manager_version": "20.0.0-1"}}}}"#,
            quote(&self.branch),
            quote(&self.sha1),
            quote(&self.distro),
            quote(&self.distro_version),
            quote(&self.arch),
            quote(&self.flavor),
            quote(&self.status),
            quote(&format!(
                "https://chacra.ceph.com/r/ceph/{}/{}/{}/{}/flavors/{}/",
                self.branch, self.sha1, self.distro, self.distro_version, self.flavor
            )),
            quote(&format!(
                "https://chacra.ceph.com/repos/ceph/{}/{}/",
                self.branch, self.sha1
            )),
            modified % 60,
            quote(&self.build_url),
        )
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first; answers list the newest first.
    builds: Vec<Build>,
    delay: Option<Duration>,
}

/// The running double; stops when dropped.
#[derive(Debug)]
pub struct Shaman {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    searches: Arc<AtomicUsize>,
}

impl Shaman {
    pub fn start() -> Shaman {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let shaman = Shaman {
            addr,
            state: Arc::default(),
            down: Arc::default(),
            stopped: Arc::default(),
            searches: Arc::default(),
        };
        let (state, down, stopped, searches) = (
            shaman.state.clone(),
            shaman.down.clone(),
            shaman.stopped.clone(),
            shaman.searches.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (state, down, searches) = (state.clone(), down.clone(), searches.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &state, &down, &searches);
                });
            }
        });
        shaman
    }

    /// The base URL to configure (`--shaman-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a build (the newest so far).
    pub fn add(&self, build: Build) {
        self.state.lock().unwrap().builds.push(build);
    }

    /// Sets the status of every build of `branch` at `sha1`.
    pub fn set_status(&self, branch: &str, sha1: &str, status: &str) {
        let mut state = self.state.lock().unwrap();
        for build in &mut state.builds {
            if build.branch == branch && build.sha1 == sha1 {
                build.status = status.into();
            }
        }
    }

    /// Answers each search only after `delay` (None: at once).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().delay = delay;
    }

    /// While down, every request gets `503 Service Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Searches answered so far (successfully or not).
    pub fn searches(&self) -> usize {
        self.searches.load(Ordering::SeqCst)
    }
}

impl Drop for Shaman {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn answer(
    stream: TcpStream,
    state: &Mutex<State>,
    down: &AtomicBool,
    searches: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, body) = if down.load(Ordering::SeqCst) {
        searches.fetch_add(1, Ordering::SeqCst);
        (
            "503 Service Unavailable",
            "{\"error\": \"down\"}".to_owned(),
        )
    } else if method == "GET" && (path == "/api/search/" || path == "/api/search") {
        let delay = state.lock().unwrap().delay;
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        searches.fetch_add(1, Ordering::SeqCst);
        ("200 OK", search(&state.lock().unwrap().builds, query))
    } else {
        ("404 Not Found", "{\"error\": \"not found\"}".to_owned())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Shaman's search: every filter given must match; newest first.
fn search(builds: &[Build], query: &str) -> String {
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect();
    let matching: Vec<String> = builds
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, build)| {
            params.iter().all(|(key, value)| match key.as_str() {
                "status" => &build.status == value,
                "project" => value == "ceph",
                "flavor" => &build.flavor == value,
                "ref" => &build.branch == value,
                "sha1" => value == "latest" || &build.sha1 == value,
                "distros" => value.split(',').any(|distro| {
                    let mut parts = distro.split('/');
                    let (name, version, arch) = (parts.next(), parts.next(), parts.next());
                    name == Some(build.distro.as_str())
                        && version == Some(build.distro_version.as_str())
                        && arch.is_none_or(|arch| arch == build.arch)
                }),
                _ => true,
            })
        })
        .map(|(i, build)| build.json(i))
        .collect();
    format!("[{}]", matching.join(", "))
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
