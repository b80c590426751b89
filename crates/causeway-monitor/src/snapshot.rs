//! What the monitor publishes.

use std::time::{Duration, Instant, SystemTime};

use causeway_routing::health::Unroutable;
use causeway_routing::lsn::Lsn;
use causeway_routing::{Role, ServerState, Topology};

/// One server as of its last probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    /// `host:port`.
    pub label: String,
    /// From the last successful probe (`pg_is_in_recovery()`); `Unknown`
    /// until one succeeded. Kept while unreachable: check `reachable`.
    pub role: Role,
    /// The last probe succeeded.
    pub reachable: bool,
    /// May take routed reads: reachable, not banned, and for a replica not
    /// paused, within the lag limits and past the hold-down, with a known
    /// primary position to measure against and the primary's system
    /// identifier. A primary is routable when it is the one primary
    /// (`Snapshot::primary`) and not banned.
    pub routable: bool,
    /// A replica out of rotation only for a pause or its hold-down (within
    /// the lag limits), or routable: may serve a read whose read-your-writes
    /// floor it is known to have replayed.
    pub reads_at_floor: bool,
    /// The last probe could not log in (the monitor's user, password,
    /// database or pg_hba.conf): the message, naming the user.
    pub login_error: Option<String>,
    /// Why not routable (None when routable, or when the reason is one the
    /// health state machine does not know: split brain, no primary
    /// reference, foreign system identifier; see `note`).
    pub unroutable: Option<Unroutable>,
    /// `pg_last_wal_replay_lsn()` (NULL on a primary that never recovered;
    /// frozen after promotion).
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// Primary: its own `pg_current_wal_insert_lsn()`. Replica: the
    /// primary's insert LSN its byte lag was measured against.
    pub primary_lsn: Option<Lsn>,
    /// Replicas only (None for a primary or before a primary was seen).
    pub byte_lag: Option<u64>,
    /// Replicas only; on Causeway's clock (see `causeway_routing::lag`).
    pub time_lag: Option<Duration>,
    /// Mean byte lag over the last `history` probes.
    pub avg_byte_lag: Option<u64>,
    /// Mean time lag over the last `history` probes.
    pub avg_time_lag: Option<Duration>,
    /// Replay paused or pause requested.
    pub paused: bool,
    /// `pg_last_xact_replay_timestamp()`: informational only, never used for
    /// health (NULL after a standby restart until a commit replays).
    pub last_replay_timestamp: Option<SystemTime>,
    /// End of the current failure ban.
    pub banned_until: Option<Instant>,
    /// Length of the current failure ban (1 s, 2 s, 4 s ... 60 s).
    pub ban_duration: Option<Duration>,
    /// Start of the current run of probes within the lag limits.
    pub within_limits_since: Option<Instant>,
    /// Primary: WAL insertion timeline. Standby: received / checkpoint
    /// timeline (see the probe docs).
    pub timeline: Option<u32>,
    /// `pg_control_system().system_identifier` (None if not permitted).
    pub system_identifier: Option<u64>,
    /// When the last probe (good or bad) finished.
    pub last_probe: Option<Instant>,
    /// When the last good probe finished.
    pub last_success: Option<Instant>,
    /// When the last good probe started: its LSNs are at least as new as
    /// the server's position at this instant (read-your-writes floors).
    pub success_started: Option<Instant>,
    /// Error of the last probe, if it failed.
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Extra reason for not being routable that the health state machine
    /// does not track (split brain, foreign cluster, no primary reference).
    pub note: Option<&'static str>,
    /// Value of the monitor's probe request counter when the last probe
    /// started (used by [`crate::Monitor::probe_now`]).
    pub probe_epoch: u64,
}

impl ServerStatus {
    pub(crate) fn new(label: String) -> ServerStatus {
        ServerStatus {
            label,
            role: Role::Unknown,
            reachable: false,
            routable: false,
            reads_at_floor: false,
            login_error: None,
            unroutable: Some(Unroutable::NotProbed),
            replay_lsn: None,
            receive_lsn: None,
            primary_lsn: None,
            byte_lag: None,
            time_lag: None,
            avg_byte_lag: None,
            avg_time_lag: None,
            paused: false,
            last_replay_timestamp: None,
            banned_until: None,
            ban_duration: None,
            within_limits_since: None,
            timeline: None,
            system_identifier: None,
            last_probe: None,
            last_success: None,
            success_started: None,
            last_error: None,
            consecutive_failures: 0,
            note: None,
            probe_epoch: 0,
        }
    }

    /// Reachable and not in recovery.
    pub fn is_primary(&self) -> bool {
        self.reachable && self.role == Role::Primary
    }

    /// Reachable and in recovery.
    pub fn is_replica(&self) -> bool {
        self.reachable && self.role == Role::Replica
    }
}

/// The whole topology of one database's servers at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Index = the server's position in the list given to
    /// [`crate::Monitor::spawn`].
    pub servers: Vec<ServerStatus>,
    /// Some only when exactly one reachable server is not in recovery.
    pub primary: Option<usize>,
    /// Two or more reachable servers claim to be primary.
    pub split_brain: bool,
    /// 0 until a primary is first seen; +1 each time the (primary index,
    /// primary timeline) pair differs from the last one seen (promotion,
    /// failover). A primary vanishing and coming back unchanged does not
    /// count. Tag read-your-writes tokens with it.
    pub generation: u64,
    /// When this snapshot was built.
    pub at: Instant,
}

impl Snapshot {
    pub(crate) fn empty(labels: Vec<String>) -> Snapshot {
        Snapshot {
            servers: labels.into_iter().map(ServerStatus::new).collect(),
            primary: None,
            split_brain: false,
            generation: 0,
            at: Instant::now(),
        }
    }

    /// Indexes of the routable replicas.
    pub fn routable_replicas(&self) -> impl Iterator<Item = usize> + '_ {
        self.servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.role == Role::Replica && s.routable)
            .map(|(i, _)| i)
    }

    /// Servers whose monitor login is refused.
    pub fn login_errors(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.login_error.as_deref().map(|e| (i, e)))
    }

    /// The primary's timeline, if there is one primary.
    pub fn primary_timeline(&self) -> Option<u32> {
        self.primary.and_then(|i| self.servers[i].timeline)
    }

    /// The routing view: role `Unknown` for unreachable servers, `healthy` =
    /// `routable`, every weight 1.
    pub fn to_topology(&self) -> Topology {
        self.to_weighted_topology(&[])
    }

    /// [`Snapshot::to_topology`] with each server's configured weight
    /// (missing entries weigh 1).
    pub fn to_weighted_topology(&self, weights: &[u32]) -> Topology {
        Topology {
            servers: self
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| ServerState {
                    role: if s.reachable { s.role } else { Role::Unknown },
                    healthy: s.routable,
                    reads_at_floor: s.reads_at_floor,
                    time_lag: s.time_lag,
                    weight: weights.get(i).copied().unwrap_or(1),
                    replay_lsn: (s.role == Role::Replica)
                        .then_some(s.replay_lsn)
                        .flatten()
                        .map(|l| l.0),
                })
                .collect(),
            split_brain: self.split_brain,
            generation: self.generation_id(),
        }
    }

    /// The primary's cluster and timeline, if there is one primary whose
    /// timeline is known.
    pub fn generation_id(&self) -> Option<causeway_routing::Generation> {
        let p = &self.servers[self.primary?];
        Some(causeway_routing::Generation {
            system_id: p.system_identifier.unwrap_or(0),
            timeline: p.timeline?,
        })
    }
}
