//! The Idle state: no server attached. The next request is routed and a
//! server connection acquired (FIFO wait, PAUSE, KILL and shutdown honoured).

use causeway_pool::Pool;
use causeway_protocol::{backend, sqlstate, HEADER_LEN};
use causeway_routing::{Decision, Request, SessionView};

use super::pump::{Flow, Timeouts};
use super::{params, secs, sleep_or_forever, Attached, Session, State};
use crate::app::Phase;

impl Session {
    /// No server attached: wait for the next request and route it.
    pub(super) async fn idle(&mut self) -> State {
        loop {
            if let Some(closed) = self.interrupted().await {
                return closed;
            }
            if self.client.buf.len() >= HEADER_LEN {
                let tag = self.client.buf[0];
                if tag == b'X' {
                    return State::Closed("client terminated");
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
                return self.attach(tag).await;
            }
            // An idle client holds no buffer: it goes back to the thread's
            // free list until the client speaks again.
            if self.client.buf.is_empty() {
                self.client.park_buffer();
            }
            let idle_timeout = secs(self.cfg.client_idle_timeout);
            tokio::select! {
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
                _ = sleep_or_forever(idle_timeout) => {
                    self.client.fatal(sqlstate::IDLE_SESSION_TIMEOUT, "client_idle_timeout").await;
                    return State::Closed("client_idle_timeout");
                }
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
                    .fatal(sqlstate::ADMIN_SHUTDOWN, "pooler is shutting down")
                    .await;
                Some(State::Closed("shutdown"))
            }
            Phase::Running | Phase::NoAccept => None,
        }
    }

    fn pool(&mut self, server: usize) -> Pool {
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

    /// Routes the request at the front of the client buffer and attaches a server.
    async fn attach(&mut self, tag: u8) -> State {
        // PAUSE: hold new work until RESUME (clients wait, none fail).
        if *self.db.paused.borrow() {
            let mut paused = self.db.paused.subscribe();
            while *paused.borrow_and_update() {
                self.info.info.waiting();
                tokio::select! {
                    r = paused.changed() => if r.is_err() { break },
                    _ = self.info.info.wake.notified() => {
                        if let Some(closed) = self.interrupted().await {
                            return closed;
                        }
                    }
                }
            }
        }
        let topo = self.db.topology();
        let server =
            match self
                .app
                .policy
                .route(&Request { tag, sql: None }, &SessionView::default(), &topo)
            {
                Decision::Server { index, .. } => index,
                Decision::Refuse { sqlstate, message } => {
                    self.client.fatal(sqlstate, &message).await;
                    return State::Closed("no server");
                }
            };
        let pool = self.pool(server);
        self.info.info.waiting();
        let wait_start = std::time::Instant::now();
        // Keep reading while waiting so a client that gives up is noticed.
        let acquired = {
            let acquire = pool.acquire();
            tokio::pin!(acquire);
            loop {
                tokio::select! {
                    r = &mut acquire => break r,
                    _ = self.info.info.wake.notified() => {
                        if self.info.info.is_killed() || self.app.phase() == Phase::Stopping {
                            return State::Closed("killed or shut down while waiting");
                        }
                    }
                    r = self.client.read_more() => {
                        if matches!(r, Ok(0) | Err(_)) {
                            return State::Closed("client closed while waiting");
                        }
                    }
                }
            }
        };
        let mut conn = match acquired {
            Ok(c) => {
                self.db.stats.record_wait(wait_start.elapsed());
                c
            }
            Err(e) => {
                if self.cfg.log_pooler_errors {
                    tracing::warn!(client = %self.client.peer, database = %self.db.name, error = %e, "no server connection");
                }
                self.client.fatal(e.sqlstate(), &e.to_string()).await;
                return State::Closed("no server connection");
            }
        };
        match params::sync(&mut self.params, &mut conn).await {
            Ok(news) => {
                for (k, v) in news {
                    backend::write_parameter_status(&mut self.client.out, &k, &v);
                }
            }
            Err(e) => {
                self.client
                    .fatal(
                        e.sqlstate(),
                        &format!("could not apply session parameters: {e}"),
                    )
                    .await;
                return State::Closed("parameter sync failed");
            }
        }
        if self.client.flush().await.is_err() {
            pool.release(conn);
            return State::Closed("client closed connection");
        }
        self.key.slot.attach(&conn.cancel);
        self.info.info.active(conn.id, conn.cancel.pid);
        conn.info.assign(self.info.info.id);
        let timeouts = Timeouts {
            query: secs(self.cfg.query_timeout),
            idle_transaction: secs(self.cfg.idle_transaction_timeout),
            client_idle: secs(self.cfg.client_idle_timeout),
        };
        let flow = Flow::new(
            self.mode,
            self.cfg.max_packet_size as usize,
            timeouts,
            self.db.stats.clone(),
        );
        State::Active(Attached { conn, pool, flow })
    }
}
