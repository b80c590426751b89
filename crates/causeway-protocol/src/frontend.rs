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

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

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
