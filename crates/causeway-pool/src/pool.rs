//! The pool of one (database, user, server): idle connections, FIFO
//! waiters, and the slots that bound how many connections exist.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use crate::error::{PoolError, ServerError};
use crate::info::{ServerInfo, ServerState};
use crate::limits::Limit;
use crate::liveness;
use crate::params::ParamSet;
use crate::server::{Login, ServerConn};
use crate::settings::PoolSettings;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    /// Index of the server in the database's list.
    pub server: usize,
}

/// How often a waiter re-checks for capacity freed elsewhere (database or
/// user limits shared with other pools) and for the reserve pool.
const WAITER_TICK: Duration = Duration::from_millis(50);
const MAINTENANCE_CONNECT_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    key: PoolKey,
    login: RwLock<Login>,
    settings: RwLock<PoolSettings>,
    state: Mutex<State>,
    db_limit: Arc<Limit>,
    user_limit: Arc<Limit>,
    /// ParameterStatus values of the first successful login: what a new
    /// client is told in its welcome.
    welcome: Mutex<Option<Arc<ParamSet>>>,
    /// The last failed connection attempt: clients are refused at once
    /// until server_login_retry has passed if the server was unreachable;
    /// maintenance (min_pool_size) waits after any failure.
    login_failure: Mutex<Option<(Instant, ServerError)>>,
    /// RECONNECT bumps this; connections from an older epoch are closed
    /// instead of being reused.
    epoch: std::sync::atomic::AtomicU64,
    /// Every open connection, for SHOW SERVERS.
    servers: Mutex<std::collections::HashMap<u64, Arc<ServerInfo>>>,
    /// Clients pinned to their server by session state (transaction mode,
    /// pin_session_state).
    pinned: std::sync::atomic::AtomicU32,
}

#[derive(Default)]
struct State {
    idle: Vec<ServerConn>,
    waiters: VecDeque<Waiter>,
    /// Slots in use: connections open or being opened.
    open: u32,
    next_waiter: u64,
    closed: bool,
    /// The idle watcher's waker (see liveness.rs), registered on every
    /// idle connection's socket; `watching` once the task is spawned.
    watcher: Option<std::task::Waker>,
    watching: bool,
}

struct Waiter {
    id: u64,
    since: Instant,
    tx: oneshot::Sender<Grant>,
}

enum Grant {
    /// A ready connection.
    Conn(ServerConn),
    /// Permission (a slot already counted) to open a new connection.
    Slot(SlotGuard),
}

/// A counted place in the pool and in the database/user limits. Dropping
/// it frees the place and wakes the oldest waiter.
pub(crate) struct SlotGuard {
    pool: Weak<Inner>,
    armed: bool,
    /// The connection using the slot (0 while connecting).
    server: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Some(inner) = self.pool.upgrade() {
                if self.server != 0 {
                    inner.servers.lock().remove(&self.server);
                }
                inner.slot_freed();
            }
        }
    }
}

/// Counts for SHOW POOLS / metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub open: u32,
    pub idle: u32,
    pub waiting: u32,
    /// Longest current wait.
    pub max_wait: Duration,
}

impl Pool {
    pub fn new(
        key: PoolKey,
        login: Login,
        settings: PoolSettings,
        db_limit: Arc<Limit>,
        user_limit: Arc<Limit>,
    ) -> Self {
        Pool {
            inner: Arc::new(Inner {
                key,
                login: RwLock::new(login),
                settings: RwLock::new(settings),
                state: Mutex::new(State::default()),
                db_limit,
                user_limit,
                welcome: Mutex::new(None),
                login_failure: Mutex::new(None),
                servers: Mutex::new(Default::default()),
                epoch: Default::default(),
                pinned: Default::default(),
            }),
        }
    }

    pub fn key(&self) -> &PoolKey {
        &self.inner.key
    }

    pub fn settings(&self) -> PoolSettings {
        self.inner.settings.read().clone()
    }

    pub fn login(&self) -> Login {
        self.inner.login.read().clone()
    }

    pub fn update(&self, login: Login, settings: PoolSettings) {
        *self.inner.login.write() = login;
        *self.inner.settings.write() = settings;
        let mut st = self.inner.state.lock();
        self.inner.grant_slots(&mut st);
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let st = self.inner.state.lock();
        PoolSnapshot {
            open: st.open,
            idle: st.idle.len() as u32,
            waiting: st.waiters.len() as u32,
            max_wait: st
                .waiters
                .front()
                .map(|w| w.since.elapsed())
                .unwrap_or_default(),
        }
    }

    /// Counts a client pinned to a connection of this pool while the guard
    /// lives.
    pub fn pin(&self) -> PinGuard {
        self.inner
            .pinned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PinGuard(self.inner.clone())
    }

    /// Clients pinned now (SHOW POOLS cl_pinned).
    pub fn pinned(&self) -> u32 {
        self.inner.pinned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The open connections (SHOW SERVERS).
    pub fn servers(&self) -> Vec<Arc<ServerInfo>> {
        self.inner.servers.lock().values().cloned().collect()
    }

    /// The server's parameters as reported at login, opening a connection
    /// if none was ever made.
    pub async fn welcome(&self) -> Result<Arc<ParamSet>, PoolError> {
        if let Some(w) = self.inner.welcome.lock().clone() {
            return Ok(w);
        }
        let conn = self.acquire().await?;
        let w = Arc::new(conn.params.clone());
        *self.inner.welcome.lock() = Some(w.clone());
        self.release(conn);
        Ok(w)
    }

    /// A connection for exclusive use; give it back with [`Pool::release`]
    /// or drop it (broken) to close it.
    pub async fn acquire(&self) -> Result<ServerConn, PoolError> {
        let start = Instant::now();
        loop {
            let mut to_close = Vec::new();
            let step = {
                let mut st = self.inner.state.lock();
                if st.closed {
                    return Err(PoolError::Closed);
                }
                let settings = self.inner.settings.read();
                let mut found = None;
                while let Some(c) = st.idle.pop() {
                    if expired(&c, &settings) {
                        to_close.push(c);
                    } else {
                        found = Some(c);
                        break;
                    }
                }
                drop(settings);
                if found.is_none() && !st.waiters.is_empty() {
                    // Room may have appeared that no release announced (a
                    // reload grew the pool): it goes to the oldest waiters.
                    self.inner.grant_slots(&mut st);
                }
                if let Some(c) = found {
                    Step::Got(c)
                } else if st.waiters.is_empty() {
                    match self.inner.take_slot(&mut st, false) {
                        Some(slot) => Step::Open(slot),
                        None => Step::Wait(self.inner.enqueue(&mut st)),
                    }
                } else {
                    Step::Wait(self.inner.enqueue(&mut st))
                }
            };
            drop(to_close);
            let conn = match step {
                Step::Got(c) => c,
                Step::Open(slot) => return self.open(slot).await,
                Step::Wait((id, rx)) => match self.wait(id, rx, start).await? {
                    Grant::Conn(c) => c,
                    Grant::Slot(slot) => return self.open(slot).await,
                },
            };
            match self.check(conn).await {
                Some(c) => return Ok(c),
                None => continue,
            }
        }
    }

    /// Runs server_check_query on a connection idle longer than
    /// server_check_delay; None if it failed (the connection is closed).
    async fn check(&self, mut conn: ServerConn) -> Option<ServerConn> {
        if liveness::gone(&conn) {
            tracing::info!(pool = ?self.inner.key, id = conn.id, pid = conn.cancel.pid, "idle server connection closed by the server; not lent");
            return None;
        }
        let (delay, query) = {
            let s = self.inner.settings.read();
            // A reload may have changed the deadline.
            conn.set_internal_timeout(s.internal_query_timeout);
            (s.server_check_delay, s.server_check_query.clone())
        };
        if query.is_empty() || conn.last_used.elapsed() < delay {
            return Some(conn);
        }
        conn.info.set_state(ServerState::Tested);
        match conn.simple_query(&query).await {
            Ok(_) if !conn.broken => Some(conn),
            _ => None,
        }
    }

    async fn wait(
        &self,
        id: u64,
        mut rx: oneshot::Receiver<Grant>,
        start: Instant,
    ) -> Result<Grant, PoolError> {
        loop {
            tokio::select! {
                g = &mut rx => return g.map_err(|_| PoolError::Closed),
                _ = tokio::time::sleep(WAITER_TICK) => {}
            }
            let (deadline, reserve_after) = {
                let s = self.inner.settings.read();
                (s.query_wait_timeout, s.reserve_pool_timeout)
            };
            let mut st = self.inner.state.lock();
            let Some(pos) = st.waiters.iter().position(|w| w.id == id) else {
                // Granted in the meantime: the value is in the channel.
                continue;
            };
            if deadline.is_some_and(|d| start.elapsed() >= d) {
                st.waiters.remove(pos);
                return Err(PoolError::WaitTimeout);
            }
            // Capacity freed in another pool, or the reserve opened: only
            // the oldest waiter may take it, to keep FIFO order.
            if pos == 0 {
                if let Some(slot) = self
                    .inner
                    .take_slot(&mut st, start.elapsed() >= reserve_after)
                {
                    st.waiters.pop_front();
                    return Ok(Grant::Slot(slot));
                }
            }
        }
    }

    async fn open(&self, slot: SlotGuard) -> Result<ServerConn, PoolError> {
        let (login, settings) = (self.inner.login.read().clone(), self.settings());
        if let Some((at, err)) = self.inner.login_failure.lock().clone() {
            if err.throttles() && at.elapsed() < settings.server_login_retry {
                return Err(PoolError::LoginRetry(err));
            }
        }
        let mut conn = match ServerConn::connect(
            &login,
            settings.server_connect_timeout,
            settings.tcp_keepalive,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                // Every failure holds back min_pool_size maintenance; only
                // unreachable servers hold back clients (ServerError::throttles).
                *self.inner.login_failure.lock() = Some((Instant::now(), e.clone()));
                tracing::warn!(pool = ?self.inner.key, error = %e, "server connection failed");
                return Err(e.into());
            }
        };
        *self.inner.login_failure.lock() = None;
        let mut slot = slot;
        slot.server = conn.id;
        conn.epoch = self.epoch();
        conn.set_internal_timeout(settings.internal_query_timeout);
        conn.info.set_epoch(conn.epoch);
        conn.slot = Some(slot);
        self.inner.servers.lock().insert(conn.id, conn.info.clone());
        conn.info.set_state(ServerState::Idle);
        if let Some(q) = &settings.connect_query {
            conn.simple_query(q).await?;
        }
        self.inner
            .welcome
            .lock()
            .get_or_insert_with(|| Arc::new(conn.params.clone()));
        tracing::debug!(pool = ?self.inner.key, id = conn.id, pid = conn.cancel.pid, "new server connection");
        Ok(conn)
    }

    /// Gives a connection back: to the oldest waiter, else to the idle list.
    /// A broken connection is closed instead.
    pub fn release(&self, mut conn: ServerConn) {
        if conn.broken || !conn.buf.is_empty() {
            return;
        }
        if conn.cancel.in_flight() {
            // A cancel is on its way to this backend: keep it out of other
            // clients' hands until the server has processed it.
            let pool = self.clone();
            tokio::spawn(async move {
                conn.cancel.clone().settled().await;
                pool.release(conn);
            });
            return;
        }
        conn.last_used = Instant::now();
        conn.info.unassign();
        let expired_now = expired(&conn, &self.inner.settings.read()) || conn.epoch < self.epoch();
        if expired_now {
            tokio::spawn(conn.terminate());
            return;
        }
        let mut st = self.inner.state.lock();
        if st.closed {
            drop(st);
            tokio::spawn(conn.terminate());
            return;
        }
        while let Some(w) = st.waiters.pop_front() {
            match w.tx.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(c)) => conn = c,
                Err(Grant::Slot(_)) => unreachable!("sent a connection"),
            }
        }
        if let Some(w) = &st.watcher {
            // The watcher hears of this socket from now on.
            if liveness::gone_or_register(&conn.stream, &mut std::task::Context::from_waker(w)) {
                drop(st);
                return; // dropping it frees its slot
            }
        } else if !st.watching {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                st.watching = true;
                rt.spawn(liveness::watch(Arc::downgrade(&self.inner)));
            }
        }
        st.idle.push(conn);
    }

    /// Closes idle connections past their idle time or lifetime, and opens
    /// connections up to min_pool_size. Called about once a second.
    pub fn maintain(&self) {
        let settings = self.settings();
        let mut to_close = Vec::new();
        let mut to_open = Vec::new();
        {
            let mut st = self.inner.state.lock();
            let mut keep = Vec::with_capacity(st.idle.len());
            let mut open = st.open;
            for c in st.idle.drain(..) {
                let idle_too_long = settings
                    .server_idle_timeout
                    .is_some_and(|t| c.last_used.elapsed() >= t)
                    && open > settings.min_pool_size;
                if idle_too_long || expired(&c, &settings) {
                    open -= 1;
                    to_close.push(c);
                } else {
                    keep.push(c);
                }
            }
            st.idle = keep;
            let recent_failure = self
                .inner
                .login_failure
                .lock()
                .as_ref()
                .is_some_and(|(at, _)| {
                    at.elapsed() < MAINTENANCE_CONNECT_BACKOFF.max(settings.server_login_retry)
                });
            let want = settings.min_pool_size.saturating_sub(open);
            if !st.closed && !recent_failure {
                for _ in 0..want {
                    match self.inner.take_slot(&mut st, false) {
                        Some(slot) => to_open.push(slot),
                        None => break,
                    }
                }
            }
        }
        for c in to_close {
            tokio::spawn(c.terminate());
        }
        for slot in to_open {
            let pool = self.clone();
            tokio::spawn(async move {
                if let Ok(c) = pool.open(slot).await {
                    pool.release(c);
                }
            });
        }
    }

    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// RECONNECT: every connection is closed (idle ones now, busy ones when
    /// released) and replaced by new ones on demand.
    pub fn reconnect(&self) {
        self.inner
            .epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.drain_idle();
    }

    /// Connections opened before the last RECONNECT that are still open.
    pub fn old_connections(&self) -> usize {
        let epoch = self.epoch();
        self.inner
            .servers
            .lock()
            .values()
            .filter(|s| s.epoch() < epoch)
            .count()
    }

    /// Closes every idle connection (RECONNECT, reload of server address,
    /// DROP DATABASE); returns how many.
    pub fn drain_idle(&self) -> usize {
        let idle: Vec<ServerConn> = std::mem::take(&mut self.inner.state.lock().idle);
        let n = idle.len();
        for c in idle {
            tokio::spawn(c.terminate());
        }
        n
    }

    /// Stops the pool: waiters get an error, idle connections close.
    pub fn close(&self) {
        let (waiters, watcher) = {
            let mut st = self.inner.state.lock();
            st.closed = true;
            (std::mem::take(&mut st.waiters), st.watcher.take())
        };
        drop(waiters);
        if let Some(w) = watcher {
            w.wake(); // it sees the pool closed and ends
        }
        self.drain_idle();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The watcher holds only a weak reference: wake it to end.
        if let Some(w) = self.state.get_mut().watcher.take() {
            w.wake();
        }
    }
}

/// A client pinned to its server (see [`Pool::pin`]).
pub struct PinGuard(Arc<Inner>);

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.0
            .pinned
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinGuard")
    }
}

enum Step {
    Got(ServerConn),
    Open(SlotGuard),
    Wait((u64, oneshot::Receiver<Grant>)),
}

impl Inner {
    pub(crate) fn key(&self) -> &PoolKey {
        &self.key
    }

    /// The watcher's turn: registers `cx` on every idle socket and takes
    /// out the connections whose backend went away (to be dropped by the
    /// caller, outside the lock). None once the pool is closed.
    pub(crate) fn sweep_idle(&self, cx: &mut std::task::Context<'_>) -> Option<Vec<ServerConn>> {
        let mut st = self.state.lock();
        if st.closed {
            st.watcher = None;
            return None;
        }
        if !st.watcher.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.watcher = Some(cx.waker().clone());
        }
        let mut dead = Vec::new();
        // Keeps the idle list's order (LIFO lending).
        let idle = std::mem::take(&mut st.idle);
        for c in idle {
            if liveness::gone_or_register(&c.stream, cx) {
                dead.push(c);
            } else {
                st.idle.push(c);
            }
        }
        Some(dead)
    }

    fn enqueue(&self, st: &mut State) -> (u64, oneshot::Receiver<Grant>) {
        let (tx, rx) = oneshot::channel();
        st.next_waiter += 1;
        let id = st.next_waiter;
        st.waiters.push_back(Waiter {
            id,
            since: Instant::now(),
            tx,
        });
        (id, rx)
    }

    /// Takes a slot if the pool (plus reserve, if allowed) and the shared
    /// database/user limits have room.
    fn take_slot(self: &Arc<Self>, st: &mut State, reserve: bool) -> Option<SlotGuard> {
        let s = self.settings.read();
        let cap = s.pool_size + if reserve { s.reserve_pool_size } else { 0 };
        if st.open >= cap || !self.db_limit.try_take() {
            return None;
        }
        if !self.user_limit.try_take() {
            self.db_limit.give_back();
            return None;
        }
        st.open += 1;
        Some(SlotGuard {
            pool: Arc::downgrade(self),
            armed: true,
            server: 0,
        })
    }

    /// A connection closed: its place goes to the oldest waiter.
    fn slot_freed(self: &Arc<Self>) {
        let mut st = self.state.lock();
        st.open = st.open.saturating_sub(1);
        self.db_limit.give_back();
        self.user_limit.give_back();
        self.grant_slots(&mut st);
    }

    /// Gives free places, one each, to the oldest waiters while both last.
    fn grant_slots(self: &Arc<Self>, st: &mut State) {
        while !st.waiters.is_empty() && !st.closed {
            let Some(mut slot) = self.take_slot(st, false) else {
                return;
            };
            loop {
                let Some(w) = st.waiters.pop_front() else {
                    // Nobody took it: undo by hand (dropping the guard here
                    // would re-enter this lock).
                    slot.armed = false;
                    st.open -= 1;
                    self.db_limit.give_back();
                    self.user_limit.give_back();
                    return;
                };
                match w.tx.send(Grant::Slot(slot)) {
                    Ok(()) => break,
                    Err(Grant::Slot(s)) => slot = s,
                    Err(Grant::Conn(_)) => unreachable!("sent a slot"),
                }
            }
        }
    }
}

fn expired(c: &ServerConn, s: &PoolSettings) -> bool {
    s.server_lifetime.is_some_and(|l| c.created.elapsed() >= l)
}
