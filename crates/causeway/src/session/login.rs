//! Startup, Authenticating and the welcome: everything before Idle.

use std::sync::Arc;

use causeway_config::{Config, PoolMode};
use causeway_pool::{ParamSet, Pool};
use causeway_protocol::{backend, sqlstate};

use super::access::{self, Method};
use super::client::Client;
use super::startup::{self, StartupInfo};
use super::{auth, auth_query, params, primary, Credentials};
use crate::admin;
use crate::app::{App, UserPermit};
use crate::cancel::ClientKey;
use crate::databases::Database;

/// What a successful login established.
pub(super) struct LoggedIn {
    pub _user_permit: UserPermit,
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
pub(super) enum Login {
    Session(Box<LoggedIn>),
    Admin(admin::Role),
}

/// Startup and Authenticating, then the welcome. None: refused or gone.
pub(super) async fn login(app: &Arc<App>, cfg: &Arc<Config>, client: &mut Client) -> Option<Login> {
    let info: StartupInfo = match startup::negotiate(client, app).await {
        startup::Outcome::Login(info) => info,
        _ => return None,
    };
    if admin::is_admin_db(&info.database) && !cfg.databases.contains_key(&info.database) {
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
        let secrets = app.secrets();
        let access = access::decide(app, cfg, client, &info.database, &info.user)
            .await
            .ok()?;
        return match auth::authenticate(client, access, &info.user, secrets.get(&info.user)).await {
            auth::Outcome::Ok(_) => Some(Login::Admin(role)),
            auth::Outcome::Failed => None,
        };
    }
    let Some(db) = app.databases.get(&info.database, cfg, &app.secrets()) else {
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
    let access = access::decide(app, cfg, client, &info.database, &info.user)
        .await
        .ok()?;
    // The auth_file first; auth_query for users it does not list (only
    // methods that check a password need one).
    let needs_secret = matches!(
        access.method,
        Method::Md5 | Method::ScramSha256 | Method::Password
    );
    let looked_up = match secrets.get(&info.user) {
        Some(_) => None,
        None if needs_secret => auth_query::lookup(app, cfg, &db, &info.user).await,
        None => None,
    };
    let secret = secrets.get(&info.user).or(looked_up.as_ref());
    if db.disabled.load(std::sync::atomic::Ordering::Relaxed) {
        client
            .fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                &format!("database \"{}\" is disabled (DISABLE)", db.name),
            )
            .await;
        return None;
    }
    let creds = match auth::authenticate(client, access, &info.user, secret).await {
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
    let (primary, pool, welcome) =
        match primary::find(app, &db, cfg, &secrets, &info.user, &creds).await {
            Ok(w) => w,
            Err(e) => {
                client.fatal(e.sqlstate(), &e.to_string()).await;
                return None;
            }
        };
    pools[primary] = Some(pool);
    let (params, report) = params::initial(&welcome, &info.params, cfg);
    let key = app.cancels.register();
    if mode != PoolMode::Session {
        // Session mode is welcomed once its server is attached (welcome.rs).
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
    Some(Login::Session(Box::new(LoggedIn {
        _user_permit: user_permit,
        creds,
        db,
        user: info.user,
        mode,
        params,
        key,
        pools,
        startup: info.params,
    })))
}
