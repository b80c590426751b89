//! Read-your-writes and monotonic reads for one session (see
//! docs/consistency.md).
//!
//! * After a transaction that may have written ran on the primary, the
//!   server connection reads `pg_current_wal_insert_lsn()` before it goes
//!   back to the pool, in a task of its own: the client already has its
//!   ReadyForQuery. The next read waits for that answer (one round trip,
//!   usually over by then).
//! * A read may use a replica whose (cached, so lower-bound) replay LSN is
//!   at or past the session's token.
//! * Monotonic reads: right after a read, only the same replica may serve
//!   the next one (replay only moves forward). Once the monitor has
//!   probed that replica after the read ended, its replay LSN then is an
//!   upper bound of what the read saw and becomes part of the floor, and
//!   the session may move.
//! * Tokens carry (system identifier, timeline): after a failover a token
//!   of the old timeline sends reads to the primary until a new one exists.

use std::time::{Duration, Instant};

use causeway_config::Consistency;
use causeway_metrics::RywStats;
use causeway_monitor::Snapshot;
use causeway_pool::{Pool, ServerConn};
use causeway_protocol::backend;
use causeway_routing::{Generation, Role, Token, Topology};
use tokio::sync::oneshot;

use super::Session;

/// The read-your-writes state of a session.
pub(super) struct Ryw {
    pub mode: Consistency,
    /// Own writes, imported tokens and resolved read floors, merged.
    pub token: Option<Token>,
    /// The LSN read after a write, in flight.
    pub pending: Option<oneshot::Receiver<Option<Token>>>,
    /// The last read (server, when it ended) whose floor is not known yet.
    pub last_read: Option<(usize, Instant)>,
    /// The last write's LSN could not be read: reads go to the primary
    /// until a new token arrives.
    pub unknown: bool,
    /// The token last sent to the client as ParameterStatus.
    pub reported: Option<Token>,
}

impl Ryw {
    pub fn new(mode: Consistency) -> Self {
        Ryw {
            mode,
            token: None,
            pending: None,
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

    /// The outcome of the write LSN read.
    pub fn settle(&mut self, t: Option<Token>, current: Option<Generation>, stats: &RywStats) {
        match t {
            Some(t) => {
                self.unknown = false;
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
    pub stale: bool,
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

impl Session {
    /// Settles the pending write token (waiting for it) and the last
    /// read's floor, then says where reads may go.
    pub(super) async fn ryw_floor(&mut self, topo: &Topology) -> Floor {
        if !self.ryw.on() {
            return Floor::default();
        }
        let current = topo.generation;
        if let Some(rx) = self.ryw.pending.take() {
            let t = match tokio::time::timeout(Duration::from_secs(5), rx).await {
                Ok(Ok(t)) => t,
                _ => None,
            };
            self.ryw.settle(t, current, &self.db.ryw);
            self.note_token();
        }
        if let Some((server, end)) = self.ryw.last_read {
            if let Some(m) = &self.db.monitor {
                if let Some(t) = resolve(&m.snapshot(), server, end) {
                    self.ryw.raise(t, current);
                    self.ryw.last_read = None;
                }
            }
        }
        if self.ryw.mode == Consistency::Global {
            if let Some(g) = *self.db.global_token.lock() {
                self.ryw.raise(g, current);
            }
        }
        let mut f = Floor {
            stale: self.ryw.unknown,
            ..Floor::default()
        };
        if let Some(t) = self.ryw.token {
            match current {
                Some(c) if c == t.generation => f.lsn = Some(t.lsn.0),
                _ => f.stale = true,
            }
        }
        if let Some((server, _)) = self.ryw.last_read {
            match topo.servers.get(server).map(|s| s.role) {
                Some(Role::Replica) => f.only = Some(server),
                // What a primary read saw is not yet bounded: the primary.
                _ => f.stale = true,
            }
        }
        f
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

    /// After a transaction that may have written on the primary: read the
    /// WAL insert position on the same connection, then give it back.
    pub(super) fn take_write_token(&mut self, mut conn: ServerConn, pool: Pool, server: usize) {
        let topo = self.db.topology();
        let generation = (topo.primary() == Some(server))
            .then_some(topo.generation)
            .flatten();
        let (tx, rx) = oneshot::channel();
        self.ryw.pending = Some(rx);
        tokio::spawn(async move {
            let r = conn
                .query_column("SELECT pg_current_wal_insert_lsn()", 0)
                .await;
            let ok = r.is_ok() && !conn.broken;
            let lsn = r
                .ok()
                .and_then(|rows| rows.into_iter().next().flatten())
                .and_then(|s| s.parse().ok());
            let _ = tx.send(
                lsn.zip(generation)
                    .map(|(lsn, generation)| Token { generation, lsn }),
            );
            if ok {
                pool.release(conn);
            }
        });
    }
}
