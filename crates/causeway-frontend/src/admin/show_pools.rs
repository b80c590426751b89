//! SHOW POOLS: one row per (database, user), servers of all its pools summed.

use std::collections::BTreeMap;

use causeway_pool::ServerState;

use super::table::{v, Table};
use crate::app::App;
use crate::clients::ClientState;

pub const COLUMNS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
    // Causeway's own, after PgBouncer's columns: clients kept on their
    // server by session state (pin_session_state).
    "cl_pinned",
];

#[derive(Default)]
struct Row {
    cl_active: u64,
    cl_waiting: u64,
    sv: [u64; 5],
    maxwait_us: u64,
    mode: &'static str,
    pinned: u64,
}

pub fn table(app: &App) -> Table {
    let cfg = app.config();
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for db in app.databases.all() {
        for pool in db.pools() {
            let user = pool.key().user.clone();
            let r = rows.entry((db.name.to_string(), user.clone())).or_default();
            r.mode = cfg.pool_mode_for(&db.cfg(), &user).as_str();
            r.pinned += u64::from(pool.pinned());
            for s in pool.servers() {
                r.sv[s.state() as usize] += 1;
            }
        }
    }
    for c in app.clients.all() {
        let Some(r) = rows.get_mut(&(c.database.to_string(), c.user.to_string())) else {
            continue;
        };
        match c.state() {
            // As PgBouncer: a logged-in client with no server (transaction
            // mode, between transactions) is active too; only a client
            // waiting for a server is not.
            ClientState::Active | ClientState::Idle => r.cl_active += 1,
            ClientState::Waiting => {
                r.cl_waiting += 1;
                r.maxwait_us = r.maxwait_us.max(c.waited_us());
            }
            _ => {}
        }
    }
    let mut t = Table::new(COLUMNS);
    for ((db, user), r) in rows {
        let sv = |s: ServerState| v(r.sv[s as usize]);
        t.row(vec![
            v(db),
            v(user),
            v(r.cl_active),
            v(r.cl_waiting),
            v(0),
            v(0),
            sv(ServerState::Active),
            v(0),
            v(0),
            sv(ServerState::Idle),
            sv(ServerState::Used),
            sv(ServerState::Tested),
            sv(ServerState::Login),
            v(r.maxwait_us / 1_000_000),
            v(r.maxwait_us % 1_000_000),
            v(r.mode),
            None,
            v(r.pinned),
        ]);
    }
    t
}
