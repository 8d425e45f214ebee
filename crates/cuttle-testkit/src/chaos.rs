//! A TCP proxy on a free loopback port that a test can cut and restore: while cut, every
//! open connection through it is shut down and new ones are closed at once, as if the
//! service behind it had stopped. Used in front of PostgreSQL for outage tests.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    cut: AtomicBool,
    stopped: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl State {
    fn shut_all(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// The proxy; stopped (and every connection through it shut) when dropped.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl ChaosProxy {
    /// Starts forwarding a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the chaos proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if shared.cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
                    for stream in [&client, &server] {
                        if let Ok(clone) = stream.try_clone() {
                            open.push(clone);
                        }
                    }
                }
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        ChaosProxy { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` (`scheme://user@host:port/rest`) pointed at this proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (user, rest) = match rest.split_once('@') {
            Some((user, rest)) => (format!("{user}@"), rest),
            None => (String::new(), rest),
        };
        let path = rest.find('/').map_or("", |at| &rest[at..]);
        format!("{scheme}://{user}{}{path}", self.addr)
    }

    /// Shuts every connection through the proxy and refuses new ones until [`restore`].
    ///
    /// [`restore`]: ChaosProxy::restore
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.shut_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.state.shut_all();
        // Wakes the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_forwards_cuts_and_restores() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in echo.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = ChaosProxy::start(target);
        let roundtrip = |stream: &mut TcpStream| -> bool {
            let mut answer = [0u8; 4];
            stream.write_all(b"ping").is_ok() && stream.read_exact(&mut answer).is_ok()
        };
        let mut before = TcpStream::connect(proxy.addr()).unwrap();
        assert!(roundtrip(&mut before));
        proxy.cut();
        assert!(!roundtrip(&mut before), "a cut connection must break");
        let mut during = TcpStream::connect(proxy.addr()).unwrap();
        assert!(
            !roundtrip(&mut during),
            "no connection gets through while cut"
        );
        proxy.restore();
        let mut after = TcpStream::connect(proxy.addr()).unwrap();
        assert!(roundtrip(&mut after));
        assert_eq!(
            proxy.url_for("postgres://postgres@127.0.0.1:5432/db"),
            format!("postgres://postgres@{}/db", proxy.addr())
        );
    }
}
