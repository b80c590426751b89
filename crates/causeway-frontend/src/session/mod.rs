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

mod access;
mod active;
mod attach;
mod auth;
mod auth_query;
mod consistency;
mod database_ddl;
mod decide;
mod encoding;
mod idle;
mod lease;
mod local;
mod local_ext;
mod login;
mod params;
mod plan;
mod prepared;
mod primary;
mod pump;
mod refuse;
mod release;
mod rerun;
mod reset;
mod ryw_wait;
mod secure;
mod sql_prepared;
mod sqlwords;
mod startup;
mod state;
mod verifiers;
mod welcome;

use causeway_config::secs;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{Config, PoolMode};
use causeway_pool::{ParamSet, Pool, ServerConn};
use causeway_routing::{Classifier, RouteOverride};
use tokio::time::Sleep;

use crate::app::{App, ClientPermit, UserPermit};
use crate::cancel::ClientKey;
use crate::clients::Registered;
use crate::databases::Database;

use pump::Flow;
use rerun::Retry;

pub(crate) use crate::client::Client;
pub use crate::credentials::Credentials;
pub(crate) use login::{login, Login};
pub(crate) use refuse::refuse_no_slot;

/// What a client closed by a shutdown is told (FATAL 57P01).
const SHUTDOWN_MESSAGE: &str = "pooler is shutting down";

/// Named states of a logged-in session. `Active` is boxed: one allocation
/// per transaction costs far less than moving the attachment (~800 bytes)
/// through every `Result<_, State>` of a unit of work (memcpy was ~5,500
/// of ~23,000 instructions per transaction, by callgrind).
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
    /// Index of the server in the database's list.
    server: usize,
    /// Counted in the server's load (a routed read) since `started`.
    read: bool,
    /// May have written on the primary: take a read-your-writes token
    /// when it ends.
    wrote: bool,
    started: std::time::Instant,
}

struct Session {
    /// What SHOW CLIENTS reports; KILL reaches the session through it.
    info: Registered,
    app: Arc<App>,
    cfg: Arc<Config>,
    client: Client,
    db: Arc<Database>,
    user: String,
    /// What the client proved at login (reused towards servers).
    creds: Credentials,
    _user_permit: UserPermit,
    /// Its place in max_client_conn.
    _client_permit: ClientPermit,
    mode: PoolMode,
    /// What the client believes its session parameters are.
    params: ParamSet,
    key: ClientKey,
    /// Pool handles by server index, looked up once.
    pools: Vec<Option<Pool>>,
    timer: Pin<Box<Sleep>>,
    /// Units are classified and reads may go to replicas (transaction or
    /// statement mode on a database with replicas).
    split: bool,
    classifier: Arc<Classifier>,
    /// `SET causeway.route`.
    route: RouteOverride,
    /// The replica of the last read (`sticky_reads`).
    sticky: Option<usize>,
    retry: Retry,
    /// Read-your-writes state.
    ryw: consistency::Ryw,
    /// Named prepared statements (lent to the flow while attached).
    prep: Option<Box<prepared::Prep>>,
    /// The client's startup parameters (ignored ones and `causeway.*`
    /// left out): what RESET restores.
    startup: Vec<(String, String)>,
    /// Session mode: the server acquired for the welcome, until the first
    /// request attaches it.
    welcomed: Option<(ServerConn, Pool)>,
    /// Lent to each attachment's flow (see database_ddl.rs).
    close_idle: pump::CloseIdle,
    /// Transaction mode: pinned to its server by session state (state.rs).
    pin: Option<causeway_pool::PinGuard>,
    /// Statements and portals that are Causeway commands.
    local_ext: local_ext::LocalExt,
    /// Draining and idle: when the client is closed if it sends nothing
    /// before (see `Session::leave_if_due`).
    drain_grace_end: Option<tokio::time::Instant>,
}

/// Draining: how long an idle client may stay silent before it is closed.
/// A busy client sends its next transaction well within this and is
/// closed right behind that transaction's ReadyForQuery, which it cannot
/// race; an idle one is closed when it is least likely to be sending.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// A logged-in client's session, from the welcome to close.
pub(crate) async fn run(app: Arc<App>, client: Client, l: Box<login::LoggedIn>) {
    let cfg = app.config();
    let app_name = l.params.get("application_name").unwrap_or("").to_string();
    let registered = app.clients.register(
        l.key.id,
        &l.user,
        &l.db.name,
        crate::clients::Connection {
            addr: client.peer.clone(),
            local_addr: client.stream.local_addr(),
            tls: client.stream.tls_description(),
        },
        &app_name,
    );
    let split = l.db.splits() && l.mode != PoolMode::Session;
    let classifier = l.db.router().classifier.clone();
    let ryw = consistency::Ryw::new(cfg.consistency_for(&l.db.cfg(), &l.user));
    let prep = prepared::Prep::new(
        l.mode != PoolMode::Session && cfg.max_prepared_statements > 0,
        cfg.max_prepared_statements as usize,
        l.db.statements.clone(),
    );
    let startup = l
        .startup
        .into_iter()
        .filter(|(k, _)| !k.to_ascii_lowercase().starts_with("causeway."))
        .collect();
    let for_ddl = app.clone();
    Session {
        close_idle: Arc::new(move |name: &str| database_ddl::close_idle(&for_ddl, name)),
        pin: None,
        startup,
        welcomed: None,
        prep: Some(Box::new(prep)),
        local_ext: Default::default(),
        drain_grace_end: None,
        ryw,
        split,
        classifier,
        route: RouteOverride::Auto,
        sticky: None,
        retry: Retry::default(),
        info: registered,
        app,
        cfg,
        client,
        db: l.db,
        creds: l.creds,
        _user_permit: l._user_permit,
        _client_permit: l._client_permit,
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

impl Session {
    async fn run(mut self) {
        if let Err(e) = self.startup_options() {
            self.client
                .fatal(causeway_protocol::sqlstate::INVALID_PARAMETER_VALUE, &e)
                .await;
            return;
        }
        let mut state = State::Idle;
        if self.mode == PoolMode::Session {
            if let Err(closed) = self.welcome_session().await {
                state = closed;
            }
        }
        let reason = loop {
            state = match state {
                State::Idle => self.idle().await,
                State::Active(att) => self.active(att).await,
                State::Closed(reason) => break reason,
            };
        };
        self.release_welcomed();
        if self.cfg.log_disconnections {
            tracing::info!(client = %self.client.peer, database = %self.db.name, user = %self.user, reason, "client closed");
        }
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
