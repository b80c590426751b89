//! The configuration model. Names and defaults follow PgBouncer where it
//! has the setting, so a PgBouncer user recognises every key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    #[default]
    Session,
    Transaction,
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AuthType {
    #[serde(rename = "trust")]
    Trust,
    /// md5, or SCRAM when the stored secret is a SCRAM verifier (as PgBouncer).
    #[default]
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// Cleartext password: only sensible over TLS; kept for compatibility.
    #[serde(rename = "plain")]
    Plain,
    /// TLS client certificate (signed by client_tls_ca_file) whose
    /// CommonName is the user name.
    #[serde(rename = "cert")]
    Cert,
    /// The method comes from the first matching line of `auth_hba_file`.
    #[serde(rename = "hba")]
    Hba,
}

/// PgBouncer's `client_tls_sslmode` / `server_tls_sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    #[default]
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A file mode such as `unix_socket_mode`: an octal string (`"0777"`) or
/// a TOML integer (`0o777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        let mode = match Raw::deserialize(d)? {
            Raw::Int(n) => n,
            Raw::Text(t) => {
                u32::from_str_radix(t.trim().trim_start_matches("0o"), 8).map_err(|_| {
                    serde::de::Error::custom(format!("{t:?} is not an octal file mode"))
                })?
            }
        };
        if mode > 0o7777 {
            return Err(serde::de::Error::custom(format!(
                "{mode:o} is not a file mode"
            )));
        }
        Ok(FileMode(mode))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RoleHint {
    /// Discover with pg_is_in_recovery() (the routing issue); treated as
    /// "primary if first" until then.
    #[default]
    Auto,
    Primary,
    Replica,
}

/// The source of a database's server list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServersFrom {
    /// The `host`/`servers` entries of the configuration.
    #[default]
    Config,
    /// The members Patroni reports (`patroni_url`).
    Patroni,
}

/// How reads are spread over the routable replicas: routing's own type.
pub use causeway_routing::balance::Strategy as LoadBalance;

/// Whether the primary takes reads too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryReads {
    /// Reads never go to the primary (no routable replica: error).
    Never,
    /// Only when no replica is routable.
    #[default]
    WhenNoReplica,
    /// The primary is one more candidate for every read.
    Always,
}

/// What a read gets when no replica is routable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaUnavailable {
    /// Run it on the primary.
    #[default]
    Primary,
    /// Fail it with SQLSTATE 57P03 (the client may retry).
    Error,
}

/// Read-your-writes guarantee (see docs/consistency.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Plain lag-aware routing.
    None,
    /// Each session reads its own writes, and never goes back in time.
    #[default]
    Session,
    /// Every session honours the newest write token of this instance.
    Global,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::None => "none",
            Consistency::Session => "session",
            Consistency::Global => "global",
        }
    }

    pub fn parse(v: &str) -> Option<Consistency> {
        match v.to_ascii_lowercase().as_str() {
            "none" => Some(Consistency::None),
            "session" => Some(Consistency::Session),
            "global" => Some(Consistency::Global),
            _ => None,
        }
    }
}

/// What a read gets when no replica caught up with its token in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RywFallback {
    #[default]
    Primary,
    /// SQLSTATE 57P03, retryable.
    Error,
}

/// Top-level settings (PgBouncer's `[pgbouncer]` section) plus the
/// `[databases.*]` and `[users.*]` tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Comma-separated addresses; `*` = every IPv4 and IPv6 address;
    /// empty = unix socket only.
    pub listen_addr: String,
    pub listen_port: u16,
    /// Directory of the listening unix socket `.s.PGSQL.<listen_port>`
    /// (empty = none).
    pub unix_socket_dir: String,
    pub unix_socket_mode: FileMode,
    /// Group owning the socket file (empty = the process's).
    pub unix_socket_group: String,
    /// Tokio worker threads; 0 = one per core.
    pub workers: usize,
    pub pool_mode: PoolMode,
    pub auth_type: AuthType,
    pub auth_file: Option<PathBuf>,
    /// pg_hba.conf-format rules for `auth_type = hba`.
    pub auth_hba_file: Option<PathBuf>,
    /// User that runs `auth_query` on the database's primary (none = off).
    pub auth_user: Option<String>,
    pub auth_query: String,
    pub auth_dbname: Option<String>,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,

    pub max_client_conn: u32,
    pub default_pool_size: u32,
    pub min_pool_size: u32,
    pub reserve_pool_size: u32,
    /// Seconds a client waits before the reserve pool may serve it.
    pub reserve_pool_timeout: f64,
    /// 0 = unlimited.
    pub max_db_connections: u32,
    pub max_user_connections: u32,

    pub server_idle_timeout: f64,
    pub server_lifetime: f64,
    pub server_connect_timeout: f64,
    pub server_login_retry: f64,
    pub query_timeout: f64,
    pub query_wait_timeout: f64,
    pub client_idle_timeout: f64,
    pub client_login_timeout: f64,
    /// Logins in progress (accepted, not yet authenticated), in all.
    pub client_login_slots: u32,
    /// Logins in progress from one source address.
    pub client_login_slots_per_addr: u32,
    pub idle_transaction_timeout: f64,
    pub server_reset_query: String,
    pub server_reset_query_always: bool,
    /// Protocol-level named prepared statements tracked per server
    /// connection in transaction/statement mode (0 = pass-through).
    pub max_prepared_statements: u32,
    /// Bytes of statement text (of those prepared statements) kept per
    /// database, shared by its clients; a Parse beyond it is forwarded
    /// without being kept. Not in PgBouncer.
    pub max_prepared_statement_bytes: u64,
    pub server_check_delay: f64,
    pub server_check_query: String,
    /// Seconds each query Causeway sends itself may take (check, reset,
    /// parameter sync, connect_query, DEALLOCATE, LSN queries, auth_query);
    /// then the server connection is closed. Not in PgBouncer.
    pub internal_query_timeout: f64,

    /// Largest protocol message accepted from a client, bytes.
    pub max_packet_size: u32,
    /// Parameters re-applied on server switches besides PgBouncer's fixed five.
    pub track_extra_parameters: Vec<String>,
    /// Transaction/statement mode: keep a client on its server while it
    /// holds session state no other server can be given (temporary tables,
    /// LISTEN, session advisory locks, SET SESSION AUTHORIZATION, WITH HOLD
    /// cursors). Off: PgBouncer's behaviour (the state stays behind).
    pub pin_session_state: bool,
    /// Startup parameters accepted and dropped instead of tracked.
    pub ignore_startup_parameters: Vec<String>,
    pub tcp_keepalive: bool,
    pub so_reuseport: bool,

    /// TLS towards clients (PgBouncer's names and meanings).
    pub client_tls_sslmode: SslMode,
    pub client_tls_key_file: Option<PathBuf>,
    pub client_tls_cert_file: Option<PathBuf>,
    /// CA that client certificates must chain to.
    pub client_tls_ca_file: Option<PathBuf>,
    pub client_tls_protocols: String,
    pub client_tls_ciphers: String,
    /// TLS towards servers; each database may override every one.
    pub server_tls_sslmode: SslMode,
    pub server_tls_ca_file: Option<PathBuf>,
    pub server_tls_key_file: Option<PathBuf>,
    pub server_tls_cert_file: Option<PathBuf>,
    pub server_tls_protocols: String,
    pub server_tls_ciphers: String,

    pub log_connections: bool,
    pub log_disconnections: bool,
    pub log_pooler_errors: bool,
    pub log_format: LogFormat,
    /// tracing filter, e.g. "info" or "causeway=debug".
    pub log_level: String,
    pub stats_period: f64,
    /// Prometheus endpoint (`host:port`); empty = disabled.
    pub metrics_addr: String,
    /// Send provably read-only work to replicas (databases with replicas).
    pub read_write_split: bool,
    pub load_balance: LoadBalance,
    pub primary_reads: PrimaryReads,
    pub replica_unavailable: ReplicaUnavailable,
    /// Keep a session's reads on the replica it last used while it stays routable.
    pub sticky_reads: bool,
    /// Times a read is retried on another server when a replica failed it
    /// before any row reached the client.
    pub read_retries: u32,
    /// Seconds a replica may be behind before it stops taking reads.
    pub max_replica_lag: f64,
    /// Bytes of WAL a replica may be behind before it stops taking reads.
    pub max_replica_lag_bytes: u64,
    /// Seconds an excluded replica must stay within the limits to come back.
    pub replica_hold_down: f64,
    /// Seconds between two probes of a server by the lag monitor.
    pub monitor_interval: f64,
    /// Bound on each probe step; also the probe's statement_timeout.
    pub monitor_timeout: f64,
    /// Role the monitor logs in as (default: the database's `user`, else
    /// `auth_user`, else `postgres`).
    pub monitor_user: Option<String>,
    pub monitor_password: Option<String>,
    /// Functions that write (besides the built-in list): calls go to the primary.
    pub writing_functions: Vec<String>,
    /// Treat every function not known to be read-only as writing.
    pub strict_functions: bool,
    /// Read-your-writes: none | session | global.
    pub consistency: Consistency,
    /// Seconds a read waits for a replica to catch up with its token.
    pub ryw_wait_timeout: f64,
    /// Then: primary | error.
    pub ryw_fallback: RywFallback,
    /// A read waiting on a `synchronous_commit = off` write may make the
    /// monitor flush the primary's WAL (see docs/consistency.md).
    pub ryw_force_flush: bool,
    /// Seconds between two position queries of a server while reads wait
    /// on it.
    pub ryw_poll_interval: f64,

    /// PgBouncer's `peer_id`: this instance's id among peered instances
    /// (1-16383), carried in every cancel key it hands out; 0 = no peering.
    pub peer_id: u16,
    /// PgBouncer's `[peers]`: where each instance of the group listens, by
    /// peer id. A cancel key of another peer is forwarded there.
    pub peers: BTreeMap<String, PeerConfig>,

    pub databases: BTreeMap<String, DatabaseConfig>,
    pub users: BTreeMap<String, UserConfig>,
}

/// One `[peers]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// Host name, IP address, or a unix socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            host: String::new(),
            port: 6432,
        }
    }
}

/// Largest `peer_id`: PgBouncer's limit (14 bits in the cancel key).
pub const MAX_PEER_ID: u16 = 16383;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: "127.0.0.1".into(),
            listen_port: 6432,
            unix_socket_dir: String::new(),
            unix_socket_mode: FileMode(0o777),
            unix_socket_group: String::new(),
            workers: 0,
            pool_mode: PoolMode::Session,
            auth_type: AuthType::Md5,
            auth_file: None,
            auth_hba_file: None,
            auth_user: None,
            auth_query: "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin".into(),
            auth_dbname: None,
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            max_client_conn: 100,
            default_pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: 5.0,
            max_db_connections: 0,
            max_user_connections: 0,
            server_idle_timeout: 600.0,
            server_lifetime: 3600.0,
            server_connect_timeout: 15.0,
            server_login_retry: 15.0,
            query_timeout: 0.0,
            query_wait_timeout: 120.0,
            client_idle_timeout: 0.0,
            client_login_timeout: 60.0,
            client_login_slots: 1024,
            client_login_slots_per_addr: 256,
            idle_transaction_timeout: 0.0,
            server_reset_query: "DISCARD ALL".into(),
            server_reset_query_always: false,
            pin_session_state: false,
            max_prepared_statements: 200,
            max_prepared_statement_bytes: 64 << 20,
            server_check_delay: 30.0,
            server_check_query: "select 1".into(),
            internal_query_timeout: 10.0,
            // PostgreSQL's own limit for a Query or Parse
            // (PQ_LARGE_MESSAGE_LIMIT = MaxAllocSize - 1).
            max_packet_size: 1_073_741_822,
            track_extra_parameters: vec!["IntervalStyle".into()],
            ignore_startup_parameters: Vec::new(),
            tcp_keepalive: true,
            so_reuseport: false,
            client_tls_sslmode: SslMode::Disable,
            client_tls_key_file: None,
            client_tls_cert_file: None,
            client_tls_ca_file: None,
            client_tls_protocols: "secure".into(),
            client_tls_ciphers: "fast".into(),
            server_tls_sslmode: SslMode::Disable,
            server_tls_ca_file: None,
            server_tls_key_file: None,
            server_tls_cert_file: None,
            server_tls_protocols: "secure".into(),
            server_tls_ciphers: "fast".into(),
            log_connections: true,
            log_disconnections: true,
            log_pooler_errors: true,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            stats_period: 60.0,
            metrics_addr: "127.0.0.1:9930".into(),
            read_write_split: true,
            load_balance: LoadBalance::RoundRobin,
            primary_reads: PrimaryReads::WhenNoReplica,
            replica_unavailable: ReplicaUnavailable::Primary,
            sticky_reads: false,
            read_retries: 2,
            max_replica_lag: 5.0,
            max_replica_lag_bytes: 16 * 1024 * 1024,
            replica_hold_down: 2.0,
            monitor_interval: 0.25,
            monitor_timeout: 1.0,
            monitor_user: None,
            monitor_password: None,
            writing_functions: Vec::new(),
            strict_functions: false,
            consistency: Consistency::Session,
            ryw_wait_timeout: 0.1,
            ryw_fallback: RywFallback::Primary,
            ryw_force_flush: true,
            ryw_poll_interval: 0.001,
            peer_id: 0,
            peers: BTreeMap::new(),
            databases: BTreeMap::new(),
            users: BTreeMap::new(),
        }
    }
}

/// One server of a database: the primary or a streaming replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    #[serde(default)]
    pub role: RoleHint,
    /// Relative share of reads (weighted balancing).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl ServerConfig {
    /// `host:port`, for logs and SHOW output.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn default_pg_port() -> u16 {
    5432
}
fn default_weight() -> u32 {
    1
}

/// PgBouncer's `[databases]` entry. `name = "*"` is the fallback for
/// databases not listed.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Database name on the servers (default: the client's database name).
    pub dbname: Option<String>,
    /// Shorthand for a single primary server (`host`/`port`).
    pub host: Option<String>,
    pub port: Option<u16>,
    pub servers: Vec<ServerConfig>,
    /// Where the server list comes from: `config` (the entries above) or
    /// `patroni` (the members of Patroni's `GET /cluster`, kept in sync;
    /// `servers` above then only serve until Patroni first answers).
    pub servers_from: ServersFrom,
    /// Patroni REST API base addresses (`http://host:8008`), tried in turn.
    pub patroni_url: Vec<String>,
    /// Force this server login user (PgBouncer's `user=`).
    pub user: Option<String>,
    pub password: Option<String>,
    pub auth_user: Option<String>,
    pub pool_size: Option<u32>,
    pub min_pool_size: Option<u32>,
    pub reserve_pool_size: Option<u32>,
    pub pool_mode: Option<PoolMode>,
    pub max_db_connections: Option<u32>,
    pub server_lifetime: Option<f64>,
    /// Run once on each new server connection.
    pub connect_query: Option<String>,
    /// Startup parameters sent to the server (e.g. client_encoding).
    pub client_encoding: Option<String>,
    pub datestyle: Option<String>,
    pub timezone: Option<String>,
    pub application_name: Option<String>,
    /// Overrides of the top-level routing settings for this database.
    pub read_write_split: Option<bool>,
    pub load_balance: Option<LoadBalance>,
    pub primary_reads: Option<PrimaryReads>,
    pub replica_unavailable: Option<ReplicaUnavailable>,
    pub sticky_reads: Option<bool>,
    pub max_replica_lag: Option<f64>,
    pub max_replica_lag_bytes: Option<u64>,
    pub monitor_user: Option<String>,
    pub monitor_password: Option<String>,
    pub consistency: Option<Consistency>,
    /// Overrides of the top-level server_tls_* settings.
    pub server_tls_sslmode: Option<SslMode>,
    pub server_tls_ca_file: Option<PathBuf>,
    pub server_tls_key_file: Option<PathBuf>,
    pub server_tls_cert_file: Option<PathBuf>,
    pub server_tls_protocols: Option<String>,
    pub server_tls_ciphers: Option<String>,
}

impl DatabaseConfig {
    /// The servers, with the `host`/`port` shorthand folded in first.
    pub fn server_list(&self) -> Vec<ServerConfig> {
        let mut v = Vec::new();
        if let Some(h) = &self.host {
            v.push(ServerConfig {
                host: h.clone(),
                port: self.port.unwrap_or(5432),
                role: RoleHint::Primary,
                weight: 1,
            });
        }
        v.extend(self.servers.iter().cloned());
        v
    }
}

/// PgBouncer's `[users]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
    pub reserve_pool_size: Option<u32>,
    pub max_user_connections: Option<u32>,
    pub max_user_client_connections: Option<u32>,
    /// Read-your-writes mode for this user's sessions.
    pub consistency: Option<Consistency>,
}

impl Config {
    /// The entry serving a client's database name: its own or the `*` fallback.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.get(name).or_else(|| self.databases.get("*"))
    }

    pub fn pool_mode_for(&self, db: &DatabaseConfig, user: &str) -> PoolMode {
        self.users
            .get(user)
            .and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(self.pool_mode)
    }

    pub fn pool_size_for(&self, db: &DatabaseConfig, user: &str) -> u32 {
        self.users
            .get(user)
            .and_then(|u| u.pool_size)
            .or(db.pool_size)
            .unwrap_or(self.default_pool_size)
    }

    pub fn reserve_pool_size_for(&self, db: &DatabaseConfig, user: &str) -> u32 {
        self.users
            .get(user)
            .and_then(|u| u.reserve_pool_size)
            .or(db.reserve_pool_size)
            .unwrap_or(self.reserve_pool_size)
    }

    pub fn max_user_connections_for(&self, user: &str) -> u32 {
        self.users
            .get(user)
            .and_then(|u| u.max_user_connections)
            .unwrap_or(self.max_user_connections)
    }

    /// The routing settings of one database (its overrides, else the
    /// top-level values).
    pub fn routing_for(&self, db: &DatabaseConfig) -> Routing {
        Routing {
            split: db.read_write_split.unwrap_or(self.read_write_split),
            load_balance: db.load_balance.unwrap_or(self.load_balance),
            primary_reads: db.primary_reads.unwrap_or(self.primary_reads),
            replica_unavailable: db.replica_unavailable.unwrap_or(self.replica_unavailable),
            sticky_reads: db.sticky_reads.unwrap_or(self.sticky_reads),
            read_retries: self.read_retries,
        }
    }

    /// The read-your-writes mode of a user's sessions on a database.
    pub fn consistency_for(&self, db: &DatabaseConfig, user: &str) -> Consistency {
        self.users
            .get(user)
            .and_then(|u| u.consistency)
            .or(db.consistency)
            .unwrap_or(self.consistency)
    }

    /// The server_tls_* settings in force for a database.
    pub fn server_tls_for(&self, db: &DatabaseConfig) -> ServerTls {
        ServerTls {
            sslmode: db.server_tls_sslmode.unwrap_or(self.server_tls_sslmode),
            ca_file: db
                .server_tls_ca_file
                .clone()
                .or_else(|| self.server_tls_ca_file.clone()),
            key_file: db
                .server_tls_key_file
                .clone()
                .or_else(|| self.server_tls_key_file.clone()),
            cert_file: db
                .server_tls_cert_file
                .clone()
                .or_else(|| self.server_tls_cert_file.clone()),
            protocols: db
                .server_tls_protocols
                .clone()
                .unwrap_or_else(|| self.server_tls_protocols.clone()),
            ciphers: db
                .server_tls_ciphers
                .clone()
                .unwrap_or_else(|| self.server_tls_ciphers.clone()),
        }
    }

    /// A copy fit for printing: every password replaced.
    pub fn masked(&self) -> Config {
        let mut c = self.clone();
        for db in c.databases.values_mut() {
            if db.password.is_some() {
                db.password = Some("********".into());
            }
            if db.monitor_password.is_some() {
                db.monitor_password = Some("********".into());
            }
        }
        if c.monitor_password.is_some() {
            c.monitor_password = Some("********".into());
        }
        c
    }
}

/// A database's effective server_tls_* settings (see [`Config::server_tls_for`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerTls {
    pub sslmode: SslMode,
    pub ca_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub protocols: String,
    pub ciphers: String,
}

/// A database's effective routing settings (see [`Config::routing_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    pub split: bool,
    pub load_balance: LoadBalance,
    pub primary_reads: PrimaryReads,
    pub replica_unavailable: ReplicaUnavailable,
    pub sticky_reads: bool,
    pub read_retries: u32,
}
