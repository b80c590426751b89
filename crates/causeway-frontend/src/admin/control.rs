//! PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT, RELOAD,
//! WAIT_CLOSE, SHUTDOWN and SET, with PgBouncer's semantics.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::command::{Command, ShutdownMode};
use super::show_info::changeable;
use crate::app::{App, Phase};
use crate::databases::Database;

/// Runs a control command; Ok(tag) is the CommandComplete tag.
pub async fn run(app: &Arc<App>, cmd: Command) -> Result<&'static str, String> {
    match cmd {
        Command::Pause(db) => {
            pause(app, db.as_deref()).await?;
            Ok("PAUSE")
        }
        Command::Resume(db) => {
            resume(app, db.as_deref())?;
            Ok("RESUME")
        }
        Command::Disable(db) => {
            for d in select(app, Some(&db))? {
                d.disabled.store(true, Relaxed);
            }
            Ok("DISABLE")
        }
        Command::Enable(db) => {
            for d in select(app, Some(&db))? {
                d.disabled.store(false, Relaxed);
            }
            Ok("ENABLE")
        }
        Command::Reconnect(db) => {
            for d in select(app, db.as_deref())? {
                d.pools().iter().for_each(|p| p.reconnect());
            }
            Ok("RECONNECT")
        }
        Command::Kill(db) => {
            let dbs = select(app, db.as_deref())?;
            for d in &dbs {
                d.paused.send_replace(true);
                for c in app.clients.all().iter().filter(|c| c.database == d.name) {
                    c.kill();
                }
                d.pools().iter().for_each(|p| p.reconnect());
            }
            // As PgBouncer: the database stays paused until RESUME.
            Ok("KILL")
        }
        Command::KillClient(id) => {
            let c = app
                .clients
                .get(id)
                .ok_or_else(|| format!("client {id} not found"))?;
            c.kill();
            Ok("KILL_CLIENT")
        }
        Command::Reload => {
            app.reload()?;
            tracing::info!("configuration reloaded (admin console)");
            Ok("RELOAD")
        }
        Command::WaitClose(db) => {
            let dbs = select(app, db.as_deref())?;
            while dbs
                .iter()
                .flat_map(|d| d.pools())
                .any(|p| p.old_connections() > 0)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok("WAIT_CLOSE")
        }
        Command::Shutdown(mode) => {
            app.set_phase(match mode {
                ShutdownMode::Immediate => Phase::Stopping,
                ShutdownMode::WaitForServers => Phase::Draining,
                ShutdownMode::WaitForClients => Phase::NoAccept,
            });
            Ok("SHUTDOWN")
        }
        Command::Set { key, value } => {
            if !changeable(&key) || key.contains('.') {
                return Err(format!("setting {key} cannot be changed online"));
            }
            let v = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            app.set(&key, v)?;
            Ok("SET")
        }
        Command::Show(_) | Command::Empty => Err("not a control command".into()),
    }
}

/// PAUSE (admin console and SIGUSR1): no new server assignments for the
/// named database, or for every configured and live one; clients wait, none
/// fail. Returns once every server connection of those databases has been
/// released, as PgBouncer's PAUSE does; an error if a RESUME came first.
pub async fn pause(app: &App, db: Option<&str>) -> Result<(), String> {
    let dbs = match db {
        Some(_) => select(app, db)?,
        None => configured_and_live(app),
    };
    for d in &dbs {
        d.paused.send_replace(true);
    }
    while dbs.iter().any(|d| d.active_servers() > 0) {
        if !dbs.iter().all(|d| *d.paused.borrow()) {
            return Err("resumed before every server connection was released".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// RESUME (admin console and SIGUSR2): waiting clients go on.
pub fn resume(app: &App, db: Option<&str>) -> Result<(), String> {
    for d in select(app, db)? {
        d.paused.send_replace(false);
    }
    Ok(())
}

/// Every database of the configuration (created now if no client has used
/// it yet, so that a global PAUSE also holds its first clients) plus those
/// created from the `*` fallback.
fn configured_and_live(app: &App) -> Vec<Arc<Database>> {
    let cfg = app.config();
    for name in cfg.databases.keys().filter(|n| *n != "*") {
        app.databases.get(name, &cfg, &app.secrets());
    }
    app.databases.all()
}

/// The named database, or all live ones.
fn select(app: &App, name: Option<&str>) -> Result<Vec<Arc<Database>>, String> {
    match name {
        None => Ok(app.databases.all()),
        Some(n) => app
            .databases
            .get(n, &app.config(), &app.secrets())
            .map(|d| vec![d])
            .ok_or_else(|| format!("no such database: {n}")),
    }
}
