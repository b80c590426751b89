//! A `[peers]` line, `ID = host=... port=... pool_size=...`: becomes
//! `peers.ID = { host, port }` (port 6432 unless given, as in PgBouncer).
//! `pool_size` (PgBouncer's limit on cancels in flight to the peer) is
//! checked and ignored: Causeway forwards a cancel within the connection
//! that brought it, so login slots already bound them.

use super::connstr::pairs;
use super::values::decimal;
use super::Mapped;

pub fn peer(id: &str, connstr: &str) -> Result<Mapped, String> {
    if !matches!(id.parse::<u16>(), Ok(1..=crate::model::MAX_PEER_ID)) {
        return Err(format!(
            "a peer id must be a number from 1 to {}",
            crate::model::MAX_PEER_ID
        ));
    }
    let mut out = Mapped::none();
    let mut t = toml::Table::new();
    for (k, v) in pairs(connstr)? {
        match k.as_str() {
            "host" => {
                t.insert("host".into(), toml::Value::from(v));
            }
            "port" => {
                let port = decimal(&v)?;
                if !(1..=65535).contains(&port) {
                    return Err(format!("port {port} out of range"));
                }
                t.insert("port".into(), toml::Value::from(port));
            }
            "pool_size" => {
                decimal(&v)?;
                out = out.with_warning(
                    "pool_size ignored: a forwarded cancel uses the login slot of the connection that brought it",
                );
            }
            other => return Err(format!("unknown peer parameter `{other}`")),
        }
    }
    if !t.contains_key("host") {
        return Err("a peer needs host=".into());
    }
    out.set
        .push((vec!["peers".into(), id.into()], toml::Value::Table(t)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_map_to_host_and_port() {
        let m = peer("2", "host=10.0.0.2 port=6433 pool_size=4").unwrap();
        assert_eq!(m.warnings.len(), 1, "pool_size is ignored, said once");
        let want: toml::Table = toml::from_str("host = \"10.0.0.2\"\nport = 6433").unwrap();
        assert_eq!(
            m.set,
            vec![(vec!["peers".into(), "2".into()], toml::Value::Table(want))]
        );
        assert!(peer("1", "host=/tmp/pgbouncer1")
            .unwrap()
            .warnings
            .is_empty());
        assert!(peer("0", "host=h").is_err());
        assert!(peer("16384", "host=h").is_err());
        assert!(peer("x", "host=h").is_err());
        assert!(peer("1", "port=6432").is_err());
        assert!(peer("1", "host=h port=0").is_err());
        assert!(peer("1", "host=h dbname=x").is_err());
    }
}
