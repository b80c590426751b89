//! A TCP relay the tests control, to put faults between two real peers
//! (client and Causeway, or Causeway and PostgreSQL): black-hole, reset,
//! slow drip, cut mid-message, in either direction.
//!
//! ```no_run
//! use causeway_integration::faults::{Dir, Fault, FaultProxy};
//! let p = FaultProxy::start("127.0.0.1:5432".parse().unwrap()).unwrap();
//! // point a database's `port` at p.port(); then, mid-test:
//! p.set(Dir::ToClient, Fault::BlackHole);
//! p.set(Dir::ToClient, Fault::Pass);
//! ```
//!
//! The relay runs on a thread of its own (its own tokio runtime), so it
//! serves sync and async tests alike and a busy test runtime cannot stall
//! it. Each direction of each connection consults its fault for every
//! chunk it reads.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A direction through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting side to the upstream (e.g. Causeway -> PostgreSQL).
    ToUpstream,
    /// From the upstream back to the connecting side.
    ToClient,
}

/// What happens to the bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwarded as they come.
    Pass,
    /// Read and dropped: the connection stays open, nothing arrives (a
    /// partition, a dead host behind a live TCP stack).
    BlackHole,
    /// `bytes` every `every`, the rest held back (a slow or congested link).
    Drip { bytes: usize, every: Duration },
    /// Forward `bytes` more, then close both sides (a cut mid-message).
    CutAfter { bytes: usize },
}

const DIRS: usize = 2;

fn ix(d: Dir) -> usize {
    match d {
        Dir::ToUpstream => 0,
        Dir::ToClient => 1,
    }
}

/// Faults of one connection (or the default for new ones).
#[derive(Debug)]
struct Faults([Mutex<Fault>; DIRS]);

impl Faults {
    fn new(f: [Fault; DIRS]) -> Self {
        Faults([Mutex::new(f[0]), Mutex::new(f[1])])
    }
    fn get(&self, d: usize) -> Fault {
        *self.0[d].lock().unwrap()
    }
    fn set(&self, d: usize, f: Fault) {
        *self.0[d].lock().unwrap() = f;
    }
    fn snapshot(&self) -> [Fault; DIRS] {
        [self.get(0), self.get(1)]
    }
}

#[derive(Debug)]
struct Shared {
    /// For connections accepted from now on.
    new: Faults,
    /// Connections open now.
    open: Mutex<Vec<Arc<Conn>>>,
    accepted: AtomicUsize,
    /// Bumped by [`FaultProxy::reset_all`].
    reset: watch::Sender<u64>,
}

#[derive(Debug)]
struct Conn {
    faults: Faults,
    /// Bytes forwarded per direction.
    moved: [AtomicU64; DIRS],
}

/// The relay. Dropping it stops accepting and closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and relays to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy, String> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("fault proxy bind: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("fault proxy nonblocking: {e}"))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| format!("fault proxy addr: {e}"))?;
        let (reset, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            new: Faults::new([Fault::Pass; DIRS]),
            open: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            reset,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("fault proxy runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, upstream, sh) => {}
                    }
                });
                // Dropping the runtime cancels every relay task: all sockets close.
            })
            .map_err(|e| format!("fault proxy thread: {e}"))?;
        Ok(FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets `dir`'s fault on every open connection and for new ones.
    pub fn set(&self, dir: Dir, fault: Fault) {
        self.set_existing(dir, fault);
        self.set_new(dir, fault);
    }

    /// Only the connections open now (e.g. an idle pooled connection),
    /// not those opened later.
    pub fn set_existing(&self, dir: Dir, fault: Fault) {
        for c in self.shared.open.lock().unwrap().iter() {
            c.faults.set(ix(dir), fault);
        }
    }

    /// Only connections accepted from now on (e.g. a server login, or the
    /// connection a CancelRequest travels on).
    pub fn set_new(&self, dir: Dir, fault: Fault) {
        self.shared.new.set(ix(dir), fault);
    }

    /// Everything back to [`Fault::Pass`].
    pub fn heal(&self) {
        for d in [Dir::ToUpstream, Dir::ToClient] {
            self.set(d, Fault::Pass);
        }
    }

    /// Resets every open connection (RST to both sides: SO_LINGER 0).
    pub fn reset_all(&self) {
        self.shared.reset.send_modify(|g| *g += 1);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.lock().unwrap().len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded in `dir` over all open connections.
    pub fn bytes_moved(&self, dir: Dir) -> u64 {
        self.shared
            .open
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.moved[ix(dir)].load(Ordering::SeqCst))
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // sleep-ok: back-off after a failed accept (e.g. out of fds)
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return; // dropping `client` closes it
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let conn = Arc::new(Conn {
                faults: Faults::new(shared.new.snapshot()),
                moved: [AtomicU64::new(0), AtomicU64::new(0)],
            });
            shared.open.lock().unwrap().push(conn.clone());
            relay(client, server, &conn, &shared).await;
            shared
                .open
                .lock()
                .unwrap()
                .retain(|c| !Arc::ptr_eq(c, &conn));
        });
    }
}

/// Both directions until one ends (EOF, error, cut) or a reset; then both
/// sockets close (FIN, or RST after a reset).
async fn relay(client: TcpStream, server: TcpStream, conn: &Conn, shared: &Shared) {
    let mut reset = shared.reset.subscribe();
    reset.mark_unchanged();
    let fds = [client.as_raw_fd(), server.as_raw_fd()];
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, conn, ix(Dir::ToUpstream));
    let down = pump(sr, cw, conn, ix(Dir::ToClient));
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => {}
        _ = &mut down => {}
        _ = reset.changed() => {
            for fd in fds {
                linger_zero(fd);
            }
        }
    }
    // Returning drops both pumps and with them the sockets.
}

/// SO_LINGER {on, 0}: close() sends RST instead of FIN.
fn linger_zero(fd: std::os::fd::RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this task still owns, with a valid
    // pointer and length.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// One direction; returns when the connection should end.
async fn pump(mut r: OwnedReadHalf, mut w: OwnedWriteHalf, conn: &Conn, d: usize) {
    let mut buf = vec![0u8; 16 * 1024];
    // Bytes read but held back by a drip.
    let mut held: Vec<u8> = Vec::new();
    loop {
        let fault = conn.faults.get(d);
        if let Fault::Drip { bytes, every } = fault {
            if held.is_empty() {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => held.extend_from_slice(&buf[..n]),
                }
            }
            let n = bytes.max(1).min(held.len());
            if w.write_all(&held[..n]).await.is_err() {
                return;
            }
            held.drain(..n);
            conn.moved[d].fetch_add(n as u64, Ordering::SeqCst);
            // sleep-ok: the drip fault itself (a slow link), not a wait
            tokio::time::sleep(every).await;
            continue;
        }
        if !held.is_empty() {
            // Drip lifted: flush what it held back (or drop it if black-holed).
            if fault != Fault::BlackHole {
                if w.write_all(&held).await.is_err() {
                    return;
                }
                conn.moved[d].fetch_add(held.len() as u64, Ordering::SeqCst);
            }
            held.clear();
        }
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match conn.faults.get(d) {
            Fault::BlackHole => {}
            Fault::CutAfter { bytes } => {
                let n = n.min(bytes);
                let _ = w.write_all(&buf[..n]).await;
                conn.moved[d].fetch_add(n as u64, Ordering::SeqCst);
                let left = bytes - n;
                if left == 0 {
                    return;
                }
                conn.faults.set(d, Fault::CutAfter { bytes: left });
            }
            Fault::Drip { .. } => held.extend_from_slice(&buf[..n]),
            Fault::Pass => {
                if w.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                conn.moved[d].fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
}
