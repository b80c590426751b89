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
    /// A read on the primary: no replica caught up with the session's
    /// token within ryw_wait_timeout.
    Behind,
    /// A read on the primary: the session's token is from before a failover.
    Stale,
    /// A read on the primary: the WAL position of the session's last write
    /// could not be read.
    TokenUnknown,
    /// A read on the primary: what the session's last read saw could not
    /// be bounded (its server did not answer a position query).
    Unbounded,
}

const REASONS: [(RouteReason, &str); 13] = [
    (RouteReason::Write, "write"),
    (RouteReason::Hint, "hint"),
    (RouteReason::Read, "read"),
    (RouteReason::NoReplica, "no_replica"),
    (RouteReason::Pinned, "pinned"),
    (RouteReason::RetryReadOnly, "retry_25006"),
    (RouteReason::RetryConflict, "retry_conflict"),
    (RouteReason::RetryFailure, "retry_failure"),
    (RouteReason::Refused, "refused"),
    (RouteReason::Behind, "ryw_fallback"),
    (RouteReason::Stale, "stale_token"),
    (RouteReason::TokenUnknown, "token_unknown"),
    (RouteReason::Unbounded, "unbounded_read"),
];

/// Counts per (target, reason); target 0 = primary, 1 = replica.
#[derive(Debug, Default)]
pub struct RouteStats {
    counts: [[AtomicU64; 13]; 2],
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

/// Read-your-writes bookkeeping of one database.
#[derive(Debug, Default)]
pub struct RywStats {
    advances: AtomicU64,
    fallbacks: AtomicU64,
    errors: AtomicU64,
    waits: crate::AtomicHistogram,
}

impl RywStats {
    /// A session's token moved forward.
    pub fn advance(&self) {
        self.advances.fetch_add(1, Relaxed);
    }

    /// A read went to the primary (or failed) because no replica caught up.
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Relaxed);
    }

    /// A write's position could not be read.
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// A read waited this long for a replica to catch up.
    pub fn waited(&self, d: std::time::Duration) {
        self.waits.observe(d);
    }

    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Relaxed)
    }

    pub fn row(&self, database: &str) -> crate::RywRow {
        crate::RywRow {
            database: database.to_string(),
            token_advances: self.advances.load(Relaxed),
            waits: self.waits.snapshot(),
            fallbacks: self.fallbacks.load(Relaxed),
            errors: self.errors.load(Relaxed),
            ..Default::default()
        }
    }
}
