//! Folds probe results into snapshots. Synchronous and clock-free (every
//! report carries its own `Instant`), so it is unit-tested without servers.

use std::time::Instant;

use causeway_routing::health::{Health, ProbeOutcome, Unroutable};
use causeway_routing::lag::{LagTracker, DEFAULT_PRIMARY_HORIZON};
use causeway_routing::lsn::Lsn;
use causeway_routing::Role;

use crate::config::MonitorConfig;
use crate::probe::{ProbeData, ProbeError};
use crate::snapshot::Snapshot;

/// One finished probe.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub index: usize,
    /// Request counter value when the probe started.
    pub epoch: u64,
    /// When the probe finished.
    pub at: Instant,
    /// When the probe started (its values are no older than this).
    pub started: Instant,
    pub result: Result<ProbeData, ProbeError>,
}

/// What the caller should do after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Effects {
    /// A server switched between primary and replica: probe the others now.
    pub role_changed: bool,
}

pub(crate) struct Aggregator {
    health: Vec<Health>,
    lag: LagTracker,
    snap: Snapshot,
    /// (index, timeline) of the last unique primary seen.
    last_primary: Option<(usize, Option<u32>)>,
}

impl Aggregator {
    pub fn new(labels: Vec<String>, cfg: &MonitorConfig) -> Aggregator {
        let horizon = DEFAULT_PRIMARY_HORIZON.max(cfg.max_replica_lag * 4);
        Aggregator {
            health: labels.iter().map(|_| Health::new(cfg.health())).collect(),
            lag: LagTracker::new(cfg.history, horizon),
            snap: Snapshot::empty(labels),
            last_primary: None,
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    pub fn apply(&mut self, r: Report) -> Effects {
        let mut fx = Effects::default();
        let i = r.index;
        let at = r.at;
        {
            let s = &mut self.snap.servers[i];
            s.last_probe = Some(at);
            s.probe_epoch = s.probe_epoch.max(r.epoch);
        }
        match &r.result {
            Err(e) => {
                let s = &mut self.snap.servers[i];
                if e.login {
                    // Logged once per change: every probe fails the same way.
                    if s.login_error.as_deref() != Some(e.message.as_str()) {
                        tracing::error!(server = %s.label, error = %e.message,
                            "monitor: cannot log in; this server is routed by its configured role only \
                             (set monitor_user / monitor_password, or add the user to the auth_file)");
                    }
                    s.login_error = Some(e.message.clone());
                } else {
                    if s.reachable {
                        tracing::warn!(server = %s.label, error = %e.message, "monitor: server unreachable");
                    }
                    s.login_error = None;
                }
                s.reachable = false;
                s.last_error = Some(e.message.clone());
            }
            Ok(d) => {
                let s = &mut self.snap.servers[i];
                let role = if d.in_recovery {
                    Role::Replica
                } else {
                    Role::Primary
                };
                if s.role != role && s.role != Role::Unknown {
                    tracing::warn!(server = %s.label, from = ?s.role, to = ?role, "monitor: role changed");
                    fx.role_changed = true;
                }
                if !s.reachable && s.last_success.is_some() {
                    tracing::info!(server = %s.label, "monitor: server reachable again");
                }
                if s.login_error.take().is_some() {
                    tracing::info!(server = %s.label, "monitor: logged in");
                }
                s.role = role;
                s.reachable = true;
                s.last_success = Some(at);
                s.success_started = Some(r.started);
                s.last_error = None;
                s.replay_lsn = d.replay_lsn;
                s.receive_lsn = d.receive_lsn;
                s.paused = d.paused;
                s.last_replay_timestamp = d.replay_timestamp;
                s.timeline = d.timeline;
                s.system_identifier = d.system_identifier;
                if role == Role::Primary {
                    s.primary_lsn = d.insert_lsn;
                    s.byte_lag = None;
                    s.time_lag = None;
                    s.avg_byte_lag = None;
                    s.avg_time_lag = None;
                }
            }
        }

        self.update_primary();

        // Lag and health of the reporting server.
        let primary = self.snap.primary;
        let primary_sysid = primary.and_then(|p| self.snap.servers[p].system_identifier);
        let primary_tli = primary.and_then(|p| self.snap.servers[p].timeline);
        let split = self.snap.split_brain;
        let mut note = None;
        let outcome = match &r.result {
            Err(_) => ProbeOutcome::Failed,
            Ok(d) if !d.in_recovery => {
                self.lag.forget(i);
                if primary == Some(i) {
                    if let Some(b) = d.wal_block_size {
                        self.lag.set_wal_block_size(b);
                    }
                    if let Some(l) = d.insert_lsn {
                        self.lag.observe_primary(at, l);
                    }
                } else if split {
                    note = Some("split brain: several servers claim primary");
                }
                ProbeOutcome::Primary
            }
            Ok(d) => {
                let replay = d.replay_lsn.unwrap_or(Lsn::ZERO);
                let lag = self.lag.observe_replica(i, at, replay);
                let s = &mut self.snap.servers[i];
                match lag {
                    Some(l) => {
                        s.primary_lsn = Some(l.primary_lsn);
                        s.byte_lag = Some(l.bytes);
                        s.time_lag = Some(l.time);
                        s.avg_byte_lag = Some(l.avg_bytes);
                        s.avg_time_lag = Some(l.avg_time);
                    }
                    None => {
                        s.primary_lsn = None;
                        s.byte_lag = None;
                        s.time_lag = None;
                        s.avg_byte_lag = None;
                        s.avg_time_lag = None;
                        note = Some("no primary position to measure lag against yet");
                    }
                }
                if let (Some(p), Some(mine)) = (primary_sysid, d.system_identifier) {
                    if p != mine {
                        tracing::error!(
                            server = %s.label,
                            system_identifier = mine,
                            primary_system_identifier = p,
                            "monitor: replica belongs to another cluster than the primary; not routing to it"
                        );
                        note = Some("system identifier differs from the primary's");
                    }
                }
                if let (Some(p), Some(mine)) = (primary_tli, d.timeline) {
                    // Left behind on the old timeline by a promotion: its
                    // WAL past the fork may never have reached the new
                    // primary, so its data may be newer than the truth.
                    if mine < p && note.is_none() {
                        note = Some("on an older timeline than the primary");
                    }
                }
                ProbeOutcome::Replica {
                    paused: d.paused,
                    byte_lag: lag.map_or(0, |l| l.bytes),
                    time_lag: lag.map_or(Default::default(), |l| l.time),
                }
            }
        };
        let h = &mut self.health[i];
        let old_ban = h.banned_until();
        let ok = h.observe(at, outcome);
        let s = &mut self.snap.servers[i];
        match (old_ban, h.banned_until(), h.ban_duration()) {
            (_, Some(until), Some(len)) if old_ban != Some(until) => {
                tracing::warn!(server = %s.label, ban = ?len, "monitor: server banned after a failed probe");
            }
            (Some(_), None, _) => {
                tracing::info!(server = %s.label, "monitor: server readmitted after its ban");
            }
            _ => {}
        }
        s.routable = ok && note.is_none();
        s.unroutable = h.unroutable_reason();
        // Out of rotation only for a pause or the hold-down, within the lag
        // limits: it may still serve a read whose floor it is known to have
        // replayed (that read cannot be stale whatever the hold-down says).
        s.reads_at_floor = s.routable
            || (s.reachable
                && s.role == Role::Replica
                && note.is_none()
                && matches!(
                    s.unroutable,
                    Some(Unroutable::HoldDown) | Some(Unroutable::Paused)
                )
                && s.byte_lag
                    .is_some_and(|b| b <= h.config().max_replica_lag_bytes)
                && s.time_lag.is_some_and(|t| t <= h.config().max_replica_lag));
        s.note = note;
        s.banned_until = h.banned_until();
        s.ban_duration = h.ban_duration();
        s.within_limits_since = h.within_limits_since();
        s.consecutive_failures = h.consecutive_failures();

        // A primary's routability also depends on the others (split brain,
        // or it stopped being the one primary without a probe of its own).
        for (j, s) in self.snap.servers.iter_mut().enumerate() {
            if s.role == Role::Primary && s.reachable {
                let one = self.snap.primary == Some(j);
                s.routable = one && self.health[j].routable();
                s.reads_at_floor = false;
                s.note = if one {
                    None
                } else {
                    Some("split brain: several servers claim primary")
                };
            }
        }
        self.snap.at = at;
        fx
    }

    /// Recomputes `primary`, `split_brain` and `generation`.
    fn update_primary(&mut self) {
        let claims: Vec<usize> = self
            .snap
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_primary())
            .map(|(i, _)| i)
            .collect();
        self.snap.split_brain = claims.len() > 1;
        if self.snap.split_brain {
            let who: Vec<&str> = claims
                .iter()
                .map(|&i| self.snap.servers[i].label.as_str())
                .collect();
            tracing::error!(
                servers = ?who,
                "monitor: SPLIT BRAIN: several reachable servers are not in recovery; \
                 no primary until exactly one remains"
            );
            self.snap.primary = None;
            return;
        }
        self.snap.primary = claims.first().copied();
        if let Some(p) = self.snap.primary {
            let key = (p, self.snap.servers[p].timeline);
            if self.last_primary != Some(key) {
                if let Some((old, old_tl)) = self.last_primary {
                    tracing::warn!(
                        from = %self.snap.servers[old].label,
                        from_timeline = ?old_tl,
                        to = %self.snap.servers[p].label,
                        to_timeline = ?key.1,
                        "monitor: primary changed"
                    );
                }
                self.last_primary = Some(key);
                self.snap.generation += 1;
                // LSNs from another primary or timeline mean nothing here.
                self.lag.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn data(in_recovery: bool, lsn: u64) -> ProbeData {
        ProbeData {
            in_recovery,
            insert_lsn: (!in_recovery).then_some(Lsn(lsn)),
            receive_lsn: in_recovery.then_some(Lsn(lsn)),
            replay_lsn: in_recovery.then_some(Lsn(lsn)),
            replay_timestamp: None,
            paused: false,
            timeline: Some(1),
            system_identifier: Some(42),
            wal_block_size: Some(8192),
        }
    }

    fn rep(index: usize, at: Instant, result: Result<ProbeData, ProbeError>) -> Report {
        Report {
            started: at,
            index,
            epoch: 0,
            at,
            result,
        }
    }

    fn agg() -> Aggregator {
        Aggregator::new(
            vec!["a".into(), "b".into(), "c".into()],
            &MonitorConfig::default(),
        )
    }

    #[test]
    fn discovers_roles_and_generation() {
        let t0 = Instant::now();
        let mut a = agg();
        assert_eq!(a.snapshot().generation, 0);
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        a.apply(rep(1, t0, Ok(data(true, 1000))));
        a.apply(rep(2, t0, Ok(data(true, 900))));
        let s = a.snapshot();
        assert_eq!(s.primary, Some(0));
        assert_eq!(s.generation, 1);
        assert!(s.servers[0].routable);
        assert!(s.servers[1].routable);
        assert_eq!(s.servers[2].byte_lag, Some(100));
        assert_eq!(s.routable_replicas().collect::<Vec<_>>(), [1, 2]);
        let topo = s.to_topology();
        assert_eq!(topo.primary(), Some(0));
    }

    #[test]
    fn replica_before_any_primary_is_not_routable() {
        let t0 = Instant::now();
        let mut a = agg();
        a.apply(rep(1, t0, Ok(data(true, 1000))));
        assert!(!a.snapshot().servers[1].routable);
        assert!(a.snapshot().servers[1].note.is_some());
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        a.apply(rep(
            1,
            t0 + Duration::from_millis(250),
            Ok(data(true, 1000)),
        ));
        assert!(a.snapshot().servers[1].routable);
    }

    #[test]
    fn promotion_bumps_generation_and_split_brain_has_no_primary() {
        let t0 = Instant::now();
        let mut a = agg();
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        a.apply(rep(1, t0, Ok(data(true, 1000))));
        a.apply(rep(2, t0, Ok(data(true, 1000))));
        let t1 = t0 + Duration::from_secs(1);
        a.apply(rep(0, t1, Err("down".into())));
        assert_eq!(a.snapshot().primary, None);
        assert_eq!(a.snapshot().generation, 1);
        let mut promoted = data(false, 2000);
        promoted.timeline = Some(2);
        let fx = a.apply(rep(1, t1, Ok(promoted.clone())));
        assert!(fx.role_changed);
        assert_eq!(a.snapshot().primary, Some(1));
        assert_eq!(a.snapshot().generation, 2);
        assert!(a.snapshot().servers[1].routable);
        // Second promotion: two primaries.
        let mut second = data(false, 2000);
        second.timeline = Some(2);
        a.apply(rep(2, t1, Ok(second)));
        let s = a.snapshot();
        assert_eq!(s.primary, None);
        assert!(s.split_brain);
        assert!(!s.servers[1].routable && !s.servers[2].routable);
        assert_eq!(s.generation, 2);
        assert_eq!(s.to_topology().primary(), None);
    }

    #[test]
    fn replica_left_on_the_old_timeline_is_not_routable() {
        let t0 = Instant::now();
        let mut a = agg();
        let mut promoted = data(false, 2000);
        promoted.timeline = Some(2);
        a.apply(rep(1, t0, Ok(promoted)));
        a.apply(rep(0, t0, Err("down".into())));
        // Replica 2 still on timeline 1 (it followed the old primary).
        a.apply(rep(2, t0, Ok(data(true, 2000))));
        let s = a.snapshot();
        assert_eq!(s.primary, Some(1));
        assert!(!s.servers[2].routable);
        assert_eq!(
            s.servers[2].note,
            Some("on an older timeline than the primary")
        );
        // Once it follows the new timeline it may come back.
        let mut follows = data(true, 2000);
        follows.timeline = Some(2);
        a.apply(rep(2, t0 + Duration::from_millis(250), Ok(follows)));
        assert_eq!(a.snapshot().servers[2].note, None);
    }

    #[test]
    fn primary_blip_does_not_bump_generation_but_new_timeline_does() {
        let t0 = Instant::now();
        let mut a = agg();
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        a.apply(rep(0, t0, Err("x".into())));
        a.apply(rep(0, t0 + Duration::from_secs(2), Ok(data(false, 1000))));
        assert_eq!(a.snapshot().generation, 1);
        let mut d = data(false, 1000);
        d.timeline = Some(7);
        a.apply(rep(0, t0 + Duration::from_secs(3), Ok(d)));
        assert_eq!(a.snapshot().generation, 2);
    }

    #[test]
    fn failure_bans_and_readmits() {
        let t0 = Instant::now();
        let mut a = agg();
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        a.apply(rep(1, t0, Ok(data(true, 1000))));
        a.apply(rep(1, t0, Err("refused".into())));
        let s = &a.snapshot().servers[1];
        assert!(!s.reachable && !s.routable);
        assert_eq!(s.ban_duration, Some(Duration::from_secs(1)));
        assert_eq!(s.last_error.as_deref(), Some("refused"));
        a.apply(rep(1, t0 + Duration::from_secs(1), Ok(data(true, 1000))));
        assert!(a.snapshot().servers[1].routable);
    }

    #[test]
    fn foreign_replica_is_not_routable() {
        let t0 = Instant::now();
        let mut a = agg();
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        let mut d = data(true, 1000);
        d.system_identifier = Some(43);
        a.apply(rep(1, t0, Ok(d)));
        assert!(!a.snapshot().servers[1].routable);
    }

    #[test]
    fn lag_is_measured_against_the_primary() {
        let t0 = Instant::now();
        let mut a = agg();
        a.apply(rep(0, t0, Ok(data(false, 1000))));
        a.apply(rep(
            0,
            t0 + Duration::from_secs(1),
            Ok(data(false, 30_000_000)),
        ));
        a.apply(rep(1, t0 + Duration::from_secs(7), Ok(data(true, 1000))));
        let s = &a.snapshot().servers[1];
        assert_eq!(s.byte_lag, Some(30_000_000 - 1000));
        assert_eq!(s.time_lag, Some(Duration::from_secs(6)));
        assert!(!s.routable);
    }
}
