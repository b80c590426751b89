//! What `/metrics` shows: a snapshot of Causeway's counters, pools and
//! servers, built at scrape time from the same data as the admin console.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use causeway_metrics::{PoolRow, ServerRow, Snapshot, Source, TlsRow};
use causeway_pool::ServerState;
use causeway_routing::Role;

use crate::app::App;
use crate::clients::ClientState;

pub struct MetricsSource {
    pub app: Arc<App>,
    pub started: Instant,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Replica => "replica",
        Role::Unknown => "unknown",
    }
}

impl Source for MetricsSource {
    fn snapshot(&self) -> Snapshot {
        let app = &self.app;
        let cfg = app.config();
        let mut snap = Snapshot {
            clients_total: u64::from(app.client_count()),
            max_client_conn: u64::from(cfg.max_client_conn),
            up_seconds: self.started.elapsed().as_secs_f64(),
            tls: causeway_net::HANDSHAKES
                .rows()
                .into_iter()
                .map(|(side, result, count)| TlsRow {
                    side: side.into(),
                    result: result.into(),
                    count,
                })
                .collect(),
            ..Snapshot::default()
        };
        // Clients per (database, user, state), counted once (in the row of
        // the primary's pool).
        let mut clients: HashMap<(String, String), [u64; 3]> = HashMap::new();
        let mut maxwait: HashMap<(String, String), u64> = HashMap::new();
        for c in app.clients.all() {
            let k = (c.database.to_string(), c.user.to_string());
            let e = clients.entry(k.clone()).or_default();
            match c.state() {
                ClientState::Active => e[0] += 1,
                ClientState::Waiting => {
                    e[1] += 1;
                    let m = maxwait.entry(k).or_default();
                    *m = (*m).max(c.waited_us());
                }
                _ => e[2] += 1,
            }
        }
        for db in app.databases.all() {
            snap.databases.push(db.stats.row(db.name.to_string()));
            snap.routing.extend(db.routes.rows(&db.name));
            if db.servers.len() > 1 {
                let mut row = db.ryw.row(&db.name);
                if let Some(m) = &db.monitor {
                    let (queries, flushes) = m.positions().counts();
                    row.position_queries = queries;
                    row.forced_flushes = flushes;
                }
                snap.ryw.push(row);
            }
            let topo = db.topology();
            let mon = db.monitor.as_ref().map(|m| m.snapshot());
            for (i, server) in db.servers.iter().enumerate() {
                let st = mon.as_ref().and_then(|m| m.servers.get(i));
                let role = topo.servers.get(i).map_or(Role::Unknown, |s| s.role);
                snap.servers.push(ServerRow {
                    database: db.name.to_string(),
                    server: server.host_port(),
                    role: role_name(role).to_string(),
                    up: st.is_none_or(|s| s.reachable),
                    banned: st.is_some_and(|s| s.banned_until.is_some_and(|t| t > Instant::now())),
                    in_flight: u64::from(db.load.in_flight(i)),
                    replay_lsn: st.and_then(|s| s.replay_lsn).map(|l| l.0),
                    lag_bytes: st.and_then(|s| s.byte_lag),
                    lag_seconds: st.and_then(|s| s.time_lag).map(|d| d.as_secs_f64()),
                    weight: server.weight,
                    monitor_login_error: st.is_some_and(|s| s.login_error.is_some()),
                });
            }
            let primary = topo.primary();
            for pool in db.pools() {
                let key = pool.key();
                let server = &db.servers[key.server];
                let role = topo
                    .servers
                    .get(key.server)
                    .map_or(Role::Unknown, |s| s.role);
                let mut sv = [0u64; 5];
                for s in pool.servers() {
                    sv[s.state() as usize] += 1;
                }
                let ck = (db.name.to_string(), key.user.clone());
                let cl = if Some(key.server) == primary {
                    clients.get(&ck).copied().unwrap_or_default()
                } else {
                    [0; 3]
                };
                snap.pools.push(PoolRow {
                    database: db.name.to_string(),
                    user: key.user.clone(),
                    server: format!("{}:{}", server.host, server.port),
                    role: role_name(role).to_string(),
                    pool_size: u64::from(pool.settings().pool_size),
                    cl_active: cl[0],
                    cl_waiting: cl[1],
                    cl_idle: cl[2],
                    cl_pinned: u64::from(pool.pinned()),
                    sv_active: sv[ServerState::Active as usize] + sv[ServerState::Used as usize],
                    sv_idle: sv[ServerState::Idle as usize],
                    sv_login: sv[ServerState::Login as usize],
                    sv_tested: sv[ServerState::Tested as usize],
                    maxwait_seconds: maxwait.get(&ck).copied().unwrap_or(0) as f64 / 1e6,
                });
            }
        }
        snap
    }

    /// Problems that do not stop traffic: lag monitors that cannot log in.
    fn ready_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for db in self.app.databases.all() {
            let Some(m) = &db.monitor else { continue };
            let snap = m.snapshot();
            for (i, e) in snap.login_errors() {
                notes.push(format!(
                    "database {}: monitor of {}: {e} (routed by its configured role)",
                    db.name,
                    db.servers[i].host_port()
                ));
            }
        }
        notes
    }

    /// Ready when accepting clients and every configured database has a primary.
    fn ready(&self) -> bool {
        let cfg = self.app.config();
        self.app.phase() == crate::app::Phase::Running
            && cfg.databases.keys().filter(|n| *n != "*").all(|n| {
                self.app
                    .databases
                    .get(n, &cfg, &self.app.secrets())
                    .is_some_and(|d| d.topology().primary().is_some())
            })
    }
}
