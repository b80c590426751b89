//! What a tracked client message (Parse, Bind, Describe, Close, Execute)
//! becomes on its way to the server.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use causeway_pool::StatementCache;
use causeway_protocol::frontend::names::{
    bind_prefix, split_parse, target, write_bind_prefix, write_parse, write_target,
};
use causeway_protocol::{backend, HEADER_LEN};

use super::names::{ServerName, DUP_IDENTITY, DUP_NAME, DUP_TEXT_PREFIX, NONE_NAME};
use super::{Absent, ClientAction, Pending, Prep, Stmt, MAX_HELD};

impl Prep {
    /// With no server attached: a unit of named Parses of statements some
    /// server already accepted, then a Sync (libpq's PQprepare), is
    /// answered here (ParseComplete each, ReadyForQuery 'I' into `out`).
    /// Returns the unit's length, or None to route it as usual. Saves a
    /// round trip, and a client preparing while the pool is busy does not
    /// wait for a server (pgbench -M prepared, single-threaded, would
    /// otherwise deadlock against its own open transactions).
    pub fn answer_parses(&mut self, buf: &[u8], out: &mut BytesMut) -> Option<usize> {
        use causeway_protocol::frontend::Frames;
        let mut frames = Frames::new(buf);
        let mut found: Vec<(&[u8], Arc<Stmt>)> = Vec::new();
        loop {
            match frames.next()? {
                (b'P', body) => {
                    let (name, identity) = split_parse(body)?;
                    // A reused name (even within the unit): the server's
                    // path gives 42P05.
                    if name.is_empty()
                        || self.map.contains_key(name)
                        || found.iter().any(|(n, _)| *n == name)
                    {
                        return None;
                    }
                    let stmt = self.registry.find(identity)?;
                    if !stmt.verified.load(Ordering::Relaxed) {
                        return None;
                    }
                    found.push((name, stmt));
                }
                (b'S', _) if !found.is_empty() => break,
                _ => return None,
            }
        }
        for (name, stmt) in found {
            self.map.insert(name.into(), stmt);
            self.counts.client_parses += 1;
            out.extend_from_slice(&[b'1', 0, 0, 0, 4]);
        }
        backend::write_ready_for_query(out, b'I');
        Some(frames.consumed())
    }

    /// A tracked client message (Parse, Bind, Describe, Close, Execute)
    /// starts at the front of `avail`; it is `total` bytes long.
    pub fn client(
        &mut self,
        tag: u8,
        avail: &[u8],
        total: usize,
        cache: &mut StatementCache,
    ) -> ClientAction {
        match tag {
            b'E' => {
                self.queue.push_back(Pending::Execute);
                ClientAction::Pass
            }
            b'P' if total > MAX_HELD => self.parse_streamed(avail, total, cache),
            b'P' => match avail.get(..total) {
                Some(frame) => self.parse(frame, cache),
                None => ClientAction::NeedMore,
            },
            b'B' => self.bind(avail, total, cache),
            b'D' | b'C' => self.describe_or_close(tag, avail, total, cache),
            _ => ClientAction::Pass,
        }
    }

    /// A whole Parse (`frame`): renamed, answered by a no-op Close when
    /// the server holds its statement already, or made to fail with 42P05
    /// when its name is in use.
    fn parse(&mut self, frame: &[u8], cache: &mut StatementCache) -> ClientAction {
        let total = frame.len();
        self.counts.client_parses += 1;
        let Some((name, identity)) = split_parse(&frame[HEADER_LEN..]) else {
            // Malformed: the server rejects it.
            self.queue.push_back(Pending::Parse {
                stmt: None,
                hide: false,
                client: None,
            });
            return ClientAction::Pass;
        };
        if name.is_empty() {
            self.counts.server_parses += 1;
            self.queue.push_back(Pending::Parse {
                stmt: None,
                hide: false,
                client: None,
            });
            return ClientAction::Pass;
        }
        if self.map.contains_key(name) {
            write_parse(&mut self.stage, DUP_NAME, DUP_IDENTITY);
            self.queue.push_back(Pending::Dup { name: name.into() });
            return ClientAction::Took(total);
        }
        let Some(stmt) = self.registry.get(identity) else {
            // Beyond the byte budget: forwarded without keeping it.
            let name_len = name.len();
            return self.parse_unkept(frame, name_len, total, cache);
        };
        self.map.insert(name.into(), stmt.clone());
        if cache.contains(stmt.id) {
            cache.touch(stmt.id);
            write_target(&mut self.stage, b'C', b'S', NONE_NAME);
            self.queue.push_back(Pending::ParseLocal {
                client: name.into(),
                stmt,
            });
        } else {
            self.prepare(cache, &stmt, false, Some(name.into()));
        }
        ClientAction::Took(total)
    }

    /// A Bind: its statement name is renamed (the statement prepared here
    /// first if this server lacks it); only its front is rewritten.
    fn bind(&mut self, avail: &[u8], total: usize, cache: &mut StatementCache) -> ClientAction {
        let end = total.min(avail.len());
        let Some((portal, name, names_len)) = bind_prefix(&avail[HEADER_LEN.min(end)..end]) else {
            if avail.len() >= total.min(MAX_HELD) {
                self.queue.push_back(Pending::Bind { stmt: None }); // malformed: rejected
                return ClientAction::Pass;
            }
            return ClientAction::NeedMore;
        };
        self.counts.binds += 1;
        if name.is_empty() {
            self.queue.push_back(Pending::Bind { stmt: None });
            return ClientAction::Pass;
        }
        let body_len = total - HEADER_LEN;
        match self.usable(name, cache) {
            Err(why) => {
                write_bind_prefix(&mut self.stage, body_len, names_len, portal, NONE_NAME);
                self.queue.push_back(Pending::Missing {
                    name: name.into(),
                    why,
                });
            }
            Ok(stmt) => {
                self.ensure(cache, &stmt);
                let sn = ServerName::new(stmt.id);
                write_bind_prefix(&mut self.stage, body_len, names_len, portal, sn.as_bytes());
                self.queue.push_back(Pending::Bind { stmt: Some(stmt) });
            }
        }
        ClientAction::Took(HEADER_LEN + names_len)
    }

    /// A Describe or Close of a named statement: Describe renamed (and
    /// prepared first if need be), Close answered by a no-op Close in order.
    fn describe_or_close(
        &mut self,
        tag: u8,
        avail: &[u8],
        total: usize,
        cache: &mut StatementCache,
    ) -> ClientAction {
        let plain = if tag == b'D' {
            Pending::Describe { stmt: None }
        } else {
            Pending::Close {
                evicted: 0,
                stale: false,
                restore: None,
            }
        };
        if total > MAX_HELD {
            // A name that long was never prepared through Causeway.
            self.queue.push_back(plain);
            return ClientAction::Pass;
        }
        let Some(frame) = avail.get(..total) else {
            return ClientAction::NeedMore;
        };
        let name = match target(&frame[HEADER_LEN..]) {
            Some((b'S', name)) if !name.is_empty() => name,
            _ => {
                self.queue.push_back(plain);
                return ClientAction::Pass;
            }
        };
        if tag == b'D' {
            match self.usable(name, cache) {
                Err(why) => {
                    write_target(&mut self.stage, b'D', b'S', NONE_NAME);
                    self.queue.push_back(Pending::Missing {
                        name: name.into(),
                        why,
                    });
                }
                Ok(stmt) => {
                    self.ensure(cache, &stmt);
                    let sn = ServerName::new(stmt.id);
                    write_target(&mut self.stage, b'D', b'S', sn.as_bytes());
                    self.queue.push_back(Pending::Describe { stmt: Some(stmt) });
                }
            }
        } else {
            // Answered by a no-op Close, in order; the server keeps
            // the statement for other clients.
            let restore = self.map.remove_entry(name);
            write_target(&mut self.stage, b'C', b'S', NONE_NAME);
            self.queue.push_back(Pending::Close {
                evicted: 0,
                stale: false,
                restore,
            });
        }
        ClientAction::Took(total)
    }

    /// The statement a Bind/Describe of client name `name` may use here.
    /// A retired one without a copy here is refused (PostgreSQL would fail
    /// it with 0A000; preparing it afresh would change its result type
    /// under the client's feet), and so is an unkept one (its text is gone).
    fn usable(&self, name: &[u8], cache: &StatementCache) -> Result<Arc<Stmt>, Absent> {
        match self.map.get(name) {
            None => Err(Absent::Unknown),
            Some(s) if cache.contains(s.id) => Ok(s.clone()),
            Some(s) if !s.kept => Err(Absent::Unkept(s.size)),
            Some(s) if s.is_retired() => Err(Absent::Outdated),
            Some(s) => Ok(s.clone()),
        }
    }

    /// Makes sure the server holds `stmt` before a Bind/Describe uses it
    /// (an unkept one cannot be prepared again: the server then says it
    /// does not exist).
    pub(in crate::session) fn ensure(&mut self, cache: &mut StatementCache, stmt: &Arc<Stmt>) {
        if cache.contains(stmt.id) {
            cache.touch(stmt.id);
        } else if stmt.kept {
            self.prepare(cache, stmt, true, None);
        }
    }

    /// A named Parse larger than [`MAX_HELD`] (`avail` starts with it):
    /// only its name is read; the rest is forwarded as it arrives.
    fn parse_streamed(
        &mut self,
        avail: &[u8],
        total: usize,
        cache: &mut StatementCache,
    ) -> ClientAction {
        let end = avail.len().min(total);
        let Some(name_len) = avail[HEADER_LEN.min(end)..end].iter().position(|b| *b == 0) else {
            if avail.len() >= MAX_HELD {
                return ClientAction::Malformed("Parse (statement name over 1 MiB)");
            }
            return ClientAction::NeedMore;
        };
        self.counts.client_parses += 1;
        if name_len == 0 {
            self.counts.server_parses += 1;
            self.queue.push_back(Pending::Parse {
                stmt: None,
                hide: false,
                client: None,
            });
            return ClientAction::Pass;
        }
        self.parse_unkept(avail, name_len, total, cache)
    }

    /// A named Parse whose text is not kept (`avail` holds at least its
    /// header and name, `name_len` bytes): it is sent under a server name
    /// of its own (or made to fail with 42P05 if the name is in use) by
    /// rewriting only its front; its text flows through untouched.
    fn parse_unkept(
        &mut self,
        avail: &[u8],
        name_len: usize,
        total: usize,
        cache: &mut StatementCache,
    ) -> ClientAction {
        let name = &avail[HEADER_LEN..HEADER_LEN + name_len];
        // Header and name (with its NUL) are replaced.
        let took = HEADER_LEN + name_len + 1;
        let rest = total - took;
        if self.map.contains_key(name) {
            // "causeway_dup <text>" never parses: the error becomes 42P05.
            self.queue.push_back(Pending::Dup { name: name.into() });
            return write_parse_head(&mut self.stage, DUP_NAME, DUP_TEXT_PREFIX, rest, took);
        }
        let stmt = Arc::new(Stmt::unkept(total));
        self.map.insert(name.into(), stmt.clone());
        self.evict(cache);
        let sn = ServerName::new(stmt.id);
        let action = write_parse_head(&mut self.stage, sn.as_bytes(), b"", rest, took);
        cache.insert(stmt.id);
        self.counts.server_parses += 1;
        self.queue.push_back(Pending::Parse {
            stmt: Some(stmt),
            hide: false,
            client: Some(name.into()),
        });
        action
    }

    /// Closes what the server must drop before one more statement: its
    /// outdated copies, then LRU victims while it is full.
    fn evict(&mut self, cache: &mut StatementCache) {
        while let Some(old) = cache.take_stale() {
            write_target(&mut self.stage, b'C', b'S', ServerName::new(old).as_bytes());
            self.queue.push_back(Pending::Close {
                evicted: old,
                stale: true,
                restore: None,
            });
        }
        while let Some(old) = cache.evict_for_one(self.cap) {
            write_target(&mut self.stage, b'C', b'S', ServerName::new(old).as_bytes());
            self.queue.push_back(Pending::Close {
                evicted: old,
                stale: false,
                restore: None,
            });
        }
    }

    /// Parses `stmt` on the server, closing the LRU victim first if full.
    fn prepare(
        &mut self,
        cache: &mut StatementCache,
        stmt: &Arc<Stmt>,
        hide: bool,
        client: Option<Box<[u8]>>,
    ) {
        self.evict(cache);
        write_parse(
            &mut self.stage,
            ServerName::new(stmt.id).as_bytes(),
            &stmt.identity,
        );
        cache.insert(stmt.id);
        self.counts.server_parses += 1;
        self.queue.push_back(Pending::Parse {
            stmt: Some(stmt.clone()),
            hide,
            client,
        });
    }
}

/// Writes the front of a Parse whose text (`rest` bytes: query, NUL,
/// parameter types) follows unchanged: header, `name`, `text_prefix`.
/// Took: the client's header and name (`took` bytes) are replaced.
fn write_parse_head(
    stage: &mut BytesMut,
    name: &[u8],
    text_prefix: &[u8],
    rest: usize,
    took: usize,
) -> ClientAction {
    let len = 4 + name.len() + 1 + text_prefix.len() + rest;
    let Ok(len) = i32::try_from(len) else {
        return ClientAction::Malformed("Parse (too long)");
    };
    stage.extend_from_slice(b"P");
    stage.extend_from_slice(&len.to_be_bytes());
    stage.extend_from_slice(name);
    stage.extend_from_slice(&[0]);
    stage.extend_from_slice(text_prefix);
    ClientAction::Took(took)
}
