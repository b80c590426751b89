//! The client's side of the flow: where its bytes stand, and what the
//! requests the pump looks at (those owing a ReadyForQuery, Sync/Flush,
//! COPY ends, Terminate, and with prepared statements tracked the extended
//! protocol) change.
//!
//! The client buffer, front to back: `[..kept]` written to the server but
//! kept for a replay (a held read only), `[kept..ready]` checked and due
//! to the server, `[ready..]` not yet checked.

use bytes::{Buf, BytesMut};
use causeway_config::PoolMode;
use causeway_pool::ServerConn;
use causeway_protocol::scan::{is_frontend_tag, Interest, Scanner, Step};
use causeway_protocol::{ProtocolError, HEADER_LEN};
use tokio::time::Instant;

use super::owed::Request;
use super::{ddl, Flow, HIGH_WATER};
use crate::client::Client;
use crate::session::keywords;
use crate::session::prepared::{ClientAction, Prep, MAX_HELD};

#[derive(Default)]
pub struct ClientCursor {
    pub scan: Scanner,
    /// Written but kept for a replay (see the module comment).
    pub kept: usize,
    /// End of the checked bytes.
    pub ready: usize,
    /// Read the client until this many bytes are buffered (a message that
    /// must be seen whole, up to MAX_HELD).
    pub need: usize,
    /// Replica units: client bytes of the unit still to be scanned; at 0
    /// nothing more is forwarded until the server answers (the next unit
    /// is routed afresh). None = no limit.
    pub unit_left: Option<usize>,
    /// Extended-protocol requests went out with no Sync or Flush after
    /// them yet: an error for them is held until one does.
    pub unflushed: bool,
    /// Terminate seen: never forwarded; the flow ends once the bytes
    /// before it are out.
    pub terminate: bool,
}

impl ClientCursor {
    /// Checked bytes not yet written.
    pub fn due(&self) -> usize {
        self.ready - self.kept
    }

    /// `n` checked bytes were written to the server: dropped, or for a
    /// held read kept.
    pub fn wrote(&mut self, buf: &mut BytesMut, n: usize, keep: bool) {
        if keep {
            self.kept += n;
        } else {
            buf.advance(n);
            self.ready -= n;
        }
    }

    /// The held read is committed: the kept bytes are done with. True if
    /// there were any.
    pub fn drop_kept(&mut self, buf: &mut BytesMut) -> bool {
        if self.kept == 0 {
            return false;
        }
        buf.advance(self.kept);
        self.ready -= self.kept;
        self.kept = 0;
        true
    }

    /// `n` more bytes of the current unit were dealt with.
    fn unit_took(&mut self, n: usize) {
        if let Some(left) = &mut self.unit_left {
            *left = left.saturating_sub(n);
        }
    }
}

impl Flow {
    /// Checks what the client sent. True: something was checked (bytes
    /// became due, a Terminate was seen, a request was rewritten).
    pub(super) fn scan_client(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
    ) -> Result<bool, ProtocolError> {
        let interest = if self.prep.on {
            client_interest_tracked
        } else {
            client_interest
        };
        let mut progress = false;
        while !self.c.terminate && !self.client_waits() {
            let new_message = self.c.scan.at_boundary();
            let step = self
                .c
                .scan
                .step(&client.buf[self.c.ready..], self.max_packet, interest)?;
            let went_on = match step {
                Step::Pass(n) => {
                    self.pass_client(client, n, new_message);
                    true
                }
                Step::Header { tag, len } => self.on_request(client, conn, tag, len)?,
                Step::Whole { .. } | Step::NeedMore => false,
            };
            if !went_on {
                break;
            }
            progress = true;
        }
        Ok(progress)
    }

    /// Nothing more of the client's is checked for now.
    fn client_waits(&self) -> bool {
        // The next message starts new work: it is routed afresh.
        (self.release_seen && self.c.scan.at_boundary() && self.c.ready == 0)
            // Replica: the unit is out; what follows waits for its answer.
            || self.c.unit_left == Some(0)
            || self.prep.out.len() >= HIGH_WATER
    }

    /// `n` bytes of a message nobody looks at (Bind, Execute, ... when
    /// untracked; CopyData) are due.
    fn pass_client(&mut self, client: &mut Client, n: usize, new_message: bool) {
        // A message that starts here is a request awaiting Sync.
        self.c.unflushed |= new_message && !self.copy.active();
        if self.prep.out.is_empty() {
            self.c.ready += n;
        } else {
            // Behind rewritten bytes: queued after them.
            self.divert(client, n);
        }
        self.release_seen = false;
        self.c.unit_took(n);
    }

    /// A request whose header was just read. False: the scan stops (more
    /// of it must be read first, or it ends the flow).
    fn on_request(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
        tag: u8,
        len: usize,
    ) -> Result<bool, ProtocolError> {
        let avail = &client.buf[self.c.ready..];
        if let (b'Q' | b'P', Some(close)) = (tag, &self.close_idle) {
            if !ddl::checked(close, avail, tag, len) {
                self.c.scan.unread_header();
                self.c.need = self.c.ready + (len + 1).min(MAX_HELD);
                return Ok(false);
            }
        }
        let track = self.prep.on;
        match tag {
            b'X' => {
                // Never forwarded: the server stays at a message boundary
                // and goes back to the pool.
                self.c.scan.unread_header();
                self.c.terminate = true;
            }
            // CopyDone / CopyFail: the server reads Syncs again.
            b'c' | b'f' => self.copy.client_ended(&mut self.owed),
            // The server ignores Syncs during COPY FROM STDIN.
            b'S' if self.copy.active() => {}
            b'H' => self.c.unflushed = false,
            // Untracked Parse (looked at only for database DDL).
            b'P' if !track => {
                self.c.unflushed = true;
                self.note_text(avail, len + 1);
            }
            b'P' | b'B' | b'D' | b'C' | b'E' => return self.extended(client, conn, tag, len + 1),
            // SQL PREPARE/EXECUTE/DEALLOCATE (sql_prepared.rs).
            b'Q' if track => {
                let total = len + 1;
                // One look at the text for both the prepared statements
                // and the session-state hints.
                let words = avail
                    .get(HEADER_LEN..total)
                    .map(|body| keywords::find(body, keywords::ALL));
                let action = self.prep.query(avail, total, words, conn.statements_mut());
                if action != ClientAction::NeedMore && self.mode != PoolMode::Session {
                    match words {
                        Some(w) => self.hints.words(w),
                        None => self.hints.unread(),
                    }
                }
                if !self.apply(client, action, total)? {
                    return Ok(false);
                }
                self.owes_ready(b'Q');
            }
            _ => {
                if tag == b'Q' {
                    self.note_text(avail, len + 1);
                }
                self.owes_ready(tag);
            }
        }
        Ok(true)
    }

    /// A tracked extended-protocol request (`total` bytes): the
    /// prepared-statement bookkeeping decides what goes to the server.
    fn extended(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
        tag: u8,
        total: usize,
    ) -> Result<bool, ProtocolError> {
        self.c.unflushed = true;
        let avail = &client.buf[self.c.ready..];
        let action = self.prep.client(tag, avail, total, conn.statements_mut());
        if tag == b'P' && action != ClientAction::NeedMore {
            self.note_text(avail, total);
        }
        self.apply(client, action, total)
    }

    /// The text of a Query or Parse (`avail` starts with it) for the
    /// session-state hints: looked at when it is all there.
    fn note_text(&mut self, avail: &[u8], total: usize) {
        if self.mode == PoolMode::Session {
            return;
        }
        match avail.get(HEADER_LEN..total) {
            Some(body) => self.hints.text(body),
            None => self.hints.unread(),
        }
    }

    /// A Query, Sync or FunctionCall went out: the server owes a
    /// ReadyForQuery.
    fn owes_ready(&mut self, tag: u8) {
        self.c.unflushed = false;
        if self.prep.on {
            self.prep.marker(tag);
        }
        // A turn starts: the query's clock runs.
        let started = self.owed.is_empty().then(Instant::now);
        if let Some(now) = started {
            self.clock.request_sent(now);
        }
        self.meter.request(started);
        self.owed.push(match tag {
            b'S' => Request::Sync,
            _ => Request::Query,
        });
    }

    /// Carries out what the prepared-statement bookkeeping decided for the
    /// client message at `ready` (`total` bytes). False: more of it must
    /// be read first (the scan stops).
    fn apply(
        &mut self,
        client: &mut Client,
        action: ClientAction,
        total: usize,
    ) -> Result<bool, ProtocolError> {
        self.c.need = 0;
        match action {
            ClientAction::Pass => {}
            ClientAction::NeedMore => {
                // Never more than MAX_HELD of one message is held.
                self.c.scan.unread_header();
                self.c.need = self.c.ready + total.min(MAX_HELD);
                return Ok(false);
            }
            ClientAction::Malformed(what) => return Err(ProtocolError::Malformed(what)),
            ClientAction::Took(n) => {
                self.c.scan.took(n);
                // Due client bytes go first, then the rewrite.
                let due = self.c.due();
                if due > 0 {
                    self.c.ready = self.c.kept;
                    self.divert(client, due);
                }
                let Prep { out, stage, .. } = &mut *self.prep;
                out.extend_from_slice(stage);
                stage.clear();
                self.consume(client, n);
                self.release_seen = false;
                self.c.unit_took(n);
            }
        }
        Ok(true)
    }

    /// Moves `n` client bytes at `ready` into the rewritten stream.
    fn divert(&mut self, client: &mut Client, n: usize) {
        let at = self.c.ready;
        self.prep.out.extend_from_slice(&client.buf[at..at + n]);
        self.consume(client, n);
    }

    /// `n` client bytes at `ready` are dealt with (copied or replaced):
    /// dropped, or, for a held read, counted as written.
    fn consume(&mut self, client: &mut Client, n: usize) {
        if self.hold.active() {
            self.c.ready += n;
            self.c.kept += n;
        } else {
            debug_assert_eq!(self.c.ready, 0);
            client.buf.advance(n);
        }
    }
}

fn client_interest(tag: u8) -> Interest {
    match tag {
        b'Q' | b'S' | b'F' | b'X' | b'c' | b'f' | b'H' | b'P' => Interest::Header,
        _ if !is_frontend_tag(tag) => Interest::Reject,
        _ => Interest::Pass,
    }
}

/// With prepared statements tracked: also the requests that get a reply.
fn client_interest_tracked(tag: u8) -> Interest {
    match tag {
        b'Q' | b'S' | b'F' | b'X' | b'c' | b'f' | b'H' | b'P' | b'B' | b'D' | b'C' | b'E' => {
            Interest::Header
        }
        _ if !is_frontend_tag(tag) => Interest::Reject,
        _ => Interest::Pass,
    }
}
