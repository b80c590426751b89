//! Protocol-level named prepared statements in transaction and statement
//! mode (see docs/prepared-statements.md).
//!
//! A client's named statement is tracked (client name -> [`Stmt`]) and
//! renamed `causeway_<id>` on its way to the server, one id per distinct
//! (query text, parameter types). Each server connection knows which ids
//! it holds ([`StatementCache`]); a Bind or Describe on a server that lacks
//! the statement is preceded by a Parse for it.
//!
//! Replies stay in step with requests because the server produces every
//! reply the client sees, in its own order: a client Parse of a statement
//! the server already holds, and a client Close, are sent as a Close of a
//! name that does not exist (its CloseComplete is relabelled ParseComplete
//! for the Parse); a reused name is sent as a Parse that fails, whose
//! error is replaced by PostgreSQL's 42P05. The only replies removed are
//! those of injected Parses and evicting Closes. A queue of what each
//! request sent is owed ([`Pending`]) matches replies to requests,
//! including PostgreSQL's skip-to-Sync after an error.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use bytes::BytesMut;
use causeway_pool::StatementCache;
use causeway_protocol::frontend::names::{
    bind_prefix, identity_query, split_parse, target, write_bind_prefix, write_parse, write_target,
};
use causeway_protocol::{backend, HEADER_LEN};
use parking_lot::Mutex;

/// Ids are never reused: a name on a server means one statement forever.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The prefix of server-side statement names.
const PREFIX: &[u8] = b"causeway_";
/// A statement name never prepared anywhere (Close of it is a no-op that
/// still gets a CloseComplete; Bind/Describe of it fail).
const NONE_NAME: &[u8] = b"causeway_0";
/// A Parse that always fails (its error is replaced by 42P05).
const DUP_NAME: &[u8] = b"causeway_dup";
const DUP_IDENTITY: &[u8] = b"causeway_dup\0\0\0";
/// Put in front of the streamed text of a large Parse reusing an open name,
/// so that it fails like [`DUP_IDENTITY`] (then replaced by 42P05).
const DUP_TEXT_PREFIX: &[u8] = b"causeway_dup ";

/// A client message larger than this is never held whole: routing treats
/// it as uncertain (primary), only its header and names are looked at, and
/// it is forwarded as it arrives. A named Parse that large is not kept
/// (see [`Stmt::kept`]). Statement texts this long are rare (generated
/// `IN (...)` lists, bulk `VALUES`); they still run, only without being
/// re-prepared on other server connections.
pub const MAX_HELD: usize = 1 << 20;

/// One distinct statement (query text and parameter types).
#[derive(Debug)]
pub struct Stmt {
    pub id: u64,
    /// Query text, NUL, parameter type count and OIDs (a Parse body after
    /// the name).
    identity: Arc<[u8]>,
    /// Routing class, computed once: true = read-only.
    read: OnceLock<bool>,
    /// A server accepted a Parse of it (so a client's Parse of it may be
    /// answered without one).
    verified: std::sync::atomic::AtomicBool,
    /// A server said its result type changed (0A000 `cached plan must not
    /// change result type`, after `ALTER TABLE ... TYPE`): new Parses of
    /// the text get a new statement, really parsed; clients still holding
    /// this one get PostgreSQL's error wherever it is not prepared yet.
    retired: std::sync::atomic::AtomicBool,
    /// Its text is kept (and counted in the database's byte budget): it
    /// can be prepared on any server. An unkept one (a Parse larger than
    /// [`MAX_HELD`], or beyond `max_prepared_statement_bytes`) was
    /// forwarded as it arrived and exists only on the server connection
    /// that parsed it; `size` is its Parse's length, for the error.
    kept: bool,
    size: usize,
    /// The budget its text is counted in, given back when it goes.
    budget: Option<Arc<AtomicUsize>>,
}

impl Drop for Stmt {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.fetch_sub(self.identity.len(), Ordering::Relaxed);
        }
    }
}

impl Stmt {
    /// A statement whose text Causeway does not keep (never registered).
    fn unkept(size: usize) -> Self {
        Stmt {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            identity: Arc::from(&[][..]),
            // Its text is unknown: never sent to a replica.
            read: OnceLock::from(false),
            verified: Default::default(),
            retired: Default::default(),
            kept: false,
            size,
            budget: None,
        }
    }

    pub fn query(&self) -> &[u8] {
        identity_query(&self.identity)
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Whether the statement may run on a replica; `classify` runs at most
    /// once per statement.
    pub fn is_read(&self, classify: impl FnOnce(&str) -> bool) -> bool {
        *self
            .read
            .get_or_init(|| std::str::from_utf8(self.query()).ok().is_some_and(classify))
    }
}

/// The server-side name of statement `id`, formatted on the stack.
pub struct ServerName {
    buf: [u8; 32],
    len: usize,
}

impl ServerName {
    pub fn new(id: u64) -> Self {
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 20];
        let mut n = id;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let d = &digits[i..];
        buf[PREFIX.len()..PREFIX.len() + d.len()].copy_from_slice(d);
        ServerName {
            buf,
            len: PREFIX.len() + d.len(),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Distinct statements of a database, by identity. Entries live while a
/// client maps a name to them; their texts together stay within a byte
/// budget (`max_prepared_statement_bytes`).
#[derive(Debug)]
pub struct Registry {
    /// Statements by identity, and the size that triggers pruning.
    map: Mutex<(StmtMap, usize)>,
    /// Bytes of text held by live statements (given back as they drop).
    bytes: Arc<AtomicUsize>,
    budget: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_budget(DEFAULT_BUDGET)
    }
}

/// `max_prepared_statement_bytes`' default.
const DEFAULT_BUDGET: usize = 64 << 20;

type StmtMap = HashMap<Arc<[u8]>, Weak<Stmt>>;

impl Registry {
    /// A registry whose live statement texts stay within `budget` bytes.
    pub fn with_budget(budget: usize) -> Self {
        Registry {
            map: Default::default(),
            bytes: Default::default(),
            budget,
        }
    }

    /// Bytes of statement text held now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The statement with this identity, if registered.
    pub fn find(&self, identity: &[u8]) -> Option<Arc<Stmt>> {
        self.map.lock().0.get(identity).and_then(Weak::upgrade)
    }

    /// `stmt` is outdated: the next Parse of its text registers a new one.
    pub fn retire(&self, stmt: &Arc<Stmt>) {
        stmt.retired.store(true, Ordering::Relaxed);
        let mut g = self.map.lock();
        let same =
            g.0.get(&stmt.identity)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(stmt)));
        if same {
            g.0.remove(&stmt.identity);
        }
    }

    /// DDL ran (ALTER/DROP): a statement already on the servers may have
    /// a different result type now, so new Parses get new statements,
    /// really parsed. Clients keep the ones they hold (as their PostgreSQL
    /// sessions would).
    pub fn schema_changed(&self) {
        self.map.lock().0.clear();
    }

    /// The statement with this identity, registered on first sight; None
    /// when its text would not fit in the budget (it is then not kept).
    pub fn get(&self, identity: &[u8]) -> Option<Arc<Stmt>> {
        let mut g = self.map.lock();
        let (map, prune_at) = &mut *g;
        if let Some(s) = map.get(identity).and_then(Weak::upgrade) {
            return Some(s);
        }
        // Under the lock, so concurrent registrations cannot overshoot
        // (drops only give bytes back).
        if self.bytes.load(Ordering::Relaxed) + identity.len() > self.budget {
            return None;
        }
        self.bytes.fetch_add(identity.len(), Ordering::Relaxed);
        if map.len() >= (*prune_at).max(1024) {
            map.retain(|_, w| w.strong_count() > 0);
            *prune_at = map.len() * 2;
        }
        let key: Arc<[u8]> = identity.into();
        let s = Arc::new(Stmt {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            identity: key.clone(),
            read: OnceLock::new(),
            verified: Default::default(),
            retired: Default::default(),
            kept: true,
            size: HEADER_LEN + identity.len(),
            budget: Some(self.bytes.clone()),
        });
        map.insert(key, Arc::downgrade(&s));
        Some(s)
    }
}

/// What a request sent to the server is owed, oldest first.
#[derive(Debug)]
pub enum Pending {
    /// Parse ('1'). `hide`: injected by Causeway (its reply is dropped).
    /// `client`: the client name it created.
    Parse {
        stmt: Option<Arc<Stmt>>,
        hide: bool,
        client: Option<Box<[u8]>>,
    },
    /// A client Parse of a statement the server holds, sent as a no-op
    /// Close: its CloseComplete becomes ParseComplete.
    ParseLocal {
        client: Box<[u8]>,
        stmt: Arc<Stmt>,
    },
    /// A client Parse reusing an open name: fails with 42P05.
    Dup {
        name: Box<[u8]>,
    },
    /// Bind or Describe('S'), with the tracked statement it uses (its
    /// errors may say the server's copy is outdated or gone).
    Bind {
        stmt: Option<Arc<Stmt>>,
    },
    /// A Bind or Describe of a statement this server cannot run: it
    /// fails, and the error is replaced by one saying why.
    Missing {
        name: Box<[u8]>,
        why: Absent,
    },
    Describe {
        stmt: Option<Arc<Stmt>>,
    },
    Execute,
    /// Close ('3'). `evicted`: Causeway closing an LRU victim or an
    /// outdated statement (`stale`) (hidden). `restore`: the client mapping
    /// a local Close removed.
    Close {
        evicted: u64,
        stale: bool,
        restore: Option<(Box<[u8]>, Arc<Stmt>)>,
    },
    Sync,
    /// Query or FunctionCall: ends with its ReadyForQuery; errors inside
    /// it skip nothing.
    Query,
    /// A Query or Sync Causeway sent itself (re-creating a client's SQL
    /// prepared statement, or ending an injected Parse): every reply up to
    /// and including its ReadyForQuery is hidden.
    Hidden,
}

/// Why a client's statement cannot be used on the attached server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// The client never prepared it: 26000 naming it.
    Unknown,
    /// Retired (its result type changed): 0A000 as on the server that
    /// retired it.
    Outdated,
    /// Not kept (its Parse was this many bytes): it exists only on the
    /// server connection that parsed it, so 26000 saying so.
    Unkept(usize),
}

/// What to do with a tracked client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Forward it unchanged.
    Pass,
    /// The first `n` bytes of the message are replaced by `stage`.
    Took(usize),
    /// More of the message must be buffered first (all of it, or the
    /// first [`MAX_HELD`] bytes of a larger one).
    NeedMore,
    /// Not acceptable (a statement name longer than [`MAX_HELD`]): the
    /// client gets 08P01.
    Malformed(&'static str),
}

/// What to do with a tracked server message.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerAction {
    Forward,
    /// Drop it (the reply to an injected request).
    Swallow,
    /// Forward it with this tag.
    Retag(u8),
    /// Replace it by the frame in `stage`.
    Replace,
}

/// Parse/bind counters, flushed to the database stats with the others.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub client_parses: u64,
    pub server_parses: u64,
    pub binds: u64,
}

/// A session's prepared statements and the in-flight bookkeeping.
#[derive(Debug)]
pub struct Prep {
    /// Tracking is on (transaction/statement mode, max > 0).
    pub on: bool,
    pub cap: usize,
    pub registry: Arc<Registry>,
    /// Client statement names.
    pub map: HashMap<Box<[u8]>, Arc<Stmt>>,
    pub queue: VecDeque<Pending>,
    /// Rewritten bytes waiting to go to the server (ahead of the client
    /// bytes that follow them).
    pub out: BytesMut,
    /// Scratch: the bytes replacing the current message.
    pub stage: BytesMut,
    pub counts: Counts,
    /// The client's SQL-level prepared statements: name -> the PREPARE
    /// statement that made it (see sql_prepared.rs).
    pub sql_text: HashMap<String, Box<str>>,
    /// Bytes of `sql_text` (bounded by `MAX_SQL_TEXT_BYTES`).
    pub sql_text_bytes: usize,
    /// Those prepared on the attached server (deallocated at release).
    pub sql_here: Vec<String>,
    /// Single-statement PREPAREs seen, and PREPARE completions: more
    /// completions than recognised statements means one Causeway could not
    /// track (a multi-statement Query, extended protocol): the server
    /// connection is cleared with DEALLOCATE ALL at release instead.
    pub sql_recognized: u32,
    pub sql_completed: u32,
}

impl Prep {
    pub fn new(on: bool, cap: usize, registry: Arc<Registry>) -> Self {
        Prep {
            on,
            cap,
            registry,
            map: HashMap::new(),
            queue: VecDeque::new(),
            out: BytesMut::new(),
            stage: BytesMut::new(),
            counts: Counts::default(),
            sql_text: HashMap::new(),
            sql_text_bytes: 0,
            sql_here: Vec::new(),
            sql_recognized: 0,
            sql_completed: 0,
        }
    }

    /// The statement a client name refers to.
    pub fn lookup(&self, name: &[u8]) -> Option<&Arc<Stmt>> {
        self.map.get(name)
    }

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

    /// A held unit is re-run elsewhere: take back everything its requests
    /// were assumed to do, newest first (the server it ran on is closed).
    pub fn rollback(&mut self, cache: &mut StatementCache) {
        while let Some(p) = self.queue.pop_back() {
            self.undo(p, cache);
        }
        self.out.clear();
        self.stage.clear();
    }

    /// A Sync, Query or FunctionCall went to the server.
    pub fn marker(&mut self, tag: u8) {
        self.queue.push_back(if tag == b'S' {
            Pending::Sync
        } else {
            Pending::Query
        });
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
            b'P' => {
                let Some(frame) = avail.get(..total) else {
                    return ClientAction::NeedMore;
                };
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
            b'B' => {
                let end = total.min(avail.len());
                let Some((portal, name, names_len)) = bind_prefix(&avail[HEADER_LEN.min(end)..end])
                else {
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
                        write_bind_prefix(
                            &mut self.stage,
                            body_len,
                            names_len,
                            portal,
                            sn.as_bytes(),
                        );
                        self.queue.push_back(Pending::Bind { stmt: Some(stmt) });
                    }
                }
                ClientAction::Took(HEADER_LEN + names_len)
            }
            b'D' | b'C' => {
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
            _ => ClientAction::Pass,
        }
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
    pub(super) fn ensure(&mut self, cache: &mut StatementCache, stmt: &Arc<Stmt>) {
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
            b'1' => match self.queue.front() {
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
            },
            b'2' => {
                if matches!(
                    self.queue.front(),
                    Some(Pending::Bind { .. } | Pending::Missing { .. })
                ) {
                    self.queue.pop_front();
                }
                ServerAction::Forward
            }
            b'3' => match self.queue.front() {
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
            },
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
            b'Z' => {
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
            b'E' => {
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
                        Pending::Bind { stmt: Some(stmt) }
                        | Pending::Describe { stmt: Some(stmt) } => {
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
            _ => ServerAction::Forward,
        }
    }

    /// A request that got no success reply (failed, or skipped after an
    /// error): take back what it was assumed to do.
    fn undo(&mut self, p: Pending, cache: &mut StatementCache) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use causeway_protocol::message as frame;

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        frame(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn bind(stmt: &str) -> Vec<u8> {
        frame(b'B', format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes())
    }

    /// Runs client messages through `p`, returning what went to the server
    /// as (tag, body) pairs.
    fn send(p: &mut Prep, cache: &mut StatementCache, msgs: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
        let mut wire = Vec::new();
        for m in msgs {
            let tag = m[0];
            let action = match tag {
                b'S' => {
                    p.marker(tag);
                    ClientAction::Pass
                }
                _ => p.client(tag, m, m.len(), cache),
            };
            match action {
                ClientAction::Pass => wire.extend_from_slice(m),
                ClientAction::Took(n) => {
                    wire.extend_from_slice(&p.stage);
                    p.stage.clear();
                    wire.extend_from_slice(&m[n..]);
                }
                ClientAction::NeedMore | ClientAction::Malformed(_) => panic!("{action:?}"),
            }
        }
        causeway_protocol::frontend::Frames::new(&wire)
            .map(|(t, b)| (t, b.to_vec()))
            .collect()
    }

    fn reply(p: &mut Prep, cache: &mut StatementCache, tags: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &t in tags {
            let body: &[u8] = if t == b'C' { b"SELECT 1\0" } else { b"" };
            match p.server(t, body, cache) {
                ServerAction::Forward => out.push(t),
                ServerAction::Swallow => {}
                ServerAction::Retag(x) => out.push(x),
                ServerAction::Replace => {
                    out.push(p.stage[0]);
                    p.stage.clear();
                }
            }
        }
        out
    }

    fn prep(cap: usize) -> Prep {
        Prep::new(true, cap, Arc::new(Registry::default()))
    }

    #[test]
    fn server_names() {
        assert_eq!(ServerName::new(0).as_bytes(), b"causeway_0");
        assert_eq!(ServerName::new(1234).as_bytes(), b"causeway_1234");
        assert_eq!(
            ServerName::new(u64::MAX).as_bytes(),
            b"causeway_18446744073709551615"
        );
    }

    #[test]
    fn registry_shares_ids_by_identity() {
        let r = Registry::default();
        let a = r.get(b"select 1\0\0\0").unwrap();
        let b = r.get(b"select 1\0\0\0").unwrap();
        let c = r.get(b"select 1\0\0\x01\0\0\0\x17").unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(c.query(), b"select 1");
        let mut n = 0;
        assert!(a.is_read(|_| {
            n += 1;
            true
        }));
        assert!(b.is_read(|_| unreachable!("classified once")));
        assert_eq!(n, 1);
    }

    #[test]
    fn parse_bind_rewritten_and_prepared_once_per_server() {
        let mut p = prep(10);
        let mut server1 = StatementCache::default();
        let wire = send(
            &mut p,
            &mut server1,
            &[parse("s1", "select 1"), bind("s1"), frame(b'S', b"")],
        );
        let id = p.lookup(b"s1").unwrap().id;
        let name = format!("causeway_{id}");
        assert_eq!(wire[0].0, b'P');
        assert!(wire[0].1.starts_with(name.as_bytes()));
        assert_eq!(
            wire[1],
            (b'B', format!("\0{name}\0\0\0\0\0\0\0").into_bytes())
        );
        assert_eq!(reply(&mut p, &mut server1, b"12Z"), b"12Z");
        assert!(p.queue.is_empty());
        // Another server: the Bind brings its Parse, whose reply is hidden.
        let mut server2 = StatementCache::default();
        let wire = send(
            &mut p,
            &mut server2,
            &[bind("s1"), frame(b'E', b"\0\0\0\0\0"), frame(b'S', b"")],
        );
        assert_eq!(
            wire.iter().map(|x| x.0).collect::<Vec<_>>(),
            b"PBES".to_vec()
        );
        assert_eq!(reply(&mut p, &mut server2, b"12CZ"), b"2CZ");
        assert!(server2.contains(id));
        // A second client parsing the same text on server2: answered by a
        // no-op Close relabelled ParseComplete.
        let mut q = Prep::new(true, 10, p.registry.clone());
        let wire = send(
            &mut q,
            &mut server2,
            &[parse("other", "select 1"), frame(b'S', b"")],
        );
        assert_eq!(wire[0], (b'C', b"Scauseway_0\0".to_vec()));
        assert_eq!(reply(&mut q, &mut server2, b"3Z"), b"1Z");
        assert_eq!(q.counts.server_parses, 0);
        assert_eq!(p.counts.server_parses, 2);
    }

    #[test]
    fn reused_name_is_42p05_and_skips_to_sync() {
        let mut p = prep(10);
        let mut s = StatementCache::default();
        send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
        reply(&mut p, &mut s, b"1Z");
        let wire = send(
            &mut p,
            &mut s,
            &[
                parse("s1", "select 2"),
                parse("s2", "select 3"),
                frame(b'S', b""),
            ],
        );
        assert_eq!(wire[0].1, b"causeway_dup\0causeway_dup\0\0\0".to_vec());
        // The dup Parse fails; the server skips s2's Parse.
        assert_eq!(reply(&mut p, &mut s, b"EZ"), b"EZ");
        assert!(p.lookup(b"s2").is_none(), "skipped Parse left no name");
        assert_eq!(p.lookup(b"s1").unwrap().query(), b"select 1");
        assert_eq!(s.len(), 1, "the skipped Parse is not on the server");
    }

    #[test]
    fn an_earlier_error_is_not_mistaken_for_ours() {
        let mut p = prep(10);
        let mut s = StatementCache::default();
        send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
        reply(&mut p, &mut s, b"1Z");
        // Execute fails before the dup Parse: the client sees that error.
        send(
            &mut p,
            &mut s,
            &[
                bind("s1"),
                frame(b'E', b"\0\0\0\0\0"),
                parse("s1", "x"),
                frame(b'S', b""),
            ],
        );
        let mut out = Vec::new();
        for t in b"2EZ" {
            out.push(p.server(*t, b"", &mut s));
        }
        assert_eq!(
            out,
            vec![
                ServerAction::Forward,
                ServerAction::Forward,
                ServerAction::Forward
            ]
        );
        assert!(p.queue.is_empty());
    }

    #[test]
    fn close_is_local_and_reparse_runs_new_text() {
        let mut p = prep(10);
        let mut s = StatementCache::default();
        send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
        reply(&mut p, &mut s, b"1Z");
        let wire = send(
            &mut p,
            &mut s,
            &[
                frame(b'C', b"Ss1\0"),
                parse("s1", "select 2"),
                bind("s1"),
                frame(b'S', b""),
            ],
        );
        assert_eq!(wire[0], (b'C', b"Scauseway_0\0".to_vec()));
        let new = p.lookup(b"s1").unwrap().clone();
        assert_eq!(new.query(), b"select 2");
        assert!(wire[2]
            .1
            .starts_with(format!("\0causeway_{}\0", new.id).as_bytes()));
        assert_eq!(reply(&mut p, &mut s, b"312Z"), b"312Z");
        // Unknown statement: 26000 naming the client's statement.
        send(&mut p, &mut s, &[bind("nope"), frame(b'S', b"")]);
        assert_eq!(p.server(b'E', b"", &mut s), ServerAction::Replace);
        assert!(String::from_utf8_lossy(&p.stage).contains("\"nope\" does not exist"));
    }

    #[test]
    fn eviction_spares_statements_of_the_pipeline() {
        let mut p = prep(2);
        let mut s = StatementCache::default();
        s.begin_pin();
        let msgs: Vec<Vec<u8>> = (0..3)
            .flat_map(|i| {
                [
                    parse(&format!("s{i}"), &format!("select {i}")),
                    bind(&format!("s{i}")),
                ]
            })
            .chain([frame(b'S', b"")])
            .collect();
        let wire = send(&mut p, &mut s, &msgs);
        // All three are pinned by this attachment: nothing is closed.
        assert!(wire.iter().all(|(t, _)| *t != b'C'));
        assert_eq!(s.len(), 3);
        reply(&mut p, &mut s, b"121212Z");
        // Next attachment: a new statement evicts the least recently used.
        s.begin_pin();
        let wire = send(&mut p, &mut s, &[parse("s9", "select 9"), frame(b'S', b"")]);
        assert_eq!(
            wire.iter().map(|x| x.0).collect::<Vec<_>>(),
            b"CCPS".to_vec()
        );
        assert_eq!(reply(&mut p, &mut s, b"331Z"), b"1Z");
        assert_eq!(s.len(), 2, "evicted down to the bound");
        // Evicted statement used again: prepared again on demand.
        let s0 = p.lookup(b"s0").unwrap().id;
        assert!(!s.contains(s0));
        let wire = send(&mut p, &mut s, &[bind("s0"), frame(b'S', b"")]);
        assert_eq!(
            wire.iter().map(|x| x.0).collect::<Vec<_>>(),
            b"CPBS".to_vec()
        );
    }

    fn error(code: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        backend::write_error(&mut b, false, code, "x");
        b[HEADER_LEN..].to_vec()
    }

    #[test]
    fn result_type_change_retires_the_statement() {
        let mut p = prep(10);
        let mut s1 = StatementCache::default();
        send(
            &mut p,
            &mut s1,
            &[parse("s1", "select * from t"), frame(b'S', b"")],
        );
        reply(&mut p, &mut s1, b"1Z");
        let old = p.lookup(b"s1").unwrap().clone();
        // ALTER TABLE t ... TYPE: the server fails the Bind with 0A000.
        send(&mut p, &mut s1, &[bind("s1"), frame(b'S', b"")]);
        assert_eq!(
            p.server(b'E', &error("0A000"), &mut s1),
            ServerAction::Forward
        );
        p.server(b'Z', b"", &mut s1);
        assert!(!s1.contains(old.id), "no longer used on that server");
        // A new client (or the driver re-preparing under a new name) gets a
        // new statement, really parsed, after the outdated copy is closed.
        let mut q = Prep::new(true, 10, p.registry.clone());
        let wire = send(
            &mut q,
            &mut s1,
            &[parse("n", "select * from t"), frame(b'S', b"")],
        );
        let new = q.lookup(b"n").unwrap().clone();
        assert_ne!(new.id, old.id);
        assert_eq!(
            wire[0],
            (b'C', format!("Scauseway_{}\0", old.id).into_bytes())
        );
        assert_eq!(wire[1].0, b'P');
        assert_eq!(reply(&mut q, &mut s1, b"31Z"), b"1Z", "the Close is hidden");
        // The client still holding the old one, on a server without it:
        // PostgreSQL's 0A000, not a silent re-parse with a new result type.
        let mut s2 = StatementCache::default();
        let wire = send(&mut p, &mut s2, &[bind("s1"), frame(b'S', b"")]);
        assert!(wire[0].1.starts_with(b"\0causeway_0\0"));
        assert_eq!(
            p.server(b'E', &error("26000"), &mut s2),
            ServerAction::Replace
        );
        assert_eq!(field_code(&p.stage), "0A000");
        // 26000 from the server: its copy is gone, prepared again next time.
        p.stage.clear();
        p.server(b'Z', b"", &mut s2);
        let mut s3 = StatementCache::default();
        send(&mut q, &mut s3, &[bind("n"), frame(b'S', b"")]);
        reply(&mut q, &mut s3, b"12Z");
        assert!(s3.contains(new.id));
        send(&mut q, &mut s3, &[bind("n"), frame(b'S', b"")]);
        q.server(b'E', &error("26000"), &mut s3);
        q.server(b'Z', b"", &mut s3);
        assert!(!s3.contains(new.id));
    }

    fn field_code(frame: &[u8]) -> String {
        backend::parse_error_fields(&frame[HEADER_LEN..])
            .unwrap()
            .code
            .to_string()
    }

    #[test]
    fn deallocate_all_clears_the_map() {
        let mut p = prep(10);
        let mut s = StatementCache::default();
        send(&mut p, &mut s, &[parse("s1", "select 1"), frame(b'S', b"")]);
        reply(&mut p, &mut s, b"1Z");
        p.marker(b'Q');
        assert_eq!(
            p.server(b'C', b"DEALLOCATE ALL\0", &mut s),
            ServerAction::Forward
        );
        p.server(b'Z', b"", &mut s);
        assert!(p.map.is_empty() && s.is_empty());
        p.marker(b'Q');
        p.server(b'C', b"PREPARE\0", &mut s);
        assert_eq!(p.sql_completed, 1);
        // DDL: a new Parse of a known text is a new statement.
        let before = p.registry.get(b"select 1\0\0\0").unwrap();
        p.server(b'C', b"ALTER TABLE\0", &mut s);
        assert_ne!(p.registry.get(b"select 1\0\0\0").unwrap().id, before.id);
    }

    #[test]
    fn rollback_takes_a_held_unit_back() {
        let mut p = prep(1);
        let mut s = StatementCache::default();
        send(
            &mut p,
            &mut s,
            &[parse("old", "select 0"), frame(b'S', b"")],
        );
        reply(&mut p, &mut s, b"1Z");
        s.begin_pin();
        send(
            &mut p,
            &mut s,
            &[
                frame(b'C', b"Sold\0"),
                parse("s1", "select 1"),
                bind("s1"),
                frame(b'S', b""),
            ],
        );
        assert!(p.lookup(b"s1").is_some() && p.lookup(b"old").is_none());
        p.rollback(&mut s);
        // As before the unit: the replay sees the same state.
        assert!(p.lookup(b"s1").is_none());
        assert_eq!(p.lookup(b"old").unwrap().query(), b"select 0");
        assert!(p.queue.is_empty() && p.out.is_empty());
        assert_eq!(
            s.len(),
            1,
            "the evicted statement is back, the new one gone"
        );
    }

    #[test]
    fn parses_of_verified_statements_are_answered_without_a_server() {
        let mut p = prep(10);
        let mut s = StatementCache::default();
        let unit = [parse("a", "select 1"), frame(b'S', b"")].concat();
        let mut out = BytesMut::new();
        // Never accepted by a server yet: routed.
        assert_eq!(p.answer_parses(&unit, &mut out), None);
        send(&mut p, &mut s, &[parse("a", "select 1"), frame(b'S', b"")]);
        reply(&mut p, &mut s, b"1Z");
        let mut q = Prep::new(true, 10, p.registry.clone());
        assert_eq!(q.answer_parses(&unit, &mut out), Some(unit.len()));
        assert_eq!(&out[..], b"1\0\0\0\x04Z\0\0\0\x05I");
        assert!(q.lookup(b"a").is_some());
        // Reused name, or an unknown statement in the unit: routed.
        assert_eq!(q.answer_parses(&unit, &mut out), None);
        let two = [
            parse("b", "select 1"),
            parse("c", "select 2"),
            frame(b'S', b""),
        ]
        .concat();
        assert_eq!(q.answer_parses(&two, &mut out), None);
        assert!(q.lookup(b"b").is_none());
        // Incomplete unit: routed.
        assert_eq!(q.answer_parses(&unit[..unit.len() - 5], &mut out), None);
    }

    #[test]
    fn registry_keeps_statement_texts_within_its_byte_budget() {
        let r = Registry::with_budget(40);
        let a = r.get(&[b'a'; 30]).unwrap();
        assert_eq!(r.bytes(), 30);
        // Shared texts are counted once.
        let a2 = r.get(&[b'a'; 30]).unwrap();
        assert_eq!((a2.id, r.bytes()), (a.id, 30));
        assert!(r.get(&[b'b'; 20]).is_none(), "over the budget: not kept");
        assert!(r.get(&[b'c'; 10]).is_some_and(|c| c.kept));
        // Given back when the last holder lets go (also after a DDL
        // cleared the map: the clients' statements still count).
        r.schema_changed();
        drop(a);
        assert_eq!(r.bytes(), 30);
        drop(a2);
        assert_eq!(r.bytes(), 0);
        assert!(r.get(&[b'b'; 20]).is_some());
    }

    #[test]
    fn a_parse_over_the_budget_runs_but_is_not_kept() {
        let mut p = Prep::new(true, 10, Arc::new(Registry::with_budget(16)));
        let mut s1 = StatementCache::default();
        let wire = send(
            &mut p,
            &mut s1,
            &[
                parse("s1", "select 'a long text'"),
                bind("s1"),
                frame(b'S', b""),
            ],
        );
        let stmt = p.lookup(b"s1").unwrap().clone();
        assert!(!stmt.kept);
        assert_eq!(p.registry.bytes(), 0);
        // Sent whole, under a name of its own, and usable there.
        let name = format!("causeway_{}", stmt.id);
        assert_eq!(
            wire[0],
            (
                b'P',
                format!("{name}\0select 'a long text'\0\0\0").into_bytes()
            )
        );
        assert!(wire[1].1.starts_with(format!("\0{name}\0").as_bytes()));
        assert_eq!(reply(&mut p, &mut s1, b"12Z"), b"12Z");
    }

    #[test]
    fn a_large_parse_is_renamed_by_its_front_and_not_kept() {
        let mut p = prep(10);
        let mut s1 = StatementCache::default();
        let text = "select 1 -- ".to_string() + &"x".repeat(MAX_HELD);
        let big = parse("big", &text);
        // Only its header and name are needed.
        let head = &big[..HEADER_LEN + 4];
        let action = p.client(b'P', head, big.len(), &mut s1);
        assert_eq!(action, ClientAction::Took(HEADER_LEN + 4));
        let stmt = p.lookup(b"big").unwrap().clone();
        let name = format!("causeway_{}\0", stmt.id);
        assert_eq!(p.stage[0], b'P');
        let len = i32::from_be_bytes([p.stage[1], p.stage[2], p.stage[3], p.stage[4]]) as usize;
        assert_eq!(&p.stage[HEADER_LEN..], name.as_bytes());
        assert_eq!(len + 1, p.stage.len() + big.len() - (HEADER_LEN + 4));
        p.stage.clear();
        assert!(s1.contains(stmt.id) && p.registry.bytes() == 0);
        p.marker(b'S');
        assert_eq!(reply(&mut p, &mut s1, b"1Z"), b"1Z");
        // Bound on the same server: its own name.
        let wire = send(&mut p, &mut s1, &[bind("big"), frame(b'S', b"")]);
        assert!(wire[0].1.starts_with(format!("\0{name}").as_bytes()));
        reply(&mut p, &mut s1, b"2Z");
        // On another server: 26000 saying why, never a Parse of a lost text.
        let mut s2 = StatementCache::default();
        let wire = send(&mut p, &mut s2, &[bind("big"), frame(b'S', b"")]);
        assert_eq!(wire.iter().map(|x| x.0).collect::<Vec<_>>(), b"BS".to_vec());
        assert_eq!(
            p.server(b'E', &error("26000"), &mut s2),
            ServerAction::Replace
        );
        assert_eq!(field_code(&p.stage), "26000");
        assert!(String::from_utf8_lossy(&p.stage).contains("1 MiB"));
        p.stage.clear();
        p.server(b'Z', b"", &mut s2);
        // The name reused by another large Parse: made to fail, then 42P05.
        let action = p.client(b'P', head, big.len(), &mut s1);
        assert_eq!(action, ClientAction::Took(HEADER_LEN + 4));
        assert!(p.stage.ends_with(b"causeway_dup\0causeway_dup "));
        p.stage.clear();
        p.marker(b'S');
        assert_eq!(
            p.server(b'E', &error("42601"), &mut s1),
            ServerAction::Replace
        );
        assert_eq!(field_code(&p.stage), "42P05");
        // A name that does not end within MAX_HELD bytes is refused.
        let mut q = prep(10);
        let noname = frame(b'P', &vec![b'n'; MAX_HELD + 10]);
        assert!(matches!(
            q.client(b'P', &noname[..MAX_HELD], noname.len(), &mut s1),
            ClientAction::Malformed(_)
        ));
        assert_eq!(
            q.client(b'P', &noname[..100], noname.len(), &mut s1),
            ClientAction::NeedMore
        );
    }

    #[test]
    fn sql_prepare_texts_are_kept_within_a_byte_budget() {
        use super::super::sql_prepared::MAX_SQL_TEXT_BYTES;
        let mut p = prep(10);
        let mut cache = StatementCache::default();
        let body = "x".repeat(60 * 1024);
        let mut kept = 0;
        for i in 0..40 {
            let q = frame(
                b'Q',
                format!("PREPARE s{i} AS SELECT '{body}'\0").as_bytes(),
            );
            p.query(&q, q.len(), &mut cache);
            kept = p.sql_text.len();
        }
        // 40 x 60 KiB offered: only what fits in the budget is kept.
        assert!(kept > 0 && kept < 40, "{kept}");
        assert!(p.sql_text_bytes <= MAX_SQL_TEXT_BYTES);
        assert_eq!(p.sql_recognized as usize, kept, "the rest run untracked");
        // DEALLOCATE gives the bytes back: the next PREPARE is kept.
        let d = frame(b'Q', b"DEALLOCATE s0\0");
        p.query(&d, d.len(), &mut cache);
        assert_eq!(p.sql_text.len(), kept - 1);
        let q = frame(
            b'Q',
            format!("PREPARE again AS SELECT '{body}'\0").as_bytes(),
        );
        p.query(&q, q.len(), &mut cache);
        assert!(p.sql_text.contains_key("again"));
    }
}
