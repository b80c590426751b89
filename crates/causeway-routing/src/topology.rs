//! The routing view of a database's servers, as the session sees it at the
//! moment it routes (a cheap, immutable snapshot).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// Not yet probed.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    pub role: Role,
    /// Reachable and not banned (replicas: also within the lag limits,
    /// replaying, past the hold-down): takes reads.
    pub healthy: bool,
    /// A replica out of rotation only for a pause or its hold-down: may
    /// still take a read whose read-your-writes floor it has replayed.
    pub reads_at_floor: bool,
    /// Replica: how far behind the primary it was at its last probe, on
    /// Causeway's clock (a read never waits on a replica further behind
    /// than the wait).
    pub time_lag: Option<std::time::Duration>,
    pub weight: u32,
    /// Replica: `pg_last_wal_replay_lsn()` at its last probe (a lower
    /// bound of its position now).
    pub replay_lsn: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// Index = the server's position in the database's configured list.
    pub servers: Vec<ServerState>,
    /// Two or more reachable servers claim to be primary: no writes.
    pub split_brain: bool,
    /// The primary's cluster and timeline (read-your-writes tokens).
    pub generation: Option<crate::token::Generation>,
}

impl Topology {
    /// The one server that is primary, if exactly one claims it.
    pub fn primary(&self) -> Option<usize> {
        let mut it = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.role == Role::Primary);
        match (it.next(), it.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }
}
