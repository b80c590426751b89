//! The configured databases as live objects: their servers, the routing
//! view of those servers, and the pools (one per user and server).

use std::collections::HashMap;
use std::sync::Arc;

use causeway_config::{
    Config, DatabaseConfig, PrimaryReads, ReplicaUnavailable, RoleHint, Routing, ServerConfig,
    ServersFrom,
};
use causeway_metrics::{DbStats, RouteStats, RywStats};
use causeway_monitor::{Monitor, MonitorConfig, ServerAddr, Snapshot};
use causeway_pool::{Limit, Login, Pool, PoolKey, PoolSettings};
use causeway_protocol::auth::Secret;
use causeway_routing::balance::Load;
use causeway_routing::{Classifier, ReadWrite, Role, ServerState, SplitConfig, Token, Topology};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::AtomicBool;
use tokio::sync::watch;

mod patroni;
mod patroni_cluster;
mod patroni_http;
pub mod statements;

use crate::credentials::Credentials;
use crate::secrets::Secrets;
use crate::security::Security;

pub struct Database {
    /// The name clients use.
    pub name: Arc<str>,
    /// Its entry; a reload that keeps the database swaps it in place (a
    /// change of servers, dbname or user rebuilds the database instead).
    cfg: RwLock<Arc<DatabaseConfig>>,
    /// `dbname` and `user` of the entry it was built from (fixed: a change
    /// rebuilds it).
    server_dbname: String,
    forced_user: Option<String>,
    pub servers: Vec<ServerConfig>,
    pub limit: Arc<Limit>,
    pub stats: Arc<DbStats>,
    /// PAUSE: no new server assignments until RESUME.
    pub paused: watch::Sender<bool>,
    /// DISABLE: new client logins refused until ENABLE.
    pub disabled: AtomicBool,
    /// Where the router sent work, and why.
    pub routes: RouteStats,
    pub ryw: RywStats,
    /// `consistency = global`: the newest token any session saw.
    pub global_token: Mutex<Option<Token>>,
    /// Bumped whenever the topology is replaced (waiting reads re-route).
    pub topo_version: Arc<watch::Sender<u64>>,
    /// Live load per server (in flight, response time), for balancing.
    pub load: Arc<Load>,
    router: RwLock<Router>,
    topology: Arc<RwLock<Arc<Topology>>>,
    /// Lag monitor (databases with more than one server).
    pub monitor: Option<Monitor>,
    /// What the monitor was started with (a change rebuilds the database).
    monitor_key: Option<(Vec<ServerAddr>, MonitorConfig)>,
    /// The server_tls_* in force (a change rebuilds the database, so no
    /// pooled connection outlives a switch to stricter TLS).
    tls_key: causeway_config::ServerTls,
    pools: RwLock<HashMap<(String, usize), Pool>>,
    /// Distinct prepared statements of this database's clients.
    pub statements: Arc<statements::Registry>,
}

/// The routing settings in force, swapped on reload.
pub struct Router {
    pub policy: ReadWrite,
    pub routing: Routing,
    pub classifier: Arc<Classifier>,
}

impl Database {
    fn new(
        name: &str,
        cfg: &DatabaseConfig,
        servers: Vec<ServerConfig>,
        config: &Config,
        secrets: &Secrets,
        security: &Security,
        carried: Option<Carried>,
    ) -> Self {
        let load = Arc::new(Load::new(servers.len()));
        let first = carry_over(static_topology(&servers), &servers, carried.as_ref());
        let topology = Arc::new(RwLock::new(Arc::new(first)));
        let topo_version = Arc::new(watch::channel(0u64).0);
        let tls_key = config.server_tls_for(cfg);
        let tls = security.server_tls(&tls_key);
        let monitor_key =
            (servers.len() > 1).then(|| monitor_setup(cfg, &servers, config, secrets, &tls));
        let monitor = monitor_key.as_ref().and_then(|(addrs, mcfg)| {
            spawn_monitor(name, addrs, mcfg, &servers, &topology, &topo_version)
        });
        Database {
            name: name.into(),
            cfg: RwLock::new(Arc::new(cfg.clone())),
            server_dbname: cfg.dbname.clone().unwrap_or_else(|| name.to_string()),
            forced_user: cfg.user.clone(),
            router: RwLock::new(router_for(config, cfg, load.clone())),
            load,
            topology,
            monitor,
            monitor_key,
            tls_key,
            servers,
            limit: Arc::new(Limit::new(
                cfg.max_db_connections.unwrap_or(config.max_db_connections),
            )),
            stats: Arc::new(DbStats::default()),
            routes: RouteStats::default(),
            ryw: RywStats::default(),
            global_token: Mutex::new(None),
            topo_version,
            paused: watch::channel(false).0,
            disabled: AtomicBool::new(false),
            pools: RwLock::new(HashMap::new()),
            statements: Arc::new(statements::Registry::with_budget(
                usize::try_from(config.max_prepared_statement_bytes).unwrap_or(usize::MAX),
            )),
        }
    }

    /// Reads the routing settings in force.
    pub fn router(&self) -> parking_lot::RwLockReadGuard<'_, Router> {
        self.router.read()
    }

    /// Whether units of work are classified and reads may go to replicas.
    pub fn splits(&self) -> bool {
        self.servers.len() > 1 && self.router.read().routing.split
    }

    /// A session saw `server` fail: probe now rather than at the next tick.
    pub fn suspect(&self, server: usize) {
        tracing::debug!(database = %self.name, server, "server failed under a client; probing now");
        if let Some(m) = &self.monitor {
            m.request_probe();
        }
    }

    /// The database name on the servers.
    pub fn dbname(&self) -> &str {
        &self.server_dbname
    }

    /// Its entry as of the last reload.
    pub fn cfg(&self) -> Arc<DatabaseConfig> {
        self.cfg.read().clone()
    }

    /// The user Causeway logs in as for this client user.
    pub fn login_user<'a>(&'a self, client_user: &'a str) -> &'a str {
        self.forced_user.as_deref().unwrap_or(client_user)
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.topology.read().clone()
    }

    pub fn pools(&self) -> Vec<Pool> {
        self.pools.read().values().cloned().collect()
    }

    /// Server connections currently lent to clients.
    pub fn active_servers(&self) -> u32 {
        self.pools()
            .iter()
            .map(|p| {
                let s = p.snapshot();
                s.open - s.idle
            })
            .sum()
    }
}

/// Until the lag monitor has probed every server, the role hints decide
/// (the server marked primary, else the first one) and no replica takes
/// reads: their lag is unknown.
fn static_topology(servers: &[ServerConfig]) -> Topology {
    let has_hint = servers.iter().any(|s| s.role == RoleHint::Primary);
    Topology {
        servers: servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let role = match s.role {
                    RoleHint::Primary => Role::Primary,
                    RoleHint::Replica => Role::Replica,
                    RoleHint::Auto if !has_hint && i == 0 => Role::Primary,
                    RoleHint::Auto => Role::Replica,
                };
                ServerState {
                    role,
                    healthy: role == Role::Primary || servers.len() == 1,
                    reads_at_floor: false,
                    time_lag: None,
                    weight: s.weight,
                    replay_lsn: None,
                }
            })
            .collect(),
        split_brain: false,
        generation: None,
    }
}

/// A rebuilt database's last routing view (the monitor's).
pub struct Carried {
    servers: Vec<ServerConfig>,
    topology: Arc<Topology>,
}

impl Carried {
    pub fn of(db: &Database) -> Carried {
        Carried {
            servers: db.servers.clone(),
            topology: db.topology(),
        }
    }
}

/// A database rebuilt with a new server list (Patroni membership) starts
/// with what its predecessor's monitor knew of the servers that stay
/// (role, health, lag), instead of the hints alone until its own monitor
/// has probed every server: reads keep their replicas and the primary
/// stays known meanwhile. Without a carried primary, the hinted one is
/// kept.
fn carry_over(mut topo: Topology, servers: &[ServerConfig], carried: Option<&Carried>) -> Topology {
    let Some(c) = carried else {
        return topo;
    };
    if c.topology.split_brain {
        return topo;
    }
    let hinted = topo.primary();
    let mut known_primary = false;
    for (i, s) in servers.iter().enumerate() {
        let Some(j) = c
            .servers
            .iter()
            .position(|o| o.host == s.host && o.port == s.port)
        else {
            continue;
        };
        let Some(old) = c.topology.servers.get(j) else {
            continue;
        };
        topo.servers[i] = ServerState {
            weight: s.weight,
            ..old.clone()
        };
        known_primary |= old.role == Role::Primary;
    }
    if !known_primary {
        if let Some(p) = hinted {
            topo.servers[p].role = Role::Primary;
            topo.servers[p].healthy = true;
        }
    }
    topo
}

fn router_for(config: &Config, db: &DatabaseConfig, load: Arc<Load>) -> Router {
    let routing = config.routing_for(db);
    let split = SplitConfig {
        strategy: routing.load_balance,
        primary_reads: match routing.primary_reads {
            PrimaryReads::Never => causeway_routing::PrimaryReads::Never,
            PrimaryReads::WhenNoReplica => causeway_routing::PrimaryReads::WhenNoReplica,
            PrimaryReads::Always => causeway_routing::PrimaryReads::Always,
        },
        replica_unavailable_error: routing.replica_unavailable == ReplicaUnavailable::Error,
    };
    Router {
        policy: ReadWrite::new(split, load),
        routing,
        classifier: Arc::new(
            Classifier::new(&config.writing_functions).strict_functions(config.strict_functions),
        ),
    }
}

/// The routing view of a monitor snapshot. Servers the monitor cannot log
/// in to keep their configured role: a monitor with the wrong password
/// must not take the database down (it cannot see replica lag, so those
/// replicas take no reads; the hinted primary takes everything).
fn monitor_topology(snap: &Snapshot, servers: &[ServerConfig], weights: &[u32]) -> Topology {
    let mut t = snap.to_weighted_topology(weights);
    if snap.primary.is_none() && !snap.split_brain {
        let hints = static_topology(servers);
        if let Some(p) = hints.primary() {
            if snap.servers[p].login_error.is_some() {
                t.servers[p].role = Role::Primary;
                t.servers[p].healthy = true;
            }
        }
    }
    t
}

/// The monitor's settings and login for one database.
pub fn monitor_setup(
    cfg: &DatabaseConfig,
    servers: &[ServerConfig],
    config: &Config,
    secrets: &Secrets,
    tls: &causeway_net::ServerTls,
) -> (Vec<ServerAddr>, MonitorConfig) {
    let user = cfg
        .monitor_user
        .clone()
        .or_else(|| config.monitor_user.clone())
        .or_else(|| cfg.user.clone())
        .or_else(|| cfg.auth_user.clone())
        .or_else(|| config.auth_user.clone())
        .unwrap_or_else(|| "postgres".to_string());
    let password = cfg
        .monitor_password
        .clone()
        .or_else(|| config.monitor_password.clone())
        .or_else(|| (cfg.user.as_deref() == Some(&user)).then(|| cfg.password.clone())?)
        .or_else(|| match secrets.get(&user) {
            Some(Secret::Plain(p)) => Some(p.clone()),
            _ => None,
        });
    let dbname = cfg.dbname.clone().unwrap_or_else(|| "postgres".into());
    let addrs = servers
        .iter()
        .map(|s| ServerAddr {
            host: s.host.clone(),
            port: s.port,
            user: user.clone(),
            password: password.clone(),
            dbname: dbname.clone(),
            tls: tls.clone(),
        })
        .collect();
    let seconds = std::time::Duration::from_secs_f64;
    let mcfg = MonitorConfig {
        interval: seconds(config.monitor_interval),
        probe_timeout: seconds(config.monitor_timeout),
        max_replica_lag_bytes: cfg
            .max_replica_lag_bytes
            .unwrap_or(config.max_replica_lag_bytes),
        max_replica_lag: seconds(cfg.max_replica_lag.unwrap_or(config.max_replica_lag)),
        hold_down: seconds(config.replica_hold_down),
        force_flush: config.ryw_force_flush,
        position_poll: seconds(config.ryw_poll_interval.max(0.00005)),
        ..MonitorConfig::default()
    };
    (addrs, mcfg)
}

/// Starts the lag monitor and a task that turns each of its snapshots into
/// the database's routing topology.
fn spawn_monitor(
    name: &str,
    addrs: &[ServerAddr],
    mcfg: &MonitorConfig,
    servers: &[ServerConfig],
    topology: &Arc<RwLock<Arc<Topology>>>,
    version: &Arc<watch::Sender<u64>>,
) -> Option<Monitor> {
    tokio::runtime::Handle::try_current().ok()?;
    tracing::info!(database = %name, user = %addrs[0].user, servers = addrs.len(), "starting lag monitor");
    let monitor = Monitor::spawn(addrs.to_vec(), mcfg.clone());
    let mut rx = monitor.subscribe();
    let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
    let servers = servers.to_vec();
    let cell = Arc::clone(topology);
    let version = Arc::clone(version);
    let name = name.to_string();
    tokio::spawn(async move {
        let mut seen_all = false;
        let mut last: Option<(Option<usize>, bool, Option<usize>)> = None;
        while rx.changed().await.is_ok() {
            let snap: Arc<Snapshot> = rx.borrow_and_update().clone();
            seen_all = seen_all || snap.servers.iter().all(|s| s.last_probe.is_some());
            if !seen_all {
                continue;
            }
            let topo = monitor_topology(&snap, &servers, &weights);
            let hinted = topo.primary().filter(|_| snap.primary.is_none());
            let now = (snap.primary, snap.split_brain, hinted);
            if last != Some(now) {
                match now {
                    (Some(p), _, _) => {
                        tracing::info!(database = %name, primary = %snap.servers[p].label, generation = snap.generation, "primary")
                    }
                    (None, true, _) => {
                        tracing::error!(database = %name, "split brain: more than one server claims to be primary; writes refused")
                    }
                    (None, false, Some(p)) => {
                        tracing::error!(database = %name, primary = %snap.servers[p].label,
                            "the monitor cannot log in: routing by the configured roles (everything to the primary)")
                    }
                    (None, false, None) => {
                        tracing::warn!(database = %name, "no reachable primary; writes refused until one is found")
                    }
                }
                last = Some(now);
            }
            *cell.write() = Arc::new(topo);
            version.send_modify(|v| *v += 1);
        }
    });
    Some(monitor)
}

#[derive(Default)]
pub struct Databases {
    /// Server-side TLS handles (shared with the App).
    pub security: Arc<Security>,
    map: Arc<patroni::Map>,
    /// `servers_from = "patroni"` databases: their watchers' views.
    sources: Mutex<HashMap<String, Arc<patroni::Source>>>,
    user_limits: Mutex<HashMap<String, Arc<Limit>>>,
    /// The configuration of the last reload, set under the map's lock: a
    /// session still holding the older config must not recreate a database
    /// that the reload just rebuilt from the new one.
    latest: RwLock<Option<(Arc<Config>, Arc<Secrets>)>>,
}

impl Databases {
    pub fn new(security: Arc<Security>) -> Databases {
        Databases {
            security,
            ..Databases::default()
        }
    }

    /// The database a client asked for, creating it from its entry (or the
    /// `*` fallback) on first use. None = unknown database.
    pub fn get(&self, name: &str, config: &Config, secrets: &Secrets) -> Option<Arc<Database>> {
        if let Some(db) = self.map.read().get(name) {
            return Some(db.clone());
        }
        let mut map = self.map.write();
        if let Some(db) = map.get(name) {
            return Some(db.clone());
        }
        let latest = self.latest.read().clone();
        let (config, secrets) = match &latest {
            Some((c, s)) => (&**c, &**s),
            None => (config, secrets),
        };
        let cfg = config.database(name)?;
        let servers = self.servers_for(name, cfg);
        let carried = self
            .sources
            .lock()
            .get(name)
            .and_then(|s| s.carried.lock().take());
        let db = Arc::new(Database::new(
            name,
            cfg,
            servers,
            config,
            secrets,
            &self.security,
            carried,
        ));
        map.insert(name.to_string(), db.clone());
        Some(db)
    }

    /// The servers of a database entry: its configured ones, or the members
    /// Patroni last reported (the configured ones until it first answers).
    /// Starts following Patroni on first use. Called under the map's lock.
    fn servers_for(&self, name: &str, cfg: &DatabaseConfig) -> Vec<ServerConfig> {
        if cfg.servers_from != ServersFrom::Patroni {
            return cfg.server_list();
        }
        let src = self
            .sources
            .lock()
            .entry(name.to_string())
            .and_modify(|s| {
                if s.urls != cfg.patroni_url {
                    *s = patroni::Source::start(
                        name,
                        cfg.patroni_url.clone(),
                        Arc::downgrade(&self.map),
                    );
                }
            })
            .or_insert_with(|| {
                patroni::Source::start(name, cfg.patroni_url.clone(), Arc::downgrade(&self.map))
            })
            .clone();
        let known = src.servers.read().clone();
        known.unwrap_or_else(|| cfg.server_list())
    }

    pub fn all(&self) -> Vec<Arc<Database>> {
        self.map.read().values().cloned().collect()
    }

    fn user_limit(&self, user: &str, config: &Config) -> Arc<Limit> {
        self.user_limits
            .lock()
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(Limit::new(config.max_user_connections_for(user))))
            .clone()
    }

    /// The pool of (database, client user, server), created on first use.
    /// `client`: what the client proved at login; used towards the server
    /// when nothing else is configured.
    pub fn pool(
        &self,
        db: &Database,
        client_user: &str,
        server: usize,
        config: &Config,
        secrets: &Secrets,
        client: &Credentials,
    ) -> Pool {
        let key = (client_user.to_string(), server);
        if let Some(p) = db.pools.read().get(&key) {
            return p.clone();
        }
        // Held while the pool is made so that a reload (which takes it for
        // writing) sees this pool, and this pool sees the reload's settings.
        let _map = self.map.read();
        let latest = self.latest.read().clone();
        let (config, secrets) = match &latest {
            Some((c, s)) => (&**c, &**s),
            None => (config, secrets),
        };
        let own = db.cfg();
        let db_cfg = config.database(&db.name).unwrap_or(&own);
        let login_user = db.login_user(client_user);
        let pool = Pool::new(
            PoolKey {
                database: db.name.to_string(),
                user: client_user.to_string(),
                server,
            },
            login_for(
                db,
                server,
                login_user,
                secrets,
                client,
                self.security.server_tls(&config.server_tls_for(db_cfg)),
            ),
            settings_for(config, db_cfg, client_user),
            db.limit.clone(),
            self.user_limit(login_user, config),
        );
        db.pools.write().entry(key).or_insert(pool).clone()
    }

    /// Applies a reloaded configuration to existing databases and pools.
    /// Databases whose servers changed are rebuilt (their pools drain).
    pub fn reload(&self, config: &Arc<Config>, secrets: &Arc<Secrets>) {
        let mut map = self.map.write();
        *self.latest.write() = Some((config.clone(), secrets.clone()));
        map.retain(|name, db| {
            let Some(cfg) = config.database(name) else {
                db.pools().iter().for_each(Pool::close);
                return false;
            };
            let servers = self.servers_for(name, cfg);
            let changed = if cfg.servers_from == ServersFrom::Patroni {
                // Role hints follow Patroni without a rebuild.
                !patroni_cluster::same_members(&servers, &db.servers)
            } else {
                servers != db.servers
            };
            if changed
                || config.server_tls_for(cfg) != db.tls_key
                || cfg.dbname != db.cfg().dbname
                || cfg.user != db.forced_user
                || (db.servers.len() > 1
                    && Some(monitor_setup(
                        cfg,
                        &db.servers,
                        config,
                        secrets,
                        &self.security.server_tls(&config.server_tls_for(cfg)),
                    )) != db.monitor_key)
            {
                if let Some(src) = self.sources.lock().get(name) {
                    *src.carried.lock() = Some(Carried::of(db));
                }
                db.pools().iter().for_each(Pool::close);
                return false;
            }
            *db.cfg.write() = Arc::new(cfg.clone());
            db.limit
                .set_max(cfg.max_db_connections.unwrap_or(config.max_db_connections));
            *db.router.write() = router_for(config, cfg, db.load.clone());
            for ((user, server), pool) in db.pools.read().iter() {
                // Keep what the clients proved; the rest comes from the new config.
                let old = pool.login();
                let client = Credentials {
                    password: old.password,
                    scram_keys: old.scram_keys,
                };
                pool.update(
                    login_for(
                        db,
                        *server,
                        db.login_user(user),
                        secrets,
                        &client,
                        self.security.server_tls(&config.server_tls_for(cfg)),
                    ),
                    settings_for(config, cfg, user),
                );
            }
            true
        });
        self.sources.lock().retain(|name, src| {
            config.database(name).is_some_and(|cfg| {
                cfg.servers_from == ServersFrom::Patroni && cfg.patroni_url == src.urls
            })
        });
        for (user, limit) in self.user_limits.lock().iter() {
            limit.set_max(config.max_user_connections_for(user));
        }
    }
}

fn login_for(
    db: &Database,
    server: usize,
    login_user: &str,
    secrets: &Secrets,
    client: &Credentials,
    tls: causeway_net::ServerTls,
) -> Login {
    let s = &db.servers[server];
    let cfg = db.cfg();
    // The database entry's password wins; else the auth_file's secret (a
    // plaintext password, or an md5 hash that works for md5 servers).
    let password = cfg
        .password
        .clone()
        .or_else(|| match secrets.get(login_user) {
            Some(Secret::Plain(p)) => Some(p.clone()),
            Some(Secret::Md5(h)) => Some(h.clone()),
            _ => None,
        })
        .or_else(|| client.password.clone());
    let mut startup = Vec::new();
    for (k, v) in [
        ("client_encoding", &cfg.client_encoding),
        ("datestyle", &cfg.datestyle),
        ("timezone", &cfg.timezone),
        ("application_name", &cfg.application_name),
    ] {
        if let Some(v) = v {
            startup.push((k.to_string(), v.clone()));
        }
    }
    Login {
        host: s.host.clone(),
        port: s.port,
        user: login_user.to_string(),
        database: db.dbname().to_string(),
        // Keys only help when no password is known.
        scram_keys: if password.is_none() {
            client.scram_keys
        } else {
            None
        },
        password,
        startup,
        tls,
    }
}

pub fn settings_for(c: &Config, db: &DatabaseConfig, user: &str) -> PoolSettings {
    use causeway_config::secs;
    PoolSettings {
        pool_size: c.pool_size_for(db, user),
        min_pool_size: db.min_pool_size.unwrap_or(c.min_pool_size),
        reserve_pool_size: c.reserve_pool_size_for(db, user),
        reserve_pool_timeout: std::time::Duration::from_secs_f64(c.reserve_pool_timeout),
        server_idle_timeout: secs(c.server_idle_timeout),
        server_lifetime: secs(db.server_lifetime.unwrap_or(c.server_lifetime)),
        server_connect_timeout: secs(c.server_connect_timeout)
            .unwrap_or(std::time::Duration::from_secs(15)),
        server_login_retry: std::time::Duration::from_secs_f64(c.server_login_retry),
        query_wait_timeout: secs(c.query_wait_timeout),
        server_check_delay: std::time::Duration::from_secs_f64(c.server_check_delay),
        server_check_query: c.server_check_query.clone(),
        connect_query: db.connect_query.clone(),
        tcp_keepalive: c.tcp_keepalive,
        internal_query_timeout: secs(c.internal_query_timeout)
            .unwrap_or(causeway_pool::INTERNAL_QUERY_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(port: u16, role: RoleHint) -> ServerConfig {
        ServerConfig {
            host: "127.0.0.1".into(),
            port,
            role,
            weight: 1,
        }
    }

    fn state(role: Role, healthy: bool, replay: Option<u64>) -> ServerState {
        ServerState {
            role,
            healthy,
            reads_at_floor: false,
            time_lag: None,
            weight: 1,
            replay_lsn: replay,
        }
    }

    /// pg1 (dead, the old leader) leaves; pg2 (promoted, confirmed by the
    /// monitor) and pg3 stay; pg4 is new.
    #[test]
    fn a_rebuild_keeps_what_the_monitor_knew_of_servers_that_stay() {
        let old = Carried {
            servers: vec![
                server(1, RoleHint::Primary),
                server(2, RoleHint::Replica),
                server(3, RoleHint::Replica),
            ],
            topology: Arc::new(Topology {
                servers: vec![
                    state(Role::Replica, false, None),
                    state(Role::Primary, true, None),
                    state(Role::Replica, true, Some(42)),
                ],
                split_brain: false,
                generation: None,
            }),
        };
        // Patroni has not yet named pg2 leader in this list: the hints
        // alone would have no primary among the servers that stay.
        let new = vec![
            server(3, RoleHint::Replica),
            server(2, RoleHint::Replica),
            server(4, RoleHint::Replica),
        ];
        let t = carry_over(static_topology(&new), &new, Some(&old));
        assert_eq!(t.primary(), Some(1), "pg2 stays the primary");
        assert!(t.servers[0].healthy, "pg3 keeps taking reads");
        assert_eq!(t.servers[0].replay_lsn, Some(42));
        assert!(!t.servers[2].healthy, "pg4 waits for its first probe");
        // Nothing carried: the hints.
        assert_eq!(
            carry_over(static_topology(&new), &new, None),
            static_topology(&new)
        );
    }

    #[test]
    fn without_a_carried_primary_the_hinted_one_stays() {
        let old = Carried {
            servers: vec![server(1, RoleHint::Auto), server(2, RoleHint::Auto)],
            topology: Arc::new(Topology {
                servers: vec![
                    state(Role::Replica, false, None),
                    state(Role::Replica, true, None),
                ],
                split_brain: false,
                generation: None,
            }),
        };
        let new = vec![server(2, RoleHint::Auto), server(5, RoleHint::Primary)];
        let t = carry_over(static_topology(&new), &new, Some(&old));
        assert_eq!(t.primary(), Some(1));
        assert!(
            t.servers[0].healthy,
            "the replica that stays keeps its reads"
        );
    }
}
