//! The read-your-writes checker: many sessions through Causeway, each
//! writing its own row and reading it straight back, counting stale and
//! backwards reads and where the reads ran.
//!
//! One loop of one session: `INSERT .. ON CONFLICT DO UPDATE` of the
//! session's own key to the loop number (autocommit), then one read of that
//! key and of a shared counter that a separate writer raises every 5 ms
//! (every 5th read inside `BEGIN READ ONLY`). A read is **stale** when it
//! misses the session's own committed write, **backwards** when it returns
//! an older own value or shared counter than an earlier read of the same
//! session (monotonic reads). The read also reports the server's port, so
//! the share of reads each server served is known.
//!
//! [`chaos`] pauses and resumes one replica's replay at random while a run
//! goes on. Used by `integration/tests/consistency.rs` (small runs in
//! `make test`) and by the `causeway-ryw-check` binary (`make ryw-check`,
//! the figures in docs/consistency.md).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::Cluster;

/// What a run saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub loops: u64,
    pub reads: u64,
    pub stale: u64,
    pub backwards: u64,
    /// Statements that failed (e.g. a recovery conflict cancelling a
    /// `BEGIN READ ONLY` read on a replica, which cannot be re-run
    /// elsewhere); the loop goes on.
    pub errors: u64,
    /// Reads served per server port.
    pub by_port: BTreeMap<u16, u64>,
    /// Latency of every read (µs), as the client saw it.
    pub read_us: Vec<u64>,
    /// A few stale or backwards reads, described.
    pub examples: Vec<String>,
    pub took: Duration,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.loops += o.loops;
        self.reads += o.reads;
        self.stale += o.stale;
        self.backwards += o.backwards;
        self.errors += o.errors;
        for (p, n) in o.by_port {
            *self.by_port.entry(p).or_default() += n;
        }
        self.read_us.extend(o.read_us);
        if self.examples.len() < 6 {
            self.examples.extend(o.examples.into_iter().take(2));
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.examples.len() < 4 {
            self.examples.push(e);
        }
    }

    /// Share (0..1) of the reads served by any of `ports`.
    pub fn share(&self, ports: &[u16]) -> f64 {
        let n: u64 = ports
            .iter()
            .map(|p| self.by_port.get(p).copied().unwrap_or(0))
            .sum();
        if self.reads == 0 {
            0.0
        } else {
            n as f64 / self.reads as f64
        }
    }

    /// The `p` quantile (0..1) of the read latency, in ms (after
    /// [`run`], which sorts the samples).
    pub fn read_ms(&self, p: f64) -> f64 {
        if self.read_us.is_empty() {
            return 0.0;
        }
        let i = ((self.read_us.len() - 1) as f64 * p).round() as usize;
        self.read_us[i] as f64 / 1000.0
    }
}

/// The checker's table, on the primary (superuser connection string).
pub async fn prepare_table(primary_dsn: &str, grant_to: &str) -> Result<(), String> {
    let (c, conn) = tokio_postgres::connect(primary_dsn, NoTls)
        .await
        .map_err(|e| describe(&e))?;
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS ck (k bigint PRIMARY KEY, v bigint NOT NULL);
         INSERT INTO ck VALUES (0, 0) ON CONFLICT (k) DO NOTHING;
         GRANT ALL ON ck TO {grant_to};"
    ))
    .await
    .map_err(|e| describe(&e))
}

/// An error with the server's SQLSTATE and message.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// One read: (own value, shared counter, server port).
async fn read(client: &Client, key: i64, in_txn: bool) -> Result<(i64, i64, u16), String> {
    let sql = format!(
        "SELECT (SELECT v FROM ck WHERE k = {key}), (SELECT v FROM ck WHERE k = 0), inet_server_port()"
    );
    // Three round trips: one text with BEGIN and a SELECT would be a
    // multi-statement query, which goes to the primary.
    if in_txn {
        client
            .simple_query("BEGIN READ ONLY")
            .await
            .map_err(|e| describe(&e))?;
    }
    let msgs = client.simple_query(&sql).await.map_err(|e| describe(&e));
    if in_txn {
        client
            .simple_query("COMMIT")
            .await
            .map_err(|e| describe(&e))?;
    }
    let msgs = msgs?;
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            let num = |i: usize| r.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
            return Ok((num(0), num(1), num(2) as u16));
        }
    }
    Err("no row".into())
}

/// One session: `loops` write-then-read rounds on key `key`.
pub async fn session(client: Client, key: i64, loops: u64) -> Result<Tally, String> {
    let mut t = Tally::default();
    let (mut seen_own, mut seen_shared) = (0i64, 0i64);
    for v in 1..=loops as i64 {
        let w = client
            .simple_query(&format!(
                "INSERT INTO ck VALUES ({key}, {v}) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
            ))
            .await;
        if let Err(e) = w {
            t.error(format!("write {key}={v}: {}", describe(&e)));
            continue;
        }
        let in_txn = v % 5 == 0;
        let started = Instant::now();
        let (own, shared, port) = match read(&client, key, in_txn).await {
            Ok(r) => r,
            Err(e) => {
                t.error(format!("read of {key}: {e}"));
                if in_txn {
                    // Leave the failed transaction block, if one is open.
                    let _ = client.simple_query("ROLLBACK").await;
                }
                continue;
            }
        };
        t.read_us.push(started.elapsed().as_micros() as u64);
        t.reads += 1;
        *t.by_port.entry(port).or_default() += 1;
        if own < v {
            t.stale += 1;
            if t.examples.len() < 2 {
                t.examples.push(format!(
                    "key {key}: wrote {v}, read {own} on port {port} (in txn {in_txn})"
                ));
            }
        }
        if own < seen_own || shared < seen_shared {
            t.backwards += 1;
            if t.examples.len() < 2 {
                t.examples.push(format!(
                    "key {key}: shared {shared} after {seen_shared}, own {own} after {seen_own} (port {port})"
                ));
            }
        }
        seen_own = seen_own.max(own);
        seen_shared = seen_shared.max(shared);
        t.loops += 1;
    }
    Ok(t)
}

/// Runs `sessions` sessions of `loops` rounds against `dsn` (Causeway),
/// with the shared counter raised on the primary meanwhile. Keys start at
/// `key_base`.
pub async fn run(
    primary_dsn: &str,
    dsn: &str,
    sessions: u64,
    loops: u64,
    key_base: i64,
) -> Result<Tally, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let bumps = Arc::new(AtomicU64::new(0));
    let writer = shared_writer(primary_dsn, stop.clone(), bumps.clone()).await?;
    let mut clients = Vec::new();
    for _ in 0..sessions {
        let (c, conn) = tokio_postgres::connect(dsn, NoTls)
            .await
            .map_err(|e| format!("connect through causeway: {e}"))?;
        tokio::spawn(conn);
        clients.push(c);
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(session(c, key_base + i as i64, loops)))
        .collect();
    let mut total = Tally::default();
    let mut err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(t)) => total.add(t),
            Ok(Err(e)) => err = err.or(Some(e)),
            Err(e) => err = err.or(Some(e.to_string())),
        }
    }
    total.took = t0.elapsed();
    total.read_us.sort_unstable();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    match err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Raises the shared counter (key 0) on the primary every 5 ms until `stop`.
async fn shared_writer(
    primary_dsn: &str,
    stop: Arc<AtomicBool>,
    bumps: Arc<AtomicU64>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (client, conn) = tokio_postgres::connect(primary_dsn, NoTls)
        .await
        .map_err(|e| describe(&e))?;
    tokio::spawn(conn);
    Ok(tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            if client
                .simple_query("UPDATE ck SET v = v + 1 WHERE k = 0")
                .await
                .is_err()
            {
                return;
            }
            bumps.fetch_add(1, Ordering::Relaxed);
            // sleep-ok: pacing of the shared-counter writer (load, not a wait)
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }))
}

/// Pauses and resumes replica `i` at random (paused 100-800 ms, replaying
/// 1-3 s) until `stop`. Returns (pauses, time spent paused).
pub fn chaos(
    c: Arc<Cluster>,
    i: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u32, Duration)> {
    std::thread::spawn(move || {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand_ms = |lo: u64, hi: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(lo + x % (hi - lo))
        };
        let (mut pauses, mut paused) = (0, Duration::ZERO);
        // Bounded and self-stopping: every step is a short sleep.
        let nap = |d: Duration, stop: &AtomicBool| {
            let end = Instant::now() + d;
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                // sleep-ok: the chaos schedule's nap, in steps that notice `stop`
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            if c.pause_replay(i).is_ok() {
                pauses += 1;
            }
            nap(rand_ms(100, 800), &stop);
            let _ = c.resume_replay(i);
            paused += t.elapsed();
            nap(rand_ms(1000, 3000), &stop);
        }
        let _ = c.resume_replay(i);
        (pauses, paused)
    })
}
