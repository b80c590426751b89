//! The server whose parameters a new client is welcomed with: the primary.
//!
//! A configured role is only a hint. When Causeway starts after a failover
//! its configuration may still name the dead old primary; the monitor finds
//! the new one within a probe, so a login that cannot reach the hinted
//! primary waits for the monitor's topology (bounded by
//! `server_connect_timeout`) instead of failing.

use std::sync::Arc;
use std::time::Duration;

use causeway_config::Config;
use causeway_pool::{ParamSet, Pool, PoolError, ServerError};

use super::Credentials;
use crate::app::App;
use crate::databases::Database;
use crate::secrets::Secrets;

/// (server index, its pool, its parameters) of the primary.
pub(super) async fn find(
    app: &App,
    db: &Database,
    cfg: &Config,
    secrets: &Secrets,
    user: &str,
    creds: &Credentials,
) -> Result<(usize, Pool, Arc<ParamSet>), PoolError> {
    let limit = Duration::from_secs_f64(cfg.server_connect_timeout.max(0.0));
    let limit = if limit.is_zero() {
        Duration::from_secs(15)
    } else {
        limit
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut version = db.topo_version.subscribe();
    loop {
        version.borrow_and_update();
        let err = match db.topology().primary() {
            Some(p) => {
                let pool = app.databases.pool(db, user, p, cfg, secrets, creds);
                match pool.welcome().await {
                    Ok(w) => return Ok((p, pool, w)),
                    Err(e) => e,
                }
            }
            None => PoolError::Server(ServerError::Connect {
                addr: db.name.to_string(),
                reason: "no primary server is available".into(),
            }),
        };
        if db.monitor.is_none() || !worth_waiting(&err) {
            return Err(err);
        }
        // The monitor may know better soon: route again on its next view.
        if !matches!(
            tokio::time::timeout_at(deadline, version.changed()).await,
            Ok(Ok(()))
        ) {
            return Err(err);
        }
    }
}

/// The server is down, starting or stopping (another may be the primary
/// by now); not a refused login.
/// A connect failure held back for server_login_retry counts too: the
/// next login after a refused connect gets it at once.
pub(super) fn worth_waiting(e: &PoolError) -> bool {
    match e {
        PoolError::Server(e) | PoolError::LoginRetry(e) => match e {
            ServerError::Login { code, .. } => code.starts_with("57P"),
            ServerError::Connect { .. } | ServerError::Io(_) | ServerError::Timeout(_) => true,
            ServerError::Query { .. } | ServerError::Protocol(_) => false,
        },
        PoolError::WaitTimeout | PoolError::Closed => false,
    }
}
