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
            let dbs = select(app, db.as_deref())?;
            for d in &dbs {
                d.paused.send_replace(true);
            }
            // PgBouncer returns once every server connection is released.
            while dbs.iter().any(|d| d.active_servers() > 0) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok("PAUSE")
        }
        Command::Resume(db) => {
            for d in select(app, db.as_deref())? {
                d.paused.send_replace(false);
            }
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
