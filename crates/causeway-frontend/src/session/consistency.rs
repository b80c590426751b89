//! Read-your-writes and monotonic reads for one session (see
//! docs/consistency.md).
//!
//! * After a transaction that may have written ran on the primary, the
//!   session only notes which server and when: the server connection goes
//!   back to the pool at once. The write's token is the primary's insert
//!   position from a position query sent after that instant
//!   (`causeway_monitor::Positions`, one query shared by every session that
//!   asks), fetched when the session next needs it: before its next read,
//!   for `SHOW causeway.token`, or once it has been idle for
//!   [`TOKEN_IDLE_DELAY`] (then reported as ParameterStatus).
//! * A read may use a replica known to have replayed the session's floor:
//!   from the monitor's last probe (a lower bound: replay only moves
//!   forward) or from a fresher position sample (`causeway_monitor::
//!   Positions`). Otherwise it waits, on every candidate at once (see
//!   `ryw_wait.rs`).
//! * Monotonic reads: what a read saw is bounded by any position of its
//!   server sampled after it ended (for the primary: its insert position).
//!   Until such a bound is known the session stays on the replica it read
//!   from; after a primary read Causeway asks for one at once (one query
//!   shared by every session that needs it).
//! * Tokens carry (system identifier, timeline): after a failover a token
//!   of the old timeline sends reads to the primary until a new one exists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_config::Consistency;
use causeway_metrics::RywStats;
use causeway_monitor::{Positions, Sample, Snapshot};
use causeway_protocol::backend;
use causeway_routing::lag::{replay_reached, DEFAULT_WAL_BLOCK_SIZE};
use causeway_routing::lsn::Lsn;
use causeway_routing::{Generation, Role, StaleCause, Token, Topology};

use super::Session;

/// A session idle this long after a write has its token fetched and
/// reported (ParameterStatus). A client that sends its next request sooner
/// gets it before its next read or with `SHOW causeway.token`: a stream of
/// writes costs no position query per write.
pub(super) const TOKEN_IDLE_DELAY: Duration = Duration::from_millis(1);

/// How long a read or `SHOW causeway.token` waits for a write's position.
pub(super) const TOKEN_WAIT: Duration = Duration::from_secs(5);

/// The read-your-writes state of a session.
pub(super) struct Ryw {
    pub mode: Consistency,
    /// Own writes, imported tokens and resolved read floors, merged.
    pub token: Option<Token>,
    /// The last write on the primary whose position is not known yet.
    pub wrote: Option<Wrote>,
    /// The last read whose bound is not known yet.
    pub last_read: Option<LastRead>,
    /// The last write's position could not be read: reads go to the
    /// primary until a new token arrives.
    pub unknown: bool,
    /// The token last sent to the client as ParameterStatus.
    pub reported: Option<Token>,
}

/// A unit that may have written ended on the primary `server` at `end`
/// (its COMMIT had returned).
#[derive(Debug, Clone, Copy)]
pub(super) struct Wrote {
    pub server: usize,
    pub end: Instant,
}

/// A read that ended on `server` at `end`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LastRead {
    pub server: usize,
    pub end: Instant,
}

/// A session's [`Ryw`], boxed only once there is any: with consistency
/// `none` (the default) nothing is ever written to it, and an idle client
/// does not carry its 120 bytes. Reads of an unmade one see the empty
/// state; the first write makes it.
pub(super) struct LazyRyw(Option<Box<Ryw>>);

static NO_RYW: Ryw = Ryw::new(Consistency::None);

impl LazyRyw {
    pub fn new(mode: Consistency) -> Self {
        LazyRyw((mode != Consistency::None).then(|| Box::new(Ryw::new(mode))))
    }
}

impl std::ops::Deref for LazyRyw {
    type Target = Ryw;
    fn deref(&self) -> &Ryw {
        self.0.as_deref().unwrap_or(&NO_RYW)
    }
}

impl std::ops::DerefMut for LazyRyw {
    fn deref_mut(&mut self) -> &mut Ryw {
        self.0
            .get_or_insert_with(|| Box::new(Ryw::new(Consistency::None)))
    }
}

impl Ryw {
    pub const fn new(mode: Consistency) -> Self {
        Ryw {
            mode,
            token: None,
            wrote: None,
            last_read: None,
            unknown: false,
            reported: None,
        }
    }

    pub fn on(&self) -> bool {
        self.mode != Consistency::None
    }

    /// Takes a (possibly imported) token; never lowers the floor.
    pub fn raise(&mut self, t: Token, current: Option<Generation>) -> bool {
        let old = self.token;
        let new = Token::merge(old, t, current);
        self.token = Some(new);
        old != Some(new)
    }

    /// The outcome of the write position read.
    fn settle(&mut self, t: Option<Token>, current: Option<Generation>, stats: &RywStats) {
        match t {
            Some(t) => {
                self.unknown = false;
                // Read after the write, which came after the last read: it
                // bounds what that read saw.
                self.last_read = None;
                if self.raise(t, current) {
                    stats.advance();
                }
            }
            None => {
                self.unknown = true;
                stats.error();
            }
        }
    }
}

/// What routing needs from the session's floor.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Floor {
    pub lsn: Option<u64>,
    pub only: Option<usize>,
    pub stale: Option<StaleCause>,
    /// Replicas a position sample shows at or past `lsn`.
    pub reached: u64,
}

/// What is known about a read's bound.
enum Bound {
    Known(Token),
    /// Not yet, but its replica can take the next read.
    Stay(usize),
    Unknown,
}

/// A read of `server` that ended at `end`, resolved from the monitor: a
/// probe that started after `end` bounds what the read saw.
fn resolve(snap: &Snapshot, server: usize, end: Instant) -> Option<Token> {
    let generation = snap.generation_id()?;
    let after = |i: usize| snap.servers[i].success_started.is_some_and(|s| s > end);
    let s = snap.servers.get(server)?;
    if s.role == Role::Replica && after(server) {
        if let Some(r) = s.replay_lsn {
            return Some(Token { generation, lsn: r });
        }
    }
    let p = snap.primary?;
    if after(p) {
        return snap.servers[p]
            .primary_lsn
            .map(|lsn| Token { generation, lsn });
    }
    None
}

/// Replicas whose latest position sample has replayed `floor` (bit i).
pub(super) fn reached(pos: &Positions, topo: &Topology, floor: u64) -> u64 {
    let mut bits = 0u64;
    for (i, s) in topo.servers.iter().enumerate().take(64) {
        if s.role != Role::Replica {
            continue;
        }
        if pos
            .last(i)
            .is_some_and(|x| x.standby && replay_reached(x.lsn, Lsn(floor), DEFAULT_WAL_BLOCK_SIZE))
        {
            bits |= 1 << i;
        }
    }
    bits
}

/// The token of a write that ended on `server` at `end`: the server's
/// insert position (and timeline) from a position query sent after `end`,
/// which covers the write's commit record. None: no such answer in time, or
/// the server is no longer a primary.
pub(super) async fn write_token(
    pos: Arc<Positions>,
    w: Wrote,
    system_id: u64,
    deadline: tokio::time::Instant,
) -> Option<Token> {
    let s = pos.sample_after(w.server, pos.at(w.end), deadline).await?;
    token_of(s, system_id)
}

fn token_of(s: Sample, system_id: u64) -> Option<Token> {
    if s.standby {
        return None;
    }
    Some(Token {
        generation: Generation {
            system_id,
            timeline: s.timeline?,
        },
        lsn: s.lsn,
    })
}

impl Session {
    /// Fetches the last write's position, if it is not known yet.
    pub(super) async fn settle_pending(&mut self) {
        let Some(w) = self.ryw.wrote else {
            return;
        };
        let t = match self.token_query(w) {
            Some((pos, system_id)) => {
                let deadline = tokio::time::Instant::now() + TOKEN_WAIT;
                write_token(pos, w, system_id, deadline).await
            }
            // No monitor (never with more than one server): unknown.
            None => None,
        };
        self.ryw.wrote = None;
        self.settle_token(t);
    }

    /// What fetching the token of write `w` takes.
    pub(super) fn token_query(&self, w: Wrote) -> Option<(Arc<Positions>, u64)> {
        let m = self.db.monitor.as_ref()?;
        Some((Arc::clone(m.positions()), self.system_id(w.server)))
    }

    /// Folds in the last write's position (None: it could not be read).
    pub(super) fn settle_token(&mut self, t: Option<Token>) {
        let current = self.db.topology().generation;
        self.ryw.settle(t, current, &self.db.ryw);
        self.note_token();
    }

    /// Fetches the last write's token if not known yet, bounds the last
    /// read, then says where reads may go. Waits at most until `deadline`
    /// for a position query.
    pub(super) async fn ryw_floor(
        &mut self,
        topo: &Topology,
        deadline: tokio::time::Instant,
    ) -> Floor {
        if !self.ryw.on() {
            return Floor::default();
        }
        self.settle_pending().await;
        let current = topo.generation;
        let mut f = Floor {
            stale: self.ryw.unknown.then_some(StaleCause::TokenUnknown),
            ..Floor::default()
        };
        if let Some(read) = self.ryw.last_read {
            match self.read_bound(read, topo, deadline).await {
                Bound::Known(t) => {
                    self.ryw.raise(t, current);
                    self.ryw.last_read = None;
                }
                Bound::Stay(r) => f.only = Some(r),
                Bound::Unknown => f.stale = f.stale.or(Some(StaleCause::Unbounded)),
            }
        }
        if self.ryw.mode == Consistency::Global {
            let g = *self.db.global_token.lock();
            if let Some(g) = g {
                self.ryw.raise(g, current);
            }
            // Everything committed before this read arrived, whoever wrote
            // it: the primary's position now (one query shared by every
            // session asking).
            match self.primary_after(topo, None, deadline).await {
                Some(t) => {
                    self.ryw.raise(t, current);
                }
                None => f.stale = f.stale.or(Some(StaleCause::Unbounded)),
            }
        }
        if let Some(t) = self.ryw.token {
            match current {
                Some(c) if !t.generation.matches(c) => f.stale = Some(StaleCause::Failover),
                _ => f.lsn = Some(t.lsn.0),
            }
        }
        if let (Some(floor), Some(m)) = (f.lsn, &self.db.monitor) {
            f.reached = reached(m.positions(), topo, floor);
        }
        f
    }

    /// A bound of what `read` saw: a probe or position sample of its server
    /// (or of the primary) taken after it ended.
    async fn read_bound(
        &self,
        read: LastRead,
        topo: &Topology,
        deadline: tokio::time::Instant,
    ) -> Bound {
        let Some(m) = &self.db.monitor else {
            return Bound::Unknown;
        };
        if let Some(t) = resolve(&m.snapshot(), read.server, read.end) {
            return Bound::Known(t);
        }
        let pos = m.positions();
        let end = pos.at(read.end);
        let at = |lsn| topo.generation.map(|generation| Token { generation, lsn });
        let replica = topo.servers.get(read.server).map(|s| s.role) == Some(Role::Replica);
        if let Some(s) = pos.last(read.server).filter(|s| s.started > end) {
            if s.standby == replica {
                if let Some(t) = at(s.lsn) {
                    return Bound::Known(t);
                }
            }
        }
        if replica {
            let s = &topo.servers[read.server];
            if (s.healthy || s.reads_at_floor) && !pos.failing(read.server) {
                // Its replay only moves forward: it can take the next read.
                return Bound::Stay(read.server);
            }
        }
        // The primary's insert position after the read bounds what any
        // server had then.
        match self.primary_after(topo, Some(end), deadline).await {
            Some(t) => Bound::Known(t),
            None => Bound::Unknown,
        }
    }

    /// The primary's insert position from a query sent after `after`
    /// (default: now), as a token of the current generation.
    async fn primary_after(
        &self,
        topo: &Topology,
        after: Option<u64>,
        deadline: tokio::time::Instant,
    ) -> Option<Token> {
        let m = self.db.monitor.as_ref()?;
        let p = topo.primary()?;
        let generation = topo.generation?;
        let pos = m.positions();
        let after = after.unwrap_or_else(|| pos.now());
        let s = pos.sample_after(p, after, deadline).await?;
        (!s.standby).then_some(Token {
            generation,
            lsn: s.lsn,
        })
    }

    /// A read ended on `server`: remember it, and when it was the primary,
    /// ask for its bound now (ready by the session's next read).
    pub(super) fn read_ended(&mut self, server: usize) {
        if !self.ryw.on() {
            return;
        }
        let end = Instant::now();
        self.ryw.last_read = Some(LastRead { server, end });
        let topo = self.db.topology();
        if topo.primary() == Some(server) {
            if let Some(m) = &self.db.monitor {
                let pos = m.positions();
                pos.request_after(server, pos.at(end));
            }
        }
    }

    /// Sends the token as ParameterStatus if it moved (delivered with the
    /// next bytes Causeway writes to the client).
    pub(super) fn note_token(&mut self) {
        if self.ryw.token != self.ryw.reported {
            if let Some(t) = self.ryw.token {
                backend::write_parameter_status(
                    &mut self.client.out,
                    "causeway.token",
                    &t.encode(),
                );
                if self.ryw.mode != Consistency::None {
                    let mut g = self.db.global_token.lock();
                    *g = Some(Token::merge(*g, t, Some(t.generation)));
                }
            }
            self.ryw.reported = self.ryw.token;
        }
    }

    /// After a unit that may have written on the primary `server`: its
    /// token is fetched when needed (see the module comment). Costs the
    /// server connection nothing: it goes back to the pool at once.
    pub(super) fn wrote_on(&mut self, server: usize) {
        self.ryw.wrote = Some(Wrote {
            server,
            end: Instant::now(),
        });
    }

    /// The cluster's identity, as the monitor reads it (0: not known). The
    /// token never depends on the monitor having seen the whole topology:
    /// the timeline comes from the server's own answer.
    fn system_id(&self, server: usize) -> u64 {
        self.db
            .topology()
            .generation
            .map(|g| g.system_id)
            .or_else(|| {
                let m = self.db.monitor.as_ref()?;
                m.snapshot().servers.get(server)?.system_identifier
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_token_comes_only_from_a_primary_with_its_timeline() {
        let primary = Sample {
            standby: false,
            lsn: Lsn(0x1_0200_0060),
            flush: Some(Lsn(0x1_0200_0000)),
            timeline: Some(3),
            started: 9,
        };
        let t = token_of(primary, 7).expect("a primary's sample is a token");
        assert_eq!(t.lsn, Lsn(0x1_0200_0060));
        assert_eq!(
            t.generation,
            Generation {
                system_id: 7,
                timeline: 3
            }
        );
        // Demoted since the write: its replay position proves nothing.
        let standby = Sample {
            standby: true,
            timeline: None,
            ..primary
        };
        assert_eq!(token_of(standby, 7), None);
        // No timeline, no generation to name.
        let unnamed = Sample {
            timeline: None,
            ..primary
        };
        assert_eq!(token_of(unnamed, 7), None);
    }
}
