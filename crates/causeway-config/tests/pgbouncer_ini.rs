//! PgBouncer files read as they are: the documentation's example shapes
//! (our own fixtures under tests/fixtures/pgbouncer), every key Causeway
//! maps, `%include`, warnings and errors naming file, line and key,
//! layering with TOML/env/flags, and `causeway import`'s TOML loading to
//! the same configuration.

use std::path::{Path, PathBuf};

use causeway_config::{
    ini, load, load_with_warnings, AuthType, Config, ConfigError, Layers, LoadBalance, Loaded,
    PoolMode,
};

fn fixture(name: &str) -> PathBuf {
    // Relative, as an operator would give it; tests run in the crate dir.
    PathBuf::from("tests/fixtures/pgbouncer").join(name)
}

fn layers(files: &[&Path]) -> Layers {
    Layers {
        system_file: PathBuf::from("/nonexistent/causeway.toml"),
        files: files.iter().map(|p| p.to_path_buf()).collect(),
        env_prefix: None,
        overrides: vec![],
    }
}

fn loaded(name: &str) -> Loaded {
    load_with_warnings(&layers(&[&fixture(name)])).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn error(name: &str) -> String {
    load(&layers(&[&fixture(name)]))
        .err()
        .unwrap_or_else(|| panic!("{name} loaded"))
        .to_string()
}

/// The one warning about `key` (as `[section] key`), which names its line.
fn warning<'a>(l: &'a Loaded, file: &str, line: usize, key: &str) -> &'a str {
    let at = format!("{}:{line}: {key}: ", fixture(file).display());
    let found: Vec<_> = l.warnings.iter().filter(|w| w.starts_with(&at)).collect();
    assert_eq!(found.len(), 1, "warnings for {at}: {:#?}", l.warnings);
    found[0]
}

#[test]
fn small_example_shape() {
    let l = loaded("small.ini");
    let c = &l.config;
    assert_eq!(c.pool_mode, PoolMode::Session);
    assert_eq!(c.listen_port, 6543);
    assert_eq!(c.listen_addr, "localhost");
    assert_eq!(c.auth_type, AuthType::Md5);
    assert_eq!(c.auth_file.as_deref(), Some(Path::new("userlist.txt")));
    assert_eq!(c.admin_users, ["ops"]);
    assert_eq!(c.stats_users, ["grafana", "exporter"]);
    let db = &c.databases["inventory"];
    assert_eq!(db.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(db.dbname.as_deref(), Some("inventory"));
    assert_eq!(db.auth_user.as_deref(), Some("lookup"));
    assert!(warning(&l, "small.ini", 12, "[pgbouncer] logfile").contains("stderr"));
    assert!(warning(&l, "small.ini", 13, "[pgbouncer] pidfile").contains("pid file"));
    assert_eq!(l.warnings.len(), 2, "{:#?}", l.warnings);
}

#[test]
fn database_shapes() {
    let l = loaded("databases.ini");
    let c = &l.config;
    assert_eq!(c.databases["shop"].dbname.as_deref(), Some("shop_prod"));
    let r = &c.databases["reports"];
    assert_eq!((r.host.as_deref(), r.port), (Some("127.0.0.1"), Some(5433)));
    assert_eq!(r.user.as_deref(), Some("reporter"));
    assert_eq!(r.password.as_deref(), Some("r3p0rts"));
    assert_eq!(r.client_encoding.as_deref(), Some("UNICODE"));
    assert_eq!(r.datestyle.as_deref(), Some("ISO"));
    assert_eq!(r.connect_query.as_deref(), Some("SELECT 1"));
    let b = &c.databases["busy"];
    assert_eq!((b.pool_size, b.reserve_pool_size), (Some(50), Some(10)));
    let hosts: Vec<_> = c.databases["replicas"]
        .server_list()
        .iter()
        .map(|s| s.host_port())
        .collect();
    assert_eq!(hosts, ["10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3:5432"]);
    assert!(warning(&l, "databases.ini", 14, "[databases] replicas").contains("primary"));
    // The * fallback serves names not listed, under the client's name.
    let fallback = c.database("anything").expect("* fallback");
    assert_eq!(fallback.host.as_deref(), Some("127.0.0.1"));
    assert_eq!(fallback.dbname, None);
    let u = &c.users["batch"];
    assert_eq!(u.pool_mode, Some(PoolMode::Transaction));
    assert_eq!((u.pool_size, u.reserve_pool_size), (Some(5), Some(2)));
    assert_eq!(u.max_user_connections, Some(10));
    assert_eq!(u.max_user_client_connections, Some(20));
    assert_eq!(l.warnings.len(), 1, "{:#?}", l.warnings);
}

#[test]
fn every_mapped_key_arrives() {
    let l = loaded("every-key.ini");
    let c = &l.config;
    let def = Config::default();
    assert_eq!(c.listen_addr, "0.0.0.0");
    assert_eq!(c.listen_port, 7432);
    assert!(c.so_reuseport);
    assert_eq!(c.pool_mode, PoolMode::Transaction);
    assert_eq!(
        (
            c.max_client_conn,
            c.default_pool_size,
            c.min_pool_size,
            c.reserve_pool_size
        ),
        (500, 30, 2, 4)
    );
    assert_eq!(c.reserve_pool_timeout, 2.5);
    assert_eq!((c.max_db_connections, c.max_user_connections), (90, 80));
    assert_eq!(c.auth_type, AuthType::ScramSha256);
    assert_eq!(
        c.auth_file.as_deref(),
        Some(Path::new("/etc/pgbouncer/userlist.txt"))
    );
    assert_eq!(c.auth_user.as_deref(), Some("authenticator"));
    assert_eq!(
        c.auth_query,
        "SELECT usename, passwd FROM pgbouncer.get_auth($1)"
    );
    assert_eq!(c.auth_dbname.as_deref(), Some("authdb"));
    assert_eq!(
        (c.admin_users.clone(), c.stats_users.clone()),
        (
            vec!["admin".into(), "ops".into()],
            vec!["stats".to_string()]
        )
    );
    let times = [
        c.server_idle_timeout,
        c.server_lifetime,
        c.server_connect_timeout,
        c.server_login_retry,
        c.query_timeout,
        c.query_wait_timeout,
        c.client_idle_timeout,
        c.client_login_timeout,
        c.idle_transaction_timeout,
        c.server_check_delay,
        c.stats_period,
    ];
    assert_eq!(
        times,
        [300.0, 1800.0, 5.0, 3.0, 60.0, 30.0, 900.0, 20.0, 45.0, 10.0, 30.0]
    );
    assert_eq!(c.server_reset_query, "DISCARD ALL; SELECT 1");
    assert!(c.server_reset_query_always);
    assert_eq!(c.max_prepared_statements, 100);
    assert_eq!(c.server_check_query, ";", "PgBouncer's <empty>");
    assert_eq!(c.max_packet_size, 1_048_576);
    assert_eq!(c.track_extra_parameters, ["IntervalStyle", "search_path"]);
    assert_eq!(
        c.ignore_startup_parameters,
        ["extra_float_digits", "options"]
    );
    assert!(
        !c.tcp_keepalive && !c.log_connections && !c.log_disconnections && !c.log_pooler_errors
    );
    assert_eq!(c.log_level, "debug", "verbose = 1");
    assert_eq!(
        c.metrics_addr, def.metrics_addr,
        "untouched: Causeway's own"
    );

    // TLS and the unix socket, under PgBouncer's names.
    use causeway_config::{FileMode, SslMode};
    assert_eq!(
        (c.client_tls_sslmode, c.server_tls_sslmode),
        (SslMode::Require, SslMode::VerifyFull)
    );
    let files = [
        &c.client_tls_key_file,
        &c.client_tls_cert_file,
        &c.client_tls_ca_file,
        &c.server_tls_ca_file,
        &c.server_tls_key_file,
        &c.server_tls_cert_file,
    ]
    .map(|p| p.as_deref().and_then(Path::to_str).unwrap_or(""));
    assert_eq!(
        files,
        [
            "/etc/pgbouncer/server.key",
            "/etc/pgbouncer/server.crt",
            "/etc/pgbouncer/clients-ca.crt",
            "/etc/pgbouncer/root.crt",
            "/etc/pgbouncer/client.key",
            "/etc/pgbouncer/client.crt",
        ]
    );
    assert_eq!(
        [
            c.client_tls_protocols.as_str(),
            c.client_tls_ciphers.as_str(),
            c.server_tls_protocols.as_str(),
            c.server_tls_ciphers.as_str()
        ],
        ["tlsv1.3", "secure", "tlsv1.2,tlsv1.3", "HIGH:!aNULL"]
    );
    assert_eq!(c.unix_socket_dir, "/var/run/pgbouncer");
    assert_eq!(c.unix_socket_mode, FileMode(0o770));
    assert_eq!(c.unix_socket_group, "postgres");

    let app = &c.databases["app"];
    assert_eq!(
        (app.host.as_deref(), app.port),
        (Some("db1.internal"), Some(5433))
    );
    assert_eq!(app.dbname.as_deref(), Some("app_prod"));
    assert_eq!(
        (app.user.as_deref(), app.password.as_deref()),
        (Some("app_rw"), Some("s3cret"))
    );
    assert_eq!(app.auth_user.as_deref(), Some("app_auth"));
    assert_eq!(
        (
            app.pool_size,
            app.min_pool_size,
            app.reserve_pool_size,
            app.max_db_connections
        ),
        (Some(12), Some(1), Some(3), Some(40))
    );
    assert_eq!(app.server_lifetime, Some(600.0));
    assert_eq!(app.pool_mode, Some(PoolMode::Session));
    assert_eq!(app.client_encoding.as_deref(), Some("UTF8"));
    assert_eq!(app.datestyle.as_deref(), Some("ISO"));
    assert_eq!(app.timezone.as_deref(), Some("UTC"));
    assert_eq!(app.application_name.as_deref(), Some("via_causeway"));
    assert_eq!(
        app.connect_query.as_deref(),
        Some("SET search_path TO app, public")
    );
    let ha = &c.databases["ha"];
    assert_eq!(ha.server_list().len(), 2);
    assert_eq!(
        ha.read_write_split,
        Some(false),
        "load_balance_hosts=disable"
    );
    assert_eq!(ha.load_balance, None);
    assert_eq!(c.databases["*"].port, Some(5433));
    let u = &c.users["reporting"];
    assert_eq!(u.pool_mode, Some(PoolMode::Statement));
    assert_eq!(
        (
            u.pool_size,
            u.reserve_pool_size,
            u.max_user_connections,
            u.max_user_client_connections
        ),
        (Some(3), Some(1), Some(6), Some(50))
    );

    // One warning per ignored setting, each naming its line; none for the
    // off values of refused settings.
    let f = "every-key.ini";
    warning(&l, f, 5, "[pgbouncer] listen_addr");
    for (line, key) in [
        (63, "logfile"),
        (64, "pidfile"),
        (65, "client_tls_ecdhcurve"),
        (66, "tcp_keepidle"),
        (67, "dns_max_ttl"),
        (68, "server_round_robin"),
        (69, "client_tls_dheparams"),
    ] {
        warning(&l, f, line, &format!("[pgbouncer] {key}"));
    }
    warning(&l, f, 79, "[databases] ha");
    warning(&l, f, 86, "[peers] 1");
    assert_eq!(l.warnings.len(), 10, "{:#?}", l.warnings);
}

#[test]
fn include_reads_the_other_file_in_place() {
    let l = loaded("include/main.ini");
    let c = &l.config;
    assert_eq!(c.listen_port, 6440);
    assert_eq!(c.pool_mode, PoolMode::Transaction, "from the included file");
    assert_eq!(c.databases["orders"].pool_size, Some(8));
    assert_eq!(c.databases["metrics"].dbname.as_deref(), Some("metrics"));
    assert!(l.warnings.is_empty(), "{:#?}", l.warnings);
}

#[test]
fn peered_example_loads_with_its_peers() {
    let c = loaded("peered.ini").config;
    assert_eq!(c.peer_id, 1);
    assert!(c.so_reuseport);
    assert_eq!(c.peers.len(), 2);
    assert_eq!(c.peers["2"].host, "/tmp/pgbouncer-b");
    assert_eq!(c.peers["2"].port, 6432, "PgBouncer's default peer port");
}

#[test]
fn refused_settings_are_all_reported_with_file_line_and_key() {
    let e = error("refused.ini");
    let f = fixture("refused.ini").display().to_string();
    for (line, key, why) in [
        (3, "[databases] local", "unix_socket_dir is empty"),
        (4, "[databases] viahba", "auth_dbname"),
        (7, "[users] slow", "query_timeout"),
        (11, "[pgbouncer] auth_type", "hba"),
        (13, "[pgbouncer] transaction_timeout", "not enforced"),
        (14, "[pgbouncer] disable_pqexec", "simple query"),
    ] {
        let at = format!("{f}:{line}: {key}: ");
        let l = e
            .lines()
            .find(|l| l.starts_with(&at))
            .unwrap_or_else(|| panic!("no error for {at}:\n{e}"));
        assert!(l.contains(why), "{l}");
    }
    assert_eq!(e.lines().count(), 6, "{e}");
}

fn temp_ini(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn type_and_validation_errors_name_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    let p = temp_ini(
        d.path(),
        "t.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\n\nlisten_port = 70000\n",
    );
    let e = load(&layers(&[&p])).unwrap_err().to_string();
    assert!(e.contains("listen_port"), "{e}");
    assert!(e.contains(&format!("{}:4", p.display())), "{e}");

    let p = temp_ini(
        d.path(),
        "v.ini",
        "[pgbouncer]\nlisten_addr = db.example.com\n",
    );
    let e = load(&layers(&[&p])).unwrap_err().to_string();
    assert!(e.contains("listen_addr"), "{e}");
    assert!(
        e.contains(&format!("PgBouncer file {}:2", p.display())),
        "{e}"
    );

    let p = temp_ini(
        d.path(),
        "db.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\n[databases]\napp = host=h pool_size=0 min_pool_size=3\n",
    );
    let e = load(&layers(&[&p])).unwrap_err().to_string();
    assert!(e.contains("databases.app.min_pool_size"), "{e}");
    assert!(e.contains(&format!("{}:4", p.display())), "{e}");

    let p = temp_ini(
        d.path(),
        "x.ini",
        "[pgbouncer]\nlisten_port = 6432 ; comment\n",
    );
    let e = load(&layers(&[&p])).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}:2: [pgbouncer] listen_port", p.display())),
        "{e}"
    );
}

#[test]
fn reserve_pool_timeout_zero_only_without_a_reserve_pool() {
    let d = tempfile::tempdir().unwrap();
    let ok = temp_ini(
        d.path(),
        "ok.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\nreserve_pool_timeout = 0\n",
    );
    load(&layers(&[&ok])).expect("no reserve pool anywhere: fine");
    let bad = temp_ini(
        d.path(),
        "bad.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\nreserve_pool_timeout = 0\n[databases]\napp = host=h reserve_pool_size=2\n",
    );
    let e = load(&layers(&[&bad])).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "{}:3: [pgbouncer] reserve_pool_timeout",
            bad.display()
        )),
        "{e}"
    );
}

#[test]
fn secrets_are_never_echoed() {
    let d = tempfile::tempdir().unwrap();
    let p = temp_ini(
        d.path(),
        "s.ini",
        "[databases]\napp = host=h password='hunter2 x' pool_mode=bogus\nb = host=h password=hunter2'\n\
         [pgbouncer]\nauth_ldap_options = binddn=x bindpasswd=hunter2\n",
    );
    let e = load(&layers(&[&p])).unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let p = temp_ini(
        d.path(),
        "w.ini",
        "[pgbouncer]\nauth_ldap_options = bindpasswd=hunter2\n",
    );
    let w = load_with_warnings(&layers(&[&p]))
        .unwrap()
        .warnings
        .join("\n");
    assert!(
        w.contains("auth_ldap_options") && !w.contains("hunter2"),
        "{w}"
    );
    let toml = ini::read(&p).unwrap().to_toml();
    assert!(!toml.contains("hunter2"), "{toml}");
}

#[test]
fn layered_with_toml_env_and_flags() {
    let d = tempfile::tempdir().unwrap();
    let before = temp_ini(
        d.path(),
        "before.toml",
        "default_pool_size = 5\nmax_client_conn = 7\n",
    );
    let ini = temp_ini(
        d.path(),
        "pgbouncer.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\ndefault_pool_size = 9\nlisten_port = 7000\n\
         [databases]\napp = host=h pool_size=3\n",
    );
    let after = temp_ini(
        d.path(),
        "after.toml",
        "listen_port = 7001\n[databases.app]\nread_write_split = false\n",
    );
    let mut l = layers(&[&before, &ini, &after]);
    std::env::set_var("CWTEST_INI_DATABASES__APP__POOL_SIZE", "4");
    l.env_prefix = Some("CWTEST_INI_".into());
    l.overrides
        .push(("max_client_conn".into(), toml::Value::Integer(8)));
    let c = load(&l).unwrap();
    assert_eq!(c.default_pool_size, 9, "the ini over the TOML before it");
    assert_eq!(c.listen_port, 7001, "the TOML after it over the ini");
    assert_eq!(c.max_client_conn, 8, "flags over everything");
    let app = &c.databases["app"];
    assert_eq!(app.host.as_deref(), Some("h"));
    assert_eq!(app.read_write_split, Some(false), "tables merge");
    assert_eq!(app.pool_size, Some(4), "the environment over the ini");
}

/// `causeway import`'s TOML loads to exactly the configuration the ini
/// loads to, for every fixture that loads.
#[test]
fn imported_toml_loads_to_the_same_configuration() {
    let d = tempfile::tempdir().unwrap();
    for name in [
        "small.ini",
        "databases.ini",
        "every-key.ini",
        "include/main.ini",
    ] {
        let from_ini = loaded(name).config;
        let file = ini::read(&fixture(name)).unwrap();
        let text = file.to_toml();
        let out = d.path().join("imported.toml");
        std::fs::write(&out, &text).unwrap();
        let from_toml = load(&layers(&[&out])).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(
            toml::to_string(&from_toml).unwrap(),
            toml::to_string(&from_ini).unwrap(),
            "{name}:\n{text}"
        );
        // Every warning is carried over as a comment, every line is cited.
        for w in file.warnings() {
            assert!(text.contains(&format!("#   {w}")), "{name}: {w}\n{text}");
        }
    }
}

#[test]
fn only_ini_files_are_read_as_pgbouncer_files() {
    assert!(ini::is_pgbouncer_file(Path::new(
        "/etc/pgbouncer/pgbouncer.ini"
    )));
    assert!(ini::is_pgbouncer_file(Path::new("x.INI")));
    assert!(!ini::is_pgbouncer_file(Path::new("causeway.toml")));
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing.ini");
    assert!(matches!(
        load(&layers(&[&missing])),
        Err(ConfigError::Missing(_))
    ));
    let _ = LoadBalance::RoundRobin;
}

#[test]
fn a_key_given_twice_takes_the_later_line_whole() {
    let d = tempfile::tempdir().unwrap();
    let p = temp_ini(
        d.path(),
        "twice.ini",
        "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 7000\n[databases]\n\
         app = host=a pool_size=3 dbname=x\nother = host=o\n[pgbouncer]\nlisten_port = 7001\n\
         [databases]\napp = host=b\n",
    );
    let c = load(&layers(&[&p])).unwrap();
    assert_eq!(c.listen_port, 7001);
    let app = &c.databases["app"];
    assert_eq!(app.host.as_deref(), Some("b"));
    assert_eq!(
        (app.pool_size, app.dbname.as_deref()),
        (None, None),
        "the whole entry replaced"
    );
    assert!(c.databases.contains_key("other"));
}

#[test]
fn unix_socket_databases_keep_their_directory() {
    let d = tempfile::tempdir().unwrap();
    let text = |dir_line: &str| {
        format!(
            "[databases]\nsock = host=/var/run/postgresql port=5433\nbare = dbname=x\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\n{dir_line}\n"
        )
    };
    // No host: PgBouncer's unix_socket_dir (default /tmp).
    let p = temp_ini(d.path(), "a.ini", &text(""));
    let c = load(&layers(&[&p])).unwrap();
    assert_eq!(
        c.databases["sock"].host.as_deref(),
        Some("/var/run/postgresql")
    );
    assert_eq!(c.databases["sock"].port, Some(5433));
    assert_eq!(c.databases["bare"].host.as_deref(), Some("/tmp"));
    let p = temp_ini(d.path(), "b.ini", &text("unix_socket_dir = /run/pgbouncer"));
    let c = load(&layers(&[&p])).unwrap();
    assert_eq!(c.databases["bare"].host.as_deref(), Some("/run/pgbouncer"));
    assert_eq!(c.unix_socket_dir, "/run/pgbouncer");
}
