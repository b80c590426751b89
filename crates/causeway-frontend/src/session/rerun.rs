//! Running an autocommit read again when its server fails it before any
//! row reached the client: which units may be re-run, and the wait for the
//! topology when no other server can take the read yet (a primary lost
//! and not yet replaced).
//!
//! Only [`Intent::Read`] units (autocommit, classified read-only, known
//! whole) are held, on a replica or on the primary alike: a write, or
//! anything inside a transaction block, is never re-run, and a held reply
//! is committed to the client before it grows past the hold limit, after
//! which a failure reaches the client as usual.

use std::time::Duration;

use causeway_pool::PoolError;
use causeway_routing::Intent;

use causeway_protocol::sqlstate;

use super::pump::RetryCause;
use super::Session;

/// Whether the unit about to run is held (its request and reply kept back
/// until the reply is complete) so that it can run elsewhere if its
/// server fails. `unit`: its length when the whole unit is known, else 0.
pub(super) fn holds(split: bool, intent: Intent, unit: usize, attempts: u32, max: u32) -> bool {
    split && intent == Intent::Read && unit > 0 && attempts < max
}

/// Whether a read whose server gave no connection is routed again: nothing
/// was sent, so any read may. A replica is skipped whatever the error; the
/// primary only when it is down or stopping (a refused login would be
/// refused elsewhere too).
pub(super) fn reroutes_after_connect_failure(
    intent: Intent,
    replica: bool,
    down: bool,
    attempts: u32,
    max: u32,
) -> bool {
    intent.is_read() && (replica || down) && attempts < max
}

/// A unit of work being re-run after its server failed it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Retry {
    /// Servers that failed it (bit i = server i).
    pub exclude: u64,
    pub attempts: u32,
    /// The replica refused it as a write: the primary runs it.
    pub to_primary: bool,
    pub cause: Option<RetryCause>,
    /// Until when the read may wait for another server to take it (see
    /// rerun.rs).
    pub until: Option<tokio::time::Instant>,
}

impl Retry {
    /// Server `server` failed the unit for `cause`: not again; it runs
    /// elsewhere, waiting for the topology at most `limit` from the first
    /// failure.
    pub fn failed(&mut self, server: usize, cause: RetryCause, limit: Duration) {
        self.exclude |= 1u64 << server.min(63);
        self.to_primary |= cause == RetryCause::ReadOnly;
        self.cause = Some(cause);
        self.until
            .get_or_insert_with(|| tokio::time::Instant::now() + limit);
    }
}

/// Whether a refused read waits for the topology instead: it is being
/// re-run (its server failed), or it found no server at all (08006: no
/// primary and no routable replica, as in a failover).
pub(super) fn waits_for_topology(intent: Intent, retry: &Retry, refusal: &str) -> bool {
    retry.cause.is_some() || (intent.is_read() && refusal == sqlstate::CONNECTION_FAILURE)
}

impl Session {
    /// [`Session::refresh_database`] for a read that waits to be re-run:
    /// on a rebuilt database the failed servers' indexes mean nothing, but
    /// the read still waits within its bound.
    pub(super) fn refresh_database_keeping(&mut self, retry: &mut Retry) {
        if self.refresh_database() {
            *retry = Retry {
                attempts: retry.attempts,
                cause: retry.cause,
                until: retry.until,
                ..Retry::default()
            };
        }
    }

    /// How long a re-run read waits for a server to take it: the bound a
    /// login waits for the primary (`server_connect_timeout`).
    pub(super) fn rerun_limit(&self) -> Duration {
        match super::secs(self.cfg.server_connect_timeout) {
            Some(d) => d,
            None => Duration::from_secs(15),
        }
    }

    /// A read that no server can take now (its server failed, or the
    /// primary is lost and no replica is routable): waits for the monitor's next view, or for
    /// a rebuilt database. False when the wait is over (the read is
    /// refused as usual).
    pub(super) async fn wait_for_topology(&mut self, retry: &mut Retry) -> bool {
        let limit = self.rerun_limit();
        let until = *retry
            .until
            .get_or_insert_with(|| tokio::time::Instant::now() + limit);
        if self.db.monitor.is_none() || tokio::time::Instant::now() >= until {
            return false;
        }
        let mut version = self.db.topo_version.subscribe();
        version.borrow_and_update();
        // A rebuild (Patroni membership, reload) replaces the database and
        // its monitor: looked for between views.
        let tick = (tokio::time::Instant::now() + Duration::from_millis(50)).min(until);
        tokio::select! {
            _ = version.changed() => {}
            _ = tokio::time::sleep_until(tick) => {}
            _ = self.info.info.wake.woken() => {}
        }
        // KILL or shutdown: the read is refused and the session ends at
        // its boundary.
        !self.info.info.is_killed() && self.app.phase() != crate::app::Phase::Stopping
    }

    /// A server connection could not be had: `down` when the server looks
    /// down or stopping rather than refusing the login.
    pub(super) fn server_down(e: &PoolError) -> bool {
        super::primary::worth_waiting(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_autocommit_reads_are_held() {
        assert!(holds(true, Intent::Read, 30, 0, 2));
        // Never a write, never a read-only transaction block.
        assert!(!holds(true, Intent::Write, 30, 0, 2));
        assert!(!holds(true, Intent::ReadOnlyTxn, 30, 0, 2));
        // Not split (session mode, one server): nothing is classified.
        assert!(!holds(false, Intent::Read, 30, 0, 2));
        // The unit is not known whole (a pipeline still arriving).
        assert!(!holds(true, Intent::Read, 0, 0, 2));
        // read_retries spent, or off.
        assert!(holds(true, Intent::Read, 30, 1, 2));
        assert!(!holds(true, Intent::Read, 30, 2, 2));
        assert!(!holds(true, Intent::Read, 30, 0, 0));
    }

    #[test]
    fn connect_failures_reroute_reads_only() {
        // A dead primary: a read goes elsewhere, a write does not.
        assert!(reroutes_after_connect_failure(
            Intent::Read,
            false,
            true,
            0,
            2
        ));
        assert!(reroutes_after_connect_failure(
            Intent::ReadOnlyTxn,
            false,
            true,
            0,
            2
        ));
        assert!(!reroutes_after_connect_failure(
            Intent::Write,
            false,
            true,
            0,
            2
        ));
        // A primary that refuses the login: no other server would accept it.
        assert!(!reroutes_after_connect_failure(
            Intent::Read,
            false,
            false,
            0,
            2
        ));
        // A replica: skipped whatever the error.
        assert!(reroutes_after_connect_failure(
            Intent::Read,
            true,
            false,
            0,
            2
        ));
        assert!(!reroutes_after_connect_failure(
            Intent::Read,
            true,
            true,
            2,
            2
        ));
    }

    #[tokio::test]
    async fn a_failure_sets_the_wait_once() {
        let mut r = Retry::default();
        r.failed(
            3,
            super::super::pump::RetryCause::Failure,
            Duration::from_secs(5),
        );
        let first = r.until.unwrap();
        r.failed(
            70,
            super::super::pump::RetryCause::Conflict,
            Duration::from_secs(50),
        );
        assert_eq!(
            r.until,
            Some(first),
            "the bound runs from the first failure"
        );
        assert_eq!(r.exclude, (1 << 3) | (1 << 63));
        assert_eq!(r.cause, Some(super::super::pump::RetryCause::Conflict));
    }
}
