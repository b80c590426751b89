//! May this SQL text run on a streaming replica?
//!
//! [`Classifier::classify`] is a pure function of the text (and the
//! classifier's configuration): no I/O, no session state. It answers
//! [`Class::Read`] only when it can show the text is read-only; anything it
//! cannot show, or cannot make sense of, is [`Class::Write`] and goes to the
//! primary. Callers cache the answer by query text.
//!
//! # Why a lexer and not pg_query
//!
//! `pg_query` (libpg_query) is PostgreSQL's own parser and the most exact
//! option, but it needs libclang/bindgen and a C build, costs ~19-33 µs per
//! moderately complex query (its scanner alone ~3 µs), and the
//! routing questions do not need a syntax tree: statement type alone is not
//! enough anyway (`WITH x AS (DELETE ..) SELECT`, `SELECT .. FOR UPDATE`
//! and `SELECT nextval(..)` all parse as a SelectStmt). The `sqlparser`
//! crate is no cheaper (~14-19 µs) and, when it fails to parse, pgcat let
//! writes through to replicas.
//!
//! So this module tokenizes exactly like PostgreSQL's `scan.l` where it
//! matters for safety: comments (nested), every string flavour, quoted
//! identifiers, dollar quotes. Then it applies a small set of rules to the
//! tokens: a leading-keyword allow-list for reads, and scans of the whole
//! statement (every parenthesis depth) for the hazards below. Everything not
//! on the allow-list is a write. Measured on a busy 2-core VM
//! (`classify_timing`, an ignored test): ~150 ns for pgbench's select,
//! ~1 µs for a 5-table join, ~6 µs for a 2 KB query. It allocates nothing
//! (tokens go to a reused thread-local buffer) except the `String` of a
//! reported function name.
//!
//! # Decisions
//!
//! * Unknown function calls in a `SELECT` are reads by default, as in PgDog:
//!   PostgreSQL lets a volatile function write, but a replica will refuse it
//!   (SQLSTATE 25006) rather than lose data. Functions known to write, lock
//!   or depend on the backend ([`DEFAULT_WRITING_FUNCTIONS`] plus the
//!   configured ones) are always hazards. [`Classifier::strict_functions`]
//!   makes every call not on a built-in safe list a write.
//! * A hint comment never turns a write into a read: `/* causeway:replica */`
//!   on a write is ignored by the router, which still sends it to the
//!   primary. The classifier reports the hint and the class separately.
//! * `EXPLAIN x` is classified as `x`, with or without `ANALYZE`: a plain
//!   `EXPLAIN` of a write would run on a standby, but is rare enough that the
//!   simpler rule (no `ANALYZE` option parsing to get wrong) wins.
//! * Settings that make later transactions read-only are reported so the
//!   router can act on them, but they are session state and never reads:
//!   `SET TRANSACTION ..` and `SET transaction_read_only/transaction_isolation`
//!   are [`TxnControl::SetTransaction`]; `SET SESSION CHARACTERISTICS AS
//!   TRANSACTION READ ONLY|WRITE` and `SET|RESET default_transaction_read_only`
//!   are [`Hazard::DefaultReadOnly`]. `RESET ALL`/`DISCARD ALL` (plain
//!   [`Hazard::SessionState`]) reset it too.
//! * Several statements in one text: reads only -> [`Class::Read`]; any
//!   transaction control or Causeway command among them ->
//!   [`Hazard::MultiStatement`]; otherwise the most important inner hazard.
//! * When a statement has several hazards, the one reported is the first
//!   that leaves state in the session's backend ([`Hazard::pins_session`]:
//!   the pooler must keep the session there), else the first found.
//! * `standard_conforming_strings = off` changes where a `'...'` string
//!   containing a backslash ends. Such text is classified both ways and is a
//!   read only if both readings are.
//! * Identifiers, strings and keywords are matched ASCII-case-insensitively,
//!   quoted function names too (conservative: `"NEXTVAL"(` is a hazard).

mod functions;
mod lexer;
mod rules;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use lexer::{Kind, LexError, Lexer, Token};

pub use functions::{DEFAULT_WRITING_FUNCTIONS, SAFE_FUNCTIONS};

/// Where a statement may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class<'a> {
    /// Provably read-only: may run on a replica.
    Read,
    /// Anything else or unsure: primary (the hazard says why).
    Write(Hazard),
    /// Transaction control the session handles.
    Transaction(TxnControl),
    /// Causeway's own session commands, intercepted by the pooler and never
    /// sent to a server.
    Causeway(CausewayCommand<'a>),
}

impl Class<'_> {
    /// May run on a replica.
    pub fn is_read(&self) -> bool {
        matches!(self, Class::Read)
    }
}

/// Why a statement must run on the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hazard {
    /// INSERT, UPDATE, DELETE, MERGE (also after a WITH list).
    Dml,
    /// DDL and utility commands: CREATE, ALTER, DROP, TRUNCATE, GRANT,
    /// REVOKE, COMMENT, SECURITY LABEL, REINDEX, VACUUM, ANALYZE, CLUSTER,
    /// REFRESH MATERIALIZED VIEW, CHECKPOINT, IMPORT FOREIGN SCHEMA,
    /// REASSIGN OWNED.
    Ddl,
    /// FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE, at any depth.
    LockingRead,
    /// `SELECT .. INTO new_table` (not into a temporary table: [`Hazard::TempTable`]).
    SelectInto,
    /// A data-modifying statement inside a query (`WITH x AS (DELETE ..) SELECT`).
    WritingCte,
    /// A call of a function that writes or depends on the backend; the
    /// lowercase name as written (without schema).
    WritingFunction(String),
    /// `strict_functions` only: a call of a function not known to be safe.
    UnknownFunction(String),
    /// pg_advisory_* / pg_try_advisory_* calls: locks held by the backend.
    AdvisoryLock,
    /// COPY .. FROM.
    CopyFrom,
    /// COPY .. TO a server file or PROGRAM: a side effect on the server host.
    CopyToServer,
    /// LISTEN, UNLISTEN, NOTIFY, pg_notify().
    ListenNotify,
    /// CREATE TEMP/TEMPORARY objects, SELECT INTO TEMP, any `pg_temp` name.
    TempTable,
    /// SET, RESET, DISCARD, PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH,
    /// MOVE, CLOSE, LOAD, set_config().
    SessionState,
    /// Session state the router can act on: `SET [SESSION]
    /// default_transaction_read_only`, `SET SESSION CHARACTERISTICS AS
    /// TRANSACTION READ ONLY|READ WRITE`. `Some(v)`: later transactions
    /// default to read-only = v; `None`: reset to the server's default.
    DefaultReadOnly(Option<bool>),
    /// LOCK TABLE.
    Lock,
    /// CALL, DO: arbitrary procedural code.
    Procedure,
    /// Several statements including transaction control or a Causeway
    /// command: the session must see them one by one.
    MultiStatement,
    /// Unparseable, or not on the read allow-list.
    Unknown,
}

impl Hazard {
    /// The statement leaves state in the backend it ran on (locks, temp
    /// tables, listeners, settings, prepared statements, cursors): the
    /// session must stay on that server.
    pub fn pins_session(&self) -> bool {
        matches!(
            self,
            Hazard::AdvisoryLock
                | Hazard::TempTable
                | Hazard::ListenNotify
                | Hazard::SessionState
                | Hazard::DefaultReadOnly(_)
        )
    }

    pub(crate) fn rank(&self) -> u8 {
        if self.pins_session() {
            2
        } else {
            1
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    /// Not available on a hot standby: a SERIALIZABLE transaction cannot run
    /// on a replica even when READ ONLY.
    Serializable,
}

/// Transaction control statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnControl {
    /// BEGIN / START TRANSACTION. `read_only`: `Some(true)` for READ ONLY,
    /// `Some(false)` for READ WRITE (wins if both appear), `None` when not
    /// given. A replica can take it only if read-only and not SERIALIZABLE
    /// ([`TxnControl::replica_eligible`]).
    Begin {
        read_only: Option<bool>,
        isolation: Option<Isolation>,
    },
    /// `SET TRANSACTION modes`, `SET [LOCAL|SESSION] transaction_read_only
    /// / transaction_isolation = ..`: modes of the current transaction.
    SetTransaction {
        read_only: Option<bool>,
        isolation: Option<Isolation>,
    },
    /// `COMMIT` / `END` `[AND [NO] CHAIN]`.
    Commit {
        chain: bool,
    },
    /// `ROLLBACK` / `ABORT` `[AND [NO] CHAIN]`.
    Rollback {
        chain: bool,
    },
    Savepoint,
    /// `RELEASE [SAVEPOINT]`.
    Release,
    /// `ROLLBACK TO [SAVEPOINT]`.
    RollbackTo,
    PrepareTransaction,
    CommitPrepared,
    RollbackPrepared,
}

impl TxnControl {
    /// A BEGIN explicitly READ ONLY and not SERIALIZABLE. (The session's
    /// own defaults, e.g. `default_transaction_isolation`, are the
    /// router's business.)
    pub fn replica_eligible(&self) -> bool {
        matches!(
            self,
            TxnControl::Begin {
                read_only: Some(true),
                isolation,
            } if *isolation != Some(Isolation::Serializable)
        )
    }
}

/// `SET|SHOW|RESET causeway.<name>`. Names are slices of the input as
/// written (compare case-insensitively); a multi-part name `causeway.a.b`
/// gives `a.b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CausewayCommand<'a> {
    /// `SET [SESSION|LOCAL] causeway.<name> {=|TO} <value>`. `value` is the
    /// text after `=`/`TO`, with the quotes of a single `'...'` string
    /// removed (a doubled `''` inside is left as written).
    Set {
        name: &'a str,
        value: &'a str,
        local: bool,
    },
    /// `RESET causeway.<name>` or `SET causeway.<name> TO DEFAULT`.
    Reset { name: &'a str },
    /// `SHOW causeway.<name>`.
    Show { name: &'a str },
}

/// The value of `SET causeway.route = ..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOverride {
    Primary,
    Replica,
    Auto,
}

impl<'a> CausewayCommand<'a> {
    /// `Some` for `SET causeway.route = primary|replica|auto`.
    pub fn route(&self) -> Option<RouteOverride> {
        match *self {
            CausewayCommand::Set { name, value, .. } if name.eq_ignore_ascii_case("route") => {
                if value.eq_ignore_ascii_case("primary") {
                    Some(RouteOverride::Primary)
                } else if value.eq_ignore_ascii_case("replica") {
                    Some(RouteOverride::Replica)
                } else if value.eq_ignore_ascii_case("auto") {
                    Some(RouteOverride::Auto)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// A routing hint from a comment before the first token: `/* causeway:primary */`,
/// `/* causeway:replica */`, `/* causeway:token=XYZ */` or the same as a
/// `-- ` line comment. The first recognised hint wins; unrecognised
/// `causeway:` comments are ignored. A hint never makes a write a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint<'a> {
    Primary,
    Replica,
    /// A read-your-writes token supplied by the client (any non-space text).
    Token(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    pub class: Class<'a>,
    pub hint: Option<Hint<'a>>,
}

/// The classifier's configuration. Cheap to share (`&self` only).
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Lowercase; one `*` is a wildcard.
    writing_functions: functions::PatternSet,
    strict_functions: bool,
    /// Lowercase, exact: extra names `strict_functions` accepts.
    safe_functions: Vec<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new(&[])
    }
}

impl Classifier {
    /// [`DEFAULT_WRITING_FUNCTIONS`] plus `extra_writing_functions` (any
    /// case, without schema; `name*` is a prefix; empty names are ignored).
    pub fn new(extra_writing_functions: &[String]) -> Self {
        let mut writing_functions: Vec<functions::Pattern> = DEFAULT_WRITING_FUNCTIONS
            .iter()
            .map(|s| functions::Pattern::new(s.to_string()))
            .collect();
        for f in extra_writing_functions {
            let f = f.trim().to_ascii_lowercase();
            if f.is_empty() {
                continue;
            }
            writing_functions.push(functions::Pattern::new(f));
        }
        Classifier {
            writing_functions: functions::PatternSet::new(writing_functions),
            strict_functions: false,
            safe_functions: Vec::new(),
        }
    }

    /// `true`: a call of any function not in [`SAFE_FUNCTIONS`] or
    /// [`Classifier::safe_functions`] is [`Hazard::UnknownFunction`].
    /// Schema-qualified calls count as safe only under `pg_catalog`.
    pub fn strict_functions(mut self, strict: bool) -> Self {
        self.strict_functions = strict;
        self
    }

    /// More function names `strict_functions` accepts (any case, exact).
    pub fn safe_functions(mut self, names: &[String]) -> Self {
        self.safe_functions
            .extend(names.iter().map(|s| s.trim().to_ascii_lowercase()));
        self
    }

    pub fn classify<'a>(&self, sql: &'a str) -> Classified<'a> {
        let hint = leading_hint(sql);
        let (class, ambiguous) = self.classify_text(sql, false);
        let class = if ambiguous && class.is_read() {
            match self.classify_text(sql, true).0 {
                Class::Read => Class::Read,
                Class::Write(h) => Class::Write(h),
                _ => Class::Write(Hazard::Unknown),
            }
        } else {
            class
        };
        Classified { class, hint }
    }

    /// The class, and whether a plain string contained a backslash.
    fn classify_text<'a>(&self, sql: &'a str, backslash_quotes: bool) -> (Class<'a>, bool) {
        with_tokens(|buf| {
            let ambiguous = match lex_all(sql, backslash_quotes, buf) {
                Ok(a) => a,
                Err(LexError) => return (Class::Write(Hazard::Unknown), false),
            };
            let mut count = 0usize;
            let mut first = None;
            let mut multi_control = false;
            let mut acc = rules::Acc::default();
            for range in Split::new(sql, buf) {
                count += 1;
                let class = self.statement(rules::Stmt::new(sql, &buf[range]));
                if count == 1 {
                    first = Some(class);
                    continue;
                }
                if count == 2 {
                    fold(&mut acc, &mut multi_control, first.take().unwrap());
                }
                fold(&mut acc, &mut multi_control, class);
                if multi_control || acc.rank() >= 2 {
                    break;
                }
            }
            let class = match count {
                0 => Class::Read,
                1 => first.unwrap(),
                _ if multi_control => Class::Write(Hazard::MultiStatement),
                _ => acc.into_hazard().map_or(Class::Read, Class::Write),
            };
            (class, ambiguous)
        })
    }
}

fn fold(acc: &mut rules::Acc, multi_control: &mut bool, class: Class<'_>) {
    match class {
        Class::Read => {}
        Class::Write(h) => acc.add_hazard(h),
        Class::Transaction(_) | Class::Causeway(_) => *multi_control = true,
    }
}

/// The number of non-empty statements, split like psql does (at `;`
/// outside parentheses and outside `BEGIN ATOMIC .. END` bodies). Text that
/// does not lex (unterminated string or comment) counts up to and including
/// the broken statement.
pub fn statement_count(sql: &str) -> usize {
    with_tokens(|buf| {
        if lex_all(sql, false, buf).is_err() {
            // Stands for the broken token, so its statement counts.
            buf.push(Token {
                kind: Kind::Other,
                start: sql.len() as u32,
                end: sql.len() as u32,
            });
        }
        Split::new(sql, buf).count()
    })
}

thread_local! {
    static TOKENS: RefCell<Vec<Token>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with an empty token buffer, reusing a thread-local one.
fn with_tokens<R>(f: impl FnOnce(&mut Vec<Token>) -> R) -> R {
    TOKENS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            if buf.capacity() > 16 * 1024 {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// Lexes all of `sql` into `out`. `Ok(true)`: a plain string contained a
/// backslash. On error `out` holds the tokens before the broken one.
fn lex_all(sql: &str, backslash_quotes: bool, out: &mut Vec<Token>) -> Result<bool, LexError> {
    if sql.len() > u32::MAX as usize {
        return Err(LexError);
    }
    let mut lx = Lexer::new(sql, backslash_quotes);
    while let Some(t) = lx.next_token() {
        out.push(t?);
    }
    Ok(lx.saw_backslash_in_plain_string)
}

/// Splits tokens into statements at `;`, like psql: not inside parentheses,
/// nor inside the `BEGIN .. END` body of `CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE` (where `CASE` also opens a block). Empty statements
/// are skipped.
struct Split<'s> {
    sql: &'s str,
    toks: &'s [Token],
    pos: usize,
}

impl<'s> Split<'s> {
    fn new(sql: &'s str, toks: &'s [Token]) -> Self {
        Split { sql, toks, pos: 0 }
    }
}

impl Iterator for Split<'_> {
    type Item = std::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.toks.len() {
            let start = self.pos;
            let st = rules::Stmt::new(self.sql, &self.toks[start..]);
            let routine = st.kw(0, "create")
                && (st.kw_any(1, &["function", "procedure"])
                    || (st.kw(1, "or")
                        && st.kw(2, "replace")
                        && st.kw_any(3, &["function", "procedure"])));
            let mut depth = 0u32;
            let mut blocks = 0u32;
            let mut end = self.toks.len();
            for (j, t) in self.toks.iter().enumerate().skip(start) {
                match t.kind {
                    Kind::Semicolon if depth == 0 && blocks == 0 => {
                        end = j;
                        break;
                    }
                    Kind::LParen => depth += 1,
                    Kind::RParen => depth = depth.saturating_sub(1),
                    Kind::Ident if routine && depth == 0 => {
                        let w = &self.sql[t.start as usize..t.end as usize];
                        if w.eq_ignore_ascii_case("begin")
                            || (w.eq_ignore_ascii_case("case") && blocks > 0)
                        {
                            blocks += 1;
                        } else if w.eq_ignore_ascii_case("end") {
                            blocks = blocks.saturating_sub(1);
                        }
                    }
                    _ => {}
                }
            }
            self.pos = end + 1;
            if end > start {
                return Some(start..end);
            }
        }
        None
    }
}

/// The first recognised hint among the comments before the first token.
fn leading_hint(sql: &str) -> Option<Hint<'_>> {
    let b = sql.as_bytes();
    let mut pos = 0;
    loop {
        while pos < b.len() && lexer::is_space(b[pos]) {
            pos += 1;
        }
        let body = if b[pos..].starts_with(b"--") {
            let end = lexer::skip_line_comment(b, pos);
            let body = &sql[pos + 2..end];
            pos = end;
            body
        } else if b[pos..].starts_with(b"/*") {
            let end = lexer::skip_block_comment(b, pos).ok()?;
            let body = &sql[pos + 2..end - 2];
            pos = end;
            body
        } else {
            return None;
        };
        if let Some(h) = parse_hint(body) {
            return Some(h);
        }
    }
}

fn parse_hint(body: &str) -> Option<Hint<'_>> {
    const PREFIX: &str = "causeway:";
    let body = body.trim_start();
    let b = body.as_bytes();
    if b.len() < PREFIX.len() || !b[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes()) {
        return None;
    }
    let rest = body[PREFIX.len()..].trim_start();
    let word = &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())];
    if word.eq_ignore_ascii_case("primary") {
        Some(Hint::Primary)
    } else if word.eq_ignore_ascii_case("replica") {
        Some(Hint::Replica)
    } else if word.len() > 6 && word.as_bytes()[..6].eq_ignore_ascii_case(b"token=") {
        Some(Hint::Token(&word[6..]))
    } else {
        None
    }
}
