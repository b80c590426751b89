//! The Active state's engine: bytes flow both ways between a client and its
//! server at once (so notices, NOTIFY and pipelined replies are never stuck
//! behind a read of the other side), forwarded as they arrive without
//! decoding. Only what pooling needs is looked at: the requests that owe a
//! ReadyForQuery (Query, Sync, FunctionCall), ReadyForQuery's status,
//! ParameterStatus, ErrorResponse, CommandComplete (for LISTEN) and
//! Terminate.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::sync::Arc;

use causeway_config::PoolMode;
use causeway_metrics::DbStats;
use causeway_pool::{ParamSet, ServerConn};
use causeway_protocol::scan::{body, is_frontend_tag, Interest, Scanner, Step};
use causeway_protocol::{backend, sqlstate, ProtocolError, HEADER_LEN};
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use super::client::Client;
use super::prepared::{ClientAction, Prep, ServerAction, MAX_HELD};
use super::SHUTDOWN_MESSAGE;

/// Stop reading a side while this many of its bytes wait to be written.
const HIGH_WATER: usize = 256 * 1024;
/// A read on a replica is held (not forwarded) until its reply is complete
/// or this large, so that it can be re-run elsewhere if the replica fails.
const HOLD_LIMIT: usize = 64 * 1024;
/// Keep at least this much room to read into.
const READ_ROOM: usize = 8 * 1024;

#[derive(Debug)]
pub enum End {
    /// The transaction is over and the pool mode lets the server go.
    Release,
    /// Terminate received or the client socket closed.
    ClientGone,
    /// The server socket failed. `clean`: the client is at a message
    /// boundary, so an ErrorResponse can still be sent.
    ServerGone {
        clean: bool,
    },
    ClientProtocol(ProtocolError),
    ServerProtocol(ProtocolError),
    /// A configured timeout fired: (SQLSTATE, message).
    Timeout(&'static str, &'static str),
    /// statement pool mode: the client opened a transaction block.
    StatementModeTxn,
    /// A replica failed a held read before anything but its description
    /// was produced; the unit is still at the front of the client buffer.
    /// `reusable`: the server finished the unit cleanly (back to the pool).
    Retry {
        cause: RetryCause,
        reusable: bool,
    },
    /// RESET / DISCARD ALL ran and the server is idle: its ReadyForQuery
    /// waits at the front of the server buffer while the session puts the
    /// client's startup values back (see reset.rs); then the flow goes on.
    Restore,
    /// KILL or shutdown while attached: (SQLSTATE, message, log reason).
    Interrupted(&'static str, &'static str, &'static str),
}

/// Why a held read is run again elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// 25006: the replica refused it as a write. Retried on the primary.
    ReadOnly,
    /// 40001 / 40P01: cancelled by a recovery conflict.
    Conflict,
    /// Shut down (57P01-57P03) or the connection was lost.
    Failure,
}

/// The retry an ErrorResponse from a replica calls for, if any.
fn retry_cause(code: &str) -> Option<RetryCause> {
    match code {
        "25006" => Some(RetryCause::ReadOnly),
        "40001" | "40P01" => Some(RetryCause::Conflict),
        "57P01" | "57P02" | "57P03" => Some(RetryCause::Failure),
        _ => None,
    }
}

/// Timeouts that apply while a server is attached (None = off).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    pub query: Option<Duration>,
    pub idle_transaction: Option<Duration>,
    /// Session mode: the client attached but idle.
    pub client_idle: Option<Duration>,
}

/// Per-attachment state of the flow.
pub struct Flow {
    mode: PoolMode,
    max_packet: usize,
    timeouts: Timeouts,
    /// ReadyForQuery messages the server still owes.
    pub expected: u32,
    /// Kind of each owed ReadyForQuery, oldest in bit 0: 1 = Query or
    /// FunctionCall, 0 = Sync (the first 128).
    kinds: u128,
    /// The server is in COPY FROM STDIN (CopyInResponse seen, the client's
    /// CopyDone/CopyFail not yet).
    copy_in: bool,
    /// Owed requests (same order as `kinds`) whose COPY the client ended
    /// (CopyDone/CopyFail) before the server's CopyInResponse was seen:
    /// asyncpg sends COPY, its data and CopyDone without waiting. Bit
    /// `expected` is the extended-protocol unit still being sent.
    early_end: u128,
    /// Transaction/statement mode: the server ran LISTEN (CommandComplete
    /// "LISTEN"). Its notifications could only reach whichever client has
    /// it next, so the connection is closed instead of pooled.
    pub listened: bool,
    /// Last transaction status seen ('I', 'T', 'E').
    pub status: u8,
    c_scan: Scanner,
    /// Front bytes of the client buffer that are checked and may go out.
    c_ready: usize,
    s_scan: Scanner,
    s_ready: usize,
    /// A ReadyForQuery ended the work; new client messages wait for the
    /// next routing decision.
    release_seen: bool,
    terminate: bool,
    /// Shutdown (SIGINT, or SIGTERM with so_reuseport in transaction
    /// mode): end the attachment at the next idle ReadyForQuery, also in
    /// session mode.
    pub stop_when_idle: bool,
    /// With `stop_when_idle`: the client's FATAL 57P01 went out right
    /// behind that ReadyForQuery (see [`Flow::say_goodbye`]); the session
    /// ends once it is written.
    pub goodbye: bool,
    /// Replica units: client bytes of the unit still to be scanned; at 0
    /// nothing more is forwarded until the server answers (the next unit
    /// is routed afresh). None = no limit.
    unit_left: Option<usize>,
    /// A read that may still be retried: its request bytes stay at the
    /// front of the client buffer (`c_sent` of them written) and the
    /// server's reply is held (`s_held` bytes) until the first row, command
    /// completion or a non-retryable error commits it.
    hold: bool,
    c_sent: usize,
    s_held: usize,
    /// A retryable error was seen: the rest of the reply is dropped.
    retry: Option<RetryCause>,
    deadline: Option<Instant>,
    stats: Arc<DbStats>,
    /// Counters gathered locally and flushed to `stats` once per
    /// transaction, so the shared atomics are touched rarely.
    local: Local,
    /// Prepared statements (renaming, replies owed); lent by the session.
    pub prep: Box<Prep>,
    /// Read the client until this many bytes are buffered (a Parse that
    /// must be seen whole).
    c_need: usize,
    /// The client sent extended-protocol requests and no Sync or Flush
    /// after them yet: an error for them is held until it does (see
    /// [`Flow::holds_error`]).
    unflushed: bool,
    /// The client has startup values for RESET to restore.
    pub restores: bool,
    /// A RESET or DISCARD ALL completed since the last restore.
    reset_seen: bool,
    /// The idle ReadyForQuery after it is held for [`End::Restore`].
    restore_pending: bool,
    /// The server sent a FATAL error (it is going away and has said why).
    pub fatal_seen: bool,
    /// Closes idle pooled connections to a database (see database_ddl.rs).
    pub close_idle: Option<CloseIdle>,
    /// A client message Causeway refuses (08P01): ends the flow.
    bad: Option<&'static str>,
    /// Transaction/statement mode: what the client's units did that may
    /// leave session state (see state.rs).
    pub hints: super::state::Hints,
}

/// Closes the idle pooled connections to a database (by its name on the
/// servers).
pub type CloseIdle = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct Local {
    bytes_in: u64,
    bytes_out: u64,
    queries: u64,
    query_time: Duration,
    query_start: Option<Instant>,
    xact_start: Option<Instant>,
}

impl Flow {
    pub fn new(
        mode: PoolMode,
        max_packet: usize,
        timeouts: Timeouts,
        stats: Arc<DbStats>,
        prep: Box<Prep>,
    ) -> Self {
        Flow {
            mode,
            max_packet,
            timeouts,
            expected: 0,
            kinds: 0,
            copy_in: false,
            early_end: 0,
            listened: false,
            status: b'I',
            c_scan: Scanner::new(),
            c_ready: 0,
            s_scan: Scanner::new(),
            s_ready: 0,
            release_seen: false,
            terminate: false,
            stop_when_idle: false,
            goodbye: false,
            unit_left: None,
            hold: false,
            c_sent: 0,
            s_held: 0,
            retry: None,
            deadline: None,
            stats,
            local: Local::default(),
            prep,
            c_need: 0,
            unflushed: false,
            restores: false,
            reset_seen: false,
            restore_pending: false,
            fatal_seen: false,
            close_idle: None,
            bad: None,
            hints: Default::default(),
        }
    }

    /// The session keeps the server after an idle ReadyForQuery (pinned):
    /// the client's next unit goes to it.
    pub fn stay(&mut self) {
        self.release_seen = false;
    }

    /// The session restored the client's startup values: the held
    /// ReadyForQuery (now behind their ParameterStatus) goes on.
    pub fn restored(&mut self) {
        self.reset_seen = false;
        self.restore_pending = false;
    }

    /// Replica work: forward only the `unit` bytes at the front of the
    /// client buffer; `hold` keeps them (and the reply) until committed, so
    /// the unit can be re-run elsewhere.
    pub fn limit_to_unit(&mut self, unit: usize, hold: bool) {
        self.unit_left = Some(unit);
        self.hold = hold;
    }

    /// Adds the local counters to the database's totals.
    pub fn flush_stats(&mut self) {
        let l = &mut self.local;
        let s = &self.stats;
        DbStats::add(&s.bytes_received, std::mem::take(&mut l.bytes_in));
        DbStats::add(&s.bytes_sent, std::mem::take(&mut l.bytes_out));
        DbStats::add(&s.queries, std::mem::take(&mut l.queries));
        DbStats::add_time(&s.query_time_us, std::mem::take(&mut l.query_time));
        let c = std::mem::take(&mut self.prep.counts);
        if c.client_parses | c.server_parses | c.binds != 0 {
            DbStats::add(&s.client_parses, c.client_parses);
            DbStats::add(&s.server_parses, c.server_parses);
            DbStats::add(&s.binds, c.binds);
        }
    }

    /// The server owes nothing and no transaction is open.
    pub fn server_idle(&self) -> bool {
        self.expected == 0
            && self.status == b'I'
            && !self.copy_in
            && self.c_ready == 0
            && self.c_scan.at_boundary()
            && self.prep.out.is_empty()
            && self.prep.queue.is_empty()
    }

    /// CopyInResponse: the server is in COPY FROM STDIN and will ignore
    /// every Sync until the client's CopyDone/CopyFail. Those already sent
    /// after the Execute that started it are owed nothing.
    fn copy_started(&mut self) {
        if self.early_end & 1 == 1 {
            // The client has already ended this COPY: what it sent after
            // the CopyDone/CopyFail is read by the server as usual.
            self.early_end &= !1;
            return;
        }
        self.copy_in = true;
        self.early_end = 0;
        self.prep.copy_started();
        if self.expected > 0 && self.kinds & 1 == 1 {
            // Started by a simple Query: only that Query is answered.
            self.expected = 1;
            self.kinds = 1;
        } else {
            self.expected = 0;
            self.kinds = 0;
        }
    }

    /// An ErrorResponse for extended-protocol requests the client has not
    /// yet followed by a Sync or Flush waits until it does. PostgreSQL
    /// flushes errors at once, but the protocol promises output only at
    /// Sync or Flush, and an error arriving while the client is still
    /// sending its pipeline is what makes psycopg's pipeline mode raise
    /// `PipelineAborted` from `rollback()` after an error on `commit()`
    /// (it happens directly against PostgreSQL too). Held, the error comes
    /// with the ReadyForQuery of the Sync, as psycopg expects. Not during
    /// COPY FROM STDIN (the client must learn of a failed COPY while it is
    /// still sending data).
    fn holds_error(&self) -> bool {
        self.expected == 0 && self.unflushed && !self.copy_in
    }

    /// A Query or Parse whose header was just read (`avail` starts with
    /// it): if its statement needs a database nobody is connected to (DROP
    /// DATABASE, ...), the idle pooled connections to that database are
    /// closed before it is forwarded. False: more of it must be read first.
    fn database_ddl_checked(&self, avail: &[u8], tag: u8, len: usize) -> bool {
        let Some(close) = &self.close_idle else {
            return true;
        };
        let body = &avail[HEADER_LEN.min(avail.len())..avail.len().min(len + 1)];
        // Parse: the statement name comes first.
        let sql_start = match tag {
            b'P' => match body.iter().position(|b| *b == 0) {
                Some(n) => &body[n + 1..],
                // Name incomplete: read on (a name that long is refused later).
                None => return avail.len() > len || avail.len() >= MAX_HELD,
            },
            _ => body,
        };
        if !sql_start.is_empty() && !super::database_ddl::candidate(sql_start) {
            return true;
        }
        // A long statement is judged by its first MAX_HELD bytes (the
        // database name comes within its first words).
        let Some(frame) = avail.get(..(len + 1).min(MAX_HELD)) else {
            return false;
        };
        let body = &frame[HEADER_LEN..];
        let sql = match tag {
            b'P' => body.iter().position(|b| *b == 0).map(|n| &body[n + 1..]),
            _ => Some(body),
        };
        if let Some(db) = sql
            .map(|q| q.split(|b| *b == 0).next().unwrap_or(q))
            .and_then(utf8_prefix)
            .and_then(super::database_ddl::target)
        {
            close(&db);
        }
        true
    }

    /// Bytes from the server that are checked and not yet sent to the client.
    pub fn server_ready(&self) -> usize {
        self.s_ready
    }

    /// Runs until something needs the session's attention.
    pub async fn run(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
        timer: &mut Pin<Box<Sleep>>,
    ) -> End {
        poll_fn(|cx| self.poll(cx, client, conn, params, timer.as_mut())).await
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
        mut timer: Pin<&mut Sleep>,
    ) -> Poll<End> {
        loop {
            let mut progress = false;

            if self.s_ready > 0 {
                match Pin::new(&mut client.stream).poll_write(cx, &conn.buf[..self.s_ready]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(End::ClientGone)
                    }
                    Poll::Ready(Ok(n)) => {
                        conn.buf.advance(n);
                        self.s_ready -= n;
                        self.local.bytes_out += n as u64;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            if self.c_ready > self.c_sent {
                match Pin::new(&mut conn.stream)
                    .poll_write(cx, &client.buf[self.c_sent..self.c_ready])
                {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(self.server_gone())
                    }
                    Poll::Ready(Ok(n)) => {
                        if self.hold {
                            self.c_sent += n;
                        } else {
                            client.buf.advance(n);
                            self.c_ready -= n;
                        }
                        self.local.bytes_in += n as u64;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            if !self.prep.out.is_empty() && self.c_ready == self.c_sent {
                // Rewritten requests (and the client bytes queued behind them).
                match Pin::new(&mut conn.stream).poll_write(cx, &self.prep.out) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(self.server_gone())
                    }
                    Poll::Ready(Ok(n)) => {
                        self.prep.out.advance(n);
                        self.local.bytes_in += n as u64;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            // TLS may hold written bytes until flushed (a no-op on plain
            // sockets); a pending flush is woken by socket writability.
            let client_flushed = match Pin::new(&mut client.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(_)) => return Poll::Ready(End::ClientGone),
                Poll::Pending => false,
            };
            if let Poll::Ready(Err(_)) = Pin::new(&mut conn.stream).poll_flush(cx) {
                return Poll::Ready(self.server_gone());
            }
            if self.release_seen
                && self.s_ready == 0
                && client_flushed
                && self.server_idle()
                && (self.mode != PoolMode::Session || self.stop_when_idle)
            {
                return Poll::Ready(End::Release);
            }
            if self.terminate && self.c_ready == 0 {
                return Poll::Ready(End::ClientGone);
            }
            if self.restore_pending && self.s_ready == 0 {
                return Poll::Ready(End::Restore);
            }

            let before = (
                self.c_ready,
                self.s_ready,
                self.terminate,
                self.release_seen,
                (self.prep.out.len(), conn.buf.len(), client.buf.len()),
            );
            if let Err(end) = self.scan_server(conn, params) {
                return Poll::Ready(end);
            }
            if !self.hold && self.c_sent > 0 {
                // Committed: the held request bytes are done with.
                client.buf.advance(self.c_sent);
                self.c_ready -= self.c_sent;
                self.c_sent = 0;
            }
            if let Err(e) = self.scan_client(client, conn) {
                return Poll::Ready(End::ClientProtocol(e));
            }
            if self.release_seen && self.stop_when_idle && !self.goodbye && client.buf.is_empty() {
                self.say_goodbye(conn);
            }
            // Newly checked bytes (or a Terminate/ReadyForQuery seen) need
            // another turn to be written out.
            progress |= before
                != (
                    self.c_ready,
                    self.s_ready,
                    self.terminate,
                    self.release_seen,
                    (self.prep.out.len(), conn.buf.len(), client.buf.len()),
                );

            if !self.release_seen && self.s_ready < HIGH_WATER {
                reserve(&mut conn.buf);
                match poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(self.server_gone())
                    }
                    Poll::Ready(Ok(_)) => progress = true,
                    Poll::Pending => {}
                }
            }
            if !self.terminate && client.buf.len() < HIGH_WATER.max(self.c_need) {
                reserve(&mut client.buf);
                match poll_read_buf(Pin::new(&mut client.stream), cx, &mut client.buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        return Poll::Ready(End::ClientGone)
                    }
                    Poll::Ready(Ok(_)) => progress = true,
                    Poll::Pending => {}
                }
            }

            if !progress {
                if let Some(d) = self.deadline {
                    if timer.as_mut().deadline() != d {
                        timer.as_mut().reset(d);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(self.timeout_end());
                    }
                }
                return Poll::Pending;
            }
        }
    }

    /// Draining: the transaction is over and the client has sent nothing
    /// more, so it is closed here. The FATAL goes into the same write as
    /// the ReadyForQuery: a client reads both together and knows the
    /// connection is gone before it sends its next query, instead of
    /// sending it into a socket about to close. (Bytes the client sends
    /// after this are never run.)
    fn say_goodbye(&mut self, conn: &mut ServerConn) {
        let mut msg = BytesMut::with_capacity(64);
        backend::write_error(&mut msg, true, sqlstate::ADMIN_SHUTDOWN, SHUTDOWN_MESSAGE);
        let tail = conn.buf.split_off(self.s_ready);
        conn.buf.extend_from_slice(&msg);
        conn.buf.unsplit(tail);
        self.s_ready += msg.len();
        self.goodbye = true;
    }

    /// The server socket failed: a held read is retried, else the client
    /// is told (if at a message boundary).
    fn server_gone(&self) -> End {
        if self.hold {
            End::Retry {
                cause: self.retry.unwrap_or(RetryCause::Failure),
                reusable: false,
            }
        } else {
            End::ServerGone {
                clean: self.s_scan.at_boundary(),
            }
        }
    }

    fn timeout_end(&self) -> End {
        if self.expected > 0 {
            End::Timeout("57014", "query_timeout")
        } else if self.status != b'I' {
            End::Timeout("25P03", "idle_transaction_timeout")
        } else {
            End::Timeout("57P05", "client_idle_timeout")
        }
    }

    fn scan_client(
        &mut self,
        client: &mut Client,
        conn: &mut ServerConn,
    ) -> Result<(), ProtocolError> {
        // A held read stays in the client buffer (rewritten copies go to
        // the server); a retry rolls the bookkeeping back and rescans it.
        let track = self.prep.on;
        let interest = if track {
            client_interest_tracked
        } else {
            client_interest
        };
        while !self.terminate {
            if self.release_seen && self.c_scan.at_boundary() && self.c_ready == 0 {
                // The next message starts new work: it is routed afresh.
                return Ok(());
            }
            if self.unit_left == Some(0) {
                // Replica: the unit is out; what follows waits for its answer.
                return Ok(());
            }
            if self.prep.out.len() >= HIGH_WATER {
                return Ok(());
            }
            let new_message = self.c_scan.at_boundary();
            let step = self
                .c_scan
                .step(&client.buf[self.c_ready..], self.max_packet, interest)?;
            if let Step::Header {
                tag: tag @ (b'Q' | b'P'),
                len,
            } = step
            {
                if !self.database_ddl_checked(&client.buf[self.c_ready..], tag, len) {
                    self.c_scan.unread_header();
                    self.c_need = self.c_ready + (len + 1).min(MAX_HELD);
                    return Ok(());
                }
            }
            match step {
                Step::Pass(n) => {
                    // A message nobody looks at (Bind, Execute, ... when
                    // untracked; CopyData) starts: a request awaiting Sync.
                    self.unflushed |= new_message && !self.copy_in;
                    if self.prep.out.is_empty() {
                        self.c_ready += n;
                    } else {
                        // Behind rewritten bytes: queued after them.
                        self.divert(client, n);
                    }
                    self.release_seen = false;
                    if let Some(left) = &mut self.unit_left {
                        *left = left.saturating_sub(n);
                    }
                }
                Step::Header { tag: b'X', .. } => {
                    // Never forwarded: the server stays at a message
                    // boundary and goes back to the pool.
                    self.c_scan.unread_header();
                    self.terminate = true;
                }
                Step::Header {
                    tag: b'c' | b'f', ..
                } => {
                    // CopyDone / CopyFail: the server reads Syncs again.
                    if self.copy_in {
                        self.copy_in = false;
                    } else {
                        // Before the CopyInResponse: it ends the COPY of the
                        // last simple Query sent, or of the extended unit
                        // being sent (if no COPY started, the server ignores it).
                        let last = self.expected.checked_sub(1);
                        let idx = match last {
                            Some(l) if l < 128 && self.kinds & (1 << l) != 0 => l,
                            _ => self.expected,
                        };
                        if idx < 128 {
                            self.early_end |= 1 << idx;
                        }
                    }
                }
                // The server ignores Syncs during COPY FROM STDIN.
                Step::Header { tag: b'S', .. } if self.copy_in => {}
                Step::Header { tag: b'H', .. } => self.unflushed = false,
                // Untracked Parse (looked at only for database DDL).
                Step::Header { tag: b'P', len } if !track => {
                    self.unflushed = true;
                    self.note_text(&client.buf[self.c_ready..], len + 1);
                }
                Step::Header {
                    tag: tag @ (b'P' | b'B' | b'D' | b'C' | b'E'),
                    len,
                } => {
                    let total = len + 1;
                    self.unflushed = true;
                    let action = self.prep.client(
                        tag,
                        &client.buf[self.c_ready..],
                        total,
                        &mut conn.statements,
                    );
                    if tag == b'P' && action != ClientAction::NeedMore {
                        self.note_text(&client.buf[self.c_ready..], total);
                    }
                    if !self.apply(client, action, total) {
                        return self
                            .bad
                            .map_or(Ok(()), |w| Err(ProtocolError::Malformed(w)));
                    }
                }
                Step::Header { tag: b'Q', len } if track => {
                    // SQL PREPARE/EXECUTE/DEALLOCATE (sql_prepared.rs).
                    let total = len + 1;
                    let action =
                        self.prep
                            .query(&client.buf[self.c_ready..], total, &mut conn.statements);
                    if action != ClientAction::NeedMore {
                        self.note_text(&client.buf[self.c_ready..], total);
                    }
                    if !self.apply(client, action, total) {
                        return Ok(());
                    }
                    self.owes_ready(b'Q', track);
                }
                Step::Header { tag, len } => {
                    if tag == b'Q' {
                        self.note_text(&client.buf[self.c_ready..], len + 1);
                    }
                    self.owes_ready(tag, track)
                }
                Step::Whole { .. } | Step::NeedMore => return Ok(()),
            }
        }
        Ok(())
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
    fn owes_ready(&mut self, tag: u8, track: bool) {
        self.unflushed = false;
        if track {
            self.prep.marker(tag);
        }
        if self.expected == 0 {
            let now = Instant::now();
            self.deadline = self.timeouts.query.map(|t| now + t);
            self.local.query_start = Some(now);
            self.local.xact_start.get_or_insert(now);
        }
        self.local.queries += 1;
        if self.expected < 128 && tag != b'S' {
            self.kinds |= 1 << self.expected;
        }
        self.expected += 1;
    }

    /// Carries out what the prepared-statement bookkeeping decided for the
    /// client message at `c_ready` (`total` bytes). False: more of it must
    /// be read first (the scan stops).
    fn apply(&mut self, client: &mut Client, action: ClientAction, total: usize) -> bool {
        match action {
            ClientAction::Pass => self.c_need = 0,
            ClientAction::NeedMore => {
                // Never more than MAX_HELD of one message is held.
                self.c_scan.unread_header();
                self.c_need = self.c_ready + total.min(MAX_HELD);
                return false;
            }
            ClientAction::Malformed(what) => {
                self.c_need = 0;
                self.bad = Some(what);
                return false;
            }
            ClientAction::Took(n) => {
                self.c_need = 0;
                self.c_scan.took(n);
                // Pending client bytes go first, then the rewrite.
                let pending = self.c_ready - self.c_sent;
                if pending > 0 {
                    self.c_ready = self.c_sent;
                    self.divert(client, pending);
                }
                let Prep { out, stage, .. } = &mut *self.prep;
                out.extend_from_slice(stage);
                stage.clear();
                self.consume(client, n);
                self.release_seen = false;
                if let Some(left) = &mut self.unit_left {
                    *left = left.saturating_sub(n);
                }
            }
        }
        true
    }

    /// Moves `n` client bytes at `c_ready` into the rewritten stream.
    fn divert(&mut self, client: &mut Client, n: usize) {
        let at = self.c_ready;
        self.prep.out.extend_from_slice(&client.buf[at..at + n]);
        self.consume(client, n);
    }

    /// `n` client bytes at `c_ready` are dealt with (copied or replaced):
    /// dropped, or, for a held unit, counted as sent.
    fn consume(&mut self, client: &mut Client, n: usize) {
        if self.hold {
            self.c_ready += n;
            self.c_sent += n;
        } else {
            debug_assert_eq!(self.c_ready, 0);
            client.buf.advance(n);
        }
    }

    fn scan_server(&mut self, conn: &mut ServerConn, params: &mut ParamSet) -> Result<(), End> {
        if self.hold {
            if self.retry.is_some() {
                return self.scan_discard(conn);
            }
            self.scan_held(conn, params)?;
            if self.hold {
                return Ok(());
            }
        }
        let interest = if self.prep.on {
            server_interest_tracked
        } else {
            server_interest
        };
        while !self.release_seen {
            let step = self
                .s_scan
                .step(&conn.buf[self.s_ready..], usize::MAX >> 1, interest)
                .map_err(End::ServerProtocol)?;
            match step {
                Step::Pass(n) => self.s_ready += n,
                Step::Whole { tag, frame } => {
                    let mut len = frame.len();
                    if tag == b'E' {
                        let fatal = backend::parse_error_fields(body(frame))
                            .is_ok_and(|f| f.severity == "FATAL" || f.severity == "PANIC");
                        conn.broken |= fatal;
                        self.fatal_seen |= fatal;
                        if !fatal && self.holds_error() {
                            return Ok(());
                        }
                    }
                    if tag == b'Z' && self.reset_seen && self.restores && self.expected == 1 {
                        // Idle after a RESET: the client's startup values go
                        // back before it hears of it (not inside a
                        // transaction block, where Causeway's query would
                        // be part of the client's transaction).
                        if backend::parse_ready_status(body(frame)) == Ok(b'I') {
                            self.restore_pending = true;
                            return Ok(());
                        }
                    }
                    if self.prep.on {
                        let at = self.s_ready;
                        match self.prep.server(tag, body(frame), &mut conn.statements) {
                            ServerAction::Forward => {}
                            ServerAction::Swallow => {
                                cut(&mut conn.buf, at, len);
                                continue;
                            }
                            ServerAction::Retag(t) => conn.buf[at] = t,
                            ServerAction::Replace => {
                                let tail = conn.buf.split_off(at + len);
                                conn.buf.truncate(at);
                                conn.buf.extend_from_slice(&self.prep.stage);
                                conn.buf.unsplit(tail);
                                len = self.prep.stage.len();
                                self.prep.stage.clear();
                            }
                        }
                    }
                    let frame = &conn.buf[self.s_ready..self.s_ready + len];
                    if tag == b'C' && self.mode != PoolMode::Session {
                        self.hints.tag(body(frame));
                    }
                    match tag {
                        b'Z' => {
                            let status = backend::parse_ready_status(body(frame))
                                .map_err(End::ServerProtocol)?;
                            self.expected = self.expected.saturating_sub(1);
                            self.kinds >>= 1;
                            self.early_end >>= 1;
                            self.status = status;
                            if self.expected == 0 {
                                if status == b'T' && self.mode == PoolMode::Statement {
                                    return Err(End::StatementModeTxn);
                                }
                                let now = Instant::now();
                                if let Some(t) = self.local.query_start.take() {
                                    self.local.query_time += now - t;
                                    self.stats.query_hist.observe(now - t);
                                }
                                if status == b'I' {
                                    if let Some(t) = self.local.xact_start.take() {
                                        self.stats.record_xact(now - t);
                                    }
                                    self.flush_stats();
                                }
                                // Session mode keeps its server: nothing to release.
                                self.release_seen = status == b'I'
                                    && (self.mode != PoolMode::Session || self.stop_when_idle);
                                if status != b'I' {
                                    // A read-only transaction goes on where it began.
                                    self.unit_left = None;
                                }
                                self.deadline = match status {
                                    b'I' if self.mode == PoolMode::Session => {
                                        self.timeouts.client_idle
                                    }
                                    b'I' => None,
                                    _ => self.timeouts.idle_transaction,
                                }
                                .map(|t| Instant::now() + t);
                            }
                        }
                        b'S' => {
                            // Rare (SET of a reported parameter): copying is fine.
                            let b = body(frame).to_vec();
                            note_parameter(&b, conn, params)?;
                        }
                        b'C' if matches!(body(frame), b"RESET\0" | b"DISCARD ALL\0") => {
                            self.reset_seen = true;
                        }
                        b'C' if self.mode != PoolMode::Session
                            && body(frame).starts_with(b"LISTEN\0") =>
                        {
                            self.listened = true;
                        }
                        _ => {}
                    }
                    self.s_ready += len;
                }
                Step::Header { tag: b'G', .. } => self.copy_started(),
                Step::Header { .. } | Step::NeedMore => return Ok(()),
            }
        }
        Ok(())
    }
}

impl Flow {
    /// Hold mode: collects the reply without forwarding it, until it is
    /// complete (ReadyForQuery), larger than [`HOLD_LIMIT`], or a
    /// non-retryable error; then it is committed and flows to the client as
    /// usual. A retryable error before that ends the unit for a re-run.
    fn scan_held(&mut self, conn: &mut ServerConn, params: &mut ParamSet) -> Result<(), End> {
        debug_assert_eq!(self.s_ready, 0);
        loop {
            let pos = self.s_held;
            let Some(&[tag, a, b, c, d]) = conn.buf.get(pos..pos + HEADER_LEN) else {
                return Ok(());
            };
            let len = i32::from_be_bytes([a, b, c, d]);
            if len < 4 {
                return Err(End::ServerProtocol(ProtocolError::BadLength {
                    tag: tag as char,
                    len: len.into(),
                }));
            }
            let total = len as usize + 1;
            if tag == b'Z' || pos + total > HOLD_LIMIT {
                break;
            }
            let Some(frame) = conn.buf.get(pos..pos + total) else {
                return Ok(());
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
                    conn.broken |= fatal;
                    conn.buf.advance(pos + total);
                    self.s_held = 0;
                    self.retry = Some(cause);
                    return self.scan_discard(conn);
                }
                b'S' => {
                    let b = body(frame).to_vec();
                    note_parameter(&b, conn, params)?;
                }
                _ => {}
            }
            self.s_held += total;
        }
        // Committed: from here the reply flows to the client as usual.
        self.hold = false;
        if self.prep.on {
            // The held replies go through the prepared-statement
            // bookkeeping like any others: scanned again from the start.
            self.s_held = 0;
        } else {
            self.s_ready = std::mem::take(&mut self.s_held);
        }
        Ok(())
    }

    /// After a retryable error: drop the rest of the reply up to the
    /// ReadyForQuery that ends the unit.
    fn scan_discard(&mut self, conn: &mut ServerConn) -> Result<(), End> {
        let cause = self.retry.unwrap_or(RetryCause::Failure);
        loop {
            let step = self
                .s_scan
                .step(&conn.buf[..], usize::MAX >> 1, |t| {
                    if t == b'Z' {
                        Interest::Whole
                    } else {
                        Interest::Pass
                    }
                })
                .map_err(End::ServerProtocol)?;
            match step {
                Step::Pass(n) => conn.buf.advance(n),
                Step::Whole { frame, .. } => {
                    let status =
                        backend::parse_ready_status(body(frame)).map_err(End::ServerProtocol)?;
                    let n = frame.len();
                    conn.buf.advance(n);
                    self.expected = self.expected.saturating_sub(1);
                    if self.expected == 0 {
                        return Err(End::Retry {
                            cause,
                            reusable: status == b'I' && !conn.broken && conn.buf.is_empty(),
                        });
                    }
                }
                Step::Header { .. } | Step::NeedMore => return Ok(()),
            }
        }
    }
}

/// The longest valid UTF-8 prefix of `b` (a text cut at a byte count may
/// end inside a character).
fn utf8_prefix(b: &[u8]) -> Option<&str> {
    match std::str::from_utf8(b) {
        Ok(s) => Some(s),
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).ok(),
    }
}

/// A ParameterStatus from the server: the client now believes this value,
/// and so does the server; keep them in step.
fn note_parameter(b: &[u8], conn: &mut ServerConn, params: &mut ParamSet) -> Result<(), End> {
    if let Ok((k, v)) = backend::parse_parameter_status(b) {
        if params.contains(k) {
            params.set(k, v, true);
        }
    }
    conn.note_parameter(b)
        .map_err(|_| End::ServerProtocol(ProtocolError::Malformed("ParameterStatus")))?;
    conn.synced_fp = params.fingerprint();
    Ok(())
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
fn cut(buf: &mut bytes::BytesMut, at: usize, n: usize) {
    if at == 0 {
        buf.advance(n);
    } else {
        buf.copy_within(at + n.., at);
        let len = buf.len() - n;
        buf.truncate(len);
    }
}

fn reserve(buf: &mut bytes::BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(2 * READ_ROOM);
    }
}
