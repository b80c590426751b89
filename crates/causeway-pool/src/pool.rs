//! The pool of one (database, user, server): idle connections, FIFO
//! waiters, and the slots that bound how many connections exist.
//!
//! Waiting is event-driven: a waiter sleeps on its own channel until it is
//! handed a connection or a slot, oldest first, by whatever made one
//! available: a release, a closed connection (its slot freed), capacity
//! freed in another pool under a shared limit (limits.rs wakes the pools
//! blocked there), the reserve opening (a timer per waiter, armed only when
//! a reserve is configured), a reload, a connection opened by
//! min_pool_size maintenance. Each hand-over is O(1); nothing polls. A
//! waiter that gives up passes on anything it was handed ([`Waiting`]).
//! query_wait_timeout is kept by one watcher per pool (expiry.rs), not a
//! timer per waiter.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::time;

use crate::error::{PoolError, ServerError};
use crate::expiry;
use crate::handoff::{self, Grant};
use crate::info::{ServerInfo, ServerState};
use crate::limits::{Blocked, Limit};
use crate::liveness;
use crate::params::ParamSet;
use crate::server::{Login, ServerConn};
use crate::settings::PoolSettings;
use crate::slot::{SlotGuard, SlotOwner};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    /// Index of the server in the database's list.
    pub server: usize,
}

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
    /// Oldest first. The front is always a waiter still waiting; entries
    /// further back may belong to clients that gave up (`gone` of them),
    /// skipped when they reach the front.
    waiters: VecDeque<Waiter>,
    gone: u32,
    /// Slots in use: connections open or being opened.
    open: u32,
    closed: bool,
    /// The idle watcher's waker (see liveness.rs), registered on every
    /// idle connection's socket; `watching` once the task is spawned.
    watcher: Option<std::task::Waker>,
    watching: bool,
    /// The query_wait_timeout watcher's waker (expiry.rs), the deadline
    /// it sleeps until (None: no waiter has one), and whether it runs.
    expiry: Option<std::task::Waker>,
    expiry_at: Option<time::Instant>,
    expiring: bool,
}

struct Waiter {
    since: time::Instant,
    /// query_wait_timeout: when the watcher tells it so.
    deadline: Option<time::Instant>,
    tx: handoff::Sender,
}

impl State {
    fn live_waiters(&self) -> u32 {
        (self.waiters.len() as u32).saturating_sub(self.gone)
    }

    /// Pops the waiters at the front whose client gave up.
    fn pop_gone(&mut self) {
        while self.waiters.front().is_some_and(|w| w.tx.is_closed()) {
            self.waiters.pop_front();
            self.gone = self.gone.saturating_sub(1);
        }
    }

    /// Takes the oldest waiter still waiting off the queue. Under the pool
    /// lock it cannot give up before it is sent its grant (see [`Waiting`]).
    fn next_waiter(&mut self) -> Option<Waiter> {
        self.pop_gone();
        let w = self.waiters.pop_front();
        self.pop_gone();
        w
    }

    /// Tells the waiters whose deadline is past `now` (and drops those
    /// that gave up); the earliest deadline left, if any. O(waiters), run
    /// about once per timeout period.
    fn expire(&mut self, now: time::Instant) -> Option<time::Instant> {
        let mut next: Option<time::Instant> = None;
        // Rotated in place: the order stays.
        for _ in 0..self.waiters.len() {
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            if w.tx.is_closed() {
                self.gone = self.gone.saturating_sub(1);
                continue;
            }
            match w.deadline {
                Some(d) if d <= now => {
                    // A waiter that left meanwhile finds it (Waiting).
                    let _ = w.tx.send(Grant::Expired);
                }
                d => {
                    next = match (next, d) {
                        (Some(n), Some(d)) => Some(n.min(d)),
                        (n, d) => n.or(d),
                    };
                    self.waiters.push_back(w);
                }
            }
        }
        next
    }
}

/// A client waiting in [`Pool::lease`]. If it gives up (its future is
/// dropped: the client left, query_wait_timeout, shutdown), whatever it
/// was handed meanwhile goes to the next waiter, and its queue entry is
/// marked gone, all under the pool lock so no grant is lost in between.
struct Waiting<'a> {
    inner: &'a Arc<Inner>,
    rx: handoff::Receiver,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let handed = {
            let mut st = self.inner.state.lock();
            self.rx.close();
            match self.rx.try_recv() {
                Ok(g) => Some(g),
                Err(_) => {
                    // Not handed anything: still queued (a closed pool
                    // dropped its queue instead).
                    if !st.closed {
                        st.gone += 1;
                        st.pop_gone();
                    }
                    None
                }
            }
        };
        match handed {
            // Outside a runtime (shutdown) it is dropped, i.e. closed.
            Some(Grant::Conn(c)) if tokio::runtime::Handle::try_current().is_ok() => Pool {
                inner: self.inner.clone(),
            }
            .release(c),
            // Dropping a slot hands it on.
            _ => {}
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
        // A bigger pool or reserve: room for the oldest waiters.
        let mut st = self.inner.state.lock();
        self.inner.grant_slots(&mut st);
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let st = self.inner.state.lock();
        PoolSnapshot {
            open: st.open,
            idle: st.idle.len() as u32,
            waiting: st.live_waiters(),
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
        // When the first wait began (query_wait_timeout counts from it);
        // no clock read when a connection is there at once.
        let mut start = None;
        loop {
            let conn = match self.lease(&mut start).await? {
                Grant::Conn(c) => c,
                Grant::Slot(slot) => return self.open(slot).await,
                Grant::Expired => return Err(PoolError::WaitTimeout),
            };
            if let Some(c) = self.check(conn).await {
                return Ok(c);
            }
        }
    }

    /// An idle connection or a slot to open one: at once if there is one
    /// and nobody waits, else in FIFO order when one is handed over.
    async fn lease(&self, start: &mut Option<time::Instant>) -> Result<Grant, PoolError> {
        let mut to_close = Vec::new();
        let waiting = {
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
            if let Some(c) = found {
                return Ok(Grant::Conn(c));
            }
            // Behind older waiters, a newcomer queues even if room appeared.
            let slot = if st.waiters.is_empty() {
                self.inner.take_slot(&mut st, false, true)
            } else {
                None
            };
            match slot {
                Some(slot) => Ok(Grant::Slot(slot)),
                None => Err(self.inner.enqueue(&mut st, *start)),
            }
        };
        // Closing expired connections frees their slots (and may hand one
        // to this very waiter): outside the lock.
        drop(to_close);
        match waiting {
            Ok(grant) => Ok(grant),
            Err((rx, since)) => {
                start.get_or_insert(since);
                self.wait(rx, since).await
            }
        }
    }

    /// Runs server_check_query on a connection idle longer than
    /// server_check_delay; None if it failed (the connection is closed).
    async fn check(&self, mut conn: ServerConn) -> Option<ServerConn> {
        // One clock read for both idle-time tests (this runs per lease).
        let idle_for = conn.last_used.elapsed();
        if liveness::gone(&conn, idle_for) {
            tracing::info!(pool = ?self.inner.key, id = conn.id, pid = conn.cancel.pid, "idle server connection closed by the server; not lent");
            return None;
        }
        let query = {
            let s = self.inner.settings.read();
            // A reload may have changed the deadline.
            conn.set_internal_timeout(s.internal_query_timeout);
            // The query is copied only when it runs.
            if s.server_check_query.is_empty() || idle_for < s.server_check_delay {
                return Some(conn);
            }
            s.server_check_query.clone()
        };
        conn.info.set_state(ServerState::Tested);
        match conn.internal_query(&query, None).await.map(drop) {
            Ok(_) if !conn.broken => Some(conn),
            _ => None,
        }
    }

    /// Sleeps until handed a grant, the pool closes, or
    /// query_wait_timeout (the expiry watcher says so); wakes early only
    /// when the reserve opens for it.
    async fn wait(&self, rx: handoff::Receiver, since: time::Instant) -> Result<Grant, PoolError> {
        let reserve_at = {
            let s = self.inner.settings.read();
            (s.reserve_pool_size > 0).then(|| since + s.reserve_pool_timeout)
        };
        let mut w = Waiting {
            inner: &self.inner,
            rx,
            done: false,
        };
        let granted = |g: Result<Grant, _>| match g {
            Ok(Grant::Expired) => Err(PoolError::WaitTimeout),
            Ok(g) => Ok(g),
            Err(_) => Err(PoolError::Closed),
        };
        let Some(reserve_at) = reserve_at else {
            let g = (&mut w.rx).await;
            w.done = true;
            return granted(g);
        };
        let reserve = time::sleep_until(reserve_at);
        tokio::pin!(reserve);
        let mut reserve_armed = true;
        loop {
            tokio::select! {
                biased;
                g = &mut w.rx => {
                    w.done = true;
                    return granted(g);
                }
                () = &mut reserve, if reserve_armed => {
                    // The reserve is open to this waiter and all older
                    // ones: the oldest get it first.
                    reserve_armed = false;
                    let mut st = self.inner.state.lock();
                    self.inner.grant_slots(&mut st);
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
        slot.set_server(conn.id);
        conn.epoch = self.epoch();
        conn.set_internal_timeout(settings.internal_query_timeout);
        conn.info.set_epoch(conn.epoch);
        conn.slot = Some(slot);
        self.inner.servers.lock().insert(conn.id, conn.info.clone());
        conn.info.set_state(ServerState::Idle);
        if let Some(q) = &settings.connect_query {
            conn.internal_query(q, None).await?;
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
        let now = Instant::now();
        conn.last_used = now;
        conn.info.unassign();
        let expired_now =
            expired_at(&conn, &self.inner.settings.read(), now) || conn.epoch < self.epoch();
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
        // A released connection goes to the oldest waiter: no waiter sits
        // behind an idle connection.
        while let Some(w) = st.next_waiter() {
            match w.tx.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(c)) => conn = c,
                Err(_) => return, // not what was sent
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
                let pool = Arc::downgrade(&self.inner);
                rt.spawn(liveness::watch(move |cx| {
                    pool.upgrade().is_some_and(|inner| inner.sweep_idle(cx))
                }));
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
                    match self.inner.take_slot(&mut st, false, false) {
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
            st.gone = 0;
            (
                std::mem::take(&mut st.waiters),
                [st.watcher.take(), st.expiry.take()],
            )
        };
        drop(waiters);
        for w in watcher.into_iter().flatten() {
            w.wake(); // it sees the pool closed and ends
        }
        self.drain_idle();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The watcher holds only a weak reference: wake it to end.
        let st = self.state.get_mut();
        for w in [st.watcher.take(), st.expiry.take()].into_iter().flatten() {
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

impl Inner {
    /// The watcher's turn (liveness.rs): registers `cx` on every idle
    /// socket and closes the connections whose backend went away. False
    /// once the pool is closed.
    fn sweep_idle(&self, cx: &mut std::task::Context<'_>) -> bool {
        let mut st = self.state.lock();
        if st.closed {
            st.watcher = None;
            return false;
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
        drop(st);
        if !dead.is_empty() {
            tracing::info!(pool = ?self.key, count = dead.len(), "idle server connection closed by the server; dropped");
        }
        drop(dead); // frees their slots (takes the pool lock)
        true
    }

    /// Queues a waiter; `start`: when its first wait began (a waiter
    /// back after a failed check keeps its query_wait_timeout).
    fn enqueue(
        self: &Arc<Self>,
        st: &mut State,
        start: Option<time::Instant>,
    ) -> (handoff::Receiver, time::Instant) {
        let (tx, rx) = handoff::channel();
        let since = time::Instant::now();
        let deadline = self
            .settings
            .read()
            .query_wait_timeout
            .map(|d| start.unwrap_or(since) + d);
        st.waiters.push_back(Waiter {
            since,
            deadline,
            tx,
        });
        if let Some(d) = deadline.filter(|d| st.expiry_at.is_none_or(|at| *d < at)) {
            st.expiry_at = Some(d);
            self.arm_expiry(st);
        }
        (rx, since)
    }

    /// The watcher has an earlier deadline to sleep until: woken, or
    /// started.
    fn arm_expiry(self: &Arc<Self>, st: &mut State) {
        if let Some(w) = &st.expiry {
            w.wake_by_ref();
        } else if !st.expiring {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                st.expiring = true;
                let pool = Arc::downgrade(self);
                rt.spawn(expiry::watch(move |cx, sleep| {
                    pool.upgrade()
                        .is_some_and(|inner| inner.expiry_turn(cx, sleep))
                }));
            }
        }
    }

    /// The watcher's turn: sleeps until the earliest deadline, then tells
    /// the waiters past theirs. False once the pool is closed.
    fn expiry_turn(
        &self,
        cx: &mut std::task::Context<'_>,
        mut sleep: std::pin::Pin<&mut time::Sleep>,
    ) -> bool {
        use std::future::Future;
        loop {
            let at = {
                let mut st = self.state.lock();
                if st.closed {
                    st.expiry = None;
                    return false;
                }
                if !st.expiry.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.expiry = Some(cx.waker().clone());
                }
                st.expiry_at
            };
            // No deadline: until a waiter with one queues.
            let Some(at) = at else { return true };
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return true;
            }
            let mut st = self.state.lock();
            st.expiry_at = st.expire(time::Instant::now());
        }
    }

    /// Takes a slot if the pool (plus reserve, if allowed) and the shared
    /// database/user limits have room. With `wake_me`, a full limit
    /// registers the pool to be woken when it has room (for its waiters).
    fn take_slot(
        self: &Arc<Self>,
        st: &mut State,
        reserve: bool,
        wake_me: bool,
    ) -> Option<SlotGuard> {
        let cap = {
            let s = self.settings.read();
            s.pool_size + if reserve { s.reserve_pool_size } else { 0 }
        };
        if st.open >= cap {
            return None;
        }
        let me: Weak<dyn Blocked> = Arc::downgrade(self) as Weak<Inner>;
        if !Limit::take_pair(&self.db_limit, &self.user_limit, wake_me.then_some(&me)) {
            return None;
        }
        st.open += 1;
        Some(SlotGuard::new(Arc::downgrade(self) as Weak<Inner>))
    }

    /// Gives free places, one each, to the oldest waiters while both last;
    /// a waiter that has waited reserve_pool_timeout may use the reserve.
    fn grant_slots(self: &Arc<Self>, st: &mut State) {
        let (reserve_size, reserve_after) = {
            let s = self.settings.read();
            (s.reserve_pool_size, s.reserve_pool_timeout)
        };
        while !st.closed {
            st.pop_gone();
            let Some(front) = st.waiters.front() else {
                return;
            };
            let reserve = reserve_size > 0 && front.since.elapsed() >= reserve_after;
            let Some(slot) = self.take_slot(st, reserve, true) else {
                return;
            };
            let sent = match st.next_waiter() {
                Some(w) => w.tx.send(Grant::Slot(slot)),
                None => Err(Grant::Slot(slot)),
            };
            if let Err(Grant::Slot(slot)) = sent {
                // Not expected (the front was checked under this lock):
                // undo by hand, as dropping the guard here would re-enter
                // the lock.
                slot.disarm();
                st.open -= 1;
                self.db_limit.give_back();
                self.user_limit.give_back();
                return;
            }
        }
    }
}

impl SlotOwner for Inner {
    /// A connection closed (or never opened): its place goes to the oldest
    /// waiter here, else to pools blocked on the shared limits.
    fn slot_freed(self: Arc<Self>, server: u64) {
        if server != 0 {
            self.servers.lock().remove(&server);
        }
        {
            let mut st = self.state.lock();
            st.open = st.open.saturating_sub(1);
            self.db_limit.give_back();
            self.user_limit.give_back();
            self.grant_slots(&mut st);
        }
        // With no pool lock held (waking takes other pools' locks).
        self.db_limit.wake();
        self.user_limit.wake();
    }
}

impl Blocked for Inner {
    fn room(self: Arc<Self>) {
        let mut st = self.state.lock();
        self.grant_slots(&mut st);
    }
}

fn expired(c: &ServerConn, s: &PoolSettings) -> bool {
    expired_at(c, s, Instant::now())
}

/// [`expired`] at `now` (one clock read serves several tests).
fn expired_at(c: &ServerConn, s: &PoolSettings, now: Instant) -> bool {
    s.server_lifetime
        .is_some_and(|l| now.saturating_duration_since(c.created) >= l)
}

#[cfg(test)]
mod tests {
    //! The pool's waiting, in process: leases of slots with no I/O under
    //! tokio's paused clock, and a scripted server (login only) where a
    //! connection must be handed over.

    use std::future::Future;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    use std::task::Poll;

    use bytes::BytesMut;
    use causeway_protocol::backend;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::yield_now;

    use super::*;

    fn settings(pool_size: u32) -> PoolSettings {
        PoolSettings {
            pool_size,
            query_wait_timeout: None,
            server_check_query: String::new(),
            server_idle_timeout: None,
            server_lifetime: None,
            ..Default::default()
        }
    }

    fn login(port: u16) -> Login {
        Login {
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            database: "d".into(),
            password: None,
            scram_keys: None,
            startup: Vec::new(),
            tls: Default::default(),
        }
    }

    fn unlimited() -> Arc<Limit> {
        Arc::new(Limit::new(0))
    }

    fn pool_on(port: u16, user: &str, s: PoolSettings, db: &Arc<Limit>, u: &Arc<Limit>) -> Pool {
        let key = PoolKey {
            database: "d".into(),
            user: user.into(),
            server: 0,
        };
        Pool::new(key, login(port), s, db.clone(), u.clone())
    }

    /// A pool whose server is never contacted (the tests lease slots).
    fn pool(user: &str, s: PoolSettings, db: &Arc<Limit>, u: &Arc<Limit>) -> Pool {
        pool_on(1, user, s, db, u)
    }

    fn now() -> time::Instant {
        time::Instant::now()
    }

    fn is_slot(g: &Grant) -> bool {
        matches!(g, Grant::Slot(_))
    }

    /// `f`, or a panic if it never completes: on the paused clock a stuck
    /// wait reaches the deadline at once instead of hanging the test.
    async fn done<F: Future>(f: F) -> F::Output {
        time::timeout(Duration::from_secs(30), f)
            .await
            .expect("a waiter was never served")
    }

    /// Yields (letting every runnable task run) until `cond` holds.
    async fn eventually(mut cond: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            if cond() {
                return;
            }
            yield_now().await;
        }
        panic!("condition never held");
    }

    /// Lets every task run until none can make progress (single-threaded
    /// runtime, no I/O: a fixed number of rounds is deterministic).
    async fn settle() {
        for _ in 0..64 {
            yield_now().await;
        }
    }

    /// Polls `f` once: true if it is still pending.
    async fn poll_once<F: Future + Unpin>(f: &mut F) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *f).poll(cx).is_pending())).await
    }
    use std::pin::Pin;

    /// `f`, counting how often it is polled (woken).
    async fn counted<F: Future>(f: F, polls: Arc<AtomicU32>) -> F::Output {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| {
            polls.fetch_add(1, Relaxed);
            f.as_mut().poll(cx)
        })
        .await
    }

    /// A server that logs anyone in (AuthenticationOk, BackendKeyData,
    /// ReadyForQuery) and then stays quiet; counts connections.
    async fn login_only_server() -> (u16, Arc<AtomicU32>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU32::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                n.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                    if s.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    let mut out = BytesMut::new();
                    out.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
                    backend::write_backend_key_data(&mut out, 42, &[0, 0, 0, 7]);
                    backend::write_ready_for_query(&mut out, b'I');
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    let mut sink = [0u8; 256];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test(start_paused = true)]
    async fn a_thousand_waiters_on_a_pool_of_two_are_served_in_arrival_order() {
        let p = pool("u", settings(2), &unlimited(), &unlimited());
        let held = [
            p.lease(&mut None).await.unwrap(),
            p.lease(&mut None).await.unwrap(),
        ];
        assert!(held.iter().all(is_slot));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..1000u32 {
            let (p2, order) = (p.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let g = p2.lease(&mut None).await.expect("granted");
                assert!(is_slot(&g));
                assert!(p2.snapshot().open <= 2, "never more than the pool");
                order.lock().push(i);
                // Held across a turn, so two are out at a time.
                yield_now().await;
                drop(g);
            }));
            eventually(|| p.snapshot().waiting == i + 1).await;
        }
        drop(held);
        for t in tasks {
            done(t).await.unwrap();
        }
        assert_eq!(*order.lock(), (0..1000).collect::<Vec<_>>());
        assert_eq!(p.snapshot(), PoolSnapshot::default(), "all slots back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_woken_only_when_something_is_handed_to_it() {
        let p = pool("u", settings(1), &unlimited(), &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        let polls = Arc::new(AtomicU32::new(0));
        let p2 = p.clone();
        let waiter = tokio::spawn(counted(
            async move { p2.lease(&mut None).await },
            polls.clone(),
        ));
        // Ten idle minutes (paused clock): no tick wakes it.
        time::sleep(Duration::from_secs(600)).await;
        assert_eq!(polls.load(Relaxed), 1, "polled once, when it queued");
        assert_eq!(p.snapshot().waiting, 1);
        drop(held);
        assert!(is_slot(&done(waiter).await.unwrap().unwrap()));
        assert_eq!(polls.load(Relaxed), 2, "woken once, by the hand-over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_passes_its_grant_on() {
        let p = pool("u", settings(1), &unlimited(), &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        // Queued, then handed the slot before it runs again, then gone.
        let (mut s1, mut s2) = (None, None);
        let mut first = Box::pin(p.lease(&mut s1));
        assert!(poll_once(&mut first).await);
        // Queued, then gone before anything is handed out.
        let mut middle = Box::pin(p.lease(&mut s2));
        assert!(poll_once(&mut middle).await);
        let p2 = p.clone();
        let last = tokio::spawn(async move { p2.lease(&mut None).await });
        eventually(|| p.snapshot().waiting == 3).await;
        drop(middle);
        assert_eq!(p.snapshot().waiting, 2, "a waiter that left is not counted");
        drop(held); // handed to `first`, which has not run yet
        assert_eq!(p.snapshot().waiting, 1);
        assert!(!last.is_finished());
        drop(first);
        let g = done(last).await.unwrap().unwrap();
        assert!(is_slot(&g));
        assert_eq!(p.snapshot().open, 1, "the same place, not a new one");
        drop(g);
        assert_eq!(p.snapshot(), PoolSnapshot::default());
    }

    #[tokio::test]
    async fn a_released_connection_skips_a_waiter_that_left_and_stays_open() {
        let (port, accepted) = login_only_server().await;
        let p = pool_on(port, "u", settings(1), &unlimited(), &unlimited());
        let conn = p.acquire().await.unwrap();
        let id = conn.id;
        let mut first = Box::pin(p.acquire());
        assert!(poll_once(&mut first).await);
        let p2 = p.clone();
        let second = tokio::spawn(async move { p2.acquire().await });
        eventually(|| p.snapshot().waiting == 2).await;
        p.release(conn); // to `first`
        drop(first); // passes it on
        let conn = done(second).await.unwrap().unwrap();
        assert_eq!(conn.id, id, "the same connection");
        assert_eq!(accepted.load(Relaxed), 1, "nothing closed or reopened");
        p.release(conn);
        assert_eq!(p.snapshot().idle, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_opens_to_a_waiter_after_reserve_pool_timeout() {
        let s = PoolSettings {
            reserve_pool_size: 1,
            reserve_pool_timeout: Duration::from_secs(5),
            ..settings(1)
        };
        let p = pool("u", s, &unlimited(), &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        let t0 = now();
        let p2 = p.clone();
        let w = tokio::spawn(async move { (p2.lease(&mut None).await, now()) });
        let (g, at) = done(w).await.unwrap();
        let g = g.unwrap();
        assert!(is_slot(&g));
        assert_eq!(
            at - t0,
            Duration::from_secs(5),
            "at the timeout, not before"
        );
        assert_eq!(p.snapshot().open, 2, "pool + reserve");
        // The reserve (1) is taken: the next waiter waits for a release.
        let p3 = p.clone();
        let next = tokio::spawn(async move { p3.lease(&mut None).await });
        time::sleep(Duration::from_secs(60)).await;
        assert!(!next.is_finished());
        drop(g);
        assert!(is_slot(&done(next).await.unwrap().unwrap()));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn query_wait_timeout_ends_a_wait_with_an_error_and_leaks_nothing() {
        let s = PoolSettings {
            query_wait_timeout: Some(Duration::from_secs(2)),
            ..settings(1)
        };
        let p = pool("u", s, &unlimited(), &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        let t0 = now();
        let r = p.lease(&mut Some(t0)).await;
        assert!(matches!(r, Err(PoolError::WaitTimeout)));
        assert_eq!(now() - t0, Duration::from_secs(2));
        assert_eq!(p.snapshot().waiting, 0);
        drop(held);
        assert_eq!(p.snapshot(), PoolSnapshot::default());
    }

    #[tokio::test(start_paused = true)]
    async fn each_waiter_times_out_at_its_own_deadline_though_one_watcher_keeps_them() {
        let s = PoolSettings {
            query_wait_timeout: Some(Duration::from_secs(10)),
            ..settings(1)
        };
        let p = pool("u", s, &unlimited(), &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        let t0 = now();
        let lease = |start: Option<time::Instant>| {
            let p = p.clone();
            tokio::spawn(async move {
                let r = p.lease(&mut start.clone()).await;
                (r, now())
            })
        };
        // Deadline t0 + 10 s; served at t0 + 4 s, before it.
        let served = lease(None);
        eventually(|| p.snapshot().waiting == 1).await;
        time::sleep(Duration::from_secs(2)).await;
        // Back after a failed check: its wait began at t0 - 7 s, so its
        // deadline (t0 + 3 s) is earlier than the one the watcher sleeps for.
        let early = lease(Some(t0 - Duration::from_secs(7)));
        time::sleep(Duration::from_secs(2)).await;
        // Deadline t0 + 14 s: the watcher finds the first one served at
        // t0 + 10 s and sleeps on until this one's.
        let late = lease(None);
        eventually(|| p.snapshot().waiting == 2).await;
        drop(held);
        // Held on: the late one gets nothing but its timeout.
        let (g, _) = done(served).await.unwrap();
        let g = g.expect("served before its deadline");
        assert!(is_slot(&g));
        let (r, at) = done(early).await.unwrap();
        assert!(matches!(r, Err(PoolError::WaitTimeout)));
        assert_eq!(at - t0, Duration::from_secs(3), "its own, earlier deadline");
        let (r, at) = done(late).await.unwrap();
        assert!(matches!(r, Err(PoolError::WaitTimeout)));
        assert_eq!(at - t0, Duration::from_secs(14), "not the served one's");
        assert_eq!(p.snapshot().waiting, 0);
        drop(g);
        assert_eq!(p.snapshot(), PoolSnapshot::default());
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_pool_ends_every_wait() {
        let p = pool("u", settings(1), &unlimited(), &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        let p2 = p.clone();
        let w = tokio::spawn(async move { p2.lease(&mut None).await });
        eventually(|| p.snapshot().waiting == 1).await;
        p.close();
        assert!(matches!(done(w).await.unwrap(), Err(PoolError::Closed)));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_freed_in_another_pool_goes_to_a_waiter_blocked_on_the_shared_limit() {
        let db = Arc::new(Limit::new(1));
        let [a, b, c] = ["a", "b", "c"].map(|u| pool(u, settings(5), &db, &unlimited()));
        let held = a.lease(&mut None).await.unwrap();
        // `b` blocks on the limit first, then its only waiter leaves.
        let mut start = None;
        let mut gone = Box::pin(b.lease(&mut start));
        assert!(poll_once(&mut gone).await);
        let c2 = c.clone();
        let w = tokio::spawn(async move { c2.lease(&mut None).await });
        eventually(|| c.snapshot().waiting == 1).await;
        drop(gone);
        drop(held); // `a` has nobody waiting: the limit wakes `b`, then `c`
        let g = done(w).await.unwrap().unwrap();
        assert!(is_slot(&g));
        assert_eq!((db.used(), c.snapshot().open), (1, 1));
        drop(g);
        assert_eq!(db.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn raising_a_shared_limit_frees_its_waiters() {
        let db = Arc::new(Limit::new(1));
        let p = pool("u", settings(5), &db, &unlimited());
        let held = p.lease(&mut None).await.unwrap();
        let p2 = p.clone();
        let w = tokio::spawn(async move { p2.lease(&mut None).await });
        eventually(|| p.snapshot().waiting == 1).await;
        db.set_max(2);
        assert!(is_slot(&done(w).await.unwrap().unwrap()));
        drop(held);
    }

    /// Random arrivals, releases and departures over four pools sharing a
    /// database limit and a user limit: whenever things settle, no pool has
    /// a waiter while it and its limits have room, and each pool serves its
    /// waiters in arrival order.
    #[tokio::test(start_paused = true)]
    async fn no_waiter_is_left_sleeping_while_capacity_exists() {
        let db = Arc::new(Limit::new(3));
        let user_x = Arc::new(Limit::new(2));
        let user_y = unlimited();
        let pools: Vec<(Pool, Option<Arc<Limit>>)> = vec![
            (pool("x", settings(2), &db, &user_x), Some(user_x.clone())),
            (pool("x", settings(2), &db, &user_x), Some(user_x.clone())),
            (pool("y", settings(2), &db, &user_y), None),
            (pool("y", settings(1), &db, &user_y), None),
        ];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, Grant)>();
        let mut waiting: Vec<(usize, u64, tokio::task::JoinHandle<()>)> = Vec::new();
        let mut held: Vec<Grant> = Vec::new();
        let mut last_served = [0u64; 4];
        let mut seq = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        for step in 0..3000 {
            match next(100) {
                0..=44 => {
                    let i = next(pools.len());
                    seq += 1;
                    let (p, tx, s) = (pools[i].0.clone(), tx.clone(), seq);
                    let task = tokio::spawn(async move {
                        if let Ok(g) = p.lease(&mut None).await {
                            let _ = tx.send((i, s, g));
                        }
                    });
                    waiting.push((i, s, task));
                }
                45..=74 if !held.is_empty() => {
                    let g = held.swap_remove(next(held.len()));
                    drop(g);
                    // Sometimes the waiter just handed it leaves before it
                    // runs: the grant must travel on.
                    if next(3) == 0 && !waiting.is_empty() {
                        let (_, _, t) = waiting.remove(next(waiting.len()));
                        t.abort();
                    }
                }
                75..=89 if !waiting.is_empty() => {
                    let (_, _, t) = waiting.remove(next(waiting.len()));
                    t.abort();
                }
                _ => {}
            }
            settle().await;
            while let Ok((i, s, g)) = rx.try_recv() {
                assert!(
                    s > last_served[i],
                    "pool {i} served {s} after {}",
                    last_served[i]
                );
                last_served[i] = s;
                waiting.retain(|(_, w, _)| *w != s);
                held.push(g);
            }
            for (i, (p, user)) in pools.iter().enumerate() {
                let snap = p.snapshot();
                if snap.waiting > 0 {
                    let full = snap.open >= p.settings().pool_size
                        || db.used() >= 3
                        || user.as_ref().is_some_and(|u| u.used() >= 2);
                    assert!(
                        full,
                        "step {step}: pool {i} has {snap:?} with room (db {db:?}, x {user_x:?})"
                    );
                }
            }
            let open: u32 = pools.iter().map(|(p, _)| p.snapshot().open).sum();
            assert_eq!(
                open,
                held.len() as u32,
                "step {step}: every slot is held by someone"
            );
            assert_eq!(db.used(), open);
        }
        drop(held);
        for (_, _, t) in waiting {
            t.abort();
        }
        settle().await;
        while let Ok((_, _, g)) = rx.try_recv() {
            drop(g);
        }
        assert_eq!(db.used(), 0);
        assert_eq!(user_x.used(), 0);
    }
}
