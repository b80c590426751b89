//! The server monitor (crate `causeway-monitor`) against real PostgreSQL:
//! roles, pause, apply delay, idle primary, a stopped replica, promotion and
//! split brain.
//!
//! Server indexes: 0 = primary, 1 = replica0, 2 = replica1 (the harness's
//! `replica(i)` is server `i + 1`). Tests on the shared cluster take
//! [`shared`]'s lock because pausing or stopping a replica, or writing,
//! would disturb the others. Promotion gets its own cluster.
//!
//! Every wait polls the published snapshots with a deadline; nothing
//! sleeps and then asserts exact times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_integration::{shared_cluster, Cluster, ClusterOptions, Writer};
use causeway_monitor::{Monitor, MonitorConfig, Role, ServerAddr, Snapshot, Unroutable};
use tokio::sync::{Mutex, MutexGuard};

/// Idle-primary observation window; `CAUSEWAY_MONITOR_IDLE_SECS` overrides.
const IDLE_SECS: u64 = 30;

static SHARED: Mutex<()> = Mutex::const_new(());

/// The shared cluster plus the lock serialising the tests that use it (a
/// tokio mutex: held across awaits, and not poisoned by a failed test).
async fn shared() -> (MutexGuard<'static, ()>, &'static Cluster) {
    let g = SHARED.lock().await;
    (g, tokio::task::block_in_place(shared_cluster))
}

/// Runs a blocking harness call without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn addrs(c: &Cluster, user: &str, password: Option<&str>) -> Vec<ServerAddr> {
    c.nodes()
        .iter()
        .map(|n| ServerAddr {
            password: password.map(str::to_string),
            ..ServerAddr::new(n.host(), n.port(), user)
        })
        .collect()
}

fn superuser_monitor(c: &Cluster, cfg: MonitorConfig) -> Monitor {
    Monitor::spawn(addrs(c, "postgres", None), cfg)
}

fn summary(s: &Snapshot) -> String {
    let mut out = format!(
        "primary={:?} split_brain={} generation={}\n",
        s.primary, s.split_brain, s.generation
    );
    for (i, x) in s.servers.iter().enumerate() {
        out.push_str(&format!(
            "  [{i}] {:?} reachable={} routable={} why={:?} note={:?} paused={} replay={:?} \
             primary_lsn={:?} bytes={:?} time={:?} ban={:?} tl={:?} err={:?}\n",
            x.role,
            x.reachable,
            x.routable,
            x.unroutable,
            x.note,
            x.paused,
            x.replay_lsn.map(|l| l.to_string()),
            x.primary_lsn.map(|l| l.to_string()),
            x.byte_lag,
            x.time_lag,
            x.ban_duration,
            x.timeline,
            x.last_error,
        ));
    }
    out
}

/// Waits (on the watch channel, bounded) until `pred` holds for a published
/// snapshot; panics with the last snapshot otherwise.
async fn wait_for(
    mon: &Monitor,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut rx = mon.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = Arc::clone(&rx.borrow_and_update());
        if pred(&s) {
            return s;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!(
                "timed out after {timeout:?} waiting for {what}; last snapshot:\n{}",
                summary(&mon.snapshot())
            ),
        }
    }
}

fn healthy_topology(s: &Snapshot) -> bool {
    s.primary == Some(0)
        && s.servers[1].role == Role::Replica
        && s.servers[2].role == Role::Replica
        && s.servers.iter().all(|x| x.routable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_discovered_and_replicas_caught_up() {
    let (_g, c) = shared().await;
    let started = Instant::now();
    let mon = superuser_monitor(c, MonitorConfig::default());
    let s = wait_for(
        &mon,
        Duration::from_secs(10),
        "primary 0, replicas routable",
        healthy_topology,
    )
    .await;
    eprintln!("roles discovered in {:?}", started.elapsed());
    assert_eq!(s.generation, 1);
    assert!(!s.split_brain);
    assert_eq!(s.servers[0].role, Role::Primary);
    assert_eq!(s.servers[0].timeline, Some(1));
    let sysid = s.servers[0].system_identifier;
    assert!(sysid.is_some());
    assert!(s.servers.iter().all(|x| x.system_identifier == sysid));
    assert_eq!(s.to_topology().primary(), Some(0));
    assert_eq!(s.routable_replicas().collect::<Vec<_>>(), [1, 2]);

    blocking(|| {
        for i in 0..2 {
            c.wait_replay_caught_up(i, Duration::from_secs(10)).unwrap();
        }
    });
    // Byte lag ~0 (a parked insert LSN can leave a page header's 24/40 bytes).
    let s = wait_for(&mon, Duration::from_secs(5), "byte lag ~0", |s| {
        s.servers[1..]
            .iter()
            .all(|x| x.byte_lag.is_some_and(|b| b <= 64))
    })
    .await;
    for x in &s.servers[1..] {
        assert_eq!(x.timeline, Some(1));
        assert!(x.replay_lsn.is_some() && x.receive_lsn.is_some());
    }

    // probe_now: every server re-probed after the call.
    let before = mon.snapshot();
    let t = Instant::now();
    let fresh = mon.probe_now().await;
    eprintln!("probe_now took {:?}", t.elapsed());
    for (a, b) in before.servers.iter().zip(&fresh.servers) {
        assert!(b.probe_epoch > a.probe_epoch, "{}", summary(&fresh));
        assert!(b.last_probe > a.last_probe);
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    mon.shutdown();

    // A non-superuser (scram) probe works too.
    let app = Monitor::spawn(addrs(c, "app", Some("app_pw")), MonitorConfig::default());
    let s = wait_for(
        &app,
        Duration::from_secs(10),
        "app user: topology",
        healthy_topology,
    )
    .await;
    eprintln!(
        "app user: sysid={:?} replica timelines={:?}",
        s.servers[0].system_identifier,
        s.servers[1..]
            .iter()
            .map(|x| x.timeline)
            .collect::<Vec<_>>()
    );
    assert_eq!(s.servers[0].timeline, Some(1));
    app.shutdown();

    // A user that may not call pg_control_*(): the reduced probe query.
    let revoke = "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC;";
    let grant = "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC;";
    blocking(|| c.psql(c.primary(), "postgres", revoke)).unwrap();
    blocking(|| c.wait_replay_caught_up(0, Duration::from_secs(10))).unwrap();
    blocking(|| c.wait_replay_caught_up(1, Duration::from_secs(10))).unwrap();
    let limited = Monitor::spawn(addrs(c, "app", Some("app_pw")), MonitorConfig::default());
    let s = wait_for(
        &limited,
        Duration::from_secs(10),
        "limited user: topology",
        |s| healthy_topology(s) && s.servers.iter().all(|x| x.system_identifier.is_none()),
    )
    .await;
    limited.shutdown();
    blocking(|| c.psql(c.primary(), "postgres", grant)).unwrap();
    assert_eq!(s.servers[0].timeline, Some(1));
    assert_eq!(s.generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_excludes_replica_and_hold_down_delays_its_return() {
    let (_g, c) = shared().await;
    let cfg = MonitorConfig::default();
    let hold_down = cfg.hold_down;
    let mon = superuser_monitor(c, cfg);
    wait_for(
        &mon,
        Duration::from_secs(10),
        "healthy topology",
        healthy_topology,
    )
    .await;
    let writer = Writer::start(c, "monitor_writes").await;

    blocking(|| c.pause_replay(0)).unwrap();
    let paused_at = Instant::now();
    let s = wait_for(
        &mon,
        Duration::from_millis(1500),
        "replica0 excluded for pause",
        |s| !s.servers[1].routable && s.servers[1].paused,
    )
    .await;
    eprintln!(
        "pause detected {:?} after pause_replay returned",
        paused_at.elapsed()
    );
    assert_eq!(s.servers[1].unroutable, Some(Unroutable::Paused));
    assert!(s.servers[2].routable, "{}", summary(&s));

    let resumed_at = Instant::now();
    blocking(|| c.resume_replay(0)).unwrap();
    // Watch every snapshot: first back within limits (held down), then routable.
    let mut saw_hold_down = None;
    let s = wait_for(
        &mon,
        Duration::from_secs(10),
        "replica0 routable again",
        |s| {
            let x = &s.servers[1];
            if x.unroutable == Some(Unroutable::HoldDown) && saw_hold_down.is_none() {
                saw_hold_down = Some(Instant::now());
            }
            x.routable
        },
    )
    .await;
    let routable_seen = Instant::now();
    let x = &s.servers[1];
    eprintln!(
        "after resume: held down seen at {:?}, routable seen at {:?} (hold_down {hold_down:?})",
        saw_hold_down.map(|t| t - resumed_at),
        routable_seen - resumed_at
    );
    assert!(saw_hold_down.is_some(), "never saw the hold-down state");
    // It stayed within limits for the whole hold-down before coming back.
    let since = x.within_limits_since.expect("within_limits_since");
    let probed = x.last_probe.expect("last_probe");
    assert!(probed.duration_since(since) >= hold_down);
    assert!(since >= resumed_at);
    assert!(routable_seen.duration_since(resumed_at) >= hold_down);
    assert!(!x.paused);
    let n = writer.stop().await;
    assert!(n > 10, "writer wrote only {n} rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_delay_excludes_replica_by_time_lag_with_small_byte_lag() {
    let (_g, c) = shared().await;
    // Delay 2 s against a 1 s time limit; bytes stay far below 16 MiB.
    let cfg = MonitorConfig {
        max_replica_lag: Duration::from_secs(1),
        ..MonitorConfig::default()
    };
    let mon = superuser_monitor(c, cfg);
    wait_for(
        &mon,
        Duration::from_secs(10),
        "healthy topology",
        healthy_topology,
    )
    .await;
    let writer = Writer::start(c, "monitor_writes").await;

    blocking(|| c.set_apply_delay(1, Duration::from_secs(2))).unwrap();
    let t = Instant::now();
    let s = wait_for(
        &mon,
        Duration::from_secs(10),
        "replica1 excluded by time lag",
        |s| s.servers[2].unroutable == Some(Unroutable::TimeLag),
    )
    .await;
    let x = &s.servers[2];
    eprintln!(
        "apply delay: excluded after {:?}; time lag {:?}, byte lag {:?}",
        t.elapsed(),
        x.time_lag,
        x.byte_lag
    );
    assert!(!x.routable);
    assert!(x.time_lag.unwrap() > Duration::from_secs(1));
    assert!(x.byte_lag.unwrap() < 1_000_000, "{}", summary(&s));
    assert!(s.servers[1].routable, "{}", summary(&s));

    blocking(|| c.set_apply_delay(1, Duration::ZERO)).unwrap();
    wait_for(
        &mon,
        Duration::from_secs(15),
        "replica1 routable after delay removed",
        |s| s.servers[2].routable,
    )
    .await;
    writer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_primary_shows_no_false_time_lag() {
    let (_g, c) = shared().await;
    let secs = std::env::var("CAUSEWAY_MONITOR_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IDLE_SECS);
    // Park the insert LSN just past a segment's long page header: a
    // caught-up standby then stays 40 bytes "behind" for as long as the
    // primary is idle (without special handling that is unbounded time lag).
    blocking(|| c.psql(c.primary(), "postgres", "SELECT pg_switch_wal()")).unwrap();
    let mon = superuser_monitor(c, MonitorConfig::default());
    let s = wait_for(&mon, Duration::from_secs(10), "replicas caught up", |s| {
        healthy_topology(s)
            && s.servers[1..]
                .iter()
                .all(|x| x.time_lag == Some(Duration::ZERO))
    })
    .await;
    let lsn_before = s.servers[0].primary_lsn;
    let bound = Duration::from_secs(1);
    let mut rx = mon.subscribe();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let (mut max_time, mut max_bytes, mut snapshots) = (Duration::ZERO, 0u64, 0u32);
    loop {
        {
            let s = rx.borrow_and_update();
            for x in &s.servers[1..] {
                let t = x.time_lag.unwrap_or_default();
                max_time = max_time.max(t);
                max_bytes = max_bytes.max(x.byte_lag.unwrap_or(0));
                assert!(t <= bound, "false lag on an idle primary:\n{}", summary(&s));
                assert!(x.avg_time_lag.unwrap_or_default() <= bound);
                assert!(x.routable, "{}", summary(&s));
            }
            snapshots += 1;
        }
        if tokio::time::timeout_at(end, rx.changed()).await.is_err() {
            break;
        }
    }
    let s = mon.snapshot();
    eprintln!(
        "idle {secs}s: {snapshots} snapshots, max time lag {max_time:?}, max byte lag {max_bytes}, \
         primary LSN {:?} -> {:?}",
        lsn_before.map(|l| l.to_string()),
        s.servers[0].primary_lsn.map(|l| l.to_string())
    );
    assert!(snapshots as u64 >= secs * 4, "too few probes: {snapshots}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_replica_is_banned_with_backoff_and_readmitted() {
    let (_g, c) = shared().await;
    let hold_down = Duration::from_millis(300);
    let mon = superuser_monitor(
        c,
        MonitorConfig {
            hold_down,
            ..MonitorConfig::default()
        },
    );
    wait_for(
        &mon,
        Duration::from_secs(10),
        "healthy topology",
        healthy_topology,
    )
    .await;
    let r = c.replica(1).clone();

    let t = Instant::now();
    blocking(|| c.stop(&r)).unwrap();
    let s = wait_for(&mon, Duration::from_secs(5), "replica1 banned 1 s", |s| {
        s.servers[2].ban_duration == Some(Duration::from_secs(1))
    })
    .await;
    eprintln!("stop: banned {:?} after stop began", t.elapsed());
    let x = &s.servers[2];
    assert!(!x.reachable && !x.routable);
    assert!(x.last_error.is_some());
    assert!(x.banned_until.is_some());
    assert!(s.servers[1].routable && s.primary == Some(0));
    let s = wait_for(&mon, Duration::from_secs(5), "replica1 banned 2 s", |s| {
        s.servers[2].ban_duration == Some(Duration::from_secs(2))
    })
    .await;
    assert!(!s.servers[2].routable);
    eprintln!("stop: second ban (2 s) {:?} after stop began", t.elapsed());
    // Down long enough for an 8 s ban: once back it must not sit that out.
    let s = wait_for(&mon, Duration::from_secs(15), "replica1 banned 8 s", |s| {
        s.servers[2].ban_duration == Some(Duration::from_secs(8))
    })
    .await;
    let ban_ends = s.servers[2].banned_until.expect("banned");

    let t = Instant::now();
    blocking(|| c.start_node(&r)).unwrap();
    let started = t.elapsed();
    let s = wait_for(&mon, Duration::from_secs(15), "replica1 readmitted", |s| {
        s.servers[2].routable
    })
    .await;
    let back = Instant::now();
    eprintln!(
        "restart: pg_ctl start took {started:?}, readmitted {:?} after start began, \
         {:?} before its 8 s ban would have ended; replay timestamp after restart: {:?}",
        t.elapsed(),
        ban_ends.saturating_duration_since(back),
        s.servers[2].last_replay_timestamp
    );
    assert_eq!(s.servers[2].banned_until, None);
    assert!(
        back < ban_ends,
        "readmitted only when its ban ended, not after {hold_down:?} of good probes"
    );
    blocking(|| c.wait_streaming(2, Duration::from_secs(30))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_changes_primary_and_generation_then_split_brain() {
    let c = blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster");
    let mon = superuser_monitor(&c, MonitorConfig::default());
    let s = wait_for(
        &mon,
        Duration::from_secs(10),
        "healthy topology",
        healthy_topology,
    )
    .await;
    let (g0, tl0) = (s.generation, s.servers[0].timeline.unwrap());

    blocking(|| c.stop(c.primary())).unwrap();
    wait_for(&mon, Duration::from_secs(5), "no primary", |s| {
        s.primary.is_none()
    })
    .await;
    assert_eq!(mon.snapshot().generation, g0);

    blocking(|| c.promote(0)).unwrap();
    let t = Instant::now();
    let s = wait_for(&mon, Duration::from_secs(3), "replica0 is primary", |s| {
        s.primary == Some(1)
    })
    .await;
    eprintln!(
        "promotion seen {:?} after pg_ctl promote returned; timeline {tl0} -> {:?}",
        t.elapsed(),
        s.servers[1].timeline
    );
    assert!(s.generation > g0, "{}", summary(&s));
    assert!(s.servers[1].timeline.unwrap() > tl0);
    assert!(s.servers[1].routable);
    assert!(!s.servers[0].reachable);

    blocking(|| c.promote(1)).unwrap();
    let t = Instant::now();
    let s = wait_for(&mon, Duration::from_secs(3), "split brain", |s| {
        s.split_brain
    })
    .await;
    eprintln!("split brain seen {:?} after second promote", t.elapsed());
    assert_eq!(s.primary, None);
    assert!(!s.servers[1].routable && !s.servers[2].routable);
    assert_eq!(s.to_topology().primary(), None);
    mon.shutdown();
    blocking(move || drop(c));
}
