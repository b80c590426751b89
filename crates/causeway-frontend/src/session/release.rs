//! The last step of a unit of work: the attachment ends. The cancel key
//! stops pointing at the server first; the flow's stats are counted; the
//! server goes back to the pool (reset in session mode, the client's SQL
//! prepared statements cleared in transaction mode) or, if it may hold
//! state Causeway cannot vouch for, is closed; after a write, the session
//! notes it (its read-your-writes token is fetched when needed, see
//! consistency.rs).

use causeway_config::PoolMode;
use causeway_pool::{ServerConn, ServerError};

use super::{Attached, Session};

impl Session {
    /// Ends an attachment (`reusable`: the server is idle and clean as far
    /// as the flow knows).
    pub(super) async fn release(&mut self, att: Box<Attached>, reusable: bool) {
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
        } = *att;
        flow.flush_stats();
        let mut prep = flow.prep;
        // Requests still owed a reply: the connection is closed below.
        prep.queue.clear();
        prep.out.clear();
        let sql_release = prep.release_sql();
        self.info.info.set_prepared(prep.map.len());
        conn.info().set_prepared(conn.statements().len());
        self.prep = Some(prep);
        if let Some(started) = started.filter(|_| read) {
            self.db.load.finish(server, started.elapsed());
            self.read_ended(server);
        }
        if wrote {
            // Whatever becomes of the connection: a write may have
            // committed, and the next read must see it.
            self.wrote_on(server);
        }
        if !self
            .clean_for_pool(&mut conn, reusable, flow.listened)
            .await
        {
            return; // dropping closes it and frees its slot
        }
        if let Some((sql, all)) = sql_release.filter(|_| self.mode != PoolMode::Session) {
            if !forget_sql_prepared(&mut conn, &sql, all).await {
                return;
            }
        }
        pool.release(conn);
    }

    /// Whether the server may go back to the pool; runs the reset query
    /// when the session's state must not reach the next client.
    async fn clean_for_pool(
        &mut self,
        conn: &mut ServerConn,
        reusable: bool,
        listened: bool,
    ) -> bool {
        // A pinned client leaves (or loses its server): the state that
        // pinned it must not stay behind for the next client.
        let pinned = self.pin.take().is_some();
        if listened && reusable && !pinned {
            // LISTEN outside session mode: the registration would stay on
            // the pooled connection and its notifications reach whichever
            // client gets it next.
            tracing::info!(client = %self.client.peer, database = %self.db.name, "LISTEN in {:?} pool mode: notifications are not delivered; closing the server connection instead of pooling it", self.mode);
        }
        if !reusable || (listened && !pinned) {
            return false;
        }
        let reset = self.mode == PoolMode::Session || self.cfg.server_reset_query_always || pinned;
        if pinned && self.cfg.server_reset_query.is_empty() {
            return false; // nothing would clear its state: closed
        }
        if reset && !self.cfg.server_reset_query.is_empty() {
            if conn
                .internal_query(&self.cfg.server_reset_query, None)
                .await
                .is_err()
            {
                return false;
            }
            conn.after_reset();
        }
        true
    }
}

/// SQL PREPARE in transaction mode: the client's statements leave with it
/// (it gets them back wherever it next runs them); no later client may
/// EXECUTE them by mistake. False: the server must be closed.
async fn forget_sql_prepared(conn: &mut ServerConn, sql: &str, mut all: bool) -> bool {
    if let Err(e) = conn.internal_query(sql, None).await {
        // One of them was never created (its PREPARE failed): clear them
        // all instead.
        if !matches!(e, ServerError::Query { .. })
            || conn.internal_query("DEALLOCATE ALL", None).await.is_err()
        {
            return false;
        }
        all = true;
    }
    if all {
        conn.statements_mut().clear();
        conn.info().set_prepared(0);
    }
    true
}
