//! The configured databases as live objects: their servers, the routing
//! view of those servers, and the pools (one per user and server).

use std::collections::HashMap;
use std::sync::Arc;

use causeway_config::{Config, DatabaseConfig, RoleHint, ServerConfig};
use causeway_metrics::DbStats;
use causeway_pool::{Limit, Login, Pool, PoolKey, PoolSettings};
use causeway_protocol::auth::Secret;
use causeway_routing::{Role, ServerState, Topology};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::AtomicBool;
use tokio::sync::watch;

use crate::secrets::Secrets;
use crate::session::Credentials;

pub struct Database {
    /// The name clients use.
    pub name: String,
    pub cfg: DatabaseConfig,
    pub servers: Vec<ServerConfig>,
    pub limit: Arc<Limit>,
    pub stats: Arc<DbStats>,
    /// PAUSE: no new server assignments until RESUME.
    pub paused: watch::Sender<bool>,
    /// DISABLE: new client logins refused until ENABLE.
    pub disabled: AtomicBool,
    topology: RwLock<Arc<Topology>>,
    pools: RwLock<HashMap<(String, usize), Pool>>,
}

impl Database {
    fn new(name: &str, cfg: &DatabaseConfig, max_db: u32) -> Self {
        let servers = cfg.server_list();
        Database {
            name: name.to_string(),
            cfg: cfg.clone(),
            topology: RwLock::new(Arc::new(static_topology(&servers))),
            servers,
            limit: Arc::new(Limit::new(cfg.max_db_connections.unwrap_or(max_db))),
            stats: Arc::new(DbStats::default()),
            paused: watch::channel(false).0,
            disabled: AtomicBool::new(false),
            pools: RwLock::new(HashMap::new()),
        }
    }

    /// The database name on the servers.
    pub fn dbname(&self) -> &str {
        self.cfg.dbname.as_deref().unwrap_or(&self.name)
    }

    /// The user Causeway logs in as for this client user.
    pub fn login_user<'a>(&'a self, client_user: &'a str) -> &'a str {
        self.cfg.user.as_deref().unwrap_or(client_user)
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

/// Until the lag monitor discovers roles, the role hints decide: the server
/// marked primary, else the first one.
fn static_topology(servers: &[ServerConfig]) -> Topology {
    let has_hint = servers.iter().any(|s| s.role == RoleHint::Primary);
    Topology {
        servers: servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerState {
                role: match s.role {
                    RoleHint::Primary => Role::Primary,
                    RoleHint::Replica => Role::Replica,
                    RoleHint::Auto if !has_hint && i == 0 => Role::Primary,
                    RoleHint::Auto => Role::Replica,
                },
                healthy: true,
                weight: s.weight,
            })
            .collect(),
    }
}

#[derive(Default)]
pub struct Databases {
    map: RwLock<HashMap<String, Arc<Database>>>,
    user_limits: Mutex<HashMap<String, Arc<Limit>>>,
}

impl Databases {
    /// The database a client asked for, creating it from its entry (or the
    /// `*` fallback) on first use. None = unknown database.
    pub fn get(&self, name: &str, config: &Config) -> Option<Arc<Database>> {
        if let Some(db) = self.map.read().get(name) {
            return Some(db.clone());
        }
        let cfg = config.database(name)?;
        let mut map = self.map.write();
        let db = map
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Database::new(name, cfg, config.max_db_connections)));
        Some(db.clone())
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
        let login_user = db.login_user(client_user);
        let pool = Pool::new(
            PoolKey {
                database: db.name.clone(),
                user: client_user.to_string(),
                server,
            },
            login_for(db, server, login_user, secrets, client),
            settings_for(config, &db.cfg, client_user),
            db.limit.clone(),
            self.user_limit(login_user, config),
        );
        db.pools.write().entry(key).or_insert(pool).clone()
    }

    /// Applies a reloaded configuration to existing databases and pools.
    /// Databases whose servers changed are rebuilt (their pools drain).
    pub fn reload(&self, config: &Config, secrets: &Secrets) {
        let mut map = self.map.write();
        map.retain(|name, db| {
            let Some(cfg) = config.database(name) else {
                db.pools().iter().for_each(Pool::close);
                return false;
            };
            if cfg.server_list() != db.servers
                || cfg.dbname != db.cfg.dbname
                || cfg.user != db.cfg.user
            {
                db.pools().iter().for_each(Pool::close);
                return false;
            }
            db.limit
                .set_max(cfg.max_db_connections.unwrap_or(config.max_db_connections));
            for ((user, server), pool) in db.pools.read().iter() {
                // Keep what the clients proved; the rest comes from the new config.
                let old = pool.login();
                let client = Credentials {
                    password: old.password,
                    scram_keys: old.scram_keys,
                };
                pool.update(
                    login_for(db, *server, db.login_user(user), secrets, &client),
                    settings_for(config, cfg, user),
                );
            }
            true
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
) -> Login {
    let s = &db.servers[server];
    // The database entry's password wins; else the auth_file's secret (a
    // plaintext password, or an md5 hash that works for md5 servers).
    let password = db
        .cfg
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
        ("client_encoding", &db.cfg.client_encoding),
        ("datestyle", &db.cfg.datestyle),
        ("timezone", &db.cfg.timezone),
        ("application_name", &db.cfg.application_name),
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
    }
}

pub fn settings_for(c: &Config, db: &DatabaseConfig, user: &str) -> PoolSettings {
    use causeway_pool::settings_secs as secs;
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
    }
}
