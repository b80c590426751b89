//! Causeway's server monitor.
//!
//! One probe task per server runs one query every [`MonitorConfig::interval`]
//! (default 250 ms) over a one-connection deadpool-postgres pool whose
//! connections carry `-c statement_timeout=<probe_timeout>` (default 1 s).
//! See the `probe` module docs for the query. One aggregator task folds the
//! results into a [`Snapshot`] and publishes it on a `tokio::sync::watch`
//! channel after every probe, so a role change (promotion) is published as
//! soon as the probe that saw it returns; the other servers are then probed
//! at once too.
//!
//! * Roles: `pg_is_in_recovery()`. [`Snapshot::primary`] is `Some` only when
//!   exactly one *reachable* server is not in recovery. Two or more is split
//!   brain: `None`, and a `tracing::error!` every time it is observed.
//! * [`Snapshot::generation`] goes up whenever the (primary index, primary
//!   timeline) pair changes.
//! * Lag and routability: `causeway_routing::lag` and
//!   `causeway_routing::health` (defaults: 16 MiB, 5 s, 2 s hold-down, bans
//!   of 1 s doubling to 60 s).
//!
//! Probes use no TLS.

mod aggregate;
mod check;
mod config;
mod positions;
mod probe;
mod snapshot;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub use causeway_routing::health::Unroutable;
pub use causeway_routing::lsn::Lsn;
pub use causeway_routing::Role;
pub use check::{check_server, CheckResult};
pub use config::{MonitorConfig, ServerAddr, DEFAULT_INTERVAL, DEFAULT_PROBE_TIMEOUT};
pub use positions::{Positions, Sample, WaitGuard, DEFAULT_POSITION_POLL};
pub use snapshot::{ServerStatus, Snapshot};

use aggregate::{Aggregator, Report};
use positions::Demand;
use probe::Prober;

/// Probes a set of servers until shut down (or dropped).
pub struct Monitor {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Probe request counter: every probe task probes at once when it
    /// changes.
    requests: Arc<watch::Sender<u64>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    cfg: MonitorConfig,
    positions: Arc<Positions>,
}

impl Monitor {
    /// Starts one probe task per server and the aggregator. Must be called
    /// inside a tokio runtime. Server indexes in snapshots follow `servers`.
    pub fn spawn(servers: Vec<ServerAddr>, cfg: MonitorConfig) -> Monitor {
        let labels: Vec<String> = servers.iter().map(ServerAddr::label).collect();
        let mut agg = Aggregator::new(labels, &cfg);
        let positions = Arc::new(Positions::new(servers.len(), cfg.position_poll));
        if !cfg.force_flush {
            (0..servers.len()).for_each(|i| positions.refuse_flush(i));
        }
        let (snap_tx, snap_rx) = watch::channel(Arc::new(agg.snapshot().clone()));
        let (req_tx, _) = watch::channel(0u64);
        let requests = Arc::new(req_tx);
        let (report_tx, mut report_rx) = mpsc::channel::<Report>(servers.len().max(1) * 4);
        let mut tasks = Vec::with_capacity(servers.len() + 1);

        for (index, addr) in servers.iter().enumerate() {
            let tx = report_tx.clone();
            let req_rx = requests.subscribe();
            let addr = addr.clone();
            let cfg = cfg.clone();
            let pos = Arc::clone(&positions);
            tasks.push(tokio::spawn(probe_loop(index, addr, cfg, req_rx, tx, pos)));
        }
        drop(report_tx);

        let req = Arc::clone(&requests);
        tasks.push(tokio::spawn(async move {
            while let Some(r) = report_rx.recv().await {
                let fx = agg.apply(r);
                snap_tx.send_replace(Arc::new(agg.snapshot().clone()));
                if fx.role_changed {
                    req.send_modify(|e| *e += 1);
                }
            }
        }));

        Monitor {
            snapshot: snap_rx,
            requests,
            tasks: Mutex::new(tasks),
            cfg,
            positions,
        }
    }

    /// Fresh WAL positions on demand (see [`Positions`]).
    pub fn positions(&self) -> &Arc<Positions> {
        &self.positions
    }

    /// A receiver that sees every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// Asks every probe task to probe now, without waiting (a session saw a
    /// server fail; the next snapshot shows whether it is down).
    pub fn request_probe(&self) {
        self.requests.send_modify(|e| *e += 1);
    }

    /// Asks every probe task to probe now and waits until each server has
    /// finished a probe that started after this call (good or failed), then
    /// returns that snapshot. Bounded: after `2 * probe_timeout + interval`
    /// it returns the latest snapshot anyway.
    pub async fn probe_now(&self) -> Arc<Snapshot> {
        let mut epoch = 0;
        self.requests.send_modify(|e| {
            *e += 1;
            epoch = *e;
        });
        let mut rx = self.subscribe();
        let limit = self.cfg.probe_timeout * 2 + self.cfg.interval;
        let fresh = tokio::time::timeout(limit, async {
            rx.wait_for(|s| s.servers.iter().all(|x| x.probe_epoch >= epoch))
                .await
                .map(|s| Arc::clone(&s))
                .ok()
        })
        .await;
        match fresh {
            Ok(Some(s)) => s,
            _ => self.snapshot(),
        }
    }

    /// Stops every task (idempotent). The probe connections close.
    pub fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            t.abort();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("snapshot", &*self.snapshot.borrow())
            .finish_non_exhaustive()
    }
}

async fn probe_loop(
    index: usize,
    addr: ServerAddr,
    cfg: MonitorConfig,
    mut requests: watch::Receiver<u64>,
    reports: mpsc::Sender<Report>,
    pos: Arc<Positions>,
) {
    let mut prober = match Prober::new(&addr, cfg.probe_timeout) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(server = %addr.label(), error = %e, "monitor: cannot build probe pool");
            None
        }
    };
    let interval = cfg.interval.max(Duration::from_millis(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut requests_open = true;
    let mut next_position = tokio::time::Instant::now();
    loop {
        let demand = tokio::select! {
            _ = tick.tick() => None,
            r = requests.changed(), if requests_open => {
                if r.is_err() {
                    requests_open = false;
                    continue;
                }
                None
            }
            d = paced_demand(&pos, index, next_position) => Some(d),
        };
        if let Some(d) = demand {
            let ok = position(index, &addr, prober.as_mut(), &pos, d).await;
            // A server that does not answer is not hammered by waiting reads.
            let pause = if ok {
                pos.poll()
            } else {
                interval.min(Duration::from_millis(50))
            };
            next_position = tokio::time::Instant::now() + pause;
            continue;
        }
        let epoch = *requests.borrow_and_update();
        let started = Instant::now();
        let result = match prober.as_mut() {
            Some(p) => p.probe().await,
            None => Err("probe pool could not be built".into()),
        };
        let report = Report {
            index,
            epoch,
            at: Instant::now(),
            started,
            result,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}

/// The next demand on this server's position, not before `not_before`
/// unless it is a one-off sample someone asked for (a waiting read's poll
/// and a forced flush are paced).
async fn paced_demand(pos: &Positions, index: usize, not_before: tokio::time::Instant) -> Demand {
    loop {
        let d = pos.demand(index).await;
        if d != (Demand::Sample { paced: false }) && tokio::time::Instant::now() < not_before {
            tokio::time::sleep_until(not_before).await;
            // The waiters may have gone meanwhile: ask again.
            continue;
        }
        return d;
    }
}

/// Serves one demand: forces a flush if asked, then samples. False when
/// the server did not answer.
async fn position(
    index: usize,
    addr: &ServerAddr,
    prober: Option<&mut Prober>,
    pos: &Positions,
    d: Demand,
) -> bool {
    let started = pos.now();
    let Some(p) = prober else {
        pos.publish_failure(index, started);
        return false;
    };
    if d == Demand::Flush {
        pos.flushed();
        if let Err((e, refused)) = p.force_flush().await {
            if refused {
                tracing::warn!(server = %addr.label(), user = %addr.user, error = %e.message,
                    "monitor: cannot force a WAL flush for reads waiting on synchronous_commit = off writes; \
                     they wait for the WAL writer instead");
                pos.refuse_flush(index);
            }
        }
    }
    let started = pos.now();
    match p.position().await {
        Ok(d) => {
            pos.publish(
                index,
                Sample {
                    standby: d.in_recovery,
                    lsn: d.lsn,
                    flush: d.flush,
                    timeline: d.timeline,
                    started,
                },
            );
            true
        }
        Err(e) => {
            tracing::debug!(server = %addr.label(), error = %e.message, "monitor: position query failed");
            pos.publish_failure(index, started);
            false
        }
    }
}
