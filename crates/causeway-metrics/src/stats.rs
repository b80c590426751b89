//! Per-database traffic counters with PgBouncer's SHOW STATS meaning.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

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
    /// Per-second averages over the last stats period.
    averages: Mutex<(StatsTotals, Averages)>,
}

/// A plain copy of the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsTotals {
    pub server_assignments: u64,
    pub xacts: u64,
    pub queries: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub client_parses: u64,
    pub server_parses: u64,
    pub binds: u64,
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
}
