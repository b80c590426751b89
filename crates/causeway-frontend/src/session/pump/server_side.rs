//! The server's side of the flow: its bytes are forwarded as they are
//! checked (`[..ready]` of its buffer is due to the client); only the
//! replies pooling needs are looked at: ReadyForQuery (status, what is
//! owed), ParameterStatus, ErrorResponse (FATAL, held pipeline errors),
//! CommandComplete (RESET, LISTEN, session-state hints), and with prepared
//! statements tracked the replies that end a request.

use bytes::{Buf, BytesMut};
use causeway_config::PoolMode;
use causeway_pool::{ParamSet, ServerConn};
use causeway_protocol::scan::{body, Interest, Scanner, Step};
use causeway_protocol::{backend, ProtocolError};

use super::{End, Flow};
use crate::session::prepared::ServerAction;

#[derive(Default)]
pub struct ServerCursor {
    pub scan: Scanner,
    /// Front bytes of the server buffer that are checked and due to the
    /// client.
    pub ready: usize,
}

/// What became of one whole reply.
enum Reply {
    /// Forwarded (or dealt with): the scan goes on.
    Next,
    /// It waits where it is (an error held until the client's Sync, a
    /// ReadyForQuery held for a restore). `changed`: that is news.
    Stop { changed: bool },
}

impl Flow {
    /// Checks what the server sent. True: something was checked or
    /// changed (bytes became due, a reply was cut or rewritten, the end of
    /// the work was seen).
    pub(super) fn scan_server(
        &mut self,
        conn: &mut ServerConn,
        params: &mut ParamSet,
    ) -> Result<bool, End> {
        let mut progress = false;
        if self.hold.active() {
            if self.hold.failed() {
                return self.scan_discard(conn);
            }
            progress = self.scan_held(conn, params)?;
            if self.hold.active() {
                return Ok(progress);
            }
        }
        let interest = if self.prep.on {
            server_interest_tracked
        } else {
            server_interest
        };
        while !self.release_seen {
            let step = self
                .s
                .scan
                .step(&conn.buf()[self.s.ready..], usize::MAX >> 1, interest)
                .map_err(End::ServerProtocol)?;
            match step {
                Step::Pass(n) => self.s.ready += n,
                Step::Whole { tag, frame } => {
                    let len = frame.len();
                    if let Reply::Stop { changed } = self.on_reply(conn, params, tag, len)? {
                        return Ok(progress | changed);
                    }
                }
                Step::Header { tag: b'G', .. } => self.copy_started(),
                Step::Header { .. } | Step::NeedMore => return Ok(progress),
            }
            progress = true;
        }
        Ok(progress)
    }

    /// A whole reply of `len` bytes at `ready`.
    fn on_reply(
        &mut self,
        conn: &mut ServerConn,
        params: &mut ParamSet,
        tag: u8,
        mut len: usize,
    ) -> Result<Reply, End> {
        let at = self.s.ready;
        if let Some(stop) = self.waits(conn, tag, at, len) {
            return Ok(stop);
        }
        if self.prep.on {
            let (buf, statements) = conn.buf_and_statements();
            let frame = &buf[at..at + len];
            match self.prep.server(tag, body(frame), statements) {
                ServerAction::Forward => {}
                ServerAction::Swallow => {
                    cut(buf, at, len);
                    return Ok(Reply::Next);
                }
                ServerAction::Retag(t) => buf[at] = t,
                ServerAction::Replace => {
                    let tail = buf.split_off(at + len);
                    buf.truncate(at);
                    buf.extend_from_slice(&self.prep.stage);
                    buf.unsplit(tail);
                    len = self.prep.stage.len();
                    self.prep.stage.clear();
                }
            }
        }
        let frame = &conn.buf()[at..at + len];
        if tag == b'C' && self.mode != PoolMode::Session {
            self.hints.tag(body(frame));
        }
        match tag {
            b'Z' => {
                let status =
                    backend::parse_ready_status(body(frame)).map_err(End::ServerProtocol)?;
                self.on_ready(status)?;
            }
            b'S' => {
                // Rare (SET of a reported parameter): copying is fine.
                let b = body(frame).to_vec();
                note_parameter(&b, conn, params)?;
            }
            b'C' if matches!(body(frame), b"RESET\0" | b"DISCARD ALL\0") => {
                self.reset_seen = true;
            }
            b'C' if self.mode != PoolMode::Session && body(frame).starts_with(b"LISTEN\0") => {
                self.listened = true;
            }
            _ => {}
        }
        self.s.ready += len;
        Ok(Reply::Next)
    }

    /// A reply that must wait where it is, if this one is. Also notes a
    /// FATAL error (the server is going away and has said why).
    fn waits(&mut self, conn: &mut ServerConn, tag: u8, at: usize, len: usize) -> Option<Reply> {
        let body = body(&conn.buf()[at..at + len]);
        match tag {
            b'E' => {
                let fatal = backend::parse_error_fields(body)
                    .is_ok_and(|f| f.severity == "FATAL" || f.severity == "PANIC");
                if fatal {
                    conn.mark_broken();
                    self.fatal_seen = true;
                }
                (!fatal && self.holds_error()).then_some(Reply::Stop { changed: false })
            }
            // Idle after a RESET: the client's startup values go back
            // before it hears of it (not inside a transaction block, where
            // Causeway's query would be part of the client's transaction).
            b'Z' if self.reset_seen && self.restores && self.owed.len() == 1 => {
                if backend::parse_ready_status(body) != Ok(b'I') {
                    return None;
                }
                let changed = !std::mem::replace(&mut self.restore_pending, true);
                Some(Reply::Stop { changed })
            }
            _ => None,
        }
    }

    /// A ReadyForQuery with `status`: one owed reply is paid; when none is
    /// left, the turn is over.
    fn on_ready(&mut self, status: u8) -> Result<(), End> {
        self.owed.pop();
        self.status = status;
        if !self.owed.is_empty() {
            return Ok(());
        }
        if status == b'T' && self.mode == PoolMode::Statement {
            return Err(End::StatementModeTxn);
        }
        if self.meter.answered(status) {
            self.flush_stats();
        }
        // Session mode keeps its server: nothing to release.
        self.release_seen =
            status == b'I' && (self.mode != PoolMode::Session || self.stop_when_idle);
        if status != b'I' {
            // A read-only transaction goes on where it began.
            self.c.unit_left = None;
        }
        self.clock.answered(status, self.mode);
        Ok(())
    }

    /// CopyInResponse (its header was just read).
    fn copy_started(&mut self) {
        if self.copy.server_started(&mut self.owed) {
            self.prep.copy_started();
        }
    }
}

/// A ParameterStatus from the server: the client now believes this value,
/// and so does the server; keep them in step.
pub(super) fn note_parameter(
    b: &[u8],
    conn: &mut ServerConn,
    params: &mut ParamSet,
) -> Result<(), End> {
    if let Ok((k, v)) = backend::parse_parameter_status(b) {
        if params.contains(k) {
            params.set(k, v, true);
        }
    }
    conn.note_parameter(b)
        .map_err(|_| End::ServerProtocol(ProtocolError::Malformed("ParameterStatus")))?;
    conn.set_synced_fp(params.fingerprint());
    Ok(())
}

/// With prepared statements tracked: also the replies that end a request.
fn server_interest_tracked(tag: u8) -> Interest {
    match tag {
        b'G' => Interest::Header,
        b'Z' | b'S' | b'E' | b'1' | b'2' | b'3' | b'T' | b'n' | b'C' | b'I' | b's' => {
            Interest::Whole
        }
        _ => Interest::Pass,
    }
}

fn server_interest(tag: u8) -> Interest {
    match tag {
        b'G' => Interest::Header,
        b'Z' | b'S' | b'E' | b'C' => Interest::Whole,
        _ => Interest::Pass,
    }
}

/// Removes `n` bytes at `at` (a reply to an injected request).
fn cut(buf: &mut BytesMut, at: usize, n: usize) {
    if at == 0 {
        buf.advance(n);
    } else {
        buf.copy_within(at + n.., at);
        let len = buf.len() - n;
        buf.truncate(len);
    }
}
