//! The untyped first packet a client sends: StartupMessage, SSLRequest,
//! GSSENCRequest or CancelRequest.

use crate::{read_cstr, read_i32, ProtocolError};

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
/// Protocol 3.0 as sent in the startup packet (major << 16 | minor).
pub const PROTOCOL_3_0: i32 = 196608;

/// Startup packets are small; anything bigger is hostile (PostgreSQL uses 10000).
pub const MAX_STARTUP_PACKET: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket<'a> {
    Ssl,
    GssEnc,
    Cancel {
        pid: i32,
        secret: &'a [u8],
    },
    Startup {
        minor: u16,
        /// Key/value pairs in the order sent.
        params: Vec<(&'a str, &'a str)>,
        /// `_pq_.` protocol options we do not understand (reported back in
        /// NegotiateProtocolVersion).
        unknown_options: Vec<&'a str>,
    },
}

/// Returns the packet's total length once its 4-byte length has arrived.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let Some(len) = read_i32(buf, 0) else {
        return Ok(None);
    };
    if len < 8 || len as usize > MAX_STARTUP_PACKET {
        return Err(ProtocolError::BadStartupLength(len.into()));
    }
    Ok(Some(len as usize))
}

/// Parses one complete startup-phase packet (length prefix included).
pub fn parse(packet: &[u8]) -> Result<StartupPacket<'_>, ProtocolError> {
    let code = read_i32(packet, 4).ok_or(ProtocolError::Malformed("startup"))?;
    let rest = packet.get(8..).unwrap_or(&[]);
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::Ssl),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEnc),
        CANCEL_REQUEST_CODE => {
            let pid = read_i32(rest, 0).ok_or(ProtocolError::Malformed("CancelRequest"))?;
            let secret = &rest[4..];
            // 3.0 keys are 4 bytes; 3.2 allows up to 256.
            if secret.len() < 4 || secret.len() > 256 {
                return Err(ProtocolError::Malformed("CancelRequest"));
            }
            Ok(StartupPacket::Cancel { pid, secret })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedVersion { major, minor });
            }
            let mut params = Vec::new();
            let mut unknown_options = Vec::new();
            let mut body = rest;
            loop {
                match body.first() {
                    Some(0) if body.len() == 1 => break,
                    None => return Err(ProtocolError::Malformed("StartupMessage")),
                    _ => {}
                }
                let (k, r) = read_cstr(body).ok_or(ProtocolError::Malformed("StartupMessage"))?;
                let (v, r) = read_cstr(r).ok_or(ProtocolError::Malformed("StartupMessage"))?;
                if k.is_empty() {
                    return Err(ProtocolError::Malformed("StartupMessage"));
                }
                if k.starts_with("_pq_.") {
                    unknown_options.push(k);
                } else {
                    params.push((k, v));
                }
                body = r;
            }
            Ok(StartupPacket::Startup {
                minor,
                params,
                unknown_options,
            })
        }
    }
}

/// Splits libpq's `options` startup parameter (`-c key=value --key=value`)
/// into settings. Backslash escapes a space, as in PostgreSQL.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n)
                }
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let kv = if w == "-c" {
            it.next().ok_or(ProtocolError::Malformed("options"))?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_string()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_string()
        } else {
            return Err(ProtocolError::Malformed("options"));
        };
        let (k, v) = kv
            .split_once('=')
            .ok_or(ProtocolError::Malformed("options"))?;
        out.push((k.replace('-', "_"), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn parses_startup_params() {
        let p = packet(PROTOCOL_3_0, b"user\0bob\0database\0app\0_pq_.x\0\x31\0\0");
        assert_eq!(packet_len(&p).unwrap(), Some(p.len()));
        match parse(&p).unwrap() {
            StartupPacket::Startup {
                minor,
                params,
                unknown_options,
            } => {
                assert_eq!(minor, 0);
                assert_eq!(params, vec![("user", "bob"), ("database", "app")]);
                assert_eq!(unknown_options, vec!["_pq_.x"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_startup() {
        for body in [&b"user\0bob"[..], b"user\0", b"", b"\0\0", b"user\0bob\0"] {
            assert!(parse(&packet(PROTOCOL_3_0, body)).is_err(), "{body:?}");
        }
        assert!(parse(&packet(2 << 16, b"\0")).is_err());
        assert!(packet_len(&[0, 0, 0, 4]).is_err());
        assert!(packet_len(&[0x7f, 0, 0, 4]).is_err());
        assert_eq!(packet_len(&[0, 0]).unwrap(), None);
    }

    #[test]
    fn parses_ssl_and_cancel() {
        assert_eq!(
            parse(&packet(SSL_REQUEST_CODE, b"")).unwrap(),
            StartupPacket::Ssl
        );
        let c = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(
            parse(&c).unwrap(),
            StartupPacket::Cancel {
                pid: 7,
                secret: &[1, 2, 3, 4]
            }
        );
        assert!(parse(&packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7])).is_err());
    }

    #[test]
    fn parses_options() {
        let o = parse_options(r"-c search_path=a\ b --statement-timeout=5 -cwork_mem=1MB").unwrap();
        assert_eq!(
            o,
            vec![
                ("search_path".into(), "a b".into()),
                ("statement_timeout".into(), "5".into()),
                ("work_mem".into(), "1MB".into())
            ]
        );
        assert!(parse_options("-x").is_err());
    }
}
