//! One connection to a PostgreSQL server: login as a client, run
//! Causeway's own small queries (reset, check, parameter sync), and hand
//! the raw stream to a session.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use causeway_net::{PeerAddr, ServerTls, Stream};
use causeway_protocol::auth::md5::{md5_password_hash, md5_salted_response};
use causeway_protocol::auth::messages::{self as authmsg, AuthRequest};
use causeway_protocol::auth::{server_first_salt, ClientBinding, ScramKeys, ScramPassthrough};
use causeway_protocol::{backend, frontend, scan::body, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cancel::CancelTarget;
use crate::error::ServerError;
use crate::info::ServerInfo;
use crate::params::ParamSet;
use crate::slot::SlotGuard;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Where and as whom to log in.
#[derive(Debug, Clone)]
pub struct Login {
    /// Host name, IP address, or a unix socket directory (`/...`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<String>,
    /// Stand-in for the password when the client authenticated with SCRAM
    /// against a verifier the server also holds (auth_query).
    pub scram_keys: Option<ScramKeys>,
    /// Extra startup parameters (application_name, client_encoding, ...).
    pub startup: Vec<(String, String)>,
    /// server_tls_* of the database.
    pub tls: ServerTls,
}

/// Internal queries never return big results; a bigger frame is a bug.
const MAX_INTERNAL_FRAME: usize = 1 << 20;

/// Fields are private: the pool edits them directly, everyone else goes
/// through the methods below (what a session and its pump need). Boxed: a
/// connection is handed from the pool to a session and back on every
/// transaction (through a grant, the lease, the attachment), and moving a
/// pointer is cheaper than moving the whole state each time.
pub struct ServerConn(Box<Conn>);

impl std::ops::Deref for ServerConn {
    type Target = Conn;

    #[inline]
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl std::ops::DerefMut for ServerConn {
    #[inline]
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

/// A server connection's state (see [`ServerConn`]).
pub struct Conn {
    pub(crate) stream: Stream,
    /// Bytes read from the server and not yet consumed.
    pub(crate) buf: BytesMut,
    /// Every ParameterStatus the server reported plus what we SET.
    pub(crate) params: ParamSet,
    /// Fingerprint of the client parameter set this server was last synced
    /// to (0 = unknown).
    pub(crate) synced_fp: u64,
    pub(crate) id: u64,
    pub(crate) cancel: Arc<CancelTarget>,
    pub(crate) created: Instant,
    pub(crate) last_used: Instant,
    /// `in_hot_standby` as last reported (PG14+).
    pub(crate) in_hot_standby: Option<bool>,
    /// Set when the connection must not go back to the pool.
    pub(crate) broken: bool,
    pub(crate) slot: Option<SlotGuard>,
    /// What SHOW SERVERS reports.
    pub(crate) info: Arc<ServerInfo>,
    /// The pool's RECONNECT epoch when this connection was opened.
    pub(crate) epoch: u64,
    /// Renamed prepared statements this server holds.
    pub(crate) statements: Box<crate::StatementCache>,
    /// Deadline of each internal query in ms (`internal.rs`; u32 keeps
    /// the struct small); set by the pool.
    pub(crate) internal_timeout_ms: u32,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("id", &self.id)
            .field("pid", &self.cancel.pid)
            .finish()
    }
}

impl ServerConn {
    /// Connects and logs in, within `timeout`.
    pub async fn connect(
        login: &Login,
        timeout: Duration,
        keepalive: bool,
    ) -> Result<Self, ServerError> {
        tokio::time::timeout(timeout, Self::connect_inner(login, keepalive))
            .await
            .map_err(|_| ServerError::Timeout("connecting to server (server_connect_timeout)"))?
    }

    async fn connect_inner(login: &Login, keepalive: bool) -> Result<Self, ServerError> {
        let c = causeway_net::connect(&login.host, login.port, &login.tls, keepalive)
            .await
            .map_err(|e| ServerError::Connect {
                addr: format!("{}:{}", login.host, login.port),
                reason: e.to_string(),
            })?;
        let (peer, local) = (c.peer, c.local);
        let tls = c.stream.tls_description();
        let mut conn = Self::unlogged(c.stream, peer.clone(), local, tls.clone());
        conn.login(login, &peer).await?;
        conn.info = Arc::new(ServerInfo::new(conn.id, conn.cancel.pid, peer, local, tls));
        Ok(conn)
    }

    fn unlogged(stream: Stream, peer: PeerAddr, local: Option<SocketAddr>, tls: String) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        ServerConn(Box::new(Conn {
            stream,
            buf: BytesMut::with_capacity(8192),
            params: ParamSet::new(),
            synced_fp: 0,
            id,
            cancel: Arc::new(CancelTarget::new(peer.clone(), 0, Vec::new())),
            created: Instant::now(),
            last_used: Instant::now(),
            in_hot_standby: None,
            broken: false,
            statements: Box::default(),
            slot: None,
            info: Arc::new(ServerInfo::new(id, 0, peer, local, tls)),
            epoch: 0,
            internal_timeout_ms: crate::settings::DEFAULT_INTERNAL_TIMEOUT.as_millis() as u32,
        }))
    }

    /// For tests and tools only: a connection around a stream that is
    /// already past login (no StartupMessage is sent, nothing is read), in
    /// no pool. Engine tests script the server's side of `stream`.
    pub fn over_stream(stream: Stream, peer: PeerAddr) -> Self {
        Self::unlogged(stream, peer, None, String::new())
    }

    /// The connection's number (SHOW SERVERS, logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where a cancel request for this connection goes.
    pub fn cancel(&self) -> &Arc<CancelTarget> {
        &self.cancel
    }

    /// What SHOW SERVERS reports about it.
    pub fn info(&self) -> &Arc<ServerInfo> {
        &self.info
    }

    /// The parameters the server reported, plus what Causeway SET.
    pub fn params(&self) -> &ParamSet {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut ParamSet {
        &mut self.params
    }

    /// Fingerprint of the client parameter set this server was last
    /// synced to (0 = unknown).
    pub fn synced_fp(&self) -> u64 {
        self.synced_fp
    }

    #[inline]
    pub fn set_synced_fp(&mut self, fp: u64) {
        self.synced_fp = fp;
    }

    /// The connection must not go back to the pool.
    #[inline]
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Its state is unknown (a FATAL, a failed internal query): it is
    /// closed instead of pooled.
    #[inline]
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Renamed prepared statements this server holds.
    pub fn statements(&self) -> &crate::StatementCache {
        &self.statements
    }

    #[inline]
    pub fn statements_mut(&mut self) -> &mut crate::StatementCache {
        &mut self.statements
    }

    /// Bytes read from the server and not yet consumed (the pump forwards
    /// and edits them in place).
    #[inline]
    pub fn buf(&self) -> &BytesMut {
        &self.buf
    }

    #[inline]
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The read buffer and the statement cache at once: a reply is checked
    /// against the statements while it still sits in the buffer.
    #[inline]
    pub fn buf_and_statements(&mut self) -> (&mut BytesMut, &mut crate::StatementCache) {
        let c = &mut *self.0;
        (&mut c.buf, &mut c.statements)
    }

    /// Reads what the server sent into [`buf`](Self::buf), keeping at
    /// least `room` bytes free to read into. Ok(0): the server closed.
    #[inline]
    pub fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < room {
            self.buf.reserve(2 * room);
        }
        let c = &mut *self.0;
        tokio_util::io::poll_read_buf(Pin::new(&mut c.stream), cx, &mut c.buf)
    }

    /// Writes (part of) `bytes` to the server.
    #[inline]
    pub fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, bytes)
    }

    /// Flushes what TLS holds (a no-op on plain sockets).
    #[inline]
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Writes `out` and flushes it through TLS, if any.
    pub(crate) async fn send(&mut self, out: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(out).await?;
        self.stream.flush().await
    }

    async fn login(&mut self, login: &Login, peer: &PeerAddr) -> Result<(), ServerError> {
        let mut out = BytesMut::with_capacity(256);
        let mut params: Vec<(&str, &str)> = vec![
            ("user", login.user.as_str()),
            ("database", login.database.as_str()),
        ];
        for (k, v) in &login.startup {
            params.push((k.as_str(), v.as_str()));
        }
        frontend::write_startup(&mut out, params);
        self.send(&out).await?;
        let mut scram: Option<Sasl> = None;
        loop {
            let frame = self.next_frame().await?;
            let b = body(&frame);
            match frame[0] {
                b'R' => {
                    let req = authmsg::parse_auth_request(b)
                        .map_err(|e| ServerError::Protocol(e.to_string()))?;
                    out.clear();
                    match req {
                        AuthRequest::Ok => continue,
                        AuthRequest::Cleartext => {
                            let pw = need_password(login)?;
                            authmsg::write_password_message(&mut out, pw.as_bytes());
                        }
                        AuthRequest::Md5 { salt } => {
                            let pw = need_password(login)?;
                            // A stored md5 hash works as well as the password.
                            let hash = if is_md5_hash(pw) {
                                pw.to_string()
                            } else {
                                md5_password_hash(&login.user, pw)
                            };
                            let resp = md5_salted_response(&hash, salt);
                            authmsg::write_password_message(&mut out, resp.as_bytes());
                        }
                        AuthRequest::Sasl { mechanisms } => {
                            if !mechanisms.contains(&"SCRAM-SHA-256") {
                                return Err(ServerError::Protocol(
                                    "server offers no SASL mechanism Causeway supports".into(),
                                ));
                            }
                            // Bound to the server's certificate when it offers -PLUS.
                            let binding = ClientBinding::choose(
                                self.stream.is_tls(),
                                self.stream.end_point().map(|e| e.0.as_slice()),
                                &mechanisms,
                            );
                            let client = match (&login.password, &login.scram_keys) {
                                (None, Some(keys)) => {
                                    Sasl::Keys(ScramPassthrough::with_binding(*keys, binding))
                                }
                                _ => Sasl::Password(
                                    // Keys derived (cached) once the server's salt is known.
                                    ScramPassthrough::with_binding(
                                        ScramKeys {
                                            client_key: [0; 32],
                                            server_key: [0; 32],
                                        },
                                        binding,
                                    ),
                                    need_password(login)?.to_string(),
                                ),
                            };
                            let (mechanism, first) = match &client {
                                Sasl::Password(k, _) | Sasl::Keys(k) => {
                                    (k.mechanism(), k.client_first())
                                }
                            };
                            tracing::debug!(mechanism, "server SASL login");
                            authmsg::write_sasl_initial_response(&mut out, mechanism, &first);
                            scram = Some(client);
                        }
                        AuthRequest::SaslContinue(data) => {
                            let client = scram.as_mut().ok_or_else(|| {
                                ServerError::Protocol("unexpected SASLContinue".into())
                            })?;
                            if let Sasl::Password(k, password) = client {
                                let keys = server_first_salt(data)
                                    .and_then(|(salt, i)| {
                                        crate::scram_keys::keys_for(password, &salt, i)
                                    })
                                    .ok_or_else(|| {
                                        ServerError::Protocol(
                                            "malformed SCRAM server-first-message".into(),
                                        )
                                    })?;
                                k.set_keys(keys);
                            }
                            let reply = match client {
                                Sasl::Password(k, _) | Sasl::Keys(k) => {
                                    k.handle_server_first(data).map_err(|e| e.to_string())
                                }
                            }
                            .map_err(ServerError::Protocol)?;
                            authmsg::write_sasl_response(&mut out, &reply);
                        }
                        AuthRequest::SaslFinal(data) => {
                            let client = scram.take().ok_or_else(|| {
                                ServerError::Protocol("unexpected SASLFinal".into())
                            })?;
                            match client {
                                Sasl::Password(k, _) | Sasl::Keys(k) => {
                                    k.handle_server_final(data).map_err(|e| e.to_string())
                                }
                            }
                            .map_err(ServerError::Protocol)?;
                            continue;
                        }
                        other => {
                            return Err(ServerError::Protocol(format!(
                                "unsupported authentication request {other:?}"
                            )))
                        }
                    }
                    self.send(&out).await?;
                }
                b'K' => {
                    let (pid, secret) = backend::parse_backend_key_data(b)
                        .map_err(|e| ServerError::Protocol(e.to_string()))?;
                    self.cancel = Arc::new(CancelTarget::new(peer.clone(), pid, secret.to_vec()));
                }
                b'S' => self.note_parameter(b)?,
                b'E' => {
                    let f = backend::parse_error_fields(b)
                        .map_err(|e| ServerError::Protocol(e.to_string()))?;
                    return Err(ServerError::Login {
                        code: f.code.to_string(),
                        message: f.message.to_string(),
                    });
                }
                b'Z' => return Ok(()),
                // NoticeResponse, NegotiateProtocolVersion: nothing to do.
                _ => {}
            }
        }
    }

    /// Records a ParameterStatus body. Returns the (name, value) seen.
    pub fn note_parameter(&mut self, body: &[u8]) -> Result<(), ServerError> {
        let (k, v) = backend::parse_parameter_status(body)
            .map_err(|e| ServerError::Protocol(e.to_string()))?;
        if k == "in_hot_standby" {
            self.in_hot_standby = Some(v == "on");
        }
        self.params.set(k, v, true);
        Ok(())
    }

    /// Reads one whole frame (header included) from the server.
    pub(crate) async fn next_frame(&mut self) -> Result<BytesMut, ServerError> {
        loop {
            if self.buf.len() >= HEADER_LEN {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                if len < 4 || len as usize > MAX_INTERNAL_FRAME {
                    return Err(ServerError::Protocol(format!("bad frame length {len}")));
                }
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    return Ok(self.buf.split_to(total));
                }
                let have = self.buf.len();
                self.buf.reserve(total - have);
            }
            let c = &mut *self.0;
            if c.stream.read_buf(&mut c.buf).await? == 0 {
                return Err(ServerError::Io("server closed the connection".into()));
            }
        }
    }

    /// Drops any leftover bytes and marks the parameter view unknown after
    /// a reset query.
    pub fn after_reset(&mut self) {
        self.params.forget_unreported();
        // DISCARD ALL (the usual reset) deallocates every statement.
        self.statements.clear();
        self.info.set_prepared(0);
        self.synced_fp = 0;
    }

    /// Sends Terminate; used when closing a healthy connection.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::with_capacity(5);
        frontend::write_terminate(&mut out);
        let _ = tokio::time::timeout(Duration::from_millis(200), self.send(&out)).await;
    }

    /// Discards `n` consumed bytes of the read buffer.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }
}

/// The two ways Causeway can answer a server's SCRAM challenge: keys
/// derived from the password (see scram_keys.rs), or keys recovered from
/// the client's own proof.
enum Sasl {
    Password(ScramPassthrough, String),
    Keys(ScramPassthrough),
}

fn need_password(login: &Login) -> Result<&str, ServerError> {
    login.password.as_deref().ok_or_else(|| ServerError::Login {
        code: causeway_protocol::sqlstate::INVALID_PASSWORD.into(),
        message: format!(
            "server asks for a password for user \"{}\" and Causeway has none (set it in auth_file or the database entry)",
            login.user
        ),
    })
}

fn is_md5_hash(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}
