//! Step three of a unit of work: a server connection for it. Acquired
//! from the chosen server's pool (FIFO wait; KILL, shutdown and a client
//! that leaves are noticed), its parameters synced with the client's, the
//! cancel key pointed at it; the attachment the pump then runs.

use causeway_pool::{Pool, PoolError, ServerConn};

use super::decide::Placed;
use super::plan::Unit;
use super::pump::{Flow, RetryCause, Timeouts};
use super::rerun::Retry;
use super::{secs, Attached, Session, State};
use crate::app::Phase;

/// While it waits for a server, a client's bytes are read (to notice it
/// leaving) only up to this many.
const WAIT_READ_LIMIT: usize = 256 * 1024;

pub(super) enum Acquire {
    /// The session must end (the client left, was killed, or shutdown).
    Closed(&'static str),
    Failed(PoolError),
}

impl Session {
    /// Leases a connection of the chosen server for `unit`. Ok(None): that
    /// server could not give one and the unit may go elsewhere (`retry`
    /// says where not), or a reload replaced the database: decide again.
    pub(super) async fn lease(
        &mut self,
        unit: &Unit,
        placed: Placed,
        retry: &mut Retry,
    ) -> Result<Option<Box<Attached>>, State> {
        let server = placed.server;
        let pool = self.pool(server);
        let got = match self.acquire(&pool).await {
            // A pooled connection found dead and not replaced while its
            // parameters were synced: as a failed connect.
            Ok(conn) => match self.synced(conn, &pool).await {
                Ok(conn) => Ok(conn),
                Err(Ok(closed)) => return Err(closed),
                Err(Err(e)) => Err(Acquire::Failed(e)),
            },
            Err(e) => Err(e),
        };
        let mut conn = match got {
            Ok(conn) => conn,
            Err(Acquire::Closed(why)) => return Err(State::Closed(why)),
            Err(Acquire::Failed(PoolError::Closed)) if self.refresh_database() => {
                // A reload rebuilt the database (its servers changed):
                // route again on the new one.
                *retry = Retry::default();
                return Ok(None);
            }
            Err(Acquire::Failed(e)) => {
                // A server that cannot give a connection (a replica, or a
                // primary that is down): a read tries elsewhere.
                if super::rerun::reroutes_after_connect_failure(
                    unit.req.intent,
                    placed.replica,
                    Session::server_down(&e),
                    retry.attempts,
                    self.max_retries(),
                ) {
                    self.db.suspect(server);
                    retry.attempts += 1;
                    retry.failed(server, RetryCause::Failure, self.rerun_limit());
                    return Ok(None);
                }
                if self.cfg.log_pooler_errors {
                    tracing::warn!(client = %self.client.peer, database = %self.db.name, error = %e, "no server connection");
                }
                self.client.fatal(e.sqlstate(), &e.to_string()).await;
                return Err(State::Closed("no server connection"));
            }
        };
        if self.client.flush().await.is_err() {
            pool.release(conn);
            return Err(State::Closed("client closed connection"));
        }
        self.key.slot.attach(conn.cancel());
        self.info.info.active(conn.id(), conn.cancel().pid);
        // The same moment for both (one clock read).
        conn.info()
            .assign_at(self.info.info.id, self.info.info.request_time());
        conn.statements_mut().begin_pin();
        Ok(Some(self.attachment(unit, placed, *retry, conn, pool)))
    }

    /// The attachment the pump runs: a flow for the unit (only this unit
    /// on a replica, held for a re-run when it may be retried).
    fn attachment(
        &mut self,
        unit: &Unit,
        placed: Placed,
        mut retry: Retry,
        conn: ServerConn,
        pool: Pool,
    ) -> Box<Attached> {
        let timeouts = Timeouts {
            query: secs(self.cfg.query_timeout),
            idle_transaction: secs(self.cfg.idle_transaction_timeout),
            client_idle: secs(self.cfg.client_idle_timeout),
        };
        let prep = self.prep.take().unwrap_or_else(|| {
            Box::new(super::prepared::Prep::new(
                self.tracks_prepared(),
                self.cfg.max_prepared_statements as usize,
                self.db.statements.clone(),
            ))
        });
        let mut flow = Flow::new(
            self.mode,
            self.cfg.max_packet_size as usize,
            timeouts,
            self.db.stats.clone(),
            prep,
        );
        let Placed {
            server, replica, ..
        } = placed;
        let read = self.split && unit.req.intent.is_read();
        // An autocommit read is held so that it can run elsewhere if its
        // server fails it (the primary too: it may die under the read).
        let hold = super::rerun::holds(
            self.split,
            unit.req.intent,
            unit.len,
            retry.attempts,
            self.max_retries(),
        );
        if hold {
            retry.attempts += 1;
            self.retry = Retry {
                cause: None,
                ..retry
            };
        }
        if (replica && read && unit.len > 0) || hold {
            // Only this unit goes to the server.
            flow.limit_to_unit(unit.len, hold);
        }
        if replica && read && unit.len > 0 && self.db.router().routing.sticky_reads {
            self.sticky = u16::try_from(server).ok();
        }
        if read {
            self.db.load.start(server);
        }
        Box::new(Attached {
            conn,
            pool,
            flow,
            server,
            read,
            wrote: self.split && !unit.req.intent.is_read() && !replica && self.ryw.on(),
            // The clock is read only for a read's load.
            started: read.then(std::time::Instant::now),
        })
    }

    pub(super) fn pool(&mut self, server: usize) -> Pool {
        if let Some(p) = &self.pools[server] {
            return p.clone();
        }
        let p = self.app.databases.pool(
            &self.db,
            self.user(),
            server,
            &self.cfg,
            &self.app.secrets(),
            self.creds(),
        );
        self.pools[server] = Some(p.clone());
        p
    }

    /// After a reload replaced this session's database: switch to the new
    /// one. False when there is none (removed) or it is the same.
    pub(super) fn refresh_database(&mut self) -> bool {
        let Some(db) = self
            .app
            .databases
            .get(&self.db.name, &self.cfg, &self.app.secrets())
        else {
            return false;
        };
        if std::sync::Arc::ptr_eq(&db, &self.db) {
            return false;
        }
        tracing::info!(client = %self.client.peer, database = %db.name, "database reconfigured; session moves to the new servers");
        self.pools = vec![None; db.servers.len()];
        self.split = db.splits() && self.mode != causeway_config::PoolMode::Session;
        self.classifier = db.router().classifier.clone();
        if let Some(p) = &mut self.prep {
            // Statement ids are per database: the client's names are kept
            // and re-prepared on the new servers.
            p.registry = db.statements.clone();
        }
        self.sticky = None;
        self.retry = Retry::default();
        self.db = db;
        true
    }

    fn max_retries(&self) -> u32 {
        self.db.router().routing.read_retries
    }

    /// Waits for a server connection, noticing a client that gives up.
    pub(super) async fn acquire(&mut self, pool: &Pool) -> Result<ServerConn, Acquire> {
        if let Some(conn) = self.take_welcomed(pool) {
            return Ok(conn);
        }
        self.info.info.waiting();
        let wait_start = std::time::Instant::now();
        let acquire = pool.acquire();
        tokio::pin!(acquire);
        let r = loop {
            // Biased: no random start (a thread-local RNG draw per poll).
            tokio::select! {
                biased;
                r = &mut acquire => break r,
                _ = self.info.info.wake.woken() => {
                    if self.info.info.is_killed() || self.app.phase() == Phase::Stopping {
                        return Err(Acquire::Closed("killed or shut down while waiting"));
                    }
                }
                // Read on only while the buffer is small: what a client
                // sends while it waits is not held beyond that.
                r = self.client.read_more(), if self.client.buf.len() < WAIT_READ_LIMIT => {
                    if matches!(r, Ok(0) | Err(_)) {
                        return Err(Acquire::Closed("client closed while waiting"));
                    }
                }
            }
        };
        match r {
            Ok(c) => {
                self.db.stats.record_wait(wait_start.elapsed());
                Ok(c)
            }
            Err(e) => Err(Acquire::Failed(e)),
        }
    }
}
