//! Statements that need a database nobody is connected to (DROP DATABASE,
//! ...): the idle pooled connections to that database are closed before
//! such a statement is forwarded (see database_ddl.rs).

use std::sync::Arc;

use causeway_protocol::HEADER_LEN;

use crate::session::database_ddl;
use crate::session::prepared::MAX_HELD;

/// Closes the idle pooled connections to a database (by its name on the
/// servers).
pub type CloseIdle = Arc<dyn Fn(&str) + Send + Sync>;

/// A Query or Parse whose header was just read (`avail` starts with it,
/// `len` is its length field): false if more of it must be read before it
/// can be judged; else the idle connections its statement needs closed
/// are closed.
pub fn checked(close: &CloseIdle, avail: &[u8], tag: u8, len: usize) -> bool {
    let body = &avail[HEADER_LEN.min(avail.len())..avail.len().min(len + 1)];
    // Parse: the statement name comes first.
    let sql_start = match tag {
        b'P' => match body.iter().position(|b| *b == 0) {
            Some(n) => &body[n + 1..],
            // Name incomplete: read on (a name that long is refused later).
            None => return avail.len() > len || avail.len() >= MAX_HELD,
        },
        _ => body,
    };
    if !sql_start.is_empty() && !database_ddl::candidate(sql_start) {
        return true;
    }
    // A long statement is judged by its first MAX_HELD bytes (the
    // database name comes within its first words).
    let Some(frame) = avail.get(..(len + 1).min(MAX_HELD)) else {
        return false;
    };
    let body = &frame[HEADER_LEN..];
    let sql = match tag {
        b'P' => body.iter().position(|b| *b == 0).map(|n| &body[n + 1..]),
        _ => Some(body),
    };
    if let Some(db) = sql
        .map(|q| q.split(|b| *b == 0).next().unwrap_or(q))
        .and_then(utf8_prefix)
        .and_then(database_ddl::target)
    {
        close(&db);
    }
    true
}

/// The longest valid UTF-8 prefix of `b` (a text cut at a byte count may
/// end inside a character).
fn utf8_prefix(b: &[u8]) -> Option<&str> {
    match std::str::from_utf8(b) {
        Ok(s) => Some(s),
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).ok(),
    }
}
