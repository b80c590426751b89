//! Connected clients as the admin console sees them (SHOW CLIENTS,
//! KILL_CLIENT). Sessions update atomics; nothing here is on a lock per query.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use causeway_pool::unix_micros;
use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    Login = 0,
    Idle = 1,
    Active = 2,
    Waiting = 3,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Login => "login",
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }
}

#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    /// Shared with every client of the same user (the user's permit) and
    /// database (its entry): an idle client holds no copy of its own.
    pub user: Arc<str>,
    pub database: Arc<str>,
    /// Shared with the session's client.
    pub addr: Arc<causeway_net::PeerAddr>,
    pub local_addr: Option<SocketAddr>,
    /// TLS version and cipher suite (None: plain).
    pub tls: Option<Box<str>>,
    /// Unix microseconds.
    pub connect_time: u64,
    /// As given at login (None: not given or empty).
    pub application_name: Option<Box<str>>,
    state: AtomicU8,
    request_time: AtomicU64,
    /// Server connection id it holds (0 = none) and that server's pid.
    link: AtomicU64,
    remote_pid: AtomicI32,
    /// Microseconds the current wait for a server started (0 = not waiting).
    wait_start: AtomicU64,
    /// KILLED, PARK (asked to park) and PARKED bits.
    flags: AtomicU8,
    /// Named prepared statements the client holds (SHOW CLIENTS; 32 bits
    /// pack beside `remote_pid`).
    prepared: AtomicU32,
    /// Wakes the session for KILL / KILL_CLIENT and shutdown phases. One
    /// per client: no shared waiter list on the hot path.
    pub wake: crate::wake::Wake,
}

impl ClientInfo {
    pub fn state(&self) -> ClientState {
        match self.state.load(Relaxed) {
            0 => ClientState::Login,
            1 => ClientState::Idle,
            2 => ClientState::Active,
            _ => ClientState::Waiting,
        }
    }

    pub fn waiting(&self) {
        self.wait_start
            .store(unix_micros(SystemTime::now()), Relaxed);
        self.state.store(ClientState::Waiting as u8, Relaxed);
    }

    pub fn active(&self, server: u64, pid: i32) {
        self.link.store(server, Relaxed);
        self.remote_pid.store(pid, Relaxed);
        self.request_time
            .store(unix_micros(SystemTime::now()), Relaxed);
        self.wait_start.store(0, Relaxed);
        self.state.store(ClientState::Active as u8, Relaxed);
    }

    pub fn prepared(&self) -> u64 {
        u64::from(self.prepared.load(Relaxed))
    }

    pub fn set_prepared(&self, n: usize) {
        self.prepared
            .store(u32::try_from(n).unwrap_or(u32::MAX), Relaxed);
    }

    pub fn idle(&self) {
        self.link.store(0, Relaxed);
        self.remote_pid.store(0, Relaxed);
        self.wait_start.store(0, Relaxed);
        self.state.store(ClientState::Idle as u8, Relaxed);
    }

    /// KILL / KILL_CLIENT: the session closes at its next wake-up.
    pub fn kill(&self) {
        self.flags.fetch_or(KILLED, Relaxed);
        self.wake.wake();
    }

    pub fn is_killed(&self) -> bool {
        self.flags.load(Relaxed) & KILLED != 0
    }

    /// Asked to park (see session/park.rs); stays asked until it parks.
    pub fn park_requested(&self) -> bool {
        self.flags.load(Relaxed) & PARK != 0
    }

    /// Asks the session to park at its next idle wait.
    pub fn request_park(&self) {
        self.flags.fetch_or(PARK, Relaxed);
    }

    /// Parked without a task (see session/park.rs; the request is met),
    /// or resumed.
    pub fn set_parked(&self, parked: bool) {
        match parked {
            true => self
                .flags
                .fetch_update(Relaxed, Relaxed, |f| Some(f & !PARK | PARKED)),
            false => self
                .flags
                .fetch_update(Relaxed, Relaxed, |f| Some(f & !PARKED)),
        }
        .ok();
    }

    pub fn link(&self) -> u64 {
        self.link.load(Relaxed)
    }

    pub fn remote_pid(&self) -> i32 {
        self.remote_pid.load(Relaxed)
    }

    pub fn request_time(&self) -> u64 {
        self.request_time.load(Relaxed)
    }

    /// Microseconds waited so far for a server (0 when not waiting).
    pub fn waited_us(&self) -> u64 {
        match self.wait_start.load(Relaxed) {
            0 => 0,
            s => unix_micros(SystemTime::now()).saturating_sub(s),
        }
    }
}

/// `ClientInfo::flags`: KILL / KILL_CLIENT.
const KILLED: u8 = 1;
/// Asked to park (see session/park.rs).
const PARK: u8 = 2;
/// Parked: not asked again.
const PARKED: u8 = 4;

/// Where a client is connected from, and how.
pub struct Connection {
    pub addr: Arc<causeway_net::PeerAddr>,
    pub local_addr: Option<SocketAddr>,
    /// TLS version and cipher suite (empty: plain).
    pub tls: String,
}

#[derive(Default)]
pub struct Clients {
    /// By id: the entry is the Arc alone (8 bytes, not 16 with the key).
    map: Mutex<HashSet<ById>>,
}

/// A registry entry, hashed and compared by the client's id.
struct ById(Arc<ClientInfo>);

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.id.hash(h);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl std::borrow::Borrow<u64> for ById {
    fn borrow(&self) -> &u64 {
        &self.0.id
    }
}

/// Removes the client from the registry when the session ends.
pub struct Registered {
    pub info: Arc<ClientInfo>,
    clients: Arc<Clients>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.clients.map.lock().remove(&self.info.id);
    }
}

impl Clients {
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        user: &Arc<str>,
        database: &Arc<str>,
        conn: Connection,
        application_name: &str,
    ) -> Registered {
        let Connection {
            addr,
            local_addr,
            tls,
        } = conn;
        let info = Arc::new(ClientInfo {
            id,
            user: user.clone(),
            database: database.clone(),
            addr,
            local_addr,
            tls: (!tls.is_empty()).then(|| tls.into_boxed_str()),
            connect_time: unix_micros(SystemTime::now()),
            application_name: (!application_name.is_empty()).then(|| application_name.into()),
            state: AtomicU8::new(ClientState::Idle as u8),
            request_time: AtomicU64::new(unix_micros(SystemTime::now())),
            link: AtomicU64::new(0),
            remote_pid: AtomicI32::new(0),
            wait_start: AtomicU64::new(0),
            flags: AtomicU8::new(0),
            prepared: AtomicU32::new(0),
            wake: Default::default(),
        });
        self.map.lock().insert(ById(info.clone()));
        Registered {
            info,
            clients: self.clone(),
        }
    }

    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.map.lock().iter().map(|c| c.0.clone()).collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Asks every idle client that started no request for `after` to park
    /// without a task (see session/park.rs). Run once a second: a busy
    /// client is idle for less between its requests and is never asked.
    /// Returns how many.
    pub fn park_idle(&self, after: std::time::Duration) -> usize {
        let now = unix_micros(SystemTime::now());
        let idle_since = now.saturating_sub(after.as_micros() as u64);
        let map = self.map.lock();
        let mut asked = 0;
        for ById(c) in map.iter() {
            if c.state() == ClientState::Idle
                && c.request_time() < idle_since
                && c.flags.load(Relaxed) & (KILLED | PARK | PARKED) == 0
            {
                c.flags.fetch_or(PARK, Relaxed);
                c.wake.wake();
                asked += 1;
            }
        }
        asked
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.map.lock().get(&id).map(|c| c.0.clone())
    }
}
