//! What the policy answers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not provably read-only: the primary.
    Write,
    /// A read forced to the primary by a hint or `causeway.route`.
    Forced,
    /// A read on a replica (or on the primary with `primary_reads = always`).
    Read,
    /// A read on the primary because no replica is routable.
    NoReplica,
    /// A read on the primary because no routable replica has replayed
    /// past the session's read-your-writes floor (yet: the session may
    /// wait and route again).
    Behind,
    /// A read on the primary because the session's floor is not usable on
    /// a replica (yet): see [`StaleCause`].
    Stale(StaleCause),
}

/// Why a session's reads go to the primary for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleCause {
    /// The session's token is of another generation: a failover happened
    /// since.
    Failover,
    /// The WAL position of the session's last write could not be read.
    TokenUnknown,
    /// What the session's last read saw could not be bounded (its server
    /// did not answer a position query in time).
    Unbounded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Server {
        index: usize,
        reason: Reason,
    },
    /// No server can take the request; the client gets this error.
    Refuse {
        sqlstate: &'static str,
        message: String,
    },
}
