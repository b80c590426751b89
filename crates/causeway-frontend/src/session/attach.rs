//! A unit of work, in named steps:
//!
//! ```text
//! plan    what the request is: a classified unit, or a Causeway command
//!         answered here (plan.rs)
//! decide  where it goes and why, read-your-writes floor and wait
//!         included (decide.rs)
//! lease   a server connection: acquired, synced, cancel key pointed
//!         (lease.rs)
//! pump    the bytes both ways until the unit ends (active.rs, pump.rs)
//! release stats, reset or close, a write noted for its token (release.rs)
//! ```
//!
//! Each step returns what the next takes; `Err(State)` ends the unit
//! early (answered here, refused, or the session closed).

use bytes::Buf;
use causeway_protocol::backend;

use super::{Attached, Session, State};

impl Session {
    /// Runs the steps up to the pump for the unit at the front of the
    /// client buffer (its first message's tag is `tag`).
    pub(super) async fn attach(&mut self, tag: u8) -> State {
        match self.unit_of_work(tag).await {
            Ok(att) => State::Active(att),
            Err(state) => state,
        }
    }

    async fn unit_of_work(&mut self, tag: u8) -> Result<Box<Attached>, State> {
        if let Some(closed) = self.wait_while_paused().await {
            return Err(closed);
        }
        let unit = self.plan(tag).await?;
        let mut retry = std::mem::take(&mut self.retry);
        loop {
            let placed = self.decide(&unit, &mut retry).await?;
            if let Some(att) = self.lease(&unit, placed, &mut retry).await? {
                return Ok(att);
            }
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
