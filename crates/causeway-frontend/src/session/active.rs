//! The Active state: a server is attached and the pump runs; what each way
//! of ending means for the client and the server connection.

use causeway_config::PoolMode;
use causeway_protocol::sqlstate;

use super::pump::{End, RetryCause};
use super::{Attached, Retry, Session, State, SHUTDOWN_MESSAGE};
use crate::app::Phase;

impl Session {
    pub(super) async fn active(&mut self, mut att: Box<Attached>) -> State {
        att.flow.restores = !self.startup.is_empty();
        att.flow.close_idle = Some(super::database_ddl::close_idle_hook(&self.app));
        att.flow.stop_when_idle |= self.leaves_at_boundary();
        loop {
            let end = self.pump(&mut att).await;
            match end {
                End::Restore => {
                    if let Err(closed) = self.restore_startup(&mut att).await {
                        self.release(att, false).await;
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
                            self.release(att, false).await;
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
            let timer = self.timer.get_or_insert_with(super::new_timer);
            let Attached { conn, flow, .. } = &mut *att;
            // Biased (no random start: a thread-local RNG draw per poll);
            // the wake-up is seen as soon as the flow is pending.
            tokio::select! {
                biased;
                end = flow.run(&mut self.client, conn, &mut self.params, timer) => return end,
                _ = self.info.info.wake.woken() => {
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
    async fn ended(&mut self, att: Box<Attached>, end: End) -> State {
        match end {
            End::Interrupted(code, message, reason) => {
                self.release(att, false).await;
                self.client.fatal(code, message).await;
                State::Closed(reason)
            }
            End::Restore => unreachable!("handled by active()"),
            End::Release if att.flow.goodbye => {
                // Told already, together with its last ReadyForQuery.
                self.release(att, true).await;
                State::Closed("shutdown")
            }
            End::Release => {
                self.retry = Retry::default();
                self.release(att, true).await;
                State::Idle
            }
            End::Retry { cause, reusable } => self.rerun(att, cause, reusable).await,
            End::ClientGone => {
                let clean = att.flow.server_idle();
                self.release(att, clean).await;
                State::Closed("client closed connection")
            }
            End::ServerGone { clean } => self.server_gone(att, clean).await,
            End::ClientProtocol(e) => {
                // An unknown message type is caught before any of it is
                // forwarded: the server is only as busy as the messages
                // before it left it.
                let clean = matches!(e, causeway_protocol::ProtocolError::UnknownMessageType(_))
                    && att.flow.server_idle();
                self.release(att, clean).await;
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
                self.release(att, false).await;
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
                self.release(att, clean).await;
                self.client.fatal(code, what).await;
                State::Closed(what)
            }
            End::StatementModeTxn => {
                self.release(att, false).await;
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

    /// A replica failed a held read before replying: the unit is still at
    /// the front of the client buffer and nothing of its reply reached
    /// the client, so it runs again elsewhere.
    async fn rerun(&mut self, mut att: Box<Attached>, cause: RetryCause, reusable: bool) -> State {
        // Requests of the unit that were rewritten or prepared: the re-run
        // starts from the client's own bytes again.
        let reusable = reusable && att.flow.prep.queue.is_empty();
        att.flow.prep.rollback(att.conn.statements_mut());
        let server = att.server;
        tracing::info!(client = %self.client.peer, database = %self.db.name, server = %self.db.servers[server].host_port(), ?cause, "replica failed a read before replying; running it elsewhere");
        if cause != RetryCause::ReadOnly {
            self.db.suspect(server);
        }
        self.sticky = None;
        let limit = self.rerun_limit();
        self.retry.failed(server, cause, limit);
        self.release(att, reusable).await;
        State::Idle
    }

    /// The server connection was lost (`clean`: between messages).
    async fn server_gone(&mut self, mut att: Box<Attached>, clean: bool) -> State {
        if clean {
            // Whatever complete messages the server sent still reach the client.
            let ready = att.flow.server_ready();
            let pending = att.conn.buf_mut().split_to(ready);
            self.client.out.extend_from_slice(&pending);
            if att.flow.fatal_seen {
                // The server said why (57P01 terminated, ...): the client
                // hears that, as directly, and nothing more.
                let _ = self.client.flush().await;
            } else {
                self.client
                    .fatal(
                        sqlstate::CONNECTION_FAILURE,
                        "server connection lost; the current transaction (if any) did not commit",
                    )
                    .await;
            }
        }
        tracing::warn!(client = %self.client.peer, database = %self.db.name, "server connection lost");
        self.release(att, false).await;
        State::Closed("server connection lost")
    }
}
