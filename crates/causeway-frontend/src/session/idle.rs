//! The Idle state: no server attached. The next request is routed and a
//! server connection acquired (FIFO wait, PAUSE, KILL and shutdown honoured).

use std::time::Duration;

use bytes::Buf;
use causeway_config::PoolMode;
use causeway_metrics::RouteReason;
use causeway_pool::{Pool, ServerConn};
use causeway_protocol::scan::is_frontend_tag;
use causeway_protocol::{backend, sqlstate, HEADER_LEN};
use causeway_routing::{Decision, Policy, Reason, Request, Role, SessionView, StaleCause};

use super::consistency::Floor;
use super::pump::{Flow, RetryCause, Timeouts};
use super::{secs, sleep_or_forever, Attached, Retry, Session, State, SHUTDOWN_MESSAGE};
use crate::app::Phase;

/// While it waits for a server, a client's bytes are read (to notice it
/// leaving) only up to this many.
const WAIT_READ_LIMIT: usize = 256 * 1024;

impl Session {
    /// No server attached: wait for the next request and route it.
    pub(super) async fn idle(&mut self) -> State {
        loop {
            if let Some(closed) = self.leave_if_due().await {
                return closed;
            }
            if self.client.buf.len() >= HEADER_LEN {
                let tag = self.client.buf[0];
                if tag == b'X' {
                    return State::Closed("client terminated");
                }
                if !is_frontend_tag(tag) {
                    // Never forwarded: the server would end its connection.
                    let e = causeway_protocol::ProtocolError::UnknownMessageType(tag as char);
                    self.client
                        .fatal(sqlstate::PROTOCOL_VIOLATION, &e.to_string())
                        .await;
                    return State::Closed("client protocol violation");
                }
                let len = i32::from_be_bytes([
                    self.client.buf[1],
                    self.client.buf[2],
                    self.client.buf[3],
                    self.client.buf[4],
                ]);
                if len < 4 || len as u64 > u64::from(self.cfg.max_packet_size) {
                    self.client
                        .fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            &format!(
                                "invalid message length {len} (max_packet_size {})",
                                self.cfg.max_packet_size
                            ),
                        )
                        .await;
                    return State::Closed("bad packet");
                }
                if tag == b'P' {
                    if let Some(p) = self.prep.as_deref_mut().filter(|p| p.on) {
                        if let Some(n) = p.answer_parses(&self.client.buf, &mut self.client.out) {
                            self.client.buf.advance(n);
                            self.info.info.set_prepared(p.map.len());
                            if self.client.flush().await.is_err() {
                                return State::Closed("client closed connection");
                            }
                            continue;
                        }
                    }
                }
                self.drain_grace_end = None;
                return self.attach(tag).await;
            }
            // An idle client holds no buffer: it goes back to the thread's
            // free list until the client speaks again.
            if self.client.buf.is_empty() {
                self.client.park_buffer();
            }
            let idle_timeout = secs(self.cfg.client_idle_timeout);
            // Draining: the idle client's grace ends (leave_if_due closes it).
            let grace_end = self.drain_grace_end;
            // A write's token arriving while the client is idle is reported
            // at once (ParameterStatus causeway.token).
            let mut pending = self.ryw.pending.take();
            let token = async {
                match pending.as_mut() {
                    Some(rx) => rx.await.ok().flatten(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                t = token => {
                    pending = None;
                    self.settle_token(t);
                    if self.client.flush().await.is_err() {
                        return State::Closed("client closed connection");
                    }
                }
                r = self.client.stream.readable() => {
                    if r.is_err() {
                        return State::Closed("client closed connection");
                    }
                    match self.client.try_read_more() {
                        Ok(Some(0)) | Err(_) => return State::Closed("client closed connection"),
                        Ok(_) => {}
                    }
                },
                _ = self.info.info.wake.notified() => {}
                _ = sleep_until_or_forever(grace_end) => {}
                _ = sleep_or_forever(idle_timeout) => {
                    self.client.fatal(sqlstate::IDLE_SESSION_TIMEOUT, "client_idle_timeout").await;
                    return State::Closed("client_idle_timeout");
                }
            }
            if pending.is_some() {
                self.ryw.pending = pending;
            }
        }
    }

    /// Whether this client is closed at its next transaction boundary.
    /// SIGINT: every client. SIGTERM: clients leave by themselves (session
    /// state stays theirs), except that with so_reuseport a
    /// transaction-mode client that is not pinned has nothing on its
    /// server to lose, so it moves to the process now serving the port.
    pub(super) fn leaves_at_boundary(&self) -> bool {
        match self.app.phase() {
            Phase::Running => false,
            Phase::NoAccept => {
                self.cfg.so_reuseport && self.mode != PoolMode::Session && self.pin.is_none()
            }
            Phase::Draining | Phase::Stopping => true,
        }
    }

    /// At a transaction boundary: KILL and shutdown as in
    /// [`Session::interrupted`], and a draining shutdown closes the client
    /// once it has been silent for [`super::DRAIN_IDLE_GRACE`] (a request
    /// it sends meanwhile is run, and the client is closed right behind its
    /// ReadyForQuery instead).
    async fn leave_if_due(&mut self) -> Option<State> {
        if self.info.info.is_killed() || self.app.phase() == Phase::Stopping {
            return self.interrupted().await;
        }
        if !self.leaves_at_boundary() {
            return None;
        }
        if self.client.buf.is_empty() {
            match self.client.try_read_more() {
                Ok(Some(0)) | Err(_) => return Some(State::Closed("client closed connection")),
                Ok(_) => {}
            }
        }
        if !self.client.buf.is_empty() {
            return None;
        }
        let now = tokio::time::Instant::now();
        match self.drain_grace_end {
            None => {
                self.drain_grace_end = Some(now + super::DRAIN_IDLE_GRACE);
                None
            }
            Some(t) if now < t => None,
            Some(_) => {
                self.client
                    .fatal(sqlstate::ADMIN_SHUTDOWN, SHUTDOWN_MESSAGE)
                    .await;
                Some(State::Closed("shutdown"))
            }
        }
    }

    /// Handles KILL and shutdown: Some(Closed) when the session must end
    /// now (an error has been sent).
    pub(super) async fn interrupted(&mut self) -> Option<State> {
        if self.info.info.is_killed() {
            self.client
                .fatal(
                    sqlstate::ADMIN_SHUTDOWN,
                    "client killed by the administrator",
                )
                .await;
            return Some(State::Closed("killed"));
        }
        match self.app.phase() {
            Phase::Draining | Phase::Stopping => {
                self.client
                    .fatal(sqlstate::ADMIN_SHUTDOWN, SHUTDOWN_MESSAGE)
                    .await;
                Some(State::Closed("shutdown"))
            }
            Phase::Running | Phase::NoAccept => None,
        }
    }

    /// PAUSE: hold new work until RESUME (clients wait, none fail).
    pub(super) async fn wait_while_paused(&mut self) -> Option<State> {
        if *self.db.paused.borrow() {
            let mut paused = self.db.paused.subscribe();
            while *paused.borrow_and_update() {
                self.info.info.waiting();
                tokio::select! {
                    r = paused.changed() => if r.is_err() { break },
                    _ = self.info.info.wake.notified() => {
                        if let Some(closed) = self.interrupted().await {
                            return Some(closed);
                        }
                    }
                }
            }
        }
        None
    }

    pub(super) fn pool(&mut self, server: usize) -> Pool {
        if let Some(p) = &self.pools[server] {
            return p.clone();
        }
        let p = self.app.databases.pool(
            &self.db,
            &self.user,
            server,
            &self.cfg,
            &self.app.secrets(),
            &self.creds,
        );
        self.pools[server] = Some(p.clone());
        p
    }

    /// Routes the unit at the front of the client buffer and attaches a server.
    async fn attach(&mut self, tag: u8) -> State {
        if let Some(closed) = self.wait_while_paused().await {
            return closed;
        }
        let (req, unit) = if self.split {
            match self.plan(tag).await {
                Ok(Some(p)) => p,
                Ok(None) => return State::Idle, // answered here
                Err(closed) => return closed,
            }
        } else {
            (Request::write(), 0)
        };
        let mut retry = std::mem::take(&mut self.retry);
        let ryw = self.split && req.intent.is_read() && self.ryw.on();
        // Read-your-writes: a read waits at most ryw_wait_timeout for a
        // replica to catch up with the session's floor.
        let ryw_deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64(self.cfg.ryw_wait_timeout.max(0.0));
        let mut waited: Option<std::time::Instant> = None;
        let (conn, pool, server, replica) = loop {
            let topo = self.db.topology();
            let floor = if ryw {
                self.ryw_floor(&topo, ryw_deadline).await
            } else {
                Floor::default()
            };
            let view = SessionView {
                pinned: None,
                exclude: retry.exclude,
                sticky: self.sticky,
                floor: floor.lsn,
                reached: floor.reached,
                only: floor.only,
                stale: floor.stale,
            };
            let req = Request {
                force_primary: req.force_primary || retry.to_primary,
                ..req
            };
            let decision = self.db.router().policy.route(&req, &view, &topo);
            let (server, reason) = match decision {
                Decision::Server { index, reason } => (index, reason),
                // A read that nothing can take yet (its server failed, or
                // no primary and no routable replica, as in a failover):
                // the monitor (or a rebuild) may soon name one.
                Decision::Refuse { sqlstate, .. }
                    if (retry.cause.is_some()
                        || (req.intent.is_read() && sqlstate == sqlstate::CONNECTION_FAILURE))
                        && self.wait_for_topology(&mut retry).await =>
                {
                    self.refresh_database_keeping(&mut retry);
                    continue;
                }
                Decision::Refuse { sqlstate, message } => {
                    self.db.routes.count(false, RouteReason::Refused);
                    return self.refuse(unit, sqlstate, &message).await;
                }
            };
            if reason == Reason::Behind {
                let first = waited.is_none();
                let started = *waited.get_or_insert_with(std::time::Instant::now);
                // One wait on every candidate at once; a replica that got
                // there is picked by routing again.
                if first
                    && self
                        .wait_for_floor(&topo, &view, ryw_deadline)
                        .await
                        .is_some()
                {
                    continue;
                }
                self.db.ryw.waited(started.elapsed());
                self.db.ryw.fallback();
                if self.cfg.ryw_fallback == causeway_config::RywFallback::Error {
                    self.db.routes.count(false, RouteReason::Refused);
                    return self
                        .refuse(
                            unit,
                            sqlstate::CANNOT_CONNECT_NOW,
                            "no replica caught up with this session's writes within ryw_wait_timeout (ryw_fallback = error)",
                        )
                        .await;
                }
            } else if let Some(started) = waited.take() {
                self.db.ryw.waited(started.elapsed());
            }
            let replica = topo.servers.get(server).map(|s| s.role) == Some(Role::Replica);
            tracing::debug!(client = %self.client.peer, tag = %(tag as char), unit, intent = ?req.intent, server, ?reason, replica, "routed");
            if self.split {
                let why = match (retry.cause, reason) {
                    (Some(RetryCause::ReadOnly), _) => RouteReason::RetryReadOnly,
                    (Some(RetryCause::Conflict), _) => RouteReason::RetryConflict,
                    (Some(RetryCause::Failure), _) => RouteReason::RetryFailure,
                    (None, Reason::Forced) => RouteReason::Hint,
                    (None, Reason::Read) => RouteReason::Read,
                    (None, Reason::NoReplica) => RouteReason::NoReplica,
                    (None, Reason::Behind) => RouteReason::Behind,
                    (None, Reason::Stale(StaleCause::Failover)) => RouteReason::Stale,
                    (None, Reason::Stale(StaleCause::TokenUnknown)) => RouteReason::TokenUnknown,
                    (None, Reason::Stale(StaleCause::Unbounded)) => RouteReason::Unbounded,
                    (None, Reason::Pinned | Reason::PrimaryOnly) => RouteReason::Pinned,
                    (None, Reason::Write) => RouteReason::Write,
                };
                self.db.routes.count(replica, why);
            }
            let pool = self.pool(server);
            let got = match self.acquire(&pool).await {
                // A pooled connection found dead and not replaced: as a
                // failed connect.
                Ok(conn) => match self.synced(conn, &pool).await {
                    Ok(conn) => Ok(conn),
                    Err(Ok(closed)) => return closed,
                    Err(Err(e)) => Err(Acquire::Failed(e)),
                },
                Err(e) => Err(e),
            };
            match got {
                Ok(conn) => break (conn, pool, server, replica),
                Err(Acquire::Closed(why)) => return State::Closed(why),
                Err(Acquire::Failed(causeway_pool::PoolError::Closed))
                    if self.refresh_database() =>
                {
                    // A reload rebuilt the database (its servers changed):
                    // route again on the new one.
                    retry = Retry::default();
                    continue;
                }
                Err(Acquire::Failed(e)) => {
                    // A server that cannot give a connection (a replica, or
                    // a primary that is down): a read tries elsewhere.
                    if super::rerun::reroutes_after_connect_failure(
                        req.intent,
                        replica,
                        Session::server_down(&e),
                        retry.attempts,
                        self.max_retries(),
                    ) {
                        self.db.suspect(server);
                        retry.attempts += 1;
                        retry.failed(server, RetryCause::Failure, self.rerun_limit());
                        continue;
                    }
                    if self.cfg.log_pooler_errors {
                        tracing::warn!(client = %self.client.peer, database = %self.db.name, error = %e, "no server connection");
                    }
                    self.client.fatal(e.sqlstate(), &e.to_string()).await;
                    return State::Closed("no server connection");
                }
            }
        };
        let mut conn = conn;
        if self.client.flush().await.is_err() {
            pool.release(conn);
            return State::Closed("client closed connection");
        }
        self.key.slot.attach(conn.cancel());
        self.info.info.active(conn.id(), conn.cancel().pid);
        conn.info().assign(self.info.info.id);
        let timeouts = Timeouts {
            query: secs(self.cfg.query_timeout),
            idle_transaction: secs(self.cfg.idle_transaction_timeout),
            client_idle: secs(self.cfg.client_idle_timeout),
        };
        conn.statements_mut().begin_pin();
        let prep = self.prep.take().unwrap_or_else(|| {
            Box::new(super::prepared::Prep::new(
                false,
                0,
                self.db.statements.clone(),
            ))
        });
        let mut flow = Flow::new(
            self.mode,
            self.cfg.max_packet_size as usize,
            timeouts,
            self.db.stats.clone(),
            prep,
        );
        let read = self.split && req.intent.is_read();
        // An autocommit read is held so that it can run elsewhere if its
        // server fails it (the primary too: it may die under the read).
        let hold = super::rerun::holds(
            self.split,
            req.intent,
            unit,
            retry.attempts,
            self.max_retries(),
        );
        if hold {
            retry.attempts += 1;
            self.retry = Retry {
                cause: None,
                ..retry
            };
        }
        if (replica && read && unit > 0) || hold {
            // Only this unit goes to the server.
            flow.limit_to_unit(unit, hold);
        }
        if replica && read && unit > 0 && self.db.router().routing.sticky_reads {
            self.sticky = Some(server);
        }
        if read {
            self.db.load.start(server);
        }
        State::Active(Attached {
            conn,
            pool,
            flow,
            server,
            read,
            wrote: self.split && !req.intent.is_read() && !replica && self.ryw.on(),
            started: std::time::Instant::now(),
        })
    }

    /// After a reload replaced this session's database: switch to the new
    /// one. False when there is none (removed) or it is the same.
    fn refresh_database(&mut self) -> bool {
        let Some(db) = self
            .app
            .databases
            .get(&self.db.name, &self.cfg, &self.app.secrets())
        else {
            return false;
        };
        if std::sync::Arc::ptr_eq(&db, &self.db) {
            return false;
        }
        tracing::info!(client = %self.client.peer, database = %db.name, "database reconfigured; session moves to the new servers");
        self.pools = vec![None; db.servers.len()];
        self.split = db.splits() && self.mode != causeway_config::PoolMode::Session;
        self.classifier = db.router().classifier.clone();
        if let Some(p) = &mut self.prep {
            // Statement ids are per database: the client's names are kept
            // and re-prepared on the new servers.
            p.registry = db.statements.clone();
        }
        self.sticky = None;
        self.retry = Retry::default();
        self.db = db;
        true
    }

    /// [`Session::refresh_database`] for a read that waits to be re-run:
    /// on a rebuilt database the failed servers' indexes mean nothing, but
    /// the read still waits within its bound.
    fn refresh_database_keeping(&mut self, retry: &mut Retry) {
        if self.refresh_database() {
            *retry = Retry {
                attempts: retry.attempts,
                cause: retry.cause,
                until: retry.until,
                ..Retry::default()
            };
        }
    }

    fn max_retries(&self) -> u32 {
        self.db.router().routing.read_retries
    }

    /// Waits for a server connection, noticing a client that gives up.
    pub(super) async fn acquire(&mut self, pool: &Pool) -> Result<ServerConn, Acquire> {
        if let Some(conn) = self.take_welcomed(pool) {
            return Ok(conn);
        }
        self.info.info.waiting();
        let wait_start = std::time::Instant::now();
        let acquire = pool.acquire();
        tokio::pin!(acquire);
        let r = loop {
            tokio::select! {
                r = &mut acquire => break r,
                _ = self.info.info.wake.notified() => {
                    if self.info.info.is_killed() || self.app.phase() == Phase::Stopping {
                        return Err(Acquire::Closed("killed or shut down while waiting"));
                    }
                }
                // Read on only while the buffer is small: what a client
                // sends while it waits is not held beyond that.
                r = self.client.read_more(), if self.client.buf.len() < WAIT_READ_LIMIT => {
                    if matches!(r, Ok(0) | Err(_)) {
                        return Err(Acquire::Closed("client closed while waiting"));
                    }
                }
            }
        };
        match r {
            Ok(c) => {
                self.db.stats.record_wait(wait_start.elapsed());
                Ok(c)
            }
            Err(e) => Err(Acquire::Failed(e)),
        }
    }

    /// No server can take the unit: the client gets the error and, when
    /// the whole unit is known, the session goes on (as after a failed
    /// statement); else it is closed.
    pub(super) async fn refuse(&mut self, unit: usize, sqlstate: &str, message: &str) -> State {
        if self.cfg.log_pooler_errors {
            tracing::warn!(client = %self.client.peer, database = %self.db.name, sqlstate, message, "request refused");
        }
        if unit == 0 || unit > self.client.buf.len() {
            self.client.fatal(sqlstate, message).await;
            return State::Closed("no server");
        }
        self.client.buf.advance(unit);
        backend::write_error(&mut self.client.out, false, sqlstate, message);
        backend::write_ready_for_query(&mut self.client.out, b'I');
        match self.client.flush().await {
            Ok(()) => State::Idle,
            Err(_) => State::Closed("client closed connection"),
        }
    }
}

pub(super) enum Acquire {
    /// The session must end (the client left, was killed, or shutdown).
    Closed(&'static str),
    Failed(causeway_pool::PoolError),
}

async fn sleep_until_or_forever(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
