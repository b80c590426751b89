//! Plain data the binary fills at scrape time and the exporter renders.
//!
//! Nothing here holds a lock or refers back to live state: the binary copies
//! what it has (atomics, pool counts, monitor state) into a [`Snapshot`], and
//! [`crate::exporter`] turns it into the exposition text. Label values are
//! owned `String`s; the exporter escapes them.

use crate::histogram::HistogramSnapshot;

/// Everything one scrape exposes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub databases: Vec<DbRow>,
    pub pools: Vec<PoolRow>,
    pub servers: Vec<ServerRow>,
    pub routing: Vec<RouteRow>,
    pub ryw: Vec<RywRow>,
    /// TLS handshakes by side and outcome.
    pub tls: Vec<TlsRow>,
    /// Client connections open right now (all databases).
    pub clients_total: u64,
    /// The configured `max_client_conn`.
    pub max_client_conn: u64,
    /// Seconds since the process started.
    pub up_seconds: f64,
}

/// Per-database traffic (see [`crate::DbStats::row`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbRow {
    pub name: String,
    pub totals: StatsTotals,
    pub wait: HistogramSnapshot,
    pub query: HistogramSnapshot,
    pub xact: HistogramSnapshot,
}

/// One server pool of a (database, user): the pool towards one server.
///
/// Server-side counts are exposed per (database, user, server, role). The
/// client-side counts (`cl_*`) are summed over the rows of the same
/// (database, user) and `maxwait_seconds` is their maximum, so count each
/// client in exactly one row (e.g. the pool it is linked to or waiting for).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    /// `host:port`.
    pub server: String,
    /// `primary`, `replica` or `unknown`.
    pub role: String,
    pub pool_size: u64,
    pub cl_active: u64,
    pub cl_waiting: u64,
    pub cl_idle: u64,
    /// Clients pinned to a server of this pool by session state.
    pub cl_pinned: u64,
    pub sv_active: u64,
    pub sv_idle: u64,
    pub sv_login: u64,
    pub sv_tested: u64,
    /// How long the oldest waiting client has waited.
    pub maxwait_seconds: f64,
}

/// One backend server of a database, as the monitor and router see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerRow {
    pub database: String,
    /// `host:port`.
    pub server: String,
    /// `primary`, `replica` or `unknown`.
    pub role: String,
    pub up: bool,
    pub banned: bool,
    /// Queries/transactions currently routed to it.
    pub in_flight: u64,
    /// Replica's `pg_last_wal_replay_lsn()` as a byte position. `None`:
    /// the series is left out.
    pub replay_lsn: Option<u64>,
    /// Bytes of WAL behind the primary. `None`: left out.
    pub lag_bytes: Option<u64>,
    /// Replay lag in seconds. `None`: left out.
    pub lag_seconds: Option<f64>,
    /// Load-balancing weight.
    pub weight: u32,
    /// The lag monitor cannot log in to this server (it is routed by its
    /// configured role only).
    pub monitor_login_error: bool,
}

/// How many statements the router sent where, and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteRow {
    pub database: String,
    /// `primary` or `replica`.
    pub target: String,
    /// e.g. `write`, `hazard`, `hint`, `no_replica`, `retry_25006`,
    /// `fallback`, `read`.
    pub reason: String,
    pub count: u64,
}

/// Read-your-writes bookkeeping of one database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RywRow {
    pub database: String,
    /// Times a session's write token moved forward.
    pub token_advances: u64,
    /// Time spent waiting for a replica to catch up with a token.
    pub waits: HistogramSnapshot,
    /// Reads sent to the primary because no replica caught up in time.
    pub fallbacks: u64,
    /// Failures while checking or waiting for a replica's position.
    pub errors: u64,
    /// Position queries the monitor ran for waiting reads (all servers).
    pub position_queries: u64,
    /// WAL flushes the monitor forced on the primary for reads waiting on
    /// `synchronous_commit = off` writes.
    pub forced_flushes: u64,
}

/// TLS handshakes of one side with one outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsRow {
    /// `client` (clients connecting to Causeway) or `server` (Causeway
    /// connecting to servers).
    pub side: String,
    /// `ok`, or why it failed: `plaintext_refused`, `server_refused`,
    /// `disabled`, `bad_certificate`, `incompatible`, `no_alpn`,
    /// `protocol`, `io`.
    pub result: String,
    pub count: u64,
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

/// What the endpoint reads. Implemented by the binary.
pub trait Source: Send + Sync + 'static {
    /// A fresh copy of everything to expose; called once per scrape.
    fn snapshot(&self) -> Snapshot;
    /// Whether the pooler is ready for traffic (`/ready`).
    fn ready(&self) -> bool;
    /// Problems that leave it ready but need an operator (one line each,
    /// listed in the `/ready` body).
    fn ready_notes(&self) -> Vec<String> {
        Vec::new()
    }
}
