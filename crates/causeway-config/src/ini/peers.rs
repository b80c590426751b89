//! A `[peers]` line, `ID = host=... port=... pool_size=...`: checked as
//! PgBouncer checks it, then ignored with a warning (cancel forwarding
//! between instances is not implemented; `peer_id` other than 0 is refused
//! in `[pgbouncer]`, so a peer list alone changes nothing).

use super::connstr::pairs;
use super::values::decimal;
use super::Mapped;

pub fn peer(id: &str, connstr: &str) -> Result<Mapped, String> {
    if !matches!(id.parse::<u32>(), Ok(1..=65535)) {
        return Err("a peer id must be a number from 1 to 65535".into());
    }
    let mut host = false;
    for (k, v) in pairs(connstr)? {
        match k.as_str() {
            "host" => host = true,
            "port" | "pool_size" => {
                decimal(&v)?;
            }
            other => return Err(format!("unknown peer parameter `{other}`")),
        }
    }
    if !host {
        return Err("a peer needs host=".into());
    }
    Ok(Mapped::warn(
        "not implemented, ignored: Causeway does not forward cancel requests to peers",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked_then_ignored() {
        assert_eq!(peer("1", "host=/tmp/pgbouncer1").unwrap().warnings.len(), 1);
        assert!(peer("2", "host=10.0.0.2 port=6433 pool_size=4")
            .unwrap()
            .set
            .is_empty());
        assert!(peer("0", "host=h").is_err());
        assert!(peer("x", "host=h").is_err());
        assert!(peer("1", "port=6432").is_err());
        assert!(peer("1", "host=h dbname=x").is_err());
    }
}
