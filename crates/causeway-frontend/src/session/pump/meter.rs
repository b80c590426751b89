//! Counters of one attachment, gathered locally and added to the
//! database's shared totals once per transaction, so the shared atomics
//! are touched rarely.

use std::sync::Arc;
use std::time::Duration;

use causeway_metrics::DbStats;
use tokio::time::Instant;

use crate::session::prepared::Counts;

pub struct Meter {
    stats: Arc<DbStats>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    queries: u64,
    query_time: Duration,
    query_start: Option<Instant>,
    xact_start: Option<Instant>,
}

impl Meter {
    pub fn new(stats: Arc<DbStats>) -> Self {
        Meter {
            stats,
            bytes_in: 0,
            bytes_out: 0,
            queries: 0,
            query_time: Duration::ZERO,
            query_start: None,
            xact_start: None,
        }
    }

    /// A request owing a ReadyForQuery went out; `started`: nothing else
    /// was owed, a query's time starts then.
    pub fn request(&mut self, started: Option<Instant>) {
        if let Some(now) = started {
            self.query_start = Some(now);
            self.xact_start.get_or_insert(now);
        }
        self.queries += 1;
    }

    /// Everything owed was answered; the server is at `status`. True: the
    /// transaction is over (the caller flushes).
    pub fn answered(&mut self, status: u8) -> bool {
        let now = Instant::now();
        if let Some(t) = self.query_start.take() {
            let took = now - t;
            self.query_time += took;
            self.stats.query_hist.observe(took);
        }
        if status != b'I' {
            return false;
        }
        if let Some(t) = self.xact_start.take() {
            self.stats.record_xact(now - t);
        }
        true
    }

    /// Adds the local counters (and the prepared-statement counts) to the
    /// database's totals.
    pub fn flush(&mut self, counts: Counts) {
        let s = &self.stats;
        DbStats::add(&s.bytes_received, std::mem::take(&mut self.bytes_in));
        DbStats::add(&s.bytes_sent, std::mem::take(&mut self.bytes_out));
        DbStats::add(&s.queries, std::mem::take(&mut self.queries));
        DbStats::add_time(&s.query_time_us, std::mem::take(&mut self.query_time));
        if counts.client_parses | counts.server_parses | counts.binds != 0 {
            DbStats::add(&s.client_parses, counts.client_parses);
            DbStats::add(&s.server_parses, counts.server_parses);
            DbStats::add(&s.binds, counts.binds);
        }
    }
}
