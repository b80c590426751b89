//! SHOW LISTS, CONFIG, VERSION, STATE, HELP.

use super::table::{v, Table};
use crate::app::App;
use crate::clients::ClientState;

pub fn version() -> String {
    format!(
        "Causeway {} (PgBouncer-compatible admin console)",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn lists(app: &App) -> Table {
    let dbs = app.databases.all();
    let pools: Vec<_> = dbs.iter().flat_map(|d| d.pools()).collect();
    let snaps: Vec<_> = pools.iter().map(|p| p.snapshot()).collect();
    let clients = app.clients.all();
    let users: std::collections::BTreeSet<_> = clients.iter().map(|c| c.user.to_string()).collect();
    let used_clients = clients
        .iter()
        .filter(|c| c.state() != ClientState::Login)
        .count();
    let login_clients = clients.len() - used_clients;
    let free_servers: u32 = snaps.iter().map(|s| s.idle).sum();
    let used_servers: u32 = snaps.iter().map(|s| s.open - s.idle).sum();
    let mut t = Table::new(&["list", "items"]);
    for (k, n) in [
        ("databases", dbs.len()),
        ("users", users.len()),
        ("peers", 0),
        ("pools", pools.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", used_clients),
        ("login_clients", login_clients),
        ("free_servers", free_servers as usize),
        ("used_servers", used_servers as usize),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ] {
        t.row(vec![v(k), v(n)]);
    }
    t
}

/// Settings that can change without a restart (SET, RELOAD).
pub fn changeable(key: &str) -> bool {
    !matches!(
        key,
        "listen_addr"
            | "listen_port"
            | "unix_socket_dir"
            | "unix_socket_mode"
            | "unix_socket_group"
            | "workers"
            | "so_reuseport"
            | "metrics_addr"
    )
}

pub fn config(app: &App) -> Table {
    let cfg = app.config();
    let now = toml::Value::try_from(cfg.masked()).unwrap_or(toml::Value::Table(Default::default()));
    let def = toml::Value::try_from(causeway_config::Config::default())
        .unwrap_or(toml::Value::Table(Default::default()));
    let mut t = Table::new(&["key", "value", "default", "changeable"]);
    if let (Some(now), Some(def)) = (now.as_table(), def.as_table()) {
        for (k, val) in now {
            if val.is_table() {
                continue;
            }
            t.row(vec![
                v(k),
                v(show_value(val)),
                def.get(k).map(show_value),
                v(if changeable(k) { "yes" } else { "no" }),
            ]);
        }
    }
    t
}

fn show_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
        toml::Value::Array(a) => a.iter().map(show_value).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub fn state(app: &App) -> Table {
    let paused = app.databases.all().iter().any(|d| *d.paused.borrow());
    let mut t = Table::new(&["key", "value"]);
    t.row(vec![
        v("active"),
        v(if app.phase() == crate::app::Phase::Running {
            "yes"
        } else {
            "no"
        }),
    ]);
    t.row(vec![v("paused"), v(if paused { "yes" } else { "no" })]);
    t.row(vec![v("suspended"), v("no")]);
    t
}

pub const HELP: &str = "Console usage\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|LISTS|STATE\n\tSHOW REPLICAS|TOPOLOGY|ROUTING\n\tSET key = arg\n\tRELOAD\n\tPAUSE [<db>]\n\tRESUME [<db>]\n\tDISABLE <db>\n\tENABLE <db>\n\tRECONNECT [<db>]\n\tKILL [<db>]\n\tKILL_CLIENT <client_id>\n\tWAIT_CLOSE [<db>]\n\tSHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]";
