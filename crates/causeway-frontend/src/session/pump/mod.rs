//! The Active state's engine: bytes flow both ways between a client and its
//! server at once (so notices, NOTIFY and pipelined replies are never stuck
//! behind a read of the other side), forwarded as they arrive without
//! decoding. Only what pooling needs is looked at: the requests that owe a
//! ReadyForQuery (Query, Sync, FunctionCall), ReadyForQuery's status,
//! ParameterStatus, ErrorResponse, CommandComplete (for LISTEN) and
//! Terminate.
//!
//! [`Flow`] composes small parts, one job each: the replies owed
//! ([`owed`]), where the client's bytes stand ([`client_side`]), where the
//! server's stand ([`server_side`]), the retry hold ([`hold`]), COPY FROM
//! STDIN ([`copy`]), the timeouts ([`clock`]) and the counters
//! ([`meter`]); [`drive`] is the loop that polls both sockets.

mod client_side;
mod clock;
mod copy;
mod ddl;
mod drive;
mod end;
mod hold;
mod meter;
mod owed;
mod server_side;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use causeway_config::PoolMode;
use causeway_metrics::DbStats;

pub use clock::Timeouts;
pub use ddl::CloseIdle;
pub use end::{End, RetryCause};

use super::prepared::Prep;
use client_side::ClientCursor;
use clock::Clock;
use copy::CopyIn;
use hold::Hold;
use meter::Meter;
use owed::Owed;
use server_side::ServerCursor;

/// Stop reading a side while this many of its bytes wait to be written.
const HIGH_WATER: usize = 256 * 1024;

/// Per-attachment state of the flow.
pub struct Flow {
    mode: PoolMode,
    max_packet: usize,
    owed: Owed,
    copy: CopyIn,
    c: ClientCursor,
    s: ServerCursor,
    hold: Hold,
    clock: Clock,
    meter: Meter,
    /// Last transaction status seen ('I', 'T', 'E').
    status: u8,
    /// Sides written since their last flush (drive.rs; both at first:
    /// what came before is not known to be flushed).
    unflushed: u8,
    /// A ReadyForQuery ended the work; new client messages wait for the
    /// next routing decision.
    release_seen: bool,
    /// A RESET or DISCARD ALL completed since the last restore.
    reset_seen: bool,
    /// The idle ReadyForQuery after it is held for [`End::Restore`].
    restore_pending: bool,
    /// Transaction/statement mode: the server ran LISTEN (CommandComplete
    /// "LISTEN"). Its notifications could only reach whichever client has
    /// it next, so the connection is closed instead of pooled.
    pub listened: bool,
    /// Shutdown (SIGINT, or SIGTERM with so_reuseport in transaction
    /// mode): end the attachment at the next idle ReadyForQuery, also in
    /// session mode.
    pub stop_when_idle: bool,
    /// With `stop_when_idle`: the client's FATAL 57P01 went out right
    /// behind that ReadyForQuery (see `say_goodbye`); the session ends
    /// once it is written.
    pub goodbye: bool,
    /// The client has startup values for RESET to restore.
    pub restores: bool,
    /// The server sent a FATAL error (it is going away and has said why).
    pub fatal_seen: bool,
    /// Closes idle pooled connections to a database (see database_ddl.rs).
    pub close_idle: Option<CloseIdle>,
    /// Prepared statements (renaming, replies owed); lent by the session.
    pub prep: Box<Prep>,
    /// Transaction/statement mode: what the client's units did that may
    /// leave session state (see state.rs).
    pub hints: super::state::Hints,
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
            owed: Owed::default(),
            copy: CopyIn::default(),
            c: ClientCursor::default(),
            s: ServerCursor::default(),
            hold: Hold::default(),
            clock: Clock::new(timeouts),
            meter: Meter::new(stats),
            status: b'I',
            unflushed: drive::UNFLUSHED_CLIENT | drive::UNFLUSHED_SERVER,
            release_seen: false,
            reset_seen: false,
            restore_pending: false,
            listened: false,
            stop_when_idle: false,
            goodbye: false,
            restores: false,
            fatal_seen: false,
            close_idle: None,
            prep,
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
        self.c.unit_left = Some(unit);
        self.hold = Hold::new(hold);
    }

    /// Adds the local counters to the database's totals.
    pub fn flush_stats(&mut self) {
        self.meter.flush(std::mem::take(&mut self.prep.counts));
    }

    /// The server owes nothing and no transaction is open.
    pub fn server_idle(&self) -> bool {
        self.owed.is_empty()
            && self.status == b'I'
            && !self.copy.active()
            && self.c.ready == 0
            && self.c.scan.at_boundary()
            && self.prep.out.is_empty()
            && self.prep.queue.is_empty()
    }

    /// Bytes from the server that are checked and not yet sent to the client.
    pub fn server_ready(&self) -> usize {
        self.s.ready
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
        self.owed.is_empty() && self.c.unflushed && !self.copy.active()
    }
}
