//! A lock-free, fixed-bucket histogram of durations.
//!
//! `observe` is two relaxed `fetch_add`s (one bucket, the sum) after a
//! branch-light search over 16 constant bounds: no lock, no allocation, no
//! label lookup. Readers take a [`HistogramSnapshot`] at scrape time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the finite buckets, in seconds (`le` labels). A last,
/// implicit `+Inf` bucket catches everything above 10 s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The same bounds in nanoseconds, so `observe` compares integers.
const BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Number of buckets, `+Inf` included.
pub const BUCKET_COUNT: usize = DURATION_BUCKETS.len() + 1;

/// Lock-free histogram over [`DURATION_BUCKETS`] (+Inf).
///
/// Bucket counters are per bucket (not cumulative), so an observation touches
/// exactly one of them; [`snapshot`](Self::snapshot) accumulates. The count is
/// derived from the buckets, so a snapshot's `count` always equals its `+Inf`
/// bucket even while writers race with the reader. The sum is kept in
/// nanoseconds (u64): it wraps, like any counter reset, only after ~584 years
/// of summed durations.
pub struct AtomicHistogram {
    counts: [AtomicU64; BUCKET_COUNT],
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    pub const fn new() -> Self {
        // `AtomicU64` is not `Copy`; a const item may be repeated.
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        Self {
            counts: [ZERO; BUCKET_COUNT],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Index of the bucket `d` falls in: the first bound `>= d` (`le`
    /// semantics), or the `+Inf` bucket.
    #[inline]
    fn bucket_of(ns: u64) -> usize {
        BOUNDS_NS.partition_point(|&b| b < ns)
    }

    /// Records one duration. Two relaxed atomic adds, no allocation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::bucket_of(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// A consistent-enough copy for exposition: cumulative bucket counts
    /// (`le` semantics) ending with `+Inf`, whose value is `count`.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(BUCKET_COUNT);
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative = cumulative.wrapping_add(c.load(Relaxed));
            let upper = DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((upper, cumulative));
        }
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            count: cumulative,
        }
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicHistogram")
            .field("count", &self.count())
            .field("sum_ns", &self.sum_ns.load(Relaxed))
            .finish()
    }
}

/// A plain copy of a histogram, as Prometheus exposes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, cumulative count)`, ascending, normally
    /// ending with `(f64::INFINITY, count)`. The exporter appends the `+Inf`
    /// bucket when it is missing.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl HistogramSnapshot {
    /// An empty histogram over [`DURATION_BUCKETS`] (all buckets at zero), for
    /// a series that should exist before its first observation.
    pub fn empty() -> Self {
        AtomicHistogram::new().snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_agree() {
        for (s, ns) in DURATION_BUCKETS.iter().zip(BOUNDS_NS) {
            assert_eq!(Duration::from_secs_f64(*s).as_nanos() as u64, ns);
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn le_semantics_and_cumulative_snapshot() {
        let h = AtomicHistogram::new();
        h.observe(Duration::ZERO); // first bucket
        h.observe(Duration::from_micros(100)); // exactly on 0.0001: le, first bucket
        h.observe(Duration::from_nanos(100_001)); // just above: 0.00025
        h.observe(Duration::from_millis(3)); // 0.005
        h.observe(Duration::from_secs(10)); // 10
        h.observe(Duration::from_secs(11)); // +Inf
        h.observe(Duration::MAX); // +Inf (the sum wraps; count is unaffected)
        let s = h.snapshot();
        assert_eq!(s.count, 7);
        assert_eq!(s.buckets.len(), BUCKET_COUNT);
        assert_eq!(s.buckets[0], (0.0001, 2));
        assert_eq!(s.buckets[1], (0.00025, 3));
        assert_eq!(s.buckets[4], (0.0025, 3));
        assert_eq!(s.buckets[5], (0.005, 4));
        assert_eq!(s.buckets[14], (5.0, 4));
        assert_eq!(s.buckets[15], (10.0, 5));
        assert_eq!(s.buckets[16], (f64::INFINITY, 7));
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn sum_in_seconds() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_millis(1500));
        h.observe(Duration::from_micros(250));
        let s = h.snapshot();
        assert!((s.sum_seconds - 1.50025).abs() < 1e-12, "{}", s.sum_seconds);
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn concurrent_observers_lose_nothing() {
        let h = std::sync::Arc::new(AtomicHistogram::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(Duration::from_micros((i * 7 + t) % 20_000));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count, 40_000);
        assert_eq!(s.buckets.last().unwrap().1, 40_000);
    }

    #[test]
    fn empty_has_all_buckets() {
        let s = HistogramSnapshot::empty();
        assert_eq!(s.count, 0);
        assert_eq!(s.buckets.len(), BUCKET_COUNT);
        assert_eq!(s.buckets.last().unwrap().0, f64::INFINITY);
    }
}
