//! Causeway's counters. Sessions and pools bump cached atomics (no label
//! lookups on the hot path); the admin console and the Prometheus endpoint
//! read them.
//!
//! - `stats` ([`DbStats`]): per-database counters with PgBouncer's SHOW STATS meaning,
//!   plus duration histograms.
//! - [`histogram`]: the lock-free fixed-bucket [`AtomicHistogram`].
//! - [`snapshot`]: plain data the binary fills at scrape time.
//! - [`exporter`]: renders a [`Snapshot`] with `prometheus-client`.
//! - [`server`]: the `/metrics`, `/health`, `/ready` HTTP endpoint.

pub mod exporter;
pub mod histogram;
mod route;
pub mod server;
pub mod snapshot;
mod stats;

pub use exporter::{render, Exporter, Format, SnapshotCollector, SourceCollector};
pub use histogram::{AtomicHistogram, HistogramSnapshot, DURATION_BUCKETS};
pub use route::{RouteReason, RouteStats, RywStats};
pub use server::{serve, serve_with, Limits, HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
pub use snapshot::{
    DbRow, PoolRow, RouteRow, RywRow, ServerRow, Snapshot, Source, StatsTotals, TlsRow,
};
pub use stats::{Averages, DbStats};
