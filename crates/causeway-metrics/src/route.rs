//! Where the router sent work and why: fixed atomics, bumped once per unit
//! of work, rendered as [`RouteRow`]s.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::snapshot::RouteRow;

/// Why a unit of work went where it went (or did not go at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RouteReason {
    /// Not provably read-only.
    Write,
    /// A hint or `causeway.route` setting.
    Hint,
    /// A read on a routable server.
    Read,
    /// A read on the primary because no replica was routable.
    NoReplica,
    /// Session pool mode or routing off: everything where the session is.
    Pinned,
    /// Re-run after the replica refused it as a write (SQLSTATE 25006).
    RetryReadOnly,
    /// Re-run after a recovery conflict (40001 / 40P01).
    RetryConflict,
    /// Re-run after the server failed (shutdown, lost connection, no
    /// connection) before anything reached the client.
    RetryFailure,
    /// Refused: no server could take it.
    Refused,
}

const REASONS: [(RouteReason, &str); 9] = [
    (RouteReason::Write, "write"),
    (RouteReason::Hint, "hint"),
    (RouteReason::Read, "read"),
    (RouteReason::NoReplica, "no_replica"),
    (RouteReason::Pinned, "pinned"),
    (RouteReason::RetryReadOnly, "retry_25006"),
    (RouteReason::RetryConflict, "retry_conflict"),
    (RouteReason::RetryFailure, "retry_failure"),
    (RouteReason::Refused, "refused"),
];

/// Counts per (target, reason); target 0 = primary, 1 = replica.
#[derive(Debug, Default)]
pub struct RouteStats {
    counts: [[AtomicU64; 9]; 2],
}

impl RouteStats {
    pub fn count(&self, replica: bool, reason: RouteReason) {
        self.counts[usize::from(replica)][reason as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, replica: bool, reason: RouteReason) -> u64 {
        self.counts[usize::from(replica)][reason as usize].load(Relaxed)
    }

    /// Non-zero counts as rows.
    pub fn rows(&self, database: &str) -> Vec<RouteRow> {
        let mut v = Vec::new();
        for (t, target) in ["primary", "replica"].iter().enumerate() {
            for (reason, label) in REASONS {
                let count = self.counts[t][reason as usize].load(Relaxed);
                if count > 0 {
                    v.push(RouteRow {
                        database: database.to_string(),
                        target: target.to_string(),
                        reason: label.to_string(),
                        count,
                    });
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_target_and_reason() {
        let s = RouteStats::default();
        s.count(true, RouteReason::Read);
        s.count(true, RouteReason::Read);
        s.count(false, RouteReason::RetryReadOnly);
        let rows = s.rows("app");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].target.as_str(),
                rows[0].reason.as_str(),
                rows[0].count
            ),
            ("primary", "retry_25006", 1)
        );
        assert_eq!(
            (
                rows[1].target.as_str(),
                rows[1].reason.as_str(),
                rows[1].count
            ),
            ("replica", "read", 2)
        );
        for (i, (r, _)) in REASONS.iter().enumerate() {
            assert_eq!(*r as usize, i, "REASONS is in enum order");
        }
    }
}
