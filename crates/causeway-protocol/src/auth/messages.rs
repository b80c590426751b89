//! Wire encoding of the authentication exchange.
//!
//! Every message is a 1-byte tag, an i32 big-endian length that counts itself
//! (but not the tag), then the body. Encoders append to a caller's buffer;
//! decoders take the body (after tag and length) and borrow from it.
//! Encoders panic only if a body exceeds `i32::MAX` bytes, a caller bug:
//! authentication payloads are tiny and PostgreSQL caps messages at 1 GiB.

use bytes::{BufMut, BytesMut};

/// Backend `Authentication*` message tag.
pub const AUTHENTICATION_TAG: u8 = b'R';
/// Frontend password-family tag (PasswordMessage, SASLInitialResponse, SASLResponse).
pub const PASSWORD_TAG: u8 = b'p';

pub const AUTH_OK: i32 = 0;
pub const AUTH_CLEARTEXT_PASSWORD: i32 = 3;
pub const AUTH_MD5_PASSWORD: i32 = 5;
pub const AUTH_SASL: i32 = 10;
pub const AUTH_SASL_CONTINUE: i32 = 11;
pub const AUTH_SASL_FINAL: i32 = 12;

/// The one SASL mechanism Causeway offers (no channel binding, so no `-PLUS`).
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// A malformed authentication message body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("authentication message truncated")]
    Truncated,
    #[error("missing NUL terminator in authentication message")]
    MissingNul,
    #[error("authentication message has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    #[error("authentication message string is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid SASL data length {0}")]
    InvalidLength(i32),
}

// ---- backend messages (Causeway acting as the server) ----

/// AuthenticationOk.
pub fn write_auth_ok(buf: &mut BytesMut) {
    write_auth(buf, AUTH_OK, &[]);
}

/// AuthenticationCleartextPassword.
pub fn write_auth_cleartext_password(buf: &mut BytesMut) {
    write_auth(buf, AUTH_CLEARTEXT_PASSWORD, &[]);
}

/// AuthenticationMD5Password with its 4-byte salt.
pub fn write_auth_md5_password(buf: &mut BytesMut, salt: [u8; 4]) {
    write_auth(buf, AUTH_MD5_PASSWORD, &salt);
}

/// AuthenticationSASL offering `mechanisms` (each NUL-terminated, then an
/// empty one). Mechanism names are our constants and must not contain NUL.
pub fn write_auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let body_len: usize = 4 + mechanisms.iter().map(|m| m.len() + 1).sum::<usize>() + 1;
    start(buf, AUTHENTICATION_TAG, body_len);
    buf.put_i32(AUTH_SASL);
    for mechanism in mechanisms {
        buf.put_slice(mechanism.as_bytes());
        buf.put_u8(0);
    }
    buf.put_u8(0);
}

/// AuthenticationSASLContinue carrying a server-first-message.
pub fn write_auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    write_auth(buf, AUTH_SASL_CONTINUE, data);
}

/// AuthenticationSASLFinal carrying a server-final-message.
pub fn write_auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    write_auth(buf, AUTH_SASL_FINAL, data);
}

fn write_auth(buf: &mut BytesMut, code: i32, extra: &[u8]) {
    start(buf, AUTHENTICATION_TAG, 4 + extra.len());
    buf.put_i32(code);
    buf.put_slice(extra);
}

/// Reserves room and writes tag + length for a body of `body_len` bytes.
fn start(buf: &mut BytesMut, tag: u8, body_len: usize) {
    // Auth payloads are tiny (PostgreSQL caps them far below 1 GiB), so an
    // overflow here is a caller bug, not something a peer can trigger.
    let len = i32::try_from(body_len + 4).expect("authentication message longer than i32::MAX");
    buf.reserve(1 + 4 + body_len);
    buf.put_u8(tag);
    buf.put_i32(len);
}

// ---- frontend messages (Causeway acting as the client) ----

/// PasswordMessage: a cleartext password or an md5 response, NUL-terminated.
pub fn write_password_message(buf: &mut BytesMut, password: &[u8]) {
    start(buf, PASSWORD_TAG, password.len() + 1);
    buf.put_slice(password);
    buf.put_u8(0);
}

/// SASLInitialResponse: mechanism name, then the length-prefixed client-first-message.
pub fn write_sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    start(buf, PASSWORD_TAG, mechanism.len() + 1 + 4 + data.len());
    buf.put_slice(mechanism.as_bytes());
    buf.put_u8(0);
    let data_len = i32::try_from(data.len()).expect("SASL data longer than i32::MAX");
    buf.put_i32(data_len);
    buf.put_slice(data);
}

/// SASLResponse: the client-final-message, unframed.
pub fn write_sasl_response(buf: &mut BytesMut, data: &[u8]) {
    start(buf, PASSWORD_TAG, data.len());
    buf.put_slice(data);
}

// ---- decoding what a client sends us ----

/// PasswordMessage body: one NUL-terminated string and nothing after it.
pub fn parse_password_message(body: &[u8]) -> Result<&str, MessageError> {
    let (password, rest) = read_cstr(body)?;
    if !rest.is_empty() {
        return Err(MessageError::TrailingBytes(rest.len()));
    }
    Ok(password)
}

/// SASLInitialResponse body: the chosen mechanism and the initial data.
/// A data length of -1 ("no initial response") yields empty data.
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8]), MessageError> {
    let (mechanism, rest) = read_cstr(body)?;
    let (len, rest) = read_i32(rest)?;
    let data = match len {
        -1 => &[][..],
        n => {
            let n = usize::try_from(n).map_err(|_| MessageError::InvalidLength(len))?;
            rest.get(..n).ok_or(MessageError::Truncated)?
        }
    };
    let trailing = rest.len() - data.len();
    if trailing != 0 {
        return Err(MessageError::TrailingBytes(trailing));
    }
    Ok((mechanism, data))
}

/// SASLResponse body: the whole body is the SASL data.
pub fn parse_sasl_response(body: &[u8]) -> &[u8] {
    body
}

// ---- decoding what a server sends us ----

/// A backend `Authentication*` request, borrowing from the message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<&'a str>,
    },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    /// Kerberos, GSSAPI, SSPI and anything newer: not supported by Causeway.
    Other(i32),
}

/// Decodes the body of a backend `R` message.
pub fn parse_auth_request(body: &[u8]) -> Result<AuthRequest<'_>, MessageError> {
    let (code, rest) = read_i32(body)?;
    let request = match code {
        AUTH_OK | AUTH_CLEARTEXT_PASSWORD => {
            if !rest.is_empty() {
                return Err(MessageError::TrailingBytes(rest.len()));
            }
            if code == AUTH_OK {
                AuthRequest::Ok
            } else {
                AuthRequest::Cleartext
            }
        }
        AUTH_MD5_PASSWORD => {
            let salt: [u8; 4] = rest.try_into().map_err(|_| {
                if rest.len() < 4 {
                    MessageError::Truncated
                } else {
                    MessageError::TrailingBytes(rest.len() - 4)
                }
            })?;
            AuthRequest::Md5 { salt }
        }
        AUTH_SASL => {
            let mut mechanisms = Vec::new();
            let mut rest = rest;
            loop {
                let (mechanism, more) = read_cstr(rest)?;
                rest = more;
                if mechanism.is_empty() {
                    break;
                }
                mechanisms.push(mechanism);
            }
            if !rest.is_empty() {
                return Err(MessageError::TrailingBytes(rest.len()));
            }
            AuthRequest::Sasl { mechanisms }
        }
        AUTH_SASL_CONTINUE => AuthRequest::SaslContinue(rest),
        AUTH_SASL_FINAL => AuthRequest::SaslFinal(rest),
        other => AuthRequest::Other(other),
    };
    Ok(request)
}

fn read_cstr(body: &[u8]) -> Result<(&str, &[u8]), MessageError> {
    let nul = body
        .iter()
        .position(|&b| b == 0)
        .ok_or(MessageError::MissingNul)?;
    let (s, rest) = body.split_at(nul);
    let s = std::str::from_utf8(s).map_err(|_| MessageError::InvalidUtf8)?;
    Ok((s, rest.get(1..).unwrap_or_default()))
}

fn read_i32(body: &[u8]) -> Result<(i32, &[u8]), MessageError> {
    let (head, rest) = body
        .split_first_chunk::<4>()
        .ok_or(MessageError::Truncated)?;
    Ok((i32::from_be_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits one framed message into (tag, body), checking the length field.
    fn unframe(buf: &[u8]) -> (u8, &[u8]) {
        let tag = buf[0];
        let len = i32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        assert_eq!(
            len + 1,
            buf.len(),
            "length field must count itself and the body"
        );
        (tag, &buf[5..])
    }

    #[test]
    fn backend_messages_have_exact_bytes() {
        let mut buf = BytesMut::new();
        write_auth_ok(&mut buf);
        assert_eq!(&buf[..], b"R\0\0\0\x08\0\0\0\0");
        buf.clear();
        write_auth_cleartext_password(&mut buf);
        assert_eq!(&buf[..], b"R\0\0\0\x08\0\0\0\x03");
        buf.clear();
        write_auth_md5_password(&mut buf, [1, 2, 3, 4]);
        assert_eq!(&buf[..], b"R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04");
        buf.clear();
        write_auth_sasl(&mut buf, &[SCRAM_SHA_256]);
        assert_eq!(&buf[..], b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0");
        buf.clear();
        write_auth_sasl_continue(&mut buf, b"r=abc");
        assert_eq!(&buf[..], b"R\0\0\0\x0d\0\0\0\x0br=abc");
        buf.clear();
        write_auth_sasl_final(&mut buf, b"v=xyz");
        assert_eq!(&buf[..], b"R\0\0\0\x0d\0\0\0\x0cv=xyz");
    }

    #[test]
    fn backend_messages_round_trip_through_parser() {
        type Writer = fn(&mut BytesMut);
        let cases: Vec<(Writer, AuthRequest<'static>)> = vec![
            (write_auth_ok, AuthRequest::Ok),
            (write_auth_cleartext_password, AuthRequest::Cleartext),
            (
                |b| write_auth_md5_password(b, [9, 8, 7, 6]),
                AuthRequest::Md5 { salt: [9, 8, 7, 6] },
            ),
            (
                |b| write_auth_sasl(b, &["SCRAM-SHA-256-PLUS", SCRAM_SHA_256]),
                AuthRequest::Sasl {
                    mechanisms: vec!["SCRAM-SHA-256-PLUS", SCRAM_SHA_256],
                },
            ),
            (
                |b| write_auth_sasl_continue(b, b"r=1,s=2,i=3"),
                AuthRequest::SaslContinue(b"r=1,s=2,i=3"),
            ),
            (
                |b| write_auth_sasl_final(b, b""),
                AuthRequest::SaslFinal(b""),
            ),
        ];
        for (write, expected) in cases {
            let mut buf = BytesMut::new();
            write(&mut buf);
            let (tag, body) = unframe(&buf);
            assert_eq!(tag, b'R');
            assert_eq!(parse_auth_request(body).unwrap(), expected);
        }
        assert_eq!(
            parse_auth_request(&7i32.to_be_bytes()).unwrap(),
            AuthRequest::Other(7)
        );
    }

    #[test]
    fn frontend_messages_round_trip_through_parsers() {
        let mut buf = BytesMut::new();
        write_password_message(&mut buf, b"md5abc");
        assert_eq!(&buf[..], b"p\0\0\0\x0bmd5abc\0");
        let (tag, body) = unframe(&buf);
        assert_eq!(
            (tag, parse_password_message(body).unwrap()),
            (b'p', "md5abc")
        );

        buf.clear();
        write_sasl_initial_response(&mut buf, SCRAM_SHA_256, b"n,,n=,r=abc");
        let (tag, body) = unframe(&buf);
        assert_eq!(tag, b'p');
        assert_eq!(
            parse_sasl_initial_response(body).unwrap(),
            (SCRAM_SHA_256, &b"n,,n=,r=abc"[..])
        );

        buf.clear();
        write_sasl_response(&mut buf, b"c=biws,r=abc,p=xyz");
        let (tag, body) = unframe(&buf);
        assert_eq!(
            (tag, parse_sasl_response(body)),
            (b'p', &b"c=biws,r=abc,p=xyz"[..])
        );

        // Several messages append to the same buffer.
        let mut two = BytesMut::new();
        write_auth_ok(&mut two);
        write_auth_ok(&mut two);
        assert_eq!(two.len(), 18);
    }

    #[test]
    fn sasl_initial_response_without_data() {
        let body = b"SCRAM-SHA-256\0\xff\xff\xff\xff";
        assert_eq!(
            parse_sasl_initial_response(body).unwrap(),
            (SCRAM_SHA_256, &b""[..])
        );
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors() {
        // Password message.
        assert_eq!(parse_password_message(b""), Err(MessageError::MissingNul));
        assert_eq!(parse_password_message(b"pw"), Err(MessageError::MissingNul));
        assert_eq!(
            parse_password_message(b"pw\0x"),
            Err(MessageError::TrailingBytes(1))
        );
        assert_eq!(
            parse_password_message(b"\xff\0"),
            Err(MessageError::InvalidUtf8)
        );

        // SASLInitialResponse: every strict prefix of a valid body fails.
        let mut buf = BytesMut::new();
        write_sasl_initial_response(&mut buf, SCRAM_SHA_256, b"n,,n=,r=abc");
        let body = &buf[5..];
        for end in 0..body.len() {
            assert!(parse_sasl_initial_response(&body[..end]).is_err(), "{end}");
        }
        let mut long = body.to_vec();
        long.push(0);
        assert_eq!(
            parse_sasl_initial_response(&long),
            Err(MessageError::TrailingBytes(1))
        );
        assert_eq!(
            parse_sasl_initial_response(b"M\0\xff\xff\xff\xfe"),
            Err(MessageError::InvalidLength(-2))
        );
        assert_eq!(
            parse_sasl_initial_response(b"M\0\x7f\xff\xff\xffabc"),
            Err(MessageError::Truncated)
        );

        // Authentication requests.
        for bad in [
            &b""[..],
            b"\0\0\0",
            b"\0\0\0\0\0",
            b"\0\0\0\x03x",
            b"\0\0\0\x05\x01\x02\x03",
            b"\0\0\0\x05\x01\x02\x03\x04\x05",
            b"\0\0\0\x0a",
            b"\0\0\0\x0aSCRAM-SHA-256",
            b"\0\0\0\x0aSCRAM-SHA-256\0",
            b"\0\0\0\x0aSCRAM-SHA-256\0\0junk",
            b"\0\0\0\x0a\xff\0\0",
        ] {
            assert!(parse_auth_request(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, RngCore};
        let mut rng = rand::thread_rng();
        for _ in 0..2000 {
            let mut body = vec![0u8; rng.gen_range(0..24)];
            rng.fill_bytes(&mut body);
            // Bias some towards known codes so the inner branches run.
            if body.len() >= 4 && rng.gen_bool(0.5) {
                body[..4].copy_from_slice(&rng.gen_range(0..13i32).to_be_bytes());
            }
            let _ = parse_auth_request(&body);
            let _ = parse_password_message(&body);
            let _ = parse_sasl_initial_response(&body);
        }
    }
}
