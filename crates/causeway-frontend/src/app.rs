//! What every session shares: the configuration in force, secrets,
//! databases and pools, cancel keys, client counts and the shutdown state.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use causeway_config::{Config, Layers};
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::cancel::CancelRegistry;
use crate::clients::Clients;
use crate::databases::Databases;
use crate::secrets::Secrets;
use crate::security::Security;

/// Places past max_client_conn only the admin console may take.
pub const ADMIN_RESERVE: u32 = 5;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM: no new clients; connected ones stay until they leave
    /// (with so_reuseport, transaction-mode ones leave at their next
    /// transaction boundary).
    NoAccept,
    /// SIGINT: no new clients; each closes once its server is released.
    Draining,
    /// Close everything now.
    Stopping,
}

pub struct App {
    layers: RwLock<Layers>,
    config: RwLock<Arc<Config>>,
    secrets: RwLock<Arc<Secrets>>,
    pub databases: Databases,
    /// TLS configurations and hba rules in force.
    pub security: Arc<Security>,
    pub cancels: Arc<CancelRegistry>,
    pub clients: Arc<Clients>,
    client_count: AtomicU32,
    /// Logins in progress: in all, per source address, and connections
    /// being refused for want of a login slot (login_slots.rs).
    pub(crate) logins: Arc<crate::login_slots::LoginSlots>,
    /// Connected clients per user (max_user_client_connections).
    user_clients: parking_lot::Mutex<std::collections::HashMap<Arc<str>, u32>>,
    phase: watch::Sender<Phase>,
    /// What a unit that drops, renames or copies a database calls first
    /// (session/database_ddl.rs): one for every session, made once.
    pub(crate) close_idle: std::sync::OnceLock<CloseIdle>,
}

/// Closes the idle pooled connections to a database (by its name on the
/// servers).
pub(crate) type CloseIdle = Arc<dyn Fn(&str) + Send + Sync>;

impl App {
    pub fn new(layers: Layers, config: Config, secrets: Secrets, security: Security) -> Arc<App> {
        let security = Arc::new(security);
        Arc::new(App {
            layers: RwLock::new(layers),
            config: RwLock::new(Arc::new(config)),
            secrets: RwLock::new(Arc::new(secrets)),
            databases: Databases::new(security.clone()),
            security,
            cancels: Arc::new(CancelRegistry::default()),
            clients: Arc::new(Clients::default()),
            client_count: AtomicU32::new(0),
            logins: Default::default(),
            user_clients: Default::default(),
            phase: watch::channel(Phase::Running).0,
            close_idle: Default::default(),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    pub fn secrets(&self) -> Arc<Secrets> {
        self.secrets.read().clone()
    }

    /// Re-reads every layer; on any error the old configuration stays.
    /// The files' warnings (ignored PgBouncer settings) are logged again.
    pub fn reload(&self) -> Result<(), String> {
        let layers = self.layers.read().clone();
        for w in self.apply(&layers)? {
            tracing::warn!("{w}");
        }
        Ok(())
    }

    /// The admin console's SET: a new top layer, validated like a reload.
    pub fn set(&self, key: &str, value: toml::Value) -> Result<(), String> {
        let mut layers = self.layers.read().clone();
        layers.overrides.retain(|(k, _)| k != key);
        layers.overrides.push((key.to_string(), value));
        self.apply(&layers)?;
        *self.layers.write() = layers;
        Ok(())
    }

    /// Loads and installs `layers`; returns the files' warnings.
    fn apply(&self, layers: &Layers) -> Result<Vec<String>, String> {
        let loaded = causeway_config::load_with_warnings(layers).map_err(|e| e.to_string())?;
        let config = loaded.config;
        let secrets = Arc::new(Secrets::load(config.auth_file.as_deref())?);
        // Every certificate, key and hba file is read before anything
        // changes: one bad file refuses the whole reload.
        let security = self.security.prepare(&config)?;
        self.security.commit(security);
        let config = Arc::new(config);
        self.databases.reload(&config, &secrets);
        *self.config.write() = config;
        *self.secrets.write() = secrets;
        Ok(loaded.warnings)
    }

    /// Counts a logged-in client; None when max_client_conn is reached.
    /// The admin console has [`ADMIN_RESERVE`] places more, so that it
    /// answers when ordinary clients fill max_client_conn.
    pub fn admit_client(self: &Arc<Self>, admin: bool) -> Option<ClientPermit> {
        let max = self.max_clients(admin);
        self.client_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientPermit {
                app: Some(self.clone()),
            })
    }

    /// Counts a logged-in client of `user`; None past the user's
    /// max_user_client_connections.
    pub fn admit_user(self: &Arc<Self>, user: &str) -> Option<UserPermit> {
        let max = self
            .config
            .read()
            .users
            .get(user)
            .and_then(|u| u.max_user_client_connections)
            .unwrap_or(0);
        let mut counts = self.user_clients.lock();
        // The map's key is the one copy of the name every permit shares.
        let user = match counts.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => Arc::from(user),
        };
        let n = counts.entry(user.clone()).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(UserPermit {
            app: Some(self.clone()),
            user,
        })
    }

    /// Where admission stops for an ordinary client or the admin console.
    pub fn max_clients(&self, admin: bool) -> u32 {
        let max = self.config.read().max_client_conn;
        if admin {
            max.saturating_add(ADMIN_RESERVE)
        } else {
            max
        }
    }

    pub fn client_count(&self) -> u32 {
        self.client_count.load(Ordering::Relaxed)
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.send_replace(p);
        for c in self.clients.all() {
            c.wake.wake();
        }
    }
}

/// A session's hold on the app: its place in max_client_conn and among
/// its user's clients (both freed when the session ends), and the app
/// itself, one pointer for the three. Derefs to the app.
pub struct Admitted {
    app: Arc<App>,
    user: Arc<str>,
}

impl Admitted {
    pub fn new(mut client: ClientPermit, mut user: UserPermit) -> Admitted {
        // The two permits' releases move here (one app pointer, not three).
        client.app.take();
        let app = user.app.take().expect("a user permit holds the app");
        Admitted {
            app,
            user: std::mem::replace(&mut user.user, Arc::from("")),
        }
    }

    /// The user's name, shared by every client of the user.
    pub fn user(&self) -> &Arc<str> {
        &self.user
    }
}

impl std::ops::Deref for Admitted {
    type Target = Arc<App>;
    fn deref(&self) -> &Arc<App> {
        &self.app
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.app.client_count.fetch_sub(1, Ordering::AcqRel);
        self.app.release_user(&self.user);
    }
}

/// One admitted client; frees its place when the session ends.
pub struct ClientPermit {
    /// None once handed to an [`Admitted`].
    app: Option<Arc<App>>,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        if let Some(app) = &self.app {
            app.client_count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One logged-in client of a user.
pub struct UserPermit {
    /// None once handed to an [`Admitted`].
    app: Option<Arc<App>>,
    user: Arc<str>,
}

impl UserPermit {
    /// The user's name, shared by every client of the user.
    pub fn user(&self) -> &Arc<str> {
        &self.user
    }
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        if let Some(app) = &self.app {
            app.release_user(&self.user);
        }
    }
}

impl App {
    fn release_user(&self, user: &Arc<str>) {
        let mut counts = self.user_clients.lock();
        if let Some(n) = counts.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(user);
            }
        }
    }
}
