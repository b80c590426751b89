//! Startup, Authenticating and the welcome: everything before Idle.

use std::sync::Arc;

use causeway_config::{Config, PoolMode};
use causeway_pool::{ParamSet, Pool};
use causeway_protocol::{backend, sqlstate};

use super::access::{self, Method};
use super::startup::{self, StartupInfo};
use super::{auth, auth_query, params, primary, Credentials};
use crate::admin;
use crate::app::{App, ClientPermit, UserPermit};
use crate::cancel::ClientKey;
use crate::client::Client;
use crate::databases::Database;
use crate::secrets::Secrets;

/// What a successful login established.
pub(crate) struct LoggedIn {
    pub _user_permit: UserPermit,
    /// Its place in max_client_conn.
    pub _client_permit: ClientPermit,
    pub creds: Credentials,
    pub db: Arc<Database>,
    pub user: String,
    pub mode: PoolMode,
    pub params: ParamSet,
    pub key: ClientKey,
    pub pools: Vec<Option<Pool>>,
    /// The client's startup parameters, in order.
    pub startup: Vec<(String, String)>,
}

/// Where a successful login leads.
pub(crate) enum Login {
    Session(Box<LoggedIn>),
    /// The admin console, with its place in max_client_conn (+ reserve).
    Admin(admin::Role, ClientPermit),
}

/// Startup and Authenticating, then the welcome. None: refused or gone.
///
/// Nothing about users or databases is told before authentication: an
/// unknown database, a user who may not use the admin console, a user
/// whose secret cannot do the method all go through the same exchange as
/// anyone else and are refused after it.
pub(crate) async fn login(app: &Arc<App>, cfg: &Arc<Config>, client: &mut Client) -> Option<Login> {
    let info: StartupInfo = match startup::negotiate(client, app).await {
        startup::Outcome::Login(info) => info,
        _ => return None,
    };
    let admin_db =
        admin::is_admin_db(&info.database) && !cfg.databases.contains_key(&info.database);
    // As PgBouncer: a full max_client_conn is told at once (it says
    // nothing about users); the place itself is taken after authentication.
    if app.client_count() >= app.max_clients(admin_db) {
        refuse_full(app, client).await;
        return None;
    }
    if admin_db {
        return admin_login(app, cfg, client, &info).await;
    }
    let secrets = app.secrets();
    let db = app.databases.get(&info.database, cfg, &secrets);
    let creds = authenticate(app, cfg, client, db.as_ref(), &secrets, &info).await?;
    let admitted = admit(app, cfg, client, db, &info).await?;
    welcome(app, cfg, client, &secrets, admitted, creds, info)
        .await
        .map(|l| Login::Session(Box::new(l)))
}

/// Authenticating: the method hba/auth_type asks for, against the
/// auth_file's secret or auth_query's. None: refused (told) or gone.
async fn authenticate(
    app: &Arc<App>,
    cfg: &Arc<Config>,
    client: &mut Client,
    db: Option<&Arc<Database>>,
    secrets: &Secrets,
    info: &StartupInfo,
) -> Option<Credentials> {
    let access = access::decide(app, cfg, client, &info.database, &info.user)
        .await
        .ok()?;
    // The auth_file first; auth_query for users it does not list (trust
    // too: the user must exist, as in PgBouncer).
    let needs_secret = matches!(
        access.method,
        Method::Md5 | Method::ScramSha256 | Method::Password | Method::Trust
    );
    let looked_up = match (db, secrets.get(&info.user)) {
        (Some(db), None) if needs_secret => auth_query::lookup(app, cfg, db, &info.user).await,
        _ => None,
    };
    let secret = secrets.get(&info.user).or(looked_up.as_ref());
    match auth::authenticate(client, access, &info.user, secret).await {
        auth::Outcome::Ok(creds) => Some(creds),
        auth::Outcome::Failed => None,
    }
}

/// An authenticated client's database, and its places among the clients.
struct Admitted {
    db: Arc<Database>,
    client_permit: ClientPermit,
    user_permit: UserPermit,
}

/// The database exists and is enabled, and there is room for the client
/// (max_client_conn, max_user_client_connections). None: refused (told).
async fn admit(
    app: &Arc<App>,
    cfg: &Config,
    client: &mut Client,
    db: Option<Arc<Database>>,
    info: &StartupInfo,
) -> Option<Admitted> {
    let Some(db) = db else {
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
    if db.disabled.load(std::sync::atomic::Ordering::Relaxed) {
        client
            .fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                &format!("database \"{}\" is disabled (DISABLE)", db.name),
            )
            .await;
        return None;
    }
    let Some(client_permit) = app.admit_client(false) else {
        refuse_full(app, client).await;
        return None;
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
    Some(Admitted {
        db,
        client_permit,
        user_permit,
    })
}

/// The welcome: the primary's parameters (merged with the client's), a
/// cancel key, ReadyForQuery (session mode: once its server is attached,
/// welcome.rs). None: no primary (told) or the client left.
async fn welcome(
    app: &Arc<App>,
    cfg: &Arc<Config>,
    client: &mut Client,
    secrets: &Secrets,
    admitted: Admitted,
    creds: Credentials,
    info: StartupInfo,
) -> Option<LoggedIn> {
    let Admitted {
        db,
        client_permit,
        user_permit,
    } = admitted;
    let mode = cfg.pool_mode_for(&db.cfg(), &info.user);
    let mut pools = vec![None; db.servers.len()];
    let (primary, pool, welcome) =
        match primary::find(app, &db, cfg, secrets, &info.user, &creds).await {
            Ok(w) => w,
            Err(e) => {
                client.fatal(e.sqlstate(), &e.to_string()).await;
                return None;
            }
        };
    pools[primary] = Some(pool);
    let (params, report) = params::initial(&welcome, &info.params, cfg);
    let key = app.cancels.register(cfg.peer_id);
    if mode != PoolMode::Session {
        for (k, v) in &report {
            backend::write_parameter_status(&mut client.out, k, v);
        }
        backend::write_backend_key_data(&mut client.out, key.pid, &key.secret);
        backend::write_ready_for_query(&mut client.out, b'I');
        client.flush().await.ok()?;
    }
    if cfg.log_connections {
        tracing::info!(client = %client.peer, database = %info.database, user = %info.user, mode = mode.as_str(), "login");
    }
    Some(LoggedIn {
        _user_permit: user_permit,
        _client_permit: client_permit,
        creds,
        db,
        user: info.user,
        mode,
        params,
        key,
        pools,
        startup: info.params,
    })
}

/// The admin console: authenticated like anyone, then the role checked.
async fn admin_login(
    app: &Arc<App>,
    cfg: &Arc<Config>,
    client: &mut Client,
    info: &StartupInfo,
) -> Option<Login> {
    let secrets = app.secrets();
    let access = access::decide(app, cfg, client, &info.database, &info.user)
        .await
        .ok()?;
    let secret = secrets.get(&info.user);
    if let auth::Outcome::Failed = auth::authenticate(client, access, &info.user, secret).await {
        return None;
    }
    let Some(role) = admin::role_of(app, &info.user) else {
        client
            .fatal(
                sqlstate::INVALID_AUTHORIZATION,
                &format!(
                    "not allowed: \"{}\" is not in admin_users or stats_users",
                    info.user
                ),
            )
            .await;
        return None;
    };
    let Some(permit) = app.admit_client(true) else {
        refuse_full(app, client).await;
        return None;
    };
    Some(Login::Admin(role, permit))
}

/// max_client_conn reached (53300).
async fn refuse_full(app: &App, client: &mut Client) {
    if app.config().log_pooler_errors {
        tracing::warn!(client = %client.peer, "max_client_conn reached, refusing client");
    }
    client
        .fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            "no more connections allowed (max_client_conn)",
        )
        .await;
}
