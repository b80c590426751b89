//! The shipped example files load, and every setting of the config structs
//! is documented in the commented example and the reference page.

use std::path::{Path, PathBuf};

use causeway_config::{load, Config, DatabaseConfig, Layers, PeerConfig, ServerConfig, UserConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn layers(file: &str) -> Layers {
    Layers {
        system_file: PathBuf::from("/nonexistent/causeway.toml"),
        files: vec![repo().join(file)],
        env_prefix: None,
        overrides: vec![],
    }
}

#[test]
fn example_files_load() {
    let full = load(&layers("configs/causeway.toml")).expect("configs/causeway.toml");
    assert_eq!(full.databases["app"].server_list().len(), 2);
    assert!(full.database("anything").is_some(), "the * fallback");
    let min = load(&layers("configs/minimal.toml")).expect("configs/minimal.toml");
    assert_eq!(min.listen_port, 6432);
}

/// Keys of a struct as serde names them (from its default serialized to TOML).
fn keys<T: serde::Serialize>(v: &T) -> Vec<String> {
    let t = toml::Value::try_from(v).expect("serializable");
    t.as_table().expect("table").keys().cloned().collect()
}

fn all_keys() -> Vec<String> {
    let mut k = keys(&Config::default());
    k.retain(|k| k != "databases" && k != "users" && k != "peers");
    let db = DatabaseConfig {
        dbname: Some(String::new()),
        host: Some(String::new()),
        port: Some(1),
        user: Some(String::new()),
        password: Some(String::new()),
        auth_user: Some(String::new()),
        pool_size: Some(1),
        min_pool_size: Some(1),
        reserve_pool_size: Some(1),
        pool_mode: Some(Default::default()),
        max_db_connections: Some(1),
        server_lifetime: Some(1.0),
        connect_query: Some(String::new()),
        client_encoding: Some(String::new()),
        datestyle: Some(String::new()),
        timezone: Some(String::new()),
        application_name: Some(String::new()),
        read_write_split: Some(true),
        load_balance: Some(Default::default()),
        primary_reads: Some(Default::default()),
        replica_unavailable: Some(Default::default()),
        sticky_reads: Some(false),
        max_replica_lag: Some(1.0),
        max_replica_lag_bytes: Some(1),
        monitor_user: Some(String::new()),
        monitor_password: Some(String::new()),
        consistency: Some(Default::default()),
        server_tls_sslmode: Some(Default::default()),
        server_tls_ca_file: Some(Default::default()),
        server_tls_key_file: Some(Default::default()),
        server_tls_cert_file: Some(Default::default()),
        server_tls_protocols: Some(String::new()),
        server_tls_ciphers: Some(String::new()),
        servers: vec![],
        servers_from: Default::default(),
        patroni_url: vec![],
    };
    k.extend(keys(&db));
    k.extend(keys(&ServerConfig {
        host: String::new(),
        port: 1,
        role: Default::default(),
        weight: 1,
    }));
    let user = UserConfig {
        pool_mode: Some(Default::default()),
        pool_size: Some(1),
        reserve_pool_size: Some(1),
        max_user_connections: Some(1),
        max_user_client_connections: Some(1),
        consistency: Some(Default::default()),
    };
    k.extend(keys(&user));
    k.extend(keys(&PeerConfig::default()));
    k
}

#[test]
fn every_setting_is_documented() {
    let example = std::fs::read_to_string(repo().join("configs/causeway.toml")).unwrap();
    let reference = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    for key in all_keys() {
        assert!(
            example.contains(&format!("{key} =")) || example.contains(&format!(".{key}]]")),
            "configs/causeway.toml does not show `{key}`"
        );
        assert!(
            reference.contains(&format!("`{key}`")),
            "docs/configuration.md does not document `{key}`"
        );
    }
}
