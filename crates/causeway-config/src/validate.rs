//! Checks serde cannot express: values that parse but cannot work.

use crate::model::Config;

pub struct Invalid {
    pub key: String,
    pub reason: String,
}

/// `servers_from = "patroni"` needs loopback-or-not `http://` addresses
/// (https is not supported yet); `patroni_url` alone is a mistake.
fn patroni_source(name: &str, db: &crate::DatabaseConfig) -> Result<(), Invalid> {
    let key = |k: &str| format!("databases.{name}.{k}");
    if db.servers_from != crate::ServersFrom::Patroni {
        if !db.patroni_url.is_empty() {
            return bad(
                key("patroni_url"),
                "set servers_from = \"patroni\" to use it",
            );
        }
        return Ok(());
    }
    if name == "*" {
        return bad(
            key("servers_from"),
            "the `*` fallback cannot follow Patroni",
        );
    }
    if db.patroni_url.is_empty() {
        return bad(
            key("patroni_url"),
            "servers_from = \"patroni\" needs at least one http://host:port",
        );
    }
    for u in &db.patroni_url {
        if crate::patroni_authority(u).is_none() {
            return bad(
                key("patroni_url"),
                format!("not http://host:port (https is not supported): {u:?}"),
            );
        }
    }
    Ok(())
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> Result<(), Invalid> {
    Err(Invalid {
        key: key.into(),
        reason: reason.into(),
    })
}

fn non_negative(key: &str, v: f64) -> Result<(), Invalid> {
    if !(v >= 0.0 && v.is_finite()) {
        return bad(key, format!("must be a number of seconds >= 0, got {v}"));
    }
    Ok(())
}

pub fn check(c: &Config) -> Result<(), Invalid> {
    if c.listen_port == 0 {
        return bad("listen_port", "must be 1-65535");
    }
    if c.listen_addr.trim().is_empty() {
        if c.unix_socket_dir.is_empty() {
            return bad(
                "listen_addr",
                "empty: set an address or unix_socket_dir, or there is nowhere to connect",
            );
        }
    } else {
        for a in c.listen_addr.split(',').map(str::trim) {
            let literal = a.trim_start_matches('[').trim_end_matches(']');
            if literal.parse::<std::net::IpAddr>().is_err() && a != "localhost" && a != "*" {
                return bad(
                    "listen_addr",
                    format!(
                        "not an IP address, `*` or `localhost`: {a:?} (in {:?})",
                        c.listen_addr
                    ),
                );
            }
        }
    }
    tls(c)?;
    peers(c)?;
    if c.default_pool_size == 0 {
        return bad("default_pool_size", "must be at least 1");
    }
    if c.min_pool_size > c.default_pool_size {
        return bad(
            "min_pool_size",
            format!(
                "{} is larger than default_pool_size {}",
                c.min_pool_size, c.default_pool_size
            ),
        );
    }
    if c.max_client_conn == 0 {
        return bad("max_client_conn", "must be at least 1");
    }
    if c.client_login_slots == 0 {
        return bad("client_login_slots", "must be at least 1");
    }
    if c.client_login_slots_per_addr == 0 || c.client_login_slots_per_addr > c.client_login_slots {
        return bad(
            "client_login_slots_per_addr",
            format!(
                "must be between 1 and client_login_slots ({})",
                c.client_login_slots
            ),
        );
    }
    if c.max_packet_size < 1024 {
        return bad("max_packet_size", "must be at least 1024 bytes");
    }
    for (k, v) in [
        ("reserve_pool_timeout", c.reserve_pool_timeout),
        ("server_idle_timeout", c.server_idle_timeout),
        ("server_lifetime", c.server_lifetime),
        ("server_connect_timeout", c.server_connect_timeout),
        ("server_login_retry", c.server_login_retry),
        ("query_timeout", c.query_timeout),
        ("query_wait_timeout", c.query_wait_timeout),
        ("client_idle_timeout", c.client_idle_timeout),
        ("client_login_timeout", c.client_login_timeout),
        ("idle_transaction_timeout", c.idle_transaction_timeout),
        ("server_check_delay", c.server_check_delay),
        ("stats_period", c.stats_period),
        ("max_replica_lag", c.max_replica_lag),
        ("replica_hold_down", c.replica_hold_down),
        ("ryw_wait_timeout", c.ryw_wait_timeout),
    ] {
        non_negative(k, v)?;
    }
    for (k, v) in [
        ("monitor_interval", c.monitor_interval),
        ("monitor_timeout", c.monitor_timeout),
        ("internal_query_timeout", c.internal_query_timeout),
        ("ryw_poll_interval", c.ryw_poll_interval),
    ] {
        if !(v > 0.0 && v.is_finite() && v <= 3600.0) {
            return bad(k, format!("must be a number of seconds > 0, got {v}"));
        }
    }
    if !c.metrics_addr.is_empty() && c.metrics_addr.parse::<std::net::SocketAddr>().is_err() {
        return bad(
            "metrics_addr",
            format!("not host:port: {:?}", c.metrics_addr),
        );
    }
    for (name, db) in &c.databases {
        let key = |k: &str| format!("databases.{name}.{k}");
        let servers = db.server_list();
        patroni_source(name, db)?;
        if servers.is_empty() && db.servers_from != crate::ServersFrom::Patroni {
            return bad(
                key("servers"),
                "a database needs `host` or at least one [[servers]] entry",
            );
        }
        for (i, s) in servers.iter().enumerate() {
            if s.port == 0 {
                return bad(key(&format!("servers.{i}.port")), "must be 1-65535");
            }
            if s.host.is_empty() {
                return bad(key(&format!("servers.{i}.host")), "must not be empty");
            }
        }
        let primaries = servers
            .iter()
            .filter(|s| s.role == crate::RoleHint::Primary)
            .count();
        if primaries > 1 {
            return bad(
                key("servers"),
                "at most one server may have role = \"primary\"",
            );
        }
        let size = db.pool_size.unwrap_or(c.default_pool_size);
        let min = db.min_pool_size.unwrap_or(c.min_pool_size);
        if size == 0 && db.pool_size.is_some() {
            if min > 0 {
                return bad(
                    key("min_pool_size"),
                    format!("{min} is larger than pool_size 0"),
                );
            }
            return bad(key("pool_size"), "must be at least 1");
        }
        if min > size {
            return bad(
                key("min_pool_size"),
                format!("{min} is larger than pool_size {size}"),
            );
        }
        if let Some(v) = db.server_lifetime {
            non_negative(&key("server_lifetime"), v)?;
        }
        if let Some(v) = db.max_replica_lag {
            non_negative(&key("max_replica_lag"), v)?;
        }
        if servers.len() > 64 {
            return bad(key("servers"), "at most 64 servers per database");
        }
    }
    for (name, u) in &c.users {
        if u.pool_size == Some(0) {
            return bad(format!("users.{name}.pool_size"), "must be at least 1");
        }
    }
    Ok(())
}

/// TLS and authentication settings that cannot work together. (Whether
/// the files exist and hold keys is checked when they are loaded, at
/// start and at each reload.)
fn peers(c: &Config) -> Result<(), Invalid> {
    use crate::model::MAX_PEER_ID;
    if c.peer_id > MAX_PEER_ID {
        return bad("peer_id", format!("must be 0 (off) to {MAX_PEER_ID}"));
    }
    for (id, p) in &c.peers {
        let key = |k: &str| format!("peers.{id}.{k}");
        if !matches!(id.parse::<u16>(), Ok(1..=MAX_PEER_ID)) {
            return bad(
                format!("peers.{id}"),
                format!("a peer id is a number from 1 to {MAX_PEER_ID}"),
            );
        }
        if p.host.trim().is_empty() {
            return bad(key("host"), "empty: where the peer listens");
        }
        if p.port == 0 {
            return bad(key("port"), "must be 1-65535");
        }
    }
    Ok(())
}

fn tls(c: &Config) -> Result<(), Invalid> {
    use crate::model::{AuthType, SslMode};
    if c.client_tls_sslmode != SslMode::Disable
        && (c.client_tls_key_file.is_none() || c.client_tls_cert_file.is_none())
    {
        return bad(
            "client_tls_sslmode",
            "TLS towards clients needs client_tls_key_file and client_tls_cert_file",
        );
    }
    if matches!(
        c.client_tls_sslmode,
        SslMode::VerifyCa | SslMode::VerifyFull
    ) && c.client_tls_ca_file.is_none()
    {
        return bad(
            "client_tls_sslmode",
            "verify-ca/verify-full check client certificates: set client_tls_ca_file",
        );
    }
    if c.auth_type == AuthType::Hba && c.auth_hba_file.is_none() {
        return bad("auth_type", "auth_type = hba needs auth_hba_file");
    }
    if c.auth_type == AuthType::Cert
        && (c.client_tls_sslmode == SslMode::Disable || c.client_tls_ca_file.is_none())
    {
        return bad(
            "auth_type",
            "auth_type = cert needs client TLS (client_tls_sslmode) and client_tls_ca_file to verify the certificates",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthType, SslMode};

    fn key_of(c: &Config) -> Option<String> {
        check(c).err().map(|e| e.key)
    }

    #[test]
    fn patroni_source_needs_http_urls_and_no_servers() {
        let with = |name: &str, db: crate::DatabaseConfig| Config {
            databases: [(name.to_string(), db)].into_iter().collect(),
            ..Config::default()
        };
        let patroni = crate::DatabaseConfig {
            servers_from: crate::ServersFrom::Patroni,
            patroni_url: vec!["http://127.0.0.1:8008".into()],
            ..Default::default()
        };
        assert_eq!(
            key_of(&with("app", patroni.clone())),
            None,
            "no servers needed"
        );
        let https = crate::DatabaseConfig {
            patroni_url: vec!["https://127.0.0.1:8008".into()],
            ..patroni.clone()
        };
        assert_eq!(
            key_of(&with("app", https)).as_deref(),
            Some("databases.app.patroni_url")
        );
        let none = crate::DatabaseConfig {
            patroni_url: vec![],
            ..patroni.clone()
        };
        assert_eq!(
            key_of(&with("app", none)).as_deref(),
            Some("databases.app.patroni_url")
        );
        assert_eq!(
            key_of(&with("*", patroni.clone())).as_deref(),
            Some("databases.*.servers_from")
        );
        let stray = crate::DatabaseConfig {
            servers_from: crate::ServersFrom::Config,
            host: Some("h".into()),
            ..patroni
        };
        assert_eq!(
            key_of(&with("app", stray)).as_deref(),
            Some("databases.app.patroni_url")
        );
    }

    #[test]
    fn listen_addr_lists_and_unix_only() {
        let mut c = Config {
            listen_addr: "127.0.0.1, ::1,[::1],*,localhost".into(),
            ..Config::default()
        };
        assert_eq!(key_of(&c), None);
        c.listen_addr = "127.0.0.1,db.example".into();
        assert_eq!(key_of(&c).as_deref(), Some("listen_addr"));
        c.listen_addr = String::new();
        assert_eq!(key_of(&c).as_deref(), Some("listen_addr"));
        c.unix_socket_dir = "/run/causeway".into();
        assert_eq!(key_of(&c), None);
    }

    #[test]
    fn tls_and_auth_combinations() {
        let tls = Config {
            client_tls_sslmode: SslMode::Require,
            client_tls_key_file: Some("k".into()),
            client_tls_cert_file: Some("c".into()),
            ..Config::default()
        };
        assert_eq!(key_of(&tls), None);
        let no_key = Config {
            client_tls_key_file: None,
            ..tls.clone()
        };
        assert_eq!(key_of(&no_key).as_deref(), Some("client_tls_sslmode"));
        let verify = Config {
            client_tls_sslmode: SslMode::VerifyCa,
            ..tls.clone()
        };
        assert_eq!(key_of(&verify).as_deref(), Some("client_tls_sslmode"));
        let cert = Config {
            auth_type: AuthType::Cert,
            ..tls.clone()
        };
        assert_eq!(key_of(&cert).as_deref(), Some("auth_type"));
        let cert = Config {
            client_tls_ca_file: Some("ca".into()),
            ..cert
        };
        assert_eq!(key_of(&cert), None);
        let hba = Config {
            auth_type: AuthType::Hba,
            ..Config::default()
        };
        assert_eq!(key_of(&hba).as_deref(), Some("auth_type"));
    }

    #[test]
    fn unix_socket_mode_as_string_or_integer() {
        let c: Config = toml::from_str("unix_socket_mode = 0o770").unwrap();
        assert_eq!(c.unix_socket_mode.0, 0o770);
        let c: Config = toml::from_str("unix_socket_mode = \"0700\"").unwrap();
        assert_eq!(c.unix_socket_mode.0, 0o700);
        assert!(toml::from_str::<Config>("unix_socket_mode = \"rwx\"").is_err());
        assert!(toml::from_str::<Config>("unix_socket_mode = 0o17777").is_err());
        assert_eq!(
            toml::to_string(&c)
                .unwrap()
                .lines()
                .find(|l| l.starts_with("unix_socket_mode")),
            Some("unix_socket_mode = \"0700\"")
        );
    }
}
