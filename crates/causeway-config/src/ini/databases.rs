//! A `[databases]` line, `name = host=... port=... dbname=...`, becomes a
//! `[databases.NAME]` table. A host list (`host=a,b,c`) becomes the
//! database's server list: Causeway finds the primary among them and
//! spreads reads over the replicas instead of PgBouncer's round robin of
//! every connection, which is worth a warning.

use toml::{Table, Value};

use super::connstr::pairs;
use super::pgbouncer::POOL_MODES;
use super::values::{decimal, insert_unless_below, lookup};
use super::Mapped;

/// Maps `name = connstr`.
pub fn database(name: &str, connstr: &str) -> Result<Mapped, String> {
    if name == "pgbouncer" {
        return Err("the name `pgbouncer` is reserved for the admin console".into());
    }
    let mut t = Table::new();
    let mut m = Mapped::none();
    let (mut hosts, mut port, mut balance) = (None, None, None);
    for (k, v) in pairs(connstr)? {
        match k.as_str() {
            "dbname" | "user" | "password" | "auth_user" | "client_encoding" | "datestyle"
            | "timezone" | "application_name" | "connect_query" => {
                t.insert(k, Value::String(v));
            }
            "host" => hosts = Some(v),
            "port" => port = Some(decimal(&v)?),
            // PgBouncer's "not set" is negative for these...
            "pool_size" | "min_pool_size" => insert_unless_below(&mut t, &k, &v, 0)?,
            "reserve_pool" | "reserve_pool_size" => {
                insert_unless_below(&mut t, "reserve_pool_size", &v, 0)?
            }
            // ...and zero or negative for this one.
            "max_db_connections" => insert_unless_below(&mut t, &k, &v, 1)?,
            "server_lifetime" => match decimal(&v)? {
                n if n < 0 => return Err(format!("server_lifetime `{v}` is negative")),
                0 => {} // PgBouncer: the global server_lifetime
                n => {
                    t.insert(k, Value::Float(n as f64));
                }
            },
            "pool_mode" => {
                t.insert(k, lookup(&v, POOL_MODES)?.into());
            }
            "load_balance_hosts" => balance = Some(lookup(&v, &["round-robin", "disable"])?),
            "max_db_client_connections" if decimal(&v)? <= 0 => {}
            "max_db_client_connections" => {
                return Err("max_db_client_connections is not enforced by Causeway".into())
            }
            "auth_dbname" | "auth_query" => {
                return Err(format!(
                    "a per-database {k} is not implemented: set it in [pgbouncer]"
                ))
            }
            other => return Err(format!("unknown connection parameter `{other}`")),
        }
    }
    servers(&mut t, &mut m, hosts, port)?;
    if let (Some(b), Some(Value::Array(_))) = (balance, t.get("servers")) {
        balance_hosts(&mut t, &mut m, b);
    }
    m.set
        .push((vec!["databases".into(), name.into()], Value::Table(t)));
    Ok(m)
}

/// `host` (and `port`), or `servers` for a host list.
fn servers(
    t: &mut Table,
    m: &mut Mapped,
    hosts: Option<String>,
    port: Option<i64>,
) -> Result<(), String> {
    let hosts: Vec<String> = hosts
        .iter()
        .flat_map(|h| h.split(','))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    if hosts.is_empty() {
        // PgBouncer's default: the Unix socket in its unix_socket_dir,
        // filled in once the whole file is read (see `default_hosts`).
        if let Some(p) = port {
            t.insert("port".into(), Value::Integer(p));
        }
        return Ok(());
    }
    if hosts.iter().any(|h| h.starts_with('@')) {
        return Err(
            "an abstract Unix socket (`@name`) is not implemented: use a socket \
             directory (host=/path) or host=ADDRESS"
                .into(),
        );
    }
    if let [h] = hosts.as_slice() {
        t.insert("host".into(), Value::String(h.clone()));
        if let Some(p) = port {
            t.insert("port".into(), Value::Integer(p));
        }
        return Ok(());
    }
    let list = hosts
        .into_iter()
        .map(|h| {
            let mut s = Table::new();
            s.insert("host".into(), Value::String(h));
            if let Some(p) = port {
                s.insert("port".into(), Value::Integer(p));
            }
            Value::Table(s)
        })
        .collect();
    t.insert("servers".into(), Value::Array(list));
    m.warnings.push(
        "host list: Causeway sends writes to the primary it finds among these hosts and, \
         in transaction/statement mode, spreads reads over the replicas; session-mode \
         clients all go to the primary (see docs/migrating-from-pgbouncer.md)"
            .into(),
    );
    Ok(())
}

/// `load_balance_hosts`: round-robin is Causeway's read balancing;
/// `disable` (stay on one host until it fails) becomes "everything to
/// the primary", which the lag monitor follows through a failover.
fn balance_hosts(t: &mut Table, m: &mut Mapped, how: &str) {
    if how == "round-robin" {
        t.insert("load_balance".into(), "round_robin".into());
    } else {
        t.insert("read_write_split".into(), Value::Boolean(false));
        m.note = Some("load_balance_hosts=disable: everything on the primary".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, connstr: &str) -> (Table, Mapped) {
        let mut m = database(name, connstr).unwrap_or_else(|e| panic!("{connstr}: {e}"));
        let (path, v) = m.set.pop().unwrap();
        assert_eq!(path, vec!["databases".to_string(), name.to_string()]);
        match v {
            Value::Table(t) => (t, m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_connection_parameter() {
        let (t, m) = table(
            "forcedb",
            "host=db1 port=5433 dbname=real user=u password='p w' auth_user=au \
             pool_size=7 min_pool_size=2 reserve_pool=3 max_db_connections=9 \
             server_lifetime=120 pool_mode=Transaction client_encoding=UTF8 datestyle=ISO \
             timezone=UTC application_name=app connect_query='SET x = ''y'''",
        );
        assert!(m.warnings.is_empty());
        let want: Table = toml::from_str(
            r#"host = "db1"
port = 5433
dbname = "real"
user = "u"
password = "p w"
auth_user = "au"
pool_size = 7
min_pool_size = 2
reserve_pool_size = 3
max_db_connections = 9
server_lifetime = 120.0
pool_mode = "transaction"
client_encoding = "UTF8"
datestyle = "ISO"
timezone = "UTC"
application_name = "app"
connect_query = "SET x = 'y'"
"#,
        )
        .unwrap();
        assert_eq!(t, want);
    }

    #[test]
    fn pgbouncer_not_set_values_inherit() {
        let (t, _) = table(
            "d",
            "host=h pool_size=-1 min_pool_size=-1 reserve_pool_size=-1 max_db_connections=0 \
             server_lifetime=0 max_db_client_connections=0",
        );
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["host"]);
    }

    #[test]
    fn host_lists_become_servers() {
        let (t, m) = table(
            "ro",
            "host=r1,r2,,r3 port=5434 load_balance_hosts=round-robin",
        );
        let servers = t["servers"].as_array().unwrap();
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[2]["host"].as_str(), Some("r3"));
        assert_eq!(servers[2]["port"].as_integer(), Some(5434));
        assert_eq!(t["load_balance"].as_str(), Some("round_robin"));
        assert_eq!(m.warnings.len(), 1, "host lists behave differently: warned");
        let (t, _) = table("ha", "host=p,s load_balance_hosts=disable");
        assert_eq!(t["read_write_split"].as_bool(), Some(false));
        // One host: nothing to balance.
        let (t, m) = table("one", "host=p load_balance_hosts=disable");
        assert!(t.get("read_write_split").is_none() && m.warnings.is_empty());
    }

    #[test]
    fn unix_socket_directories_are_hosts() {
        let (t, m) = table("local", "host=/var/run/postgresql port=5433 dbname=x");
        assert_eq!(t["host"].as_str(), Some("/var/run/postgresql"));
        assert_eq!(t["port"].as_integer(), Some(5433));
        assert!(m.warnings.is_empty());
        // No host: left for the file's unix_socket_dir (see ini::default_hosts).
        let (t, _) = table("nohost", "dbname=x port=5433");
        assert!(t.get("host").is_none() && t.get("servers").is_none());
    }

    #[test]
    fn refused_shapes() {
        for (connstr, want) in [
            ("host=@abstract", "abstract Unix socket"),
            ("host=h,@abstract", "abstract Unix socket"),
            ("host=h auth_dbname=x", "per-database auth_dbname"),
            ("host=h auth_query='SELECT 1'", "per-database auth_query"),
            ("host=h max_db_client_connections=5", "not enforced"),
            ("host=h pool_mode=tx", "not one of"),
            ("host=h load_balance_hosts=random", "not one of"),
            ("host=h port=abc", "not an integer"),
            (
                "host=h sslmode=require",
                "unknown connection parameter `sslmode`",
            ),
        ] {
            let e = database("d", connstr).unwrap_err();
            assert!(e.contains(want), "{connstr:?}: {e}");
        }
        assert!(database("pgbouncer", "host=h")
            .unwrap_err()
            .contains("reserved"));
    }
}
