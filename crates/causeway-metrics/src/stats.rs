//! Per-database traffic counters with PgBouncer's SHOW STATS meaning.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

use crate::histogram::AtomicHistogram;
use crate::snapshot::{DbRow, StatsTotals};

/// Totals since start. Times in microseconds, as PgBouncer reports them.
#[derive(Debug, Default)]
pub struct DbStats {
    pub server_assignments: AtomicU64,
    pub xacts: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub xact_time_us: AtomicU64,
    pub query_time_us: AtomicU64,
    pub wait_time_us: AtomicU64,
    pub client_parses: AtomicU64,
    pub server_parses: AtomicU64,
    pub binds: AtomicU64,
    /// Client wait for a server (the time behind `wait_time_us`).
    pub wait_hist: AtomicHistogram,
    /// Query durations (the time behind `query_time_us`).
    pub query_hist: AtomicHistogram,
    /// Transaction durations (the time behind `xact_time_us`).
    pub xact_hist: AtomicHistogram,
    /// Per-second averages over the last stats period.
    averages: Mutex<(StatsTotals, Averages)>,
}

/// PgBouncer's avg_* columns: per second, except the times, which are per
/// transaction / query / assignment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Averages {
    pub server_assignments: u64,
    pub xacts: u64,
    pub queries: u64,
    pub recv: u64,
    pub sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub client_parses: u64,
    pub server_parses: u64,
    pub binds: u64,
}

impl DbStats {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn add_time(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// One server assignment after waiting `wait`: bumps
    /// `server_assignments`, `wait_time_us` and `wait_hist`. Allocation-free.
    #[inline]
    pub fn record_wait(&self, wait: Duration) {
        self.server_assignments.fetch_add(1, Relaxed);
        Self::add_time(&self.wait_time_us, wait);
        self.wait_hist.observe(wait);
    }

    /// One finished query that took `d`: bumps `queries`, `query_time_us` and
    /// `query_hist`. Allocation-free.
    #[inline]
    pub fn record_query(&self, d: Duration) {
        self.queries.fetch_add(1, Relaxed);
        Self::add_time(&self.query_time_us, d);
        self.query_hist.observe(d);
    }

    /// One finished transaction that took `d`: bumps `xacts`, `xact_time_us`
    /// and `xact_hist`. Allocation-free.
    #[inline]
    pub fn record_xact(&self, d: Duration) {
        self.xacts.fetch_add(1, Relaxed);
        Self::add_time(&self.xact_time_us, d);
        self.xact_hist.observe(d);
    }

    /// The exporter's row for this database: totals and histogram snapshots.
    pub fn row(&self, name: impl Into<String>) -> DbRow {
        DbRow {
            name: name.into(),
            totals: self.totals(),
            wait: self.wait_hist.snapshot(),
            query: self.query_hist.snapshot(),
            xact: self.xact_hist.snapshot(),
        }
    }

    pub fn totals(&self) -> StatsTotals {
        StatsTotals {
            server_assignments: self.server_assignments.load(Relaxed),
            xacts: self.xacts.load(Relaxed),
            queries: self.queries.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            xact_time_us: self.xact_time_us.load(Relaxed),
            query_time_us: self.query_time_us.load(Relaxed),
            wait_time_us: self.wait_time_us.load(Relaxed),
            client_parses: self.client_parses.load(Relaxed),
            server_parses: self.server_parses.load(Relaxed),
            binds: self.binds.load(Relaxed),
        }
    }

    /// Closes a stats period of `period` length: recomputes the averages.
    pub fn roll(&self, period: Duration) {
        let now = self.totals();
        let mut guard = self.averages.lock();
        let (prev, avg) = &mut *guard;
        *avg = averages(prev, &now, period);
        *prev = now;
    }

    pub fn averages(&self) -> Averages {
        self.averages.lock().1
    }
}

fn averages(prev: &StatsTotals, now: &StatsTotals, period: Duration) -> Averages {
    let secs = period.as_secs_f64().max(1e-9);
    let rate = |a: u64, b: u64| ((b.saturating_sub(a)) as f64 / secs).round() as u64;
    let per = |ta: u64, tb: u64, na: u64, nb: u64| {
        tb.saturating_sub(ta)
            .checked_div(nb.saturating_sub(na))
            .unwrap_or(0)
    };
    Averages {
        server_assignments: rate(prev.server_assignments, now.server_assignments),
        xacts: rate(prev.xacts, now.xacts),
        queries: rate(prev.queries, now.queries),
        recv: rate(prev.bytes_received, now.bytes_received),
        sent: rate(prev.bytes_sent, now.bytes_sent),
        xact_time_us: per(prev.xact_time_us, now.xact_time_us, prev.xacts, now.xacts),
        query_time_us: per(
            prev.query_time_us,
            now.query_time_us,
            prev.queries,
            now.queries,
        ),
        wait_time_us: per(
            prev.wait_time_us,
            now.wait_time_us,
            prev.server_assignments,
            now.server_assignments,
        ),
        client_parses: rate(prev.client_parses, now.client_parses),
        server_parses: rate(prev.server_parses, now.server_parses),
        binds: rate(prev.binds, now.binds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_mean_times() {
        let s = DbStats::default();
        DbStats::add(&s.xacts, 100);
        DbStats::add(&s.queries, 200);
        DbStats::add(&s.xact_time_us, 100 * 50);
        DbStats::add(&s.query_time_us, 200 * 20);
        DbStats::add(&s.bytes_received, 10_000);
        s.roll(Duration::from_secs(10));
        let a = s.averages();
        assert_eq!(a.xacts, 10);
        assert_eq!(a.queries, 20);
        assert_eq!(a.recv, 1000);
        assert_eq!(a.xact_time_us, 50);
        assert_eq!(a.query_time_us, 20);
        // No traffic in the next period: rates drop to zero, no division by zero.
        s.roll(Duration::from_secs(10));
        assert_eq!(s.averages(), Averages::default());
        assert_eq!(s.totals().xacts, 100);
    }

    #[test]
    fn record_helpers_feed_counters_and_histograms() {
        let s = DbStats::default();
        s.record_wait(Duration::from_millis(2));
        s.record_query(Duration::from_micros(300));
        s.record_query(Duration::from_millis(20));
        s.record_xact(Duration::from_millis(21));
        let t = s.totals();
        assert_eq!(t.server_assignments, 1);
        assert_eq!(t.wait_time_us, 2000);
        assert_eq!(t.queries, 2);
        assert_eq!(t.query_time_us, 20_300);
        assert_eq!(t.xacts, 1);
        let row = s.row("app");
        assert_eq!(row.name, "app");
        assert_eq!(row.totals, t);
        assert_eq!(row.wait.count, 1);
        assert_eq!(row.query.count, 2);
        assert_eq!(row.xact.count, 1);
        // 300 us lands in le=0.0005, 20 ms in le=0.025.
        let le = |h: &crate::HistogramSnapshot, b: f64| {
            h.buckets.iter().find(|(u, _)| *u == b).map(|(_, c)| *c)
        };
        assert_eq!(le(&row.query, 0.00025), Some(0));
        assert_eq!(le(&row.query, 0.0005), Some(1));
        assert_eq!(le(&row.query, 0.01), Some(1));
        assert_eq!(le(&row.query, 0.025), Some(2));
    }
}
