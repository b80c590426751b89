//! Sans-IO PostgreSQL protocol pieces: pure parse/encode functions, no sockets.
//!
//! The data path forwards whole frames untouched; only the messages pooling
//! needs are decoded (see [`scan::Scanner`]). Builders append to a caller's
//! `BytesMut` so the hot path never allocates per message.

pub mod auth;
pub mod backend;
pub mod frontend;
pub mod scan;
pub mod sqlstate;
pub mod startup;

/// Length of a typed message header: 1 tag byte + 4 length bytes.
pub const HEADER_LEN: usize = 5;

/// Errors a peer's bytes can cause. Never a panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid message length {len} for message type '{tag}'")]
    BadLength { tag: char, len: i64 },
    #[error("invalid startup packet length {0}")]
    BadStartupLength(i64),
    #[error("message of {len} bytes exceeds max_packet_size {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("invalid frontend message type '{0}'")]
    UnknownMessageType(char),
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
}

/// One typed message as bytes: tag, length, body. For tests and tools; the
/// data path appends to a reused buffer with the `frontend`/`backend`
/// builders instead.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.push(tag);
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// The header of the typed message at the front of `buf`: its tag and its
/// whole length on the wire (tag byte included). None until the 5 header
/// bytes are there; `BadLength` when the length field is below 4 or the
/// frame is longer than `max` bytes.
#[inline]
pub fn frame_header(buf: &[u8], max: usize) -> Option<Result<(u8, usize), ProtocolError>> {
    let &[tag, a, b, c, d] = buf.get(..HEADER_LEN)? else {
        return None;
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    if len < 4 {
        return Some(Err(ProtocolError::BadLength {
            tag: tag as char,
            len: len.into(),
        }));
    }
    let total = len as usize + 1;
    if total > max {
        return Some(Err(ProtocolError::TooLarge { len: total, max }));
    }
    Some(Ok((tag, total)))
}

/// Reads a big-endian i32 at `at`, if present.
#[inline]
pub(crate) fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    let b = buf.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Splits a NUL-terminated string off the front of `buf`.
pub(crate) fn read_cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    let s = std::str::from_utf8(&buf[..nul]).ok()?;
    Some((s, &buf[nul + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_reads_tag_and_wire_length() {
        let m = message(b'Q', b"SELECT 1\0");
        assert_eq!(frame_header(&m[..4], 1 << 20), None);
        assert_eq!(frame_header(&m, 1 << 20), Some(Ok((b'Q', m.len()))));
    }

    #[test]
    fn frame_header_refuses_short_and_oversized_lengths() {
        let short = [b'Q', 0, 0, 0, 3];
        assert!(matches!(
            frame_header(&short, 1 << 20),
            Some(Err(ProtocolError::BadLength { tag: 'Q', len: 3 }))
        ));
        let negative = [b'P', 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            frame_header(&negative, 1 << 20),
            Some(Err(ProtocolError::BadLength { len: -1, .. }))
        ));
        let m = message(b'Q', &[b'x'; 100]);
        assert!(matches!(
            frame_header(&m, 50),
            Some(Err(ProtocolError::TooLarge { len: 105, max: 50 }))
        ));
    }
}
