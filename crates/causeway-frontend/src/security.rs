//! The TLS configurations and hba rules in force, loaded from the files
//! the configuration names. A reload reads every file first and changes
//! nothing unless all of them load: a bad certificate or hba line is
//! refused with its file named, and the old ones stay in use. New
//! handshakes use the new files; established connections keep theirs.

use std::collections::HashMap;
use std::sync::Arc;

use causeway_config::{AuthType, Config};
use causeway_net::{ClientTls, ClientTlsSettings, Hba, ServerTls, ServerTlsSettings, SslMode};
use parking_lot::RwLock;

type ServerKey = causeway_config::ServerTls;

#[derive(Default)]
pub struct Security {
    client_tls: RwLock<Arc<ClientTls>>,
    /// One shared handle per distinct server_tls_* combination: pools and
    /// monitors keep it across reloads and see new files through it.
    servers: RwLock<HashMap<ServerKey, ServerTls>>,
    hba: RwLock<Option<Arc<Hba>>>,
}

type ClientConfig = causeway_net::tokio_rustls::rustls::ClientConfig;

/// Everything a reload read, not yet in force.
pub struct Prepared {
    client_tls: ClientTls,
    servers: Vec<PreparedServer>,
    hba: Option<Arc<Hba>>,
}

/// One server-side TLS handle after a reload read its files.
struct PreparedServer {
    key: ServerKey,
    handle: ServerTls,
    /// For a handle that already existed: the configuration to swap in.
    swap: Option<Option<Arc<ClientConfig>>>,
}

impl Security {
    /// Loads everything `cfg` names (at start).
    pub fn load(cfg: &Config) -> Result<Security, String> {
        let s = Security::default();
        let p = s.prepare(cfg)?;
        s.commit(p);
        Ok(s)
    }

    /// Reads every file of `cfg`; nothing changes yet.
    pub fn prepare(&self, cfg: &Config) -> Result<Prepared, String> {
        let client_tls = ClientTls::load(&client_settings(cfg)).map_err(|e| e.to_string())?;
        let hba = match (cfg.auth_type, &cfg.auth_hba_file) {
            (AuthType::Hba, Some(path)) => Some(Arc::new(
                Hba::load(path).map_err(|e| format!("auth_hba_file {e}"))?,
            )),
            _ => None,
        };
        let mut keys: std::collections::HashSet<ServerKey> = cfg
            .databases
            .values()
            .map(|d| cfg.server_tls_for(d))
            .collect();
        keys.insert(cfg.server_tls_for(&Default::default()));
        let existing = self.servers.read().clone();
        let mut servers = Vec::with_capacity(keys.len());
        for key in keys {
            servers.push(match existing.get(&key) {
                Some(handle) => PreparedServer {
                    swap: Some(handle.prepare().map_err(|e| e.to_string())?),
                    handle: handle.clone(),
                    key,
                },
                None => PreparedServer {
                    handle: ServerTls::new(server_settings(&key)).map_err(|e| e.to_string())?,
                    swap: None,
                    key,
                },
            });
        }
        Ok(Prepared {
            client_tls,
            servers,
            hba,
        })
    }

    /// Puts what `prepare` read in force.
    pub fn commit(&self, p: Prepared) {
        *self.client_tls.write() = Arc::new(p.client_tls);
        let mut map = HashMap::with_capacity(p.servers.len());
        for s in p.servers {
            if let Some(config) = s.swap {
                s.handle.commit(config);
            }
            map.insert(s.key, s.handle);
        }
        *self.servers.write() = map;
        *self.hba.write() = p.hba;
    }

    /// The client-side TLS for a handshake starting now.
    pub fn client_tls(&self) -> Arc<ClientTls> {
        self.client_tls.read().clone()
    }

    /// The server-side TLS handle of a database's settings.
    pub fn server_tls(&self, key: &ServerKey) -> ServerTls {
        if let Some(h) = self.servers.read().get(key) {
            return h.clone();
        }
        // A combination no reload prepared (cannot happen: every database
        // entry's is); load it now rather than connect without TLS.
        match ServerTls::new(server_settings(key)) {
            Ok(h) => {
                self.servers.write().insert(key.clone(), h.clone());
                h
            }
            Err(e) => {
                tracing::error!(error = %e, "server TLS settings cannot be loaded");
                ServerTls::default()
            }
        }
    }

    pub fn hba(&self) -> Option<Arc<Hba>> {
        self.hba.read().clone()
    }
}

fn mode(m: causeway_config::SslMode) -> SslMode {
    use causeway_config::SslMode as C;
    match m {
        C::Disable => SslMode::Disable,
        C::Allow => SslMode::Allow,
        C::Prefer => SslMode::Prefer,
        C::Require => SslMode::Require,
        C::VerifyCa => SslMode::VerifyCa,
        C::VerifyFull => SslMode::VerifyFull,
    }
}

fn client_settings(c: &Config) -> ClientTlsSettings {
    ClientTlsSettings {
        sslmode: mode(c.client_tls_sslmode),
        key_file: c.client_tls_key_file.clone(),
        cert_file: c.client_tls_cert_file.clone(),
        ca_file: c.client_tls_ca_file.clone(),
        protocols: c.client_tls_protocols.clone(),
        ciphers: c.client_tls_ciphers.clone(),
    }
}

fn server_settings(k: &ServerKey) -> ServerTlsSettings {
    ServerTlsSettings {
        sslmode: mode(k.sslmode),
        ca_file: k.ca_file.clone(),
        key_file: k.key_file.clone(),
        cert_file: k.cert_file.clone(),
        protocols: k.protocols.clone(),
        ciphers: k.ciphers.clone(),
    }
}
