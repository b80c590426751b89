//! Patroni's `GET /cluster` document, read into a server list.
//!
//! Only membership and Patroni's idea of the leader are taken from it:
//! Causeway's own monitor stays the authority on who is primary (after
//! probing), on lag and on split brain.

use causeway_config::{RoleHint, ServerConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cluster {
    #[serde(default)]
    members: Vec<Member>,
}

/// One member as Patroni reports it. Fields Causeway does not use for
/// routing (state, lag, timeline) are kept for the log.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub state: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Bytes behind the leader; Patroni writes "unknown" when it cannot tell.
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    pub timeline: Option<u64>,
}

impl Member {
    /// Patroni's leader of a primary cluster (a `standby_leader` is itself
    /// in recovery: a replica to Causeway).
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "master" | "primary")
    }
}

/// The members of a `/cluster` document that have an address, sorted by
/// name (so a role change alone does not reorder the servers).
pub fn parse(json: &[u8]) -> Result<Vec<Member>, String> {
    let c: Cluster =
        serde_json::from_slice(json).map_err(|e| format!("not a /cluster document: {e}"))?;
    let mut m: Vec<Member> = c
        .members
        .into_iter()
        .filter(|m| {
            m.host.as_deref().is_some_and(|h| !h.is_empty()) && m.port.is_some_and(|p| p != 0)
        })
        .collect();
    m.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(m)
}

/// The server list the members stand for: the leader hinted primary, the
/// rest replicas (hints only rule until the monitor has probed).
pub fn servers(members: &[Member]) -> Vec<ServerConfig> {
    members
        .iter()
        .map(|m| ServerConfig {
            host: m.host.clone().unwrap_or_default(),
            port: m.port.unwrap_or(5432),
            role: if m.is_leader() {
                RoleHint::Primary
            } else {
                RoleHint::Replica
            },
            weight: 1,
        })
        .collect()
}

/// Whether two server lists name the same servers in the same order
/// (roles aside): a change of membership rebuilds the database, a change
/// of roles only asks the monitor to probe now.
pub fn same_members(a: &[ServerConfig], b: &[ServerConfig]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.host == y.host && x.port == y.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Patroni 3.0 answers (trimmed of xlog/scheduled fields).
    const THREE: &str = r#"{"members": [
        {"name": "pg2", "role": "replica", "state": "streaming", "api_url": "http://127.0.0.1:8010/patroni",
         "host": "127.0.0.1", "port": 5434, "timeline": 2, "lag": 0},
        {"name": "pg1", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:8009/patroni",
         "host": "127.0.0.1", "port": 5433, "timeline": 2},
        {"name": "pg3", "role": "sync_standby", "state": "streaming", "host": "127.0.0.1", "port": 5435,
         "timeline": 2, "lag": "unknown", "tags": {"nofailover": true}},
        {"name": "pg4", "role": "replica", "state": "stopped"}
    ], "scope": "demo"}"#;

    #[test]
    fn members_sorted_leader_hinted() {
        let m = parse(THREE.as_bytes()).unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["pg1", "pg2", "pg3"], "pg4 has no address");
        let s = servers(&m);
        assert_eq!(s[0].port, 5433);
        assert_eq!(s[0].role, RoleHint::Primary);
        assert_eq!(s[1].role, RoleHint::Replica);
        assert_eq!(s[2].role, RoleHint::Replica, "sync_standby is a replica");
        assert_eq!(m[2].lag, Some(serde_json::Value::from("unknown")));
        assert_eq!(m[1].timeline, Some(2));
    }

    #[test]
    fn switchover_keeps_membership() {
        let before = servers(&parse(THREE.as_bytes()).unwrap());
        let after_json = THREE
            .replace(
                r#""role": "replica", "state": "streaming""#,
                r#""role": "leader", "state": "running""#,
            )
            .replace(
                r#""role": "leader", "state": "running", "api_url": "http://127.0.0.1:8009"#,
                r#""role": "replica", "state": "streaming", "api_url": "http://127.0.0.1:8009"#,
            );
        let after = servers(&parse(after_json.as_bytes()).unwrap());
        assert!(same_members(&before, &after));
        assert_ne!(before, after, "roles moved");
        assert_eq!(after[1].role, RoleHint::Primary);
        assert_eq!(after[0].role, RoleHint::Replica);
    }

    #[test]
    fn membership_changes() {
        let s = servers(&parse(THREE.as_bytes()).unwrap());
        assert!(!same_members(&s, &s[..2]));
        let mut moved = s.clone();
        moved[1].port = 6000;
        assert!(!same_members(&s, &moved));
    }

    #[test]
    fn standby_leader_and_empty() {
        let j = br#"{"members":[{"name":"a","role":"standby_leader","state":"streaming","host":"h","port":5432}]}"#;
        assert_eq!(servers(&parse(j).unwrap())[0].role, RoleHint::Replica);
        assert!(parse(br#"{"members":[]}"#).unwrap().is_empty());
        assert!(parse(br#"{}"#).unwrap().is_empty());
        assert!(parse(b"<html>").is_err());
        assert!(
            parse(br#"{"members":[{"role":"leader"}]}"#).is_err(),
            "a member needs a name"
        );
    }
}
