//! The prepared statements of a live database: one entry per distinct
//! (query text, parameter types), shared by its sessions, their texts
//! within a byte budget (`max_prepared_statement_bytes`). Sessions map
//! their own names onto these (session/prepared).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use causeway_protocol::frontend::names::identity_query;
use causeway_protocol::HEADER_LEN;
use parking_lot::Mutex;

/// Ids are never reused: a name on a server means one statement forever.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One distinct statement (query text and parameter types).
#[derive(Debug)]
pub struct Stmt {
    pub id: u64,
    /// Query text, NUL, parameter type count and OIDs (a Parse body after
    /// the name).
    pub(crate) identity: Arc<[u8]>,
    /// Routing class, computed once: true = read-only.
    pub(crate) read: OnceLock<bool>,
    /// A server accepted a Parse of it (so a client's Parse of it may be
    /// answered without one).
    pub(crate) verified: AtomicBool,
    /// A server said its result type changed (0A000 `cached plan must not
    /// change result type`, after `ALTER TABLE ... TYPE`): new Parses of
    /// the text get a new statement, really parsed; clients still holding
    /// this one get PostgreSQL's error wherever it is not prepared yet.
    pub(crate) retired: AtomicBool,
    /// Its text is kept (and counted in the database's byte budget): it
    /// can be prepared on any server. An unkept one (a Parse larger than
    /// the session's MAX_HELD, or beyond `max_prepared_statement_bytes`) was
    /// forwarded as it arrived and exists only on the server connection
    /// that parsed it; `size` is its Parse's length, for the error.
    pub(crate) kept: bool,
    pub(crate) size: usize,
    /// The budget its text is counted in, given back when it goes.
    pub(crate) budget: Option<Arc<AtomicUsize>>,
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
    pub(crate) fn unkept(size: usize) -> Self {
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

    pub(crate) fn is_retired(&self) -> bool {
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
