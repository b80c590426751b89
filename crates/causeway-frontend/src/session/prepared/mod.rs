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
//!
//! Files: `client.rs` (what a client message becomes), `server.rs` (what
//! a reply becomes), `names.rs` (server-side names); the per-database
//! statements live in `databases/statements.rs`.

mod client;
mod names;
mod server;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use causeway_pool::StatementCache;

pub use crate::databases::statements::{Registry, Stmt};
pub use names::ServerName;

/// A client message larger than this is never held whole: routing treats
/// it as uncertain (primary), only its header and names are looked at, and
/// it is forwarded as it arrives. A named Parse that large is not kept
/// (see [`Stmt::kept`]). Statement texts this long are rare (generated
/// `IN (...)` lists, bulk `VALUES`); they still run, only without being
/// re-prepared on other server connections.
pub const MAX_HELD: usize = 1 << 20;

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
}
