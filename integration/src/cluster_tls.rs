//! Turning TLS on in a running [`Cluster`]: every node gets a server
//! certificate, the CA for client certificates, `ssl = on` and a new
//! pg_hba.conf, then reloads.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::cluster::Cluster;
use crate::pki::CertFiles;
use crate::wait::poll_blocking;

/// An hba that demands TLS for every TCP login but replication (the
/// replicas' streaming) and keeps the harness's unix-socket access.
pub const HOSTSSL_ONLY_HBA: &str = "local all all trust\n\
    host replication all 127.0.0.1/32 trust\n\
    hostssl all postgres 127.0.0.1/32 trust\n\
    hostssl all app_md5 127.0.0.1/32 md5\n\
    hostssl all app_plain 127.0.0.1/32 password\n\
    hostssl all all 127.0.0.1/32 scram-sha-256\n";

impl Cluster {
    /// Installs `server` (and `ca` as ssl_ca_file) on every node, writes
    /// `hba` as pg_hba.conf, turns `ssl` on and reloads; returns once every
    /// node reports `ssl = on`.
    pub fn enable_tls(&self, server: &CertFiles, ca: &Path, hba: &str) -> Result<(), String> {
        for node in self.nodes() {
            let data = node.data_dir();
            let meta = std::fs::metadata(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            for (from, name, mode) in [
                (server.cert.as_path(), "server.crt", 0o644),
                (server.key.as_path(), "server.key", 0o600),
                (ca, "root.crt", 0o644),
            ] {
                let to = data.join(name);
                std::fs::copy(from, &to).map_err(|e| format!("copy {}: {e}", from.display()))?;
                std::os::unix::fs::chown(&to, Some(meta.uid()), Some(meta.gid()))
                    .map_err(|e| format!("chown {}: {e}", to.display()))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("chmod {}: {e}", to.display()))?;
            }
            std::fs::write(data.join("pg_hba.conf"), hba)
                .map_err(|e| format!("write pg_hba.conf: {e}"))?;
            let mut conf = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .map_err(|e| format!("open postgresql.conf: {e}"))?;
            use std::io::Write as _;
            writeln!(
                conf,
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'"
            )
            .map_err(|e| format!("append postgresql.conf: {e}"))?;
            self.psql(node, "postgres", "SELECT pg_reload_conf()")?;
        }
        for node in self.nodes() {
            let what = format!("{}: ssl on after reload", node.name());
            poll_blocking(std::time::Duration::from_secs(30), &what, || {
                match self.psql(node, "postgres", "SHOW ssl") {
                    Ok(s) if s == "on" => Ok(()),
                    other => Err(other),
                }
            })?;
        }
        Ok(())
    }
}
