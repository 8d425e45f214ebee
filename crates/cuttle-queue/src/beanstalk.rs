//! An async handle to one beanstalkd connection.
//!
//! `beanstalkc` is a blocking client with `&mut self` on every call, so the connection is
//! owned by one dedicated thread and commands reach it over a channel, each with a oneshot
//! for its answer. The thread (re)connects lazily: a lost connection fails the command in
//! flight and the next command dials again, so a beanstalkd restart needs no restart of
//! ours. Never call `beanstalkc` from an async task.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use beanstalkc::{Beanstalkc, BeanstalkcError};
use tokio::sync::oneshot;

/// beanstalkd's default `max-job-size` (its `-z` option), used until the server says.
pub const DEFAULT_MAX_JOB_SIZE: usize = 65_535;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "cannot reach beanstalkd at {addr}: {detail}; start it (systemctl start beanstalkd) or fix --beanstalk"
    )]
    Unreachable { addr: String, detail: String },
    #[error("beanstalkd at {addr} refused {command}: {detail}")]
    Refused {
        addr: String,
        command: &'static str,
        detail: String,
    },
    #[error("the beanstalkd connection thread for {addr} has stopped")]
    Stopped { addr: String },
}

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

enum Command {
    Put {
        tube: String,
        body: Vec<u8>,
        priority: u32,
        ttr: Duration,
        reply: Reply<u64>,
    },
    Delete {
        id: u64,
        reply: Reply<()>,
    },
    Stats {
        reply: Reply<HashMap<String, String>>,
    },
    StatsJob {
        id: u64,
        reply: Reply<HashMap<String, String>>,
    },
    StatsTube {
        tube: String,
        reply: Reply<HashMap<String, String>>,
    },
    Reserve {
        tube: String,
        wait: Duration,
        reply: Reply<Option<Reserved>>,
    },
    Touch {
        id: u64,
        reply: Reply<()>,
    },
    PeekReadyPriority {
        tube: String,
        reply: Reply<Option<(u64, u32)>>,
    },
    Peek {
        id: u64,
        reply: Reply<Option<Vec<u8>>>,
    },
    Bury {
        id: u64,
        priority: u32,
        reply: Reply<()>,
    },
    Release {
        id: u64,
        priority: u32,
        delay: Duration,
        reply: Reply<()>,
    },
    PeekBuried {
        tube: String,
        reply: Reply<Option<(u64, Vec<u8>)>>,
    },
    KickJob {
        id: u64,
        reply: Reply<bool>,
    },
}

/// A job reserved from a tube: only its id and body, never a `beanstalkc::Job` (which
/// borrows the connection). Touch, bury, release and delete it through the same
/// [`QueueClient`] that reserved it: beanstalkd ties a reservation to its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub id: u64,
    pub body: Vec<u8>,
}

/// How long a command may wait for beanstalkd's answer by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A cloneable async handle; all clones share one connection thread, which ends when the
/// last handle is dropped.
///
/// `beanstalkc` has no read timeout, so a beanstalkd that accepts but never answers would
/// block the thread for good. Each command therefore has a deadline: when it passes, the
/// command fails as unreachable and the stuck thread is abandoned for a fresh one (the old
/// one exits once its read returns, as nothing can send to it any more).
#[derive(Debug, Clone)]
pub struct QueueClient {
    thread: Arc<Mutex<Thread>>,
    addr: String,
    timeout: Duration,
}

/// The current connection thread, numbered so a caller whose command timed out replaces
/// only the thread it used.
#[derive(Debug)]
struct Thread {
    generation: u64,
    commands: mpsc::Sender<Command>,
}

/// Starts a connection thread for `addr` and returns the way to send it commands.
fn connection_thread(addr: &str) -> mpsc::Sender<Command> {
    let (commands, receiver) = mpsc::channel();
    let thread_addr = addr.to_owned();
    std::thread::Builder::new()
        .name(format!("beanstalk {addr}"))
        .spawn(move || Connection::new(thread_addr).serve(receiver))
        .expect("spawn the beanstalkd connection thread");
    commands
}

impl QueueClient {
    /// Starts the connection thread for `addr` (`host:port`). Does not dial yet: the first
    /// command does, so a daemon can start before beanstalkd.
    pub fn new(addr: &str) -> QueueClient {
        QueueClient::with_timeout(addr, DEFAULT_COMMAND_TIMEOUT)
    }

    /// Like [`QueueClient::new`], with each command's deadline set to `timeout`.
    pub fn with_timeout(addr: &str, timeout: Duration) -> QueueClient {
        QueueClient {
            thread: Arc::new(Mutex::new(Thread {
                generation: 0,
                commands: connection_thread(addr),
            })),
            addr: addr.to_owned(),
            timeout,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Stopped {
            addr: self.addr.clone(),
        };
        let sent_to = {
            let thread = self.lock_thread();
            thread.commands.send(make(reply)).map_err(|_| stopped())?;
            thread.generation
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(answer) => answer.map_err(|_| stopped())?,
            Err(_) => {
                let mut thread = self.lock_thread();
                // Another caller may have replaced the stuck thread already.
                if thread.generation == sent_to {
                    *thread = Thread {
                        generation: sent_to + 1,
                        commands: connection_thread(&self.addr),
                    };
                }
                Err(QueueError::Unreachable {
                    addr: self.addr.clone(),
                    detail: format!("no answer within {} s", self.timeout.as_secs_f64()),
                })
            }
        }
    }

    fn lock_thread(&self) -> std::sync::MutexGuard<'_, Thread> {
        // The lock guards a plain swap; a panic while holding it leaves valid state.
        self.thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a job on `tube`; returns its beanstalkd id.
    pub async fn put(
        &self,
        tube: &str,
        body: Vec<u8>,
        priority: u32,
        ttr: Duration,
    ) -> Result<u64, QueueError> {
        let tube = tube.to_owned();
        self.call(|reply| Command::Put {
            tube,
            body,
            priority,
            ttr,
            reply,
        })
        .await
    }

    pub async fn delete(&self, id: u64) -> Result<(), QueueError> {
        self.call(|reply| Command::Delete { id, reply }).await
    }

    /// The server's `stats` (also a cheap liveness check).
    pub async fn stats(&self) -> Result<HashMap<String, String>, QueueError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// `stats-job` for one job: its tube, state, priority, age, …
    pub async fn stats_job(&self, id: u64) -> Result<HashMap<String, String>, QueueError> {
        self.call(|reply| Command::StatsJob { id, reply }).await
    }

    /// `peek <id>`: the body of job `id` in any state; `None` if beanstalkd has no such job
    /// (NOT_FOUND).
    pub async fn peek(&self, id: u64) -> Result<Option<Vec<u8>>, QueueError> {
        self.call(|reply| Command::Peek { id, reply }).await
    }

    /// `stats-tube`: the tube's ready, reserved, buried, … counts. A tube nobody has used
    /// yet is refused by beanstalkd (NOT_FOUND).
    pub async fn stats_tube(&self, tube: &str) -> Result<HashMap<String, String>, QueueError> {
        let tube = tube.to_owned();
        self.call(|reply| Command::StatsTube { tube, reply }).await
    }

    /// Reserves the next ready job of `tube`, waiting up to `wait` (whole seconds; keep it
    /// well under the command deadline). `None` when none came. This connection watches
    /// only `tube`.
    pub async fn reserve(
        &self,
        tube: &str,
        wait: Duration,
    ) -> Result<Option<Reserved>, QueueError> {
        let tube = tube.to_owned();
        self.call(|reply| Command::Reserve { tube, wait, reply })
            .await
    }

    /// The most urgent ready job of `tube` (what the next reserve would get): its id and
    /// priority, or `None` if nothing is ready.
    pub async fn peek_ready_priority(&self, tube: &str) -> Result<Option<(u64, u32)>, QueueError> {
        let tube = tube.to_owned();
        self.call(|reply| Command::PeekReadyPriority { tube, reply })
            .await
    }

    /// Restarts the time-to-run of a job this connection reserved.
    pub async fn touch(&self, id: u64) -> Result<(), QueueError> {
        self.call(|reply| Command::Touch { id, reply }).await
    }

    /// Buries a job this connection reserved: it stays on beanstalkd for an operator to
    /// inspect (`peek-buried`) or kick, and is never handed out again on its own.
    pub async fn bury(&self, id: u64, priority: u32) -> Result<(), QueueError> {
        self.call(|reply| Command::Bury {
            id,
            priority,
            reply,
        })
        .await
    }

    /// Puts a job this connection reserved back to ready (after `delay`) with `priority`.
    pub async fn release(&self, id: u64, priority: u32, delay: Duration) -> Result<(), QueueError> {
        self.call(|reply| Command::Release {
            id,
            priority,
            delay,
            reply,
        })
        .await
    }

    /// `peek-buried` on `tube`: the id and body of the first job buried there (beanstalkd
    /// shows no other), or `None` when nothing is buried on it.
    pub async fn peek_buried(&self, tube: &str) -> Result<Option<(u64, Vec<u8>)>, QueueError> {
        let tube = tube.to_owned();
        self.call(|reply| Command::PeekBuried { tube, reply }).await
    }

    /// `kick-job <id>`: moves a buried (or delayed) job to ready. `false` when beanstalkd
    /// has no such job, or it is neither buried nor delayed (NOT_FOUND).
    pub async fn kick_job(&self, id: u64) -> Result<bool, QueueError> {
        self.call(|reply| Command::KickJob { id, reply }).await
    }

    /// The largest job body the server accepts (its `max-job-size`).
    pub async fn max_job_size(&self) -> Result<usize, QueueError> {
        let stats = self.stats().await?;
        Ok(stats
            .get("max-job-size")
            .and_then(|size| size.parse().ok())
            .unwrap_or(DEFAULT_MAX_JOB_SIZE))
    }
}

/// beanstalkd's NOT_FOUND answer as `None`; any other refusal stays an error.
fn not_found_is_none<T>(result: Result<T, QueueError>) -> Result<Option<T>, QueueError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(QueueError::Refused { detail, .. }) if detail.contains("NotFound") => Ok(None),
        Err(other) => Err(other),
    }
}

/// The thread side: owns the blocking client.
struct Connection {
    addr: String,
    client: Option<Beanstalkc>,
    /// The tube `use`d on the current connection, to skip redundant `use` commands.
    using: Option<String>,
    /// The one tube the current connection watches, once a reserve has set it up.
    watching: Option<String>,
}

impl Connection {
    fn new(addr: String) -> Connection {
        Connection {
            addr,
            client: None,
            using: None,
            watching: None,
        }
    }

    fn serve(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            match command {
                Command::Put {
                    tube,
                    body,
                    priority,
                    ttr,
                    reply,
                } => {
                    let result = self.with_client("put", |conn, using| {
                        if using.as_deref() != Some(tube.as_str()) {
                            conn.use_tube(&tube)?;
                            *using = Some(tube.clone());
                        }
                        conn.put(&body, priority, Duration::ZERO, ttr)
                    });
                    let _ = reply.send(result);
                }
                Command::Delete { id, reply } => {
                    let _ = reply.send(self.with_client("delete", |conn, _| conn.delete(id)));
                }
                Command::Stats { reply } => {
                    let _ = reply.send(self.with_client("stats", |conn, _| conn.stats()));
                }
                Command::StatsJob { id, reply } => {
                    let _ = reply.send(self.with_client("stats-job", |conn, _| conn.stats_job(id)));
                }
                Command::StatsTube { tube, reply } => {
                    let _ = reply
                        .send(self.with_client("stats-tube", |conn, _| conn.stats_tube(&tube)));
                }
                Command::Reserve { tube, wait, reply } => {
                    let _ = reply.send(self.reserve(&tube, wait));
                }
                Command::PeekReadyPriority { tube, reply } => {
                    let _ = reply.send(self.peek_ready_priority(&tube));
                }
                Command::Peek { id, reply } => {
                    let peeked = self.with_client("peek", |conn, _| {
                        conn.peek(id).map(|job| job.body().to_vec())
                    });
                    let _ = reply.send(match peeked {
                        Ok(body) => Ok(Some(body)),
                        Err(QueueError::Refused { detail, .. }) if detail.contains("NotFound") => {
                            Ok(None)
                        }
                        Err(other) => Err(other),
                    });
                }
                Command::Touch { id, reply } => {
                    let _ = reply.send(self.with_client("touch", |conn, _| conn.touch(id)));
                }
                Command::Bury {
                    id,
                    priority,
                    reply,
                } => {
                    let _ = reply.send(self.with_client("bury", |conn, _| conn.bury(id, priority)));
                }
                Command::Release {
                    id,
                    priority,
                    delay,
                    reply,
                } => {
                    let _ = reply.send(
                        self.with_client("release", |conn, _| conn.release(id, priority, delay)),
                    );
                }
                Command::PeekBuried { tube, reply } => {
                    let peeked = self.with_client("peek-buried", |conn, using| {
                        if using.as_deref() != Some(tube.as_str()) {
                            conn.use_tube(&tube)?;
                            *using = Some(tube.clone());
                        }
                        conn.peek_buried()
                            .map(|job| (job.id(), job.body().to_vec()))
                    });
                    let _ = reply.send(not_found_is_none(peeked));
                }
                Command::KickJob { id, reply } => {
                    let kicked = self.with_client("kick-job", |conn, _| conn.kick_job(id));
                    let _ = reply.send(not_found_is_none(kicked).map(|kicked| kicked.is_some()));
                }
            }
        }
    }

    /// `reserve-with-timeout` on `tube`, watching only it. beanstalkd's "no job came"
    /// answers (TIMED_OUT, DEADLINE_SOON) are `None`, not errors.
    fn reserve(&mut self, tube: &str, wait: Duration) -> Result<Option<Reserved>, QueueError> {
        // Dial first, so the watch below and the reserve run on the same connection (a
        // fresh dial forgets what was watched).
        self.connect()?;
        if self.watching.as_deref() != Some(tube) {
            let previous = self.watching.take();
            self.with_client("watch", |conn, _| {
                conn.watch(tube)?;
                // A fresh connection watches `default`; ours watches only `tube`.
                conn.ignore(previous.as_deref().unwrap_or("default"))
                    .or_else(|e| match e {
                        // NOT_IGNORED: it was the only one watched, nothing to drop.
                        BeanstalkcError::CommandFailed(_) => Ok(0),
                        other => Err(other),
                    })
            })?;
            self.watching = Some(tube.to_owned());
        }
        let result = self.with_client("reserve", |conn, _| {
            conn.reserve_with_timeout(wait).map(|job| Reserved {
                id: job.id(),
                body: job.body().to_vec(),
            })
        });
        match result {
            Ok(job) => Ok(Some(job)),
            Err(QueueError::Refused { detail, .. })
                if detail.contains("TimedOut") || detail.contains("DeadlineSoon") =>
            {
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    fn peek_ready_priority(&mut self, tube: &str) -> Result<Option<(u64, u32)>, QueueError> {
        let peeked = self.with_client("peek-ready", |conn, using| {
            if using.as_deref() != Some(tube) {
                conn.use_tube(tube)?;
                *using = Some(tube.to_owned());
            }
            conn.peek_ready().map(|job| job.id())
        });
        let id = match peeked {
            Ok(id) => id,
            // NOT_FOUND: nothing ready.
            Err(QueueError::Refused { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        let stats = match self.with_client("stats-job", |conn, _| conn.stats_job(id)) {
            Ok(stats) => stats,
            // Taken meanwhile.
            Err(QueueError::Refused { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        Ok(stats
            .get("pri")
            .and_then(|pri| pri.parse().ok())
            .map(|pri| (id, pri)))
    }

    /// Runs `f` on a live connection, dialling first if needed. A connection-level error
    /// drops the connection so the next command dials afresh.
    fn with_client<T>(
        &mut self,
        command: &'static str,
        f: impl FnOnce(&mut Beanstalkc, &mut Option<String>) -> Result<T, BeanstalkcError>,
    ) -> Result<T, QueueError> {
        self.connect()?;
        let client = self.client.as_mut().expect("connected just above");
        match f(client, &mut self.using) {
            Ok(value) => Ok(value),
            Err(BeanstalkcError::CommandFailed(detail)) => Err(QueueError::Refused {
                addr: self.addr.clone(),
                command,
                detail,
            }),
            Err(other) => {
                self.client = None;
                Err(QueueError::Unreachable {
                    addr: self.addr.clone(),
                    detail: other.to_string(),
                })
            }
        }
    }

    fn connect(&mut self) -> Result<(), QueueError> {
        if self.client.is_none() {
            self.client = Some(self.dial()?);
            self.using = None;
            self.watching = None;
        }
        Ok(())
    }

    fn dial(&self) -> Result<Beanstalkc, QueueError> {
        let unreachable = |detail: String| QueueError::Unreachable {
            addr: self.addr.clone(),
            detail,
        };
        // Resolve here: beanstalkc panics on an address it cannot parse.
        let socket: SocketAddr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| {
                unreachable(format!(
                    "bad address ({e}); use HOST:PORT such as 127.0.0.1:11300"
                ))
            })?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| unreachable("the name has no IPv4 address".into()))?;
        Beanstalkc::new()
            .host(&socket.ip().to_string())
            .port(socket.port())
            .connection_timeout(Some(CONNECT_TIMEOUT))
            .connect()
            .map_err(|e| unreachable(e.to_string()))
    }
}
