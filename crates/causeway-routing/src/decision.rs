//! What the policy answers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// This policy routes everything to the primary.
    PrimaryOnly,
    /// The session is pinned (session pool mode, open transaction...).
    Pinned,
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

impl Reason {
    /// The label used in metrics (`reason`).
    pub fn label(self) -> &'static str {
        match self {
            Reason::PrimaryOnly => "primary_only",
            Reason::Pinned => "pinned",
            Reason::Write => "write",
            Reason::Forced => "hint",
            Reason::Read => "read",
            Reason::NoReplica => "no_replica",
            Reason::Behind => "behind",
            Reason::Stale(StaleCause::Failover) => "stale_token",
            Reason::Stale(StaleCause::TokenUnknown) => "token_unknown",
            Reason::Stale(StaleCause::Unbounded) => "unbounded_read",
        }
    }
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
