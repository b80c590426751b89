//! The retry hold: a read sent to a replica that may still be run
//! elsewhere. Its request bytes stay at the front of the client buffer
//! (kept, see client_side.rs) and the server's reply is held, not
//! forwarded, until the first row, command completion or a non-retryable
//! error commits it. A retryable error before that ends the unit for a
//! re-run: nothing of it reached the client.

use bytes::Buf;
use causeway_pool::{ParamSet, ServerConn};
use causeway_protocol::scan::{body, Interest, Step};
use causeway_protocol::{backend, frame_header};

use super::end::retry_cause;
use super::server_side::note_parameter;
use super::{End, Flow, RetryCause};

/// A reply is held until complete or this large.
const HOLD_LIMIT: usize = 64 * 1024;

#[derive(Default)]
pub struct Hold {
    active: bool,
    /// Server bytes held at the front of its buffer.
    held: usize,
    /// A retryable error was seen: the rest of the reply is dropped.
    retry: Option<RetryCause>,
}

impl Hold {
    pub fn new(active: bool) -> Self {
        Hold {
            active,
            ..Hold::default()
        }
    }

    /// Request bytes are kept and the reply held.
    pub fn active(&self) -> bool {
        self.active
    }

    /// A retryable error came: the unit will be re-run.
    pub fn failed(&self) -> bool {
        self.retry.is_some()
    }

    /// What a lost server connection means for a held read: a re-run.
    pub fn lost(&self) -> Option<RetryCause> {
        self.active
            .then(|| self.retry.unwrap_or(RetryCause::Failure))
    }
}

impl Flow {
    /// Collects the held reply until it is complete (ReadyForQuery),
    /// larger than [`HOLD_LIMIT`], or a non-retryable error; then it is
    /// committed and flows to the client as usual. True: committed or
    /// failed (the flow has more to do).
    pub(super) fn scan_held(
        &mut self,
        conn: &mut ServerConn,
        params: &mut ParamSet,
    ) -> Result<bool, End> {
        debug_assert_eq!(self.s.ready, 0);
        loop {
            let pos = self.hold.held;
            let Some(header) = frame_header(&conn.buf()[pos..], usize::MAX) else {
                return Ok(false);
            };
            let (tag, total) = header.map_err(End::ServerProtocol)?;
            if tag == b'Z' || pos + total > HOLD_LIMIT {
                break;
            }
            let Some(frame) = conn.buf().get(pos..pos + total) else {
                return Ok(false);
            };
            match tag {
                b'E' => {
                    let (cause, fatal) = match backend::parse_error_fields(body(frame)) {
                        Ok(f) => (
                            retry_cause(f.code),
                            f.severity == "FATAL" || f.severity == "PANIC",
                        ),
                        Err(_) => (None, false),
                    };
                    let Some(cause) = cause else { break };
                    if fatal {
                        conn.mark_broken();
                    }
                    conn.buf_mut().advance(pos + total);
                    self.hold.held = 0;
                    self.hold.retry = Some(cause);
                    self.scan_discard(conn)?;
                    return Ok(true);
                }
                b'S' => {
                    let b = body(frame).to_vec();
                    note_parameter(&b, conn, params)?;
                }
                _ => {}
            }
            self.hold.held += total;
        }
        self.commit_hold();
        Ok(true)
    }

    /// From here the reply flows to the client as usual.
    fn commit_hold(&mut self) {
        self.hold.active = false;
        let held = std::mem::take(&mut self.hold.held);
        // With prepared statements tracked the held replies go through
        // the bookkeeping like any others: scanned again from the start.
        if !self.prep.on {
            self.s.ready = held;
        }
    }

    /// After a retryable error: drops the rest of the reply up to the
    /// ReadyForQuery that ends the unit, then ends the flow for a re-run.
    pub(super) fn scan_discard(&mut self, conn: &mut ServerConn) -> Result<bool, End> {
        let cause = self.hold.retry.unwrap_or(RetryCause::Failure);
        let mut progress = false;
        loop {
            let step = self
                .s
                .scan
                .step(conn.buf(), usize::MAX >> 1, |t| {
                    if t == b'Z' {
                        Interest::Whole
                    } else {
                        Interest::Pass
                    }
                })
                .map_err(End::ServerProtocol)?;
            let n = match step {
                Step::Pass(n) => n,
                Step::Whole { frame, .. } => {
                    let status =
                        backend::parse_ready_status(body(frame)).map_err(End::ServerProtocol)?;
                    let n = frame.len();
                    conn.buf_mut().advance(n);
                    self.owed.pop();
                    if self.owed.is_empty() {
                        return Err(End::Retry {
                            cause,
                            reusable: status == b'I' && !conn.is_broken() && conn.buf().is_empty(),
                        });
                    }
                    progress = true;
                    continue;
                }
                Step::Header { .. } | Step::NeedMore => return Ok(progress),
            };
            conn.buf_mut().advance(n);
            progress = true;
        }
    }
}
