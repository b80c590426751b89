//! Causeway's counters. Sessions and pools bump cached atomics (no label
//! lookups on the hot path); the admin console and the Prometheus endpoint
//! read them.

mod stats;

pub use stats::{Averages, DbStats, StatsTotals};
