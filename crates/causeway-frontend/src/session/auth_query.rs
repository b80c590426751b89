//! PgBouncer's auth_query: the secret of a user not in the auth_file is
//! looked up on the database's primary, connected as `auth_user`.

use std::sync::Arc;

use causeway_config::Config;
use causeway_protocol::auth::Secret;
use causeway_protocol::frontend::quote_literal;

use super::Credentials;
use crate::app::App;
use crate::databases::Database;

/// The user's stored secret (md5 hash or SCRAM verifier), or None when
/// auth_query is off, the user does not exist or cannot log in.
pub async fn lookup(
    app: &Arc<App>,
    cfg: &Config,
    db: &Arc<Database>,
    user: &str,
) -> Option<Secret> {
    let auth_user = db
        .cfg()
        .auth_user
        .clone()
        .or_else(|| cfg.auth_user.clone())?;
    let db = match &cfg.auth_dbname {
        Some(name) => app.databases.get(name, cfg, &app.secrets())?,
        None => db.clone(),
    };
    let primary = db.topology().primary()?;
    let pool = app.databases.pool(
        &db,
        &auth_user,
        primary,
        cfg,
        &app.secrets(),
        &Credentials::default(),
    );
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(auth_user, error = %e, "auth_query: no server connection");
            return None;
        }
    };
    let mut user_literal = String::new();
    quote_literal(&mut user_literal, user);
    let sql = cfg.auth_query.replace("$1", &user_literal);
    // PgBouncer's shape: (user name, secret).
    let rows = conn.internal_query(&sql, Some(1)).await.map(|r| r.rows);
    pool.release(conn);
    match rows {
        Ok(rows) => rows
            .into_iter()
            .next()
            .flatten()
            .and_then(|s| Secret::parse(&s).ok()),
        Err(e) => {
            tracing::warn!(auth_user, error = %e, "auth_query failed");
            None
        }
    }
}
