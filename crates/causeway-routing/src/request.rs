//! What routing is asked: a unit of work (what it may do) and the facts
//! of the session that sends it.

/// What a unit of work may do, as the session classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Anything that is not provably read-only: the primary.
    Write,
    /// An autocommit read (simple query or extended-protocol unit).
    Read,
    /// `BEGIN READ ONLY` (or under `default_transaction_read_only`): the
    /// whole transaction runs where it starts.
    ReadOnlyTxn,
}

impl Intent {
    pub fn is_read(self) -> bool {
        self != Intent::Write
    }
}

/// One unit of work to place.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub intent: Intent,
    /// A `/* causeway:primary */` hint or `SET causeway.route = primary`.
    pub force_primary: bool,
    /// A `/* causeway:replica */` hint or `SET causeway.route = replica`:
    /// the primary is not a candidate even with `primary_reads = always`.
    pub prefer_replica: bool,
}

impl Request {
    pub fn write() -> Request {
        Request {
            intent: Intent::Write,
            force_primary: false,
            prefer_replica: false,
        }
    }

    pub fn read() -> Request {
        Request {
            intent: Intent::Read,
            ..Request::write()
        }
    }
}

/// Session facts routing uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionView {
    /// Servers that already failed this unit (bit i = server i).
    pub exclude: u64,
    /// The replica the session's last read used (`sticky_reads`).
    pub sticky: Option<usize>,
    /// Read-your-writes: a replica must have replayed at least this far.
    pub floor: Option<u64>,
    /// Replicas known to have replayed `floor` (bit i = server i), from
    /// samples newer than the topology's replay positions.
    pub reached: u64,
    /// Read-your-writes: only this replica may take the read (the one the
    /// session read from last, until a floor for moving is known).
    pub only: Option<usize>,
    /// Reads must use the primary for now, and why.
    pub stale: Option<crate::StaleCause>,
}

impl SessionView {
    pub fn excluded(&self, server: usize) -> bool {
        server < 64 && self.exclude & (1 << server) != 0
    }
}
