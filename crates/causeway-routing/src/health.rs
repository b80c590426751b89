//! Whether a server may take routed reads: limits, hysteresis and failure
//! bans. A pure state machine fed with probe outcomes and the `Instant` of
//! each probe, so every transition is unit-testable without sleeping.
//!
//! A **replica** is routable when all of these hold:
//! * its last probe succeeded (it is reachable) and it is not banned;
//! * WAL replay is not paused (`pg_get_wal_replay_pause_state()` is
//!   `not paused`; a *requested* pause already stops replay, so it counts as
//!   paused);
//! * byte lag <= [`HealthConfig::max_replica_lag_bytes`]
//!   (default [`DEFAULT_MAX_REPLICA_LAG_BYTES`] = 16 MiB);
//! * time lag <= [`HealthConfig::max_replica_lag`]
//!   (default [`DEFAULT_MAX_REPLICA_LAG`] = 5 s), measured as in
//!   [`crate::lag`], never from `pg_last_xact_replay_timestamp()`, so a NULL
//!   replay timestamp (standby just restarted) cannot make it unhealthy.
//!
//! **Hysteresis:** a replica excluded for lag or pause comes back only after
//! every probe for [`HealthConfig::hold_down`] (default 2 s) was within the
//! limits; one probe outside them restarts the wait. A replica never
//! excluded is routable from its first good probe.
//!
//! **Bans:** a failed probe bans the server for the current backoff, which
//! starts at [`HealthConfig::ban_initial`] (1 s) and doubles with each new
//! ban up to [`HealthConfig::ban_max`] (60 s). Failures during a ban do not
//! extend it. The server is readmitted by the first good probe after the
//! ban has expired, or once it has answered every probe for
//! [`HealthConfig::hold_down`] (whichever comes first): a server that is
//! back does not sit out the rest of a long ban, and one that keeps
//! failing stays out. The backoff drops back to `ban_initial` once the
//! server has answered every probe for `ban_max`.
//!
//! A **primary** is routable when reachable and not banned (lag does not
//! apply to it).

use std::time::{Duration, Instant};

/// Default [`HealthConfig::max_replica_lag_bytes`]: 16 MiB.
pub const DEFAULT_MAX_REPLICA_LAG_BYTES: u64 = 16 * 1024 * 1024;
/// Default [`HealthConfig::max_replica_lag`]: 5 s.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(5);
/// Default [`HealthConfig::hold_down`]: 2 s.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(2);
/// Default [`HealthConfig::ban_initial`]: 1 s.
pub const DEFAULT_BAN_INITIAL: Duration = Duration::from_secs(1);
/// Default [`HealthConfig::ban_max`]: 60 s.
pub const DEFAULT_BAN_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// A replica further behind than this many bytes is not routable.
    /// Default 16 MiB.
    pub max_replica_lag_bytes: u64,
    /// A replica further behind than this (Causeway's clock) is not
    /// routable. Default 5 s.
    pub max_replica_lag: Duration,
    /// How long an excluded replica must stay within the limits before it
    /// is routable again. Default 2 s.
    pub hold_down: Duration,
    /// First ban after a failed probe. Default 1 s.
    pub ban_initial: Duration,
    /// Longest ban. Default 60 s.
    pub ban_max: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            max_replica_lag_bytes: DEFAULT_MAX_REPLICA_LAG_BYTES,
            max_replica_lag: DEFAULT_MAX_REPLICA_LAG,
            hold_down: DEFAULT_HOLD_DOWN,
            ban_initial: DEFAULT_BAN_INITIAL,
            ban_max: DEFAULT_BAN_MAX,
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Could not connect, timed out, or the query failed.
    Failed,
    /// Answered and is not in recovery.
    Primary,
    /// Answered and is in recovery.
    Replica {
        paused: bool,
        byte_lag: u64,
        time_lag: Duration,
    },
}

/// Why a server is not routable (the first reason that applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unroutable {
    /// Not probed yet.
    NotProbed,
    /// Failed probe; banned until the given time.
    Banned,
    Paused,
    ByteLag,
    TimeLag,
    /// Back within the limits, waiting out the hold-down.
    HoldDown,
}

/// Routability of one server.
#[derive(Debug, Clone)]
pub struct Health {
    cfg: HealthConfig,
    probed: bool,
    reachable: bool,
    consecutive_failures: u32,
    banned_until: Option<Instant>,
    ban_len: Option<Duration>,
    next_ban: Duration,
    /// Answering every probe since (for backoff decay).
    good_since: Option<Instant>,
    /// Excluded for lag or pause until the hold-down passes.
    lag_excluded: bool,
    /// Within the limits on every probe since.
    within_since: Option<Instant>,
    not_routable: Option<Unroutable>,
}

impl Health {
    pub fn new(cfg: HealthConfig) -> Health {
        let next_ban = cfg.ban_initial;
        Health {
            cfg,
            probed: false,
            reachable: false,
            consecutive_failures: 0,
            banned_until: None,
            ban_len: None,
            next_ban,
            good_since: None,
            lag_excluded: false,
            within_since: None,
            not_routable: Some(Unroutable::NotProbed),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// Feeds one probe outcome taken at `now`; returns [`Health::routable`].
    pub fn observe(&mut self, now: Instant, outcome: ProbeOutcome) -> bool {
        self.probed = true;
        if outcome == ProbeOutcome::Failed {
            self.on_failure(now);
            return false;
        }
        self.reachable = true;
        self.consecutive_failures = 0;
        let good_since = *self.good_since.get_or_insert(now);
        if now.saturating_duration_since(good_since) >= self.cfg.ban_max {
            self.next_ban = self.cfg.ban_initial;
        }
        let banned = match self.banned_until {
            // Answering again for a whole hold-down: back before the ban ends.
            Some(until)
                if now < until
                    && now.saturating_duration_since(good_since) < self.cfg.hold_down =>
            {
                true
            }
            Some(_) => {
                // Readmitted.
                self.banned_until = None;
                self.ban_len = None;
                false
            }
            None => false,
        };
        let lag_reason = match outcome {
            ProbeOutcome::Replica {
                paused,
                byte_lag,
                time_lag,
            } => self.lag_state(now, paused, byte_lag, time_lag),
            _ => {
                self.lag_excluded = false;
                self.within_since = None;
                None
            }
        };
        self.not_routable = if banned {
            Some(Unroutable::Banned)
        } else {
            lag_reason
        };
        self.not_routable.is_none()
    }

    fn on_failure(&mut self, now: Instant) {
        self.reachable = false;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.good_since = None;
        self.within_since = None;
        let in_ban = self.banned_until.is_some_and(|until| now < until);
        if !in_ban {
            let len = self.next_ban;
            self.banned_until = Some(now + len);
            self.ban_len = Some(len);
            self.next_ban = (len * 2).min(self.cfg.ban_max).max(self.cfg.ban_initial);
        }
        self.not_routable = Some(Unroutable::Banned);
    }

    /// Updates the hysteresis state; `Some(reason)` while excluded.
    fn lag_state(
        &mut self,
        now: Instant,
        paused: bool,
        byte_lag: u64,
        time_lag: Duration,
    ) -> Option<Unroutable> {
        let violation = if paused {
            Some(Unroutable::Paused)
        } else if byte_lag > self.cfg.max_replica_lag_bytes {
            Some(Unroutable::ByteLag)
        } else if time_lag > self.cfg.max_replica_lag {
            Some(Unroutable::TimeLag)
        } else {
            None
        };
        if let Some(v) = violation {
            self.lag_excluded = true;
            self.within_since = None;
            return Some(v);
        }
        let since = *self.within_since.get_or_insert(now);
        if self.lag_excluded {
            if now.saturating_duration_since(since) >= self.cfg.hold_down {
                self.lag_excluded = false;
            } else {
                return Some(Unroutable::HoldDown);
            }
        }
        None
    }

    /// May take routed reads (as of the last probe).
    pub fn routable(&self) -> bool {
        self.not_routable.is_none()
    }

    /// Why not, if not.
    pub fn unroutable_reason(&self) -> Option<Unroutable> {
        self.not_routable
    }

    /// The last probe succeeded.
    pub fn reachable(&self) -> bool {
        self.reachable
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// End of the current ban (it may already have passed: the server is
    /// readmitted only by a good probe after it).
    pub fn banned_until(&self) -> Option<Instant> {
        self.banned_until
    }

    /// Length of the current ban.
    pub fn ban_duration(&self) -> Option<Duration> {
        self.ban_len
    }

    /// Length the next ban would have.
    pub fn next_ban(&self) -> Duration {
        self.next_ban
    }

    /// Start of the current run of probes within the lag limits (replicas).
    pub fn within_limits_since(&self) -> Option<Instant> {
        self.within_since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ok() -> ProbeOutcome {
        ProbeOutcome::Replica {
            paused: false,
            byte_lag: 0,
            time_lag: Duration::ZERO,
        }
    }

    fn lag(bytes: u64, time: Duration) -> ProbeOutcome {
        ProbeOutcome::Replica {
            paused: false,
            byte_lag: bytes,
            time_lag: time,
        }
    }

    const PAUSED: ProbeOutcome = ProbeOutcome::Replica {
        paused: true,
        byte_lag: 0,
        time_lag: Duration::ZERO,
    };

    #[test]
    fn defaults() {
        let c = HealthConfig::default();
        assert_eq!(c.max_replica_lag_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_replica_lag, Duration::from_secs(5));
        assert_eq!(c.hold_down, Duration::from_secs(2));
        assert_eq!(c.ban_initial, Duration::from_secs(1));
        assert_eq!(c.ban_max, Duration::from_secs(60));
    }

    #[test]
    fn unprobed_is_not_routable_and_first_good_probe_routes() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert!(!h.routable());
        assert_eq!(h.unroutable_reason(), Some(Unroutable::NotProbed));
        assert!(h.observe(t0, ok()));
        assert!(h.reachable());
    }

    #[test]
    fn limits_are_inclusive() {
        let t0 = Instant::now();
        let c = HealthConfig::default();
        let mut h = Health::new(c.clone());
        assert!(h.observe(t0, lag(c.max_replica_lag_bytes, c.max_replica_lag)));
        assert!(!h.observe(t0, lag(c.max_replica_lag_bytes + 1, Duration::ZERO)));
        assert_eq!(h.unroutable_reason(), Some(Unroutable::ByteLag));
        let mut h = Health::new(c.clone());
        assert!(!h.observe(t0, lag(0, c.max_replica_lag + ms(1))));
        assert_eq!(h.unroutable_reason(), Some(Unroutable::TimeLag));
    }

    #[test]
    fn pause_excludes_at_once_and_hold_down_delays_return() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert!(h.observe(t0, ok()));
        assert!(!h.observe(t0 + ms(250), PAUSED));
        assert_eq!(h.unroutable_reason(), Some(Unroutable::Paused));
        // Resumed and caught up at +500: held down for 2 s.
        assert!(!h.observe(t0 + ms(500), ok()));
        assert_eq!(h.unroutable_reason(), Some(Unroutable::HoldDown));
        assert_eq!(h.within_limits_since(), Some(t0 + ms(500)));
        assert!(!h.observe(t0 + ms(2499), ok()));
        assert!(h.observe(t0 + ms(2500), ok()));
        assert!(h.observe(t0 + ms(2750), ok()));
    }

    #[test]
    fn relapse_during_hold_down_restarts_it() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert!(!h.observe(t0, lag(u64::MAX, Duration::ZERO)));
        assert!(!h.observe(t0 + ms(1000), ok()));
        assert!(!h.observe(t0 + ms(2000), lag(0, Duration::from_secs(6))));
        assert!(!h.observe(t0 + ms(2500), ok()));
        assert!(!h.observe(t0 + ms(4000), ok()));
        assert!(h.observe(t0 + ms(4500), ok()));
    }

    #[test]
    fn failures_ban_with_doubling_backoff_capped() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert!(h.observe(t0, ok()));
        let mut now = t0;
        let mut lens = Vec::new();
        for _ in 0..9 {
            now += ms(10);
            assert!(!h.observe(now, ProbeOutcome::Failed));
            assert!(!h.reachable());
            let until = h.banned_until().unwrap();
            assert_eq!(until, now + h.ban_duration().unwrap());
            lens.push(h.ban_duration().unwrap().as_secs());
            // Failures during the ban do not extend it.
            assert!(!h.observe(until - ms(1), ProbeOutcome::Failed));
            assert_eq!(h.banned_until(), Some(until));
            now = until;
        }
        assert_eq!(lens, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(h.consecutive_failures(), 18);
    }

    #[test]
    fn readmitted_only_by_good_probe_after_ban() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert!(!h.observe(t0, ProbeOutcome::Failed));
        // Good probe during the ban: reachable but still banned.
        assert!(!h.observe(t0 + ms(500), ok()));
        assert!(h.reachable());
        assert_eq!(h.unroutable_reason(), Some(Unroutable::Banned));
        assert!(h.observe(t0 + ms(1000), ok()));
        assert_eq!(h.banned_until(), None);
        // Next failure: 2 s ban.
        assert!(!h.observe(t0 + ms(1100), ProbeOutcome::Failed));
        assert_eq!(h.ban_duration(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_long_ban_ends_after_a_hold_down_of_good_probes() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        // Failing long enough for a 16 s ban.
        let mut now = t0;
        for _ in 0..5 {
            assert!(!h.observe(now, ProbeOutcome::Failed));
            now = h.banned_until().unwrap();
        }
        let until = h.banned_until().unwrap();
        let back = until - Duration::from_secs(16) + ms(100);
        assert_eq!(h.ban_duration(), Some(Duration::from_secs(16)));
        // Back 100 ms into the ban: still out during the hold-down...
        assert!(!h.observe(back, ok()));
        assert!(!h.observe(back + ms(1999), ok()));
        assert_eq!(h.unroutable_reason(), Some(Unroutable::Banned));
        // ...then readmitted, 14 s before the ban would have ended.
        assert!(h.observe(back + ms(2000), ok()));
        assert_eq!(h.banned_until(), None);
        // A failure during the hold-down restarts it.
        let mut h = Health::new(HealthConfig::default());
        h.observe(t0, ProbeOutcome::Failed);
        h.observe(t0 + ms(1000), ProbeOutcome::Failed);
        h.observe(t0 + ms(3000), ProbeOutcome::Failed);
        assert_eq!(h.ban_duration(), Some(Duration::from_secs(4)));
        assert!(!h.observe(t0 + ms(3100), ok()));
        assert!(!h.observe(t0 + ms(4000), ProbeOutcome::Failed));
        assert!(!h.observe(t0 + ms(4100), ok()));
        assert!(!h.observe(t0 + ms(6000), ok()));
        assert!(h.observe(t0 + ms(6100), ok()));
    }

    #[test]
    fn backoff_resets_after_a_long_good_run() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        h.observe(t0, ProbeOutcome::Failed);
        h.observe(t0 + ms(1000), ProbeOutcome::Failed);
        assert_eq!(h.ban_duration(), Some(Duration::from_secs(2)));
        let back = t0 + ms(3000);
        assert!(h.observe(back, ok()));
        assert_eq!(h.next_ban(), Duration::from_secs(4));
        assert!(h.observe(back + Duration::from_secs(59), ok()));
        assert_eq!(h.next_ban(), Duration::from_secs(4));
        assert!(h.observe(back + Duration::from_secs(60), ok()));
        assert_eq!(h.next_ban(), Duration::from_secs(1));
    }

    #[test]
    fn ban_readmission_keeps_lag_checks() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        h.observe(t0, ProbeOutcome::Failed);
        assert!(!h.observe(t0 + ms(1000), PAUSED));
        assert_eq!(h.unroutable_reason(), Some(Unroutable::Paused));
        assert_eq!(h.banned_until(), None);
    }

    #[test]
    fn primary_ignores_lag_but_not_bans() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthConfig::default());
        assert!(!h.observe(t0, PAUSED));
        // Promoted: the lag exclusion no longer applies.
        assert!(h.observe(t0 + ms(100), ProbeOutcome::Primary));
        assert!(!h.observe(t0 + ms(200), ProbeOutcome::Failed));
        assert!(!h.observe(t0 + ms(300), ProbeOutcome::Primary));
        assert!(h.observe(t0 + ms(1200), ProbeOutcome::Primary));
    }
}
