//! What a server reply becomes on its way to the client: matched to the
//! request that is owed it, relabelled, replaced or hidden.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use causeway_pool::StatementCache;
use causeway_protocol::backend;

use super::{Absent, Pending, Prep, ServerAction, Stmt};

impl Prep {
    /// A reply from the server (`body`: its body). For `Replace`, the new
    /// frame is in `stage`.
    pub fn server(&mut self, tag: u8, body: &[u8], cache: &mut StatementCache) -> ServerAction {
        if matches!(self.queue.front(), Some(Pending::Hidden)) {
            if tag == b'Z' {
                self.queue.pop_front();
            }
            return ServerAction::Swallow;
        }
        match tag {
            b'1' => self.parse_complete(),
            b'2' => {
                if matches!(
                    self.queue.front(),
                    Some(Pending::Bind { .. } | Pending::Missing { .. })
                ) {
                    self.queue.pop_front();
                }
                ServerAction::Forward
            }
            b'3' => self.close_complete(),
            b'T' | b'n' => {
                if matches!(
                    self.queue.front(),
                    Some(Pending::Describe { .. } | Pending::Missing { .. })
                ) {
                    self.queue.pop_front();
                }
                ServerAction::Forward
            }
            b'C' | b'I' | b's' => {
                if tag == b'C' {
                    self.command_complete(body, cache);
                }
                if matches!(self.queue.front(), Some(Pending::Execute)) {
                    self.queue.pop_front();
                }
                ServerAction::Forward
            }
            b'Z' => self.ready_for_query(cache),
            b'E' => self.error(body, cache),
            _ => ServerAction::Forward,
        }
    }

    /// ParseComplete: of an injected Parse (hidden) or the client's.
    fn parse_complete(&mut self) -> ServerAction {
        match self.queue.front() {
            Some(Pending::Parse { hide, stmt, .. }) => {
                let hide = *hide;
                if let Some(s) = stmt {
                    s.verified.store(true, Ordering::Relaxed);
                }
                self.queue.pop_front();
                if hide {
                    ServerAction::Swallow
                } else {
                    ServerAction::Forward
                }
            }
            Some(Pending::Dup { .. }) => {
                // Cannot happen (the Parse is invalid SQL); keep step.
                self.queue.pop_front();
                ServerAction::Forward
            }
            _ => ServerAction::Forward,
        }
    }

    /// CloseComplete: of an evicting Close (hidden), of the no-op Close
    /// that answers a client Parse (relabelled), or the client's.
    fn close_complete(&mut self) -> ServerAction {
        match self.queue.front() {
            Some(Pending::Close { evicted, .. }) => {
                let hide = *evicted != 0;
                self.queue.pop_front();
                if hide {
                    ServerAction::Swallow
                } else {
                    ServerAction::Forward
                }
            }
            Some(Pending::ParseLocal { .. }) => {
                self.queue.pop_front();
                ServerAction::Retag(b'1')
            }
            _ => ServerAction::Forward,
        }
    }

    /// ReadyForQuery: requests not answered by then were skipped.
    fn ready_for_query(&mut self, cache: &mut StatementCache) -> ServerAction {
        while let Some(p) = self.queue.pop_front() {
            if matches!(p, Pending::Sync | Pending::Query) {
                break;
            }
            self.undo(p, cache);
            if matches!(self.queue.front(), Some(Pending::Hidden)) {
                // An injected Parse failed: its Sync's ReadyForQuery.
                self.queue.pop_front();
                return ServerAction::Swallow;
            }
        }
        ServerAction::Forward
    }

    /// ErrorResponse: the failed request (its error replaced when it was
    /// Causeway's doing), then everything up to the Sync, which the server
    /// skips.
    fn error(&mut self, body: &[u8], cache: &mut StatementCache) -> ServerAction {
        let mut action = ServerAction::Forward;
        match self.queue.front() {
            None | Some(Pending::Query) | Some(Pending::Sync) => return action,
            _ => {}
        }
        // The failed request, then everything up to the Sync: the
        // server skips them.
        if let Some(p) = self.queue.pop_front() {
            match &p {
                Pending::Dup { name } => {
                    let msg = format!(
                        "prepared statement \"{}\" already exists",
                        String::from_utf8_lossy(name)
                    );
                    backend::write_error(&mut self.stage, false, "42P05", &msg);
                    action = ServerAction::Replace;
                }
                Pending::Missing { name, why } => {
                    missing_error(&mut self.stage, name, *why);
                    action = ServerAction::Replace;
                }
                Pending::Bind { stmt: Some(stmt) } | Pending::Describe { stmt: Some(stmt) } => {
                    self.statement_failed(body, stmt, cache)
                }
                _ => {}
            }
            self.undo(p, cache);
        }
        while matches!(self.queue.front(), Some(p) if !matches!(p, Pending::Sync | Pending::Query | Pending::Hidden))
        {
            if let Some(p) = self.queue.pop_front() {
                self.undo(p, cache);
            }
        }
        action
    }

    /// A request that got no success reply (failed, or skipped after an
    /// error): take back what it was assumed to do.
    pub(super) fn undo(&mut self, p: Pending, cache: &mut StatementCache) {
        match p {
            Pending::Parse {
                stmt: Some(stmt),
                client,
                ..
            } => {
                cache.remove(stmt.id);
                if let Some(name) = client {
                    self.unmap(&name, &stmt);
                }
            }
            Pending::ParseLocal { client, stmt } => self.unmap(&client, &stmt),
            Pending::Close {
                evicted,
                stale,
                restore,
            } => {
                // Still on the server.
                if stale {
                    cache.mark_stale(evicted);
                } else if evicted != 0 {
                    cache.insert(evicted);
                }
                if let Some((name, stmt)) = restore {
                    self.map.entry(name).or_insert(stmt);
                }
            }
            _ => {}
        }
    }

    /// A Bind/Describe of a tracked statement failed on the server. 0A000
    /// (`cached plan must not change result type`): the statement is
    /// retired everywhere and this server's copy closed before its next
    /// Parse; 26000: the server lost it, so it is prepared again on next use.
    fn statement_failed(&self, body: &[u8], stmt: &Arc<Stmt>, cache: &mut StatementCache) {
        let Ok(f) = backend::parse_error_fields(body) else {
            return;
        };
        match f.code {
            "0A000" => {
                self.registry.retire(stmt);
                cache.mark_stale(stmt.id);
            }
            "26000" => cache.remove(stmt.id),
            _ => {}
        }
    }

    fn unmap(&mut self, name: &[u8], stmt: &Arc<Stmt>) {
        if self.map.get(name).is_some_and(|s| Arc::ptr_eq(s, stmt)) {
            self.map.remove(name);
        }
    }

    /// CommandComplete: DISCARD ALL / DEALLOCATE ALL dropped every
    /// statement (the client's and the server's); SQL PREPARE left one on
    /// this server connection; ALTER/DROP may have changed result types.
    fn command_complete(&mut self, body: &[u8], cache: &mut StatementCache) {
        let tag = body.strip_suffix(b"\0").unwrap_or(body);
        if tag == b"DISCARD ALL" || tag == b"DEALLOCATE ALL" {
            cache.clear();
            self.map.clear();
            self.sql_text.clear();
            self.sql_text_bytes = 0;
            self.sql_here.clear();
            // Requests sent after it still take effect.
            for p in &self.queue {
                match p {
                    Pending::Parse {
                        stmt: Some(stmt),
                        client,
                        ..
                    } => {
                        cache.insert(stmt.id);
                        if let Some(name) = client {
                            self.map.insert(name.clone(), stmt.clone());
                        }
                    }
                    Pending::ParseLocal { client, stmt } => {
                        self.map.insert(client.clone(), stmt.clone());
                    }
                    _ => {}
                }
            }
        } else if tag == b"PREPARE" {
            self.sql_completed += 1;
        } else if tag.starts_with(b"ALTER ") || tag.starts_with(b"DROP ") {
            self.registry.schema_changed();
        }
    }

    /// After a copy started: the Syncs sent behind the Execute are ignored
    /// by the server.
    pub fn copy_started(&mut self) {
        let mut first = true;
        self.queue.retain(|p| {
            let keep = first || !matches!(p, Pending::Sync);
            first = false;
            keep
        });
    }
}

/// The error for a Bind/Describe of a statement this server cannot run.
fn missing_error(out: &mut BytesMut, name: &[u8], why: Absent) {
    let name = String::from_utf8_lossy(name);
    match why {
        Absent::Outdated => backend::write_error(
            out,
            false,
            "0A000",
            "cached plan must not change result type",
        ),
        Absent::Unknown => backend::write_error(
            out,
            false,
            "26000",
            &format!("prepared statement \"{name}\" does not exist"),
        ),
        Absent::Unkept(size) => backend::write_error(
            out,
            false,
            "26000",
            &format!(
                "prepared statement \"{name}\" does not exist on this server connection: its Parse ({size} bytes) was larger than Causeway keeps (1 MiB per statement, max_prepared_statement_bytes per database), so it exists only on the connection that parsed it; use it in the same transaction, or parse it again"
            ),
        ),
    }
}
