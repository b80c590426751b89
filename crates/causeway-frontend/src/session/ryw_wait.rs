//! A read whose floor no replica is known to have replayed: wait for one,
//! watching every candidate at once (see docs/consistency.md).
//!
//! Candidates are the replicas that could take the read (routable, or out
//! of rotation only for a pause or hold-down), not excluded, and not
//! further behind than the time left: a replica 500 ms behind is never
//! waited on by a read that may wait 100 ms. While the read waits, each
//! candidate's probe task polls its replay position (one query per poll
//! however many reads wait) and the first candidate to reach the floor
//! takes the read, the one furthest ahead if several did. When the wait
//! outlasts a couple of polls, the primary is asked to make sure the WAL up
//! to the floor is flushed (`synchronous_commit = off` commits reach
//! standbys only once flushed).

use std::time::{Duration, Instant};

use causeway_monitor::WaitGuard;
use causeway_routing::lag::{replay_reached, DEFAULT_WAL_BLOCK_SIZE};
use causeway_routing::lsn::Lsn;
use causeway_routing::{Role, SessionView, Topology};

use super::Session;

/// How long a read waits before asking the primary to flush its WAL.
const FLUSH_AFTER: Duration = Duration::from_millis(2);

impl Session {
    /// Waits until a candidate replica has replayed `view.floor`, at most
    /// until `deadline`. Some(i): replica i has.
    pub(super) async fn wait_for_floor(
        &self,
        topo: &Topology,
        view: &SessionView,
        deadline: tokio::time::Instant,
    ) -> Option<usize> {
        let floor = Lsn(view.floor?);
        let pos = self.db.monitor.as_ref()?.positions();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let candidates: Vec<usize> = topo
            .servers
            .iter()
            .enumerate()
            .take(64)
            .filter(|&(i, s)| {
                s.role == Role::Replica
                    && (s.healthy || s.reads_at_floor)
                    && !view.excluded(i)
                    && view.only.is_none_or(|o| o == i)
                    && s.time_lag.is_none_or(|t| t <= left)
                    && !pos.failing(i)
            })
            .map(|(i, _)| i)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let _polled: Vec<WaitGuard<'_>> = candidates.iter().map(|&i| pos.wait_guard(i)).collect();
        let mut changed = pos.changed();
        let started = Instant::now();
        let mut flush_asked = false;
        loop {
            changed.borrow_and_update();
            let mut best: Option<(usize, Lsn)> = None;
            let mut alive = false;
            for &i in &candidates {
                if pos.failing(i) {
                    continue;
                }
                alive = true;
                if let Some(s) = pos.last(i).filter(|s| s.standby) {
                    if replay_reached(s.lsn, floor, DEFAULT_WAL_BLOCK_SIZE)
                        && best.is_none_or(|(_, l)| s.lsn > l)
                    {
                        best = Some((i, s.lsn));
                    }
                }
            }
            if let Some((i, _)) = best {
                return Some(i);
            }
            if !alive {
                return None;
            }
            let flush_at = tokio::time::Instant::from_std(started + FLUSH_AFTER);
            if !flush_asked && tokio::time::Instant::now() >= flush_at {
                if let Some(p) = topo.primary() {
                    pos.request_flush(p, floor);
                }
                flush_asked = true;
            }
            let wake = if flush_asked {
                deadline
            } else {
                deadline.min(flush_at)
            };
            match tokio::time::timeout_at(wake, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return None,
                Err(_) if tokio::time::Instant::now() >= deadline => return None,
                Err(_) => {}
            }
        }
    }
}
