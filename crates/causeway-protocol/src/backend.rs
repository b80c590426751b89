//! Messages a server sends (or Causeway sends as if it were one): encoders
//! appending to a buffer, and decoders for the few Causeway inspects.

use bytes::{BufMut, BytesMut};

use crate::{read_cstr, read_i32, ProtocolError};

/// Starts a typed message and returns the offset of its length field,
/// which [`finish`] patches once the body is written.
#[inline]
pub fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

#[inline]
pub fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

#[inline]
pub fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// ErrorResponse ('E') or NoticeResponse ('N').
pub fn write_error_fields(
    buf: &mut BytesMut,
    tag: u8,
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    let at = begin(buf, tag);
    buf.put_u8(b'S');
    put_cstr(buf, severity);
    buf.put_u8(b'V');
    put_cstr(buf, severity);
    buf.put_u8(b'C');
    put_cstr(buf, code);
    buf.put_u8(b'M');
    put_cstr(buf, message);
    if let Some(d) = detail {
        buf.put_u8(b'D');
        put_cstr(buf, d);
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// ErrorResponse with severity ERROR (the session goes on) or FATAL.
pub fn write_error(buf: &mut BytesMut, fatal: bool, code: &str, message: &str) {
    let sev = if fatal { "FATAL" } else { "ERROR" };
    write_error_fields(buf, b'E', sev, code, message, None);
}

pub fn write_notice(buf: &mut BytesMut, code: &str, message: &str) {
    write_error_fields(buf, b'N', "NOTICE", code, message, None);
}

pub fn write_parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name);
    put_cstr(buf, value);
    finish(buf, at);
}

pub fn write_backend_key_data(buf: &mut BytesMut, pid: i32, secret: &[u8]) {
    let at = begin(buf, b'K');
    buf.put_i32(pid);
    buf.put_slice(secret);
    finish(buf, at);
}

pub fn write_ready_for_query(buf: &mut BytesMut, status: u8) {
    buf.put_slice(&[b'Z', 0, 0, 0, 5, status]);
}

/// Tells a client asking for a newer 3.x minor (or `_pq_.` options) what we speak.
pub fn write_negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unknown: &[&str]) {
    let at = begin(buf, b'v');
    buf.put_i32(minor);
    buf.put_i32(unknown.len() as i32);
    for o in unknown {
        put_cstr(buf, o);
    }
    finish(buf, at);
}

pub fn write_command_complete(buf: &mut BytesMut, tag: &str) {
    let at = begin(buf, b'C');
    put_cstr(buf, tag);
    finish(buf, at);
}

pub fn write_empty_query(buf: &mut BytesMut) {
    buf.put_slice(&[b'I', 0, 0, 0, 4]);
}

/// RowDescription with every column typed `text` (what an admin console returns).
pub fn write_text_row_description(buf: &mut BytesMut, columns: &[&str]) {
    write_row_description(buf, columns.iter().map(|c| (*c, TEXT_OID)));
}

/// Type OIDs of the columns an admin console sends (values always in text
/// format).
pub const TEXT_OID: u32 = 25;
pub const INT4_OID: u32 = 23;
pub const INT8_OID: u32 = 20;
pub const NUMERIC_OID: u32 = 1700;

/// RowDescription of `(name, type oid)` columns, all in text format.
pub fn write_row_description<'a>(
    buf: &mut BytesMut,
    columns: impl IntoIterator<Item = (&'a str, u32)>,
) {
    let at = begin(buf, b'T');
    let count_at = buf.len();
    buf.put_i16(0);
    let mut n: i16 = 0;
    for (name, oid) in columns {
        n += 1;
        put_cstr(buf, name);
        buf.put_i32(0); // table oid
        buf.put_i16(0); // column number
        buf.put_u32(oid);
        buf.put_i16(match oid {
            INT4_OID => 4,
            INT8_OID => 8,
            _ => -1,
        });
        buf.put_i32(-1); // type modifier
        buf.put_i16(0); // text format
    }
    buf[count_at..count_at + 2].copy_from_slice(&n.to_be_bytes());
    finish(buf, at);
}

/// DataRow of text values; `None` is SQL NULL.
pub fn write_data_row<'a>(buf: &mut BytesMut, values: impl IntoIterator<Item = Option<&'a str>>) {
    let at = begin(buf, b'D');
    let count_at = buf.len();
    buf.put_i16(0);
    let mut n: i16 = 0;
    for v in values {
        n += 1;
        match v {
            Some(s) => {
                buf.put_i32(s.len() as i32);
                buf.put_slice(s.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    buf[count_at..count_at + 2].copy_from_slice(&n.to_be_bytes());
    finish(buf, at);
}

/// The fields of an ErrorResponse/NoticeResponse Causeway cares about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: &'a str,
    pub code: &'a str,
    pub message: &'a str,
}

pub fn parse_error_fields(body: &[u8]) -> Result<ErrorFields<'_>, ProtocolError> {
    let mut f = ErrorFields::default();
    let mut rest = body;
    loop {
        match rest.split_first() {
            Some((0, _)) => return Ok(f),
            Some((&kind, r)) => {
                let (v, r) = read_cstr(r).ok_or(ProtocolError::Malformed("ErrorResponse"))?;
                match kind {
                    b'V' => f.severity = v,
                    b'S' if f.severity.is_empty() => f.severity = v,
                    b'C' => f.code = v,
                    b'M' => f.message = v,
                    _ => {}
                }
                rest = r;
            }
            None => return Err(ProtocolError::Malformed("ErrorResponse")),
        }
    }
}

pub fn parse_parameter_status(body: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let (k, r) = read_cstr(body).ok_or(ProtocolError::Malformed("ParameterStatus"))?;
    let (v, _) = read_cstr(r).ok_or(ProtocolError::Malformed("ParameterStatus"))?;
    Ok((k, v))
}

pub fn parse_backend_key_data(body: &[u8]) -> Result<(i32, &[u8]), ProtocolError> {
    let pid = read_i32(body, 0).ok_or(ProtocolError::Malformed("BackendKeyData"))?;
    let secret = &body[4..];
    if secret.is_empty() || secret.len() > 256 {
        return Err(ProtocolError::Malformed("BackendKeyData"));
    }
    Ok((pid, secret))
}

/// ReadyForQuery's transaction status: `I` idle, `T` in a transaction, `E` failed transaction.
pub fn parse_ready_status(body: &[u8]) -> Result<u8, ProtocolError> {
    match body {
        [s @ (b'I' | b'T' | b'E')] => Ok(*s),
        _ => Err(ProtocolError::Malformed("ReadyForQuery")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::body;

    #[test]
    fn error_roundtrip() {
        let mut b = BytesMut::new();
        write_error(&mut b, true, "28P01", "password authentication failed");
        assert_eq!(b[0], b'E');
        assert_eq!(
            i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize,
            b.len() - 1
        );
        let f = parse_error_fields(body(&b)).unwrap();
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "password authentication failed");
        assert!(parse_error_fields(b"Cxx").is_err());
        assert!(parse_error_fields(b"").is_err());
    }

    #[test]
    fn parameter_status_and_key_data() {
        let mut b = BytesMut::new();
        write_parameter_status(&mut b, "TimeZone", "UTC");
        assert_eq!(
            parse_parameter_status(body(&b)).unwrap(),
            ("TimeZone", "UTC")
        );
        assert!(parse_parameter_status(b"TimeZone\0UTC").is_err());
        let mut b = BytesMut::new();
        write_backend_key_data(&mut b, 42, &[1, 2, 3, 4]);
        assert_eq!(
            parse_backend_key_data(body(&b)).unwrap(),
            (42, &[1u8, 2, 3, 4][..])
        );
        assert!(parse_backend_key_data(&[0, 0]).is_err());
    }

    #[test]
    fn data_row_counts_columns() {
        let mut b = BytesMut::new();
        write_data_row(&mut b, [Some("a"), None, Some("bc")]);
        assert_eq!(&b[5..7], &3i16.to_be_bytes());
        assert_eq!(b.len(), 5 + 2 + (4 + 1) + 4 + (4 + 2));
    }

    #[test]
    fn row_description_carries_types() {
        let mut b = BytesMut::new();
        write_row_description(&mut b, [("database", TEXT_OID), ("cl_active", INT4_OID)]);
        assert_eq!(b[0], b'T');
        assert_eq!(
            i32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize,
            b.len() - 1
        );
        assert_eq!(&b[5..7], &2i16.to_be_bytes());
        // name, table oid, column number, type oid, size, modifier, format
        let field = |at: usize, name: &str| {
            let end = at + name.len() + 1;
            assert_eq!(&b[at..end - 1], name.as_bytes());
            let oid = u32::from_be_bytes([b[end + 6], b[end + 7], b[end + 8], b[end + 9]]);
            let size = i16::from_be_bytes([b[end + 10], b[end + 11]]);
            (oid, size, end + 18)
        };
        let (oid, size, next) = field(7, "database");
        assert_eq!((oid, size), (TEXT_OID, -1));
        let (oid, size, end) = field(next, "cl_active");
        assert_eq!((oid, size), (INT4_OID, 4));
        assert_eq!(end, b.len());
        let mut t = BytesMut::new();
        write_text_row_description(&mut t, &["database"]);
        assert_eq!(&t[7..16], b"database\0");
    }

    #[test]
    fn ready_status() {
        assert_eq!(parse_ready_status(b"T").unwrap(), b'T');
        assert!(parse_ready_status(b"X").is_err());
        assert!(parse_ready_status(b"").is_err());
    }
}
