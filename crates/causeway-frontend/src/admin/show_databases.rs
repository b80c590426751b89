//! SHOW DATABASES and SHOW USERS.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;

use super::table::{v, Table};
use crate::app::App;

pub const DATABASES: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
    // PgBouncer 1.18's name for reserve_pool_size, still read by Debian's
    // prometheus-pgbouncer-exporter (1.7), which fails without it. Last, so
    // PgBouncer's columns keep their positions.
    "reserve_pool",
];

pub const USERS: &[&str] = &[
    "name",
    "pool_size",
    "reserve_pool_size",
    "pool_mode",
    "max_user_connections",
    "current_connections",
    "max_user_client_connections",
    "current_client_connections",
];

pub fn databases(app: &App) -> Table {
    let cfg = app.config();
    let clients = app.clients.all();
    let mut t = Table::new(DATABASES);
    // Configured entries, plus databases created from the `*` fallback.
    let mut names: BTreeSet<String> = cfg
        .databases
        .keys()
        .filter(|n| *n != "*")
        .cloned()
        .collect();
    names.extend(app.databases.all().iter().map(|d| d.name.to_string()));
    for name in names {
        let Some(db) = app.databases.get(&name, &cfg, &app.secrets()) else {
            continue;
        };
        let dbc = db.cfg();
        let primary = db.topology().primary().unwrap_or(0);
        let server = db.servers.get(primary);
        let current: u32 = db.pools().iter().map(|p| p.snapshot().open).sum();
        let hosts: Vec<String> = db.servers.iter().map(|s| s.host.clone()).collect();
        t.row(vec![
            v(&db.name),
            Some(hosts.join(",")),
            server.map(|s| s.port.to_string()),
            v(db.dbname()),
            dbc.user.clone(),
            v(dbc.pool_size.unwrap_or(cfg.default_pool_size)),
            v(dbc.min_pool_size.unwrap_or(cfg.min_pool_size)),
            v(dbc.reserve_pool_size.unwrap_or(cfg.reserve_pool_size)),
            v(dbc.server_lifetime.unwrap_or(cfg.server_lifetime) as u64),
            dbc.pool_mode.map(|m| m.as_str().to_string()),
            None,
            v(dbc.max_db_connections.unwrap_or(cfg.max_db_connections)),
            v(current),
            v(0),
            v(clients.iter().filter(|c| c.database == db.name).count()),
            v(u8::from(*db.paused.borrow())),
            v(u8::from(db.disabled.load(Relaxed))),
            v(dbc.reserve_pool_size.unwrap_or(cfg.reserve_pool_size)),
        ]);
    }
    t
}

pub fn users(app: &App) -> Table {
    let cfg = app.config();
    let clients = app.clients.all();
    let mut names: BTreeSet<String> = cfg.users.keys().cloned().collect();
    names.extend(clients.iter().map(|c| c.user.to_string()));
    let mut t = Table::new(USERS);
    for name in names {
        let u = cfg.users.get(&name);
        let current: u32 = app
            .databases
            .all()
            .iter()
            .flat_map(|d| d.pools())
            .filter(|p| p.key().user == name)
            .map(|p| p.snapshot().open)
            .sum();
        t.row(vec![
            v(&name),
            u.and_then(|u| u.pool_size).map(|x| x.to_string()),
            u.and_then(|u| u.reserve_pool_size).map(|x| x.to_string()),
            u.and_then(|u| u.pool_mode).map(|m| m.as_str().to_string()),
            v(cfg.max_user_connections_for(&name)),
            v(current),
            v(u.and_then(|u| u.max_user_client_connections).unwrap_or(0)),
            v(clients.iter().filter(|c| *c.user == *name).count()),
        ]);
    }
    t
}
