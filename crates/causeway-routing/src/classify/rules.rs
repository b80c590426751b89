//! Per-statement rules over the token slice of one statement.

use super::functions::{self, FnKind, SAFE_FUNCTIONS};
use super::lexer::{Kind, Token};
use super::{CausewayCommand, Class, Classifier, Hazard, Isolation, TxnControl};

/// The tokens of one statement, with the text they point into.
#[derive(Clone, Copy)]
pub(crate) struct Stmt<'s, 'a> {
    sql: &'a str,
    t: &'s [Token],
}

impl<'s, 'a> Stmt<'s, 'a> {
    pub fn new(sql: &'a str, t: &'s [Token]) -> Self {
        Stmt { sql, t }
    }

    fn len(&self) -> usize {
        self.t.len()
    }

    fn is(&self, i: usize, kind: Kind) -> bool {
        self.t.get(i).is_some_and(|t| t.kind == kind)
    }

    fn text(&self, i: usize) -> &'a str {
        let t = self.t[i];
        &self.sql[t.start as usize..t.end as usize]
    }

    /// Token `i` is the unquoted keyword `w` (lowercase).
    pub fn kw(&self, i: usize, w: &str) -> bool {
        self.t.get(i).is_some_and(|t| {
            t.kind == Kind::Ident
                && (t.end - t.start) as usize == w.len()
                && self.sql.as_bytes()[t.start as usize..t.end as usize]
                    .eq_ignore_ascii_case(w.as_bytes())
        })
    }

    pub fn kw_any(&self, i: usize, ws: &[&str]) -> bool {
        ws.iter().any(|w| self.kw(i, w))
    }

    fn op(&self, i: usize, op: &str) -> bool {
        self.is(i, Kind::Op) && self.text(i) == op
    }

    /// An identifier, quoted or not (a savepoint, cursor, setting name).
    fn is_name(&self, i: usize) -> bool {
        self.is(i, Kind::Ident) || self.is(i, Kind::QuotedIdent)
    }

    /// The name at `i` without quotes.
    fn name(&self, i: usize) -> &'a str {
        let s = self.text(i);
        if self.is(i, Kind::QuotedIdent) {
            &s[1..s.len() - 1]
        } else {
            s
        }
    }

    /// `kw`, or the same word as a quoted identifier.
    fn word(&self, i: usize, w: &str) -> bool {
        self.is_name(i) && self.name(i).eq_ignore_ascii_case(w)
    }

    fn slice(&self, from: usize, to: usize) -> Stmt<'s, 'a> {
        Stmt {
            sql: self.sql,
            t: &self.t[from..to],
        }
    }

    /// The index of the `)` matching the `(` at `open`.
    fn close_paren(&self, open: usize) -> Option<usize> {
        let mut depth = 0usize;
        for (j, t) in self.t.iter().enumerate().skip(open) {
            match t.kind {
                Kind::LParen => depth += 1,
                Kind::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// The hazard to report: the first of the highest rank
/// ([`Hazard::pins_session`] first).
#[derive(Default)]
pub(crate) struct Acc {
    best: Option<Hazard>,
    /// `best`'s rank, 0 when none.
    rank: u8,
}

impl Acc {
    #[inline]
    pub fn rank(&self) -> u8 {
        self.rank
    }

    /// `make` runs only if the hazard will be kept.
    #[inline]
    fn add(&mut self, rank: u8, make: impl FnOnce() -> Hazard) {
        if rank > self.rank {
            let h = make();
            debug_assert_eq!(h.rank(), rank);
            self.best = Some(h);
            self.rank = rank;
        }
    }

    pub fn add_hazard(&mut self, h: Hazard) {
        self.add(h.rank(), || h)
    }

    pub fn into_hazard(self) -> Option<Hazard> {
        self.best
    }
}

/// ASCII-lowercases at most 63 bytes (PostgreSQL truncates identifiers
/// there).
fn lower_into<'b>(s: &str, buf: &'b mut [u8; 64]) -> &'b [u8] {
    let n = s.len().min(63);
    for (d, c) in buf.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = c.to_ascii_lowercase();
    }
    &buf[..n]
}

/// `pg_temp` or `pg_temp_<n>`: the session's temporary schema.
#[inline]
fn is_pg_temp(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() >= 7
        && b[..7].eq_ignore_ascii_case(b"pg_temp")
        && (b.len() == 7 || (b.len() > 8 && b[7] == b'_' && b[8..].iter().all(u8::is_ascii_digit)))
}

fn parse_bool(s: &str) -> Option<bool> {
    let mut buf = [0u8; 64];
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    let l = lower_into(s, &mut buf);
    // PostgreSQL's parse_bool: unique prefixes of true/false/yes/no, on,
    // off (from "of"), 1, 0.
    if b"true".starts_with(l) || b"yes".starts_with(l) || l == b"on" || l == b"1" {
        Some(true)
    } else if b"false".starts_with(l)
        || b"no".starts_with(l)
        || l == b"0"
        || (l.len() >= 2 && b"off".starts_with(l))
    {
        Some(false)
    } else {
        None
    }
}

fn parse_isolation(s: &str) -> Option<Isolation> {
    let s = s.trim();
    let eq = |w: &str| s.eq_ignore_ascii_case(w);
    if eq("serializable") {
        Some(Isolation::Serializable)
    } else if eq("repeatable read") {
        Some(Isolation::RepeatableRead)
    } else if eq("read committed") {
        Some(Isolation::ReadCommitted)
    } else if eq("read uncommitted") {
        Some(Isolation::ReadUncommitted)
    } else {
        None
    }
}

type Modes = (Option<bool>, Option<Isolation>);

/// `transaction_mode [[,] transaction_mode ...]` from `i` to the end.
/// `None` if anything else is there.
fn txn_modes(st: Stmt<'_, '_>, mut i: usize) -> Option<Modes> {
    let (mut ro, mut rw, mut iso) = (false, false, None);
    while i < st.len() {
        if st.kw(i, "isolation") && st.kw(i + 1, "level") {
            i += 2;
            let (level, n) = if st.kw(i, "serializable") {
                (Isolation::Serializable, 1)
            } else if st.kw(i, "repeatable") && st.kw(i + 1, "read") {
                (Isolation::RepeatableRead, 2)
            } else if st.kw(i, "read") && st.kw(i + 1, "committed") {
                (Isolation::ReadCommitted, 2)
            } else if st.kw(i, "read") && st.kw(i + 1, "uncommitted") {
                (Isolation::ReadUncommitted, 2)
            } else {
                return None;
            };
            iso = Some(level);
            i += n;
        } else if st.kw(i, "read") && st.kw(i + 1, "only") {
            ro = true;
            i += 2;
        } else if st.kw(i, "read") && st.kw(i + 1, "write") {
            rw = true;
            i += 2;
        } else if st.kw(i, "deferrable") {
            i += 1;
        } else if st.kw(i, "not") && st.kw(i + 1, "deferrable") {
            i += 2;
        } else {
            return None;
        }
        if st.is(i, Kind::Comma) {
            i += 1;
            if i == st.len() {
                return None;
            }
        }
    }
    let read_only = if rw {
        Some(false)
    } else if ro {
        Some(true)
    } else {
        None
    };
    Some((read_only, iso))
}

/// `[AND [NO] CHAIN]` at `*i`: `Some(chain)` and `*i` moved past it.
fn and_chain(st: Stmt<'_, '_>, i: &mut usize) -> Option<bool> {
    if !st.kw(*i, "and") {
        return Some(false);
    }
    if st.kw(*i + 1, "no") && st.kw(*i + 2, "chain") {
        *i += 3;
        Some(false)
    } else if st.kw(*i + 1, "chain") {
        *i += 2;
        Some(true)
    } else {
        None
    }
}

/// `causeway.<name>` (or `"causeway.<name>"`) at `i`: the name and the
/// index after it.
fn causeway_name<'a>(st: Stmt<'_, 'a>, i: usize) -> Option<(&'a str, usize)> {
    if st.word(i, "causeway") && st.is(i + 1, Kind::Dot) && st.is_name(i + 2) {
        let mut j = i + 2;
        while st.is(j + 1, Kind::Dot) && st.is_name(j + 2) {
            j += 2;
        }
        let name = if j == i + 2 {
            st.name(j)
        } else {
            &st.sql[st.t[i + 2].start as usize..st.t[j].end as usize]
        };
        return Some((name, j + 1));
    }
    if st.is(i, Kind::QuotedIdent) {
        let n = st.name(i);
        if n.len() > 9 && n.as_bytes()[..9].eq_ignore_ascii_case(b"causeway.") {
            return Some((&n[9..], i + 1));
        }
    }
    None
}

fn unknown<'a>() -> Class<'a> {
    Class::Write(Hazard::Unknown)
}

fn txn<'a>(c: TxnControl) -> Class<'a> {
    Class::Transaction(c)
}

impl Classifier {
    pub(crate) fn statement<'a>(&self, st: Stmt<'_, 'a>) -> Class<'a> {
        if st.is(0, Kind::LParen) {
            return self.query(st);
        }
        if !st.is(0, Kind::Ident) {
            return unknown();
        }
        let mut buf = [0u8; 64];
        let base = match lower_into(st.text(0), &mut buf) {
            b"select" | b"values" | b"table" | b"with" => return self.query(st),
            b"show" => return show(st),
            b"explain" => return self.explain(st),
            b"copy" => return self.copy(st),
            b"set" => return set(st),
            b"reset" => return reset(st),
            b"begin" => return begin(st, 1),
            b"start" if st.kw(1, "transaction") => return begin(st, 2),
            b"commit" | b"end" | b"rollback" | b"abort" => return end(st),
            b"savepoint" if st.is_name(1) && st.len() == 2 => return txn(TxnControl::Savepoint),
            b"release" => {
                let i = if st.kw(1, "savepoint") { 2 } else { 1 };
                if st.is_name(i) && st.len() == i + 1 {
                    return txn(TxnControl::Release);
                }
                return unknown();
            }
            b"prepare" if st.kw(1, "transaction") && st.is(2, Kind::String) => {
                if st.len() == 3 {
                    return txn(TxnControl::PrepareTransaction);
                }
                return unknown();
            }
            b"insert" | b"update" | b"delete" | b"merge" => Hazard::Dml,
            b"create" => create(st),
            b"alter" | b"drop" | b"truncate" | b"grant" | b"revoke" | b"comment" | b"security"
            | b"reindex" | b"vacuum" | b"analyze" | b"analyse" | b"cluster" | b"refresh"
            | b"checkpoint" | b"import" | b"reassign" => Hazard::Ddl,
            b"lock" => Hazard::Lock,
            b"call" | b"do" => Hazard::Procedure,
            b"listen" | b"unlisten" | b"notify" => Hazard::ListenNotify,
            b"discard" | b"prepare" | b"execute" | b"deallocate" | b"declare" | b"fetch"
            | b"move" | b"close" | b"load" => Hazard::SessionState,
            _ => return unknown(),
        };
        let mut acc = Acc::default();
        acc.add_hazard(base);
        self.scan(st, 1, false, &mut acc);
        Class::Write(acc.into_hazard().unwrap_or(Hazard::Unknown))
    }

    /// SELECT / VALUES / TABLE / WITH / `(`: a read unless a scan finds a
    /// hazard.
    fn query<'a>(&self, st: Stmt<'_, 'a>) -> Class<'a> {
        let mut acc = Acc::default();
        self.scan(st, 0, true, &mut acc);
        acc.into_hazard().map_or(Class::Read, Class::Write)
    }

    /// Scans tokens `from..` at every depth: function calls and `pg_temp`
    /// always; with `query`, also locking clauses, INTO, data-modifying
    /// keywords and paren balance.
    fn scan(&self, st: Stmt<'_, '_>, from: usize, query: bool, acc: &mut Acc) {
        let mut depth = 0usize;
        let mut broken = false;
        for i in from..st.len() {
            if acc.rank() >= 2 {
                return;
            }
            match st.t[i].kind {
                Kind::LParen => depth += 1,
                Kind::RParen => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => broken = true,
                },
                // Only inside parentheses (or a BEGIN ATOMIC body).
                Kind::Semicolon => broken = true,
                Kind::Ident => {
                    if st.is(i + 1, Kind::LParen) {
                        self.call(st, i, acc);
                    }
                    let w = st.text(i);
                    if query {
                        query_keyword(st, i, w, depth, acc);
                    }
                    if is_pg_temp(w) {
                        acc.add(2, || Hazard::TempTable);
                    }
                }
                Kind::QuotedIdent => {
                    if st.is(i + 1, Kind::LParen) {
                        self.call(st, i, acc);
                    }
                    if is_pg_temp(st.name(i)) {
                        acc.add(2, || Hazard::TempTable);
                    }
                }
                Kind::UnicodeIdent => {
                    // U&"\006Eextval"( or U&"..." UESCAPE '!' (: a name we
                    // would have to decode. Unsure: primary.
                    let s = st.text(i);
                    if st.kw(i + 1, "uescape") || (st.is(i + 1, Kind::LParen) && s.contains('\\')) {
                        acc.add(1, || Hazard::Unknown);
                    } else if st.is(i + 1, Kind::LParen) {
                        self.call(st, i, acc);
                    }
                }
                _ => {}
            }
        }
        if query && (broken || depth != 0) {
            acc.add(1, || Hazard::Unknown);
        }
    }

    /// Token `i` is followed by `(`: a function call, unless it is a type
    /// (`CAST(x AS numeric(10,2))`, `x::varchar(3)`) or a column alias list.
    fn call(&self, st: Stmt<'_, '_>, i: usize, acc: &mut Acc) {
        if i > 0 && (st.kw(i - 1, "as") || st.op(i - 1, "::")) {
            return;
        }
        let raw = st.text(i);
        let name = match st.t[i].kind {
            Kind::Ident => raw,
            Kind::QuotedIdent => &raw[1..raw.len() - 1],
            Kind::UnicodeIdent => &raw[3..raw.len() - 1],
            _ => return,
        };
        let mut buf = [0u8; 64];
        let lower = lower_into(name, &mut buf);
        if self.writing_functions.matches(lower) {
            match functions::kind_of(lower) {
                FnKind::Advisory => acc.add(2, || Hazard::AdvisoryLock),
                FnKind::SetConfig => acc.add(2, || Hazard::SessionState),
                FnKind::Notify => acc.add(2, || Hazard::ListenNotify),
                FnKind::Writing => acc.add(1, || {
                    Hazard::WritingFunction(String::from_utf8_lossy(lower).into_owned())
                }),
            }
            return;
        }
        if !self.strict_functions || acc.rank() >= 1 {
            return;
        }
        let qualified = i >= 2 && st.is(i - 1, Kind::Dot);
        let builtin = (!qualified || st.word(i - 2, "pg_catalog"))
            && SAFE_FUNCTIONS
                .binary_search_by(|s| s.as_bytes().cmp(lower))
                .is_ok();
        if builtin || self.safe_functions.iter().any(|s| s.as_bytes() == lower) {
            return;
        }
        // A CTE name with a column list: `[WITH [RECURSIVE] | ,] x(a) AS
        // ([MATERIALIZED] query`. Not a call with a column definition list,
        // `FROM f(1) AS (a int)`, whose parenthesis holds no query.
        let cte_position =
            i > 0 && (st.kw_any(i - 1, &["with", "recursive"]) || st.is(i - 1, Kind::Comma));
        if let Some(c) = st.close_paren(i + 1) {
            let query_follows = |j: usize| {
                st.is(j, Kind::LParen)
                    && (st.is(j + 1, Kind::LParen)
                        || st.kw_any(
                            j + 1,
                            &[
                                "select", "values", "with", "table", "insert", "update", "delete",
                                "merge",
                            ],
                        ))
            };
            if cte_position
                && st.kw(c + 1, "as")
                && (query_follows(c + 2) || st.kw_any(c + 2, &["materialized", "not"]))
            {
                return;
            }
        }
        acc.add(1, || {
            Hazard::UnknownFunction(String::from_utf8_lossy(lower).into_owned())
        });
    }

    fn explain<'a>(&self, st: Stmt<'_, 'a>) -> Class<'a> {
        let mut i = 1;
        // EXPLAIN (options) stmt, unless the statement itself starts with `(`.
        if st.is(i, Kind::LParen)
            && !(st.is(i + 1, Kind::LParen)
                || st.kw_any(i + 1, &["select", "with", "values", "table"]))
        {
            match st.close_paren(i) {
                Some(c) => i = c + 1,
                None => return unknown(),
            }
        }
        while st.kw_any(i, &["analyze", "analyse", "verbose"]) {
            i += 1;
        }
        if i >= st.len() {
            return unknown();
        }
        match self.statement(st.slice(i, st.len())) {
            Class::Read => Class::Read,
            Class::Write(h) => Class::Write(h),
            _ => unknown(),
        }
    }

    /// COPY [BINARY] {table [(cols)] | (query)} {FROM | TO} [PROGRAM] {file | STDIN | STDOUT} ...
    fn copy<'a>(&self, st: Stmt<'_, 'a>) -> Class<'a> {
        let mut acc = Acc::default();
        let mut i = 1;
        if st.kw(i, "binary") {
            i += 1;
        }
        if st.is(i, Kind::LParen) {
            let Some(c) = st.close_paren(i) else {
                return unknown();
            };
            if c == i + 1 {
                return unknown();
            }
            match self.statement(st.slice(i + 1, c)) {
                Class::Read => {}
                Class::Write(h) => acc.add_hazard(h),
                _ => return unknown(),
            }
            i = c + 1;
        } else {
            loop {
                if !st.is_name(i) {
                    return unknown();
                }
                if is_pg_temp(st.name(i)) {
                    acc.add_hazard(Hazard::TempTable);
                }
                i += 1;
                if !st.is(i, Kind::Dot) {
                    break;
                }
                i += 1;
            }
            if st.is(i, Kind::LParen) {
                match st.close_paren(i) {
                    Some(c) => i = c + 1,
                    None => return unknown(),
                }
            }
        }
        if st.kw(i, "from") {
            acc.add_hazard(Hazard::CopyFrom);
        } else if st.kw(i, "to") {
            if st.kw(i + 1, "program") || st.is(i + 1, Kind::String) {
                acc.add_hazard(Hazard::CopyToServer);
            } else if !st.kw(i + 1, "stdout") {
                return unknown();
            }
        } else {
            return unknown();
        }
        acc.into_hazard().map_or(Class::Read, Class::Write)
    }
}

/// FOR UPDATE/SHARE, INTO, and data-modifying keywords inside a query.
#[inline]
fn query_keyword(st: Stmt<'_, '_>, i: usize, w: &str, depth: usize, acc: &mut Acc) {
    // Cheap prefilter: for, into, insert, update, delete, merge.
    if !(3..=6).contains(&w.len())
        || !matches!(w.as_bytes()[0] | 0x20, b'f' | b'i' | b'u' | b'd' | b'm')
    {
        return;
    }
    let prev_kw = |k: &str| i > 0 && st.kw(i - 1, k);
    match w.len() {
        3 if w.eq_ignore_ascii_case("for") => {
            let j = i + 1;
            if st.kw_any(j, &["update", "share"])
                || (st.kw(j, "no") && st.kw(j + 1, "key") && st.kw(j + 2, "update"))
                || (st.kw(j, "key") && st.kw(j + 1, "share"))
            {
                acc.add(1, || Hazard::LockingRead);
            }
        }
        4 if w.eq_ignore_ascii_case("into") => {
            if prev_kw("insert") || prev_kw("merge") {
                return;
            }
            let j = i + 1;
            let temp = st.kw_any(j, &["temp", "temporary"])
                || (st.kw_any(j, &["local", "global"]) && st.kw_any(j + 1, &["temp", "temporary"]));
            if temp {
                acc.add(2, || Hazard::TempTable);
            } else {
                acc.add(1, || Hazard::SelectInto);
            }
        }
        5 | 6 => {
            let update = w.eq_ignore_ascii_case("update");
            if !(update
                || w.eq_ignore_ascii_case("insert")
                || w.eq_ignore_ascii_case("delete")
                || w.eq_ignore_ascii_case("merge"))
            {
                return;
            }
            // `t.update`, `update.x`, `AS update`: names, not statements.
            if (i > 0 && st.is(i - 1, Kind::Dot)) || st.is(i + 1, Kind::Dot) || prev_kw("as") {
                return;
            }
            // FOR [NO KEY] UPDATE: the locking clause.
            if update && (prev_kw("for") || prev_kw("key")) {
                return;
            }
            if depth == 0 {
                acc.add(1, || Hazard::Dml);
            } else {
                acc.add(1, || Hazard::WritingCte);
            }
        }
        _ => {}
    }
}

fn create(st: Stmt<'_, '_>) -> Hazard {
    let mut i = 1;
    if st.kw(i, "or") && st.kw(i + 1, "replace") {
        i += 2;
    }
    if st.kw_any(i, &["global", "local"]) {
        i += 1;
    }
    if st.kw_any(i, &["temp", "temporary"]) {
        Hazard::TempTable
    } else {
        Hazard::Ddl
    }
}

fn show<'a>(st: Stmt<'_, 'a>) -> Class<'a> {
    match causeway_name(st, 1) {
        Some((name, j)) if j == st.len() => Class::Causeway(CausewayCommand::Show { name }),
        Some(_) => unknown(),
        None => Class::Read,
    }
}

fn reset<'a>(st: Stmt<'_, 'a>) -> Class<'a> {
    if let Some((name, j)) = causeway_name(st, 1) {
        if j == st.len() {
            return Class::Causeway(CausewayCommand::Reset { name });
        }
        return unknown();
    }
    if st.kw(1, "default_transaction_read_only") && st.len() == 2 {
        return Class::Write(Hazard::DefaultReadOnly(None));
    }
    Class::Write(Hazard::SessionState)
}

/// The single value token of `SET name {=|TO} value` starting at `i`
/// (after the name), without the quotes of a plain string.
fn single_value<'a>(st: Stmt<'_, 'a>, i: usize) -> Option<&'a str> {
    if !(st.op(i, "=") || st.kw(i, "to")) || st.len() != i + 2 {
        return None;
    }
    let v = st.text(i + 1);
    match st.t[i + 1].kind {
        Kind::Ident | Kind::Number => Some(v),
        Kind::String if v.starts_with('\'') => Some(&v[1..v.len() - 1]),
        _ => None,
    }
}

fn set<'a>(st: Stmt<'_, 'a>) -> Class<'a> {
    let session_state = Class::Write(Hazard::SessionState);
    let mut i = 1;
    let mut local = false;
    if st.kw(i, "local") {
        local = true;
        i += 1;
    } else if st.kw(i, "session") && !st.kw_any(i + 1, &["authorization", "characteristics"]) {
        i += 1;
    }
    if st.kw(i, "session") && st.kw(i + 1, "characteristics") {
        if !(st.kw(i + 2, "as") && st.kw(i + 3, "transaction")) || st.len() == i + 4 {
            return unknown();
        }
        return match txn_modes(st, i + 4) {
            Some((Some(ro), _)) => Class::Write(Hazard::DefaultReadOnly(Some(ro))),
            Some((None, _)) => session_state,
            None => unknown(),
        };
    }
    if st.kw(i, "transaction") {
        if st.kw(i + 1, "snapshot") {
            return session_state;
        }
        if st.len() == i + 1 {
            return unknown();
        }
        return match txn_modes(st, i + 1) {
            Some((read_only, isolation)) => txn(TxnControl::SetTransaction {
                read_only,
                isolation,
            }),
            None => unknown(),
        };
    }
    if let Some((name, j)) = causeway_name(st, i) {
        if !(st.op(j, "=") || st.kw(j, "to")) || st.len() <= j + 1 {
            return unknown();
        }
        let v = j + 1;
        if st.len() == v + 1 && st.kw(v, "default") {
            return Class::Causeway(CausewayCommand::Reset { name });
        }
        let value = single_value(st, j)
            .unwrap_or_else(|| &st.sql[st.t[v].start as usize..st.t[st.len() - 1].end as usize]);
        return Class::Causeway(CausewayCommand::Set { name, value, local });
    }
    if st.kw(i, "default_transaction_read_only") {
        if local {
            return session_state;
        }
        if st.len() == i + 3 && st.kw(i + 2, "default") {
            return Class::Write(Hazard::DefaultReadOnly(None));
        }
        return match single_value(st, i + 1).and_then(parse_bool) {
            Some(v) => Class::Write(Hazard::DefaultReadOnly(Some(v))),
            None => session_state,
        };
    }
    if st.kw(i, "transaction_read_only") {
        return match single_value(st, i + 1).and_then(parse_bool) {
            Some(v) => txn(TxnControl::SetTransaction {
                read_only: Some(v),
                isolation: None,
            }),
            None => session_state,
        };
    }
    if st.kw(i, "transaction_isolation") {
        return match single_value(st, i + 1).and_then(parse_isolation) {
            Some(level) => txn(TxnControl::SetTransaction {
                read_only: None,
                isolation: Some(level),
            }),
            None => session_state,
        };
    }
    session_state
}

/// BEGIN [WORK | TRANSACTION] [modes] / START TRANSACTION [modes]; `i`:
/// the first token after BEGIN or START TRANSACTION.
fn begin<'a>(st: Stmt<'_, 'a>, mut i: usize) -> Class<'a> {
    if i == 1 && st.kw_any(i, &["work", "transaction"]) {
        i += 1;
    }
    match txn_modes(st, i) {
        Some((read_only, isolation)) => txn(TxnControl::Begin {
            read_only,
            isolation,
        }),
        None => unknown(),
    }
}

/// COMMIT / END / ROLLBACK / ABORT and their PREPARED and TO forms.
fn end<'a>(st: Stmt<'_, 'a>) -> Class<'a> {
    let commit = st.kw_any(0, &["commit", "end"]);
    if st.kw(1, "prepared") && st.is(2, Kind::String) && st.len() == 3 {
        if st.kw(0, "commit") {
            return txn(TxnControl::CommitPrepared);
        }
        if st.kw(0, "rollback") {
            return txn(TxnControl::RollbackPrepared);
        }
        return unknown();
    }
    let mut i = 1;
    if st.kw_any(i, &["work", "transaction"]) {
        i += 1;
    }
    if st.kw(0, "rollback") && st.kw(i, "to") {
        i += 1;
        if st.kw(i, "savepoint") {
            i += 1;
        }
        if st.is_name(i) && st.len() == i + 1 {
            return txn(TxnControl::RollbackTo);
        }
        return unknown();
    }
    match and_chain(st, &mut i) {
        Some(chain) if i == st.len() => txn(if commit {
            TxnControl::Commit { chain }
        } else {
            TxnControl::Rollback { chain }
        }),
        _ => unknown(),
    }
}
