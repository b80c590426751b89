//! Session mode's welcome. The client owns one server for its whole
//! connection, so that server is acquired before the client is welcomed,
//! and the client is told what a direct connection would tell it: every
//! reported parameter as the server spells it once the client's startup
//! values are applied (`client_encoding=utf8` comes back `UTF8`; an invalid
//! value fails the login with the server's error), and the server's real
//! pid in BackendKeyData, so that `pg_backend_pid()` and
//! `pg_terminate_backend()` mean what they say. The secret stays
//! Causeway's own: cancels are routed by (pid, secret).

use causeway_pool::{Pool, ServerConn};
use causeway_protocol::backend;

use super::lease::Acquire;
use super::{params, Session, State};

impl Session {
    /// Acquires the session's server, applies the client's startup
    /// parameters, then sends ParameterStatus, BackendKeyData and
    /// ReadyForQuery. Runs outside client_login_timeout: waiting for a
    /// server is bounded by query_wait_timeout, as in the other modes.
    pub(super) async fn welcome_session(&mut self) -> Result<(), State> {
        if let Some(closed) = self.wait_while_paused().await {
            return Err(closed);
        }
        let server = self.db.topology().primary().unwrap_or(0);
        let pool = self.pool(server);
        let conn = match self.acquire(&pool).await {
            Ok(c) => c,
            Err(Acquire::Closed(why)) => return Err(State::Closed(why)),
            Err(Acquire::Failed(e)) => {
                self.client.fatal(e.sqlstate(), &e.to_string()).await;
                return Err(State::Closed("no server connection"));
            }
        };
        self.params = params::initial(conn.params(), &self.startup, &self.cfg).0;
        let (conn, _) = self.sync_or_replace(conn, &pool).await?;
        for (k, v) in conn.params().reported() {
            let v = self.params.get(k).unwrap_or(v);
            backend::write_parameter_status(&mut self.client.out, k, v);
        }
        self.key.repoint(conn.cancel().pid);
        backend::write_backend_key_data(&mut self.client.out, self.key.pid, &self.key.secret);
        backend::write_ready_for_query(&mut self.client.out, b'I');
        self.rare().welcomed = Some((conn, pool));
        if self.client.flush().await.is_err() {
            return Err(State::Closed("client closed connection"));
        }
        Ok(())
    }

    /// The connection [`Session::welcome_session`] acquired, for the first
    /// attachment to `pool`.
    pub(super) fn take_welcomed(&mut self, pool: &Pool) -> Option<ServerConn> {
        let welcomed = &mut self.rare.as_deref_mut()?.welcomed;
        match welcomed {
            Some(w) if w.1.key() == pool.key() => welcomed.take().map(|w| w.0),
            _ => None,
        }
    }

    /// The session ends before its first request: the welcomed connection
    /// did nothing and goes back to the pool.
    pub(super) fn release_welcomed(&mut self) {
        if let Some((conn, pool)) = self.rare.as_deref_mut().and_then(|r| r.welcomed.take()) {
            pool.release(conn);
        }
    }
}
