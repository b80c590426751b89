//! What to probe and how.

use std::time::Duration;

use causeway_routing::health::{
    HealthConfig, DEFAULT_BAN_INITIAL, DEFAULT_BAN_MAX, DEFAULT_HOLD_DOWN, DEFAULT_MAX_REPLICA_LAG,
    DEFAULT_MAX_REPLICA_LAG_BYTES,
};
use causeway_routing::lag::DEFAULT_LAG_HISTORY;

/// Default probe interval: 250 ms.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
/// Default probe timeout: 1 s (also the probe connections'
/// `statement_timeout`).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Time between two probes of one server. Default 250 ms.
    pub interval: Duration,
    /// Bound on each step of a probe (getting a connection, running the
    /// query), so a probe takes at most twice this. Also sent as the probe
    /// connections' `statement_timeout` (rounded to ms, at least 1 ms).
    /// Default 1 s.
    pub probe_timeout: Duration,
    /// A replica further behind than this is not routable. Default 16 MiB.
    pub max_replica_lag_bytes: u64,
    /// A replica further behind than this (Causeway's clock) is not
    /// routable. Default 5 s.
    pub max_replica_lag: Duration,
    /// How long an excluded replica must stay within the limits before it
    /// is routable again. Default 2 s.
    pub hold_down: Duration,
    /// Lag samples kept per replica for the averages. Default 16.
    pub history: usize,
    /// First failure ban. Default 1 s (doubling per ban).
    pub ban_initial: Duration,
    /// Longest failure ban. Default 60 s.
    pub ban_max: Duration,
    /// Time between two position queries of a server while a read waits
    /// on it (see `Positions`). Default 1 ms.
    pub position_poll: Duration,
    /// Reads waiting on unflushed WAL may make the primary's probe task
    /// force a flush (see `Positions`). Default true.
    pub force_flush: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: DEFAULT_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            max_replica_lag_bytes: DEFAULT_MAX_REPLICA_LAG_BYTES,
            max_replica_lag: DEFAULT_MAX_REPLICA_LAG,
            hold_down: DEFAULT_HOLD_DOWN,
            history: DEFAULT_LAG_HISTORY,
            ban_initial: DEFAULT_BAN_INITIAL,
            ban_max: DEFAULT_BAN_MAX,
            position_poll: crate::positions::DEFAULT_POSITION_POLL,
            force_flush: true,
        }
    }
}

impl MonitorConfig {
    /// The health-state-machine part of this config.
    pub fn health(&self) -> HealthConfig {
        HealthConfig {
            max_replica_lag_bytes: self.max_replica_lag_bytes,
            max_replica_lag: self.max_replica_lag,
            hold_down: self.hold_down,
            ban_initial: self.ban_initial,
            ban_max: self.ban_max,
        }
    }
}

/// Where and as whom to probe one server.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name, IP address, or a unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// The database's server_tls_* (disabled by default).
    pub tls: causeway_net::ServerTls,
}

impl ServerAddr {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> ServerAddr {
        ServerAddr {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            dbname: "postgres".into(),
            tls: causeway_net::ServerTls::default(),
        }
    }

    /// `host:port`, for logs.
    pub fn label(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Debug for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAddr")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("tls", &self.tls)
            .finish()
    }
}
