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
mod keywords;
mod lease;
mod local;
mod local_ext;
mod login;
mod params;
mod park;
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

use crate::app::{Admitted, App};
use crate::cancel::ClientKey;
use crate::clients::Registered;
use crate::databases::Database;
use crate::recycled::Recycled;

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

impl State {
    /// Why the session closed ("" for a state that is not Closed).
    fn reason(self) -> &'static str {
        match self {
            State::Closed(reason) => reason,
            State::Idle | State::Active(_) => "",
        }
    }
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
    /// When the read began (reads only).
    started: Option<std::time::Instant>,
}

struct Session {
    /// What SHOW CLIENTS reports; KILL reaches the session through it.
    info: Registered,
    /// The app, with the client's places in max_client_conn and among its
    /// user's clients (freed when the session ends); holds the user's name.
    app: Admitted,
    cfg: Arc<Config>,
    client: Client,
    db: Arc<Database>,
    mode: PoolMode,
    /// What the client believes its session parameters are.
    params: ParamSet,
    key: ClientKey,
    /// Pool handles by server index, looked up once.
    pools: Vec<Option<Pool>>,
    /// The session's timer, made when first needed (an idle client with
    /// no timeout never needs one).
    timer: Option<Pin<Box<Sleep>>>,
    /// Units are classified and reads may go to replicas (transaction or
    /// statement mode on a database with replicas).
    split: bool,
    classifier: Arc<Classifier>,
    /// `SET causeway.route`.
    route: RouteOverride,
    /// The replica of the last read (`sticky_reads`); 16 bits pack beside
    /// `mode`, `split` and `route`.
    sticky: Option<u16>,
    retry: Retry,
    /// Read-your-writes state (boxed once there is any).
    ryw: consistency::LazyRyw,
    /// Named prepared statements (lent to the flow while attached). Made
    /// on first use (see [`Session::prep_made`]): a client that never
    /// runs anything holds none.
    prep: Option<Box<prepared::Prep>>,
    /// The client's startup parameters (ignored ones and `causeway.*`
    /// left out): what RESET restores.
    startup: Box<[(Box<str>, Box<str>)]>,
    /// Transaction mode: pinned to its server by session state (state.rs).
    pin: Option<causeway_pool::PinGuard>,
    /// Statements and portals that are Causeway commands.
    local_ext: local_ext::Lazy,
    /// What few sessions hold, boxed when there is any (see [`Rare`]).
    rare: Option<Box<Rare>>,
}

/// The parts of a session most clients never have, in one box made when
/// the first is needed: an idle trust-auth client in transaction mode
/// holds none.
#[derive(Default)]
struct Rare {
    /// What the client proved at login (reused towards servers; see
    /// [`Session::creds`]).
    creds: Option<Credentials>,
    /// Session mode: the server acquired for the welcome, until the first
    /// request attaches it.
    welcomed: Option<(ServerConn, Pool)>,
    /// Draining and idle: when the client is closed if it sends nothing
    /// before (see `Session::leave_if_due`).
    drain_grace_end: Option<tokio::time::Instant>,
}

/// Draining: how long an idle client may stay silent before it is closed.
/// A busy client sends its next transaction well within this and is
/// closed right behind that transaction's ReadyForQuery, which it cannot
/// race; an idle one is closed when it is least likely to be sending.
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// A session's timer, unarmed (reset to each deadline as it is needed).
fn new_timer() -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep(Duration::from_secs(3600)))
}

/// A logged-in client's session, from the welcome to close.
///
/// Not itself async: the session is built on the heap and the task holds
/// only the loop's future, not a second copy of the arguments.
pub(crate) fn run(
    app: Arc<App>,
    client: Client,
    mut l: Box<login::LoggedIn>,
) -> impl std::future::Future<Output = ()> + Send {
    let cfg = app.config();
    let app_name = l.params.get("application_name").unwrap_or("").to_string();
    let registered = app.clients.register(
        u64::from(l.key.id),
        l._user_permit.user(),
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
    let ryw = consistency::LazyRyw::new(cfg.consistency_for(&l.db.cfg(), &l.user));
    // Kept for the whole session: no spare room.
    let startup = l
        .startup
        .into_iter()
        .filter(|(k, _)| !k.to_ascii_lowercase().starts_with("causeway."))
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect();
    let rare = (l.creds.password.is_some() || l.creds.scram_keys.is_some()).then(|| {
        Box::new(Rare {
            creds: Some(std::mem::take(&mut l.creds)),
            ..Rare::default()
        })
    });
    drop(app);
    Box::new(Session {
        pin: None,
        startup,
        prep: None,
        local_ext: Default::default(),
        rare,
        ryw,
        split,
        classifier,
        route: RouteOverride::Auto,
        sticky: None,
        retry: Retry::default(),
        info: registered,
        app: Admitted::new(l._client_permit, l._user_permit),
        cfg,
        client,
        db: l.db,
        mode: l.mode,
        // Most clients log in with the same parameters: one buffer.
        params: l.params.shared(),
        key: l.key,
        pools: l.pools,
        timer: None,
    })
    .run()
}

impl Session {
    async fn run(mut self: Box<Self>) {
        if let Err(e) = self.startup_options() {
            let code = causeway_protocol::sqlstate::INVALID_PARAMETER_VALUE;
            Box::pin(self.client.fatal(code, &e)).await;
            return;
        }
        // The task of an idle client holds only this loop and the idle
        // wait: a unit of work (plan to release, with its server
        // connection and flow) runs in a block of its own, given back to
        // the thread's free list when the session is idle again.
        // Only a reason is kept across the awaits: a State is as large as
        // an attachment.
        let welcomed = match self.mode {
            PoolMode::Session => Box::pin(self.welcome_session())
                .await
                .map_err(State::reason),
            _ => Ok(()),
        };
        match welcomed {
            Err(reason) => self.closed(reason),
            Ok(()) => {
                // A client that has not spoken yet waits parked (park.rs):
                // the login's task ends, and the session gets one when
                // the client sends something.
                self.info.info.request_park();
                self.serve(None).await
            }
        }
    }

    /// From the idle wait (`resumed`: after parking, see park.rs) until
    /// the session closes or parks.
    async fn serve(mut self: Box<Self>, mut resumed: Option<park::Resume>) {
        let reason = loop {
            let tag = match self.idle(resumed.take()).await {
                Ok(tag) => tag,
                Err(idle::Left::Closed(reason)) => break reason,
                Err(idle::Left::Park(due)) => match park::park(self, due) {
                    Ok(()) => return,
                    Err((session, resume)) => {
                        self = session;
                        resumed = Some(resume);
                        continue;
                    }
                },
            };
            if let Some(reason) = Recycled::new_with(|| self.work(tag)).await {
                break reason;
            }
        };
        self.closed(reason);
    }

    /// The session ends.
    fn closed(&mut self, reason: &'static str) {
        self.release_welcomed();
        if self.cfg.log_disconnections {
            tracing::info!(client = %self.client.peer, database = %self.db.name, user = %self.user(), reason, "client closed");
        }
    }
}

impl Session {
    /// Named prepared statements are tracked (transaction or statement
    /// mode, `max_prepared_statements` > 0).
    fn tracks_prepared(&self) -> bool {
        self.mode != PoolMode::Session && self.cfg.max_prepared_statements > 0
    }

    /// The client's prepared statements, made empty on first use. Only
    /// while idle: an attachment holds them otherwise.
    fn prep_made(&mut self) -> &mut prepared::Prep {
        let (on, cap) = (self.tracks_prepared(), self.cfg.max_prepared_statements);
        let statements = &self.db.statements;
        self.prep.get_or_insert_with(|| {
            Box::new(prepared::Prep::new(on, cap as usize, statements.clone()))
        })
    }

    /// What the client proved at login (nothing, for trust).
    fn creds(&self) -> &Credentials {
        static NONE: Credentials = Credentials {
            password: None,
            scram_keys: None,
        };
        self.rare
            .as_deref()
            .and_then(|r| r.creds.as_ref())
            .unwrap_or(&NONE)
    }

    /// What few sessions hold, made on first use.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// The user it logged in as.
    fn user(&self) -> &str {
        self.app.user()
    }

    /// The session's timer, made when first needed.
    fn timer(&mut self) -> &mut Pin<Box<Sleep>> {
        self.timer.get_or_insert_with(new_timer)
    }

    /// One unit of work, from the request at the front of the client
    /// buffer until the session is idle again (None) or closed (why).
    async fn work(&mut self, tag: u8) -> Option<&'static str> {
        let mut state = self.attach(tag).await;
        while let State::Active(att) = state {
            state = self.active(att).await;
        }
        match state {
            State::Closed(reason) => Some(reason),
            State::Idle | State::Active(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the value a function returns, without running it.
    fn returned_size<A, F>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_idle_client_is_small() {
        // The task of every connected client is this future: the login
        // and then the session run in boxes of their own (tokio allocates
        // a task 128-byte aligned: at 24 bytes the task is one 128-byte
        // block; this future was ~13 KB, then 328 bytes in a 512-byte task).
        let task = std::mem::size_of::<crate::connection::Serve>();
        assert!(task <= 32, "connection::serve future is {task} bytes");
        // An idle client has no task: it waits parked, in an Arc'd entry
        // of one 48-byte block beside its Session (park.rs).
        let parked = std::mem::size_of::<park::Parked>();
        assert!(parked <= 32, "Parked is {parked} bytes");
        // The session's loop while it has a task: the idle wait and a
        // reason. A unit of work and its attachment live in their own
        // allocation while they run. The first run adds the welcome.
        let serve = returned_size(|s: Box<Session>| s.serve(None));
        assert!(serve <= 112, "the session's loop future is {serve} bytes");
        let run = returned_size(Session::run);
        assert!(run <= 144, "the session's future is {run} bytes");
        // Every connected client holds one, in one 384-byte block
        // (jemalloc's classes: 320, 384, 448): what few clients use (local
        // extended-protocol commands, credentials, prepared statements,
        // read-your-writes state, a timer) is boxed when first needed.
        let session = std::mem::size_of::<Session>();
        assert!(session <= 384, "Session is {session} bytes");
        // With its Arc header, one 224-byte block (user and database
        // names, and the peer address, are shared, not copied per client).
        let info = std::mem::size_of::<crate::clients::ClientInfo>();
        assert!(info <= 208, "ClientInfo is {info} bytes");
    }
}
