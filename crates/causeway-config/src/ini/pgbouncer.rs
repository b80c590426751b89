//! The `[pgbouncer]` section: each PgBouncer setting becomes its Causeway
//! setting, a warning (Causeway does not implement it and nothing clients
//! or servers see depends on it), or an error (ignoring it would change
//! behaviour without anyone noticing).

use super::values::{boolean, int, list, lookup, seconds};
use super::Mapped;

pub const POOL_MODES: &[&str] = &["session", "transaction", "statement"];

/// Every setting PgBouncer 1.25 knows in `[pgbouncer]` (its `main.c`);
/// `service_name` is its Windows alias of `job_name`.
pub const KEYS: &[&str] = &[
    "admin_users",
    "application_name_add_host",
    "auth_dbname",
    "auth_file",
    "auth_hba_file",
    "auth_ident_file",
    "auth_ldap_options",
    "auth_query",
    "auth_type",
    "auth_user",
    "autodb_idle_timeout",
    "cancel_wait_timeout",
    "client_idle_timeout",
    "client_login_timeout",
    "client_tls13_ciphers",
    "client_tls_ca_file",
    "client_tls_cert_file",
    "client_tls_ciphers",
    "client_tls_dheparams",
    "client_tls_ecdhcurve",
    "client_tls_key_file",
    "client_tls_protocols",
    "client_tls_sslmode",
    "conffile",
    "default_pool_size",
    "disable_pqexec",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "dns_zone_check_period",
    "idle_transaction_timeout",
    "ignore_startup_parameters",
    "job_name",
    "listen_addr",
    "listen_backlog",
    "listen_port",
    "log_connections",
    "log_disconnections",
    "log_pooler_errors",
    "log_stats",
    "logfile",
    "max_client_conn",
    "max_db_client_connections",
    "max_db_connections",
    "max_packet_size",
    "max_prepared_statements",
    "max_user_client_connections",
    "max_user_connections",
    "min_pool_size",
    "peer_id",
    "pidfile",
    "pkt_buf",
    "pool_mode",
    "query_timeout",
    "query_wait_notify",
    "query_wait_timeout",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "resolv_conf",
    "sbuf_loopcnt",
    "scram_iterations",
    "server_check_delay",
    "server_check_query",
    "server_connect_timeout",
    "server_fast_close",
    "server_idle_timeout",
    "server_lifetime",
    "server_login_retry",
    "server_reset_query",
    "server_reset_query_always",
    "server_round_robin",
    "server_tls13_ciphers",
    "server_tls_ca_file",
    "server_tls_cert_file",
    "server_tls_ciphers",
    "server_tls_key_file",
    "server_tls_protocols",
    "server_tls_sslmode",
    "service_name",
    "so_reuseport",
    "stats_period",
    "stats_users",
    "suspend_timeout",
    "syslog",
    "syslog_facility",
    "syslog_ident",
    "tcp_defer_accept",
    "tcp_keepalive",
    "tcp_keepcnt",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_socket_buffer",
    "tcp_user_timeout",
    "track_extra_parameters",
    "transaction_timeout",
    "unix_socket_dir",
    "unix_socket_group",
    "unix_socket_mode",
    "user",
    "verbose",
];

/// Maps one `[pgbouncer]` setting.
pub fn setting(key: &str, v: &str) -> Result<Mapped, String> {
    if let Some(m) = same_meaning(key, v)? {
        return Ok(m);
    }
    if let Some(m) = translated(key, v)? {
        return Ok(m);
    }
    if let Some(m) = refused(key, v)? {
        return Ok(m);
    }
    if let Some((quiet, why)) = not_implemented(key) {
        return Ok(if quiet.contains(&v) {
            Mapped::none()
        } else {
            Mapped::warn(format!("not implemented, ignored: {why}"))
        });
    }
    Err(format!(
        "unknown setting `{key}` (PgBouncer refuses it too)"
    ))
}

/// Settings Causeway has under the same name with the same meaning.
fn same_meaning(key: &str, v: &str) -> Result<Option<Mapped>, String> {
    Ok(Some(match key {
        "listen_port"
        | "max_client_conn"
        | "default_pool_size"
        | "min_pool_size"
        | "reserve_pool_size"
        | "max_db_connections"
        | "max_user_connections"
        | "max_prepared_statements"
        | "max_packet_size" => Mapped::set(key, int(v)?),
        "pkt_buf" => {
            int(v)?;
            Mapped::none().with_note("Causeway sizes its buffers itself")
        }
        "reserve_pool_timeout" if seconds(v)? == 0.0 => {
            // PgBouncer: 0 turns the reserve pool off; Causeway would open
            // it at once. Checked against every reserve_pool_size later.
            Mapped::none().with_note("0: the reserve pool stays closed")
        }
        "reserve_pool_timeout"
        | "server_idle_timeout"
        | "server_login_retry"
        | "query_timeout"
        | "query_wait_timeout"
        | "client_idle_timeout"
        | "client_login_timeout"
        | "idle_transaction_timeout"
        | "server_check_delay" => Mapped::set(key, seconds(v)?),
        // An integer number of seconds in PgBouncer.
        "stats_period" => Mapped::set(key, int(v)? as f64),
        "peer_id" => Mapped::set(key, int(v)?),
        "server_reset_query_always"
        | "tcp_keepalive"
        | "so_reuseport"
        | "log_connections"
        | "log_disconnections"
        | "log_pooler_errors" => Mapped::set(key, boolean(v)?),
        "server_reset_query" | "auth_query" => Mapped::set(key, v),
        // Empty is PgBouncer's "not set".
        "auth_file" | "auth_user" | "auth_dbname" if v.is_empty() => Mapped::none(),
        "auth_dbname" if v == "pgbouncer" => {
            return Err("`pgbouncer` is the admin console, not an auth_dbname".into())
        }
        "auth_file" | "auth_user" | "auth_dbname" => Mapped::set(key, v),
        "admin_users" | "stats_users" | "track_extra_parameters" | "ignore_startup_parameters" => {
            Mapped::set(key, list(v))
        }
        "pool_mode" => Mapped::set(key, lookup(v, POOL_MODES)?),
        "client_tls_sslmode" | "server_tls_sslmode" => Mapped::set(key, lookup(v, SSL_MODES)?),
        // Empty is PgBouncer's "no file".
        "client_tls_key_file"
        | "client_tls_cert_file"
        | "client_tls_ca_file"
        | "server_tls_key_file"
        | "server_tls_cert_file"
        | "server_tls_ca_file"
            if v.is_empty() =>
        {
            Mapped::none()
        }
        // Same value syntax as PgBouncer's (checked when TLS is set up).
        "client_tls_key_file"
        | "client_tls_cert_file"
        | "client_tls_ca_file"
        | "server_tls_key_file"
        | "server_tls_cert_file"
        | "server_tls_ca_file"
        | "client_tls_protocols"
        | "server_tls_protocols"
        | "client_tls_ciphers"
        | "server_tls_ciphers" => Mapped::set(key, v),
        // Empty: no unix socket, as in PgBouncer.
        "unix_socket_dir" | "unix_socket_group" => Mapped::set(key, v),
        "unix_socket_mode" => Mapped::set(key, file_mode(v)?),
        _ => return Ok(None),
    }))
}

/// Settings whose values need translating.
fn translated(key: &str, v: &str) -> Result<Option<Mapped>, String> {
    Ok(Some(match key {
        "listen_addr" => listen_addr(v)?,
        "auth_type" => auth_type(v)?,
        "server_lifetime" if seconds(v)? == 0.0 => {
            // PgBouncer: 0 = close each server connection after one use.
            // Causeway reads 0 as "no limit"; a microsecond does it.
            Mapped::set(key, 0.000_001)
                .with_note("PgBouncer's 0: each server connection serves once")
        }
        "server_lifetime" => Mapped::set(key, seconds(v)?),
        "server_connect_timeout" if seconds(v)? == 0.0 => Mapped::warn(
            "0 (no limit) is not implemented: Causeway gives up after its default of 15 s",
        ),
        "server_connect_timeout" => Mapped::set(key, seconds(v)?),
        // PgBouncer ≥ 1.24: send an empty query. `;` is one for PostgreSQL.
        "server_check_query" if v == "<empty>" => {
            Mapped::set(key, ";").with_note("PgBouncer's <empty>: an empty query")
        }
        "server_check_query" => Mapped::set(key, v),
        "verbose" => match int(v)? {
            n if n <= 0 => Mapped::none(),
            1 => Mapped::set("log_level", "debug").with_note("verbose = 1"),
            _ => Mapped::set("log_level", "trace").with_note("verbose >= 2"),
        },
        _ => return Ok(None),
    }))
}

fn listen_addr(v: &str) -> Result<Mapped, String> {
    let addrs = list(v);
    match addrs.as_slice() {
        [] => Ok(Mapped::warn(
            "empty: PgBouncer listens only on its Unix socket; Causeway has none and \
             listens on 127.0.0.1 (its default)",
        )),
        [a] if a == "*" => Ok(Mapped::set("listen_addr", "0.0.0.0").with_warning(
            "`*` becomes 0.0.0.0 (IPv4 only); set listen_addr = \"::\" for IPv6 too",
        )),
        [a] => Ok(Mapped::set("listen_addr", a.as_str())),
        _ => Err(format!(
            "Causeway listens on one address, not {} (run one instance per address, or use 0.0.0.0)",
            addrs.len()
        )),
    }
}

fn auth_type(v: &str) -> Result<Mapped, String> {
    let all = [
        "trust",
        "md5",
        "scram-sha-256",
        "plain",
        "any",
        "cert",
        "hba",
        "ldap",
        "pam",
    ];
    Ok(match lookup(v, &all)? {
        "trust" => Mapped::set("auth_type", "trust").with_warning(
            "Causeway's trust lets in any user name, PgBouncer's only users listed in auth_file",
        ),
        t @ ("md5" | "scram-sha-256" | "plain") => Mapped::set("auth_type", t),
        other => {
            return Err(format!(
                "auth_type = {other} is not implemented (Causeway has trust, md5, scram-sha-256, plain)"
            ))
        }
    })
}

/// Settings Causeway lacks where only the "off" value can be ignored:
/// anything else would be a limit or a protection that silently vanishes.
fn refused(key: &str, v: &str) -> Result<Option<Mapped>, String> {
    let off = match key {
        "disable_pqexec" => !boolean(v)?,
        "max_db_client_connections" | "max_user_client_connections" => int(v)? <= 0,
        "transaction_timeout" => seconds(v)? == 0.0,
        _ => return Ok(None),
    };
    if off {
        return Ok(Some(Mapped::none()));
    }
    Err(match key {
        "disable_pqexec" => "refusing the simple query protocol is not implemented".into(),
        "max_user_client_connections" => {
            "is only per user in Causeway: set it on each [users] entry".into()
        }
        _ => "not enforced by Causeway; remove it or set it to 0".into(),
    })
}

/// PgBouncer's TLS modes, Causeway's `SslMode` names.
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// An octal file mode as PgBouncer reads it (`0777`, `777`).
fn file_mode(v: &str) -> Result<String, String> {
    match u32::from_str_radix(v, 8) {
        Ok(m) if m <= 0o7777 => Ok(format!("{m:04o}")),
        _ => Err(format!("{v:?} is not an octal file mode")),
    }
}

/// Settings Causeway does not implement whose absence changes nothing a
/// client or server sees: (values that need no warning, why).
fn not_implemented(key: &str) -> Option<(&'static [&'static str], &'static str)> {
    Some(match key {
        "logfile" => (
            &[""],
            "Causeway logs to stderr (the service manager keeps it)",
        ),
        "pidfile" => (
            &[""],
            "Causeway writes no pid file (run it under a service manager)",
        ),
        "syslog" => (&["0"], "Causeway logs to stderr, not to syslog"),
        "syslog_ident" => (&["pgbouncer"], "Causeway logs to stderr, not to syslog"),
        "syslog_facility" => (&["daemon"], "Causeway logs to stderr, not to syslog"),
        "log_stats" => (
            &["1"],
            "the stats line is logged every stats_period regardless",
        ),
        "user" => (
            &[],
            "Causeway does not change its Unix user: start it as that user",
        ),
        "job_name" | "service_name" => (&["pgbouncer"], "a Windows service name"),
        "conffile" => (&[], "Causeway re-reads the --config files given at start"),
        "listen_backlog" => (&[], "Causeway uses a listen backlog of 4096"),
        "sbuf_loopcnt" => (
            &[],
            "Causeway's scheduler shares the CPU between connections",
        ),
        "tcp_defer_accept" | "tcp_socket_buffer" | "tcp_keepcnt" | "tcp_keepidle"
        | "tcp_keepintvl" | "tcp_user_timeout" => (&["0"], "Causeway uses the OS defaults"),
        "dns_max_ttl" | "dns_nxdomain_ttl" | "dns_zone_check_period" | "resolv_conf" => (
            &["", "0"],
            "Causeway resolves server names with the system resolver at each connect",
        ),
        "autodb_idle_timeout" => (
            &[],
            "pools of `*` databases close their servers by server_idle_timeout",
        ),
        "suspend_timeout" => (&[], "Causeway has no SUSPEND or online restart (-R)"),
        "query_wait_notify" => (
            &["0"],
            "Causeway sends no notice to clients waiting for a server",
        ),
        "cancel_wait_timeout" => (
            &[],
            "Causeway sends each cancel request at once or drops it",
        ),
        "scram_iterations" => (
            &["4096"],
            "Causeway computes SCRAM secrets with 4096 iterations",
        ),
        "server_round_robin" => (
            &["0"],
            "Causeway reuses the most recently used server connection first",
        ),
        "server_fast_close" => (
            &["0"],
            "session-mode servers close at session end after RECONNECT",
        ),
        "application_name_add_host" => (&["0"], "application_name is passed on unchanged"),
        "auth_hba_file" | "auth_ident_file" | "auth_ldap_options" => (
            &[""],
            "only read with auth_type hba or ldap, which Causeway does not implement",
        ),
        "client_tls13_ciphers" | "server_tls13_ciphers" => (
            &[""],
            "not implemented: Causeway allows every TLS 1.3 cipher suite it has",
        ),
        "client_tls_ecdhcurve" | "client_tls_dheparams" => (
            &["auto", "none"],
            "not implemented: Causeway's TLS library picks the key exchange groups",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, v: &str) -> Vec<(String, toml::Value)> {
        let m = setting(key, v).unwrap_or_else(|e| panic!("{key} = {v}: {e}"));
        assert!(m.warnings.is_empty(), "{key} = {v}: {:?}", m.warnings);
        m.set.into_iter().map(|(p, v)| (p.join("."), v)).collect()
    }

    fn one(key: &str, v: &str) -> toml::Value {
        let s = set(key, v);
        assert_eq!(s.len(), 1, "{key} = {v}: {s:?}");
        s[0].1.clone()
    }

    #[test]
    fn every_pgbouncer_key_has_an_outcome() {
        // Each key with a plausible value: mapped, warned or refused, never
        // "unknown".
        for key in KEYS {
            let v = match *key {
                "auth_type" => "md5",
                "pool_mode" => "session",
                "listen_addr" => "127.0.0.1",
                "client_tls_sslmode" | "server_tls_sslmode" => "require",
                k if k.ends_with("_users") || k.ends_with("parameters") => "a,b",
                k if k.ends_with("file") || k.ends_with("dir") || k == "user" => "/x/y",
                _ => "7",
            };
            if let Err(e) = setting(key, v) {
                assert!(!e.contains("unknown setting"), "{key}: {e}");
            }
        }
        assert!(setting("listen_prot", "1")
            .unwrap_err()
            .contains("unknown setting"));
        // Case matters, as in PgBouncer.
        assert!(setting("Listen_Port", "1").is_err());
    }

    #[test]
    fn same_names_with_pgbouncer_value_syntax() {
        assert_eq!(one("listen_port", "6433"), toml::Value::Integer(6433));
        assert_eq!(one("so_reuseport", "1"), toml::Value::Boolean(true));
        assert_eq!(one("tcp_keepalive", "0"), toml::Value::Boolean(false));
        assert_eq!(one("query_wait_timeout", "2.5"), toml::Value::Float(2.5));
        assert_eq!(one("stats_period", "30"), toml::Value::Float(30.0));
        assert_eq!(
            one("pool_mode", "Transaction"),
            toml::Value::from("transaction")
        );
        assert_eq!(
            one("admin_users", "alice, bob carol"),
            toml::Value::from(vec!["alice", "bob", "carol"])
        );
        assert_eq!(
            one("max_packet_size", "0x10000"),
            toml::Value::Integer(65536)
        );
        assert!(set("auth_file", "").is_empty());
        assert!(setting("so_reuseport", "yes").is_err());
        assert!(setting("pool_mode", "tx").is_err());
        assert!(setting("query_timeout", "-1").is_err());
    }

    #[test]
    fn translations() {
        assert_eq!(
            set("verbose", "2"),
            vec![("log_level".into(), toml::Value::from("trace"))]
        );
        assert_eq!(one("server_check_query", "<empty>"), toml::Value::from(";"));
        assert_eq!(one("server_lifetime", "0"), toml::Value::Float(0.000_001));
        assert_eq!(one("server_lifetime", "60"), toml::Value::Float(60.0));
        let star = setting("listen_addr", "*").unwrap();
        assert_eq!(star.set[0].1, toml::Value::from("0.0.0.0"));
        assert_eq!(star.warnings.len(), 1);
        assert!(setting("listen_addr", "127.0.0.1,::1").is_err());
        let trust = setting("auth_type", "trust").unwrap();
        assert_eq!(trust.warnings.len(), 1, "trust differs: warned");
        assert_eq!(
            one("auth_type", "SCRAM-SHA-256"),
            toml::Value::from("scram-sha-256")
        );
    }

    #[test]
    fn silent_changes_are_refused_and_off_values_pass() {
        for (k, on, off) in [
            ("disable_pqexec", "1", "0"),
            ("max_db_client_connections", "10", "0"),
            ("max_user_client_connections", "10", "0"),
            ("transaction_timeout", "30", "0"),
            ("auth_type", "hba", "md5"),
        ] {
            assert!(setting(k, on).is_err(), "{k} = {on} accepted");
            assert!(setting(k, off).is_ok(), "{k} = {off} refused");
        }
    }

    #[test]
    fn tls_settings_keep_their_names() {
        for (k, v) in [
            ("client_tls_sslmode", "verify-full"),
            ("server_tls_sslmode", "require"),
            ("client_tls_key_file", "/etc/pgbouncer/key.pem"),
            ("client_tls_cert_file", "/etc/pgbouncer/cert.pem"),
            ("client_tls_ca_file", "/etc/pgbouncer/ca.pem"),
            ("client_tls_protocols", "tlsv1.2,tlsv1.3"),
            ("client_tls_ciphers", "secure"),
            ("server_tls_ca_file", "/etc/ssl/root.crt"),
            ("server_tls_key_file", "/etc/ssl/client.key"),
            ("server_tls_cert_file", "/etc/ssl/client.crt"),
            ("server_tls_protocols", "secure"),
            ("server_tls_ciphers", "HIGH:!aNULL"),
        ] {
            assert_eq!(one(k, v), toml::Value::from(v), "{k}");
        }
        assert_eq!(
            one("client_tls_sslmode", "Prefer"),
            toml::Value::from("prefer")
        );
        assert!(setting("server_tls_sslmode", "sometimes").is_err());
        // PgBouncer's "no file".
        assert!(set("server_tls_ca_file", "").is_empty());
        // Not implemented: one warning each, unless the value is what
        // Causeway does anyway.
        for k in ["client_tls_ecdhcurve", "client_tls_dheparams"] {
            assert_eq!(setting(k, "prime256v1").unwrap().warnings.len(), 1, "{k}");
            assert!(setting(k, "auto").unwrap().warnings.is_empty(), "{k}");
        }
    }

    #[test]
    fn unix_socket_settings_keep_their_names() {
        assert_eq!(
            one("unix_socket_dir", "/var/run/pgbouncer"),
            toml::Value::from("/var/run/pgbouncer")
        );
        assert_eq!(one("unix_socket_dir", ""), toml::Value::from(""));
        assert_eq!(one("unix_socket_mode", "0770"), toml::Value::from("0770"));
        assert_eq!(one("unix_socket_mode", "777"), toml::Value::from("0777"));
        assert!(setting("unix_socket_mode", "0999").is_err());
        assert!(setting("unix_socket_mode", "rwx").is_err());
        assert_eq!(
            one("unix_socket_group", "postgres"),
            toml::Value::from("postgres")
        );
    }

    #[test]
    fn not_implemented_warns_unless_the_value_is_what_causeway_does() {
        assert_eq!(
            setting("logfile", "/var/log/x.log").unwrap().warnings.len(),
            1
        );
        assert!(setting("syslog", "0").unwrap().warnings.is_empty());
        assert_eq!(setting("syslog", "1").unwrap().warnings.len(), 1);
        assert!(setting("client_tls13_ciphers", "")
            .unwrap()
            .warnings
            .is_empty());
        assert_eq!(
            setting("client_tls13_ciphers", "TLS_AES_128_GCM_SHA256")
                .unwrap()
                .warnings
                .len(),
            1
        );
    }
}
