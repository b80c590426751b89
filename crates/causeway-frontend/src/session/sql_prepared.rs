//! SQL-level prepared statements (`PREPARE` / `EXECUTE` / `DEALLOCATE`)
//! in transaction and statement mode, per client, like protocol-level ones.
//!
//! A client's single-statement `PREPARE name ...` is remembered (name ->
//! its text). When a later Query starts with a statement naming it
//! (`EXECUTE`, `DEALLOCATE`, or `PREPARE` again) on a server that does not
//! hold it, the PREPARE is sent first as a hidden Query (its replies never
//! reach the client), so the statement runs, or fails, as it would on the
//! client's own PostgreSQL session. At release Causeway deallocates the
//! names it prepared on that server, so no other client can run them.
//!
//! `EXECUTE name` / `DEALLOCATE name` of a protocol-level statement (a
//! driver's Parse, renamed `causeway_<n>` on the servers) are rewritten to
//! the server's name, the statement prepared first if needed.

use std::sync::Arc;

use causeway_pool::StatementCache;
use causeway_protocol::frontend::{query_text, write_query, write_sync};
use causeway_protocol::HEADER_LEN;

use super::keywords;
use super::prepared::{ClientAction, Pending, Prep, ServerName, Stmt};
use super::sqlwords::{statements, Word, Words};

impl Prep {
    /// A Query whose header starts `avail` (`total` bytes long), with
    /// tracking on. Each of its statements is looked at. `words`: the
    /// `keywords` its text contains, if the caller looked already.
    pub fn query(
        &mut self,
        avail: &[u8],
        total: usize,
        words: Option<u16>,
        cache: &mut StatementCache,
    ) -> ClientAction {
        // The cheap test first: a Query that does not mention them is
        // passed on; one too large to hold is passed on unread.
        if total > MAX_INSPECTED {
            return ClientAction::Pass;
        }
        let Some(frame) = avail.get(..total) else {
            return ClientAction::NeedMore;
        };
        let words = words.unwrap_or_else(|| keywords::find(&frame[HEADER_LEN..], PREPARED_WORDS));
        if words & PREPARED_WORDS == 0 {
            return ClientAction::Pass;
        }
        let Some(sql) = query_text(&frame[HEADER_LEN..]).and_then(|t| std::str::from_utf8(t).ok())
        else {
            return ClientAction::Pass;
        };
        let mut renames = Vec::new();
        for (a, b) in statements(sql).unwrap_or_default() {
            self.statement(sql, a, b, &mut renames, cache);
        }
        if renames.is_empty() {
            return match self.stage.is_empty() {
                true => ClientAction::Pass,
                false => ClientAction::Took(0),
            };
        }
        // Driver statements named in SQL: the server knows them by their
        // server names.
        let mut text = String::with_capacity(sql.len() + 16 * renames.len());
        let mut at = 0;
        for (start, end, id) in renames {
            text.push_str(&sql[at..start]);
            text.push_str(std::str::from_utf8(ServerName::new(id).as_bytes()).unwrap_or_default());
            at = end;
        }
        text.push_str(&sql[at..]);
        write_query(&mut self.stage, &text);
        ClientAction::Took(total)
    }

    /// One statement (`sql[a..b]`): PREPARE, EXECUTE or DEALLOCATE of a
    /// name the client holds makes sure the server holds it; driver
    /// statements' names are queued in `renames` (byte span, statement id).
    fn statement(
        &mut self,
        sql: &str,
        a: usize,
        b: usize,
        renames: &mut Vec<(usize, usize, u64)>,
        cache: &mut StatementCache,
    ) {
        let text = &sql[a..b];
        let mut w = Words::new(text);
        let Some(verb) = w.next() else { return };
        let mut start = w.offset();
        let mut name = w.next();
        if verb.is("deallocate") && name.as_ref().is_some_and(|n| n.is("prepare")) {
            start = w.offset();
            name = w.next();
        }
        let span = (a + start, a + w.pos());
        let Some(name) = name.as_ref().and_then(Word::name) else {
            return;
        };
        if verb.is("prepare") {
            if self.sql_text.contains_key(name) {
                // The server then says 42P05, as directly.
                self.recreate(name);
            } else if self.sql_text_bytes + text.len() <= MAX_SQL_TEXT_BYTES {
                self.sql_recognized += 1;
                self.sql_text_bytes += text.len();
                self.sql_text.insert(name.to_string(), text.trim().into());
                self.sql_here.push(name.to_string());
            }
            // Past the budget the PREPARE runs untracked: as in PgBouncer it
            // lives until the transaction ends (the completion count sees
            // it, and the server is cleared at release).
        } else if verb.is("execute") || (verb.is("deallocate") && name != "all") {
            let deallocate = verb.is("deallocate");
            if self.sql_text.contains_key(name) {
                self.recreate(name);
                if deallocate {
                    if let Some(t) = self.sql_text.remove(name) {
                        self.sql_text_bytes = self.sql_text_bytes.saturating_sub(t.len());
                    }
                    self.sql_here.retain(|n| n != name);
                }
            } else if let Some(stmt) = self.lookup(name.as_bytes()).cloned() {
                self.driver_statement(&stmt, deallocate, cache);
                if deallocate {
                    self.map.remove(name.as_bytes());
                }
                renames.push((span.0, span.1, stmt.id));
            }
        }
    }

    /// Sends the client's PREPARE for `name` first, hidden, unless the
    /// attached server already holds it.
    fn recreate(&mut self, name: &str) {
        if self.sql_here.iter().any(|n| n == name) {
            return;
        }
        let Some(text) = self.sql_text.get(name) else {
            return;
        };
        write_query(&mut self.stage, text);
        self.queue.push_back(Pending::Hidden);
        self.sql_here.push(name.to_string());
    }

    /// A driver statement named in SQL: prepared first (hidden Parse and
    /// Sync) if the server lacks it; a DEALLOCATE removes it from there.
    fn driver_statement(&mut self, stmt: &Arc<Stmt>, deallocate: bool, cache: &mut StatementCache) {
        let before = self.stage.len();
        self.ensure(cache, stmt);
        if self.stage.len() > before {
            write_sync(&mut self.stage);
            self.queue.push_back(Pending::Hidden);
        }
        if deallocate {
            cache.remove(stmt.id);
        }
    }
}

/// SQL PREPARE texts kept per client to re-create them on another server
/// (a client holding more gets PgBouncer's behaviour for the rest: they
/// end with the transaction).
pub const MAX_SQL_TEXT_BYTES: usize = 1024 * 1024;

/// Queries longer than this are not looked at (they are forwarded as they
/// arrive, never held whole): SQL prepared statements are short.
const MAX_INSPECTED: usize = 64 * 1024;

/// PREPARE, EXECUTE or DEALLOCATE ("dealloc": its first 7 letters): a
/// Query that mentions none stays off the slow path.
const PREPARED_WORDS: u16 = keywords::PREPARE | keywords::EXECUTE | keywords::DEALLOC;

impl Prep {
    /// The attachment ends: the statement that clears the client's SQL
    /// prepared statements from the server (DEALLOCATE of each name it
    /// holds, or DEALLOCATE ALL if a PREPARE escaped tracking; `true`),
    /// if any.
    pub fn release_sql(&mut self) -> Option<(String, bool)> {
        let untracked = self.sql_completed > self.sql_recognized;
        self.sql_completed = 0;
        self.sql_recognized = 0;
        let here = std::mem::take(&mut self.sql_here);
        if untracked {
            return Some(("DEALLOCATE ALL".into(), true));
        }
        if here.is_empty() {
            return None;
        }
        let mut sql = String::new();
        for name in here {
            sql.push_str("DEALLOCATE \"");
            sql.push_str(&name.replace('"', "\"\""));
            sql.push_str("\";");
        }
        Some((sql, false))
    }
}
