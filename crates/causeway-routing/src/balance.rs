//! Choosing among routable replicas. Strategies are pure functions of the
//! candidates, a shared [`Load`] (atomics the sessions update) and a random
//! number the caller supplies, so every choice is unit-testable.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// How reads are spread over the routable replicas (the `load_balance`
/// setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Strategy {
    #[default]
    RoundRobin,
    Random,
    /// Static weights (`weight` per server).
    Weighted,
    /// Fewest queries in flight.
    LeastOutstanding,
    /// Lowest EWMA response time x (in flight + 1).
    Latency,
}

/// Live load of a database's servers, indexed like its server list.
#[derive(Debug, Default)]
pub struct Load {
    in_flight: Vec<AtomicU32>,
    /// Exponentially weighted mean response time, microseconds (0 = none yet).
    ewma_us: Vec<AtomicU64>,
    /// Reads sent to each server (for SHOW and tests of the spread).
    served: Vec<AtomicU64>,
    rr: AtomicUsize,
}

impl Load {
    pub fn new(servers: usize) -> Self {
        Load {
            in_flight: (0..servers).map(|_| AtomicU32::new(0)).collect(),
            ewma_us: (0..servers).map(|_| AtomicU64::new(0)).collect(),
            served: (0..servers).map(|_| AtomicU64::new(0)).collect(),
            rr: AtomicUsize::new(0),
        }
    }

    /// A request starts on `server`.
    pub fn start(&self, server: usize) {
        if let Some(c) = self.in_flight.get(server) {
            c.fetch_add(1, Relaxed);
        }
        if let Some(c) = self.served.get(server) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// A request on `server` finished after `took`.
    pub fn finish(&self, server: usize, took: Duration) {
        if let Some(c) = self.in_flight.get(server) {
            let _ = c.fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
        }
        if let Some(e) = self.ewma_us.get(server) {
            let sample = took.as_micros().min(u128::from(u32::MAX)) as u64;
            let _ = e.fetch_update(Relaxed, Relaxed, |old| {
                Some(
                    if old == 0 {
                        sample.max(1)
                    } else {
                        (old * 4 + sample) / 5
                    }
                    .max(1),
                )
            });
        }
    }

    pub fn in_flight(&self, server: usize) -> u32 {
        self.in_flight.get(server).map_or(0, |c| c.load(Relaxed))
    }

    pub fn ewma_us(&self, server: usize) -> u64 {
        self.ewma_us.get(server).map_or(0, |c| c.load(Relaxed))
    }

    pub fn served(&self, server: usize) -> u64 {
        self.served.get(server).map_or(0, |c| c.load(Relaxed))
    }

    fn turn(&self) -> usize {
        self.rr.fetch_add(1, Relaxed)
    }
}

/// A routable server: (index, weight).
pub type Candidate = (usize, u32);

/// Picks one candidate; None when there are none.
pub fn pick(
    strategy: Strategy,
    candidates: &[Candidate],
    load: &Load,
    random: u64,
) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let n = candidates.len();
    let idx = match strategy {
        Strategy::RoundRobin => load.turn() % n,
        Strategy::Random => (random % n as u64) as usize,
        Strategy::Weighted => {
            let total: u64 = candidates.iter().map(|c| u64::from(c.1)).sum();
            if total == 0 {
                (random % n as u64) as usize
            } else {
                let mut r = random % total;
                let mut chosen = n - 1;
                for (i, c) in candidates.iter().enumerate() {
                    if r < u64::from(c.1) {
                        chosen = i;
                        break;
                    }
                    r -= u64::from(c.1);
                }
                chosen
            }
        }
        Strategy::LeastOutstanding => {
            min_by_score(candidates, load.turn(), |i| u64::from(load.in_flight(i)))
        }
        Strategy::Latency => min_by_score(candidates, load.turn(), |i| {
            load.ewma_us(i)
                .saturating_mul(u64::from(load.in_flight(i)) + 1)
        }),
    };
    Some(candidates[idx].0)
}

/// Lowest score; ties rotate (starting at `turn`) so equal servers share.
fn min_by_score(candidates: &[Candidate], turn: usize, score: impl Fn(usize) -> u64) -> usize {
    let n = candidates.len();
    let mut best = turn % n;
    let mut best_score = score(candidates[best].0);
    for k in 1..n {
        let i = (turn + k) % n;
        let s = score(candidates[i].0);
        if s < best_score {
            best = i;
            best_score = s;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(strategy: Strategy, cands: &[Candidate], load: &Load, rounds: u64) -> Vec<u64> {
        let mut c = vec![0u64; 4];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..rounds {
            // xorshift: a deterministic stream of "random" numbers
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c[pick(strategy, cands, load, x).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_alternates() {
        let load = Load::new(3);
        let cands = [(1, 1), (2, 1)];
        let picks: Vec<_> = (0..4)
            .map(|_| pick(Strategy::RoundRobin, &cands, &load, 0).unwrap())
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
        assert_eq!(pick(Strategy::RoundRobin, &[], &load, 0), None);
    }

    #[test]
    fn weighted_follows_weights() {
        let load = Load::new(3);
        let c = counts(Strategy::Weighted, &[(1, 1), (2, 3)], &load, 40_000);
        let share = c[2] as f64 / 40_000.0;
        assert!((0.72..0.78).contains(&share), "replica 2 share {share}");
        assert_eq!(c[0], 0);
    }

    #[test]
    fn random_spreads() {
        let load = Load::new(3);
        let c = counts(Strategy::Random, &[(1, 1), (2, 1)], &load, 10_000);
        assert!(c[1] > 4_000 && c[2] > 4_000, "{c:?}");
    }

    #[test]
    fn least_outstanding_prefers_the_idle_server() {
        let load = Load::new(3);
        load.start(1);
        load.start(1);
        load.start(2);
        for _ in 0..5 {
            assert_eq!(
                pick(Strategy::LeastOutstanding, &[(1, 1), (2, 1)], &load, 0),
                Some(2)
            );
        }
        load.finish(1, Duration::from_millis(1));
        load.finish(1, Duration::from_millis(1));
        // Now 1 has none in flight, 2 has one.
        assert_eq!(
            pick(Strategy::LeastOutstanding, &[(1, 1), (2, 1)], &load, 0),
            Some(1)
        );
    }

    #[test]
    fn latency_prefers_the_fast_server_and_counts_in_flight() {
        let load = Load::new(3);
        for _ in 0..10 {
            load.start(1);
            load.finish(1, Duration::from_millis(10));
            load.start(2);
            load.finish(2, Duration::from_millis(1));
        }
        assert_eq!(
            pick(Strategy::Latency, &[(1, 1), (2, 1)], &load, 0),
            Some(2)
        );
        // Enough in flight on the fast one flips the choice.
        for _ in 0..20 {
            load.start(2);
        }
        assert_eq!(
            pick(Strategy::Latency, &[(1, 1), (2, 1)], &load, 0),
            Some(1)
        );
    }

    #[test]
    fn ewma_moves_towards_samples() {
        let load = Load::new(1);
        load.finish(0, Duration::from_micros(1000));
        assert_eq!(load.ewma_us(0), 1000);
        load.finish(0, Duration::from_micros(0));
        assert_eq!(load.ewma_us(0), 800);
        assert_eq!(load.in_flight(0), 0, "never below zero");
    }
}
