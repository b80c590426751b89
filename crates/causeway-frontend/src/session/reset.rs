//! RESET restores what the client asked for at startup. PostgreSQL resets
//! a parameter to its value at session start, which for a pooled server
//! connection is the pooler's login, not the client's StartupMessage (that
//! was applied with SET). So when a RESET or DISCARD ALL has run and the
//! server is idle, its ReadyForQuery is held while the client's startup
//! values are set again (only those the RESET reverted: their source is no
//! longer `session`); the ParameterStatus messages this produces are put in
//! front of the ReadyForQuery, so the client ends up told what a direct
//! connection would have told it.

use bytes::BytesMut;
use causeway_protocol::{backend, frontend::quote_literal};

use super::{Attached, Session, State};

impl Session {
    pub(super) async fn restore_startup(&mut self, att: &mut Attached) -> Result<(), State> {
        // The held ReadyForQuery (and anything after it).
        let held = att.conn.buf_mut().split();
        let sql = restore_sql(&self.startup);
        let changed = match att.conn.internal_query(&sql, None).await {
            Ok(r) if !att.conn.is_broken() => r.changed,
            Ok(_) | Err(_) => {
                att.conn.mark_broken();
                self.client
                    .fatal(
                        causeway_protocol::sqlstate::CONNECTION_FAILURE,
                        "could not restore session parameters after RESET",
                    )
                    .await;
                return Err(State::Closed("restore after RESET failed"));
            }
        };
        let mut buf = BytesMut::with_capacity(held.len() + 64 * changed.len());
        for (k, v) in &changed {
            backend::write_parameter_status(&mut buf, k, v);
        }
        buf.extend_from_slice(&held);
        *att.conn.buf_mut() = buf;
        att.flow.restored();
        Ok(())
    }
}

/// Sets each startup value whose parameter a RESET reverted (its source is
/// no longer `session`); values the client set since stay.
fn restore_sql<K: AsRef<str>, V: AsRef<str>>(startup: &[(K, V)]) -> String {
    let mut sql =
        String::from("SELECT pg_catalog.set_config(s.name, v.setting, false) FROM (VALUES ");
    for (i, (k, v)) in startup.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        quote_literal(&mut sql, k.as_ref());
        sql.push(',');
        quote_literal(&mut sql, v.as_ref());
        sql.push(')');
    }
    sql.push_str(
        ") AS v(name, setting) JOIN pg_catalog.pg_settings s ON lower(s.name) = lower(v.name) WHERE s.source <> 'session'",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_only_what_reset_reverted() {
        let sql = restore_sql(&[("DateStyle", "ISO, DMY"), ("application_name", "it's")]);
        assert!(
            sql.contains("('DateStyle','ISO, DMY'),('application_name','it''s')"),
            "{sql}"
        );
        assert!(sql.ends_with("WHERE s.source <> 'session'"));
    }
}
