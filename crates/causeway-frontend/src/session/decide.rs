//! Step two of a unit of work: where it goes, and why.
//!
//! [`choose`] is pure: the planned unit, the session's view (retries,
//! sticky replica, read-your-writes floor) and a topology snapshot in, a
//! [`Route`] out. [`Session::decide`] gathers those facts (settling the
//! session's floor, which may ask a server), and when every candidate
//! replica is behind the floor waits once for one to catch up before
//! choosing again.

use std::time::{Duration, Instant};

use causeway_config::RywFallback;
use causeway_metrics::RouteReason;
use causeway_protocol::sqlstate;
use causeway_routing::{
    Decision, ReadWrite, Reason, Request, Role, SessionView, StaleCause, Topology,
};

use super::consistency::Floor;
use super::plan::Unit;
use super::pump::RetryCause;
use super::rerun::Retry;
use super::{Session, State};

/// Where a unit goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Server(Placed),
    /// Every candidate replica is behind the session's floor: wait for
    /// one to catch up, then choose again.
    Wait,
    /// No server may take it: the client gets this error. `fell_back`:
    /// because no replica caught up in time (ryw_fallback = error).
    Refuse {
        sqlstate: &'static str,
        message: String,
        fell_back: bool,
    },
}

/// A server chosen for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placed {
    /// Index in the database's server list.
    pub server: usize,
    pub replica: bool,
    /// Why, as counted in the route metrics.
    pub why: RouteReason,
    /// A read on the primary because no replica caught up with the
    /// session's floor in time (ryw_fallback = primary).
    pub fell_back: bool,
}

/// What [`choose`] looks at besides the topology.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub req: Request,
    pub view: SessionView,
    pub retry: Retry,
    /// The session already waited for a replica to reach its floor.
    pub waited: bool,
    pub fallback: RywFallback,
}

impl Ask {
    /// The session's view of routing for this attempt.
    pub fn new(req: Request, retry: Retry, sticky: Option<usize>, floor: Floor) -> Ask {
        Ask {
            req: Request {
                force_primary: req.force_primary || retry.to_primary,
                ..req
            },
            view: SessionView {
                exclude: retry.exclude,
                sticky,
                floor: floor.lsn,
                reached: floor.reached,
                only: floor.only,
                stale: floor.stale,
            },
            retry,
            waited: false,
            fallback: RywFallback::Primary,
        }
    }
}

/// The refusal when no replica caught up and ryw_fallback = error.
const RYW_REFUSAL: &str = "no replica caught up with this session's writes within ryw_wait_timeout (ryw_fallback = error)";

/// Where the unit goes, and why. Pure.
pub(super) fn choose(policy: &ReadWrite, topo: &Topology, ask: &Ask) -> Route {
    let (server, reason) = match policy.route(&ask.req, &ask.view, topo) {
        Decision::Server { index, reason } => (index, reason),
        Decision::Refuse { sqlstate, message } => {
            let fell_back = false;
            return Route::Refuse {
                sqlstate,
                message,
                fell_back,
            };
        }
    };
    let fell_back = reason == Reason::Behind;
    if fell_back && !ask.waited {
        return Route::Wait;
    }
    if fell_back && ask.fallback == RywFallback::Error {
        return Route::Refuse {
            sqlstate: sqlstate::CANNOT_CONNECT_NOW,
            message: RYW_REFUSAL.into(),
            fell_back,
        };
    }
    Route::Server(Placed {
        server,
        replica: topo.servers.get(server).map(|s| s.role) == Some(Role::Replica),
        why: route_reason(ask.retry.cause, reason),
        fell_back,
    })
}

/// The metrics' reason: a re-run says why it was re-run.
fn route_reason(retry: Option<RetryCause>, reason: Reason) -> RouteReason {
    match (retry, reason) {
        (Some(RetryCause::ReadOnly), _) => RouteReason::RetryReadOnly,
        (Some(RetryCause::Conflict), _) => RouteReason::RetryConflict,
        (Some(RetryCause::Failure), _) => RouteReason::RetryFailure,
        (None, Reason::Forced) => RouteReason::Hint,
        (None, Reason::Read) => RouteReason::Read,
        (None, Reason::NoReplica) => RouteReason::NoReplica,
        (None, Reason::Behind) => RouteReason::Behind,
        (None, Reason::Stale(StaleCause::Failover)) => RouteReason::Stale,
        (None, Reason::Stale(StaleCause::TokenUnknown)) => RouteReason::TokenUnknown,
        (None, Reason::Stale(StaleCause::Unbounded)) => RouteReason::Unbounded,
        (None, Reason::Write) => RouteReason::Write,
    }
}

impl Session {
    /// How long a read may wait for a replica to catch up, from now.
    fn ryw_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs_f64(self.cfg.ryw_wait_timeout.max(0.0))
    }

    /// Decides where `unit` goes on the current topology: settles the
    /// read-your-writes floor (a read waits at most ryw_wait_timeout for a
    /// replica to catch up with it), then chooses. Err: the unit was
    /// refused (the session goes on, or is closed).
    pub(super) async fn decide(&mut self, unit: &Unit, retry: &mut Retry) -> Result<Placed, State> {
        let ryw = self.split && unit.req.intent.is_read() && self.ryw.on();
        // Read from the clock only when a read-your-writes wait may need it.
        let mut deadline = None;
        let mut waited: Option<Instant> = None;
        loop {
            let topo = self.db.topology();
            let floor = match ryw {
                true => {
                    let d = *deadline.get_or_insert_with(|| self.ryw_deadline());
                    self.ryw_floor(&topo, d).await
                }
                false => Floor::default(),
            };
            let ask = Ask {
                waited: waited.is_some(),
                fallback: self.cfg.ryw_fallback,
                ..Ask::new(unit.req, *retry, self.sticky.map(usize::from), floor)
            };
            let mut route = choose(&self.db.router().policy, &topo, &ask);
            if route == Route::Wait {
                let started = *waited.get_or_insert_with(Instant::now);
                // One wait on every candidate at once; a replica that got
                // there is picked when choosing again.
                if self
                    .wait_for_floor(
                        &topo,
                        &ask.view,
                        *deadline.get_or_insert_with(|| self.ryw_deadline()),
                    )
                    .await
                    .is_some()
                {
                    continue;
                }
                // None got there in time: the same facts, knowing that.
                let ask = Ask {
                    waited: true,
                    ..ask
                };
                route = choose(&self.db.router().policy, &topo, &ask);
                waited = Some(started);
            }
            return match route {
                Route::Server(placed) => Ok(self.placed(unit, placed, waited)),
                Route::Refuse { sqlstate, .. }
                    if super::rerun::waits_for_topology(unit.req.intent, retry, sqlstate)
                        && self.wait_for_topology(retry).await =>
                {
                    // A read that nothing can take yet (its server failed,
                    // or no primary and no routable replica, as in a
                    // failover): the monitor (or a rebuild) may soon name one.
                    self.refresh_database_keeping(retry);
                    continue;
                }
                Route::Refuse {
                    sqlstate,
                    message,
                    fell_back,
                } => {
                    if let Some(started) = waited.filter(|_| fell_back) {
                        self.db.ryw.waited(started.elapsed());
                        self.db.ryw.fallback();
                    }
                    self.db.routes.count(false, RouteReason::Refused);
                    Err(self.refuse(unit.len, sqlstate, &message).await)
                }
                Route::Wait => unreachable!("a session that waited is never told to wait"),
            };
        }
    }

    /// Counts a unit's route (and its read-your-writes wait) as it goes.
    fn placed(&self, unit: &Unit, placed: Placed, waited: Option<Instant>) -> Placed {
        if let Some(started) = waited {
            self.db.ryw.waited(started.elapsed());
        }
        if placed.fell_back {
            self.db.ryw.fallback();
        }
        tracing::debug!(client = %self.client.peer, tag = %(unit.tag as char), unit = unit.len, intent = ?unit.req.intent, server = placed.server, why = ?placed.why, replica = placed.replica, "routed");
        if self.split {
            self.db.routes.count(placed.replica, placed.why);
        }
        placed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use causeway_routing::balance::Load;
    use causeway_routing::{Generation, Intent, ServerState, SplitConfig};

    use super::*;

    /// A primary (server 0) and two replicas that replayed up to 1000.
    fn topo() -> Topology {
        let server = |role| ServerState {
            role,
            healthy: true,
            reads_at_floor: true,
            time_lag: None,
            weight: 1,
            replay_lsn: Some(1000),
        };
        Topology {
            servers: vec![
                server(Role::Primary),
                server(Role::Replica),
                server(Role::Replica),
            ],
            split_brain: false,
            generation: Some(Generation {
                system_id: 1,
                timeline: 1,
            }),
        }
    }

    fn policy() -> ReadWrite {
        ReadWrite::new(SplitConfig::default(), Arc::new(Load::new(3)))
    }

    fn ask(req: Request) -> Ask {
        Ask::new(req, Retry::default(), None, Floor::default())
    }

    fn placed(route: Route) -> Placed {
        match route {
            Route::Server(p) => p,
            other => panic!("not placed: {other:?}"),
        }
    }

    /// A session whose writes reached `lsn`.
    fn floor(lsn: u64) -> Floor {
        Floor {
            lsn: Some(lsn),
            ..Floor::default()
        }
    }

    #[test]
    fn a_read_goes_to_a_replica() {
        let p = placed(choose(&policy(), &topo(), &ask(Request::read())));
        assert!(p.replica && p.server != 0);
        assert_eq!((p.why, p.fell_back), (RouteReason::Read, false));
    }

    #[test]
    fn a_write_goes_to_the_primary() {
        let p = placed(choose(&policy(), &topo(), &ask(Request::write())));
        assert_eq!((p.server, p.replica, p.why), (0, false, RouteReason::Write));
    }

    #[test]
    fn a_hint_sends_a_read_to_the_primary() {
        let req = Request {
            force_primary: true,
            ..Request::read()
        };
        let p = placed(choose(&policy(), &topo(), &ask(req)));
        assert_eq!((p.server, p.why), (0, RouteReason::Hint));
    }

    #[test]
    fn a_floor_no_replica_reached_makes_the_read_wait() {
        let a = Ask::new(Request::read(), Retry::default(), None, floor(5000));
        assert_eq!(choose(&policy(), &topo(), &a), Route::Wait);
    }

    #[test]
    fn after_the_wait_the_read_falls_back_to_the_primary() {
        let a = Ask {
            waited: true,
            ..Ask::new(Request::read(), Retry::default(), None, floor(5000))
        };
        let p = placed(choose(&policy(), &topo(), &a));
        assert_eq!(
            (p.server, p.why, p.fell_back),
            (0, RouteReason::Behind, true)
        );
    }

    #[test]
    fn ryw_fallback_error_refuses_with_57p03() {
        let a = Ask {
            waited: true,
            fallback: RywFallback::Error,
            ..Ask::new(Request::read(), Retry::default(), None, floor(5000))
        };
        match choose(&policy(), &topo(), &a) {
            Route::Refuse {
                sqlstate,
                fell_back,
                ..
            } => assert_eq!((sqlstate, fell_back), ("57P03", true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_replica_sampled_past_the_floor_takes_the_read_without_waiting() {
        let f = Floor {
            reached: 1 << 2,
            ..floor(5000)
        };
        let a = Ask::new(Request::read(), Retry::default(), None, f);
        let p = placed(choose(&policy(), &topo(), &a));
        assert_eq!((p.server, p.why), (2, RouteReason::Read));
    }

    #[test]
    fn a_floor_the_replicas_replayed_lets_reads_spread() {
        let a = Ask::new(Request::read(), Retry::default(), None, floor(900));
        assert!(placed(choose(&policy(), &topo(), &a)).replica);
    }

    #[test]
    fn a_retry_skips_the_replica_that_failed() {
        let mut retry = Retry::default();
        retry.failed(1, RetryCause::Failure, Duration::from_secs(1));
        for _ in 0..10 {
            let a = Ask::new(Request::read(), retry, None, Floor::default());
            let p = placed(choose(&policy(), &topo(), &a));
            assert_eq!((p.server, p.why), (2, RouteReason::RetryFailure));
        }
    }

    #[test]
    fn a_read_a_replica_refused_as_a_write_reruns_on_the_primary() {
        let mut retry = Retry::default();
        retry.failed(2, RetryCause::ReadOnly, Duration::from_secs(1));
        let a = Ask::new(Request::read(), retry, None, Floor::default());
        let p = placed(choose(&policy(), &topo(), &a));
        assert_eq!((p.server, p.why), (0, RouteReason::RetryReadOnly));
    }

    #[test]
    fn sticky_reads_stay_on_their_replica() {
        for _ in 0..10 {
            let a = Ask::new(Request::read(), Retry::default(), Some(2), Floor::default());
            assert_eq!(placed(choose(&policy(), &topo(), &a)).server, 2);
        }
    }

    #[test]
    fn a_token_from_before_a_failover_reads_on_the_primary() {
        let f = Floor {
            stale: Some(StaleCause::Failover),
            ..Floor::default()
        };
        let a = Ask::new(Request::read(), Retry::default(), None, f);
        let p = placed(choose(&policy(), &topo(), &a));
        assert_eq!((p.server, p.why), (0, RouteReason::Stale));
    }

    #[test]
    fn writes_without_a_primary_are_refused_with_08006() {
        let mut t = topo();
        t.servers[0].role = Role::Replica;
        match choose(&policy(), &t, &ask(Request::write())) {
            Route::Refuse {
                sqlstate,
                fell_back,
                ..
            } => assert_eq!((sqlstate, fell_back), ("08006", false)),
            other => panic!("{other:?}"),
        }
        // Reads still have replicas.
        let read = Request {
            intent: Intent::Read,
            ..Request::write()
        };
        assert!(placed(choose(&policy(), &t, &ask(read))).replica);
    }
}
