//! A loopback TCP proxy that can drop every stream passing through it on demand: a network
//! that cuts long-lived connections (a NAT timing out, a load balancer restarting), for the
//! end-to-end tests. Plain std threads and sockets, no async runtime.
//!
//! Each accepted connection gets a thread of its own that connects to the target and then
//! pumps bytes both ways (one direction in a second thread it joins). [`CuttingProxy::cut_all`]
//! shuts both sockets of every open connection down, which wakes its pumps at once; the proxy
//! keeps accepting new connections afterwards. Dropping the proxy stops accepting, cuts
//! everything and joins every thread it started, each wait bounded.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long connecting to the target may take (on loopback it is refused or accepted at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long dropping the proxy waits for its threads before leaving them be.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the accept loop pauses after a failed `accept` (out of file descriptors, say)
/// before trying again, so that a lasting error does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
const BUFFER: usize = 16 * 1024;

/// A proxied connection's two sockets, kept so that they can be shut down from outside.
struct Conn {
    client: Arc<TcpStream>,
    /// `None` while the connection to the target is being made.
    upstream: Option<Arc<TcpStream>>,
}

impl Conn {
    fn shutdown(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(upstream) = &self.upstream {
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    target: SocketAddr,
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// The open connections, by the order they were accepted in.
    conns: Mutex<HashMap<usize, Conn>>,
    /// One thread per connection (each joins its second pump before it ends).
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, HashMap<usize, Conn>> {
        // A panicking pump cannot leave the map half-updated: keep going with it.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shuts down and forgets every open connection; returns how many there were.
    fn cut_all(&self) -> usize {
        let cut: Vec<Conn> = self.conns().drain().map(|(_, conn)| conn).collect();
        for conn in &cut {
            conn.shutdown();
        }
        cut.len()
    }
}

/// A TCP proxy on `127.0.0.1:PORT` to one target, whose connections can all be cut at once.
pub struct CuttingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on loopback");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            target,
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let accept = thread::Builder::new()
            .name(format!("proxy-accept-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, &shared)
            })
            .expect("spawn the proxy's accept thread");
        CuttingProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Shuts down both sockets (both directions) of every connection open now: each peer sees
    /// its stream end. Returns how many connections were cut. New connections are still
    /// accepted afterwards.
    pub fn cut_all(&self) -> usize {
        self.shared.cut_all()
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are open now (accepted, and neither cut nor ended by their peers).
    pub fn open(&self) -> usize {
        self.shared.conns().len()
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        // Stop accepting: the flag, then a connection of our own to wake the blocked accept.
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        let deadline = Instant::now() + JOIN_TIMEOUT;
        join_by(self.accept.take().into_iter().collect(), deadline);
        // No connection comes in any more: cut those there are and wait for their threads.
        self.shared.cut_all();
        let threads = std::mem::take(&mut *self.shared.threads());
        join_by(threads, deadline);
    }
}

/// Joins `threads` if they all end by `deadline`; leaves them running (and says so) if not.
fn join_by(threads: Vec<JoinHandle<()>>, deadline: Instant) {
    while !threads.iter().all(JoinHandle::is_finished) {
        if Instant::now() >= deadline {
            eprintln!(
                "baton-e2e: proxy threads still running after {JOIN_TIMEOUT:?}; leaving them"
            );
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
    for thread in threads {
        // A pump that panicked has nothing left to clean up.
        let _ = thread.join();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        // Accepted sockets inherit non-blocking mode from the listener on some systems.
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let id = shared.accepted.fetch_add(1, Ordering::SeqCst);
        let client = Arc::new(client);
        // Registered before its thread starts, so that `cut_all` sees it at once.
        shared.conns().insert(
            id,
            Conn {
                client: Arc::clone(&client),
                upstream: None,
            },
        );
        let spawned = thread::Builder::new()
            .name(format!("proxy-conn-{id}"))
            .spawn({
                let shared = Arc::clone(shared);
                let client = Arc::clone(&client);
                move || serve(&shared, id, client)
            });
        let mut threads = shared.threads();
        threads.retain(|thread| !thread.is_finished());
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(_) => {
                if let Some(conn) = shared.conns().remove(&id) {
                    conn.shutdown();
                }
            }
        }
    }
}

/// One connection: connects to the target and pumps both ways until both directions ended.
fn serve(shared: &Arc<Shared>, id: usize, client: Arc<TcpStream>) {
    let upstream = match TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) {
        Ok(upstream) => Arc::new(upstream),
        Err(_) => {
            shared.conns().remove(&id);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    match shared.conns().get_mut(&id) {
        Some(conn) => conn.upstream = Some(Arc::clone(&upstream)),
        None => {
            // Cut while connecting.
            let _ = upstream.shutdown(Shutdown::Both);
            return;
        }
    }
    let up = thread::Builder::new()
        .name(format!("proxy-up-{id}"))
        .spawn({
            let (client, upstream) = (Arc::clone(&client), Arc::clone(&upstream));
            move || pump(&client, &upstream)
        });
    match up {
        Ok(up) => {
            pump(&upstream, &client);
            let _ = up.join();
        }
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
    shared.conns().remove(&id);
}

/// Copies `from` to `to` until `from` ends (passed on as a half-close) or either fails (both
/// sockets are then shut down, which ends the other direction too).
fn pump(from: &TcpStream, to: &TcpStream) {
    let mut buf = vec![0; BUFFER];
    let (mut reader, mut writer) = (from, to);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
