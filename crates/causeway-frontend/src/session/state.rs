//! Session state in transaction and statement mode: what a client's unit
//! of work may leave on its server besides the reported parameters.
//!
//! - Carried: `search_path` and `role` (`SET ROLE`), which PostgreSQL 15
//!   does not report, are read back from the server when a unit ran a SET,
//!   RESET or DISCARD that mentions them, and re-applied like the reported
//!   parameters wherever the client runs next (a `RESET` leftovers of
//!   another client's `SET ROLE` never reach this one).
//! - Pinned (with `pin_session_state`): state no other server can be given
//!   (temporary tables, LISTEN, session advisory locks, `SET SESSION
//!   AUTHORIZATION`, WITH HOLD cursors) keeps the client on its server
//!   until it is gone (DISCARD TEMP, UNLISTEN *, the unlock, RESET SESSION
//!   AUTHORIZATION, CLOSE), instead of leaking to the next client. Pins
//!   are counted per pool (SHOW POOLS `cl_pinned`, `causeway_client_pinned`).
//!
//! Both look at the server only when a unit gave a reason to (a command
//! tag or words in its text), so ordinary transactions cost nothing.

use causeway_pool::{ServerConn, ServerError};
use causeway_protocol::frontend::quote_literal;

use super::{keywords, Attached, Session};

/// Words that mention a carried parameter (or RESET/DISCARD).
const PARAM_WORDS: u16 = keywords::SEARCH_PATH
    | keywords::ROLE
    | keywords::RESET
    | keywords::DISCARD
    | keywords::AUTHORIZATION;
/// Words that mention advisory locks or temporary tables.
const STATE_WORDS: u16 = keywords::ADVISORY | keywords::TEMP;

/// Parameters carried for the client though the server does not report
/// them (read back after a SET).
pub const READ_BACK: &[&str] = &["role", "search_path"];

/// What the units of an attachment did that may leave session state.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hints {
    /// A SET / RESET / DISCARD completed.
    set: bool,
    /// A command that creates or drops pinnable state completed (LISTEN,
    /// CREATE TABLE, DECLARE CURSOR, CLOSE, DISCARD, SET, ...).
    state_tag: bool,
    /// The client's text mentioned a carried parameter (or RESET/DISCARD).
    param_words: bool,
    /// The client's text mentioned advisory locks or temporary tables.
    state_words: bool,
    /// Some client text was not looked at (untracked mode).
    unread: bool,
}

impl Hints {
    /// A CommandComplete tag (body, NUL included).
    pub fn tag(&mut self, body: &[u8]) {
        let tag = body.strip_suffix(b"\0").unwrap_or(body);
        let word = tag.split(|b| *b == b' ').next().unwrap_or(tag);
        match word {
            b"SET" | b"RESET" | b"DISCARD" => {
                self.set = true;
                self.state_tag = true;
            }
            b"LISTEN" | b"UNLISTEN" | b"DECLARE" | b"CLOSE" => self.state_tag = true,
            b"CREATE" | b"DROP" => self.state_tag |= tag.ends_with(b"TABLE"),
            _ => {}
        }
    }

    /// A Query or Parse the client sent (its whole frame).
    pub fn text(&mut self, frame: &[u8]) {
        // Words already seen need not be looked for again.
        let want = if self.param_words { 0 } else { PARAM_WORDS }
            | if self.state_words { 0 } else { STATE_WORDS };
        if want != 0 {
            self.words(keywords::find(frame, want));
        }
    }

    /// The words a Query or Parse contains (a `keywords` mask, for a
    /// caller that looked already).
    pub fn words(&mut self, found: u16) {
        self.param_words |= found & PARAM_WORDS != 0;
        self.state_words |= found & STATE_WORDS != 0;
    }

    /// Client text went by unread.
    pub fn unread(&mut self) {
        self.unread = true;
    }

    /// Whether to read the carried parameters back.
    pub fn read_back(&self) -> bool {
        self.set && (self.param_words || self.unread)
    }

    /// Whether pinnable state may have appeared or gone.
    pub fn check_pin(&self) -> bool {
        self.state_tag || self.state_words
    }
}

impl Session {
    /// The end of a transaction-mode unit: carries what can be carried and
    /// decides whether the client stays pinned to its server. True: keep
    /// the server (pinned). Err: the server failed (it is closed).
    pub(super) async fn settle_state(&mut self, att: &mut Attached) -> Result<bool, ServerError> {
        let hints = std::mem::take(&mut att.flow.hints);
        if hints.read_back() {
            self.read_back(&mut att.conn).await?;
        }
        if !self.cfg.pin_session_state {
            return Ok(false);
        }
        if !hints.check_pin() {
            return Ok(self.pin.is_some());
        }
        let login_user = att.pool.login().user;
        let reasons = pinnable_state(&mut att.conn, &login_user).await?;
        match (reasons.is_empty(), self.pin.is_some()) {
            (false, false) => {
                tracing::info!(client = %self.client.peer, database = %self.db.name, state = %reasons, "session state that cannot move to another server: client pinned to its server (pin_session_state)");
                self.pin = Some(att.pool.pin());
            }
            (true, true) => {
                tracing::info!(client = %self.client.peer, database = %self.db.name, "session state gone: client unpinned");
                self.pin = None;
            }
            _ => {}
        }
        Ok(self.pin.is_some())
    }

    /// Reads `search_path` and `role` back: the client's own values (set
    /// in its session) are carried; defaults are forgotten.
    async fn read_back(&mut self, conn: &mut ServerConn) -> Result<(), ServerError> {
        // `role` is not in pg_settings (GUC_NO_SHOW_ALL): current_setting
        // says 'none' when no SET ROLE is in force.
        const SQL: &str = "SELECT 'search_path=' || setting FROM pg_catalog.pg_settings \
             WHERE source = 'session' AND name = 'search_path' \
             UNION ALL SELECT 'role=' || pg_catalog.current_setting('role') \
             WHERE pg_catalog.current_setting('role') <> 'none'";
        let rows = conn.internal_query(SQL, Some(0)).await?.rows;
        for name in READ_BACK {
            let value = rows.iter().flatten().find_map(|r| {
                r.split_once('=')
                    .filter(|(k, _)| k == name)
                    .map(|(_, v)| v.to_string())
            });
            match value {
                Some(v) => {
                    self.params.set(name, &v, false);
                    conn.params_mut().set(name, &v, false);
                }
                None => {
                    self.params.remove(name);
                    conn.params_mut().remove(name);
                }
            }
        }
        conn.set_synced_fp(self.params.fingerprint());
        Ok(())
    }
}

/// What session state the server holds that no other server could be
/// given (empty: none).
async fn pinnable_state(conn: &mut ServerConn, login_user: &str) -> Result<String, ServerError> {
    let mut sql = String::from(
        "SELECT concat_ws(', ', \
         CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN 'temporary tables' END, \
         CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_listening_channels()) THEN 'LISTEN' END, \
         CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) THEN 'session advisory locks' END, \
         CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_cursors WHERE is_holdable) THEN 'WITH HOLD cursors' END, \
         CASE WHEN session_user <> ",
    );
    quote_literal(&mut sql, login_user);
    sql.push_str(" THEN 'SET SESSION AUTHORIZATION' END)");
    let rows = conn.internal_query(&sql, Some(0)).await?.rows;
    Ok(rows.into_iter().flatten().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_from_tags_and_text() {
        let mut h = Hints::default();
        h.tag(b"SELECT 1\0");
        h.text(b"Q\0\0\0\x10SELECT 1 FROM t");
        assert!(!h.read_back() && !h.check_pin());
        // SET LOCAL statement_timeout: a SET, but nothing carried.
        h.tag(b"SET\0");
        h.text(b"SET LOCAL statement_timeout = 5");
        assert!(!h.read_back());
        assert!(h.check_pin(), "SET SESSION AUTHORIZATION is a SET");
        h.text(b"set Search_Path = x");
        assert!(h.read_back());

        let mut h = Hints::default();
        h.text(b"SELECT pg_advisory_lock(1)");
        assert!(h.check_pin());
        let mut h = Hints::default();
        h.text(b"CREATE TEMP TABLE t AS SELECT 1");
        assert!(h.check_pin());
        let mut h = Hints::default();
        h.tag(b"CREATE TABLE\0");
        assert!(h.check_pin());
        let mut h = Hints::default();
        h.tag(b"RESET\0");
        h.unread();
        assert!(h.read_back());
    }
}
