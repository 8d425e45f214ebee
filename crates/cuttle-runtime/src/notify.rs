//! systemd's service notifications (sd_notify(3)) without libsystemd: `READY=1` once a
//! daemon serves, `WATCHDOG=1` every half `WATCHDOG_USEC` while its runtime is alive, and
//! `STOPPING=1` when it starts to shut down. Each is one datagram to the unix socket named
//! by `NOTIFY_SOCKET`: a path, or an abstract socket when it starts with `@`.
//!
//! It must never stop or slow a daemon: outside systemd (no `NOTIFY_SOCKET`) every call
//! does nothing, and a failed send is a warning. It never writes the environment, so the
//! children a daemon starts inherit `NOTIFY_SOCKET`; a unit with `NotifyAccess=main` makes
//! systemd ignore anything they send.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Where and how often to notify systemd, read once from the environment.
#[derive(Debug, Clone, Default)]
pub struct Systemd {
    /// `NOTIFY_SOCKET`, if systemd gave one.
    socket: Option<SocketAddr>,
    /// Half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    watchdog_interval: Option<Duration>,
}

impl Systemd {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` of this process.
    pub fn from_env() -> Systemd {
        Systemd::from_lookup(|name| std::env::var(name).ok(), std::process::id())
    }

    /// As [`Systemd::from_env`], with the variables from `lookup`. The watchdog is on only
    /// if `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID`, when set, is `own_pid`
    /// (a child that inherited the variables must not ping for its parent).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, own_pid: u32) -> Systemd {
        let socket = lookup("NOTIFY_SOCKET").and_then(|text| match socket_address(&text) {
            Ok(address) => Some(address),
            Err(error) => {
                tracing::warn!(%error, notify_socket = %text, "ignoring NOTIFY_SOCKET");
                None
            }
        });
        let for_us = lookup("WATCHDOG_PID")
            .is_none_or(|pid| pid.trim().parse::<u32>().ok() == Some(own_pid));
        let watchdog_interval = lookup("WATCHDOG_USEC")
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(|usec| Duration::from_micros(usec / 2));
        Systemd {
            socket,
            watchdog_interval,
        }
    }

    /// Whether systemd listens for notifications at all.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often [`ready_and_watch`] pings, if systemd wants pings.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog_interval)
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments); nothing outside systemd.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(address) = &self.socket else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        // Never wait for systemd: a full queue loses this message rather than stalling
        // the runtime thread that sends it.
        socket.set_nonblocking(true)?;
        socket.send_to_addr(state.as_bytes(), address)?;
        Ok(())
    }

    /// [`Systemd::notify`], with a failure logged rather than returned.
    fn notify_or_warn(&self, state: &str) {
        if let Err(error) = self.notify(state) {
            tracing::warn!(%error, state, "cannot notify systemd");
        }
    }
}

/// `NOTIFY_SOCKET` as an address: `@name` is the abstract socket `name`, anything else a
/// path. (systemd may also name a `vsock:` address, for virtual machines; cuttle has no use
/// for it.)
fn socket_address(text: &str) -> io::Result<SocketAddr> {
    match text.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None if text.starts_with('/') => SocketAddr::from_pathname(text),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract socket name (@...)",
        )),
    }
}

/// Tells systemd the daemon is ready: its ports accept connections.
pub fn ready() {
    Systemd::from_env().notify_or_warn("READY=1");
}

/// Tells systemd the daemon is shutting down (it drains, then exits).
pub fn stopping() {
    Systemd::from_env().notify_or_warn("STOPPING=1");
}

/// Keeps the watchdog fed while held; dropping it stops the pings (the daemon's main
/// loop ended).
#[derive(Debug)]
pub struct Watchdog {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// For a daemon's `main` once it serves: sends `READY=1`, then `WATCHDOG=1` every half
/// `WATCHDOG_USEC`, and `STOPPING=1` when `shutdown` is cancelled. Hold the result until
/// the main loop returns. The pings come from a task on the daemon's own runtime: they stop
/// if the runtime stops scheduling tasks (every worker blocked), and systemd then restarts
/// the unit. They go on while the daemon drains, which `TimeoutStopSec=` bounds. Must be
/// called inside a tokio runtime.
pub fn ready_and_watch(shutdown: &CancellationToken) -> Watchdog {
    ready_and_watch_with(Systemd::from_env(), shutdown)
}

/// [`ready_and_watch`] with the settings given, for tests.
pub fn ready_and_watch_with(systemd: Systemd, shutdown: &CancellationToken) -> Watchdog {
    if !systemd.enabled() {
        return Watchdog { task: None };
    }
    systemd.notify_or_warn("READY=1");
    let shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let mut pings = systemd.watchdog_interval().map(|every| {
            let mut pings = tokio::time::interval(every);
            // A late ping is sent once, not in a burst that hides how late it was.
            pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            pings
        });
        let mut told_stopping = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled(), if !told_stopping => {
                    told_stopping = true;
                    systemd.notify_or_warn("STOPPING=1");
                }
                _ = async { pings.as_mut().unwrap().tick().await }, if pings.is_some() => {
                    systemd.notify_or_warn("WATCHDOG=1");
                }
                else => break,
            }
        }
    });
    Watchdog { task: Some(task) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn received(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    #[test]
    fn outside_systemd_nothing_is_sent_and_nothing_fails() {
        let systemd = Systemd::from_lookup(lookup(&[("WATCHDOG_USEC", "1000000")]), 7);
        assert!(!systemd.enabled());
        assert_eq!(systemd.watchdog_interval(), None);
        systemd.notify("READY=1").unwrap();
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let systemd = Systemd::from_lookup(lookup(&[("NOTIFY_SOCKET", path.to_str().unwrap())]), 7);
        systemd.notify("READY=1").unwrap();
        assert_eq!(received(&listener), "READY=1");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!(
            "cuttle-notify-test-{}-{:x}",
            std::process::id(),
            rand_suffix()
        );
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let systemd = Systemd::from_lookup(lookup(&[("NOTIFY_SOCKET", &format!("@{name}"))]), 7);
        systemd.notify("STOPPING=1").unwrap();
        assert_eq!(received(&listener), "STOPPING=1");
    }

    /// A per-call suffix so parallel tests never share an abstract name.
    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    #[test]
    fn a_socket_that_is_gone_is_an_error_not_a_panic() {
        let systemd = Systemd::from_lookup(lookup(&[("NOTIFY_SOCKET", "/nonexistent/notify")]), 7);
        assert!(systemd.notify("READY=1").is_err());
        let relative = Systemd::from_lookup(lookup(&[("NOTIFY_SOCKET", "notify")]), 7);
        assert!(!relative.enabled());
    }

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_and_only_for_its_own_pid() {
        let socket = ("NOTIFY_SOCKET", "@cuttle-unused");
        let interval =
            |vars: &[(&str, &str)]| Systemd::from_lookup(lookup(vars), 42).watchdog_interval();
        assert_eq!(
            interval(&[socket, ("WATCHDOG_USEC", "30000000")]),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval(&[
                socket,
                ("WATCHDOG_USEC", "30000000"),
                ("WATCHDOG_PID", "42")
            ]),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval(&[
                socket,
                ("WATCHDOG_USEC", "30000000"),
                ("WATCHDOG_PID", "41")
            ]),
            None
        );
        assert_eq!(interval(&[socket, ("WATCHDOG_USEC", "0")]), None);
        assert_eq!(interval(&[socket, ("WATCHDOG_USEC", "soon")]), None);
        assert_eq!(interval(&[socket]), None);
        assert_eq!(
            interval(&[("WATCHDOG_USEC", "30000000")]),
            None,
            "no socket, no pings"
        );
    }

    #[tokio::test]
    async fn ready_then_pings_then_stopping_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let systemd = Systemd::from_lookup(
            lookup(&[
                ("NOTIFY_SOCKET", path.to_str().unwrap()),
                ("WATCHDOG_USEC", "100000"),
            ]),
            std::process::id(),
        );
        let shutdown = CancellationToken::new();
        let watchdog = ready_and_watch_with(systemd, &shutdown);
        let listener = tokio::task::spawn_blocking(move || {
            assert_eq!(received(&listener), "READY=1");
            assert_eq!(received(&listener), "WATCHDOG=1");
            assert_eq!(received(&listener), "WATCHDOG=1");
            listener
        })
        .await
        .unwrap();
        shutdown.cancel();
        let listener = tokio::task::spawn_blocking(move || {
            // Pings may be in flight before it; the watchdog goes on while draining.
            let mut states = Vec::new();
            while !states.iter().any(|state| state == "STOPPING=1") {
                states.push(received(&listener));
            }
            assert!(
                states
                    .iter()
                    .all(|s| s == "WATCHDOG=1" || s == "STOPPING=1"),
                "{states:?}"
            );
            listener
        })
        .await
        .unwrap();
        // A current-thread runtime: the watchdog task cannot run between this drain and
        // the drop, so anything received after the drop was sent after it.
        listener.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 64];
        while listener.recv(&mut buffer).is_ok() {}
        drop(watchdog);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            listener.recv(&mut buffer).is_err(),
            "pings went on after the guard was dropped"
        );
    }
}
