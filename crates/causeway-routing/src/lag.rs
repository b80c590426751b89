//! How far a replica is behind the primary, in bytes and in time.
//!
//! Pure bookkeeping: the monitor feeds it probe results together with the
//! `Instant` at which it got them, so tests drive time by hand.
//!
//! * **Byte lag** = the primary's latest insert LSN
//!   (`pg_current_wal_insert_lsn()`) minus the replica's replay LSN
//!   (`pg_last_wal_replay_lsn()`), 0 when the replica is ahead (it was probed
//!   after the primary).
//! * **Time lag** is measured on Causeway's own clock, never from
//!   `pg_last_xact_replay_timestamp()`: that timestamp is the primary's
//!   commit time of the last replayed transaction, so on an idle primary
//!   `now() - ts` grows without bound, it is NULL after a standby restart
//!   until a commit replays, and it is skewed by clock differences. Instead
//!   [`PrimaryLsnHistory`] remembers when Causeway *first saw* the primary at
//!   each insert LSN. A replica whose replay LSN is `R` has been missing WAL
//!   ever since the earliest sample whose LSN is beyond `R`, so its time lag
//!   is `now - that sample's time`, and 0 when it has replayed up to the
//!   newest sample. An idle primary therefore produces no lag, clock skew
//!   between the machines does not matter, and a NULL replay timestamp never
//!   makes a replica look unhealthy (it is not used at all).
//!
//! Resolution: the primary is sampled once per probe interval, so under a
//! steady write load a perfectly caught-up replica can show up to about one
//! probe interval of time lag; the limits are seconds, so that is harmless.
//!
//! One PostgreSQL quirk is handled explicitly: the insert LSN can sit just
//! past a WAL page header (e.g. right after `pg_switch_wal()`, or when the
//! last record ended exactly at a page end). A caught-up standby's replay LSN
//! then stays at the page boundary, 24 bytes (short header) or 40 bytes
//! (long header at a segment start) below the insert LSN, until more WAL
//! arrives, which on an idle primary may be never. For the time lag a replay
//! LSN at or past that page boundary counts as having reached the sample (no
//! record can start inside a page header, so nothing is missing). The byte
//! lag keeps the raw difference (those few bytes are far below any limit).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::lsn::Lsn;

/// Per-replica samples kept for averages ([`LagWindow`]).
pub const DEFAULT_LAG_HISTORY: usize = 16;

/// How long [`PrimaryLsnHistory`] remembers primary samples. A replica that
/// is behind every remembered sample reports at least `now - oldest sample`,
/// so time lag saturates near this value; keep it well above
/// `max_replica_lag`.
pub const DEFAULT_PRIMARY_HORIZON: Duration = Duration::from_secs(300);

/// PostgreSQL's default `wal_block_size` (XLOG_BLCKSZ).
pub const DEFAULT_WAL_BLOCK_SIZE: u64 = 8192;

/// MAXALIGN'd `SizeOfXLogShortPHD` (every WAL page but a segment's first).
const SHORT_PAGE_HEADER: u64 = 24;
/// MAXALIGN'd `SizeOfXLogLongPHD` (first page of a segment).
const LONG_PAGE_HEADER: u64 = 40;

/// Hard cap on primary samples (one per probe at most; 300 s at 250 ms is
/// 1200).
const MAX_PRIMARY_SAMPLES: usize = 4096;

/// `replay` has replayed everything up to `target`, treating a `target` that
/// sits just past a WAL page header as reached once replay is at the page
/// start (see the module docs).
pub fn replay_reached(replay: Lsn, target: Lsn, wal_block_size: u64) -> bool {
    if replay >= target {
        return true;
    }
    if wal_block_size == 0 {
        return false;
    }
    let offset = target.0 % wal_block_size;
    (offset == SHORT_PAGE_HEADER || offset == LONG_PAGE_HEADER) && replay.0 >= target.0 - offset
}

/// When Causeway first saw the primary's insert LSN at or beyond each value.
#[derive(Debug, Clone)]
pub struct PrimaryLsnHistory {
    /// (first seen, insert LSN), strictly increasing in both.
    samples: VecDeque<(Instant, Lsn)>,
    horizon: Duration,
    wal_block_size: u64,
}

impl Default for PrimaryLsnHistory {
    fn default() -> Self {
        PrimaryLsnHistory::new(DEFAULT_PRIMARY_HORIZON)
    }
}

impl PrimaryLsnHistory {
    pub fn new(horizon: Duration) -> PrimaryLsnHistory {
        PrimaryLsnHistory {
            samples: VecDeque::new(),
            horizon,
            wal_block_size: DEFAULT_WAL_BLOCK_SIZE,
        }
    }

    /// The server's `wal_block_size` (default 8192).
    pub fn set_wal_block_size(&mut self, size: u64) {
        self.wal_block_size = size;
    }

    pub fn wal_block_size(&self) -> u64 {
        self.wal_block_size
    }

    /// The primary's insert LSN as seen at `at`. Only a new, higher LSN adds
    /// a sample (the time it was *first* seen is what matters). A lower LSN
    /// means a different primary: the history restarts from it.
    pub fn record(&mut self, at: Instant, lsn: Lsn) {
        match self.samples.back() {
            Some(&(_, last)) if lsn == last => {}
            Some(&(_, last)) if lsn < last => {
                self.samples.clear();
                self.samples.push_back((at, lsn));
            }
            _ => self.samples.push_back((at, lsn)),
        }
        // Forget old samples, but always keep the newest.
        while self.samples.len() > 1 {
            let (t, _) = self.samples[0];
            let too_old = at
                .checked_duration_since(t)
                .is_some_and(|d| d > self.horizon);
            if too_old || self.samples.len() > MAX_PRIMARY_SAMPLES {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The newest insert LSN seen.
    pub fn latest(&self) -> Option<Lsn> {
        self.samples.back().map(|&(_, l)| l)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Forget everything (new primary or timeline).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Primary's latest insert LSN minus `replay`, 0 if negative; `None`
    /// before the first primary sample.
    pub fn byte_lag(&self, replay: Lsn) -> Option<u64> {
        self.latest().map(|l| l.saturating_sub(replay))
    }

    /// How long a replica observed at `at` with replay LSN `replay` has been
    /// missing WAL the primary had: `at` minus the time of the earliest
    /// sample it has not reached; zero when it reached the newest sample
    /// (or before any sample exists).
    pub fn time_lag(&self, replay: Lsn, at: Instant) -> Duration {
        let bs = self.wal_block_size;
        // Samples increase, and "reached" is monotone in the target.
        let first_missing = self
            .samples
            .partition_point(|&(_, l)| replay_reached(replay, l, bs));
        match self.samples.get(first_missing) {
            Some(&(t, _)) => at.saturating_duration_since(t),
            None => Duration::ZERO,
        }
    }
}

/// One lag observation of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSample {
    pub at: Instant,
    pub bytes: u64,
    pub time: Duration,
}

/// The last `capacity` lag observations of one replica, for averages.
#[derive(Debug, Clone)]
pub struct LagWindow {
    samples: VecDeque<LagSample>,
    capacity: usize,
}

impl Default for LagWindow {
    fn default() -> Self {
        LagWindow::new(DEFAULT_LAG_HISTORY)
    }
}

impl LagWindow {
    /// `capacity` 0 is treated as 1.
    pub fn new(capacity: usize) -> LagWindow {
        let capacity = capacity.max(1);
        LagWindow {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn push(&mut self, s: LagSample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn latest(&self) -> Option<LagSample> {
        self.samples.back().copied()
    }

    /// Mean byte lag over the window (rounded down).
    pub fn avg_bytes(&self) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        let sum: u128 = self.samples.iter().map(|s| u128::from(s.bytes)).sum();
        Some((sum / self.samples.len() as u128) as u64)
    }

    /// Mean time lag over the window.
    pub fn avg_time(&self) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let sum: u128 = self.samples.iter().map(|s| s.time.as_nanos()).sum();
        let avg = sum / self.samples.len() as u128;
        Some(Duration::from_nanos(avg.min(u128::from(u64::MAX)) as u64))
    }
}

/// A replica's lag right now plus its window averages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLag {
    pub bytes: u64,
    pub time: Duration,
    pub avg_bytes: u64,
    pub avg_time: Duration,
    /// The primary insert LSN the byte lag was computed against.
    pub primary_lsn: Lsn,
}

/// Primary history plus one [`LagWindow`] per server index.
#[derive(Debug, Clone)]
pub struct LagTracker {
    primary: PrimaryLsnHistory,
    windows: Vec<Option<LagWindow>>,
    history: usize,
}

impl Default for LagTracker {
    fn default() -> Self {
        LagTracker::new(DEFAULT_LAG_HISTORY, DEFAULT_PRIMARY_HORIZON)
    }
}

impl LagTracker {
    /// `history`: samples per replica for averages (N = 16 by default);
    /// `horizon`: how long primary samples are remembered.
    pub fn new(history: usize, horizon: Duration) -> LagTracker {
        LagTracker {
            primary: PrimaryLsnHistory::new(horizon),
            windows: Vec::new(),
            history,
        }
    }

    pub fn primary_history(&self) -> &PrimaryLsnHistory {
        &self.primary
    }

    pub fn set_wal_block_size(&mut self, size: u64) {
        self.primary.set_wal_block_size(size);
    }

    pub fn observe_primary(&mut self, at: Instant, insert_lsn: Lsn) {
        self.primary.record(at, insert_lsn);
    }

    /// Replica `index` had replayed up to `replay` at `at`. `None` until the
    /// primary has been seen once (no reference to measure against).
    pub fn observe_replica(
        &mut self,
        index: usize,
        at: Instant,
        replay: Lsn,
    ) -> Option<ReplicaLag> {
        let primary_lsn = self.primary.latest()?;
        let bytes = primary_lsn.saturating_sub(replay);
        let time = self.primary.time_lag(replay, at);
        if self.windows.len() <= index {
            self.windows.resize(index + 1, None);
        }
        let history = self.history;
        let w = self.windows[index].get_or_insert_with(|| LagWindow::new(history));
        w.push(LagSample { at, bytes, time });
        Some(ReplicaLag {
            bytes,
            time,
            avg_bytes: w.avg_bytes().unwrap_or(bytes),
            avg_time: w.avg_time().unwrap_or(time),
            primary_lsn,
        })
    }

    /// Drop the averages of one server (it stopped being a replica).
    pub fn forget(&mut self, index: usize) {
        if let Some(w) = self.windows.get_mut(index) {
            *w = None;
        }
    }

    /// Forget everything: a new primary or timeline.
    pub fn reset(&mut self) {
        self.primary.clear();
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn byte_lag_is_primary_minus_replay_clamped() {
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::default();
        assert_eq!(h.byte_lag(Lsn(5)), None);
        h.record(t0, Lsn(1000));
        assert_eq!(h.byte_lag(Lsn(400)), Some(600));
        assert_eq!(h.byte_lag(Lsn(1000)), Some(0));
        // Replica probed after the primary moved on: never negative.
        assert_eq!(h.byte_lag(Lsn(5000)), Some(0));
    }

    #[test]
    fn time_lag_counts_from_first_sample_the_replica_lacks() {
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::default();
        h.record(t0, Lsn(1000));
        h.record(t0 + ms(250), Lsn(2000));
        h.record(t0 + ms(500), Lsn(3000));
        // Has 1000 but not 2000: missing since t0+250.
        assert_eq!(h.time_lag(Lsn(1500), t0 + ms(1000)), ms(750));
        // Lacks everything: missing since t0.
        assert_eq!(h.time_lag(Lsn(999), t0 + ms(1000)), ms(1000));
        // Exactly at a sample counts as reached.
        assert_eq!(h.time_lag(Lsn(2000), t0 + ms(1000)), ms(500));
        assert_eq!(h.time_lag(Lsn(3000), t0 + ms(1000)), Duration::ZERO);
        // Observed before that sample was taken: no lag, not negative.
        assert_eq!(h.time_lag(Lsn(2500), t0 + ms(400)), Duration::ZERO);
    }

    #[test]
    fn idle_primary_makes_no_false_lag() {
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::default();
        h.record(t0, Lsn(7000));
        // The primary reports the same LSN for ten minutes.
        for s in 1..=600 {
            h.record(t0 + Duration::from_secs(s), Lsn(7000));
        }
        assert_eq!(h.len(), 1);
        let late = t0 + Duration::from_secs(600);
        assert_eq!(h.time_lag(Lsn(7000), late), Duration::ZERO);
        // A replica that really is behind that old position is lagging
        // by the whole time.
        assert_eq!(h.time_lag(Lsn(6999), late), Duration::from_secs(600));
    }

    #[test]
    fn first_seen_time_is_kept_for_repeated_lsn() {
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::default();
        h.record(t0, Lsn(10));
        h.record(t0 + ms(100), Lsn(20));
        h.record(t0 + ms(900), Lsn(20));
        assert_eq!(h.time_lag(Lsn(15), t0 + ms(1000)), ms(900));
    }

    #[test]
    fn idle_primary_parked_after_a_page_header_is_reached() {
        // After pg_switch_wal() the insert LSN is a segment start + 40 (long
        // page header) while a caught-up standby replays to the boundary.
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::default();
        let seg = 0x3000000u64;
        h.record(t0, Lsn(seg + 40));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(h.time_lag(Lsn(seg), later), Duration::ZERO);
        assert_eq!(h.byte_lag(Lsn(seg)), Some(40));
        // Short header on an ordinary page.
        let page = seg + 5 * 8192;
        h.record(later, Lsn(page + 24));
        assert_eq!(h.time_lag(Lsn(page), later + ms(500)), Duration::ZERO);
        // One byte short of the page start is a real miss.
        assert_eq!(h.time_lag(Lsn(page - 8), later + ms(500)), ms(500));
        // Other offsets get no slack.
        let mut h = PrimaryLsnHistory::default();
        h.record(t0, Lsn(page + 48));
        assert_eq!(h.time_lag(Lsn(page), t0 + ms(300)), ms(300));
        assert_eq!(h.time_lag(Lsn(page + 24), t0 + ms(300)), ms(300));
    }

    #[test]
    fn wal_block_size_is_respected() {
        assert!(replay_reached(Lsn(8192), Lsn(8192 + 24), 8192));
        assert!(!replay_reached(Lsn(8192), Lsn(8192 + 24), 16384));
        assert!(replay_reached(Lsn(16384), Lsn(16384 + 24), 16384));
        assert!(!replay_reached(Lsn(0), Lsn(24), 0));
    }

    #[test]
    fn lower_lsn_restarts_history() {
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::default();
        h.record(t0, Lsn(5000));
        h.record(t0 + ms(10), Lsn(100));
        assert_eq!(h.len(), 1);
        assert_eq!(h.latest(), Some(Lsn(100)));
        assert_eq!(h.time_lag(Lsn(50), t0 + ms(110)), ms(100));
    }

    #[test]
    fn old_samples_are_pruned_but_newest_kept() {
        let t0 = Instant::now();
        let mut h = PrimaryLsnHistory::new(Duration::from_secs(10));
        for i in 0..100u64 {
            h.record(t0 + Duration::from_secs(i), Lsn(i + 1));
        }
        // Only samples within 10 s of the last one survive.
        assert_eq!(h.len(), 11);
        // Behind all of them: lag saturates at the oldest kept sample.
        assert_eq!(
            h.time_lag(Lsn(0), t0 + Duration::from_secs(99)),
            Duration::from_secs(10)
        );
        let mut h = PrimaryLsnHistory::new(Duration::from_secs(1));
        h.record(t0, Lsn(1));
        h.record(t0 + Duration::from_secs(100), Lsn(1));
        assert_eq!(h.latest(), Some(Lsn(1)));
    }

    #[test]
    fn window_keeps_last_n_and_averages() {
        let t0 = Instant::now();
        let mut w = LagWindow::new(4);
        assert_eq!(w.avg_bytes(), None);
        assert_eq!(w.avg_time(), None);
        for (i, b) in [100u64, 200, 300, 400, 500, 600].into_iter().enumerate() {
            w.push(LagSample {
                at: t0 + ms(i as u64),
                bytes: b,
                time: ms(b),
            });
        }
        assert_eq!(w.len(), 4);
        assert_eq!(w.avg_bytes(), Some(450));
        assert_eq!(w.avg_time(), Some(ms(450)));
        assert_eq!(w.latest().map(|s| s.bytes), Some(600));
        // Averages do not overflow on huge values.
        let mut w = LagWindow::new(2);
        for _ in 0..2 {
            w.push(LagSample {
                at: t0,
                bytes: u64::MAX,
                time: Duration::ZERO,
            });
        }
        assert_eq!(w.avg_bytes(), Some(u64::MAX));
    }

    #[test]
    fn tracker_combines_history_and_windows() {
        let t0 = Instant::now();
        let mut t = LagTracker::new(DEFAULT_LAG_HISTORY, DEFAULT_PRIMARY_HORIZON);
        assert_eq!(t.observe_replica(1, t0, Lsn(0)), None);
        t.observe_primary(t0, Lsn(1000));
        let a = t.observe_replica(1, t0 + ms(100), Lsn(0)).unwrap();
        assert_eq!((a.bytes, a.time, a.primary_lsn), (1000, ms(100), Lsn(1000)));
        let b = t.observe_replica(1, t0 + ms(300), Lsn(1000)).unwrap();
        assert_eq!((b.bytes, b.time), (0, Duration::ZERO));
        assert_eq!((b.avg_bytes, b.avg_time), (500, ms(50)));
        // Another replica has its own window.
        let c = t.observe_replica(2, t0 + ms(300), Lsn(1000)).unwrap();
        assert_eq!(c.avg_bytes, 0);
        t.forget(1);
        let d = t.observe_replica(1, t0 + ms(400), Lsn(1000)).unwrap();
        assert_eq!(d.avg_bytes, 0);
        t.reset();
        assert!(t.primary_history().is_empty());
        assert_eq!(t.observe_replica(1, t0, Lsn(0)), None);
    }

    #[test]
    fn window_defaults_to_sixteen() {
        let t0 = Instant::now();
        let mut t = LagTracker::default();
        t.observe_primary(t0, Lsn(1600));
        // 16 observations at 0 bytes lag after one at 1600: the 1600 falls out.
        t.observe_replica(0, t0, Lsn(0));
        let mut last = None;
        for _ in 0..16 {
            last = t.observe_replica(0, t0, Lsn(1600));
        }
        assert_eq!(last.unwrap().avg_bytes, 0);
        let mut t = LagTracker::default();
        t.observe_primary(t0, Lsn(1600));
        t.observe_replica(0, t0, Lsn(0));
        for _ in 0..15 {
            last = t.observe_replica(0, t0, Lsn(1600));
        }
        assert_eq!(last.unwrap().avg_bytes, 100);
    }
}
