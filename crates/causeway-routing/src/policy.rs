//! The policy seam: what the session knows about a unit of work in, a
//! server index out.

use crate::{Decision, Topology};

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

/// Session facts a policy may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionView {
    /// The server the session must stay on, if any.
    pub pinned: Option<usize>,
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

pub trait Policy: Send + Sync {
    fn route(&self, req: &Request, session: &SessionView, topo: &Topology) -> Decision;
}

/// Every request to the primary: PgBouncer's behaviour.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrimaryOnly;

impl Policy for PrimaryOnly {
    fn route(&self, _req: &Request, session: &SessionView, topo: &Topology) -> Decision {
        if let Some(index) = session.pinned {
            return Decision::Server {
                index,
                reason: crate::Reason::Pinned,
            };
        }
        match topo.primary() {
            Some(index) => Decision::Server {
                index,
                reason: crate::Reason::PrimaryOnly,
            },
            None => crate::split::no_primary(topo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reason, Role, ServerState};

    fn topo(roles: &[Role]) -> Topology {
        Topology {
            servers: roles
                .iter()
                .map(|&role| ServerState {
                    role,
                    healthy: true,
                    reads_at_floor: true,
                    time_lag: None,
                    weight: 1,
                    replay_lsn: None,
                })
                .collect(),
            split_brain: false,
            generation: None,
        }
    }

    #[test]
    fn routes_to_the_primary_wherever_it_is() {
        let t = topo(&[Role::Replica, Role::Primary, Role::Replica]);
        assert_eq!(
            PrimaryOnly.route(&Request::read(), &SessionView::default(), &t),
            Decision::Server {
                index: 1,
                reason: Reason::PrimaryOnly
            }
        );
    }

    #[test]
    fn refuses_without_exactly_one_primary() {
        for roles in [&[Role::Replica][..], &[Role::Primary, Role::Primary]] {
            assert!(matches!(
                PrimaryOnly.route(&Request::write(), &SessionView::default(), &topo(roles)),
                Decision::Refuse { .. }
            ));
        }
    }

    #[test]
    fn pinned_session_stays() {
        let s = SessionView {
            pinned: Some(2),
            ..SessionView::default()
        };
        assert!(matches!(
            PrimaryOnly.route(&Request::write(), &s, &topo(&[Role::Primary])),
            Decision::Server {
                index: 2,
                reason: Reason::Pinned
            }
        ));
    }
}
