//! Checks serde cannot express: values that parse but cannot work.

use crate::model::Config;

pub struct Invalid {
    pub key: String,
    pub reason: String,
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
    if c.listen_addr.parse::<std::net::IpAddr>().is_err() && c.listen_addr != "localhost" {
        return bad(
            "listen_addr",
            format!("not an IP address: {:?}", c.listen_addr),
        );
    }
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
        if servers.is_empty() {
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
