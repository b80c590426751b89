//! A filled snapshot shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use causeway_metrics::{
    AtomicHistogram, DbStats, PoolRow, RouteRow, RywRow, ServerRow, Snapshot, TlsRow,
};

pub fn filled_snapshot() -> Snapshot {
    let app = DbStats::default();
    for ms in [1, 2, 30] {
        app.record_query(Duration::from_millis(ms));
    }
    app.record_xact(Duration::from_millis(40));
    app.record_wait(Duration::from_micros(50));
    app.record_wait(Duration::from_secs(12));
    DbStats::add(&app.bytes_received, 4096);
    DbStats::add(&app.bytes_sent, 8192);
    DbStats::add(&app.client_parses, 5);
    DbStats::add(&app.server_parses, 2);
    DbStats::add(&app.binds, 7);
    let reports = DbStats::default();

    let ryw_waits = AtomicHistogram::new();
    ryw_waits.observe(Duration::from_millis(3));

    let pool = |server: &str, role: &str, cl: [u64; 3], sv: [u64; 4], maxwait: f64| PoolRow {
        database: "app".into(),
        user: "alice".into(),
        server: server.into(),
        role: role.into(),
        pool_size: 20,
        cl_active: cl[0],
        cl_waiting: cl[1],
        cl_idle: cl[2],
        cl_pinned: 0,
        sv_active: sv[0],
        sv_idle: sv[1],
        sv_login: sv[2],
        sv_tested: sv[3],
        maxwait_seconds: maxwait,
    };
    let mut odd_user = pool("10.0.0.1:5432", "primary", [1, 0, 0], [1, 0, 0, 0], 0.0);
    odd_user.database = "reports".into();
    odd_user.user = "we\"ird\\user".into();

    Snapshot {
        databases: vec![app.row("app"), reports.row("reports")],
        pools: vec![
            pool("10.0.0.1:5432", "primary", [3, 2, 1], [3, 4, 0, 1], 0.25),
            pool("10.0.0.2:5432", "replica", [5, 0, 4], [5, 2, 1, 0], 1.5),
            odd_user,
        ],
        servers: vec![
            ServerRow {
                database: "app".into(),
                server: "10.0.0.1:5432".into(),
                role: "primary".into(),
                up: true,
                banned: false,
                in_flight: 3,
                replay_lsn: None,
                lag_bytes: None,
                lag_seconds: None,
                weight: 1,
                monitor_login_error: false,
            },
            ServerRow {
                database: "app".into(),
                server: "10.0.0.2:5432".into(),
                role: "replica".into(),
                up: true,
                banned: true,
                in_flight: 5,
                replay_lsn: Some(0x1_6B37_4D48),
                lag_bytes: Some(1024),
                lag_seconds: Some(0.5),
                weight: 2,
                monitor_login_error: false,
            },
            ServerRow {
                database: "reports".into(),
                server: "10.0.0.3:5432".into(),
                role: "unknown".into(),
                up: false,
                banned: false,
                in_flight: 0,
                replay_lsn: None,
                lag_bytes: None,
                lag_seconds: Some(f64::NAN),
                weight: 1,
                monitor_login_error: false,
            },
        ],
        routing: vec![
            RouteRow {
                database: "app".into(),
                target: "primary".into(),
                reason: "write".into(),
                count: 10,
            },
            RouteRow {
                database: "app".into(),
                target: "replica".into(),
                reason: "read".into(),
                count: 90,
            },
            RouteRow {
                database: "app".into(),
                target: "primary".into(),
                reason: "retry_25006".into(),
                count: 1,
            },
            // Same labels as the first row: summed.
            RouteRow {
                database: "app".into(),
                target: "primary".into(),
                reason: "write".into(),
                count: 5,
            },
        ],
        ryw: vec![RywRow {
            database: "app".into(),
            token_advances: 12,
            waits: ryw_waits.snapshot(),
            fallbacks: 2,
            errors: 1,
            position_queries: 40,
            forced_flushes: 3,
        }],
        tls: vec![
            TlsRow {
                side: "client".into(),
                result: "ok".into(),
                count: 40,
            },
            TlsRow {
                side: "server".into(),
                result: "bad_certificate".into(),
                count: 2,
            },
        ],
        clients_total: 14,
        max_client_conn: 1000,
        up_seconds: 3600.5,
    }
}
