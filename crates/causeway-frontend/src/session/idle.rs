//! The Idle state: no server attached. The client's next request starts a
//! unit of work (attach.rs); meanwhile KILL, shutdown, PAUSE, idle
//! timeouts and a write's token arriving are handled here.

use bytes::Buf;
use causeway_config::PoolMode;
use causeway_protocol::scan::is_frontend_tag;
use causeway_protocol::{sqlstate, ProtocolError, HEADER_LEN};

use std::future::Future;
use std::task::Poll;

use tokio::time::Instant;

use super::consistency::{write_token, Wrote, TOKEN_IDLE_DELAY, TOKEN_WAIT};
use super::park::{Due, Resume, Woke};
use super::{secs, Session, State, SHUTDOWN_MESSAGE};
use crate::app::Phase;

impl Session {
    /// No server attached: wait for the next request. Ok(tag): a unit of
    /// work starts with the message at the front of the buffer. Kept
    /// small: an idle client's task is this future.
    /// Err: why the session closed, or that it parks (`resumed`: it was
    /// parked, see park.rs).
    pub(super) async fn idle(&mut self, mut resumed: Option<Resume>) -> Result<u8, Left> {
        loop {
            if let Some(closed) = self.leave_if_due().await {
                return Err(Left::Closed(closed.reason()));
            }
            if self.client.buf.len() >= HEADER_LEN {
                match self.next_request().await {
                    Ok(Some(tag)) => {
                        if let Some(r) = self.rare.as_deref_mut() {
                            r.drain_grace_end = None;
                        }
                        return Ok(tag);
                    }
                    Ok(None) => continue,
                    Err(state) => return Err(Left::Closed(state.reason())),
                }
            }
            match self.wait_for_client(resumed.take()).await {
                Ok(None) => {}
                Ok(Some(due)) => return Err(Left::Park(due)),
                Err(state) => return Err(Left::Closed(state.reason())),
            }
        }
    }

    /// The message at the front of the buffer (its header is there) is
    /// checked. Ok(Some(tag)): it starts a unit of work. Ok(None): answered
    /// here (Parses of statements known everywhere).
    async fn next_request(&mut self) -> Result<Option<u8>, State> {
        let tag = match front(&self.client.buf, self.cfg.max_packet_size) {
            Front::Request(tag) => tag,
            Front::Terminate => return Err(State::Closed("client terminated")),
            Front::Unknown(tag) => {
                // Never forwarded: the server would end its connection.
                let e = ProtocolError::UnknownMessageType(tag as char).to_string();
                Box::pin(self.client.fatal(sqlstate::PROTOCOL_VIOLATION, &e)).await;
                return Err(State::Closed("client protocol violation"));
            }
            Front::BadLength(len) => {
                let max = self.cfg.max_packet_size;
                let e = format!("invalid message length {len} (max_packet_size {max})");
                Box::pin(self.client.fatal(sqlstate::PROTOCOL_VIOLATION, &e)).await;
                return Err(State::Closed("bad packet"));
            }
        };
        if tag == b'P' && self.tracks_prepared() {
            self.prep_made();
            if let Some(p) = self.prep.as_deref_mut() {
                if let Some(n) = p.answer_parses(&self.client.buf, &mut self.client.out) {
                    self.client.buf.advance(n);
                    self.info.info.set_prepared(p.map.len());
                    if self.client.flush().await.is_err() {
                        return Err(State::Closed("client closed connection"));
                    }
                    return Ok(None);
                }
            }
        }
        Ok(Some(tag))
    }

    /// Nothing to do until the client speaks, a write's token is due, the
    /// session is woken (KILL, shutdown) or a timeout passes. Ok(Some):
    /// asked to park, with this deadline on its timer.
    async fn wait_for_client(&mut self, resumed: Option<Resume>) -> Result<Option<Due>, State> {
        // An idle client holds no buffer: it goes back to the thread's
        // free list until the client speaks again.
        if self.client.buf.is_empty() {
            self.client.park_buffer();
        }
        let due = self.arm_timer(resumed);
        let woke = match resumed.and_then(|r| r.woke) {
            Some(woke) => woke,
            None if self.parks() => return Ok(Some(due)),
            None => self.woken(due != Due::Nothing).await,
        };
        const GONE: &str = "client closed connection";
        match woke {
            Woke::Readable(false) => return Err(State::Closed(GONE)),
            Woke::Readable(true) => match self.client.try_read_more() {
                Ok(Some(0)) | Err(_) => return Err(State::Closed(GONE)),
                Ok(_) => {}
            },
            Woke::Woken if self.parks() => return Ok(Some(due)),
            Woke::Woken => {}
            Woke::Timer => match due {
                Due::IdleTimeout => {
                    let fatal = self
                        .client
                        .fatal(sqlstate::IDLE_SESSION_TIMEOUT, "client_idle_timeout");
                    Box::pin(fatal).await;
                    return Err(State::Closed("client_idle_timeout"));
                }
                Due::Token => {
                    if let Some(w) = self.ryw.wrote {
                        Box::pin(self.report_token_while_idle(w)).await?;
                    }
                }
                Due::DrainGrace | Due::Nothing => {}
            },
        }
        Ok(None)
    }

    /// Sets the session's timer to the idle wait's first deadline and
    /// says which it is.
    fn arm_timer(&mut self, resumed: Option<Resume>) -> Due {
        // A client idle for a moment after a write gets the write's token
        // (ParameterStatus causeway.token); one that goes on at once gets
        // it when it next needs it (see consistency.rs).
        // Resumed after parking: the deadline its timer holds is kept.
        let kept = resumed
            .filter(|r| r.due != Due::Nothing)
            .and_then(|r| Some((r.due, self.timer.as_ref()?.deadline())));
        let token_at = match kept {
            Some((Due::Token, at)) => Some(at),
            _ => self
                .ryw
                .wrote
                .filter(|w| self.token_query(*w).is_some())
                .map(|_| Instant::now() + TOKEN_IDLE_DELAY),
        };
        // The session's own timer (the pump's while attached): no timer
        // of its own in the idle future. Draining: the idle client's grace
        // ends (leave_if_due closes it). Only which deadline is first is
        // kept across the wait (the timer holds when).
        let idle_end = match kept {
            Some((Due::IdleTimeout, at)) => Some(at),
            _ => secs(self.cfg.client_idle_timeout).map(|t| Instant::now() + t),
        };
        let drain_grace_end = self.rare.as_deref().and_then(|r| r.drain_grace_end);
        let due = [
            (idle_end, Due::IdleTimeout),
            (drain_grace_end, Due::DrainGrace),
            (token_at, Due::Token),
        ]
        .into_iter()
        .filter_map(|(at, due)| Some((at?, due)))
        .min_by_key(|(at, _)| *at);
        match due {
            Some((at, due)) => {
                self.timer().as_mut().reset(at);
                due
            }
            None => Due::Nothing,
        }
    }

    /// Until the client's socket is readable, the session is woken or
    /// (`timed`) the session's timer fires. Polled by hand rather than
    /// with select!: an idle client's task holds this future, which is
    /// one pointer.
    fn woken(&mut self, timed: bool) -> impl Future<Output = Woke> + '_ {
        std::future::poll_fn(move |cx| self.poll_woke(cx, timed))
    }

    /// Asked to park (see park.rs), and nothing else to do first: a KILL
    /// or shutdown whose call this wait took is handled here, not parked.
    fn parks(&self) -> bool {
        self.info.info.park_requested()
            && !self.info.info.is_killed()
            && self.app.phase() == Phase::Running
    }

    /// The client stayed idle after a write: its token is fetched and
    /// reported, unless the client speaks first (then the token is fetched
    /// when its next read needs it). Boxed: only this path pays for the
    /// query's future, not every idle client's task.
    async fn report_token_while_idle(&mut self, w: Wrote) -> Result<(), State> {
        let Some((pos, system_id)) = self.token_query(w) else {
            return Ok(());
        };
        let mut fetch = Box::pin(write_token(pos, w, system_id, Instant::now() + TOKEN_WAIT));
        let stream = &mut self.client.stream;
        let token = std::future::poll_fn(|cx| {
            if let Poll::Ready(t) = fetch.as_mut().poll(cx) {
                return Poll::Ready(Some(t));
            }
            if stream.poll_read_ready(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        if let Some(t) = token {
            self.ryw.wrote = None;
            self.settle_token(t);
            if self.client.flush().await.is_err() {
                return Err(State::Closed("client closed connection"));
            }
        }
        Ok(())
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
            return Box::pin(self.interrupted()).await;
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
        match self.rare.as_deref().and_then(|r| r.drain_grace_end) {
            None => {
                self.rare().drain_grace_end = Some(now + super::DRAIN_IDLE_GRACE);
                None
            }
            Some(t) if now < t => None,
            Some(_) => {
                Box::pin(
                    self.client
                        .fatal(sqlstate::ADMIN_SHUTDOWN, SHUTDOWN_MESSAGE),
                )
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
                    _ = self.info.info.wake.woken() => {
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

/// Why the idle wait ended without a request.
pub(super) enum Left {
    Closed(&'static str),
    /// Asked to park (see park.rs), this deadline on its timer.
    Park(Due),
}

/// What the message at the front of an idle client's buffer is (its
/// header is there).
#[derive(Debug, PartialEq, Eq)]
enum Front {
    /// A message that starts a unit of work.
    Request(u8),
    Terminate,
    /// Not a frontend message type.
    Unknown(u8),
    /// Its length field, below 4 or past max_packet_size.
    BadLength(i64),
}

fn front(buf: &[u8], max_packet_size: u32) -> Front {
    let tag = buf[0];
    if tag == b'X' {
        return Front::Terminate;
    }
    if !is_frontend_tag(tag) {
        return Front::Unknown(tag);
    }
    match causeway_protocol::frame_header(buf, max_packet_size as usize + 1) {
        Some(Err(ProtocolError::BadLength { len, .. })) => Front::BadLength(len),
        Some(Err(ProtocolError::TooLarge { len, .. })) => Front::BadLength(len as i64 - 1),
        _ => Front::Request(tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_message_is_checked_before_any_server_sees_it() {
        let q = causeway_protocol::message(b'Q', b"select 1\0");
        assert_eq!(front(&q, 1024), Front::Request(b'Q'));
        assert_eq!(front(b"X\0\0\0\x04", 1024), Front::Terminate);
        // A backend message type from a client: never forwarded.
        assert_eq!(front(b"Z\0\0\0\x05I", 1024), Front::Unknown(b'Z'));
        assert_eq!(front(b"Q\0\0\0\x03", 1024), Front::BadLength(3));
        // Oversized: refused by its header, before it is read.
        assert_eq!(front(b"Q\0\0\x10\x00", 1024), Front::BadLength(4096));
        assert_eq!(front(b"Q\0\0\x04\x00", 1024), Front::Request(b'Q'));
        assert_eq!(front(b"Q\0\0\x04\x01", 1024), Front::BadLength(1025));
    }
}
