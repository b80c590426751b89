//! SHOW CLIENTS and SHOW SERVERS (same columns, as in PgBouncer).

use super::table::{timestamp, v, Table};
use crate::app::App;

pub const COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

fn ptr(kind: char, id: u64) -> Option<String> {
    (id != 0).then(|| format!("{}{id:x}", if kind == 'C' { "c" } else { "s" }))
}

pub fn clients(app: &App) -> Table {
    let mut t = Table::new(COLUMNS);
    for c in app.clients.all() {
        let waited = c.waited_us();
        t.row(vec![
            v("C"),
            v(&c.user),
            v(&c.database),
            v("none"),
            v(c.state().as_str()),
            v(c.addr.host_text()),
            v(c.addr.port()),
            c.local_addr.map(|a| a.ip().to_string()),
            c.local_addr.map(|a| a.port().to_string()),
            v(timestamp(c.connect_time)),
            v(timestamp(c.request_time())),
            v(waited / 1_000_000),
            v(waited % 1_000_000),
            v(0),
            ptr('C', c.id),
            ptr('S', c.link()),
            v(c.remote_pid()),
            v(c.tls.as_deref().unwrap_or("")),
            v(c.application_name.as_deref().unwrap_or("")),
            v(c.prepared()),
            v(c.id),
        ]);
    }
    t
}

pub fn servers(app: &App) -> Table {
    let mut t = Table::new(COLUMNS);
    let mut dbs = app.databases.all();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    for db in dbs {
        for pool in db.pools() {
            let login_user = db.login_user(&pool.key().user).to_string();
            let mut servers = pool.servers();
            servers.sort_by_key(|s| s.id);
            for s in servers {
                t.row(vec![
                    v("S"),
                    v(&login_user),
                    v(&db.name),
                    v("none"),
                    v(s.state().as_str()),
                    v(s.addr.host_text()),
                    v(s.addr.port()),
                    s.local_addr.map(|a| a.ip().to_string()),
                    s.local_addr.map(|a| a.port().to_string()),
                    v(timestamp(causeway_pool::unix_micros(s.connect_time))),
                    v(timestamp(s.request_time())),
                    v(0),
                    v(0),
                    v(u8::from(s.epoch() < pool.epoch())),
                    ptr('S', s.id),
                    ptr('C', s.link()),
                    v(s.pid),
                    v(&s.tls),
                    v(""),
                    v(s.prepared()),
                    v(s.id),
                ]);
            }
        }
    }
    t
}
