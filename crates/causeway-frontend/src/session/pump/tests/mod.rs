//! In-process engine tests: [`Flow::run`] between a real [`Client`] and a
//! real [`ServerConn`], each over a unix socket pair whose other end the
//! test holds: the application on one side, a scripted PostgreSQL on the
//! other. The clock is paused: time only moves when everything is idle,
//! so `settle` (run until nothing moves) and the timeouts take no real
//! time and never race.

mod copy;
mod ends;
mod hold;
mod pipeline;
mod prepared;
mod simple;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use causeway_config::PoolMode;
use causeway_net::{PeerAddr, Stream};
use causeway_pool::{ParamSet, ServerConn};
use causeway_protocol::{backend, frame_header, frontend, message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::{Instant, Sleep};

use super::{End, Flow, Timeouts};
use crate::client::Client;
use crate::session::prepared::{Prep, Registry};

/// Longer than any test runs (virtual time: a stuck flow fails at once).
const GUARD: Duration = Duration::from_secs(24 * 3600);

/// Runs [`Rig::race`] with the rig's engine parts and the named sockets
/// borrowed apart, so that the side future may use those sockets.
macro_rules! race_with {
    ($rig:expr, [$($sock:ident),*] => $side:expr) => {{
        let Rig {
            flow,
            client,
            conn,
            params,
            timer,
            ended,
            $($sock,)*
            ..
        } = $rig;
        Rig::race(flow, client, conn, params, timer, ended, $side).await
    }};
}

pub(super) struct Rig {
    pub flow: Flow,
    pub client: Client,
    pub conn: ServerConn,
    pub params: ParamSet,
    timer: Pin<Box<Sleep>>,
    /// The application's end of the client socket.
    pub app: UnixStream,
    /// The scripted server's end of the server socket.
    pub pg: UnixStream,
    /// How the flow ended while a helper waited on a socket.
    ended: Option<End>,
}

pub(super) struct Setup {
    pub mode: PoolMode,
    pub max_packet: usize,
    pub timeouts: Timeouts,
    pub prep: Box<Prep>,
}

impl Setup {
    pub fn new(mode: PoolMode) -> Self {
        Setup {
            mode,
            max_packet: 1 << 30,
            timeouts: Timeouts::default(),
            prep: Box::new(Prep::new(false, 0, Arc::default())),
        }
    }

    /// Prepared statements tracked, at most `cap` per server connection.
    pub fn tracked(mode: PoolMode, cap: usize, registry: &Arc<Registry>) -> Self {
        Setup {
            prep: Box::new(Prep::new(true, cap, registry.clone())),
            ..Setup::new(mode)
        }
    }

    pub fn rig(self) -> Rig {
        let (app, engine_client) = UnixStream::pair().unwrap();
        let (engine_server, pg) = UnixStream::pair().unwrap();
        let mut conn = ServerConn::over_stream(Stream::Unix(engine_server), peer());
        conn.statements_mut().begin_pin();
        Rig {
            flow: self.flow(),
            client: Client::new(Stream::Unix(engine_client), peer()),
            conn,
            params: ParamSet::new(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now() + GUARD)),
            app,
            pg,
            ended: None,
        }
    }

    fn flow(self) -> Flow {
        Flow::new(
            self.mode,
            self.max_packet,
            self.timeouts,
            Arc::default(),
            self.prep,
        )
    }
}

fn peer() -> PeerAddr {
    PeerAddr::Unix {
        path: "/nonexistent/.s.PGSQL.5432".into(),
        port: 5432,
    }
}

impl Rig {
    pub fn new(mode: PoolMode) -> Self {
        Setup::new(mode).rig()
    }

    /// A new attachment of the server connection (the session makes one
    /// per transaction). Returns the old flow: its prepared statements
    /// live while it does.
    pub fn reattach(&mut self, setup: Setup) -> Flow {
        self.conn.statements_mut().begin_pin();
        self.ended = None;
        std::mem::replace(&mut self.flow, setup.flow())
    }

    pub async fn client_sends(&mut self, bytes: &[u8]) {
        self.app.write_all(bytes).await.unwrap();
    }

    pub async fn server_sends(&mut self, bytes: &[u8]) {
        self.pg.write_all(bytes).await.unwrap();
    }

    /// Runs the flow until `side` completes. If the flow ends meanwhile
    /// (its last bytes may already be written), `side` still completes
    /// and the end is kept for [`Rig::end`].
    async fn race<T>(
        flow: &mut Flow,
        client: &mut Client,
        conn: &mut ServerConn,
        params: &mut ParamSet,
        timer: &mut Pin<Box<Sleep>>,
        ended: &mut Option<End>,
        side: impl Future<Output = T>,
    ) -> T {
        assert!(ended.is_none(), "the flow has ended already: {ended:?}");
        let run = flow.run(client, conn, params, timer);
        let both = async {
            tokio::pin!(side);
            tokio::select! {
                biased;
                t = &mut side => t,
                end = run => {
                    *ended = Some(end);
                    side.await
                }
            }
        };
        tokio::time::timeout(GUARD, both)
            .await
            .expect("nothing moves: the flow is stuck")
    }

    /// Runs the flow until the server has received `n` bytes.
    pub async fn server_gets(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        race_with!(self, [pg] => pg.read_exact(&mut got)).unwrap();
        got
    }

    /// Runs the flow until the client has received `n` bytes.
    pub async fn client_gets(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        race_with!(self, [app] => app.read_exact(&mut got)).unwrap();
        got
    }

    /// Runs the flow until the client has received whole messages up to
    /// and including one tagged `last`.
    pub async fn client_gets_through(&mut self, last: u8) -> Vec<u8> {
        race_with!(self, [app] => read_through(app, last))
    }

    /// Runs the flow until the server has received whole messages up to
    /// and including one tagged `last`.
    pub async fn server_gets_through(&mut self, last: u8) -> Vec<u8> {
        race_with!(self, [pg] => read_through(pg, last))
    }

    /// The server sends `bytes` (more than socket buffers hold) while the
    /// flow runs; returns what the client received meanwhile.
    pub async fn server_streams(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut got = vec![0; bytes.len()];
        race_with!(self, [app, pg] => async {
            let (w, r) = tokio::join!(pg.write_all(bytes), app.read_exact(&mut got));
            w.unwrap();
            r.unwrap();
        });
        got
    }

    /// The client sends `bytes` while the flow runs; returns what the
    /// server received meanwhile.
    pub async fn client_streams(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut got = vec![0; bytes.len()];
        race_with!(self, [app, pg] => async {
            let (w, r) = tokio::join!(app.write_all(bytes), pg.read_exact(&mut got));
            w.unwrap();
            r.unwrap();
        });
        got
    }

    /// Runs the flow until it ends.
    pub async fn end(&mut self) -> End {
        if let Some(end) = self.ended.take() {
            return end;
        }
        let run = self.flow.run(
            &mut self.client,
            &mut self.conn,
            &mut self.params,
            &mut self.timer,
        );
        tokio::time::timeout(GUARD, run)
            .await
            .expect("the flow did not end")
    }

    /// Runs the flow until nothing moves any more (or it ends). With the
    /// clock paused, the guard only fires once every socket is idle.
    pub async fn settle(&mut self) -> Option<End> {
        if let Some(end) = self.ended.take() {
            return Some(end);
        }
        let run = self.flow.run(
            &mut self.client,
            &mut self.conn,
            &mut self.params,
            &mut self.timer,
        );
        tokio::time::timeout(GUARD, run).await.ok()
    }

    /// What has reached the client so far (after `settle`).
    pub fn client_got(&mut self) -> Vec<u8> {
        take_available(&self.app)
    }

    /// What has reached the server so far (after `settle`).
    pub fn server_got(&mut self) -> Vec<u8> {
        take_available(&self.pg)
    }
}

/// Reads what the kernel holds for `s` now, without waiting (tokio's
/// `try_read` trusts its readiness cache, which lags).
fn take_available(s: &UnixStream) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: a second handle on a socket `s` keeps open; ManuallyDrop
    // never closes it. The socket is non-blocking (tokio set it so).
    let mut raw = std::mem::ManuallyDrop::new(unsafe {
        std::os::unix::net::UnixStream::from_raw_fd(s.as_raw_fd())
    });
    let mut out = Vec::new();
    let mut b = [0u8; 64 * 1024];
    loop {
        match raw.read(&mut b) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn read_through(s: &mut UnixStream, last: u8) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let mut header = [0u8; 5];
        s.read_exact(&mut header).await.unwrap();
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0; len - 4];
        s.read_exact(&mut body).await.unwrap();
        got.extend_from_slice(&header);
        got.extend_from_slice(&body);
        if header[0] == last {
            return got;
        }
    }
}

/// The tags of the whole messages in `b`, as text ("12DCZ").
pub(super) fn tags(b: &[u8]) -> String {
    frames(b).iter().map(|(t, _)| *t as char).collect()
}

/// The whole messages in `b`: (tag, body).
pub(super) fn frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(h) = frame_header(b, usize::MAX) {
        let (tag, total) = h.unwrap();
        let Some(frame) = b.get(..total) else { break };
        out.push((tag, frame[5..].to_vec()));
        b = &b[total..];
    }
    out
}

/// The SQLSTATE of the ErrorResponse body `b`.
pub(super) fn sqlstate(b: &[u8]) -> String {
    backend::parse_error_fields(b).unwrap().code.to_string()
}

// Frontend messages.

pub(super) fn query(sql: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    frontend::write_query(&mut b, sql);
    b.to_vec()
}

pub(super) fn parse(name: &str, sql: &str) -> Vec<u8> {
    message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

pub(super) fn bind(stmt: &str) -> Vec<u8> {
    message(b'B', format!("\0{stmt}\0\0\0\0\0\0\0").as_bytes())
}

pub(super) fn execute() -> Vec<u8> {
    message(b'E', b"\0\0\0\0\0")
}

pub(super) fn sync() -> Vec<u8> {
    message(b'S', b"")
}

pub(super) fn flush() -> Vec<u8> {
    message(b'H', b"")
}

pub(super) fn terminate() -> Vec<u8> {
    message(b'X', b"")
}

pub(super) fn copy_data(row: &str) -> Vec<u8> {
    message(b'd', row.as_bytes())
}

pub(super) fn copy_done() -> Vec<u8> {
    message(b'c', b"")
}

pub(super) fn copy_fail(why: &str) -> Vec<u8> {
    message(b'f', format!("{why}\0").as_bytes())
}

// Backend messages.

pub(super) fn ready(status: u8) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_ready_for_query(&mut b, status);
    b.to_vec()
}

pub(super) fn complete(tag: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_command_complete(&mut b, tag);
    b.to_vec()
}

pub(super) fn row_description(cols: &[&str]) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_text_row_description(&mut b, cols);
    b.to_vec()
}

pub(super) fn data_row(v: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_data_row(&mut b, [Some(v)]);
    b.to_vec()
}

pub(super) fn error(code: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_error(&mut b, false, code, "scripted error");
    b.to_vec()
}

pub(super) fn fatal(code: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_error(&mut b, true, code, "scripted fatal");
    b.to_vec()
}

pub(super) fn parameter_status(k: &str, v: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    backend::write_parameter_status(&mut b, k, v);
    b.to_vec()
}

/// CopyInResponse ('G') / CopyOutResponse ('H'): text, one column.
pub(super) fn copy_response(tag: u8) -> Vec<u8> {
    message(tag, &[0, 0, 1, 0, 0])
}

pub(super) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
