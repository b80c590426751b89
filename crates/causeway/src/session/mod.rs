//! A client session as a small state machine:
//!
//! ```text
//! Startup -> Authenticating -> (welcome) -> Idle <-> Active -> Closed
//! ```
//!
//! `Idle`: no server attached; the next client message is routed and a
//! server connection acquired. `Active`: a server is attached and bytes
//! flow both ways (see [`pump`]); in transaction/statement mode the server
//! goes back to the pool at the end of the transaction/statement, in
//! session mode when the client leaves.

mod auth;
mod auth_query;
mod client;
mod params;
mod pump;
mod startup;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{Config, PoolMode};
use causeway_pool::{ParamSet, Pool, ServerConn};
use causeway_protocol::{backend, sqlstate, HEADER_LEN};
use causeway_routing::{Decision, Request, SessionView};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::app::{App, Phase, UserPermit};
use crate::cancel::ClientKey;
use crate::databases::Database;
use client::Client;
use pump::{End, Flow, Timeouts};
use startup::StartupInfo;

pub use auth::Credentials;

/// Named states of a logged-in session.
enum State {
    Idle,
    Active(Box<Attached>),
    Closed(&'static str),
}

/// A server connection lent to this client.
struct Attached {
    conn: ServerConn,
    pool: Pool,
    flow: Flow,
}

struct Session {
    app: Arc<App>,
    cfg: Arc<Config>,
    client: Client,
    db: Arc<Database>,
    user: String,
    /// What the client proved at login (reused towards servers).
    creds: Credentials,
    _user_permit: UserPermit,
    mode: PoolMode,
    /// What the client believes its session parameters are.
    params: ParamSet,
    key: ClientKey,
    /// Pool handles by server index, looked up once.
    pools: Vec<Option<Pool>>,
    timer: Pin<Box<Sleep>>,
    phase: watch::Receiver<Phase>,
}

/// Serves one client connection from accept to close.
pub async fn serve(app: Arc<App>, stream: TcpStream, peer: SocketAddr) {
    let cfg = app.config();
    let _ = stream.set_nodelay(true);
    let mut client = Client::new(stream, peer, 16 * 1024);
    let Some(_permit) = app.admit_client() else {
        if cfg.log_pooler_errors {
            tracing::warn!(client = %peer, "max_client_conn reached, refusing client");
        }
        client
            .fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "no more connections allowed (max_client_conn)",
            )
            .await;
        return;
    };
    let login = login(&app, &cfg, &mut client);
    // The login future borrows the client; it ends before the session takes it.
    let session = match secs(cfg.client_login_timeout) {
        Some(t) => match tokio::time::timeout(t, login).await {
            Ok(s) => s,
            Err(_) => {
                client
                    .fatal(sqlstate::PROTOCOL_VIOLATION, "client_login_timeout")
                    .await;
                return;
            }
        },
        None => login.await,
    };
    let Some(l) = session else { return };
    Session {
        phase: app.watch_phase(),
        app,
        cfg,
        client,
        db: l.db,
        creds: l.creds,
        _user_permit: l._user_permit,
        user: l.user,
        mode: l.mode,
        params: l.params,
        key: l.key,
        pools: l.pools,
        timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
    }
    .run()
    .await;
}

/// What a successful login established.
struct LoggedIn {
    _user_permit: UserPermit,
    creds: Credentials,
    db: Arc<Database>,
    user: String,
    mode: PoolMode,
    params: ParamSet,
    key: ClientKey,
    pools: Vec<Option<Pool>>,
}

/// Startup and Authenticating, then the welcome. None: refused or gone.
async fn login(app: &Arc<App>, cfg: &Arc<Config>, client: &mut Client) -> Option<LoggedIn> {
    let info: StartupInfo = match startup::negotiate(client, app).await {
        startup::Outcome::Login(info) => info,
        _ => return None,
    };
    let Some(db) = app.databases.get(&info.database, cfg) else {
        if cfg.log_pooler_errors {
            tracing::info!(client = %client.peer, database = %info.database, "unknown database");
        }
        client
            .fatal(
                sqlstate::INVALID_CATALOG_NAME,
                &format!("no such database: {}", info.database),
            )
            .await;
        return None;
    };
    let secrets = app.secrets();
    // The auth_file first; auth_query for users it does not list.
    let looked_up = match secrets.get(&info.user) {
        Some(_) => None,
        None if cfg.auth_type != causeway_config::AuthType::Trust => {
            auth_query::lookup(app, cfg, &db, &info.user).await
        }
        None => None,
    };
    let secret = secrets.get(&info.user).or(looked_up.as_ref());
    let creds = match auth::authenticate(client, cfg.auth_type, &info.user, secret).await {
        auth::Outcome::Ok(creds) => creds,
        auth::Outcome::Failed => return None,
    };
    let Some(user_permit) = app.admit_user(&info.user) else {
        client
            .fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                &format!(
                    "too many connections for user \"{}\" (max_user_client_connections)",
                    info.user
                ),
            )
            .await;
        return None;
    };
    let mode = cfg.pool_mode_for(&db.cfg, &info.user);
    let mut pools = vec![None; db.servers.len()];
    let primary = db.topology().primary().unwrap_or(0);
    let pool = app
        .databases
        .pool(&db, &info.user, primary, cfg, &secrets, &creds);
    let welcome = match pool.welcome().await {
        Ok(w) => w,
        Err(e) => {
            client.fatal(e.sqlstate(), &e.to_string()).await;
            return None;
        }
    };
    pools[primary] = Some(pool);
    let (params, report) = params::initial(&welcome, &info.params, cfg);
    for (k, v) in &report {
        backend::write_parameter_status(&mut client.out, k, v);
    }
    let key = app.cancels.register();
    backend::write_backend_key_data(&mut client.out, key.pid, &key.secret);
    backend::write_ready_for_query(&mut client.out, b'I');
    client.flush().await.ok()?;
    if cfg.log_connections {
        tracing::info!(client = %client.peer, database = %info.database, user = %info.user, mode = mode.as_str(), "login");
    }
    Some(LoggedIn {
        _user_permit: user_permit,
        creds,
        db,
        user: info.user,
        mode,
        params,
        key,
        pools,
    })
}

impl Session {
    async fn run(mut self) {
        let mut state = State::Idle;
        let reason = loop {
            state = match state {
                State::Idle => self.idle().await,
                State::Active(att) => self.active(att).await,
                State::Closed(reason) => break reason,
            };
        };
        if self.cfg.log_disconnections {
            tracing::info!(client = %self.client.peer, database = %self.db.name, user = %self.user, reason, "client closed");
        }
    }

    /// No server attached: wait for the next request and route it.
    async fn idle(&mut self) -> State {
        loop {
            let phase = *self.phase.borrow();
            match phase {
                Phase::Draining | Phase::Stopping => {
                    self.client
                        .fatal(sqlstate::ADMIN_SHUTDOWN, "pooler is shutting down")
                        .await;
                    return State::Closed("shutdown");
                }
                Phase::Running | Phase::NoAccept => {}
            }
            if self.client.buf.len() >= HEADER_LEN {
                let tag = self.client.buf[0];
                if tag == b'X' {
                    return State::Closed("client terminated");
                }
                let len = i32::from_be_bytes([
                    self.client.buf[1],
                    self.client.buf[2],
                    self.client.buf[3],
                    self.client.buf[4],
                ]);
                if len < 4 || len as u64 > u64::from(self.cfg.max_packet_size) {
                    self.client
                        .fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            &format!(
                                "invalid message length {len} (max_packet_size {})",
                                self.cfg.max_packet_size
                            ),
                        )
                        .await;
                    return State::Closed("bad packet");
                }
                return self.attach(tag).await;
            }
            let idle_timeout = secs(self.cfg.client_idle_timeout);
            tokio::select! {
                r = self.client.read_more() => match r {
                    Ok(0) | Err(_) => return State::Closed("client closed connection"),
                    Ok(_) => {}
                },
                _ = sleep_or_forever(idle_timeout) => {
                    self.client.fatal(sqlstate::IDLE_SESSION_TIMEOUT, "client_idle_timeout").await;
                    return State::Closed("client_idle_timeout");
                }
                _ = self.phase.changed() => {}
            }
        }
    }

    fn pool(&mut self, server: usize) -> Pool {
        if let Some(p) = &self.pools[server] {
            return p.clone();
        }
        let p = self.app.databases.pool(
            &self.db,
            &self.user,
            server,
            &self.cfg,
            &self.app.secrets(),
            &self.creds,
        );
        self.pools[server] = Some(p.clone());
        p
    }

    /// Routes the request at the front of the client buffer and attaches a server.
    async fn attach(&mut self, tag: u8) -> State {
        let topo = self.db.topology();
        let server =
            match self
                .app
                .policy
                .route(&Request { tag, sql: None }, &SessionView::default(), &topo)
            {
                Decision::Server { index, .. } => index,
                Decision::Refuse { sqlstate, message } => {
                    self.client.fatal(sqlstate, &message).await;
                    return State::Closed("no server");
                }
            };
        let pool = self.pool(server);
        // Keep reading while waiting so a client that gives up is noticed.
        let acquired = {
            let acquire = pool.acquire();
            tokio::pin!(acquire);
            loop {
                tokio::select! {
                    r = &mut acquire => break r,
                    r = self.client.read_more() => {
                        if matches!(r, Ok(0) | Err(_)) {
                            return State::Closed("client closed while waiting");
                        }
                    }
                }
            }
        };
        let mut conn = match acquired {
            Ok(c) => c,
            Err(e) => {
                if self.cfg.log_pooler_errors {
                    tracing::warn!(client = %self.client.peer, database = %self.db.name, error = %e, "no server connection");
                }
                self.client.fatal(e.sqlstate(), &e.to_string()).await;
                return State::Closed("no server connection");
            }
        };
        match params::sync(&mut self.params, &mut conn).await {
            Ok(news) => {
                for (k, v) in news {
                    backend::write_parameter_status(&mut self.client.out, &k, &v);
                }
            }
            Err(e) => {
                self.client
                    .fatal(
                        e.sqlstate(),
                        &format!("could not apply session parameters: {e}"),
                    )
                    .await;
                return State::Closed("parameter sync failed");
            }
        }
        if self.client.flush().await.is_err() {
            pool.release(conn);
            return State::Closed("client closed connection");
        }
        self.key.slot.attach(&conn.cancel);
        let timeouts = Timeouts {
            query: secs(self.cfg.query_timeout),
            idle_transaction: secs(self.cfg.idle_transaction_timeout),
            client_idle: secs(self.cfg.client_idle_timeout),
        };
        let flow = Flow::new(self.mode, self.cfg.max_packet_size as usize, timeouts);
        State::Active(Box::new(Attached { conn, pool, flow }))
    }

    async fn active(&mut self, mut att: Box<Attached>) -> State {
        let end = loop {
            let Attached { conn, flow, .. } = &mut *att;
            tokio::select! {
                end = flow.run(&mut self.client, conn, &mut self.params, &mut self.timer) => break end,
                _ = self.phase.changed() => {
                    let phase = *self.phase.borrow();
                    if phase == Phase::Stopping || (phase == Phase::Draining && flow.server_idle() && flow.server_ready() == 0) {
                        self.detach(att, false).await;
                        self.client.fatal(sqlstate::ADMIN_SHUTDOWN, "pooler is shutting down").await;
                        return State::Closed("shutdown");
                    }
                }
            }
        };
        match end {
            End::Release => {
                self.detach(att, true).await;
                State::Idle
            }
            End::ClientGone => {
                let clean = att.flow.server_idle();
                self.detach(att, clean).await;
                State::Closed("client closed connection")
            }
            End::ServerGone { clean } => {
                if clean {
                    // Whatever complete messages the server sent still reach the client.
                    let ready = att.flow.server_ready();
                    let pending = att.conn.buf.split_to(ready);
                    self.client.out.extend_from_slice(&pending);
                    self.client
                        .fatal(sqlstate::CONNECTION_FAILURE, "server connection lost; the current transaction (if any) did not commit")
                        .await;
                }
                tracing::warn!(client = %self.client.peer, database = %self.db.name, "server connection lost");
                self.detach(att, false).await;
                State::Closed("server connection lost")
            }
            End::ClientProtocol(e) => {
                self.detach(att, false).await;
                self.client
                    .fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid message from client: {e}"),
                    )
                    .await;
                State::Closed("client protocol violation")
            }
            End::ServerProtocol(e) => {
                tracing::error!(error = %e, "invalid message from server");
                self.detach(att, false).await;
                self.client
                    .fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid message from server: {e}"),
                    )
                    .await;
                State::Closed("server protocol violation")
            }
            End::Timeout(code, what) => {
                let clean = att.flow.server_idle();
                self.detach(att, clean).await;
                self.client.fatal(code, what).await;
                State::Closed(what)
            }
            End::StatementModeTxn => {
                self.detach(att, false).await;
                self.client
                    .fatal(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "transaction blocks not allowed in statement pooling mode",
                    )
                    .await;
                State::Closed("transaction in statement mode")
            }
        }
    }

    /// Ends an attachment: the cancel key stops pointing at the server
    /// first, then the server goes back to the pool (reset in session mode)
    /// or, if it may hold state we cannot vouch for, is closed.
    async fn detach(&mut self, att: Box<Attached>, reusable: bool) {
        self.key.slot.detach();
        let Attached { mut conn, pool, .. } = *att;
        if !reusable {
            return; // dropping closes it and frees its slot
        }
        let reset = self.mode == PoolMode::Session || self.cfg.server_reset_query_always;
        if reset && !self.cfg.server_reset_query.is_empty() {
            if conn
                .simple_query(&self.cfg.server_reset_query)
                .await
                .is_err()
            {
                return;
            }
            conn.after_reset();
        }
        pool.release(conn);
    }
}

/// PgBouncer's convention: 0 = off.
fn secs(v: f64) -> Option<Duration> {
    (v > 0.0).then(|| Duration::from_secs_f64(v))
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
