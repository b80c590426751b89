//! SHOW STATS, STATS_TOTALS, STATS_AVERAGES: per database, times in µs.

use causeway_metrics::{Averages, StatsTotals};

use super::table::{v, Table};
use crate::app::App;

pub const STATS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    // PgBouncer 1.7's name for total_query_count, still read by Debian's
    // prometheus-pgbouncer-exporter (1.7), which fails without it. Last, so
    // PgBouncer's columns keep their positions.
    "total_requests",
];

pub const TOTALS: &[&str] = &[
    "database",
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];

fn totals(t: &StatsTotals) -> Vec<Option<String>> {
    vec![
        v(t.server_assignments),
        v(t.xacts),
        v(t.queries),
        v(t.bytes_received),
        v(t.bytes_sent),
        v(t.xact_time_us),
        v(t.query_time_us),
        v(t.wait_time_us),
        v(t.client_parses),
        v(t.server_parses),
        v(t.binds),
    ]
}

fn averages(a: &Averages) -> Vec<Option<String>> {
    vec![
        v(a.server_assignments),
        v(a.xacts),
        v(a.queries),
        v(a.recv),
        v(a.sent),
        v(a.xact_time_us),
        v(a.query_time_us),
        v(a.wait_time_us),
        v(a.client_parses),
        v(a.server_parses),
        v(a.binds),
    ]
}

pub enum Kind {
    Stats,
    Totals,
    Averages,
}

pub fn table(app: &App, kind: Kind) -> Table {
    let mut dbs = app.databases.all();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut t = Table::new(match kind {
        Kind::Stats => STATS,
        _ => TOTALS,
    });
    for db in dbs {
        let mut row = vec![v(&db.name)];
        match kind {
            Kind::Stats => {
                let t = db.stats.totals();
                row.extend(totals(&t));
                row.extend(averages(&db.stats.averages()));
                row.push(v(t.queries));
            }
            Kind::Totals => row.extend(totals(&db.stats.totals())),
            Kind::Averages => row.extend(averages(&db.stats.averages())),
        }
        t.row(row);
    }
    t
}
