//! A minimal HTTP/1.1 GET for Patroni's REST API: plain http, one request
//! per connection, bounded in time and size (no client library needed for
//! one JSON document a second).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read: a /cluster document of a few dozen members is a
/// few KiB; anything bigger is not Patroni.
const MAX_RESPONSE: usize = 1 << 20;

/// GET `path` from `host:port` within `deadline`: the body of a 200 answer.
pub async fn get(host: &str, port: u16, path: &str, deadline: Duration) -> Result<Vec<u8>, String> {
    let fetch = async {
        let mut s = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(8192);
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            if buf.len() + n > MAX_RESPONSE {
                return Err(format!("response larger than {MAX_RESPONSE} bytes"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if complete(&buf) {
                break;
            }
        }
        body(&buf)
    };
    tokio::time::timeout(deadline, fetch)
        .await
        .map_err(|_| format!("no answer within {deadline:?}"))?
}

/// The header block and the body start, once the headers are in.
fn split(resp: &[u8]) -> Option<(&str, &[u8])> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&resp[..end]).ok()?;
    Some((head, &resp[end + 4..]))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether a Content-Length response is all in (so a server that keeps the
/// connection open despite `Connection: close` does not cost the deadline).
fn complete(resp: &[u8]) -> bool {
    let Some((head, rest)) = split(resp) else {
        return false;
    };
    header(head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| rest.len() >= n)
}

/// The body of a complete 200 response (Content-Length, chunked, or up to
/// the end of the connection).
fn body(resp: &[u8]) -> Result<Vec<u8>, String> {
    let (head, rest) = split(resp).ok_or("no complete HTTP header")?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no HTTP status line")?;
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(rest);
    }
    match header(head, "content-length") {
        Some(v) => {
            let n: usize = v.parse().map_err(|_| "bad Content-Length")?;
            rest.get(..n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "body shorter than Content-Length".into())
        }
        None => Ok(rest.to_vec()),
    }
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert!(complete(r));
        assert_eq!(body(r).unwrap(), b"{}");
        let eof = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP\r\n\r\n{\"a\":1}";
        assert!(!complete(eof));
        assert_eq!(body(eof).unwrap(), b"{\"a\":1}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(body(chunked).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn refusals() {
        assert!(body(b"HTTP/1.0 503 Service Unavailable\r\n\r\n{}").is_err());
        assert!(body(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(body(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
