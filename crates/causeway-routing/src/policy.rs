//! The policy seam.

use crate::{Decision, Reason, Topology};

/// What the client sent that starts the server assignment.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The message tag ('Q' simple query, 'P' Parse, ...).
    pub tag: u8,
    /// The SQL text when the message carries one.
    pub sql: Option<&'a str>,
}

/// Session facts a policy may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionView {
    /// The server the session must stay on, if any.
    pub pinned: Option<usize>,
}

pub trait Policy: Send + Sync {
    fn route(&self, req: &Request<'_>, session: &SessionView, topo: &Topology) -> Decision;
}

/// Every request to the primary: PgBouncer's behaviour.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrimaryOnly;

impl Policy for PrimaryOnly {
    fn route(&self, _req: &Request<'_>, session: &SessionView, topo: &Topology) -> Decision {
        if let Some(index) = session.pinned {
            return Decision::Server {
                index,
                reason: Reason::Pinned,
            };
        }
        match topo.primary() {
            Some(index) => Decision::Server {
                index,
                reason: Reason::PrimaryOnly,
            },
            None => Decision::Refuse {
                sqlstate: "08006",
                message: "no primary server is available".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, ServerState};

    fn topo(roles: &[Role]) -> Topology {
        Topology {
            servers: roles
                .iter()
                .map(|&role| ServerState {
                    role,
                    healthy: true,
                    weight: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn routes_to_the_primary_wherever_it_is() {
        let req = Request {
            tag: b'Q',
            sql: Some("select 1"),
        };
        let t = topo(&[Role::Replica, Role::Primary, Role::Replica]);
        assert_eq!(
            PrimaryOnly.route(&req, &SessionView::default(), &t),
            Decision::Server {
                index: 1,
                reason: Reason::PrimaryOnly
            }
        );
    }

    #[test]
    fn refuses_without_exactly_one_primary() {
        let req = Request {
            tag: b'Q',
            sql: None,
        };
        for roles in [&[Role::Replica][..], &[Role::Primary, Role::Primary]] {
            assert!(matches!(
                PrimaryOnly.route(&req, &SessionView::default(), &topo(roles)),
                Decision::Refuse { .. }
            ));
        }
    }

    #[test]
    fn pinned_session_stays() {
        let req = Request {
            tag: b'Q',
            sql: None,
        };
        let s = SessionView { pinned: Some(2) };
        assert!(matches!(
            PrimaryOnly.route(&req, &s, &topo(&[Role::Primary])),
            Decision::Server {
                index: 2,
                reason: Reason::Pinned
            }
        ));
    }
}
