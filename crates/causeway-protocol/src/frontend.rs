//! Messages Causeway sends to servers as a client.

use bytes::{BufMut, BytesMut};

use crate::backend::{begin, finish, put_cstr};
use crate::startup::{CANCEL_REQUEST_CODE, PROTOCOL_3_0};

pub fn write_startup<'a>(buf: &mut BytesMut, params: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let at = buf.len();
    buf.put_i32(0);
    buf.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(buf, k);
        put_cstr(buf, v);
    }
    buf.put_u8(0);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn write_query(buf: &mut BytesMut, sql: &str) {
    let at = begin(buf, b'Q');
    put_cstr(buf, sql);
    finish(buf, at);
}

pub fn write_terminate(buf: &mut BytesMut) {
    buf.put_slice(&[b'X', 0, 0, 0, 4]);
}

pub fn write_sync(buf: &mut BytesMut) {
    buf.put_slice(&[b'S', 0, 0, 0, 4]);
}

pub fn write_cancel_request(buf: &mut BytesMut, pid: i32, secret: &[u8]) {
    buf.put_i32(12 + secret.len() as i32);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_slice(secret);
}

/// Quotes a value as an SQL string literal that reads the same whatever
/// standard_conforming_strings is (E'' form when a backslash is present).
pub fn quote_literal(out: &mut String, v: &str) {
    if v.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
}

/// A GUC name we are willing to put in a SET statement unquoted.
pub fn is_safe_guc_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::startup::{parse, StartupPacket};

    #[test]
    fn startup_roundtrip() {
        let mut b = BytesMut::new();
        write_startup(&mut b, [("user", "u"), ("database", "d")]);
        match parse(&b).unwrap() {
            StartupPacket::Startup { params, .. } => {
                assert_eq!(params, vec![("user", "u"), ("database", "d")])
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn cancel_request_roundtrip() {
        let mut b = BytesMut::new();
        write_cancel_request(&mut b, 9, &[1, 2, 3, 4]);
        assert_eq!(b.len(), 16);
        assert_eq!(crate::startup::packet_len(&b).unwrap(), Some(16));
        assert_eq!(
            parse(&b).unwrap(),
            StartupPacket::Cancel {
                pid: 9,
                secret: &[1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn quoting() {
        let mut s = String::new();
        quote_literal(&mut s, "it's");
        assert_eq!(s, "'it''s'");
        let mut s = String::new();
        quote_literal(&mut s, r"a\b");
        assert_eq!(s, r"E'a\\b'");
        assert!(is_safe_guc_name("DateStyle"));
        assert!(is_safe_guc_name("causeway.route"));
        assert!(!is_safe_guc_name("x; drop table t"));
        assert!(!is_safe_guc_name("1abc"));
    }
}

/// The SQL text of a Query message body (without its terminating NUL).
pub fn query_text(body: &[u8]) -> Option<&[u8]> {
    let end = body.iter().position(|&b| b == 0)?;
    Some(&body[..end])
}

/// A Parse message body: (statement name, SQL text).
pub fn parse_statement(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = body.iter().position(|&b| b == 0)?;
    let rest = &body[n + 1..];
    let q = rest.iter().position(|&b| b == 0)?;
    Some((&body[..n], &rest[..q]))
}

/// The statement name a Bind message body refers to: (portal, statement).
pub fn bind_names(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = body.iter().position(|&b| b == 0)?;
    let rest = &body[n + 1..];
    let s = rest.iter().position(|&b| b == 0)?;
    Some((&body[..n], &rest[..s]))
}

/// Complete messages at the front of a buffer: (tag, body, frame length).
/// Stops at the first incomplete (or malformed) one.
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Frames { buf, pos: 0 }
    }

    /// Bytes of the complete frames returned so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf.get(self.pos..)?;
        let &[tag, x, y, z, w] = b.get(..crate::HEADER_LEN)? else {
            return None;
        };
        let len = i32::from_be_bytes([x, y, z, w]);
        if len < 4 {
            return None;
        }
        let frame = b.get(..len as usize + 1)?;
        self.pos += frame.len();
        Some((tag, &frame[crate::HEADER_LEN..]))
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    use crate::message as frame;

    #[test]
    fn frames_stop_at_incomplete_and_bad_lengths() {
        let mut buf = frame(b'P', b"s1\0select 1\0\0\0");
        buf.extend(frame(b'S', b""));
        buf.extend_from_slice(&frame(b'Q', b"select 2\0")[..6]);
        let mut f = Frames::new(&buf);
        let (tag, body) = f.next().unwrap();
        assert_eq!(tag, b'P');
        assert_eq!(parse_statement(body), Some((&b"s1"[..], &b"select 1"[..])));
        assert_eq!(f.next().map(|x| x.0), Some(b'S'));
        assert_eq!(f.next(), None);
        assert_eq!(f.consumed(), buf.len() - 6);
        let bad = [b'Q', 0, 0, 0, 2];
        assert_eq!(Frames::new(&bad).next(), None);
    }

    #[test]
    fn message_fields() {
        assert_eq!(query_text(b"select 1\0"), Some(&b"select 1"[..]));
        assert_eq!(query_text(b"no nul"), None);
        assert_eq!(parse_statement(b"only-name\0"), None);
        assert_eq!(bind_names(b"\0stmt\0\0\0"), Some((&b""[..], &b"stmt"[..])));
        assert_eq!(bind_names(b""), None);
    }
}

/// Names in extended-protocol messages, for renaming prepared statements
/// on their way to a server. Only the few bytes of names are decoded; a
/// Bind's parameters are never looked at.
pub mod names {
    use bytes::{BufMut, BytesMut};

    /// A Parse body split as (statement name, rest): `rest` is the query
    /// text with its NUL and the parameter types, the statement's identity.
    /// None if malformed (no NUL, or a parameter count that does not match
    /// the length).
    pub fn split_parse(body: &[u8]) -> Option<(&[u8], &[u8])> {
        let n = body.iter().position(|&b| b == 0)?;
        let rest = &body[n + 1..];
        let q = rest.iter().position(|&b| b == 0)?;
        let types = &rest[q + 1..];
        let &[a, b] = types.get(..2)? else {
            return None;
        };
        let count = i16::from_be_bytes([a, b]);
        if count < 0 || types.len() != 2 + 4 * count as usize {
            return None;
        }
        Some((&body[..n], rest))
    }

    /// The query text of a statement identity (`rest` of [`split_parse`]).
    pub fn identity_query(rest: &[u8]) -> &[u8] {
        let q = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..q]
    }

    /// The start of a Bind body: (portal, statement, bytes of both names
    /// with their NULs). None until both NULs are within `avail`.
    pub fn bind_prefix(avail: &[u8]) -> Option<(&[u8], &[u8], usize)> {
        let n = avail.iter().position(|&b| b == 0)?;
        let rest = &avail[n + 1..];
        let s = rest.iter().position(|&b| b == 0)?;
        Some((&avail[..n], &rest[..s], n + 1 + s + 1))
    }

    /// A Describe or Close body: (kind 'S' or 'P', name).
    pub fn target(body: &[u8]) -> Option<(u8, &[u8])> {
        let (&kind, rest) = body.split_first()?;
        let n = rest.iter().position(|&b| b == 0)?;
        if n + 1 != rest.len() || !(kind == b'S' || kind == b'P') {
            return None;
        }
        Some((kind, &rest[..n]))
    }

    fn header(buf: &mut BytesMut, tag: u8, body_len: usize) {
        buf.put_u8(tag);
        buf.put_i32((body_len + 4) as i32);
    }

    /// Parse: `name` and a statement identity (query, NUL, types).
    pub fn write_parse(buf: &mut BytesMut, name: &[u8], identity: &[u8]) {
        header(buf, b'P', name.len() + 1 + identity.len());
        buf.put_slice(name);
        buf.put_u8(0);
        buf.put_slice(identity);
    }

    /// The header and names of a Bind whose original body was `body_len`
    /// bytes with names taking `names_len` of them; the rest of the
    /// original body follows unchanged.
    pub fn write_bind_prefix(
        buf: &mut BytesMut,
        body_len: usize,
        names_len: usize,
        portal: &[u8],
        stmt: &[u8],
    ) {
        let new_len = body_len - names_len + portal.len() + stmt.len() + 2;
        header(buf, b'B', new_len);
        buf.put_slice(portal);
        buf.put_u8(0);
        buf.put_slice(stmt);
        buf.put_u8(0);
    }

    /// Describe ('D') or Close ('C') of a statement or portal.
    pub fn write_target(buf: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
        header(buf, tag, 1 + name.len() + 1);
        buf.put_u8(kind);
        buf.put_slice(name);
        buf.put_u8(0);
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::frontend::Frames;

        use crate::message as frame;

        #[test]
        fn parse_split_and_rewrite() {
            let body = b"s1\0select $1\0\0\x01\0\0\0\x17";
            let (name, rest) = split_parse(body).unwrap();
            assert_eq!(name, b"s1");
            assert_eq!(identity_query(rest), b"select $1");
            let mut out = BytesMut::new();
            write_parse(&mut out, b"causeway_7", rest);
            assert_eq!(
                &out[..],
                &frame(b'P', b"causeway_7\0select $1\0\0\x01\0\0\0\x17")[..]
            );
            // Count and length disagree: malformed.
            assert_eq!(split_parse(b"s\0q\0\0\x02\0\0\0\x17"), None);
            assert_eq!(split_parse(b"s\0q\0\xff\xff"), None);
            assert_eq!(split_parse(b"s\0q"), None);
            assert_eq!(split_parse(b"\0q\0\0\0").map(|x| x.0), Some(&b""[..]));
        }

        #[test]
        fn bind_rewrite_keeps_the_rest() {
            let rest = b"\0\x01\0\x01\0\0\0\x011\0\0";
            let mut body = b"p\0s1\0".to_vec();
            body.extend_from_slice(rest);
            let (portal, stmt, n) = bind_prefix(&body).unwrap();
            assert_eq!((portal, stmt, n), (&b"p"[..], &b"s1"[..], 5));
            assert_eq!(bind_prefix(b"p\0s1"), None);
            let mut out = BytesMut::new();
            write_bind_prefix(&mut out, body.len(), n, portal, b"causeway_12");
            out.extend_from_slice(&body[n..]);
            let mut want = b"p\0causeway_12\0".to_vec();
            want.extend_from_slice(rest);
            assert_eq!(&out[..], &frame(b'B', &want)[..]);
            let (tag, b) = Frames::new(&out).next().unwrap();
            assert_eq!((tag, b.len()), (b'B', want.len()));
        }

        #[test]
        fn describe_close_targets() {
            assert_eq!(target(b"Ss1\0"), Some((b'S', &b"s1"[..])));
            assert_eq!(target(b"P\0"), Some((b'P', &b""[..])));
            assert_eq!(target(b"Xs\0"), None);
            assert_eq!(target(b"Ss1"), None);
            assert_eq!(target(b"Ss1\0junk"), None);
            let mut out = BytesMut::new();
            write_target(&mut out, b'C', b'S', b"causeway_1");
            assert_eq!(&out[..], &frame(b'C', b"Scauseway_1\0")[..]);
        }
    }
}
