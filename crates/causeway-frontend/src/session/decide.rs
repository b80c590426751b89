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
use super::{Session, State};

/// A unit of work being re-run after a replica failed it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Retry {
    /// Servers that failed it (bit i = server i).
    pub exclude: u64,
    pub attempts: u32,
    /// The replica refused it as a write: the primary runs it.
    pub to_primary: bool,
    pub cause: Option<RetryCause>,
}

impl Retry {
    /// Server `server` failed the unit for `cause`: not again.
    pub fn failed(&mut self, server: usize, cause: RetryCause) {
        self.exclude |= 1u64 << server.min(63);
        self.to_primary |= cause == RetryCause::ReadOnly;
        self.cause = Some(cause);
    }
}

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
    /// Decides where `unit` goes on the current topology: settles the
    /// read-your-writes floor (a read waits at most ryw_wait_timeout for a
    /// replica to catch up with it), then chooses. Err: the unit was
    /// refused (the session goes on, or is closed).
    pub(super) async fn decide(&mut self, unit: &Unit, retry: Retry) -> Result<Placed, State> {
        let ryw = self.split && unit.req.intent.is_read() && self.ryw.on();
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64(self.cfg.ryw_wait_timeout.max(0.0));
        let mut waited: Option<Instant> = None;
        loop {
            let topo = self.db.topology();
            let floor = match ryw {
                true => self.ryw_floor(&topo, deadline).await,
                false => Floor::default(),
            };
            let ask = Ask {
                waited: waited.is_some(),
                fallback: self.cfg.ryw_fallback,
                ..Ask::new(unit.req, retry, self.sticky, floor)
            };
            let mut route = choose(&self.db.router().policy, &topo, &ask);
            if route == Route::Wait {
                let started = *waited.get_or_insert_with(Instant::now);
                // One wait on every candidate at once; a replica that got
                // there is picked when choosing again.
                if self
                    .wait_for_floor(&topo, &ask.view, deadline)
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
                Route::Server(placed) => {
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
                    Ok(placed)
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
}
