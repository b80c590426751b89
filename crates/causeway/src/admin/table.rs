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
        self.rows.push(values);
    }

    pub fn write(&self, out: &mut BytesMut, tag: &str) {
        backend::write_text_row_description(out, self.columns);
        for r in &self.rows {
            backend::write_data_row(out, r.iter().map(|v| v.as_deref()));
        }
        backend::write_command_complete(out, tag);
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

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        // 2024-02-29 12:34:56 UTC = 1709210096
        assert_eq!(timestamp(1_709_210_096_000_000), "2024-02-29 12:34:56 UTC");
    }
}
