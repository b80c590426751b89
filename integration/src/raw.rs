//! A raw protocol client for tests that check exactly which messages
//! reach the client (fidelity, parity): login with any startup packet,
//! send frames from [`crate::frames`], read messages one by one.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frames::*;
use crate::CausewayProcess;

/// Bound on any single read or write.
pub const T: Duration = Duration::from_secs(20);

/// Awaits `f` with a deadline; panics naming `what` on timeout.
async fn within<O>(d: Duration, what: &str, f: impl Future<Output = O>) -> O {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {d:?}"),
    }
}

pub const V3_0: i32 = 196608;
pub const V3_2: i32 = 196610;

/// Error/notice fields by type.
pub fn fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

pub fn field(body: &[u8], t: u8) -> String {
    fields(body)
        .into_iter()
        .find(|(k, _)| *k == t)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// First column of a DataRow, as text.
pub fn datarow_first(body: &[u8]) -> String {
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]);
    if len < 0 {
        return "NULL".into();
    }
    String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned()
}

/// Message types in order, ParameterStatus left out: a server switch in
/// transaction mode may report one at any time (e.g. in_hot_standby when
/// a read goes to a replica), as PostgreSQL itself may.
pub fn tags(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter()
        .filter(|(t, _)| *t != b'S')
        .map(|(t, _)| *t as char)
        .collect()
}

pub fn tags_all(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

pub struct Raw {
    pub s: TcpStream,
    /// BackendKeyData (pid, secret bytes).
    pub key: (i32, Vec<u8>),
    /// Messages before the first ReadyForQuery.
    pub login: Vec<(u8, Vec<u8>)>,
}

impl Raw {
    pub async fn open(cw: &CausewayProcess) -> TcpStream {
        TcpStream::connect(("127.0.0.1", cw.port())).await.unwrap()
    }

    /// Logs in as app (trust) with `version` and extra startup parameters.
    pub async fn login_with(cw: &CausewayProcess, version: i32, extra: &[(&str, &str)]) -> Raw {
        let mut params = vec![("user", "app"), ("database", "app")];
        params.extend_from_slice(extra);
        Self::login_at(cw.port(), version, &params)
            .await
            .unwrap_or_else(|e| panic!("login refused: {e:?}"))
    }

    /// Logs in to 127.0.0.1:`port` (trust) with exactly `params`; Err
    /// with the ErrorResponse's fields if refused.
    pub async fn login_at(
        port: u16,
        version: i32,
        params: &[(&str, &str)],
    ) -> Result<Raw, Vec<(u8, String)>> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&startup(version, params)).await.unwrap();
        let mut raw = Raw {
            s,
            key: (0, Vec::new()),
            login: Vec::new(),
        };
        loop {
            let (tag, body) = raw.recv().await.expect("EOF during login");
            match tag {
                b'E' => return Err(fields(&body)),
                b'K' => {
                    raw.key = (
                        i32::from_be_bytes(body[..4].try_into().unwrap()),
                        body[4..].to_vec(),
                    )
                }
                b'Z' => break,
                _ => {}
            }
            raw.login.push((tag, body));
        }
        Ok(raw)
    }

    /// A ParameterStatus value reported at login.
    pub fn reported(&self, name: &str) -> Option<String> {
        self.login.iter().find_map(|(t, b)| {
            let mut parts = b.split(|c| *c == 0);
            let k = parts.next()?;
            let v = parts.next()?;
            (*t == b'S' && k == name.as_bytes()).then(|| String::from_utf8_lossy(v).into_owned())
        })
    }

    pub async fn login(cw: &CausewayProcess) -> Raw {
        Self::login_with(cw, V3_0, &[]).await
    }

    pub async fn send(&mut self, b: &[u8]) {
        within(T, "write", self.s.write_all(b)).await.unwrap();
    }

    /// Next message within `d`; None on EOF or if nothing came.
    pub async fn recv_within(&mut self, d: Duration) -> Option<(u8, Vec<u8>)> {
        self.read_message(d).await.ok().flatten()
    }

    /// Next message; None on EOF. Panics if nothing comes within T.
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        match self.read_message(T).await {
            Ok(m) => m,
            Err(_) => panic!("read message: no result within {T:?}"),
        }
    }

    /// The next message: Ok(None) on EOF, Err if no header came within `d`.
    async fn read_message(&mut self, d: Duration) -> Result<Option<(u8, Vec<u8>)>, ()> {
        let mut head = [0u8; 5];
        match tokio::time::timeout(d, self.s.read_exact(&mut head)).await {
            Err(_) => return Err(()),
            Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        assert!(len >= 4, "bad length {len} for '{}'", head[0] as char);
        let mut body = vec![0u8; len as usize - 4];
        within(T, "message body", self.s.read_exact(&mut body))
            .await
            .expect("truncated message");
        Ok(Some((head[0], body)))
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await.expect("EOF before ReadyForQuery");
            let z = m.0 == b'Z';
            out.push(m);
            if z {
                return out;
            }
        }
    }

    /// Runs a simple query that must succeed; returns the first column of
    /// each row and the ReadyForQuery status.
    pub async fn simple(&mut self, sql: &str) -> (Vec<String>, u8) {
        self.send(&query(sql)).await;
        let msgs = self.until_ready().await;
        let mut rows = Vec::new();
        for (t, b) in &msgs {
            match t {
                b'E' => panic!("{sql}: {:?}", fields(b)),
                b'D' => rows.push(datarow_first(b)),
                _ => {}
            }
        }
        (rows, msgs.last().unwrap().1[0])
    }

    /// Nothing arrives for `d`.
    pub async fn assert_quiet(&mut self, d: Duration, what: &str) {
        if let Some((t, b)) = self.recv_within(d).await {
            panic!(
                "{what}: unexpected '{}' {:?}",
                t as char,
                String::from_utf8_lossy(&b)
            );
        }
    }
}

pub fn status(msgs: &[(u8, Vec<u8>)]) -> u8 {
    let (t, b) = msgs.last().unwrap();
    assert_eq!(*t, b'Z');
    b[0]
}

pub fn errors(msgs: &[(u8, Vec<u8>)]) -> Vec<String> {
    msgs.iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| field(b, b'C'))
        .collect()
}

pub fn data(msgs: &[(u8, Vec<u8>)]) -> Vec<String> {
    msgs.iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, b)| datarow_first(b))
        .collect()
}
