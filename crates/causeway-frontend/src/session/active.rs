//! The Active state: a server is attached and the pump runs; what each way
//! of ending means for the client and the server connection.

use causeway_config::PoolMode;
use causeway_protocol::sqlstate;

use super::pump::{End, RetryCause};
use super::{Attached, Retry, Session, State, SHUTDOWN_MESSAGE};
use crate::app::Phase;

impl Session {
    pub(super) async fn active(&mut self, mut att: Attached) -> State {
        att.flow.restores = !self.startup.is_empty();
        att.flow.close_idle = Some(self.close_idle.clone());
        att.flow.stop_when_idle |= self.leaves_at_boundary();
        loop {
            let end = self.pump(&mut att).await;
            match end {
                End::Restore => {
                    if let Err(closed) = self.restore_startup(&mut att).await {
                        self.detach(att, false).await;
                        return closed;
                    }
                }
                End::Release
                    if !att.flow.stop_when_idle
                        || (!att.flow.goodbye && self.mode != PoolMode::Session) =>
                {
                    match self.settle_state(&mut att).await {
                        Ok(true) => att.flow.stay(),
                        Ok(false) => return self.ended(att, end).await,
                        Err(e) => {
                            tracing::warn!(client = %self.client.peer, error = %e, "server connection failed after the transaction; closed");
                            self.pin = None;
                            self.detach(att, false).await;
                            return State::Idle;
                        }
                    }
                }
                _ => return self.ended(att, end).await,
            }
        }
    }

    /// Runs the flow until it ends or the session is interrupted (KILL,
    /// shutdown).
    async fn pump(&mut self, att: &mut Attached) -> End {
        loop {
            let Attached { conn, flow, .. } = &mut *att;
            tokio::select! {
                end = flow.run(&mut self.client, conn, &mut self.params, &mut self.timer) => return end,
                _ = self.info.info.wake.notified() => {
                    if self.info.info.is_killed() {
                        return End::Interrupted(sqlstate::ADMIN_SHUTDOWN, "client killed by the administrator", "killed");
                    }
                    let stopping = self.app.phase() == Phase::Stopping;
                    let leaves = self.leaves_at_boundary();
                    if stopping || (leaves && flow.server_idle() && flow.server_ready() == 0) {
                        return End::Interrupted(sqlstate::ADMIN_SHUTDOWN, SHUTDOWN_MESSAGE, "shutdown");
                    }
                    // Busy now: leave at the end of the transaction.
                    flow.stop_when_idle |= leaves;
                }
            }
        }
    }

    /// What each way of ending an attachment means for the client and the
    /// server connection.
    async fn ended(&mut self, mut att: Attached, end: End) -> State {
        match end {
            End::Interrupted(code, message, reason) => {
                self.detach(att, false).await;
                self.client.fatal(code, message).await;
                State::Closed(reason)
            }
            End::Restore => unreachable!("handled by active()"),
            End::Release if att.flow.goodbye => {
                // Told already, together with its last ReadyForQuery.
                self.detach(att, true).await;
                State::Closed("shutdown")
            }
            End::Release => {
                self.retry = Retry::default();
                self.detach(att, true).await;
                State::Idle
            }
            End::Retry { cause, reusable } => {
                // Requests of the unit that were rewritten or prepared: the
                // re-run starts from the client's own bytes again.
                let reusable = reusable && att.flow.prep.queue.is_empty();
                att.flow.prep.rollback(&mut att.conn.statements);
                // The unit is still at the front of the client buffer and
                // nothing of its reply reached the client: run it again.
                let server = att.server;
                tracing::info!(client = %self.client.peer, database = %self.db.name, server = %self.db.servers[server].host_port(), ?cause, "replica failed a read before replying; running it elsewhere");
                if cause != RetryCause::ReadOnly {
                    self.db.suspect(server);
                }
                self.sticky = None;
                self.retry.failed(server, cause);
                self.detach(att, reusable).await;
                State::Idle
            }
            End::ClientGone => {
                let clean = att.flow.server_idle();
                self.detach(att, clean).await;
                State::Closed("client closed connection")
            }
            End::ServerGone { clean } => {
                if clean {
                    // Whatever complete messages the server sent still reach the client.
                    let ready = att.flow.server_ready();
                    let pending = att.conn.buf.split_to(ready);
                    self.client.out.extend_from_slice(&pending);
                    if att.flow.fatal_seen {
                        // The server said why (57P01 terminated, ...): the
                        // client hears that, as directly, and nothing more.
                        let _ = self.client.flush().await;
                    } else {
                        self.client
                            .fatal(sqlstate::CONNECTION_FAILURE, "server connection lost; the current transaction (if any) did not commit")
                            .await;
                    }
                }
                tracing::warn!(client = %self.client.peer, database = %self.db.name, "server connection lost");
                self.detach(att, false).await;
                State::Closed("server connection lost")
            }
            End::ClientProtocol(e) => {
                // An unknown message type is caught before any of it is
                // forwarded: the server is only as busy as the messages
                // before it left it.
                let clean = matches!(e, causeway_protocol::ProtocolError::UnknownMessageType(_))
                    && att.flow.server_idle();
                self.detach(att, clean).await;
                self.client
                    .fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid message from client: {e}"),
                    )
                    .await;
                State::Closed("client protocol violation")
            }
            End::ServerProtocol(e) => {
                tracing::error!(error = %e, "invalid message from server");
                self.detach(att, false).await;
                self.client
                    .fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid message from server: {e}"),
                    )
                    .await;
                State::Closed("server protocol violation")
            }
            End::Timeout(code, what) => {
                let clean = att.flow.server_idle();
                self.detach(att, clean).await;
                self.client.fatal(code, what).await;
                State::Closed(what)
            }
            End::StatementModeTxn => {
                self.detach(att, false).await;
                self.client
                    .fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "transaction blocks not allowed in statement pooling mode",
                    )
                    .await;
                State::Closed("transaction in statement mode")
            }
        }
    }

    /// Ends an attachment: the cancel key stops pointing at the server
    /// first, then the server goes back to the pool (reset in session mode)
    /// or, if it may hold state we cannot vouch for, is closed.
    async fn detach(&mut self, att: Attached, reusable: bool) {
        self.key.slot.detach();
        self.info.info.idle();
        let Attached {
            mut conn,
            pool,
            mut flow,
            server,
            read,
            wrote,
            started,
        } = att;
        flow.flush_stats();
        let mut prep = flow.prep;
        // Requests still owed a reply: the connection is closed below.
        prep.queue.clear();
        prep.out.clear();
        let sql_release = prep.release_sql();
        self.info.info.set_prepared(prep.map.len());
        conn.info.set_prepared(conn.statements.len());
        self.prep = Some(prep);
        if read {
            self.db.load.finish(server, started.elapsed());
            self.read_ended(server);
        }
        // A pinned client leaves (or loses its server): the state that
        // pinned it must not stay behind for the next client.
        let pinned = self.pin.take().is_some();
        if flow.listened && reusable && !pinned {
            // LISTEN outside session mode: the registration would stay on
            // the pooled connection and its notifications reach whichever
            // client gets it next.
            tracing::info!(client = %self.client.peer, database = %self.db.name, "LISTEN in {:?} pool mode: notifications are not delivered; closing the server connection instead of pooling it", self.mode);
        }
        if !reusable || (flow.listened && !pinned) {
            return; // dropping closes it and frees its slot
        }
        let reset = self.mode == PoolMode::Session || self.cfg.server_reset_query_always || pinned;
        if pinned && self.cfg.server_reset_query.is_empty() {
            return; // nothing would clear its state: closed
        }
        if reset && !self.cfg.server_reset_query.is_empty() {
            if conn
                .simple_query(&self.cfg.server_reset_query)
                .await
                .is_err()
            {
                return;
            }
            conn.after_reset();
        }
        if let Some((sql, all)) = sql_release.filter(|_| self.mode != PoolMode::Session) {
            // SQL PREPARE in transaction mode: the client's statements leave
            // with it (it gets them back wherever it next runs them); no
            // later client may EXECUTE them by mistake.
            let mut all = all;
            if let Err(e) = conn.simple_query(&sql).await {
                // One of them was never created (its PREPARE failed):
                // clear them all instead.
                if !matches!(e, causeway_pool::ServerError::Query { .. })
                    || conn.simple_query("DEALLOCATE ALL").await.is_err()
                {
                    return;
                }
                all = true;
            }
            if all {
                conn.statements.clear();
                conn.info.set_prepared(0);
            }
        }
        if wrote {
            self.take_write_token(conn, pool, server);
            return;
        }
        pool.release(conn);
    }
}
