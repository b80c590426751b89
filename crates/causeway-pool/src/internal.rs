//! Causeway's own queries on a server connection: the server check,
//! connect_query, parameter sync, the reset query, DEALLOCATE, the
//! read-your-writes LSN queries and auth_query all go through
//! [`ServerConn::internal_query`], the one place that sends them, reads
//! the reply and bounds the wait (`internal_query_timeout`). A server that
//! stops answering costs the client at most that deadline, then the
//! connection is closed, never a hang until TCP keepalive notices.

use std::time::Duration;

use bytes::BytesMut;
use causeway_protocol::{backend, frontend, scan::body};

use crate::error::ServerError;
use crate::server::ServerConn;

/// What an internal query returned.
#[derive(Debug, Default)]
pub struct InternalReply {
    /// ParameterStatus changes the server reported (a session passes them
    /// on to its client).
    pub changed: Vec<(String, String)>,
    /// The requested column of each row, as text (None for NULL).
    pub rows: Vec<Option<String>>,
}

impl ServerConn {
    /// The deadline of each internal query on this connection.
    pub fn set_internal_timeout(&mut self, d: Duration) {
        self.internal_timeout_ms = d.as_millis().clamp(1, u32::MAX as u128) as u32;
    }

    /// Runs `sql` as a simple query to completion within the connection's
    /// deadline, keeping column `column` of each row. Any failure other
    /// than an ErrorResponse (timeout, I/O, protocol) leaves the
    /// connection `broken`: its state is unknown, it is never reused.
    pub async fn internal_query(
        &mut self,
        sql: &str,
        column: Option<usize>,
    ) -> Result<InternalReply, ServerError> {
        let limit = Duration::from_millis(self.internal_timeout_ms.into());
        let r = match tokio::time::timeout(limit, self.run_internal(sql, column)).await {
            Ok(r) => r,
            Err(_) => Err(ServerError::Timeout(
                "waiting for the server to answer an internal query (internal_query_timeout)",
            )),
        };
        if matches!(&r, Err(e) if !matches!(e, ServerError::Query { .. })) {
            self.broken = true;
        }
        r
    }

    async fn run_internal(
        &mut self,
        sql: &str,
        column: Option<usize>,
    ) -> Result<InternalReply, ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        frontend::write_query(&mut out, sql);
        self.send(&out).await?;
        let mut reply = InternalReply::default();
        let mut err = None;
        loop {
            let frame = self.next_frame().await?;
            let b = body(&frame);
            match frame[0] {
                b'D' => {
                    if let Some(col) = column {
                        reply.rows.push(column_text(b, col)?);
                    }
                }
                b'S' => {
                    self.note_parameter(b)?;
                    if let Ok((k, v)) = backend::parse_parameter_status(b) {
                        reply.changed.push((k.to_string(), v.to_string()));
                    }
                }
                b'E' if err.is_none() => {
                    let f = backend::parse_error_fields(b)
                        .map_err(|e| ServerError::Protocol(e.to_string()))?;
                    err = Some(ServerError::Query {
                        code: f.code.to_string(),
                        message: f.message.to_string(),
                    });
                }
                b'Z' => {
                    let status = backend::parse_ready_status(b)
                        .map_err(|e| ServerError::Protocol(e.to_string()))?;
                    if status != b'I' {
                        // Our queries never leave a transaction open; if
                        // one did, the connection is not safe to reuse.
                        self.broken = true;
                    }
                    return match err {
                        Some(e) => Err(e),
                        None => Ok(reply),
                    };
                }
                _ => {}
            }
        }
    }
}

/// Value `col` of a DataRow body.
fn column_text(body: &[u8], col: usize) -> Result<Option<String>, ServerError> {
    let bad = || ServerError::Protocol("malformed DataRow".into());
    let n = body.get(..2).ok_or_else(bad)?;
    if i16::from_be_bytes([n[0], n[1]]) as usize <= col {
        return Err(bad());
    }
    let mut at = 2;
    for i in 0..=col {
        let l = body.get(at..at + 4).ok_or_else(bad)?;
        let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
        at += 4;
        if len < 0 {
            if i == col {
                return Ok(None);
            }
            continue;
        }
        let v = body.get(at..at + len as usize).ok_or_else(bad)?;
        if i == col {
            return Ok(Some(String::from_utf8_lossy(v).into_owned()));
        }
        at += len as usize;
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_protocol::HEADER_LEN;

    #[test]
    fn data_row_columns() {
        let mut b = BytesMut::new();
        backend::write_data_row(&mut b, [Some("alice"), None, Some("md5abc")]);
        let body = &b[HEADER_LEN..];
        assert_eq!(column_text(body, 0).unwrap().as_deref(), Some("alice"));
        assert_eq!(column_text(body, 1).unwrap(), None);
        assert_eq!(column_text(body, 2).unwrap().as_deref(), Some("md5abc"));
        assert!(column_text(body, 3).is_err());
        assert!(column_text(&body[..8], 2).is_err());
    }
}
