//! `causeway check-config --connect`: one probe of one server with the
//! monitor's credentials, outside any monitor.

use std::time::Duration;

use causeway_routing::Role;

use crate::config::ServerAddr;
use crate::probe::Prober;

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckResult {
    /// Logged in and probed.
    Ok {
        role: Role,
        /// Replay LSN (standby) or insert LSN (primary), as text.
        position: Option<String>,
        /// The full probe query was refused (no system identifier, the
        /// standby timeline needs `pg_read_all_stats`).
        reduced: bool,
    },
    /// The server refused the monitor's login.
    LoginRefused(String),
    /// Not reachable, or the probe failed.
    Failed(String),
}

/// Logs in to `addr` as the monitor would and runs its probe once.
pub async fn check_server(addr: &ServerAddr, timeout: Duration) -> CheckResult {
    let mut p = match Prober::new(addr, timeout) {
        Ok(p) => p,
        Err(e) => return CheckResult::Failed(e),
    };
    match p.probe().await {
        Ok(d) => CheckResult::Ok {
            role: if d.in_recovery {
                Role::Replica
            } else {
                Role::Primary
            },
            position: if d.in_recovery {
                d.replay_lsn
            } else {
                d.insert_lsn
            }
            .map(|l| l.to_string()),
            reduced: d.system_identifier.is_none(),
        },
        Err(e) if e.login => CheckResult::LoginRefused(e.message),
        Err(e) => CheckResult::Failed(e.message),
    }
}
