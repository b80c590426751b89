//! The Idle state: no server attached. The client's next request starts a
//! unit of work (attach.rs); meanwhile KILL, shutdown, PAUSE, idle
//! timeouts and a write's token arriving are handled here.

use bytes::Buf;
use causeway_config::PoolMode;
use causeway_protocol::scan::is_frontend_tag;
use causeway_protocol::{sqlstate, HEADER_LEN};

use super::{secs, sleep_or_forever, Session, State, SHUTDOWN_MESSAGE};
use crate::app::Phase;

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
}

async fn sleep_until_or_forever(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
