//! Read-your-writes and monotonic reads through Causeway, against a primary
//! whose replica 0 applies WAL 500 ms late and whose replica 1 is paused and
//! resumed at random.
//!
//! The checker: 50 sessions, each looping "write a new value of my own key,
//! commit, read it back in autocommit, read it back inside BEGIN READ ONLY",
//! also reading a shared counter that a separate writer keeps raising. A
//! stale read is a read missing the session's own committed write; a
//! monotonicity violation is a session reading a lower shared counter (or
//! own value) than it already read. With `consistency = session` both must
//! be zero; with `consistency = none` (negative control) the checker must
//! see stale reads, which proves it can fail.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use causeway_integration::{http_get, Cluster, ClusterOptions};
use common::*;
use tokio_postgres::{Client, NoTls};

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// One metric value from /metrics (first series starting with `prefix`).
fn metric(cw: &Cw, prefix: &str) -> f64 {
    let (_, body) = http_get(cw.metrics_port().expect("metrics port"), "/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum()
}

#[derive(Default, Debug)]
struct Tally {
    loops: u64,
    reads: u64,
    replica_reads: u64,
    stale: u64,
    backwards: u64,
    /// Latency of the first read after each write.
    fresh_read_us: Vec<u64>,
    examples: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.loops += o.loops;
        self.reads += o.reads;
        self.replica_reads += o.replica_reads;
        self.stale += o.stale;
        self.backwards += o.backwards;
        self.fresh_read_us.extend(o.fresh_read_us);
        if self.examples.len() < 5 {
            self.examples.extend(o.examples.into_iter().take(2));
        }
    }
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// (own value, shared counter, served by a replica) of one read.
async fn read(client: &Client, key: i64, in_txn: bool) -> Result<(i64, i64, bool), String> {
    let sql = format!(
        "SELECT (SELECT v FROM ck WHERE k = {key}), (SELECT v FROM ck WHERE k = 0), pg_is_in_recovery()"
    );
    let r = if in_txn {
        client
            .simple_query("BEGIN READ ONLY")
            .await
            .map_err(|e| e.to_string())?;
        let r = row(client, &sql).await.map_err(|e| e.to_string());
        client
            .simple_query("COMMIT")
            .await
            .map_err(|e| e.to_string())?;
        r?
    } else {
        row(client, &sql).await.map_err(|e| e.to_string())?
    };
    let num = |s: &str| s.parse::<i64>().unwrap_or(-1);
    Ok((num(&r[0]), num(&r[1]), r[2] == "t"))
}

/// One session of the checker: `loops` write-then-read rounds on key `key`.
async fn session(client: Client, key: i64, loops: u64, sync_off: bool) -> Tally {
    let mut t = Tally::default();
    let (mut seen_own, mut seen_shared) = (0i64, 0i64);
    for v in 1..=loops as i64 {
        let write = if sync_off {
            format!("BEGIN; SET LOCAL synchronous_commit = off; INSERT INTO ck VALUES ({key}, {v}) ON CONFLICT (k) DO UPDATE SET v = excluded.v; COMMIT")
        } else {
            format!(
                "INSERT INTO ck VALUES ({key}, {v}) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
            )
        };
        client
            .simple_query(&write)
            .await
            .unwrap_or_else(|e| panic!("write {key}={v}: {e}"));
        for in_txn in [false, true] {
            let started = Instant::now();
            let (own, shared, replica) = read(&client, key, in_txn)
                .await
                .unwrap_or_else(|e| panic!("read of {key}: {e}"));
            if !in_txn {
                t.fresh_read_us.push(started.elapsed().as_micros() as u64);
            }
            t.reads += 1;
            t.replica_reads += u64::from(replica);
            if own < v {
                t.stale += 1;
                if t.examples.len() < 2 {
                    t.examples.push(format!(
                        "key {key}: wrote {v}, read {own} (replica {replica}, in txn {in_txn})"
                    ));
                }
            }
            if own < seen_own || shared < seen_shared {
                t.backwards += 1;
                if t.examples.len() < 2 {
                    t.examples.push(format!(
                        "key {key}: shared {shared} after {seen_shared} (replica {replica})"
                    ));
                }
            }
            seen_own = seen_own.max(own);
            seen_shared = seen_shared.max(shared);
        }
        t.loops += 1;
    }
    t
}

/// Pauses and resumes replica 1 at random intervals until `stop`.
fn chaos(c: Arc<Cluster>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut pauses = 0;
        let mut rand_ms = |lo: u64, hi: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(lo + x % (hi - lo))
        };
        while !stop.load(Ordering::Relaxed) {
            if c.pause_replay(1).is_ok() {
                pauses += 1;
            }
            std::thread::sleep(rand_ms(100, 800));
            let _ = c.resume_replay(1);
            std::thread::sleep(rand_ms(1000, 3000));
        }
        let _ = c.resume_replay(1);
        pauses
    })
}

/// Bumps the shared counter (key 0) on the primary every 5 ms until `stop`.
async fn shared_writer(c: &Cluster, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let (client, conn) =
        tokio_postgres::connect(&c.primary().conn_str("postgres", None, "app"), NoTls)
            .await
            .expect("writer connect");
    tokio::spawn(conn);
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            client
                .simple_query("UPDATE ck SET v = v + 1 WHERE k = 0")
                .await
                .expect("shared counter");
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n
    })
}

async fn run_checker(
    c: &Arc<Cluster>,
    cw: &Cw,
    sessions: i64,
    loops: u64,
    key_base: i64,
) -> (Tally, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = shared_writer(c, stop.clone()).await;
    let pauser = chaos(Arc::clone(c), stop.clone());
    let mut clients = Vec::new();
    for _ in 0..sessions {
        clients.push(cw.app().await);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let key = key_base + i as i64;
        // Every other session commits with synchronous_commit = off.
        tasks.push(tokio::spawn(session(client, key, loops, i % 2 == 1)));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.add(t.await.expect("checker session"));
    }
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let n = writer.await.unwrap();
    let pauses = tokio::task::spawn_blocking(move || pauser.join().unwrap())
        .await
        .unwrap();
    eprintln!("(shared counter bumped {n} times; replica 1 paused {pauses} times)");
    (total, took)
}

async fn checker_cluster() -> Arc<Cluster> {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute(
            "CREATE TABLE ck (k bigint PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO ck VALUES (0, 0);
             GRANT ALL ON ck TO app;",
        )
        .await
        .unwrap();
    blocking(|| c.wait_replay_caught_up(0, Duration::from_secs(10))).unwrap();
    blocking(|| c.wait_replay_caught_up(1, Duration::from_secs(10))).unwrap();
    blocking(|| c.set_apply_delay(0, Duration::from_millis(500))).unwrap();
    c
}

fn checker_toml(c: &Cluster, consistency: &str) -> String {
    split_toml(
        c,
        &format!(
            "consistency = \"{consistency}\"\ndefault_pool_size = 20\nmax_client_conn = 200\nreplica_hold_down = 0.5"
        ),
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_checker_finds_no_stale_or_backwards_reads() {
    let c = checker_cluster().await;
    let cw = start_cw(APP_USERS, &checker_toml(&c, "session")).await;

    let (mut t, took) = run_checker(&c, &cw, 50, 400, 1000).await;
    let fallbacks = metric(&cw, "causeway_ryw_fallbacks_total");
    let waits = metric(&cw, "causeway_ryw_wait_seconds_count");
    let wait_sum = metric(&cw, "causeway_ryw_wait_seconds_sum");
    let p50 = pct(&mut t.fresh_read_us, 0.5);
    let p99 = pct(&mut t.fresh_read_us, 0.99);
    eprintln!(
        "consistency = session: {} loops in {:.1} s, {} reads, stale {}, backwards {}, \
         replica share {:.1}%, {waits} waits ({:.1} ms on average), {fallbacks} fallbacks to the primary; \
         read right after a write: median {} us, p99 {} us",
        t.loops,
        took.as_secs_f64(),
        t.reads,
        t.stale,
        t.backwards,
        100.0 * t.replica_reads as f64 / t.reads as f64,
        if waits > 0.0 { 1000.0 * wait_sum / waits } else { 0.0 },
        p50,
        p99
    );
    assert_eq!(t.loops, 20_000);
    assert_eq!(t.stale, 0, "stale reads: {:?}", t.examples);
    assert_eq!(t.backwards, 0, "monotonicity violations: {:?}", t.examples);
    assert!(
        t.replica_reads > t.reads / 10,
        "reads were bought by sending (almost) everything to the primary: {} of {}",
        t.replica_reads,
        t.reads
    );
    cw.stop().await;

    // Negative control: the same load without read-your-writes.
    let cw = start_cw(APP_USERS, &checker_toml(&c, "none")).await;
    let (t, took) = run_checker(&c, &cw, 50, 60, 5000).await;
    eprintln!(
        "consistency = none: {} loops in {:.1} s, stale {}, backwards {}, replica share {:.1}%",
        t.loops,
        took.as_secs_f64(),
        t.stale,
        t.backwards,
        100.0 * t.replica_reads as f64 / t.reads as f64
    );
    assert!(
        t.stale > 0,
        "the checker saw no stale read without read-your-writes: it cannot fail"
    );
    cw.stop().await;
}

/// A connection whose ParameterStatus values we can read while it runs.
async fn connect_watching(s: &str) -> (Client, Arc<StdMutex<HashMap<String, String>>>) {
    let (client, mut conn) = tokio_postgres::connect(s, NoTls).await.expect("connect");
    let params = Arc::new(StdMutex::new(HashMap::new()));
    let p = Arc::clone(&params);
    tokio::spawn(async move {
        std::future::poll_fn(|cx| loop {
            let r = conn.poll_message(cx);
            if let Some(v) = conn.parameter("causeway.token") {
                p.lock()
                    .unwrap()
                    .insert("causeway.token".into(), v.to_string());
            }
            match r {
                std::task::Poll::Ready(Some(Ok(_))) => continue,
                std::task::Poll::Ready(_) => return std::task::Poll::Ready(()),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        })
        .await
    });
    (client, params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_move_between_connections_and_instances() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE tk (k int PRIMARY KEY, v int); INSERT INTO tk VALUES (1, 0); GRANT ALL ON tk TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let toml = split_toml(&c, "", "");
    let cw1 = start_cw(APP_USERS, &toml).await;
    let cw2 = start_cw(APP_USERS, &toml).await;
    let (a, a_params) = connect_watching(&cw1.conn_str("app", Some("app_pw"), "app")).await;
    let probe = cw1.app().await;
    let mut probe_ok = false;
    for _ in 0..200 {
        if row(&probe, "SELECT pg_is_in_recovery()").await.unwrap() == ["t"] {
            probe_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(probe_ok, "replicas never took reads");
    // Both replicas apply WAL 1.5 s late from now on.
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::from_millis(1500))).unwrap();
    }

    let mut v = 0;
    for how in ["set", "startup", "comment", "other instance"] {
        v += 1;
        a.simple_query(&format!("UPDATE tk SET v = {v} WHERE k = 1"))
            .await
            .unwrap();
        let shown = row(&a, "SHOW causeway.token").await.unwrap()[0].clone();
        assert!(shown.starts_with("cw1-"), "SHOW causeway.token: {shown:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        let reported = loop {
            if let Some(t) = a_params.lock().unwrap().get("causeway.token").cloned() {
                if t == shown {
                    break t;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no ParameterStatus causeway.token = {shown}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Without the token, a fresh session reads the old value from a
        // (delayed) replica: the token is what makes the difference.
        let plain = cw1.app().await;
        let r = row(&plain, "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1")
            .await
            .unwrap();
        assert!(
            r[0].parse::<i64>().unwrap() < v && r[1] == "t",
            "{how}: control read without the token: {r:?}"
        );

        let (b, read_sql) = match how {
            "set" => {
                let b = cw1.app().await;
                b.simple_query(&format!("SET causeway.token = '{reported}'"))
                    .await
                    .unwrap();
                (b, "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1".to_string())
            }
            "startup" => {
                let s = format!(
                    "{} options='-c causeway.token={reported}'",
                    cw1.conn_str("app", Some("app_pw"), "app")
                );
                (connect_str(&s).await.unwrap(), "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1".to_string())
            }
            "comment" => (
                cw1.app().await,
                format!("/* causeway:token={reported} */ SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1"),
            ),
            _ => {
                let b = cw2.app().await;
                b.simple_query(&format!("SET causeway.token = '{reported}'"))
                    .await
                    .unwrap();
                (b, "SELECT v, pg_is_in_recovery() FROM tk WHERE k = 1".to_string())
            }
        };
        // At once: the write is seen (the primary, since no replica has it).
        let r = row(&b, &read_sql).await.unwrap();
        assert_eq!(r[0], v.to_string(), "{how}: B missed A's write");
        // Once a replica caught up, the read is served there.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = row(&b, &read_sql).await.unwrap();
            assert_eq!(r[0], v.to_string(), "{how}: B missed A's write");
            if r[1] == "t" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{how}: never served by a replica"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{how}: imported token honoured, then served by a replica");
    }

    // Bad and foreign tokens are clear errors, and never lower the floor.
    let e = a
        .simple_query("SET causeway.token = 'not-a-token'")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("22023"), "{}", msg(&e));
    let e = a
        .simple_query("SET causeway.token = 'cw1-0000000000000001-00000001-0000000000000001'")
        .await
        .unwrap_err();
    assert!(msg(&e).contains("another cluster"), "{}", msg(&e));
    let e = a
        .simple_query("/* causeway:token=cw1-zz */ SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("22023"), "{}", msg(&e));
    let before = row(&a, "SHOW causeway.token").await.unwrap()[0].clone();
    let lower = format!("{}0000000000000001", &before[..before.len() - 16]);
    a.simple_query(&format!("SET causeway.token = '{lower}'"))
        .await
        .unwrap();
    assert_eq!(
        row(&a, "SHOW causeway.token").await.unwrap()[0],
        before,
        "a token went backwards"
    );
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::ZERO)).unwrap();
    }
    cw1.stop().await;
    cw2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_system_reads_after_writes_never_wait_the_full_timeout() {
    let c = cluster().await;
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("DROP TABLE IF EXISTS idle_ryw; CREATE TABLE idle_ryw (k int PRIMARY KEY, v int); INSERT INTO idle_ryw VALUES (1, 0); GRANT ALL ON idle_ryw TO app;")
        .await
        .unwrap();
    // A generous wait: what is asserted is that caught-up replicas serve
    // the reads after each write, not how fast replay is on a busy machine
    // (the latency is printed, and measured by the checker and the bench).
    let cw = start_cw(APP_USERS, &split_toml(c, "ryw_wait_timeout = 1.0", "")).await;
    let client = cw.app().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while row(&client, "SELECT pg_is_in_recovery()").await.unwrap() != ["t"] {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut lat = Vec::new();
    let mut on_replica = 0;
    for v in 1..=200 {
        client
            .simple_query(&format!("UPDATE idle_ryw SET v = {v} WHERE k = 1"))
            .await
            .unwrap();
        let t = Instant::now();
        let r = row(
            &client,
            "SELECT v, pg_is_in_recovery() FROM idle_ryw WHERE k = 1",
        )
        .await
        .unwrap();
        lat.push(t.elapsed().as_micros() as u64);
        assert_eq!(r[0], v.to_string(), "stale read");
        on_replica += usize::from(r[1] == "t");
        // An idle system: nothing else writes.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fallbacks = metric(&cw, "causeway_ryw_fallbacks_total");
    let max = *lat.iter().max().unwrap();
    eprintln!(
        "idle system: 200 write-then-read, {on_replica} reads on replicas, {fallbacks} fallbacks, \
         read median {} us, max {max} us",
        pct(&mut lat, 0.5)
    );
    assert_eq!(fallbacks, 0.0, "a read waited the full ryw_wait_timeout");
    assert!(
        on_replica > 150,
        "only {on_replica} of 200 reads on replicas"
    );
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_read_your_writes_and_refuses_old_generation_replicas() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE fo (k int PRIMARY KEY, v int); INSERT INTO fo VALUES (1, 0); GRANT ALL ON fo TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let cw = start_cw(APP_USERS, &split_toml(&c, "", "")).await;
    let a = cw.app().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while row(&a, "SELECT pg_is_in_recovery()").await.unwrap() != ["t"] {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.simple_query("UPDATE fo SET v = 1 WHERE k = 1")
        .await
        .unwrap();
    let old_token = row(&a, "SHOW causeway.token").await.unwrap()[0].clone();
    let writes = Arc::new(AtomicU64::new(0));

    // Promote replica 0 after stopping the primary; replica 1 stays a
    // standby of the old timeline (not following the new primary).
    let cc = Arc::clone(&c);
    tokio::task::spawn_blocking(move || {
        cc.stop(cc.primary())?;
        cc.promote(0)
    })
    .await
    .unwrap()
    .expect("promote");

    // The session writes again on the new primary and reads its write.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut b = cw.app().await;
    loop {
        match b.simple_query("UPDATE fo SET v = 2 WHERE k = 1").await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no write after failover: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                if b.is_closed() {
                    b = cw.app().await;
                }
            }
        }
    }
    writes.fetch_add(1, Ordering::Relaxed);
    let new_token = row(&b, "SHOW causeway.token").await.unwrap()[0].clone();
    assert_ne!(
        &new_token[..29],
        &old_token[..29],
        "the token's timeline did not change: {old_token} -> {new_token}"
    );
    for _ in 0..20 {
        let r = row(&b, "SELECT v FROM fo WHERE k = 1").await.unwrap();
        assert_eq!(r, vec!["2"], "read-your-writes broke after failover");
    }
    // A session holding only an old-generation token reads from the new
    // primary, never from the old timeline's replica.
    let old = cw.app().await;
    old.simple_query(&format!("SET causeway.token = '{old_token}'"))
        .await
        .unwrap();
    let new_primary = c.replica(0).port().to_string();
    for _ in 0..20 {
        let r = row(
            &old,
            "SELECT v, inet_server_port()::text FROM fo WHERE k = 1",
        )
        .await
        .unwrap();
        assert_eq!(r, vec!["2".to_string(), new_primary.clone()]);
    }
    cw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_consistency_and_ryw_fallback_error() {
    let c = Arc::new(blocking(|| Cluster::start(ClusterOptions::default())).expect("cluster"));
    let direct = connect_str(&c.primary().conn_str("postgres", None, "app"))
        .await
        .unwrap();
    direct
        .batch_execute("CREATE TABLE gl (k int PRIMARY KEY, v int); INSERT INTO gl VALUES (1, 0); GRANT ALL ON gl TO app;")
        .await
        .unwrap();
    for i in 0..2 {
        blocking(|| c.wait_replay_caught_up(i, Duration::from_secs(10))).unwrap();
    }
    let cw = start_cw(APP_USERS, &split_toml(&c, "", "")).await;
    let a = cw.app().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while row(&a, "SELECT pg_is_in_recovery()").await.unwrap() != ["t"] {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::from_millis(1500))).unwrap();
    }
    let global = cw.app().await;
    global
        .simple_query("SET causeway.consistency = global")
        .await
        .unwrap();
    assert_eq!(
        row(&global, "SHOW causeway.consistency").await.unwrap(),
        vec!["global"]
    );
    let plain = cw.app().await;
    for v in 1..=3 {
        a.simple_query(&format!("UPDATE gl SET v = {v} WHERE k = 1"))
            .await
            .unwrap();
        // Once A's token is known (SHOW waits for it), every global
        // session honours it; a session-mode session without it does not.
        row(&a, "SHOW causeway.token").await.unwrap();
        let g = row(&global, "SELECT v FROM gl WHERE k = 1").await.unwrap();
        assert_eq!(
            g,
            vec![v.to_string()],
            "global session missed another session's write"
        );
        let p = row(&plain, "SELECT v, pg_is_in_recovery() FROM gl WHERE k = 1")
            .await
            .unwrap();
        assert!(
            p[0].parse::<i64>().unwrap() < v && p[1] == "t",
            "control: a session without the token read {p:?} from a 1.5 s late replica"
        );
        tokio::time::sleep(Duration::from_millis(1600)).await;
    }
    cw.stop().await;

    // ryw_fallback = error: a read no replica can serve in time fails with
    // 57P03 instead of running on the primary; the session goes on.
    let cw = start_cw(
        APP_USERS,
        &split_toml(&c, "ryw_fallback = \"error\"\nryw_wait_timeout = 0.05", ""),
    )
    .await;
    let s = cw.app().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while row(&s, "SELECT pg_is_in_recovery()").await.unwrap() != ["t"] {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.simple_query("UPDATE gl SET v = 100 WHERE k = 1")
        .await
        .unwrap();
    let e = s
        .simple_query("SELECT v FROM gl WHERE k = 1")
        .await
        .expect_err("no replica has the write for 1.5 s");
    assert_eq!(code(&e).as_deref(), Some("57P03"), "{}", msg(&e));
    assert!(msg(&e).contains("ryw_wait_timeout"), "{}", msg(&e));
    assert_eq!(metric(&cw, "causeway_ryw_fallbacks_total"), 1.0);
    // Once a replica has it, the read is served there.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let r = row(&s, "SELECT v, pg_is_in_recovery() FROM gl WHERE k = 1")
        .await
        .unwrap();
    assert_eq!(r, vec!["100", "t"]);
    for i in 0..2 {
        blocking(|| c.set_apply_delay(i, Duration::ZERO)).unwrap();
    }
    cw.stop().await;
}
