//! A `[users]` line, `name = pool_mode=... pool_size=...`, becomes a
//! `[users.NAME]` table.

use toml::{Table, Value};

use super::connstr::pairs;
use super::pgbouncer::POOL_MODES;
use super::values::{decimal, insert_unless_below, lookup};
use super::Mapped;

/// Maps `name = settings`.
pub fn user(name: &str, settings: &str) -> Result<Mapped, String> {
    let mut t = Table::new();
    for (k, v) in pairs(settings)? {
        match k.as_str() {
            "pool_mode" => {
                t.insert(k, lookup(&v, POOL_MODES)?.into());
            }
            // PgBouncer's "not set": negative for these two...
            "pool_size" | "reserve_pool_size" => insert_unless_below(&mut t, &k, &v, 0)?,
            // ...zero or negative for these.
            "max_user_connections" | "max_user_client_connections" => {
                insert_unless_below(&mut t, &k, &v, 1)?
            }
            "query_timeout"
            | "idle_transaction_timeout"
            | "transaction_timeout"
            | "client_idle_timeout" => {
                if decimal(&v)? != 0 {
                    return Err(format!("a per-user {k} is not enforced by Causeway"));
                }
            }
            other => return Err(format!("unknown user parameter `{other}`")),
        }
    }
    let mut m = Mapped::none();
    m.set
        .push((vec!["users".into(), name.into()], Value::Table(t)));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_settings() {
        let m = user(
            "u1",
            "pool_size=5 reserve_pool_size=2 pool_mode=statement max_user_connections=10 \
             max_user_client_connections=20 query_timeout=0",
        )
        .unwrap();
        let want: Table = toml::from_str(
            "pool_size = 5\nreserve_pool_size = 2\npool_mode = \"statement\"\n\
             max_user_connections = 10\nmax_user_client_connections = 20\n",
        )
        .unwrap();
        assert_eq!(
            m.set,
            vec![(vec!["users".into(), "u1".into()], Value::Table(want))]
        );
        // An empty entry is an (empty) user table, as in PgBouncer.
        let m = user("u2", "").unwrap();
        assert_eq!(m.set[0].1, Value::Table(Table::new()));
        let m = user("u3", "pool_size=-1 max_user_connections=0").unwrap();
        assert_eq!(m.set[0].1, Value::Table(Table::new()));
    }

    #[test]
    fn per_user_timeouts_are_refused() {
        for k in [
            "query_timeout",
            "idle_transaction_timeout",
            "transaction_timeout",
            "client_idle_timeout",
        ] {
            assert!(user("u", &format!("{k}=5"))
                .unwrap_err()
                .contains("not enforced"));
        }
        assert!(user("u", "foo=1")
            .unwrap_err()
            .contains("unknown user parameter"));
    }
}
