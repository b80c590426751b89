//! Planning a unit of work: what the request at the front of the client
//! buffer may do, decided from its text before a server is chosen.
//!
//! A unit is one simple Query, or extended-protocol messages up to and
//! including a Sync. Only a unit whose every statement the classifier
//! proves read-only, and that is wholly in the buffer, may go to a replica;
//! anything else (a Bind of a statement parsed in an earlier unit, a
//! FunctionCall, a unit still arriving) goes to the primary.

use bytes::Buf;
use causeway_protocol::frontend::{bind_names, parse_statement, query_text, Frames};
use causeway_routing::{
    CausewayCommand, Class, Classifier, Hint, Intent, Isolation, Request, RouteOverride, Token,
    TokenError, TxnControl,
};

use super::local::LocalCommand;
use super::prepared::{Prep, MAX_HELD};
use super::{Session, State};

/// What to do with the unit at the front of the buffer.
#[derive(Debug)]
pub(super) enum Plan<'a> {
    /// Route it. `unit`: its length in bytes when the whole unit is in the
    /// buffer (else 0). On a replica the flow forwards exactly that much
    /// before routing again; a refused unit is skipped with an error.
    Route {
        req: Request,
        unit: usize,
        /// A `/* causeway:token=... */` comment, decoded.
        token: Option<Result<Token, TokenError>>,
    },
    /// A Causeway command, answered without a server (`len`: its frame).
    Local {
        cmd: CausewayCommand<'a>,
        len: usize,
    },
}

/// A planned unit of work.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unit {
    /// Its first message's tag.
    pub tag: u8,
    pub req: Request,
    /// Its length when the whole unit is in the buffer, else 0 (see
    /// [`Plan::Route`]).
    pub len: usize,
}

impl Session {
    /// Step one of a unit of work: what the request at the front of the
    /// buffer is (its first message's header is there). Err(Idle): a
    /// Causeway command was answered here; Err(Closed): the session ends.
    /// Without read/write splitting every unit is a write of unknown length.
    pub(super) async fn plan(&mut self, tag: u8) -> Result<Unit, State> {
        if !self.split {
            let req = Request::write();
            return Ok(Unit { tag, req, len: 0 });
        }
        match self.classify_unit(tag).await? {
            Some((req, len)) => Ok(Unit { tag, req, len }),
            None => Err(State::Idle),
        }
    }

    /// Classifies the unit. Ok(None): a Causeway command was answered here.
    async fn classify_unit(&mut self, tag: u8) -> Result<Option<(Request, usize)>, State> {
        let steer = Steer {
            route: self.route,
            default_read_only: self
                .params
                .get("default_transaction_read_only")
                .is_some_and(|v| v.eq_ignore_ascii_case("on") || v == "1" || v == "true"),
        };
        match tag {
            b'Q' => {
                self.local_ext.abandon_unit();
                let len = frame_len(&self.client.buf);
                if !(causeway_protocol::HEADER_LEN..=MAX_HELD).contains(&len) {
                    // Never held whole: unsure, so the primary (forwarded
                    // as it arrives; Causeway commands are short).
                    return Ok(Some((Request::write(), 0)));
                }
                self.fill(len).await?;
                let classifier = self.classifier.clone();
                match plan_query(&classifier, &self.client.buf[..len], steer) {
                    Plan::Route { req, unit, token } => self.with_token(req, unit, token).await,
                    Plan::Local { cmd, len } => {
                        let cmd = LocalCommand::from(cmd);
                        self.client.buf.advance(len);
                        self.local(cmd).await?;
                        Ok(None)
                    }
                }
            }
            b'P' | b'B' | b'D' | b'C' | b'E' | b'H' | b'S' if self.local_extended() => {
                self.local_unit().await?;
                Ok(None)
            }
            b'P' | b'B' | b'D' | b'C' if tag == b'P' || self.tracks_prepared() => {
                if self.tracks_prepared() {
                    self.prep_made();
                }
                // The rest of the unit is usually in the same packet; one
                // look at the socket without waiting, then decide.
                if !Frames::new(&self.client.buf).any(|(t, _)| t == b'S') {
                    let _ = self.client.try_read_more();
                }
                let classifier = self.classifier.clone();
                let prep = self.prep.as_deref().filter(|p| p.on);
                match plan_extended(&classifier, &self.client.buf, steer, prep) {
                    Plan::Route { req, unit, token } => self.with_token(req, unit, token).await,
                    Plan::Local { .. } => Ok(Some((Request::write(), 0))),
                }
            }
            _ => Ok(Some((Request::write(), 0))),
        }
    }

    /// Is the unit at the front of the buffer Causeway commands over the
    /// extended protocol (see `local_ext.rs`)?
    fn local_extended(&mut self) -> bool {
        if self.local_ext.in_unit() {
            return true;
        }
        if Frames::new(&self.client.buf).next().is_none() {
            // The first message is usually whole already; one look at the
            // socket without waiting.
            let _ = self.client.try_read_more();
        }
        self.local_ext.claims(&self.client.buf, &self.classifier)
    }

    /// A token in a comment is imported before the unit is routed; a bad
    /// one fails the unit.
    async fn with_token(
        &mut self,
        req: Request,
        unit: usize,
        token: Option<Result<Token, TokenError>>,
    ) -> Result<Option<(Request, usize)>, State> {
        if let Some(t) = token {
            if let Err(e) = self.import_token(t) {
                return Err(self.refuse(unit, "22023", &e).await);
            }
        }
        Ok(Some((req, unit)))
    }

    /// Reads until the buffer holds `len` bytes.
    async fn fill(&mut self, len: usize) -> Result<(), State> {
        while self.client.buf.len() < len {
            tokio::select! {
                r = self.client.read_more() => {
                    if matches!(r, Ok(0) | Err(_)) {
                        return Err(State::Closed("client closed connection"));
                    }
                }
                _ = self.info.info.wake.woken() => {
                    if let Some(closed) = self.interrupted().await {
                        return Err(closed);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Length of the frame at the front of `buf` (its header is there and was
/// checked against max_packet_size).
fn frame_len(buf: &[u8]) -> usize {
    match causeway_protocol::frame_header(buf, usize::MAX) {
        Some(Ok((_, len))) => len,
        _ => 0,
    }
}

/// Session facts that steer the plan.
#[derive(Debug, Clone, Copy)]
pub(super) struct Steer {
    pub route: RouteOverride,
    /// `default_transaction_read_only` is on for the session.
    pub default_read_only: bool,
}

/// Plans a simple Query (its whole frame is in `frame`).
pub(super) fn plan_query<'a>(classifier: &Classifier, frame: &'a [u8], steer: Steer) -> Plan<'a> {
    let text = query_text(&frame[causeway_protocol::HEADER_LEN..])
        .and_then(|t| std::str::from_utf8(t).ok());
    let Some(sql) = text else {
        return route(Intent::Write, None, steer, 0);
    };
    let c = classifier.classify(sql);
    let intent = match c.class {
        Class::Causeway(cmd) => {
            return Plan::Local {
                cmd,
                len: frame.len(),
            }
        }
        Class::Read => Intent::Read,
        Class::Transaction(t) if read_only_txn(t, steer.default_read_only) => Intent::ReadOnlyTxn,
        _ => Intent::Write,
    };
    route(intent, c.hint, steer, frame.len())
}

/// Plans an extended-protocol unit. `buf` is the client buffer (complete
/// frames at its front). `prep`: the client's tracked prepared statements
/// (None when they are passed through).
pub(super) fn plan_extended(
    classifier: &Classifier,
    buf: &[u8],
    steer: Steer,
    prep: Option<&Prep>,
) -> Plan<'static> {
    let mut frames = Frames::new(buf);
    let mut scan = UnitScan::new(classifier, prep);
    let mut read = true;
    let mut unit = None;
    for (tag, body) in frames.by_ref() {
        let still_read = match tag {
            b'P' => scan.parse(body),
            b'B' => scan.bind(body),
            b'D' | b'E' | b'H' | b'C' => true,
            b'S' => {
                unit = Some(frames.consumed());
                break;
            }
            _ => false,
        };
        if !still_read {
            read = false;
            break;
        }
    }
    if unit.is_none() {
        // Find the unit's end anyway, so a refusal can skip it.
        for (tag, _) in frames.by_ref() {
            if tag == b'S' {
                unit = Some(frames.consumed());
                break;
            }
        }
    }
    let hint = scan.first_hint.flatten();
    let plan = match unit {
        Some(len) if read => route(Intent::Read, hint, steer, len),
        Some(len) => route(Intent::Write, hint, steer, len),
        None => route(Intent::Write, hint, steer, 0),
    };
    match plan {
        Plan::Route { req, unit, .. } => Plan::Route {
            req,
            unit,
            token: scan.token,
        },
        p => p,
    }
}

/// What the messages of an extended-protocol unit so far say.
struct UnitScan<'b, 'c> {
    classifier: &'c Classifier,
    prep: Option<&'c Prep>,
    /// Statements parsed in this unit (at most 8 are followed).
    parsed: [&'b [u8]; 8],
    n_parsed: usize,
    /// The first Parse's hint (Some(None): it had none).
    first_hint: Option<Option<Hint<'static>>>,
    token: Option<Result<Token, TokenError>>,
}

impl<'b, 'c> UnitScan<'b, 'c> {
    fn new(classifier: &'c Classifier, prep: Option<&'c Prep>) -> Self {
        UnitScan {
            classifier,
            prep,
            parsed: [b""; 8],
            n_parsed: 0,
            first_hint: None,
            token: None,
        }
    }

    /// A Parse: false when the unit cannot be a read. A named statement
    /// outlives the unit: untracked, it is prepared where writes go;
    /// tracked, it is prepared on demand wherever it later runs.
    fn parse(&mut self, body: &'b [u8]) -> bool {
        let sql = parse_statement(body).and_then(|(name, q)| {
            if (name.is_empty() || self.prep.is_some()) && self.n_parsed < self.parsed.len() {
                self.parsed[self.n_parsed] = name;
                self.n_parsed += 1;
                std::str::from_utf8(q).ok()
            } else {
                None
            }
        });
        let Some(sql) = sql else {
            return false;
        };
        let c = self.classifier.classify(sql);
        if self.first_hint.is_none() {
            if let Some(Hint::Token(t)) = c.hint {
                self.token = Some(Token::decode(t));
            }
            self.first_hint = Some(c.hint.map(own_hint));
        }
        c.class.is_read()
    }

    /// A Bind may only use a statement parsed in this unit (one parsed
    /// earlier may live on another server), or a tracked one that is
    /// read-only (classified once, cached with it).
    fn bind(&self, body: &[u8]) -> bool {
        let classifier = self.classifier;
        bind_names(body).is_some_and(|(_, stmt)| {
            self.parsed[..self.n_parsed].contains(&stmt)
                || (!stmt.is_empty()
                    && self.prep.and_then(|p| p.lookup(stmt)).is_some_and(|s| {
                        s.is_read(|sql| {
                            let c = classifier.classify(sql);
                            c.class.is_read() && !matches!(c.hint, Some(Hint::Primary))
                        })
                    }))
        })
    }
}

/// Hints only steer; tokens (the read-your-writes issue) are not routes.
fn own_hint(h: Hint<'_>) -> Hint<'static> {
    match h {
        Hint::Primary => Hint::Primary,
        Hint::Replica => Hint::Replica,
        Hint::Token(_) => Hint::Token(""),
    }
}

fn read_only_txn(t: TxnControl, default_read_only: bool) -> bool {
    match t {
        TxnControl::Begin {
            read_only: None,
            isolation,
        } => default_read_only && isolation != Some(Isolation::Serializable),
        t => t.replica_eligible(),
    }
}

fn route(intent: Intent, hint: Option<Hint<'_>>, steer: Steer, unit: usize) -> Plan<'static> {
    let token = match hint {
        Some(Hint::Token(t)) => Some(Token::decode(t)),
        _ => None,
    };
    let (force_primary, prefer_replica) = match (hint, steer.route) {
        (Some(Hint::Primary), _) => (true, false),
        (Some(Hint::Replica), _) => (false, true),
        (_, RouteOverride::Primary) => (true, false),
        (_, RouteOverride::Replica) => (false, true),
        _ => (false, false),
    };
    Plan::Route {
        req: Request {
            intent,
            force_primary,
            prefer_replica,
        },
        unit,
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use causeway_protocol::message as frame;

    fn q(sql: &str) -> Vec<u8> {
        frame(b'Q', format!("{sql}\0").as_bytes())
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        frame(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn bind(stmt: &str) -> Vec<u8> {
        frame(b'B', format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes())
    }

    const AUTO: Steer = Steer {
        route: RouteOverride::Auto,
        default_read_only: false,
    };

    fn intent(p: &Plan<'_>) -> (Intent, usize, bool) {
        match p {
            Plan::Route { req, unit, .. } => (req.intent, *unit, req.force_primary),
            Plan::Local { .. } => panic!("local"),
        }
    }

    #[test]
    fn simple_queries() {
        let c = Classifier::default();
        let f = q("select 1");
        assert_eq!(
            intent(&plan_query(&c, &f, AUTO)),
            (Intent::Read, f.len(), false)
        );
        let f = q("insert into t values (1)");
        assert_eq!(intent(&plan_query(&c, &f, AUTO)).0, Intent::Write);
        let f = q("BEGIN READ ONLY");
        assert_eq!(intent(&plan_query(&c, &f, AUTO)).0, Intent::ReadOnlyTxn);
        let f = q("BEGIN");
        assert_eq!(intent(&plan_query(&c, &f, AUTO)).0, Intent::Write);
        let ro = Steer {
            default_read_only: true,
            ..AUTO
        };
        assert_eq!(intent(&plan_query(&c, &f, ro)).0, Intent::ReadOnlyTxn);
        let f = q("/* causeway:primary */ select 1");
        assert_eq!(
            intent(&plan_query(&c, &f, AUTO)),
            (Intent::Read, f.len(), true)
        );
        let primary = Steer {
            route: RouteOverride::Primary,
            ..AUTO
        };
        assert!(intent(&plan_query(&c, &q("select 1"), primary)).2);
        assert!(matches!(
            plan_query(&c, &q("SET causeway.route = replica"), AUTO),
            Plan::Local { .. }
        ));
        // Not UTF-8: unsure, so the primary.
        let f = frame(b'Q', b"select '\xff'\0");
        assert_eq!(intent(&plan_query(&c, &f, AUTO)).0, Intent::Write);
    }

    #[test]
    fn extended_units() {
        let c = Classifier::default();
        let mut named = parse("s1", "select 1");
        named.extend(bind("s1"));
        named.extend(frame(b'S', b""));
        assert_eq!(
            intent(&plan_extended(&c, &named, AUTO, None)).0,
            Intent::Write
        );
        let mut buf = parse("", "select $1");
        buf.extend(bind(""));
        buf.extend(frame(b'E', b"\0\0\0\0\0"));
        buf.extend(frame(b'S', b""));
        let unit = buf.len();
        buf.extend(q("insert into t values (1)"));
        assert_eq!(
            intent(&plan_extended(&c, &buf, AUTO, None)),
            (Intent::Read, unit, false),
            "the unit ends at its Sync"
        );
        // No Sync yet: unsure.
        assert_eq!(
            intent(&plan_extended(&c, &buf[..unit - 5], AUTO, None)).0,
            Intent::Write
        );
        // Any write in the unit.
        let mut w = parse("", "select 1");
        w.extend(parse("", "delete from t"));
        w.extend(frame(b'S', b""));
        assert_eq!(intent(&plan_extended(&c, &w, AUTO, None)).0, Intent::Write);
        // A Bind of a statement parsed in an earlier unit.
        let mut b = parse("", "select 1");
        b.extend(bind("older"));
        b.extend(frame(b'S', b""));
        assert_eq!(intent(&plan_extended(&c, &b, AUTO, None)).0, Intent::Write);
    }

    #[test]
    fn tracked_named_statements_may_read_on_replicas() {
        use super::super::prepared::{Prep, Registry};
        use causeway_pool::StatementCache;
        let c = Classifier::default();
        let mut prep = Prep::new(true, 10, std::sync::Arc::new(Registry::default()));
        let mut cache = StatementCache::default();
        for (name, sql) in [("r", "select 1"), ("w", "delete from t")] {
            let f = parse(name, sql);
            prep.client(b'P', &f, f.len(), &mut cache);
        }
        // Parsed and bound in one unit: classified from its text.
        let mut u = parse("s1", "select 2");
        u.extend(bind("s1"));
        u.extend(frame(b'S', b""));
        assert_eq!(
            intent(&plan_extended(&c, &u, AUTO, Some(&prep))).0,
            Intent::Read
        );
        assert_eq!(intent(&plan_extended(&c, &u, AUTO, None)).0, Intent::Write);
        // Bound later: the cached class decides.
        let mut u = bind("r");
        u.extend(frame(b'E', b"\0\0\0\0\0"));
        u.extend(frame(b'S', b""));
        assert_eq!(
            intent(&plan_extended(&c, &u, AUTO, Some(&prep))),
            (Intent::Read, u.len(), false)
        );
        let mut u = bind("w");
        u.extend(frame(b'S', b""));
        assert_eq!(
            intent(&plan_extended(&c, &u, AUTO, Some(&prep))).0,
            Intent::Write
        );
        let mut u = bind("unknown");
        u.extend(frame(b'S', b""));
        assert_eq!(
            intent(&plan_extended(&c, &u, AUTO, Some(&prep))).0,
            Intent::Write
        );
    }

    fn token_of(p: &Plan<'_>) -> Option<Result<Token, TokenError>> {
        match p {
            Plan::Route { token, .. } => token.clone(),
            Plan::Local { .. } => panic!("local"),
        }
    }

    fn a_token() -> Token {
        Token {
            generation: causeway_routing::Generation {
                system_id: 7,
                timeline: 2,
            },
            lsn: causeway_routing::lsn::Lsn(0x3000060),
        }
    }

    #[test]
    fn a_token_comment_travels_with_the_unit() {
        let c = Classifier::default();
        let t = a_token();
        let f = q(&format!("/* causeway:token={} */ select 1", t.encode()));
        let p = plan_query(&c, &f, AUTO);
        assert_eq!(intent(&p), (Intent::Read, f.len(), false));
        assert_eq!(token_of(&p), Some(Ok(t)));
        // A bad one is carried as such: the unit fails with 22023.
        let f = q("/* causeway:token=nonsense */ select 1");
        assert!(matches!(token_of(&plan_query(&c, &f, AUTO)), Some(Err(_))));
        // Extended protocol: the first Parse's comment.
        let mut u = parse("", &format!("/* causeway:token={} */ select 1", t.encode()));
        u.extend(bind(""));
        u.extend(frame(b'S', b""));
        let p = plan_extended(&c, &u, AUTO, None);
        assert_eq!(intent(&p), (Intent::Read, u.len(), false));
        assert_eq!(token_of(&p), Some(Ok(t)));
    }

    #[test]
    fn a_causeway_command_is_answered_here_whole() {
        let c = Classifier::default();
        let mut buf = q("SHOW causeway.token");
        let len = buf.len();
        buf.extend(q("select 1"));
        match plan_query(&c, &buf[..len], AUTO) {
            Plan::Local { len: l, .. } => assert_eq!(l, len),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn a_refused_extended_unit_knows_its_end() {
        // A write unit still has its length, so a refusal skips it whole
        // and the session goes on with the next unit.
        let c = Classifier::default();
        let mut u = parse("", "delete from t");
        u.extend(bind(""));
        u.extend(frame(b'E', b"\0\0\0\0\0"));
        u.extend(frame(b'S', b""));
        let unit = u.len();
        u.extend(q("select 1"));
        assert_eq!(
            intent(&plan_extended(&c, &u, AUTO, None)),
            (Intent::Write, unit, false)
        );
    }
}
