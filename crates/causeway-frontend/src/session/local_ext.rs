//! Causeway's own commands (`SET/SHOW/RESET causeway.*`) over the extended
//! protocol, answered exactly as over the simple protocol.
//!
//! Drivers send them as Parse/Bind/Describe/Execute, unnamed (psycopg
//! before its prepare threshold) or as named prepared statements (psycopg
//! after 5 runs or with `prepare_threshold=0`, asyncpg always,
//! node-postgres with a `name`). A statement whose text is a Causeway
//! command never reaches a server: Causeway keeps it (by name), answers
//! Parse, Bind, Describe, Execute, Close and Sync itself, and runs the
//! command at Execute. asyncpg prepares with Parse + Describe + Flush and
//! only sends the Sync with its Bind/Execute, so a unit is answered message
//! by message, flushing at Flush and Sync.
//!
//! A unit (up to its Sync) is answered here when it starts with a Parse of
//! a Causeway command or refers to a statement Causeway keeps; such a unit
//! may not also carry other statements (they would need a server in the
//! middle of it): those get SQLSTATE 0A000 and the rest of the unit is
//! skipped, as after any error. Causeway commands are answered outside
//! transaction blocks (as in the simple protocol).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use bytes::{Buf, BufMut, BytesMut};
use causeway_protocol::backend;
use causeway_protocol::frontend::{parse_statement, Frames};
use causeway_routing::{Class, Classifier};

use super::local::{Answer, LocalCommand};
use super::{Session, State};

/// Named statements Causeway keeps per client: above the statement caches
/// of psycopg (`prepared_max` 100) and asyncpg (100), which close what they
/// evict.
const MAX_STATEMENTS: usize = 256;

const MIXED: &str = "Causeway's own commands (SET/SHOW/RESET causeway.*) must be sent \
                     without other statements before the next Sync";

/// The client's statements and portals that are Causeway commands.
#[derive(Debug, Default)]
pub(super) struct LocalExt {
    /// A BTreeMap: an empty one is a constant (see [`EMPTY`]).
    statements: BTreeMap<Vec<u8>, LocalCommand>,
    unnamed: Option<LocalCommand>,
    /// (name, command, results in binary format).
    portals: Vec<(Vec<u8>, LocalCommand, bool)>,
    /// Answering a unit here until its Sync.
    in_unit: bool,
    /// An error in the unit: skip to its Sync.
    failed: bool,
}

/// What a session that never used a Causeway command over the extended
/// protocol reads.
static EMPTY: LocalExt = LocalExt {
    statements: BTreeMap::new(),
    unnamed: None,
    portals: Vec::new(),
    in_unit: false,
    failed: false,
};

/// A session's [`LocalExt`], boxed on first change: most clients never
/// send a Causeway command over the extended protocol, and every connected
/// client holds one of these.
#[derive(Debug, Default)]
pub(super) struct Lazy(Option<Box<LocalExt>>);

impl Lazy {
    /// A Query arrived: the unit is over (nothing made for it).
    pub fn abandon_unit(&mut self) {
        if let Some(l) = &mut self.0 {
            l.abandon_unit();
        }
    }
}

impl Deref for Lazy {
    type Target = LocalExt;
    fn deref(&self) -> &LocalExt {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Lazy {
    fn deref_mut(&mut self) -> &mut LocalExt {
        self.0.get_or_insert_with(Default::default)
    }
}

/// A Bind body: (portal, statement, parameter count, binary results).
fn bind_shape(body: &[u8]) -> Option<(&[u8], &[u8], i16, bool)> {
    let mut b = body;
    let portal = cstr(&mut b)?;
    let stmt = cstr(&mut b)?;
    let nfmt = i16_at(&mut b)?;
    b = b.get(2 * usize::try_from(nfmt).ok()?..)?;
    let nparams = i16_at(&mut b)?;
    for _ in 0..nparams {
        let len = i32::from_be_bytes(b.get(..4)?.try_into().ok()?);
        b = &b[4..];
        if len > 0 {
            b = b.get(len as usize..)?;
        }
    }
    let nres = i16_at(&mut b)?;
    let binary = nres > 0 && i16_at(&mut b)? == 1;
    Some((portal, stmt, nparams, binary))
}

fn cstr<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = b.iter().position(|&c| c == 0)?;
    let s = &b[..n];
    *b = &b[n + 1..];
    Some(s)
}

fn i16_at(b: &mut &[u8]) -> Option<i16> {
    let v = i16::from_be_bytes(b.get(..2)?.try_into().ok()?);
    *b = &b[2..];
    Some(v)
}

/// The Causeway command `sql` is, if it is one. Cheap for everything else:
/// only text naming `causeway.` is classified.
fn command(classifier: &Classifier, sql: &[u8]) -> Option<LocalCommand> {
    if !sql.windows(9).any(|w| w.eq_ignore_ascii_case(b"causeway.")) {
        return None;
    }
    match classifier.classify(std::str::from_utf8(sql).ok()?).class {
        Class::Causeway(cmd) => Some(LocalCommand::from(cmd)),
        _ => None,
    }
}

/// RowDescription of the one text column a SHOW returns.
fn row_description(out: &mut BytesMut, column: &str, binary: bool) {
    let at = backend::begin(out, b'T');
    out.put_i16(1);
    backend::put_cstr(out, column);
    out.put_i32(0);
    out.put_i16(0);
    out.put_u32(backend::TEXT_OID);
    out.put_i16(-1);
    out.put_i32(-1);
    // A text value's binary form is its text.
    out.put_i16(i16::from(binary));
    backend::finish(out, at);
}

fn describe(out: &mut BytesMut, cmd: &LocalCommand, binary: bool) {
    match cmd.column() {
        Some(c) => row_description(out, &c, binary),
        None => out.put_slice(&[b'n', 0, 0, 0, 4]),
    }
}

impl LocalExt {
    pub fn in_unit(&self) -> bool {
        self.in_unit
    }

    /// Does the unit starting at the front of `buf` belong here?
    pub fn claims(&self, buf: &[u8], classifier: &Classifier) -> bool {
        if self.in_unit {
            return true;
        }
        let Some((tag, body)) = Frames::new(buf).next() else {
            return false;
        };
        match tag {
            b'P' => parse_statement(body).is_some_and(|(name, sql)| {
                (!name.is_empty() && self.statements.contains_key(name))
                    || command(classifier, sql).is_some()
            }),
            _ if self.statements.is_empty() => false,
            b'B' => bind_shape(body).is_some_and(|(_, s, _, _)| self.statements.contains_key(s)),
            b'D' | b'C' => {
                body.first() == Some(&b'S')
                    && body[1..]
                        .split(|&c| c == 0)
                        .next()
                        .is_some_and(|n| self.statements.contains_key(n))
            }
            _ => false,
        }
    }

    /// A Query arrived inside a unit: the unit is over.
    pub fn abandon_unit(&mut self) {
        if self.in_unit {
            self.end_unit();
        }
    }

    /// The statement `name` (empty: the unnamed one).
    fn statement(&self, name: &[u8]) -> Option<&LocalCommand> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.statements.get(name)
        }
    }

    fn portal(&self, name: &[u8]) -> Option<&(Vec<u8>, LocalCommand, bool)> {
        self.portals.iter().find(|p| p.0 == name)
    }

    /// The end of a unit: portals and the unnamed statement go (as at the
    /// end of PostgreSQL's implicit transaction; the unnamed statement is
    /// kept only within its unit).
    fn end_unit(&mut self) {
        self.in_unit = false;
        self.failed = false;
        self.portals.clear();
        self.unnamed = None;
    }
}

impl Session {
    /// Answers the complete messages at the front of the client buffer, up
    /// to and including a Sync; returns with the unit still open when more
    /// is to come. Err when the client is gone.
    pub(super) async fn local_unit(&mut self) -> Result<(), State> {
        self.local_ext.in_unit = true;
        while let Some((tag, body)) = Frames::new(&self.client.buf).next() {
            let len = body.len() + causeway_protocol::HEADER_LEN;
            if !matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'S') {
                // A Query (or anything else) ends the extended unit.
                self.local_ext.end_unit();
                break;
            }
            let body = body.to_vec();
            self.client.buf.advance(len);
            if tag == b'S' {
                backend::write_ready_for_query(&mut self.client.out, b'I');
                self.local_ext.end_unit();
                break;
            }
            if tag == b'H' {
                self.flush_local().await?;
                continue;
            }
            if self.local_ext.failed {
                continue;
            }
            if let Err((code, msg)) = self.local_message(tag, &body).await {
                backend::write_error(&mut self.client.out, false, code, &msg);
                self.local_ext.failed = true;
            }
        }
        self.flush_local().await
    }

    async fn flush_local(&mut self) -> Result<(), State> {
        self.client
            .flush()
            .await
            .map_err(|_| State::Closed("client closed connection"))
    }

    /// One message of a local unit.
    async fn local_message(&mut self, tag: u8, body: &[u8]) -> Result<(), (&'static str, String)> {
        let name_of = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
        let bad = || ("08P01", "invalid message format".to_string());
        match tag {
            b'P' => {
                let (name, sql) = parse_statement(body).ok_or_else(bad)?;
                let taken = !name.is_empty()
                    && (self.local_ext.statements.contains_key(name)
                        || self
                            .prep
                            .as_deref()
                            .is_some_and(|p| p.lookup(name).is_some()));
                if taken {
                    return Err((
                        "42P05",
                        format!("prepared statement \"{}\" already exists", name_of(name)),
                    ));
                }
                let cmd = command(&self.classifier, sql).ok_or(("0A000", MIXED.to_string()))?;
                if name.is_empty() {
                    self.local_ext.unnamed = Some(cmd);
                } else {
                    if self.local_ext.statements.len() >= MAX_STATEMENTS {
                        return Err((
                            "54000",
                            format!(
                                "too many prepared Causeway commands (at most {MAX_STATEMENTS} per client)"
                            ),
                        ));
                    }
                    self.local_ext.statements.insert(name.to_vec(), cmd);
                }
                self.client.out.put_slice(&[b'1', 0, 0, 0, 4]);
            }
            b'B' => {
                let (portal, stmt, nparams, binary) = bind_shape(body).ok_or_else(bad)?;
                let cmd = self
                    .local_ext
                    .statement(stmt)
                    .cloned()
                    .ok_or(("0A000", MIXED.to_string()))?;
                if nparams != 0 {
                    return Err((
                        "08P01",
                        format!(
                            "bind message supplies {nparams} parameters, but prepared statement \"{}\" requires 0",
                            name_of(stmt)
                        ),
                    ));
                }
                let ports = &mut self.local_ext.portals;
                ports.retain(|p| p.0 != portal);
                ports.push((portal.to_vec(), cmd, binary));
                self.client.out.put_slice(&[b'2', 0, 0, 0, 4]);
            }
            b'D' => {
                let (&kind, rest) = body.split_first().ok_or_else(bad)?;
                let name = rest.split(|&c| c == 0).next().unwrap_or_default();
                let out = &mut self.client.out;
                match kind {
                    b'S' => {
                        let cmd = self.local_ext.statement(name).ok_or((
                            "26000",
                            format!("prepared statement \"{}\" does not exist", name_of(name)),
                        ))?;
                        out.put_slice(&[b't', 0, 0, 0, 6, 0, 0]);
                        describe(out, cmd, false);
                    }
                    b'P' => {
                        let (_, cmd, binary) = self.local_ext.portal(name).ok_or((
                            "34000",
                            format!("portal \"{}\" does not exist", name_of(name)),
                        ))?;
                        describe(out, cmd, *binary);
                    }
                    _ => return Err(bad()),
                }
            }
            b'E' => {
                let name = body.split(|&c| c == 0).next().unwrap_or_default();
                let (_, cmd, _) = self.local_ext.portal(name).cloned().ok_or((
                    "34000",
                    format!("portal \"{}\" does not exist", name_of(name)),
                ))?;
                let answer = self.answer(cmd).await;
                if let Answer::Row { value, .. } = &answer {
                    backend::write_data_row(&mut self.client.out, [Some(value.as_str())]);
                }
                if let Answer::Error(code, msg) = answer {
                    return Err((code, msg));
                }
                answer.complete(&mut self.client.out);
            }
            b'C' => {
                let (&kind, rest) = body.split_first().ok_or_else(bad)?;
                let name = rest.split(|&c| c == 0).next().unwrap_or_default();
                let known = match kind {
                    b'S' if name.is_empty() => self.local_ext.unnamed.take().is_some(),
                    b'S' => self.local_ext.statements.remove(name).is_some(),
                    b'P' => {
                        let n = self.local_ext.portals.len();
                        self.local_ext.portals.retain(|p| p.0 != name);
                        n != self.local_ext.portals.len()
                    }
                    _ => return Err(bad()),
                };
                if !known {
                    return Err(("0A000", MIXED.to_string()));
                }
                self.client.out.put_slice(&[b'3', 0, 0, 0, 4]);
            }
            _ => return Err(bad()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_protocol::message as frame;

    #[test]
    fn bind_shapes() {
        // portal "", statement "s", no formats, no params, one binary result.
        let b = b"\0s\0\0\0\0\0\0\x01\0\x01";
        assert_eq!(bind_shape(b), Some((&b""[..], &b"s"[..], 0, true)));
        // One text parameter "ab", results in text.
        let b = b"p\0s\0\0\x01\0\0\0\x01\0\0\0\x02ab\0\0";
        assert_eq!(bind_shape(b), Some((&b"p"[..], &b"s"[..], 1, false)));
        // A NULL parameter.
        let b = b"\0s\0\0\0\0\x01\xff\xff\xff\xff\0\0";
        assert_eq!(bind_shape(b), Some((&b""[..], &b"s"[..], 1, false)));
        for bad in [
            &b""[..],
            b"\0",
            b"\0s\0\0\x05",
            b"\0s\0\0\0\0\x01\0\0\0\x09ab",
        ] {
            assert_eq!(bind_shape(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn claims_causeway_commands_and_their_statements_only() {
        let c = Classifier::default();
        let mut l = LocalExt::default();
        let p = |name: &str, sql: &str| frame(b'P', format!("{name}\0{sql}\0\0\0").as_bytes());
        assert!(l.claims(&p("", "SHOW causeway.token"), &c));
        assert!(l.claims(&p("s1", "set Causeway.route = primary"), &c));
        assert!(!l.claims(&p("", "select 1"), &c));
        assert!(!l.claims(&p("", "/* causeway:primary */ select 1"), &c));
        assert!(!l.claims(&p("", "select 'causeway.token'"), &c));
        let bind = frame(b'B', b"\0s1\0\0\0\0\0\0\0");
        assert!(!l.claims(&bind, &c));
        l.statements.insert(
            b"s1".to_vec(),
            LocalCommand::Show {
                name: "token".into(),
            },
        );
        assert!(l.claims(&bind, &c));
        assert!(l.claims(&frame(b'D', b"Ss1\0"), &c));
        assert!(l.claims(&frame(b'C', b"Ss1\0"), &c));
        assert!(!l.claims(&frame(b'D', b"Ss2\0"), &c));
        // A Parse reusing a kept name is ours (to refuse it).
        assert!(l.claims(&p("s1", "select 1"), &c));
        assert!(!l.claims(&frame(b'S', b""), &c));
        l.in_unit = true;
        assert!(l.claims(&frame(b'S', b""), &c));
    }
}
