//! A result set for the admin console: text columns, rows, command tag.

use bytes::BytesMut;
use causeway_protocol::backend;

pub struct Table {
    columns: &'static [&'static str],
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub fn new(columns: &'static [&'static str]) -> Self {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row; `values` must match the columns.
    pub fn row(&mut self, values: Vec<Option<String>>) {
        debug_assert_eq!(values.len(), self.columns.len());
        debug_assert!(
            self.columns.iter().zip(&values).all(|(c, v)| {
                column_type(c) == backend::TEXT_OID
                    || v.as_deref().is_none_or(|v| v.parse::<i64>().is_ok())
            }),
            "a numeric column of {:?} holds a non-integer: {values:?}",
            self.columns
        );
        self.rows.push(values);
    }

    pub fn write(&self, out: &mut BytesMut, tag: &str) {
        backend::write_row_description(out, self.columns.iter().map(|c| (*c, column_type(c))));
        for r in &self.rows {
            backend::write_data_row(out, r.iter().map(|v| v.as_deref()));
        }
        backend::write_command_complete(out, tag);
    }
}

/// The type PgBouncer gives a console column: `numeric` for the SHOW STATS
/// family's counters, `int4` for counts, ports, pids and flags, `int8` for
/// client/server ids, `text` for everything else. Typed clients (psycopg2,
/// JDBC, the exporters) then get numbers, as they do from PgBouncer.
pub fn column_type(name: &str) -> u32 {
    match name {
        "server_assignment_count"
        | "xact_count"
        | "query_count"
        | "bytes_received"
        | "bytes_sent"
        | "xact_time"
        | "query_time"
        | "wait_time"
        | "client_parse_count"
        | "server_parse_count"
        | "bind_count"
        | "total_received"
        | "total_sent"
        | "avg_recv"
        | "avg_sent"
        | "total_requests" => backend::NUMERIC_OID,
        n if n.starts_with("total_") || n.starts_with("avg_") => backend::NUMERIC_OID,
        "cl_active"
        | "cl_pinned"
        | "cl_waiting"
        | "cl_active_cancel_req"
        | "cl_waiting_cancel_req"
        | "sv_active"
        | "sv_active_cancel"
        | "sv_being_canceled"
        | "sv_idle"
        | "sv_used"
        | "sv_tested"
        | "sv_login"
        | "maxwait"
        | "maxwait_us"
        | "port"
        | "local_port"
        | "wait"
        | "wait_us"
        | "close_needed"
        | "remote_pid"
        | "prepared_statements"
        | "pool_size"
        | "min_pool_size"
        | "reserve_pool_size"
        | "reserve_pool"
        | "server_lifetime"
        | "max_connections"
        | "current_connections"
        | "max_client_connections"
        | "current_client_connections"
        | "paused"
        | "disabled"
        | "max_user_connections"
        | "max_user_client_connections"
        | "items" => backend::INT4_OID,
        "id" => backend::INT8_OID,
        _ => backend::TEXT_OID,
    }
}

/// Shorthand for a non-NULL cell.
pub fn v(x: impl ToString) -> Option<String> {
    Some(x.to_string())
}

/// PgBouncer's timestamp format: `2024-01-31 13:05:09 UTC`.
pub fn timestamp(unix_micros: u64) -> String {
    let secs = (unix_micros / 1_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The types PgBouncer 1.18 sends (read off its console with psycopg2).
    #[test]
    fn column_types_match_pgbouncer() {
        use backend::{INT4_OID as I4, NUMERIC_OID as N, TEXT_OID as T};
        for (col, oid) in [
            ("database", T),
            ("user", T),
            ("name", T),
            ("host", T),
            ("port", I4),
            ("force_user", T),
            ("pool_size", I4),
            ("min_pool_size", I4),
            ("reserve_pool", I4),
            ("pool_mode", T),
            ("max_connections", I4),
            ("current_connections", I4),
            ("paused", I4),
            ("disabled", I4),
            ("cl_active", I4),
            ("sv_login", I4),
            ("maxwait_us", I4),
            ("total_xact_count", N),
            ("total_query_time", N),
            ("avg_wait_time", N),
            ("avg_recv", N),
            ("xact_count", N),
            ("bytes_received", N),
            ("type", T),
            ("state", T),
            ("addr", T),
            ("local_port", I4),
            ("connect_time", T),
            ("wait", I4),
            ("close_needed", I4),
            ("ptr", T),
            ("link", T),
            ("remote_pid", I4),
            ("tls", T),
            ("application_name", T),
            ("key", T),
            ("value", T),
            ("default", T),
            ("changeable", T),
            ("list", T),
            ("items", I4),
            ("version", T),
        ] {
            assert_eq!(column_type(col), oid, "{col}");
        }
    }

    #[test]
    fn every_console_column_has_a_type_and_numbers_parse() {
        use super::super::{show_databases, show_peers, show_pools, show_stats};
        for cols in [
            show_pools::COLUMNS,
            show_stats::STATS,
            show_stats::TOTALS,
            show_peers::COLUMNS,
            show_databases::DATABASES,
            show_databases::USERS,
        ] {
            let mut t = Table::new(cols);
            // Integers in every typed column, text elsewhere: accepted.
            t.row(
                cols.iter()
                    .map(|c| {
                        if column_type(c) == backend::TEXT_OID {
                            v("x")
                        } else {
                            v(1)
                        }
                    })
                    .collect(),
            );
            let mut out = BytesMut::new();
            t.write(&mut out, "SHOW");
            assert_eq!(out[0], b'T');
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC = 1709210096
        assert_eq!(timestamp(1_709_210_096_000_000), "2024-02-29 12:34:56 UTC");
    }
}
