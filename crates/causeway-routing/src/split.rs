//! The read/write splitting policy: writes (and anything unsure) to the one
//! primary, reads spread over the routable replicas by a [`Strategy`].

use std::cell::Cell;
use std::sync::Arc;

use crate::balance::{pick, Candidate, Load, Strategy};
use crate::lag::replay_reached;
use crate::lsn::Lsn;
use crate::{Decision, Intent, Reason, Request, Role, SessionView, Topology};

/// Whether the primary takes reads too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrimaryReads {
    /// Never: with no routable replica, reads fail.
    Never,
    /// Only when no replica is routable.
    #[default]
    WhenNoReplica,
    /// The primary is one more candidate.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SplitConfig {
    pub strategy: Strategy,
    pub primary_reads: PrimaryReads,
    /// No routable replica: fail the read (57P03) rather than use the primary.
    pub replica_unavailable_error: bool,
}

/// SQLSTATE of a read refused because no replica can take it
/// (`cannot_connect_now`: the client may retry).
pub const NO_REPLICA_SQLSTATE: &str = "57P03";

/// The policy of one database: its settings and its servers' live load.
#[derive(Debug)]
pub struct ReadWrite {
    pub cfg: SplitConfig,
    pub load: Arc<Load>,
}

impl ReadWrite {
    pub fn new(cfg: SplitConfig, load: Arc<Load>) -> Self {
        ReadWrite { cfg, load }
    }
}

/// PostgreSQL's default WAL page size (`wal_block_size`).
const WAL_BLOCK_SIZE: u64 = 8192;

/// At most this many servers per database (the `exclude` bit set).
const MAX_SERVERS: usize = 64;

impl ReadWrite {
    /// Where `req` goes, and why.
    pub fn route(&self, req: &Request, session: &SessionView, topo: &Topology) -> Decision {
        let primary = topo.primary().filter(|&p| !session.excluded(p));
        let to_primary = |reason| match primary {
            Some(index) => Decision::Server { index, reason },
            None => no_primary(topo),
        };
        match req.intent {
            Intent::Write => return to_primary(Reason::Write),
            _ if req.force_primary => return to_primary(Reason::Forced),
            Intent::Read | Intent::ReadOnlyTxn => {}
        }
        if let Some(cause) = session.stale {
            return to_primary(Reason::Stale(cause));
        }
        let bounded = session.floor.is_some() || session.only.is_some();
        let routable = |i: usize| {
            let s = &topo.servers[i];
            s.role == Role::Replica
                && !session.excluded(i)
                && (s.healthy || (bounded && s.reads_at_floor))
        };
        // Read-your-writes: replayed past the floor (a cached replay LSN is
        // a lower bound: replay only moves forward).
        let fresh = |i: usize| {
            session.only.is_none_or(|o| o == i)
                && session.floor.is_none_or(|f| {
                    (i < MAX_SERVERS && session.reached & (1 << i) != 0)
                        || topo.servers[i]
                            .replay_lsn
                            .is_some_and(|r| replay_reached(Lsn(r), Lsn(f), WAL_BLOCK_SIZE))
                })
        };
        let mut behind = false;
        let routable = |i: usize| {
            if !routable(i) {
                return false;
            }
            if fresh(i) {
                return true;
            }
            behind = true;
            false
        };
        let mut routable = routable;
        if let Some(i) = session.sticky {
            if i < topo.servers.len() && routable(i) {
                return Decision::Server {
                    index: i,
                    reason: Reason::Read,
                };
            }
        }
        let mut buf = [(0usize, 0u32); MAX_SERVERS];
        let mut n = 0;
        for (i, s) in topo.servers.iter().enumerate().take(MAX_SERVERS) {
            if routable(i) {
                buf[n] = (i, s.weight);
                n += 1;
            }
        }
        let replicas = n;
        if replicas == 0 && behind {
            // Every replica is behind the session's floor (or not known to
            // be past it yet): the session waits for one rather than read
            // on the primary even when the primary takes reads too, since
            // each primary read raises the floor again and would pin the
            // session there.
            return to_primary(Reason::Behind);
        }
        if let Some(p) = primary {
            if self.cfg.primary_reads == PrimaryReads::Always && !req.prefer_replica {
                buf[n] = (p, topo.servers[p].weight);
                n += 1;
            }
        }
        let cands: &[Candidate] = &buf[..n];
        if let Some(index) = pick(self.cfg.strategy, cands, &self.load, random()) {
            return Decision::Server {
                index,
                reason: Reason::Read,
            };
        }
        debug_assert_eq!(replicas, 0);
        if self.cfg.primary_reads == PrimaryReads::Never || self.cfg.replica_unavailable_error {
            return Decision::Refuse {
                sqlstate: NO_REPLICA_SQLSTATE,
                message: "no replica is available for this read-only query \
                          (replica_unavailable = error)"
                    .into(),
            };
        }
        to_primary(Reason::NoReplica)
    }
}

/// The refusal when writes have nowhere to go.
fn no_primary(topo: &Topology) -> Decision {
    let message = if topo.split_brain {
        "no primary server: more than one server claims to be primary (split brain); \
         writes are refused until exactly one remains"
    } else {
        "no primary server is available"
    };
    Decision::Refuse {
        sqlstate: "08006",
        message: message.into(),
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let here = &t as *const u64 as u64;
    (t ^ here.rotate_left(32)) | 1
}

/// xorshift64: plenty for spreading load, no lock, no syscall.
fn random() -> u64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerState;

    fn topo(servers: &[(Role, bool)]) -> Topology {
        Topology {
            servers: servers
                .iter()
                .map(|&(role, healthy)| ServerState {
                    role,
                    healthy,
                    reads_at_floor: healthy,
                    time_lag: None,
                    weight: 1,
                    replay_lsn: Some(1000),
                })
                .collect(),
            split_brain: false,
            generation: None,
        }
    }

    fn policy(cfg: SplitConfig, n: usize) -> ReadWrite {
        ReadWrite::new(cfg, Arc::new(Load::new(n)))
    }

    fn index(d: Decision) -> usize {
        match d {
            Decision::Server { index, .. } => index,
            Decision::Refuse { message, .. } => panic!("refused: {message}"),
        }
    }

    const THREE: [(Role, bool); 3] = [
        (Role::Primary, true),
        (Role::Replica, true),
        (Role::Replica, true),
    ];

    #[test]
    fn writes_go_to_the_primary_reads_to_replicas() {
        let p = policy(SplitConfig::default(), 3);
        let t = topo(&THREE);
        let s = SessionView::default();
        for _ in 0..10 {
            assert_eq!(index(p.route(&Request::write(), &s, &t)), 0);
        }
        let reads: Vec<usize> = (0..4)
            .map(|_| index(p.route(&Request::read(), &s, &t)))
            .collect();
        assert_eq!(reads, vec![1, 2, 1, 2], "round robin over the replicas");
    }

    #[test]
    fn unhealthy_and_excluded_replicas_take_no_reads() {
        let p = policy(SplitConfig::default(), 3);
        let t = topo(&[
            (Role::Primary, true),
            (Role::Replica, false),
            (Role::Replica, true),
        ]);
        let s = SessionView::default();
        for _ in 0..5 {
            assert_eq!(index(p.route(&Request::read(), &s, &t)), 2);
        }
        let s = SessionView {
            exclude: 1 << 2,
            ..s
        };
        assert_eq!(
            p.route(&Request::read(), &s, &t),
            Decision::Server {
                index: 0,
                reason: Reason::NoReplica
            }
        );
    }

    #[test]
    fn no_replica_falls_back_or_refuses_by_config() {
        let t = topo(&[(Role::Primary, true), (Role::Replica, false)]);
        let s = SessionView::default();
        let fallback = policy(SplitConfig::default(), 2);
        assert_eq!(index(fallback.route(&Request::read(), &s, &t)), 0);
        for cfg in [
            SplitConfig {
                replica_unavailable_error: true,
                ..SplitConfig::default()
            },
            SplitConfig {
                primary_reads: PrimaryReads::Never,
                ..SplitConfig::default()
            },
        ] {
            match policy(cfg, 2).route(&Request::read(), &s, &t) {
                Decision::Refuse { sqlstate, .. } => assert_eq!(sqlstate, NO_REPLICA_SQLSTATE),
                d => panic!("{d:?}"),
            }
            // Writes are unaffected.
            assert_eq!(index(policy(cfg, 2).route(&Request::write(), &s, &t)), 0);
        }
    }

    #[test]
    fn primary_reads_always_makes_the_primary_a_candidate() {
        let p = policy(
            SplitConfig {
                primary_reads: PrimaryReads::Always,
                ..SplitConfig::default()
            },
            3,
        );
        let t = topo(&THREE);
        let s = SessionView::default();
        let mut seen = [0; 3];
        for _ in 0..9 {
            seen[index(p.route(&Request::read(), &s, &t))] += 1;
        }
        assert_eq!(seen, [3, 3, 3]);
        // A replica hint keeps reads off the primary.
        let req = Request {
            prefer_replica: true,
            ..Request::read()
        };
        for _ in 0..6 {
            assert_ne!(index(p.route(&req, &s, &t)), 0);
        }
    }

    #[test]
    fn forced_reads_and_hints() {
        let p = policy(SplitConfig::default(), 3);
        let t = topo(&THREE);
        let req = Request {
            force_primary: true,
            ..Request::read()
        };
        assert_eq!(
            p.route(&req, &SessionView::default(), &t),
            Decision::Server {
                index: 0,
                reason: Reason::Forced
            }
        );
        // A replica preference never moves a write.
        let req = Request {
            prefer_replica: true,
            ..Request::write()
        };
        assert_eq!(index(p.route(&req, &SessionView::default(), &t)), 0);
    }

    #[test]
    fn sticky_replica_is_kept_while_routable() {
        let p = policy(SplitConfig::default(), 3);
        let t = topo(&THREE);
        let s = SessionView {
            sticky: Some(2),
            ..SessionView::default()
        };
        for _ in 0..5 {
            assert_eq!(index(p.route(&Request::read(), &s, &t)), 2);
        }
        let t = topo(&[
            (Role::Primary, true),
            (Role::Replica, true),
            (Role::Replica, false),
        ]);
        assert_eq!(index(p.route(&Request::read(), &s, &t)), 1);
    }

    #[test]
    fn split_brain_refuses_writes_with_a_clear_message() {
        let p = policy(SplitConfig::default(), 3);
        let mut t = topo(&[
            (Role::Primary, true),
            (Role::Primary, true),
            (Role::Replica, true),
        ]);
        t.split_brain = true;
        match p.route(&Request::write(), &SessionView::default(), &t) {
            Decision::Refuse { sqlstate, message } => {
                assert_eq!(sqlstate, "08006");
                assert!(message.contains("split brain"), "{message}");
            }
            d => panic!("{d:?}"),
        }
        // Reads still reach the healthy replica.
        assert_eq!(
            index(p.route(&Request::read(), &SessionView::default(), &t)),
            2
        );
    }

    #[test]
    fn read_your_writes_floor_and_only() {
        let p = policy(SplitConfig::default(), 3);
        let mut t = topo(&THREE);
        t.servers[1].replay_lsn = Some(5000);
        t.servers[2].replay_lsn = Some(9000);
        let s = SessionView {
            floor: Some(8000),
            ..SessionView::default()
        };
        for _ in 0..4 {
            assert_eq!(index(p.route(&Request::read(), &s, &t)), 2);
        }
        let s = SessionView {
            floor: Some(9500),
            ..SessionView::default()
        };
        assert_eq!(
            p.route(&Request::read(), &s, &t),
            Decision::Server {
                index: 0,
                reason: Reason::Behind
            }
        );
        // A token just past a page header is reached at the page start.
        let s = SessionView {
            floor: Some(8192 + 24),
            ..SessionView::default()
        };
        t.servers[2].replay_lsn = Some(8192);
        assert_eq!(index(p.route(&Request::read(), &s, &t)), 2);
        let s = SessionView {
            only: Some(1),
            ..SessionView::default()
        };
        for _ in 0..3 {
            assert_eq!(index(p.route(&Request::read(), &s, &t)), 1);
        }
        let s = SessionView {
            stale: Some(crate::StaleCause::Failover),
            ..SessionView::default()
        };
        assert_eq!(
            p.route(&Request::read(), &s, &t),
            Decision::Server {
                index: 0,
                reason: Reason::Stale(crate::StaleCause::Failover)
            }
        );
        // A sample newer than the topology says replica 1 got there.
        let s = SessionView {
            floor: Some(9500),
            reached: 1 << 1,
            ..SessionView::default()
        };
        assert_eq!(index(p.route(&Request::read(), &s, &t)), 1);
        // No replica routable at all is not "behind".
        let t = topo(&[(Role::Primary, true), (Role::Replica, false)]);
        let s = SessionView {
            floor: Some(1),
            ..SessionView::default()
        };
        assert_eq!(
            p.route(&Request::read(), &s, &t),
            Decision::Server {
                index: 0,
                reason: Reason::NoReplica
            }
        );
    }

    #[test]
    fn replica_in_hold_down_serves_only_reads_with_a_proven_floor() {
        let p = policy(SplitConfig::default(), 2);
        let mut t = topo(&[(Role::Primary, true), (Role::Replica, false)]);
        t.servers[1].reads_at_floor = true;
        t.servers[1].replay_lsn = Some(5000);
        // No floor: only healthy replicas.
        assert_eq!(
            p.route(&Request::read(), &SessionView::default(), &t),
            Decision::Server {
                index: 0,
                reason: Reason::NoReplica
            }
        );
        // A floor it has replayed: it may serve the read.
        let s = SessionView {
            floor: Some(4000),
            ..SessionView::default()
        };
        assert_eq!(index(p.route(&Request::read(), &s, &t)), 1);
        // One it has not: behind (the session may wait for it).
        let s = SessionView {
            floor: Some(6000),
            ..SessionView::default()
        };
        assert_eq!(
            p.route(&Request::read(), &s, &t),
            Decision::Server {
                index: 0,
                reason: Reason::Behind
            }
        );
        // With primary_reads = always too: a replica that may catch up is
        // waited for rather than the session pinned to the primary.
        let always = policy(
            SplitConfig {
                primary_reads: PrimaryReads::Always,
                ..SplitConfig::default()
            },
            2,
        );
        assert_eq!(
            always.route(&Request::read(), &s, &t),
            Decision::Server {
                index: 0,
                reason: Reason::Behind
            }
        );
        // Not reads_at_floor (e.g. too far behind, banned): never.
        t.servers[1].reads_at_floor = false;
        let s = SessionView {
            floor: Some(4000),
            ..SessionView::default()
        };
        assert_eq!(index(p.route(&Request::read(), &s, &t)), 0);
    }

    #[test]
    fn weighted_strategy_follows_weights() {
        let p = policy(
            SplitConfig {
                strategy: Strategy::Weighted,
                ..SplitConfig::default()
            },
            3,
        );
        let mut t = topo(&THREE);
        t.servers[1].weight = 1;
        t.servers[2].weight = 3;
        let mut seen = [0u32; 3];
        for _ in 0..8000 {
            seen[index(p.route(&Request::read(), &SessionView::default(), &t))] += 1;
        }
        let share = f64::from(seen[2]) / 8000.0;
        assert!((0.70..0.80).contains(&share), "{seen:?}");
        assert_eq!(seen[0], 0);
    }
}
