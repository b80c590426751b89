//! Incremental walk over a stream of typed messages.
//!
//! The pooler forwards bytes without decoding them. It only needs to know
//! where messages start, the tag of each, and the full body of a few small
//! ones (ReadyForQuery, ParameterStatus, ErrorResponse...). The scanner tells
//! it exactly that, never copying and never buffering a large message whole:
//! a 1 GB DataRow is passed through in buffer-sized pieces.

use crate::{ProtocolError, HEADER_LEN};

/// How much of a message the caller wants to see, decided per tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Forward without telling.
    Pass,
    /// Report the tag and length, then forward the body untouched.
    Header,
    /// Report the whole frame (header included); it must fit in memory.
    Whole,
    /// Not a message this stream may carry: an error, before any of it is
    /// forwarded.
    Reject,
}

/// After login, the message types a client may send (PostgreSQL's
/// `SocketBackend` list): Bind, Close, CopyData, CopyDone, CopyFail,
/// Describe, Execute, Flush, FunctionCall, Parse, Query, Sync, Terminate.
/// Anything else would make the server end the connection.
pub fn is_frontend_tag(tag: u8) -> bool {
    matches!(
        tag,
        b'B' | b'C' | b'd' | b'c' | b'f' | b'D' | b'E' | b'H' | b'F' | b'P' | b'Q' | b'S' | b'X'
    )
}

/// One step of the walk. `Pass` and `Whole` consume bytes; `Header` does not
/// (its bytes come back as `Pass` afterwards, so the caller can act before
/// forwarding the message).
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    Pass(usize),
    Header {
        tag: u8,
        len: usize,
    },
    Whole {
        tag: u8,
        frame: &'a [u8],
    },
    /// Nothing more can be decided until more bytes arrive.
    NeedMore,
}

#[derive(Debug, Default, Clone)]
pub struct Scanner {
    /// Bytes of the current message still to pass through.
    remaining: usize,
}

impl Scanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between messages (nothing of a message is pending).
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Forgets the message whose header was just reported: the next step
    /// reports it again (the caller waits for more of it first).
    pub fn unread_header(&mut self) {
        self.remaining = 0;
    }

    /// The caller took `n` bytes of the current message itself (after its
    /// header was reported); they are not passed.
    pub fn took(&mut self, n: usize) {
        debug_assert!(n <= self.remaining);
        self.remaining -= n.min(self.remaining);
    }

    /// Looks at the front of `buf` (the bytes not yet consumed).
    /// `max_len` bounds the declared length of any message.
    pub fn step<'a>(
        &mut self,
        buf: &'a [u8],
        max_len: usize,
        interest: impl Fn(u8) -> Interest,
    ) -> Result<Step<'a>, ProtocolError> {
        if self.remaining > 0 {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let n = self.remaining.min(buf.len());
            self.remaining -= n;
            return Ok(Step::Pass(n));
        }
        let Some(&[tag, a, b, c, d]) = buf.get(..HEADER_LEN) else {
            return Ok(Step::NeedMore);
        };
        let len = i32::from_be_bytes([a, b, c, d]);
        if len < 4 {
            return Err(ProtocolError::BadLength {
                tag: tag as char,
                len: len.into(),
            });
        }
        // `len` counts itself but not the tag byte.
        let len = len as usize;
        if len > max_len {
            return Err(ProtocolError::TooLarge { len, max: max_len });
        }
        match interest(tag) {
            Interest::Pass => {
                self.remaining = len + 1;
                self.step(buf, max_len, interest)
            }
            Interest::Header => {
                self.remaining = len + 1;
                Ok(Step::Header { tag, len })
            }
            Interest::Reject => Err(ProtocolError::UnknownMessageType(tag as char)),
            Interest::Whole => match buf.get(..len + 1) {
                Some(frame) => Ok(Step::Whole { tag, frame }),
                None => Ok(Step::NeedMore),
            },
        }
    }
}

/// The body of a whole frame (after tag and length).
#[inline]
pub fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::message as msg;

    fn interest(tag: u8) -> Interest {
        match tag {
            b'Z' => Interest::Whole,
            b'Q' => Interest::Header,
            _ => Interest::Pass,
        }
    }

    /// Feeds `input` in chunks of `chunk` bytes, collecting events.
    fn walk(input: &[u8], chunk: usize) -> (Vec<String>, usize) {
        let mut s = Scanner::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut events = Vec::new();
        let mut passed = 0;
        let mut fed = 0;
        loop {
            let mut pos = 0;
            loop {
                match s.step(&buf[pos..], 1 << 20, interest).unwrap() {
                    Step::Pass(n) => {
                        passed += n;
                        pos += n
                    }
                    Step::Header { tag, len } => events.push(format!("H{}{}", tag as char, len)),
                    Step::Whole { tag, frame } => {
                        events.push(format!("W{}{}", tag as char, frame.len()));
                        passed += frame.len();
                        pos += frame.len();
                    }
                    Step::NeedMore => break,
                }
            }
            buf.drain(..pos);
            if fed >= input.len() {
                break;
            }
            let end = (fed + chunk).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
        }
        assert!(buf.is_empty(), "left over bytes: {buf:?}");
        (events, passed)
    }

    #[test]
    fn events_are_the_same_for_any_chunking() {
        let mut input = msg(b'Q', b"select 1\0");
        input.extend(msg(b'D', &vec![7u8; 5000]));
        input.extend(msg(b'Z', b"I"));
        input.extend(msg(b'C', b"SELECT 1\0"));
        let (whole, n) = walk(&input, input.len());
        assert_eq!(whole, vec!["HQ13", "WZ6"]);
        assert_eq!(n, input.len());
        for chunk in [1, 2, 3, 5, 7, 64, 4999] {
            assert_eq!(
                walk(&input, chunk),
                (whole.clone(), input.len()),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn large_pass_message_is_not_buffered() {
        let big = msg(b'D', &vec![1u8; 100_000]);
        let mut s = Scanner::new();
        // Only the first 10 bytes have arrived: they can go out already.
        assert_eq!(s.step(&big[..10], 1 << 20, interest), Ok(Step::Pass(10)));
        assert!(!s.at_boundary());
    }

    #[test]
    fn rejected_types_are_errors_before_any_byte_passes() {
        let mut input = crate::message(b'Q', b"x\0");
        input.extend(crate::message(b'Y', b"zz"));
        let mut s = Scanner::new();
        let reject = |t: u8| {
            if is_frontend_tag(t) {
                Interest::Pass
            } else {
                Interest::Reject
            }
        };
        assert_eq!(s.step(&input, 1 << 20, reject), Ok(Step::Pass(7)));
        assert_eq!(
            s.step(&input[7..], 1 << 20, reject),
            Err(ProtocolError::UnknownMessageType('Y'))
        );
        assert!(s.at_boundary());
        for t in [b'Y', b'p', b'\0', b'Z', b'K'] {
            assert!(!is_frontend_tag(t), "{}", t as char);
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut s = Scanner::new();
        let bad = [b'Q', 0, 0, 0, 3];
        assert!(matches!(
            s.step(&bad, 100, interest),
            Err(ProtocolError::BadLength { .. })
        ));
        let neg = [b'Q', 0xff, 0xff, 0xff, 0xff];
        assert!(s.step(&neg, 100, interest).is_err());
        let big = [b'Q', 0, 0, 1, 0];
        assert_eq!(
            s.step(&big, 100, interest),
            Err(ProtocolError::TooLarge { len: 256, max: 100 })
        );
    }
}
