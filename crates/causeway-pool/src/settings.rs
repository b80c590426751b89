use std::time::Duration;

/// Default deadline of one internal query (`internal_query_timeout`).
pub const DEFAULT_INTERNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a pool needs from the configuration, resolved for its
/// (database, user) so the pool never looks at the config itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    pub pool_size: u32,
    pub min_pool_size: u32,
    pub reserve_pool_size: u32,
    pub reserve_pool_timeout: Duration,
    pub server_idle_timeout: Option<Duration>,
    pub server_lifetime: Option<Duration>,
    pub server_connect_timeout: Duration,
    pub server_login_retry: Duration,
    pub query_wait_timeout: Option<Duration>,
    pub server_check_delay: Duration,
    /// Empty = no check.
    pub server_check_query: String,
    pub connect_query: Option<String>,
    pub tcp_keepalive: bool,
    /// Deadline of each of Causeway's own queries on a connection.
    pub internal_query_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            server_idle_timeout: Some(Duration::from_secs(600)),
            server_lifetime: Some(Duration::from_secs(3600)),
            server_connect_timeout: Duration::from_secs(15),
            server_login_retry: Duration::from_secs(15),
            query_wait_timeout: Some(Duration::from_secs(120)),
            server_check_delay: Duration::from_secs(30),
            server_check_query: "select 1".into(),
            connect_query: None,
            tcp_keepalive: true,
            internal_query_timeout: DEFAULT_INTERNAL_TIMEOUT,
        }
    }
}
