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
