//! WAL positions on demand, between probes.
//!
//! The monitor's probes run every `monitor_interval` (250 ms): far too
//! seldom for a read that waits for a replica to replay a write, or for a
//! session that must learn where the primary stood right after its read.
//! Each server's probe task therefore also answers *demand*: while some
//! read waits on a server, or someone asked for a sample taken after a
//! given instant, it runs one tiny query on its probe connection
//!
//! ```sql
//! SELECT pg_is_in_recovery(),
//!        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
//!             ELSE pg_current_wal_insert_lsn() END::text,
//!        CASE WHEN pg_is_in_recovery() THEN NULL
//!             ELSE pg_current_wal_flush_lsn() END::text,
//!        <a primary's timeline, from pg_walfile_name()>
//! ```
//!
//! and publishes the answer here. Every waiting session shares that one
//! query (coalescing: 50 sessions waiting on a replica cost one query per
//! poll, not 50), and is woken through [`Positions::changed`]. With nobody
//! waiting, no query runs.
//!
//! * **Waiting for a floor** ([`Positions::wait_guard`]): while the guard
//!   lives the server is polled every [`Positions::poll`] (1 ms by default).
//! * **A sample after an instant** ([`Positions::request_after`]): one query
//!   sent after that instant (a bound of what a read that ended then saw).
//! * **A write's token** (the same, asked for by a session after its write
//!   on the primary committed): the insert position of a query sent after
//!   the commit returned covers the commit record, and the timeline names
//!   the generation. Sessions that wrote share the query as readers do.
//! * **Forcing a WAL flush** ([`Positions::request_flush`], primary only):
//!   with `synchronous_commit = off` a commit returns before its WAL is
//!   flushed, and WAL reaches standbys only once flushed (by the WAL writer,
//!   up to 3 x `wal_writer_delay` later). When a read waits for such a
//!   position for longer than one poll, the primary's probe task commits a
//!   transactional `pg_logical_emit_message()` with `synchronous_commit =
//!   local`, which flushes all WAL before it (one xid and one fsync per
//!   flush, shared by every waiting read).
//!
//! Times are nanoseconds since the monitor started ([`Positions::now`]), so
//! that a sample's start fits an atomic.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use causeway_routing::lsn::Lsn;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

/// Default time between two position queries of one server while a read
/// waits on it.
pub const DEFAULT_POSITION_POLL: Duration = Duration::from_millis(1);

/// One answer of the position query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// The server was in recovery.
    pub standby: bool,
    /// Replay LSN (standby) or insert LSN (primary).
    pub lsn: Lsn,
    /// Primary only: `pg_current_wal_flush_lsn()`.
    pub flush: Option<Lsn>,
    /// Primary only: the timeline its insert position is on.
    pub timeline: Option<u32>,
    /// When the query was sent ([`Positions::now`] units): the values are
    /// at least as new as the server's position then.
    pub started: u64,
}

#[derive(Default)]
struct Slot {
    last: Mutex<Option<Sample>>,
    /// When the last failed position query was sent (0: none).
    failed_at: AtomicU64,
    /// Reads waiting on this server ([`WaitGuard`]s alive).
    waiters: AtomicU32,
    /// Someone wants a sample whose query started after this instant.
    want_after: AtomicU64,
    /// Primary: someone waits for WAL up to this LSN to be flushed.
    want_flush: AtomicU64,
    /// When `want_flush` was raised from 0, or the primary's flush
    /// position last advanced since.
    flush_since: AtomicU64,
    /// The flush position seen at `flush_since`.
    flush_seen: AtomicU64,
    /// Forcing flushes failed (e.g. not permitted): not tried again.
    flush_refused: AtomicBool,
    wake: Notify,
}

/// Positions of every server of one monitor, fed by its probe tasks.
pub struct Positions {
    base: Instant,
    poll: Duration,
    slots: Box<[Slot]>,
    changed: watch::Sender<u64>,
    queries: AtomicU64,
    flushes: AtomicU64,
}

impl Positions {
    pub(crate) fn new(n: usize, poll: Duration) -> Positions {
        Positions {
            base: Instant::now(),
            poll: poll.max(Duration::from_micros(50)),
            slots: (0..n).map(|_| Slot::default()).collect(),
            changed: watch::channel(0).0,
            queries: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    /// Now, in sample time units (ns since the monitor started; never 0).
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `t` in sample time units (0 for instants before the monitor started).
    pub fn at(&self, t: Instant) -> u64 {
        t.checked_duration_since(self.base)
            .map_or(0, |d| d.as_nanos() as u64 + 1)
    }

    /// Time between two polls of a server while a read waits on it.
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// The latest good sample of `server`.
    pub fn last(&self, server: usize) -> Option<Sample> {
        *self.slots.get(server)?.last.lock()
    }

    /// The last position query of `server` failed.
    pub fn failing(&self, server: usize) -> bool {
        self.slots.get(server).is_some_and(|s| {
            let good = s.last.lock().map_or(0, |x| x.started);
            s.failed_at.load(Acquire) > good
        })
    }

    /// A position query of `server` sent after `after` failed.
    fn failed_after(&self, server: usize, after: u64) -> bool {
        self.slots[server].failed_at.load(Acquire) > after
    }

    /// (position queries run, WAL flushes forced) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.queries.load(Relaxed), self.flushes.load(Relaxed))
    }

    /// Counts one forced flush.
    pub(crate) fn flushed(&self) {
        self.flushes.fetch_add(1, Relaxed);
    }

    /// Bumped after every sample (good or failed) of any server.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Polls `server` while the guard lives.
    pub fn wait_guard(&self, server: usize) -> WaitGuard<'_> {
        if let Some(s) = self.slots.get(server) {
            s.waiters.fetch_add(1, AcqRel);
            s.wake.notify_one();
        }
        WaitGuard { pos: self, server }
    }

    /// Asks for one sample of `server` whose query starts after `after`
    /// (sample time units). Returns at once; see [`Positions::sample_after`].
    pub fn request_after(&self, server: usize, after: u64) {
        if let Some(s) = self.slots.get(server) {
            if s.want_after.fetch_max(after, AcqRel) < after {
                s.wake.notify_one();
            }
        }
    }

    /// Asks the primary `server` to make sure WAL up to `lsn` is flushed
    /// (forced after one poll if the WAL writer has not done it).
    pub fn request_flush(&self, server: usize, lsn: Lsn) {
        if let Some(s) = self.slots.get(server) {
            if s.flush_refused.load(Relaxed) {
                return;
            }
            let old = s.want_flush.fetch_max(lsn.0, AcqRel);
            if old == 0 {
                let seen = s.last.lock().and_then(|x| x.flush).map_or(0, |f| f.0);
                s.flush_seen.store(seen, Release);
                s.flush_since.store(self.now(), Release);
            }
            if old < lsn.0 {
                s.wake.notify_one();
            }
        }
    }

    /// A sample of `server` whose query started after `after`, waiting for
    /// one (coalesced with every other caller) until `deadline`. None: the
    /// server did not answer in time.
    pub async fn sample_after(
        &self,
        server: usize,
        after: u64,
        deadline: tokio::time::Instant,
    ) -> Option<Sample> {
        let fresh = |p: &Positions| p.last(server).filter(|s| s.started > after);
        if let Some(s) = fresh(self) {
            return Some(s);
        }
        let mut rx = self.changed();
        self.request_after(server, after);
        loop {
            rx.borrow_and_update();
            if let Some(s) = fresh(self) {
                return Some(s);
            }
            if self.failed_after(server, after) {
                // The query for us ran and failed.
                return None;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return fresh(self),
            }
        }
    }

    // ----- the probe task's side -----

    /// What the probe task of `server` should do next, waiting for demand.
    pub(crate) async fn demand(&self, server: usize) -> Demand {
        let slot = &self.slots[server];
        loop {
            let notified = slot.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(d) = self.pending(server) {
                return d;
            }
            notified.await;
        }
    }

    fn pending(&self, server: usize) -> Option<Demand> {
        let slot = &self.slots[server];
        let last = *slot.last.lock();
        let started = last.map_or(0, |s| s.started);
        let want = slot.want_flush.load(Acquire);
        if want > 0 && !slot.flush_refused.load(Relaxed) {
            let since = slot.flush_since.load(Acquire);
            let poll = self.poll.as_nanos() as u64;
            match last {
                Some(s) if !s.standby && s.flush.is_some_and(|f| f.0 >= want) => {}
                // Flushing is under way (synchronous commits of other
                // sessions): give it another poll.
                Some(s)
                    if !s.standby
                        && s.flush.is_some_and(|f| f.0 > slot.flush_seen.load(Acquire)) =>
                {
                    slot.flush_seen
                        .fetch_max(s.flush.map_or(0, |f| f.0), AcqRel);
                    slot.flush_since.fetch_max(s.started, AcqRel);
                    return Some(Demand::Sample { paced: true });
                }
                // The flush position stood still for a whole poll: only the
                // WAL writer would move it, up to 3 x wal_writer_delay later.
                Some(s) if !s.standby && s.started > since.saturating_add(poll) => {
                    return Some(Demand::Flush);
                }
                _ => return Some(Demand::Sample { paced: true }),
            }
        }
        let after = slot.want_after.load(Acquire);
        if after > 0 && after >= started {
            return Some(Demand::Sample { paced: false });
        }
        if slot.waiters.load(Acquire) > 0 {
            return Some(Demand::Sample { paced: true });
        }
        None
    }

    /// Publishes a good sample.
    pub(crate) fn publish(&self, server: usize, s: Sample) {
        self.queries.fetch_add(1, Relaxed);
        let slot = &self.slots[server];
        // Samples of one server are taken one at a time, in order.
        *slot.last.lock() = Some(s);
        let after = slot.want_after.load(Acquire);
        if after < s.started {
            // Answered; a newer request raises it again.
            let _ = slot.want_after.compare_exchange(after, 0, AcqRel, Relaxed);
        }
        let want = slot.want_flush.load(Acquire);
        if s.standby || s.flush.is_some_and(|f| f.0 >= want) {
            // Flushed far enough (a standby cannot flush the primary's WAL).
            let _ = slot.want_flush.compare_exchange(want, 0, AcqRel, Relaxed);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Publishes a failed query (waiters stop waiting on this server).
    pub(crate) fn publish_failure(&self, server: usize, started: u64) {
        self.queries.fetch_add(1, Relaxed);
        let slot = &self.slots[server];
        slot.failed_at.fetch_max(started, AcqRel);
        let after = slot.want_after.load(Acquire);
        if after < started {
            let _ = slot.want_after.compare_exchange(after, 0, AcqRel, Relaxed);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The server refused the forced flush: stop asking it.
    pub(crate) fn refuse_flush(&self, server: usize) {
        let slot = &self.slots[server];
        slot.flush_refused.store(true, Relaxed);
        slot.want_flush.store(0, Release);
    }
}

/// What a probe task is asked to do between probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Demand {
    /// Run the position query; `paced`: only a waiter's poll, so wait
    /// [`Positions::poll`] after the previous one.
    Sample { paced: bool },
    /// Force a WAL flush, then sample.
    Flush,
}

/// A read waiting on a server; polling stops when the last one is dropped.
pub struct WaitGuard<'a> {
    pos: &'a Positions,
    server: usize,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.pos.slots.get(self.server) {
            s.waiters.fetch_sub(1, AcqRel);
        }
    }
}

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Positions")
            .field("servers", &self.slots.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lsn: u64, started: u64) -> Sample {
        Sample {
            standby: true,
            lsn: Lsn(lsn),
            flush: None,
            timeline: None,
            started,
        }
    }

    #[test]
    fn demand_follows_waiters_and_requests() {
        let p = Positions::new(2, DEFAULT_POSITION_POLL);
        assert_eq!(p.pending(0), None);
        {
            let _g = p.wait_guard(0);
            assert_eq!(p.pending(0), Some(Demand::Sample { paced: true }));
            assert_eq!(p.pending(1), None);
        }
        assert_eq!(p.pending(0), None, "the guard is gone");
        p.publish(1, sample(100, 10));
        p.request_after(1, 20);
        assert_eq!(p.pending(1), Some(Demand::Sample { paced: false }));
        p.publish(1, sample(120, 30));
        assert_eq!(p.pending(1), None, "a sample after 20 exists");
        // An older request is already answered.
        p.request_after(1, 25);
        assert_eq!(p.pending(1), None);
    }

    #[test]
    fn flush_is_forced_only_when_the_primary_is_behind() {
        let p = Positions::new(1, DEFAULT_POSITION_POLL);
        let primary = |lsn, flush, started| Sample {
            standby: false,
            lsn: Lsn(lsn),
            flush: Some(Lsn(flush)),
            timeline: Some(1),
            started,
        };
        p.publish(0, primary(600, 400, 1));
        p.request_flush(0, Lsn(500));
        // The WAL writer gets one poll first.
        assert_eq!(p.pending(0), Some(Demand::Sample { paced: true }));
        let since = p.slots[0].flush_since.load(Acquire);
        let poll = DEFAULT_POSITION_POLL.as_nanos() as u64;
        // Flushing advances (synchronous commits): no forcing yet.
        p.publish(0, primary(600, 450, since + poll + 1));
        assert_eq!(p.pending(0), Some(Demand::Sample { paced: true }));
        p.publish(0, primary(600, 460, since + 2 * poll + 2));
        assert_eq!(p.pending(0), Some(Demand::Sample { paced: true }));
        // Stood still for a poll: forced.
        p.publish(0, primary(600, 460, since + 3 * poll + 3));
        assert_eq!(p.pending(0), Some(Demand::Flush));
        p.publish(0, primary(700, 700, since + 3 * poll + 9));
        assert_eq!(p.pending(0), None, "flushed past the request");
        p.request_flush(0, Lsn(800));
        p.refuse_flush(0);
        p.request_flush(0, Lsn(900));
        assert_eq!(p.pending(0), None, "a refusing server is not asked again");
    }

    #[tokio::test]
    async fn sample_after_waits_for_a_fresh_sample() {
        let p = std::sync::Arc::new(Positions::new(1, DEFAULT_POSITION_POLL));
        p.publish(0, sample(100, 5));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(p.sample_after(0, 4, deadline).await, Some(sample(100, 5)));
        let q = p.clone();
        let waiter = tokio::spawn(async move { q.sample_after(0, 7, deadline).await });
        // The probe task's side: demand arrives, a sample is published.
        assert_eq!(p.demand(0).await, Demand::Sample { paced: false });
        p.publish(0, sample(150, 8));
        assert_eq!(waiter.await.unwrap(), Some(sample(150, 8)));
        // A failed query ends the wait without a sample.
        let q = p.clone();
        let waiter = tokio::spawn(async move { q.sample_after(0, 20, deadline).await });
        assert_eq!(p.demand(0).await, Demand::Sample { paced: false });
        p.publish_failure(0, 21);
        assert_eq!(waiter.await.unwrap(), None);
    }
}
