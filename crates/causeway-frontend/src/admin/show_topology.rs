//! Causeway's own SHOW REPLICAS (alias SHOW TOPOLOGY) and SHOW ROUTING:
//! what the lag monitor sees of each server, and where the router sent work.

use std::time::Instant;

use causeway_routing::Role;

use super::table::{v, Table};
use crate::app::App;

pub const TOPOLOGY: &[&str] = &[
    "database",
    "server",
    "role",
    "state",
    "replay_lsn",
    "lag_bytes",
    "lag_seconds",
    "lag_bytes_mean",
    "lag_seconds_mean",
    "banned_for",
    "in_flight",
    "weight",
    "reads_served",
    "last_error",
];

fn role(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Unknown => "unknown",
    }
}

pub fn topology(app: &App) -> Table {
    let mut t = Table::new(TOPOLOGY);
    let mut dbs = app.databases.all();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    let now = Instant::now();
    for db in dbs {
        let topo = db.topology();
        let snap = db.monitor.as_ref().map(|m| m.snapshot());
        for (i, server) in db.servers.iter().enumerate() {
            let st = snap.as_ref().and_then(|s| s.servers.get(i));
            let state = match st {
                None => "static".to_string(),
                Some(s) if s.login_error.is_some() => "monitor_login_refused".to_string(),
                Some(s) if s.routable => "routable".to_string(),
                Some(s) => match (&s.unroutable, s.note) {
                    (Some(u), _) => format!("{u:?}").to_ascii_lowercase(),
                    (None, Some(n)) => n.to_string(),
                    (None, None) => "unroutable".to_string(),
                },
            };
            t.row(vec![
                v(&db.name),
                v(server.host_port()),
                v(role(topo.servers.get(i).map_or(Role::Unknown, |s| s.role))),
                v(state),
                st.and_then(|s| s.replay_lsn).map(|l| l.to_string()),
                st.and_then(|s| s.byte_lag).map(|b| b.to_string()),
                st.and_then(|s| s.time_lag)
                    .map(|d| format!("{:.3}", d.as_secs_f64())),
                st.and_then(|s| s.avg_byte_lag).map(|b| b.to_string()),
                st.and_then(|s| s.avg_time_lag)
                    .map(|d| format!("{:.3}", d.as_secs_f64())),
                st.and_then(|s| s.banned_until)
                    .filter(|&u| u > now)
                    .map(|u| format!("{:.1}", (u - now).as_secs_f64())),
                v(db.load.in_flight(i)),
                v(server.weight),
                v(db.load.served(i)),
                st.and_then(|s| s.last_error.clone()),
            ]);
        }
    }
    t
}

pub const ROUTING: &[&str] = &["database", "target", "reason", "count"];

pub fn routing(app: &App) -> Table {
    let mut t = Table::new(ROUTING);
    let mut dbs = app.databases.all();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    for db in dbs {
        for r in db.routes.rows(&db.name) {
            t.row(vec![v(r.database), v(r.target), v(r.reason), v(r.count)]);
        }
    }
    t
}
