//! What the admin console shows about a server connection (SHOW SERVERS),
//! kept as atomics so the data path pays a store, not a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::SystemTime;

/// PgBouncer's server states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ServerState {
    Login = 0,
    Idle = 1,
    Active = 2,
    Used = 3,
    Tested = 4,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Login => "login",
            ServerState::Idle => "idle",
            ServerState::Active => "active",
            ServerState::Used => "used",
            ServerState::Tested => "tested",
        }
    }
}

#[derive(Debug)]
pub struct ServerInfo {
    pub id: u64,
    pub pid: i32,
    pub addr: causeway_net::PeerAddr,
    pub local_addr: Option<SocketAddr>,
    /// TLS version and cipher suite (empty: plain).
    pub tls: String,
    pub connect_time: SystemTime,
    state: AtomicU8,
    /// The client id it serves (0 = none).
    link: AtomicU64,
    /// Unix microseconds of the last assignment.
    request_time: AtomicU64,
    epoch: AtomicU64,
    /// Prepared statements held (SHOW SERVERS prepared_statements).
    prepared: AtomicU64,
}

impl ServerInfo {
    pub fn new(
        id: u64,
        pid: i32,
        addr: causeway_net::PeerAddr,
        local_addr: Option<SocketAddr>,
        tls: String,
    ) -> Self {
        ServerInfo {
            id,
            pid,
            addr,
            local_addr,
            tls,
            connect_time: SystemTime::now(),
            state: AtomicU8::new(ServerState::Login as u8),
            link: AtomicU64::new(0),
            request_time: AtomicU64::new(unix_micros(SystemTime::now())),
            epoch: AtomicU64::new(0),
            prepared: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> ServerState {
        match self.state.load(Relaxed) {
            0 => ServerState::Login,
            1 => ServerState::Idle,
            2 => ServerState::Active,
            3 => ServerState::Used,
            _ => ServerState::Tested,
        }
    }

    pub fn set_state(&self, s: ServerState) {
        self.state.store(s as u8, Relaxed);
    }

    pub fn prepared(&self) -> u64 {
        self.prepared.load(Relaxed)
    }

    pub fn set_prepared(&self, n: usize) {
        self.prepared.store(n as u64, Relaxed);
    }

    pub fn link(&self) -> u64 {
        self.link.load(Relaxed)
    }

    /// Marks the connection as serving `client` since `at_us` (unix
    /// microseconds: the client's request time, one clock read for both).
    pub fn assign_at(&self, client: u64, at_us: u64) {
        self.link.store(client, Relaxed);
        self.request_time.store(at_us, Relaxed);
        self.set_state(ServerState::Active);
    }

    pub fn unassign(&self) {
        self.link.store(0, Relaxed);
        self.set_state(ServerState::Idle);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    pub fn set_epoch(&self, e: u64) {
        self.epoch.store(e, Relaxed);
    }

    pub fn request_time(&self) -> u64 {
        self.request_time.load(Relaxed)
    }
}

pub fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
